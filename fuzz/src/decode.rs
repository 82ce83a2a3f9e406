//! Decode: link layers (Ethernet, VLAN stacks, raw IP, BSD loopback, Linux
//! cooked v1/v2, ...), IPv4 with fragments, IPv6 with extension headers.
//! Input: one byte of options (bit 0: a tiny fragment pool), then frames,
//! each `[link][flags][len lo][len hi]` and `len` bytes; `link` picks a
//! link type from the list below (any other value is taken as it is);
//! `flags` bit 0-1 step the time (none, 1 ms, 40 s back, 40 s on), bit 2
//! makes the wire length longer than the bytes (a snap length cut).
//!
//! Invariants: a packet's payload is within its frame (unless rebuilt from
//! fragments), within 64 KiB, and `truncated` says exactly whether the
//! wire had more; the fragment pool never holds more datagrams than its
//! bound and is empty after `finish`; every frame is a packet or counted.

use memtap::capture::Frame;
use memtap::decode::{DecodeConfig, Decoder, TcpInfo, Transport};
use memtap::stats::Counters;

/// Link types memtap reads: Ethernet, raw IP (three numberings, and the
/// v4/v6 ones), BSD loopback (both byte orders), Linux cooked v1 and v2.
pub const LINKS: [u32; 10] = [1, 101, 12, 14, 228, 229, 0, 108, 113, 276];

pub fn run(data: &[u8]) {
    let Some((&opts, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = if opts & 1 == 1 {
        DecodeConfig {
            frag_max_datagrams: 2,
            frag_max_bytes: 3000,
            frag_timeout_ns: 1_000_000,
        }
    } else {
        DecodeConfig::default()
    };
    let mut dec = Decoder::new(cfg);
    let mut c = Counters::default();
    let (mut frames, mut out) = (0u64, 0u64);
    let mut ts: u64 = 1_700_000_000_000_000_000;
    while rest.len() >= 4 {
        let (link, flags) = (rest[0], rest[1]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let bytes = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let linktype = LINKS.get(link as usize).copied().unwrap_or(u32::from(link));
        ts = match flags & 3 {
            0 => ts,
            1 => ts + 1_000_000,
            2 => ts - 40_000_000_000,
            _ => ts + 40_000_000_000,
        };
        let wire_len = if flags & 4 != 0 {
            len as u32 + 1 + u32::from(flags >> 3) * 100
        } else {
            len as u32
        };
        frames += 1;
        let f = Frame {
            ts,
            frame_no: frames,
            linktype,
            wire_len,
            data: bytes,
        };
        let rebuilt = c.ip_reassembled;
        if let Some(p) = dec.decode(&f, &mut c) {
            out += 1;
            assert!(p.payload.len() <= p.wire_payload_len, "{p:?}");
            assert_eq!(p.truncated, p.payload.len() < p.wire_payload_len, "{p:?}");
            assert!(p.payload.len() <= 65_535, "{} bytes", p.payload.len());
            if c.ip_reassembled == rebuilt {
                let (b, e) = (
                    bytes.as_ptr() as usize,
                    bytes.as_ptr() as usize + bytes.len(),
                );
                let at = p.payload.as_ptr() as usize;
                assert!(
                    p.payload.is_empty() || (at >= b && at + p.payload.len() <= e),
                    "payload beyond its frame"
                );
            }
            if p.transport == Transport::Udp {
                assert_eq!(p.tcp, TcpInfo::default());
            }
        }
        assert!(dec.fragments_in_flight() <= cfg.frag_max_datagrams);
    }
    dec.finish(&mut c);
    assert_eq!(dec.fragments_in_flight(), 0);
    let accounted = out
        + c.decode_errors
        + c.unsupported_linktype
        + c.non_ip
        + c.non_tcp_udp
        + c.ipv6_fragments
        + c.ip_fragments;
    assert!(
        accounted >= frames,
        "{frames} frames, {accounted} accounted: {c:?}"
    );
}
