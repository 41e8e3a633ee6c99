#!/usr/bin/env bash
# 31-libpq-spans.sh - hooks/libpq.c against a real PostgreSQL.
#
# tests/targets/pq_client runs a fixed libpq sequence (PQconnectdb, CREATE
# TEMP TABLE, PQexecParams inserts, PQprepare + PQexecPrepared,
# PQdescribePrepared, a unique violation, a syntax error, PQsendQueryParams,
# PQsendQuery, PQsendPrepare + PQsendQueryPrepared each drained with
# PQgetResult, a two-statement send whose second statement fails, a binary
# parameter, PQconnectdbParams, a send never drained before PQfinish, a
# refused PQsetdbLogin, a non-blocking PQconnectStartParams + PQconnectPoll
# connect, a PQresetStart + PQresetPoll on it and a query, a refused
# non-blocking connect, a PQconnectStart PQfinish'ed before it completed:
# 23 db spans) and prints
# every result canonically.
# It runs:
#   (a) without the preload
#   (b) under the preload with LDPROF_ENABLED=0
#   (b2) under the preload, enabled, but outside any trace (no span)
#   (b3) as (b2) with LDPROF_TRACE_SOCKET=1 (still no span)
#   (c) under the preload in client profile mode (LDPROF_PROFILE: the
#       process has a trace, so driver spans record), with a collector
#   (d) as (c) with LDPROF_RECORD_VALUES=1
#   (e) as (c) with LDPROF_TRACE_SQLALCHEMY=0
# stdout must be identical in all of them; (c) must produce exactly the
# expected `db` spans in start order (statements, redacted params, rows,
# status, the error spans with etype/message/SQLSTATE), (d) the same with
# the real parameter values, (e) no span at all.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services postgres
ldprof_need

PQ_CLIENT=$LDPROF_BUILD/tests/targets/pq_client
[ -x "$PQ_CLIENT" ] || { REQ="(setup)" STATUS="" BODY=""; fail "not built: $PQ_CLIENT (run make all)"; }
for s in PQexec PQexecParams PQprepare PQexecPrepared PQdescribePrepared PQsendQuery \
    PQsendQueryParams PQsendPrepare PQsendQueryPrepared PQgetResult PQconnectdb \
    PQconnectdbParams PQsetdbLogin PQfinish PQreset PQconnectStart PQconnectStartParams \
    PQconnectPoll PQresetStart PQresetPoll; do
    nm -D --defined-only "$LDPROF_LIB" | grep -qw "$s" ||
        { REQ="nm -D $LDPROF_LIB" STATUS="" BODY=""; fail "$s is not exported by libldprof.so (preload/libldprof.map)"; }
done

KEY="k31-$E2E_ID"
REQ="(pq_client)" STATUS="" BODY=""

# run_client NAME [VAR=VALUE...]: run pq_client with the given environment,
# stdout to $E2E_TMP/NAME.out; it must exit 0.
run_client() {
    local name=$1
    shift
    env "$@" "$PQ_CLIENT" >"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err" ||
        { BODY=$(cat "$E2E_TMP/$name.out" "$E2E_TMP/$name.err"); fail "pq_client ($name) exited $?"; }
}

same_output() {
    cmp -s "$E2E_TMP/a.out" "$E2E_TMP/$1.out" ||
        { BODY=$(diff "$E2E_TMP/a.out" "$E2E_TMP/$1.out"); fail "pq_client ($1) printed something else than without the preload"; }
}

# The db spans of the only dump in $COLL_DIR, in start order, as
# [{op, stmt, prep, params, status, rows, etype, sqlstate, msg, async, depth, top}].
DB_SPANS="$JQ_SPANS [spans | select(.name == \"db\")] | sort_by(.start.timestamp) | map({
    op: .start.info.db.operation, stmt: .start.info.db.statement, prep: .start.info.db.prepared,
    params: .start.info.db.params, async: .start.info.db.async, status: .stop.info.db.status,
    rows: .stop.info.db.rows, etype: .stop.info.etype, sqlstate: .stop.info.db.sqlstate,
    msg: (.stop.info.message | if . == null then null else split(\"\\n\")[0] end),
    depth, top: (.parent_id == .base_id)})"

