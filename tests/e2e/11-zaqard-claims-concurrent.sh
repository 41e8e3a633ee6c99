#!/usr/bin/env bash
# 11-zaqard-claims-concurrent.sh - 6 clients claim concurrently from one queue
# of 100 messages: every message must be claimed exactly once.  Runs against a
# Redis pool (--threads 4 and --thread-per-connection) and a MongoDB pool.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres

REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
NCLIENTS=6
NMSG=100

# client N DIR QUEUE: claim limit=5 until 204 (at most 60 rounds); writes
# DIR/claims.N ("CLAIM_ID MSG_ID" lines).  Exit 0 on a clean finish.
client() {
    local n=$1 dir=$2 q=$3 cid i k loc got
    cid=$(new_uuid)
    for ((k = 0; k < 100; k++)); do [ -e "$dir/go" ] && break; sleep 0.05; done
    for ((i = 0; i < 60; i++)); do
        req --client "$cid" POST "/v2/queues/$q/claims?limit=5" '{"ttl": 300, "grace": 60}'
        case $STATUS in
        204)
            [ -z "$BODY" ] || fail "client $n: 204 with a body"
            echo "$i" >"$dir/rounds.$n"
            return 0
            ;;
        201)
            loc=$(header_value Location) || fail "client $n: 201 without Location"
            [[ $loc =~ ^/v2/queues/$q/claims/[A-Za-z0-9_-]+$ ]] || fail "client $n: bad Location '$loc'"
            got=$(jbody '.messages[].id') || fail "client $n: bad claim body"
            [ -n "$got" ] || fail "client $n: 201 with no messages"
            [ "$(wc -l <<<"$got")" -le 5 ] || fail "client $n: more than limit=5 messages in one claim"
            sed "s|^|${loc##*/} |" <<<"$got" >>"$dir/claims.$n"
            ;;
        *) fail "client $n: claim answered $STATUS" ;;
        esac
    done
    fail "client $n: still getting messages after 60 claims"
}

run() { # run CONFIG MODE
    local cfg=$1 mode=$2 name="${1}_$2" pool modeargs q="race" dir b i n pids=() posted all
    case $cfg in
    redis) pool="redis1=$REDIS_BASE/4" ;;
    mongo) mongo_pool_uri "claims_$mode" && pool="mongo1=$MONGO_POOL_URI" ;;
    esac
    case $mode in
    threads) modeargs=(--threads 4) ;;
    tpc) modeargs=(--thread-per-connection) ;;
    esac
    dir="$E2E_TMP/$name"
    mkdir -p "$dir"
    PROJECT="$BASE_PROJECT-$name"
    zaqard_start "$name" --pool "$pool" "${modeargs[@]}"

    step "$cfg/$mode: post $NMSG messages in batches of 20"
    req PUT "/v2/queues/$q"
    expect_status 201
    : >"$dir/posted"
    for ((b = 0; b < NMSG / 20; b++)); do
        local body
        body=$(jq -cn --argjson b "$b" '{messages: [range(20) | {ttl: 3600, body: {batch: $b, i: .}}]}')
        req POST "/v2/queues/$q/messages" "$body"
        expect_status 201
        expect_json '.resources | length' 20
        jbody '.resources[]' | sed 's|.*/||' >>"$dir/posted"
    done
    [ "$(sort -u "$dir/posted" | wc -l)" = $NMSG ] || fail "posting gave $(sort -u "$dir/posted" | wc -l) distinct ids, expected $NMSG"
    req GET "/v2/queues/$q/stats"
    expect_json '.messages | {free, claimed, total}' "{\"free\": $NMSG, \"claimed\": 0, \"total\": $NMSG}"

    step "$cfg/$mode: $NCLIENTS concurrent clients claim limit=5 until 204"
    for ((n = 1; n <= NCLIENTS; n++)); do
        : >"$dir/claims.$n"
        client "$n" "$dir" "$q" >"$dir/out.$n" 2>&1 &
        pids+=($!)
    done
    touch "$dir/go"
    local bad=0
    for ((n = 1; n <= NCLIENTS; n++)); do
        if ! wait "${pids[n - 1]}"; then
            echo "client $n failed:" >&2
            cat "$dir/out.$n" >&2
            bad=1
        fi
    done
    [ $bad = 0 ] || { REQ="(concurrent clients)"; STATUS="" BODY=""; fail "some clients failed"; }
    for ((n = 1; n <= NCLIENTS; n++)); do
        printf 'client %d: %d messages in %d claims, %s rounds\n' "$n" "$(wc -l <"$dir/claims.$n")" \
            "$(cut -d' ' -f1 "$dir/claims.$n" | sort -u | wc -l)" "$(cat "$dir/rounds.$n")"
    done

    step "$cfg/$mode: every message claimed exactly once"
    cat "$dir"/claims.* >"$dir/all"
    all=$(wc -l <"$dir/all")
    REQ="(claimed ids of all clients)" STATUS="" BODY=""
    [ "$all" = $NMSG ] || fail "the clients claimed $all messages in total, expected $NMSG"
    local dup
    dup=$(cut -d' ' -f2 "$dir/all" | sort | uniq -d)
    [ -z "$dup" ] || fail "messages claimed more than once: $(tr '\n' ' ' <<<"$dup")"
    cut -d' ' -f2 "$dir/all" | sort >"$dir/claimed.sorted"
    sort "$dir/posted" >"$dir/posted.sorted"
    cmp -s "$dir/claimed.sorted" "$dir/posted.sorted" ||
        fail "claimed ids differ from posted ids: $(comm -3 "$dir/claimed.sorted" "$dir/posted.sorted" | head -n 5 | tr '\n' ' ')"
    local claims
    claims=$(cut -d' ' -f1 "$dir/all" | sort -u)
    [ "$(wc -l <<<"$claims")" -ge $((NMSG / 5)) ] || fail "fewer than $((NMSG / 5)) claims for $NMSG messages with limit=5"

    step "$cfg/$mode: each claim holds exactly the messages its client got"
    local c want
    while read -r c want; do
        req GET "/v2/queues/$q/claims/$c"
        expect_status 200
        expect_json '[.messages[].id] | sort' "$want"
    done < <(LC_ALL=C sort "$dir/all" |
        awk '{ ids[$1] = ids[$1] (ids[$1] == "" ? "" : ",") "\"" $2 "\"" } END { for (c in ids) print c, "[" ids[c] "]" }')
    req GET "/v2/queues/$q/stats"
    expect_status 200
    expect_json '.messages | {free, claimed, total}' "{\"free\": 0, \"claimed\": $NMSG, \"total\": $NMSG}"
    req POST "/v2/queues/$q/claims?limit=20"
    expect_status 204
    req GET "/v2/queues/$q/messages?include_claimed=false&echo=true"
    expect_status 200
    expect_json . '{"messages": [], "links": []}'
    req GET /v2/health
    expect_status 200
    step "$cfg/$mode: SIGTERM, exit status 0"
    zaqard_stop "$name"
}

BASE_PROJECT=$PROJECT
start=$SECONDS
run redis threads
run redis tpc
if [ -n "${LDPROF_TEST_MONGO_URI:-}" ]; then
    run mongo threads
else
    echo "note: LDPROF_TEST_MONGO_URI not set: the mongo configuration is left out"
fi
echo "concurrent claims passed in $((SECONDS - start))s"
