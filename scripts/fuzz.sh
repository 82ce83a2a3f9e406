#!/usr/bin/env bash
# Fuzzes every stage that reads untrusted bytes:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET_FILTER]
# e.g. `scripts/fuzz.sh 600` (ten minutes each), `scripts/fuzz.sh 60 engine`.
#
# Coverage-guided (libFuzzer, the targets of fuzz/) when the nightly
# toolchain and cargo-fuzz are installed: seeds from the fixtures and a
# dictionary of memcached words (scripts/fuzz-seeds.py), one target after
# the other, each for SECONDS, its corpus kept in fuzz/corpus/TARGET so the
# next run goes on from it. A failing input lands in fuzz/artifacts/TARGET/;
# `fuzz/target/*/release/TARGET FILE` replays it; once fixed, it goes in
# fuzz/regressions/TARGET/, which is replayed before each run. The last
# line per target:
# executions, edges covered (cov), features, corpus size.
#
# Otherwise (or with MEMTAP_FUZZ=stable) the seeded mutation harness of
# tests/fuzz/ on the stable toolchain; a failing input is kept under
# target/fuzz-failures/ and named by its seed; `MEMTAP_FUZZ_SEED=N cargo
# test --release --test fuzz NAME` reruns it.
#
# Runs under `nice` (MEMTAP_FUZZ_NICE, default 19), one process per target;
# builds into MEMTAP_FUZZ_TARGET_DIR (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
filter="${2:-}"
nice_level="${MEMTAP_FUZZ_NICE:-19}"

coverage_guided() {
    [ "${MEMTAP_FUZZ:-}" != stable ] &&
        rustup toolchain list 2>/dev/null | grep -q '^nightly' &&
        cargo +nightly fuzz --version >/dev/null 2>&1
}

if ! coverage_guided; then
    echo "fuzz: nightly or cargo-fuzz missing; the stable harness (tests/fuzz/)" >&2
    MEMTAP_FUZZ_SECS="$secs" nice -n "$nice_level" cargo test --release --test fuzz -- --nocapture $filter 2>&1 |
        grep -E '^(fuzz |test |thread .* panicked|failures:|seed )|test result'
    exit "${PIPESTATUS[0]}"
fi

python3 scripts/fuzz-seeds.py
# No sanitizer: memtap has no unsafe code (#![deny(unsafe_code)]), and
# without ASan each target runs about twice as many inputs. Debug
# assertions on: they are invariants too.
tdir="${MEMTAP_FUZZ_TARGET_DIR:-fuzz/target}"
nice -n "$nice_level" cargo +nightly fuzz build --fuzz-dir fuzz -s none -a --codegen-units 16 --target-dir "$tdir"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin="$tdir/$triple/release"
failed=()
for t in $(cargo +nightly fuzz list --fuzz-dir fuzz); do
    case "$t" in *"$filter"*) ;; *) continue ;; esac
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t.log"
    # Inputs that once broke an invariant (committed, unlike the corpus)
    # run first, each once: a regression fails here, not by chance later.
    reg=(fuzz/regressions/"$t"/*)
    if [ -e "${reg[0]}" ] && ! "$bin/$t" "${reg[@]}" >"$log.regressions" 2>&1; then
        echo "fuzz $t: a regression input fails (fuzz/regressions/$t/)" >&2
        grep -E 'panicked|Running:|SUMMARY' "$log.regressions" | tail -5 >&2 || true
        failed+=("$t")
        continue
    fi
    rc=0
    nice -n "$nice_level" "$bin/$t" "fuzz/corpus/$t" -dict=fuzz/memcached.dict \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || rc=$?
    last="$(grep -E '^#[0-9]+' "$log" | tail -1 || true)"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(find "fuzz/corpus/$t" -type f | wc -l)"
    echo "fuzz $t: ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?}, corpus $corp files, ${secs} s, exit $rc"
    if [ "$rc" != 0 ]; then
        failed+=("$t")
        grep -E 'panicked|ERROR|Test unit written|SUMMARY|deadly signal|timeout' "$log" | head -20 >&2 || true
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: failures in ${failed[*]} (inputs in fuzz/artifacts/, logs fuzz/artifacts/*.log)" >&2
    exit 1
fi
