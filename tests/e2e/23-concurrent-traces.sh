#!/usr/bin/env bash
# 23-concurrent-traces.sh - many clients at once, traced and untraced, in
# both zaqard modes (--threads 4: libmicrohttpd's thread pool, where one
# thread serves many connections; --thread-per-connection).
#
# Per mode: 6 traced clients and 6 untraced clients, each one curl process
# sending 5 POSTs on one keep-alive connection, plus 2 "mixed" clients that
# alternate traced and untraced requests on one connection.  Every traced
# request has its own base_id and parent_id (ldprof headers) and its own
# queue name in its path.  Expected: exactly one dump per traced request,
# holding exactly one wsgi span: that request's path, base_id and parent_id
# (and, as the driver hooks arrive, driver spans below it, naming no other
# request's queue); no dump for anything else; the collector counted exactly
# the spans of the dumps.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
KEY="k23-$E2E_ID"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
NT=6 NU=6 NM=2 PER=8
: >"$E2E_TMP/empty.ini"
printf '%s' '{"messages": [{"ttl": 300, "body": {"e2e": 23}}]}' >"$E2E_TMP/body.json"

# client_args FILE KIND I MODE: write the curl arguments (one per line, read
# back with mapfile) for client I of KIND (t: traced, u: untraced, m: mixed,
# whose even requests are traced); append "base parent path" of each traced
# request to $E2E_TMP/expect-MODE and each untraced path to untraced-MODE.
client_args() {
    local f=$1 kind=$2 i=$3 mode=$4 j q first=1 base parent traced
    : >"$f"
    for ((j = 0; j < PER; j++)); do
        q="$kind-$mode-$i-$j-$E2E_ID"
        traced=0
        { [ "$kind" = t ] || { [ "$kind" = m ] && ((j % 2 == 0)); }; } && traced=1
        [ $first = 1 ] || echo --next >>"$f"
        first=0
        printf '%s\n' -o /dev/null -w '%{http_code} %{num_connects}\n' -X POST \
            -H "Client-ID: $CLIENT_ID" -H "X-Project-ID: $PROJECT" -H 'Content-Type: application/json' \
            --data-binary "@$E2E_TMP/body.json" >>"$f"
        if [ $traced = 1 ]; then
            base=$(new_uuid) parent=$(new_uuid)
            trace_headers "$KEY" "$base" "$parent"
            printf '%s\n' -H "X-Trace-Info: $TH_INFO" -H "X-Trace-HMAC: $TH_HMAC" >>"$f"
            printf '%s %s %s\n' "$base" "$parent" "/v2/queues/$q/messages" >>"$E2E_TMP/expect-$mode"
        else
            printf '%s\n' "/v2/queues/$q/messages" >>"$E2E_TMP/untraced-$mode"
        fi
        printf '%s\n' "$URL/v2/queues/$q/messages" >>"$f"
    done
}

