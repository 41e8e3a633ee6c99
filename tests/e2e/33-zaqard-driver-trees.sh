#!/usr/bin/env bash
# 33-zaqard-driver-trees.sh - issue 4, first bullet: the exact trace tree of
# every request of a zaqard scenario, driver spans included, for each store
# configuration (PostgreSQL catalog in all of them):
#
#   redis   one Redis pool
#   mongo   one MongoDB pool
#   mixed   a Redis pool and a MongoDB pool, one queue placed on each (the
#           names are chosen by trying: zaqard places by a weighted hash of
#           project/name; the placement is read back from the catalog)
#
# zaqard runs under the preload (hmac_keys=KEY); every request is sent by a
# plain curl (not preloaded) with signed headers of its own fresh base id
# (`ldprof headers --key KEY --base-id UUID`), so each request is one dump
# <base_id>.json whose only root is the request's `wsgi` span.  Scenario:
# create the queue (PUT), post 3 messages, list them (echo=true), claim 2,
# delete one of them with its claim id.  Each tree is compared line by line
# (one line per span, indented by depth, children in start order) with the
# tree derived from zaqard's sources:
#
#   catalog (catalog.c): every queue-scoped request makes ONE prepared-
#     statement call (PQexecPrepared -> a `db` span, operation `execute`,
#     db.prepared = the statement's name, db.statement its SQL):
#       PUT queue      zq_queue_put    (place_queue does no SQL without a flavor)
#       POST messages  zq_queue_get    (lookup_queue with metadata: the queue exists)
#       GET messages, POST claims, DELETE message
#                      zq_queue_pool   (lookup_queue without metadata)
#     PUT queue touches no store.
#   redis (store_redis.c): every store operation is ONE run_script ->
#     one EVALSHA (redisCommandArgv) whose first key is
#     zq:{<len(project)>:<project>:<queue>}:ctr (post) or ...:msgs (list,
#     claim, del); argc = 3 + keys + args (post: 2 keys + pfx + client +
#     3 per message; list: 1 key + pfx, cursor, window, need + 3;
#     claim: 4 keys + 4 + 3; del: 1 key + 4).  scan_loop runs one window
#     only (a handful of messages: the script reports done).
#   mongo (store_mongo.c): every store operation is conn_open
#     (mongoc_client_pool_pop -> `pooling pop`) ... conn_close
#     (mongoc_client_pool_push -> `pooling push`) around:
#       post   findAndModify counters (alloc_markers, filter _id) +
#              insert_many messages
#       list   find messages (filter p,q,k,e,ce: echo=true leaves out `u`)
#       claim  one findAndModify messages per claimed message (take_one,
#              filter p,q,e,ce; limit=2 with 3 free: exactly 2 calls) and
#              insert_one claims (no bulk: the messages' ttl 300 outlives
#              the claim's ttl+grace 120, so extend_ttls has nothing to do)
#       del    find messages (filter _id,p,q,e) + delete_one messages
#              (filter _id,p,q,cid: with the claim id)
#     All driver spans are direct children of `wsgi` (the find span ends
#     when the cursor is exhausted, before the push).  zaqard passes
#     reply = NULL to both inserts: no `mongodb.count` there (formats.md:
#     the hook does not ask for a reply the app did not ask for).
#
# Warm-up (untraced requests on a queue of its own, same pool, before the
# traced ones) makes the traced trees deterministic: zaqard connects to the
# catalog lazily (PQconnectdb) and prepares its 6 statements on a
# connection's first prepared call (6 PQprepare); the catalog connections
# are a LIFO stack and requests here are sequential, so the same warmed
# connection serves every request.  The Redis store connects on demand
# (SELECT for a db != 0) and SCRIPT LOADs each script on its first use; the
# MongoDB store creates its indexes (2 createIndexes commands) on the first
# post and garbage-collects (2 delete_many) at most once a minute on a post:
# the warm-up post does both, and the traced post follows within the minute.
#
# Then a catalog error: the catalog's table is renamed for a moment (psql),
# the next lookup fails -> 503 and the tree shows the db span with its error
# (etype ProgrammingError, db.sqlstate 42P01, message = libpq's text: a
# prepared statement has no query text for libpq to quote a LINE from, so
# it ends "at character 18"); renamed back, the same request works again.
# (The server re-analyses a cached plan after DDL on its table, so the
# prepared zq_queue_pool fails by name even though it was prepared before.)
#
# Toggles (mixed configuration, its catalog reused, zaqard restarted with
# LDPROF_TRACE_x=0): the trees of the same two requests (list on the Redis
# queue, list on the MongoDB queue) lose exactly the toggled kind's lines;
# all four off leaves the lone `wsgi` span.
#
# When libldprof.so exports no redisCommand (hooks/hiredis.c not built in),
# the redis lines are left out of both sides, and this is printed.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres mongo
ldprof_need

