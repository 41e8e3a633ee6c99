#!/usr/bin/env bash
# run-all.sh - what `make test` runs inside tests/env/with-services.sh: the
# Criterion unit suites, then the end-to-end suite.  Both always run; the
# exit status is non-zero when either failed.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${LDPROF_BUILD:-$here/../build}
echo "== unit tests (Criterion)"
"$build/tests/unit/unit-tests" ${LDPROF_UNIT_ARGS:-}
unit_rc=$?
echo "== end-to-end tests"
"$here/e2e/run.sh"
e2e_rc=$?
[ $unit_rc = 0 ] && [ $e2e_rc = 0 ]
