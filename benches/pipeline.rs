//! The whole per-packet path, without file I/O or output formatting.
//!
//! Each capture is read into memory once (`capture::file::FileSource`), then
//! every iteration runs a fresh `session::Engine` over all its packets and
//! `finish`es it, handing records to a sink that only counts them:
//!
//! * `engine/<case>`: packets decoded once up front; measures flow lookup,
//!   TCP reassembly, parsing and pairing;
//! * `decode_engine/<case>`: the raw frames through `decode::Decoder` and the
//!   engine each iteration (everything `memtap dump` does per packet but
//!   reading the file and printing).
//!
//! Cases: every fixture in `testdata/pcaps/` (small, corner-case heavy), and
//! `big_slice`: 20,000 packets of `bench-out/big.pcap` from frame 600,000 on
//! (steady-state get/set traffic), when that file exists (make it with
//! `benches/gen-capture.sh`).
//!
//! Throughput is packets and frame bytes per iteration.
//!
//! Before measuring, a counting global allocator reports for each case the
//! heap allocations of one whole run and of the second half of the packets
//! alone (run over all packets minus run over the first half): the latter
//! is the steady-state cost per packet, 0 when the per-packet path does not
//! allocate.
//!
//! `cargo bench --bench pipeline`

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use memtap::capture::file::FileSource;
use memtap::capture::Frame;
use memtap::decode::targets::{Target, Targets};
use memtap::decode::{DecodeConfig, Decoder, Packet, TcpInfo, Transport, Ts};
use memtap::session::{Engine, EngineConfig, Record, RecordSink};
use memtap::stats::Counters;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The system allocator, counting allocations (and reallocations).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    f();
    ALLOCS.load(Ordering::Relaxed) - before
}

const FIXTURES: &[&str] = &["text_tcp", "meta_tcp", "binary_tcp", "mixed_noreply", "udp"];
const BIG_SKIP: u64 = 600_000;
const BIG_TAKE: usize = 20_000;

/// A frame copied out of the reader's buffer.
struct OwnedFrame {
    ts: Ts,
    frame_no: u64,
    linktype: u32,
    wire_len: u32,
    data: Vec<u8>,
}

impl OwnedFrame {
    fn frame(&self) -> Frame<'_> {
        Frame {
            ts: self.ts,
            frame_no: self.frame_no,
            linktype: self.linktype,
            wire_len: self.wire_len,
            data: &self.data,
        }
    }
}

/// A decoded packet with its payload copied out.
struct OwnedPacket {
    ts: Ts,
    frame_no: u64,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    transport: Transport,
    tcp: TcpInfo,
    payload: Vec<u8>,
    truncated: bool,
    wire_payload_len: usize,
}

impl OwnedPacket {
    fn packet(&self) -> Packet<'_> {
        Packet {
            ts: self.ts,
            frame_no: self.frame_no,
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            transport: self.transport,
            tcp: self.tcp,
            payload: &self.payload,
            truncated: self.truncated,
            wire_payload_len: self.wire_payload_len,
        }
    }
}

struct Case {
    name: String,
    targets: Targets,
    frames: Vec<OwnedFrame>,
    packets: Vec<OwnedPacket>,
    bytes: u64,
}

/// Counts records (and touches every key, as a real sink would).
#[derive(Default)]
struct Count {
    records: u64,
    key_bytes: u64,
}

impl RecordSink for Count {
    fn record(&mut self, r: &Record<'_>) {
        self.records += 1;
        self.key_bytes += r.key.map_or(0, |k| k.len() as u64);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `"server": "HOST:PORT"` of a JSON file (first line that has one).
fn server_of(json: &Path) -> Option<String> {
    let text = std::fs::read_to_string(json).ok()?;
    text.lines()
        .chain(std::iter::once(text.as_str()))
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok()?["server"]
                .as_str()
                .map(String::from)
        })
}

