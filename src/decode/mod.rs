//! L2–L4 decoding over borrowed bytes, and the watched-target test.
//!
//! `Packet` is a view: addresses and ports copied out (they are small), the
//! L4 payload borrowed from the frame (or from the fragment pool's buffer
//! when an IPv4 datagram had to be rebuilt).

use std::net::IpAddr;

pub mod defrag;
pub mod link;
pub mod targets;

pub use crate::time::Ts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// TCP header fields the reassembler needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub ack_flag: bool,
}

/// One decoded TCP or UDP packet.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub ts: Ts,
    /// 1-based index of the frame in the whole input (for warnings).
    pub frame_no: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    pub tcp: TcpInfo,
    /// L4 payload actually captured.
    pub payload: &'a [u8],
    /// True when the frame was cut by the snap length, so `payload` is
    /// shorter than what was on the wire.
    pub truncated: bool,
    /// Payload length on the wire (from the IP/UDP length fields).
    pub wire_payload_len: usize,
}

/// A packet between two `"ip:port"` addresses, for other modules' tests.
#[cfg(test)]
pub(crate) fn test_packet<'a>(src: &str, dst: &str, t: Transport, payload: &'a [u8]) -> Packet<'a> {
    let s: std::net::SocketAddr = src.parse().expect("src ip:port");
    let d: std::net::SocketAddr = dst.parse().expect("dst ip:port");
    Packet {
        ts: 0,
        frame_no: 1,
        src: s.ip(),
        dst: d.ip(),
        sport: s.port(),
        dport: d.port(),
        transport: t,
        tcp: TcpInfo::default(),
        payload,
        truncated: false,
        wire_payload_len: payload.len(),
    }
}

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, LaxIpv6Slice};

use crate::capture::Frame;
use crate::stats::Counters;
use defrag::{DefragLimits, DefragPool, FragKey, Fragment};
use link::{LinkError, L3};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Limits of the decoder (the IPv4 fragment pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeConfig {
    /// IPv4 datagrams being reassembled at once.
    pub frag_max_datagrams: usize,
    /// Payload bytes held by all datagrams being reassembled.
    pub frag_max_bytes: usize,
    /// Give up a datagram this long (packet time, ns) after its first fragment.
    pub frag_timeout_ns: u64,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        let d = DefragLimits::default();
        DecodeConfig {
            frag_max_datagrams: d.max_datagrams,
            frag_max_bytes: d.max_bytes,
            frag_timeout_ns: d.timeout_ns,
        }
    }
}

/// Turns frames into TCP/UDP packets. Owns the IPv4 fragment pool, so one
/// decoder serves one stream of frames (one worker).
pub struct Decoder {
    defrag: DefragPool,
}

/// The IP layer of a packet, ready for the transport header.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Captured IP payload (after IPv6 extension headers).
    payload: &'a [u8],
    /// IP payload length on the wire.
    wire_len: usize,
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Decoder {
        Decoder {
            defrag: DefragPool::new(DefragLimits {
                max_datagrams: cfg.frag_max_datagrams,
                max_bytes: cfg.frag_max_bytes,
                timeout_ns: cfg.frag_timeout_ns,
            }),
        }
    }

    /// Decodes one frame into a TCP or UDP packet. Anything else returns
    /// `None` after counting why (`unsupported_linktype`, `non_ip`,
    /// `non_tcp_udp`, `decode_errors`, `ipv6_fragments`, or a fragment held
    /// for reassembly). A frame cut by the snap length still decodes when
    /// its headers are whole: `truncated` is set and `payload` is what was
    /// captured.
    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>, c: &mut Counters) -> Option<Packet<'a>> {
        self.defrag.expire(frame.ts, c);
        let l3 = match link::network_layer(frame.linktype, frame.data) {
            Ok(l3) => l3,
            Err(LinkError::Malformed) => {
                c.decode_errors += 1;
                return None;
            }
            Err(LinkError::Unsupported(_)) => {
                c.unsupported_linktype += 1;
                return None;
            }
        };
        let ip = match l3 {
            L3::Ipv4(b) => self.ipv4(b, frame.ts, c)?,
            L3::Ipv6(b) => ipv6(b, c)?,
            L3::Other(_) => {
                c.non_ip += 1;
                return None;
            }
        };
        transport(ip, frame, c)
    }

    /// Gives up the fragments still waiting at the end of the input
    /// (counted as `ip_frag_timeout`).
    pub fn finish(&mut self, c: &mut Counters) {
        self.defrag.finish(c);
    }

    /// IPv4 datagrams being reassembled.
    pub fn fragments_in_flight(&self) -> usize {
        self.defrag.in_flight()
    }

    fn ipv4<'a>(&'a mut self, b: &'a [u8], ts: Ts, c: &mut Counters) -> Option<Ip<'a>> {
        if b.len() < 20 || b[0] >> 4 != 4 {
            c.decode_errors += 1;
            return None;
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if ihl < 20 || b.len() < ihl {
            c.decode_errors += 1;
            return None;
        }
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        // total_len below the header: 0 from TSO/GSO super-segments (or
        // bogus); fall back to what was captured.
        let (end, wire_len) = if total < ihl {
            (b.len(), b.len() - ihl)
        } else {
            (total.min(b.len()), total - ihl)
        };
        let payload = &b[ihl..end];
        let proto = b[9];
        let src4 = [b[12], b[13], b[14], b[15]];
        let dst4 = [b[16], b[17], b[18], b[19]];
        let flags_off = u16::from_be_bytes([b[6], b[7]]);
        let more = flags_off & 0x2000 != 0;
        let offset = usize::from(flags_off & 0x1fff) * 8;
        let src = IpAddr::V4(Ipv4Addr::from(src4));
        let dst = IpAddr::V4(Ipv4Addr::from(dst4));
        if !more && offset == 0 {
            return Some(Ip {
                src,
                dst,
                proto,
                payload,
                wire_len,
            });
        }
        // A fragment. Cut pieces cannot be rebuilt: count them as bad
        // (the rest of their datagram then times out).
        if payload.len() < wire_len {
            c.ip_fragments += 1;
            c.ip_frag_bad += 1;
            return None;
        }
        let frag = Fragment {
            key: FragKey {
                src: src4,
                dst: dst4,
                proto,
                id: u16::from_be_bytes([b[4], b[5]]),
            },
            offset,
            more,
            header_len: ihl,
            data: payload,
            ts,
        };
        let whole = self.defrag.insert(&frag, c)?;
        Some(Ip {
            src,
            dst,
            proto,
            payload: whole,
            wire_len: whole.len(),
        })
    }
}

