//! memcached's real UDP framing end to end: the `udp_big` capture (real
//! memcached 1.6.18, replies of many messages, values up to 20 KB) gives
//! exactly its expected records; so do copies of it reordered the way a
//! mirror port reorders (responses captured before their request,
//! datagrams of a message permuted), with identical timestamps and
//! latencies; and the UDP path allocates nothing in steady state.

mod common;
use common::*;
use memtap::app::process_files;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use memtap::decode::{Packet, TcpInfo, Transport};
use memtap::session::{Engine, EngineConfig, Record};
use memtap::stats::Counters;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn allocs() -> u64 {
    ALLOCS.with(|a| a.get())
}

fn count() {
    let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CASE: &str = "udp_big";

/// Everything a record says, time included.
fn full(r: &Record<'_>) -> String {
    format!(
        "{} {} {} {:?} {} {} {} {:?}",
        r.ts,
        r.client,
        r.command,
        r.key.map(String::from_utf8_lossy),
        r.result.as_str(),
        r.req_bytes,
        r.resp_bytes,
        r.latency_ns
    )
}

fn run_full(file: &Path) -> (Vec<String>, Counters) {
    let mut recs = Vec::new();
    let totals = process_files(
        &Config::default(),
        &Targets::new(vec![server_target(CASE)]),
        &[file.to_path_buf()],
        &mut |r: &Record<'_>| recs.push(full(r)),
        &|| false,
    )
    .unwrap();
    (recs, totals.counters)
}

fn port() -> u16 {
    server_target(CASE).port
}

/// Indices of the UDP requests and, for each, of its response datagrams
/// (the driver waits for a whole reply before the next request).
fn replies(segs: &[Seg]) -> Vec<(usize, Vec<usize>)> {
    let port = port();
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        if !s.udp {
            continue;
        }
        if s.dport == port {
            out.push((i, Vec::new()));
        } else {
            let (q, rs) = out.last_mut().expect("a response after a request");
            assert_eq!(segs[*q].payload[..2], s.payload[..2], "request id");
            rs.push(i);
        }
    }
    out
}

/// The capture with, for each UDP request, its first `early(n)` response
/// datagrams moved before it (their order kept), and every multi-datagram
/// message reversed when `reverse`. Timestamps travel with the datagrams.
fn reordered(segs: &[Seg], early: impl Fn(usize) -> usize, reverse: bool) -> Vec<Seg> {
    let mut order: Vec<usize> = (0..segs.len()).collect();
    for (q, rs) in replies(segs) {
        let mut rs_order = rs.clone();
        if reverse {
            // Runs of one message: seq 0..n-1 of n, n > 1.
            let mut i = 0;
            while i < rs.len() {
                let total = u16::from_be_bytes([segs[rs[i]].payload[4], segs[rs[i]].payload[5]]);
                let n = (total as usize).max(1);
                rs_order[i..i + n].reverse();
                i += n;
            }
        }
        let k = early(rs.len()).min(rs.len());
        assert!(
            rs.iter().enumerate().all(|(j, &i)| i == q + 1 + j),
            "reply right after its request"
        );
        let mut block: Vec<usize> = rs_order[..k].to_vec();
        block.push(q);
        block.extend(&rs_order[k..]);
        order[q..q + block.len()].copy_from_slice(&block);
    }
    order.into_iter().map(|i| segs[i].clone()).collect()
}

#[test]
fn udp_big_gives_exactly_its_expected_records() {
    let want = expected(CASE);
    let run = run_case_file(CASE, &fixture_dir(CASE).join("capture.pcap"));
    assert_same(CASE, &want, &group(run.records));
    let c = &run.counters;
    assert_eq!(c.records, 156);
    assert_eq!(c.lost_requests, 0);
    assert_eq!(c.udp_datagrams, 332);
    for (name, v) in [
        ("udp_orphan_responses", c.udp_orphan_responses),
        ("udp_timeouts", c.udp_timeouts),
        ("udp_unassembled_bytes", c.udp_unassembled_bytes),
        ("udp_bad_seq", c.udp_bad_seq),
        ("udp_held_responses", c.udp_held_responses),
        ("bad_responses", c.bad_responses),
    ] {
        assert_eq!(v, 0, "{name}");
    }
}

