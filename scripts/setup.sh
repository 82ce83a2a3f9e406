#!/usr/bin/env bash
# Installs what memtap's build and tests need on a fresh Debian machine with
# Rust, skipping what is already there. Safe to run repeatedly.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Build: the zstd crate compiles libzstd with cc; pkg-config for -sys crates.
have_cmd cc || need+=(gcc)
have_cmd pkg-config || need+=(pkg-config)
# Tests: tshark cross-checks the public captures; tcpdump/memcached let the
# fixture script run (scripts/make-fixtures.sh).
have_cmd tshark || need+=(tshark)
have_cmd tcpdump || need+=(tcpdump)
have_cmd memcached || need+=(memcached)
have_pkg libpcap-dev || need+=(libpcap-dev)
# Store tests: a real PostgreSQL (the tests run initdb/pg_ctl from
# /usr/lib/postgresql/*/bin as the postgres user on a temporary directory)
# and headless Chromium for the history web page.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
have_cmd chromium || need+=(chromium)

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
