#!/bin/bash
# tests/bench/collector.sh - 5. ldprof-collectord: ingest and write rates,
# peak RSS.  Run by tests/bench/run.sh (make bench), under
# tests/env/with-services.sh (LDPROF_TEST_REDIS_URI for part c).
#
# The sender (collector_blast, built by make bench) builds datagrams as the
# preload's flusher does - zaqard-like requests of 5 to 10 spans (7.5 on
# average), up to 64 KiB per datagram - before its clock starts, then sends
# them as fast as the collector reads (non-blocking sends, poll for room on
# EAGAIN: nothing is dropped; the EAGAIN count is shown).  With 2 or more
# CPUs the collector runs on cpu 0 and the sender on cpu 1 (taskset).
#
#   a. ingest: 10,000 traces into a fresh collector whose traces stay open
#      (--idle-ms 600000): received, decoded, journaled, held in memory.
#      spans/s per core = spans / the collector's CPU time for them
#      (/proc/PID/schedstat); wall = spans / time until the collector has
#      read everything and is idle again.  Every datagram must be in the
#      journal (its size is checked).
#   b. dumps: TRACES_B traces with --idle-ms 100, --fsync each and batch:
#      spans / time from the first send until every dump file exists.
#      Each repetition writes into a directory of its own, all removed at
#      the end: on an ext4 without a journal (this VM's) the kernel skips
#      inodes freed in the last ~35 s when it allocates one, so creating
#      files right after removing thousands costs several times more.
#   e. one trace per request, as in the server benchmark: TRACES_E traces
#      of 3 spans (wsgi, redis, db) at 5,000 traces/s, one datagram per
#      10 ms, into a collector run as server.sh runs it (--fsync batch
#      --idle-ms 200): its CPU time per trace, user and system
#      (/proc/PID/stat, every thread), from the first send until every
#      dump exists and the journal is trimmed.
#      b2: instructions per span to render a dump (callgrind, 200 traces;
#      skipped without valgrind or with BENCH_CALLGRIND=0).
#   d. memory: VmHWM - VmRSS before sending, for the 10,000 open traces of
#      (a); bytes per held span.
#   c. --redis: as (a) with every span also pushed to Redis (LPUSH of both
#      events, one pipeline per datagram); the pushes are checked.
#   f. journal compaction: the 10,000 traces of (a) held, then written by
#      --max-trace-age 4s (--fsync batch, --journal-max-mb 1): once about
#      half are written the journal is compacted to the rest; the
#      milliseconds that compaction took (its log line's ms=, blank for a
#      collector that does not log it) are the time the ingest thread
#      reads no datagram; also per 1,000 held traces.
# Figures are medians of the repetitions (min..max shown).  BENCH_QUICK=1:
# fewer repetitions and traces (~15 s).  Nothing here asserts a time.
set -u
: "${LDPROF_BUILD:?run through make bench}"
COLL=$LDPROF_BUILD/collector/ldprof-collectord
BLAST=$LDPROF_BUILD/tests/bench/collector_blast
for f in "$COLL" "$BLAST"; do
    [ -x "$f" ] || { echo "collector.sh: $f missing (make bench builds it)"; exit 1; }
done
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    REPS_A=3 REPS_B=1 TRACES_B=500 REPS_C=1 TRACES_C=2000 REPS_E=1 TRACES_E=2500
else
    REPS_A=7 REPS_B=3 TRACES_B=1000 REPS_C=3 TRACES_C=10000 REPS_E=3 TRACES_E=10000
