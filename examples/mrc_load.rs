//! A look-aside memcached client for `benches/mrc-vs-memcached.sh`: Zipf
//! key popularity, mixed value sizes; each get that misses is followed by
//! a `set` of the key (how applications fill a cache). Pipelined over one
//! TCP connection with std only, so a million requests take seconds.
//!
//! ```text
//! cargo run --example mrc_load -- ADDR [--keys N] [--gets N] [--alpha A]
//!     [--seed S] [--depth D]
//! ```
//! Prints one JSON line: gets, the hits and misses it saw, sets, and the
//! workload's footprint (distinct keys and bytes as memcached accounts
//! items).
//!
//! Values: per key (from its hash) 60 % 50-300 bytes, 30 % 300-1000,
//! 10 % 1000-4000; flags 0; no expiry. Keys `k:NNNNNNNN` (rank order
//! permuted by hash, so popularity is not key order).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn value_len(id: u64) -> usize {
    let h = mix(id ^ 0xa5a5_a5a5);
    let band = h % 100;
    let u = (h >> 32) % 1_000_000;
    let (lo, hi) = match band {
        0..=59 => (50, 300),
        60..=89 => (300, 1000),
        _ => (1000, 4000),
    };
    lo + (u as usize * (hi - lo)) / 1_000_000
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().cloned().unwrap_or_else(|| {
        eprintln!("usage: mrc_load ADDR [--keys N] [--gets N] [--alpha A] [--seed S] [--depth D]");
        std::process::exit(2)
    });
    let opt = |name: &str, d: f64| -> f64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse().unwrap_or_else(|_| {
                    eprintln!("{name}: not a number: {v}");
                    std::process::exit(2)
                })
            })
            .unwrap_or(d)
    };
    let keys = opt("--keys", 200_000.0) as usize;
    let gets = opt("--gets", 1_000_000.0) as u64;
    let alpha = opt("--alpha", 0.9);
    let mut seed = opt("--seed", 1.0) as u64;
    let depth = (opt("--depth", 64.0) as usize).max(1);

    let mut cdf = Vec::with_capacity(keys);
    let mut s = 0.0;
    for i in 1..=keys {
        s += 1.0 / (i as f64).powf(alpha);
        cdf.push(s);
    }
    let mut next = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let u = (mix(seed) >> 11) as f64 / (1u64 << 53) as f64 * s;
        let rank = cdf.partition_point(|&c| c < u).min(keys - 1) as u64;
        // A permutation of the ranks: popular keys are spread over names.
        mix(rank) % (keys as u64 * 16)
    };

    let stream = TcpStream::connect(&addr)?;
    stream.set_nodelay(true)?;
    let mut r = BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let mut w = BufWriter::with_capacity(1 << 20, stream);
    let filler = vec![b'x'; 4000];
    let (mut hits, mut misses, mut sets) = (0u64, 0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    let mut footprint = 0u64;
    let mut batch = Vec::with_capacity(depth);
    let mut missed = Vec::with_capacity(depth);
    let mut line = String::new();
    let mut sink = vec![0u8; 4002];
    let mut done = 0u64;
    while done < gets {
        batch.clear();
        missed.clear();
        while batch.len() < depth && done < gets {
            let id = next();
            write!(w, "get k:{id:08}\r\n")?;
            batch.push(id);
            done += 1;
        }
        w.flush()?;
        for &id in &batch {
            line.clear();
            r.read_line(&mut line)?;
            if line.starts_with("VALUE ") {
                let n: usize = line
                    .trim_end()
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| std::io::Error::other(format!("bad line {line:?}")))?;
                r.read_exact(&mut sink[..n + 2])?;
                line.clear();
                r.read_line(&mut line)?;
                hits += 1;
            } else if line == "END\r\n" {
                misses += 1;
                missed.push(id);
            } else {
                return Err(std::io::Error::other(format!("unexpected {line:?}")));
            }
            if line != "END\r\n" {
                return Err(std::io::Error::other(format!("no END: {line:?}")));
            }
        }
        for &id in &missed {
            let n = value_len(id);
            write!(w, "set k:{id:08} 0 0 {n}\r\n")?;
            w.write_all(&filler[..n])?;
            w.write_all(b"\r\n")?;
            if seen.insert(id) {
                // memcached's item: 48 header + 8 CAS + key + NUL + value + CRLF.
                footprint += 48 + 8 + format!("k:{id:08}").len() as u64 + 1 + n as u64 + 2;
            }
        }
        w.flush()?;
        for _ in &missed {
            line.clear();
            r.read_line(&mut line)?;
            if line != "STORED\r\n" {
                return Err(std::io::Error::other(format!("set: {line:?}")));
            }
            sets += 1;
        }
    }
    println!(
        "{{\"gets\":{gets},\"hits\":{hits},\"misses\":{misses},\"sets\":{sets},\"distinct_keys\":{},\"footprint_bytes\":{footprint},\"keys\":{keys},\"alpha\":{alpha}}}",
        seen.len()
    );
    Ok(())
}
