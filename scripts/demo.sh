#!/usr/bin/env bash
# What memtap is for, on a shipped capture: the report of 20 seconds of three
# real memcached servers (one evicting, one on a port of its own) and 40 real
# clients in text, meta, binary and UDP (testdata/showcase.pcap.zst, made by
# scripts/make-showcase.sh). No --target: memtap finds the servers itself.
# Extra arguments go to `memtap replay`, e.g. `scripts/demo.sh --format json`.
#
# Installs only what the build needs (a C compiler, pkg-config, libpcap);
# builds the release profile, the one `scripts/test.sh` then reuses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
if [ ! -x target/release/memtap ]; then
    echo "demo: building memtap (release profile, shared with the tests; the first build takes a few minutes)" >&2
fi
cargo build --release
bin=target/release/memtap
capture=testdata/showcase.pcap.zst
# Ten rows a table keep the report to a few screens.
if [ $# -eq 0 ]; then set -- --top 10; fi
"$bin" replay "$@" "$capture"
if [ -t 1 ]; then
    db="${TMPDIR:-/tmp}/memtap-showcase.db"
    cat <<MSG

The same capture, live in a terminal (q quits, ? for keys):
  $bin top --speed 2 $capture
On a web page (history of 5-second intervals, then open http://127.0.0.1:8091/):
  rm -f $db && $bin replay -q --window 5s --store sqlite:$db $capture >/dev/null && $bin serve --store sqlite:$db
MSG
fi
