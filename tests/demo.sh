#!/usr/bin/env bash
# demo.sh - what `make demo` runs (after installing packages and building).
#
# 1. starts private redis-server and PostgreSQL servers (tests/env),
# 2. starts ldprof-collectord on a private socket and trace directory,
# 3. starts tests/zaqard, an unmodified Zaqar-like server, under libldprof.so,
# 4. runs a short scripted session (create a queue, post, list, claim, stats)
#    as a traced client: curl under `ldprof run --profile KEY`, which adds
#    signed X-Trace-Info/X-Trace-HMAC headers to every request,
# 5. prints the trace tree and where its JSON dump is,
# 6. stops everything it started (also on failure or Ctrl-C).
#
# DEMO_KEEP=1 keeps the trace directory (its path is printed).
set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LDPROF_BUILD:-$top/build}
LDPROF=$build/collector/ldprof
COLLECTORD=$build/collector/ldprof-collectord
LIB=$build/libldprof.so
ZAQARD=${ZAQARD:-$build/tests/zaqard/zaqard}
KEY=demo-secret

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for f in "$LDPROF" "$COLLECTORD" "$LIB" "$ZAQARD"; do
    [ -x "$f" ] || [ -f "$f" ] || die "$f is missing: run 'make' first"
done

# Re-run ourselves inside the private servers (they stop when we exit).
if [ -z "${LDPROF_TEST_PG_CONNINFO:-}" ]; then
    say "starting private redis-server and PostgreSQL on 127.0.0.1"
    exec "$top/tests/env/with-services.sh" --only "redis postgres" "$0" "$@"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ldprof-demo.XXXXXX") || exit 1
chmod 700 "$work"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "demo: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sock=$work/collector.sock
dir=$work/traces

say "starting ldprof-collectord (socket $sock, dumps in $dir)"
"$COLLECTORD" --socket "$sock" --dir "$dir" --idle-ms 300 \
    --ready-file "$work/collectord.ready" --log "$work/collectord.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/collectord.ready" ] && break; sleep 0.1; done
[ -s "$work/collectord.ready" ] || die "the collector did not start: $(cat "$work/collectord.log")"

say "starting zaqard under LD_PRELOAD=$LIB (service zaqar-api, key $KEY)"
echo "   zaqard itself is unmodified: it neither links nor knows ldprof."
LD_PRELOAD=$LIB LDPROF_COLLECTOR=$sock LDPROF_HMAC_KEYS=$KEY \
    LDPROF_SERVICE=zaqar-api LDPROF_PROJECT=zaqar \
    "$ZAQARD" --listen 127.0.0.1:0 --port-file "$work/zaqard.port" \
    --catalog "$LDPROF_TEST_PG_CONNINFO" --pool "redis1=$LDPROF_TEST_REDIS_URI" \
    --threads 2 --log-level warn 2>"$work/zaqard.log" &
zpid=$!
pids+=($zpid)
for _ in $(seq 100); do [ -s "$work/zaqard.port" ] && break; sleep 0.1; done
[ -s "$work/zaqard.port" ] || die "zaqard did not start: $(cat "$work/zaqard.log")"
url=http://127.0.0.1:$(cat "$work/zaqard.port")

say "a traced client session: ldprof run --profile $KEY -- bash session.sh"
cat >"$work/session.sh" <<EOF
set -e
c="-s -o /dev/null -w %{http_code} -H Client-ID:3381af92-2b9e-11e3-b191-71861300734c -H X-Project-ID:demo"
echo "   PUT  /v2/queues/demo                 -> \$(curl \$c -X PUT $url/v2/queues/demo)"
echo "   POST /v2/queues/demo/messages        -> \$(curl \$c -X POST -H 'Content-Type: application/json' \
    -d '{"messages": [{"ttl": 300, "body": {"event": "BackupStarted"}}, {"ttl": 60, "body": "hello"}]}' \
    $url/v2/queues/demo/messages)"
echo "   GET  /v2/queues/demo/messages?echo=true -> \$(curl \$c "$url/v2/queues/demo/messages?echo=true")"
echo "   POST /v2/queues/demo/claims?limit=1  -> \$(curl \$c -X POST -d '{"ttl": 60, "grace": 60}' "$url/v2/queues/demo/claims?limit=1")"
echo "   GET  /v2/queues/demo/stats           -> \$(curl \$c $url/v2/queues/demo/stats)"
EOF
"$LDPROF" run --profile "$KEY" --collector "$sock" --lib "$LIB" -- bash "$work/session.sh" \
    2>"$work/client.err"
rc=$?
cat "$work/client.err"
[ $rc = 0 ] || die "the client session failed (exit $rc)"
trace_id=$(sed -n 's/^Trace ID: *//p' "$work/client.err" | tail -n 1)
[ -n "$trace_id" ] || die "the client printed no trace id"

# Stopping the server flushes its spans; the collector writes the trace once
# it has been idle for 300 ms.
kill -TERM "$zpid"
wait "$zpid" 2>/dev/null
for _ in $(seq 100); do [ -s "$dir/$trace_id.json" ] && break; sleep 0.1; done
[ -s "$dir/$trace_id.json" ] || die "no dump for $trace_id in $dir (collector log: $(cat "$work/collectord.log"))"
sleep 0.5 # let a late server span rewrite the dump

say "ldprof trace list --dir $dir"
"$LDPROF" trace list --dir "$dir"
say "ldprof trace show $trace_id"
"$LDPROF" trace show --dir "$dir" "$trace_id"
say "the JSON dump (the shape of 'osprofiler trace show --json')"
echo "   $dir/$trace_id.json ($(wc -c <"$dir/$trace_id.json") bytes)"
[ "${DEMO_KEEP:-0}" = 1 ] || echo "   (removed at exit; DEMO_KEEP=1 make demo keeps it)"
say "done: on your own server, see docs/quickstart.md"
