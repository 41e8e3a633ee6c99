#!/usr/bin/env bash
# 43-collector-limits-status.sh - a collector an operator can leave running,
# with real traffic (zaqard under the preload):
#
#   (a) --max-spans-per-trace 3: a traced request's dump keeps 3 spans and
#       says how many were dropped (the "ldprof" key); OSProfiler's CLI
#       re-renders the marked dump to the same bytes, and ldprof trace
#       show/list (text, --json, --dot, --chrome, --otlp) read it; with
#       --redis, Redis gets the events of the 3 kept spans only;
#   (b) --max-traces 2: older dumps are pruned, the newest two kept;
#   (c) `ldprof status`: running, per-pid counts (zaqard's kernel pid,
#       service, exe, spans, the preload's own drop count), cut and pruned
#       counts; exit 3 once stopped, 1 without a collector;
#   (d) as root only: a sender running as `nobody` is refused (reason
#       peer_uid) by a collector with --allow-uid for another uid, and
#       accepted with --allow-uid nobody.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need

KEY="k43-$E2E_ID"
SVC="zq-api-43"
PROJ="proj-$E2E_ID"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
jqe() { jq -e "$@" >/dev/null 2>&1; }
have_dumps() { [ -n "$(dumps)" ]; }
if [ -x /usr/bin/osprofiler ]; then OSP=(/usr/bin/osprofiler); else OSP=(/usr/bin/python3 -m osprofiler.cmd.shell); fi

