#!/usr/bin/env bash
# Replay speed of several memtap binaries beside the floor, run interleaved
# (round-robin, so the shared VM's drift hits every command alike) and
# summarised by the median of RUNS runs: wall and CPU (user+sys) seconds,
# and the ratio of the median wall time to tcpdump's.
#
#   cat FILE > /dev/null                 reading the file
#   tcpdump -r FILE -w /dev/null         the floor of the issue
#   LABEL replay, 1 worker 1 collector   for each binary of BINS
#   LABEL replay, default workers
#   ... and both again with [insight] enabled = false (INSIGHT_OFF=1)
#   tshark -r FILE -q                    once (TSHARK=1)
#
# Usage: benches/replay-side-by-side.sh FILE TARGET LABEL=BIN [LABEL=BIN...]
# Env: RUNS (default 5), INSIGHT_OFF (default 1), TSHARK (default 1),
#      OUT_TXT (default bench-out/replay-side-by-side.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 3 ] || { sed -n '2,16p' "$0"; exit 2; }
FILE="$1"; TARGET="$2"; shift 2
RUNS="${RUNS:-5}"
INSIGHT_OFF="${INSIGHT_OFF:-1}"
TSHARK="${TSHARK:-1}"
OUT_TXT="${OUT_TXT:-$ROOT/bench-out/replay-side-by-side.txt}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
printf '[insight]\nenabled = false\n' >"$WORK/noinsight.toml"

NAMES=()
CMDS=()
add() { NAMES+=("$1"); shift; CMDS+=("$*"); }
add "cat FILE > /dev/null" cat "$FILE"
add "tcpdump -r FILE -w /dev/null" tcpdump -r "$FILE" -w /dev/null
for lb in "$@"; do
    label="${lb%%=*}"; bin="${lb#*=}"
    [ -x "$bin" ] || { echo "no binary $bin" >&2; exit 1; }
    rep=(replay -q --format json --target "$TARGET")
    add "$label replay, 1 worker 1 collector" "$bin" "${rep[@]}" --workers 1 --collectors 1 "$FILE"
    add "$label replay, default workers" "$bin" "${rep[@]}" "$FILE"
    if [ "$INSIGHT_OFF" = 1 ] && "$bin" replay -c "$WORK/noinsight.toml" -q --format json \
        --target "$TARGET" "$FILE" >/dev/null 2>&1 </dev/null; then
        add "$label replay, w1 c1, insight off" "$bin" "${rep[@]}" -c "$WORK/noinsight.toml" --workers 1 --collectors 1 "$FILE"
        add "$label replay, default, insight off" "$bin" "${rep[@]}" -c "$WORK/noinsight.toml" "$FILE"
    fi
done

cat "$FILE" >/dev/null
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$RUNS"); do
    for i in "${!CMDS[@]}"; do
        # shellcheck disable=SC2086
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/t" ${CMDS[$i]} >/dev/null 2>"$WORK/err" ||
            { cat "$WORK/err" >&2; echo "failed: ${CMDS[$i]}" >&2; exit 1; }
        awk -v i="$i" '{print i, $1, $2 + $3, $4}' "$WORK/t" >>"$WORK/all"
        printf '[side-by-side] run %s: %s: %s\n' "$r" "${NAMES[$i]}" "$(cat "$WORK/t")" >&2
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
FLOOR=$(awk '$1 == 1 {print $2}' "$WORK/all" | median)
{
    echo "# benches/replay-side-by-side.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# $FILE ($(stat -L -c %s "$FILE") bytes), target $TARGET; median of $RUNS interleaved runs"
    echo "# machine: $(nproc) cores, load average before $LOAD_BEFORE, after $LOAD_AFTER"
    echo
    echo "| command | wall s | CPU s | peak RSS MiB | wall / tcpdump |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for i in "${!CMDS[@]}"; do
        w=$(awk -v i="$i" '$1 == i {print $2}' "$WORK/all" | median)
        c=$(awk -v i="$i" '$1 == i {print $3}' "$WORK/all" | median)
        m=$(awk -v i="$i" '$1 == i && $4 > m {m = $4} END {printf "%.0f", m / 1024}' "$WORK/all")
        printf '| %s | %.3f | %.2f | %s | %.2fx |\n' "${NAMES[$i]}" "$w" "$c" "$m" \
            "$(awk -v a="$w" -v b="$FLOOR" 'BEGIN {print a / b}')"
    done
    if [ "$TSHARK" = 1 ] && command -v tshark >/dev/null; then
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/t" tshark -r "$FILE" -q >/dev/null 2>&1
        read -r w u s m <"$WORK/t"
        printf '| tshark -r FILE -q (1 run) | %.3f | %.2f | %.0f | %.2fx |\n' "$w" \
            "$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}')" "$((m / 1024))" \
            "$(awk -v a="$w" -v b="$FLOOR" 'BEGIN {print a / b}')"
    fi
} | tee "$OUT_TXT"
