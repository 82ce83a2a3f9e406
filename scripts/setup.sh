#!/usr/bin/env bash
# Installs what memtap's build and tests need on a fresh Debian machine with
# Rust, skipping what is already there. Safe to run repeatedly.
#
# Usage: scripts/setup.sh         the build and everything the tests use
#        scripts/setup.sh build   the build only (scripts/demo.sh)
set -euo pipefail
mode="${1:-all}"

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Build: the zstd crate compiles libzstd with cc; pkg-config for -sys crates.
have_cmd cc || need+=(gcc)
have_cmd pkg-config || need+=(pkg-config)
have_pkg libpcap-dev || need+=(libpcap-dev)

if [ "$mode" != build ]; then
    # Tests: tshark cross-checks the public captures; tcpdump/memcached let the
    # fixture script run (scripts/make-fixtures.sh).
    have_cmd tshark || need+=(tshark)
    have_cmd tcpdump || need+=(tcpdump)
    have_cmd memcached || need+=(memcached)
    # Live-capture tests (tests/live_sources.rs, as root): veth pairs and tun
    # devices with `ip`, an unprivileged helper run with `setpriv`.
    # The coverage-guided fuzz smoke of .ci/run: libfuzzer-sys compiles
    # libFuzzer (C++).
    have_cmd c++ || need+=(g++)
    have_cmd ip || need+=(iproute2)
    have_cmd setpriv || need+=(util-linux)
    # Metrics and deploy/ tests: promtool (check metrics/rules/config) and the
    # server (tests/prometheus_scrape.rs scrapes memtap with it) come with the
    # prometheus package; the strict OpenMetrics parser with the Python
    # client (used through /usr/bin/python3, scripts/check-openmetrics.py).
    # systemd-analyze (package systemd) is optional: tests/deploy.rs skips it.
    { have_cmd promtool && [ -x /usr/bin/prometheus ]; } || need+=(prometheus)
    have_pkg python3-prometheus-client || need+=(python3-prometheus-client)
    # Live-capture end-to-end tests: tcpreplay onto a veth pair.
    have_cmd tcpreplay || need+=(tcpreplay)
    # Store tests: a real PostgreSQL (the tests run initdb/pg_ctl from
    # /usr/lib/postgresql/*/bin as the postgres user on a temporary directory)
    # and headless Chromium for the history web page.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
    have_cmd chromium || need+=(chromium)
    # `memtap top` runs in a real terminal under tmux (tests/top.rs).
    have_cmd tmux || need+=(tmux)
    # The servers' own counters as the test (tests/servers_counters.rs): real
    # client code against real memcached — libmemcached (a C program the test
    # compiles with cc -lmemcached), pymemcache (/usr/bin/python3) — and
    # twemproxy (nutcracker, in /usr/sbin) in front of the servers.
    have_pkg libmemcached-dev || need+=(libmemcached-dev)
    have_pkg python3-pymemcache || need+=(python3-pymemcache)
    { have_cmd nutcracker || [ -x /usr/sbin/nutcracker ]; } || need+=(nutcracker)
fi

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # Another apt (unattended upgrades on a fresh machine) may hold the
    # lock: wait for it rather than fail.
    apt=(apt-get -o DPkg::Lock::Timeout=600)
    $SUDO "${apt[@]}" update -qq
    $SUDO "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The coverage-guided fuzz smoke of .ci/run (fuzz/, libFuzzer) needs
# cargo-fuzz, and runs only where the nightly toolchain is installed.
if rustup toolchain list 2>/dev/null | grep -q '^nightly' &&
    ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --quiet
fi
