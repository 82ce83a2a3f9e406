#!/usr/bin/env bash
# Time of a pipeline 100,000 requests deep, as a proxy or a batching
# client sends it: one connection, 100,000 `get user:N:profile` commands
# written at once (the kernel cuts them into 64 KiB loopback segments, so
# one segment of answers holds about 13,000 `END`s). A real memcached on
# loopback holds 30,000 of the keys; the exchange is captured with
# tcpdump, then replayed by memtap, which must count exactly 100,000 get
# commands, 30,000 hits and 70,000 misses, and no orphan.
#
# Usage: benches/deep-pipeline.sh [--no-build]   (root: tcpdump on lo)
# Env: BIN (default target/release/memtap), RUNS (default 5).
# Prints the median wall time, CPU and peak RSS of `memtap replay`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1
[ "${1:-}" = --no-build ] && BUILD=0
RUNS="${RUNS:-5}"
log() { printf '[deep-pipeline] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
BIN="${BIN:-$ROOT/target/release/memtap}"
if [ "$BUILD" = 1 ] && [ "$BIN" = "$ROOT/target/release/memtap" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin memtap)
fi
# shellcheck source=benches/loopback.sh
. "$ROOT/benches/loopback.sh"
loopback_start pipe
python3 -c "$loopback_client"'
s.sendall(b"".join(b"get user:%d:profile\r\n" % i for i in range(100_000)))
got = bytearray()
while got.count(b"END\r\n") < 100_000:
    got += s.recv(1 << 20)
assert got.count(b"VALUE ") == 30_000, got.count(b"VALUE ")
' "$PORT"
loopback_stop
for i in $(seq "$RUNS"); do
    /usr/bin/time -f '%e %U %S %M' -a -o "$WORK/times" \
        "$BIN" replay --quiet --target "127.0.0.1:$PORT" --format json "$LOOPBACK_PCAP" >"$WORK/report.json"
done
python3 - "$WORK/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
get = next(c for c in r["commands"] if c["proto"] == "text" and c["command"] == "get")
res, h = r["results"], r["health"]
print(f"get: {get['count']} commands; hits {res.get('hit', 0)}, misses {res.get('miss', 0)}, "
      f"orphan responses {h.get('orphan_responses', 0)}")
assert get["count"] == 100_000, get
assert res.get("hit") == 30_000 and res.get("miss") == 70_000, res
assert h.get("orphan_responses", 0) == 0, h
PY
sort -n "$WORK/times" | awk -v runs="$RUNS" 'NR == int((runs + 1) / 2) {
    printf "memtap replay (median of %d): %s s wall, %.2f s CPU, peak RSS %d MiB\n", runs, $1, $2 + $3, $4 / 1024 }'
