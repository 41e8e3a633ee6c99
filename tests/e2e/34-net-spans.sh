#!/usr/bin/env bash
# 34-net-spans.sh - `net` spans (trace_socket) from hooks/libc_socket.c.
#
# build/tests/targets/net_client talks to its own echo server (the same
# binary, `serve`, run WITHOUT the preload): pipe and /dev/null I/O, then
# connect, send/recv, write/read, writev/readv, sendto/recvfrom,
# sendmsg/recvmsg on one TCP connection, a non-blocking recv that would
# block (EAGAIN) and a recv on an unconnected socket (ENOTCONN).  Run:
#
#   a  without the preload
#   b  under the preload in client profile mode with LDPROF_TRACE_SOCKET=1
#   c  as b with the default (trace_socket off)
#
# stdout is identical in all three.  b's dump holds only net spans, direct
# leaves of the profile root, in order: connect (with the peer), then each
# send followed by its echo's recvs (consecutive recvs of one echo are
# grouped: a read may return fewer bytes) with the byte counts, and the
# ENOTCONN recv as an OSError span; nothing for the pipe, /dev/null, the
# would-block recv or the collector's socket.  c records no net span.
#
# Layering: redis_client and pq_client (the drivers of 30 and 31) run with
# LDPROF_TRACE_SOCKET=1 and without it: same stdout, the same driver spans,
# every driver span still a leaf (no net span inside a driver call), every
# net span a direct child of the profile root.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
NC=$LDPROF_BUILD/tests/targets/net_client
[ -x "$NC" ] || { REQ="(setup)" STATUS="" BODY=""; fail "not built: $NC (run make all)"; }
: >"$E2E_TMP/empty.ini"

step "the echo server (no preload)"
"$NC" serve "$E2E_TMP/port" >"$E2E_TMP/serve.log" 2>&1 &
ECHO_PID=$!
_kill_echo() { kill "$ECHO_PID" 2>/dev/null; wait "$ECHO_PID" 2>/dev/null; }
on_exit _kill_echo
wait_until 10 "echo server listening" test -s "$E2E_TMP/port"
PORT=$(cat "$E2E_TMP/port")

# run NAME PROGRAM [VAR=VALUE...]: stdout in NAME.out, stderr in NAME.err,
# the trace id printed (profile mode) in TRACE
run() {
    local name=$1 prog=$2 rc
    shift 2
    rc=0
    env "$@" "$prog" "${PROG_ARGS[@]}" >"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err" || rc=$?
    [ $rc = 0 ] || { REQ="$prog ($name)" STATUS="" BODY=$(cat "$E2E_TMP/$name.out" "$E2E_TMP/$name.err"); fail "exit status $rc"; }
    TRACE=$(sed -n 's/^Trace ID: //p' "$E2E_TMP/$name.err" | head -n 1)
}
same_out() {
    cmp -s "$E2E_TMP/$1.out" "$E2E_TMP/$2.out" ||
        { REQ="diff $1.out $2.out" STATUS="" BODY=$(diff "$E2E_TMP/$1.out" "$E2E_TMP/$2.out"); fail "run $2 printed other results than $1"; }
}

collector_start c
PRE=(LD_PRELOAD="$LDPROF_LIB" LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_COLLECTOR="$COLL_SOCK"
    LDPROF_PROFILE="k34-$E2E_ID" LDPROF_SERVICE=net-client-34)

PROG_ARGS=("$PORT")
step "a: net_client without the preload"
run a "$NC"
grep -qx 'failures: 0' "$E2E_TMP/a.out" || { REQ="a" STATUS="" BODY=$(cat "$E2E_TMP/a.out"); fail "the client saw failures"; }

step "b: profile mode, LDPROF_TRACE_SOCKET=1"
run b "$NC" "${PRE[@]}" LDPROF_TRACE_SOCKET=1
same_out a b
[ -n "$TRACE" ] || { REQ="b" STATUS="" BODY=$(cat "$E2E_TMP/b.err"); fail "no 'Trace ID:' printed"; }
TRACE_B=$TRACE

step "c: profile mode, trace_socket off (default)"
run c "$NC" "${PRE[@]}"
same_out a c
TRACE_C=$TRACE

step "drivers with LDPROF_TRACE_SOCKET=1 and without"
PROG_ARGS=("$LDPROF_TEST_REDIS_URI")
run ra "$LDPROF_BUILD/tests/targets/redis_client"
run rb "$LDPROF_BUILD/tests/targets/redis_client" "${PRE[@]}" LDPROF_TRACE_SOCKET=1
same_out ra rb
TRACE_RB=$TRACE
run rc "$LDPROF_BUILD/tests/targets/redis_client" "${PRE[@]}"
same_out ra rc
TRACE_RC=$TRACE
PROG_ARGS=()
run pa "$LDPROF_BUILD/tests/targets/pq_client"
run pb "$LDPROF_BUILD/tests/targets/pq_client" "${PRE[@]}" LDPROF_TRACE_SOCKET=1
same_out pa pb
TRACE_PB=$TRACE
run pc "$LDPROF_BUILD/tests/targets/pq_client" "${PRE[@]}"
same_out pa pc
TRACE_PC=$TRACE

