#!/usr/bin/env bash
# 30-redis-spans.sh - `redis` spans from hooks/hiredis.c, with a tiny client.
#
# build/tests/targets/redis_client runs a fixed sequence of hiredis calls
# (redisCommand with %s and %b, redisCommandArgv, a pipeline of three
# appends and three redisGetReply, an error reply, two async commands on a
# hand-driven redisAsyncContext, a command on a connection the server
# closed, a pipeline of 40 - more than the hook's 32 pending spans per
# context - followed by two more pipelined commands, 8 threads pipelining
# on their own contexts) and prints every reply on stdout.  It is run:
#
#   a  without the preload
#   b  under the preload with LDPROF_ENABLED=0
#   b2 under the preload, enabled, no trace, LDPROF_TRACE_SOCKET=1: same
#      stdout, the collector receives no span
#   c  under the preload in client profile mode (LDPROF_PROFILE: the process
#      has a trace context, so driver spans are recorded) with a collector
#   d  as c with LDPROF_TRACE_REDIS=0
#   e  as c with LDPROF_RECORD_VALUES=1
#
# stdout is identical in all five.  c's dump holds exactly the expected
# redis spans (in order of their start, each a direct child of the profile
# root, none nested: one span per driver call) with their command names,
# keys, argc, shapes (pipelined/async), reply types and the error spans;
# of the 40 pipelined commands exactly the first 32 are traced and the two
# pipelined after them get their own replies; each thread's 60 pipelined
# spans carry its key and an integer reply;
# no argument value appears in it.  d records no redis span.  e adds
# redis.args.
#
# Then `redis_client --classify` (hooks/hiredis.c's command lists: keyless,
# subcommand, secret, EVAL/EVALSHA, async SUBSCRIBE, psubscribe and
# MONITOR) runs without the preload (ka), traced (kc) and traced with
# LDPROF_RECORD_VALUES=1 (ke): same stdout; each span's command,
# subcommand, script, key and args are the expected ones, the async
# SUBSCRIBE, psubscribe and MONITOR have no span (their callbacks see every
# message) and no secret command's argument is recorded.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis
ldprof_need
CLIENT=$LDPROF_BUILD/tests/targets/redis_client
[ -x "$CLIENT" ] || { REQ="(setup)" STATUS="" BODY=""; fail "not built: $CLIENT (run make all)"; }
: >"$E2E_TMP/empty.ini"

step "libldprof.so exports the hiredis wrappers"
for sym in redisCommand redisvCommand redisCommandArgv redisAppendCommand redisvAppendCommand \
    redisAppendCommandArgv redisGetReply redisFree redisAsyncCommand redisvAsyncCommand redisAsyncCommandArgv; do
    nm -D --defined-only "$LDPROF_LIB" | grep -qw "$sym" ||
        { REQ="nm -D $LDPROF_LIB" STATUS="" BODY=""; fail "$sym is not exported (preload/libldprof.map)"; }
done

# run NAME VAR=VALUE...: the client with those variables (LD_PRELOAD among
# them or not); stdout in $E2E_TMP/NAME.out, stderr in NAME.err, the trace id
# it printed (profile mode) in TRACE
MODE=() # the client's options (--classify)
run() {
    local name=$1 rc
    shift
    env "$@" "$CLIENT" "${MODE[@]}" "$LDPROF_TEST_REDIS_URI" >"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err"
    rc=$?
    [ $rc = 0 ] || { REQ="redis_client ($name)" STATUS="" BODY=$(cat "$E2E_TMP/$name.out" "$E2E_TMP/$name.err"); fail "exit status $rc"; }
    TRACE=$(sed -n 's/^Trace ID: //p' "$E2E_TMP/$name.err" | head -n 1)
}

# same_out NAME [REF]: NAME printed what REF (default a) printed
same_out() {
    local ref=${2:-a}
    cmp -s "$E2E_TMP/$ref.out" "$E2E_TMP/$1.out" ||
        { REQ="diff $ref.out $1.out" STATUS="" BODY=$(diff "$E2E_TMP/$ref.out" "$E2E_TMP/$1.out"); fail "run $1 printed other results"; }
}

