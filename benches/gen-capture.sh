#!/usr/bin/env bash
# Generate a large memcached capture from real traffic on loopback.
#
# A real memcached on 127.0.0.1, tcpdump on lo, and several concurrent
# pymemcache client processes (scripts/bench/gen_capture_load.py): a warm-up
# that writes every key once, then mostly Zipf-popular gets, some sets, some
# multi-gets. Afterwards capinfos must report at least the target packet
# count, and tcpdump's drop counters are printed.
#
# Usage: benches/gen-capture.sh [OUT.pcap] [--keys N] [--packets N] [--procs N]
#                               [--conns-per-proc N] [--seed N]
#                               [--value-bytes MIN-MAX]
#   OUT.pcap     default bench-out/big.pcap (bench-out/ is git-ignored)
#   --keys N     distinct keys written in the warm-up (default 200000;
#                env KEYS). --keys 2000000 gives the 10x-keys variant.
#   --packets N  packets to reach at least (default 1000000; env PACKETS)
#   --procs N    client processes (default 4; env PROCS)
#   --value-bytes MIN-MAX  size of most values (default 16-256, 2% are
#                1-4 KiB; env VALUE_BYTES). 1024-2048 gives the
#                large-values variant (about 1 KB a packet).
# Writes OUT.pcap and OUT.pcap.json (driver summary + capture counters).
# Only 127.0.0.1 is used. Needs root (or CAP_NET_RAW) for tcpdump.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRIVER="$ROOT/scripts/bench/gen_capture_load.py"
OUT="$ROOT/bench-out/big.pcap"
KEYS="${KEYS:-200000}"
PACKETS="${PACKETS:-1000000}"
PROCS="${PROCS:-4}"
CONNS_PER_PROC="${CONNS_PER_PROC:-2}"
SEED="${SEED:-1}"
VALUE_BYTES="${VALUE_BYTES:-16-256}"
BASE_PORT="${BENCH_BASE_PORT:-22211}"

log() { printf '[gen-capture] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --keys) KEYS="$2"; shift 2 ;;
        --keys=*) KEYS="${1#*=}"; shift ;;
        --packets) PACKETS="$2"; shift 2 ;;
        --packets=*) PACKETS="${1#*=}"; shift ;;
        --procs) PROCS="$2"; shift 2 ;;
        --procs=*) PROCS="${1#*=}"; shift ;;
        --conns-per-proc) CONNS_PER_PROC="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --value-bytes) VALUE_BYTES="$2"; shift 2 ;;
        --value-bytes=*) VALUE_BYTES="${1#*=}"; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) OUT="$1"; shift ;;
    esac
done
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