collector_stop c # writes every trace it holds

step "b: only net spans, leaves of the profile root"
F=$COLL_DIR/$TRACE_B.json
[ -s "$F" ] || { REQ="(dump of b)" STATUS="" BODY=$(dumps); fail "no dump $F"; }
jq_expect "$F" "$JQ_SPANS [spans | select(.name != \"net\" or .parent_id != \"$TRACE_B\" or .nchildren != 0 or .depth != 1)] | length" 0 \
    "spans that are not net leaves under the profile root"

step "b: the net spans in order"
# consecutive spans of the same op on the same fd grouped: [op, peer, bytes, etype, message]
SUMMARY="$JQ_SPANS [spans] | sort_by(.start.timestamp) | map({op: .start.info.net.op, fd: .start.info.net.fd,
    peer: .start.info.net.peer, bytes: .stop.info.net.bytes, etype: .stop.info.etype, msg: .stop.info.message})
  | reduce .[] as \$s ([]; if length > 0 and .[-1].op == \$s.op and .[-1].fd == \$s.fd and \$s.etype == null and .[-1].etype == null
        then .[-1].bytes += \$s.bytes else . + [\$s] end)
  | map([.op, (.peer // \"-\"), .bytes, (.etype // \"-\"), (.msg // \"-\")])"
P="127.0.0.1:$PORT"
jq_expect "$F" "$SUMMARY" "[
  [\"connect\", \"$P\", null, \"-\", \"-\"],
  [\"send\", \"$P\", 5, \"-\", \"-\"], [\"recv\", \"$P\", 5, \"-\", \"-\"],
  [\"send\", \"$P\", 6, \"-\", \"-\"], [\"recv\", \"$P\", 6, \"-\", \"-\"],
  [\"send\", \"$P\", 5, \"-\", \"-\"], [\"recv\", \"$P\", 5, \"-\", \"-\"],
  [\"send\", \"$P\", 6, \"-\", \"-\"], [\"recv\", \"$P\", 6, \"-\", \"-\"],
  [\"send\", \"$P\", 3, \"-\", \"-\"], [\"recv\", \"$P\", 3, \"-\", \"-\"],
  [\"recv\", \"-\", null, \"OSError\", \"Transport endpoint is not connected\"]
]" "net spans (op, peer, bytes, error) in order"
jq_expect "$F" "$JQ_SPANS [spans | .start.info.net.fd] | unique | length" 2 "distinct fds (the connection, the unconnected socket)"
jq_expect "$F" "$JQ_SPANS [spans | select((.start.info.net.peer // \"\") | test(\"sock\"))] | length" 0 "spans on the collector's socket"

step "c: trace_socket off records no net span"
if [ -n "$TRACE_C" ] && [ -e "$COLL_DIR/$TRACE_C.json" ]; then
    jq_expect "$COLL_DIR/$TRACE_C.json" "$JQ_SPANS [spans | select(.name == \"net\")] | length" 0 "net spans with trace_socket off"
fi

# layering NAME DRIVER_SPAN ON OFF: the dumps of the driver client with and
# without trace_socket
layering() {
    local name=$1 dn=$2 on=$COLL_DIR/$3.json off=$COLL_DIR/$4.json n_on n_off
    [ -s "$on" ] || { REQ="(dump of $name)" STATUS="" BODY=$(dumps); fail "no dump $on"; }
    [ -s "$off" ] || { REQ="(dump of $name, off)" STATUS="" BODY=$(dumps); fail "no dump $off"; }
    jq_expect "$on" "$JQ_SPANS [spans | select(.name == \"$dn\" and .nchildren != 0)] | length" 0 \
        "$name: $dn spans with children (a net span inside a driver call)"
    jq_expect "$on" "$JQ_SPANS [spans | select(.name == \"net\" and .depth != 1)] | length" 0 \
        "$name: net spans that are not direct children of the profile root"
    jq_expect "$off" "$JQ_SPANS [spans | select(.name == \"net\")] | length" 0 "$name: net spans with trace_socket off"
    n_on=$(jq "$JQ_SPANS [spans | select(.name == \"$dn\")] | length" "$on")
    n_off=$(jq "$JQ_SPANS [spans | select(.name == \"$dn\")] | length" "$off")
    [ "$n_on" = "$n_off" ] && [ "$n_on" -gt 0 ] ||
        { REQ="(dumps of $name)" STATUS="" BODY=""; fail "$name: $n_on $dn spans with trace_socket, $n_off without"; }
    echo "$name: $n_on $dn spans either way, $(jq "$JQ_SPANS [spans | select(.name == \"net\")] | length" "$on") net spans outside driver calls"
}

step "layering: redis_client"
layering redis redis "$TRACE_RB" "$TRACE_RC"
step "layering: pq_client"
layering libpq db "$TRACE_PB" "$TRACE_PC"

echo "PASS"
