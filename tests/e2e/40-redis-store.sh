#!/usr/bin/env bash
# 40-redis-store.sh - the collector's Redis store (OSProfiler's layout,
# LPUSH osprofiler_opt:<base_id>, compat §8) against the real OSProfiler:
#
#   (a) zaqard under the preload -> ldprof-collectord --redis: the real
#       `osprofiler trace show --connection-string redis://... --json` gives
#       the dump's bytes, and so does `ldprof trace show --redis --json`;
#   (b) events OSProfiler itself writes into Redis (its profiler + Redis
#       driver) read by `ldprof trace show --redis --json` give the bytes of
#       `osprofiler trace show --json`;
#       `ldprof trace list --redis` (SCAN) lists both traces with the rows
#       the directory listing gives and applies the same filters;
#   (c) Redis unreachable while the collector runs: spans are still received
#       and dumped, the failures are counted (stats file) and logged.
#
# Uses db 7 of $LDPROF_TEST_REDIS_URI (keys of this run only, removed at exit).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis
ldprof_need

REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
RURI="$REDIS_BASE/7"
HP=${REDIS_BASE#redis://}
RHOST=${HP%:*} RPORT=${HP##*:}
if [ -x /usr/bin/osprofiler ]; then OSP=(/usr/bin/osprofiler); else OSP=(/usr/bin/python3 -m osprofiler.cmd.shell); fi
/usr/bin/python3 -c 'import osprofiler, redis' 2>/dev/null || { echo "SKIP: python3-osprofiler/python3-redis missing"; exit 77; }
rcli() { redis-cli -h "$RHOST" -p "$RPORT" -n 7 "$@"; }
KEYS_USED=()
on_exit 'for k in "${KEYS_USED[@]}"; do rcli DEL "osprofiler_opt:$k" >/dev/null 2>&1; done'

KEY="k40-$E2E_ID"
SVC="zq-api-40"
PROJ="proj-$E2E_ID"

# ------------------------------------------------------------------ (a)
step "(a) collector with --redis $RURI"
collector_start main --redis "$RURI"
preload_wrapper "$E2E_TMP/wrap.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
    LDPROF_SERVICE="$SVC" LDPROF_PROJECT="$PROJ"
ZAQARD_WRAPPER="$E2E_TMP/wrap.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 2

step "(a) a traced request (zaqard's spans: wsgi and its driver spans)"
trace_headers "$KEY"
BASE=$TH_BASE
KEYS_USED+=("$BASE")
Q="q40-$E2E_ID"
req "${TH[@]}" POST "/v2/queues/$Q/messages" '{"messages": [{"ttl": 300, "body": {"event": "e2e-40"}}]}'
expect_status 201
wait_dump "$BASE" 1 15
sleep 0.6
collector_stop main
DUMP="$COLL_DIR/$BASE.json"
NEV=$(rcli LLEN "osprofiler_opt:$BASE")
NSP=$(jq "$JQ_SPANS [spans] | length" "$DUMP")
echo "dump: $NSP spans; redis: $NEV events"
REQ="LLEN osprofiler_opt:$BASE" STATUS="" BODY=""
[ "$NEV" = $((2 * NSP)) ] || fail "expected $((2 * NSP)) events in Redis, got $NEV"
jq_expect "$COLL_STATS" '.redis | {pushed, failed}' "{\"pushed\": $NEV, \"failed\": 0}" "stats: redis counters"

step "(a) every stored event is the dump's raw payload, compact json.dumps text"
rcli LRANGE "osprofiler_opt:$BASE" 0 -1 >"$E2E_TMP/a.events"
/usr/bin/python3 - "$E2E_TMP/a.events" "$DUMP" <<'PY' || fail "Redis events differ from the dump's raw payloads"
import json, sys
evs = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
dump = json.load(open(sys.argv[2]))
raw = {}
def walk(n):
    for k, v in n.get("info", {}).items():
        if k.startswith("meta.raw_payload."):
            raw[json.dumps(v)] = 1
    for c in n.get("children", []):
        walk(c)
walk(dump)
bad = [e for e in evs if e not in raw]
assert not bad and len(evs) == len(raw), (len(evs), len(raw), bad[:2])
# newest first: each span's stop is read before its start
seen = {}
for e in evs:
    j = json.loads(e)
    if j["name"].endswith("-start"):
        assert j["trace_id"] in seen, "start read before stop: %s" % e
    seen[j["trace_id"]] = 1
PY

step "(a) osprofiler trace show --connection-string $RURI --json == the dump"
"${OSP[@]}" trace show --connection-string "$RURI" --json "$BASE" >"$E2E_TMP/osp-a.json" 2>"$E2E_TMP/osp-a.err" ||
    { REQ="${OSP[*]} trace show --connection-string $RURI --json $BASE" STATUS="" BODY=$(cat "$E2E_TMP/osp-a.err"); fail "osprofiler trace show failed"; }
REQ="osprofiler (redis) vs dump" STATUS="" BODY=$(diff "$E2E_TMP/osp-a.json" "$DUMP" | head -30)
cmp -s "$E2E_TMP/osp-a.json" "$DUMP" || fail "osprofiler's report from Redis differs from the dump"
"$LDPROF_CLI" trace show --dir "$COLL_DIR" --json "$BASE" | cmp -s - "$E2E_TMP/osp-a.json" ||
    fail "ldprof trace show --json (dump) differs from osprofiler's report from Redis"
REQ="ldprof trace show --redis" BODY=$("$LDPROF_CLI" trace show --redis "$RURI" --json "$BASE" 2>&1 | diff - "$DUMP" | head -30)
"$LDPROF_CLI" trace show --redis "$RURI" --json "$BASE" | cmp -s - "$DUMP" ||
    fail "ldprof trace show --redis --json differs from the dump"
"$LDPROF_CLI" trace show --redis "$RURI" "$BASE" >"$E2E_TMP/tree-r.txt" &&
    "$LDPROF_CLI" trace show --dir "$COLL_DIR" "$BASE" | cmp -s - "$E2E_TMP/tree-r.txt" ||
    fail "the text tree from Redis differs from the one from the dump"

# ------------------------------------------------------------------ (b)
step "(b) OSProfiler's own profiler + Redis driver write a trace"
BASE_B=$(new_uuid)
KEYS_USED+=("$BASE_B")
/usr/bin/python3 - "$RURI" "$BASE_B" <<'PY' >"$E2E_TMP/b.out" 2>&1 || { REQ="(python osprofiler writer)" STATUS="" BODY=$(cat "$E2E_TMP/b.out"); fail "the OSProfiler writer failed"; }
import sys, time
from osprofiler import notifier, profiler
from osprofiler.drivers import base
uri, base_id = sys.argv[1], sys.argv[2]
d = base.get_driver(uri, project="osp-proj", service="osp-svc", host="osp-host", conf={})
notifier.set(d.notify)
profiler.init("hmac", base_id=base_id, parent_id=base_id)
with profiler.Trace("wsgi", info={"request": {"path": "/v2/x", "method": "GET"}}):
    with profiler.Trace("db", info={"db": {"statement": "SELECT 1", "params": []}}):
        time.sleep(0.002)
    profiler.start("http", info={"requests": {"url": "http://h/u\u00e9", "method": "POST"}})
    time.sleep(0.001)
    profiler.stop(info={"requests": {"status_code": 200}})
    with profiler.Trace("redis", info={"cmd": "GET k"}):
        pass
profiler.start("unfinished", info={"x": 1})
PY
rcli LLEN "osprofiler_opt:$BASE_B"
"${OSP[@]}" trace show --connection-string "$RURI" --json "$BASE_B" >"$E2E_TMP/osp-b.json" 2>"$E2E_TMP/osp-b.err" ||
    { REQ="${OSP[*]} trace show $BASE_B" STATUS="" BODY=$(cat "$E2E_TMP/osp-b.err"); fail "osprofiler trace show failed"; }
step "(b) ldprof trace show --redis --json == osprofiler trace show --json"
"$LDPROF_CLI" trace show --redis "$RURI" --json "$BASE_B" >"$E2E_TMP/ld-b.json" 2>"$E2E_TMP/ld-b.err" ||
    { REQ="ldprof trace show --redis $RURI --json $BASE_B" STATUS="" BODY=$(cat "$E2E_TMP/ld-b.err"); fail "ldprof trace show --redis failed"; }
REQ="osprofiler vs ldprof (redis)" STATUS="" BODY=$(diff "$E2E_TMP/osp-b.json" "$E2E_TMP/ld-b.json" | head -30)
cmp -s "$E2E_TMP/osp-b.json" "$E2E_TMP/ld-b.json" || fail "ldprof's report of OSProfiler's events differs"
jq_expect "$E2E_TMP/ld-b.json" '[.children[].info.name]' '["wsgi", "unfinished"]' "top-level spans"
"$LDPROF_CLI" trace show --redis "$RURI" "$BASE_B" >/dev/null || fail "ldprof trace show --redis (tree) failed"
REQ="ldprof trace show --redis (missing)" BODY=""
if "$LDPROF_CLI" trace show --redis "$RURI" "$(new_uuid)" >/dev/null 2>&1; then fail "a missing trace was shown"; fi

step "(b) ldprof trace list --redis: both traces, the rows of the directory listing, the filters"
# lrows ARGS...: the JSON rows of `ldprof trace list ARGS --format json` for BASE and BASE_B
lrows() {
    "$LDPROF_CLI" trace list "$@" --format json 2>"$E2E_TMP/list.err" >"$E2E_TMP/list.json" ||
        { REQ="ldprof trace list $* --format json" STATUS="" BODY=$(cat "$E2E_TMP/list.err" "$E2E_TMP/list.json"); fail "trace list failed"; }
    jq -c --arg a "$BASE" --arg b "$BASE_B" '[.[] | select(.base_id == $a or .base_id == $b)]' "$E2E_TMP/list.json"
}
REQ="ldprof trace list --redis $RURI --format json" STATUS=""
got=$(lrows --redis "$RURI")
BODY=$got
NSP_B=$(jq "$JQ_SPANS [spans] | length" "$E2E_TMP/ld-b.json")
jq -e --arg a "$BASE" --arg b "$BASE_B" --argjson na "$NSP" --argjson nb "$NSP_B" \
    'length == 2 and .[0].base_id == $b and .[0].spans == $nb and .[1].base_id == $a and .[1].spans == $na
     and .[0].root == "wsgi GET /v2/x (+1)" and .[0].errors == 0' <<<"$got" >/dev/null ||
    fail "expected rows (newest first) for $BASE_B ($NSP_B spans, root 'wsgi GET /v2/x (+1)') then $BASE ($NSP spans)"
# the row of the dump file and the row from Redis are the same
want=$(lrows --dir "$COLL_DIR")
[ "$(jq -c '.[1]' <<<"$got")" = "$(jq -c '.[0]' <<<"$want")" ] ||
    { BODY="redis: $(jq -c '.[1]' <<<"$got") dir: $(jq -c '.[0]' <<<"$want")"; fail "the Redis row of $BASE differs from the dump's"; }
"$LDPROF_CLI" trace list --redis "$RURI" >"$E2E_TMP/list.txt" || fail "trace list --redis (table) failed"
BODY=$(cat "$E2E_TMP/list.txt")
head -n 1 "$E2E_TMP/list.txt" | grep -q '^BASE_ID ' || fail "no table header"
grep -Eq "^$BASE_B .* wsgi GET /v2/x \(\+1\) +$NSP_B\$" "$E2E_TMP/list.txt" || fail "no table row for $BASE_B"
# filters: (arguments, the base ids expected, in order)
for c in "--name unfinished|$BASE_B" "--name POST|$BASE" "--min-duration 100000|" \
    "--since 1h|$BASE_B $BASE" "--since 2000-01-01T00:00Z --name wsgi|$BASE_B $BASE"; do
    args=${c%%|*} exp=${c#*|}
    # shellcheck disable=SC2086
    got=$(lrows --redis "$RURI" $args | jq -r '[.[].base_id] | join(" ")')
    [ "$got" = "$exp" ] || { REQ="ldprof trace list --redis $RURI $args" BODY=$(cat "$E2E_TMP/list.json"); fail "filter '$args': expected '$exp', got '$got'"; }
done
REQ="ldprof trace list --redis redis://127.0.0.1:1/7" BODY=""
if "$LDPROF_CLI" trace list --redis "redis://127.0.0.1:1/7" >/dev/null 2>"$E2E_TMP/list.err"; then fail "an unreachable Redis was listed"; fi
grep -q '^ldprof: trace list: connect 127.0.0.1:1: ' "$E2E_TMP/list.err" || { BODY=$(cat "$E2E_TMP/list.err"); fail "no clear error for an unreachable Redis"; }

step "(b) ldprof trace show --redis with a unique prefix (any case), an ambiguous one, none"
P=${BASE_B:0:13}
"$LDPROF_CLI" trace show --redis "$RURI" --json "${P^^}" >"$E2E_TMP/ld-bp.json" 2>"$E2E_TMP/ld-bp.err" ||
    { REQ="ldprof trace show --redis $RURI --json ${P^^}" STATUS="" BODY=$(cat "$E2E_TMP/ld-bp.err"); fail "a unique id prefix was not resolved"; }
cmp -s "$E2E_TMP/ld-bp.json" "$E2E_TMP/ld-b.json" || { REQ="trace show --redis ${P^^}" BODY=""; fail "the prefix gave another trace than the full id"; }
# two more keys sharing a prefix of their own: ambiguous, both listed
AMB="$(printf '%08x' $((RANDOM * 32768 + RANDOM)))-e2e4"
for x in 1 2; do
    KEYS_USED+=("$AMB-$x")
    rcli RPUSH "osprofiler_opt:$AMB-$x" '{}' >/dev/null
done
REQ="ldprof trace show --redis $RURI $AMB" STATUS="" BODY=""
rc=0
"$LDPROF_CLI" trace show --redis "$RURI" "$AMB" >/dev/null 2>"$E2E_TMP/amb.err" || rc=$?
BODY=$(cat "$E2E_TMP/amb.err")
[ "$rc" = 1 ] || fail "an ambiguous prefix: exit $rc, want 1 (as for a dump directory)"
grep -q "^ldprof: trace id prefix '$AMB' is ambiguous: 2 traces match (" "$E2E_TMP/amb.err" &&
    grep -q "$AMB-1" "$E2E_TMP/amb.err" && grep -q "$AMB-2" "$E2E_TMP/amb.err" ||
    fail "no clear error listing both candidates"
rc=0
"$LDPROF_CLI" trace show --redis "$RURI" "${AMB}f" >/dev/null 2>"$E2E_TMP/none.err" || rc=$?
BODY=$(cat "$E2E_TMP/none.err")
[ "$rc" = 1 ] && grep -q "^ldprof: no trace matches '${AMB}f' in $RURI" "$E2E_TMP/none.err" ||
    fail "a prefix matching nothing: exit $rc, want 1 and 'no trace matches'"
rcli DEL "osprofiler_opt:$AMB-1" "osprofiler_opt:$AMB-2" >/dev/null

# ------------------------------------------------------------------ (c)
step "(c) Redis unreachable: ingest and dumps continue, failures counted"
DEAD_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
collector_start down --redis "redis://127.0.0.1:$DEAD_PORT/7"
for n in 1 2 3; do
    LDPROF_SERVICE="e2e-client-40" "$LDPROF_CLI" run --profile "$KEY" --collector "$COLL_SOCK" -- \
        curl -sS --max-time 20 -o /dev/null -H "Client-ID: $CLIENT_ID" -H "X-Project-ID: $PROJECT" \
        "$URL/v2/queues?n=$n" 2>"$E2E_TMP/c.err$n" || { REQ="ldprof run curl" STATUS="" BODY=$(cat "$E2E_TMP/c.err$n"); fail "ldprof run failed"; }
    B=$(sed -n 's/^Trace ID: \([0-9a-f-]*\)$/\1/p' "$E2E_TMP/c.err$n")
    KEYS_USED+=("$B")
    wait_dump "$B" 1 15
done
wait_until 5 "stats file counts the Redis failures" \
    bash -c "jq -e '.redis.failed >= 3 and .redis.pushed == 0 and .redis.errors >= 1 and .spans >= 3' '$COLL_STATS' >/dev/null"
grep -q 'event=redis_error' "$COLL_LOG" || { REQ="(collector log)" STATUS="" BODY=$(tail -5 "$COLL_LOG"); fail "no event=redis_error line in the log"; }
collector_stop down
grep 'event=redis_stats' "$COLL_LOG"
echo "ok"
