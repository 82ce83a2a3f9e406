//! The session engine, the whole per-packet path of a worker: TCP
//! reassembly, UDP exchanges, the parsers and request/response pairing.
//! Input (through `arbitrary`): a packet sequence over a few connections,
//! both directions, TCP and UDP; flags (SYN, FIN, RST, no ACK), holes,
//! retransmissions and overlaps, reorders, time steps up to minutes;
//! payloads from the fixtures, handwritten messages, or raw bytes; under
//! the default bounds, tiny ones, or a small memory budget.
//!
//! Invariants: records emitted equal records counted; no flow or exchange
//! left after `finish`; the heap the engine holds stays within its memory
//! budget (counted by the allocator); no more TCP flows than SYN-less
//! packets could open; the same records (as a multiset) whether or not
//! the engine is ticked at the packet time reached between packets, as
//! the replay pipeline does at every batch boundary.

use crate::{alloc, dict, fixtures, Digest};
use arbitrary::{Arbitrary, Unstructured};
use memtap::config::Config;
use memtap::decode::targets::{Target, Targets};
use memtap::decode::{Packet, TcpInfo, Transport};
use memtap::session::{Engine, EngineConfig, Record};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Bounds {
    Default,
    Tiny,
    /// `[limits] memory = "16MiB"`, the smallest accepted: every part of the split is small.
    SmallBudget,
}

#[derive(Arbitrary, Debug)]
pub enum Body {
    /// A handwritten message of the packet's direction.
    Dict(u8),
    /// Several handwritten messages back to back (a pipeline).
    Dicts(Vec<u8>),
    /// A payload of the fixtures (of the packet's transport).
    Fixture(u16),
    /// A fixture payload cut at a point (a message split across packets).
    FixtureCut(u16, u16, bool),
    Raw(Vec<u8>),
    /// A long run of one byte (a line that never ends).
    Run(u8, u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SeqOp {
    /// Where the direction's stream is.
    Next,
    /// Back by some bytes: a retransmission or an overlap.
    Back(u16),
    /// Ahead: a hole before it.
    Skip(u16),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
pub struct Pkt {
    /// Which connection: 8 TCP clients, 8 UDP ones, on IPv4 and IPv6.
    conn: u8,
    to_server: bool,
    udp: bool,
    syn: bool,
    fin: bool,
    rst: bool,
    no_ack: bool,
    seq: SeqOp,
    /// Time since the previous packet, in units of `dt_unit`.
    dt: u8,
    /// 0: µs, 1: ms, 2: 100 ms, 3: 10 s.
    dt_unit: u8,
    /// UDP frame header: request id, sequence, total (`None`: the body
    /// as it is, header or not).
    udp_hdr: Option<(u8, u8, u8)>,
    body: Body,
    /// The wire had more than captured.
    cut: bool,
    /// Sent after the next packet (a reorder).
    late: bool,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    bounds: Bounds,
    udp_hold: bool,
    pkts: Vec<Pkt>,
}

/// One packet, owned.
pub struct Owned {
    pub ts: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub udp: bool,
    pub tcp: TcpInfo,
    pub payload: Vec<u8>,
    pub wire: usize,
}

pub const SERVER_PORT: u16 = 11211;

fn server(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
    }
}

fn client(conn: u8) -> (IpAddr, u16) {
    let v6 = conn & 0x10 != 0;
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, u16::from(conn & 3)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, conn & 3))
    };
    (ip, 40_000 + u16::from(conn & 0x1f))
}

