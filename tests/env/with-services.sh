#!/usr/bin/env bash
# with-services.sh [--only "redis postgres"] CMD ARGS...
#
# Starts private test servers (services.sh), exports their addresses
# (LDPROF_TEST_REDIS_URI, LDPROF_TEST_PG_CONNINFO, LDPROF_TEST_MONGO_URI, ...),
# runs CMD, and stops the servers on exit, whether CMD passed, failed or the
# run was interrupted.  Exits with CMD's status.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
only=""
if [ "${1:-}" = "--only" ]; then
    only=$2
    shift 2
fi
[ $# -gt 0 ] || { echo "usage: $0 [--only 'redis postgres mongo'] CMD ARGS..." >&2; exit 2; }

svcdir=$(mktemp -d "${TMPDIR:-/tmp}/ldprof-svc.XXXXXX") || exit 1
cleanup() { "$here/services.sh" stop "$svcdir"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck disable=SC2086
"$here/services.sh" start "$svcdir" $only || exit 1
set -a
# shellcheck disable=SC1091
. "$svcdir/env"
set +a
"$@"
