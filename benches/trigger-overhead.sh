#!/usr/bin/env bash
# What triggers cost a replay: `memtap replay` of bench-out/big.pcap
#   (a) without triggers,
#   (b) with one key-share rule that never fires (per-second figures and
#       the evaluator, no recorder),
#   (c) the same rule with the flight recorder on (every watched frame
#       copied into the ring),
#   (d) a rule that fires on busy keys (snippets written, rate-limited).
# Best of RUNS runs each, page cache warm; 1 worker, 1 collector.
#
# Usage: benches/trigger-overhead.sh [--runs N] [--no-build]
# Env OUT_TXT: where to write the table (default bench-out/trigger-overhead.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="$ROOT/bench-out/big.pcap"
TARGET=""
RUNS="${RUNS:-3}"
BUILD=1
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/trigger-overhead.txt}"

log() { printf '[trigger-overhead] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
done

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
ROW_WIDTH=44

rule() { # NAME THRESHOLD RECORD
    cat <<CFG
[recorder]
per_rule_per_hour = 3

[[trigger]]
name = "$1"
metric = "key_share_pct"
above = $2
window = "2s"
min_requests = 100
record = $3
CFG
}
rule never 100.0 false >"$WORK/off.toml"
rule never 100.0 true >"$WORK/ring.toml"
rule busy 1.0 true >"$WORK/fire.toml"
SNIPS="$WORK/snips"

common=(replay -q --format json --workers 1 --collectors 1 --target "$TARGET")
run plain "$BIN" "${common[@]}" "$FILE"
row "(a) no triggers" "1.00x"
BASE="$BEST_WALL"
vs() { awk -v a="$BEST_WALL" -v f="$BASE" 'BEGIN {printf "%.2fx", a / f}'; }
run rule "$BIN" "${common[@]}" -c "$WORK/off.toml" "$FILE"
row "(b) one rule, no recorder" "$(vs)"
run ring "$BIN" "${common[@]}" -c "$WORK/ring.toml" --trigger-dir "$SNIPS" "$FILE"
row "(c) one rule, recorder on (64 MiB ring)" "$(vs)"
run fire "$BIN" "${common[@]}" -c "$WORK/fire.toml" --trigger-dir "$SNIPS" "$FILE"
row "(d) a rule that fires, snippets written" "$(vs)"

COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
mkdir -p "$(dirname "$OUT_TXT")"
{
    echo "# benches/trigger-overhead.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), memtap $COMMIT, $(nproc) cores"
    echo "# ${FILE#"$ROOT"/}: $PACKETS packets, $BYTES bytes; best of $RUNS runs"
    echo
    echo "| command                                      |  wall s |   CPU s |  packets/s |    MB/s | RSS MiB |  vs (a) |"
    echo "| -------------------------------------------- | ------: | ------: | ---------: | ------: | ------: | ------: |"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT_TXT"
log "written to $OUT_TXT"
