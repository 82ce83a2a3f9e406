#!/usr/bin/env bash
# Regenerate the pcap fixtures under testdata/pcaps/<case>/ from real traffic.
#
# For each case: start a real memcached on a free loopback port, start
# tcpdump on lo for that port, run the case's Python driver
# (scripts/fixtures/<case>.py) which talks to the server with real clients,
# asserts what the server answered and writes expected.jsonl + README.md,
# then stop tcpdump (SIGINT) and memcached.
#
# Usage: scripts/make-fixtures.sh [case ...]      (default: all cases)
#   cases: text_tcp meta_tcp binary_tcp udp udp_big mixed_noreply pipelined_tcp
# Env:   FIXTURE_BASE_PORT (default 21211)  first port tried
#        MEMTAP_FIXTURES_VENV               venv for the drivers
#                                           (default ~/.cache/memtap-fixtures/venv)
# Needs root (or CAP_NET_RAW) for tcpdump. Idempotent: a case directory is
# rebuilt in a temporary directory and swapped in only when it succeeded.
# Only 127.0.0.1 is ever used.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIXDIR="$ROOT/scripts/fixtures"
OUTROOT="$ROOT/testdata/pcaps"
ALL_CASES=(text_tcp meta_tcp binary_tcp udp udp_big mixed_noreply pipelined_tcp)
BASE_PORT="${FIXTURE_BASE_PORT:-21211}"
VENV="${MEMTAP_FIXTURES_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/memtap-fixtures/venv}"
MAX_BYTES=$((1024 * 1024))

