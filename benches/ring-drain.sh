#!/usr/bin/env bash
# How fast `memtap capture` takes packets off its AF_PACKET rings, measured
# apart from the sender: memtap is stopped (SIGSTOP) while examples/afp_send
# fills its rings with a burst of a memcached capture's frames on a veth
# pair, then resumed (SIGCONT); the time until its threads go idle is the
# time it took to capture, reassemble, parse, pair and count the burst.
# Packets / that time is the rate memtap sustains with W workers when the
# sender is not competing for the same cores, which on this project's
# 2-core machine the zero-drop search (benches/zero-drop.sh) cannot show:
# there the sender tops out first.
#
# The end of the drain is found from the threads' own run time
# (/proc/PID/task/*/schedstat, nanoseconds, polled every 2 ms): the last
# moment before the process stays under 2 % of a core for 100 ms (its idle
# ticks wake every 100 ms and cost microseconds). The burst must fit the
# rings (kernel drops 0) or the figure means nothing; records a collector
# could not take in time are reported (records_dropped), since they say the
# collectors, not the workers, set the pace. A worker waits for a full
# collector channel while its ring is under half full (record_batches_waited,
# logged), so a burst that fits half the ring loses nothing; past half it
# drops record batches to keep the ring draining.
#
# Usage (as root): benches/ring-drain.sh [--no-build]   (env BIN, SEND: other binaries)
# Env: FILE (default bench-out/big.pcap), TARGET (default from FILE.json),
#      WORKERS (default "1 2"), COLLECTORS (default 1), PACKETS (default
#      1000000, at most LOAD), SKIP/LOAD (default 100000/1000000: frames of
#      FILE held in memory, none sent twice), RUNS (default 3, the median is
#      kept), BLOCK_SIZE/BLOCK_COUNT per ring (default 1 MiB x 1024),
#      EXTRA (more `memtap capture` options, e.g. "--memory 8GiB"),
#      TCPDUMP (default 1: also `tcpdump -w /dev/null` with a ring of the
#      same size, its drain timed the same way; 0 skips it),
#      OUT_TXT (default bench-out/ring-drain.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="${FILE:-$ROOT/bench-out/big.pcap}"
TARGET="${TARGET:-}"
WORKERS="${WORKERS:-1 2}"
COLLECTORS="${COLLECTORS:-1}"
PACKETS="${PACKETS:-1000000}"
SKIP="${SKIP:-100000}"
LOAD="${LOAD:-1000000}"
RUNS="${RUNS:-3}"
BLOCK_SIZE="${BLOCK_SIZE:-1048576}"
BLOCK_COUNT="${BLOCK_COUNT:-1024}"
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/ring-drain.txt}"
EXTRA="${EXTRA:-}"
TCPDUMP="${TCPDUMP:-1}"
BUILD=1

