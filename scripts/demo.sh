#!/usr/bin/env bash
# memtap's main job on a shipped sample: the report (hot keys, hot clients,
# commands, servers, distributions, health) of a real memcached session
# captured on loopback (text protocol over TCP, server port 21211).
# Extra arguments go to `memtap replay`, e.g. `scripts/demo.sh --format json`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
exec ./target/release/memtap replay --target '*:21211' "$@" testdata/pcaps/text_tcp/capture.pcap
