#!/usr/bin/env python3
"""Rewrite a clean (loopback) capture into what a mirror/SPAN port shows.

Usage:
  scripts/mirror-rewrite.py IN.pcap OUT.pcap --mode MODE [--seed N]
                            [--rate R] [--server-port P ...]

Why: a capture taken on the server's loopback is causal (every response
after its request, each direction in order, one copy of each segment,
64 KiB super-segments). A SPAN port is none of that (field notes, "Capture
order is not causal order"): the two directions are mirrored through
different paths and interleave freely, so a response regularly shows up a
few packets *before* the request it answers; within a direction segments
are sometimes swapped; packets are duplicated and retransmitted; and
frames are wire-size. This script turns a clean capture into such a copy
so that memtap's report on the copy can be compared with its report on the
original: the copy holds EVERY byte of the original, each packet keeps its
own original timestamp (so the file is deliberately not in time order and
every latency stays what it was), and only the order, the duplication and
the segmentation change.

Modes (each with --rate, the share of eligible packets touched, default
0.08; deterministic for a given --seed):
  cross      responses before their requests. A chosen server->client
             packet of a connection (TCP segment, pure ACK, or UDP
             datagram) moves back before the latest client->server data
             packet of that flow it follows (the request it answers) and
             up to 3 positions further; any other chosen packet (a
             request, a pure ACK) swaps with the packet of the other
             direction of its flow just before it. Each direction's own
             order is kept: a packet never passes
             a packet of its own direction of its own flow, nor a SYN, FIN
             or RST of its flow, and SYN/FIN/RST packets never move.
  reorder    in-direction reordering: a chosen TCP data segment, pure ACK
             or UDP datagram swaps with the previous packet of the same
             direction of its flow when that one is at most 4 positions
             back and only other flows' packets or pure ACKs lie between
             (so the order between the two directions' data is kept).
             Two TCP segments whose bytes overlap keep their order: the
             later one is a retransmission (the clean capture may hold
             real ones, milliseconds apart), and a mirror does not deliver
             a retransmission before the segment it repeats.
  dup        duplicates and retransmissions: an exact copy of a chosen
             packet (TCP or UDP, any flags) 1-3 positions later; or, for
             a TCP data segment, a re-sent segment that starts inside it
             and, when the next segment of that direction is contiguous,
             runs into that one (partial overlap of both), placed after it.
  split1448  every TCP payload larger than 1448 (split536: 536) bytes cut
  split536   into wire-size segments: IPv4 total length / IPv6 payload
             length, TCP sequence number and IPv4 identification set per
             piece; PSH and FIN only on the last piece. SYN segments and
             IP fragments are left whole.
  all        split1448, then dup, then reorder, then cross.

Whenever a packet is rebuilt (split pieces, overlapping retransmissions),
its IPv4 header checksum and TCP checksum are computed afresh (memtap does
not verify checksums; tshark can). Untouched packets, exact duplicates
included, are written byte for byte.

Input/output: classic pcap (either byte order, micro- or nanosecond
timestamps; the output keeps the input's header). Link types: Ethernet (1)
with any number of 802.1Q/802.1ad tags, Linux SLL (113), raw IP (101, 12,
14, 228, 229) and BSD null/loop (0, 108). IPv4 and IPv6 (with hop-by-hop,
routing and destination-options headers); TCP and UDP. Anything else
(ARP, fragments, truncated frames, other protocols) is copied through
unmoved.

Direction: a packet whose source port is a server port goes
server->client, one whose destination port is one goes client->server.
--server-port (repeatable) names them; without it, 11211 when the capture
has it, else each flow's SYN receiver, else the lower port of the flow.

Stderr gets one summary line: packets in/out and how many were moved,
duplicated, retransmitted and split. Python 3 standard library only.
"""

import argparse
import array
import random
import struct
import sys

# ---------------------------------------------------------------- pcap io

MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24 or data[:4] not in MAGICS:
        sys.exit("%s: not a classic pcap file (pcapng is not supported: convert with editcap -F pcap)" % path)
    endian, _ = MAGICS[data[:4]]
    header = data[:24]
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    recs = []
    off = 24
    while off + 16 <= len(data):
        sec, sub, incl, orig = rec.unpack_from(data, off)
        off += 16
        if off + incl > len(data):
            print("%s: last record cut short, dropped" % path, file=sys.stderr)
            break
        recs.append((sec, sub, orig, data[off:off + incl]))
        off += incl
    return header, endian, linktype, recs


def write_pcap(path, header, endian, pkts):
    rec = struct.Struct(endian + "IIII")
    with open(path, "wb") as f:
        f.write(header)
        for p in pkts:
            frame = p.frame()
            orig = p.orig_len if p.rebuilt is None else len(frame)
            f.write(rec.pack(p.sec, p.sub, len(frame), orig))
            f.write(frame)


# ---------------------------------------------------------------- decoding

ETH_VLAN = (0x8100, 0x88A8, 0x9100)


def ip_offset(linktype, fr):
    """Offset of the IP header in a frame and its version, or None."""
    if linktype == 1:
        off = 12
        while True:
            if len(fr) < off + 2:
                return None
            et = struct.unpack_from("!H", fr, off)[0]
            if et in ETH_VLAN:
                off += 4
                continue
            off += 2
            break
    elif linktype == 113:
        if len(fr) < 16:
            return None
        et = struct.unpack_from("!H", fr, 14)[0]
        off = 16
        while et in ETH_VLAN and len(fr) >= off + 4:
            et = struct.unpack_from("!H", fr, off + 2)[0]
            off += 4
    elif linktype in (0, 108):
        if len(fr) < 4:
            return None
        off, et = 4, None
    elif linktype in (101, 12, 14, 228, 229):
        off, et = 0, None
    else:
        return None
    if len(fr) <= off:
        return None
    v = fr[off] >> 4
    if et is not None and et not in (0x0800, 0x86DD):
        return None
    if v not in (4, 6):
        return None
    return off, v


class Pkt:
    """One captured packet. `rebuilt` is None for a packet written byte for
    byte; split pieces and overlapping retransmissions carry new bytes."""

    __slots__ = ("sec", "sub", "orig_len", "raw", "rebuilt", "l4", "flow", "dir", "ipoff", "ipver", "ihl",
                 "l4off", "thl", "seq", "ack", "flags", "plen")

    def __init__(self, sec, sub, orig_len, raw):
        self.sec, self.sub, self.orig_len, self.raw = sec, sub, orig_len, raw
        self.rebuilt = None
        self.l4 = None  # "tcp" | "udp" | None (copied through, never moved)
        self.flow = None
        self.dir = None  # "c2s" | "s2c"

    def frame(self):
        return self.raw if self.rebuilt is None else self.rebuilt

    # Flags
    @property
    def syn(self):
        return self.l4 == "tcp" and bool(self.flags & 0x02)

    @property
    def ctl(self):  # SYN, FIN or RST: never moved, never crossed
        return self.l4 == "tcp" and bool(self.flags & 0x07)

    @property
    def data(self):
        return self.plen > 0 if self.l4 else False

    def payload(self):
        s = self.l4off + self.thl
        return self.raw[s:s + self.plen]

    def copy(self):
        c = Pkt(self.sec, self.sub, self.orig_len, self.raw)
        for k in Pkt.__slots__[4:]:
            setattr(c, k, getattr(self, k))
        return c


