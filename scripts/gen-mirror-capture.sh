#!/usr/bin/env bash
# Generate a larger capture for the mirror-port tests (tests/mirror_order.rs)
# from real traffic on loopback, in well under a minute.
#
# A real memcached on 127.0.0.1 (TCP and, with -U, UDP on the same port; -I
# 2m so 1 MiB values fit), tcpdump on lo, and scripts/mirror-load.py: text,
# meta and binary clients over TCP and text gets over UDP, each from its own
# 127.0.0.N address, Zipf-popular keys, values of a few bytes up to 1 MiB,
# half of the batches pipelined.
#
# Usage: scripts/gen-mirror-capture.sh OUTDIR [--requests N] [--seed N]
# Writes OUTDIR/capture.pcap and OUTDIR/summary.json (server port, load
# summary, tcpdump counters). Exit status 77: a prerequisite is missing (not
# root, or no memcached/tcpdump/python3): callers skip. Only 127.0.0.0/8 is
# used. Env: MIRROR_BASE_PORT (default 23211), first port tried.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR=""
REQUESTS=8000
SEED=1
BASE_PORT="${MIRROR_BASE_PORT:-23211}"

log() { printf '[gen-mirror-capture] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
skip() { log "SKIP: $*"; exit 77; }

while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) OUTDIR="$1"; shift ;;
    esac
done
[ -n "$OUTDIR" ] || die "usage: $0 OUTDIR [--requests N] [--seed N]"
[ "$(id -u)" = 0 ] || skip "tcpdump on lo needs root"
for t in memcached tcpdump python3; do
    command -v "$t" >/dev/null || skip "$t is not installed"
done
mkdir -p "$OUTDIR"

MC_PID="" TD_PID=""
cleanup() {
    [ -z "$TD_PID" ] || { kill -INT "$TD_PID" 2>/dev/null || true; wait "$TD_PID" 2>/dev/null || true; }
    [ -z "$MC_PID" ] || { kill -TERM "$MC_PID" 2>/dev/null || true; wait "$MC_PID" 2>/dev/null || true; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 - "$BASE_PORT" <<'EOF'
import socket, sys
p = int(sys.argv[1])
while p < 65000:
    ok = True
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
    p += 1
EOF
)"
[ -n "$PORT" ] || die "no free port"

USER_ARGS=(-u nobody)
if id memcache >/dev/null 2>&1; then USER_ARGS=(-u memcache); fi
memcached "${USER_ARGS[@]}" -l 127.0.0.1 -p "$PORT" -U "$PORT" -m 512 -I 2m -c 1024 -t 2 \
    >"$OUTDIR/memcached.log" 2>&1 &
MC_PID=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2).close()" 2>/dev/null && break
    sleep 0.05
done

# --immediate-mode: otherwise the last TPACKET_V3 block of a short run is
# lost at SIGINT (see make-fixtures.sh); -B: room for 1 MiB values sent as
# 64 KiB super-segments.
rm -f "$OUTDIR/capture.pcap"
tcpdump -i lo --immediate-mode -B 262144 -s 262144 -Z root -U -w "$OUTDIR/capture.pcap" "port $PORT" \
    2>"$OUTDIR/tcpdump.err" &
TD_PID=$!
for _ in $(seq 200); do
    grep -q "listening on" "$OUTDIR/tcpdump.err" 2>/dev/null && break
    kill -0 "$TD_PID" 2>/dev/null || die "tcpdump exited: $(cat "$OUTDIR/tcpdump.err")"
    sleep 0.05
done
grep -q "listening on" "$OUTDIR/tcpdump.err" || die "tcpdump not listening"
sleep 0.2

T0=$(date +%s.%N)
python3 "$ROOT/scripts/mirror-load.py" --port "$PORT" --requests "$REQUESTS" --seed "$SEED" \
    >"$OUTDIR/load.json" || die "load failed"
sleep 1 # the last FIN/ACKs
kill -INT "$TD_PID"
wait "$TD_PID" || true
TD_PID=""
kill -TERM "$MC_PID"; wait "$MC_PID" 2>/dev/null || true; MC_PID=""
T1=$(date +%s.%N)

dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$OUTDIR/tcpdump.err")
captured=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$OUTDIR/tcpdump.err")
[ "${dropped:-x}" = 0 ] || die "tcpdump dropped packets: $(cat "$OUTDIR/tcpdump.err")"
python3 - "$OUTDIR" "$PORT" "${captured:-0}" "$T0" "$T1" <<'EOF'
import json, os, sys
out, port, captured, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
d = json.load(open(os.path.join(out, "load.json")))
d.update(port=port, packets=captured, pcap_bytes=os.path.getsize(os.path.join(out, "capture.pcap")),
         seconds_total=round(t1 - t0, 2))
json.dump(d, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(d))
EOF
rm -f "$OUTDIR/load.json" "$OUTDIR/memcached.log" "$OUTDIR/tcpdump.err"
