#!/usr/bin/env bash
# Miss-ratio curve against a real memcached (issue 18, item 7).
#
# One look-aside workload (examples/mrc_load.rs: Zipf keys, mixed value
# sizes, get -> on miss set) runs against a fresh memcached for each -m
# size; the server's own `stats` (get_hits / get_misses) give the measured
# hit ratio. The run at CAPTURE_AT MiB is captured on lo with tcpdump, and
# examples/mrc_replay.rs computes the curve from that one capture (memtap's
# decoder and session engine feeding collect::mrc), exact and sampled,
# with memcached's item sizes and with slab-chunk-rounded sizes. Prints
# the side-by-side table and the mean absolute errors; writes it to
# bench-out/mrc-vs-memcached.txt.
#
#   benches/mrc-vs-memcached.sh                      # defaults below, as root
#   KEYS=100000 GETS=1000000 SIZES="8 32" benches/mrc-vs-memcached.sh
#   PROFILE=release benches/mrc-vs-memcached.sh      # optimised examples
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEYS="${KEYS:-300000}"
GETS="${GETS:-1500000}"
ALPHA="${ALPHA:-0.9}"
SEED="${SEED:-1}"
SIZES="${SIZES:-8 16 32 64 128}"
CAPTURE_AT="${CAPTURE_AT:-${SIZES##* }}"
RATE="${RATE:-0.01}"
PORT="${PORT:-22411}"
PROFILE="${PROFILE:-dev}"
MEMCACHED="${MEMCACHED:-/usr/bin/memcached}"
OUT="$ROOT/bench-out"
PCAP="$OUT/mrc-${CAPTURE_AT}m.pcap"
TXT="${OUT_TXT:-$OUT/mrc-vs-memcached.txt}"
log() { echo "mrc-vs-memcached: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (tcpdump, memcached -u root)"
[ -x "$MEMCACHED" ] || die "$MEMCACHED missing (scripts/setup.sh installs it)"
command -v tcpdump >/dev/null || die "tcpdump missing"
mkdir -p "$OUT"

log "building the examples ($PROFILE profile)"
(cd "$ROOT" && cargo build --quiet --profile "$PROFILE" --example mrc_load --example mrc_replay)
DIR="$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/examples"

MC_PID="" TD_PID=""
cleanup() {
    [ -z "$TD_PID" ] || kill "$TD_PID" 2>/dev/null || true
    [ -z "$MC_PID" ] || kill "$MC_PID" 2>/dev/null || true
}
trap cleanup EXIT

# stats: the running server's counters (general and slabs).
stats() {
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'stats\r\nstats slabs\r\nquit\r\n' >&3
    tr -d '\r' <&3
    exec 3<&-
}

declare -A MEASURED EVICTIONS MALLOCED
for m in $SIZES; do
    "$MEMCACHED" -u root -l 127.0.0.1 -p "$PORT" -U 0 -t 2 -m "$m" &
    MC_PID=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    if [ "$m" = "$CAPTURE_AT" ]; then
        tcpdump -i lo -s 0 -B 262144 -w "$PCAP" "tcp port $PORT" 2>"$OUT/mrc-tcpdump.err" &
        TD_PID=$!
        sleep 1
    fi
    log "-m $m: $GETS gets over $KEYS keys (alpha $ALPHA)"
    load="$("$DIR/mrc_load" "127.0.0.1:$PORT" --keys "$KEYS" --gets "$GETS" --alpha "$ALPHA" --seed "$SEED")"
    if [ -n "$TD_PID" ]; then
        sleep 1
        kill -INT "$TD_PID"
        wait "$TD_PID" || true
        TD_PID=""
        grep -E 'captured|dropped' "$OUT/mrc-tcpdump.err" >&2 || true
        LOAD_JSON="$load"
    fi
    s="$(stats)"
    hits="$(awk '$2 == "get_hits" {print $3}' <<<"$s")"
    misses="$(awk '$2 == "get_misses" {print $3}' <<<"$s")"
    EVICTIONS[$m]="$(awk '$2 == "evictions" {print $3}' <<<"$s")"
    # Slab pages really held: every slab class in use gets its first 1 MiB
    # page even past -m, so small -m sizes hold more than they say.
    MALLOCED[$m]="$(awk '$2 == "total_malloced" {print $3 / 1048576}' <<<"$s")"
    MEASURED[$m]="$(awk -v h="$hits" -v m="$misses" 'BEGIN {printf "%.4f", h / (h + m)}')"
    log "-m $m: client $load; server hit ratio ${MEASURED[$m]}, evictions ${EVICTIONS[$m]}, slab pages ${MALLOCED[$m]} MiB"
    kill "$MC_PID"
    wait "$MC_PID" 2>/dev/null || true
    MC_PID=""
done

log "curve from $PCAP ($(stat -L -c %s "$PCAP") bytes)"
at="$(for m in $SIZES; do echo "$m"; echo "${MALLOCED[$m]}"; done | sort -n -u | paste -sd,)"
/usr/bin/time -v -o "$OUT/mrc-replay.time" "$DIR/mrc_replay" "$PCAP" "127.0.0.1:$PORT" \
    --at "$at" --rate "$RATE" --json "$OUT/mrc-curves.json" >"$OUT/mrc-replay.out"
cat "$OUT/mrc-replay.out" >&2

{
    echo "# mrc-vs-memcached $(date -u +%FT%TZ) commit $(git -C "$ROOT" rev-parse --short HEAD) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# workload: keys $KEYS, gets $GETS, alpha $ALPHA, seed $SEED; capture at -m $CAPTURE_AT: $LOAD_JSON"
    echo "# $(head -n 1 "$OUT/mrc-replay.out")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "-m_MiB" measured evictions exact@m sampled@m exact_chunk@m sampled_chunk@m pages_MiB exact@pages exact_chunk@pages
    for m in $SIZES; do
        row="$(awk -v m="$m" '$1 == m' "$OUT/mrc-replay.out")"
        prow="$(awk -v m="${MALLOCED[$m]}" '$1 == m' "$OUT/mrc-replay.out")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "${MEASURED[$m]}" "${EVICTIONS[$m]}" "$(cut -f2- <<<"$row")" \
            "${MALLOCED[$m]}" "$(cut -f2 <<<"$prow")" "$(cut -f4 <<<"$prow")"
    done | tee "$OUT/mrc-table.tsv"
    awk -F'\t' 'function d(a, b) {return a > b ? a - b : b - a}
        {for (i = 4; i <= 7; i++) s[i] += d($i, $2); p9 += d($9, $2); p10 += d($10, $2); n++}
        END {printf "# mean |curve - measured| (points) at -m: exact %.2f, sampled %.2f, exact_chunk %.2f, sampled_chunk %.2f; at the slab pages held: exact %.2f, exact_chunk %.2f\n",
             100 * s[4] / n, 100 * s[5] / n, 100 * s[6] / n, 100 * s[7] / n, 100 * p9 / n, 100 * p10 / n}' "$OUT/mrc-table.tsv"
    echo "# $(grep 'MAE' "$OUT/mrc-replay.out")"
    echo "# replay: $(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} /Maximum resident/ {r = $2} END {printf "%.2f s cpu, %d KiB peak RSS", u + s, r}' "$OUT/mrc-replay.time")"
} | tee "$TXT"
