#!/usr/bin/env bash
# 12-zaqard-robustness.sh - malformed and hostile input against a running
# zaqard: garbage request lines, huge headers, truncated bodies, odd names,
# deep JSON, odd numbers, bad message shapes, keep-alive and pipelining.
# The server must answer each with a 4xx (or close the connection), never
# crash, stay healthy, lose nothing, and exit 0 on SIGTERM.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres

REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
RAW=""

# raw_send FILE [--no-read]: send FILE's bytes on a new connection and set RAW
# to what comes back within 5 s (the tests that read ask the server to close).
raw_send() {
    local f=$1 fd
    exec {fd}<>"/dev/tcp/127.0.0.1/${URL##*:}" || fail "cannot connect to $URL"
    timeout 5 cat "$f" 1>&"$fd" 2>/dev/null # cat, not this shell, takes any SIGPIPE
    if [ "${2:-}" = --no-read ]; then
        RAW=""
    else
        RAW=$(timeout "${RAW_TIMEOUT:-5}" cat <&$fd 2>/dev/null | head -c 200000 | tr -d '\0')
    fi
    exec {fd}>&-
    REQ="raw: $(head -c 200 "$f" | tr -d '\0' | sed -n l | head -n 3 | tr -d '\n')"
    STATUS=$(sed -n '1s/^HTTP\/1\.[01] \([0-9][0-9][0-9]\).*/\1/p' <<<"$RAW")
    BODY=$(head -c 500 <<<"$RAW")
}

rawfile() { printf '%b' "$1" >"$E2E_TMP/raw"; echo "$E2E_TMP/raw"; }

# expect_rejected: the last answer was a 4xx (or 505), or no answer at all
# (the server closed the connection); never 2xx/3xx/500/503.
expect_rejected() {
    case $STATUS in
    "" | 000 | 4[0-9][0-9] | 505) ;;
    *) fail "expected a 4xx answer or a closed connection, got status $STATUS" ;;
    esac
}

# expect_answer_or_rejected N: a valid (if huge) request: the right answer N,
# or rejected as too large (4xx or connection closed).
expect_answer_or_rejected() {
    [ "$STATUS" = "$1" ] && return 0
    expect_rejected
}

expect_alive() {
    local s
    s=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/v2/ping")
    [ "$s" = 204 ] || { STATUS=$s; fail "server not healthy after: $REQ"; }
    zaqard_alive "$SRV" || fail "zaqard exited after: $REQ"
}

post_keep() { # post_keep QUEUE N: post N messages whose bodies we keep in $KEEP/QUEUE
    local qn=$1 count=$2 body
    body=$(jq -cn --arg q "$qn" --argjson n "$count" \
        '{messages: [range($n) | {ttl: 3600, body: {q: $q, i: ., text: "ünïcode ✓ \(.)", nested: {deep: [., {x: [1, 2.5, null, true]}]}}}]}')
    req POST "/v2/queues/$qn/messages" "$body"
    expect_status 201
    expect_json '.resources | length' "$count"
    jq -c '[.messages[].body]' <<<"$body" >"$KEEP/$qn.bodies"
    jbody '[.resources[] | sub(".*/"; "")]' | jq -c . >"$KEEP/$qn.ids"
}

check_keep() { # check_keep QUEUE: every kept message still listed, same order and bodies
    local qn=$1 href="/v2/queues/$1/messages?limit=7&echo=true" i all="$KEEP/$1.listed"
    : >"$all"
    for ((i = 0; i < 20; i++)); do
        req --client "$(new_uuid)" GET "$href"
        expect_status 200
        [ "$(jbody '.messages | length')" = 0 ] && break
        jbody '.messages[] | [.id, .body] | tojson' >>"$all"
        href=$(jbody '.links[0].href')
    done
    BODY=$(jq -sc '{ids: map(.[0]), bodies: map(.[1])}' <"$all")
    REQ="(all messages of $qn, listed page by page)"
    expect_json .ids "$(cat "$KEEP/$qn.ids")"
    expect_json .bodies "$(cat "$KEEP/$qn.bodies")"
}

# ------------------------------------------------------------------ sections
# (each runs inside robust(), whose locals it sees)