fi
TRACES_A=10000
PIN_C="" PIN_S=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_C="taskset -c 0" PIN_S="taskset -c 1"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ldprof-bench-coll.XXXXXX") || exit 1
CP=""
cleanup() {
    [ -n "$CP" ] && kill -9 "$CP" 2>/dev/null && wait "$CP" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# ndumps DIR: the <base_id>.json dumps in DIR
ndumps() {
    find "$1" -maxdepth 1 -name '*-*.json' | wc -l
}

# expect_dumps DIR N: exit unless DIR holds exactly N dumps
expect_dumps() {
    local n
    n=$(ndumps "$1")
    if [ "$n" != "$2" ]; then
        echo "collector.sh: $n dumps written, want $2"
        exit 1
    fi
}

# start_coll DIR ARGS...: a collector on DIR/s.sock writing DIR/t; sets CP
start_coll() {
    local d=$1
    shift
    rm -rf "$d"
    mkdir -p "$d/t"
    $PIN_C "$COLL" --socket "$d/s.sock" --dir "$d/t" --ready-file "$d/ready" \
        --log "$d/log" "$@" &
    CP=$!
    for _ in $(seq 200); do
        [ -s "$d/ready" ] && return 0
        sleep 0.05
    done
    echo "collector.sh: the collector did not start:"
    cat "$d/log"
    return 1
}

# stop_coll: kill -9 (held traces are not written: not measured here)
stop_coll() {
    kill -9 "$CP" 2>/dev/null
    wait "$CP" 2>/dev/null
    CP=""
}

kv() { # kv KEY LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p; s/^$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1
}

# median/min/max of the numbers on stdin: "median min max"
stats() { sort -g | awk '{v[NR]=$1} END{if(!NR){print "- - -"; exit}
    m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; print m, v[1], v[NR]}'; }

row() { # row LABEL UNIT FILE
    read -r m lo hi < <(stats <"$3")
    printf '| %-46s | %12s | %24s | %4s |\n' "$1" "$(fmt "$m") $2" \
        "$(fmt "$lo") .. $(fmt "$hi")" "$(wc -l <"$3")"
}
fmt() { awk -v x="$1" 'BEGIN{ if (x=="-") print "-"; else if (x>=100) printf "%\047.0f", x; else printf "%.2f", x }'; }

spans_total=0 dgram_bytes=0
echo "== 5. collector: ingest, dumps, Redis, memory (tests/bench/collector.sh)"
echo "sender: zaqard-like requests, 5-10 spans each; collector ${PIN_C:-unpinned}, sender ${PIN_S:-unpinned}"

# ---- a + d: ingest into memory, RSS of 10,000 open traces
: >"$WORK/a_core" >"$WORK/a_wall" >"$WORK/a_bps" >"$WORK/a_hwm" >"$WORK/a_eagain" >"$WORK/a_ns"
for r in $(seq "$REPS_A"); do
    start_coll "$WORK/a" --idle-ms 600000 || exit 1
    rss0=$(awk '/^VmRSS/{print $2}' "/proc/$CP/status")
    out=$($PIN_S "$BLAST" --socket "$WORK/a/s.sock" --traces "$TRACES_A" --seed "$r" \
        --collector-pid "$CP") || { echo "collector.sh: sender failed"; exit 1; }
    hwm=$(awk '/^VmHWM/{print $2}' "/proc/$CP/status")
    jsize=$(stat -c %s "$WORK/a/t/journal.jsonl")
    stop_coll
    spans=$(kv spans "$out") dgrams=$(kv dgrams "$out") bytes=$(kv bytes "$out")
    # (an older collector journaled lines: only the datagram format is checked)
    magic=$(head -c 4 "$WORK/a/t/journal.jsonl" | od -An -tx1 | tr -d ' \n')
    if [ "$magic" = 1e4c4447 ] && [ "$jsize" != $((bytes + 9 * dgrams)) ]; then
        echo "collector.sh: journal holds $jsize bytes, want $((bytes + 9 * dgrams)): not every datagram was taken"
        exit 1
    fi
    spans_total=$spans dgram_bytes=$bytes
    awk -v n="$spans" -v c="$(kv cpu_ns "$out")" 'BEGIN{print n/c*1e9}' >>"$WORK/a_core"
    awk -v n="$spans" -v c="$(kv cpu_ns "$out")" 'BEGIN{print c/n}' >>"$WORK/a_ns"
    awk -v n="$spans" -v t="$(kv done_s "$out")" 'BEGIN{print n/t}' >>"$WORK/a_wall"
    awk -v n="$spans" -v h="$hwm" -v r0="$rss0" 'BEGIN{print (h-r0)*1024/n}' >>"$WORK/a_bps"
    awk -v h="$hwm" 'BEGIN{print h/1024}' >>"$WORK/a_hwm"
    kv eagain "$out" >>"$WORK/a_eagain"
done
echo "stream: $TRACES_A traces, $spans_total spans, $(awk -v b="$dgram_bytes" -v n="$spans_total" 'BEGIN{printf "%.0f", b/n}') wire bytes per span"
echo
printf '| %-46s | %12s | %24s | %4s |\n' "measure" "median" "min .. max" "reps"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "$(printf -- '-%.0s' {1..14})" \
    "$(printf -- '-%.0s' {1..26})" "------"
row "a. ingest, spans/s per core (CPU time)" "/s" "$WORK/a_core"
row "a. ingest, CPU ns per span" "ns" "$WORK/a_ns"
row "a. ingest, spans/s wall (to idle)" "/s" "$WORK/a_wall"
row "a. sender EAGAIN waits per run" "" "$WORK/a_eagain"

# ---- b: written to dumps
for mode in each batch; do
    : >"$WORK/b_$mode" >"$WORK/b_cpu_$mode"
    for r in $(seq "$REPS_B"); do
        b="$WORK/b-$mode-$r" # a fresh directory: nothing removed before (see above)
        start_coll "$b" --idle-ms 100 --fsync "$mode" || exit 1
        out=$($PIN_S "$BLAST" --socket "$b/s.sock" --traces "$TRACES_B" --seed "$r" \
            --collector-pid "$CP" --wait-dumps "$b/t") || { echo "collector.sh: sender failed"; exit 1; }
        stop_coll
        expect_dumps "$b/t" "$TRACES_B"
        spans=$(kv spans "$out")
        awk -v n="$spans" -v t="$(kv dumps_s "$out")" 'BEGIN{print n/t}' >>"$WORK/b_$mode"
        awk -v n="$spans" -v c="$(kv cpu_ns "$out")" 'BEGIN{print n/c*1e9}' >>"$WORK/b_cpu_$mode"
    done
    row "b. to dumps, --fsync $mode, spans/s wall ($TRACES_B traces)" "/s" "$WORK/b_$mode"
    row "b. to dumps, --fsync $mode, spans/s per core" "/s" "$WORK/b_cpu_$mode"
done

# ---- e: one trace per request, paced as zaqard sends them
: >"$WORK/e_user" >"$WORK/e_sys"
tck=$(getconf CLK_TCK)
for r in $(seq "$REPS_E"); do
    e="$WORK/e-$r"
    start_coll "$e" --idle-ms 200 --fsync batch || exit 1
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$CP/stat")
    out=$($PIN_S "$BLAST" --socket "$e/s.sock" --traces "$TRACES_E" --seed "$r" --spans 3 \
        --rate 5000 --wait-dumps "$e/t") || { echo "collector.sh: sender failed"; exit 1; }
    for _ in $(seq 100); do # the journal trim (syncfs on a thread of its own)
        [ "$(stat -c %s "$e/t/journal.jsonl")" = 0 ] && break
        sleep 0.1
    done
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$CP/stat")
    stop_coll
    expect_dumps "$e/t" "$TRACES_E"
    awk -v u=$((u1 - u0)) -v t="$tck" -v n="$TRACES_E" 'BEGIN{print u/t*1e6/n}' >>"$WORK/e_user"
    awk -v u=$((s1 - s0)) -v t="$tck" -v n="$TRACES_E" 'BEGIN{print u/t*1e6/n}' >>"$WORK/e_sys"
done
row "e. 1 trace/request, 5,000/s: CPU per trace, user" "us" "$WORK/e_user"
row "e. 1 trace/request, 5,000/s: CPU per trace, system" "us" "$WORK/e_sys"

# ---- b2: instructions per span for a dump (callgrind: stable on a noisy VM):
# 200 traces (1,496 spans) through a collector under callgrind, --fsync
# batch; the inclusive Ir of coll_trace_render (everything that turns held
# spans into dump bytes) and of the whole daemon, each over the spans.
if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null &&
    [ "${BENCH_CALLGRIND:-1}" != 0 ]; then
    d="$WORK/cg"
    rm -rf "$d"
    mkdir -p "$d/t"
    valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$COLL" --socket "$d/s.sock" \
        --dir "$d/t" --ready-file "$d/ready" --log "$d/log" --idle-ms 100 --fsync batch \
        2>"$d/vg.log" &
    CP=$!
    for _ in $(seq 400); do [ -s "$d/ready" ] && break; sleep 0.05; done
    out=$("$BLAST" --socket "$d/s.sock" --traces 200 --seed 1 --pid 4242 \
        --t0 1700000000000000000 --collector-pid "$CP" --wait-dumps "$d/t") ||
        { echo "collector.sh: sender failed (callgrind)"; exit 1; }
    kill -TERM "$CP" 2>/dev/null
    wait "$CP" 2>/dev/null
    CP=""
    spans=$(kv spans "$out")
    ann=$(callgrind_annotate --inclusive=yes "$d/cg.out" 2>/dev/null)
    render=$(awk '/coll_trace_render \[/{gsub(",","",$1); print $1; exit}' <<<"$ann")
    total=$(awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}' <<<"$ann")
    printf '| %-46s | %12s | %24s | %4s |\n' "b. dump: instructions per span (render)" \
        "$(fmt "$(awk -v r="${render:-0}" -v n="$spans" 'BEGIN{print r/n}')")" "callgrind, 200 traces" 1
    printf '| %-46s | %12s | %24s | %4s |\n' "b. dump: instructions per span (whole daemon)" \
        "$(fmt "$(awk -v r="${total:-0}" -v n="$spans" 'BEGIN{print r/n}')")" "callgrind, 200 traces" 1
fi

# ---- d: memory (from a)
row "d. peak RSS, $TRACES_A open traces (VmHWM)" "MiB" "$WORK/a_hwm"
row "d. bytes per held span (VmHWM - RSS before)" "B" "$WORK/a_bps"

# ---- c: --redis
if [ -n "${LDPROF_TEST_REDIS_URI:-}" ]; then
    hp=${LDPROF_TEST_REDIS_URI#redis://}
    hp=${hp%%/*}
    rhost=${hp%%:*} rport=${hp##*:}
    uri="redis://$hp/11" # a database of its own, emptied before and after
    rcli() { redis-cli -h "$rhost" -p "$rport" -n 11 "$@"; }
    : >"$WORK/c_core" >"$WORK/c_wall"
    for r in $(seq "$REPS_C"); do
        rcli FLUSHDB >/dev/null
        start_coll "$WORK/c" --idle-ms 600000 --redis "$uri" || exit 1
        out=$($PIN_S "$BLAST" --socket "$WORK/c/s.sock" --traces "$TRACES_C" --seed "$r" \
            --collector-pid "$CP") || { echo "collector.sh: sender failed"; exit 1; }
        stop_coll
        spans=$(kv spans "$out")
        keys=$(rcli DBSIZE)
        if [ "$keys" != "$TRACES_C" ]; then
            echo "collector.sh: $keys Redis keys, want $TRACES_C"
            exit 1
        fi
        awk -v n="$spans" -v c="$(kv cpu_ns "$out")" 'BEGIN{print n/c*1e9}' >>"$WORK/c_core"
        awk -v n="$spans" -v t="$(kv done_s "$out")" 'BEGIN{print n/t}' >>"$WORK/c_wall"
    done
    rcli FLUSHDB >/dev/null
    row "c. --redis ingest, spans/s per core ($TRACES_C tr.)" "/s" "$WORK/c_core"
    row "c. --redis ingest, spans/s wall" "/s" "$WORK/c_wall"
else
    echo "c. --redis: skipped (no LDPROF_TEST_REDIS_URI)"
fi

# ---- f: journal compaction with a backlog of held traces
: >"$WORK/f_ms" >"$WORK/f_ms_k" >"$WORK/f_traces"
for r in $(seq "$REPS_B"); do
    f="$WORK/f-$r"
    start_coll "$f" --idle-ms 600000 --max-trace-age 4s --journal-max-mb 1 --fsync batch || exit 1
    $PIN_S "$BLAST" --socket "$f/s.sock" --traces "$TRACES_A" --seed "$r" >/dev/null ||
        { echo "collector.sh: sender failed"; exit 1; }
    for _ in $(seq 600); do # at most 60 s
        [ "$(ndumps "$f/t")" -ge "$TRACES_A" ] && break
        sleep 0.1
    done
    stop_coll
    line=$(grep -m1 'event=journal_compacted' "$f/log")
    [ -n "$line" ] || { echo "collector.sh: no journal compaction in (f), run $r"; continue; }
    ms=$(kv ms "$line") kept=$(kv traces "$line")
    echo "$kept" >>"$WORK/f_traces"
    if [ -n "$ms" ]; then
        echo "$ms" >>"$WORK/f_ms"
        awk -v m="$ms" -v k="$kept" 'BEGIN{print m/k*1000}' >>"$WORK/f_ms_k"
    fi
done
row "f. compaction: held traces kept" "" "$WORK/f_traces"
row "f. compaction: ingest stall (its ms=)" "ms" "$WORK/f_ms"
row "f. compaction: ms per 1,000 held traces" "ms" "$WORK/f_ms_k"
exit 0
