# Shared by the loopback benchmarks (sourced, not run): multiget-100k.sh,
# deep-pipeline.sh. Expects ROOT and the log/die functions; sets WORK (a
# temporary directory, removed on exit with what it started).
#   loopback_start NAME  starts a real memcached on a 127.0.0.1 port (PORT)
#                        and tcpdump on lo into $WORK/NAME.pcap, then writes
#                        30,000 of the keys user:0..99999:profile (i % 10 < 3,
#                        100-byte values) over one connection
#   loopback_client      Python source that connects `s` to the server
#                        (the port is the script's first argument)
#   loopback_stop        stops tcpdump; dies if the kernel dropped packets
for t in memcached tcpdump /usr/bin/time python3; do
    command -v "$t" >/dev/null || die "$t missing (bash scripts/setup.sh)"
done
loopback_client='
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
'
WORK="$(mktemp -d)"
trap 'kill ${LOOPBACK_TCPDUMP:-} ${LOOPBACK_MC:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

loopback_start() {
    LOOPBACK_PCAP="$WORK/$1.pcap"
    PORT=$((23000 + RANDOM % 2000))
    memcached -u nobody -l 127.0.0.1 -p "$PORT" -m 256 &
    LOOPBACK_MC=$!
    tcpdump -i lo -U -B 65536 -s 0 -w "$LOOPBACK_PCAP" "tcp port $PORT" 2>"$WORK/tcpdump.err" &
    LOOPBACK_TCPDUMP=$!
    sleep 1
    python3 -c "$loopback_client"'
s.sendall(b"".join(b"set user:%d:profile 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100)
                   for i in range(100_000) if i % 10 < 3) + b"mn\r\n")
got = b""
while not got.endswith(b"MN\r\n"):
    got += s.recv(65536)
' "$PORT"
}

loopback_stop() {
    sleep 1
    kill -INT "$LOOPBACK_TCPDUMP"
    wait "$LOOPBACK_TCPDUMP" 2>/dev/null || true
    LOOPBACK_TCPDUMP=""
    grep -q "^0 packets dropped by kernel" "$WORK/tcpdump.err" ||
        die "tcpdump dropped packets: $(cat "$WORK/tcpdump.err")"
}
