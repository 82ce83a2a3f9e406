#!/usr/bin/env bash
# Highest zero-drop packet rate of live capture: `memtap capture` with 1 and
# 2 workers (AF_PACKET engine) and `tcpdump -w /dev/null`, fed by
# examples/afp_send (frames of a memcached capture held in memory, sent with
# sendmmsg and PACKET_QDISC_BYPASS on one end of a veth pair in a network
# namespace made here and deleted at exit).
#
# For each capturer, the rates of RATES are tried in ascending order until
# the first one with a loss; a rate is zero-drop when the capturer saw every
# packet sent and counted no drop (memtap: kernel_drops + if_drops,
# packets_dropped, records_dropped; tcpdump: "dropped by kernel").
#
# Usage (as root): benches/zero-drop.sh [--no-build]   (env BIN, SEND: other binaries)
# Env: FILE (default bench-out/big.pcap), TARGET (default from FILE.json),
#      RATES (default "100000 200000 300000 400000 600000 800000 1000000 1500000"),
#      PACKETS per run (default 1000000), SKIP/LOAD frames of FILE kept in
#      memory (default 100000/1000000: no frame is sent twice in a run of
#      PACKETS <= LOAD, else TCP sees the repeats as retransmissions and
#      makes no records of them), CAPTURERS (default
#      "tcpdump memtap-w1 memtap-w2"), STOP_AT_LOSS (default 1),
#      OUT_TXT (default bench-out/zero-drop.txt).
#
# The veth hands each frame to the receiving side in the sender's own
# context (softirq): the kernel's share of capturing (filter, copy into the
# ring) is charged to the sender, not to the capturer, whose CPU column is
# what its threads spent in user and system time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="${FILE:-$ROOT/bench-out/big.pcap}"
TARGET="${TARGET:-}"
RATES="${RATES:-100000 200000 300000 400000 600000 800000 1000000 1500000}"
PACKETS="${PACKETS:-1000000}"
SKIP="${SKIP:-100000}"
LOAD="${LOAD:-1000000}"
CAPTURERS="${CAPTURERS:-tcpdump memtap-w1 memtap-w2}"
STOP_AT_LOSS="${STOP_AT_LOSS:-1}"
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/zero-drop.txt}"
BUILD=1

log() { printf '[zero-drop] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (network namespace, veth pair, packet capture)"
command -v tcpdump >/dev/null || die "tcpdump missing"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install time)"

BIN="${BIN:-$ROOT/target/release/memtap}"
SEND="${SEND:-$ROOT/target/release/examples/afp_send}"
if [ "$BUILD" = 1 ]; then
    log "cargo build --release --bin memtap --example afp_send"
    (cd "$ROOT" && cargo build --release --quiet --bin memtap --example afp_send)
