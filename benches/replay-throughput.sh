#!/usr/bin/env bash
# End-to-end speed and memory of `memtap replay` (the full analysis: the
# worker/collector pipeline and the report) on big captures, beside
#   (a) tcpdump -r FILE -w /dev/null   the floor: reading the file
#   (c) tshark with its memcache dissector, printing command and key
# and the peak RSS of replay on a capture with ten times the distinct keys.
#
# Builds the release binary, generates bench-out/big.pcap (>= 1M packets,
# 200k keys) and bench-out/big-10x.pcap (2M keys) with benches/gen-capture.sh
# when missing, warms the page cache, keeps the fastest of RUNS runs.
#
# Usage: benches/replay-throughput.sh [--runs N] [--no-build] [--no-tshark]
# Env OUT_TXT: where to write the table (default bench-out/replay-throughput.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="$ROOT/bench-out/big.pcap"
FILE10="$ROOT/bench-out/big-10x.pcap"
TARGET=""
RUNS="${RUNS:-3}"
BUILD=1
TSHARK=1
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/replay-throughput.txt}"

log() { printf '[replay-throughput] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-tshark) TSHARK=0; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
done

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
ROW_WIDTH=43
if [ ! -s "$FILE10" ]; then
    log "$FILE10 missing: generating it"
    "$ROOT/benches/gen-capture.sh" "$FILE10" --keys 2000000
fi

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "$FILE: $PACKETS packets, $BYTES bytes; target $TARGET; best of $RUNS; load $LOAD_BEFORE"
vs() { awk -v a="$BEST_WALL" -v f="$FLOOR" 'BEGIN {printf "%.2fx", a / f}'; }

run tcpdump tcpdump -r "$FILE" -w /dev/null
row "(a) tcpdump -r FILE -w /dev/null" "1.00x"
FLOOR="$BEST_WALL"

RSS_1X=""
for wc in "1 1" "2 1" "2 2"; do
    set -- $wc
    run "replay-w$1-c$2" "$BIN" replay -q --format json --workers "$1" --collectors "$2" --target "$TARGET" "$FILE"
    row "(b) memtap replay, workers $1, collectors $2" "$(vs)"
    # The 10x comparison below runs with 1 worker and 1 collector.
    [ -n "$RSS_1X" ] || RSS_1X="$MAX_RSS_KB"
done
run "replay-top0" "$BIN" replay -q --format text --top 0 --workers 1 --collectors 1 --target "$TARGET" "$FILE"
row "(b') memtap replay --top 0, text" "$(vs)"

if [ "$TSHARK" = 1 ] && command -v tshark >/dev/null; then
    PORT="${TARGET##*:}"
    RUNS_SAVED="$RUNS"; RUNS=1
    run tshark tshark -r "$FILE" -d "tcp.port==$PORT,memcache" -Y memcache -T fields -e memcache.command -e memcache.key
    row "(c) tshark memcache dissector (1 run)" "$(vs)"
    RUNS="$RUNS_SAVED"
fi

# Its own server: gen-capture.sh picks a free port for each capture.
TARGET10="$(sed -n 's/.*"server": *"\([^"]*\)".*/\1/p' "$FILE10.json" 2>/dev/null | head -n 1)"
TARGET10="${TARGET10:-$TARGET}"
PACKETS10="$(capinfos -T -r -M -c "$FILE10" | awk -F'\t' '{print $2}')"
BYTES10="$(stat -L -c %s "$FILE10")"
cat "$FILE10" >/dev/null
run tcpdump10 tcpdump -r "$FILE10" -w /dev/null
FLOOR10="$BEST_WALL"
PACKETS_SAVED="$PACKETS"; BYTES_SAVED="$BYTES"; PACKETS="$PACKETS10"; BYTES="$BYTES10"
row "(a) tcpdump, 10x distinct keys" "1.00x"
run "replay10" "$BIN" replay -q --format json --workers 1 --collectors 1 --target "$TARGET10" "$FILE10"
FLOOR_SAVED="$FLOOR"; FLOOR="$FLOOR10"
row "(b) memtap replay, 10x keys, w1 c1" "$(vs)"
FLOOR="$FLOOR_SAVED"; PACKETS="$PACKETS_SAVED"; BYTES="$BYTES_SAVED"
RSS_10X="$MAX_RSS_KB"

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU_MODEL="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
DIRTY="$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo '+dirty' || true)"
KEYS1="$(sed -n 's/.*"pcap_distinct_keys": *\([0-9]*\).*/\1/p' "$FILE.json" 2>/dev/null | head -n 1)"
KEYS10="$(sed -n 's/.*"pcap_distinct_keys": *\([0-9]*\).*/\1/p' "$FILE10.json" 2>/dev/null | head -n 1)"

mkdir -p "$(dirname "$OUT_TXT")"
{
    echo "# benches/replay-throughput.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# machine: $(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "# memtap $COMMIT$DIRTY, $(rustc --version 2>/dev/null || echo 'rustc ?'), profile release, default --max-keys"
    echo "# files: ${FILE#"$ROOT"/} ($PACKETS packets, $BYTES bytes, ${KEYS1:-?} distinct keys), target $TARGET;"
    echo "#        ${FILE10#"$ROOT"/} ($PACKETS10 packets, $BYTES10 bytes, ${KEYS10:-?} distinct keys); target $TARGET10"
    echo "# best of $RUNS runs, page cache warm; peak RSS is the largest of the runs; MB = 10^6 bytes of file"
    echo "# load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
    echo
    echo "| command                                     |  wall s |   CPU s |  packets/s |    MB/s | RSS MiB | vs floor |"
    echo "| ------------------------------------------- | ------: | ------: | ---------: | ------: | ------: | -------: |"
    printf '%s\n' "${ROWS[@]}"
    echo
    awk -v a="$RSS_1X" -v b="$RSS_10X" 'BEGIN {printf "peak RSS of replay (1 worker, 1 collector) with 10x distinct keys: %.1f MiB vs %.1f MiB (%+.1f%%)\n", b / 1024, a / 1024, (b - a) * 100 / a}'
} | tee "$OUT_TXT"
log "written to $OUT_TXT"
