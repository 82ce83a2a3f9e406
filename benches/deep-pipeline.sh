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
for t in memcached tcpdump /usr/bin/time python3; do
    command -v "$t" >/dev/null || die "$t missing (bash scripts/setup.sh)"
done
BIN="${BIN:-$ROOT/target/release/memtap}"
if [ "$BUILD" = 1 ] && [ "$BIN" = "$ROOT/target/release/memtap" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin memtap)
fi
WORK="$(mktemp -d)"
PORT=$((24000 + RANDOM % 1000))
cleanup() { kill "${TCPDUMP:-}" "${MC:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
memcached -u nobody -l 127.0.0.1 -p "$PORT" -m 256 &
MC=$!
tcpdump -i lo -U -B 65536 -s 0 -w "$WORK/pipe.pcap" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
TCPDUMP=$!
sleep 1
python3 - "$PORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
def conn():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
s = conn()
s.sendall(b"".join(b"set user:%d:profile 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100)
                   for i in range(100_000) if i % 10 < 3) + b"mn\r\n")
got = b""
while not got.endswith(b"MN\r\n"):
    got += s.recv(65536)
s.close()
s = conn()
s.sendall(b"".join(b"get user:%d:profile\r\n" % i for i in range(100_000)))
got = bytearray()
while got.count(b"END\r\n") < 100_000:
    got += s.recv(1 << 20)
assert got.count(b"VALUE ") == 30_000, got.count(b"VALUE ")
s.close()
PY
sleep 1
kill -INT "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true
grep -q "^0 packets dropped by kernel" "$WORK/tcpdump.err" || die "tcpdump dropped packets: $(cat "$WORK/tcpdump.err")"
for i in $(seq "$RUNS"); do
    /usr/bin/time -f '%e %U %S %M' -a -o "$WORK/times" \
        "$BIN" replay --quiet --target "127.0.0.1:$PORT" --format json "$WORK/pipe.pcap" >"$WORK/report.json"
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
