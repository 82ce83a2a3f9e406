#!/usr/bin/env bash
# memtap's main job on a shipped sample: every key-request of a real
# memcached session (text protocol over TCP), one JSON line each.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
exec ./target/release/memtap dump "${@:-testdata/pcaps/text_tcp/capture.pcap}"