# ------------------------------------------------------------------ (a)
RURI="$REDIS_BASE/12"
HP=${REDIS_BASE#redis://}
rcli() { redis-cli -h "${HP%:*}" -p "${HP##*:}" -n 12 "$@"; }
RKEYS=()
on_exit 'for k in "${RKEYS[@]}"; do rcli DEL "osprofiler_opt:$k" >/dev/null 2>&1; done'

step "(a) collector with --max-spans-per-trace 3 --max-traces 2 --redis $RURI"
# --idle-ms 1000: the request's spans all reach the trace before it is written
# (a span arriving after its dump holds 3 is cut there, when Redis has it)
collector_start main --max-spans-per-trace 3 --max-traces 2 --redis "$RURI" --idle-ms 1000
preload_wrapper "$E2E_TMP/wrap.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
    LDPROF_SERVICE="$SVC" LDPROF_PROJECT="$PROJ"
ZAQARD_WRAPPER="$E2E_TMP/wrap.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 2
ZPID=${ZQ_PID[zq]}

step "(a) a traced POST (wsgi and its driver spans: more than 3)"
trace_headers "$KEY"
BASE=$TH_BASE
RKEYS+=("$BASE")
req "${TH[@]}" POST "/v2/queues/q43-$E2E_ID/messages" '{"messages": [{"ttl": 300, "body": {"event": "e2e-43"}}]}'
expect_status 201
DUMP="$COLL_DIR/$BASE.json"
_marked() { [ -s "$DUMP" ] && jq -e '.ldprof.truncated == true' "$DUMP" >/dev/null 2>&1; }
wait_until 15 "a dump of $BASE with the truncation marker" _marked
# every span of the request has arrived once the stats file's count is stable
_stable() {
    local s
    s=$(jq -r '.spans' "$COLL_STATS" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" = "${LAST_SPANS:-}" ] && [ "$s" -gt 3 ] && return 0
    LAST_SPANS=$s
    sleep 1.1 # the stats file is rewritten at most every second
    return 1
}
wait_until 15 "the span count settles" _stable
sleep 0.5 # the last late spans' rewrite
RECV=$(jq -r '.spans' "$COLL_STATS")
cp "$DUMP" "$E2E_TMP/a.json"
jq_expect "$DUMP" "$JQ_SPANS [spans] | length" 3 "spans kept"
jq_expect "$DUMP" '.ldprof' "{\"truncated\": true, \"spans_dropped\": $((RECV - 3)), \"max_spans_per_trace\": 3}" "the marker"
jq_expect "$DUMP" 'keys_unsorted' '["info", "children", "stats", "ldprof"]' "the marker is one extra key, last"
jq_expect "$COLL_STATS" '.limits | {max_spans_per_trace, spans_dropped}' \
    "{\"max_spans_per_trace\": 3, \"spans_dropped\": $((RECV - 3))}" "stats: limits"
echo "$RECV spans received, 3 kept, $((RECV - 3)) dropped and counted"

step "(a) Redis got what the dump got: the events of the 3 kept spans"
jq -r "$JQ_SPANS spans | .trace_id" "$DUMP" | sort >"$E2E_TMP/dump.ids"
rcli LRANGE "osprofiler_opt:$BASE" 0 -1 | jq -r .trace_id | sort >"$E2E_TMP/redis.ids"
REQ="LRANGE osprofiler_opt:$BASE" STATUS="" BODY="dump: $(tr '\n' ' ' <"$E2E_TMP/dump.ids") redis: $(tr '\n' ' ' <"$E2E_TMP/redis.ids")"
NEV=$(jq "$JQ_SPANS [spans | (.start, .stop) | select(. != null)] | length" "$DUMP")
[ "$(uniq "$E2E_TMP/redis.ids")" = "$(cat "$E2E_TMP/dump.ids")" ] &&
    [ "$(wc -l <"$E2E_TMP/redis.ids")" = "$NEV" ] ||
    fail "Redis holds other spans than the dump (want the $NEV events of its 3 spans)"
jq_expect "$COLL_STATS" '.redis | {pushed, failed}' "{\"pushed\": $NEV, \"failed\": 0}" "stats: redis counters"

step "(a) OSProfiler's CLI re-renders the marked dump to the same bytes"
"${OSP[@]}" trace show --connection-string redis://127.0.0.1:1 --json "$DUMP" >"$E2E_TMP/osp.json" 2>"$E2E_TMP/osp.err" ||
    { REQ="osprofiler trace show --json $DUMP" STATUS="" BODY=$(cat "$E2E_TMP/osp.err"); fail "osprofiler trace show failed on a marked dump"; }
REQ="osprofiler vs marked dump" STATUS="" BODY=$(diff "$E2E_TMP/osp.json" "$DUMP" | head -20)
cmp -s "$E2E_TMP/osp.json" "$DUMP" || fail "osprofiler's re-rendering of the marked dump differs"

step "(a) ldprof trace show / list read the marked dump"
"$LDPROF_CLI" trace show --dir "$COLL_DIR" --json "$BASE" | cmp -s - "$DUMP" || { REQ="ldprof trace show --json" BODY=""; fail "trace show --json differs from the dump"; }
"$LDPROF_CLI" trace show --dir "$COLL_DIR" "$BASE" >"$E2E_TMP/show.txt" 2>&1 || { REQ="ldprof trace show" BODY=$(cat "$E2E_TMP/show.txt"); fail "trace show (text) failed"; }
grep -q "^trace $BASE" "$E2E_TMP/show.txt" || { REQ="ldprof trace show" BODY=$(cat "$E2E_TMP/show.txt"); fail "no 'trace $BASE' line"; }
for f in --dot --chrome --otlp; do
    "$LDPROF_CLI" trace show --dir "$COLL_DIR" "$f" "$BASE" >"$E2E_TMP/show$f" 2>&1 ||
        { REQ="ldprof trace show $f" BODY=$(head -c 500 "$E2E_TMP/show$f"); fail "trace show $f failed on a marked dump"; }
done
"$LDPROF_CLI" trace list --dir "$COLL_DIR" --format json >"$E2E_TMP/list.json" 2>&1 || { REQ="ldprof trace list" BODY=$(cat "$E2E_TMP/list.json"); fail "trace list failed"; }
jq_expect "$E2E_TMP/list.json" ".[] | select(.base_id == \"$BASE\") | .spans" 3 "trace list: the marked trace"

# ------------------------------------------------------------------ (b)
step "(b) four more traced requests; --max-traces 2 keeps the newest two dumps"
NEW=()
for ((i = 0; i < 4; i++)); do
    trace_headers "$KEY"
    NEW+=("$TH_BASE")
    req "${TH[@]}" GET "/v2/queues/q43-$E2E_ID/messages?echo=true&n=$i"
    expect_status 200
    wait_until 15 "dump of request $i" test -s "$COLL_DIR/$TH_BASE.json"
    sleep 0.05 # distinct modification times
done
_pruned() { [ "$(dumps | wc -l)" = 2 ] && [ -e "$COLL_DIR/${NEW[2]}.json" ] && [ -e "$COLL_DIR/${NEW[3]}.json" ]; }
wait_until 15 "only the newest two dumps left" _pruned
wait_until 15 "stats: 3 pruned" jqe '.retention.pruned_by_count == 3' "$COLL_STATS"
grep -q 'event=retention_pruned by_count=' "$COLL_LOG" || { REQ="(log)" STATUS="" BODY=""; fail "no retention_pruned log line"; }
echo "kept: $(dumps | xargs -n1 basename | tr '\n' ' ')"

# ------------------------------------------------------------------ (c)
step "(c) ldprof status: running, per-pid counts"
wait_until 15 "stats show every request's spans" jqe --argjson p "$ZPID" '.senders[] | select(.pid == $p) | .datagrams > 0' "$COLL_STATS"
"$LDPROF_CLI" status --socket "$COLL_SOCK" >"$E2E_TMP/status.txt" 2>&1
rc=$?
cat "$E2E_TMP/status.txt"
REQ="ldprof status --socket $COLL_SOCK" STATUS="exit $rc" BODY=$(cat "$E2E_TMP/status.txt")
[ $rc = 0 ] || fail "ldprof status exited $rc with a running collector"
grep -q "^collector: running, pid $COLL_PID," "$E2E_TMP/status.txt" || fail "no 'collector: running, pid $COLL_PID' line"
ZEXE=$(readlink -f "$ZAQARD")
grep -Eq "^ +$ZPID +$SVC +[0-9]+ +[0-9]+ +0 +0  $ZEXE\$" "$E2E_TMP/status.txt" ||
    fail "no sender line for zaqard (pid $ZPID, $SVC, 0 rejected, 0 dropped, $ZEXE)"
grep -Eq "^limits: .*cut: [1-9][0-9]* spans dropped" "$E2E_TMP/status.txt" || fail "no limits line with the cut count"
grep -Eq "^retention: keep 2 dumps, .*pruned 3 by count" "$E2E_TMP/status.txt" || fail "no retention line with 3 pruned"
"$LDPROF_CLI" status --socket "$COLL_SOCK" --json >"$E2E_TMP/status.json" || fail "ldprof status --json failed"
jq_expect "$E2E_TMP/status.json" "{running, pid_alive, socket_answers, z: (.stats.senders[] | select(.pid == $ZPID) | {service, exe, dropped, rejected, ok: (.spans > 3)})}" \
    "{\"running\": true, \"pid_alive\": true, \"socket_answers\": true, \"z\": {\"service\": \"$SVC\", \"exe\": \"$ZEXE\", \"dropped\": 0, \"rejected\": 0, \"ok\": true}}" "status --json"

zaqard_stop zq
collector_stop main
"$LDPROF_CLI" status --socket "$COLL_SOCK" >"$E2E_TMP/status2.txt" 2>&1
rc=$?
REQ="ldprof status (stopped)" STATUS="exit $rc" BODY=$(cat "$E2E_TMP/status2.txt")
[ $rc = 3 ] || fail "ldprof status: exit $rc for a stopped collector, expected 3"
grep -q "NOT running" "$E2E_TMP/status2.txt" || fail "no 'NOT running'"
"$LDPROF_CLI" status --socket "$E2E_TMP/none.sock" >"$E2E_TMP/status3.txt" 2>&1
rc=$?
REQ="ldprof status (no collector)" STATUS="exit $rc" BODY=$(cat "$E2E_TMP/status3.txt")
[ $rc = 1 ] && grep -q "^ldprof: status: no collector: no stats file" "$E2E_TMP/status3.txt" || fail "expected exit 1 and 'no collector' without a stats file"

# ------------------------------------------------------------------ (d)
if [ "$(id -u)" != 0 ]; then
    echo "(d) skipped: sending as another uid needs root"
    exit 0
fi
NOBODY_UID=$(id -u nobody) || { echo "(d) skipped: no user nobody"; exit 0; }
chmod 711 "$E2E_TMP" # nobody must reach the socket (not list anything)
zaqard_start plain --pool "r1=$REDIS_BASE/8" --threads 1
nobody_request() { # $1: socket; prints the client's stderr (Trace ID line)
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        env HOME=/ LD_PRELOAD="$LDPROF_LIB" LDPROF_COLLECTOR="$1" LDPROF_PROFILE="$KEY" LDPROF_SERVICE=nobody-43 \
        curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "Client-ID: $CLIENT_ID" -H "X-Project-ID: $PROJECT" \
        "$URL/v2/queues?nobody=1"
}

step "(d) --allow-uid 12345: a sender running as nobody is refused (peer_uid)"
collector_start refuse --allow-uid 12345
[ "$(stat -c %a "$COLL_SOCK")" = 666 ] || { REQ="(socket mode)" STATUS="" BODY=""; fail "socket mode $(stat -c %a "$COLL_SOCK"), expected 666 with --allow-uid"; }
[ "$(stat -c %a "$(dirname "$COLL_SOCK")")" = 711 ] || { REQ="(socket dir mode)" STATUS="" BODY=""; fail "socket dir mode $(stat -c %a "$(dirname "$COLL_SOCK")"), expected 711"; }
code=$(nobody_request "$COLL_SOCK" 2>"$E2E_TMP/nobody1.err")
REQ="curl as nobody under the preload" STATUS="$code" BODY=$(cat "$E2E_TMP/nobody1.err")
[ "$code" = 200 ] || fail "the request as nobody failed"
wait_until 15 "the refused datagram counted" jqe '.datagrams.rejected_by_reason.peer_uid >= 1' "$COLL_STATS"
jq_expect "$COLL_STATS" '{accepted: .datagrams.accepted, senders: (.senders | length), uid_rejected: (.peers.uid_rejected >= 1)}' \
    '{"accepted": 0, "senders": 0, "uid_rejected": true}' "stats: refused"
grep -q "event=reject reason=peer_uid pid=[0-9]* uid=$NOBODY_UID " "$COLL_LOG" || { REQ="(log)" BODY=$(grep reject "$COLL_LOG" | head -3); fail "no reject reason=peer_uid uid=$NOBODY_UID log line"; }
sleep 0.5
[ -z "$(dumps)" ] || { REQ="(dumps)" BODY=$(dumps); fail "a refused sender's trace was written"; }
collector_stop refuse

step "(d) --allow-uid nobody: accepted, counted under the sender's pid"
collector_start allow --allow-uid "12345,nobody"
code=$(nobody_request "$COLL_SOCK" 2>"$E2E_TMP/nobody2.err")
REQ="curl as nobody under the preload" STATUS="$code" BODY=$(cat "$E2E_TMP/nobody2.err")
[ "$code" = 200 ] || fail "the request as nobody failed"
wait_until 15 "the nobody trace is written" have_dumps
D=$(dumps | head -1)
jq_expect "$D" "$JQ_SPANS [spans | {name, service}]" '[{"name": "http", "service": "nobody-43"}]' "the client's http span"
wait_until 15 "the sender in the stats" jqe '.senders | length == 1' "$COLL_STATS"
jq_expect "$COLL_STATS" '{rejected: .datagrams.rejected, s: (.senders[0] | {service, mismatches: .pid_mismatches, same: (.pid == .header_pid)})}' \
    '{"rejected": 0, "s": {"service": "nobody-43", "mismatches": 0, "same": true}}' "stats: accepted"
collector_stop allow
zaqard_stop plain
