//! Fuzzing that runs on the stable toolchain: a seeded mutator (see
//! `mutate`) driven by a deterministic PRNG, one target per stage that
//! reads untrusted bytes. Each target runs for `MEMTAP_FUZZ_SECS` (default
//! 6 s) or exactly `MEMTAP_FUZZ_ITERS` executions; `MEMTAP_FUZZ_SEED=N`
//! reruns one seed. Every execution must return without a panic, within
//! its CPU bound, with the invariants of its stage holding; a failing input
//! is kept under `target/fuzz-failures/`. `scripts/fuzz.sh` runs them
//! longer. (`tests/hostile.rs` keeps the fixed hostile cases.)

#[path = "../common/mod.rs"]
mod common;
mod corpus;
mod harness;
mod mutate;

use common::Seg;
use corpus::{fixtures, legacy, pcapng, streams, Built, LegacyStyle, NgSection};
use harness::{run, Rng, Target};
use memtap::capture::file::FileSource;
use memtap::capture::Frame;
use memtap::config::Config;
use memtap::decode::targets::{Target as Watch, Targets};
use memtap::decode::{DecodeConfig, Decoder, Packet, TcpInfo, Transport};
use memtap::protocol::{binary, detect, line, meta, text, Keys, Limits, Parse};
use memtap::session::{Engine, EngineConfig, Record};
use memtap::stats::Counters;
use mutate::{havoc, tweak_int};
use std::fmt::Debug;
use std::time::Duration;

fn targets() -> Targets {
    Targets::new(
        fixtures()
            .iter()
            .map(|f| format!("*:{}", f.server_port).parse::<Watch>().unwrap())
            .collect(),
    )
}

fn small_pcaps() -> Vec<Vec<u8>> {
    fixtures()
        .iter()
        .filter(|f| f.pcap.len() < 32 << 10)
        .map(|f| f.pcap.clone())
        .collect()
}

// ---------------------------------------------------------------- capture

/// A capture file built from a run of fixture frames in a random format,
/// its length fields tweaked and its bytes mutated; sometimes compressed
/// (and the compressed stream then damaged).
fn capture_file(r: &mut Rng, others: &[Vec<u8>]) -> (Vec<u8>, bool) {
    let fx = r.pick(fixtures());
    let mut bytes = if r.chance(4) {
        fx.pcap.clone()
    } else {
        let start = r.below(fx.frames.len());
        let end = (start + 1 + r.below(40)).min(fx.frames.len());
        let run: Vec<(u64, &[u8])> = fx.frames[start..end]
            .iter()
            .map(|(_, ts, d)| (*ts, &d[..]))
            .collect();
        let Built {
            mut bytes,
            len_fields,
        } = match r.below(3) {
            0 => legacy(
                &run,
                &LegacyStyle {
                    big_endian: r.chance(50),
                    nanos: r.chance(50),
                    modified: r.chance(15),
                    snaplen: *r.pick(&[262_144, 65_535, 96, 0, 20_000_000]),
                    linktype: if r.chance(90) {
                        1
                    } else {
                        r.next() as u32 % 300
                    },
                },
            ),
            1 => pcapng(&[NgSection {
                big_endian: r.chance(50),
                ifaces: vec![(1, *r.pick(&[6u8, 9, 3, 0x80 | 10]))],
                frames: run.iter().map(|&(ts, d)| (0, ts, d)).collect(),
            }]),
            _ => {
                let half = run.len() / 2;
                pcapng(&[
                    NgSection {
                        big_endian: false,
                        ifaces: vec![(1, 6)],
                        frames: run[..half]
                            .iter()
                            .enumerate()
                            .map(|(i, &(ts, d))| (if i % 3 == 2 { u32::MAX } else { 0 }, ts, d))
                            .collect(),
                    },
                    NgSection {
                        big_endian: true,
                        ifaces: vec![(113, 9), (1, 9)],
                        frames: run[half..]
                            .iter()
                            .enumerate()
                            .map(|(i, &(ts, d))| ((1 + i % 2) as u32, ts, d))
                            .collect(),
                    },
                ])
            }
        };
        if r.chance(60) && !len_fields.is_empty() {
            for _ in 0..1 + r.below(3) {
                let &(at, w, be) = r.pick(&len_fields);
                tweak_int(r, &mut bytes, at, w, be);
            }
        }
        bytes
    };
    if r.chance(60) {
        let max = bytes.len() + 8192;
        havoc(r, &mut bytes, others, 4, max);
    }
    let plain = bytes.len();
    let compressed = match r.below(100) {
        0..15 => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            Some(e.finish().unwrap())
        }
        15..25 => Some(zstd::encode_all(&bytes[..], 1).unwrap()),
        _ => None,
    };
    match compressed {
        Some(mut z) => {
            if r.chance(30) {
                havoc(r, &mut z, &[], 2, plain + 64);
            }
            (z, true)
        }
        None => (bytes, false),
    }
}