log() { printf '[ring-drain] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "needs root (network namespace, veth pair, packet capture)"
[ "$PACKETS" -le "$LOAD" ] || die "PACKETS ($PACKETS) must be at most LOAD ($LOAD): a frame sent twice is a retransmission"

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

WORK="$(mktemp -d)"
NS="memtap-rd-$$"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=benches/veth.sh
. "$ROOT/benches/veth.sh"
veth_up

# drain.py ready PID: returns once PID's capture threads exist and it has
# gone quiet (mapping and zeroing the rings takes a second or more after
# "capturing on"). drain.py drain PID: resumes PID and prints "seconds
# cpu_seconds" of the drain.
cat >"$WORK/drain.py" <<'EOF'
import os, signal, sys, time
mode, pid = sys.argv[1], int(sys.argv[2])
def run_ns():
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total
QUIET_S, IDLE_SHARE, STEP_S = 0.100, 0.02, 0.002
if mode == "ready":
    t0 = time.monotonic()
    while True:
        names = []
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/comm") as f:
                    names.append(f.read().strip())
            except OSError:
                pass
        c = run_ns()
        time.sleep(0.3)
        capturing = any(n.startswith(("memtap-capture", "memtap-worker", "tcpdump")) for n in names)
        if capturing and run_ns() - c <= IDLE_SHARE * 0.3e9:
            sys.exit(0)
        if time.monotonic() - t0 > 60:
            print("not ready after 60 s", file=sys.stderr)
            sys.exit(1)
def threads():
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip() + "/" + t
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                out[name] = int(f.read().split()[0])
        except OSError:
            pass
    return out
before = threads()
c0 = run_ns()
t0 = time.monotonic()
os.kill(pid, signal.SIGCONT)
samples = [(t0, c0)]
while True:
    time.sleep(STEP_S)
    now, c = time.monotonic(), run_ns()
    samples.append((now, c))
    # The latest sample at least QUIET_S old: if the process stayed
    # (nearly) idle since, the drain ended there.
    j = len(samples) - 1
    while j > 0 and now - samples[j][0] < QUIET_S:
        j -= 1
    start_t, start_c = samples[j]
    if now - start_t >= QUIET_S and (c - start_c) <= IDLE_SHARE * (now - start_t) * 1e9:
        print(f"{start_t - t0:.4f} {(start_c - c0) / 1e9:.4f}")
        per = {n: v - before.get(n, 0) for n, v in threads().items()}
        print("threads' CPU s in the drain: " + ", ".join(
            f"{n} {v / 1e9:.3f}" for n, v in sorted(per.items()) if v > 1e6), file=sys.stderr)
        break
    if now - t0 > 120:
        print("timeout", file=sys.stderr)
        sys.exit(1)
EOF

# burst_and_drain PID: stops the capturer, sends the burst into its ring,
# resumes it and times the drain; sets SENT SECS CPU.
burst_and_drain() {
    kill -STOP "$1"
    nsx "$SEND" --iface mtb0 --pcap "$FILE" --skip "$SKIP" --load "$LOAD" \
        --packets "$PACKETS" --rate 0 >"$WORK/send.out" 2>"$WORK/send.err" ||
        { cat "$WORK/send.err" >&2; die "afp_send failed"; }
    read -r _ SENT _ <"$WORK/send.out"
    read -r SECS CPU < <(python3 "$WORK/drain.py" drain "$1" 2>"$WORK/threads")
}

# run W C: sets SEEN KD PD RD NREC SECS CPU SENT
run() {
    local w="$1" c="$2" pid rep="$WORK/report.json"
    rm -f "$rep"
    ip netns exec "$NS" "$BIN" capture -i mtb1 --engine afpacket \
        --workers "$w" --collectors "$c" --promisc --no-listen --target "$TARGET" \
        --block-size "$BLOCK_SIZE" --block-count "$BLOCK_COUNT" $EXTRA \
        --format json --report-file "$rep" 2>"$WORK/cap.err" &
    pid=$!; PIDS+=("$pid")
    wait_for "$WORK/cap.err" "memtap: capturing on" "$pid" 400
    python3 "$WORK/drain.py" ready "$pid" || die "memtap did not settle"
    burst_and_drain "$pid"
    log "$(cat "$WORK/threads")"
    kill -INT "$pid"
    wait "$pid" || { cat "$WORK/cap.err" >&2; die "memtap capture failed"; }
    python3 - "$rep" >"$WORK/m" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
h = r.get("health", {})
c = r.get("capture", {})
print(c["packets"], h["kernel_drops"] + h["if_drops"], h["packets_dropped"], h["records_dropped"], h["records"],
      h.get("record_batches_waited", 0))
EOF
    read -r SEEN KD PD RD NREC WAITED <"$WORK/m"
}

# run_tcpdump: sets SEEN KD SECS CPU SENT. libpcap's -B (KiB) sizes the
# ring; the filter is the target's, as memtap's kernel filter is.
run_tcpdump() {
    local pid host="${TARGET%:*}" port="${TARGET##*:}"
    ip netns exec "$NS" tcpdump -i mtb1 -n -s 0 -B $((BLOCK_SIZE / 1024 * BLOCK_COUNT)) \
        -w /dev/null "host $host and port $port" 2>"$WORK/td.err" &
    pid=$!; PIDS+=("$pid")
    wait_for "$WORK/td.err" "listening on" "$pid" 400
    python3 "$WORK/drain.py" ready "$pid" || die "tcpdump did not settle"
    burst_and_drain "$pid"
    # libpcap's block timeout is 1 s (memtap's 10 ms): the last, partly
    # filled block is handed over that long after it opened.
    sleep 1.5
    kill -INT "$pid"
    wait "$pid" || true
    SEEN="$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$WORK/td.err")"
    KD="$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$WORK/td.err")"
    [ -n "$SEEN" ] && [ -n "$KD" ] || { cat "$WORK/td.err" >&2; die "tcpdump's counts missing"; }
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "$FILE frames $((SKIP + 1))-$((SKIP + PACKETS)) as one burst; workers $WORKERS; $RUNS runs each; load $LOAD_BEFORE"
ROWS=()
for w in $WORKERS; do
    results=()
    for i in $(seq "$RUNS"); do
        run "$w" "$COLLECTORS"
        log "workers $w run $i: sent $SENT, seen $SEEN, drops kernel $KD pipeline $PD records $RD of $NREC (batches that waited for a collector: $WAITED); drained in $SECS s, CPU $CPU s"
        [ "$KD" = 0 ] || log "kernel drops: the burst did not fit the rings (raise BLOCK_COUNT); this run's rate is not a drain rate"
        results+=("$SECS $CPU $SEEN $KD $PD $RD $NREC $SENT")
    done
    # The median run by drain time.
    IFS=$'\n' sorted=($(printf '%s\n' "${results[@]}" | sort -n)); unset IFS
    read -r SECS CPU SEEN KD PD RD NREC SENT <<<"${sorted[$(((RUNS - 1) / 2))]}"
    all=$(printf '%s\n' "${results[@]}" | awk '{printf "%s%.3f", (NR > 1 ? ", " : ""), $1}')
    ROWS+=("$(awk -v w="$w" -v c="$COLLECTORS" -v s="$SECS" -v cpu="$CPU" -v n="$SEEN" -v sent="$SENT" \
        -v kd="$KD" -v pd="$PD" -v rd="$RD" -v nrec="$NREC" -v all="$all" 'BEGIN {
        printf "| %d + %d | %d | %d | %d | %d | %d of %d | %.3f (%s) | %.2f | %.2f | %.2f |",
            w, c, sent, n, kd, pd, rd, nrec, s, all, n / s / 1e6, n / s / 1e6 / w, cpu * 1e6 / n
    }')")