run_mode() {
    local mode=$1 i k pids=() n t0 f nsp
    shift
    step "$mode: collector and zaqard ($*) under the preload"
    collector_start "$mode"
    # record_values: driver spans then carry the SQL parameters too (the
    # queue name), so that a driver span attributed to the wrong request
    # names another request's queue (Redis spans carry the key anyway)
    preload_wrapper "$E2E_TMP/wrap-$mode.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
        LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_SERVICE="zq-$mode" LDPROF_RECORD_VALUES=true
    ZAQARD_WRAPPER="$E2E_TMP/wrap-$mode.sh" zaqard_start "$mode" --pool "r1=$REDIS_BASE/8" "$@"
    : >"$E2E_TMP/expect-$mode"
    : >"$E2E_TMP/untraced-$mode"
    for k in t u m; do
        n=$NT
        [ $k = u ] && n=$NU
        [ $k = m ] && n=$NM
        for ((i = 0; i < n; i++)); do client_args "$E2E_TMP/args-$mode-$k$i" $k $i "$mode"; done
    done

    step "$mode: $((NT + NU + NM)) clients at once, $PER requests each on one connection"
    # every client waits (bounded) for the go file, so that they all start together
    rm -f "$E2E_TMP/go"
    for f in "$E2E_TMP"/args-"$mode"-*; do
        (
            mapfile -t a <"$f"
            for ((w = 0; w < 500; w++)); do [ -e "$E2E_TMP/go" ] && break; sleep 0.01; done
            curl -sS --max-time 30 "${a[@]}" >"$f.out" 2>"$f.err"
            echo $? >"$f.rc"
        ) &
        pids+=($!)
    done
    sleep 0.3
    t0=$EPOCHREALTIME
    : >"$E2E_TMP/go"
    for i in "${pids[@]}"; do wait "$i"; done
    echo "$mode: all clients done in $(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 )) ms"
    for f in "$E2E_TMP"/args-"$mode"-*[0-9]; do
        REQ="(client $(basename "$f"): curl $(tr '\n' ' ' <"$f" | head -c 300)...)" STATUS="" BODY=$(cat "$f.out" "$f.err")
        [ "$(cat "$f.rc")" = 0 ] || fail "client $(basename "$f"): curl exited $(cat "$f.rc")"
        [ "$(cut -d' ' -f1 "$f.out" | sort -u)" = 201 ] && [ "$(wc -l <"$f.out")" = $PER ] ||
            fail "client $(basename "$f"): expected $PER answers 201"
        # one connection per client: keep-alive across traced and untraced requests
        [ "$(cut -d' ' -f2 "$f.out" | tr -d '\n')" = "1$(printf '0%.0s' $(seq 2 $PER))" ] ||
            fail "client $(basename "$f"): curl did not keep its connection"
    done

    n=$(wc -l <"$E2E_TMP/expect-$mode")
    step "$mode: $n traced requests -> $n dumps of one span each"
    while read -r base parent path; do
        wait_dump "$base" 1 20
    done <"$E2E_TMP/expect-$mode"
    sleep 1 # a span of an untraced request, or a second span, would have arrived by now
    collector_stop "$mode"
    cut -d' ' -f1 "$E2E_TMP/expect-$mode" | sort | sed "s|^|$COLL_DIR/|; s|\$|.json|" >"$E2E_TMP/want-$mode"
    dumps >"$E2E_TMP/got-$mode"
    if ! cmp -s "$E2E_TMP/want-$mode" "$E2E_TMP/got-$mode"; then
        REQ="(dump directory of $mode)" STATUS="" BODY="missing: $(comm -23 "$E2E_TMP/want-$mode" "$E2E_TMP/got-$mode" | head -5 | tr '\n' ' ')"
        fail "$mode: extra dumps: $(comm -13 "$E2E_TMP/want-$mode" "$E2E_TMP/got-$mode" | head -5 | tr '\n' ' ')"
    fi
    # every dump at once, one jq: for each, its http/wsgi spans must be
    # exactly the one expected wsgi span; driver spans (zaqard's work, as
    # the driver hooks arrive) only below it, with its base_id; and no
    # string anywhere in the dump may name another request's queue
    jq -R 'split(" ") | {key: .[0], value: {parent: .[1], path: .[2]}}' "$E2E_TMP/expect-$mode" | jq -s from_entries >"$E2E_TMP/want-$mode.json"
    jq -n --slurpfile want "$E2E_TMP/want-$mode.json" "$JQ_SPANS
        [inputs | input_filename as \$f | (\$f | split(\"/\") | last | rtrimstr(\".json\")) as \$b
         | \$want[0][\$b] as \$w
         | [core_spans | {name, base_id, parent_id, depth, ncore, method: .start.info.request.method,
                          path: .start.info.request.path, query: .start.info.request.query, service}] as \$s
         | [spans | select(.base_id != \$b or (is_driver and (.anc | index(\"wsgi\")) == null)) | {name, base_id, anc}] as \$stray
         | ([.. | strings | scan(\"[tum]-$mode-[0-9]+-[0-9]+-$E2E_ID\")] | unique) as \$queues
         | select(\$s != [{name: \"wsgi\", base_id: \$b, parent_id: \$w.parent, depth: 1, ncore: 0,
                           method: \"POST\", path: \$w.path, query: \"\", service: \"zq-$mode\"}]
                  or \$stray != [] or \$queues != [\$w.path | split(\"/\")[3]])
         | {dump: \$b, expected: \$w, spans: \$s, stray: \$stray, queues_named: \$queues}] | .[0:3]" $(cat "$E2E_TMP/got-$mode") >"$E2E_TMP/bad-$mode" ||
        { REQ="(jq over the dumps)" STATUS="" BODY=""; fail "$mode: jq over the dumps failed"; }
    if [ "$(jq length "$E2E_TMP/bad-$mode")" != 0 ]; then
        REQ="(dumps of $mode)" STATUS="" BODY=$(jq -c '.[]' "$E2E_TMP/bad-$mode" | head -c 3000)
        fail "$mode: dumps that are not exactly their own request's spans"
    fi
    # no untraced path anywhere (already implied; says which one if not)
    if grep -F -l -f "$E2E_TMP/untraced-$mode" $(cat "$E2E_TMP/got-$mode") >"$E2E_TMP/leak-$mode"; then
        REQ="(dumps of $mode)" STATUS="" BODY=$(head -3 "$E2E_TMP/leak-$mode")
        fail "$mode: an untraced request's path is in a dump"
    fi
    nsp=$(jq -n "$JQ_SPANS [inputs | [spans] | length] | add" $(cat "$E2E_TMP/got-$mode"))
    jq_expect "$COLL_STATS" '{spans, rejected: .datagrams.rejected, dropped, written: .traces.written, write_errors: .traces.write_errors}' \
        "{\"spans\": $nsp, \"rejected\": 0, \"dropped\": 0, \"written\": $n, \"write_errors\": 0}" "$mode: collector stats"
    zaqard_stop "$mode"
    echo "$mode: $n traced requests, $n dumps, each exactly its request's span ($nsp spans in all)"
}

run_mode threads --threads 4
run_mode tpc --thread-per-connection