/// Where the capture target writes its inputs (removed when it ends).
fn capture_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("memtap-fuzz-{}", std::process::id()))
}

/// Reads the files with `FileSource`, then decodes every frame and runs
/// it through an engine, as `memtap dump` does.
fn exec_capture(files: &[(Vec<u8>, bool)]) -> u64 {
    let dir = capture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for (i, (bytes, _)) in files.iter().enumerate() {
        let p = dir.join(format!("in{i}.pcap"));
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    let mut src = match FileSource::open(&paths) {
        Ok(s) => s,
        Err(e) => {
            assert!(!format!("{e:#}").is_empty());
            return 0;
        }
    };
    let mut c = Counters::default();
    let mut dec = Decoder::new(DecodeConfig::default());
    let mut engine = Engine::new(EngineConfig::default(), targets());
    let mut records = 0u64;
    let mut sink = |r: &Record<'_>| {
        records += 1;
        assert!(r.key.is_none_or(|k| k.len() <= 250), "{r:?}");
    };
    let (mut frames, mut bytes) = (0u64, 0u64);
    loop {
        match src.next_frame(&mut c) {
            Ok(Some(f)) => {
                frames += 1;
                bytes += f.data.len() as u64;
                assert!(f.data.len() <= 16 << 20, "frame of {} bytes", f.data.len());
                if let Some(p) = dec.decode(&f, &mut c) {
                    engine.packet(&p, &mut sink);
                }
            }
            Ok(None) => break,
            Err(e) => {
                assert!(format!("{e:#}").contains("in"), "{e:#}");
                break;
            }
        }
    }
    assert_eq!(c.packets, frames);
    assert_eq!(c.bytes, bytes);
    if let Some(total) = src.total_bytes() {
        assert!(src.bytes_read() <= total, "{} > {total}", src.bytes_read());
    }
    if files.iter().all(|f| !f.1) {
        // A record takes at least 16 bytes (legacy header, pcapng SPB).
        let raw: usize = files.iter().map(|f| f.0.len()).sum();
        assert!(
            frames <= raw as u64 / 12,
            "{frames} frames from {raw} bytes"
        );
    }
    engine.finish(&mut sink);
    dec.finish(&mut c);
    let ec = engine.counters();
    assert_eq!(records, ec.records);
    assert_eq!(engine.active_flows(), 0);
    records
}

#[test]
fn fuzz_capture_reader() {
    let others = small_pcaps();
    run(Target {
        name: "capture",
        cpu_limit: Duration::from_secs(3),
        signal: "records",
        gen: Box::new(move |r| {
            let n = if r.chance(15) { 2 } else { 1 };
            (0..n).map(|_| capture_file(r, &others)).collect::<Vec<_>>()
        }),
        exec: Box::new(|files: &Vec<(Vec<u8>, bool)>| exec_capture(files)),
        save: Box::new(|files| {
            files
                .iter()
                .enumerate()
                .map(|(i, (b, z))| {
                    (
                        format!("-{i}{}", if *z { ".z" } else { ".pcap" }),
                        b.clone(),
                    )
                })
                .collect()
        }),
    });
    let _ = std::fs::remove_dir_all(capture_dir());
}

// ----------------------------------------------------------------- decode

