#!/usr/bin/env bash
# Runs the fuzz targets of tests/fuzz/ longer than the test suite does:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET_FILTER]
# e.g. `scripts/fuzz.sh 600` (ten minutes each), `scripts/fuzz.sh 60 engine`.
# A failing input is kept under target/fuzz-failures/ and named by its
# seed; `MEMTAP_FUZZ_SEED=N cargo test --release --test fuzz NAME` reruns it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
filter="${2:-}"
MEMTAP_FUZZ_SECS="$secs" cargo test --release --test fuzz -- --nocapture $filter 2>&1 |
    grep -E '^(fuzz |test |thread .* panicked|failures:|seed )|test result'