sec_garbage() {
    step "$SRV: garbage request lines and binary noise"
    # (blank lines before a request line are allowed: nothing to answer yet)
    RAW_TIMEOUT=1 raw_send "$(rawfile '\r\n\r\n\r\n')"
    expect_rejected
    expect_alive
    for s in 'HELLO\r\n\r\n' 'GET\r\n\r\n' 'GET /v2/ping HTTP/9.9\r\nHost: x\r\n\r\n' \
        'GET /v2/ping FOO/1.1\r\nHost: x\r\n\r\n' 'GET  HTTP/1.1\r\nHost: x\r\n\r\n' \
        'GET /v2/ping HTTP/1.1\r\nBadHeaderNoColon\r\nHost: x\r\n\r\n' \
        'GET /v2/\x01\x02\x7f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'; do
        raw_send "$(rawfile "$s")"
        expect_rejected
        expect_alive
    done
    head -c 8192 /dev/urandom >"$E2E_TMP/noise"
    raw_send "$E2E_TMP/noise"
    expect_rejected
    expect_alive
    { printf 'POST /v2/queues/keep-a/messages HTTP/1.1\r\nHost: x\r\n'; head -c 4096 /dev/urandom; } >"$E2E_TMP/noise"
    raw_send "$E2E_TMP/noise"
    expect_rejected
    expect_alive
    # connect and close at once, a few times
    for i in 1 2 3 4 5; do
        exec {f}<>"/dev/tcp/127.0.0.1/$port" && exec {f}>&-
    done
    expect_alive
}

sec_huge() {
    step "$SRV: huge request line, huge and many headers"
    { printf 'GET /v2/queues/'; head -c 200000 /dev/zero | tr '\0' a; printf ' HTTP/1.1\r\nHost: x\r\n\r\n'; } >"$E2E_TMP/big"
    raw_send "$E2E_TMP/big"
    expect_rejected
    expect_alive
    req -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' h)" GET /v2/queues
    expect_answer_or_rejected 200
    expect_alive
    { printf 'GET /v2/queues HTTP/1.1\r\nHost: x\r\n%s\r\nX-Big: ' "$hp"; head -c 2000000 /dev/zero | tr '\0' h; printf '\r\nConnection: close\r\n\r\n'; } >"$E2E_TMP/big"
    raw_send "$E2E_TMP/big"
    expect_answer_or_rejected 200
    expect_alive
    { printf 'GET /v2/queues HTTP/1.1\r\nHost: x\r\n%s\r\n' "$hp"; for ((i = 0; i < 3000; i++)); do printf 'X-H-%d: %d\r\n' $i $i; done; printf 'Connection: close\r\n\r\n'; } >"$E2E_TMP/big"
    raw_send "$E2E_TMP/big"
    expect_answer_or_rejected 200
    expect_alive
    { printf 'GET /v2/queues HTTP/1.1\r\nHost: x\r\nX-Project-ID: '; head -c 300000 /dev/zero | tr '\0' p; printf '\r\nConnection: close\r\n\r\n'; } >"$E2E_TMP/big"
    raw_send "$E2E_TMP/big"
    expect_rejected
    expect_alive
}

sec_truncated() {
    step "$SRV: truncated bodies (Content-Length larger than sent, then close)"
    local pre="POST /v2/queues/keep-a/messages HTTP/1.1\r\nHost: x\r\n$hc\r\n$hp\r\nContent-Type: application/json\r\n"
    raw_send "$(rawfile "${pre}Content-Length: 1000\r\n\r\n{\"messages\": [{\"body\": \"lost\"}]}")" --no-read
    expect_alive
    raw_send "$(rawfile "${pre}Content-Length: 100000\r\n\r\n{\"messages\": [")" --no-read
    expect_alive
    raw_send "$(rawfile "${pre}Content-Length: 50\r\n\r\n")" --no-read
    expect_alive
    raw_send "$(rawfile "${pre}Content-Length: 30")" --no-read
    expect_alive
    raw_send "$(rawfile "PUT /v2/queues/trunc-q HTTP/1.1\r\nHost: x\r\n$hp\r\nContent-Length: 500\r\n\r\n{\"a\":")" --no-read
    expect_alive
    for s in -1 abc 99999999999999999999 '1, 2'; do
        raw_send "$(rawfile "${pre}Content-Length: $s\r\nConnection: close\r\n\r\n{}")"
        expect_rejected
        expect_alive
    done
    raw_send "$(rawfile "${pre}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")"
    expect_rejected
    expect_alive
    raw_send "$(rawfile "${pre}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffffffff\r\nabc")"
    expect_rejected
    expect_alive
    raw_send "$(rawfile "${pre}Transfer-Encoding: chunked\r\n\r\n100\r\n{\"messages\"")" --no-read
    expect_alive
    req GET /v2/queues/trunc-q
    expect_error 404 "Not found"
    req GET /v2/queues/keep-a/stats
    expect_status 200
    expect_json '.messages | {free, claimed, total}' '{"free": 20, "claimed": 0, "total": 20}'
}

