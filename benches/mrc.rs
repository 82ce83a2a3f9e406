//! CPU per reference of `collect::mrc::Mrc` (issue 18's miss-ratio curve).
//!
//! A look-aside stream (Zipf 0.9 gets over 200,000 keys, a store after
//! each miss of a 64 MiB LRU, 1-4 KiB objects) of 1,000,000 references is
//! generated once; each case runs it through a fresh instance:
//!
//! * `sampled_1pct`: the default configuration (1 %, 8,192 samples): most
//!   references take the unsampled path (remix, one compare);
//! * `unsampled_only`: only the references of keys the 1 % rate leaves
//!   out: the cost every other reference pays;
//! * `exact`: every reference on the stack (Fenwick tree, map, heap).
//!
//! Throughput is references per iteration, so criterion's "elem/s" is
//! references per second. Before measuring, the heap allocations of the
//! second half of the stream (steady state) are reported.
//!
//! `cargo bench --bench mrc`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memtap::collect::mrc::{Mrc, MrcConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
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

#[derive(Clone, Copy)]
enum Op {
    Get(u64, u32, bool),
    Store(u64, u32),
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn stream(n: usize) -> Vec<Op> {
    let keys = 200_000usize;
    let mut cdf = Vec::with_capacity(keys);
    let mut s = 0.0;
    for i in 1..=keys {
        s += 1.0 / (i as f64).powf(0.9);
        cdf.push(s);
    }
    let mut seed = 7u64;
    // The server: a byte LRU of 64 MiB decides hits and fills.
    let cap = 64u64 << 20;
    let (mut used, mut clock) = (0u64, 0u64);
    let mut by_time: BTreeMap<u64, u64> = BTreeMap::new();
    let mut by_key: HashMap<u64, (u64, u32)> = HashMap::new();
    let mut ops = Vec::with_capacity(n);
    while ops.len() < n {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let u = (mix(seed) >> 11) as f64 / (1u64 << 53) as f64 * s;
        let k = mix(cdf.partition_point(|&c| c < u) as u64 ^ 0x1234);
        let size = 1024 + (mix(k) % 3072) as u32;
        clock += 1;
        if let Some((t, sz)) = by_key.get(&k).copied() {
            by_time.remove(&t);
            by_time.insert(clock, k);
            by_key.insert(k, (clock, sz));
            ops.push(Op::Get(k, sz, true));
        } else {
            ops.push(Op::Get(k, 0, false));
            ops.push(Op::Store(k, size));
            by_time.insert(clock, k);
            by_key.insert(k, (clock, size));
            used += size as u64;
            while used > cap {
                let (_, old) = by_time.pop_first().expect("non-empty");
                used -= by_key.remove(&old).expect("indexed").1 as u64;
            }
        }
    }
    ops.truncate(n);
    ops
}

fn run(ops: &[Op], cfg: &MrcConfig) -> Mrc {
    let mut m = Mrc::new(cfg);
    feed(&mut m, ops);
    m
}

#[inline(never)]
fn feed(m: &mut Mrc, ops: &[Op]) {
    for &op in ops {
        match op {
            Op::Get(h, b, hit) => m.get(h, b, hit),
            Op::Store(h, b) => m.store(h, b),
        }
    }
}

fn bench(c: &mut Criterion) {
    let all = stream(1_000_000);
    let sampled = MrcConfig::default();
    // The references the 1 % rate leaves out: an instance that sampled
    // nothing of them shows it by tracking no key.
    let unsampled: Vec<Op> = all
        .iter()
        .copied()
        .filter(|&op| {
            let (Op::Get(h, ..) | Op::Store(h, _)) = op;
            let mut m = Mrc::new(&sampled);
            m.store(h, 1);
            m.tracked() == 0
        })
        .collect();
    let cases: Vec<(&str, &[Op], MrcConfig)> = vec![
        ("sampled_1pct", &all, sampled.clone()),
        ("unsampled_only", &unsampled, sampled.clone()),
        ("exact", &all, MrcConfig::exact()),
    ];
    for (name, ops, cfg) in &cases {
        let mut m = Mrc::new(cfg);
        let half = ops.len() / 2;
        feed(&mut m, &ops[..half]);
        let before = ALLOCS.load(Ordering::Relaxed);
        feed(&mut m, &ops[half..]);
        let steady = ALLOCS.load(Ordering::Relaxed) - before;
        eprintln!(
            "mrc: {name}: {} references, rate {:.4}, {} keys tracked, {} heap bytes, {steady} allocations in the second half",
            ops.len(),
            m.sample_rate(),
            m.tracked(),
            m.heap_bytes()
        );
    }
    let mut g = c.benchmark_group("mrc");
    for (name, ops, cfg) in &cases {
        g.throughput(Throughput::Elements(ops.len() as u64));
        g.bench_function(*name, |b| b.iter(|| black_box(run(black_box(ops), cfg))));
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
