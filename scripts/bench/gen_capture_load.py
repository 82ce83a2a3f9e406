#!/usr/bin/env python3
"""Load driver for benches/gen-capture.sh: several client processes, each
with its own pymemcache connections, against one memcached on 127.0.0.1.

Phase 1 (warm-up): every key 0..keys-1 is written once with set_many
(batches, answered), so the capture holds every distinct key.
Phase 2 (traffic): `ops` requests split over the processes: mostly single
gets with a Zipf-like key popularity (P(rank r) ~ 1/r; a share of them on
never-written keys, so they miss), some sets, some multi-gets of 2-8 keys.

Prints a JSON summary on stdout.
"""

import argparse
import json
import multiprocessing as mp
import random
import sys
import time

from pymemcache.client.base import Client


def key(i):
    return "k:%08d" % i


def value_for(rng, i, lo=16, hi=256):
    # mostly values of lo-hi bytes, a few larger ones (~2% 1-4 KiB, or
    # 4-16x hi when hi is past 1 KiB)
    big = (1024, 4096) if hi < 1024 else (4 * hi, 16 * hi)
    n = rng.randint(*big) if rng.random() < 0.02 else rng.randint(lo, hi)
    b = (b"%08d:" % i) * (n // 9 + 1)
    return b[:n]


def zipf_rank(rng, n):
    # continuous approximation of Zipf s=1: log-uniform rank in [1, n]
    return min(int(n ** rng.random()), n) - 1


def worker(idx, a, barrier, out_q):
    rng = random.Random(a.seed * 1000 + idx)
    clients = []
    for _ in range(a.conns_per_proc):
        c = Client(("127.0.0.1", a.port), default_noreply=False, connect_timeout=5, timeout=30)
        c._connect()
        clients.append(c)
    st = {"warm_sets": 0, "get": 0, "get_hits": 0, "set": 0, "multi_get": 0, "multi_keys": 0,
          "multi_hits": 0}
    # phase 1: this process writes keys idx, idx+procs, ... in batches
    mine = list(range(idx, a.keys, a.procs))
    ci = 0
    for j in range(0, len(mine), a.batch):
        chunk = mine[j:j + a.batch]
        failed = clients[ci % len(clients)].set_many({key(i): value_for(rng, i, *a.value_bytes) for i in chunk})
        ci += 1
        if failed:
            raise SystemExit("warm-up set_many failed for %d keys" % len(failed))
        st["warm_sets"] += len(chunk)
    barrier.wait()
    # phase 2
    deadline = a.start + a.max_seconds
    ops = a.ops // a.procs + (1 if idx < a.ops % a.procs else 0)
    pset, pmulti = a.set_ratio, a.set_ratio + a.multi_ratio
    # each process permutes ranks differently so hot keys are not all
    # the lowest ids, but all processes share the same hot set
    mult = 2654435761
    n = a.keys
    for op in range(ops):
        c = clients[op % len(clients)]
        r = rng.random()
        if r < pset:
            i = (zipf_rank(rng, n) * mult) % n
            c.set(key(i), value_for(rng, i, *a.value_bytes))
            st["set"] += 1
        elif r < pmulti:
            ks = list({key((zipf_rank(rng, n) * mult) % n) for _ in range(rng.randint(2, 8))})
            got = c.get_many(ks)
            st["multi_get"] += 1
            st["multi_keys"] += len(ks)
            st["multi_hits"] += len(got)
        else:
            i = (zipf_rank(rng, n) * mult) % n
            if rng.random() < a.miss_ratio:
                i += n  # never written: a miss
            if c.get(key(i)) is not None:
                st["get_hits"] += 1
            st["get"] += 1
        if op % 4096 == 0 and time.time() > deadline:
            st["stopped_early"] = True
            break
    for c in clients:
        c.close()
    out_q.put(st)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keys", type=int, default=200000, help="distinct keys (all written in warm-up)")
    ap.add_argument("--ops", type=int, default=520000, help="requests after warm-up, all processes together")
    ap.add_argument("--procs", type=int, default=4, help="client processes")
    ap.add_argument("--conns-per-proc", type=int, default=2, help="TCP connections per process")
    ap.add_argument("--batch", type=int, default=100, help="keys per warm-up set_many")
    ap.add_argument("--set-ratio", type=float, default=0.10)
    ap.add_argument("--multi-ratio", type=float, default=0.05)
    ap.add_argument("--miss-ratio", type=float, default=0.05, help="share of single gets on never-written keys")
    ap.add_argument("--value-bytes", default="16-256", help="MIN-MAX size of most values (default 16-256)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=150, help="stop the traffic phase after this")
    a = ap.parse_args()
    try:
        lo, hi = (int(x) for x in a.value_bytes.split("-"))
        assert 1 <= lo <= hi <= 512 * 1024
    except (ValueError, AssertionError):
        ap.error("--value-bytes wants MIN-MAX, 1 <= MIN <= MAX <= 524288, not %r" % a.value_bytes)
    a.value_bytes = (lo, hi)
    a.start = time.time()
    barrier = mp.Barrier(a.procs + 1)
    q = mp.Queue()
    ps = [mp.Process(target=worker, args=(i, a, barrier, q)) for i in range(a.procs)]
    for p in ps:
        p.start()
    barrier.wait(timeout=600)
    t_warm = time.time() - a.start
    stats = [q.get(timeout=a.max_seconds + 120) for _ in ps]
    for p in ps:
        p.join()
        if p.exitcode != 0:
            print("worker failed: exit %s" % p.exitcode, file=sys.stderr)
            sys.exit(1)
    tot = {}
    for s in stats:
        for k, v in s.items():
            tot[k] = tot.get(k, 0) + v
    tot["keys"] = a.keys
    tot["procs"] = a.procs
    tot["connections"] = a.procs * a.conns_per_proc
    tot["warmup_seconds"] = round(t_warm, 1)
    tot["seconds"] = round(time.time() - a.start, 1)
    tot["requests"] = tot["get"] + tot["set"] + tot["multi_get"] + (a.keys + a.batch - 1) // a.batch
    json.dump(tot, sys.stdout)
    print()


if __name__ == "__main__":
    main()
