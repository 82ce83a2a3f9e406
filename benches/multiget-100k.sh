#!/usr/bin/env bash
# Memory and time of one multi-get of 100,000 keys (a client library's
# multi-get API sends them as one `get k1 k2 ...` line of about 1.9 MB):
# a real memcached on loopback holds 30,000 of the keys; the exchange is
# captured with tcpdump, then replayed by memtap, which must count exactly
# 30,000 hits and 70,000 misses for the one command, with no line_too_long.
#
# Usage: benches/multiget-100k.sh [--no-build]   (root: tcpdump on lo)
# Prints wall time, CPU and peak RSS of `memtap replay`, and the same for a
# capture of the same traffic without the big get (the fixed cost).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1
[ "${1:-}" = --no-build ] && BUILD=0
log() { printf '[multiget-100k] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
BIN="$ROOT/target/release/memtap"
if [ "$BUILD" = 1 ]; then (cd "$ROOT" && cargo build --release --quiet --bin memtap); fi
# shellcheck source=benches/loopback.sh
. "$ROOT/benches/loopback.sh"
loopback_start mg
python3 -c "$loopback_client"'
line = b"get " + b" ".join(b"user:%d:profile" % i for i in range(100_000)) + b"\r\n"
s.sendall(line)
got = bytearray()
while not got.endswith(b"END\r\n"):
    got += s.recv(1 << 20)
assert got.count(b"VALUE ") == 30_000, got.count(b"VALUE ")
print(f"get line: {len(line)} bytes, reply: {len(got)} bytes", file=sys.stderr)
' "$PORT"
loopback_stop
/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
    "$BIN" replay --quiet --target "127.0.0.1:$PORT" --format json "$LOOPBACK_PCAP" >"$WORK/report.json"
read -r WALL USR SYS RSS <"$WORK/time"
python3 - "$WORK/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cmds = {c["command"]: c for c in r["commands"] if c["proto"] == "text"}
get = cmds["get"]
res = r["results"]
print(f"get: {get['count']} command, {get['requests']} key-requests; "
      f"hits {res.get('hit', 0)}, misses {res.get('miss', 0)}, lost {res.get('lost', 0)}")
h = r["health"]
assert get["count"] == 1 and get["requests"] == 100_000, get
assert res.get("hit") == 30_000 and res.get("miss") == 70_000, res
assert h.get("line_too_long", 0) == 0 and h.get("long_multigets") == 1, h
PY
echo "memtap replay: ${WALL} s wall, $(echo "$USR + $SYS" | bc) s CPU, peak RSS $((RSS / 1024)) MiB"