sec_names() {
    step "$SRV: odd queue names (percent-encoded NUL, ../, bad UTF-8, very long)"
    for s in %00 a%00b %2e%2e %2E%2E%2Fetc %2F %2Fv2 %C3%28 %FF%FE a%0Ab a%0D%0AX-Injected:%201 \
        "%E2%9C%93" "q%20q" "%25" "a%3Fb" "a:b" "*" "q.json"; do
        for m in PUT GET; do
            req "$m" "/v2/queues/$s"
            case $STATUS in 400 | 404) ;; *) fail "queue name '$s': expected 400 or 404, got $STATUS" ;; esac
            expect_json '.title | type' '"string"'
            expect_no_header X-Injected
        done
        req POST "/v2/queues/$s/messages" '{"messages": [{"body": 1}]}'
        case $STATUS in 400 | 404) ;; *) fail "queue name '$s': expected 400 or 404, got $STATUS" ;; esac
    done
    for s in ../ ../../etc/passwd ./keep-a keep-a/../keep-b /v2/queues/../../v2/queues; do
        req --curl --path-as-is GET "/v2/queues/$s"
        case $STATUS in 400 | 404) ;; *) fail "path '/v2/queues/$s': expected 400 or 404, got $STATUS" ;; esac
    done
    for n in 65 1000 4000; do
        req PUT "/v2/queues/$(head -c "$n" /dev/zero | tr '\0' q)"
        expect_error 400 "Invalid queue name"
        req GET "/v2/queues/$(head -c "$n" /dev/zero | tr '\0' q)/stats"
        expect_error 400 "Invalid queue name"
    done
    req PUT "/v2/queues/$(head -c 100000 /dev/zero | tr '\0' q)"
    expect_rejected
    expect_alive
    req GET "/v2/queues?limit=100"
    expect_status 200
    expect_json '[.queues[].name]' '["keep-a", "keep-b", "keep-c"]'
}

sec_idheaders() {
    step "$SRV: bad X-Project-ID / Client-ID bytes"
    req --project "$(printf 'p\xff\xfe')" GET /v2/queues
    expect_error 400 "Invalid API request"
    req --project "../../etc" GET /v2/queues
    expect_error 400 "Invalid API request"
    req --project "a*" GET /v2/queues
    expect_error 400 "Invalid API request"
    req --client "$(printf '%s\xff' "${CLIENT_ID:0:35}")" GET /v2/queues/keep-a/messages
    expect_error 400 "Invalid API request"
    req --client "${CLIENT_ID}0" GET /v2/queues/keep-a/messages
    expect_error 400 "Invalid API request"
    req --client "$(head -c 5000 /dev/zero | tr '\0' a)" GET /v2/queues/keep-a/messages
    expect_error 400 "Invalid API request"
}

