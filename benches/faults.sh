#!/usr/bin/env bash
# The faults of issue 19, made for real, against two memtap binaries:
#   benches/faults.sh OLD_BIN NEW_BIN
# Prints one line per fault and binary: report complete?, data lost or
# misplaced?, exit status and wall time, /healthz, counters. Needs root
# (tmpfs mounts, a veth pair in a namespace). Wall times on a shared
# machine: the timeouts dominate them, not CPU.
set -u
OLD=$1; NEW=$2
W=$(mktemp -d); trap 'umount -l $W/small $W/snips 2>/dev/null; ip netns del mfb 2>/dev/null; rm -rf $W' EXIT
HERE=$(cd "$(dirname "$0")" && pwd)
python3 "$HERE/faults-gen.py" $W/a.pcap 20 30 0 >/dev/null
python3 "$HERE/faults-gen.py" $W/b.pcap 2 10 1 >/dev/null
T="-t 10.0.0.1:11211"
ms() { date +%s%3N; }
req() { python3 -c 'import json,sys
try: print(json.load(sys.stdin)["totals"]["requests"])
except Exception as e: print("none")'; }

for bin in $OLD $NEW; do
  tag=$([ $bin = $OLD ] && echo before || echo after)
  new=$([ $bin = $NEW ] && echo 1 || echo 0)
  # 1+2: store on a full tmpfs, then a run into another store.
  rm -rf $W/spool $W/other.db; mkdir -p $W/spool $W/small
  mount -t tmpfs -o size=2m tmpfs $W/small
  printf '[store]\nspool_dir = "%s"\nsniffer = "s1"\n' $W/spool > $W/s.toml
  [ $new = 1 ] && echo 'flush_timeout = "5s"' >> $W/s.toml
  $bin replay -q -c $W/s.toml --window 1s --store sqlite:$W/small/h.db -f json $T $W/b.pcap >/dev/null 2>&1
  dd if=/dev/zero of=$W/small/fill bs=4k 2>/dev/null
  t=$(ms); $bin replay -q -c $W/s.toml --window 1s --store sqlite:$W/small/h.db -f json $T $W/a.pcap > $W/out 2>$W/err; rc=$?
  echo "$tag full-store replay: exit $rc in $(( $(ms)-t )) ms, report requests $(req < $W/out) (want 12000), spool files $(ls $W/spool | grep -c jsonl)"
  $bin replay -q -c $W/s.toml --window 1s --store sqlite:$W/other.db -f json $T $W/b.pcap >/dev/null 2>&1
  echo "$tag   next run into another store: it holds $($bin report -f json --store sqlite:$W/other.db 2>/dev/null | req) requests (want 400)"
  umount -l $W/small

  # 3: a webhook that never answers (20 clients fire and clear).
  python3 -c 'import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(("127.0.0.1",18999)); s.listen(1000)
c=[]
while True: c.append(s.accept())' & HUNG=$!
  sleep 1
  printf '[[trigger]]\nname = "busy"\nmetric = "client_requests_per_s"\nabove = 5.0\nclear = 1.0\nwindow = "1s"\nwebhook = "http://127.0.0.1:18999/h"\n' > $W/h.toml
  t=$(ms); $bin replay -q -c $W/h.toml -f json $T $W/a.pcap > $W/out 2>$W/err; rc=$?
  echo "$tag hung webhook replay: exit $rc in $(( $(ms)-t )) ms, report requests $(req < $W/out), $(python3 -c 'import json,sys
t=json.load(open(sys.argv[1]))["triggers"]; print("events",len(t["events"]),"failed",t["webhooks_failed"],"dropped",t["actions_dropped"],"abandoned",t.get("actions_abandoned","-"))' $W/out 2>/dev/null)"
  kill $HUNG; wait $HUNG 2>/dev/null

  # 5: a command that prints.
  printf '[[trigger]]\nname = "busy"\nmetric = "client_requests_per_s"\nabove = 5.0\nclear = 1.0\nwindow = "1s"\ncommand = "echo X"\n' > $W/c.toml
  $bin replay -q -c $W/c.toml -f json $T $W/b.pcap > $W/out 2>/dev/null
  echo "$tag command echo: stdout is the JSON report: $(python3 -c 'import json,sys; json.load(open(sys.argv[1])); print("yes")' $W/out 2>/dev/null || echo "no ($(head -c 20 $W/out | tr '\n' ' '))")"

  # 6: unwritable --report-file.
  t=$(ms); timeout 5 $bin capture -i lo --no-listen $T --report-file /nonexistent/dir/r.json >/dev/null 2>$W/err; rc=$?
  echo "$tag --report-file /nonexistent/dir: exit $rc after $(( $(ms)-t )) ms (124 = still capturing at 5 s): $(grep -v 'memory budget\|capturing on' $W/err | head -1)"

  # 8: snippets on a full disk.
  mkdir -p $W/snips; mount -t tmpfs -o size=64k tmpfs $W/snips
  printf '[[trigger]]\nname = "busy"\nmetric = "client_requests_per_s"\nabove = 5.0\nclear = 1.0\nwindow = "1s"\nbefore = "1s"\nafter = "1s"\n[recorder]\ndir = "%s"\n' $W/snips > $W/n.toml
  $bin replay -q -c $W/n.toml -f json $T $W/a.pcap > $W/out 2>/dev/null
  $bin replay -q -c $W/n.toml -f json $T $W/a.pcap > $W/out 2>/dev/null
  echo "$tag full snippet disk (two runs): errors $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["triggers"]["snippet_errors"])' $W/out), files $(ls -A $W/snips | wc -l), empty files $(find $W/snips -size 0 | wc -l), unreadable $(for f in $W/snips/memtap-*; do $NEW replay -q -f json $T $f >/dev/null 2>&1 || echo x; done | wc -l)"
  umount -l $W/snips

  # 4: the interface deleted and made again (afpacket).
  ip netns add mfb; ip link add mfba type veth peer name mfbb; ip link set mfbb netns mfb
  ip addr add 10.78.0.1/24 dev mfba; ip link set mfba up
  ip netns exec mfb ip addr add 10.78.0.2/24 dev mfbb; ip netns exec mfb ip link set mfbb up
  $bin capture -i mfba --workers 1 -t 10.78.0.1:11211 --listen 127.0.0.1:18998 -f json --report-file $W/r.json 2>$W/err & CAP=$!
  sleep 1.5
  h() { curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18998/healthz; }
  h0=$(h); ip link del mfba; sleep 2; h1=$(h)
  ip link add mfba type veth peer name mfbb; ip link set mfbb netns mfb
  ip addr add 10.78.0.1/24 dev mfba; ip link set mfba up
  ip netns exec mfb ip addr add 10.78.0.2/24 dev mfbb; ip netns exec mfb ip link set mfbb up
  sleep 2
  ip netns exec mfb bash -c 'for i in $(seq 50); do printf "\000\001\000\000\000\001\000\000get k$i\r\n" > /dev/udp/10.78.0.1/11211; done'
  sleep 1.5; h2=$(h)
  kill -INT $CAP; wait $CAP
  echo "$tag interface deleted: /healthz $h0 -> deleted $h1 -> re-created $h2; packets after re-creation in report: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["packets"])' $W/r.json) (want 50)"
  ip netns del mfb
done
