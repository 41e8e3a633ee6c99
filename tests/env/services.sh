#!/usr/bin/env bash
# services.sh - start and stop the real servers the tests use, privately.
#
#   tests/env/services.sh start DIR [redis] [postgres] [mongo]   (default: all three)
#   tests/env/services.sh stop DIR
#
# Every server binds 127.0.0.1 on a free port and keeps its data under DIR, so
# two test runs side by side never collide.  `start` waits for each server
# with a bounded readiness check and writes DIR/env, a file of shell
# assignments to source:
#
#   LDPROF_TEST_REDIS_URI=redis://127.0.0.1:PORT/0   LDPROF_TEST_REDIS_PORT=PORT
#   LDPROF_TEST_PG_CONNINFO='host=127.0.0.1 port=PORT dbname=ldprof user=ldprof'
#   LDPROF_TEST_MONGO_URI=mongodb://127.0.0.1:PORT/
#
# If LDPROF_TEST_MONGO_URI is already set (a real mongod), the stand-in is not
# started and that URI is passed on.  `stop` stops what `start` started, by
# pid, and removes DIR.  PostgreSQL refuses to run as root: as root it runs as
# the `postgres` user (created by Debian's postgresql package).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
PYTHON=${LDPROF_PYTHON:-/usr/bin/python3}
PGBIN=${LDPROF_PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s, bounded.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "$what not ready after ${secs}s"
    return 1
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_redis() {
    local dir=$1/redis port try
    command -v redis-server >/dev/null || die "redis-server not installed (run: make deps)"
    mkdir -p "$dir"
    for try in 1 2 3 4 5; do
        port=$(free_port)
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --dir "$dir" --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
        echo $! >"$dir/pid"
        if wait_for 10 "redis on port $port" redis-cli -h 127.0.0.1 -p "$port" ping; then
            printf 'LDPROF_TEST_REDIS_URI=redis://127.0.0.1:%s/0\nLDPROF_TEST_REDIS_PORT=%s\n' \
                "$port" "$port" >>"$1/env"
            log "redis-server pid $(cat "$dir/pid") on 127.0.0.1:$port"
            return 0
        fi
        kill "$(cat "$dir/pid")" 2>/dev/null
        log "redis attempt $try failed; $(tail -n 2 "$dir/redis.log" 2>/dev/null)"
    done
    die "could not start redis-server"
}

# Run a PostgreSQL program as the unprivileged cluster owner.
pg_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PGUSER_OS" -- "$@"
    else
        "$@"
    fi
}

start_postgres() {
    local dir port try
    [ -x "$PGBIN/initdb" ] || die "PostgreSQL server not installed (run: make deps)"
    PGUSER_OS=$(id -un)
    if [ "$(id -u)" = 0 ]; then
        PGUSER_OS=${LDPROF_PG_OS_USER:-postgres}
        id "$PGUSER_OS" >/dev/null 2>&1 || die "user $PGUSER_OS missing: PostgreSQL cannot run as root"
    fi
    # The cluster lives outside DIR's private mode: a directory the owner can reach.
    dir=$(mktemp -d "${TMPDIR:-/tmp}/ldprof-pg.XXXXXX") || die "mktemp failed"
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$dir"
    echo "$dir" >"$1/pgdir"
    pg_as "$PGBIN/initdb" -D "$dir/data" -U ldprof --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    for try in 1 2 3 4 5; do
        port=$(free_port)
        pg_as "$PGBIN/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 -p "$port" \
            -c unix_socket_directories="$dir" -c fsync=off -c full_page_writes=off \
            -c synchronous_commit=off -c max_connections=200 >"$dir/postgres.log" 2>&1 &
        echo $! >"$1/pgpid"
        if wait_for 20 "postgres on port $port" "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U ldprof ldprof || die "createdb failed"
            printf "LDPROF_TEST_PG_CONNINFO='host=127.0.0.1 port=%s dbname=ldprof user=ldprof'\nLDPROF_TEST_PG_PORT=%s\n" \
                "$port" "$port" >>"$1/env"
            log "postgres pid $(cat "$1/pgpid") on 127.0.0.1:$port (cluster $dir, run as $PGUSER_OS)"
            return 0
        fi
        kill "$(cat "$1/pgpid")" 2>/dev/null
        log "postgres attempt $try failed; $(tail -n 3 "$dir/postgres.log" 2>/dev/null)"
        sleep 0.5
    done
    die "could not start postgres"
}

start_mongo() {
    local dir=$1/mongo port
    if [ -n "${LDPROF_TEST_MONGO_URI:-}" ]; then
        printf 'LDPROF_TEST_MONGO_URI=%s\n' "$LDPROF_TEST_MONGO_URI" >>"$1/env"
        log "using the MongoDB at \$LDPROF_TEST_MONGO_URI"
        return 0
    fi
    mkdir -p "$dir"
    "$PYTHON" "$top/tests/mongo-standin/standin.py" --host 127.0.0.1 --port 0 \
        --port-file "$dir/port" >"$dir/standin.log" 2>&1 &
    echo $! >"$dir/pid"
    wait_for 20 "mongo stand-in" test -s "$dir/port" || { cat "$dir/standin.log" >&2; die "mongo stand-in did not start"; }
    port=$(cat "$dir/port")
    wait_for 10 "mongo stand-in on port $port" tcp_open "$port" || die "mongo stand-in not accepting"
    printf 'LDPROF_TEST_MONGO_URI=mongodb://127.0.0.1:%s/\nLDPROF_TEST_MONGO_PORT=%s\n' "$port" "$port" >>"$1/env"
    log "mongo stand-in pid $(cat "$dir/pid") on 127.0.0.1:$port"
}

# stop_pid PIDFILE NAME: TERM, bounded wait, then KILL.
stop_pid() {
    local pidfile=$1 name=$2 pid i
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for 10s, killing"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [redis] [postgres] [mongo]" >&2; exit 2; }

case $cmd in
start)
    shift 2
    want=${*:-redis postgres mongo}
    mkdir -p "$dir" && chmod 700 "$dir"
    : >"$dir/env"
    for s in $want; do
        case $s in
        redis) start_redis "$dir" ;;
        postgres) start_postgres "$dir" ;;
        mongo) start_mongo "$dir" ;;
        *) die "unknown service '$s' (redis, postgres, mongo)" ;;
        esac
    done
    ;;
stop)
    [ -d "$dir" ] || exit 0
    stop_pid "$dir/redis/pid" redis-server
    stop_pid "$dir/mongo/pid" mongo-standin
    # SIGTERM to the postmaster is PostgreSQL's "smart" shutdown, which waits
    # for clients; SIGINT is "fast" shutdown.
    if [ -s "$dir/pgpid" ]; then
        kill -INT "$(cat "$dir/pgpid")" 2>/dev/null
        stop_pid "$dir/pgpid" postgres
    fi
    if [ -s "$dir/pgdir" ]; then
        rm -rf "$(cat "$dir/pgdir")"
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR [redis] [postgres] [mongo]" >&2
    exit 2
    ;;
esac