# ------------------------------------------------------------ dependencies
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
command -v memcached >/dev/null || missing+=(memcached)
command -v tcpdump >/dev/null || missing+=(tcpdump)
command -v capinfos >/dev/null || missing+=(wireshark-common)
/usr/bin/python3 -c 'import pymemcache' 2>/dev/null || missing+=(python3-pymemcache)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
        { $SUDO apt-get update -q >/dev/null &&
          $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

# ------------------------------------------------------------ processes
MC_PID="" TD_PID=""
WORK="$(mktemp -d)"
cleanup() {
    [ -z "$TD_PID" ] || { kill -INT "$TD_PID" 2>/dev/null || true; wait "$TD_PID" 2>/dev/null || true; }
    [ -z "$MC_PID" ] || { kill -TERM "$MC_PID" 2>/dev/null || true; wait "$MC_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(/usr/bin/python3 - "$BASE_PORT" <<'EOF'
import socket, sys
p = int(sys.argv[1])
while p < 65000:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        p += 1
    finally:
        s.close()
EOF
)"
[ -n "$PORT" ] || die "no free port"

# requests after warm-up: ~2 packets per request on a lock-step loopback
# connection (request, response; ACKs ride on the next request), +10%
OPS=$(( PACKETS * 55 / 100 ))
VALUE_MAX="${VALUE_BYTES#*-}"
MEM_MB=$(( KEYS * (600 + 2 * VALUE_MAX) / 1048576 + 256 ))
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT" "$OUT.json"

USER_ARGS=()
if [ "$(id -u)" = 0 ]; then
    if id memcache >/dev/null 2>&1; then USER_ARGS=(-u memcache); else USER_ARGS=(-u nobody); fi
fi
memcached "${USER_ARGS[@]}" -l 127.0.0.1 -p "$PORT" -U 0 -m "$MEM_MB" -c 4096 -t 2 >"$WORK/memcached.log" 2>&1 &
MC_PID=$!
for _ in $(seq 100); do
    /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2).close()" 2>/dev/null && break
    sleep 0.05
done

TD_USER=()
[ "$(id -u)" != 0 ] || TD_USER=(-Z root)
# -B: 256 MiB kernel ring so bursts are not dropped; snaplen 262144 keeps
# whole 64 KiB loopback super-segments.
tcpdump -i lo -B 262144 -s 262144 "${TD_USER[@]}" -w "$OUT" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
TD_PID=$!
for _ in $(seq 200); do
    grep -q "listening on" "$WORK/tcpdump.err" && break
    kill -0 "$TD_PID" 2>/dev/null || die "tcpdump exited: $(cat "$WORK/tcpdump.err")"
    sleep 0.05
done
grep -q "listening on" "$WORK/tcpdump.err" || die "tcpdump not listening"
sleep 0.2

log "memcached $(memcached -V | awk '{print $2}') on 127.0.0.1:$PORT (-m $MEM_MB); $PROCS procs x $CONNS_PER_PROC conns," \
    "$KEYS keys, $OPS requests after warm-up, target $PACKETS packets"
T0=$(date +%s)
/usr/bin/python3 "$DRIVER" --port "$PORT" --keys "$KEYS" --ops "$OPS" --procs "$PROCS" \
    --conns-per-proc "$CONNS_PER_PROC" --seed "$SEED" --value-bytes "$VALUE_BYTES" \
    >"$WORK/driver.json" || die "load driver failed"
# tcpdump hands over packets block by block (TPACKET_V3, 1 s block
# timeout): wait for the last block before stopping it
sleep 2
kill -INT "$TD_PID"
wait "$TD_PID" || true
TD_PID=""
kill -TERM "$MC_PID"; wait "$MC_PID" 2>/dev/null || true; MC_PID=""
T1=$(date +%s)

captured=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$WORK/tcpdump.err")
received=$(sed -n 's/^\([0-9]*\) packets\{0,1\} received by filter.*/\1/p' "$WORK/tcpdump.err")
dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$WORK/tcpdump.err")
packets=$(capinfos -T -r -M -c "$OUT" | awk -F'\t' '{print $2}')
bytes=$(stat -c %s "$OUT")
# independent scan of the request payloads: distinct k:NNNNNNNN keys
distinct=$(/usr/bin/python3 "$ROOT/scripts/bench/pcap_key_count.py" "$OUT" "$PORT" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["distinct_keys"])')

/usr/bin/python3 - "$WORK/driver.json" "$OUT.json" "$packets" "$bytes" "${captured:-0}" "${received:-0}" \
    "${dropped:-0}" "$((T1 - T0))" "$PORT" "$distinct" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d.update(pcap_packets=int(sys.argv[3]), pcap_bytes=int(sys.argv[4]), tcpdump_captured=int(sys.argv[5]),
         tcpdump_received_by_filter=int(sys.argv[6]), tcpdump_dropped_by_kernel=int(sys.argv[7]),
         run_seconds=int(sys.argv[8]), server="127.0.0.1:" + sys.argv[9], pcap_distinct_keys=int(sys.argv[10]))
json.dump(d, open(sys.argv[2], "w"), indent=1)
print(json.dumps(d))
EOF
log "$OUT: $packets packets, $bytes bytes, $distinct distinct keys; tcpdump: ${captured:-?} captured," \
    "${received:-?} received by filter, ${dropped:-?} dropped by kernel; $((T1 - T0)) s"
[ "$packets" -ge "$PACKETS" ] || die "only $packets packets (< $PACKETS): raise --packets margin or --procs"
[ "$distinct" -ge "$KEYS" ] || die "only $distinct distinct keys in the capture (< $KEYS)"
[ "${dropped:-1}" = 0 ] || log "WARNING: tcpdump dropped ${dropped} packets"
