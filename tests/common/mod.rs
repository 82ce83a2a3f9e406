//! Shared helpers for the end-to-end tests: run the pipeline on capture
//! files, load fixture expectations, and rewrite captures (split, reorder,
//! retransmit) into new pcap files.
#![allow(dead_code)]

pub mod browser;
pub mod exposition;
pub mod server;

use memtap::app::process_files;
use memtap::capture::file::FileSource;
use memtap::config::Config;
use memtap::decode::targets::{Target, Targets};
use memtap::decode::{Decoder, Packet, Transport};
use memtap::session::Record;
use memtap::stats::Counters;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_dir(case: &str) -> PathBuf {
    repo().join("testdata/pcaps").join(case)
}

/// The projection of a record that fixtures pin exactly (timestamps and
/// latencies depend on the machine that made the capture).
pub fn project(r: &Record<'_>) -> Value {
    let mut key = Vec::new();
    if let Some(k) = r.key {
        memtap::app::format::escape_key(&mut key, k);
    }
    json!({
        "client": r.client.to_string(),
        "server": r.server.to_string(),
        "transport": r.transport.as_str(),
        "proto": r.proto.as_str(),
        "command": r.command,
        "key": r.key.map(|_| String::from_utf8(key).unwrap()),
        "result": r.result.as_str(),
        "req_bytes": r.req_bytes,
        "resp_bytes": r.resp_bytes,
        "answered": r.latency_ns.is_some(),
    })
}

/// Records grouped by (client, server), each in emission order.
pub type ByConn = BTreeMap<(String, String), Vec<Value>>;

pub fn group(records: impl IntoIterator<Item = Value>) -> ByConn {
    let mut m = ByConn::new();
    for r in records {
        let k = (
            r["client"].as_str().unwrap().to_string(),
            r["server"].as_str().unwrap().to_string(),
        );
        m.entry(k).or_default().push(r);
    }
    m
}

pub fn expected(case: &str) -> ByConn {
    let text = std::fs::read_to_string(fixture_dir(case).join("expected.jsonl")).unwrap();
    group(
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    )
}

/// The server port a fixture was captured against (scripts pick free ports).
pub fn server_target(case: &str) -> Target {
    let e = expected(case);
    let (_, server) = e.keys().next().unwrap();
    let port = server.rsplit(':').next().unwrap();
    format!("*:{port}").parse().unwrap()
}

pub struct Run {
    pub records: Vec<Value>,
    pub counters: Counters,
}

pub fn run_files(files: &[PathBuf], targets: Targets, cfg: &Config) -> Run {
    let mut records = Vec::new();
    let totals = process_files(
        cfg,
        &targets,
        files,
        &mut |r: &Record<'_>| records.push((r.ts, project(r))),
        &|| false,
    )
    .unwrap();
    // In request order: a UDP get's records come out once its kept-back
    // END is fed, after those of requests that followed it.
    records.sort_by_key(|(ts, _)| *ts);
    Run {
        records: records.into_iter().map(|(_, v)| v).collect(),
        counters: totals.counters,
    }
}

pub fn run_case_file(case: &str, file: &Path) -> Run {
    run_files(
        &[file.to_path_buf()],
        Targets::new(vec![server_target(case)]),
        &Config::default(),
    )
}

/// Asserts two groupings are equal, printing the first difference.
pub fn assert_same(label: &str, want: &ByConn, got: &ByConn) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{label}: connections differ"
    );
    for (k, w) in want {
        let g = &got[k];
        for (i, (a, b)) in w.iter().zip(g.iter()).enumerate() {
            assert_eq!(a, b, "{label}: connection {k:?}, record {i}");
        }
        assert_eq!(w.len(), g.len(), "{label}: connection {k:?} record count");
    }
}

// ------------------------------------------------------------------ pcap out

/// Minimal pcap writer (Ethernet link type, microsecond timestamps).
pub struct PcapOut {
    buf: Vec<u8>,
}

impl Default for PcapOut {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapOut {
    pub fn new() -> PcapOut {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&262144u32.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        PcapOut { buf }
    }

    pub fn frame(&mut self, ts_ns: u64, frame: &[u8]) {
        let secs = (ts_ns / 1_000_000_000) as u32;
        let usecs = ((ts_ns % 1_000_000_000) / 1000) as u32;
        self.buf.extend_from_slice(&secs.to_le_bytes());
        self.buf.extend_from_slice(&usecs.to_le_bytes());
        self.buf
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(frame);
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.buf).unwrap();
    }
}

/// An owned copy of a decoded TCP/UDP packet, to be re-emitted.
#[derive(Clone, Debug)]
pub struct Seg {
    pub ts: u64,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub udp: bool,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub ack_flag: bool,
    pub payload: Vec<u8>,
}

impl Seg {
    fn from_packet(p: &Packet<'_>) -> Seg {
        Seg {
            ts: p.ts,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            udp: p.transport == Transport::Udp,
            seq: p.tcp.seq,
            ack: p.tcp.ack,
            syn: p.tcp.syn,
            fin: p.tcp.fin,
            rst: p.tcp.rst,
            ack_flag: p.tcp.ack_flag,
            payload: p.payload.to_vec(),
        }
    }