fi
[ -x "$BIN" ] || die "$BIN missing"
[ -x "$SEND" ] || die "$SEND missing"
[ -s "$FILE" ] || die "$FILE missing (benches/gen-capture.sh makes one)"
if [ -z "$TARGET" ] && [ -s "$FILE.json" ]; then
    TARGET="$(sed -n 's/.*"server": *"\([^"]*\)".*/\1/p' "$FILE.json" | head -n 1)"
fi
[ -n "$TARGET" ] || die "set TARGET=HOST:PORT (the capture's memcached server)"
PORT="${TARGET##*:}"

WORK="$(mktemp -d)"
NS="memtap-zd-$$"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=benches/veth.sh
. "$ROOT/benches/veth.sh"
veth_up

# send RATE: sets SENT, SENT_PPS
send() {
    nsx "$SEND" --iface mtb0 --pcap "$FILE" --skip "$SKIP" --load "$LOAD" \
        --packets "$PACKETS" --rate "$1" >"$WORK/send.out" 2>"$WORK/send.err" ||
        { cat "$WORK/send.err" >&2; die "afp_send failed"; }
    read -r _ SENT _ _ _ _ SENT_PPS _ <"$WORK/send.out"
}

# kill_child PID: SIGINT to the child of `time` (the capturer itself)
kill_child() {
    local c
    c=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
    [ -n "$c" ] && kill -INT $c
}

# run CAPTURER RATE: sets SEEN, DROPS (a description), LOST (0/1), CPU
run() {
    local who="$1" rate="$2" tpid rep="$WORK/report.json"
    rm -f "$rep" "$WORK/time"
    case "$who" in
    tcpdump)
        # Not through nsx: $! must be `ip netns exec`, which becomes `time`,
        # whose child is the capturer (a function would add a subshell).
        ip netns exec "$NS" /usr/bin/time -f '%U %S %M' -o "$WORK/time" tcpdump -i mtb1 -B 65536 -s 65535 \
            -w /dev/null "tcp port $PORT" 2>"$WORK/cap.err" &
        tpid=$!; PIDS+=("$tpid")
        wait_for "$WORK/cap.err" "listening on" "$tpid"
        send "$rate"
        sleep 1
        kill_child "$tpid"; wait "$tpid" || true
        SEEN=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$WORK/cap.err")
        local kd
        kd=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$WORK/cap.err")
        DROPS="kernel $kd"
        LOST=$([ "$kd" = 0 ] && [ "$SEEN" -ge "$SENT" ] && echo 0 || echo 1)
        ;;
    memtap-w*)
        local w="${who#memtap-w}"
        ip netns exec "$NS" /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$BIN" capture -i mtb1 --engine afpacket \
            --workers "$w" --promisc --no-listen --target "$TARGET" \
            --format json --report-file "$rep" 2>"$WORK/cap.err" &
        tpid=$!; PIDS+=("$tpid")
        wait_for "$WORK/cap.err" "memtap: capturing on" "$tpid"
        send "$rate"
        sleep 1
        kill_child "$tpid"
        wait "$tpid" || { cat "$WORK/cap.err" >&2; die "memtap capture failed"; }
        /usr/bin/python3 - "$rep" >"$WORK/m" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
h = r.get("health", {})
c = r.get("capture", {})
print(c["packets"], h["kernel_drops"] + h["if_drops"], h["packets_dropped"], h["records_dropped"], h["records"])
EOF
        local kd pd rd
        local nrec
        read -r SEEN kd pd rd nrec <"$WORK/m"
        DROPS="kernel $kd, pipeline $pd, records $rd of $nrec"
        LOST=$([ "$kd" = 0 ] && [ "$pd" = 0 ] && [ "$rd" = 0 ] && [ "$SEEN" -ge "$SENT" ] && echo 0 || echo 1)
        ;;
    *) die "unknown capturer $who" ;;
    esac
    CPU=$(awk '{printf "%.2f", $1 + $2}' "$WORK/time")
    # Peak RSS, the mapped ring included (64 MiB a memtap worker by
    # default; tcpdump's -B 64 MiB).
    RSS=$(awk '{printf "%.0f", $3 / 1024}' "$WORK/time")
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "$FILE frames $((SKIP + 1))-$((SKIP + LOAD)) looped, $PACKETS packets a run; rates $RATES; load $LOAD_BEFORE"
ROWS=()
BEST=()
for who in $CAPTURERS; do
    best="none"
    for rate in $RATES; do
        run "$who" "$rate"
        per_m=$(awk -v c="$CPU" -v n="$SEEN" 'BEGIN {if (n > 0) printf "%.2f", c * 1e6 / n; else print "-"}')
        verdict=$([ "$LOST" = 0 ] && echo "zero-drop" || echo "LOSS")
        log "$who @ $rate: sent $SENT at $SENT_PPS pps, seen $SEEN, $DROPS, cpu $CPU s, peak RSS $RSS MiB: $verdict"
        ROWS+=("$(printf '| %-9s | %9s | %9.0f | %8s | %8s | %-36s | %6s | %7s | %7s | %-9s |' \
            "$who" "$rate" "$SENT_PPS" "$SENT" "$SEEN" "$DROPS" "$CPU" "$per_m" "$RSS" "$verdict")")
        if [ "$LOST" = 0 ]; then
            best="$SENT_PPS"
        elif [ "$STOP_AT_LOSS" = 1 ]; then
            break
        fi
    done
    BEST+=("$(printf '| %-9s | %s |' "$who" "$best")")
done

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
mkdir -p "$(dirname "$OUT_TXT")"
{
    echo "# benches/zero-drop.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), memtap $COMMIT"
    echo "# machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr)"
    echo "# $FILE frames $((SKIP + 1))-$((SKIP + LOAD)) looped; $PACKETS packets a run; veth in a netns"
    echo "# load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
    echo
    echo "| capturer  | rate asked | rate sent | sent     | seen     | drops                                | CPU s  | CPU s/M | RSS MiB | verdict   |"
    echo "| --------- | ---------: | --------: | -------: | -------: | ------------------------------------ | -----: | ------: | ------: | --------- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "| capturer  | highest zero-drop rate sent (pps) |"
    echo "| --------- | --------------------------------: |"
    printf '%s\n' "${BEST[@]}"
} | tee "$OUT_TXT"
log "written to $OUT_TXT"
