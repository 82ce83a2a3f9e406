#!/usr/bin/python3
"""Drives the showcase servers with tens of real clients (see make-showcase.sh).

Each client is a thread with its own loopback source address (127.1.0.N),
one connection per server, and one dialect: text, meta or binary over TCP,
or text over UDP (8-byte frame header). Keys are spread over the servers by
a CRC32 of the key, as a client-side pool would.

What the capture should show, on purpose:
  * Zipf-distributed keys in families: user:ID, session:HEX (2 s TTL: they
    expire and miss), feed:ID:pN, config:NAME (few, very hot), blob:ID (8 KiB
    values on the small server: it evicts, and old blobs miss);
  * feed:trending, not asked for at all in the first half, then the hottest
    key of the second;
  * a dogpile at 70 %: config:homepage is deleted, 30 clients miss it at
    once, one refills it, the rest then hit;
  * one client (127.1.0.1, a batch job) at five times the others' rate;
  * cache-aside: a missed get is followed by a set of the same key.

The random choices are seeded, so the request mix is the same each run;
timing (and so what expired or was evicted) is not.
"""

import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

SERVERS = [("127.0.10.1", 11211), ("127.0.10.2", 22122), ("127.0.10.3", 11211)]
UDP_SERVER = ("127.0.10.1", 11211)
SMALL_SERVER = 1  # index of the server started with a small -m: blobs go there
DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
CLIENTS = 40
START = time.monotonic()
errors = []


def elapsed():
    return (time.monotonic() - START) / DURATION


class Zipf:
    """Zipf(s) over ranks 1..n by inverse CDF (bisect on a precomputed table)."""

    def __init__(self, n, s, rng):
        self.rng = rng
        w = [1.0 / (i**s) for i in range(1, n + 1)]
        tot = sum(w)
        acc = 0.0
        self.cdf = []
        for x in w:
            acc += x / tot
            self.cdf.append(acc)

    def draw(self):
        u = self.rng.random()
        lo, hi = 0, len(self.cdf) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cdf[mid] < u:
                lo = mid + 1
            else:
                hi = mid
        return lo + 1


def server_for(key):
    if key.startswith("blob:"):
        return SMALL_SERVER
    return zlib.crc32(key.encode()) % len(SERVERS)


# ---------------------------------------------------------------- dialects


