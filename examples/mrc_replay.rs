//! Miss-ratio curves of a capture, until the collectors build them: reads
//! the pcap with memtap's own decoder and session engine and feeds every
//! get, store and delete record into `collect::mrc::Mrc`, exact and
//! sampled side by side.
//!
//! ```text
//! cargo run --example mrc_replay -- FILE.pcap HOST:PORT [--at 8,16,32] [--rate 0.01]
//!     [--max-samples N] [--json OUT.json]
//! ```
//! For each `--at` size (MiB, may be fractional) prints the exact curve and the sampled one,
//! both with item sizes as memcached accounts them (`item_bytes`) and with
//! sizes rounded up to memcached's default slab chunk (factor 1.25,
//! smallest chunk 96, largest 512 KiB), what `-m` really pays per item.

use memtap::capture::file::FileSource;
use memtap::collect::mrc::{item_bytes, Curve, Mrc, MrcConfig};
use memtap::decode::targets::{Target, Targets};
use memtap::decode::{DecodeConfig, Decoder};
use memtap::protocol::Outcome;
use memtap::session::{Engine, EngineConfig, Record};
use memtap::stats::Counters;
use std::path::PathBuf;

/// memcached 1.6's default slab classes: 96 bytes (48-byte header + 48),
/// times 1.25 aligned to 8, up to half of a 1 MiB page, then the half page.
fn slab_classes() -> Vec<u64> {
    let mut v = Vec::new();
    let mut size = 96.0f64;
    let max = 512.0 * 1024.0;
    while size <= max / 1.25 {
        let s = (size as u64).div_ceil(8) * 8;
        v.push(s);
        size = s as f64 * 1.25;
    }
    v.push(max as u64);
    v
}

fn fnv(k: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in k {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

struct Feed {
    exact: Mrc,
    sampled: Mrc,
    exact_chunk: Mrc,
    sampled_chunk: Mrc,
    classes: Vec<u64>,
    records: u64,
}

impl Feed {
    fn chunk(&self, n: u32) -> u32 {
        let i = self.classes.partition_point(|&c| c < n as u64);
        self.classes.get(i).copied().unwrap_or(n as u64) as u32
    }

    fn record(&mut self, r: &Record<'_>) {
        self.records += 1;
        let Some(key) = r.key else { return };
        let h = fnv(key);
        match (r.command, r.result) {
            ("get" | "gets" | "mg", Outcome::Hit | Outcome::Miss) => {
                let hit = r.result == Outcome::Hit;
                let b = item_bytes(key.len(), r.resp_bytes, false);
                let c = self.chunk(b);
                self.exact.get(h, b, hit);
                self.sampled.get(h, b, hit);
                self.exact_chunk.get(h, c, hit);
                self.sampled_chunk.get(h, c, hit);
            }
            ("set" | "add" | "replace" | "cas" | "append" | "prepend" | "ms", Outcome::Stored) => {
                let b = item_bytes(key.len(), r.req_bytes, false);
                let c = self.chunk(b);
                self.exact.store(h, b);
                self.sampled.store(h, b);
                self.exact_chunk.store(h, c);
                self.sampled_chunk.store(h, c);
            }
            ("delete" | "md", Outcome::Deleted) => {
                self.exact.delete(h);
                self.sampled.delete(h);
                self.exact_chunk.delete(h);
                self.sampled_chunk.delete(h);
            }
            _ => {}
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        anyhow::bail!("usage: mrc_replay FILE.pcap HOST:PORT [--at 8,16,...] [--rate R] [--max-samples N] [--json OUT]");
    }
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let at: Vec<f64> = opt("--at")
        .unwrap_or_else(|| "8,16,32,64,128".into())
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()?;
    let cfg = MrcConfig {
        sample_rate: opt("--rate")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(0.01),
        max_samples: opt("--max-samples")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(MrcConfig::default().max_samples),
        ..MrcConfig::default()
    };
    cfg.check().map_err(anyhow::Error::msg)?;
    let target: Target = args[1].parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut src = FileSource::open(&[PathBuf::from(&args[0])])?;
    let mut c = Counters::default();
    let mut dec = Decoder::new(DecodeConfig::default());
    let mut engine = Engine::new(EngineConfig::default(), Targets::new(vec![target]));
    let mut feed = Feed {
        exact: Mrc::new(&MrcConfig::exact()),
        sampled: Mrc::new(&cfg),
        exact_chunk: Mrc::new(&MrcConfig::exact()),
        sampled_chunk: Mrc::new(&cfg),
        classes: slab_classes(),
        records: 0,
    };
    let mut sink = |r: &Record<'_>| feed.record(r);
    while let Some(f) = src.next_frame(&mut c)? {
        if let Some(p) = dec.decode(&f, &mut c) {
            engine.packet(&p, &mut sink);
        }
    }
    dec.finish(&mut c);
    engine.finish(&mut sink);

    let curves: Vec<(&str, Curve)> = vec![
        ("exact", feed.exact.curve()),
        ("sampled", feed.sampled.curve()),
        ("exact_chunk", feed.exact_chunk.curve()),
        ("sampled_chunk", feed.sampled_chunk.curve()),
    ];
    let e = &curves[0].1;
    println!(
        "records {} gets {} current {:.4} attainable {:.4} sampling {:.5} ({} sampled gets, {} keys tracked, {} heap bytes)",
        feed.records,
        e.accesses,
        e.current_hit_ratio,
        e.attainable_hit_ratio,
        curves[1].1.sample_rate,
        curves[1].1.samples,
        feed.sampled.tracked(),
        feed.sampled.heap_bytes()
    );
    println!("MiB\texact\tsampled\texact_chunk\tsampled_chunk");
    for &m in &at {
        let b = (m * 1048576.0) as u64;
        print!("{m}");
        for (_, cv) in &curves {
            print!("\t{:.4}", cv.ratio_at(b));
        }
        println!();
    }
    let top = e.points.last().map_or(0, |p| p.0);
    let lin = |a: &Curve, b: &Curve| {
        (1..=100)
            .map(|i| (a.ratio_at(top * i / 100) - b.ratio_at(top * i / 100)).abs())
            .sum::<f64>()
            / 100.0
    };
    println!(
        "exact vs sampled MAE (100 sizes up to {top} bytes): item {:.4}, chunk {:.4}",
        lin(&curves[0].1, &curves[1].1),
        lin(&curves[2].1, &curves[3].1)
    );
    if let Some(path) = opt("--json") {
        let j: serde_json::Map<String, serde_json::Value> = curves
            .iter()
            .map(|(n, cv)| (n.to_string(), cv.to_json()))
            .collect();
        std::fs::write(path, serde_json::to_string(&j)?)?;
    }
    Ok(())
}
