#!/usr/bin/env bash
# 25-outbound-propagation.sh - a trace across four processes:
#
#   curl (ldprof run --profile KEY)                 http  (client)
#     -> A: tests/targets/http_server (threads)      wsgi, then http (its /fwd/ call)
#       -> B: tests/targets/http_server --epoll      wsgi, then http
#         -> zaqard                                  wsgi
#
# All three servers run under the preload; A forwards /fwd/PORT_B/REST to B,
# which forwards to zaqard.  The dump must be one chain of six spans, each the
# child of the one before (http -> wsgi -> http -> wsgi -> http -> wsgi), one
# base_id, each server's outbound http span recording the request it made
# (path, query, peer port, status_code).  A's keys are "other-key, KEY": its
# outbound headers must be signed with the key that verified the inbound
# request (KEY; B knows only KEY), or the chain breaks at B.  Then the same
# request without tracing: no dump at all.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
HTTP_SERVER=${LDPROF_BUILD:-${LDPROF_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/build}/tests/targets/http_server
[ -x "$HTTP_SERVER" ] || { REQ="" STATUS="" BODY=""; fail "not built: $HTTP_SERVER (make all)"; }
KEY="k25-$E2E_ID"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
: >"$E2E_TMP/empty.ini"
collector_start main

declare -A HS_PID=() HS_PORT=()
# hs_start NAME WRAPPER ARGS...: start http_server under WRAPPER, wait for its PORT line
hs_start() {
    local name=$1 wrap=$2 i
    shift 2
    "$wrap" "$HTTP_SERVER" "$@" >"$E2E_TMP/hs-$name.out" 2>"$E2E_TMP/hs-$name.err" </dev/null &
    HS_PID[$name]=$!
    for ((i = 0; i < 100; i++)); do
        HS_PORT[$name]=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$E2E_TMP/hs-$name.out")
        [ -n "${HS_PORT[$name]}" ] && { echo "http_server $name (pid ${HS_PID[$name]}) on port ${HS_PORT[$name]}"; return 0; }
        kill -0 "${HS_PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    REQ="http_server $name" STATUS="" BODY=$(cat "$E2E_TMP/hs-$name.err")
    fail "http_server $name did not start"
}
# hs_stop NAME: GET /quit, then it must exit 0 within 5 s
hs_stop() {
    local name=$1 i
    curl -s --max-time 5 -o /dev/null "http://127.0.0.1:${HS_PORT[$name]}/quit"
    for ((i = 0; i < 50; i++)); do
        kill -0 "${HS_PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${HS_PID[$name]}" 2>/dev/null; then
        kill -KILL "${HS_PID[$name]}"
        REQ="http_server $name /quit" STATUS="" BODY=""
        fail "http_server $name still running 5 s after /quit"
    fi
    wait "${HS_PID[$name]}"
    local rc=$?
    unset "HS_PID[$name]"
    [ $rc = 0 ] || { REQ="http_server $name /quit" STATUS="" BODY=$(cat "$E2E_TMP/hs-$name.err"); fail "http_server $name exited $rc"; }
}
_hs_atexit() { local n; for n in "${!HS_PID[@]}"; do kill -KILL "${HS_PID[$n]}" 2>/dev/null; done; }
on_exit _hs_atexit

step "three servers under the preload"
preload_wrapper "$E2E_TMP/wrap-z.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY, zq-other" \
    LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_SERVICE=zq-25
ZAQARD_WRAPPER="$E2E_TMP/wrap-z.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 4
ZPORT=${URL##*:}
preload_wrapper "$E2E_TMP/wrap-b.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
    LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_SERVICE=svc-b
hs_start b "$E2E_TMP/wrap-b.sh" --epoll
preload_wrapper "$E2E_TMP/wrap-a.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="other-key, $KEY" \
    LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_SERVICE=svc-a
hs_start a "$E2E_TMP/wrap-a.sh"
PA=${HS_PORT[a]} PB=${HS_PORT[b]}

step "curl in profile mode -> A -> B -> zaqard"
CHAIN="/fwd/$PB/fwd/$ZPORT/v2/queues?limit=5&chain=$E2E_ID"
LDPROF_SERVICE=e2e-client "$LDPROF_CLI" run --profile "$KEY" --collector "$COLL_SOCK" -- \
    curl -sS --max-time 20 -o "$E2E_TMP/resp" -w '%{http_code}' "http://127.0.0.1:$PA$CHAIN" >"$E2E_TMP/code" 2>"$E2E_TMP/client.err"
rc=$?
REQ="ldprof run --profile KEY -- curl http://127.0.0.1:$PA$CHAIN" STATUS=$(cat "$E2E_TMP/code") BODY=$(cat "$E2E_TMP/resp")
[ $rc = 0 ] || fail "ldprof run exited $rc: $(cat "$E2E_TMP/client.err")"
# 200 from A only if B answered 200, which it does only if zaqard did
expect_status 200
expect_json . "{\"path\": \"$CHAIN\", \"method\": \"GET\"}"
BASE=$(sed -n 's/^Trace ID: \([0-9a-f-]*\)$/\1/p' "$E2E_TMP/client.err")
[[ $BASE =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] || fail "no Trace ID on the client's stderr: $(cat "$E2E_TMP/client.err")"

step "the dump: one chain of six spans"
wait_dump "$BASE" 6 15
sleep 0.6
DUMP="$COLL_DIR/$BASE.json"
# (driver spans may hang below zaqard's wsgi span only: http_server has no
# database; they are checked by dump_sane and left out of the chain)
jq_expect "$DUMP" "$JQ_SPANS [core_spans | {name, service, depth, ncore}]" \
    '[{"name": "http", "service": "e2e-client", "depth": 1, "ncore": 1},
      {"name": "wsgi", "service": "svc-a", "depth": 2, "ncore": 1},
      {"name": "http", "service": "svc-a", "depth": 3, "ncore": 1},
      {"name": "wsgi", "service": "svc-b", "depth": 4, "ncore": 1},
      {"name": "http", "service": "svc-b", "depth": 5, "ncore": 1},
      {"name": "wsgi", "service": "zq-25", "depth": 6, "ncore": 0}]' "span chain"
dump_sane "$DUMP" "$BASE"
jq_expect "$DUMP" "$JQ_SPANS [spans | select(is_driver) | .service] | unique | . - [\"zq-25\"]" '[]' "driver spans outside zaqard"
# each span's parent is the previous span; the first one's is the base_id
jq_expect "$DUMP" "$JQ_SPANS [core_spans] | [foreach .[] as \$s ({p: \"$BASE\"}; {ok: (\$s.parent_id == .p and \$s.base_id == \"$BASE\"
        and \$s.start.parent_id == .p and \$s.stop.parent_id == .p), p: \$s.trace_id}; .ok)] | all" true "parent links"