sec_deep() {
    step "$SRV: deep JSON"
    local deep d
    # 80 levels of arrays and objects round-trip on every store
    deep="$(printf '[{"k":%.0s' {1..40})\"deep\"$(printf '}]%.0s' {1..40})"
    req POST /v2/queues/deepq/messages "{\"messages\": [{\"body\": $deep}]}"
    expect_status 201
    req --client "$(new_uuid)" GET "$(jbody '.resources[0]')"
    expect_status 200
    expect_json .body "$deep"
    # API.md: "body: <any JSON>"; the MongoDB store refuses bodies nested
    # deeper than 90 levels (MongoDB's own limit is 100) with a 400: allowed
    # there (reported as an API.md gap), not on Redis.
    # (jq 1.6 parses at most 256 levels: the 2000-level body is compared as text)
    local posted=1
    for d in 100 200 2000; do
        deep="$(printf "[%.0s" $(seq $d))\"deep\"$(printf "]%.0s" $(seq $d))"
        req POST /v2/queues/deepq/messages "{\"messages\": [{\"body\": $deep}]}"
        if [ "$STATUS" = 400 ] && [ "$cfg" = mongo ]; then
            expect_error 400 "Invalid API request"
            continue
        fi
        expect_status 201
        posted=$((posted + 1))
        [[ $BODY =~ \"(/v2/queues/deepq/messages/[A-Za-z0-9_-]+)\" ]] || fail "no message href"
        req --client "$(new_uuid)" GET "${BASH_REMATCH[1]}"
        expect_status 200
        if [ "$d" -le 200 ]; then
            expect_json .body "$deep"
        else
            [[ ${BODY//[[:space:]]/} == *"\"body\":$deep"* ]] || fail "the $d-level body did not come back as posted"
        fi
    done
    deep="$(printf '{"a":%.0s' {1..100})1$(printf '}%.0s' {1..100})"
    req PUT /v2/queues/deepq "$deep"
    expect_status 204
    req GET /v2/queues/deepq
    expect_json . "$deep"
    { printf '{"messages": [{"body": '; head -c 100000 /dev/zero | tr '\0' '['; head -c 100000 /dev/zero | tr '\0' ']'; printf '}]}'; } >"$E2E_TMP/deep"
    req --data-file "$E2E_TMP/deep" POST /v2/queues/deepq/messages
    expect_status 400
    expect_json '.title | type' '"string"'
    expect_alive
    { printf '{"messages": [{"body": '; for ((i = 0; i < 40000; i++)); do printf '{"a":'; done; printf '1'; head -c 40000 /dev/zero | tr '\0' '}'; printf '}]}'; } >"$E2E_TMP/deep"
    req --data-file "$E2E_TMP/deep" POST /v2/queues/deepq/messages
    expect_status 400
    expect_alive
    { head -c 50000 /dev/zero | tr '\0' '['; } >"$E2E_TMP/deep"
    req --data-file "$E2E_TMP/deep" PUT /v2/queues/deepq
    expect_status 400
    expect_alive
    req --data-file "$E2E_TMP/deep" POST "/v2/queues/deepq/claims"
    expect_status 400
    expect_alive
    req GET /v2/queues/deepq/stats
    expect_json '.messages.total' "$posted"
}

sec_numbers() {
    step "$SRV: negative, huge, fractional and non-integer numbers"
    for s in -1 0 -60 1209601 99999999999999999999999 1e400 -1e400 300.5 '"300"' true null '[300]' '{}'; do
        req POST /v2/queues/numq/messages "{\"messages\": [{\"body\": 1, \"ttl\": $s}]}"
        expect_status 400
        expect_json '.title | type' '"string"'
    done
    for s in -1 -100 43201 99999999999999999999 1e400 60.5 '"60"' null; do
        req POST /v2/queues/numq/claims "{\"ttl\": $s}"
        expect_status 400
        req POST /v2/queues/numq/claims "{\"grace\": $s}"
        expect_status 400
    done
    for s in -1 -0 99999999999999999999 1e3 2.5 0x10 5abc abc; do
        req GET "/v2/queues/numq/messages?limit=$s"
        expect_error 400 "Invalid API request"
        req POST "/v2/queues/numq/claims?limit=$s"
        expect_error 400 "Invalid API request"
        req DELETE "/v2/queues/numq/messages?pop=$s"
        expect_error 400 "Invalid API request"
        req GET "/v2/queues?limit=$s"
        expect_error 400 "Invalid API request"
    done
    for s in -1 abc 1.5 1e3 0x1; do
        req GET "/v2/queues/keep-a/messages?marker=$s"
        expect_error 400 "Invalid API request"
    done
    req GET "/v2/queues/keep-a/messages?marker=99999999999999999999999999"
    case $STATUS in 200 | 400) ;; *) fail "huge marker: expected 200 or 400, got $STATUS" ;; esac
    for s in 1e308 -1e308 123456789012345678901234567890 0.000001; do
        req POST /v2/queues/numq/messages "{\"messages\": [{\"body\": $s}]}"
        case $STATUS in
        201)
            req --client "$(new_uuid)" GET "$(jbody '.resources[0]')"
            expect_status 200
            expect_json '.body' "$s"
            ;;
        400) expect_json '.title | type' '"string"' ;;
        *) fail "body $s: expected 201 or 400, got $STATUS" ;;
        esac
    done
    req GET /v2/queues/numq/claims/x
    expect_error 404 "Not found"
}

