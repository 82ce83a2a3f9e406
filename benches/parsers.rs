//! Parser micro-benchmarks: `protocol::detect::parse_request` /
//! `parse_response` (the entry points the session uses) on the message
//! headers of a typical cache workload, one message per iteration.
//!
//! Throughput is the bytes the parser consumes (the header: text/meta line,
//! binary header + extras + key); value blocks are skipped by length by the
//! session, never scanned, so they are not counted.
//!
//! `cargo bench --bench parsers`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memtap::protocol::detect::{parse_request, parse_response};
use memtap::protocol::{Limits, Parse};
use std::hint::black_box;
use std::time::Duration;

/// A binary packet: header, extras, key (the value is not part of what a
/// parse consumes, only its length is declared).
fn binary(
    magic: u8,
    opcode: u8,
    status: u16,
    extras: &[u8],
    key: &[u8],
    value_len: u32,
) -> Vec<u8> {
    let body = extras.len() as u32 + key.len() as u32 + value_len;
    let mut p = vec![magic, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.push(0); // data type
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(&body.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // opaque
    p.extend_from_slice(&0u64.to_be_bytes()); // cas
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p
}

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("text_get", b"get k:00012345\r\n".to_vec()),
        (
            "text_get_8_keys",
            b"get k:00012345 k:00000017 k:00104711 k:00000002 k:00199999 k:00031337 k:00000815 k:00123456\r\n"
                .to_vec(),
        ),
        ("text_set", b"set k:00012345 0 0 100\r\n".to_vec()),
        ("text_set_noreply", b"set k:00012345 0 3600 100 noreply\r\n".to_vec()),
        ("meta_mg", b"mg k:00012345 v f t\r\n".to_vec()),
        ("meta_mg_quiet_opaque_k", b"mg k:00012345 v k q O123456\r\n".to_vec()),
        ("meta_ms", b"ms k:00012345 100 T0 F0\r\n".to_vec()),
        ("binary_getk", binary(0x80, 0x0c, 0, &[], b"k:00012345", 0)),
        ("binary_set", binary(0x80, 0x01, 0, &[0, 0, 0, 0, 0, 0, 0, 0], b"k:00012345", 100)),
    ]
}

fn responses() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("text_value", b"VALUE k:00012345 0 100\r\n".to_vec()),
        ("text_end", b"END\r\n".to_vec()),
        ("text_stored", b"STORED\r\n".to_vec()),
        ("meta_va", b"VA 100 f0 t-1\r\n".to_vec()),
        (
            "meta_va_k_opaque",
            b"VA 100 kk:00012345 O123456\r\n".to_vec(),
        ),
        ("meta_en", b"EN\r\n".to_vec()),
        ("meta_hd", b"HD\r\n".to_vec()),
        (
            "binary_getk_hit",
            binary(0x81, 0x0c, 0, &[0, 0, 0, 0], b"k:00012345", 100),
        ),
        (
            "binary_getk_miss",
            binary(0x81, 0x0c, 1, &[], b"k:00012345", 9),
        ),
    ]
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700))
}

fn bench_requests(c: &mut Criterion) {
    let lim = Limits::default();
    let mut g = c.benchmark_group("parse_request");
    for (name, buf) in requests() {
        // What is measured must be what the session sees: a whole header.
        match parse_request(&buf, &lim) {
            Parse::Done { consumed, .. } => assert_eq!(consumed, buf.len(), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_request(black_box(&buf), &lim)));
    }
    g.finish();
}

fn bench_responses(c: &mut Criterion) {
    let lim = Limits::default();
    let mut g = c.benchmark_group("parse_response");
    for (name, buf) in responses() {
        match parse_response(&buf, &lim) {
            Parse::Done { consumed, .. } => assert_eq!(consumed, buf.len(), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_response(black_box(&buf), &lim)));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_requests, bench_responses
}
criterion_main!(benches);
