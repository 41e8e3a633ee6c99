#!/usr/bin/env bash
# 32-mongo-spans.sh - `mongodb` and `pooling` spans of hooks/mongoc.c.
#
# tests/targets/mongo_client runs a fixed libmongoc sequence through a
# mongoc_client_pool_t against the MongoDB stand-in (pop, insert_one,
# insert_many, find + iterate, update_one, count_documents,
# find_and_modify, delete_many, a failing find ($where), aggregate, a cursor
# destroyed early, estimated_document_count, ping, create_index_with_opts,
# create_index, drop, push):
#
#   a  without the preload                      -> reference output
#   b  preload, LDPROF_ENABLED=0                -> same output
#   b2 preload on, collector up, no trace context -> same output, no dump
#   c  preload, client profile mode (LDPROF_PROFILE) with a collector
#                                               -> same output; the trace
#      holds exactly the expected spans, in order, all children of the
#      profile's base (one span per driver call, nothing nested), with
#      command, collection, filter field names (no values), counts and the
#      error span (etype MongoError, code 2)
#   d  LDPROF_RECORD_VALUES=1                   -> filters with values
#   e  LDPROF_TRACE_MONGODB=0                   -> only the pooling spans
#   f  LDPROF_TRACE_POOLING=0                   -> only the mongodb spans
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services mongo
ldprof_need
TARGET=${LDPROF_BUILD:-$LDPROF_TOP/build}/tests/targets/mongo_client
[ -x "$TARGET" ] || { REQ="" STATUS="" BODY=""; fail "not built: $TARGET"; }
for s in mongoc_client_pool_pop mongoc_client_pool_try_pop mongoc_client_pool_push \
    mongoc_collection_insert_one mongoc_collection_insert_many mongoc_collection_update_one \
    mongoc_collection_update_many mongoc_collection_replace_one mongoc_collection_delete_one \
    mongoc_collection_delete_many mongoc_collection_count_documents \
    mongoc_collection_estimated_document_count mongoc_collection_find_and_modify \
    mongoc_collection_find_and_modify_with_opts mongoc_collection_find_with_opts \
    mongoc_collection_aggregate mongoc_cursor_next mongoc_cursor_destroy \
    mongoc_client_command_simple mongoc_client_command_with_opts \
    mongoc_client_read_command_with_opts mongoc_client_write_command_with_opts \
    mongoc_database_command_simple mongoc_collection_command_simple \
    mongoc_bulk_operation_execute mongoc_collection_drop mongoc_collection_drop_with_opts \
    mongoc_collection_drop_index mongoc_collection_drop_index_with_opts \
    mongoc_collection_create_index mongoc_collection_create_index_with_opts; do
    nm -D --defined-only "$LDPROF_LIB" | grep -qw "$s" ||
        { REQ="nm -D $LDPROF_LIB" STATUS="" BODY=""; fail "$s is not exported by libldprof.so (preload/libldprof.map)"; }
done
KEY="k32-$E2E_ID"
: >"$E2E_TMP/empty.ini"

# run NAME [VAR=VALUE...]: the target on collection c-NAME-$E2E_ID, with the
# preload when VARs are given; stdout in $E2E_TMP/NAME.out, its trace's
# base id (client profile mode) in BASE.
run() {
    local name=$1 rc
    shift
    REQ="mongo_client ($name)" STATUS="" BODY=""
    if [ $# -eq 0 ]; then
        "$TARGET" "c-$name-$E2E_ID" >"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err"
    else
        env LD_PRELOAD="$LDPROF_LIB" LDPROF_CONFIG="$E2E_TMP/empty.ini" "$@" \
            "$TARGET" "c-$name-$E2E_ID" >"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err"
    fi
    rc=$?
    BODY=$(cat "$E2E_TMP/$name.out" "$E2E_TMP/$name.err")
    [ $rc = 0 ] || fail "mongo_client ($name) exited with status $rc"
    BASE=$(sed -n 's/^Trace ID: //p' "$E2E_TMP/$name.err" | head -n 1)
}

same_as_a() {
    cmp -s "$E2E_TMP/a.out" "$E2E_TMP/$1.out" ||
        { REQ="diff a $1" STATUS="" BODY=$(diff "$E2E_TMP/a.out" "$E2E_TMP/$1.out"); fail "output of run $1 differs from run a"; }
}

# The spans of dump $1 as one line each, in start order.
JQ_LINES="$JQ_SPANS [spans] | sort_by(.start.timestamp) | .[] |
  if .name == \"pooling\" then \"pooling \(.start.info.pooling.op) got=\(.stop.info.pooling.got // \"-\")\"
  elif .name == \"mongodb\" then \"mongodb \(.start.info.mongodb.command) \(.start.info.mongodb.collection // \"-\")\" +
    \" filter=\(.start.info.mongodb.filter // \"-\") n=\(.stop.info.mongodb.count // \"-\")\" +
    (if .stop.info.etype then \" err=\(.stop.info.etype)/\(.stop.info.mongodb.error.code)\" else \"\" end)
  else .name end"

# all_spans_ge FILE N: FILE is a dump with at least N spans (driver spans
# included, unlike lib.sh's wait_dump).
all_spans_ge() { [ -s "$1" ] && [ "$(jq "$JQ_SPANS [spans] | length" "$1" 2>/dev/null)" -ge "$2" ] 2>/dev/null; }

# traced NAME WANT [VAR=VALUE...]: run NAME in profile mode, wait for its
# dump, compare the span lines with WANT (c-NAME-ID written as C).
traced() {
    local name=$1 want=$2 n got
    shift 2
    run "$name" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_PROFILE="$KEY" "$@"
    same_as_a "$name"
    [ -n "$BASE" ] || fail "run $name printed no Trace ID"
    n=$(grep -c . <<<"$want")
    wait_until 10 "no dump $COLL_DIR/$BASE.json with $n spans" all_spans_ge "$COLL_DIR/$BASE.json" "$n"
    sleep 0.5 # nothing more arrives
    got=$(jq -r "$JQ_LINES" "$COLL_DIR/$BASE.json" | sed "s/c-$name-$E2E_ID/C/g")
    REQ="trace $BASE ($name)" STATUS="" BODY=$(_jq_file_summary "$COLL_DIR/$BASE.json")
    [ "$got" = "$want" ] || fail "run $name: spans differ:
--- want
$want
--- got
$got"
    # one level: every span a child of the profile base, none nested
    jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.depth != 1 or .nchildren != 0)] | length" 0 \
        "run $name: nested spans"
    jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.parent_id != \"$BASE\")] | length" 0 \
        "run $name: parent"
}

