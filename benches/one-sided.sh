#!/usr/bin/env bash
# One TCP connection of N text gets and no server data (a capture that sees
# one direction, or a dead server): time and peak RSS of `memtap replay`.
# The pending queue must shed by overflow in O(1) per request.
#
# Usage: benches/one-sided.sh [N ...]      default: 64000 128000 1000000
#   env NO_BUILD=1 skips the release build; TIMEOUT (s, default 300) per run;
#   BIN=path runs another memtap binary (e.g. an older build to compare).
# Writes bench-out/one-sided-N.pcap and prints one line per N.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ "${NO_BUILD:-}" = 1 ] || cargo build --release --quiet
mkdir -p bench-out
[ $# -gt 0 ] || set -- 64000 128000 1000000
printf '%-9s %10s %12s %10s %16s\n' requests wall_s peak_rss_kb lost pending_overflow
for n in "$@"; do
    pcap="bench-out/one-sided-$n.pcap"
    [ -s "$pcap" ] || python3 scripts/bench/gen_one_sided.py "$pcap" "$n"
    rc=0
    /usr/bin/time -v -o bench-out/one-sided.time timeout "${TIMEOUT:-300}" \
        "${BIN:-target/release/memtap}" replay --target '*:11211' --format json "$pcap" \
        >bench-out/one-sided.json 2>/dev/null || rc=$?
    wall=$(awk -F': ' '/Elapsed/ {print $2}' bench-out/one-sided.time)
    rss=$(awk -F': ' '/Maximum resident/ {print $2}' bench-out/one-sided.time)
    if [ "$rc" = 0 ]; then
        read -r lost over < <(python3 -c 'import json,sys; h=json.load(open(sys.argv[1]))["health"]; print(h["lost_requests"], h["pending_overflow"])' bench-out/one-sided.json)
    else
        lost="(rc $rc)"; over="-"
    fi
    printf '%-9s %10s %12s %10s %16s\n' "$n" "$wall" "$rss" "$lost" "$over"
done