struct DecodeIn {
    small_pool: bool,
    /// (linktype, ts, wire_len, bytes)
    frames: Vec<(u32, u64, u32, Vec<u8>)>,
}

/// The IP packet inside a fixture's Ethernet frame.
fn ip_of(eth: &[u8]) -> &[u8] {
    eth.get(14..).unwrap_or(&[])
}

fn ipv4_fragments(r: &mut Rng, ip: &[u8]) -> Vec<Vec<u8>> {
    if ip.len() < 28 || ip[0] >> 4 != 4 {
        return vec![ip.to_vec()];
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let body = &ip[ihl.min(ip.len())..];
    let step = 8 * (1 + r.below(64));
    let mut out = Vec::new();
    let mut off = 0;
    while off < body.len() {
        // Sometimes overlap the previous piece.
        let from = if off > 0 && r.chance(10) {
            off - 8
        } else {
            off
        };
        let end = (from + step).min(body.len());
        let mut f = ip[..ihl].to_vec();
        f.extend_from_slice(&body[from..end]);
        let total = f.len() as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        let more = if end < body.len() { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&(more | (from / 8) as u16).to_be_bytes());
        out.push(f);
        off = end;
    }
    if r.chance(40) {
        let n = out.len();
        out.swap(r.below(n), r.below(n));
    }
    if r.chance(20) && out.len() > 1 {
        out.remove(r.below(out.len()));
    }
    out
}

fn ipv6_frame(r: &mut Rng, s: &Seg) -> Vec<u8> {
    let mut s = s.clone();
    let v6 = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V4(a) => std::net::IpAddr::V6(a.to_ipv6_mapped()),
        v6 => v6,
    };
    s.src = v6(s.src);
    s.dst = v6(s.dst);
    let mut f = s.to_frame();
    if r.chance(40) && f.len() >= 54 {
        // An extension header (hop-by-hop, routing, destination options or
        // fragment) in front of the transport header.
        let ext = *r.pick(&[0u8, 43, 60, 44]);
        let next = f[14 + 6];
        f[14 + 6] = ext;
        let mut h = vec![next, 0, 0, 0, 0, 0, 0, 0];
        if ext == 44 && r.chance(50) {
            h[3] = 1; // more fragments
        }
        f.splice(54..54, h);
        let plen = u16::from_be_bytes([f[18], f[19]]).wrapping_add(8);
        f[18..20].copy_from_slice(&plen.to_be_bytes());
    }
    f
}

fn encapsulate(r: &mut Rng, mode: usize, eth: &[u8]) -> (u32, Vec<u8>) {
    let ip = ip_of(eth);
    let v4 = ip.first().is_some_and(|b| b >> 4 == 4);
    match mode {
        1 => (
            *r.pick(&[101, 12, 14, if v4 { 228 } else { 229 }]),
            ip.to_vec(),
        ),
        2 => {
            let fam: u32 = if v4 { 2 } else { *r.pick(&[10, 24, 28, 30]) };
            let (lt, hdr) = if r.chance(50) {
                (0, fam.to_le_bytes())
            } else {
                (108, fam.to_be_bytes())
            };
            let mut f = hdr.to_vec();
            f.extend_from_slice(ip);
            (lt, f)
        }
        3 => {
            let mut f = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
            f.extend_from_slice(&eth[12..14.min(eth.len())]);
            f.extend_from_slice(ip);
            (113, f)
        }
        4 => {
            let mut f = eth[12..14.min(eth.len())].to_vec();
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
            f.extend_from_slice(ip);
            (276, f)
        }
        5 => {
            let mut f = eth[..12.min(eth.len())].to_vec();
            for _ in 0..1 + r.below(9) {
                let tpid: u16 = *r.pick(&[0x8100, 0x88a8, 0x9100]);
                f.extend_from_slice(&tpid.to_be_bytes());
                f.extend_from_slice(&(r.next() as u16 & 0x0fff).to_be_bytes());
            }
            f.extend_from_slice(eth.get(12..).unwrap_or(&[]));
            (1, f)
        }
        _ => (1, eth.to_vec()),
    }
}