step "a: without the preload"
run a
grep -qx 'failures: 0' "$E2E_TMP/a.out" || { REQ="a" STATUS="" BODY=$(cat "$E2E_TMP/a.out"); fail "the client saw failures"; }

step "b: under the preload, enabled=0"
run b LD_PRELOAD="$LDPROF_LIB" LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_ENABLED=0
same_out b

# b2: the untraced path (hooks/hiredis.c hr_idle: every wrapper, nested
# ones included, calls hiredis without holding the depth, so the socket
# I/O under it runs at depth 0), with trace_socket on so that a `net` span
# would show if that I/O were recorded outside a trace.
step "b2: under the preload, enabled, outside any trace (trace_socket on): same output, nothing sent"
collector_start b2
run b2 LD_PRELOAD="$LDPROF_LIB" LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_COLLECTOR="$COLL_SOCK" \
    LDPROF_TRACE_SOCKET=1
same_out b2
[ -z "$TRACE" ] || { REQ="b2" STATUS="" BODY=$(cat "$E2E_TMP/b2.err"); fail "a trace id was printed outside profile mode"; }
sleep 0.3
collector_stop b2
jq_expect "$COLL_STATS" '.spans' 0 "spans received outside a trace"

collector_start c
PRE=(LD_PRELOAD="$LDPROF_LIB" LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_COLLECTOR="$COLL_SOCK"
    LDPROF_PROFILE="k30-$E2E_ID" LDPROF_SERVICE=redis-client-30)

step "c: client profile mode, traced"
run c "${PRE[@]}"
same_out c
[ -n "$TRACE" ] || { REQ="c" STATUS="" BODY=$(cat "$E2E_TMP/c.err"); fail "no 'Trace ID:' printed"; }
TRACE_C=$TRACE

step "d: LDPROF_TRACE_REDIS=0"
run d "${PRE[@]}" LDPROF_TRACE_REDIS=0
same_out d
TRACE_D=$TRACE

step "e: LDPROF_RECORD_VALUES=1"
run e "${PRE[@]}" LDPROF_RECORD_VALUES=1
same_out e
TRACE_E=$TRACE

collector_stop c # writes every trace it holds
F=$COLL_DIR/$TRACE_C.json
[ -s "$F" ] || { REQ="(dump of c)" STATUS="" BODY=$(dumps); fail "no dump $F"; }
dump_raw() { jq -c "$JQ_SPANS [spans]" "$1"; }

step "c: the span tree"
# every span: a redis span, a direct child of the profile root, no children
jq_expect "$F" "$JQ_SPANS [spans | select(.name != \"redis\" or .parent_id != \"$TRACE_C\" or .nchildren != 0 or .depth != 1)] | length" 0 \
    "spans that are not redis leaves under the profile root"
jq_expect "$F" "$JQ_SPANS [spans | .trace_id] | unique | length" 528 "distinct spans (47 + 8 threads x 60 + 1)"
# main: every span but step 10's (keys ...:t0 to ...:t7)
MAIN='def main: select((.start.info.redis.key // "") | test(":t[0-9]+$") | not);'

