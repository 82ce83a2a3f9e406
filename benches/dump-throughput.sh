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

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"

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
