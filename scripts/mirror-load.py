#!/usr/bin/env python3
"""Load for scripts/gen-mirror-capture.sh: several concurrent clients on a
real memcached, all three dialects over TCP plus text gets over UDP.

Clients (each its own source address 127.0.0.N, so the report has several
clients): text (set / get / multi-get / delete), meta (ms / mg / md with
and without q, opaques, each batch ended by mn), binary (set / SetQ / get /
GetKQ / delete, each batch ended by Noop), and UDP text gets of a separate
set of small keys. Keys are Zipf-popular; each key has a fixed value size
from a few bytes to 1 MiB (large sizes only on unpopular keys, so the
capture stays tens of MB). Half of the batches are pipelined (every request
its own write, all sent before the first answer is read), so requests and
responses interleave on the wire.

Prints a JSON summary on stdout. Python 3 standard library only.
"""

import argparse
import bisect
import json
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
from common import bin_parse, bin_req, read_until, text_parse  # noqa: E402

MAX_VALUE = 1 << 20
FLAGS0 = struct.pack("!II", 0, 0)
UDP_HDR = struct.Struct("!HHHH")


class Keys:
    """Zipf(s) popularity over n keys; a fixed size per key."""

    def __init__(self, n, s, seed, prefix, small_only=False):
        self.names = [b"%s%05d" % (prefix, i) for i in range(n)]
        w = [1.0 / (i + 1) ** s for i in range(n)]
        tot = sum(w)
        acc, self.cum = 0.0, []
        for x in w:
            acc += x / tot
            self.cum.append(acc)
        r = random.Random(seed)
        self.sizes = []
        for rank in range(n):
            u = r.random()
            if small_only:
                size = r.randint(3, 4000)
            elif rank >= 100 and u < 0.01:
                size = r.randint(100_000, MAX_VALUE)  # up to 1 MiB, rarely asked for
            elif u < 0.10:
                size = r.randint(1000, 64_000)
            else:
                size = r.randint(3, 1000)
            self.sizes.append(size)

    def pick(self, rng):
        i = min(bisect.bisect_left(self.cum, rng.random()), len(self.names) - 1)
        return i

    def value(self, i, salt):
        n = self.sizes[i]
        unit = (b"%s:%d|" % (self.names[i], salt))
        return (unit * (n // len(unit) + 1))[:n]


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}

    def add(self, kind, n):
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + n


def tcp(port, src):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_batch(s, reqs, pipelined):
    if pipelined:
        for r in reqs:
            s.sendall(r)
    else:
        s.sendall(b"".join(reqs))


def text_client(port, src, keys, ops, seed, cnt):
    rng = random.Random(seed)
    s = tcp(port, src)
    done = 0
    while done < ops:
        reqs = []
        nkeys = 0
        for _ in range(rng.randint(1, 8)):
            u = rng.random()
            if u < 0.2:
                i = keys.pick(rng)
                v = keys.value(i, seed)
                reqs.append(b"set %s 0 0 %d\r\n%s\r\n" % (keys.names[i], len(v), v))
                nkeys += 1
            elif u < 0.75:
                reqs.append(b"get %s\r\n" % keys.names[keys.pick(rng)])
                nkeys += 1
            elif u < 0.95:
                ks = [keys.names[keys.pick(rng)] for _ in range(rng.randint(2, 6))]
                reqs.append(b"get %s\r\n" % b" ".join(ks))
                nkeys += len(ks)
            else:
                reqs.append(b"delete %s\r\n" % keys.names[keys.pick(rng)])
                nkeys += 1
        send_batch(s, reqs, rng.random() < 0.5)
        n = len(reqs)

        def complete(buf):
            items, rest = text_parse(buf)
            return rest == b"" and sum(1 for it in items if it[0] == "line") >= n

        read_until(s, complete, timeout=20)
        done += nkeys
    s.close()
    cnt.add("text", done)


def meta_client(port, src, keys, ops, seed, cnt):
    rng = random.Random(seed)
    s = tcp(port, src)
    done = 0
    op = 0
    while done < ops:
        reqs = []
        for _ in range(rng.randint(1, 10)):
            op += 1
            i = keys.pick(rng)
            k = keys.names[i]
            q = b" q" if rng.random() < 0.5 else b""
            u = rng.random()
            if u < 0.2:
                v = keys.value(i, seed)
                reqs.append(b"ms %s %d%s O%d\r\n%s\r\n" % (k, len(v), q, op, v))
            elif u < 0.95:
                reqs.append(b"mg %s v k%s O%d\r\n" % (k, q, op))
            else:
                reqs.append(b"md %s%s O%d\r\n" % (k, q, op))
            done += 1
        reqs.append(b"mn\r\n")
        done += 1
        send_batch(s, reqs, rng.random() < 0.5)

        def complete(buf):
            items, rest = text_parse(buf)
            return rest == b"" and items and items[-1] == ("line", b"MN")

        read_until(s, complete, timeout=20)
    s.close()
    cnt.add("meta", done)


def binary_client(port, src, keys, ops, seed, cnt):
    rng = random.Random(seed)
    s = tcp(port, src)
    done = 0
    opaque = 0
    while done < ops:
        reqs = []
        for _ in range(rng.randint(1, 10)):
            opaque += 1
            i = keys.pick(rng)
            k = keys.names[i]
            u = rng.random()
            if u < 0.2:
                reqs.append(bin_req("setq" if rng.random() < 0.5 else "set", k, FLAGS0, keys.value(i, seed),
                                    opaque=opaque))
            elif u < 0.7:
                reqs.append(bin_req("getkq", k, opaque=opaque))
            elif u < 0.95:
                reqs.append(bin_req("get", k, opaque=opaque))
            else:
                reqs.append(bin_req("delete", k, opaque=opaque))
            done += 1
        opaque += 1
        noop = opaque
        reqs.append(bin_req("noop", opaque=noop))
        done += 1
        send_batch(s, reqs, rng.random() < 0.5)

        def complete(buf):
            pk, rest = bin_parse(buf)
            return rest == b"" and pk and pk[-1]["opaque"] == noop

        read_until(s, complete, timeout=20)
    s.close()
    cnt.add("binary", done)


def udp_client(port, src, keys, ops, seed, cnt, lost):
    rng = random.Random(seed)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((src, 0))
    srv = ("127.0.0.1", port)
    rid = rng.randint(0, 30000)
    done = 0
    while done < ops:
        rid = (rid + 1) & 0xFFFF
        # Distinct keys, as clients' get_multi sends them: a reply naming
        # one key twice is two identical VALUE messages, and with a copy of
        # one of their datagrams on the way no sniffer can tell which is
        # which (README, "How exact").
        n = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        ks = []
        while len(ks) < n:
            k = keys.names[keys.pick(rng)]
            if k not in ks:
                ks.append(k)
        u.sendto(UDP_HDR.pack(rid, 0, 1, 0) + b"get %s\r\n" % b" ".join(ks), srv)
        done += len(ks)
        buf = b""
        deadline = time.time() + 1.0
        while not buf.endswith(b"END\r\n"):
            left = deadline - time.time()
            if left <= 0:
                lost.append(rid)
                break
            u.settimeout(left)
            try:
                d, _ = u.recvfrom(65536)
            except socket.timeout:
                continue
            if UDP_HDR.unpack(d[:8])[0] == rid:
                buf += d[8:]
    u.close()
    cnt.add("udp", done)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=8000, help="key-requests in all (about)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    keys = Keys(3000, 1.1, a.seed, b"key:")
    ukeys = Keys(300, 1.1, a.seed + 1, b"ukey:", small_only=True)
    cnt = Counter()
    t0 = time.time()
    # UDP keys exist before the UDP clients ask for them (a UDP set would
    # be one datagram; the bigger ones do not fit).
    s = tcp(a.port, "127.0.0.9")
    for i in range(0, len(ukeys.names), 2):
        v = ukeys.value(i, 0)
        s.sendall(b"set %s 0 0 %d noreply\r\n%s\r\n" % (ukeys.names[i], len(v), v))
    s.sendall(b"mn\r\n")
    read_until(s, lambda b: b.endswith(b"MN\r\n"))
    s.close()
    cnt.add("text", (len(ukeys.names) + 1) // 2)
    cnt.add("meta", 1)

    per = a.requests // 10
    lost = []
    clients = [
        (text_client, "127.0.0.2", 2 * per), (text_client, "127.0.0.3", 2 * per),
        (meta_client, "127.0.0.4", per), (meta_client, "127.0.0.5", per),
        (binary_client, "127.0.0.6", per), (binary_client, "127.0.0.7", per),
    ]
    errors = []

    def run(fn, *args):
        try:
            fn(*args)
        except BaseException as e:  # reported by the main thread
            errors.append("%s: %r" % (fn.__name__, e))

    threads = [threading.Thread(target=run, args=(fn, a.port, src, keys, n, a.seed * 100 + j, cnt))
               for j, (fn, src, n) in enumerate(clients)]
    threads.append(threading.Thread(target=run, args=(udp_client, a.port, "127.0.0.8", ukeys, 2 * per,
                                                      a.seed * 100 + 50, cnt, lost)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("load failed: " + "; ".join(errors))
    print(json.dumps({"requests": cnt.requests, "udp_unanswered": len(lost), "seconds": round(time.time() - t0, 2)}))


if __name__ == "__main__":
    main()
