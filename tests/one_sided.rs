//! A connection whose answers never come (a capture that sees one
//! direction, or a dead server): every request is recorded `lost`, the
//! pending queue sheds by overflow in O(1) per request, and the counters
//! say exactly how many.

mod common;
use common::*;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use seg_builder::one_sided;

mod seg_builder {
    use super::common::Seg;
    use std::net::{IpAddr, Ipv4Addr};

    /// A SYN then `n` segments of one `get key:I` each, client to server.
    pub fn one_sided(n: u64) -> Vec<Seg> {
        let base = Seg {
            ts: 1_700_000_000_000_000_000,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            sport: 40000,
            dport: 11211,
            udp: false,
            seq: 1000,
            ack: 0,
            syn: true,
            fin: false,
            rst: false,
            ack_flag: false,
            payload: Vec::new(),
        };
        let mut out = vec![base.clone()];
        let mut seq = 1001u32;
        for i in 0..n {
            let payload = format!("get key:{i}\r\n").into_bytes();
            let mut s = base.clone();
            s.ts += (i + 1) * 10_000;
            s.syn = false;
            s.ack_flag = true;
            s.ack = 1;
            s.seq = seq;
            seq = seq.wrapping_add(payload.len() as u32);
            s.payload = payload;
            out.push(s);
        }
        out
    }
}

#[test]
fn two_hundred_thousand_unanswered_gets() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one-sided.pcap");
    write_segments(&one_sided(N), &path);
    let mut cfg = Config::default();
    // A small cap, so that the overflow path is what is measured.
    cfg.protocol.max_pending_per_conn = 4096;

    let started = std::time::Instant::now();
    let run = run_files(
        &[path],
        Targets::new(vec!["*:11211".parse().unwrap()]),
        &cfg,
    );
    let took = started.elapsed();

    let c = &run.counters;
    assert_eq!(c.records, N);
    assert_eq!(c.lost_requests, N);
    // The first overflow sheds the 4096 queued requests and keeps their
    // shapes; the second sheds 4096 more, and the 8192 shapes are over
    // their bound (4096): the connection is given up, every later request
    // recorded lost at once. All are counted as given up.
    assert_eq!(c.pending_overflow, N);
    assert_eq!(c.conns_given_up, 1);
    assert_eq!(c.orphan_responses, 0);
    assert_eq!(c.tcp_segments, N + 1);
    assert!(run.records.iter().all(|r| r["result"] == "lost"));
    assert_eq!(run.records[0]["key"], "key:0");
    assert_eq!(run.records[N as usize - 1]["key"], "key:199999");
    // Quadratic overflow handling took over a minute for 128k requests;
    // linear takes well under a second here (2 shared cores).
    assert!(took.as_secs() < 30, "took {took:?}");
}