fn decode_input(r: &mut Rng) -> DecodeIn {
    let fx = r.pick(fixtures());
    let start = r.below(fx.frames.len());
    let end = (start + 1 + r.below(30)).min(fx.frames.len());
    let mut frames = Vec::new();
    let base_mode = r.below(8);
    for i in start..end {
        let (lt, ts, eth) = &fx.frames[i];
        let mode = if r.chance(20) { r.below(8) } else { base_mode };
        let mut out: Vec<(u32, Vec<u8>)> = match mode {
            6 => ipv4_fragments(r, ip_of(eth))
                .into_iter()
                .map(|ip| {
                    let mut f = eth[..14].to_vec();
                    f.extend_from_slice(&ip);
                    (*lt, f)
                })
                .collect(),
            7 => match fx.segs.get(i.min(fx.segs.len().saturating_sub(1))) {
                Some(s) => vec![(1, ipv6_frame(r, s))],
                None => vec![(*lt, eth.clone())],
            },
            m => vec![encapsulate(r, m, eth)],
        };
        for (_, f) in &mut out {
            if r.chance(25) {
                havoc(r, f, &[], 3, 70_000);
            }
            if r.chance(30) && f.len() > 40 {
                // Aim at the IP/transport headers' length and offset fields.
                let at = 14 + r.below(f.len().min(80) - 16);
                tweak_int(r, f, at, 2, true);
            }
        }
        for (lt, f) in out {
            let wire = if r.chance(10) {
                f.len() as u32 + r.below(3000) as u32
            } else {
                f.len() as u32
            };
            let ts = if r.chance(5) {
                ts + 40_000_000_000
            } else {
                *ts
            };
            frames.push((lt, ts, wire, f));
        }
    }
    DecodeIn {
        small_pool: r.chance(30),
        frames,
    }
}