KEY="k33-$E2E_ID"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
HAVE_REDIS=1
if ! nm -D --defined-only "$LDPROF_LIB" | grep -qw redisCommand; then
    HAVE_REDIS=0
    echo "NOTE: $LDPROF_LIB exports no redisCommand (hooks/hiredis.c missing): redis span assertions SKIPPED"
fi
mongo_pool_uri m
MONGO_URI=$MONGO_POOL_URI
# the redis key prefix of a queue (store_redis.c mkprefix)
rpfx() { printf 'zq:{%d:%s:%s}:' "${#PROJECT}" "$PROJECT" "$1"; }

# jq: a dump as one line per span, children in start order, indented by
# depth (2 spaces a level); the root's children at depth 0.
JQ_TREE='
def raw($w): .info["meta.raw_payload.\(.info.name)-\($w)"];
def err($e): if $e.etype then " ERR \($e.etype)" + (if $e.db.sqlstate then "/\($e.db.sqlstate)" else "" end) + ": \($e.message | split("\n")[0])" else "" end;
def line: .info.name as $n | (raw("start").info // {}) as $s | (raw("stop").info // {}) as $e |
  if $n == "wsgi" then "wsgi \($s.request.method) \($s.request.path) query=\($s.request.query // "")"
  elif $n == "db" then "db \($s.db.operation) \($s.db.prepared // "-") \"\($s.db.statement // "-" | .[0:40])\" params=\($s.db.params | tojson) \($e.db.status // "-") rows=\($e.db.rows // "-")" + err($e)
  elif $n == "redis" then "redis \($s.redis.command) key=\($s.redis.key // "-") argc=\($s.redis.argc // "-") sha=\($s.redis.script // "-" | test("^[0-9a-f]{40}$")) \($e.redis.reply_type // "-")" + err($e)
  elif $n == "mongodb" then "mongodb \($s.mongodb.command) \($s.mongodb.collection // "-") filter=\($s.mongodb.filter // "-") docs=\($s.mongodb.documents // "-") n=\($e.mongodb.count // "-")" + err($e)
  elif $n == "pooling" then "pooling \($s.pooling.op) \($s.pooling.driver) got=\($e.pooling.got // "-")"
  else "?? \($n)" end;
def walk($d): (.children // []) | sort_by(raw("start").timestamp) | .[] | (("  " * $d) + line), walk($d + 1);
walk(0)'

# Traced requests of the current phase: their base ids and expected trees.
T_BASE=() T_WANT=() T_WHAT=()

# treq WANT METHOD PATH [BODY]: one request traced with its own base id;
# its tree must be WANT (checked by check_trees after the phase).
treq() {
    local want=$1 base
    shift
    base=$(new_uuid)
    trace_headers "$KEY" "$base"
    [ "$TH_BASE" = "$base" ] || fail "ldprof headers: base id $TH_BASE, asked $base"
    req -H "X-Trace-Info: $TH_INFO" -H "X-Trace-HMAC: $TH_HMAC" "$@"
    if [ $HAVE_REDIS = 0 ]; then want=$(grep -v '^ *redis ' <<<"$want"); fi
    T_BASE+=("$base") T_WANT+=("$want") T_WHAT+=("$REQ -> $STATUS")
}

# tree BASE: the tree lines of dump BASE (redis lines dropped without the hook)
tree() {
    local f="$COLL_DIR/$1.json"
    [ -s "$f" ] || { echo "(no dump $f)"; return; }
    if [ $HAVE_REDIS = 0 ]; then
        jq -r "$JQ_TREE" "$f" | grep -v '^ *redis '
    else
        jq -r "$JQ_TREE" "$f"
    fi
}

# check_trees: after collector_stop (every trace written), compare each
# traced request's tree with its expectation, and check ids/parentage.
check_trees() {
    local i got f bad=""
    # every tree first, all differences reported together
    for i in "${!T_BASE[@]}"; do
        got=$(tree "${T_BASE[i]}")
        [ "$got" = "${T_WANT[i]}" ] ||
            bad+=$'\n'"=== ${T_WHAT[i]} (trace ${T_BASE[i]})"$'\n'"$(diff <(echo "${T_WANT[i]}") <(echo "$got"))"
    done
    [ -z "$bad" ] || { REQ="(trees of this phase; diff want got)" STATUS="" BODY=""; fail "trace trees differ:$bad"; }
    for i in "${!T_BASE[@]}"; do
        f="$COLL_DIR/${T_BASE[i]}.json"
        REQ="${T_WHAT[i]} (trace ${T_BASE[i]})" STATUS="" BODY=""
        # one jq: one root, the wsgi span, child of the base id; every span
        # with that base_id, the service of zaqard's preload, its parent's
        # trace_id as parent_id, the host in both events (OSProfiler shape),
        # and lying within the wsgi span's time
        jq_expect "$f" "$JQ_SPANS (.children[0] | {s: .info[\"meta.raw_payload.wsgi-start\"].timestamp, e: .info[\"meta.raw_payload.wsgi-stop\"].timestamp}) as \$w |
            {root: [.children[] | {n: .info.name, p: .parent_id}],
             base: [spans | .base_id] | unique, service: [spans | .service] | unique,
             parents: [.. | objects | select(has(\"children\") and has(\"trace_id\")) | .trace_id as \$t | .children[] | select(.parent_id != \$t) | .trace_id],
             nohost: [spans | select(.start.info.host == null or .stop.info.host == null) | .name],
             outside: [spans | select(.start.timestamp < \$w.s or .stop.timestamp > \$w.e) | .name]}" \
            "{\"root\": [{\"n\": \"wsgi\", \"p\": \"${T_BASE[i]}\"}], \"base\": [\"${T_BASE[i]}\"], \"service\": [\"zq-33\"],
              \"parents\": [], \"nohost\": [], \"outside\": []}" "tree shape"
    done
    echo "phase: ${#T_BASE[@]} trees as expected"
    T_BASE=() T_WANT=() T_WHAT=()
}

# placement QUEUE: the pool the catalog placed QUEUE on (psql)
placement() {
    psql "$CAT" -qAtX -v ON_ERROR_STOP=1 -c "SELECT pool FROM queues WHERE project = '$PROJECT' AND name = '$1'"
}

MSGS3='{"messages": [{"ttl": 300, "body": {"n": 1}}, {"ttl": 300, "body": {"n": 2}}, {"ttl": 300, "body": "three"}]}'
# catalog.c's prepared statements (their first 40 characters are compared)
SQL_PUT='INSERT INTO queues (project, name, pool, metadata, created) VALUES ($1, $2, $3, $4, $5) ON CONFLICT'
SQL_GET='SELECT pool, metadata FROM queues WHERE project = $1 AND name = $2'
SQL_POOL='SELECT pool FROM queues WHERE project = $1 AND name = $2'
ST_PUT="db execute zq_queue_put \"${SQL_PUT:0:40}\" params=[\"?\",\"?\",\"?\",\"?\",\"?\"] PGRES_TUPLES_OK rows=1"
ST_GET="db execute zq_queue_get \"${SQL_GET:0:40}\" params=[\"?\",\"?\"] PGRES_TUPLES_OK rows=1"
ST_POOL="db execute zq_queue_pool \"${SQL_POOL:0:40}\" params=[\"?\",\"?\"] PGRES_TUPLES_OK rows=1"

# warm KIND QUEUE: untraced requests through every path the scenario takes
# (catalog connection + prepares, store connection, scripts, indexes, GC).
warm() {
    local q=$2
    req PUT "/v2/queues/$q" && expect_status 201
    req POST "/v2/queues/$q/messages" '{"messages": [{"ttl": 300, "body": 0}]}' && expect_status 201
    req GET "/v2/queues/$q/messages?echo=true" && expect_status 200
    req POST "/v2/queues/$q/claims?limit=1" '{"ttl": 60, "grace": 60}' && expect_status 201
    local id cid
    id=$(jbody '.messages[0].id') cid=$(header_value Location) cid=${cid##*/}
    req DELETE "/v2/queues/$q/messages/$id?claim_id=$cid" && expect_status 204
}

# store lines of each operation, per kind (indented 2: children of wsgi)
store_lines() { # KIND OP QUEUE
    local p
    p=$(rpfx "$3")
    case $1/$2 in
    redis/post) echo "  redis EVALSHA key=${p}ctr argc=16 sha=true integer" ;;
    redis/list) echo "  redis EVALSHA key=${p}msgs argc=11 sha=true array" ;;
    redis/claim) echo "  redis EVALSHA key=${p}msgs argc=14 sha=true array" ;;
    redis/del) echo "  redis EVALSHA key=${p}msgs argc=8 sha=true integer" ;;
    mongo/*)
        echo '  pooling pop mongoc got=1'
        case $2 in
        post) printf '%s\n' '  mongodb findAndModify counters filter=_id docs=- n=1' \
            '  mongodb insert messages filter=- docs=3 n=-' ;;
        list) echo '  mongodb find messages filter=p,q,k,e,ce docs=- n=3' ;;
        list1) echo '  mongodb find messages filter=p,q,k,e,ce docs=- n=1' ;;
        claim) printf '%s\n' '  mongodb findAndModify messages filter=p,q,e,ce docs=- n=1' \
            '  mongodb findAndModify messages filter=p,q,e,ce docs=- n=1' \
            '  mongodb insert claims filter=- docs=1 n=-' ;;
        del) printf '%s\n' '  mongodb find messages filter=_id,p,q,e docs=- n=1' \
            '  mongodb delete messages filter=_id,p,q,cid docs=- n=1' ;;
        esac
        echo '  pooling push mongoc got=-'
        ;;
    esac
}

# scenario KIND QUEUE: the traced requests on QUEUE (on a pool of KIND).
scenario() {
    local k=$1 q=$2 id cid
    step "$k: PUT /v2/queues/$q"
    treq "wsgi PUT /v2/queues/$q query=
  $ST_PUT" PUT "/v2/queues/$q"
    expect_status 201
    step "$k: POST 3 messages"
    treq "wsgi POST /v2/queues/$q/messages query=
  $ST_GET
$(store_lines "$k" post "$q")" POST "/v2/queues/$q/messages" "$MSGS3"
    expect_status 201
    expect_json '.resources | length' 3
    step "$k: GET messages?echo=true"
    treq "wsgi GET /v2/queues/$q/messages query=echo=true
  $ST_POOL
$(store_lines "$k" list "$q")" GET "/v2/queues/$q/messages?echo=true"
    expect_status 200
    expect_json '.messages | length' 3
    step "$k: POST claims?limit=2"
    treq "wsgi POST /v2/queues/$q/claims query=limit=2
  $ST_POOL
$(store_lines "$k" claim "$q")" POST "/v2/queues/$q/claims?limit=2" '{"ttl": 60, "grace": 60}'
    expect_status 201
    expect_json '.messages | length' 2
    id=$(jbody '.messages[0].id') cid=$(header_value Location) cid=${cid##*/}
    [ -n "$id" ] && [ -n "$cid" ] || fail "no message id / claim id in the claim response"
    step "$k: DELETE a claimed message with its claim id"
    treq "wsgi DELETE /v2/queues/$q/messages/$id query=claim_id=$cid
  $ST_POOL
$(store_lines "$k" del "$q")" DELETE "/v2/queues/$q/messages/$id?claim_id=$cid"
    expect_status 204
}

# start_zq NAME [VAR=VALUE...] -- ZAQARD ARGS: zaqard under the preload
start_zq() {
    local name=$1 envs=()
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    preload_wrapper "$E2E_TMP/wrap-$name.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
        LDPROF_SERVICE=zq-33 "${envs[@]}"
    ZAQARD_WRAPPER="$E2E_TMP/wrap-$name.sh" zaqard_start "$name" --threads 4 "$@"
}

# end_phase NAME: stop zaqard NAME and the collector (every trace written),
# then check the trees.
end_phase() {
    sleep 0.3
    zaqard_stop "$1"
    collector_stop "$1"
    check_trees
}

# ------------------------------------------------------------------ redis
collector_start redis
start_zq redis -- --pool "r1=$REDIS_BASE/9"
warm redis "w-$E2E_ID"
QR="qr-$E2E_ID"
scenario redis "$QR"

step "redis: catalog error (queues renamed for a moment) -> 503 and a db error span"
CAT=${ZQ_CATALOG[redis]}
psql "$CAT" -qAtX -v ON_ERROR_STOP=1 -c 'ALTER TABLE queues RENAME TO queues_x' >/dev/null ||
    fail "cannot rename the catalog table"
on_exit "psql '$CAT' -qAtX -c 'ALTER TABLE IF EXISTS queues_x RENAME TO queues' >/dev/null 2>&1"
treq "wsgi GET /v2/queues/$QR/messages query=echo=true
  db execute zq_queue_pool \"${SQL_POOL:0:40}\" params=[\"?\",\"?\"] PGRES_FATAL_ERROR rows=- ERR ProgrammingError/42P01: relation \"queues\" does not exist at character 18" \
    GET "/v2/queues/$QR/messages?echo=true"
psql "$CAT" -qAtX -v ON_ERROR_STOP=1 -c 'ALTER TABLE queues_x RENAME TO queues' >/dev/null ||
    fail "cannot rename the catalog table back"
expect_error 503 "Service temporarily unavailable"
step "redis: renamed back: the same request works (1 free message left)"
treq "wsgi GET /v2/queues/$QR/messages query=echo=true
  $ST_POOL
$(store_lines redis list "$QR")" GET "/v2/queues/$QR/messages?echo=true"
expect_status 200
expect_json '.messages | length' 1
end_phase redis

# ------------------------------------------------------------------ mongo
collector_start mongo
start_zq mongo -- --pool "m1=$MONGO_URI"
warm mongo "w-$E2E_ID"
QM="qm-$E2E_ID"
scenario mongo "$QM"
end_phase mongo

# ------------------------------------------------------------------ mixed
collector_start mixed
start_zq mixed -- --pool "r1=$REDIS_BASE/9" --pool "m1=$MONGO_URI"
CAT=${ZQ_CATALOG[mixed]}
step "mixed: pick queue names placed on each pool (PUT untraced, placement read from the catalog)"
declare -A ON=()
for ((i = 0; i < 40 && ${#ON[@]} < 4; i++)); do
    q="x$i-$E2E_ID"
    req PUT "/v2/queues/$q"
    expect_status 201
    pool=$(placement "$q")
    case $pool in
    r1) [ -z "${ON[wr]:-}" ] && ON[wr]=$q || { [ -z "${ON[r]:-}" ] && ON[r]=$q; } ;;
    m1) [ -z "${ON[wm]:-}" ] && ON[wm]=$q || { [ -z "${ON[m]:-}" ] && ON[m]=$q; } ;;
    *) fail "queue $q placed on '$pool'" ;;
    esac
done
[ ${#ON[@]} = 4 ] || fail "40 names did not give 2 queues on each pool: ${!ON[*]}"
echo "warm-up queues: ${ON[wr]} (r1), ${ON[wm]} (m1)"
# the traced queues must not exist yet (the scenario creates them): their
# names are the placement probes' names, deleted (untraced) now
for q in "${ON[r]}" "${ON[m]}"; do
    req DELETE "/v2/queues/$q" && expect_status 204
done
# warm() PUTs its queue again: 204 then (it exists), so warm by hand
for k in r m; do
    q=${ON[w$k]}
    req PUT "/v2/queues/$q" && expect_status 204
    req POST "/v2/queues/$q/messages" '{"messages": [{"ttl": 300, "body": 0}]}' && expect_status 201
    req GET "/v2/queues/$q/messages?echo=true" && expect_status 200
    req POST "/v2/queues/$q/claims?limit=1" '{"ttl": 60, "grace": 60}' && expect_status 201
    id=$(jbody '.messages[0].id') cid=$(header_value Location) cid=${cid##*/}
    req DELETE "/v2/queues/$q/messages/$id?claim_id=$cid" && expect_status 204
done
QXR=${ON[r]} QXM=${ON[m]}
scenario redis "$QXR"
scenario mongo "$QXM"
[ "$(placement "$QXR")/$(placement "$QXM")" = r1/m1 ] ||
    fail "placement changed: $QXR on $(placement "$QXR"), $QXM on $(placement "$QXM")"
end_phase mixed

# ---------------------------------------------------------------- toggles
# The same two requests (list, echo=true: 1 free message left on each
# queue) under each toggle; zaqard restarted on the mixed catalog.
LIST_R="wsgi GET /v2/queues/$QXR/messages query=echo=true
  $ST_POOL
$(store_lines redis list "$QXR")"
LIST_M="wsgi GET /v2/queues/$QXM/messages query=echo=true
  $ST_POOL
$(store_lines mongo list1 "$QXM")"
toggle() { # NAME FILTER-REGEX(lines to drop, '' none) [VAR=VALUE...]
    local name=$1 drop=$2 wr wm
    shift 2
    collector_start "$name"
    start_zq "$name" "$@" -- --pool "r1=$REDIS_BASE/9" --pool "m1=$MONGO_URI" --catalog "$CAT"
    # warm-up: catalog connection + prepares, redis connection + list
    # script, mongo client
    req GET "/v2/queues/$QXR/messages?echo=true" && expect_status 200
    req GET "/v2/queues/$QXM/messages?echo=true" && expect_status 200
    wr=$LIST_R wm=$LIST_M
    if [ -n "$drop" ]; then
        wr=$(grep -Ev "$drop" <<<"$wr") wm=$(grep -Ev "$drop" <<<"$wm")
    fi
    step "toggle $name ($*): list on the redis queue"
    treq "$wr" GET "/v2/queues/$QXR/messages?echo=true"
    expect_status 200
    expect_json '.messages | length' 1
    step "toggle $name ($*): list on the mongo queue"
    treq "$wm" GET "/v2/queues/$QXM/messages?echo=true"
    expect_status 200
    expect_json '.messages | length' 1
    end_phase "$name"
}
toggle t-all ''
toggle t-mongodb '^  mongodb ' LDPROF_TRACE_MONGODB=0
if [ $HAVE_REDIS = 1 ]; then
    toggle t-redis '^  redis ' LDPROF_TRACE_REDIS=0
else
    echo "SKIP: toggle LDPROF_TRACE_REDIS=0 (no redis hook)"
fi
toggle t-sql '^  db ' LDPROF_TRACE_SQLALCHEMY=0
toggle t-pooling '^  pooling ' LDPROF_TRACE_POOLING=0
toggle t-none '^  ' LDPROF_TRACE_MONGODB=0 LDPROF_TRACE_REDIS=0 LDPROF_TRACE_SQLALCHEMY=0 LDPROF_TRACE_POOLING=0

echo "PASS"