def decode(linktype, p):
    fr = p.raw
    if len(fr) < p.orig_len:
        return  # truncated by the snap length: cannot be rebuilt
    r = ip_offset(linktype, fr)
    if r is None:
        return
    off, v = r
    if v == 4:
        if len(fr) < off + 20:
            return
        ihl = (fr[off] & 0x0F) * 4
        tot = struct.unpack_from("!H", fr, off + 2)[0]
        frag = struct.unpack_from("!H", fr, off + 6)[0]
        if frag & 0x3FFF or ihl < 20 or tot < ihl or len(fr) < off + tot:
            return
        proto = fr[off + 9]
        src, dst = fr[off + 12:off + 16], fr[off + 16:off + 20]
        l4off, end = off + ihl, off + tot
    else:
        if len(fr) < off + 40:
            return
        plen = struct.unpack_from("!H", fr, off + 4)[0]
        if plen == 0 or len(fr) < off + 40 + plen:
            return  # jumbogram or cut short
        proto = fr[off + 6]
        src, dst = fr[off + 8:off + 24], fr[off + 24:off + 40]
        l4off, end = off + 40, off + 40 + plen
        while proto in (0, 43, 60):
            if len(fr) < l4off + 2:
                return
            proto, hl = fr[l4off], (fr[l4off + 1] + 1) * 8
            l4off += hl
        ihl = l4off - off
        if l4off > end:
            return
    if proto == 6:
        if end < l4off + 20:
            return
        sport, dport, seq, ack = struct.unpack_from("!HHII", fr, l4off)
        thl = (fr[l4off + 12] >> 4) * 4
        if thl < 20 or l4off + thl > end:
            return
        p.l4, p.seq, p.ack, p.flags, p.thl = "tcp", seq, ack, fr[l4off + 13], thl
    elif proto == 17:
        if end < l4off + 8:
            return
        sport, dport = struct.unpack_from("!HH", fr, l4off)
        p.l4, p.thl, p.seq, p.ack, p.flags = "udp", 8, 0, 0, 0
    else:
        return
    p.ipoff, p.ipver, p.ihl, p.l4off = off, v, ihl, l4off
    p.plen = end - l4off - p.thl
    p.flow = (p.l4, src, sport, dst, dport)


def assign_directions(pkts, server_ports):
    """Sets p.dir and a direction-free p.flow (the client->server 5-tuple)."""
    if not server_ports:
        ports = set()
        syn_to = {}
        for p in pkts:
            if p.l4:
                ports.add(p.flow[2])
                ports.add(p.flow[4])
                if p.syn and not p.flags & 0x10:
                    syn_to[frozenset((p.flow[1:3], p.flow[3:5]))] = p.flow[4]
        if 11211 in ports:
            server_ports = {11211}
    for p in pkts:
        if not p.l4:
            continue
        l4, src, sport, dst, dport = p.flow
        if server_ports:
            if dport in server_ports:
                to_server = True
            elif sport in server_ports:
                to_server = False
            else:
                p.l4 = None  # not a server's traffic: copied through
                continue
        else:
            sp = syn_to.get(frozenset(((src, sport), (dst, dport))))
            to_server = dport == sp if sp is not None else dport < sport or (dport == sport and dst < src)
        p.dir = "c2s" if to_server else "s2c"
        p.flow = (l4, src, sport, dst, dport) if to_server else (l4, dst, dport, src, sport)


# ---------------------------------------------------------------- rebuilding


def csum(data):
    if len(data) % 2:
        data += b"\0"
    a = array.array("H", data)
    if sys.byteorder == "little":
        a.byteswap()
    s = sum(a)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def rebuild(p, seq, payload, flags, ip_id_delta=0):
    """A new packet like p with another sequence number, flags and payload:
    lengths, IPv4 id, IPv4 header checksum and TCP checksum recomputed."""
    fr = p.raw
    off, l4off, thl = p.ipoff, p.l4off, p.thl
    link = fr[:off]
    iph = bytearray(fr[off:l4off])
    tcph = bytearray(fr[l4off:l4off + thl])
    l4len = thl + len(payload)
    if p.ipver == 4:
        src, dst = bytes(iph[12:16]), bytes(iph[16:20])
        struct.pack_into("!H", iph, 2, len(iph) + l4len)
        ip_id = (struct.unpack_from("!H", iph, 4)[0] + ip_id_delta) & 0xFFFF
        struct.pack_into("!H", iph, 4, ip_id)
        struct.pack_into("!H", iph, 10, 0)
        struct.pack_into("!H", iph, 10, ~csum(bytes(iph)) & 0xFFFF)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, l4len)
    else:
        src, dst = bytes(iph[8:24]), bytes(iph[24:40])
        struct.pack_into("!H", iph, 4, len(iph) - 40 + l4len)
        pseudo = src + dst + struct.pack("!IxxxB", l4len, 6)
    struct.pack_into("!I", tcph, 4, seq & 0xFFFFFFFF)
    tcph[13] = flags
    struct.pack_into("!H", tcph, 16, 0)
    c = ~csum(pseudo + bytes(tcph) + payload) & 0xFFFF
    struct.pack_into("!H", tcph, 16, c)
    q = p.copy()
    q.rebuilt = link + bytes(iph) + bytes(tcph) + payload
    q.raw = q.rebuilt  # later offsets refer to the new bytes
    q.seq, q.flags, q.plen = seq & 0xFFFFFFFF, flags, len(payload)
    return q


