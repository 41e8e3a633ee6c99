#!/usr/bin/env bash
# 24-no-collector.sh - the collector is absent, arrives, leaves and comes back.
#
# zaqard runs under the preload with LDPROF_COLLECTOR naming a socket path
# where nothing listens.  Documented (docs/limitations.md, Transport): spans
# never block the program; with no collector they are dropped and counted,
# and the cumulative count travels in every datagram header, so the
# collector's stats show it (docs/formats.md §6).
#
#   phase 1  no collector: traced and untraced requests (sequential and
#            concurrent) all answer normally and quickly
#   phase 2  a collector starts at that path: new traced requests are dumped
#            (the preload reaches it without a restart); phase 1's traces
#            are not (dropped), and the stats show exactly phase 1's spans
#            as dropped by zaqard
#   phase 3  the collector stops again (socket removed): requests still fine
#   phase 4  a new collector at the same path: dumps again; dropped grows by
#            exactly phase 3's traced spans
# and zaqard exits 0 on SIGTERM at the end.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
KEY="k24-$E2E_ID"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
: >"$E2E_TMP/empty.ini"
SOCK="$E2E_TMP/coll-late/c.sock" # where collector_start late will listen
mkdir -p -m 700 "$E2E_TMP/coll-late"
MAX_MS=2000 # generous bound for one request on loopback
Q="nc-$E2E_ID"
declare -A TRACED=() # base_id -> phase
NPOSTED=0

step "zaqard under the preload, LDPROF_COLLECTOR=$SOCK (nothing there)"
[ ! -e "$SOCK" ] || { REQ="" STATUS="" BODY=""; fail "$SOCK exists"; }
# Driver spans off (options documented in docs/configuration.md): this test
# counts dropped spans exactly, one wsgi span per traced request.
preload_wrapper "$E2E_TMP/wrap.sh" LDPROF_COLLECTOR="$SOCK" LDPROF_HMAC_KEYS="$KEY" LDPROF_CONFIG="$E2E_TMP/empty.ini" \
    LDPROF_SERVICE=zq-24 LDPROF_TRACE_REDIS=false LDPROF_TRACE_SQLALCHEMY=false LDPROF_TRACE_MONGODB=false \
    LDPROF_TRACE_POOLING=false LDPROF_TRACE_SOCKET=false
ZAQARD_WRAPPER="$E2E_TMP/wrap.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 4
ZPID=${ZQ_PID[zq]}

# post PHASE N TRACED(0/1): N sequential POSTs, each checked and timed;
# traced ones with a fresh base_id (recorded in TRACED)
post() {
    local phase=$1 n=$2 traced=$3 i t0 ms b
    for ((i = 0; i < n; i++)); do
        local h=()
        if [ "$traced" = 1 ]; then
            b=$(new_uuid)
            trace_headers "$KEY" "$b"
            h=("${TH[@]}")
            TRACED[$b]=$phase
        fi
        t0=${EPOCHREALTIME/[.,]/}
        req "${h[@]}" POST "/v2/queues/$Q/messages" "{\"messages\": [{\"body\": {\"phase\": \"$phase\", \"i\": $i, \"traced\": $traced}}]}"
        ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
        expect_status 201
        expect_json '.resources | length' 1
        [ "$ms" -le $MAX_MS ] || fail "phase $phase: request took $ms ms (bound $MAX_MS ms)"
        NPOSTED=$((NPOSTED + 1))
    done
}

# burst PHASE C R: C concurrent traced curl clients, R requests each (one
# connection), all within a bound
burst() {
    local phase=$1 c=$2 r=$3 i j b args pids=() t0 ms
    for ((i = 0; i < c; i++)); do
        args=()
        for ((j = 0; j < r; j++)); do
            b=$(new_uuid)
            trace_headers "$KEY" "$b"
            TRACED[$b]=$phase
            [ $j = 0 ] || args+=(--next)
            args+=(-o /dev/null -w '%{http_code}\n' -X POST -H "Client-ID: $CLIENT_ID" -H "X-Project-ID: $PROJECT"
                -H 'Content-Type: application/json' "${TH[@]}"
                --data "{\"messages\": [{\"body\": {\"phase\": \"$phase\", \"burst\": $i}}]}" "$URL/v2/queues/$Q/messages")
        done
        curl -sS --max-time 10 "${args[@]}" >"$E2E_TMP/burst-$phase-$i" 2>&1 &
        pids+=($!)
    done
    t0=${EPOCHREALTIME/[.,]/}
    for i in "${pids[@]}"; do wait "$i" || { REQ="(burst $phase)" STATUS="" BODY=""; fail "phase $phase: a burst client failed"; }; done
    ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    REQ="(burst $phase: $c clients x $r POSTs)" STATUS="" BODY=$(cat "$E2E_TMP"/burst-"$phase"-*)
    [ "$(cat "$E2E_TMP"/burst-"$phase"-* | sort -u)" = 201 ] && [ "$(cat "$E2E_TMP"/burst-"$phase"-* | wc -l)" = $((c * r)) ] ||
        fail "phase $phase: burst answers are not all 201"
    [ "$ms" -le $((MAX_MS * 2)) ] || fail "phase $phase: burst took $ms ms"
    NPOSTED=$((NPOSTED + c * r))
    echo "phase $phase: burst of $((c * r)) traced requests in $ms ms"
}

count_phase() { local b n=0; for b in "${!TRACED[@]}"; do [ "${TRACED[$b]}" = "$1" ] && n=$((n + 1)); done; echo $n; }

