# Shared by the benchmark scripts (sourced, not run): installs the tools,
# builds memtap, finds the capture and its server, and defines
#   run NAME CMD...   RUNS timed runs; sets BEST_WALL, BEST_CPU, MAX_RSS_KB
#   row LABEL VS      appends a table row for the last `run` to ROWS
# Expects ROOT, FILE, TARGET, RUNS, BUILD and the log/die functions.
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
BYTES="$(stat -L -c %s "$FILE")"
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
        -v p="$PACKETS" -v b="$BYTES" -v f="$2" -v nw="${ROW_WIDTH:-34}" 'BEGIN {
        printf "| %-" nw "s | %7.3f | %7.2f | %10.0f | %7.1f | %7.1f | %8s |", n, w, c, p / w, b / w / 1e6, r / 1024, f
    }')")
}