fn body(b: &Body, to_server: bool, udp: bool) -> Vec<u8> {
    let msgs = if to_server {
        dict::REQUESTS
    } else {
        dict::RESPONSES
    };
    let fixture = |i: u16| fixtures::pick(i, udp).map_or(&[][..], |p| &p.bytes[..]);
    match b {
        Body::Dict(i) => msgs[*i as usize % msgs.len()].to_vec(),
        Body::Dicts(v) => v
            .iter()
            .take(64)
            .flat_map(|i| msgs[*i as usize % msgs.len()].iter().copied())
            .collect(),
        Body::Fixture(i) => fixture(*i).to_vec(),
        Body::FixtureCut(i, at, head) => {
            let f = fixture(*i);
            let at = (*at as usize).min(f.len());
            if *head { &f[..at] } else { &f[at..] }.to_vec()
        }
        Body::Raw(v) => v.clone(),
        Body::Run(b, n) => vec![*b; *n as usize],
    }
}

/// Turns the fuzzer's packets into real ones: each TCP direction keeps
/// its own sequence numbers (so `Next` is in order), ACKs follow the
/// other direction unless asked not to.
pub fn packets(input: &Input) -> Vec<Owned> {
    let mut out: Vec<Owned> = Vec::with_capacity(input.pkts.len());
    // Next sequence number per (connection, direction).
    let mut next = [[0u32; 2]; 32];
    for (c, n) in next.iter_mut().enumerate() {
        *n = [1_000 + c as u32 * 7_919, 5_000_000 + c as u32 * 104_729];
    }
    let mut ts: u64 = 1_700_000_000_000_000_000;
    let mut late: Option<Owned> = None;
    for p in input.pkts.iter().take(2_000) {
        let conn = p.conn & 0x1f;
        let (cip, cport) = client(conn);
        let sip = server(cip.is_ipv6());
        let (src, sport, dst, dport) = if p.to_server {
            (cip, cport, sip, SERVER_PORT)
        } else {
            (sip, SERVER_PORT, cip, cport)
        };
        let unit = [1_000u64, 1_000_000, 100_000_000, 10_000_000_000][p.dt_unit as usize % 4];
        ts += u64::from(p.dt) * unit;
        let mut payload = body(&p.body, p.to_server, p.udp);
        if p.udp {
            if let Some((id, seq, total)) = p.udp_hdr {
                let mut h = vec![0, id, 0, seq, 0, total, 0, 0];
                h.extend_from_slice(&payload);
                payload = h;
            }
        }
        let wire = payload.len() + if p.cut { 100 } else { 0 };
        let d = usize::from(!p.to_server);
        let tcp = if p.udp {
            TcpInfo::default()
        } else {
            let n = &mut next[conn as usize];
            let seq = match p.seq {
                SeqOp::Next => n[d],
                SeqOp::Back(k) => n[d].wrapping_sub(u32::from(k)),
                SeqOp::Skip(k) => n[d].wrapping_add(u32::from(k)),
                SeqOp::Raw(s) => s,
            };
            let end = seq
                .wrapping_add(payload.len() as u32)
                .wrapping_add(u32::from(p.syn) + u32::from(p.fin));
            if end.wrapping_sub(n[d]) as i32 > 0 {
                n[d] = end;
            }
            TcpInfo {
                seq,
                ack: n[1 - d],
                syn: p.syn,
                fin: p.fin,
                rst: p.rst,
                ack_flag: !p.no_ack,
            }
        };
        let o = Owned {
            ts,
            src,
            dst,
            sport,
            dport,
            udp: p.udp,
            tcp,
            payload,
            wire,
        };
        if p.late && late.is_none() {
            late = Some(o);
        } else {
            out.push(o);
            out.extend(late.take());
        }
    }
    out.extend(late);
    out
}

pub fn packet(i: usize, o: &Owned) -> Packet<'_> {
    Packet {
        ts: o.ts,
        frame_no: i as u64 + 1,
        src: o.src,
        dst: o.dst,
        sport: o.sport,
        dport: o.dport,
        transport: if o.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        tcp: o.tcp,
        payload: &o.payload,
        truncated: o.wire > o.payload.len(),
        wire_payload_len: o.wire,
    }
}

