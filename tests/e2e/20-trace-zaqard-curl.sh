#!/usr/bin/env bash
# 20-trace-zaqard-curl.sh - one traced request end to end:
#
#   ldprof run --profile KEY -- curl (client profile mode, preloaded)
#     --> zaqard under LD_PRELOAD=libldprof.so (hmac_keys=KEY, redis pool)
#     --> ldprof-collectord --> <dir>/<base_id>.json
#
# and the dump is checked field by field with jq: a client `http` span with a
# `wsgi` child of the right request (path, method, query, scheme), one
# base_id, the parent links, service/project/host; the CLI (`trace list`,
# `trace show` text and --json) and OSProfiler's own CLI re-rendering the
# dump to the same bytes.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need

KEY="k20-$E2E_ID"
SVC="zq-api-20"
PROJ="proj-$E2E_ID"
CLIENT_SVC="e2e-client"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}

step "collector on a private socket"
collector_start main

step "zaqard under the preload (hmac_keys=$KEY, service=$SVC, project=$PROJ)"
preload_wrapper "$E2E_TMP/wrap.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
    LDPROF_SERVICE="$SVC" LDPROF_PROJECT="$PROJ"
ZAQARD_WRAPPER="$E2E_TMP/wrap.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 4

# zaqard_start's readiness probes were untraced: nothing may have been sent.
sleep 0.5
[ -z "$(dumps)" ] || { REQ="(readiness probes)" STATUS="" BODY=""; fail "untraced probes produced dumps: $(dumps)"; }

step "curl in profile mode: POST messages with a query string"
Q="q20-$E2E_ID"
PATH_="/v2/queues/$Q/messages"
QUERY="marker=1&x=a%20b"
printf '%s' '{"messages": [{"ttl": 300, "body": {"event": "e2e-20"}}]}' >"$E2E_TMP/body.json"
t0=$SECONDS
LDPROF_SERVICE="$CLIENT_SVC" "$LDPROF_CLI" run --profile "$KEY" --collector "$COLL_SOCK" -- \
    curl -sS --max-time 20 -o "$E2E_TMP/resp" -w '%{http_code}' \
    -H "Client-ID: $CLIENT_ID" -H "X-Project-ID: $PROJECT" -H 'Content-Type: application/json' \
    --data-binary "@$E2E_TMP/body.json" "$URL$PATH_?$QUERY" >"$E2E_TMP/code" 2>"$E2E_TMP/client.err"
rc=$?
REQ="ldprof run --profile KEY -- curl -X POST $URL$PATH_?$QUERY" STATUS=$(cat "$E2E_TMP/code") BODY=$(cat "$E2E_TMP/resp")
[ $rc = 0 ] || fail "ldprof run exited $rc: $(cat "$E2E_TMP/client.err")"
expect_status 201
expect_json '.resources | length' 1
expect_json '.resources[0] | test("^/v2/queues/'"$Q"'/messages/[A-Za-z0-9_-]+$")' true
echo "client stderr:"
sed 's/^/  | /' "$E2E_TMP/client.err"

