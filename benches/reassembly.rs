//! TCP reassembly micro-benchmarks: `reassembly::tcp::TcpConn` fed whole
//! connections (handshake, data, FIN/FIN) with a handler that consumes every
//! byte at once, so what is measured is the reassembler alone.
//!
//! * `in_order/exchange`: lock-step request/response segments the size of a
//!   cache workload (40-byte request, 160-byte response), each carrying the
//!   ACK of the other direction;
//! * `in_order/bulk_1448`: one direction of MSS-sized segments;
//! * `out_of_order/swap_pairs_1448`: the same bulk with every pair of
//!   segments swapped (every other segment waits in the out-of-order store);
//! * `out_of_order/reverse_8_1448`: groups of 8 segments delivered last
//!   first (7 held, then all delivered by the eighth).
//!
//! Throughput is payload bytes per connection. `cargo bench --bench reassembly`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memtap::decode::TcpInfo;
use memtap::reassembly::tcp::{Budget, TcpConfig, TcpConn};
use memtap::reassembly::{Dir, SegInfo, StreamHandler};
use memtap::stats::Counters;
use std::hint::black_box;
use std::time::Duration;

/// Consumes everything; counts what it got.
#[derive(Default)]
struct Sink {
    bytes: u64,
    gaps: u64,
    closes: u64,
}

impl StreamHandler for Sink {
    fn on_data(&mut self, _dir: Dir, data: &[u8], _off: u64, _info: &SegInfo) -> usize {
        self.bytes += data.len() as u64;
        data.len()
    }
    fn on_gap(&mut self, _dir: Dir, _len: u64, _info: &SegInfo) {
        self.gaps += 1;
    }
    fn on_close(&mut self, _info: &SegInfo) {
        self.closes += 1;
    }
}

/// One segment of the script: direction, header, payload range in `data`.
struct Seg {
    dir: Dir,
    tcp: TcpInfo,
    len: usize,
}

struct Script {
    segs: Vec<Seg>,
    data: Vec<u8>,
    payload_bytes: u64,
}

const C_ISN: u32 = 0xfff0_0000; // wraps inside the connection
const S_ISN: u32 = 0x1000_0000;

fn hdr(seq: u32, ack: u32, syn: bool, fin: bool) -> TcpInfo {
    TcpInfo {
        seq,
        ack,
        syn,
        fin,
        rst: false,
        ack_flag: !(syn && ack == 0),
    }
}

/// Handshake, then `data` (dir, payload len) in the given order of
/// delivery (`order[i]` is the index of the data segment sent i-th), then
/// FIN from both sides.
fn script(data: &[(Dir, usize)], order: &[usize]) -> Script {
    // Sequence numbers of each data segment in its direction.
    let mut next = [C_ISN.wrapping_add(1), S_ISN.wrapping_add(1)];
    let mut seqs = Vec::with_capacity(data.len());
    for &(dir, len) in data {
        seqs.push(next[dir.idx()]);
        next[dir.idx()] = next[dir.idx()].wrapping_add(len as u32);
    }
    let mut segs = vec![
        Seg {
            dir: Dir::Request,
            tcp: hdr(C_ISN, 0, true, false),
            len: 0,
        },
        Seg {
            dir: Dir::Response,
            tcp: hdr(S_ISN, C_ISN.wrapping_add(1), true, false),
            len: 0,
        },
    ];
    // Each data segment acknowledges everything the other side sent before it
    // in the original order (what a lock-step peer would have seen).
    let mut acked_before = Vec::with_capacity(data.len());
    let mut sent = [C_ISN.wrapping_add(1), S_ISN.wrapping_add(1)];
    for &(dir, len) in data {
        acked_before.push(sent[dir.other().idx()]);
        sent[dir.idx()] = sent[dir.idx()].wrapping_add(len as u32);
    }
    for &i in order {
        let (dir, len) = data[i];
        segs.push(Seg {
            dir,
            tcp: hdr(seqs[i], acked_before[i], false, false),
            len,
        });
    }
    segs.push(Seg {
        dir: Dir::Request,
        tcp: hdr(next[0], next[1], false, true),
        len: 0,
    });
    segs.push(Seg {
        dir: Dir::Response,
        tcp: hdr(next[1], next[0].wrapping_add(1), false, true),
        len: 0,
    });
    let max = data.iter().map(|d| d.1).max().unwrap_or(0);
    let payload_bytes = data.iter().map(|d| d.1 as u64).sum();
    Script {
        segs,
        data: (0..max)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz\r\n"[i % 28])
            .collect(),
        payload_bytes,
    }
}

fn run(s: &Script, cfg: &TcpConfig, budget: &mut Budget) -> Sink {
    let mut conn = TcpConn::new(*cfg);
    let mut h = Sink::default();
    let mut c = Counters::default();
    let mut ts = 1_700_000_000_000_000_000u64;
    for (n, seg) in s.segs.iter().enumerate() {
        ts += 1_000;
        conn.segment(
            seg.dir,
            &seg.tcp,
            &s.data[..seg.len],
            ts,
            n as u64 + 1,
            &mut h,
            budget,
            &mut c,
        );
    }
    h
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
}

fn cases() -> Vec<(&'static str, &'static str, Script)> {
    const N: usize = 1024;
    let exchange: Vec<(Dir, usize)> = (0..N)
        .flat_map(|_| [(Dir::Request, 40), (Dir::Response, 160)])
        .collect();
    let bulk: Vec<(Dir, usize)> = vec![(Dir::Request, 1448); N];
    let in_order: Vec<usize> = (0..N).collect();
    let swap_pairs: Vec<usize> = (0..N).map(|i| i ^ 1).collect();
    let reverse_8: Vec<usize> = (0..N).map(|i| (i & !7) + (7 - (i & 7))).collect();
    vec![
        (
            "in_order",
            "exchange_40_160",
            script(&exchange, &(0..2 * N).collect::<Vec<_>>()),
        ),
        ("in_order", "bulk_1448", script(&bulk, &in_order)),
        (
            "out_of_order",
            "swap_pairs_1448",
            script(&bulk, &swap_pairs),
        ),
        ("out_of_order", "reverse_8_1448", script(&bulk, &reverse_8)),
    ]
}

fn bench(c: &mut Criterion) {
    let cfg = TcpConfig::default();
    let cases = cases();
    for group in ["in_order", "out_of_order"] {
        let mut g = c.benchmark_group(group);
        for (_, name, s) in cases.iter().filter(|k| k.0 == group) {
            // Every byte delivered once, nothing lost, one close.
            let h = run(s, &cfg, &mut cfg.budget());
            assert_eq!(
                (h.bytes, h.gaps, h.closes),
                (s.payload_bytes, 0, 1),
                "{group}/{name}"
            );
            g.throughput(Throughput::Bytes(s.payload_bytes));
            g.bench_function(*name, |b| {
                let mut budget = cfg.budget();
                b.iter(|| black_box(run(black_box(s), &cfg, &mut budget)).bytes)
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
