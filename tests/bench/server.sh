#!/bin/bash
# tests/bench/server.sh - parts 1 and 6 of `make bench` (run by run.sh inside
# tests/env/with-services.sh; LDPROF_BUILD, ZAQARD and the LDPROF_TEST_*
# addresses come from there).
#
# 1. tests/zaqard under wrk on loopback, the mixed message workload of
#    zaqar-mix.lua, in five configurations:
#      a  no preload
#      b  preload, LDPROF_ENABLED=0
#      c  preload enabled, requests untraced (the resting cost)
#      d  every request traced (its own trace), all drivers on
#      e  every request traced, driver spans off
#    One zaqard per configuration runs the whole time; the wrk runs go
#    round-robin (a b c d e a b c d e ...), so a slow spell of the machine
#    hits every configuration alike.  Reported: medians of requests/s, p50
#    and p99 latency, zaqard CPU time per request, and each configuration's
#    median per-round ratio to (a).  First with a Redis message pool and the
#    PostgreSQL catalog (the main figure), then with a MongoDB pool (the
#    stand-in is slow: ratios only).  Traced requests carry pre-signed
#    X-Trace-Info/X-Trace-HMAC pairs, a fresh set per run, each pair a trace
#    of its own; the collector (ldprof-collectord --fsync batch, see
#    docs/performance.md for why not the default) runs throughout, is waited
#    on until idle after each traced run (so its work never lands in another
#    configuration's run), and its span and drop counters are printed at the
#    end.  Also printed: the collector's CPU time per traced request.
# 6. Memory: VmRSS and Pss of zaqard --threads 1 and --threads 8, with no
#    preload and with the preload tracing every request, after the same
#    warm-up; the preload's share in total and per thread.
#
# Full pass: warm-up 1 s per zaqard, 5 rounds of 3 s runs (Redis), 3 rounds
# of 1 s (MongoDB), 2 s memory warm-ups: about 3 minutes.  BENCH_QUICK=1:
# no warm-up, 2 rounds of 1 s, 1 round of 1 s, 1 s: about 40 s; proves it
# runs, its figures are noise.
# Knobs (defaults in brackets): BENCH_REPS [5; quick 2] and BENCH_SECS [3;
# quick 1] for the Redis rounds, BENCH_CONNS [8] wrk connections,
# BENCH_ZQ_THREADS [2] zaqard --threads, BENCH_PIN [1] pin wrk to the last
# CPU and zaqard to the others (needs 2 CPUs), BENCH_MONGO [1] run the
# MongoDB part, BENCH_FSYNC [batch] the collector's --fsync,
# BENCH_TRACES_PER_S [10000] distinct traces made per second of a traced run.
# Exit status: 0, or 1 when a run failed (a request error, a zaqard or
# collector that died, traced runs that produced no spans).
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LDPROF_BUILD:?run through make bench}" "${ZAQARD:?run through make bench}"
: "${LDPROF_TEST_REDIS_URI:?run inside tests/env/with-services.sh}" "${LDPROF_TEST_PG_CONNINFO:?}"
PY=${LDPROF_PYTHON:-/usr/bin/python3}
LIB=$LDPROF_BUILD/libldprof.so
CLI=$LDPROF_BUILD/collector/ldprof
COLLECTORD=$LDPROF_BUILD/collector/ldprof-collectord
LUA=$here/zaqar-mix.lua
KEY=SECRET_KEY

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
    REPS=${BENCH_REPS:-2} SECS=${BENCH_SECS:-1} MREPS=1 MSECS=1 WARM=0 MEMSECS=1
else
    REPS=${BENCH_REPS:-5} SECS=${BENCH_SECS:-3} MREPS=3 MSECS=1 WARM=1 MEMSECS=2
fi
CONNS=${BENCH_CONNS:-8}
FSYNC=${BENCH_FSYNC:-batch}
TPS=${BENCH_TRACES_PER_S:-10000} # distinct traces made per second of a traced run
ZQ_THREADS=${BENCH_ZQ_THREADS:-2}
MONGO=${BENCH_MONGO:-1}
NCPU=$(nproc)
PIN=${BENCH_PIN:-1}
[ "$NCPU" -ge 2 ] || PIN=0
if [ "$PIN" = 1 ]; then
    WRK_CPUS=$((NCPU - 1)) ZQ_CPUS=0
    [ "$NCPU" -le 2 ] || ZQ_CPUS=0-$((NCPU - 2))
    WRK_PIN=(taskset -c "$WRK_CPUS") ZQ_PIN=(taskset -c "$ZQ_CPUS")