class Conn:
    def __init__(self, src, addr):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.bind((src, 0))
        self.s.connect(addr)
        self.buf = b""

    def send(self, b):
        self.s.sendall(b)

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise IOError("server closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class Text:
    def __init__(self, c):
        self.c = c

    def get(self, keys):
        self.c.send(b"get " + b" ".join(k.encode() for k in keys) + b"\r\n")
        found = {}
        while True:
            ln = self.c.line()
            if ln == b"END":
                return found
            parts = ln.split()
            assert parts[0] == b"VALUE", ln
            found[parts[1].decode()] = self.c.exact(int(parts[3]) + 2)[:-2]

    def set(self, key, val, ttl=0):
        self.c.send(b"set %s 0 %d %d\r\n%s\r\n" % (key.encode(), ttl, len(val), val))
        ln = self.c.line()
        assert ln == b"STORED", ln

    def delete(self, key):
        self.c.send(b"delete %s\r\n" % key.encode())
        self.c.line()

    def incr(self, key):
        self.c.send(b"incr %s 1\r\n" % key.encode())
        if self.c.line() == b"NOT_FOUND":
            self.set(key, b"1")


class Meta:
    def __init__(self, c):
        self.c = c

    def get(self, keys):
        # Pipelined: one mg per key with the key echoed (k), then mn.
        self.c.send(b"".join(b"mg %s v k t\r\n" % k.encode() for k in keys) + b"mn\r\n")
        found = {}
        while True:
            ln = self.c.line()
            if ln == b"MN":
                return found
            parts = ln.split()
            if parts[0] == b"VA":
                val = self.c.exact(int(parts[1]) + 2)[:-2]
                key = [p[1:] for p in parts[2:] if p.startswith(b"k")][0]
                found[key.decode()] = val
            else:
                assert parts[0] == b"EN", ln

    def set(self, key, val, ttl=0):
        self.c.send(b"ms %s %d T%d\r\n%s\r\n" % (key.encode(), len(val), ttl, val))
        ln = self.c.line()
        assert ln == b"HD", ln

    def delete(self, key):
        self.c.send(b"md %s\r\n" % key.encode())
        self.c.line()

    def incr(self, key):
        # Auto-create with N0 (autoviv TTL) J1 (initial value).
        self.c.send(b"ma %s N0 J1\r\n" % key.encode())
        self.c.line()


class Binary:
    def __init__(self, c):
        self.c = c
        self.opaque = 0

    def req(self, op, key=b"", extras=b"", value=b""):
        self.opaque += 1
        body = len(extras) + len(key) + len(value)
        hdr = struct.pack(">BBHBBHIIQ", 0x80, op, len(key), len(extras), 0, 0, body, self.opaque, 0)
        return hdr + extras + key + value

    def resp(self):
        hdr = self.c.exact(24)
        magic, op, klen, elen, _, status, body, opaque, cas = struct.unpack(">BBHBBHIIQ", hdr)
        assert magic == 0x81, hdr
        data = self.c.exact(body)
        return op, status, data[elen + klen :], data[elen : elen + klen]

    def get(self, keys):
        # GETKQ for all but the last key, GETK for the last: memcached answers
        # the quiet ones only on a hit, and the last one always.
        msg = b"".join(self.req(0x0D, k.encode()) for k in keys[:-1])
        msg += self.req(0x0C, keys[-1].encode())
        self.c.send(msg)
        found = {}
        while True:
            op, status, val, key = self.resp()
            if status == 0:
                found[key.decode()] = val
            if op == 0x0C:
                return found

    def set(self, key, val, ttl=0):
        self.c.send(self.req(0x01, key.encode(), struct.pack(">II", 0, ttl), val))
        _, status, _, _ = self.resp()
        assert status == 0, status

    def delete(self, key):
        self.c.send(self.req(0x04, key.encode()))
        self.resp()

    def incr(self, key):
        self.c.send(self.req(0x05, key.encode(), struct.pack(">QQI", 1, 1, 0)))
        self.resp()


class Udp:
    """Text over UDP with the 8-byte frame header, one server (its -U port)."""

    def __init__(self, src):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((src, 0))
        self.s.settimeout(2.0)
        self.rid = 0

    def exchange(self, payload):
        self.rid = (self.rid + 1) & 0xFFFF
        self.s.sendto(struct.pack(">HHHH", self.rid, 0, 1, 0) + payload, UDP_SERVER)
        parts, total = {}, None
        while total is None or len(parts) < total:
            d, _ = self.s.recvfrom(65536)
            rid, seq, tot, _ = struct.unpack(">HHHH", d[:8])
            if rid != self.rid:
                continue
            parts[seq], total = d[8:], tot
        return b"".join(parts[i] for i in range(total))

    def get(self, keys):
        out = self.exchange(b"get " + b" ".join(k.encode() for k in keys) + b"\r\n")
        found = {}
        while not out.startswith(b"END"):
            ln, out = out.split(b"\r\n", 1)
            parts = ln.split()
            n = int(parts[3])
            found[parts[1].decode()], out = out[:n], out[n + 2 :]
        return found

    def set(self, key, val, ttl=0):
        self.exchange(b"set %s 0 %d %d\r\n%s\r\n" % (key.encode(), ttl, len(val), val))

    def delete(self, key):
        self.exchange(b"delete %s\r\n" % key.encode())

    def incr(self, key):
        self.exchange(b"incr %s 1\r\n" % key.encode())


# ---------------------------------------------------------------- workload


def value_for(key, rng):
    if key.startswith("blob:"):
        return (key.encode() + b"|") * (8192 // (len(key) + 1))
    if key.startswith("feed:"):
        return b'{"items":[' + b",".join(b"%d" % rng.randrange(10**6) for _ in range(rng.randrange(5, 60))) + b"]}"
    return b"v:" + key.encode() + b":" + b"x" * rng.randrange(10, 300)


def ttl_for(key):
    return 2 if key.startswith("session:") else 0


dogpile_gate = threading.Barrier(30, timeout=20)
dogpile_refilled = threading.Event()


class Client(threading.Thread):
    def __init__(self, n):
        super().__init__(daemon=True)
        self.n = n
        self.src = "127.1.0.%d" % (n + 1)
        self.rng = random.Random(1000 + n)
        if n < 24:
            self.kind = "text"
        elif n < 32:
            self.kind = "meta"
        elif n < 38:
            self.kind = "binary"
        else:
            self.kind = "udp"
        self.users = Zipf(5000, 1.1, self.rng)
        self.sessions = Zipf(2000, 0.9, self.rng)
        self.feeds = Zipf(400, 1.2, self.rng)
        self.blobs = Zipf(1500, 0.6, self.rng)
        self.conns = {}

    def proto(self, key):
        if self.kind == "udp":
            if "udp" not in self.conns:
                self.conns["udp"] = Udp(self.src)
            return self.conns["udp"]
        i = server_for(key)
        if i not in self.conns:
            c = Conn(self.src, SERVERS[i])
            self.conns[i] = {"text": Text, "meta": Meta, "binary": Binary}[self.kind](c)
        return self.conns[i]

    def key(self):
        r = self.rng.random()
        if elapsed() > 0.5 and r < 0.12:
            return "feed:trending"
        if r < 0.40:
            return "user:%d" % self.users.draw()
        if r < 0.60:
            return "session:%05x" % (self.sessions.draw() * 7919)
        if r < 0.78:
            return "feed:%d:p%d" % (self.feeds.draw(), self.rng.randrange(1, 4))
        if r < 0.90:
            return "config:" + self.rng.choice(["flags", "limits", "homepage", "regions"])
        if self.kind == "udp":
            return "user:%d" % self.users.draw()
        return "blob:%d" % self.blobs.draw()

    def cache_aside(self, keys):
        # A multi-key get goes to one server: all keys of the batch share it.
        p = self.proto(keys[0])
        found = p.get(keys)
        for k in keys:
            if k not in found:
                p.set(k, value_for(k, self.rng), ttl_for(k))

    def one(self):
        r = self.rng.random()
        k = self.key()
        if r < 0.78:
            self.cache_aside([k])
        elif r < 0.86 and self.kind != "udp":
            # A page's worth: the same feed's pages, one server each.
            base = "feed:%d" % self.feeds.draw()
            keys = ["%s:p%d" % (base, i) for i in range(1, 4)]
            by = {}
            for kk in keys:
                by.setdefault(server_for(kk), []).append(kk)
            for group in by.values():
                self.cache_aside(group)
        elif r < 0.94:
            self.proto(k).set(k, value_for(k, self.rng), ttl_for(k))
        elif r < 0.97:
            c = "counter:%s" % self.rng.choice(["views", "logins", "api"])
            self.proto(c).incr(c)
        else:
            self.proto(k).delete(k)

    def dogpile(self):
        # Everyone arrives at once; the first to miss refills, after a
        # pause as a slow backend would take.
        key = "config:homepage"
        p = self.proto(key)
        i = dogpile_gate.wait()
        if i == 0:
            p.delete(key)
        dogpile_gate.wait()
        found = p.get([key])
        dogpile_gate.wait()
        if i == 0:
            time.sleep(0.05)
            p.set(key, value_for(key, self.rng))
            dogpile_refilled.set()
        dogpile_refilled.wait()
        if key not in found:
            p.get([key])

    def run(self):
        try:
            did_dogpile = self.n >= 30
            while True:
                t = elapsed()
                if t >= 1.0:
                    break
                if not did_dogpile and t >= 0.7:
                    did_dogpile = True
                    self.dogpile()
                    continue
                self.one()
                # Client 0 is a batch job: five times the others' rate.
                time.sleep(self.rng.expovariate(1 / (0.008 if self.n == 0 else 0.04)))
        except Exception as e:  # noqa: BLE001 -- reported and fails the run
            errors.append("client %d (%s): %r" % (self.n, self.kind, e))


def libmemcached_clients():
    """A few operations from libmemcached's own tools (binary protocol)."""
    host = "%s:%d" % SERVERS[2]
    for k in ["config:build", "config:motd"]:
        subprocess.run(["memccp", "--binary", "--servers=" + host, "--set", "/etc/hostname"], check=False)
        subprocess.run(["memccat", "--binary", "--servers=" + host, k], capture_output=True, check=False)
    subprocess.run(["memccat", "--binary", "--servers=" + host, "hostname"], capture_output=True, check=True)


def warm():
    """The config keys, stored before the clients start by pymemcache (the
    library most Python services use), from 127.0.0.1."""
    from pymemcache.client.base import Client as PyClient

    rng = random.Random(7)
    for name in ["flags", "limits", "homepage", "regions"]:
        key = "config:" + name
        c = PyClient(SERVERS[server_for(key)])
        c.set(key, value_for(key, rng))
        c.close()


def main():
    warm()
    libmemcached_clients()
    clients = [Client(n) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    print("drive: %d clients done in %.1f s" % (CLIENTS, time.monotonic() - START), file=sys.stderr)


if __name__ == "__main__":
    main()