step "phase 1: no collector - traced and untraced requests work normally"
post 1 10 1
post 1 10 0
burst 1 6 4
req GET /v2/ping
expect_status 204
req GET "/v2/queues/$Q/stats"
expect_status 200
expect_json '.messages.total' "$NPOSTED"
zaqard_alive zq || fail "zaqard died"
sleep 0.5 # several flush intervals: phase 1's spans have been dropped by now
N1=$(count_phase 1)
echo "phase 1: $N1 traced, 10 untraced requests, all fine"

step "phase 2: a collector starts at $SOCK; new traced requests are dumped"
collector_start late
[ "$COLL_SOCK" = "$SOCK" ] || fail "test bug: collector socket $COLL_SOCK"
# The preload retries the connection at most once a second (and drops what
# it flushes meanwhile), and has unreported drops: once connected it sends
# them on its own (a STATS message), which shows in the stats file (rewritten
# once a second): the signal that it is connected, before any new request.
stats_show_drops() {
    [ -s "$COLL_STATS" ] && jq -e ".senders[] | select(.pid == $ZPID) | .dropped == $1" "$COLL_STATS" >/dev/null 2>&1
}
wait_until 10 "zaqard (pid $ZPID) did not report its $N1 dropped spans to the new collector" stats_show_drops "$N1"
jq_expect "$COLL_STATS" "{spans, dropped, stats_messages: (.datagrams.stats_messages > 0)}" \
    "{\"spans\": 0, \"dropped\": $N1, \"stats_messages\": true}" "phase 2: drops reported before any new span"
post 2 5 1
post 2 3 0
for b in "${!TRACED[@]}"; do
    [ "${TRACED[$b]}" = 2 ] && wait_dump "$b" 1 15
done
sleep 1
collector_stop late
for f in $(dumps); do
    b=$(basename "$f" .json)
    [ "${TRACED[$b]:-}" = 2 ] || { REQ="(dumps of phase 2)" STATUS="" BODY=$(_jq_file_summary "$f"); fail "unexpected dump $b (phase '${TRACED[$b]:-untraced}')"; }
done
N2=$(count_phase 2)
[ "$(dumps | wc -l)" = "$N2" ] || fail "phase 2: expected $N2 dumps, got $(dumps | wc -l)"
jq_expect "$COLL_STATS" "{spans, rejected: .datagrams.rejected, dropped, zaqard: [.senders[] | select(.pid == $ZPID) | {spans, dropped}]}" \
    "{\"spans\": $N2, \"rejected\": 0, \"dropped\": $N1, \"zaqard\": [{\"spans\": $N2, \"dropped\": $N1}]}" \
    "phase 2: collector stats (phase 1's $N1 spans dropped and counted)"
echo "phase 2: $N2 dumps; $N1 dropped spans reported"
cp "$COLL_STATS" "$E2E_TMP/stats-phase2.json"
rm -rf "$COLL_DIR" # its dumps are checked; phase 4 starts empty

step "phase 3: the collector is gone again (socket removed)"
[ ! -e "$SOCK" ] || fail "the collector left its socket $SOCK behind"
post 3 6 1
post 3 4 0
burst 3 4 3
sleep 0.5
N3=$(count_phase 3)

step "phase 4: a new collector at the same path: dumps again"
collector_start late
wait_until 10 "zaqard (pid $ZPID) did not report its $((N1 + N3)) dropped spans to the new collector" stats_show_drops "$((N1 + N3))"
post 4 5 1
for b in "${!TRACED[@]}"; do
    [ "${TRACED[$b]}" = 4 ] && wait_dump "$b" 1 15
done
sleep 1
collector_stop late
N4=$(count_phase 4)
for f in $(dumps); do
    b=$(basename "$f" .json)
    [ "${TRACED[$b]:-}" = 4 ] || { REQ="(dumps of phase 4)" STATUS="" BODY=$(_jq_file_summary "$f"); fail "unexpected dump $b (phase '${TRACED[$b]:-untraced}')"; }
done
[ "$(dumps | wc -l)" = "$N4" ] || fail "phase 4: expected $N4 dumps, got $(dumps | wc -l)"
for f in $(dumps); do
    jq_expect "$f" "$JQ_SPANS [spans | {name, service, path: .start.info.request.path}]" \
        "[{\"name\": \"wsgi\", \"service\": \"zq-24\", \"path\": \"/v2/queues/$Q/messages\"}]" "phase 4 dump"
done
# dropped is cumulative per process: phase 1 + phase 3
jq_expect "$COLL_STATS" "{spans, rejected: .datagrams.rejected, dropped, zaqard: [.senders[] | select(.pid == $ZPID) | {spans, dropped}]}" \
    "{\"spans\": $N4, \"rejected\": 0, \"dropped\": $((N1 + N3)), \"zaqard\": [{\"spans\": $N4, \"dropped\": $((N1 + N3))}]}" \
    "phase 4: collector stats (phases 1 and 3 dropped: $N1 + $N3)"

step "all messages are there; SIGTERM: exit 0"
req GET "/v2/queues/$Q/stats"
expect_status 200
expect_json '.messages.total' "$NPOSTED"
t0=${EPOCHREALTIME/[.,]/}
zaqard_stop zq
echo "phases: 1: $N1 traced dropped, 2: $N2 dumped, 3: $N3 dropped, 4: $N4 dumped; $NPOSTED messages; stop took $(((${EPOCHREALTIME/[.,]/} - t0) / 1000)) ms"
