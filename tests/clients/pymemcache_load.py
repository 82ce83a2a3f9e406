#!/usr/bin/python3
"""pymemcache_load: drives real memcached servers (or twemproxy) with
pymemcache (Debian's python3-pymemcache), for tests/servers_counters.rs.

Usage: pymemcache_load.py direct HOST:PORT[,HOST:PORT...]
       pymemcache_load.py small HOST:PORT[,HOST:PORT...]
       pymemcache_load.py proxy HOST:PORT [--threads N] [--pause PID,...]

direct: a HashClient over the servers (pymemcache's own key distribution)
  and one plain Client per server, each with default_noreply on (the
  library's default: storage, delete and touch send `noreply`) and off:
  set_many (one pipelined write of many `set`s), get_many / gets_many (one
  `get k1 k2 ...` line per server), get, gets + cas (good, stale and
  missing ids), incr/decr hits and misses, touch hits and misses, delete
  and delete_many (pipelined), add / replace / append / prepend.
small: the same commands on a HashClient that always waits for replies,
  get_many of 20 keys: the control run memtap must already get right.
proxy: N threads (default 32), each with its own connection to the proxy,
  at once: set_many, get_many of 1,000 keys (the proxy splits each line
  per server and pipelines every client's requests on its few server
  connections), get, gets + cas, incr/decr, touch, delete_many. --pause
  names the servers' pids: they are stopped while the first get_many round
  is sent, so that the pipelines are deep on any machine.

Standard output: one JSON object, the client's own tally ("phase/op/what":
count). Exit status 0 unless the load itself failed.
"""

import collections
import json
import os
import signal
import sys
import threading
import time

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

TALLY = collections.Counter()
LOCK = threading.Lock()


def tally(phase, op, what, n=1):
    with LOCK:
        TALLY["%s/%s/%s" % (phase, op, what)] += n


def key(family, i):
    # ~40 bytes, as application keys are: a 2,000-key get_many is an
    # 80 KiB line.
    return "%s:%06d:pymemcache-abcdefghijklmnopqrstu" % (family, i)


def addr(s):
    host, port = s.rsplit(":", 1)
    return (host, int(port))


def basics(phase, c, fam, n, noreply_default, small=False):
    """One client's worth of every command; `c` is a HashClient or Client."""
    present = {key(fam, i): b"v%d" % i for i in range(0, n, 2)}
    c.set_many(present)
    tally(phase, "set_many", "keys", len(present))
    for lo in range(0, n, 20 if small else n):
        got = c.get_many([key(fam, i) for i in range(lo, min(n, lo + (20 if small else n)))])
        tally(phase, "get_many", "hits", len(got))
    tally(phase, "get_many", "keys", n)
    got = c.gets_many([key(fam, i) for i in range(0, 40)])
    tally(phase, "gets_many", "hits", len(got))
    for i in range(0, 40):
        tally(phase, "get", "hit" if c.get(key(fam, i)) is not None else "miss")
    # gets + cas: fetched id (stored), the same id again (exists), a key
    # that is not there (not found).
    for i in range(0, 20, 2):
        k = key(fam, i)
        v, cas = c.gets(k)
        tally(phase, "gets", "hit" if v is not None else "miss")
        tally(phase, "cas", str(c.cas(k, b"new", cas)))
        tally(phase, "cas", str(c.cas(k, b"newer", cas)))
    for i in range(1, 11, 2):
        tally(phase, "cas", str(c.cas(key(fam, i), b"x", b"777")))
    # Counters.
    for i in range(10):
        c.set(key(fam + "c", i), b"50", noreply=False)
    for r in range(2):
        for i in range(15):
            tally(phase, "incr", "hit" if c.incr(key(fam + "c", i), 2) is not None else "miss")
            tally(phase, "decr", "hit" if c.decr(key(fam + "c", i), 1) is not None else "miss")
    # Touch and delete follow default_noreply.
    for i in range(40, 80):
        tally(phase, "touch", str(c.touch(key(fam, i), 600)))
    for i in range(80, 120):
        tally(phase, "delete", str(c.delete(key(fam, i))))
    c.delete_many([key(fam, i) for i in range(120, 200)])
    tally(phase, "delete_many", "keys", 80)
    for i in range(200, 220):
        tally(phase, "add", str(c.add(key(fam, i), b"a")))
        tally(phase, "replace", str(c.replace(key(fam, i), b"r")))
        tally(phase, "append", str(c.append(key(fam, i), b"+")))
        tally(phase, "prepend", str(c.prepend(key(fam, i), b"-")))
    tally(phase, "noreply_default", str(noreply_default))