step "the client printed its Trace ID (and how to show it)"
BASE=$(sed -n 's/^Trace ID: \([0-9a-f-]*\)$/\1/p' "$E2E_TMP/client.err")
[ "$(wc -l <<<"$BASE")" = 1 ] && [[ $BASE =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
    fail "expected one 'Trace ID: <uuid4>' line on the client's stderr, got: $(cat "$E2E_TMP/client.err")"
grep -qx "Show it: ldprof trace show $BASE" "$E2E_TMP/client.err" ||
    fail "no 'Show it: ldprof trace show $BASE' line on the client's stderr"

step "the dump $BASE.json appears with both spans (http, wsgi)"
wait_dump "$BASE" 2 15
DUMP="$COLL_DIR/$BASE.json"
# let any late span land, then stop the collector: every trace is written
sleep 0.6
collector_stop main
[ "$(dumps)" = "$DUMP" ] || { REQ="(dump dir)" STATUS="" BODY=""; fail "expected exactly one dump ($DUMP), got: $(dumps | tr '\n' ' ')"; }
cp "$DUMP" "$E2E_TMP/dump.copy"
echo "dump: $DUMP ($(wc -c <"$DUMP") bytes)"

step "dump: the tree (total -> http -> wsgi)"
# The skeleton is exact; driver spans (redis, db, pooling: zaqard's work for
# the request, as the driver hooks arrive) may only hang below the wsgi span.
jq_expect "$DUMP" '.info.name' '"total"'
jq_expect "$DUMP" "$JQ_SPANS [core_spans | {name, depth, ncore}]" \
    '[{"name": "http", "depth": 1, "ncore": 1}, {"name": "wsgi", "depth": 2, "ncore": 0}]' "span tree"
dump_sane "$DUMP" "$BASE"
jq_expect "$DUMP" '.stats | map_values(.count) | {http, wsgi}' '{"http": 1, "wsgi": 1}' "stats counts"
NSP=$(jq "$JQ_SPANS [spans] | length" "$DUMP")
jq_expect "$DUMP" "$JQ_SPANS .stats | map(.count) | add" "$NSP" "stats: one count per span"
echo "$NSP spans ($((NSP - 2)) driver spans below wsgi)"

step "dump: ids and parent links"
HTTP_ID=$(jq -r '.children[0].trace_id' "$DUMP")
WSGI_ID=$(jq -r '.children[0].children[0].trace_id' "$DUMP")
[[ $HTTP_ID =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || fail "http trace_id '$HTTP_ID' is not a lower-case UUID4"
[[ $WSGI_ID =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] || fail "wsgi trace_id '$WSGI_ID' is not a lower-case UUID4"
[ "$HTTP_ID" != "$WSGI_ID" ] && [ "$HTTP_ID" != "$BASE" ] && [ "$WSGI_ID" != "$BASE" ] || fail "ids not distinct: base $BASE http $HTTP_ID wsgi $WSGI_ID"
# http.parent_id == base_id; wsgi.parent_id == http.trace_id; every raw event
# carries the same base_id, trace_id and parent_id as its node.
jq_expect "$DUMP" "$JQ_SPANS [core_spans | {name, trace_id, parent_id, base_id}]" \
    "[{\"name\": \"http\", \"trace_id\": \"$HTTP_ID\", \"parent_id\": \"$BASE\", \"base_id\": \"$BASE\"},
      {\"name\": \"wsgi\", \"trace_id\": \"$WSGI_ID\", \"parent_id\": \"$HTTP_ID\", \"base_id\": \"$BASE\"}]" "ids"
jq_expect "$DUMP" "$JQ_SPANS [core_spans | . as \$s | (.start, .stop)
    | {name, base_id, trace_id, parent_id, same: (.trace_id == \$s.trace_id and .parent_id == \$s.parent_id and .base_id == \$s.base_id)}]" \
    "[{\"name\": \"http-start\", \"base_id\": \"$BASE\", \"trace_id\": \"$HTTP_ID\", \"parent_id\": \"$BASE\", \"same\": true},
      {\"name\": \"http-stop\", \"base_id\": \"$BASE\", \"trace_id\": \"$HTTP_ID\", \"parent_id\": \"$BASE\", \"same\": true},
      {\"name\": \"wsgi-start\", \"base_id\": \"$BASE\", \"trace_id\": \"$WSGI_ID\", \"parent_id\": \"$HTTP_ID\", \"same\": true},
      {\"name\": \"wsgi-stop\", \"base_id\": \"$BASE\", \"trace_id\": \"$WSGI_ID\", \"parent_id\": \"$HTTP_ID\", \"same\": true}]" \
    "raw events' ids"

step "dump: the wsgi span is the request zaqard received"
jq_expect "$DUMP" "$JQ_SPANS spans | select(.name == \"wsgi\") | .start.info.request" \
    "{\"path\": \"$PATH_\", \"query\": \"$QUERY\", \"method\": \"POST\", \"scheme\": \"http\"}" "wsgi request"
# OSProfiler's key order: path, query, method, scheme; info.host last, after
# ldprof's own info.thread (the recording process and thread)
jq_expect "$DUMP" "$JQ_SPANS [spans | select(.name == \"wsgi\") | (.start.info | keys_unsorted), (.start.info.request | keys_unsorted), (.stop.info | keys_unsorted | last)]" \
    '[["request", "thread", "host"], ["path", "query", "method", "scheme"], "host"]' "wsgi info keys"
jq_expect "$DUMP" "$JQ_SPANS [spans | select(.name == \"wsgi\") | .start.info.thread | (.pid == ${ZQ_PID[zq]}), (.tid | type == \"number\" and . > 0)]" \
    '[true, true]' "wsgi info.thread: zaqard's pid and a thread id"

step "dump: the client's http span (request sent, status 201)"
PORT=${URL##*:}
jq_expect "$DUMP" "$JQ_SPANS spans | select(.name == \"http\") | {req: .start.info.request, status: .stop.info.status_code}" \
    "{\"req\": {\"method\": \"POST\", \"path\": \"$PATH_\", \"query\": \"$QUERY\", \"host\": \"127.0.0.1\", \"port\": $PORT}, \"status\": 201}" "http span"

step "dump: service, project and host of each side"
HOST=$(hostname)
jq_expect "$DUMP" "$JQ_SPANS [core_spans | {name, service, project, host, ev: ([.start, .stop] | map({service, project, host: .info.host}) | unique)}]" \
    "[{\"name\": \"http\", \"service\": \"$CLIENT_SVC\", \"project\": null, \"host\": \"$HOST\", \"ev\": [{\"service\": \"$CLIENT_SVC\", \"project\": null, \"host\": \"$HOST\"}]},
      {\"name\": \"wsgi\", \"service\": \"$SVC\", \"project\": \"$PROJ\", \"host\": \"$HOST\", \"ev\": [{\"service\": \"$SVC\", \"project\": \"$PROJ\", \"host\": \"$HOST\"}]}]" \
    "service/project/host"

step "dump: times (causal order of the client's and the server's events)"
# timestamps: naive UTC with 6-digit microseconds.  What causality
# guarantees on one host clock: the client starts its span before it sends,
# so before the server reads the request (http.start <= wsgi.start); the
# server has read the request before the client has the complete response
# (wsgi.start <= http.stop).  wsgi.stop is taken when the server's send()
# returns, which may be a little after the client has already read the
# response and closed its span (seen: ~1 ms), so it is only bounded (100 ms).
jq_expect "$DUMP" "$JQ_SPANS [spans | .start.timestamp, .stop.timestamp | test(\"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\\\.[0-9]{6}\$\")] | all" true "timestamp format"
jq_expect "$DUMP" "$JQ_SPANS def ts: (.[0:19] + \"Z\" | fromdateiso8601) + (.[20:] | tonumber / 1e6);
    [core_spans] as \$s | (\$s[0].start.timestamp <= \$s[1].start.timestamp) and (\$s[1].start.timestamp <= \$s[0].stop.timestamp)
    and ((\$s[1].stop.timestamp | ts) - (\$s[0].stop.timestamp | ts) < 0.1)
    and (\$s | all(.start.timestamp <= .stop.timestamp))" true "causal order of the http and wsgi events"
jq_expect "$DUMP" '.info.finished >= .children[0].info.finished and .children[0].info.exception == "None" and .children[0].children[0].info.exception == "None"' true "offsets/exception"
# the trace is not older than this test step
jq_expect "$DUMP" ".children[0].info[\"meta.raw_payload.http-start\"].timestamp >= \"$(date -u -d "@$((t0 - 2))" +%Y-%m-%dT%H:%M:%S)\"" true "start time"

step "ldprof trace list lists it"
"$LDPROF_CLI" trace list --dir "$COLL_DIR" >"$E2E_TMP/list" 2>&1 || { REQ="ldprof trace list" BODY=$(cat "$E2E_TMP/list"); fail "trace list failed"; }
cat "$E2E_TMP/list"
REQ="ldprof trace list --dir $COLL_DIR" STATUS="" BODY=$(cat "$E2E_TMP/list")
[ "$(grep -c "^$BASE " "$E2E_TMP/list")" = 1 ] || fail "trace list has no line for $BASE"
grep "^$BASE " "$E2E_TMP/list" | grep -Eq " http POST $PATH_\?$QUERY +$NSP\$" || fail "trace list line for $BASE lacks 'http POST $PATH_?$QUERY' and $NSP spans"
[ "$(grep -Ec '^[0-9a-f]{8}-[0-9a-f]{4}-' "$E2E_TMP/list")" = 1 ] || fail "trace list does not show exactly one trace"

step "ldprof trace show (text) shows the tree"
"$LDPROF_CLI" trace show "${BASE:0:8}" --dir "$COLL_DIR" >"$E2E_TMP/show" 2>&1 || { REQ="ldprof trace show ${BASE:0:8}" BODY=$(cat "$E2E_TMP/show"); fail "trace show failed"; }
cat "$E2E_TMP/show"
REQ="ldprof trace show ${BASE:0:8} --dir $COLL_DIR" STATUS="" BODY=$(cat "$E2E_TMP/show")
grep -qx "trace $BASE" "$E2E_TMP/show" || fail "no 'trace $BASE' line"
grep -Eq "^started [0-9T:.-]+Z, [0-9]+ ms, $NSP spans \(.*http 1/[0-9]+ ms" "$E2E_TMP/show" && grep -Eq "$NSP spans \(.*wsgi 1/[0-9]+ ms" "$E2E_TMP/show" ||
    fail "no 'started ..., N ms, $NSP spans (http 1/.. ms, wsgi 1/.. ms...)' summary"
grep -Eq "^ +[0-9]+ +[0-9]+  \|[# ]+\| http \[$CLIENT_SVC@$HOST\] POST $PATH_\?$QUERY\$" "$E2E_TMP/show" || fail "no top-level http line"
grep -Eq "^ +[0-9]+ +[0-9]+  \|[# ]+\|   wsgi \[$SVC@$HOST\] POST $PATH_\?$QUERY\$" "$E2E_TMP/show" || fail "no indented wsgi line under http"
[ "$(grep -n ' http \[' "$E2E_TMP/show" | cut -d: -f1)" -lt "$(grep -n ' wsgi \[' "$E2E_TMP/show" | cut -d: -f1)" ] || fail "wsgi line is not below the http line"

step "ldprof trace show --json is the dump, byte for byte"
"$LDPROF_CLI" trace show "$BASE" --dir "$COLL_DIR" --json >"$E2E_TMP/show.json" 2>"$E2E_TMP/show.err" ||
    { REQ="ldprof trace show $BASE --json" BODY=$(cat "$E2E_TMP/show.err"); fail "trace show --json failed"; }
cmp "$E2E_TMP/show.json" "$DUMP" || { REQ="cmp" BODY=$(diff "$E2E_TMP/show.json" "$DUMP" | head -20); fail "trace show --json differs from the dump"; }
# the dump's own format rules: 2-space indent, ", " / ": " separators, one final "\n", ASCII only
[ "$(tail -c 1 "$DUMP" | od -An -c | tr -d ' ')" = '\n' ] || fail "dump does not end in one newline"
[ "$(tail -c 2 "$DUMP" | head -c 1)" = "}" ] || fail "dump does not end in '}\\n'"
LC_ALL=C grep -q '[^ -~]' <(tr -d '\n' <"$DUMP") && fail "dump has non-ASCII or control bytes"
jq --indent 2 . "$DUMP" | cmp -s - "$DUMP" || echo "note: jq's re-indentation differs (expected only for escapes)"

step "OSProfiler's CLI re-renders the dump to the same bytes"
if [ -x /usr/bin/osprofiler ]; then
    OSP=(/usr/bin/osprofiler)
else
    OSP=(/usr/bin/python3 -m osprofiler.cmd.shell)
fi
"${OSP[@]}" trace show --connection-string redis://127.0.0.1:1 --json "$DUMP" >"$E2E_TMP/osp.json" 2>"$E2E_TMP/osp.err" ||
    { REQ="${OSP[*]} trace show --json $DUMP" BODY="$(cat "$E2E_TMP/osp.json" "$E2E_TMP/osp.err")"; fail "osprofiler trace show failed"; }
REQ="${OSP[*]} trace show --connection-string redis://127.0.0.1:1 --json $DUMP" STATUS="" BODY=$(diff "$E2E_TMP/osp.json" "$DUMP" | head -20)
cmp -s "$E2E_TMP/osp.json" "$DUMP" || fail "osprofiler's re-rendering differs from the dump"
# python3 -m osprofiler.cmd.shell is the same program
/usr/bin/python3 -m osprofiler.cmd.shell trace show --connection-string redis://127.0.0.1:1 --json "$DUMP" 2>/dev/null | cmp -s - "$DUMP" ||
    fail "python3 -m osprofiler.cmd.shell's re-rendering differs from the dump"
cmp -s "$DUMP" "$E2E_TMP/dump.copy" || fail "the dump changed while being read"

step "the collector's stats: two senders, every span, nothing rejected or dropped"
ZPID=${ZQ_PID[zq]}
jq_expect "$COLL_STATS" '{running, all_accepted: (.datagrams.received == .datagrams.accepted), rejected: .datagrams.rejected, spans, dropped, written: .traces.written, write_errors: .traces.write_errors}' \
    "{\"running\": false, \"all_accepted\": true, \"rejected\": 0, \"spans\": $NSP, \"dropped\": 0, \"written\": 1, \"write_errors\": 0}" "stats"
jq_expect "$COLL_STATS" "[.senders[] | {service, spans}] | sort_by(.service)" \
    "[{\"service\": \"$CLIENT_SVC\", \"spans\": 1}, {\"service\": \"$SVC\", \"spans\": $((NSP - 1))}]" "stats senders"
jq_expect "$COLL_STATS" ".senders[] | select(.pid == $ZPID) | .exe" "\"$(readlink -f "$ZAQARD")\"" "zaqard sender exe"

step "the message is really there (the traced request did its work)"
req GET "/v2/queues/$Q/messages?echo=true"
expect_status 200
expect_json '[.messages[].body]' '[{"event": "e2e-20"}]'
zaqard_stop zq
echo "trace $BASE: http $HTTP_ID -> wsgi $WSGI_ID"