fn exec_decode(input: &DecodeIn) -> u64 {
    let cfg = if input.small_pool {
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
    let mut out = 0u64;
    for (i, (lt, ts, wire, data)) in input.frames.iter().enumerate() {
        let f = Frame {
            ts: *ts,
            frame_no: i as u64 + 1,
            linktype: *lt,
            wire_len: *wire,
            data,
        };
        let rebuilt = c.ip_reassembled;
        if let Some(p) = dec.decode(&f, &mut c) {
            out += 1;
            assert!(p.payload.len() <= p.wire_payload_len, "{p:?}");
            assert_eq!(p.truncated, p.payload.len() < p.wire_payload_len, "{p:?}");
            assert!(p.payload.len() <= 65_535, "{} bytes", p.payload.len());
            if c.ip_reassembled == rebuilt {
                assert!(p.payload.len() <= data.len(), "payload beyond its frame");
            }
            if p.transport == Transport::Udp {
                assert_eq!(p.tcp, TcpInfo::default());
            }
        }
        assert!(dec.fragments_in_flight() <= cfg.frag_max_datagrams);
    }
    dec.finish(&mut c);
    assert_eq!(dec.fragments_in_flight(), 0);
    // Every frame is a packet or is counted somewhere.
    let accounted = out
        + c.decode_errors
        + c.unsupported_linktype
        + c.non_ip
        + c.non_tcp_udp
        + c.ipv6_fragments
        + c.ip_fragments;
    assert!(
        accounted >= input.frames.len() as u64,
        "{} frames, {accounted} accounted: {c:?}",
        input.frames.len()
    );
    out
}

#[test]
fn fuzz_decode() {
    run(Target {
        name: "decode",
        cpu_limit: Duration::from_millis(500),
        signal: "packets decoded",
        gen: Box::new(decode_input),
        exec: Box::new(exec_decode),
        save: Box::new(|input| {
            // One pcapng interface per link type met.
            let mut lts: Vec<u16> = input.frames.iter().map(|f| f.0 as u16).collect();
            lts.sort_unstable();
            lts.dedup();
            let frames = input
                .frames
                .iter()
                .map(|(lt, ts, _, d)| {
                    let i = lts.iter().position(|l| *l == *lt as u16).unwrap();
                    (i as u32, *ts, &d[..])
                })
                .collect();
            let b = pcapng(&[NgSection {
                big_endian: false,
                ifaces: lts.iter().map(|&l| (l, 9)).collect(),
                frames,
            }]);
            vec![(".pcapng".into(), b.bytes)]
        }),
    });
}

// ---------------------------------------------------------------- parsers

struct ParseIn {
    small_limits: bool,
    buf: Vec<u8>,
}

fn limits(small: bool) -> Limits {
    if small {
        Limits {
            max_line: 1024,
            max_value: 1 << 20,
            max_key: 250,
        }
    } else {
        Limits::default()
    }
}

/// A window of a fixture stream starting where a message may start, or a
/// few handwritten messages; then mutated.
fn parse_input(r: &mut Rng, binary_bias: bool) -> ParseIn {
    let (req, resp) = streams();
    let requests = r.chance(50);
    let mut buf = if r.chance(50) {
        let s = r.pick(if requests { req } else { resp });
        let starts: Vec<usize> = std::iter::once(0)
            .chain(s.iter().enumerate().filter_map(|(i, &b)| match b {
                b'\n' => Some(i + 1),
                0x80 | 0x81 => Some(i),
                _ => None,
            }))
            .filter(|&i| i < s.len())
            .filter(|&i| !binary_bias || s[i] & 0xfe == 0x80)
            .collect();
        if starts.is_empty() {
            Vec::new()
        } else {
            let at = *r.pick(&starts);
            s[at..(at + 1 + r.below(2048)).min(s.len())].to_vec()
        }
    } else {
        let msgs = if requests {
            corpus::REQUESTS
        } else {
            corpus::RESPONSES
        };
        let mut b = Vec::new();
        for _ in 0..1 + r.below(4) {
            let m = if binary_bias {
                *r.pick(&msgs[msgs.len() - 3..])
            } else {
                *r.pick(msgs)
            };
            b.extend_from_slice(m);
        }
        b
    };
    let others: Vec<Vec<u8>> = corpus::REQUESTS
        .iter()
        .chain(corpus::RESPONSES)
        .map(|m| m.to_vec())
        .collect();
    if r.chance(85) {
        havoc(r, &mut buf, &others, 6, 8192);
    }
    if r.chance(3) {
        let at = r.below(buf.len() + 1);
        buf.splice(at..at, std::iter::repeat_n(b'a', 65_536 + r.below(4)));
    }
    ParseIn {
        small_limits: r.chance(25),
        buf,
    }
}

fn within(outer: &[u8], inner: &[u8]) {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    assert!(
        inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len()),
        "a borrowed slice outside the message"
    );
}

/// What a message must satisfy whatever its dialect.
trait Msg: Debug {
    fn check(&self, msg_bytes: &[u8], lim: &Limits);
}

fn check_lengths(value_len: u64, skip_after: u64, lim: &Limits) {
    assert!(value_len <= lim.max_value, "value_len {value_len}");
    assert!(
        skip_after == value_len || skip_after == value_len + 2 || skip_after == 0 && value_len == 0,
        "skip_after {skip_after} for value_len {value_len}"
    );
}

impl Msg for memtap::protocol::Request<'_> {
    fn check(&self, m: &[u8], lim: &Limits) {
        if self.command == "unknown" && self.proto == memtap::protocol::Proto::Binary {
            // memcached swallows an unknown opcode's body length again
            // after its extras and key: at most 255 + 65535 bytes more.
            assert!(
                self.value_len <= lim.max_value,
                "value_len {}",
                self.value_len
            );
            assert!(self.skip_after >= self.value_len);
            assert!(self.skip_after - self.value_len <= 255 + 65_535);
        } else {
            check_lengths(self.value_len, self.skip_after, lim);
        }
        within(m, self.opaque_token);
        if let Keys::One(k) | Keys::Many(k) = self.keys {
            within(m, k);
        }
        for k in self.keys.iter() {
            within(m, k);
            assert!(!k.is_empty() || self.proto == memtap::protocol::Proto::Binary);
        }
    }
}

impl Msg for memtap::protocol::Response<'_> {
    fn check(&self, m: &[u8], lim: &Limits) {
        check_lengths(self.value_len, self.skip_after, lim);
        within(m, self.opaque_token);
        if let Some(k) = self.key {
            within(m, k);
        }
    }
}

