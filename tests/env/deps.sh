#!/usr/bin/env bash
# deps.sh - install the Debian packages ldprof needs to build, test and demo,
# only those missing.  Runs `apt-get update` first when the package lists are
# missing or an install fails for want of them.  Needs root or sudo; without
# either it prints what to install and fails.
set -u

PKGS=(
    # build
    make gcc pkg-config
    # the preload and the collector
    libssl-dev libhttp-parser-dev libinih-dev libjansson-dev
    # zaqard, the target server, and the driver tests
    libmicrohttpd-dev libmongoc-dev libbson-dev libhiredis-dev libpq-dev
    # tests
    libcriterion-dev redis-server redis-tools postgresql postgresql-client
    python3 python3-mockupdb python3-osprofiler python3-redis curl jq procps graphviz
    # the HTML export test (headless browser)
    chromium
    # benchmarks (make bench)
    wrk valgrind
)

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
    [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "deps: these Debian packages are missing: ${missing[*]}" >&2
        echo "deps: run 'make deps' as root (or with passwordless sudo), or install them yourself:" >&2
        echo "      apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() { $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; }
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
    $SUDO apt-get update -q || exit 1
fi
if ! apt_install; then
    echo "deps: install failed; refreshing package lists and retrying" >&2
    $SUDO apt-get update -q && apt_install || { echo "deps: apt-get install failed" >&2; exit 1; }
fi