sec_shapes() {
    step "$SRV: bad message shapes, empty and 21-entry arrays, bad UTF-8"
    for s in '{"messages": "x"}' '{"messages": [1]}' '{"messages": [[]]}' '{"messages": [null]}' \
        '{"messages": {}}' '{"messages": null}' '{"message": [{"body": 1}]}' '{}' '[]' \
        '[{"body": 1}]' '"x"' 'null' '42' '{"messages": [{"body": 1}], "messages": 5}' \
        '{"messages": [{"body": 1, "ttl": 300}, {"ttl": 300}]}' '{"messages": [{"ttl": 300, "bod": 1}]}' \
        '{"messages": []}' '{"messages": [{"body": 1}]} trailing' '{"messages": [{"body": 1},]}' \
        "{'messages': [{'body': 1}]}" '{"messages": [{"body": NaN}]}' '{"messages": [{"body": "\ud800"}]}'; do
        req POST /v2/queues/shapeq/messages "$s"
        expect_status 400
        expect_json '.title | type' '"string"'
    done
    printf '{"messages": [{"body": "bad \xff\xfe utf8 \xc3\x28"}]}' >"$E2E_TMP/bad"
    req --data-file "$E2E_TMP/bad" POST /v2/queues/shapeq/messages
    expect_status 400
    printf '{"k\xff": 1}' >"$E2E_TMP/bad"
    req --data-file "$E2E_TMP/bad" PUT /v2/queues/shapeq
    expect_status 400
    printf '{"messages": [{"body": "nul \0 inside"}]}' >"$E2E_TMP/bad"
    req --data-file "$E2E_TMP/bad" POST /v2/queues/shapeq/messages
    expect_status 400
    req POST /v2/queues/shapeq/messages ''
    expect_status 400
    req POST /v2/queues/shapeq/messages "$(jq -cn '{messages: [range(21) | {body: .}]}')"
    expect_error 400 "Invalid API request"
    req POST /v2/queues/shapeq/messages "$(jq -cn '{messages: [range(20) | {body: .}]}')"
    expect_status 201
    expect_json '.resources | length' 20
    req GET /v2/queues/shapeq/stats
    expect_json '.messages.total' 20
}

sec_methods() {
    step "$SRV: odd methods"
    req BREW /v2/queues
    expect_error 405 "Method not allowed"
    expect_header Allow 'GET'
    req OPTIONS /v2/queues/keep-a
    expect_rejected
    req TRACE /v2/queues/keep-a
    expect_rejected
    expect_alive
}

sec_http10() {
    step "$SRV: HTTP/1.0 and missing Host"
    raw_send "$(rawfile 'GET /v2/ping HTTP/1.0\r\n\r\n')"
    [ "$STATUS" = 204 ] || fail "HTTP/1.0 ping: expected 204, got '${STATUS}'"
    raw_send "$(rawfile "GET /v2/queues HTTP/1.0\r\n$hp\r\n\r\n")"
    [ "$STATUS" = 200 ] || fail "HTTP/1.0 GET /v2/queues: expected 200, got '${STATUS}'"
    grep -q '"keep-a"' <<<"$RAW" || fail "HTTP/1.0 GET /v2/queues: keep-a not listed"
    raw_send "$(rawfile 'GET /v2/ping HTTP/1.1\r\nConnection: close\r\n\r\n')"
    case $STATUS in 204 | 400) ;; *) fail "HTTP/1.1 without Host: expected 204 or 400, got '${STATUS}'" ;; esac
}