def direct(servers):
    addrs = [addr(s) for s in servers.split(",")]
    for noreply in (True, False):
        phase = "hash_noreply" if noreply else "hash_reply"
        hc = HashClient(addrs, default_noreply=noreply, connect_timeout=5, timeout=10)
        basics(phase, hc, "h%d" % noreply, 3000, noreply)
        hc.close()
        # Plain clients, one per server: delete_many and set_many pipelines
        # on one connection.
        for j, a in enumerate(addrs):
            phase = ("plain_noreply" if noreply else "plain_reply")
            c = Client(a, default_noreply=noreply, connect_timeout=5, timeout=10)
            basics(phase, c, "p%d%d" % (noreply, j), 2000, noreply)
            c.close()


def small(servers):
    hc = HashClient([addr(s) for s in servers.split(",")], default_noreply=False,
                    connect_timeout=5, timeout=10)
    basics("small", hc, "sm", 240, False, small=True)
    hc.close()


def short_key(family, i):
    return "%s:%d" % (family, i)


def proxy(address, threads, pause):
    errors = []
    # Every thread sends its big batches at the same moment: the proxy
    # then has thousands of requests outstanding on each server connection.
    # With --pause, the servers are stopped (SIGSTOP) while the first
    # get_many round goes out and resumed 0.5 s later: each server
    # connection then holds as many requests as its TCP window, before any
    # answer, whatever the machine's speed (short keys: ~20,000 of them).
    together = threading.Barrier(threads, timeout=30)
    ready = threading.Barrier(threads + 1, timeout=30)
    paused = threading.Barrier(threads + 1, timeout=30)

    def worker(t):
        try:
            noreply = t % 2 == 0
            c = Client(addr(address), default_noreply=noreply, connect_timeout=5, timeout=30)
            c.version()  # connected before the barriers
            fam = "px%d" % t
            vals = {key(fam, i): b"x" * (i % 50) for i in range(0, 1000, 2)}
            together.wait()
            c.set_many(vals)
            tally("proxy", "set_many", "keys", len(vals))
            short = {short_key(fam, i): b"s" for i in range(0, 1000, 2)}
            c.set_many(short, noreply=False)
            ready.wait()
            paused.wait()
            got = c.get_many([short_key(fam, i) for i in range(1000)])
            tally("proxy", "get_many", "hits", len(got))
            together.wait()
            got = c.get_many([key(fam, i) for i in range(1000)])
            tally("proxy", "get_many", "hits", len(got))
            for i in range(0, 30):
                tally("proxy", "get", "hit" if c.get(key(fam, i)) is not None else "miss")
            for i in range(0, 10, 2):
                v, cas = c.gets(key(fam, i))
                tally("proxy", "cas", str(c.cas(key(fam, i), b"n", cas)))
                tally("proxy", "cas", str(c.cas(key(fam, i), b"m", cas)))
            for i in range(5):
                c.set(key(fam + "c", i), b"7", noreply=False)
            for i in range(10):
                tally("proxy", "incr", "hit" if c.incr(key(fam + "c", i), 1) is not None else "miss")
                tally("proxy", "decr", "hit" if c.decr(key(fam + "c", i), 1) is not None else "miss")
            for i in range(30, 60):
                tally("proxy", "touch", str(c.touch(key(fam, i), 600)))
            c.delete_many([key(fam, i) for i in range(100, 300)])
            tally("proxy", "delete_many", "keys", 200)
            c.close()
        except Exception as e:  # reported, and the run fails
            errors.append("thread %d: %r" % (t, e))

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    try:
        ready.wait()
        if pause:
            for pid in pause:
                os.kill(pid, signal.SIGSTOP)
        paused.wait()
        if pause:
            time.sleep(0.5)
    finally:
        for pid in pause:
            os.kill(pid, signal.SIGCONT)
    for t in ts:
        t.join()
    if errors:
        sys.exit("pymemcache_load: " + "; ".join(errors))


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] not in ("direct", "small", "proxy"):
        sys.exit(__doc__)
    if args[0] == "direct":
        direct(args[1])
    elif args[0] == "small":
        small(args[1])
    else:
        threads = 32
        if "--threads" in args:
            threads = int(args[args.index("--threads") + 1])
        pause = []
        if "--pause" in args:
            pause = [int(p) for p in args[args.index("--pause") + 1].split(",")]
        proxy(args[1], threads, pause)
    print(json.dumps(dict(sorted(TALLY.items()))))


if __name__ == "__main__":
    main()
