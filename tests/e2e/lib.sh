# tests/e2e/lib.sh - shared helpers for the zaqard end-to-end tests.
#
# Source it first:  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
#   need_services redis postgres [mongo]
#                       exit 77 (skip) unless those test servers are known
#   zaqard_start NAME [ARGS...]
#                       start "$ZAQARD" ARGS (prefixed by the words of
#                       $ZAQARD_WRAPPER, e.g. "valgrind -q" or "env LD_PRELOAD=x"),
#                       adding --listen 127.0.0.1:0, --port-file and a private
#                       catalog database (--catalog) unless ARGS give them;
#                       wait until /v2/ping or /v2/health answers 204/200
#                       (any HTTP answer with ZAQARD_READY_ANY=1), then set
#                       URL (the base URL), ZQ_URL[NAME], ZQ_LOG[NAME] and
#                       ZQ_CATALOG[NAME].  Stopped by zaqard_stop or at exit.
#   zaqard_stop NAME    SIGTERM; fails unless it exits 0 within 10 s
#   req [OPTS] METHOD PATH [BODY]
#                       one request to $URL$PATH with Client-ID: $CLIENT_ID and
#                       X-Project-ID: $PROJECT; sets STATUS, HEADERS, BODY,
#                       SIZE (bytes received) and REQ (a description).
#                       OPTS: --client ID | --project P  (empty = header left out)
#                             -H 'Name: value'  --data-file FILE  --url BASE
#                             --curl ARG  (one more curl argument)
#   expect_status N     expect_json JQ EXPECTED     expect_header NAME REGEX
#   expect_no_header NAME                           expect_error N TITLE
#   fail MSG            step MSG           new_uuid      check
#   mongo_pool_uri NAME sets MONGO_POOL_URI (a database of this test's own)
#   on_exit CMD         run CMD at exit (before the servers are stopped)
#
# Environment: ZAQARD (the binary), ZAQARD_WRAPPER, ZAQARD_START_TIMEOUT and
# ZAQARD_STOP_TIMEOUT (seconds, default 10: raise them under valgrind), and
# the LDPROF_TEST_* addresses from tests/env/with-services.sh.
#
# Every test gets a unique PROJECT (X-Project-ID; projects derived from it
# must keep $E2E_ID in them), its own temp dir E2E_TMP, catalog databases and
# MongoDB databases, so tests can share the servers; at exit its Redis keys
# (found by $E2E_ID), databases and temp dir are removed.
set -u -o pipefail

E2E_NAME=${LDPROF_E2E_NAME:-$(basename "$0" .sh)}
E2E_ID=$(printf '%x%x%04x' "$(date +%s)" "$$" "$RANDOM")
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/e2e-$E2E_NAME.XXXXXX") || exit 1
PROJECT="e2e-${E2E_NAME//[^A-Za-z0-9_.-]/_}-$E2E_ID"
CLIENT_ID=$(cat /proc/sys/kernel/random/uuid)
URL=""
STATUS="" HEADERS="" BODY="" SIZE=0 REQ="(no request yet)"
E2E_STEP=0
declare -A ZQ_URL=() ZQ_LOG=() ZQ_CATALOG=() ZQ_PID=() ZQ_DIR=()
E2E_DBS=()         # catalog databases to drop at exit
E2E_MONGO_DBS=()   # MongoDB databases to drop at exit
E2E_CLEAN_REDIS=0  # 1: delete this test's Redis keys at exit ...
declare -A E2E_REDIS_DBS=() # ... in these databases (seen in zaqard's arguments)
E2E_ATEXIT=()      # more commands to run at exit (on_exit)
E2E_PB=() E2E_PW=() E2E_PE=() E2E_PR=() E2E_PS=() E2E_NP=0 # queued expect_json

new_uuid() { cat /proc/sys/kernel/random/uuid; }

step() {
    E2E_STEP=$((E2E_STEP + 1))
    printf '[%s] step %d: %s\n' "$(date +%T)" "$E2E_STEP" "$*"
}

