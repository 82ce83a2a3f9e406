//! Issue 18, the miss-ratio curve against reality (the small version of
//! `benches/mrc-vs-memcached.sh`).
//!
//! A look-aside client (get; on a miss, set) sends Zipf-distributed keys
//! with 1,000-byte values (one slab class, so `-m` is the LRU's size up to
//! the chunk rounding) to real memcached servers started with `-m 4` and
//! `-m 8`. The `-m 8` run is captured; memtap's curve from that capture,
//! read at each server's item capacity, must come within 4 points of the
//! hit ratio each server really gave (`stats`), and the 1 % SHARDS curve
//! within 3 points of the exact one (`[insight] mrc_exact`).

mod common;
use common::server::{can_capture, capture, free_port, memcached_with, memtap_json, stats};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const KEYS: usize = 15_000;
const GETS: usize = 60_000;
const VALUE: usize = 1000;
/// memcached's chunk for a 1,000-byte value with a 10-byte key (class 12).
const CHUNK: f64 = 1184.0;

/// Zipf(0.9) ranks from a fixed seed (inverse CDF over a table).
fn workload() -> Vec<u32> {
    let w: Vec<f64> = (1..=KEYS).map(|i| 1.0 / (i as f64).powf(0.9)).collect();
    let total: f64 = w.iter().sum();
    let mut cdf = Vec::with_capacity(KEYS);
    let mut acc = 0.0;
    for x in &w {
        acc += x / total;
        cdf.push(acc);
    }
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..GETS)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(KEYS - 1) as u32
        })
        .collect()
}

/// Runs the look-aside loop, 20 gets in flight at a time.
fn drive(port: u16, keys: &[u32]) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let value = vec![b'v'; VALUE];
    let mut line = String::new();
    for batch in keys.chunks(20) {
        let mut out = Vec::new();
        for k in batch {
            write!(out, "get key:{k:06}\r\n").unwrap();
        }
        w.write_all(&out).unwrap();
        let mut missed = Vec::new();
        for k in batch {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.starts_with("VALUE") {
                let mut v = vec![0u8; VALUE + 2];
                r.read_exact(&mut v).unwrap();
                line.clear();
                r.read_line(&mut line).unwrap();
            } else {
                missed.push(*k);
            }
            assert!(line.starts_with("END"), "{line}");
        }
        let mut out = Vec::new();
        for k in &missed {
            write!(out, "set key:{k:06} 0 0 {VALUE}\r\n").unwrap();
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
        }
        w.write_all(&out).unwrap();
        for _ in &missed {
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "STORED\r\n");
        }
    }
}

fn hit_ratio(port: u16) -> f64 {
    let s = stats(port);
    s["get_hits"] as f64 / (s["get_hits"] + s["get_misses"]) as f64
}

/// The curve's hit ratio with `bytes` of cache (a step function).
fn ratio_at(mrc: &Value, bytes: f64) -> f64 {
    mrc["points"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|p| p[0].as_f64().unwrap() <= bytes)
        .last()
        .map_or(0.0, |p| p[1].as_f64().unwrap())
}

fn curve(file: &std::path::Path, port: u16, exact: bool, dir: &std::path::Path) -> Value {
    let cfg = dir.join(format!("exact-{exact}.toml"));
    std::fs::write(&cfg, format!("[insight]\nmrc_exact = {exact}\n")).unwrap();
    let target = format!("127.0.0.1:{port}");
    let r = memtap_json(
        BIN,
        &[
            "replay",
            "-f",
            "json",
            "-c",
            cfg.to_str().unwrap(),
            "--target",
            &target,
            file.to_str().unwrap(),
        ],
    );
    r["insight"]["pool"]["mrc"].clone()
}

#[test]
fn the_curve_predicts_memcached_at_other_sizes() {
    if !can_capture(
        "the_curve_predicts_memcached_at_other_sizes",
        &["memcached", "tcpdump"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = workload();
    let opts = |m: &'static str| ["-m", m, "-o", "no_lru_crawler,no_lru_maintainer"];
    let (p4, p8) = (free_port(), free_port());
    let m4 = memcached_with(p4, &opts("4"));
    drive(p4, &keys);
    let measured4 = hit_ratio(p4);
    drop(m4);
    let _m8 = memcached_with(p8, &opts("8"));
    let cap = capture(dir.path(), "mrc", &[p8]);
    drive(p8, &keys);
    let file = cap.finish();
    let measured8 = hit_ratio(p8);

    let exact = curve(&file, p8, true, dir.path());
    let sampled = curve(&file, p8, false, dir.path());
    // The server's own hit ratio is the curve's current point.
    assert!((exact["current_hit_ratio"].as_f64().unwrap() - measured8).abs() < 1e-4);
    // -m bytes hold -m / chunk items; the curve counts each item's own
    // bytes (header, key, value): the same items, fewer bytes.
    let item = 48.0 + 8.0 + 10.0 + 1.0 + VALUE as f64 + 2.0;
    let at = |m: f64| m * 1024.0 * 1024.0 * item / CHUNK;
    let mut worst = 0.0f64;
    for (m, measured) in [(4.0, measured4), (8.0, measured8)] {
        let e = ratio_at(&exact, at(m));
        let s = ratio_at(&sampled, at(m));
        eprintln!(
            "-m {m}: memcached {:.2} %, exact curve {:.2} %, 1 % curve {:.2} %",
            100.0 * measured,
            100.0 * e,
            100.0 * s
        );
        assert!(
            (e - measured).abs() < 0.04,
            "-m {m}: curve {e} vs {measured}"
        );
        assert!((s - e).abs() < 0.03, "-m {m}: sampled {s} vs exact {e}");
        worst = worst.max((e - measured).abs());
    }
    assert!(measured8 > measured4 + 0.05, "{measured4} {measured8}");
    eprintln!("worst error {:.2} points", 100.0 * worst);
}