# the spans in order of start: command, key (the pid part replaced by K),
# argc, shape, reply type, error type
SUMMARY="$JQ_SPANS $MAIN [spans | main] | sort_by(.start.timestamp) | map(
    (.start.info.redis) as \$s | (.stop.info) as \$e |
    [\$s.command, ((\$s.key // \"-\") | sub(\"^ldprof:rc:[0-9]+:\"; \"K:\")), \$s.argc,
     (if \$s.pipelined == 1 then \"pipe\" elif \$s.async == 1 then \"async\" else \"-\" end),
     (\$e.redis.reply_type // \"-\"), (\$e.etype // \"-\")])"
PING_ETYPE=$(jq -r "$JQ_SPANS [spans | select(.start.info.redis.command == \"PING\") | .stop.info.etype][0]" "$F")
case $PING_ETYPE in
RedisEOFError | RedisIOError) ;;
*) REQ="(PING after QUIT)" STATUS="" BODY=$(_jq_file_summary "$F"); fail "etype $PING_ETYPE, expected RedisEOFError or RedisIOError" ;;
esac
# step 9: 40 pipelined INCR, only the first 32 traced (the per-context FIFO)
PIPE40=""
for ((i = 0; i < 32; i++)); do PIPE40+='["INCR", "K:many", 2, "pipe", "integer", "-"], '; done
jq_expect "$F" "$SUMMARY" "[
    [\"SET\",    \"K:str\",     3, \"-\",     \"status\",  \"-\"],
    [\"GET\",    \"K:str\",     2, \"-\",     \"string\",  \"-\"],
    [\"RPUSH\",  \"K:list\",    4, \"-\",     \"integer\", \"-\"],
    [\"INCR\",   \"K:missing\", 2, \"pipe\",  \"integer\", \"-\"],
    [\"LRANGE\", \"K:list\",    4, \"pipe\",  \"array\",   \"-\"],
    [\"GET\",    \"-\",         2, \"pipe\",  \"nil\",     \"-\"],
    [\"INCR\",   \"K:str\",     2, \"-\",     \"error\",   \"RedisError\"],
    [\"SET\",    \"K:str\",     3, \"async\", \"status\",  \"-\"],
    [\"GET\",    \"K:str\",     2, \"async\", \"string\",  \"-\"],
    [\"DEL\",    \"K:str\",     4, \"-\",     \"integer\", \"-\"],
    [\"QUIT\",   \"-\",         1, \"-\",     \"status\",  \"-\"],
    [\"PING\",   \"-\",         1, \"-\",     \"-\",       \"$PING_ETYPE\"],
    $PIPE40
    [\"GET\",    \"K:many\",    2, \"pipe\",  \"string\",  \"-\"],
    [\"EXISTS\", \"K:many\",    2, \"pipe\",  \"integer\", \"-\"],
    [\"DEL\",    \"K:many\",    2, \"-\",     \"integer\", \"-\"]
]" "redis spans in order"
jq_expect "$F" "$JQ_SPANS [spans | select(.stop.info.etype == \"RedisError\") | .stop.info.message]" \
    '["ERR value is not an integer or out of range"]' "the error reply's message"
jq_expect "$F" "$JQ_SPANS $MAIN [spans | main] | sort_by(.start.timestamp) | map(select(.start.info.redis.command | IN(\"GET\", \"LRANGE\")) | .stop.info.redis.reply_len // -1)" \
    '[6, 2, -1, 11, 2]' "reply_len of GET/LRANGE (string bytes, array elements; nil has none)"

step "c: 8 threads x 20 pipelines of 3 on their own contexts"
jq_expect "$F" "$JQ_SPANS [spans | select(.start.info.redis.pipelined == 1 and ((.start.info.redis.key // \"\") | test(\":t[0-9]+$\")))
    | [.start.info.redis.command, (.start.info.redis.key | sub(\"^ldprof:rc:[0-9]+:\"; \"K:\")), .stop.info.redis.reply_type]]
    | group_by(.) | map(.[0] + [length])" \
    "$(for i in 0 1 2 3 4 5 6 7; do printf '%s["INCR", "K:t%d", "integer", 60]' "$([ $i = 0 ] && echo '[' || echo ',')" $i; done)]" \
    "pipelined INCR spans per thread key"
jq_expect "$F" "$JQ_SPANS [spans | select(.start.info.redis.argc == 9) | [.start.info.redis.command, .stop.info.redis.reply_type]]" \
    '[["DEL", "integer"]]' "the DEL of the 8 thread keys"

step "the 8 untraced pipelined commands of c and of e are counted as dropped"
jq_expect "$COLL_STATS" '.dropped' 16 "collector stats: dropped spans"

step "c: no argument value in the dump (record_values is off)"
for v in async-value 'v\\u0000alue' '"a"' '"b"'; do
    if grep -q -- "$v" "$F"; then REQ="grep $v $F" STATUS="" BODY=$(_jq_file_summary "$F"); fail "value $v recorded"; fi
done
jq_expect "$F" "$JQ_SPANS [spans | select(.start.info.redis.args != null)] | length" 0 "spans with redis.args"

step "d: trace_redis=0 records no redis span"
if [ -n "$TRACE_D" ] && [ -e "$COLL_DIR/$TRACE_D.json" ]; then
    jq_expect "$COLL_DIR/$TRACE_D.json" "$JQ_SPANS [spans | select(.name == \"redis\")] | length" 0 "redis spans with trace_redis=0"
fi

step "e: record_values=1 adds redis.args"
FE=$COLL_DIR/$TRACE_E.json
[ -s "$FE" ] || { REQ="(dump of e)" STATUS="" BODY=$(dumps); fail "no dump $FE"; }
# (the pid in DEL's further keys replaced by K)
PIPE40ARGS=""
for ((i = 0; i < 32; i++)); do PIPE40ARGS+='"-", '; done
jq_expect "$FE" "$JQ_SPANS $MAIN [spans | main] | sort_by(.start.timestamp) | map(.start.info.redis.args // \"-\" | sub(\"ldprof:rc:[0-9]+:\"; \"K:\"; \"g\"))" \
    "[\"v\\u0000alue\", \"-\", \"a b\", \"-\", \"0 -1\", \"-\", \"-\", \"async-value\", \"-\", \"K:list K:missing\", \"-\", \"-\", ${PIPE40ARGS}\"-\", \"-\", \"-\"]" \
    "redis.args in order (record_values)"

MODE=(--classify)
step "classify: without the preload"
run ka
grep -qx 'failures: 0' "$E2E_TMP/ka.out" || { REQ="ka" STATUS="" BODY=$(cat "$E2E_TMP/ka.out"); fail "the client saw failures"; }
SHA=$(sed -n 's/^SCRIPT LOAD: \([0-9a-f]\{40\}\)$/\1/p' "$E2E_TMP/ka.out")
[ -n "$SHA" ] || { REQ="ka" STATUS="" BODY=$(cat "$E2E_TMP/ka.out"); fail "no SCRIPT LOAD digest printed"; }
DB=0
[[ $LDPROF_TEST_REDIS_URI =~ /([0-9]+)$ ]] && DB=${BASH_REMATCH[1]}

collector_start k
PRE=(LD_PRELOAD="$LDPROF_LIB" LDPROF_CONFIG="$E2E_TMP/empty.ini" LDPROF_COLLECTOR="$COLL_SOCK"
    LDPROF_PROFILE="k30-$E2E_ID" LDPROF_SERVICE=redis-client-30)
step "classify: traced (kc), traced with record_values (ke)"
run kc "${PRE[@]}"
same_out kc ka
TRACE_KC=$TRACE
run ke "${PRE[@]}" LDPROF_RECORD_VALUES=1
same_out ke ka
TRACE_KE=$TRACE
collector_stop k

# command|subcommand|script|key|shape|args with record_values, in order of
# start (SHA: the script's digest, K: the keys' prefix; - none).  Each list's
# first letters have ordinary commands too (APPEND/AUTH, COPY/CONFIG,
# EXISTS/ECHO/EVAL, HSET/HELLO, MSET/MIGRATE, SUBSTR/SUBSCRIBE...), some
# names are lower-case in the call (echo, append, config, evalsha).
KEXPECT=$(jq -R -s -c 'split("\n") | map(select(length > 0) | split("|"))' <<EOF
SELECT|-|-|-|-|$DB
PING|-|-|-|-|hello
ECHO|-|-|-|-|hello
ECHO|-|-|-|-|hello
AUTH|-|-|-|-|-
HELLO|-|-|-|-|-
WAIT|-|-|-|-|0 0
PUBLISH|-|-|-|-|K:chan hello
UNSUBSCRIBE|-|-|-|-|K:chan
INFO|-|-|-|-|server
SET|-|-|K:str|-|value
APPEND|-|-|K:str|-|-more
HSET|-|-|K:hash|-|field hvalue
MSET|-|-|K:m|-|mvalue
COPY|-|-|K:str|-|K:copy
EXISTS|-|-|K:str|-|1 K:copy
PFADD|-|-|K:hll|-|a
LPUSH|-|-|K:list|-|a
TTL|-|-|K:str|-|-
INCR|-|-|K:n|-|-
BITCOUNT|-|-|K:str|-|-
UNLINK|-|-|K:hll|-|-
WATCH|-|-|K:str|-|-
RPUSH|-|-|K:list|-|b
DECR|-|-|K:n|-|-
SUBSTR|-|-|K:str|-|0 1
SCRIPT|LOAD|-|-|-|LOAD return redis.call('GET',KEYS[1])
SCRIPT|EXISTS|-|-|-|EXISTS SHA
CONFIG|GET|-|-|-|-
CONFIG|GET|-|-|-|-
CLIENT|SETNAME|-|-|-|SETNAME ldprof-rc
CLUSTER|INFO|-|-|-|INFO
COMMAND|COUNT|-|-|-|COUNT
SLOWLOG|LEN|-|-|-|LEN
LATENCY|LATEST|-|-|-|LATEST
MODULE|LIST|-|-|-|LIST
ACL|WHOAMI|-|-|-|-
PUBSUB|NUMPAT|-|-|-|NUMPAT
DEBUG|HELP|-|-|-|HELP
MEMORY|USAGE|-|-|-|USAGE K:str
FUNCTION|LIST|-|-|-|LIST
EVAL|-|-|-|-|return 1 0
EVAL|-|-|K:str|-|-
EVALSHA|-|SHA|K:str|-|-
EVALSHA|-|SHA|K:str|-|-
EVALSHA_RO|-|SHA|K:str|-|-
EVAL_RO|-|-|-|-|return 1 0
EVALSHA|-|SHA|-|-|SHA 0
MIGRATE|-|-|127.0.0.1|-|-
ECHO|-|-|-|async|hello
PUBLISH|-|-|-|-|K:chan news
PUBLISH|-|-|-|-|K:chan pnews
PING|-|-|-|-|monitored
DEL|-|-|K:str|-|K:copy K:hash K:m K:list K:n
EOF
)
KSUMMARY="$JQ_SPANS [spans] | sort_by(.start.timestamp) | map((.start.info.redis) as \$s | [
    \$s.command, (\$s.subcommand // \"-\"), (if \$s.script == \"$SHA\" then \"SHA\" else \$s.script // \"-\" end),
    ((\$s.key // \"-\") | sub(\"^ldprof:rc:[0-9]+:\"; \"K:\")),
    (if \$s.pipelined == 1 then \"pipe\" elif \$s.async == 1 then \"async\" else \"-\" end),
    ((\$s.args // \"-\") | gsub(\"ldprof:rc:[0-9]+:\"; \"K:\") | gsub(\"$SHA\"; \"SHA\"))])"
for t in kc ke; do
    [ "$t" = kc ] && id=$TRACE_KC || id=$TRACE_KE
    [ -n "$id" ] && [ -s "$COLL_DIR/$id.json" ] || { REQ="(dump of $t)" STATUS="" BODY=$(dumps); fail "no dump for $t"; }
    want=$KEXPECT
    [ "$t" = kc ] && want=$(jq -c 'map(.[5] = "-")' <<<"$KEXPECT")
    step "classify $t: command, subcommand, script, key, shape, args of every span"
    jq_expect "$COLL_DIR/$id.json" "$KSUMMARY" "$want" "redis spans of --classify in order ($t)"
done
step "classify ke: no secret argument anywhere in the dump"
for v in ldprof-secret-pw ldprof-hello-secret maxmemory; do
    if grep -q -- "$v" "$COLL_DIR/$TRACE_KE.json"; then
        REQ="grep $v $COLL_DIR/$TRACE_KE.json" STATUS="" BODY=$(_jq_file_summary "$COLL_DIR/$TRACE_KE.json"); fail "secret value $v recorded"
    fi
done

echo "PASS"
