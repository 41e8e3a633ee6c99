#!/usr/bin/env bash
# 10-zaqard-api.sh - the whole zaqard HTTP API (tests/zaqard/API.md), run
# against every store configuration (one Redis pool; one MongoDB pool; two
# Redis pools + one MongoDB pool) in both concurrency modes (--threads 4 and
# --thread-per-connection).  Status codes and bodies are asserted exactly
# wherever API.md determines them.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres

REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}    # redis://127.0.0.1:PORT
REDIS_PORT=${REDIS_BASE##*:}
MONGO_URI=${LDPROF_TEST_MONGO_URI:-}
HAVE_PYMONGO=0 # to look inside the MongoDB store (python3-pymongo, which the stand-in needs too)
"${LDPROF_PYTHON:-/usr/bin/python3}" -c 'import pymongo' 2>/dev/null && HAVE_PYMONGO=1

# ------------------------------------------------------------------ helpers

# msg ID TTL BODY_JSON QUEUE: the expected message object, without "age".
msg() { # (ids and queue names need no JSON escaping)
    printf '{"id": "%s", "href": "/v2/queues/%s/messages/%s", "ttl": %s, "body": %s}' "$1" "$4" "$1" "$2" "$3"
}

# expect_msgs JQ_TO_ARRAY EXPECTED_ARRAY: messages equal, ages are whole
# seconds in 0..119.
expect_msgs() {
    expect_json "$1 | map(del(.age))" "$2"
    expect_json "$1 | map(.age | type == \"number\" and . >= 0 and . < 120 and . == floor) | all" true
}

# href_parts HREF: "PATH?" and its query parameters sorted, joined by '&'.
href_parts() {
    local path=${1%%\?*} query=""
    [[ $1 == *\?* ]] && query=${1#*\?}
    printf '%s?%s\n' "$path" "$(tr '&' '\n' <<<"$query" | sed '/^$/d' | sort | paste -sd '&')"
}

# next_href: the href of the body's "next" link (bash, to spare a jq start).
next_href() {
    if [[ $BODY =~ \"rel\":\ *\"next\",\ *\"href\":\ *\"([^\"]*)\" ]] ||
        [[ $BODY =~ \"href\":\ *\"([^\"]*)\",\ *\"rel\":\ *\"next\" ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
    else
        jbody '.links[0].href'
    fi
}

# resource_ids: the ids at the end of the body's "/messages/ID" hrefs, in order.
resource_ids() {
    local b=$BODY
    while [[ $b =~ /messages/([A-Za-z0-9_-]+)\"(.*)$ ]]; do
        printf '%s\n' "${BASH_REMATCH[1]}"
        b=${BASH_REMATCH[2]}
    done
}

expect_next_link() { # expect_next_link EXPECTED_PATH_AND_SORTED_QUERY (from href_parts)
    expect_json '.links | length' 1
    expect_json '.links[0].rel' '"next"'
    local got
    got=$(href_parts "$(next_href)")
    [ "$got" = "$1" ] || fail "next link: expected $1 (parameters in any order), got $(next_href)"
}

expect_allow() { # expect_allow METHOD...: 405 whose Allow header lists them
    expect_error 405 "Method not allowed"
    local m
    for m in "$@"; do expect_header Allow "(^|[ ,])$m([ ,]|\$)"; done
}

expect_content_length() {
    expect_header Content-Length "^$SIZE\$"
}

expect_empty_body() {
    [ -z "$BODY" ] || fail "expected an empty body"
}

# ------------------------------------------------------------------ scenario

# scenario LABEL POOL_KINDS_JSON: everything against $URL in project $P.
scenario() {
    local label=$1 kinds=$2 CA CB q="msgs"
    CA=$(new_uuid)
    CB=$(new_uuid)

    step "$label: GET /v2 and health"
    req GET /v2
    expect_status 200
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_content_length
    expect_json 'has("resources") and (.resources | type == "object")' true
    req GET /v2/health
    expect_status 200
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_json '{catalog_reachable, storage_reachable, operation_status}' \
        '{"catalog_reachable": true, "storage_reachable": true, "operation_status": {}}'
    expect_json '.pools | map_values({kind, reachable})' "$kinds"
    req HEAD /v2/health
    expect_status 204
    req GET /v2/ping
    expect_status 204
    expect_empty_body
    req HEAD /v2/ping
    expect_status 204

    step "$label: create, re-create, read queue metadata"
    req GET "/v2/queues/$q"
    expect_error 404 "Not found"
    req PUT "/v2/queues/$q" '{"description": "main queue", "nested": {"a": [1, 2, {"b": null}]}, "_default_message_ttl": 3600}'
    expect_status 201
    expect_header Location "^/v2/queues/$q\$"
    expect_empty_body
    req GET "/v2/queues/$q"
    expect_status 200
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_json . '{"description": "main queue", "nested": {"a": [1, 2, {"b": null}]}, "_default_message_ttl": 3600}'
    req PUT "/v2/queues/$q" '{"description": "replaced", "ünïcode": "✓"}'
    expect_status 204
    expect_empty_body
    req GET "/v2/queues/$q"
    expect_status 200
    expect_json . '{"description": "replaced", "ünïcode": "✓"}'
    req PUT "/v2/queues/$q"
    expect_status 204
    req GET "/v2/queues/$q"
    expect_status 200
    expect_json . '{}'

    step "$label: list queues with paging (limit=2 over 5 queues), detailed, isolation"
    local LP="$P-list" n
    for n in c a e b d; do
        req --project "$LP" PUT "/v2/queues/list-$n" "{\"n\": \"$n\"}"
        expect_status 201
    done
    req --project "$LP" GET "/v2/queues?limit=2"
    expect_status 200
    expect_json 'keys' '["links", "queues"]'
    expect_json .queues '[{"name": "list-a", "href": "/v2/queues/list-a"}, {"name": "list-b", "href": "/v2/queues/list-b"}]'
    expect_next_link "/v2/queues?limit=2&marker=list-b"
    req --project "$LP" GET "$(next_href)"
    expect_status 200
    expect_json .queues '[{"name": "list-c", "href": "/v2/queues/list-c"}, {"name": "list-d", "href": "/v2/queues/list-d"}]'
    expect_next_link "/v2/queues?limit=2&marker=list-d"
    req --project "$LP" GET "$(next_href)"
    expect_status 200
    expect_json . '{"queues": [{"name": "list-e", "href": "/v2/queues/list-e"}], "links": []}'
    req --project "$LP" GET "/v2/queues"
    expect_status 200
    expect_json '[.queues[].name]' '["list-a", "list-b", "list-c", "list-d", "list-e"]'
    expect_json '.links' '[]'
    req --project "$LP" GET "/v2/queues?limit=2&detailed=true&marker=list-a"
    expect_status 200
    expect_json .queues '[{"name": "list-b", "href": "/v2/queues/list-b", "metadata": {"n": "b"}}, {"name": "list-c", "href": "/v2/queues/list-c", "metadata": {"n": "c"}}]'
    expect_next_link "/v2/queues?detailed=true&limit=2&marker=list-c"
    req --project "$LP" GET "$(next_href)"
    expect_status 200
    expect_json .queues '[{"name": "list-d", "href": "/v2/queues/list-d", "metadata": {"n": "d"}}, {"name": "list-e", "href": "/v2/queues/list-e", "metadata": {"n": "e"}}]'
    req --project "$LP" GET "/v2/queues?marker=list-e"
    expect_status 200
    expect_json . '{"queues": [], "links": []}'
    req --project "$LP" GET "/v2/queues?limit=0"
    expect_error 400 "Invalid API request"
    req --project "$LP" GET "/v2/queues?limit=1001"
    expect_error 400 "Invalid API request"
    req --project "$LP-other" GET "/v2/queues"
    expect_status 200
    expect_json . '{"queues": [], "links": []}'
    req --project "$LP-other" GET "/v2/queues/list-a"
    expect_error 404 "Not found"
    req --project "$LP-other" PUT "/v2/queues/list-a" '{"other": true}'
    expect_status 201
    req --project "$LP-other" GET "/v2/queues/list-a"
    expect_json . '{"other": true}'
    req --project "$LP" GET "/v2/queues/list-a"
    expect_json . '{"n": "a"}'
    req --project "$LP-other" DELETE "/v2/queues/list-a"
    expect_status 204
    req --project "$LP" GET "/v2/queues/list-a"
    expect_status 200

    step "$label: post 3 messages"
    local B1 B2 B3 r m1 m2 m3
    B1='{"event": "créé", "emoji": "😀 ✓ 中文", "nested": {"a": [1, 2.5, -3, null, true, false, {"b": "c"}], "empty": {}, "arr": []}, "esc": "quote\" backslash\\ tab\t nl\n \u00e9"}'
    B2='"just a string"'
    B3='[1, {"x": "ü"}, [[[]]]]'
    req --client "$CA" POST "/v2/queues/$q/messages" \
        "{\"messages\": [{\"ttl\": 300, \"body\": $B1}, {\"body\": $B2}, {\"body\": $B3, \"ttl\": 600}]}"
    expect_status 201
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_json '.resources | length' 3
    expect_json "[.resources[] | test(\"^/v2/queues/$q/messages/[A-Za-z0-9_-]+\$\")] | all" true
    expect_json '.resources | unique | length' 3
    r=$(resource_ids)
    { read -r m1; read -r m2; read -r m3; } <<<"$r"
    local M1 M2 M3
    M1=$(msg "$m1" 300 "$B1" "$q")
    M2=$(msg "$m2" 3600 "$B2" "$q")
    M3=$(msg "$m3" 600 "$B3" "$q")

    step "$label: list messages (echo, paging)"
    req --client "$CA" GET "/v2/queues/$q/messages"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'
    req --client "$CA" GET "/v2/queues/$q/messages?echo=false"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'
    req --client "$CA" GET "/v2/queues/$q/messages?echo=true"
    expect_status 200
    expect_msgs .messages "[$M1, $M2, $M3]"
    req --client "$CB" GET "/v2/queues/$q/messages"
    expect_status 200
    expect_msgs .messages "[$M1, $M2, $M3]"
    req --client "$CA" GET "/v2/queues/$q/messages?echo=true&limit=2"
    expect_status 200
    expect_msgs .messages "[$M1, $M2]"
    expect_json '.links | length' 1
    expect_json '.links[0].rel' '"next"'
    local h
    h=$(next_href)
    [[ $(href_parts "$h") =~ ^/v2/queues/$q/messages\?echo=true(\&include_claimed=false)?\&limit=2\&marker=[0-9]+$ ]] ||
        fail "next link: expected /v2/queues/$q/messages?marker=DIGITS&limit=2&echo=true, got $h"
    req --client "$CA" GET "$h"
    expect_status 200
    expect_msgs .messages "[$M3]"
    expect_json '.links | length' 1
    req --client "$CA" GET "$(next_href)"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'
    req --client "$CB" GET "/v2/queues/$q/messages?limit=1"
    expect_msgs .messages "[$M1]"
    req --client "$CB" GET "$(next_href)"
    expect_status 200
    expect_msgs .messages "[$M2]"
    req --client "$CB" GET "/v2/queues/$q/messages?marker=abc"
    expect_error 400 "Invalid API request"
    req --project "$P-other" --client "$CB" GET "/v2/queues/$q/messages"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'
    req --client "$CB" GET "/v2/queues/nosuchqueue/messages"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'

    step "$label: get one message, round trip"
    req --client "$CB" GET "/v2/queues/$q/messages/$m1"
    expect_status 200
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_content_length
    expect_json 'del(.age)' "$M1"
    expect_json '.age | type == "number" and . >= 0 and . < 120' true
    expect_json .body "$B1"
    req --client "$CB" GET "/v2/queues/$q/messages/$m2"
    expect_json 'del(.age)' "$M2"
    req --client "$CB" GET "/v2/queues/$q/messages/$m3"
    expect_json 'del(.age)' "$M3"
    req --client "$CB" GET "/v2/queues/$q/messages/nosuchmessage0"
    expect_error 404 "Not found"
    req --project "$P-other" --client "$CB" GET "/v2/queues/$q/messages/$m1"
    expect_error 404 "Not found"

    step "$label: stats"
    req GET "/v2/queues/$q/stats"
    expect_status 200
    expect_json '.messages | {free, claimed, total}' '{"free": 3, "claimed": 0, "total": 3}'
    expect_json '.messages | keys' '["claimed", "free", "newest", "oldest", "total"]'
    expect_json '.messages.oldest | {id, href}' "{\"id\": \"$m1\", \"href\": \"/v2/queues/$q/messages/$m1\"}"
    expect_json '.messages.newest | {id, href}' "{\"id\": \"$m3\", \"href\": \"/v2/queues/$q/messages/$m3\"}"
    expect_json '[.messages.oldest, .messages.newest] | map((keys == ["age", "created", "href", "id"]) and (.age | type == "number" and . >= 0 and . < 120) and (.created | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"))) | all' true
    expect_json '[.messages.oldest, .messages.newest] | map(now - (.created | fromdateiso8601) | . > -5 and . < 120) | all' true

    step "$label: claims"
    local c1 c2 loc
    req --client "$CB" POST "/v2/queues/$q/claims?limit=2" '{"ttl": 300, "grace": 60}'
    expect_status 201
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_header Location "^/v2/queues/$q/claims/[A-Za-z0-9_-]+\$"
    loc=$(header_value Location)
    c1=${loc##*/}
    expect_json 'keys' '["messages"]'
    expect_msgs '.messages | map(del(.ttl))' "[$(msg "$m1" 0 "$B1" "$q" | sed 's/"ttl": 0, //'), $(msg "$m2" 0 "$B2" "$q" | sed 's/"ttl": 0, //')]"
    # m1 (ttl 300) is extended to outlive the claim: age + 300 + 60 grace
    # (give or take rounding); m2 (3600) already does.
    expect_json '.messages[0] | .ttl - .age | . >= 359 and . <= 362' true
    expect_json '.messages[1].ttl' 3600
    req --client "$CB" POST "/v2/queues/$q/claims" '{}'
    expect_status 201
    expect_header Location "^/v2/queues/$q/claims/[A-Za-z0-9_-]+\$"
    c2=$(header_value Location)
    c2=${c2##*/}
    [ "$c1" != "$c2" ] || fail "two claims got the same id $c1"
    expect_msgs .messages "[$M3]"
    req --client "$CB" POST "/v2/queues/$q/claims?limit=5"
    expect_status 204
    expect_empty_body
    req GET "/v2/queues/$q/stats"
    expect_json '.messages | {free, claimed, total}' '{"free": 0, "claimed": 3, "total": 3}'
    req --client "$CB" GET "/v2/queues/$q/messages?include_claimed=false"
    expect_json . '{"messages": [], "links": []}'

    req --client "$CB" GET "/v2/queues/$q/claims/$c1"
    expect_status 200
    expect_json 'keys' '["age", "href", "messages", "ttl"]'
    expect_json '{ttl, href}' "{\"ttl\": 300, \"href\": \"/v2/queues/$q/claims/$c1\"}"
    expect_json '.age | type == "number" and . >= 0 and . < 120' true
    expect_json '[.messages[].id]' "[\"$m1\", \"$m2\"]"
    expect_json '.messages[1] | del(.age)' "$M2"
    req --client "$CB" GET "/v2/queues/$q/claims/$c2"
    expect_status 200
    expect_json '{ttl, href}' "{\"ttl\": 60, \"href\": \"/v2/queues/$q/claims/$c2\"}"
    expect_msgs .messages "[$M3]"
    req --client "$CB" PATCH "/v2/queues/$q/claims/$c1" '{"ttl": 600, "grace": 30}'
    expect_status 204
    expect_empty_body
    req --client "$CB" GET "/v2/queues/$q/claims/$c1"
    expect_status 200
    expect_json .ttl 600
    expect_json '.messages[0] | .ttl - .age | . >= 629 and . <= 632' true
    req --client "$CB" PATCH "/v2/queues/$q/claims/$c1" '{"ttl": 59}'
    expect_error 400 "Invalid API request"
    req --client "$CB" PATCH "/v2/queues/$q/claims/nosuchclaim0" '{"ttl": 100}'
    expect_error 404 "Not found"
    req --client "$CB" GET "/v2/queues/$q/claims/nosuchclaim0"
    expect_error 404 "Not found"
    req --project "$P-other" --client "$CB" GET "/v2/queues/$q/claims/$c1"
    expect_error 404 "Not found"

    step "$label: delete claimed messages (403 without/with a wrong claim_id)"
    req --client "$CB" DELETE "/v2/queues/$q/messages/$m1"
    expect_error 403 "Forbidden"
    req --client "$CB" DELETE "/v2/queues/$q/messages/$m1?claim_id=$c2"
    expect_error 403 "Forbidden"
    req --client "$CB" GET "/v2/queues/$q/messages/$m1"
    expect_status 200
    req --client "$CB" DELETE "/v2/queues/$q/messages/$m1?claim_id=$c1"
    expect_status 204
    expect_empty_body
    req --client "$CB" GET "/v2/queues/$q/messages/$m1"
    expect_error 404 "Not found"
    req --client "$CB" DELETE "/v2/queues/$q/messages/$m1?claim_id=$c1"
    expect_status 204
    req --client "$CB" DELETE "/v2/queues/$q/messages/nosuchmessage0"
    expect_status 204

    step "$label: release claims"
    req --client "$CB" DELETE "/v2/queues/$q/claims/$c1"
    expect_status 204
    expect_empty_body
    req --client "$CB" GET "/v2/queues/$q/claims/$c1"
    expect_error 404 "Not found"
    req --client "$CB" GET "/v2/queues/$q/messages?include_claimed=false"
    expect_status 200
    expect_msgs .messages "[$M2]"
    req --client "$CB" GET "/v2/queues/$q/messages?include_claimed=true"
    expect_status 200
    expect_msgs .messages "[$M2, $M3]"
    req GET "/v2/queues/$q/stats"
    expect_json '.messages | {free, claimed, total}' '{"free": 1, "claimed": 1, "total": 2}'
    expect_json '.messages.oldest.id' "\"$m2\""
    req --client "$CB" DELETE "/v2/queues/$q/claims/$c2"
    expect_status 204
    req --client "$CB" DELETE "/v2/queues/$q/claims/$c2"
    expect_status 204
    req --client "$CB" DELETE "/v2/queues/$q/claims/nosuchclaim0"
    expect_status 204
    req GET "/v2/queues/$q/stats"
    expect_json '.messages | {free, claimed, total}' '{"free": 2, "claimed": 0, "total": 2}'

    step "$label: bulk delete (?ids=) and pop"
    local m4 m5 m6 m7 M5 M6 M7
    req --client "$CA" POST "/v2/queues/$q/messages" \
        '{"messages": [{"body": {"n": 4}}, {"body": {"n": 5}}, {"body": {"n": 6}}, {"body": {"n": 7}, "ttl": 1800}]}'
    expect_status 201
    expect_json '.resources | length' 4
    r=$(resource_ids)
    { read -r m4; read -r m5; read -r m6; read -r m7; } <<<"$r"
    M5=$(msg "$m5" 3600 '{"n": 5}' "$q")
    M6=$(msg "$m6" 3600 '{"n": 6}' "$q")
    M7=$(msg "$m7" 1800 '{"n": 7}' "$q")
    req --client "$CA" DELETE "/v2/queues/$q/messages?ids=$m2,$m4"
    expect_status 204
    expect_empty_body
    req --client "$CA" GET "/v2/queues/$q/messages/$m2"
    expect_error 404 "Not found"
    req --client "$CA" GET "/v2/queues/$q/messages/$m4"
    expect_error 404 "Not found"
    req --client "$CA" DELETE "/v2/queues/$q/messages?pop=2"
    expect_status 200
    expect_json 'keys' '["messages"]'
    expect_msgs .messages "[$M3, $M5]"
    req --client "$CA" GET "/v2/queues/$q/messages/$m3"
    expect_error 404 "Not found"
    req --client "$CB" GET "/v2/queues/$q/messages"
    expect_msgs .messages "[$M6, $M7]"
    req GET "/v2/queues/$q/stats"
    expect_json '.messages | {free, claimed, total, o: .oldest.id, n: .newest.id}' \
        "{\"free\": 2, \"claimed\": 0, \"total\": 2, \"o\": \"$m6\", \"n\": \"$m7\"}"
    local ids21
    ids21=$(seq -f 'id%02g' 1 21 | paste -sd,)
    req --client "$CA" DELETE "/v2/queues/$q/messages?ids=$ids21"
    expect_error 400 "Invalid API request"
    req --client "$CA" DELETE "/v2/queues/$q/messages?ids=$m6&pop=1"
    expect_error 400 "Invalid API request"
    req --client "$CA" DELETE "/v2/queues/$q/messages"
    expect_error 400 "Invalid API request"
    req --client "$CA" DELETE "/v2/queues/$q/messages?pop=0"
    expect_error 400 "Invalid API request"
    req --client "$CA" DELETE "/v2/queues/$q/messages?pop=21"
    expect_error 400 "Invalid API request"
    req GET "/v2/queues/$q/stats"
    expect_json '.messages.total' 2

    step "$label: defaults (limits 10, grace 60), pop skips claimed messages, 20 ids"
    local dq=defaults ids12 c3 hdr
    req --client "$CA" POST "/v2/queues/$dq/messages" \
        "$(printf '{"messages": [{"body": 0, "ttl": 60}'; for n in $(seq 1 11); do printf ', {"body": %d}' "$n"; done; printf ']}')"
    expect_status 201
    expect_json '.resources | length' 12
    ids12=$(resource_ids)
    req --client "$CB" GET "/v2/queues/$dq/messages"
    expect_status 200
    expect_json '[.messages[].body]' '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'
    expect_json '.links | length' 1
    req --client "$CB" POST "/v2/queues/$dq/claims" '{"ttl": 100}'
    expect_status 201
    expect_json '[.messages[].body]' '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'
    # grace defaults to 60: the ttl-60 message now lives age + 100 + 60
    expect_json '.messages[0] | .ttl - .age | . >= 159 and . <= 162' true
    hdr=$(header_value Location)
    c3=${hdr##*/}
    req --client "$CB" DELETE "/v2/queues/$dq/messages?pop=20"
    expect_status 200
    expect_json '[.messages[].body]' '[10, 11]'
    req --client "$CB" GET "/v2/queues/$dq/messages?include_claimed=true&limit=20"
    expect_json '[.messages[].body]' '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]'
    req --client "$CB" DELETE "/v2/queues/$dq/messages?pop=5"
    expect_status 200
    expect_json . '{"messages": []}'
    req --client "$CB" DELETE "/v2/queues/$dq/claims/$c3"
    expect_status 204
    req --client "$CB" DELETE "/v2/queues/$dq/messages?ids=$(head -n 10 <<<"$ids12" | paste -sd,),$(seq -f 'gone%02g' 1 10 | paste -sd,)"
    expect_status 204
    req GET "/v2/queues/$dq/stats"
    expect_json '.messages | {free, claimed, total}' '{"free": 0, "claimed": 0, "total": 0}'
    req --client "$(tr 'a-f' 'A-F' <<<"$CB")" GET "/v2/queues/$dq/messages"
    expect_status 200
    local qn
    for n in $(seq 6 12); do
        printf -v qn 'list-%02d' "$n"
        req --project "$LP" PUT "/v2/queues/$qn"
        expect_status 201
    done
    req --project "$LP" GET "/v2/queues"
    expect_status 200
    expect_json '[.queues[].name]' '["list-06", "list-07", "list-08", "list-09", "list-10", "list-11", "list-12", "list-a", "list-b", "list-c"]'
    expect_next_link "/v2/queues?limit=10&marker=list-c"
    req --project "$LP" GET "/v2/queues?limit=1000"
    expect_json '.queues | length' 12
    expect_json '.links' '[]'

    step "$label: no X-Project-ID is the project \"\""
    req --project "" PUT "/v2/queues/noproj-$E2E_ID" '{"p": ""}'
    expect_status 201
    req --project "" GET "/v2/queues/noproj-$E2E_ID"
    expect_status 200
    expect_json . '{"p": ""}'
    req GET "/v2/queues/noproj-$E2E_ID"
    expect_error 404 "Not found"
    req --project "" GET "/v2/queues?limit=1000"
    expect_json "[.queues[].name | select(. == \"noproj-$E2E_ID\")]" "[\"noproj-$E2E_ID\"]"
    req --project "" DELETE "/v2/queues/noproj-$E2E_ID"
    expect_status 204

    step "$label: post to a queue that does not exist creates it"
    req --client "$CA" POST "/v2/queues/autoq/messages" '{"messages": [{"body": 1}]}'
    expect_status 201
    req GET "/v2/queues/autoq"
    expect_status 200
    expect_json . '{}'
    req GET "/v2/queues/autoq/stats"
    expect_json '.messages | {free, claimed, total}' '{"free": 1, "claimed": 0, "total": 1}'

    step "$label: delete queue"
    req DELETE "/v2/queues/$q"
    expect_status 204
    expect_empty_body
    req GET "/v2/queues/$q"
    expect_error 404 "Not found"
    req GET "/v2/queues/$q/stats"
    expect_error 404 "Not found"
    req DELETE "/v2/queues/$q"
    expect_status 204
    req --client "$CB" GET "/v2/queues/$q/messages?include_claimed=true"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'
    req --client "$CB" POST "/v2/queues/$q/claims"
    expect_status 204
    req PUT "/v2/queues/$q"
    expect_status 201
    req GET "/v2/queues/$q/stats"
    expect_status 200
    expect_json . '{"messages": {"free": 0, "claimed": 0, "total": 0}}'
    req --client "$CB" GET "/v2/queues/$q/messages/$m6"
    expect_error 404 "Not found"

    step "$label: error cases"
    local qe=errq
    req PUT "/v2/queues/$qe"
    expect_status 201
    # invalid queue names
    req PUT "/v2/queues/bad.name"
    expect_error 400 "Invalid queue name"
    req PUT "/v2/queues/bad%20name"
    expect_error 400 "Invalid queue name"
    req PUT "/v2/queues/$(printf 'x%.0s' {1..65})"
    expect_error 400 "Invalid queue name"
    req PUT "/v2/queues/$(printf 'x%.0s' {1..64})"
    expect_status 201
    req GET "/v2/queues/bad.name/stats"
    expect_error 400 "Invalid queue name"
    req --client "$CA" POST "/v2/queues/bad.name/messages" '{"messages": [{"body": 1}]}'
    expect_error 400 "Invalid queue name"
    # bad JSON and bad metadata
    req PUT "/v2/queues/$qe" '{"a": '
    expect_error 400 "Malformed JSON"
    req PUT "/v2/queues/$qe" '[1, 2]'
    expect_error 400 "Invalid API request"
    req PUT "/v2/queues/$qe" '{"_secret": 1}'
    expect_error 400 "Invalid API request"
    req PUT "/v2/queues/$qe" '{"_flavor": "nosuchflavor"}'
    expect_error 400 "Invalid API request"
    req PUT "/v2/queues/$qe" '{"_max_claim_count": 5, "_default_message_ttl": 120}'
    expect_status 204
    req GET "/v2/queues/$qe"
    expect_json . '{"_max_claim_count": 5, "_default_message_ttl": 120}'
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": "default ttl"}]}'
    expect_status 201
    req --client "$CA" GET "$(jbody '.resources[0]')"
    expect_status 200
    expect_json .ttl 120
    # metadata size limit: 65536 bytes as sent is fine, 65537 is not
    local mdfile="$E2E_TMP/md.json"
    printf '{"pad": "%s"}' "$(head -c $((65536 - 11)) /dev/zero | tr '\0' m)" >"$mdfile"
    [ "$(wc -c <"$mdfile")" = 65536 ] || fail "test bug: metadata file size"
    req --data-file "$mdfile" PUT "/v2/queues/$qe"
    expect_status 204
    printf '{"pad": "%s"}' "$(head -c $((65537 - 11)) /dev/zero | tr '\0' m)" >"$mdfile"
    req --data-file "$mdfile" PUT "/v2/queues/$qe"
    expect_error 400 "Invalid API request"
    req PUT "/v2/queues/$qe"
    expect_status 204
    # message validation
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": 1}'
    expect_error 400 "Malformed JSON"
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": 1, "ttl": 59}]}'
    expect_error 400 "Invalid API request"
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": 1, "ttl": 1209601}]}'
    expect_error 400 "Invalid API request"
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": 1, "ttl": "300"}]}'
    expect_error 400 "Invalid API request"
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"ttl": 300}]}'
    expect_error 400 "Invalid API request"
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": []}'
    expect_error 400 "Invalid API request"
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": 0}, {"body": 1}, {"body": 2}, {"body": 3}, {"body": 4}, {"body": 5}, {"body": 6}, {"body": 7}, {"body": 8}, {"body": 9}, {"body": 10}, {"body": 11}, {"body": 12}, {"body": 13}, {"body": 14}, {"body": 15}, {"body": 16}, {"body": 17}, {"body": 18}, {"body": 19}, {"body": 20}]}'
    expect_error 400 "Invalid API request"
    req GET "/v2/queues/$qe/stats"
    expect_json '.messages.total' 1
    req --client "$CA" POST "/v2/queues/$qe/messages" '{"messages": [{"body": "min", "ttl": 60}, {"body": "max", "ttl": 1209600}]}'
    expect_status 201
    expect_json '.resources | length' 2
    # body size limit: a 262144-byte request is accepted, 262145 is not
    local bigfile="$E2E_TMP/big.json" pre='{"messages": [{"body": "' suf='"}]}' pad
    pad=$((262144 - ${#pre} - ${#suf}))
    { printf '%s' "$pre"; head -c $pad /dev/zero | tr '\0' b; printf '%s' "$suf"; } >"$bigfile"
    [ "$(wc -c <"$bigfile")" = 262144 ] || fail "test bug: big body is $(wc -c <"$bigfile") bytes"
    req --client "$CA" --data-file "$bigfile" POST "/v2/queues/$qe/messages"
    expect_status 201
    req --client "$CB" GET "$(jbody '.resources[0]')"
    expect_status 200
    expect_json '.body | length' $pad
    { printf '%s' "$pre"; head -c $((pad + 1)) /dev/zero | tr '\0' b; printf '%s' "$suf"; } >"$bigfile"
    req --client "$CA" --data-file "$bigfile" POST "/v2/queues/$qe/messages"
    expect_error 400 "Invalid API request"
    { printf '%s' "$pre"; head -c 600000 /dev/zero | tr '\0' b; printf '%s' "$suf"; } >"$bigfile"
    req --client "$CA" --data-file "$bigfile" POST "/v2/queues/$qe/messages"
    expect_error 400 "Invalid API request"
    # limits on listing, claiming, claim ttl/grace
    local lim
    for lim in 0 21 -1 abc; do
        req --client "$CA" GET "/v2/queues/$qe/messages?limit=$lim"
        expect_error 400 "Invalid API request"
        req --client "$CA" POST "/v2/queues/$qe/claims?limit=$lim"
        expect_error 400 "Invalid API request"
    done
    req --client "$CB" GET "/v2/queues/$qe/messages?limit=20"
    expect_status 200
    for body in '{"ttl": 59}' '{"ttl": 43201}' '{"grace": -1}' '{"grace": 43201}' '{"ttl": "60"}' '[]'; do
        req --client "$CA" POST "/v2/queues/$qe/claims" "$body"
        expect_error 400 "Invalid API request"
    done
    req --client "$CA" POST "/v2/queues/$qe/claims" '{"ttl": '
    expect_error 400 "Malformed JSON"
    req GET "/v2/queues/$qe/stats"
    expect_json '.messages.claimed' 0
    req --client "$CB" POST "/v2/queues/$qe/claims?limit=1" '{"ttl": 43200, "grace": 0}'
    expect_status 201
    req --client "$CB" POST "/v2/queues/$qe/claims?limit=1" '{"ttl": 60, "grace": 43200}'
    expect_status 201
    # Client-ID: required and checked on messages/claims routes only
    req --client "" GET "/v2/queues/$qe/messages"
    expect_error 400 "Invalid API request"
    req --client "" POST "/v2/queues/$qe/messages" '{"messages": [{"body": 1}]}'
    expect_error 400 "Invalid API request"
    req --client "" POST "/v2/queues/$qe/claims"
    expect_error 400 "Invalid API request"
    req --client "" GET "/v2/queues/$qe/claims/$c1"
    expect_error 400 "Invalid API request"
    req --client "not-a-uuid" GET "/v2/queues/$qe/messages"
    expect_error 400 "Invalid API request"
    req --client "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz" GET "/v2/queues/$qe/messages"
    expect_error 400 "Invalid API request"
    req --client "$(tr -d - <<<"$CB")" GET "/v2/queues/$qe/messages"
    expect_status 200
    req --client "" GET "/v2/queues/$qe"
    expect_status 200
    req --client "" GET "/v2/queues"
    expect_status 200
    req --client "" GET "/v2/queues/$qe/stats"
    expect_status 200
    # X-Project-ID
    req --project "bad project" GET "/v2/queues"
    expect_error 400 "Invalid API request"
    req --project "a/b" GET "/v2/queues/$qe"
    expect_error 400 "Invalid API request"
    req --project "$(printf 'p%.0s' {1..257})" GET "/v2/queues"
    expect_error 400 "Invalid API request"
    req --project "$(printf 'p%.0s' {1..256})" GET "/v2/queues"
    expect_status 200
    expect_json . '{"queues": [], "links": []}'
    # unknown routes, wrong methods
    for r in / /v3 /v2/nope /v2/queues/$qe/nope /v2/queues/$qe/messages/x/y /v2/queues/$qe/claims/x/y /v2/queues/$qe/stats/x; do
        req GET "$r"
        expect_error 404 "Not found"
    done
    req POST "/v2/queues/$qe"
    expect_allow GET PUT DELETE
    req DELETE "/v2/queues"
    expect_allow GET
    req POST "/v2/health"
    expect_allow GET HEAD
    req DELETE "/v2/ping"
    expect_allow GET HEAD
    req POST "/v2"
    expect_allow GET
    req POST "/v2/queues/$qe/stats"
    expect_allow GET
    req --client "$CA" PUT "/v2/queues/$qe/messages"
    expect_allow GET POST DELETE
    req --client "$CA" PATCH "/v2/queues/$qe/messages/$m6"
    expect_allow GET DELETE
    req --client "$CA" GET "/v2/queues/$qe/claims"
    expect_allow POST
    req --client "$CA" PUT "/v2/queues/$qe/claims/$c1"
    expect_allow GET PATCH DELETE

    step "$label: still healthy after all of it"
    req GET /v2/health
    expect_status 200
    expect_json '{catalog_reachable, storage_reachable}' '{"catalog_reachable": true, "storage_reachable": true}'
    req GET /v2/ping
    expect_status 204
}

# ------------------------------------------------------------------ placement

# mongo_ids DB ID...: print each ID that DB.messages holds as a document _id
# (the layout of store_mongo.c; pymongo is there for the mongo stand-in).
mongo_ids() {
    "${LDPROF_PYTHON:-/usr/bin/python3}" - "$MONGO_URI" "$@" <<'PY'
import sys
import pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
coll = client[sys.argv[2]]["messages"]
for i in sys.argv[3:]:
    if coll.find_one({"_id": i}) is not None:
        print(i)
PY
}

# check_spread NAME "POOL=REDIS_DB ..." "MONGO_POOL ..." LABEL: many queues are
# spread over >1 pool (catalog), and each queue's message lives in its own
# pool's store (its Redis db, or the MongoDB database) and in no other.
check_spread() {
    local name=$1 redis_pools=$2 mongo_pools=$3 label=$4 i qn pool rows used cat=${ZQ_CATALOG[$1]} prefix
    step "$label: queues spread over the pools; messages live in their queue's pool"
    declare -A qid=()
    prefix="spread-$label-$E2E_ID"
    for ((i = 0; i < 30; i++)); do
        qn=$(printf '%s-%02d' "$prefix" "$i")
        req POST "/v2/queues/$qn/messages" "{\"messages\": [{\"body\": {\"q\": \"$qn\"}}]}"
        expect_status 201
        [[ $BODY =~ /messages/([A-Za-z0-9_-]+)\" ]] || fail "no message href in the answer"
        qid[$qn]=${BASH_REMATCH[1]}
        if ((i >= 11)); then
            used=$(psql "$cat" -qAtX -c "SELECT count(DISTINCT pool) FROM queues WHERE project = '$P'") ||
                fail "psql on the catalog failed"
            [ "$used" -ge 3 ] && break
        fi
    done
    REQ="psql: SELECT name, pool FROM queues WHERE project = '$P'" STATUS="" BODY=""
    rows=$(psql "$cat" -qAtX -F ' ' -c "SELECT name, pool FROM queues WHERE project = '$P' AND name LIKE 'spread-%' ORDER BY name") ||
        fail "psql on the catalog failed"
    echo "placement: $(awk '{print $2}' <<<"$rows" | sort | uniq -c | tr '\n' ' ')"
    used=$(awk '{print $2}' <<<"$rows" | sort -u | wc -l)
    [ "$used" -ge 2 ] || fail "all ${#qid[@]} queues were placed on one pool: $rows"
    [ "$(wc -l <<<"$rows")" = "${#qid[@]}" ] || fail "catalog has $(wc -l <<<"$rows") spread queues, expected ${#qid[@]}"
    # what each store holds
    local rp db keys_of=() in_mongo="" k
    declare -A keys=()
    for rp in $redis_pools; do
        keys[${rp%%=*}]=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "${rp#*=}" --scan --pattern "*$prefix-*")
    done
    if [ -n "$mongo_pools" ] && [ $HAVE_PYMONGO = 1 ]; then
        in_mongo=$(mongo_ids "$MONGO_DB_MIXED" "${qid[@]}" 2>&1) || fail "cannot query the MongoDB store: $in_mongo"
    elif [ -n "$mongo_pools" ]; then
        echo "note: no pymongo: the MongoDB store is checked through the API only"
    fi
    while read -r qn pool; do
        [ -n "${qid[$qn]:-}" ] || fail "catalog lists unknown queue $qn"
        local found=0 has
        for rp in $redis_pools; do
            has=0
            [[ $'\n'${keys[${rp%%=*}]} == *"$qn"* ]] && has=1
            REQ="redis-cli -n ${rp#*=} --scan --pattern '*$prefix-*'"
            if [ "${rp%%=*}" = "$pool" ]; then
                [ $has = 1 ] || fail "queue $qn is on pool $pool but redis db ${rp#*=} has no key naming it"
                found=1
            else
                [ $has = 0 ] || fail "queue $qn is on pool $pool but redis db ${rp#*=} (pool ${rp%%=*}) has keys for it"
            fi
        done
        has=0
        [[ $'\n'$in_mongo$'\n' == *$'\n'"${qid[$qn]}"$'\n'* ]] && has=1
        REQ="pymongo: $MONGO_DB_MIXED.messages.find_one({_id: ${qid[$qn]}})"
        if [[ " $mongo_pools " == *" $pool "* ]]; then
            [ $has = 1 ] || [ $HAVE_PYMONGO = 0 ] || fail "queue $qn is on pool $pool but its message ${qid[$qn]} is not in the mongo store"
            found=1
        else
            [ $has = 0 ] || fail "queue $qn is on pool $pool but its message ${qid[$qn]} is in the mongo store"
        fi
        [ $found = 1 ] || fail "queue $qn placed on unknown pool '$pool'"
        # and the API serves it
        req GET "/v2/queues/$qn/messages/${qid[$qn]}"
        expect_status 200
        expect_json .body "{\"q\": \"$qn\"}"
    done <<<"$rows"
    # a message that lives in Redis disappears from the API when its keys go
    local victim=""
    while read -r qn pool; do
        for rp in $redis_pools; do [ "${rp%%=*}" = "$pool" ] && victim="$qn ${rp#*=}"; done
    done <<<"$rows"
    if [ -n "$victim" ]; then
        local vq vdb
        read -r vq vdb <<<"$victim"
        step "$label: deleting queue $vq's keys from redis db $vdb makes its message vanish"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$vdb" --scan --pattern "*$vq*" |
            xargs -r redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$vdb" DEL >/dev/null
        req GET "/v2/queues/$vq/messages/${qid[$vq]}"
        expect_error 404 "Not found"
    fi
}

# ------------------------------------------------------------------ extras

# A config file (flags override it), pool weight 0, flavors; then a pool
# that cannot be reached: 503s, and still a clean exit.
extras() {
    local conf="$E2E_TMP/zaqard.conf" has_mongo=0 pool
    [ -n "$MONGO_URI" ] && has_mongo=1
    PROJECT="$BASE_PROJECT-conf"
    P=$PROJECT
    step "config file: [zaqard] and [pool:*] sections, thread_per_connection"
    new_catalog
    {
        printf '[zaqard]\nlisten = 127.0.0.1:1\ncatalog = %s\nthread_per_connection = true\nlog_level = warn\n\n' "$CATALOG"
        printf '[pool:cfgredis]\nuri = %s/6\nweight = 100\ngroup = fast\n\n' "$REDIS_BASE"
        if [ $has_mongo = 1 ]; then
            mongo_pool_uri conf
            printf '[pool:cfgmongo]\nuri = %s\nweight = 0\ngroup = slow\n' "$MONGO_POOL_URI"
        fi
    } >"$conf"
    zaqard_start conf --config "$conf"
    req GET /v2/health
    expect_status 200
    if [ $has_mongo = 1 ]; then
        expect_json '.pools | map_values({kind, reachable})' \
            '{"cfgredis": {"kind": "redis", "reachable": true}, "cfgmongo": {"kind": "mongodb", "reachable": true}}'
    else
        expect_json '.pools | map_values({kind, reachable})' '{"cfgredis": {"kind": "redis", "reachable": true}}'
    fi
    local i
    for i in 1 2 3 4 5 6; do
        req PUT "/v2/queues/w$i"
        expect_status 201
    done
    REQ="psql: SELECT DISTINCT pool FROM queues" STATUS="" BODY=""
    pool=$(psql "$CATALOG" -qAtX -c "SELECT string_agg(DISTINCT pool, ',') FROM queues WHERE project = '$P'")
    [ "$pool" = cfgredis ] || fail "queues went to pools '$pool'; only cfgredis has weight > 0"
    if [ $has_mongo = 1 ]; then
        step "config file: a queue with a _flavor goes to a pool of the flavor's group"
        psql "$CATALOG" -qAtX -v ON_ERROR_STOP=1 -c "INSERT INTO flavors (project, name, pool_group) VALUES ('$P', 'slowf', 'slow')" >/dev/null ||
            fail "cannot insert a flavor into the catalog"
        req PUT /v2/queues/flavored '{"_flavor": "slowf", "x": 1}'
        expect_status 201
        req GET /v2/queues/flavored
        expect_json . '{"_flavor": "slowf", "x": 1}'
        REQ="psql: SELECT pool FROM queues WHERE name = 'flavored'" STATUS="" BODY=""
        pool=$(psql "$CATALOG" -qAtX -c "SELECT pool FROM queues WHERE project = '$P' AND name = 'flavored'")
        [ "$pool" = cfgmongo ] || fail "queue with _flavor slowf (group slow) went to pool '$pool', expected cfgmongo"
        req POST /v2/queues/flavored/messages '{"messages": [{"body": "on mongo"}]}'
        expect_status 201
        local id=${BODY##*/}
        id=${id%%\"*}
        if [ $HAVE_PYMONGO = 1 ]; then
            [ "$(mongo_ids "${MONGO_POOL_URI##*/}" "$id")" = "$id" ] || fail "message $id of the flavored queue is not in the mongo store"
        fi
        req PUT /v2/queues/flavored2 '{"_flavor": "nosuch"}'
        expect_error 400 "Invalid API request"
    fi
    zaqard_stop conf

    step "an unreachable pool: 503s, and a clean exit"
    PROJECT="$BASE_PROJECT-dead"
    ZAQARD_READY_ANY=1 zaqard_start dead --pool "dead=redis://127.0.0.1:1/0"
    req GET /v2/health
    expect_status 503
    expect_json . '{"catalog_reachable": true, "storage_reachable": false, "operation_status": {}, "pools": {"dead": {"kind": "redis", "reachable": false}}}'
    req GET /v2/ping
    expect_status 503
    req HEAD /v2/health
    expect_status 503
    req POST /v2/queues/q1/messages '{"messages": [{"body": 1}]}'
    expect_error 503 "Service temporarily unavailable"
    req GET /v2/queues/q1/messages
    expect_error 503 "Service temporarily unavailable"
    req POST /v2/queues/q1/claims
    expect_error 503 "Service temporarily unavailable"
    req PUT /v2/queues/bad.name
    expect_error 400 "Invalid queue name"
    zaqard_stop dead
}

# ------------------------------------------------------------------ runs

run() { # run CONFIG MODE
    local cfg=$1 mode=$2 pools=() kinds modeargs=() name="${1}_$2" redis_pools="" mongo_pools=""
    case $cfg in
    redis)
        pools=(--pool "redis1=$REDIS_BASE/1")
        kinds='{"redis1": {"kind": "redis", "reachable": true}}'
        ;;
    mongo)
        mongo_pool_uri "mongo_$mode"
        pools=(--pool "mongo1=$MONGO_POOL_URI")
        kinds='{"mongo1": {"kind": "mongodb", "reachable": true}}'
        ;;
    mixed)
        mongo_pool_uri "mixed_$mode"
        MONGO_DB_MIXED=${MONGO_POOL_URI##*/}
        pools=(--pool "redis1=$REDIS_BASE/2,weight=100" --pool "redis2=$REDIS_BASE/3,weight=100"
            --pool "mongo1=$MONGO_POOL_URI,weight=100")
        kinds='{"redis1": {"kind": "redis", "reachable": true}, "redis2": {"kind": "redis", "reachable": true}, "mongo1": {"kind": "mongodb", "reachable": true}}'
        redis_pools="redis1=2 redis2=3"
        mongo_pools="mongo1"
        ;;
    esac
    case $mode in
    threads) modeargs=(--threads 4) ;;
    tpc) modeargs=(--thread-per-connection) ;;
    esac
    zaqard_start "$name" "${pools[@]}" "${modeargs[@]}" --log-level info
    grep -q "msg=\"listening\" addr=${URL#http://}" "${ZQ_LOG[$name]}" ||
        { REQ="(zaqard log)"; fail "no 'msg=\"listening\" addr=${URL#http://}' line in the log: $(head -c 500 "${ZQ_LOG[$name]}")"; }
    P="$BASE_PROJECT-$cfg-$mode"
    PROJECT=$P
    scenario "$cfg/$mode" "$kinds"
    if [ "$cfg" = mixed ]; then
        check_spread "$name" "$redis_pools" "$mongo_pools" "$cfg-$mode"
    fi
    step "$cfg/$mode: SIGTERM, exit status 0"
    zaqard_stop "$name"
}

# Every configuration with --threads 4; with --thread-per-connection the Redis
# and the mixed one (which has a MongoDB pool too), to keep the time down.
# ZQ_E2E_THREADS / ZQ_E2E_TPC override the lists (e.g. for debugging).
threads_cfgs=${ZQ_E2E_THREADS-redis mongo mixed}
tpc_cfgs=${ZQ_E2E_TPC-redis mixed}
if [ -z "$MONGO_URI" ]; then
    echo "note: LDPROF_TEST_MONGO_URI not set: the mongo and mixed configurations are left out"
    threads_cfgs=${threads_cfgs//mongo/} threads_cfgs=${threads_cfgs//mixed/}
    tpc_cfgs=${tpc_cfgs//mongo/} tpc_cfgs=${tpc_cfgs//mixed/}
fi
BASE_PROJECT=$PROJECT
start=$SECONDS
for cfg in $threads_cfgs; do run "$cfg" threads; done
for cfg in $tpc_cfgs; do run "$cfg" tpc; done
[ -n "${ZQ_E2E_NO_EXTRAS:-}" ] || extras
echo "passed in $((SECONDS - start))s: --threads 4: $threads_cfgs; --thread-per-connection: $tpc_cfgs"