fn load(name: &str, pcap: &Path, server: &str, skip: u64, take: usize) -> Case {
    let target: Target = server
        .parse()
        .unwrap_or_else(|e| panic!("{name}: target {server}: {e}"));
    let targets = Targets::new(vec![target]);
    let mut src = FileSource::open(&[pcap.to_path_buf()]).expect("open capture");
    let mut c = Counters::default();
    let mut frames = Vec::new();
    while let Some(f) = src.next_frame(&mut c).expect("read capture") {
        if f.frame_no <= skip {
            continue;
        }
        frames.push(OwnedFrame {
            ts: f.ts,
            frame_no: f.frame_no,
            linktype: f.linktype,
            wire_len: f.wire_len,
            data: f.data.to_vec(),
        });
        if frames.len() == take {
            break;
        }
    }
    let mut dec = Decoder::new(DecodeConfig::default());
    let mut packets = Vec::new();
    for f in &frames {
        if let Some(p) = dec.decode(&f.frame(), &mut c) {
            packets.push(OwnedPacket {
                ts: p.ts,
                frame_no: p.frame_no,
                src: p.src,
                dst: p.dst,
                sport: p.sport,
                dport: p.dport,
                transport: p.transport,
                tcp: p.tcp,
                payload: p.payload.to_vec(),
                truncated: p.truncated,
                wire_payload_len: p.wire_payload_len,
            });
        }
    }
    let bytes = frames.iter().map(|f| f.data.len() as u64).sum();
    Case {
        name: name.to_string(),
        targets,
        frames,
        packets,
        bytes,
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for fx in FIXTURES {
        let dir = root().join("testdata/pcaps").join(fx);
        let server = server_of(&dir.join("expected.jsonl"))
            .unwrap_or_else(|| panic!("{fx}: no server in expected.jsonl"));
        v.push(load(fx, &dir.join("capture.pcap"), &server, 0, usize::MAX));
    }
    let big = root().join("bench-out/big.pcap");
    match server_of(&root().join("bench-out/big.pcap.json")) {
        Some(server) if big.exists() => v.push(load("big_slice", &big, &server, BIG_SKIP, BIG_TAKE)),
        _ => eprintln!("pipeline: bench-out/big.pcap(.json) missing, big_slice skipped (benches/gen-capture.sh)"),
    }
    v
}

fn run_engine(case: &Case, cfg: &EngineConfig) -> Count {
    run_packets(&case.packets, &case.targets, cfg)
}

#[inline(never)]
fn run_packets(packets: &[OwnedPacket], targets: &Targets, cfg: &EngineConfig) -> Count {
    let mut sink = Count::default();
    let mut engine = Engine::new(cfg.clone(), targets.clone());
    for p in packets {
        engine.packet(&p.packet(), &mut sink);
    }
    engine.finish(&mut sink);
    sink
}

#[inline(never)]
fn run_decode_engine(case: &Case, cfg: &EngineConfig) -> Count {
    let mut sink = Count::default();
    let mut c = Counters::default();
    let mut dec = Decoder::new(DecodeConfig::default());
    let mut engine = Engine::new(cfg.clone(), case.targets.clone());
    for f in &case.frames {
        if let Some(p) = dec.decode(&f.frame(), &mut c) {
            engine.packet(&p, &mut sink);
        }
    }
    dec.finish(&mut c);
    engine.finish(&mut sink);
    sink
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
}

fn bench(c: &mut Criterion) {
    let cfg = EngineConfig::default();
    let cases = cases();
    for case in &cases {
        let n = run_engine(case, &cfg).records;
        assert!(n > 0, "{}: no records", case.name);
        assert_eq!(run_decode_engine(case, &cfg).records, n, "{}", case.name);
        let all = allocations(|| {
            black_box(run_packets(&case.packets, &case.targets, &cfg));
        });
        let half = case.packets.len() / 2;
        let first = allocations(|| {
            black_box(run_packets(&case.packets[..half], &case.targets, &cfg));
        });
        eprintln!(
            "pipeline: {}: {} packets, {n} records, {all} heap allocations per run, {:.4} per packet in the second half",
            case.name,
            case.packets.len(),
            all.saturating_sub(first) as f64 / (case.packets.len() - half).max(1) as f64,
        );
    }
    for (group, f) in [
        ("engine", run_engine as fn(&Case, &EngineConfig) -> Count),
        ("decode_engine", run_decode_engine),
    ] {
        let mut g = c.benchmark_group(group);
        // Equal iteration counts per sample: big_slice takes milliseconds.
        g.sampling_mode(SamplingMode::Flat);
        for case in &cases {
            g.throughput(Throughput::ElementsAndBytes {
                elements: case.frames.len() as u64,
                bytes: case.bytes,
            });
            g.bench_function(&case.name, |b| {
                b.iter(|| black_box(f(black_box(case), &cfg)).records)
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
