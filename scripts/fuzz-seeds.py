#!/usr/bin/env python3
"""Seed corpora and the libFuzzer dictionary for the coverage-guided fuzz
targets (fuzz/), made from the fixture captures (testdata/pcaps/*) and the
memcached command table. Run by scripts/fuzz.sh before fuzzing; writes
fuzz/corpus/<target>/seed-* (not committed: made again each time) and
fuzz/memcached.dict. Only the standard library: CI runs it as it is.

  scripts/fuzz-seeds.py [REPO_ROOT]
"""
import gzip
import os
import struct
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
FUZZ = os.path.join(ROOT, "fuzz")
PCAPS = os.path.join(ROOT, "testdata", "pcaps")


def frames_of(path):
    """(ts_sec, ts_usec, bytes) of every frame of a legacy little-endian pcap."""
    b = open(path, "rb").read()
    magic = b[:4]
    if magic not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return []
    out, at = [], 24
    while at + 16 <= len(b):
        sec, frac, incl, _orig = struct.unpack_from("<IIII", b, at)
        at += 16
        out.append((sec, frac, b[at:at + incl]))
        at += incl
    return out


def legacy(frames):
    h = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for sec, frac, d in frames:
        h += struct.pack("<IIII", sec, frac, len(d), len(d)) + d
    return h


def pcapng(frames):
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 262144))
    for sec, frac, d in frames:
        t = sec * 1_000_000 + frac
        out += block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(d), len(d)) + d)
    return out


def server_port(case):
    e = open(os.path.join(PCAPS, case, "expected.jsonl")).read()
    import json
    return int(json.loads(e.splitlines()[0])["server"].rsplit(":", 1)[1])


def payload(eth):
    """(sport, dport, is_udp, payload) of an Ethernet/IPv4 frame, or None."""
    if len(eth) < 34 or eth[12:14] != b"\x08\x00":
        return None
    ip = eth[14:]
    ihl = (ip[0] & 15) * 4
    total = struct.unpack_from(">H", ip, 2)[0]
    proto = ip[9]
    t = ip[ihl:total]
    if proto == 6 and len(t) >= 20:
        sp, dp = struct.unpack_from(">HH", t)
        return sp, dp, False, t[(t[12] >> 4) * 4:]
    if proto == 17 and len(t) >= 8:
        sp, dp = struct.unpack_from(">HH", t)
        return sp, dp, True, t[8:]
    return None


def dictionary():
    words = ("get gets gat gats bget set add replace append prepend cas delete incr decr touch "
             "verbosity quit stats version shutdown slabs lru lru_crawler watch misbehave debugtime "
             "debug extstore config flush_all cache_memlimit metadump noreply automove "
             "mg ms md ma mn me VALUE END STORED NOT_STORED EXISTS NOT_FOUND DELETED TOUCHED OK "
             "ERROR CLIENT_ERROR SERVER_ERROR RESET STAT VERSION VA HD EN NF NS EX MN ME").split()
    flags = ("b c f h k l O q s t v E N R T M I J D S C F P L x MI MD MS ME MA MP MR ML "
             "exp=-1 la=1 cas=2 fetch=no cls=1 size=63").split()
    nums = ["0", "1", "-1", "4294967295", "4294967296", "18446744073709551615",
            "18446744073709551616", "99999999999999999999"]
    raw = [b" ", b"\r\n", b"\n", b"\r",
           # binary protocol: magics, opcodes (get, set, noop, getkq, stat, sasl)
           b"\x80", b"\x81", b"\x80\x00", b"\x80\x01", b"\x80\x0a", b"\x80\x0d", b"\x80\x0c",
           b"\x80\x09", b"\x80\x10", b"\x80\x11", b"\x80\x20", b"\x81\x00\x00\x00",
           # UDP frame header: request 1, datagram 0 of 1
           b"\x00\x01\x00\x00\x00\x01\x00\x00",
           # capture files: gzip, zstd, pcap (both orders, ns), pcapng blocks
           b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4",
           b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a",
           # link layers: VLAN tags, IPv4, IPv6, an IPv6 fragment header
           b"\x81\x00", b"\x88\xa8", b"\x08\x00", b"\x86\xdd", b"\x45\x00", b"\x60\x00\x00\x00",
           b"\x2c\x00", b"\x20\x00", b"\x2b\xcb"]
    entries = [w.encode() for w in words] + [w.encode() + b" " for w in words[:24]]
    entries += [b" " + f.encode() for f in flags] + [b" " + n.encode() for n in nums] + raw

    def esc(b):
        return "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else "\\x%02x" % c for c in b)
    lines = ["# memcached words for libFuzzer's mutator (-dict=): command words, response",
             "# codes, meta flags, edge numbers, binary magics and opcodes, capture-file",
             "# magics, link-layer type fields. Made by scripts/fuzz-seeds.py."]
    lines += ['k%d="%s"' % (i, esc(e)) for i, e in enumerate(entries)]
    return "\n".join(lines) + "\n"