/// The contract of a parser (see `protocol/mod.rs`): `Done` consumes at
/// least one byte and no more than given, looks at one message only (more
/// bytes after it change nothing), and every prefix of it asks for more
/// bytes (a split anywhere must not reject it); `Need(n)` asks for more
/// than it has. (A macro: the message borrows the input, so the parser
/// cannot be passed as one generic function.)
macro_rules! check_parser {
    ($r:expr, $buf:expr, $lim:expr, $f:path) => {{
        let (r, buf, lim): (&mut Rng, &[u8], &Limits) = ($r, $buf, $lim);
        match $f(buf, lim) {
            Parse::Done { consumed, msg } => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                msg.check(&buf[..consumed], lim);
                let mut longer = buf.to_vec();
                longer.extend_from_slice(b"get x\r\n\x80\x81 junk");
                match $f(&longer, lim) {
                    Parse::Done {
                        consumed: c2,
                        msg: m2,
                    } => {
                        assert_eq!(c2, consumed, "more input changed the message");
                        assert_eq!(format!("{m2:?}"), format!("{msg:?}"));
                    }
                    other => panic!("Done, then with more bytes {other:?}"),
                }
                for k in [consumed - 1, r.below(consumed), 0] {
                    match $f(&buf[..k], lim) {
                        Parse::Need(n) => assert!(n > k && n <= consumed, "prefix {k}: Need({n})"),
                        other => panic!("prefix {k} of a {consumed}-byte message: {other:?}"),
                    }
                }
                1u64
            }
            Parse::Need(n) => {
                assert!(n > buf.len(), "Need({n}) with {} bytes", buf.len());
                0
            }
            Parse::Bad(_) => 0,
        }
    }};
}

fn parser_target(
    name: &'static str,
    binary_bias: bool,
    exec: impl Fn(&mut Rng, &[u8], &Limits) -> u64 + Send + Sync + 'static,
) {
    run(Target {
        name,
        cpu_limit: Duration::from_millis(300),
        signal: "messages parsed",
        gen: Box::new(move |r| parse_input(r, binary_bias)),
        exec: Box::new(move |p: &ParseIn| {
            let mut r = Rng::new(p.buf.len() as u64);
            exec(&mut r, &p.buf, &limits(p.small_limits))
        }),
        save: Box::new(|p| vec![(".bin".into(), p.buf.clone())]),
    });
}

#[test]
fn fuzz_parse_text() {
    parser_target("parse_text", false, |r, buf, lim| {
        let n = check_parser!(r, buf, lim, text::parse_request)
            + check_parser!(r, buf, lim, text::parse_response);
        if let Parse::Done { consumed, msg } = line::split_line(buf, lim.max_line) {
            assert!(consumed <= lim.max_line.min(buf.len()));
            assert!(!msg.contains(&b'\n'));
            for t in line::tokens(msg) {
                assert!(!t.is_empty() && !t.contains(&b' '), "{t:?}");
                let _ = line::parse_u64(t);
                let _ = line::parse_i64(t);
            }
        }
        n
    });
}

#[test]
fn fuzz_parse_meta() {
    parser_target("parse_meta", false, |r, buf, lim| {
        check_parser!(r, buf, lim, meta::parse_request)
            + check_parser!(r, buf, lim, meta::parse_response)
    });
}

#[test]
fn fuzz_parse_binary() {
    parser_target("parse_binary", true, |r, buf, lim| {
        let n = check_parser!(r, buf, lim, binary::parse_request)
            + check_parser!(r, buf, lim, binary::parse_response);
        let _ = binary::plausible_request(buf, lim);
        let _ = binary::plausible_response(buf, lim);
        if let Some(h) = binary::Header::read(buf) {
            assert!(h.head_len() >= binary::HEADER_LEN);
        }
        n
    });
}

