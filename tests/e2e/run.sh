#!/usr/bin/env bash
# run.sh [FILTER...] - the end-to-end test runner.
#
# Runs every tests/e2e/[0-9][0-9]-*.sh (sorted) whose name contains one of the
# FILTER words (all when none), each in its own bash with a time limit
# (LDPROF_E2E_TIMEOUT, default 300 s), its output kept in a log file.  Prints
# one line per test (PASS/FAIL/SKIP with its time; a failing test's log tail
# follows), and ends with the plain summary line `N passed, N failed`
# (`, N skipped` when some were skipped).  Exit status 0 only when nothing
# failed.  A test passes with exit 0 and skips with exit 77.
#
# Tests expect the private servers' addresses in the environment (run it
# through tests/env/with-services.sh, as `make test` and `make e2e` do).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LDPROF_TOP=${LDPROF_TOP:-$(cd "$here/../.." && pwd)}
export LDPROF_BUILD=${LDPROF_BUILD:-$LDPROF_TOP/build}
export ZAQARD=${ZAQARD:-$LDPROF_BUILD/tests/zaqard/zaqard}
timeout_s=${LDPROF_E2E_TIMEOUT:-300}
logdir=${LDPROF_E2E_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/ldprof-e2e.XXXXXX")}
mkdir -p "$logdir"

tests=()
for t in "$here"/[0-9][0-9]-*.sh; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .sh)
    if [ $# -gt 0 ]; then
        keep=0
        for f in "$@"; do [[ $name == *"$f"* ]] && keep=1; done
        [ $keep = 1 ] || continue
    fi
    tests+=("$t")
done

passed=0 failed=0 skipped=0
failed_names=()
echo "e2e: ${#tests[@]} tests, logs in $logdir"
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    log="$logdir/$name.log"
    start=$(date +%s%N)
    LDPROF_E2E_NAME=$name timeout --kill-after=10 "$timeout_s" bash "$t" >"$log" 2>&1 </dev/null
    rc=$?
    ms=$((($(date +%s%N) - start) / 1000000))
    secs=$(printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)))
    case $rc in
    0)
        passed=$((passed + 1))
        printf 'PASS  %-40s %6ss\n' "$name" "$secs"
        ;;
    77)
        skipped=$((skipped + 1))
        printf 'SKIP  %-40s %6ss  %s\n' "$name" "$secs" "$(tail -n 1 "$log")"
        ;;
    *)
        failed=$((failed + 1))
        failed_names+=("$name")
        why="exit $rc"
        [ $rc = 124 ] && why="timed out after ${timeout_s}s"
        printf 'FAIL  %-40s %6ss  (%s)\n' "$name" "$secs" "$why"
        tail -n 40 "$log" | sed 's/^/      | /'
        ;;
    esac
done
[ $failed -gt 0 ] && echo "failed: ${failed_names[*]} (logs in $logdir)"
if [ $skipped -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ $failed = 0 ]
