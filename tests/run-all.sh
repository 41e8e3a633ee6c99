#!/usr/bin/env bash
# run-all.sh - what `make test` runs inside tests/env/with-services.sh: the
# Criterion unit suites, then the end-to-end suite.  Both always run; the
# exit status is non-zero when either failed.
#
# In CI (CI=true, as CI services set it, or LDPROF_TEST_BENCH=1) the
# benchmarks run first, as `make bench BENCH_QUICK=1` would (their programs
# are built here, in the same build directory), only to prove they still
# run: no figure is checked, a benchmark that fails fails the run.  They run
# before the suites so the suites' summaries still end the output.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${LDPROF_BUILD:-$here/../build}
bench_rc=0
if [ "${CI:-}" = true ] || [ "${LDPROF_TEST_BENCH:-0}" = 1 ]; then
    echo "== benchmarks (BENCH_QUICK=1: proves they run; no thresholds)"
    start=$(date +%s)
    if make --no-print-directory -C "$here/.." O="$build" bench-tools &&
        BENCH_QUICK=1 "$here/bench/run.sh"; then
        echo "benchmarks: ran ($(($(date +%s) - start)) s)"
    else
        bench_rc=1
        echo "benchmarks: FAILED ($(($(date +%s) - start)) s; output above)"
    fi
fi
echo "== unit tests (Criterion)"
"$build/tests/unit/unit-tests" ${LDPROF_UNIT_ARGS:-}
unit_rc=$?
echo "== end-to-end tests"
"$here/e2e/run.sh"
e2e_rc=$?
[ $unit_rc = 0 ] && [ $e2e_rc = 0 ] && [ $bench_rc = 0 ]
