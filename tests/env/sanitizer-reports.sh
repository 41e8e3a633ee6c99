#!/usr/bin/env bash
# sanitizer-reports.sh DIR CMD ARGS... - run CMD with AddressSanitizer and
# LeakSanitizer reports written to files in DIR (ASAN_OPTIONS log_path), then
# print every report and fail when there is one, whatever CMD's status.
#
# Why: Criterion runs each test in a worker process and takes the test's
# result from the worker's messages, not its exit status, so a leak that
# LeakSanitizer reports when a worker exits (or an ASan report in a program
# a test runs) would otherwise leave the test PASSING.  `make ASAN=1` unit,
# e2e and test run their suites through this script.
#
# One report is not ours and is only listed: Criterion's runner keeps a few
# 48-byte blocks until it exits.  A leak report whose every stack has only
# libcriterion.so frames above the allocator is skipped; any stack with
# another frame (a test, ldprof's code, a library ldprof calls) counts.
# (A suppression of libcriterion.so would hide every leak in a test too:
# each test's stack passes through criterion_internal_test_main.)
set -u
[ $# -ge 2 ] || { echo "usage: $0 DIR CMD ARGS..." >&2; exit 2; }
dir=$1
shift
rm -rf "$dir" && mkdir -p "$dir" || exit 1
# (exitcode=0: a leak changes no exit status, its report file counts; else
# Criterion's runner would exit non-zero for its own blocks)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$dir/report" \
    LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}exitcode=0" "$@"
rc=$?

# criterion_only FILE: 0 when FILE is a leak report whose every stack has
# only libcriterion.so frames after frame #0 (the allocator).
criterion_only() {
    awk '
        /ERROR: LeakSanitizer/ { leak = 1 }
        /^[A-Z][a-z]+ leak of / { stacks++ }
        /^ *#[0-9]+ / && $1 != "#0" { if ($0 !~ /libcriterion\.so/) ours = 1 }
        /ERROR: AddressSanitizer/ { ours = 1 }
        END { exit !(leak && stacks > 0 && !ours) }' "$1"
}

n=0 skipped=0
for f in "$dir"/report.*; do
    [ -e "$f" ] || continue
    if criterion_only "$f"; then
        skipped=$((skipped + 1))
        echo "sanitizer: $f: only Criterion's runner's own blocks (not counted)"
        continue
    fi
    n=$((n + 1))
    echo "== sanitizer report $f"
    head -60 "$f"
done
if [ $n -gt 0 ]; then
    echo "sanitizer: $n report(s) in $dir: FAILED"
    exit 1
fi
echo "sanitizer: no report"
exit $rc