def main():
    seeds = {}

    def put(target, name, data):
        seeds.setdefault(target, []).append((name, data))

    for case in sorted(os.listdir(PCAPS)):
        path = os.path.join(PCAPS, case, "capture.pcap")
        if not os.path.exists(path):
            continue
        frames = frames_of(path)
        port = server_port(case)
        # Captures: a run of 24 frames from the start and the middle, as
        # legacy pcap and pcapng, plain, gzip, zstd (mode byte, see capture.rs).
        for at in (0, len(frames) // 2):
            run = frames[at:at + 24]
            put("capture", f"{case}-{at}-pcap", b"\x00" + legacy(run))
            put("capture", f"{case}-{at}-pcapng", b"\x03" + pcapng(run))
        put("capture", f"{case}-gz", b"\x01" + legacy(frames[:8]))
        put("capture", f"{case}-zst", b"\x02" + pcapng(frames[:8]))
        put("capture", f"{case}-gzfile", b"\x00" + gzip.compress(legacy(frames[:8])))
        # Decode: frames as `[link][flags][len]` records (see decode.rs):
        # Ethernet, raw IP, VLAN-tagged.
        for at in (0, len(frames) // 2):
            run = frames[at:at + 16]
            eth = b"".join(b"\x00\x00" + struct.pack("<H", len(d)) + d for _, _, d in run)
            raw = b"".join(b"\x01\x01" + struct.pack("<H", len(d) - 14) + d[14:] for _, _, d in run)
            vlan = b"".join(
                b"\x00\x00" + struct.pack("<H", len(d) + 4) + d[:12] + b"\x81\x00\x00\x07" + d[12:]
                for _, _, d in run)
            put("decode", f"{case}-{at}-eth", b"\x00" + eth)
            put("decode", f"{case}-{at}-raw", b"\x01" + raw)
            put("decode", f"{case}-{at}-vlan", b"\x00" + vlan)
        # Parsers: each direction's stream, windows from message starts.
        for to_server in (True, False):
            stream = b""
            for _, _, d in frames:
                p = payload(d)
                if p and (p[1] == port) == to_server and p[3]:
                    stream += p[3][8:] if p[2] else p[3]
            starts = [0] + [i + 1 for i, c in enumerate(stream) if c == 10][:400:25]
            starts += [i for i, c in enumerate(stream) if c in (0x80, 0x81)][:200:25]
            for i, s in enumerate(starts[:12]):
                w = stream[s:s + 600]
                if w:
                    for t in ("parse_text", "parse_meta", "parse_binary", "parse_detect"):
                        put(t, f"{case}-{'req' if to_server else 'resp'}-{i}", b"\x00" + w)
    for target, files in seeds.items():
        d = os.path.join(FUZZ, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in files:
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
    # Parsers also start from the dictionary's words alone.
    with open(os.path.join(FUZZ, "memcached.dict"), "w") as f:
        f.write(dictionary())
    n = sum(len(v) for v in seeds.values())
    print(f"fuzz-seeds: {n} seeds for {len(seeds)} targets, fuzz/memcached.dict", file=sys.stderr)


main()
