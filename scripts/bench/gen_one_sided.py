#!/usr/bin/env python3
"""Write a pcap of one TCP connection that carries N text `get` requests and
no server data at all: what a capture seeing only one direction (or a dead
server) looks like. Client 10.0.0.1:40000 -> server 10.0.0.2:11211, one
request per segment, a SYN first and nothing else from the server.

Usage: gen_one_sided.py OUT.pcap N
"""
import struct
import sys


def ip_checksum(h):
    s = sum(struct.unpack("!10H", h))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(seq, flags, payload):
    tcp = struct.pack("!HHIIBBHHH", 40000, 11211, seq, 0, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    eth = b"\x00" * 12 + b"\x08\x00"
    return eth + ip + tcp + payload


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        ts = 1_700_000_000_000_000  # microseconds

        def rec(data):
            nonlocal ts
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
            f.write(data)
            ts += 10

        rec(frame(1000, 0x02, b""))  # SYN
        seq = 1001
        for i in range(n):
            p = b"get key:%d\r\n" % i
            rec(frame(seq, 0x18, p))  # PSH|ACK without an ACK number of use
            seq = (seq + len(p)) & 0xFFFFFFFF


if __name__ == "__main__":
    main()