jq_expect "$DUMP" "$JQ_SPANS [spans | .trace_id] | (unique | length) == length" true "distinct span ids"
jq_expect "$DUMP" '.stats | map_values(.count) | {http, wsgi}' '{"http": 3, "wsgi": 3}' "stats"
NSP=$(jq "$JQ_SPANS [spans] | length" "$DUMP")

step "the dump: what each hop received and sent"
Q="limit=5&chain=$E2E_ID"
jq_expect "$DUMP" "$JQ_SPANS [core_spans | if .name == \"wsgi\" then .start.info.request
        else {req: .start.info.request, status: .stop.info.status_code} end]" \
    "[{\"req\": {\"method\": \"GET\", \"path\": \"/fwd/$PB/fwd/$ZPORT/v2/queues\", \"query\": \"$Q\", \"host\": \"127.0.0.1\", \"port\": $PA}, \"status\": 200},
      {\"path\": \"/fwd/$PB/fwd/$ZPORT/v2/queues\", \"query\": \"$Q\", \"method\": \"GET\", \"scheme\": \"http\"},
      {\"req\": {\"method\": \"GET\", \"path\": \"/fwd/$ZPORT/v2/queues\", \"query\": \"$Q\", \"host\": \"127.0.0.1\", \"port\": $PB}, \"status\": 200},
      {\"path\": \"/fwd/$ZPORT/v2/queues\", \"query\": \"$Q\", \"method\": \"GET\", \"scheme\": \"http\"},
      {\"req\": {\"method\": \"GET\", \"path\": \"/v2/queues\", \"query\": \"$Q\", \"host\": \"127.0.0.1\", \"port\": $ZPORT}, \"status\": 200},
      {\"path\": \"/v2/queues\", \"query\": \"$Q\", \"method\": \"GET\", \"scheme\": \"http\"}]" "requests along the chain"
# causality: each span starts no earlier than its parent (same host clock)
jq_expect "$DUMP" "$JQ_SPANS [core_spans | .start.timestamp] | . == sort" true "start times along the chain"
cmp -s <("$LDPROF_CLI" trace show "$BASE" --dir "$COLL_DIR" --json) "$DUMP" || fail "trace show --json differs from the dump"
"$LDPROF_CLI" trace show "$BASE" --dir "$COLL_DIR"
if [ -x /usr/bin/osprofiler ]; then OSP=(/usr/bin/osprofiler); else OSP=(/usr/bin/python3 -m osprofiler.cmd.shell); fi
"${OSP[@]}" trace show --connection-string redis://127.0.0.1:1 --json "$DUMP" 2>/dev/null | cmp -s - "$DUMP" ||
    fail "osprofiler trace show re-renders the dump differently"

step "the same chain untraced: no dump"
curl -sS --max-time 20 -o "$E2E_TMP/resp2" -w '%{http_code}' "http://127.0.0.1:$PA${CHAIN}-untraced" >"$E2E_TMP/code2"
REQ="curl http://127.0.0.1:$PA${CHAIN}-untraced" STATUS=$(cat "$E2E_TMP/code2") BODY=$(cat "$E2E_TMP/resp2")
expect_status 200
sleep 1
hs_stop a
hs_stop b
zaqard_stop zq
collector_stop main
[ "$(dumps)" = "$DUMP" ] || { REQ="(dump directory)" STATUS="" BODY=""; fail "expected only $DUMP, got: $(dumps | tr '\n' ' ')"; }
jq_expect "$COLL_STATS" '{spans, rejected: .datagrams.rejected, dropped}' "{\"spans\": $NSP, \"rejected\": 0, \"dropped\": 0}" "collector stats"
for n in a b; do
    if grep -n 'ldprof' "$E2E_TMP/hs-$n.err"; then REQ="(http_server $n stderr)" STATUS="" BODY=""; fail "the preload wrote to http_server $n's stderr"; fi
done
echo "chain $BASE: curl -> A:$PA -> B:$PB -> zaqard:$ZPORT, 6 spans"
