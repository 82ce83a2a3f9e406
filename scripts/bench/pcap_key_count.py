#!/usr/bin/env python3
"""Count packets and distinct bench keys (k:NNNNNNNN) sent to the server in
a classic pcap from benches/gen-capture.sh. A plain scan of request
payloads (no reassembly): the bench driver's requests each fit in one
loopback segment, so this is an independent check of the key count.

Usage: pcap_key_count.py FILE.pcap SERVER_PORT  -> prints JSON
"""

import json
import re
import struct
import sys

KEY = re.compile(rb"k:\d{8}")


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    keys = set()
    packets = 0
    with open(path, "rb") as f:
        gh = f.read(24)
        magic = struct.unpack("<I", gh[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            endian = ">"
        else:
            sys.exit("not a classic pcap file")
        linktype = struct.unpack(endian + "I", gh[20:24])[0]
        if linktype != 1:
            sys.exit("expected Ethernet link type (tcpdump -i lo), got %d" % linktype)
        rh = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            _, _, incl, _ = rh.unpack(h)
            pkt = f.read(incl)
            packets += 1
            if len(pkt) < 14 + 20 or pkt[12:14] != b"\x08\x00":
                continue
            ihl = (pkt[14] & 0x0F) * 4
            if pkt[23] != 6:
                continue
            t = 14 + ihl
            dport = struct.unpack("!H", pkt[t + 2:t + 4])[0]
            if dport != port:
                continue
            doff = (pkt[t + 12] >> 4) * 4
            payload = pkt[t + doff:]
            if payload:
                keys.update(KEY.findall(payload))
    print(json.dumps({"packets": packets, "distinct_keys": len(keys)}))


if __name__ == "__main__":
    main()