#[test]
fn fuzz_parse_detect() {
    parser_target("parse_detect", false, |r, buf, lim| {
        let n = check_parser!(r, buf, lim, detect::parse_request)
            + check_parser!(r, buf, lim, detect::parse_response);
        if let Some(off) = detect::find_request_boundary(buf, lim) {
            assert!(off < buf.len());
            if buf[off] != binary::MAGIC_REQUEST {
                let ok = matches!(detect::parse_request(&buf[off..], lim), Parse::Done { .. });
                assert!(ok, "request boundary {off} does not parse");
            }
        }
        if let Some(off) = detect::find_response_boundary(buf, lim) {
            assert!(off < buf.len());
            if buf[off] != binary::MAGIC_RESPONSE {
                let ok = matches!(detect::parse_response(&buf[off..], lim), Parse::Done { .. });
                assert!(ok, "response boundary {off} does not parse");
            }
        }
        n
    });
}

// ----------------------------------------------------------------- engine

struct EngineIn {
    tiny: bool,
    /// Packets and the wire length of each payload.
    pkts: Vec<(Seg, usize)>,
}

/// Payloads that push a stage to its bounds.
fn hostile_payload(r: &mut Rng) -> Vec<u8> {
    match r.below(6) {
        0 => {
            let mut v = b"get ".to_vec();
            v.resize(1448, b'a');
            v
        }
        1 => b"set k 0 0 4294967295\r\n".to_vec(),
        2 => {
            let mut v = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
            v.resize(24, 0);
            v.push(b'k');
            v
        }
        3 => {
            let mut v = b"get ".to_vec();
            v.resize(300, b'k');
            v.extend_from_slice(b"\r\n");
            v
        }
        4 => b"VALUE k 0 99999\r\n".to_vec(),
        _ => {
            let mut v = vec![0, 1, 0, 0, 0, 1, 0, 0];
            v.extend_from_slice(b"get k\r\n");
            v
        }
    }
}

fn engine_input(r: &mut Rng) -> EngineIn {
    let mut segs: Vec<Seg> = Vec::new();
    for _ in 0..if r.chance(20) { 2 } else { 1 } {
        let fx = r.pick(fixtures());
        let start = r.below(fx.segs.len());
        let end = (start + 1 + r.below(400)).min(fx.segs.len());
        let shift = segs.last().map_or(0, |s| s.ts);
        segs.extend(fx.segs[start..end].iter().map(|s| Seg {
            ts: s.ts + shift,
            ..s.clone()
        }));
    }
    let mut pkts: Vec<(Seg, usize)> = segs.into_iter().map(|s| (s, 0)).collect();
    let edits = r.below(24);
    for _ in 0..edits {
        let n = pkts.len();
        if n == 0 {
            break;
        }
        let i = r.below(n);
        match r.below(14) {
            0 => {
                pkts.remove(i);
            }
            1 => {
                let p = pkts[i].clone();
                pkts.insert(i + r.below(n - i) + 1, p);
            }
            2 if i + 1 < n => pkts.swap(i, i + 1),
            3 => {
                let p = pkts.remove(i);
                pkts.insert(r.below(n), p);
            }
            4 => {
                let s = &mut pkts[i].0;
                let max = s.payload.len() + 2048;
                havoc(r, &mut s.payload, &[], 3, max);
            }
            5 if pkts[i].0.payload.len() > 1 => {
                let mut b = pkts[i].clone();
                let k = 1 + r.below(b.0.payload.len() - 1);
                b.0.payload = pkts[i].0.payload.split_off(k);
                b.0.seq = b.0.seq.wrapping_add(k as u32);
                pkts.insert(i + 1, b);
            }
            6 => {
                let s = &mut pkts[i].0;
                s.seq = if r.chance(50) {
                    s.seq.wrapping_add(r.below(3000) as u32).wrapping_sub(1500)
                } else {
                    r.next() as u32
                };
            }
            7 => pkts[i].0.ack = r.next() as u32,
            8 => {
                let s = &mut pkts[i].0;
                match r.below(4) {
                    0 => s.syn = !s.syn,
                    1 => s.fin = !s.fin,
                    2 => s.rst = !s.rst,
                    _ => s.ack_flag = !s.ack_flag,
                }
            }
            9 => {
                // A new client port for one whole connection.
                let (s0, port) = (pkts[i].0.clone(), r.next() as u16);
                for (s, _) in &mut pkts {
                    if s.same_half(&s0) {
                        s.sport = port;
                    } else if s.src == s0.dst && s.sport == s0.dport && s.dport == s0.sport {
                        s.dport = port;
                    }
                }
            }
            10 => {
                let s = &mut pkts[i].0;
                std::mem::swap(&mut s.src, &mut s.dst);
                std::mem::swap(&mut s.sport, &mut s.dport);
            }
            11 => {
                // Time jumps: past the UDP timeout, the idle timeout, or back.
                let jump = *r.pick(&[1_000_000, 6_000_000_000, 301_000_000_000]);
                let back = r.chance(20);
                for (s, _) in &mut pkts[i..] {
                    s.ts = if back {
                        s.ts.saturating_sub(jump)
                    } else {
                        s.ts + jump
                    };
                }
            }
            12 => {
                let mut p = pkts[i].clone();
                p.0.payload = hostile_payload(r);
                let copies = if r.chance(20) { 200 } else { 1 };
                for c in 0..copies {
                    let mut q = p.clone();
                    q.0.seq = q.0.seq.wrapping_add((c * q.0.payload.len()) as u32);
                    pkts.insert(i + c, q);
                }
            }
            _ => {
                let len = pkts[i].0.payload.len();
                pkts[i].1 = len + 1 + r.below(2000);
            }
        }
    }
    EngineIn {
        tiny: r.chance(30),
        pkts,
    }
}

