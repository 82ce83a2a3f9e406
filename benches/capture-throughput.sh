#!/usr/bin/env bash
# Live-capture speed: the packet rates `memtap capture` sustains with zero
# drops, beside `tcpdump -w /dev/null` on the same replay, and memtap's CPU
# time per million packets.
#
# A veth pair in a fresh network namespace (deleted at exit; MTU 65535 so
# the capture's 64 KiB loopback super-segments fit). tcpreplay sends
# PACKETS packets of bench-out/big.pcap (benches/gen-capture.sh makes it
# when missing), after the first SKIP (the warm-up: 100-key pipelined sets,
# up to ~50 records per packet, not the steady traffic of gets and sets),
# onto one end at each rate of RATES (`--pps`, and `topspeed`); on the
# other end, one at a time:
#   memtap capture --engine afpacket  (WORKERS workers, --promisc)
#   memtap capture --engine pcap
#   memtap top -i --engine afpacket   (ENGINES=top: the live view on a
#                                      120x40 tmux terminal, same options)
#   tcpdump -w /dev/null              (same filter; -B = memtap's ring size)
# The pcap's MACs are left alone: a veth delivers any destination MAC to
# packet sockets (the IP layer drops them as not for this host), so no
# local TCP reacts. memtap is stopped with SIGINT 2 s after tcpreplay ends
# (past the 1 s ring-block timeout) and writes its JSON report; drops are
# its health counters: kernel (kernel_drops + if_drops: packets the
# kernel could not hand over) and pipeline (packets_dropped: packets a
# worker could not take; records_dropped, in record_batches_dropped:
# key-requests a collector could not take). CPU is user+sys of the whole
# run (/usr/bin/time), start-up and idle included.
#
# Usage: benches/capture-throughput.sh [--no-build]
# Env: PACKETS (default 300000), SKIP (default 100000; 0 = from the
#      start, warm-up included), RATES (default "25000 50000 100000
#      topspeed"), WORKERS (default 1), ENGINES (default "afpacket pcap"; add
#      "top" for capture with the live view),
#      QUICK=1 (50000 packets, rates "50000 topspeed"),
#      OUT_TXT (default bench-out/capture-throughput.txt).
# Needs root (netns, veth, capture). About 2 minutes with the defaults on
# a 2-core machine; QUICK=1 about 30 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="$ROOT/bench-out/big.pcap"
TARGET=""
RUNS=1
BUILD=1
if [ "${QUICK:-0}" = 1 ]; then
    PACKETS="${PACKETS:-50000}"
    SKIP="${SKIP:-100000}"
    RATES="${RATES:-50000 topspeed}"
else
    PACKETS="${PACKETS:-300000}"
    SKIP="${SKIP:-100000}"
    RATES="${RATES:-25000 50000 100000 topspeed}"
fi
WORKERS="${WORKERS:-1}"
ENGINES="${ENGINES:-afpacket pcap}"
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/capture-throughput.txt}"

log() { printf '[capture-throughput] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (network namespace, veth pair, packet capture)"
command -v tcpreplay >/dev/null || {
    log "installing: tcpreplay"
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpreplay >/dev/null ||
        { apt-get update -q >/dev/null &&
          env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpreplay >/dev/null; }
}
command -v ip >/dev/null || die "ip (iproute2) missing"
case " $ENGINES " in
*" top "*)
    command -v tmux >/dev/null || {
        log "installing: tmux"
        env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >/dev/null ||
            { apt-get update -q >/dev/null &&
              env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux >/dev/null; }
    } ;;
esac
TMUX_SESSION="memtap-bench-$$"

# Tools, build, input, TARGET, PACKETS of the file (overridden below), WORK.
FILE_PACKETS_WANTED="$PACKETS"
# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
[ "$PACKETS" -gt "$SKIP" ] || die "$FILE has only $PACKETS packets (SKIP=$SKIP)"
[ $((PACKETS - SKIP)) -ge "$FILE_PACKETS_WANTED" ] || FILE_PACKETS_WANTED=$((PACKETS - SKIP))
PACKETS="$FILE_PACKETS_WANTED"
SLICE="$FILE"
if [ "$SKIP" -gt 0 ]; then
    SLICE="$WORK/slice.pcap"
    editcap -F pcap -r "$FILE" "$SLICE" "$((SKIP + 1))-$((SKIP + PACKETS))"
fi
PORT="${TARGET##*:}"
# Ring size of one memtap worker (the default config), for tcpdump -B.
RING_KIB=$(( 1048576 * 64 / 1024 ))