    /// Same direction of the same connection.
    pub fn same_half(&self, o: &Seg) -> bool {
        self.src == o.src && self.dst == o.dst && self.sport == o.sport && self.dport == o.dport
    }

    pub fn to_frame(&self) -> Vec<u8> {
        use etherparse::PacketBuilder;
        let b = PacketBuilder::ethernet2([0; 6], [0; 6]);
        let b = match (self.src, self.dst) {
            (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
                b.ipv4(s.octets(), d.octets(), 64)
            }
            (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
                b.ipv6(s.octets(), d.octets(), 64)
            }
            _ => panic!("mixed address families"),
        };
        let mut out = Vec::new();
        if self.udp {
            b.udp(self.sport, self.dport)
                .write(&mut out, &self.payload)
                .unwrap();
        } else {
            let mut t = b.tcp(self.sport, self.dport, self.seq, 65535);
            if self.syn {
                t = t.syn();
            }
            if self.fin {
                t = t.fin();
            }
            if self.rst {
                t = t.rst();
            }
            if self.ack_flag {
                t = t.ack(self.ack);
            }
            t.write(&mut out, &self.payload).unwrap();
        }
        out
    }
}

/// Every TCP/UDP packet of a capture, in order.
pub fn read_segments(path: &Path) -> Vec<Seg> {
    let mut src = FileSource::open(&[path.to_path_buf()]).unwrap();
    let mut c = Counters::default();
    let mut dec = Decoder::new(Default::default());
    let mut out = Vec::new();
    while let Some(f) = src.next_frame(&mut c).unwrap() {
        if let Some(p) = dec.decode(&f, &mut c) {
            out.push(Seg::from_packet(&p));
        }
    }
    out
}

pub fn write_segments(segs: &[Seg], path: &Path) {
    let mut w = PcapOut::new();
    for s in segs {
        w.frame(s.ts, &s.to_frame());
    }
    w.write(path);
}

/// Splits every TCP payload into pieces of at most `mss` bytes.
pub fn split(segs: &[Seg], mss: usize) -> Vec<Seg> {
    let mut out = Vec::new();
    for s in segs {
        if s.udp || s.payload.len() <= mss {
            out.push(s.clone());
            continue;
        }
        let n = s.payload.len().div_ceil(mss);
        for (i, chunk) in s.payload.chunks(mss).enumerate() {
            let mut p = s.clone();
            p.seq = s.seq.wrapping_add((i * mss) as u32);
            p.payload = chunk.to_vec();
            // FIN rides on the last piece only.
            p.fin = s.fin && i == n - 1;
            out.push(p);
        }
    }
    out
}

/// Reorders and retransmits: within each run of consecutive data segments
/// of one direction, every pair is swapped; every third data segment is
/// also sent again later (after the packet that follows it).
pub fn reorder_and_retransmit(segs: &[Seg]) -> Vec<Seg> {
    let data = |s: &Seg| !s.udp && !s.payload.is_empty() && !s.syn && !s.fin && !s.rst;
    let mut swapped: Vec<Seg> = Vec::with_capacity(segs.len());
    let mut i = 0;
    while i < segs.len() {
        let a = &segs[i];
        match segs.get(i + 1) {
            Some(b) if data(a) && data(b) && a.same_half(b) => {
                swapped.push(b.clone());
                swapped.push(a.clone());
                i += 2;
            }
            _ => {
                swapped.push(a.clone());
                i += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(swapped.len() * 2);
    let mut again: Option<Seg> = None;
    let mut nth = 0;
    for s in swapped {
        let is_data = data(&s);
        out.push(s.clone());
        if let Some(r) = again.take() {
            out.push(r);
        }
        if is_data {
            nth += 1;
            if nth % 3 == 0 {
                again = Some(s);
            }
        }
    }
    out.extend(again);
    out
}

pub fn cases() -> Vec<&'static str> {
    vec![
        "text_tcp",
        "meta_tcp",
        "binary_tcp",
        "udp",
        "udp_big",
        "mixed_noreply",
        "pipelined_tcp",
    ]
}

/// A plain HTTP/1.1 GET over a fresh connection: (status, content type,
/// body). Enough for memtap's own listener; no client library needed.
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to memtap's listener");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// Reads a child's stderr until memtap announces its listener; returns
/// the address and a thread that keeps draining (and collecting) stderr.
pub fn wait_for_listener(
    child: &mut std::process::Child,
) -> (String, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let err = child.stderr.take().expect("piped stderr");
    let mut r = std::io::BufReader::new(err);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("memtap exited before listening; stderr:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("memtap: listening on http://") {
            let addr = rest.split('/').next().unwrap().to_string();
            let h = std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut r, &mut rest);
                seen + &rest
            });
            return (addr, h);
        }
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// A report as the history store gives it back: the store keeps cache
/// insight per server and for the pool, not per key or family (those
/// columns live in the report only; docs/insight.md).
pub fn without_per_key_insight(v: &mut Value) {
    if let Some(i) = v.get_mut("insight").and_then(|i| i.as_object_mut()) {
        for k in ["keys", "storm_keys", "unread_keys", "families"] {
            i.insert(k.into(), Value::Array(vec![]));
        }
    }
}
