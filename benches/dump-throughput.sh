#!/usr/bin/env bash
# End-to-end throughput of `memtap dump` on a big capture, against the floor
# of merely reading the file (tcpdump -r FILE -w /dev/null).
#
# Builds the release binary, generates the capture with benches/gen-capture.sh
# when it is missing, warms the page cache, then runs each command RUNS times
# (default 3) on the same file and keeps the fastest run:
#   (a) tcpdump -r FILE -w /dev/null                           the floor: reading the file
#   (b) memtap dump --target T FILE > /dev/null                full analysis, JSON lines
#   (c) memtap dump --format tsv --target T FILE > /dev/null   full analysis, TSV
# Reports wall seconds, packets/s, MB/s (file bytes, 10^6), CPU seconds
# (user+sys) and peak RSS (/usr/bin/time -v) as a table on stdout and in
# bench-out/dump-throughput.txt.
#
# Usage: benches/dump-throughput.sh [FILE] [--target HOST:PORT] [--runs N] [--no-build]
#   FILE       default bench-out/big.pcap (generated when missing)
#   --target   server to watch; default: the "server" of FILE.json, else the
#              destination of the capture's first SYN (tshark)
#   --runs N   runs per command (default 3; env RUNS)
#   --no-build use target/release/memtap as it is
# Env OUT_TXT: where to write the table (default bench-out/dump-throughput.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="$ROOT/bench-out/big.pcap"
TARGET=""
RUNS="${RUNS:-3}"
BUILD=1
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/dump-throughput.txt}"

log() { printf '[dump-throughput] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --target) TARGET="$2"; shift 2 ;;
        --target=*) TARGET="${1#*=}"; shift ;;
        --runs) RUNS="$2"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) FILE="$1"; shift ;;
    esac
done
case "$FILE" in /*) ;; *) FILE="$PWD/$FILE" ;; esac
[ "$RUNS" -ge 1 ] 2>/dev/null || die "--runs wants a positive number"

# ------------------------------------------------------------ tools
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
[ -x /usr/bin/time ] || missing+=(time)
command -v tcpdump >/dev/null || missing+=(tcpdump)
command -v capinfos >/dev/null || missing+=(wireshark-common)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
        { $SUDO apt-get update -q >/dev/null &&
          $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

# ------------------------------------------------------------ build, input
BIN="$ROOT/target/release/memtap"
if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet --bin memtap)
fi
[ -x "$BIN" ] || die "$BIN missing (build it, or drop --no-build)"

if [ ! -s "$FILE" ]; then
    log "$FILE missing: generating it"
    "$ROOT/benches/gen-capture.sh" "$FILE"
fi

if [ -z "$TARGET" ] && [ -s "$FILE.json" ]; then
    TARGET="$(sed -n 's/.*"server": *"\([^"]*\)".*/\1/p' "$FILE.json" | head -n 1)"
fi
if [ -z "$TARGET" ] && command -v tshark >/dev/null; then
    # the destination of the first client SYN is the server
    TARGET="$(tshark -r "$FILE" -c 1000 -Y 'tcp.flags.syn == 1 && tcp.flags.ack == 0' \
        -T fields -e ip.dst -e tcp.dstport 2>/dev/null | awk 'NF == 2 {print $1 ":" $2; exit}')"
fi
[ -n "$TARGET" ] || die "cannot tell the server of $FILE: pass --target HOST:PORT"

PACKETS="$(capinfos -T -r -M -c "$FILE" | awk -F'\t' '{print $2}')"
BYTES="$(stat -c %s "$FILE")"
[ "${PACKETS:-0}" -gt 0 ] || die "capinfos found no packets in $FILE"

# Page cache warm: read the whole file once before the first timed run.
cat "$FILE" >/dev/null

# ------------------------------------------------------------ measuring
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# run NAME CMD...: RUNS timed runs (stdout to /dev/null); sets BEST_WALL
# (seconds), BEST_CPU (user+sys of that run) and MAX_RSS_KB (over all runs).
run() {
    local name="$1"; shift
    BEST_WALL="" BEST_CPU="" MAX_RSS_KB=0
    local i t0 t1 wall rss cpu
    for i in $(seq "$RUNS"); do
        t0=$(date +%s%N)
        if ! /usr/bin/time -v -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr"; then
            cat "$WORK/stderr" >&2
            die "$name failed: $*"
        fi
        t1=$(date +%s%N)
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time")
        cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$WORK/time")
        log "$name run $i: ${wall} s wall, ${cpu} s cpu, ${rss} KiB peak RSS"
        if [ -z "$BEST_WALL" ] || awk -v a="$wall" -v b="$BEST_WALL" 'BEGIN {exit !(a < b)}'; then
            BEST_WALL="$wall" BEST_CPU="$cpu"
        fi
        [ "$rss" -le "$MAX_RSS_KB" ] || MAX_RSS_KB="$rss"
        cp "$WORK/stderr" "$WORK/stderr.$name"
    done
}

ROWS=()
row() {
    ROWS+=("$(awk -v n="$1" -v w="$BEST_WALL" -v c="$BEST_CPU" -v r="$MAX_RSS_KB" \
        -v p="$PACKETS" -v b="$BYTES" -v f="$2" 'BEGIN {
        printf "| %-34s | %7.3f | %7.2f | %10.0f | %7.1f | %7.1f | %8s |", n, w, c, p / w, b / w / 1e6, r / 1024, f
    }')")
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "$FILE: $PACKETS packets, $BYTES bytes; target $TARGET; best of $RUNS; load $LOAD_BEFORE"

run tcpdump tcpdump -r "$FILE" -w /dev/null
row "(a) tcpdump -r FILE -w /dev/null" "1.00x"
FLOOR="$BEST_WALL"

run json "$BIN" dump --target "$TARGET" "$FILE"
row "(b) memtap dump (JSON)" "$(awk -v a="$BEST_WALL" -v f="$FLOOR" 'BEGIN {printf "%.2fx", a / f}')"
RECORDS="$(sed -n 's/.* \([0-9]*\) records$/\1/p' "$WORK/stderr.json" | head -n 1)"

run tsv "$BIN" dump --format tsv --target "$TARGET" "$FILE"
row "(c) memtap dump --format tsv" "$(awk -v a="$BEST_WALL" -v f="$FLOOR" 'BEGIN {printf "%.2fx", a / f}')"

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU_MODEL="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo 'unknown commit')"
DIRTY="$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo '+dirty' || true)"

mkdir -p "$(dirname "$OUT_TXT")"
{
    echo "# benches/dump-throughput.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# machine: $(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "# memtap $COMMIT$DIRTY, $(rustc --version 2>/dev/null || echo 'rustc ?'), profile release"
    echo "# file: ${FILE#"$ROOT"/} ($PACKETS packets, $BYTES bytes), target $TARGET, ${RECORDS:-?} records"
    echo "# best of $RUNS runs, page cache warm; peak RSS is the largest of the runs; MB = 10^6 bytes of file"
    echo "# load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
    echo
    echo "| command                            |  wall s |   CPU s |  packets/s |    MB/s | RSS MiB | vs floor |"
    echo "| ---------------------------------- | ------: | ------: | ---------: | ------: | ------: | -------: |"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT_TXT"
log "written to $OUT_TXT"
