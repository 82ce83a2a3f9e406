//! Hand-made TCP conversations for generated captures (the bounded-table
//! tests): a seeded SplitMix64, and connections that open with a
//! handshake and carry request/answer exchanges with consistent sequence
//! and acknowledgement numbers. Included by path (`#[path]`) by the tests
//! that generate traffic, so the other test binaries do not build it.

use super::PcapOut;
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;

/// SplitMix64, seeded.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    #[allow(dead_code)]
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One TCP connection: client and server endpoints and the next sequence
/// number of each side.
#[derive(Clone, Copy)]
pub struct Conn {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    cs: u32,
    ss: u32,
}

impl Conn {
    /// Writes the handshake at `ts`, `ts + 1` and `ts + 2`.
    pub fn open(
        out: &mut PcapOut,
        ts: u64,
        client: (Ipv4Addr, u16),
        server: (Ipv4Addr, u16),
    ) -> Conn {
        let (cs, ss) = (1000u32, 5000u32);
        out.frame(ts, &frame(client, server, cs, None, true, b""));
        out.frame(ts + 1, &frame(server, client, ss, Some(cs + 1), true, b""));
        out.frame(
            ts + 2,
            &frame(client, server, cs + 1, Some(ss + 1), false, b""),
        );
        Conn {
            client,
            server,
            cs: cs + 1,
            ss: ss + 1,
        }
    }

    /// Writes `req` at `req_ts` and its answer `resp` at `resp_ts`.
    pub fn exchange(
        &mut self,
        out: &mut PcapOut,
        req_ts: u64,
        resp_ts: u64,
        req: &[u8],
        resp: &[u8],
    ) {
        out.frame(
            req_ts,
            &frame(self.client, self.server, self.cs, Some(self.ss), false, req),
        );
        self.cs += req.len() as u32;
        out.frame(
            resp_ts,
            &frame(
                self.server,
                self.client,
                self.ss,
                Some(self.cs),
                false,
                resp,
            ),
        );
        self.ss += resp.len() as u32;
    }
}

fn frame(
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([0; 6], [0; 6]).ipv4(src.octets(), dst.octets(), 64);
    let mut t = b.tcp(sport, dport, seq, 65535);
    if syn {
        t = t.syn();
    }
    if let Some(a) = ack {
        t = t.ack(a);
    }
    let mut v = Vec::new();
    t.write(&mut v, payload).unwrap();
    v
}
