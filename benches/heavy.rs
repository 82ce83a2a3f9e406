//! Heavy-hitter table throughput: updates/s on a Zipf(1.0) stream of 1M
//! updates over about 200k distinct keys, for capacities of 10k and 100k
//! items.
//!
//! `cargo bench --bench heavy`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use memtap::collect::HeavyHitters;

/// Ranks the Zipf law draws from: 1M draws over 750k ranks hit about 200k
/// distinct ones (the bench prints the exact number).
const RANKS: usize = 750_000;
const STREAM: usize = 1_000_000;
const SKEW: f64 = 1.0;

/// SplitMix64, seeded: the same stream on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `STREAM` key ids drawn from Zipf(`SKEW`) over `RANKS` ranks, renumbered
/// densely in order of first appearance; and the number of distinct ids.
fn zipf_stream() -> (Vec<u32>, usize) {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=RANKS)
        .map(|r| {
            acc += (r as f64).powf(-SKEW);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    let mut rng = Rng(42);
    let mut id_of = vec![u32::MAX; RANKS];
    let mut distinct = 0;
    let stream = (0..STREAM)
        .map(|_| {
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            let rank = cdf.partition_point(|&c| c <= u).min(RANKS - 1);
            if id_of[rank] == u32::MAX {
                id_of[rank] = distinct;
                distinct += 1;
            }
            id_of[rank]
        })
        .collect();
    (stream, distinct as usize)
}

/// `n` memcached-like keys of varied length (about 20-30 bytes) whose bytes
/// say nothing of their popularity.
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(7);
    (0..n)
        .map(|i| {
            let ns = ["user", "session", "item:v2", "feed"][(rng.next() % 4) as usize];
            format!("{ns}:{:x}:{}", rng.next() % 1_000_000_007, i).into_bytes()
        })
        .collect()
}

#[derive(Default)]
struct Stats {
    hits: u64,
    bytes: u64,
}

fn bench_updates(c: &mut Criterion) {
    let (stream, distinct) = zipf_stream();
    let keys = keys(distinct);
    eprintln!("heavy bench: {STREAM} updates, {distinct} distinct keys, zipf s={SKEW}");

    let mut group = c.benchmark_group("heavy_update");
    group.throughput(Throughput::Elements(STREAM as u64));
    group.sample_size(10);
    for capacity in [10_000usize, 100_000] {
        // A fresh window each iteration (clear keeps the allocations), so
        // admissions, evictions and hits are all measured.
        let mut table: HeavyHitters<Stats> = HeavyHitters::new(capacity);
        group.bench_with_input(
            BenchmarkId::new("zipf_200k_keys", capacity),
            &capacity,
            |b, _| {
                b.iter(|| {
                    table.clear();
                    for &k in &stream {
                        let key = &keys[k as usize];
                        let e = table.update(key, 1);
                        e.stats.hits += 1;
                        e.stats.bytes += key.len() as u64;
                    }
                    black_box(table.evictions())
                })
            },
        );
        eprintln!(
            "capacity {capacity}: evictions {}, memory {} bytes",
            table.evictions(),
            table.memory_bytes()
        );
    }
    group.finish();
}

criterion_group!(benches, bench_updates);
criterion_main!(benches);
