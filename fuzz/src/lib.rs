//! Coverage-guided fuzz targets of memtap: one per stage that reads
//! untrusted bytes (`fuzz_targets/*.rs` call `run` of the module of the
//! same name). Each checks its stage's invariants, not only that it
//! returns: records emitted equal records counted, nothing left after
//! `finish`, memory within the configured budget, every reported count
//! within its stated bound, and the same records for the same packets
//! whatever the batch boundaries.
//!
//! The stable, seeded harness in `tests/fuzz/` keeps running under
//! `cargo test`; these need nightly and cargo-fuzz (`scripts/fuzz.sh`).

pub mod alloc;
pub mod capture;
pub mod decode;
pub mod dict;
pub mod engine;
pub mod fixtures;
pub mod parse;
pub mod tables;
pub mod udp;

pub mod parse_text {
    pub fn run(data: &[u8]) {
        super::parse::run(super::parse::Dialect::Text, data)
    }
}
pub mod parse_meta {
    pub fn run(data: &[u8]) {
        super::parse::run(super::parse::Dialect::Meta, data)
    }
}
pub mod parse_binary {
    pub fn run(data: &[u8]) {
        super::parse::run(super::parse::Dialect::Binary, data)
    }
}
pub mod parse_detect {
    pub fn run(data: &[u8]) {
        super::parse::run(super::parse::Dialect::Detect, data)
    }
}

/// An order-independent digest of a record stream: two runs that emit the
/// same records (as a multiset) agree, and computing it allocates nothing
/// (the engine target measures the heap while it runs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub count: u64,
    sum: u64,
    sum_sq: u64,
}

impl Digest {
    pub fn add(&mut self, r: &memtap::session::Record<'_>) {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (
            r.ts,
            r.client,
            r.server,
            r.transport.as_str(),
            r.proto.as_str(),
            r.command,
            r.first,
            r.key,
            r.result as u8,
            r.req_bytes,
            r.resp_bytes,
            r.latency_ns,
        )
            .hash(&mut h);
        let x = h.finish();
        self.count += 1;
        self.sum = self.sum.wrapping_add(x);
        self.sum_sq = self.sum_sq.wrapping_add(x.wrapping_mul(x | 1));
    }
}
