//! memcached's UDP framing and the UDP exchanges: the 8-byte frame header
//! (`reassembly::udp`), then requests and multi-datagram replies put
//! together per (client, server, request id) by `session::udp::UdpTable`:
//! datagrams out of order, duplicated, replies before their requests,
//! bad headers, timeouts. Input (through `arbitrary`): datagrams from a
//! few clients with small request ids, under default or tiny bounds.
//!
//! Invariants: the header parses exactly (fields big-endian, the rest as
//! payload); after every datagram the table holds no more exchanges, held
//! responses and buffered bytes than its bounds; records emitted equal
//! records counted; nothing left after `finish`; and the same records
//! whether or not the table is swept at the packet time reached between
//! datagrams (a batch boundary).

use crate::{dict, fixtures, Digest};
use arbitrary::{Arbitrary, Unstructured};
use memtap::protocol::Limits;
use memtap::reassembly::udp::{parse_udp_frame, UDP_FRAME_HEADER_LEN};
use memtap::reassembly::SegInfo;
use memtap::session::udp::{UdpConfig, UdpTable, LINGER_DATAGRAMS};
use memtap::session::Record;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Arbitrary, Debug)]
pub enum Body {
    Dict(u8),
    Fixture(u16),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
pub struct Datagram {
    client: u8,
    response: bool,
    req_id: u8,
    seq: u8,
    total: u8,
    reserved: bool,
    /// Time since the previous datagram: `dt` times 1 ms, or 1 s.
    dt: u8,
    long_step: bool,
    /// `None`: the body is the whole datagram (its own header, or none).
    framed: bool,
    body: Body,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    tiny: bool,
    hold: bool,
    grams: Vec<Datagram>,
}

fn config(tiny: bool, hold: bool) -> UdpConfig {
    let hold_ns = if hold { 50_000_000 } else { 0 };
    UdpConfig {
        max_pending: if tiny { 4 } else { 1024 },
        timeout_ns: if tiny { 10_000_000 } else { 5_000_000_000 },
        max_carry: if tiny { 4096 } else { 1 << 20 },
        hold_ns,
        max_held: if tiny { 2 } else { 256 },
        max_buffered: if tiny { 4096 } else { 1 << 20 },
        linger_datagrams: if hold { LINGER_DATAGRAMS } else { 0 },
        max_carry_total: if tiny { 8192 } else { 4 << 20 },
    }
}

struct Gram {
    ts: u64,
    client: SocketAddr,
    response: bool,
    bytes: Vec<u8>,
}

fn grams(input: &Input) -> Vec<Gram> {
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut out = Vec::new();
    for g in input.grams.iter().take(2_000) {
        ts += u64::from(g.dt)
            * if g.long_step {
                1_000_000_000
            } else {
                1_000_000
            };
        let msgs = if g.response {
            dict::RESPONSES
        } else {
            dict::REQUESTS
        };
        let body = match &g.body {
            Body::Dict(i) => msgs[*i as usize % msgs.len()].to_vec(),
            Body::Fixture(i) => {
                let f = fixtures::pick(*i, true).map_or(&[][..], |p| &p.bytes[..]);
                // Fixture datagrams carry their own header.
                f.get(UDP_FRAME_HEADER_LEN.min(f.len())..)
                    .unwrap_or(&[])
                    .to_vec()
            }
            Body::Raw(v) => v.clone(),
        };
        let bytes = if g.framed {
            let mut b = vec![0, g.req_id, 0, g.seq, 0, g.total, 0, u8::from(g.reserved)];
            b.extend_from_slice(&body);
            let f = parse_udp_frame(&b).expect("a header");
            assert_eq!(
                (f.req_id, f.seq, f.total),
                (u16::from(g.req_id), u16::from(g.seq), u16::from(g.total))
            );
            assert_eq!(f.reserved, u16::from(g.reserved));
            assert_eq!(f.payload, &body[..]);
            b
        } else {
            match parse_udp_frame(&body) {
                None => assert!(body.len() < UDP_FRAME_HEADER_LEN),
                Some(f) => assert_eq!(f.payload, &body[UDP_FRAME_HEADER_LEN..]),
            }
            body
        };
        out.push(Gram {
            ts,
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, g.client & 3)), 40_000),
            response: g.response,
            bytes,
        });
    }
    out
}

fn replay(cfg: UdpConfig, grams: &[Gram], sweep: bool) -> Digest {
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 11211);
    let mut t = UdpTable::new(Limits::default(), cfg);
    let mut d = Digest::default();
    let mut sink = |r: &Record<'_>| d.add(r);
    let mut now = 0;
    for (i, g) in grams.iter().enumerate() {
        let info = SegInfo {
            ts: g.ts,
            frame_no: i as u64 + 1,
            peer_acked: None,
        };
        if g.response {
            t.response(g.client, server, &g.bytes, &info, &mut sink);
        } else {
            t.request(g.client, server, &g.bytes, &info, &mut sink);
        }
        now = now.max(g.ts);
        if sweep {
            t.sweep(now, &mut sink);
        }
        assert!(t.len() <= cfg.max_pending, "{} exchanges", t.len());
        assert!(t.held() <= cfg.max_held, "{} held", t.held());
        assert!(
            t.buffered_bytes() <= cfg.max_buffered,
            "{} buffered",
            t.buffered_bytes()
        );
    }
    t.finish(&mut sink);
    assert_eq!(d.count, t.counters.records, "records emitted vs counted");
    assert_eq!(t.len(), 0, "exchanges left after finish");
    assert_eq!(t.held(), 0, "held responses left after finish");
    assert_eq!(t.buffered_bytes(), 0, "buffered bytes left after finish");
    d
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let grams = grams(&input);
    let cfg = config(input.tiny, input.hold);
    let plain = replay(cfg, &grams, false);
    let swept = replay(cfg, &grams, true);
    assert_eq!(plain, swept, "records differ when swept between datagrams");
}
