#!/usr/bin/env bash
# Regenerates testdata/showcase.pcap.zst: the demo's capture, from real
# memcached servers and real clients on loopback.
#
# Three memcached 1.6 servers on their own loopback addresses:
#   127.0.10.1:11211  TCP and UDP (-U), 64 MiB
#   127.0.10.2:22122  8 MiB: the blob:* values overflow it, so it evicts;
#                     on a port of its own, so memtap finds it by protocol
#   127.0.10.3:11211  64 MiB
# and 40 clients (scripts/showcase/drive.py), each from its own source
# address 127.1.0.N, in text, meta, binary and UDP; plus pymemcache and
# libmemcached's memccp/memccat. tcpdump on lo keeps only the servers'
# traffic (other programs on this host may use loopback too).
#
# Usage: scripts/make-showcase.sh [SECONDS]   (default 20)
#        scripts/make-showcase.sh other       testdata/http-not-memcached.pcap:
#            HTTP on loopback, the capture in which memtap finds no server
# Needs root (tcpdump), memcached, tcpdump, zstd, python3-pymemcache,
# libmemcached-tools. The tests assert figures of the shipped file
# (tests/showcase.rs): after regenerating, update them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-20}"
OUT="$ROOT/testdata/showcase.pcap.zst"
WORK="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${1:-}" = other ]; then
    /usr/bin/python3 -m http.server --bind 127.0.10.9 8080 --directory "$WORK" >/dev/null 2>&1 &
    pids+=($!)
    sleep 1
    tcpdump -i lo -s 0 -w "$ROOT/testdata/http-not-memcached.pcap" -U 'host 127.0.10.9' 2>/dev/null &
    tcpdump_pid=$!
    pids+=("$tcpdump_pid")
    sleep 1
    for _ in 1 2 3; do
        /usr/bin/python3 -c 'import urllib.request as u; u.urlopen("http://127.0.10.9:8080/").read()'
    done
    sleep 1
    kill -INT "$tcpdump_pid"
    wait "$tcpdump_pid" || true
    ls -l "$ROOT/testdata/http-not-memcached.pcap" >&2
    exit 0
fi

for cmd in memcached tcpdump zstd memccat; do
    command -v "$cmd" >/dev/null || { echo "make-showcase: needs $cmd" >&2; exit 1; }
done
/usr/bin/python3 -c 'import pymemcache' || { echo "make-showcase: needs python3-pymemcache" >&2; exit 1; }

memcached -u root -l 127.0.10.1 -p 11211 -U 11211 -m 64 -t 2 & pids+=($!)
memcached -u root -l 127.0.10.2 -p 22122 -U 0 -m 8 -t 2 & pids+=($!)
memcached -u root -l 127.0.10.3 -p 11211 -U 0 -m 64 -t 2 & pids+=($!)
sleep 0.5

tcpdump -i lo -s 0 -w "$WORK/showcase.pcap" -U \
    'host 127.0.10.1 or host 127.0.10.2 or host 127.0.10.3' 2>"$WORK/tcpdump.log" &
tcpdump_pid=$!
pids+=("$tcpdump_pid")
sleep 1

/usr/bin/python3 "$ROOT/scripts/showcase/drive.py" "$SECS"

# Let tcpdump write the last packets, then stop it cleanly (SIGINT).
sleep 1
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" || true
cat "$WORK/tcpdump.log" >&2
grep -q '^0 packets dropped by kernel' "$WORK/tcpdump.log" ||
    { echo "make-showcase: tcpdump dropped packets; run again on a quieter machine" >&2; exit 1; }
# After the capture, so not in it: the small server must have evicted.
evictions=$(printf 'stats\r\nquit\r\n' | /usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.10.2", 22122))
s.sendall(sys.stdin.buffer.read())
out = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
for ln in out.decode().splitlines():
    if ln.startswith("STAT evictions "):
        print(ln.split()[2])
')
echo "make-showcase: 127.0.10.2:22122 evicted $evictions items" >&2
[ "${evictions:-0}" -gt 0 ] || { echo "make-showcase: no evictions; raise the blob traffic" >&2; exit 1; }
zstd -q -19 -f "$WORK/showcase.pcap" -o "$OUT"
ls -l "$OUT" >&2
