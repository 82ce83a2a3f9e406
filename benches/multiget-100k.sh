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
for t in memcached tcpdump /usr/bin/time python3; do
    command -v "$t" >/dev/null || die "$t missing (bash scripts/setup.sh)"
done
BIN="$ROOT/target/release/memtap"
if [ "$BUILD" = 1 ]; then (cd "$ROOT" && cargo build --release --quiet --bin memtap); fi
WORK="$(mktemp -d)"
PORT=$((23000 + RANDOM % 1000))
cleanup() { kill "${TCPDUMP:-}" "${MC:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
memcached -u nobody -l 127.0.0.1 -p "$PORT" -m 256 &
MC=$!
tcpdump -i lo -U -B 65536 -s 0 -w "$WORK/mg.pcap" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
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
buf = b"".join(b"set user:%d:profile 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100)
               for i in range(0, 100_000) if i % 10 < 3)
s.sendall(buf + b"mn\r\n")
got = b""
while not got.endswith(b"MN\r\n"):
    got += s.recv(65536)
s.close()
s = conn()
line = b"get " + b" ".join(b"user:%d:profile" % i for i in range(100_000)) + b"\r\n"
s.sendall(line)
got = bytearray()
while not got.endswith(b"END\r\n"):
    got += s.recv(1 << 20)
assert got.count(b"VALUE ") == 30_000, got.count(b"VALUE ")
s.close()
print(f"get line: {len(line)} bytes, reply: {len(got)} bytes", file=sys.stderr)
PY
sleep 1
kill -INT "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null || true
grep -q "^0 packets dropped by kernel" "$WORK/tcpdump.err" || die "tcpdump dropped packets: $(cat "$WORK/tcpdump.err")"
/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
    "$BIN" replay --quiet --target "127.0.0.1:$PORT" --format json "$WORK/mg.pcap" >"$WORK/report.json"
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