done
if [ "$TCPDUMP" = 1 ]; then
    command -v tcpdump >/dev/null || die "tcpdump missing (TCPDUMP=0 skips it)"
    results=()
    for i in $(seq "$RUNS"); do
        run_tcpdump
        log "tcpdump run $i: sent $SENT, seen $SEEN, kernel drops $KD; drained in $SECS s, CPU $CPU s"
        results+=("$SECS $CPU $SEEN $KD $SENT")
    done
    IFS=$'\n' sorted=($(printf '%s\n' "${results[@]}" | sort -n)); unset IFS
    read -r SECS CPU SEEN KD SENT <<<"${sorted[$(((RUNS - 1) / 2))]}"
    all=$(printf '%s\n' "${results[@]}" | awk '{printf "%s%.3f", (NR > 1 ? ", " : ""), $1}')
    ROWS+=("$(awk -v s="$SECS" -v cpu="$CPU" -v n="$SEEN" -v sent="$SENT" -v kd="$KD" -v all="$all" 'BEGIN {
        printf "| tcpdump -w /dev/null | %d | %d | %d | - | - | %.3f (%s) | %.2f | %.2f | %.2f |",
            sent, n, kd, s, all, n / s / 1e6, n / s / 1e6, cpu * 1e6 / n
    }')")
fi
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
mkdir -p "$(dirname "$OUT_TXT")"
{
    echo "# benches/ring-drain.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), memtap $COMMIT"
    echo "# machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr)"
    echo "# $FILE frames $((SKIP + 1))-$((SKIP + PACKETS)), one burst into rings of $BLOCK_COUNT x $BLOCK_SIZE B per worker"
    echo "# load average before: $LOAD_BEFORE, after: $LOAD_AFTER; extra options: ${EXTRA:-none}; binary $BIN"
    echo
    echo "| workers + collectors | sent | seen | kernel drops | pipeline drops | records dropped | drain s, median (all) | M packets/s | M packets/s per worker | CPU s / M packets |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT_TXT"
log "written to $OUT_TXT"
