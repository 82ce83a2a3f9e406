#!/usr/bin/env bash
# CPU per stage of `memtap replay`, for the sizing table (docs/performance.md,
# "Sizing"): what reading and decoding, a worker and a collector cost per
# packet and per record, from the threads' own CPU clocks (the line
# `replay -v` prints). Median and minimum of RUNS runs, with 1 worker and
# 1 collector and with the defaults.
#
# Usage: benches/stage-costs.sh FILE TARGET [BIN]
# Env: RUNS (default 5), EXTRA (more replay flags, e.g. "-c noinsight.toml").
set -euo pipefail

FILE="${1:?usage: stage-costs.sh FILE TARGET [BIN]}"
TARGET="${2:?usage: stage-costs.sh FILE TARGET [BIN]}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${3:-$ROOT/target/release/memtap}"
RUNS="${RUNS:-5}"
EXTRA="${EXTRA:-}"

[ -x "$BIN" ] || { echo "stage-costs: no binary at $BIN (cargo build --release)" >&2; exit 2; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cat "$FILE" >/dev/null # page cache
for mode in "--workers 1 --collectors 1" ""; do
    for _ in $(seq "$RUNS"); do
        # shellcheck disable=SC2086
        "$BIN" replay -v --format json --target "$TARGET" $mode $EXTRA "$FILE" \
            2>&1 >/dev/null | grep '^memtap: CPU:' >>"$WORK/lines" || true
    done
done
[ -s "$WORK/lines" ] || { echo "stage-costs: replay printed no CPU line" >&2; exit 1; }

python3 - "$WORK/lines" <<'PY'
import re, statistics, sys
by = {}
for line in open(sys.argv[1]):
    body = line.split("CPU: ", 1)[1]
    parts = re.findall(r"([a-z ,0-9]+?) ([0-9.]+) s \(([0-9.]+) µs a (packet|record)\)", body)
    shape = tuple(p[0].strip(" ,") for p in parts)
    by.setdefault(shape, []).append([(float(s), float(us)) for _, s, us, _ in parts])
for shape, runs in by.items():
    print(f"{len(runs)} runs, median (minimum: the least disturbed run on a shared machine):")
    for i, name in enumerate(shape):
        s = statistics.median(r[i][0] for r in runs)
        us = statistics.median(r[i][1] for r in runs)
        lo = min(r[i][1] for r in runs)
        unit = "record" if "collector" in name else "packet"
        print(f"  {name:34s} {s:6.2f} s CPU  {us:6.3f} ({lo:.3f}) µs a {unit}")
PY