# fail MSG: say what went wrong and on which request, then exit 1.
fail() {
    [ ${#E2E_PE[@]} -gt 0 ] && check
    {
        printf 'FAIL: %s\n' "$*"
        printf '  request: %s\n' "$REQ"
        printf '  status:  %s\n' "$STATUS"
        printf '  body:    %.2000s\n' "$BODY"
    } >&2
    exit 1
}

on_exit() { E2E_ATEXIT+=("$1"); }

need_services() {
    local s v
    for s in "$@"; do
        [ "$s" = redis ] && E2E_CLEAN_REDIS=1
        case $s in
        redis) v=${LDPROF_TEST_REDIS_URI:-} ;;
        postgres) v=${LDPROF_TEST_PG_CONNINFO:-} ;;
        mongo) v=${LDPROF_TEST_MONGO_URI:-} ;;
        *) v="" ;;
        esac
        if [ -z "$v" ]; then
            echo "skip: needs the $s test server (run through tests/env/with-services.sh)"
            exit 77
        fi
    done
    [ -x "${ZAQARD:-}" ] || { echo "FAIL: no zaqard binary at '${ZAQARD:-}' (make build/tests/zaqard/zaqard)" >&2; exit 1; }
}

# mongo_pool_uri NAME: set MONGO_POOL_URI to the test MongoDB with a database
# of this test's own (dropped at exit).
mongo_pool_uri() {
    local db="zq_${E2E_ID}_$1"
    E2E_MONGO_DBS+=("$db")
    MONGO_POOL_URI="${LDPROF_TEST_MONGO_URI%/}/$db"
}