fn exec_engine(input: &EngineIn) -> u64 {
    let mut cfg = Config::default();
    if input.tiny {
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
    let mut e = Engine::new(EngineConfig::from_config(&cfg), targets());
    let mut records = 0u64;
    let mut sink = |r: &Record<'_>| {
        records += 1;
        assert!(r.key.is_none_or(|k| k.len() <= 250), "{r:?}");
    };
    let mut payload_bytes = 0u64;
    for (i, (s, wire)) in input.pkts.iter().enumerate() {
        payload_bytes += s.payload.len() as u64;
        let p = Packet {
            ts: s.ts,
            frame_no: i as u64 + 1,
            src: s.src,
            dst: s.dst,
            sport: s.sport,
            dport: s.dport,
            transport: if s.udp {
                Transport::Udp
            } else {
                Transport::Tcp
            },
            tcp: if s.udp {
                TcpInfo::default()
            } else {
                TcpInfo {
                    seq: s.seq,
                    ack: s.ack,
                    syn: s.syn,
                    fin: s.fin,
                    rst: s.rst,
                    ack_flag: s.ack_flag,
                }
            },
            payload: &s.payload,
            truncated: *wire > s.payload.len(),
            wire_payload_len: (*wire).max(s.payload.len()),
        };
        e.packet(&p, &mut sink);
        if i % 97 == 96 {
            e.advance(s.ts + 500_000_000, &mut sink);
        }
    }
    e.finish(&mut sink);
    let c = e.counters();
    assert_eq!(records, c.records, "records emitted vs counted");
    assert_eq!(e.active_flows(), 0, "flows left after finish");
    assert!(c.tcp_flows <= input.pkts.len() as u64);
    // A record needs at least a key byte and a separator of request,
    // or a whole packet (a request cut in a hole).
    assert!(
        c.records <= payload_bytes + input.pkts.len() as u64,
        "{} records from {payload_bytes} bytes",
        c.records
    );
    records
}

#[test]
fn fuzz_session_engine() {
    run(Target {
        name: "engine",
        cpu_limit: Duration::from_secs(2),
        signal: "records",
        gen: Box::new(engine_input),
        exec: Box::new(exec_engine),
        save: Box::new(|input| {
            let segs: Vec<Seg> = input.pkts.iter().map(|p| p.0.clone()).collect();
            let dir = std::env::temp_dir().join(format!("memtap-fuzz-save-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join("engine.pcap");
            common::write_segments(&segs, &p);
            let bytes = std::fs::read(&p).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            vec![(".pcap".into(), bytes)]
        }),
    });
}
