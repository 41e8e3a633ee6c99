#!/bin/bash
# tests/bench/run.sh - `make bench`: every benchmark, one table per part.
#
# Run by the Makefile inside tests/env/with-services.sh (private redis,
# PostgreSQL and mongo stand-in; LDPROF_BUILD, ZAQARD, LDPROF_TOP set).
# BENCH_QUICK=1 gives a short pass (about a minute) that only proves the
# benchmarks still run: its figures are noisy.  Nothing here asserts a time.
#
# Parts (each a script next to this one, run in this order when present):
#   server.sh     1. zaqard throughput/latency under wrk, five configurations
#                 6. the preload's RSS in zaqard, per thread and total
#   micro.sh      2. pass-through cost per intercepted call
#                 3. per-span cost, 4. header verify + sign
#   collector.sh  5. collector ingest and write rates, peak RSS
# BENCH_ONLY="micro collector" runs a subset.
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${LDPROF_BUILD:?run through make bench}"
parts=${BENCH_ONLY:-"server micro collector"}

echo "== ldprof benchmarks ($( [ "${BENCH_QUICK:-0}" = 1 ] && echo quick || echo full ) pass) $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(uname -srm); $(nproc) cpus: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "compiler: $(${CC:-cc} --version | head -1)"
echo "libs: hiredis $(dpkg-query -W -f='${Version}' libhiredis0.14 2>/dev/null), libpq $(dpkg-query -W -f='${Version}' libpq5 2>/dev/null), libmongoc $(dpkg-query -W -f='${Version}' libmongoc-1.0-0 2>/dev/null), libmicrohttpd $(dpkg-query -W -f='${Version}' libmicrohttpd12 2>/dev/null)"
echo "servers: $(redis-server --version | awk '{print $1, $3}'), $(ls /usr/lib/postgresql 2>/dev/null | sed 's/^/postgresql /' | head -1); wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
rc=0
for p in $parts; do
    s="$here/$p.sh"
    if [ ! -x "$s" ]; then
        echo "-- $p: not present"
        continue
    fi
    echo
    start=$(date +%s)
    "$s" || { echo "!! $p failed (exit $?)"; rc=1; }
    echo "-- $p: $(( $(date +%s) - start )) s"
done
exit $rc
