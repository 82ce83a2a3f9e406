#!/usr/bin/env bash
# RSS of memtap's listener before, during and after 20,000 idle half-sent
# HTTP requests on loopback, and how long /metrics takes meanwhile:
#   benches/http-abuse.sh BIN [CONNS]
set -u
BIN=$1; N=${2:-20000}
# Raise the descriptor limit where allowed (a container may cap it at 20000).
ulimit -n 65536 2>/dev/null || true
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d); trap 'kill $MT 2>/dev/null; rm -rf $W' EXIT
python3 "$HERE/faults-gen.py" $W/b.pcap 2 10 1 >/dev/null
$BIN replay -q -f json -t 10.0.0.1:11211 --serve --listen 127.0.0.1:18997 $W/b.pcap >/dev/null 2>$W/err & MT=$!
until curl -sf -o /dev/null http://127.0.0.1:18997/healthz; do sleep 0.2; done
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$MT/status; }
m() { curl -s -o /dev/null -m 10 -w '%{http_code} in %{time_total} s' http://127.0.0.1:18997/metrics; }
echo "before: RSS $(rss); /metrics $(m)"
rm -f /tmp/.abuse-ready.*
for part in 0 1 2; do
python3 - "$((N / 3))" "$part" <<'PY' &
import socket, sys, time
socket.setdefaulttimeout(1)
n = int(sys.argv[1]); held = []
ready = open("/tmp/.abuse-part." + sys.argv[2], "w")
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", 18997))
        s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    except OSError as e:
        pass
ready.write(str(len(held)) + "\n"); ready.close()
import os; os.rename("/tmp/.abuse-part." + sys.argv[2], "/tmp/.abuse-ready." + sys.argv[2])
time.sleep(8)
PY
done
while [ $(ls /tmp/.abuse-ready.* 2>/dev/null | wc -l) -lt 3 ]; do sleep 0.2; done
echo "during: $(cat /tmp/.abuse-ready.* | paste -sd+ | bc) connections opened; RSS $(rss); /metrics $(m); fds $(ls /proc/$MT/fd | wc -l)"
sleep 2
echo "during (+2 s): RSS $(rss); /metrics $(m); fds $(ls /proc/$MT/fd | wc -l)"
wait $(jobs -p | grep -v "^$MT$") 2>/dev/null; rm -f /tmp/.abuse-ready.*
sleep 3
echo "after: RSS $(rss); /metrics $(m); fds $(ls /proc/$MT/fd | wc -l)"
grep -i "http" $W/err | head -5; echo "HTTP log lines: $(grep -c "HTTP" $W/err)"