else
    WRK_PIN=() ZQ_PIN=()
fi
CONFIGS=(a b c d e)
DRIVERS_OFF=(LDPROF_TRACE_REDIS=0 LDPROF_TRACE_SQLALCHEMY=0 LDPROF_TRACE_MONGODB=0 LDPROF_TRACE_POOLING=0)

for f in "$LIB" "$CLI" "$COLLECTORD" "$ZAQARD" "$LUA"; do
    [ -e "$f" ] || { echo "server.sh: missing $f (make all)" >&2; exit 1; }
done
for c in wrk taskset psql redis-cli curl; do
    command -v "$c" >/dev/null || { echo "server.sh: $c is not installed (make deps)" >&2; exit 1; }
done

RUN_ID=$(printf 'b%x%x' "$(date +%s)" "$$")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ldprof-bench-server.XXXXXX") || exit 1
PIDS=()  # every process started here (zaqards, the collector), by pid
DBS=()   # catalog databases to drop
declare -A CATALOGS=() # the catalog conninfo of each pool kind
COLL_PID=""
failed=0

log() { printf '%s\n' "$*"; }
err() { printf 'server.sh: %s\n' "$*" >&2; failed=1; }

# stop_pids PID...: SIGTERM to each, wait up to 10 s for all, then SIGKILL
# the rest.  1 when one had to be killed.
stop_pids() {
    local p i left
    for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
    for ((i = 0; i < 100; i++)); do
        left=()
        for p in "$@"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
        [ ${#left[@]} = 0 ] && return 0
        sleep 0.1
    done
    for p in "${left[@]}"; do kill -KILL "$p" 2>/dev/null; done
    return 1
}

cleanup() {
    local db port hp
    [ ${#PIDS[@]} = 0 ] || stop_pids "${PIDS[@]}"
    for db in "${DBS[@]}"; do
        psql "$LDPROF_TEST_PG_CONNINFO" -qAtX -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    done
    hp=${LDPROF_TEST_REDIS_URI#redis://}
    hp=${hp%%/*}
    port=${hp##*:}
    redis-cli -h 127.0.0.1 -p "$port" -n "$REDIS_DB" --scan --pattern "*$RUN_ID*" 2>/dev/null |
        xargs -r -n 100 redis-cli -h 127.0.0.1 -p "$port" -n "$REDIS_DB" DEL >/dev/null 2>&1
    if [ -n "${LDPROF_TEST_MONGO_URI:-}" ] && [ "$MONGO" = 1 ]; then
        timeout 10 "$PY" - "$LDPROF_TEST_MONGO_URI" "zq_$RUN_ID" <<'PY' >/dev/null 2>&1
import sys
import pymongo
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).drop_database(sys.argv[2])
PY
    fi
    rm -rf "$TMP"
}
REDIS_DB=${LDPROF_TEST_REDIS_URI##*/}
[[ $REDIS_DB =~ ^[0-9]+$ ]] || REDIS_DB=0
REDIS_POOL="${LDPROF_TEST_REDIS_URI%/*}/$REDIS_DB"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

new_catalog() { # new_catalog NAME: create a database, set CATALOG
    local db="bench_${RUN_ID}_$1" base=$LDPROF_TEST_PG_CONNINFO
    psql "$base" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null ||
        { err "cannot create catalog database $db"; exit 1; }
    DBS+=("$db")
    if [[ $base == *dbname=* ]]; then
        CATALOG=$(sed -E "s/dbname=[^ ]*/dbname=$db/" <<<"$base")
    else
        CATALOG="$base dbname=$db"
    fi
}

# ------------------------------------------------------------------ processes

# start_collector: one ldprof-collectord (defaults but for the paths,
# --fsync $FSYNC and --idle-ms 200: a trace is one request, so its dump is
# due soon after).
start_collector() {
    local i
    mkdir -p "$TMP/coll"
    COLL_SOCK=$TMP/coll/c.sock COLL_STATS=$TMP/coll/c.stats.json
    "$COLLECTORD" --socket "$COLL_SOCK" --dir "$TMP/coll/traces" --idle-ms 200 --fsync "$FSYNC" \
        --ready-file "$TMP/coll/ready" --log "$TMP/coll/log" >"$TMP/coll/out" 2>&1 </dev/null &
    COLL_PID=$!
    PIDS+=("$COLL_PID")
    for ((i = 0; i < 100; i++)); do
        [ -s "$TMP/coll/ready" ] && [ -S "$COLL_SOCK" ] && return 0
        kill -0 "$COLL_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$TMP/coll/out" "$TMP/coll/log" >&2 2>/dev/null
    err "ldprof-collectord did not start"
    exit 1
}

# start_zaqard NAME POOL_URI THREADS [VAR=VALUE...]: start zaqard (pinned),
# with the preload when VAR=VALUE includes LD_PRELOAD; wait (bounded) for
# /v2/ping; set ZQ_PORT[NAME], ZQ_PIDOF[NAME].
declare -A ZQ_PORT=() ZQ_PIDOF=() ZQ_ON=()
start_zaqard() {
    local name=$1 pool=$2 threads=$3 dir=$TMP/zq-$1 i port="" code
    shift 3
    mkdir -p "$dir"
    env -u LD_PRELOAD LDPROF_CONFIG=/dev/null LDPROF_COLLECTOR="$COLL_SOCK" "$@" \
        "${ZQ_PIN[@]}" "$ZAQARD" --listen 127.0.0.1:0 --port-file "$dir/port" \
        --catalog "$CATALOG" --pool "p1=$pool" $threads --log-level warn \
        >"$dir/log" 2>&1 </dev/null &
    ZQ_PIDOF[$name]=$!
    ZQ_ON[$name]=0
    [[ " $* " == *" LD_PRELOAD="* ]] && [[ " $* " == *" LDPROF_ENABLED=1 "* ]] && ZQ_ON[$name]=1
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do
        kill -0 "${ZQ_PIDOF[$name]}" 2>/dev/null || break
        [ -z "$port" ] && [ -s "$dir/port" ] && port=$(tr -dc 0-9 <"$dir/port")
        if [ -n "$port" ]; then
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/ping")
            if [ "$code" = 204 ]; then
                ZQ_PORT[$name]=$port
                return 0
            fi
        fi
        sleep 0.1
    done
    tail -n 20 "$dir/log" >&2
    err "zaqard $name did not start"
    exit 1
}

# env_of CONFIG: the VAR=VALUE words of a configuration.
env_of() {
    case $1 in
    a) ;;
    b) echo "LD_PRELOAD=$LIB LDPROF_ENABLED=0" ;;
    c | d) echo "LD_PRELOAD=$LIB LDPROF_ENABLED=1" ;;
    e) echo "LD_PRELOAD=$LIB LDPROF_ENABLED=1 ${DRIVERS_OFF[*]}" ;;
    esac
}
traced() { [ "$1" = d ] || [ "$1" = e ]; }

# cpu_ns PID: on-CPU time of all the threads of PID (ns, schedstat).
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}

# make_queues NAME PROJECT N: create queues q0..q<N-1> (one per wrk thread).
make_queues() {
    local i code
    for ((i = 0; i < $3; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT \
            -H "X-Project-ID: $2" "http://127.0.0.1:${ZQ_PORT[$1]}/v2/queues/q$i")
        [ "$code" = 201 ] || [ "$code" = 204 ] || { err "PUT queue q$i on $1: HTTP $code"; exit 1; }
    done
}

# ------------------------------------------------------------------ trace headers

# make_headers N:FILE...: in each FILE, N signed header pairs, one
# "X-Trace-Info X-Trace-HMAC" line each, each with a fresh base_id (with
# BASE_ID set, the first pair of the first file uses it).  The encoding is
# `ldprof headers`'s (checked against the CLI once, by check_headers).
make_headers() {
    "$PY" - "$KEY" "${BASE_ID:-}" "$@" <<'PY'
import base64, hmac, hashlib, sys, uuid
key, base = sys.argv[1].encode(), sys.argv[2]
for arg in sys.argv[3:]:
    n, path = arg.split(":", 1)
    with open(path, "w") as f:
        for i in range(int(n)):
            b = base or str(uuid.uuid4())
            base = ""
            info = base64.b64encode(('{"base_id": "%s", "parent_id": "%s"}' % (b, b)).encode()).decode()
            f.write("%s %s\n" % (info, hmac.new(key, info.encode(), hashlib.sha1).hexdigest()))
PY
}

check_headers() {
    local b want got
    b=$(cat /proc/sys/kernel/random/uuid)
    want=$("$CLI" headers --key "$KEY" --base-id "$b" | sed -n 's/^X-Trace-Info: //p;s/^X-Trace-HMAC: //p' | paste -sd' ')
    BASE_ID=$b make_headers "1:$TMP/check.txt"
    got=$(cat "$TMP/check.txt")
    [ -n "$want" ] && [ "$want" = "$got" ] ||
        { err "generated trace headers differ from 'ldprof headers': '$got' vs '$want'"; exit 1; }
}

# ------------------------------------------------------------------ collector

# coll_pending: traces.pending from the collector's stats file.
coll_pending() {
    sed -n 's/^ *"pending": *\([0-9]*\).*/\1/p' "$COLL_STATS" 2>/dev/null | head -n 1
}

# wait_collector_idle: until the collector's stats file shows no pending
# trace and the collector used less than 2 ms of CPU in the last 0.2 s
# (idle, it ticks for about 1.5 ms a second); the stats file must have been
# rewritten since the call, unless 1.5 s passed (it is rewritten once a
# second when something changed).  At most 20 s.  So writing a run's dumps
# never lands in the next run.
wait_collector_idle() {
    local i prev cur pend="" t0
    t0=$(date +%s.%N)
    sleep 0.2 # the preload's flusher sends every 100 ms
    prev=$(cpu_ns "$COLL_PID")
    for ((i = 0; i < 200; i++)); do
        sleep 0.1
        cur=$(cpu_ns "$COLL_PID")
        if [ $((i % 2)) = 1 ]; then
            pend=$(coll_pending)
            [ $((cur - prev)) -lt 2000000 ] && [ "$pend" = 0 ] &&
                { [ $i -ge 13 ] || awk -v a="$(stat -c %.3Y "$COLL_STATS" 2>/dev/null || echo 0)" -v b="$t0" 'BEGIN {exit !(a > b)}'; } &&
                return 0
            prev=$cur
        fi
    done
    log "   (collector still busy after 20 s: pending=$pend)"
}

# ------------------------------------------------------------------ one run

# run_wrk NAME PROJECT SECS CONNS HEADERS_FILE OUT: one wrk run against zaqard
# NAME (with trace headers from HEADERS_FILE unless empty); appends
# "rps p50_us p99_us cpu_ns_per_req requests coll_cpu_ns" to OUT.  When
# HEADERS_FILE is given and the preload is on in NAME (ZQ_ON), waits for the collector to be idle before returning
# (its CPU time until then is coll_cpu_ns).
run_wrk() {
    local name=$1 project=$2 secs=$3 conns=$4 hf=$5 out=$6 pid c0 c1 k0 k1 line o v
    pid=${ZQ_PIDOF[$name]}
    o=$TMP/wrk.out
    c0=$(cpu_ns "$pid")
    k0=$(cpu_ns "$COLL_PID")
    BENCH_PROJECT=$project BENCH_HEADERS=$hf BENCH_CLIENT=$CLIENT_ID \
        timeout $((secs + 20)) "${WRK_PIN[@]}" wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s \
        -s "$LUA" "http://127.0.0.1:${ZQ_PORT[$name]}/" >"$o" 2>&1
    c1=$(cpu_ns "$pid")
    [ -n "$hf" ] && [ "${ZQ_ON[$name]}" = 1 ] && wait_collector_idle
    k1=$(cpu_ns "$COLL_PID")
    line=$(grep '^BENCH requests=' "$o")
    if [ -z "$line" ]; then
        cat "$o" >&2
        err "wrk against $name failed"
        return 1
    fi
    local W_requests W_duration_us W_p50_us W_p99_us W_errors W_sockerr
    for v in requests duration_us p50_us p99_us errors sockerr; do
        printf -v "W_$v" '%s' "$(sed -n "s/.* $v=\([0-9]*\).*/\1/p" <<<"$line")"
    done
    if [ "$W_errors" != 0 ] || [ "$W_sockerr" != 0 ] || [ "$W_requests" = 0 ]; then
        grep '^BENCH first_error' "$o" >&2
        err "$name: $W_errors error responses, $W_sockerr socket errors in $W_requests requests"
        return 1
    fi
    kill -0 "$pid" 2>/dev/null || { err "zaqard $name died"; return 1; }
    REQS[$name]=$((${REQS[$name]:-0} + W_requests))
    [ -z "$hf" ] || [ "$W_requests" -le "$MAXTRACED" ] || MAXTRACED=$W_requests
    awk -v r="$W_requests" -v d="$W_duration_us" -v p50="$W_p50_us" -v p99="$W_p99_us" \
        -v c="$((c1 - c0))" -v k="$((k1 - k0))" \
        'BEGIN {printf "%.1f %d %d %.0f %d %.0f\n", r / (d / 1e6), p50, p99, c / r, r, k}' >>"$out"
}
declare -A REQS=()
MAXTRACED=0 # most requests in one traced run

# ------------------------------------------------------------------ part 1

# bench_pool KIND POOL_URI REPS SECS: the five configurations, round-robin.
bench_pool() {
    local kind=$1 pool=$2 reps=$3 secs=$4 c r hf
    new_catalog "$kind"
    CATALOGS[$kind]=$CATALOG
    for c in "${CONFIGS[@]}"; do
        # shellcheck disable=SC2046
        start_zaqard "$kind-$c" "$pool" "--threads $ZQ_THREADS" $(env_of "$c")
        make_queues "$kind-$c" "$RUN_ID-$kind-$c" 1
    done
    # Headers for every traced run of this part, made before the first run
    # (each run gets its own file: no trace id is ever sent twice).
    local files=()
    NPAIRS=$((secs * TPS))
    for c in d e; do
        [ "$WARM" = 0 ] || files+=("$((WARM * TPS)):$TMP/hdr-$kind-$c-0.txt")
        for ((r = 1; r <= reps; r++)); do files+=("$NPAIRS:$TMP/hdr-$kind-$c-$r.txt"); done
    done
    make_headers "${files[@]}" || { err "cannot make trace headers"; return 1; }
    if [ "$WARM" = 0 ]; then
        log "   $reps rounds of ${secs} s runs (a b c d e), no warm-up; traced runs: $NPAIRS distinct traces each"
    else
        log "   warm-up ${WARM} s each, then $reps rounds of ${secs} s runs (a b c d e); traced runs: $NPAIRS distinct traces each"
        for c in "${CONFIGS[@]}"; do
            hf=""
            traced "$c" && hf=$TMP/hdr-$kind-$c-0.txt
            run_wrk "$kind-$c" "$RUN_ID-$kind-$c" "$WARM" "$CONNS" "$hf" /dev/null || return 1
        done
    fi
    for ((r = 1; r <= reps; r++)); do
        for c in "${CONFIGS[@]}"; do
            hf=""
            traced "$c" && hf=$TMP/hdr-$kind-$c-$r.txt
            run_wrk "$kind-$c" "$RUN_ID-$kind-$c" "$secs" "$CONNS" "$hf" "$TMP/res-$kind-$c" || return 1
            [ -z "$hf" ] || rm -f "$hf"
        done
        printf '   round %d/%d:' "$r" "$reps"
        for c in "${CONFIGS[@]}"; do printf ' %s %s' "$c" "$(tail -n 1 "$TMP/res-$kind-$c" | cut -d' ' -f1)"; done
        printf ' req/s\n'
    done
}

# table KIND ABSOLUTE(0/1): the medians and median per-round ratios to (a).
table() {
    "$PY" - "$TMP" "$1" "$2" <<'PY'
import statistics as st, sys
tmp, kind, absolute = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
desc = {"a": "(a) no preload", "b": "(b) preload, LDPROF_ENABLED=0",
        "c": "(c) preload, untraced (resting)", "d": "(d) traced, all drivers",
        "e": "(e) traced, drivers off"}
rows = {}
for c in "abcde":
    rows[c] = [list(map(float, l.split())) for l in open(f"{tmp}/res-{kind}-{c}")]
n = min(len(v) for v in rows.values())
def med(c, i): return st.median(r[i] for r in rows[c][:n])
def ratio(c, i): return st.median(rows[c][k][i] / rows["a"][k][i] for k in range(n))
def spread(c, i):
    v = [r[i] for r in rows[c][:n]]
    return (max(v) - min(v)) / st.median(v) * 100
if absolute:
    print(f"   {'configuration':33} {'req/s':>8} {'ratio':>6} {'spread':>6}  {'p50 ms':>6} {'ratio':>6}  {'p99 ms':>6} {'ratio':>6}  {'CPU us/req':>10} {'vs (a)':>7}")
    for c in "abcde":
        print(f"   {desc[c]:33} {med(c,0):8.0f} {ratio(c,0):6.3f} {spread(c,0):5.1f}%  {med(c,1)/1000:6.2f} {ratio(c,1):6.3f}  {med(c,2)/1000:6.2f} {ratio(c,2):6.3f}  {med(c,3)/1000:10.1f} {(med(c,3)-med('a',3))/1000:+7.1f}")
else:
    print(f"   {'configuration':33} {'req/s ratio':>11} {'p50 ratio':>9} {'p99 ratio':>9} {'CPU/req ratio':>13}")
    for c in "abcde":
        print(f"   {desc[c]:33} {ratio(c,0):11.3f} {ratio(c,1):9.3f} {ratio(c,2):9.3f} {ratio(c,3):13.3f}")
# collector CPU per traced request
for c in "de":
    k = sum(r[5] for r in rows[c][:n]) / sum(r[4] for r in rows[c][:n])
    print(f"   collector CPU per request in {c}: {k/1000:.1f} us")
PY
}

# ------------------------------------------------------------------ part 6

# rss_of PID: "VmRSS_kB Pss_kB threads"
rss_of() {
    local rss pss thr
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$1"/status)
    thr=$(awk '/^Threads:/ {print $2}' /proc/"$1"/status)
    pss=$(awk '/^Pss:/ {print $2}' /proc/"$1"/smaps_rollup 2>/dev/null)
    echo "$rss ${pss:-0} $thr"
}

bench_memory() {
    local t p name
    CATALOG=${CATALOGS[redis]}
    make_headers "$((MEMSECS * TPS)):$TMP/hdr-mem-1.txt" "$((MEMSECS * TPS)):$TMP/hdr-mem-8.txt" ||
        { err "cannot make trace headers"; return 1; }
    log "   warm-up: wrk -t1 -c16 for ${MEMSECS} s, every request with trace headers (traced under the preload)"
    for t in 1 8; do
        for p in none preload; do
            name=mem-$p-$t
            if [ $p = none ]; then
                start_zaqard "$name" "$REDIS_POOL" "--threads $t"
            else
                # shellcheck disable=SC2046
                start_zaqard "$name" "$REDIS_POOL" "--threads $t" $(env_of d)
            fi
            make_queues "$name" "$RUN_ID-$name" 1
            run_wrk "$name" "$RUN_ID-$name" "$MEMSECS" 16 "$TMP/hdr-mem-$t.txt" /dev/null || return 1
        done
    done
    "$PY" - <<PY
none1, pre1, none8, pre8 = [tuple(map(int, s.split())) for s in (
    "$(rss_of "${ZQ_PIDOF[mem-none-1]}")", "$(rss_of "${ZQ_PIDOF[mem-preload-1]}")",
    "$(rss_of "${ZQ_PIDOF[mem-none-8]}")", "$(rss_of "${ZQ_PIDOF[mem-preload-8]}")")]
print(f"   {'zaqard':14} {'threads':>7}  {'VmRSS kB':>9} {'Pss kB':>8}   {'+preload threads':>16} {'VmRSS kB':>9} {'Pss kB':>8}   {'added RSS':>9} {'added Pss':>9}")
for t, n, p in ((1, none1, pre1), (8, none8, pre8)):
    print(f"   {'--threads %d' % t:14} {n[2]:7d}  {n[0]:9d} {n[1]:8d}   {p[2]:16d} {p[0]:9d} {p[1]:8d}   {p[0]-n[0]:+9d} {p[1]-n[1]:+9d}")
rss_t = ((pre8[0] - none8[0]) - (pre1[0] - none1[0])) / 7
pss_t = ((pre8[1] - none8[1]) - (pre1[1] - none1[1])) / 7
print(f"   per zaqard thread (8 vs 1 thread, added by the preload): {rss_t:+.0f} kB RSS, {pss_t:+.0f} kB Pss")
PY
}

# ------------------------------------------------------------------ main

CLIENT_ID=$(cat /proc/sys/kernel/random/uuid)
log "== 1. zaqard throughput and latency under wrk ($([ "$quick" = 1 ] && echo quick || echo full) pass)"
log "   workload: tests/bench/zaqar-mix.lua (post 2, list, claim 2, get x2, delete x2, stats per 8 requests)"
log "   wrk -t1 -c$CONNS, zaqard --threads $ZQ_THREADS --log-level warn; $(
    if [ "$PIN" = 1 ]; then echo "wrk pinned to CPU $WRK_CPUS, zaqard to CPU $ZQ_CPUS (taskset); databases and collector unpinned"
    else echo "nothing pinned"; fi)"
log "   collector: ldprof-collectord --idle-ms 200 --fsync $FSYNC, waited on until idle after each traced run"
check_headers
start_collector

log "-- Redis pool + PostgreSQL catalog"
if bench_pool redis "$REDIS_POOL" "$REPS" "$SECS"; then
    log "   medians of $REPS runs; ratio = median over rounds of (run / same round's (a)); spread = (max-min)/median"
    table redis 1
else
    err "the Redis pool runs failed"
fi

if [ "$MAXTRACED" -le "$NPAIRS" ]; then
    log "   every traced request was a trace of its own (at most $MAXTRACED requests in a traced run, $NPAIRS traces made for each)"
else
    log "   !! a traced run made $MAXTRACED requests but had $NPAIRS distinct traces: some were sent twice (raise BENCH_TRACES_PER_S)"
fi

if [ "$MONGO" = 1 ] && [ -n "${LDPROF_TEST_MONGO_URI:-}" ]; then
    log "-- MongoDB pool (the stand-in: ratios only)"
    if bench_pool mongo "${LDPROF_TEST_MONGO_URI%/}/zq_$RUN_ID" "$MREPS" "$MSECS"; then
        table mongo 0
    else
        err "the MongoDB pool runs failed"
    fi
fi

zqs=()
log "-- collector after part 1 (every zaqard stopped first, so each sent its last spans and drop count)"
for c in "${CONFIGS[@]}"; do
    for k in redis mongo; do
        [ -n "${ZQ_PIDOF[$k-$c]:-}" ] && zqs+=("${ZQ_PIDOF[$k-$c]}")
    done
done
[ ${#zqs[@]} = 0 ] || stop_pids "${zqs[@]}"
wait_collector_idle
"$PY" - "$COLL_STATS" "$(for k in redis mongo; do for c in "${CONFIGS[@]}"; do
    [ -n "${ZQ_PIDOF[$k-$c]:-}" ] && printf '%s:%s:%s:%s ' "$k" "$c" "${ZQ_PIDOF[$k-$c]}" "${REQS[$k-$c]:-0}"; done; done)" <<'PY' || failed=1
import json, sys
s = json.load(open(sys.argv[1]))
senders = {x["pid"]: x for x in s.get("senders", [])}
bad = 0
print(f"   spans received {s['spans']}, dropped by the preload {s['dropped']}, datagrams rejected {s['datagrams']['rejected']}, traces written {s['traces']['written']} (+{s['traces']['rewritten']} rewritten), write errors {s['traces']['write_errors']}")
for item in sys.argv[2].split():
    kind, c, pid, reqs = item.split(":")
    x = senders.get(int(pid))
    reqs = max(int(reqs), 1)
    if c in "abc":
        if x and x.get("spans"):
            print(f"   {kind} ({c}): {x['spans']} spans from an untraced configuration"); bad = 1
        continue
    if not x or not x.get("spans"):
        print(f"   {kind} ({c}): no spans received: the traced runs were not traced"); bad = 1
        continue
    print(f"   {kind} ({c}): {reqs} requests, {x['spans']} spans ({x['spans'] / reqs:.2f} per request), dropped {x['dropped']}")
if s["dropped"] or s["datagrams"]["rejected"]:
    print("   !! spans were dropped or rejected: the traced figures are not honest")
sys.exit(bad)
PY

log
log "== 6. Memory: the preload's RSS in zaqard (Redis pool, every request traced)"
bench_memory || err "the memory part failed"
exit $failed