pub fn config(b: Bounds, udp_hold: bool) -> Config {
    let mut cfg = Config::default();
    cfg.limits.memory = "64MiB".into();
    match b {
        Bounds::Default => {}
        Bounds::Tiny => {
            cfg.tcp.max_flows = 4;
            cfg.tcp.max_ooo_bytes_per_flow = 4096;
            cfg.tcp.max_ooo_bytes_total = 8192;
            cfg.tcp.max_carry_bytes = 4096;
            cfg.tcp.hole_timeout_ms = 1;
            cfg.tcp.idle_timeout_s = 1;
            cfg.udp.max_pending = 4;
            cfg.udp.max_held = 2;
            cfg.udp.max_buffered_bytes = 4096;
            cfg.udp.timeout_ms = 10;
            cfg.protocol.max_pending_per_conn = 4;
            cfg.protocol.max_line_bytes = 1024;
        }
        Bounds::SmallBudget => cfg.limits.memory = "16MiB".into(),
    }
    if !udp_hold {
        cfg.udp.hold_ms = 0;
    }
    cfg
}

/// Heap an engine may hold beyond its budget's share: what no part of
/// the split counts (the engine itself, its warnings, hash tables'
/// rounding up to a power of two).
pub const SLACK: usize = 256 << 10;

/// Runs the packets through one engine; `tick` also advances it to the
/// packet time reached after every packet. Returns the records' digest and
/// the peak heap the engine held.
pub fn replay(cfg: &Config, pkts: &[Owned], tick: bool) -> (Digest, usize) {
    let targets = Targets::new(vec![format!("*:{SERVER_PORT}").parse::<Target>().unwrap()]);
    let ecfg = EngineConfig::from_config(cfg);
    let base = alloc::reset_peak();
    let mut e = Engine::new(ecfg, targets);
    let mut d = Digest::default();
    let debug = std::env::var_os("MEMTAP_FUZZ_DEBUG").is_some();
    let mut sink = |r: &Record<'_>| {
        d.add(r);
        if debug {
            eprintln!("  record {r:?}");
        }
        assert!(r.key.is_none_or(|k| k.len() <= 65_535), "{r:?}");
    };
    for (i, o) in pkts.iter().enumerate() {
        if debug {
            eprintln!(
                "packet {} ts {} {}:{} > {}:{} udp {} {:?} {:?} wire {}",
                i + 1,
                o.ts,
                o.src,
                o.sport,
                o.dst,
                o.dport,
                o.udp,
                o.tcp,
                String::from_utf8_lossy(&o.payload),
                o.wire
            );
        }
        e.packet(&packet(i, o), &mut sink);
        if tick {
            let now = e.now();
            e.advance(now, &mut sink);
        }
    }
    if debug {
        eprintln!("finish: {:?}", e.counters());
    }
    let peak = alloc::peak().saturating_sub(base);
    e.finish(&mut sink);
    let c = e.counters();
    assert_eq!(d.count, c.records, "records emitted vs counted");
    assert_eq!(e.active_flows(), 0, "flows left after finish");
    let opening = pkts.iter().filter(|p| !p.udp).count() as u64;
    assert!(
        c.tcp_flows <= opening,
        "{} flows from {opening} segments",
        c.tcp_flows
    );
    (d, peak)
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let pkts = packets(&input);
    let cfg = config(input.bounds, input.udp_hold);
    let (plain, peak) = replay(&cfg, &pkts, false);
    // `memory()` falls back to the automatic budget on a value out of
    // range: the budget asked for must be the one in force.
    let share = Config::split(cfg.memory(), 1).share as usize;
    assert!(share <= 64 << 20, "budget {share}");
    if std::env::var_os("MEMTAP_FUZZ_DEBUG").is_some() {
        eprintln!(
            "heap peak {peak} bytes, budget {share} bytes ({:?})",
            input.bounds
        );
    }
    assert!(
        peak <= share + SLACK,
        "the engine held {peak} bytes of heap, over its {share}-byte budget"
    );
    let (ticked, _) = replay(&cfg, &pkts, true);
    assert_eq!(plain, ticked, "records differ when ticked between packets");
}