# ---------------------------------------------------------------- modes

FIN, SYN, RST, PSH = 0x01, 0x02, 0x04, 0x08
# Longest overlapping retransmission built from two segments: an IPv4 total
# length is 16 bits, and a loopback super-segment alone may be near 64 KiB.
MAX_RESEND = 60000


def split(pkts, mss, stats):
    out = []
    for p in pkts:
        if p.l4 != "tcp" or p.plen <= mss or p.flags & SYN:
            out.append(p)
            continue
        pay = p.payload()
        n = (len(pay) + mss - 1) // mss
        for i in range(n):
            flags = p.flags
            if i < n - 1:
                flags &= ~(FIN | PSH)
            out.append(rebuild(p, p.seq + i * mss, pay[i * mss:(i + 1) * mss], flags, i))
        stats["split"] += 1
        stats["split_pieces"] += n
    return out


def chosen(rng, rate):
    return rng.random() < rate


# Transports `dup` and `reorder` may touch (`--only`); `cross` and the
# splits touch both always.
ONLY = ("tcp", "udp")


def dup(pkts, rng, rate, stats):
    out = list(pkts)
    # (insert position, packet): positions refer to `pkts`; applied from the
    # back so earlier positions stay valid.
    adds = []
    n = len(pkts)
    for i, p in enumerate(pkts):
        if p.l4 not in ONLY or not chosen(rng, rate):
            continue
        if p.l4 == "tcp" and p.data and not p.ctl and p.plen >= 2 and rng.random() < 0.5:
            pay = p.payload()
            a = rng.randint(1, len(pay) - 1)
            nxt = None
            for j in range(i + 1, min(n, i + 8)):
                q = pkts[j]
                if q.flow == p.flow and q.dir == p.dir and q.data:
                    if q.seq == (p.seq + p.plen) & 0xFFFFFFFF and not q.ctl:
                        nxt = (j, q)
                    break
            # (The re-sent range must still fit one IP packet.)
            if nxt and len(pay) - a < MAX_RESEND:
                j, q = nxt
                b = rng.randint(1, min(q.plen, MAX_RESEND - (len(pay) - a)))
                r = rebuild(q, p.seq + a, pay[a:] + q.payload()[:b], q.flags & ~FIN)
                adds.append((j + 1, r))
            else:
                r = rebuild(p, p.seq + a, pay[a:], p.flags)
                adds.append((min(n, i + 1 + rng.randint(0, 2)), r))
            stats["retransmitted"] += 1
        else:
            adds.append((min(n, i + 1 + rng.randint(0, 2)), p))  # the same bytes again
            stats["duplicated"] += 1
    for pos, q in sorted(adds, key=lambda x: x[0], reverse=True):
        out.insert(pos, q)
    return out


def move_back(pkts, j, i, stats):
    pkts.insert(i, pkts.pop(j))
    stats["moved"] += 1


def overlaps(p, q):
    """Whether two TCP data segments carry some of the same bytes."""
    if p.l4 != "tcp" or q.l4 != "tcp" or not p.data or not q.data:
        return False
    d = (q.seq - p.seq) & 0xFFFFFFFF  # where q starts, relative to p
    return d < p.plen or (0x100000000 - d) < q.plen