step "a: no preload"
run a
cat "$E2E_TMP/a.out"
want_out='insert_one: insertedCount=1
insert_many: insertedCount=2
find: b c
update_one: matchedCount=1 modifiedCount=1
count_documents: 3
find_and_modify: claimed=1
delete_many: deletedCount=2
find $where: docs=0 error domain=17 code=2
aggregate: k=1
find first: 1
estimated_document_count: 1
ping: ok
create_index_with_opts: ok
create_index: ok
drop: ok
done bad=0'
[ "$(cat "$E2E_TMP/a.out")" = "$want_out" ] || fail "unexpected output of run a"

step "b: LDPROF_ENABLED=0"
run b LDPROF_ENABLED=0
same_as_a b

collector_start c
step "b2: preload on, collector up, but no trace: same output, nothing recorded"
run b2 LDPROF_COLLECTOR="$COLL_SOCK"
same_as_a b2
sleep 0.5
[ -z "$(dumps)" ] || { REQ="ls $COLL_DIR" STATUS="" BODY=$(dumps); fail "run b2 (untraced) produced a dump"; }

ALL='pooling pop got=1
mongodb insert C filter=- n=1
mongodb insert C filter=- n=2
mongodb find C filter=n n=2
mongodb update C filter=name n=1
mongodb count C filter=n n=3
mongodb findAndModify C filter=name n=1
mongodb delete C filter=n n=2
mongodb find C filter=$where n=0 err=MongoError/2
mongodb aggregate C filter=- n=1
mongodb find C filter= n=1
mongodb count C filter=- n=1
mongodb ping - filter=- n=-
mongodb createIndexes C filter=- n=-
mongodb createIndexes C filter=- n=-
mongodb drop C filter=- n=-
pooling push got=-'

step "c: client profile mode: every call one span"
traced c "$ALL"
# the error span's message, and no filter values
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS spans | select(.stop.info.etype) | .stop.info.message" \
    '"unknown top level operator: $where (not supported by mongo-standin)"'
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.name == \"mongodb\")] | sort_by(.start.timestamp) | map(.start.info.mongodb.op | select(.))" \
    '["update_one", "delete_many", "estimated_document_count"]'
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.name == \"mongodb\")] | sort_by(.start.timestamp) | map(.stop.info.mongodb.cursor | select(.))" \
    '["exhausted", "exhausted", "exhausted", "destroyed"]'
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.name == \"mongodb\")] | sort_by(.start.timestamp) | map(.start.info.mongodb.pipeline | select(.))" \
    '["$match,$count"]'
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.name == \"mongodb\")] | sort_by(.start.timestamp) | map(.start.info.mongodb.database | select(.))" \
    '["ldprof_test"]'
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.name == \"mongodb\")] | sort_by(.start.timestamp) | map(.start.info.mongodb.documents | select(.))" \
    '[1, 2]'
jq_expect "$COLL_DIR/$BASE.json" "$JQ_SPANS [spans | select(.name == \"mongodb\")] | sort_by(.start.timestamp) | map(.start.info.mongodb.index | select(.))" \
    '["n,name", "name"]'
if grep -q 'this.n' "$COLL_DIR/$BASE.json"; then fail "run c: a filter value is in the trace"; fi

step "d: LDPROF_RECORD_VALUES=1: filters as JSON"
traced d "$(sed -e 's/^mongodb find C filter=n /mongodb find C filter={"n": {"$gte": 2}} /' \
    -e 's/^mongodb update C filter=name /mongodb update C filter={"name": "a"} /' \
    -e 's/^mongodb count C filter=n /mongodb count C filter={"n": {"$gt": 1}} /' \
    -e 's/^mongodb findAndModify C filter=name /mongodb findAndModify C filter={"name": "b"} /' \
    -e 's/^mongodb delete C filter=n /mongodb delete C filter={"n": {"$lt": 5}} /' \
    -e 's/^mongodb find C filter= n=1$/mongodb find C filter={} n=1/' \
    -e 's/^mongodb find C filter=\$where /mongodb find C filter={"$where": "this.n > 1"} /' <<<"$ALL")" \
    LDPROF_RECORD_VALUES=1

step "e: LDPROF_TRACE_MONGODB=0: only pooling spans"
traced e "$(grep '^pooling' <<<"$ALL")" LDPROF_TRACE_MONGODB=0

step "f: LDPROF_TRACE_POOLING=0: only mongodb spans"
traced f "$(grep '^mongodb' <<<"$ALL")" LDPROF_TRACE_POOLING=0

collector_stop c
echo "PASS"