# ------------------------------------------------------------ network
NS="memtap-bench-$$"
PIDS=()
cleanup() {
    local p c
    # Each PID is /usr/bin/time: stop the capture under it first.
    for p in "${PIDS[@]}"; do
        for c in $(cat "/proc/$p/task/$p/children" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
        kill -KILL "$p" 2>/dev/null || true
    done
    tmux kill-session -t "$TMUX_SESSION" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=benches/veth.sh
. "$ROOT/benches/veth.sh"
veth_up

# replay RATE: sends PACKETS packets; sets SENT, SENT_PPS, SEND_S.
replay() {
    local speed=(--topspeed)
    [ "$1" = topspeed ] || speed=(--pps="$1")
    nsx tcpreplay -i mtb0 -K "${speed[@]}" --limit="$PACKETS" "$SLICE" >"$WORK/tcpreplay.out" 2>&1 ||
        { cat "$WORK/tcpreplay.out" >&2; die "tcpreplay failed"; }
    SENT=$(sed -n 's/^Actual: \([0-9]*\) packets.* sent in \([0-9.]*\) seconds.*/\1/p' "$WORK/tcpreplay.out")
    SEND_S=$(sed -n 's/^Actual: .* sent in \([0-9.]*\) seconds.*/\1/p' "$WORK/tcpreplay.out")
    SENT_PPS=$(sed -n 's/^Rated: .* \([0-9.]*\) pps.*/\1/p' "$WORK/tcpreplay.out")
    local failed
    failed=$(sed -n 's/^[[:space:]]*Failed packets: *\([0-9]*\).*/\1/p' "$WORK/tcpreplay.out")
    [ "${failed:-0}" = 0 ] || log "WARNING: tcpreplay failed to send $failed packets"
}

# top_run RATE REPORT: `memtap top -i` (afpacket, same options as the
# capture runs) on a 120x40 tmux terminal, the view refreshing as an
# operator would watch it; quit with `q` 2 s after tcpreplay ends. The
# view's threads are in the same process, so its CPU is in the figure.
top_run() {
    local rate="$1" rep="$2" i
    tmux kill-session -t "$TMUX_SESSION" 2>/dev/null || true
    tmux new-session -d -s "$TMUX_SESSION" -x 120 -y 40 \
        "ip netns exec $NS /usr/bin/time -f '%U %S' -o $WORK/time $BIN top -i mtb1 --engine afpacket \
         --workers $WORKERS --promisc --target '$TARGET' --interval 10s \
         --format json --report-file $rep 2>$WORK/memtap.err; sleep 0.2"
    for i in $(seq 200); do
        tmux capture-pane -p -t "$TMUX_SESSION" 2>/dev/null | grep -q "pkts/s" && break
        tmux has-session -t "$TMUX_SESSION" 2>/dev/null || { cat "$WORK/memtap.err" >&2; die "memtap top exited before it was ready"; }
        sleep 0.05
    done
    replay "$rate"
    sleep 2
    tmux capture-pane -p -t "$TMUX_SESSION" >"$WORK/top.screen" 2>/dev/null || true
    tmux send-keys -t "$TMUX_SESSION" q
    for i in $(seq 200); do
        tmux has-session -t "$TMUX_SESSION" 2>/dev/null || break
        sleep 0.05
    done
    tmux kill-session -t "$TMUX_SESSION" 2>/dev/null || true
    [ -s "$rep" ] || { cat "$WORK/memtap.err" "$WORK/top.screen" >&2; die "memtap top wrote no report"; }
}

# memtap_run ENGINE RATE: sets M_SEEN, M_KDROPS, M_PDROPS, M_RDROPS, M_CPU.
memtap_run() {
    local engine="$1" rate="$2" rep="$WORK/report.json" tpid mpid
    rm -f "$rep" "$WORK/time"
    if [ "$engine" = top ]; then
        top_run "$rate" "$rep"
    else
        ip netns exec "$NS" /usr/bin/time -f '%U %S' -o "$WORK/time" "$BIN" capture -i mtb1 --engine "$engine" \
            --workers "$WORKERS" --promisc --no-listen --target "$TARGET" \
            --format json --report-file "$rep" 2>"$WORK/memtap.err" &
        tpid=$!
        PIDS+=("$tpid")
        wait_for "$WORK/memtap.err" "memtap: capturing on" "$tpid"
        replay "$rate"
        sleep 2
        # /usr/bin/time ignores SIGINT while it waits: signal its child.
        mpid=$(cat "/proc/$tpid/task/$tpid/children")
        kill -INT "$mpid"
        wait "$tpid" || { cat "$WORK/memtap.err" >&2; die "memtap capture ($engine) failed"; }
    fi
    /usr/bin/python3 - "$rep" >"$WORK/m" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
h = r.get("health", {})
c = r.get("capture", {})
print(c["packets"], h["kernel_drops"] + h["if_drops"], h["packets_dropped"], h["records_dropped"],
      h["record_batches_dropped"], h["records"])
EOF
    read -r M_SEEN M_KDROPS M_PDROPS M_RDROPS M_BDROPS M_RECORDS <"$WORK/m"
    M_CPU=$(awk '{printf "%.2f", $1 + $2}' "$WORK/time")
    log "memtap $engine @ $rate: sent $SENT in $SEND_S s ($SENT_PPS pps), seen $M_SEEN, kernel drops $M_KDROPS," \
        "packets dropped $M_PDROPS, records dropped $M_RDROPS (in $M_BDROPS batches) of $M_RECORDS, cpu $M_CPU s"
}

# tcpdump_run RATE: sets T_SEEN, T_DROPS, T_CPU.
tcpdump_run() {
    local tpid tdpid
    ip netns exec "$NS" /usr/bin/time -f '%U %S' -o "$WORK/time" tcpdump -i mtb1 -B "$RING_KIB" -s 65535 -w /dev/null \
        "tcp port $PORT" 2>"$WORK/tcpdump.err" &
    tpid=$!
    PIDS+=("$tpid")
    wait_for "$WORK/tcpdump.err" "listening on" "$tpid"
    replay "$1"
    sleep 2
    tdpid=$(cat "/proc/$tpid/task/$tpid/children")
    kill -INT "$tdpid"
    wait "$tpid" || true
    T_SEEN=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$WORK/tcpdump.err")
    T_DROPS=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$WORK/tcpdump.err")
    T_CPU=$(awk '{printf "%.2f", $1 + $2}' "$WORK/time")
    log "tcpdump @ $1: sent $SENT ($SENT_PPS pps), captured $T_SEEN, dropped by kernel $T_DROPS, cpu $T_CPU s"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "$FILE: packets $((SKIP + 1))-$((SKIP + PACKETS)), target $TARGET; rates $RATES; engines $ENGINES; $WORKERS worker(s); load $LOAD_BEFORE"
ROWS=()
per_m() { awk -v c="$1" -v n="$2" 'BEGIN {if (n > 0) printf "%.2f", c * 1e6 / n; else print "-"}'; }
for rate in $RATES; do
    tcpdump_run "$rate"
    td_pps="$SENT_PPS"
    for engine in $ENGINES; do
        memtap_run "$engine" "$rate"
        ROWS+=("$(printf '| %-8s | %-8s | %9.0f | %8s | %8s | %8s | %8s | %8s | %10s | %8s | %11s |' \
            "$rate" "$engine" "$SENT_PPS" "$SENT" "$M_SEEN" "$M_KDROPS" "$M_PDROPS" "$M_RDROPS" \
            "$(per_m "$M_CPU" "$M_SEEN")" "$T_DROPS" "$(per_m "$T_CPU" "$T_SEEN")")")
    done
    log "(tcpdump's replay at $rate ran at $td_pps pps)"
done

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU_MODEL="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
DIRTY="$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo '+dirty' || true)"
mkdir -p "$(dirname "$OUT_TXT")"
{
    echo "# benches/capture-throughput.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# machine: $(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "# memtap $COMMIT$DIRTY, release; $(tcpreplay -V 2>&1 | head -n 1); $(tcpdump --version 2>&1 | head -n 1)"
    echo "# veth pair in a netns, MTU 65535; packets $((SKIP + 1))-$((SKIP + PACKETS)) of ${FILE#"$ROOT"/}, target $TARGET"
    echo "# memtap: --workers $WORKERS --promisc, default rings (64 x 1 MiB per worker) / pcap buffer (64 MiB);"
    echo "# tcpdump -B $RING_KIB -s 65535 'tcp port $PORT' -w /dev/null; one run per cell"
    echo "# load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
    echo
    echo "| rate     | engine   |  sent pps |     sent |   memtap |   kernel | pipeline |  records | memtap CPU | tcpdump  | tcpdump CPU |"
    echo "|          |          |           |  packets |     seen |    drops | pkt drop |  dropped |  s / M pkt | k. drops |   s / M pkt |"
    echo "| -------- | -------- | --------: | -------: | -------: | -------: | -------: | -------: | ---------: | -------: | ----------: |"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT_TXT"
log "written to $OUT_TXT"