sec_keepalive() {
    step "$SRV: keep-alive: several requests on one connection"
    out=$(curl -sv -H "$hp" -H "$hc" -o /dev/null -o /dev/null -o /dev/null \
        -w '%{http_code} %{num_connects}\n' "$URL/v2/queues" "$URL/v2/queues/keep-a" "$URL/v2/queues/keep-a/stats" 2>"$E2E_TMP/curl.err")
    REQ="curl -v GET /v2/queues, /v2/queues/keep-a, /v2/queues/keep-a/stats"
    [ "$out" = $'200 1\n200 0\n200 0' ] || fail "keep-alive: expected '200 1/200 0/200 0' (status, new connections), got '$(tr '\n' / <<<"$out")'"
    [ "$(grep -c 'Re-using existing connection' "$E2E_TMP/curl.err")" = 2 ] ||
        fail "keep-alive: curl -v did not report 'Re-using existing connection' twice: $(grep -i 'connect' "$E2E_TMP/curl.err" | head -n 5)"
    out=$(curl -sv -o /dev/null -w '%{http_code} %{num_connects}\n' -H "$hp" -H "$hc" \
        -H 'Content-Type: application/json' --data-binary '{"messages": [' "$URL/v2/queues/keep-a/messages" \
        --next -o /dev/null -w '%{http_code} %{num_connects}\n' -H "$hp" "$URL/v2/queues/nosuch" \
        --next -o /dev/null -w '%{http_code} %{num_connects}\n' -H "$hp" -X POST "$URL/v2/queues/keep-a" \
        --next -o /dev/null -w '%{http_code} %{num_connects}\n' -H "$hp" -H "$hc" \
        -H 'Content-Type: application/json' --data-binary '{"messages": [{"body": "ka"}]}' "$URL/v2/queues/kaq/messages" \
        --next -o /dev/null -w '%{http_code} %{num_connects}\n' -H "$hp" "$URL/v2/queues/kaq/stats" 2>"$E2E_TMP/curl.err")
    REQ="curl -v on one connection: POST bad JSON, GET unknown queue, POST (405), POST a message, GET stats"
    [ "$out" = $'400 1\n404 0\n405 0\n201 0\n200 0' ] ||
        fail "keep-alive after errors: expected '400 1/404 0/405 0/201 0/200 0', got '$(tr '\n' / <<<"$out")'"
    [ "$(grep -c 'Re-using existing connection' "$E2E_TMP/curl.err")" = 4 ] ||
        fail "keep-alive after errors: connection not re-used 4 times"
}