#[test]
fn reordered_like_a_mirror_port_gives_identical_records() {
    let dir = tempfile::tempdir().unwrap();
    let segs = read_segments(&fixture_dir(CASE).join("capture.pcap"));
    let rs = replies(&segs);
    assert_eq!(rs.len(), 35);
    let datagrams: usize = rs.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(datagrams, 297);
    let multi: usize = rs
        .iter()
        .flat_map(|(_, r)| r.iter())
        .filter(|&&i| segs[i].payload[5] > 1 || segs[i].payload[4] > 0)
        .count();
    assert!(multi > 200, "{multi} datagrams in multi-datagram messages");
    // The baseline goes through the same writer (same timestamp precision).
    let base_path = dir.path().join("base.pcap");
    write_segments(&segs, &base_path);
    let (base, base_c) = run_full(&base_path);
    assert_eq!(base.len(), 156);
    assert_eq!(base_c.lost_requests, 0);
    for (label, early, reverse, held) in [
        ("first response first", 1usize, false, rs.len()),
        ("whole reply first", usize::MAX, false, datagrams),
        ("messages reversed", 0, true, 0),
        (
            "whole reply first, messages reversed",
            usize::MAX,
            true,
            datagrams,
        ),
        ("half the reply first, reversed", usize::MAX / 2, true, 0),
    ] {
        let early = move |n: usize| {
            if early == usize::MAX / 2 {
                n / 2
            } else {
                early
            }
        };
        let moved = reordered(&segs, early, reverse);
        assert_eq!(moved.len(), segs.len());
        let path = dir.path().join("moved.pcap");
        write_segments(&moved, &path);
        let (got, c) = run_full(&path);
        for (i, (a, b)) in base.iter().zip(&got).enumerate() {
            assert_eq!(a, b, "{label}: record {i}");
        }
        assert_eq!(got.len(), base.len(), "{label}");
        if label != "half the reply first, reversed" {
            assert_eq!(c.udp_held_responses as usize, held, "{label}");
        } else {
            assert!(c.udp_held_responses > 100, "{label}");
        }
        assert_eq!(c.udp_orphan_responses, 0, "{label}");
        assert_eq!(c.udp_unassembled_bytes, 0, "{label}");
        assert_eq!(c.lost_requests, 0, "{label}");
        assert_eq!(c.udp_timeouts, 0, "{label}");
    }
}

struct Udp {
    ts: u64,
}

impl Udp {
    fn pkt<'a>(&mut self, to_server: bool, payload: &'a [u8]) -> Packet<'a> {
        self.ts += 10_000;
        let (c, s) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (src, dst, sport, dport) = if to_server {
            (c, s, 40000, 11211)
        } else {
            (s, c, 11211, 40000)
        };
        Packet {
            ts: self.ts,
            frame_no: 0,
            src,
            dst,
            sport,
            dport,
            transport: Transport::Udp,
            tcp: TcpInfo::default(),
            payload,
            truncated: false,
            wire_payload_len: payload.len(),
        }
    }
}

fn dgram(id: u16, seq: u16, total: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [id, seq, total, 0] {
        v.extend(x.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

#[test]
fn udp_steady_state_allocates_nothing() {
    let mut e = Engine::new(EngineConfig::default(), Targets::default());
    let mut u = Udp {
        ts: 1_700_000_000_000_000_000,
    };
    let mut value = b"VALUE big 0 3000\r\n".to_vec();
    value.extend(std::iter::repeat_n(b'v', 3000));
    value.extend_from_slice(b"\r\n");
    let parts: Vec<&[u8]> = value.chunks(1392).collect();
    assert_eq!(parts.len(), 3);
    // A reply of five messages: empty, small, big (3 datagrams), END.
    let get = dgram(1, 0, 1, b"get miss small big\r\n");
    let reply: Vec<Vec<u8>> = vec![
        dgram(1, 0, 0, b""),
        dgram(1, 0, 1, b"VALUE small 0 2\r\nhi\r\n"),
        dgram(1, 0, 3, parts[0]),
        dgram(1, 1, 3, parts[1]),
        dgram(1, 2, 3, parts[2]),
        dgram(1, 0, 1, b"END\r\n"),
    ];
    let single = dgram(2, 0, 1, b"get k\r\n");
    let single_reply = dgram(2, 0, 1, b"VALUE k 0 1\r\nx\r\nEND\r\n");
    let mut records = 0u64;
    let mut hits = 0u64;
    let mut sink = |r: &Record<'_>| {
        records += 1;
        hits += (r.result == memtap::protocol::Outcome::Hit) as u64;
    };
    let mut round = |e: &mut Engine, sink: &mut dyn memtap::session::RecordSink| {
        // In order.
        e.packet(&u.pkt(true, &get), sink);
        for d in &reply {
            e.packet(&u.pkt(false, d), sink);
        }
        // The big message permuted (waits, copied, in the exchange).
        e.packet(&u.pkt(true, &get), sink);
        for i in [0, 1, 4, 2, 3, 5] {
            e.packet(&u.pkt(false, &reply[i]), sink);
        }
        // The answer captured before its request (held, then replayed).
        e.packet(&u.pkt(false, &single_reply), sink);
        e.packet(&u.pkt(true, &single), sink);
    };
    for _ in 0..200 {
        round(&mut e, &mut sink);
    }
    let before = allocs();
    for _ in 0..2000 {
        round(&mut e, &mut sink);
    }
    let n = allocs() - before;
    // The last gets' END is still kept back (mirror order): end the input.
    e.finish(&mut sink);
    let c = e.counters();
    // 7 records a round (3 + 3 + 1), 5 of them hits — so the test cannot
    // pass by doing nothing.
    assert_eq!(records, 2200 * 7);
    assert_eq!(hits, 2200 * 5);
    assert_eq!(c.udp_held_responses, 2200);
    assert_eq!(c.udp_orphan_responses + c.udp_timeouts + c.lost_requests, 0);
    assert_eq!(n, 0, "allocations in 2000 steady-state UDP rounds");
}