log() { printf '[make-fixtures] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------ dependencies
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_install() {
    log "installing: $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
        { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

ensure_deps() {
    local missing=()
    command -v memcached >/dev/null || missing+=(memcached)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    command -v tshark >/dev/null || missing+=(tshark)
    command -v capinfos >/dev/null || missing+=(wireshark-common)
    [ -x /usr/bin/python3 ] || missing+=(python3)
    /usr/bin/python3 -c 'import pymemcache' 2>/dev/null || missing+=(python3-pymemcache)
    /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
    # bmemcached (python-binary-memcached) is not packaged by Debian: a venv
    # that also sees the system's pymemcache.
    if ! "$VENV/bin/python" -c 'import bmemcached, pymemcache' 2>/dev/null; then
        log "creating venv $VENV with python-binary-memcached"
        mkdir -p "$(dirname "$VENV")"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
        "$VENV/bin/python" -m pip install -q 'python-binary-memcached>=0.31' ||
            die "pip install python-binary-memcached failed"
        "$VENV/bin/python" -c 'import bmemcached, pymemcache' || die "venv still lacks bmemcached/pymemcache"
    fi
}

# ------------------------------------------------------------ processes
MC_PID=""
TD_PID=""
TMP_CASE=""
cleanup() {
    if [ -n "$TD_PID" ]; then kill -INT "$TD_PID" 2>/dev/null || true; wait "$TD_PID" 2>/dev/null || true; fi
    if [ -n "$MC_PID" ]; then kill -TERM "$MC_PID" 2>/dev/null || true; wait "$MC_PID" 2>/dev/null || true; fi
    if [ -n "$TMP_CASE" ] && [ -d "$TMP_CASE" ]; then rm -rf "$TMP_CASE"; fi
    TD_PID="" MC_PID="" TMP_CASE=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # first port >= $1 free for both TCP and UDP on 127.0.0.1
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
p = int(sys.argv[1])
while p < 65000:
    ok = True
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        sys.exit(0)
    p += 1
sys.exit(1)
EOF
}

wait_tcp() { # port
    for _ in $(seq 100); do
        if /usr/bin/python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

mc_user_args() {
    if [ "$(id -u)" = 0 ]; then
        if id memcache >/dev/null 2>&1; then echo "-u memcache"; else echo "-u nobody"; fi
    fi
}

td_user_args() { # keep tcpdump from dropping to a user that cannot write here
    if [ "$(id -u)" = 0 ]; then echo "-Z root"; fi
}

check_capture() { # dir port: every client of expected.jsonl is in the capture,
    # each TCP connection from its SYN to a FIN in both directions
    tshark -r "$1/capture.pcap" -T fields -E separator=, \
        -e ip.src -e tcp.srcport -e udp.srcport -e ip.dst -e tcp.dstport -e udp.dstport -e tcp.flags 2>/dev/null |
        /usr/bin/python3 -c '
import json, sys
port, expected = int(sys.argv[1]), sys.argv[2]
seen = {}
for line in sys.stdin:
    src, tsp, usp, dst, tdp, udp_, flags = (line.strip().split(",") + [""] * 7)[:7]
    sp, dp = int(tsp or usp), int(tdp or udp_)
    f = int(flags, 16) if flags else 0
    cport, to_server = (sp, True) if dp == port else (dp, False)
    s = seen.setdefault(cport, set())
    s.add("pkt")
    if f & 0x02 and not f & 0x10: s.add("syn")
    if f & 0x01: s.add("fin_c" if to_server else "fin_s")
ok = True
for c in {json.loads(l)["client"]: json.loads(l)["transport"] for l in open(expected)}.items():
    cport = int(c[0].rsplit(":", 1)[1])
    need = {"pkt"} if c[1] == "udp" else {"pkt", "syn", "fin_c", "fin_s"}
    if not need <= seen.get(cport, set()):
        print("client %s: missing %s" % (c[0], sorted(need - seen.get(cport, set()))), file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
' "$2" "$1/expected.jsonl"
}

# ------------------------------------------------------------ one case
run_case() {
    local case="$1" port="$2"
    local driver="$FIXDIR/$case.py"
    [ -f "$driver" ] || die "no driver $driver"
    TMP_CASE="$(mktemp -d "$OUTROOT/.$case.tmp.XXXXXX")"
    chmod 755 "$TMP_CASE"
    local udp_port=0
    case "$case" in udp | udp_*) udp_port="$port" ;; esac # UDP is off unless -U names a port

    # shellcheck disable=SC2046
    memcached $(mc_user_args) -l 127.0.0.1 -p "$port" -U "$udp_port" -m 64 -c 256 -t 2 \
        >"$TMP_CASE/memcached.log" 2>&1 &
    MC_PID=$!
    wait_tcp "$port" || die "$case: memcached did not come up on $port"

    # --immediate-mode: without it libpcap's TPACKET_V3 blocks hand packets
    # over only when full or after 1 s, and packets of a short run still in
    # the open block are lost at SIGINT. Immediate mode uses one ring frame
    # per packet of up to snaplen bytes, so the ring must be large (-B, KiB).
    # shellcheck disable=SC2046
    tcpdump -i lo --immediate-mode -B 131072 -w "$TMP_CASE/capture.pcap" -U -s 262144 $(td_user_args) "port $port" \
        2>"$TMP_CASE/tcpdump.err" &
    TD_PID=$!
    for _ in $(seq 200); do
        grep -q "listening on" "$TMP_CASE/tcpdump.err" 2>/dev/null && break
        kill -0 "$TD_PID" 2>/dev/null || die "$case: tcpdump exited: $(cat "$TMP_CASE/tcpdump.err")"
        sleep 0.05
    done
    grep -q "listening on" "$TMP_CASE/tcpdump.err" || die "$case: tcpdump not listening"
    sleep 0.2

    log "$case: memcached $MC_VERSION on 127.0.0.1:$port, driving traffic"
    (cd "$FIXDIR" && MEMCACHED_VERSION="$MC_VERSION" "$VENV/bin/python" "$driver" --port "$port" --out "$TMP_CASE") ||
        die "$case: driver failed"

    sleep 1 # let the last FIN/ACKs reach the capture
    kill -INT "$TD_PID"
    wait "$TD_PID" || true
    TD_PID=""
    kill -TERM "$MC_PID"
    wait "$MC_PID" 2>/dev/null || true
    MC_PID=""

    local dropped
    dropped="$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$TMP_CASE/tcpdump.err")"
    [ "${dropped:-x}" = 0 ] || die "$case: tcpdump dropped packets: $(cat "$TMP_CASE/tcpdump.err")"
    local size
    size=$(stat -c %s "$TMP_CASE/capture.pcap")
    [ "$size" -lt "$MAX_BYTES" ] || die "$case: capture is $size bytes (limit $MAX_BYTES)"
    local packets records
    packets=$(capinfos -T -r -M -c "$TMP_CASE/capture.pcap" | awk -F'\t' '{print $2}')
    records=$(wc -l <"$TMP_CASE/expected.jsonl")
    check_capture "$TMP_CASE" "$port" || die "$case: capture does not hold every connection of expected.jsonl"
    local dissected
    dissected=$(tshark -r "$TMP_CASE/capture.pcap" -d "tcp.port==$port,memcache" -d "udp.port==$port,memcache" \
        -Y memcache 2>/dev/null | wc -l)

    rm -f "$TMP_CASE/memcached.log" "$TMP_CASE/tcpdump.err"
    rm -rf "${OUTROOT:?}/$case"
    mv "$TMP_CASE" "$OUTROOT/$case"
    TMP_CASE=""
    log "$case: $records records, $packets packets, $size bytes, tshark memcache frames: $dissected"
}

# ------------------------------------------------------------ main
main() {
    local cases=("$@")
    [ "${#cases[@]}" -gt 0 ] || cases=("${ALL_CASES[@]}")
    for c in "${cases[@]}"; do
        [ -f "$FIXDIR/$c.py" ] || die "unknown case '$c' (known: ${ALL_CASES[*]})"
    done
    ensure_deps
    MC_VERSION="$(memcached -V | awk '{print $2}')"
    mkdir -p "$OUTROOT"
    rm -rf "$OUTROOT"/.*.tmp.* 2>/dev/null || true
    local port=$BASE_PORT c
    for c in "${cases[@]}"; do
        port="$(free_port "$port")" || die "no free port"
        run_case "$c" "$port"
        port=$((port + 1))
    done
    log "done: ${cases[*]}"
}

main "$@"