sec_pipeline() {
    step "$SRV: pipelined requests on one connection"
    raw_send "$(rawfile "GET /v2/ping HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/queues/keep-c HTTP/1.1\r\nHost: x\r\n$hp\r\n\r\nGET /v2/queues/keep-b/stats HTTP/1.1\r\nHost: x\r\n$hp\r\nConnection: close\r\n\r\n")"
    REQ="3 pipelined requests (ping, GET keep-c, GET keep-b/stats)"
    n=$(grep -o 'HTTP/1\.1 [0-9][0-9][0-9] ' <<<"$RAW" | wc -l)
    [ "$n" = 3 ] || fail "pipelining: expected 3 responses, got $n"
    [ "$(grep -o 'HTTP/1\.1 [0-9][0-9][0-9] ' <<<"$RAW" | cut -d' ' -f2 | paste -sd' ')" = "204 200 200" ] ||
        fail "pipelining: expected statuses 204 200 200 in order, got $(grep -o 'HTTP/1\.1 [0-9]*' <<<"$RAW" | paste -sd' ')"
    grep -q '"meta"' <<<"$RAW" || fail "pipelining: keep-c metadata missing from the second response"
    grep -q '"total": *5' <<<"$RAW" || fail "pipelining: keep-b stats missing from the third response"
    local pbody='{"messages": [{"body": "pipe"}]}'
    raw_send "$(rawfile "POST /v2/queues/pipeq/messages HTTP/1.1\r\nHost: x\r\n$hp\r\n$hc\r\nContent-Type: application/json\r\nContent-Length: ${#pbody}\r\n\r\n${pbody}GET /v2/queues/pipeq/stats HTTP/1.1\r\nHost: x\r\n$hp\r\nConnection: close\r\n\r\n")"
    [ "$(grep -o 'HTTP/1\.1 [0-9][0-9][0-9] ' <<<"$RAW" | cut -d' ' -f2 | paste -sd' ')" = "201 200" ] ||
        fail "pipelined POST+GET: expected statuses 201 200, got $(grep -o 'HTTP/1\.1 [0-9]*' <<<"$RAW" | paste -sd' ')"
    grep -q '"total": *1' <<<"$RAW" || fail "pipelined POST+GET: stats do not show the posted message"
}

sec_fragmented() {
    step "$SRV: a request arriving in small pieces (split inside names, CRLFs and the body)"
    local body='{"messages": [{"body": {"frag": "mént ✓"}}]}' fd frag
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect"
    for frag in 'PO' 'ST /v2/queues/fr' "agq/messages HTTP/1.1\r" "\nHost: x\r\nX-Proj" "ect-ID: $PROJECT\r\n$hc" \
        "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Le" \
        "ngth: $(printf '%s' "$body" | wc -c)\r\n\r" "\n${body:0:10}" "${body:10:7}" "${body:17}"; do
        (printf '%b' "$frag" >&"$fd") 2>/dev/null
        sleep 0.05
    done
    RAW=$(timeout 5 cat <&$fd 2>/dev/null)
    exec {fd}>&-
    REQ="POST /v2/queues/fragq/messages sent in 10 pieces" BODY=$RAW
    STATUS=$(sed -n '1s/^HTTP\/1\.[01] \([0-9][0-9][0-9]\).*/\1/p' <<<"$RAW")
    [ "$STATUS" = 201 ] || fail "fragmented request: expected 201, got '$STATUS'"
    req --client "$(new_uuid)" GET /v2/queues/fragq/messages
    expect_status 200
    expect_json '[.messages[].body]' '[{"frag": "mént ✓"}]'
}

sec_idle() {
    step "$SRV: idle and half-sent connections do not block others"
    local idle=()
    for i in 1 2 3 4 5 6; do
        exec {f}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
        idle+=("$f")
    done
    # (subshells, so that a SIGPIPE cannot end this script)
    (printf 'GET /v2/ping HTTP/1.1\r\nHost: x\r\n' >&"${idle[0]}") 2>/dev/null
    (printf 'POST /v2/queues/keep-a/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{' >&"${idle[1]}") 2>/dev/null
    for i in 1 2 3; do
        req GET /v2/queues/keep-c
        expect_status 200
    done
    local pids=() rcs=0
    for i in $(seq 1 12); do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -H "$hp" "$URL/v2/queues/keep-b/stats" >"$E2E_TMP/par.$i" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rcs=1; done
    REQ="12 parallel GET /v2/queues/keep-b/stats with 6 idle connections open"
    [ "$(cat "$E2E_TMP"/par.* | sort | uniq -c | awk '{$1=$1; print}')" = "12 200" ] ||
        fail "parallel requests: $(cat "$E2E_TMP"/par.* | sort | uniq -c | tr '\n' ' ')"
    rm -f "$E2E_TMP"/par.*
    for f in "${idle[@]}"; do exec {f}>&-; done
    expect_alive
}

robust() { # robust CONFIG MODE SECTION...
    local cfg=$1 mode=$2 pool modeargs f i s out n SECTIONS
    shift 2
    SECTIONS=$*
    SRV="${cfg}_$mode"
    case $cfg in
    redis) pool="redis1=$REDIS_BASE/5" ;;
    mongo) mongo_pool_uri "robust_$mode" && pool="mongo1=$MONGO_POOL_URI" ;;
    esac
    case $mode in
    threads) modeargs=(--threads 4) ;;
    tpc) modeargs=(--thread-per-connection) ;;
    esac
    PROJECT="$BASE_PROJECT-$SRV"
    KEEP="$E2E_TMP/keep-$SRV"
    mkdir -p "$KEEP"
    zaqard_start "$SRV" --pool "$pool" "${modeargs[@]}"
    local port=${URL##*:} hp="X-Project-ID: $PROJECT" hc="Client-ID: $CLIENT_ID"

    step "$SRV: messages posted before the garbage"
    post_keep keep-a 20
    post_keep keep-b 5
    req PUT /v2/queues/keep-c '{"meta": "data ✓"}'
    expect_status 201

    for sec in $SECTIONS; do "sec_$sec"; done

    step "$SRV: nothing lost"
    check_keep keep-a
    check_keep keep-b
    req GET /v2/queues/keep-c
    expect_status 200
    expect_json . '{"meta": "data ✓"}'
    req GET /v2/queues/keep-a/stats
    expect_json '.messages | {free, claimed, total}' '{"free": 20, "claimed": 0, "total": 20}'
    req GET /v2/health
    expect_status 200
    expect_json '{catalog_reachable, storage_reachable}' '{"catalog_reachable": true, "storage_reachable": true}'
    step "$SRV: SIGTERM, exit status 0"
    zaqard_stop "$SRV"
}

BASE_PROJECT=$PROJECT
start=$SECONDS
# Everything against one server; the connection-level sections again in
# thread-per-connection mode; the body-level ones again on a MongoDB pool.
all="garbage huge truncated names idheaders deep numbers shapes methods http10 fragmented keepalive pipeline idle"
robust redis threads $all
robust redis tpc garbage huge truncated http10 fragmented keepalive pipeline idle
if [ -n "${LDPROF_TEST_MONGO_URI:-}" ]; then
    robust mongo threads truncated names deep numbers shapes pipeline
else
    echo "note: LDPROF_TEST_MONGO_URI not set: the mongo configuration is left out"
fi
echo "robustness passed in $((SECONDS - start))s"