fn ipv6<'a>(b: &'a [u8], c: &mut Counters) -> Option<Ip<'a>> {
    let Ok((s, stop)) = LaxIpv6Slice::from_slice(b) else {
        c.decode_errors += 1;
        return None;
    };
    let h = s.header();
    let p = s.payload();
    if p.fragmented {
        c.ipv6_fragments += 1;
        return None;
    }
    let proto = p.ip_number;
    if proto != IpNumber::TCP && proto != IpNumber::UDP {
        if stop.is_some() {
            // An extension header was cut or malformed.
            c.decode_errors += 1;
        } else {
            c.non_tcp_udp += 1;
        }
        return None;
    }
    let payload_len = usize::from(h.payload_length());
    let exts_len = s.extensions().slice().len();
    let wire_len = if p.incomplete {
        payload_len.saturating_sub(exts_len).max(p.payload.len())
    } else {
        p.payload.len()
    };
    Some(Ip {
        src: IpAddr::V6(Ipv6Addr::from(h.source())),
        dst: IpAddr::V6(Ipv6Addr::from(h.destination())),
        proto: proto.0,
        payload: p.payload,
        wire_len,
    })
}

fn transport<'a>(ip: Ip<'a>, frame: &Frame<'_>, c: &mut Counters) -> Option<Packet<'a>> {
    let b = ip.payload;
    let (transport, sport, dport, tcp, payload, wire_payload_len) = match ip.proto {
        PROTO_TCP => {
            if b.len() < 20 {
                c.decode_errors += 1;
                return None;
            }
            let doff = usize::from(b[12] >> 4) * 4;
            if doff < 20 || b.len() < doff || ip.wire_len < doff {
                c.decode_errors += 1;
                return None;
            }
            let flags = b[13];
            let tcp = TcpInfo {
                seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                fin: flags & 0x01 != 0,
                syn: flags & 0x02 != 0,
                rst: flags & 0x04 != 0,
                ack_flag: flags & 0x10 != 0,
            };
            (
                Transport::Tcp,
                be16(b, 0),
                be16(b, 2),
                tcp,
                &b[doff..],
                ip.wire_len - doff,
            )
        }
        PROTO_UDP => {
            if b.len() < 8 || ip.wire_len < 8 {
                c.decode_errors += 1;
                return None;
            }
            let ulen = usize::from(be16(b, 4));
            let (payload, wire) = if (8..=ip.wire_len).contains(&ulen) {
                (&b[8..ulen.min(b.len())], ulen - 8)
            } else if ulen == 0 || ulen > ip.wire_len {
                // 0: jumbogram or offloaded checksum/length; larger than
                // the IP payload: trust IP.
                (&b[8..], ip.wire_len - 8)
            } else {
                c.decode_errors += 1;
                return None;
            };
            (
                Transport::Udp,
                be16(b, 0),
                be16(b, 2),
                TcpInfo::default(),
                payload,
                wire,
            )
        }
        _ => {
            c.non_tcp_udp += 1;
            return None;
        }
    };
    Some(Packet {
        ts: frame.ts,
        frame_no: frame.frame_no,
        src: ip.src,
        dst: ip.dst,
        sport,
        dport,
        transport,
        tcp,
        truncated: payload.len() < wire_payload_len,
        payload,
        wire_payload_len,
    })
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// Which of `n` shards (workers, collectors) a 64-bit hash goes to, from
/// its top bits by a multiply and a shift: a `%` is a 64-bit division on
/// every packet and record, and takes the same bits that the tables inside
/// a shard index by (`h >> 32`), so each shard would use only its own
/// residue class of their slots.
#[inline]
pub fn shard(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// Direction-symmetric hash of a flow's endpoints (the same both ways),
/// deterministic across runs and machines: for sharding flows to workers.
pub fn flow_hash(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> u64 {
    fn words(ip: IpAddr) -> (u64, u64) {
        match ip {
            IpAddr::V4(a) => (u64::from(u32::from(a)), 4),
            IpAddr::V6(a) => {
                let v = u128::from(a);
                ((v >> 64) as u64 ^ 0x6a09_e667_f3bc_c908, v as u64)
            }
        }
    }
    #[inline]
    fn mix(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let a = (words(src), sport);
    let b = (words(dst), dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
    const K3: u64 = 0x5899_65cc_7537_4cc3;
    let mut h = mix(lo.0 .0 ^ K0, lo.0 .1 ^ K1);
    h = mix(h ^ hi.0 .0 ^ K2, hi.0 .1 ^ K3);
    h = mix(h ^ (u64::from(lo.1) << 16 | u64::from(hi.1)) ^ K1, K0);
    mix(h ^ K3, K2 ^ h.rotate_left(29))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpFragOffset, Ipv4Header, LinuxSllPacketType, PacketBuilder, VlanId};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SRC4: [u8; 4] = [10, 0, 0, 1];
    const DST4: [u8; 4] = [10, 0, 0, 2];
    const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const PAYLOAD: &[u8] = b"get foo\r\n";

    /// An owned copy of a decoded packet.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Got {
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        transport: Transport,
        tcp: TcpInfo,
        payload: Vec<u8>,
        truncated: bool,
        wire_payload_len: usize,
        ts: Ts,
        frame_no: u64,
    }

    fn frame(linktype: u32, data: &[u8]) -> Frame<'_> {
        Frame {
            ts: 5_000_000_000,
            frame_no: 7,
            linktype,
            wire_len: data.len() as u32,
            data,
        }
    }

    fn dec(d: &mut Decoder, f: &Frame<'_>, c: &mut Counters) -> Option<Got> {
        d.decode(f, c).map(|p| Got {
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            transport: p.transport,
            tcp: p.tcp,
            payload: p.payload.to_vec(),
            truncated: p.truncated,
            wire_payload_len: p.wire_payload_len,
            ts: p.ts,
            frame_no: p.frame_no,
        })
    }

    fn decode_one(linktype: u32, data: &[u8]) -> (Option<Got>, Counters) {
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let g = dec(&mut d, &frame(linktype, data), &mut c);
        (g, c)
    }

    fn tcp_v4_expected() -> Got {
        Got {
            src: IpAddr::from(SRC4),
            dst: IpAddr::from(DST4),
            sport: 40000,
            dport: 11211,
            transport: Transport::Tcp,
            tcp: TcpInfo {
                seq: 1000,
                ack: 77,
                syn: false,
                fin: false,
                rst: false,
                ack_flag: true,
            },
            payload: PAYLOAD.to_vec(),
            truncated: false,
            wire_payload_len: PAYLOAD.len(),
            ts: 5_000_000_000,
            frame_no: 7,
        }
    }

    /// Raw IPv4/TCP bytes.
    fn ip4_tcp() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(SRC4, DST4, 64)
            .tcp(40000, 11211, 1000, 512)
            .ack(77)
            .write(&mut v, PAYLOAD)
            .unwrap();
        v
    }

    fn ip6_udp() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv6(SRC6, DST6, 64)
            .udp(40001, 11211)
            .write(&mut v, PAYLOAD)
            .unwrap();
        v
    }

    fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&MAC_B);
        v.extend_from_slice(&MAC_A);
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC4, DST4, 64)
            .tcp(40000, 11211, 1000, 512)
            .ack(77)
            .write(&mut f, PAYLOAD)
            .unwrap();
        let (g, c) = decode_one(1, &f);
        assert_eq!(g, Some(tcp_v4_expected()));
        assert_eq!(c, Counters::default());
    }

    #[test]
    fn tcp_flags_and_options() {
        let mut v = Vec::new();
        let mut b = PacketBuilder::ipv4(SRC4, DST4, 64)
            .tcp(1, 2, u32::MAX, 9)
            .syn()
            .fin()
            .rst();
        b = b
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        b.write(&mut v, b"x").unwrap();
        let (g, _) = decode_one(101, &v);
        let g = g.unwrap();
        assert_eq!(
            g.tcp,
            TcpInfo {
                seq: u32::MAX,
                ack: 0,
                syn: true,
                fin: true,
                rst: true,
                ack_flag: false
            }
        );
        assert_eq!(g.payload, b"x");
        assert_eq!(g.wire_payload_len, 1);
    }

    #[test]
    fn every_link_type_gives_the_same_packet() {
        let ip = ip4_tcp();
        let want = tcp_v4_expected();
        let mut sll = Vec::new();
        PacketBuilder::linux_sll(LinuxSllPacketType::HOST, 6, [2, 0, 0, 0, 0, 1, 0, 0])
            .ipv4(SRC4, DST4, 64)
            .tcp(40000, 11211, 1000, 512)
            .ack(77)
            .write(&mut sll, PAYLOAD)
            .unwrap();
        // SLL2: protocol, reserved, ifindex, hatype, pkttype, addr len, addr[8].
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
        sll2.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        sll2.extend_from_slice(&ip);
        let with = |hdr: &[u8]| [hdr, &ip[..]].concat();
        let cases: Vec<(u32, Vec<u8>)> = vec![
            (1, eth(0x0800, &ip)),
            (113, sll),
            (276, sll2),
            (101, ip.clone()),
            (12, ip.clone()),
            (14, ip.clone()),
            (228, ip.clone()),
            (0, with(&[2, 0, 0, 0])),
            (0, with(&[0, 0, 0, 2])),
            (108, with(&[0, 0, 0, 2])),
        ];
        for (lt, f) in cases {
            let (g, c) = decode_one(lt, &f);
            assert_eq!(g.as_ref(), Some(&want), "linktype {lt}");
            assert_eq!(c, Counters::default(), "linktype {lt}");
        }
    }

    #[test]
    fn ipv6_over_every_link_type() {
        let ip = ip6_udp();
        let want = Got {
            src: IpAddr::from(SRC6),
            dst: IpAddr::from(DST6),
            sport: 40001,
            dport: 11211,
            transport: Transport::Udp,
            tcp: TcpInfo::default(),
            payload: PAYLOAD.to_vec(),
            truncated: false,
            wire_payload_len: PAYLOAD.len(),
            ts: 5_000_000_000,
            frame_no: 7,
        };
        let with = |hdr: &[u8]| [hdr, &ip[..]].concat();
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        let cases: Vec<(u32, Vec<u8>)> = vec![
            (1, eth(0x86dd, &ip)),
            (
                113,
                with(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x86, 0xdd]),
            ),
            (276, sll2),
            (101, ip.clone()),
            (229, ip.clone()),
            (0, with(&[24, 0, 0, 0])),
            (0, with(&[0, 0, 0, 28])),
            (0, with(&[30, 0, 0, 0])),
            (108, with(&[0, 0, 0, 24])),
        ];
        for (lt, f) in cases {
            let (g, c) = decode_one(lt, &f);
            assert_eq!(g.as_ref(), Some(&want), "linktype {lt}");
            assert_eq!(c, Counters::default(), "linktype {lt}");
        }
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let mut v = Vec::new();
        PacketBuilder::ipv6(SRC6, DST6, 64)
            .tcp(40000, 11211, 1000, 512)
            .ack(77)
            .write(&mut v, PAYLOAD)
            .unwrap();
        // Insert a hop-by-hop header (PadN) and a destination-options header.
        let tcp = v.split_off(40);
        v[6] = 0; // next header: hop-by-hop
        let plen = u16::from_be_bytes([v[4], v[5]]) + 16;
        v[4..6].copy_from_slice(&plen.to_be_bytes());
        v.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // -> destination options
        v.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // -> TCP
        v.extend_from_slice(&tcp);
        let (g, c) = decode_one(229, &v);
        let g = g.unwrap();
        assert_eq!(
            (g.sport, g.dport, g.transport),
            (40000, 11211, Transport::Tcp)
        );
        assert_eq!(g.payload, PAYLOAD);
        assert_eq!((g.truncated, g.wire_payload_len), (false, PAYLOAD.len()));
        assert_eq!(c, Counters::default());
        // Cut inside the TCP header: a decode error, nothing else.
        let cut = &v[..40 + 16 + 10];
        let (g, c) = decode_one(229, cut);
        assert_eq!(g, None);
        assert_eq!(c.decode_errors, 1);
    }

    #[test]
    fn vlan_single_double_triple() {
        let want = tcp_v4_expected();
        let build = |double: bool| {
            let mut f = Vec::new();
            let b = PacketBuilder::ethernet2(MAC_A, MAC_B);
            let b = if double {
                b.double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(200).unwrap())
            } else {
                b.single_vlan(VlanId::try_new(100).unwrap())
            };
            b.ipv4(SRC4, DST4, 64)
                .tcp(40000, 11211, 1000, 512)
                .ack(77)
                .write(&mut f, PAYLOAD)
                .unwrap();
            f
        };
        let single = build(false);
        assert_eq!(&single[12..14], &[0x81, 0x00]);
        let double = build(true);
        assert_eq!(&double[12..14], &[0x88, 0xa8]);
        // Triple: one more 0x9100 tag outside.
        let mut triple = double[..12].to_vec();
        triple.extend_from_slice(&[0x91, 0x00, 0x00, 0x2a]);
        triple.extend_from_slice(&double[12..]);
        // Eight 802.1Q tags.
        let ip = ip4_tcp();
        let mut eight = eth(0x8100, &[]);
        for i in 0..8 {
            let next: u16 = if i == 7 { 0x0800 } else { 0x8100 };
            eight.extend_from_slice(&[0, i as u8]);
            eight.extend_from_slice(&next.to_be_bytes());
        }
        eight.extend_from_slice(&ip);
        for (name, f) in [
            ("single", single),
            ("double", double),
            ("triple", triple),
            ("eight", eight),
        ] {
            let (g, c) = decode_one(1, &f);
            assert_eq!(g.as_ref(), Some(&want), "{name}");
            assert_eq!(c, Counters::default(), "{name}");
        }
        // VLAN after a Linux cooked header.
        let mut sll = vec![
            0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x81, 0x00, 0, 5, 0x08, 0x00,
        ];
        sll.extend_from_slice(&ip);
        assert_eq!(decode_one(113, &sll).0, Some(want));
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC4, DST4, 64)
            .udp(40001, 11211)
            .write(&mut f, b"ab")
            .unwrap();
        assert_eq!(f.len(), 14 + 20 + 8 + 2);
        f.resize(60, 0);
        let (g, c) = decode_one(1, &f);
        let g = g.unwrap();
        assert_eq!(
            (
                g.transport,
                g.payload.as_slice(),
                g.wire_payload_len,
                g.truncated
            ),
            (Transport::Udp, &b"ab"[..], 2, false)
        );
        assert_eq!(c, Counters::default());
    }

    #[test]
    fn not_ip_not_tcp_udp_unsupported() {
        let (g, c) = decode_one(1, &eth(0x0806, &[0; 28]));
        assert_eq!((g, c.non_ip), (None, 1));
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC4, DST4, 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut icmp, b"ping")
            .unwrap();
        let (g, c) = decode_one(1, &icmp);
        assert_eq!((g, c.non_tcp_udp, c.decode_errors), (None, 1, 0));
        let (g, c) = decode_one(147, &ip4_tcp());
        assert_eq!((g, c.unsupported_linktype), (None, 1));
        let (g, c) = decode_one(0, &[9, 0, 0, 0, 1, 2]);
        assert_eq!((g, c.non_ip), (None, 1));
        // EtherType says IPv4, the header says 6.
        let (g, c) = decode_one(1, &eth(0x0800, &ip6_udp()));
        assert_eq!((g, c.decode_errors), (None, 1));
        // Bad IHL, UDP length below its header.
        let mut bad = ip4_tcp();
        bad[0] = 0x44;
        assert_eq!(decode_one(101, &bad).1.decode_errors, 1);
        let mut v = Vec::new();
        PacketBuilder::ipv4(SRC4, DST4, 64)
            .udp(1, 2)
            .write(&mut v, b"abc")
            .unwrap();
        v[24..26].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(decode_one(101, &v).1.decode_errors, 1);
    }

    /// Decodes every prefix of `full` as a frame cut by the snap length.
    /// Returns how many prefixes failed (all counted as decode errors).
    fn cut_everywhere(linktype: u32, full: &[u8], headers: usize, payload: &[u8]) -> u64 {
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let mut failed = 0;
        for cut in 0..=full.len() {
            let f = Frame {
                ts: 1,
                frame_no: 1,
                linktype,
                wire_len: full.len() as u32,
                data: &full[..cut],
            };
            match dec(&mut d, &f, &mut c) {
                Some(g) => {
                    assert!(cut >= headers, "cut {cut} decoded");
                    assert_eq!(g.payload, &payload[..cut - headers], "cut {cut}");
                    assert_eq!(g.wire_payload_len, payload.len(), "cut {cut}");
                    assert_eq!(g.truncated, cut < full.len(), "cut {cut}");
                }
                None => {
                    assert!(cut < headers, "cut {cut} failed");
                    failed += 1;
                }
            }
        }
        assert_eq!(c.decode_errors, failed);
        assert_eq!(
            c.decode_errors + c.non_ip + c.non_tcp_udp + c.unsupported_linktype,
            failed
        );
        failed
    }

    #[test]
    fn truncated_frames_at_every_length() {
        let payload: Vec<u8> = (0..200u8).collect();
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC4, DST4, 64)
            .tcp(1, 2, 3, 4)
            .write(&mut f, &payload)
            .unwrap();
        assert_eq!(cut_everywhere(1, &f, 54, &payload), 54);

        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
            .ipv6(SRC6, DST6, 64)
            .udp(1, 2)
            .write(&mut f, &payload)
            .unwrap();
        assert_eq!(cut_everywhere(1, &f, 14 + 8 + 40 + 8, &payload), 70);

        let mut f = vec![0x08, 0x00];
        f.extend_from_slice(&[0u8; 18]);
        PacketBuilder::ipv4(SRC4, DST4, 64)
            .udp(1, 2)
            .write(&mut f, &payload)
            .unwrap();
        assert_eq!(cut_everywhere(276, &f, 48, &payload), 48);

        let mut f = vec![30, 0, 0, 0];
        PacketBuilder::ipv6(SRC6, DST6, 64)
            .tcp(1, 2, 3, 4)
            .write(&mut f, &payload)
            .unwrap();
        assert_eq!(cut_everywhere(0, &f, 64, &payload), 64);

        let mut f = Vec::new();
        PacketBuilder::linux_sll(LinuxSllPacketType::OUTGOING, 6, [0; 8])
            .ipv4(SRC4, DST4, 64)
            .udp(1, 2)
            .write(&mut f, &payload)
            .unwrap();
        assert_eq!(cut_everywhere(113, &f, 44, &payload), 44);
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator; every link type, every length.
        let mut x: u64 = 0x1234_5678;
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let mut buf = [0u8; 96];
        for i in 0..20_000u64 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Make IP headers likely.
            buf[0] = 0x45;
            buf[14] = if i % 2 == 0 { 0x45 } else { 0x60 };
            let lt = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276][(i % 10) as usize];
            let len = (x % 97) as usize;
            let f = Frame {
                ts: i * 1_000_000_000,
                frame_no: i,
                linktype: lt,
                wire_len: 96,
                data: &buf[..len],
            };
            let _ = dec(&mut d, &f, &mut c);
        }
        d.finish(&mut c);
        assert_eq!(d.fragments_in_flight(), 0);
    }

    // ---- IPv4 fragments ----

    /// The IP payload of a UDP datagram carrying `n` bytes.
    fn udp_datagram(n: usize) -> (Vec<u8>, Vec<u8>) {
        let payload: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let mut v = Vec::new();
        PacketBuilder::ipv4(SRC4, DST4, 64)
            .udp(40001, 11211)
            .write(&mut v, &payload)
            .unwrap();
        (v.split_off(20), payload)
    }

    /// An Ethernet frame carrying one IPv4 fragment.
    fn frag(id: u16, offset: usize, more: bool, proto: u8, data: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(data.len() as u16, 64, IpNumber(proto), SRC4, DST4).unwrap();
        h.identification = id;
        h.more_fragments = more;
        h.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut v = Vec::new();
        h.write(&mut v).unwrap();
        v.extend_from_slice(data);
        eth(0x0800, &v)
    }

    /// Splits an IP payload into fragments of `size` bytes: (offset, more, bytes).
    fn split(dg: &[u8], size: usize) -> Vec<(usize, bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < dg.len() {
            let end = (off + size).min(dg.len());
            out.push((off, end < dg.len(), dg[off..end].to_vec()));
            off = end;
        }
        out
    }

    fn feed(
        d: &mut Decoder,
        c: &mut Counters,
        id: u16,
        pieces: &[(usize, bool, Vec<u8>)],
        ts: u64,
    ) -> Vec<Got> {
        let mut out = Vec::new();
        for (off, more, data) in pieces {
            let f = frag(id, *off, *more, 17, data);
            let fr = Frame {
                ts,
                frame_no: 1,
                linktype: 1,
                wire_len: f.len() as u32,
                data: &f,
            };
            if let Some(g) = dec(d, &fr, c) {
                out.push(g);
            }
        }
        out
    }

    fn assert_udp_whole(g: &Got, payload: &[u8]) {
        assert_eq!(
            (g.transport, g.sport, g.dport),
            (Transport::Udp, 40001, 11211)
        );
        assert_eq!(g.payload, payload);
        assert_eq!((g.wire_payload_len, g.truncated), (payload.len(), false));
    }

    #[test]
    fn fragments_in_order_and_out_of_order() {
        let (dg, payload) = udp_datagram(3000);
        let pieces = split(&dg, 1480);
        assert_eq!(pieces.len(), 3);
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let got = feed(&mut d, &mut c, 1, &pieces, 1);
        assert_eq!(got.len(), 1);
        assert_udp_whole(&got[0], &payload);
        assert_eq!((c.ip_fragments, c.ip_reassembled), (3, 1));

        let rev: Vec<_> = pieces.iter().rev().cloned().collect();
        let got = feed(&mut d, &mut c, 2, &rev, 2);
        assert_eq!(got.len(), 1);
        assert_udp_whole(&got[0], &payload);
        let mixed = vec![pieces[1].clone(), pieces[2].clone(), pieces[0].clone()];
        assert_eq!(feed(&mut d, &mut c, 3, &mixed, 3).len(), 1);
        assert_eq!(
            (
                c.ip_fragments,
                c.ip_reassembled,
                c.ip_frag_bad,
                c.ip_frag_timeout
            ),
            (9, 3, 0, 0)
        );
        assert_eq!(d.fragments_in_flight(), 0);
    }

    #[test]
    fn fragments_duplicated_and_overlapping_same_bytes() {
        let (dg, payload) = udp_datagram(3000);
        let p = split(&dg, 1480);
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let dup = vec![p[0].clone(), p[0].clone(), p[2].clone(), p[1].clone()];
        let got = feed(&mut d, &mut c, 1, &dup, 1);
        assert_eq!(got.len(), 1);
        assert_udp_whole(&got[0], &payload);
        // Overlap: [0,1480) [1000,2480) [2480,end).
        let over = vec![
            (0, true, dg[..1480].to_vec()),
            (1000, true, dg[1000..2480].to_vec()),
            (2480, false, dg[2480..].to_vec()),
        ];
        let got = feed(&mut d, &mut c, 2, &over, 1);
        assert_eq!(got.len(), 1);
        assert_udp_whole(&got[0], &payload);
        assert_eq!((c.ip_fragments, c.ip_reassembled, c.ip_frag_bad), (7, 2, 0));
    }

    #[test]
    fn fragments_overlapping_with_different_bytes_are_bad() {
        let (dg, _) = udp_datagram(3000);
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let mut other = dg[1000..2480].to_vec();
        other[100] ^= 0xff; // inside the overlap with the first piece
        let pieces = vec![(0, true, dg[..1480].to_vec()), (1000, true, other)];
        assert!(feed(&mut d, &mut c, 1, &pieces, 1).is_empty());
        assert_eq!((c.ip_fragments, c.ip_frag_bad, c.ip_reassembled), (2, 2, 0));
        assert_eq!(d.fragments_in_flight(), 0);
        // The last piece after the entry was dropped starts a new one.
        assert!(feed(&mut d, &mut c, 1, &[(2480, false, dg[2480..].to_vec())], 1).is_empty());
        assert_eq!(d.fragments_in_flight(), 1);
        d.finish(&mut c);
        assert_eq!(c.ip_frag_timeout, 1);
    }

    #[test]
    fn fragments_with_inconsistent_lengths_are_bad() {
        let (dg, _) = udp_datagram(3000);
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        // Two different "last" pieces.
        let pieces = vec![
            (1480, false, dg[1480..2000].to_vec()),
            (1480, false, dg[1480..].to_vec()),
        ];
        assert!(feed(&mut d, &mut c, 1, &pieces, 1).is_empty());
        assert_eq!(c.ip_frag_bad, 2);
        // A middle piece whose length is not a multiple of 8.
        let pieces = vec![
            (0, true, dg[..1480].to_vec()),
            (1480, true, dg[1480..1483].to_vec()),
        ];
        assert!(feed(&mut d, &mut c, 2, &pieces, 1).is_empty());
        assert_eq!(c.ip_frag_bad, 4);
        // A piece past the end of the datagram.
        let pieces = vec![(1480, false, dg[1480..].to_vec()), (2960, true, vec![0; 8])];
        assert!(feed(&mut d, &mut c, 3, &pieces, 1).is_empty());
        assert_eq!(c.ip_frag_bad, 6);
        // Beyond 65535 bytes.
        let pieces = vec![(65528, false, vec![0; 16])];
        assert!(feed(&mut d, &mut c, 4, &pieces, 1).is_empty());
        assert_eq!(c.ip_frag_bad, 7);
        // A last piece shorter than what was already received.
        let pieces = vec![
            (1480, true, dg[1480..2960].to_vec()),
            (8, false, dg[8..1480].to_vec()),
        ];
        assert!(feed(&mut d, &mut c, 5, &pieces, 1).is_empty());
        assert_eq!(c.ip_frag_bad, 9);
        assert_eq!(
            (c.ip_fragments, c.ip_reassembled, d.fragments_in_flight()),
            (9, 0, 0)
        );
    }

    #[test]
    fn missing_fragment_times_out_in_packet_time() {
        let (dg, payload) = udp_datagram(3000);
        let p = split(&dg, 1480);
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        assert!(feed(
            &mut d,
            &mut c,
            1,
            &[p[0].clone(), p[2].clone()],
            1_000_000_000
        )
        .is_empty());
        assert_eq!(d.fragments_in_flight(), 1);
        // 29 s later: still waiting.
        let ip = eth(0x0800, &ip4_tcp());
        let mk = |ts| Frame {
            ts,
            frame_no: 2,
            linktype: 1,
            wire_len: ip.len() as u32,
            data: &ip,
        };
        assert!(dec(&mut d, &mk(30_000_000_000), &mut c).is_some());
        assert_eq!((d.fragments_in_flight(), c.ip_frag_timeout), (1, 0));
        // 31 s after the first piece: given up, on an unrelated packet.
        assert!(dec(&mut d, &mk(31_000_000_001), &mut c).is_some());
        assert_eq!((d.fragments_in_flight(), c.ip_frag_timeout), (0, 2));
        // The missing piece alone now starts a new datagram.
        assert!(feed(&mut d, &mut c, 1, &[p[1].clone()], 32_000_000_000).is_empty());
        let got = feed(
            &mut d,
            &mut c,
            1,
            &[p[0].clone(), p[2].clone()],
            32_000_000_000,
        );
        assert_eq!(got.len(), 1);
        assert_udp_whole(&got[0], &payload);
        assert_eq!(
            (c.ip_fragments, c.ip_reassembled, c.ip_frag_timeout),
            (5, 1, 2)
        );
    }

    #[test]
    fn fragment_pool_budgets() {
        let (dg, payload) = udp_datagram(3000);
        let p = split(&dg, 1480);
        let cfg = DecodeConfig {
            frag_max_datagrams: 2,
            frag_max_bytes: 6000,
            frag_timeout_ns: 30_000_000_000,
        };
        let mut d = Decoder::new(cfg);
        let mut c = Counters::default();
        assert!(feed(&mut d, &mut c, 1, &p[..1], 1).is_empty());
        assert!(feed(&mut d, &mut c, 2, &p[..1], 1).is_empty());
        // Third datagram: entry budget full.
        assert!(feed(&mut d, &mut c, 3, &p[..1], 1).is_empty());
        assert_eq!((c.ip_frag_overflow, d.fragments_in_flight()), (1, 2));
        // The first two still complete.
        assert_eq!(feed(&mut d, &mut c, 1, &p[1..], 1).len(), 1);
        assert_eq!(feed(&mut d, &mut c, 2, &p[1..], 1).len(), 1);
        assert_eq!(c.ip_reassembled, 2);

        // Byte budget: 3008 + 2960 bytes fit in 6000; the last piece of the
        // second datagram (48 bytes more) does not.
        assert!(feed(&mut d, &mut c, 4, &p[2..], 1).is_empty());
        assert!(feed(&mut d, &mut c, 5, &p[1..2], 1).is_empty());
        assert_eq!(d.defrag.bytes_in_use(), 3008 + 2960);
        assert!(feed(&mut d, &mut c, 5, &p[2..], 1).is_empty());
        // Datagram 5 would need 3008 bytes: given up with both its pieces.
        assert_eq!((c.ip_frag_overflow, d.fragments_in_flight()), (3, 1));
        let got = feed(&mut d, &mut c, 4, &p[..2], 1);
        assert_udp_whole(&got[0], &payload);
        assert_eq!((d.defrag.bytes_in_use(), d.fragments_in_flight()), (0, 0));
        assert_eq!(
            (
                c.ip_fragments,
                c.ip_reassembled,
                c.ip_frag_bad,
                c.ip_frag_timeout
            ),
            (12, 3, 0, 0)
        );
    }

    #[test]
    fn fragmented_tcp_and_cut_fragments() {
        let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let mut v = Vec::new();
        PacketBuilder::ipv4(SRC4, DST4, 64)
            .tcp(40000, 11211, 1000, 512)
            .ack(77)
            .write(&mut v, &payload)
            .unwrap();
        let dg = v.split_off(20);
        let p = split(&dg, 1000);
        let mut d = Decoder::new(DecodeConfig::default());
        let mut c = Counters::default();
        let mut got = Vec::new();
        for (off, more, data) in &p {
            let f = frag(9, *off, *more, 6, data);
            let fr = Frame {
                ts: 1,
                frame_no: 3,
                linktype: 1,
                wire_len: f.len() as u32,
                data: &f,
            };
            got.extend(dec(&mut d, &fr, &mut c));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].transport,
                got[0].tcp.seq,
                got[0].tcp.ack,
                got[0].frame_no
            ),
            (Transport::Tcp, 1000, 77, 3)
        );
        assert_eq!(
            (got[0].payload.as_slice(), got[0].wire_payload_len),
            (payload.as_slice(), 2000)
        );
        // A fragment cut by the snap length cannot be used.
        let f = frag(10, 0, true, 6, &dg[..1000]);
        let fr = Frame {
            ts: 1,
            frame_no: 4,
            linktype: 1,
            wire_len: f.len() as u32,
            data: &f[..500],
        };
        assert!(dec(&mut d, &fr, &mut c).is_none());
        assert_eq!((c.ip_fragments, c.ip_reassembled, c.ip_frag_bad), (4, 1, 1));
    }

    #[test]
    fn ipv6_fragments_are_counted_and_skipped() {
        let mut v = Vec::new();
        PacketBuilder::ipv6(SRC6, DST6, 64)
            .udp(1, 2)
            .write(&mut v, PAYLOAD)
            .unwrap();
        let udp = v.split_off(40);
        v[6] = 44;
        let plen = (udp.len() + 8) as u16;
        v[4..6].copy_from_slice(&plen.to_be_bytes());
        v.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 42]); // offset 0, M=1
        v.extend_from_slice(&udp);
        let (g, c) = decode_one(229, &v);
        assert_eq!((g, c.ipv6_fragments, c.decode_errors), (None, 1, 0));
    }

    #[test]
    fn flow_hash_is_symmetric_and_deterministic() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let x: IpAddr = "fd00::1".parse().unwrap();
        let y: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(flow_hash(a, 40000, b, 11211), flow_hash(b, 11211, a, 40000));
        assert_eq!(flow_hash(x, 1, y, 2), flow_hash(y, 2, x, 1));
        assert_ne!(flow_hash(a, 40000, b, 11211), flow_hash(a, 40001, b, 11211));
        assert_ne!(flow_hash(a, 40000, b, 11211), flow_hash(a, 11211, b, 40000));
        assert_ne!(flow_hash(a, 1, a, 2), flow_hash(b, 1, b, 2));
        // Fixed keys: the same value on every run and machine.
        assert_eq!(flow_hash(a, 40000, b, 11211), FLOW_HASH_SAMPLE);
        // Spread over 16 shards.
        let mut shards = [0u32; 16];
        for port in 0..16_000u16 {
            shards[(flow_hash(a, 30000 + port, b, 11211) % 16) as usize] += 1;
        }
        assert!(
            shards.iter().all(|&n| (800..1200).contains(&n)),
            "{shards:?}"
        );
    }
    #[test]
    fn public_captures_decode_like_tshark() {
        use crate::capture::file::FileSource;
        use std::path::Path;
        let root = Path::new("/work/shared/pcaps/public");
        if !root.is_dir() {
            eprintln!("skipped: {} is absent", root.display());
            return;
        }
        // file, frames, TCP payload bytes, UDP payload bytes, SYNs (tshark 4.0).
        let cases = [
            ("DeepTrace/memcached.pcap", 100, 1723, 0, 16),
            ("sthread/memcache.pcap", 53, 179, 0, 8),
            ("percona-toolkit/memc_tcpdump004.pcap", 12, 46, 0, 2),
            ("Flightplan/mcd_test_new.pcap", 10000, 0, 740_908, 0),
            ("deepflow/memcached-userdata.pcap", 20421, 551_979, 0, 0),
            ("nDPI/memcached.cap", 10, 1035, 0, 2),
            ("NICA/memcached-requests.pcap", 90, 0, 2160, 0),
        ];
        for (file, frames, tcp_bytes, udp_bytes, syns) in cases {
            let p = root.join(file);
            if !p.is_file() {
                continue;
            }
            let mut src = FileSource::open(&[p]).unwrap();
            let mut d = Decoder::new(DecodeConfig::default());
            let mut c = Counters::default();
            let (mut n, mut t, mut u, mut s) = (0u64, 0usize, 0usize, 0u64);
            while let Some(f) = src.next_frame(&mut c).unwrap() {
                let p = d
                    .decode(&f, &mut c)
                    .unwrap_or_else(|| panic!("{file} frame {} did not decode", f.frame_no));
                assert!(!p.truncated, "{file}");
                n += 1;
                match p.transport {
                    Transport::Tcp => t += p.payload.len(),
                    Transport::Udp => u += p.payload.len(),
                }
                s += u64::from(p.tcp.syn);
            }
            assert_eq!((n, t, u, s), (frames, tcp_bytes, udp_bytes, syns), "{file}");
            assert_eq!(
                (
                    c.decode_errors,
                    c.non_ip,
                    c.non_tcp_udp,
                    c.unsupported_linktype
                ),
                (0, 0, 0, 0),
                "{file}"
            );
        }
    }

    const FLOW_HASH_SAMPLE: u64 = 15_148_669_243_578_619_408;
}