# Drop what this test left in the shared stores: Redis keys naming one of its
# projects (they all contain $E2E_ID) in the databases its zaqards used (a
# redis://HOST/DB pool URI without a db is db 0: name the db), its MongoDB
# databases.
_e2e_clean_stores() {
    local hp db port
    if [ "$E2E_CLEAN_REDIS" = 1 ] && [ -n "${LDPROF_TEST_REDIS_URI:-}" ]; then
        hp=${LDPROF_TEST_REDIS_URI#redis://}
        hp=${hp%%/*}
        port=${hp##*:}
        for db in "${!E2E_REDIS_DBS[@]}"; do
            redis-cli -h 127.0.0.1 -p "$port" -n "$db" --scan --pattern "*$E2E_ID*" 2>/dev/null |
                xargs -r -n 100 redis-cli -h 127.0.0.1 -p "$port" -n "$db" DEL >/dev/null 2>&1
        done
    fi
    if [ ${#E2E_MONGO_DBS[@]} -gt 0 ]; then
        "${LDPROF_PYTHON:-/usr/bin/python3}" - "$LDPROF_TEST_MONGO_URI" "${E2E_MONGO_DBS[@]}" <<'PY' >/dev/null 2>&1
import sys
import pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000)
for name in sys.argv[2:]:
    client.drop_database(name)
PY
    fi
}

# new_catalog: create an empty PostgreSQL database (dropped at exit) and set
# CATALOG to its conninfo.
new_catalog() {
    local db="e2e_${E2E_ID}_${#E2E_DBS[@]}" base=$LDPROF_TEST_PG_CONNINFO
    psql "$base" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null ||
        { REQ="CREATE DATABASE $db" STATUS="" BODY=""; fail "cannot create a catalog database"; }
    E2E_DBS+=("$db")
    if [[ $base == *dbname=* ]]; then
        CATALOG=$(sed -E "s/dbname=[^ ]*/dbname=$db/" <<<"$base")
    else
        CATALOG="$base dbname=$db"
    fi
}

zaqard_start() {
    local name=$1 dir args=() a has_listen=0 has_port=0 has_catalog=0 wrap=() i port="" log
    shift
    for a in "$@"; do
        [[ $a =~ redis://[^/]*/([0-9]+) ]] && E2E_REDIS_DBS[${BASH_REMATCH[1]}]=1
        case $a in
        --listen | --listen=*) has_listen=1 ;;
        --port-file | --port-file=*) has_port=1 ;;
        --catalog | --catalog=* | --config | --config=*) has_catalog=1 ;;
        esac
    done
    dir="$E2E_TMP/zaqard-$name"
    mkdir -p "$dir"
    log="$dir/zaqard.log"
    args=("$@")
    for ((i = 1; i < ${#args[@]}; i++)); do
        if [ "${args[i - 1]}" = --config ] && [ -r "${args[i]}" ]; then
            while IFS= read -r a; do
                [[ $a =~ redis://[^/]*/([0-9]+) ]] && E2E_REDIS_DBS[${BASH_REMATCH[1]}]=1
            done <"${args[i]}"
        fi
    done
    [ $has_listen = 1 ] || args+=(--listen 127.0.0.1:0)
    [ $has_port = 1 ] || args+=(--port-file "$dir/port")
    if [ $has_catalog = 0 ]; then
        new_catalog
        ZQ_CATALOG[$name]=$CATALOG
        args+=(--catalog "${ZQ_CATALOG[$name]}")
    fi
    read -r -a wrap <<<"${ZAQARD_WRAPPER:-}"
    printf 'zaqard_start %s: %s\n' "$name" "${wrap[*]} $ZAQARD ${args[*]}"
    # The subshell records the exit status of zaqard (its pid is in $dir/pid).
    (
        "${wrap[@]}" "$ZAQARD" "${args[@]}" >"$log" 2>&1 </dev/null &
        echo $! >"$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"
        wait $!
        # rename: a reader never sees the file before its content
        echo $? >"$dir/rc.tmp" && mv "$dir/rc.tmp" "$dir/rc"
    ) &
    ZQ_DIR[$name]=$dir
    ZQ_LOG[$name]=$log
    local limit=$((${ZAQARD_START_TIMEOUT:-10} * 10))
    for ((i = 0; i < limit; i++)); do
        [ -s "$dir/pid" ] && ZQ_PID[$name]=$(cat "$dir/pid")
        if [ -e "$dir/rc" ]; then
            tail -n 30 "$log" >&2
            STATUS="" BODY="" REQ="zaqard_start $name"
            fail "zaqard $name exited with status $(cat "$dir/rc") while starting"
        fi
        [ -z "$port" ] && [ -s "$dir/port" ] && port=$(tr -dc 0-9 <"$dir/port")
        if [ -n "$port" ]; then
            local code
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/ping")
            [ "$code" = 204 ] ||
                code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/health")
            if [ "$code" = 204 ] || [ "$code" = 200 ] || { [ -n "${ZAQARD_READY_ANY:-}" ] && [ "$code" != 000 ]; }; then
                ZQ_URL[$name]="http://127.0.0.1:$port"
                URL=${ZQ_URL[$name]}
                echo "zaqard $name (pid ${ZQ_PID[$name]:-?}) ready at $URL"
                return 0
            fi
        fi
        sleep 0.1
    done
    tail -n 30 "$log" >&2
    STATUS="" BODY="" REQ="zaqard_start $name"
    fail "zaqard $name not ready within ${ZAQARD_START_TIMEOUT:-10}s (port file: '${port}')"
}

# _zaqard_halt NAME: SIGTERM, wait (bounded); return 0 only on exit status 0.
_zaqard_halt() {
    local name=$1 dir=${ZQ_DIR[$1]} pid i rc limit=$((${ZAQARD_STOP_TIMEOUT:-10} * 10))
    pid=${ZQ_PID[$name]:-}
    [ -z "$pid" ] && [ -s "$dir/pid" ] && pid=$(cat "$dir/pid")
    unset "ZQ_DIR[$name]"
    local when="after SIGTERM"
    [ -e "$dir/rc" ] && when="before SIGTERM (it died on its own)"
    [ -n "$pid" ] && [ ! -e "$dir/rc" ] && kill -TERM "$pid" 2>/dev/null
    local t0=$EPOCHREALTIME
    for ((i = 0; i < limit * 5; i++)); do
        [ -e "$dir/rc" ] && break
        sleep 0.02
    done
    if [ ! -e "$dir/rc" ]; then
        echo "FAIL: zaqard $name (pid $pid) still running ${ZAQARD_STOP_TIMEOUT:-10}s after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        tail -n 30 "${ZQ_LOG[$name]}" >&2
        return 1
    fi
    rc=$(cat "$dir/rc")
    if [ "$rc" != 0 ]; then
        echo "FAIL: zaqard $name exited with status $rc $when (crash or error); log tail:" >&2
        tail -n 30 "${ZQ_LOG[$name]}" >&2
        return 1
    fi
    t0=${t0/[.,]/} && t0=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
    echo "zaqard $name stopped ${t0} ms after SIGTERM, exit status 0"
}

zaqard_stop() {
    check
    [ -n "${ZQ_DIR[$1]:-}" ] || return 0
    _zaqard_halt "$1" || { STATUS="" BODY="" REQ="zaqard_stop $1"; fail "zaqard $1 did not stop cleanly"; }
}

# zaqard_alive NAME: true while the process runs.
zaqard_alive() { [ -n "${ZQ_DIR[$1]:-}" ] && [ ! -e "${ZQ_DIR[$1]}/rc" ]; }

_e2e_exit() {
    local rc=$? name c db
    trap - EXIT
    if [ "$rc" = 0 ] && [ ${#E2E_PE[@]} -gt 0 ]; then
        (check) || rc=1
    fi
    for c in "${E2E_ATEXIT[@]}"; do eval "$c" || true; done
    for name in "${!ZQ_DIR[@]}"; do
        _zaqard_halt "$name" || rc=1
    done
    wait 2>/dev/null
    _e2e_clean_stores
    local drops=()
    for db in "${E2E_DBS[@]}"; do drops+=(-c "DROP DATABASE IF EXISTS $db WITH (FORCE)"); done
    [ ${#drops[@]} = 0 ] || psql "$LDPROF_TEST_PG_CONNINFO" -qAtX "${drops[@]}" >/dev/null 2>&1
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        for name in "${!ZQ_LOG[@]}"; do
            echo "--- zaqard $name log (last 20 lines):"
            tail -n 20 "${ZQ_LOG[$name]}" 2>/dev/null
        done
    fi
    rm -rf "$E2E_TMP"
    exit "$rc"
}
trap _e2e_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

req() {
    local client=$CLIENT_ID project=$PROJECT base=$URL datafile="" extra=() h=()
    while [ $# -gt 0 ]; do
        case $1 in
        --client) client=$2; shift 2 ;;
        --project) project=$2; shift 2 ;;
        --url) base=$2; shift 2 ;;
        --data-file) datafile=$2; shift 2 ;;
        -H) h+=(-H "$2"); shift 2 ;;
        --curl) extra+=("$2"); shift 2 ;;
        *) break ;;
        esac
    done
    local method=$1 path=$2 f="$E2E_TMP/req.$BASHPID"
    [ -n "$client" ] && h+=(-H "Client-ID: $client")
    [ -n "$project" ] && h+=(-H "X-Project-ID: $project")
    if [ $# -ge 3 ]; then
        printf '%s' "$3" >"$f.in"
        datafile="$f.in"
        REQ="$method $base$path [project=$project client=$client] body(${#3} chars): ${3:0:300}"
    elif [ -n "$datafile" ]; then
        REQ="$method $base$path [project=$project client=$client] body from $datafile"
    else
        REQ="$method $base$path [project=$project client=$client]"
    fi
    [ -n "$datafile" ] && h+=(-H "Content-Type: application/json" --data-binary "@$datafile")
    if [ "$method" = HEAD ]; then
        h+=(--head)
    else
        h+=(-X "$method")
    fi
    : >"$f.body"
    : >"$f.hdr"
    # (files and `read`, not $(...), to save forks: this runs ~1000 times)
    curl -sS --globoff --max-time 20 -o "$f.body" -D "$f.hdr" \
        -w '%{http_code} %{size_download}' "${h[@]}" "${extra[@]}" "$base$path" >"$f.out" 2>"$f.err"
    read -r STATUS SIZE <"$f.out"
    if [ -s "$f.err" ]; then
        local err
        IFS= read -r err <"$f.err"
        REQ="$REQ (curl: $err)"
    fi
    IFS= read -r -d '' HEADERS <"$f.hdr"
    HEADERS=${HEADERS//$'\r'/}
    BODY=""
    [ "$method" = HEAD ] || IFS= read -r -d '' BODY <"$f.body"
    return 0
}

expect_status() {
    [ "$STATUS" = "$1" ] || fail "expected status $1, got $STATUS"
}

# expect_json JQ EXPECTED: JQ applied to the body must give EXPECTED (JSON;
# compared as JSON values: key order and spacing do not matter, several
# results compare with several expected values).  jq 1.6 takes ~60 ms to
# start, so assertions are queued (up to 100) and evaluated together by
# `check`, which zaqard_stop, fail and a clean exit call (call it yourself in
# a background subshell); a failure reports its own request and response,
# and fail reports a queued failure first, so the first failure is the one
# reported.
expect_json() {
    local f="$E2E_TMP/pend.$BASHPID.$E2E_NP"
    E2E_NP=$((E2E_NP + 1))
    printf '%s' "$BODY" >"$f.b"
    printf '%s\n' "$2" >"$f.w"
    E2E_PB+=("$f.b") E2E_PW+=("$f.w") E2E_PE+=("$1") E2E_PR+=("$REQ") E2E_PS+=("$STATUS")
    [ ${#E2E_PE[@]} -lt 100 ] || check
}

check() {
    local n=${#E2E_PE[@]} i prog="" args=() out rc
    [ "$n" -gt 0 ] || return 0
    for ((i = 0; i < n; i++)); do
        args+=(--rawfile "b$i" "${E2E_PB[i]}" --slurpfile "w$i" "${E2E_PW[i]}")
        prog+="([\$b$i | fromjson?] as \$p
 | (if (\$p | length) != 1 then [\"(body is not JSON)\"] else
    (try [\$p[0] | (${E2E_PE[i]}
)] catch [\"(jq error: \" + tostring + \")\"]) end) as \$g
 | if \$g == \$w$i then empty else \"\\($i) \\(\$g | if length == 1 then .[0] else . end | tojson)\" end),
"
    done
    prog="[${prog%,$'\n'}] | .[0] // empty"
    out=$(jq -nr "${args[@]}" "$prog" 2>&1)
    rc=$?
    local pe=("${E2E_PE[@]}") msg=""
    if [ $rc != 0 ]; then
        REQ="(test bug in one of: $(printf "'%s' " "${pe[@]}"))" STATUS="" BODY=""
        msg="expect_json: jq failed: $out"
    elif [ -n "$out" ]; then
        i=${out%% *}
        REQ=${E2E_PR[i]} STATUS=${E2E_PS[i]}
        BODY=$(cat "${E2E_PB[i]}")
        msg="jq '${pe[i]}': expected $(jq -cS . "${E2E_PW[i]}" | paste -sd' '), got ${out#* }"
    fi
    rm -f "${E2E_PB[@]}" "${E2E_PW[@]}"
    E2E_PB=() E2E_PW=() E2E_PE=() E2E_PR=() E2E_PS=()
    [ -z "$msg" ] || fail "$msg"
}

# header_value NAME: the value of the last NAME header of the last response.
header_value() {
    local line name found="" ok=1
    while IFS= read -r line; do
        [[ $line == *:* ]] || continue
        name=${line%%:*}
        if [ "${name,,}" = "${1,,}" ]; then
            found=${line#*:}
            found=${found#"${found%%[! $'\t']*}"}
            found=${found%"${found##*[! $'\t']}"}
            ok=0
        fi
    done <<<"$HEADERS"
    [ $ok = 0 ] && printf '%s\n' "$found"
    return $ok
}

expect_header() {
    local v
    v=$(header_value "$1") || fail "expected header $1 matching /$2/, got no $1 header (headers: ${HEADERS//$'\n'/|})"
    [[ $v =~ $2 ]] || fail "expected header $1 matching /$2/, got '$v'"
}

expect_no_header() {
    local v
    v=$(header_value "$1") && fail "expected no $1 header, got '$v'"
    return 0
}

# expect_error N TITLE: status N with body exactly {"title": TITLE, "description": <non-empty string>}.
expect_error() {
    expect_status "$1"
    expect_header Content-Type '^application/json; charset=UTF-8$'
    expect_json '{keys: keys, title, description: (.description | type == "string" and length > 0)}' \
        "{\"keys\": [\"description\", \"title\"], \"title\": \"$2\", \"description\": true}"
}

# jbody JQ: jq -r JQ of the last body (for picking values out).
jbody() { jq -r "$1" <<<"$BODY"; }

# ------------------------------------------------------------------ ldprof (tests 2x)
#
#   ldprof_need         fail unless build/libldprof.so, ldprof-collectord and
#                       ldprof are built; sets LDPROF_LIB, LDPROF_CLI,
#                       LDPROF_COLLECTORD (from $LDPROF_BUILD)
#   collector_start NAME [ARGS...]
#                       start ldprof-collectord on its own socket
#                       $E2E_TMP/coll-NAME/c.sock, dumps in .../traces,
#                       --idle-ms 300 unless ARGS give one; wait for its ready
#                       file; set COLL_SOCK, COLL_DIR, COLL_STATS, COLL_LOG,
#                       COLL_PID (and CO_SOCK[NAME], CO_DIR[NAME], ...).
#                       Stopped by collector_stop or at exit.
#   collector_stop NAME SIGTERM; fails unless it exits 0 within 10 s (it
#                       writes every trace it holds first)
#   preload_wrapper FILE VAR=VALUE...
#                       write an executable FILE that runs its arguments with
#                       LD_PRELOAD=$LDPROF_LIB and the given variables (values
#                       may hold spaces): ZAQARD_WRAPPER=FILE zaqard_start ...
#   trace_headers KEY [BASE_ID [PARENT_ID]]
#                       headers from `ldprof headers`: sets TH (two -H
#                       arguments for req), TH_INFO, TH_HMAC, TH_BASE
#   dumps [DIR]         the trace dumps of DIR (default $COLL_DIR), sorted
#   wait_dump BASE_ID NSPANS [SECS]
#                       wait (bounded, default 10 s) until $COLL_DIR/BASE_ID.json
#                       exists and holds at least NSPANS http/wsgi spans
#                       (driver spans not counted)
#   wait_until SECS DESC CMD...
#                       poll CMD every 0.1 s; fail "DESC" after SECS
#   jq_expect FILE JQ EXPECTED [WHAT]
#                       jq JQ on FILE must give EXPECTED (compared as JSON
#                       values, several results as an array); else fail
#   JQ_SPANS            jq definitions: `spans` flattens a dump into one object
#                       per span {name, trace_id, parent_id, base_id, service,
#                       project, host, start, stop, nchildren, ncore, depth,
#                       anc} (start/stop: the raw start/stop event; ncore: the
#                       children that are not driver spans; anc: the names of
#                       the ancestors), `core_spans` only the http and wsgi
#                       ones, `is_driver` (db, redis, mongodb, pooling, net),
#                       e.g. jq "$JQ_SPANS [spans] | length" FILE
#   dump_sane FILE BASE_ID
#                       every span of the dump has that base_id and a known
#                       name, and every driver span (db, redis, mongodb,
#                       pooling, net) lies under a wsgi span: the checks that
#                       let a test assert on the http/wsgi skeleton only
declare -A CO_SOCK=() CO_DIR=() CO_STATS=() CO_LOG=() CO_PID=() CO_HOME=()

JQ_SPANS='def is_driver: .name | IN("db", "redis", "mongodb", "pooling", "net");
  def _spans($d; $anc): .children[]? | ({name: .info.name, trace_id, parent_id,
    base_id: (.info["meta.raw_payload.\(.info.name)-start"].base_id // .info["meta.raw_payload.\(.info.name)-stop"].base_id),
    service: .info.service, project: .info.project, host: .info.host,
    start: .info["meta.raw_payload.\(.info.name)-start"],
    stop: .info["meta.raw_payload.\(.info.name)-stop"],
    nchildren: (.children | length),
    ncore: ([.children[] | select(.info.name | IN("db", "redis", "mongodb", "pooling", "net") | not)] | length),
    depth: $d, anc: $anc}, _spans($d + 1; $anc + [.info.name]));
  def spans: _spans(1; []);
  def core_spans: spans | select(is_driver | not);'

ldprof_need() {
    local b=${LDPROF_BUILD:-${LDPROF_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/build} f
    LDPROF_LIB=$b/libldprof.so LDPROF_CLI=$b/collector/ldprof LDPROF_COLLECTORD=$b/collector/ldprof-collectord
    for f in "$LDPROF_LIB" "$LDPROF_CLI" "$LDPROF_COLLECTORD"; do
        [ -e "$f" ] || { REQ="(ldprof_need)" STATUS="" BODY=""; fail "not built: $f (run make all)"; }
    done
    command -v jq >/dev/null || { REQ="(ldprof_need)" STATUS="" BODY=""; fail "jq is not installed"; }
}

collector_start() {
    local name=$1 home i has_idle=0 a
    shift
    home="$E2E_TMP/coll-$name"
    mkdir -p -m 700 "$home"
    for a in "$@"; do [[ $a == --idle-ms* ]] && has_idle=1; done
    local args=(--socket "$home/c.sock" --dir "$home/traces" --ready-file "$home/ready" --log "$home/collector.log")
    [ $has_idle = 1 ] || args+=(--idle-ms 300)
    args+=("$@")
    printf 'collector_start %s: %s %s\n' "$name" "$LDPROF_COLLECTORD" "${args[*]}"
    rm -f "$home/rc" "$home/pid"
    (
        "$LDPROF_COLLECTORD" "${args[@]}" >>"$home/collector.out" 2>&1 </dev/null &
        echo $! >"$home/pid.tmp" && mv "$home/pid.tmp" "$home/pid"
        wait $!
        # (rename: a reader never sees the file before its content)
        echo $? >"$home/rc.tmp" && mv "$home/rc.tmp" "$home/rc"
    ) &
    CO_HOME[$name]=$home CO_SOCK[$name]=$home/c.sock CO_DIR[$name]=$home/traces
    CO_STATS[$name]=$home/c.stats.json CO_LOG[$name]=$home/collector.log
    for ((i = 0; i < 100; i++)); do
        [ -s "$home/pid" ] && CO_PID[$name]=$(cat "$home/pid")
        if [ -e "$home/rc" ]; then
            cat "$home/collector.out" "$home/collector.log" >&2 2>/dev/null
            REQ="collector_start $name" STATUS="" BODY=""
            fail "ldprof-collectord $name exited with status $(cat "$home/rc") while starting"
        fi
        if [ -s "$home/ready" ] && [ -S "$home/c.sock" ]; then
            COLL_SOCK=${CO_SOCK[$name]} COLL_DIR=${CO_DIR[$name]} COLL_STATS=${CO_STATS[$name]}
            COLL_LOG=${CO_LOG[$name]} COLL_PID=${CO_PID[$name]}
            echo "collector $name (pid $COLL_PID) ready on $COLL_SOCK"
            return 0
        fi
        sleep 0.1
    done
    REQ="collector_start $name" STATUS="" BODY=""
    fail "ldprof-collectord $name not ready within 10 s"
}

# _collector_halt NAME: SIGTERM, wait (bounded); 0 only on exit status 0.
_collector_halt() {
    local name=$1 home=${CO_HOME[$1]:-} pid i
    [ -n "$home" ] || return 0
    unset "CO_HOME[$name]"
    pid=${CO_PID[$name]:-}
    [ -n "$pid" ] && [ ! -e "$home/rc" ] && kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 500; i++)); do
        [ -e "$home/rc" ] && break
        sleep 0.02
    done
    if [ ! -e "$home/rc" ]; then
        echo "FAIL: ldprof-collectord $name (pid $pid) still running 10 s after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        return 1
    fi
    if [ "$(cat "$home/rc")" != 0 ]; then
        echo "FAIL: ldprof-collectord $name exited with status $(cat "$home/rc"); log tail:" >&2
        tail -n 20 "$home/collector.log" "$home/collector.out" >&2 2>/dev/null
        return 1
    fi
    return 0
}

collector_stop() {
    _collector_halt "$1" || { REQ="collector_stop $1" STATUS="" BODY=""; fail "ldprof-collectord $1 did not stop cleanly"; }
}

_collectors_atexit() {
    local n
    for n in "${!CO_HOME[@]}"; do _collector_halt "$n" || true; done
}
on_exit _collectors_atexit

preload_wrapper() {
    local f=$1 kv
    shift
    {
        echo '#!/usr/bin/env bash'
        printf 'export LD_PRELOAD=%q\n' "$LDPROF_LIB"
        for kv in "$@"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
        echo 'exec "$@"'
    } >"$f"
    chmod +x "$f"
}

trace_headers() {
    local args=(headers --key "$1") out
    [ $# -ge 2 ] && args+=(--base-id "$2")
    [ $# -ge 3 ] && args+=(--parent-id "$3")
    out=$("$LDPROF_CLI" "${args[@]}") || { REQ="ldprof ${args[*]}" STATUS="" BODY=""; fail "ldprof headers failed"; }
    TH_INFO=$(sed -n 's/^X-Trace-Info: //p' <<<"$out")
    TH_HMAC=$(sed -n 's/^X-Trace-HMAC: //p' <<<"$out")
    [ -n "$TH_INFO" ] && [ -n "$TH_HMAC" ] || { REQ="ldprof ${args[*]}" STATUS="" BODY="$out"; fail "ldprof headers printed no headers"; }
    TH=(-H "X-Trace-Info: $TH_INFO" -H "X-Trace-HMAC: $TH_HMAC")
    TH_BASE=$(printf '%s' "$TH_INFO" | tr -- '-_' '+/' | base64 -d 2>/dev/null | jq -r .base_id)
}

dumps() {
    local d=${1:-$COLL_DIR} f
    for f in "$d"/*.json; do [ -e "$f" ] && printf '%s\n' "$f"; done | sort
}

wait_until() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    REQ="(waiting: $*)" STATUS="" BODY=""
    fail "$what (not within ${secs}s)"
}

_dump_has() { [ -s "$1" ] && [ "$(jq "$JQ_SPANS [core_spans] | length" "$1" 2>/dev/null)" -ge "$2" ] 2>/dev/null; }

wait_dump() {
    local f="$COLL_DIR/$1.json" secs=${3:-10} i
    for ((i = 0; i < secs * 10; i++)); do
        _dump_has "$f" "$2" && return 0
        sleep 0.1
    done
    REQ="(waiting for $f)" STATUS=""
    if [ -s "$f" ]; then BODY=$(_jq_file_summary "$f"); else BODY="(no such file; $(dumps | wc -l) dumps in $COLL_DIR)"; fi
    fail "no dump $f with at least $2 span(s) within ${secs}s"
}

jq_expect() {
    local file=$1 prog=$2 want=$3 what=${4:-} got w
    got=$(jq -cS "[$prog] | if length == 1 then .[0] else . end" "$file" 2>&1) ||
        { REQ="jq '$prog' $file" STATUS="" BODY=$(head -c 2000 "$file"); fail "${what:+$what: }jq failed: $got"; }
    w=$(jq -cS . <<<"$want") || { REQ="(test bug)" STATUS="" BODY=""; fail "jq_expect: bad expected JSON: $want"; }
    [ "$got" = "$w" ] ||
        { REQ="jq '$prog' $file" STATUS="" BODY=$(_jq_file_summary "$file"); fail "${what:+$what: }expected $w, got $got"; }
}

dump_sane() {
    jq_expect "$1" "$JQ_SPANS [spans | select(.base_id != \"$2\" or (.name | IN(\"wsgi\", \"http\", \"db\", \"redis\", \"mongodb\", \"pooling\", \"net\") | not)
        or (is_driver and (.anc | index(\"wsgi\")) == null)) | {name, trace_id, base_id, anc}]" '[]' \
        "spans with another base_id, an unknown name, or a driver span outside any wsgi span"
}

# _jq_file_summary FILE: a dump as one short line per span, else its head.
_jq_file_summary() {
    jq -e 'has("children") and has("stats")' "$1" >/dev/null 2>&1 || { head -c 2000 "$1"; return; }
    printf '(dump, one line per span: name trace_id parent_id start stop service request)\n'
    jq -r "$JQ_SPANS spans | [(\"  \" * .depth) + .name, .trace_id[0:8], .parent_id[0:8],
        (.start.timestamp // \"-\")[11:], (.stop.timestamp // \"-\")[11:], .service,
        ((.start.info.request // {}) | \"\\(.method // \"\") \\(.path // \"\")?\\(.query // \"\")\")] | join(\" \")" "$1" 2>&1 | head -n 60
}