# expected_spans P1 .. P7: the expected DB_SPANS with those db.params arrays
# (insert 1, insert 2, execute, duplicate, async select, async execute,
# binary).  msg: the first line of the message.
expected_spans() {
    local sel="SELECT id, name FROM t31 WHERE id >= \$1 ORDER BY id"
    local ins="INSERT INTO t31 VALUES (\$1, \$2)"
    local n='"prep": null, "async": null, "rows": null, "etype": null, "sqlstate": null, "msg": null'
    jq -n "[
 {\"op\": \"connect\", \"stmt\": null, \"params\": null, \"status\": null},
 {\"op\": \"query\", \"stmt\": \"CREATE TEMP TABLE t31 (id int primary key, name text)\", \"params\": [], \"status\": \"PGRES_COMMAND_OK\"},
 {\"op\": \"query\", \"stmt\": \"$ins\", \"params\": $1, \"status\": \"PGRES_COMMAND_OK\", \"rows\": 1},
 {\"op\": \"query\", \"stmt\": \"$ins\", \"params\": $2, \"status\": \"PGRES_COMMAND_OK\", \"rows\": 1},
 {\"op\": \"prepare\", \"stmt\": \"$sel\", \"prep\": \"sel31\", \"params\": null, \"status\": \"PGRES_COMMAND_OK\"},
 {\"op\": \"execute\", \"stmt\": \"$sel\", \"prep\": \"sel31\", \"params\": $3, \"status\": \"PGRES_TUPLES_OK\", \"rows\": 2},
 {\"op\": \"describe\", \"stmt\": \"$sel\", \"prep\": \"sel31\", \"params\": null, \"status\": \"PGRES_COMMAND_OK\"},
 {\"op\": \"query\", \"stmt\": \"$ins\", \"params\": $4, \"status\": \"PGRES_FATAL_ERROR\", \"etype\": \"IntegrityError\", \"sqlstate\": \"23505\", \"msg\": \"duplicate key value violates unique constraint \\\"t31_pkey\\\"\"},
 {\"op\": \"query\", \"stmt\": \"SELEC 1\", \"params\": [], \"status\": \"PGRES_FATAL_ERROR\", \"etype\": \"ProgrammingError\", \"sqlstate\": \"42601\", \"msg\": \"syntax error at or near \\\"SELEC\\\"\"},
 {\"op\": \"query\", \"stmt\": \"SELECT id FROM t31 WHERE id <= \$1 ORDER BY id\", \"params\": $5, \"async\": 1, \"status\": \"PGRES_TUPLES_OK\", \"rows\": 2},
 {\"op\": \"query\", \"stmt\": \"UPDATE t31 SET name = name\", \"params\": [], \"async\": 1, \"status\": \"PGRES_COMMAND_OK\", \"rows\": 2},
 {\"op\": \"prepare\", \"stmt\": \"$ins\", \"prep\": \"ins31\", \"params\": null, \"async\": 1, \"status\": \"PGRES_COMMAND_OK\"},
 {\"op\": \"execute\", \"stmt\": \"$ins\", \"prep\": \"ins31\", \"params\": $6, \"async\": 1, \"status\": \"PGRES_COMMAND_OK\", \"rows\": 1},
 {\"op\": \"query\", \"stmt\": \"SELECT 1 AS x; SELECT 1/0\", \"params\": [], \"async\": 1, \"status\": \"PGRES_FATAL_ERROR\", \"rows\": 1, \"etype\": \"DataError\", \"sqlstate\": \"22012\", \"msg\": \"division by zero\"},
 {\"op\": \"query\", \"stmt\": \"SELECT \$1::int4 AS b\", \"params\": $7, \"status\": \"PGRES_TUPLES_OK\", \"rows\": 1},
 {\"op\": \"connect\", \"stmt\": null, \"params\": null, \"status\": null},
 {\"op\": \"query\", \"stmt\": \"SELECT 2\", \"params\": [], \"async\": 1, \"status\": \"abandoned\"},
 {\"op\": \"connect\", \"stmt\": null, \"params\": null, \"status\": null, \"etype\": \"OperationalError\", \"msg\": \"connection to server at \\\"127.0.0.1\\\", port 1 failed: Connection refused\"},
 {\"op\": \"connect\", \"stmt\": null, \"params\": null, \"async\": 1, \"status\": null},
 {\"op\": \"reset\", \"stmt\": null, \"params\": null, \"async\": 1, \"status\": null},
 {\"op\": \"query\", \"stmt\": \"SELECT 3\", \"params\": [], \"status\": \"PGRES_TUPLES_OK\", \"rows\": 1},
 {\"op\": \"connect\", \"stmt\": null, \"params\": null, \"async\": 1, \"status\": null, \"etype\": \"OperationalError\", \"msg\": \"connection to server at \\\"127.0.0.1\\\", port 1 failed: Connection refused\"},
 {\"op\": \"connect\", \"stmt\": null, \"params\": null, \"async\": 1, \"status\": \"abandoned\"}
] | map({$n, \"depth\": 1, \"top\": true} + .)"
}

# collect NAME VAR=VALUE...: (re)start a collector, run pq_client in
# profile mode with it, stop the collector (every trace written).
collect() {
    local name=$1
    shift
    collector_start "$name"
    run_client "$name" LD_PRELOAD="$LDPROF_LIB" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_PROFILE="$KEY" \
        LDPROF_SERVICE=pq-client-31 "$@"
    sleep 0.5
    collector_stop "$name"
    same_output "$name"
    # the preload was active (profile mode announces its trace on stderr)
    grep -q '^Trace ID: ' "$E2E_TMP/$name.err" ||
        { BODY=$(cat "$E2E_TMP/$name.err"); fail "($name) no 'Trace ID:' on stderr: was the preload active?"; }
    jq_expect "$COLL_STATS" '.datagrams.rejected, .dropped' '[0, 0]' "($name) collector rejected/dropped"
}

step "(a) pq_client without the preload"
run_client a
cat "$E2E_TMP/a.out"
grep -qx 'done: ok' "$E2E_TMP/a.out" || { BODY=$(cat "$E2E_TMP/a.out"); fail "pq_client did not end with 'done: ok'"; }

step "(b) under the preload with LDPROF_ENABLED=0: same output"
run_client b LD_PRELOAD="$LDPROF_LIB" LDPROF_ENABLED=0
same_output b

step "(b2) under the preload, enabled, outside any trace: same output, nothing sent"
collector_start b2
run_client b2 LD_PRELOAD="$LDPROF_LIB" LDPROF_COLLECTOR="$COLL_SOCK"
sleep 0.3
collector_stop b2
same_output b2
jq_expect "$COLL_STATS" '.spans' 0 "spans received outside a trace"

# (b3): the async sends pass without holding the depth outside a trace
# (hooks/libpq.c), so their socket writes run at depth 0: with trace_socket
# on, a `net` span would show if that I/O were recorded outside a trace.
step "(b3) as (b2) with LDPROF_TRACE_SOCKET=1: same output, nothing sent"
collector_start b3
run_client b3 LD_PRELOAD="$LDPROF_LIB" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_TRACE_SOCKET=1
sleep 0.3
collector_stop b3
same_output b3
jq_expect "$COLL_STATS" '.spans' 0 "spans received outside a trace (trace_socket on)"

step "(c) profile mode with a collector: same output, the expected db spans"
collect c
[ "$(dumps | wc -l)" = 1 ] || { BODY=$(dumps); fail "expected one dump, got $(dumps | wc -l)"; }
DUMP=$(dumps)
jq_expect "$COLL_STATS" '.spans' 23 "spans received"
jq_expect "$DUMP" "$JQ_SPANS [spans | .name] | unique" '["db"]' "span names"
jq_expect "$DUMP" "$DB_SPANS" "$(expected_spans '["?", "?"]' '["?", "?"]' '["?"]' '["?", "?"]' '["?"]' '["?", "?"]' '["?"]')" "db spans"
# the connect span's stop info names the server (never the password)
jq_expect "$DUMP" "$JQ_SPANS [spans | select(.start.info.db.operation == \"connect\" or .start.info.db.operation == \"reset\")] | sort_by(.start.timestamp) | map(.stop.info.db | if . == null then null else keys_unsorted end)" \
    '[["host", "port", "name", "user"], ["host", "port", "name", "user"], null, ["host", "port", "name", "user"], ["host", "port", "name", "user"], null, ["status"]]' "connect info"
# full error messages (psycopg2's text: no "ERROR:  " prefix, no trailing newline)
jq_expect "$DUMP" "$JQ_SPANS [spans | select(.stop.info.db.sqlstate == \"23505\" or .stop.info.db.sqlstate == \"42601\")] | sort_by(.start.timestamp) | map(.stop.info.message)" \
    '["duplicate key value violates unique constraint \"t31_pkey\"\nDETAIL:  Key (id)=(1) already exists.", "syntax error at or near \"SELEC\"\nLINE 1: SELEC 1\n        ^"]' "error messages"
jq_expect "$DUMP" "$JQ_SPANS [spans | select(.stop.info.etype != null)] | sort_by(.start.timestamp) | map(.stop.info | keys_unsorted)" \
    '[["etype", "message", "db", "host"], ["etype", "message", "db", "host"], ["etype", "message", "db", "host"], ["etype", "message", "host"], ["etype", "message", "host"]]' "error stop info keys (OSProfiler shape)"
jq_expect "$DUMP" "$JQ_SPANS [spans | .service] | unique" '["pq-client-31"]' "service"

step "(d) LDPROF_RECORD_VALUES=1: the real parameter values"
collect d LDPROF_RECORD_VALUES=1
DUMP=$(dumps)
jq_expect "$DUMP" "$DB_SPANS" "$(expected_spans '["1", "one"]' '["2", "two \"q\""]' '["1"]' '["1", "dup"]' '["2"]' '["3", null]' '["<binary 4 bytes>"]')" "db spans with values"

step "(e) LDPROF_TRACE_SQLALCHEMY=0: no db span"
collect e LDPROF_TRACE_SQLALCHEMY=0
# pq_client does nothing else that records: no span at all reached the collector
jq_expect "$COLL_STATS" '.spans' 0 "spans received with trace_sqlalchemy off"
[ -z "$(dumps)" ] || { BODY=$(dumps); fail "dumps written with trace_sqlalchemy off"; }

echo "PASS"
