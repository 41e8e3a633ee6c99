#!/usr/bin/env bash
# 42-collector-crash.sh - durability: spans the collector received before a
# kill -9 still reach their dumps.
#
#   zaqard under the preload --> ldprof-collectord --idle-ms 600000 --redis
#   (traced requests; nothing is written yet: the traces are open)
#   kill -9 the collector; start it again on the same socket and directory:
#   the journal is replayed and every trace is written.
#
# What was sent is recorded independently of the journal: the collector
# also pushes every span it receives to Redis (OSProfiler's layout), and its
# stats file counts them.  After the restart every dump must hold exactly
# the spans (trace_ids) Redis got for its base_id, and be byte for byte the
# report `ldprof trace show --redis` builds from them; the preload dropped
# nothing.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need

REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
RURI="$REDIS_BASE/6"
HP=${REDIS_BASE#redis://}
RHOST=${HP%:*} RPORT=${HP##*:}
rcli() { redis-cli -h "$RHOST" -p "$RPORT" -n 6 "$@"; }
BASES=()
on_exit 'for k in "${BASES[@]}"; do rcli DEL "osprofiler_opt:$k" >/dev/null 2>&1; done'

KEY="k42-$E2E_ID"
SVC="zq-api-42"
PROJ="proj-$E2E_ID"
N=4

step "collector with --idle-ms 600000 (no trace is written before the crash) and --redis $RURI"
collector_start main --idle-ms 600000 --redis "$RURI"
preload_wrapper "$E2E_TMP/wrap.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
    LDPROF_SERVICE="$SVC" LDPROF_PROJECT="$PROJ"
ZAQARD_WRAPPER="$E2E_TMP/wrap.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 2
ZPID=${ZQ_PID[zq]}

step "$N traced requests (POST then GET messages), each its own trace"
for ((i = 0; i < N; i++)); do
    trace_headers "$KEY"
    BASES+=("$TH_BASE")
    if ((i % 2 == 0)); then
        req "${TH[@]}" POST "/v2/queues/q42-$i-$E2E_ID/messages" "{\"messages\": [{\"ttl\": 300, \"body\": {\"n\": $i}}]}"
        expect_status 201
    else
        req "${TH[@]}" GET "/v2/queues/q42-$((i - 1))-$E2E_ID/messages?echo=true"
        expect_status 200
    fi
done

step "zaqard stops (the preload sends what it holds); the collector has every span"
zaqard_stop zq
# Redis events received so far (2 per span), and the stats file's count
redis_spans() {
    local b t=0 n
    for b in "${BASES[@]}"; do
        n=$(rcli LLEN "osprofiler_opt:$b") || return 1
        t=$((t + n))
    done
    echo $((t / 2))
}
stats_spans() { jq -r '.spans' "$COLL_STATS" 2>/dev/null; }
_settled() {
    local r s
    r=$(redis_spans) && s=$(stats_spans) && [ "$r" -gt 0 ] && [ "$r" = "$s" ] &&
        jq -e --argjson p "$ZPID" '.senders[] | select(.pid == $p) | .dropped == 0' "$COLL_STATS" >/dev/null 2>&1
}
wait_until 15 "the stats file and Redis agree on the spans received (and zaqard's preload dropped none)" _settled
SENT=$(redis_spans)
echo "spans received before the crash: $SENT (stats file: $(stats_spans))"
for b in "${BASES[@]}"; do
    rcli LRANGE "osprofiler_opt:$b" 0 -1 | jq -r .trace_id | sort -u >"$E2E_TMP/sent.$b"
    [ -s "$E2E_TMP/sent.$b" ] || { REQ="LRANGE osprofiler_opt:$b" STATUS="" BODY=""; fail "no span of trace $b reached the collector"; }
done
[ -z "$(dumps)" ] || { REQ="(dump dir)" STATUS="" BODY=$(dumps); fail "dumps were written before the crash (--idle-ms 600000)"; }
JBYTES=$(stat -c %s "$COLL_DIR/journal.jsonl")
[ "$JBYTES" -gt 0 ] || { REQ="(journal)" STATUS="" BODY=""; fail "the journal is empty before the crash"; }
echo "journal: $JBYTES bytes; no dump yet"

step "kill -9 the collector"
HOME_MAIN=${CO_HOME[main]}
kill -KILL "$COLL_PID"
wait_until 10 "the collector is gone after kill -9" test -e "$HOME_MAIN/rc"
[ "$(cat "$HOME_MAIN/rc")" = 137 ] || { REQ="kill -9" STATUS="" BODY=""; fail "collector exit status $(cat "$HOME_MAIN/rc"), expected 137"; }
[ -S "$COLL_SOCK" ] || { REQ="kill -9" STATUS="" BODY=""; fail "expected a stale socket left behind"; }
[ -z "$(dumps)" ] || { REQ="(dump dir)" STATUS="" BODY=$(dumps); fail "dumps appeared at the crash"; }

step "restart on the same socket and directory: the journal is replayed"
rm -f "$HOME_MAIN/ready" # left behind by the killed collector
collector_start main --idle-ms 600000
grep -q 'event=stale_socket_removed' "$COLL_LOG" || { REQ="(log)" STATUS="" BODY=$(tail -20 "$COLL_LOG"); fail "no stale_socket_removed in the log"; }
grep -q 'event=journal_replayed' "$COLL_LOG" || { REQ="(log)" STATUS="" BODY=$(tail -20 "$COLL_LOG"); fail "no journal_replayed in the log"; }
grep 'event=journal_replayed' "$COLL_LOG" | tail -1

step "every trace has its dump, with exactly the spans received"
TOTAL=0
for b in "${BASES[@]}"; do
    DUMP="$COLL_DIR/$b.json"
    [ -s "$DUMP" ] || { REQ="(dump dir)" STATUS="" BODY=$(dumps); fail "no dump for $b after the replay"; }
    dump_sane "$DUMP" "$b"
    jq -r "$JQ_SPANS spans | .trace_id" "$DUMP" | sort -u >"$E2E_TMP/got.$b"
    REQ="trace $b: trace_ids (sent vs dump)" STATUS="" BODY=$(diff "$E2E_TMP/sent.$b" "$E2E_TMP/got.$b")
    cmp -s "$E2E_TMP/sent.$b" "$E2E_TMP/got.$b" || fail "the dump's spans differ from those received before the crash"
    NS=$(jq "$JQ_SPANS [spans] | length" "$DUMP")
    [ "$NS" = "$(wc -l <"$E2E_TMP/sent.$b")" ] || fail "dump has $NS spans, $(wc -l <"$E2E_TMP/sent.$b") received"
    jq_expect "$DUMP" "$JQ_SPANS [spans | select(.name == \"wsgi\")] | length" 1 "one wsgi span"
    jq_expect "$DUMP" 'has("ldprof")' false "no limit marker (nothing was cut)"
    "$LDPROF_CLI" trace show --redis "$RURI" --json "$b" >"$E2E_TMP/redis.$b.json" ||
        { REQ="ldprof trace show --redis $RURI --json $b" BODY=""; fail "ldprof trace show --redis failed"; }
    REQ="dump vs report from Redis ($b)" BODY=$(diff "$E2E_TMP/redis.$b.json" "$DUMP" | head -20)
    cmp -s "$E2E_TMP/redis.$b.json" "$DUMP" || fail "the replayed dump differs from the report of the received events"
    TOTAL=$((TOTAL + NS))
    echo "trace $b: $NS spans, identical to what was received"
done
[ "$TOTAL" = "$SENT" ] || { REQ="(totals)" STATUS="" BODY=""; fail "$TOTAL spans in the dumps, $SENT received"; }
jq_expect "$COLL_STATS" '{replayed: .journal.replayed_spans, written: .traces.written}' \
    "{\"replayed\": $SENT, \"written\": $N}" "stats of the restarted collector"

step "a clean stop: nothing left in the journal"
collector_stop main
[ "$(stat -c %s "$COLL_DIR/journal.jsonl")" = 0 ] || { REQ="(journal)" STATUS="" BODY=""; fail "journal not emptied"; }
echo "$N traces, $TOTAL spans survived kill -9"