def reorder(pkts, rng, rate, stats):
    pkts = list(pkts)
    for j in range(len(pkts)):
        p = pkts[j]
        if p.l4 not in ONLY or p.ctl or not chosen(rng, rate):
            continue
        for i in range(j - 1, max(-1, j - 5), -1):
            q = pkts[i]
            if q.flow != p.flow:
                continue
            if q.dir == p.dir:
                if not q.ctl and not overlaps(p, q):
                    move_back(pkts, j, i, stats)
                break
            if q.data or q.ctl:
                break  # would change the order between the directions' data
    return pkts


def cross(pkts, rng, rate, stats):
    pkts = list(pkts)
    for j in range(len(pkts)):
        p = pkts[j]
        if not p.l4 or p.ctl or not chosen(rng, rate):
            continue
        # Walk back over packets p may pass: other flows, and the other
        # direction of its own flow. Stop at its own direction or a
        # SYN/FIN/RST of its flow.
        limit = j
        passed_request = None
        for i in range(j - 1, max(-1, j - 12), -1):
            q = pkts[i]
            if q.flow == p.flow and (q.dir == p.dir or q.ctl):
                break
            limit = i
            if q.flow == p.flow and q.data and passed_request is None:
                passed_request = i
        if limit == j:
            continue
        if p.dir == "s2c" and passed_request is not None:
            # The request it answers, and up to 3 positions further.
            target = max(limit, passed_request - rng.randint(0, 3))
        else:
            # A swap with the previous packet of the other direction.
            prev = [i for i in range(limit, j) if pkts[i].flow == p.flow]
            if not prev:
                continue
            target = prev[-1]
        move_back(pkts, j, target, stats)
    return pkts


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description="Rewrite a clean capture into what a mirror port shows "
                                             "(see the header of this script).")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--mode", required=True, choices=["cross", "reorder", "dup", "split1448", "split536", "all"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["tcp", "udp", "both"], default="both",
                    help="transports that dup and reorder may touch (default both)")
    ap.add_argument("--rate", type=float, default=0.08, help="share of eligible packets touched (default 0.08)")
    ap.add_argument("--server-port", type=int, action="append", default=[],
                    help="server port (repeatable); default: see the header")
    a = ap.parse_args()
    global ONLY
    ONLY = ("tcp", "udp") if a.only == "both" else (a.only,)
    if not 0 <= a.rate <= 1:
        ap.error("--rate must be within 0..1")

    header, endian, linktype, recs = read_pcap(a.input)
    pkts = []
    for sec, sub, orig, raw in recs:
        p = Pkt(sec, sub, orig, raw)
        decode(linktype, p)
        pkts.append(p)
    assign_directions(pkts, set(a.server_port))

    rng = random.Random(a.seed)
    stats = dict(moved=0, duplicated=0, retransmitted=0, split=0, split_pieces=0)
    steps = {
        "split1448": [lambda x: split(x, 1448, stats)],
        "split536": [lambda x: split(x, 536, stats)],
        "dup": [lambda x: dup(x, rng, a.rate, stats)],
        "reorder": [lambda x: reorder(x, rng, a.rate, stats)],
        "cross": [lambda x: cross(x, rng, a.rate, stats)],
    }
    steps["all"] = steps["split1448"] + steps["dup"] + steps["reorder"] + steps["cross"]
    out = pkts
    for step in steps[a.mode]:
        out = step(out)
    write_pcap(a.output, header, endian, out)
    print("mirror-rewrite %s seed %d rate %g: %d packets in (%d TCP/UDP of the servers), %d out; moved %d, "
          "duplicated %d, retransmitted (partial overlap) %d, split %d into %d"
          % (a.mode, a.seed, a.rate, len(pkts), sum(1 for p in pkts if p.l4), len(out), stats["moved"],
             stats["duplicated"], stats["retransmitted"], stats["split"], stats["split_pieces"]),
          file=sys.stderr)


if __name__ == "__main__":
    main()
