//! Floods through the real binary: `memtap replay --memory 64MiB` at 1, 2
//! and 8 workers on captures generated here (SYN flood, one-packet flows,
//! unanswered UDP requests, TCP flows and UDP replies each holding a 60 KB
//! partial line, unanswered gets on one connection and on many). Each
//! run's counters are checked exactly where the budget's split decides
//! them, and its peak RSS above an idle run's at the same worker count
//! must stay within the budget (`cargo test --release --test floods --
//! --nocapture` prints each run's figures; peak RSS and time from
//! `/usr/bin/time`). `MEMTAP_FLOOD_FULL=1` makes the SYN flood a million
//! packets.

mod common;
use common::{PcapOut, Seg};
use memtap::session::budget::Split;
use memtap::session::EngineConfig;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The memory budget every flood replays under. `MEMTAP_FLOOD_MEMORY`
/// replays under another (`off` for none, to measure what the floods take
/// unbounded; the memory and budget-dependent checks are skipped then).
const BUDGET: &str = "64MiB";
const BUDGET_MIB: f64 = 64.0;

fn budget() -> Option<String> {
    std::env::var("MEMTAP_FLOOD_MEMORY").ok()
}

/// The bounds one worker gets from the budget at `workers` workers, as
/// memtap computes them.
fn bounds(workers: usize) -> EngineConfig {
    let cfg = memtap::config::Config::default();
    EngineConfig::from_config_split(&cfg, &Split::of((64u64 << 20) / workers as u64))
}

const SERVER: [u8; 4] = [10, 0, 0, 1];
const PORT: u16 = 11211;
const WORKERS: [usize; 3] = [1, 2, 8];
/// Default `protocol.max_pending_per_conn`.
const MAX_PENDING_PER_CONN: u64 = 1 << 20;

/// One replay at a time, so that times and RSS are not skewed by a
/// neighbour.
static SERIAL: Mutex<()> = Mutex::new(());

fn client(i: u64) -> (IpAddr, u16) {
    // 60,000 ports per address, addresses 10.1.x.y.
    let host = i / 60_000;
    let ip = Ipv4Addr::new(10, 1, (host >> 8) as u8, host as u8);
    (IpAddr::V4(ip), 1024 + (i % 60_000) as u16)
}

fn seg(ts: u64, from: (IpAddr, u16), payload: Vec<u8>) -> Seg {
    Seg {
        ts,
        src: from.0,
        dst: IpAddr::V4(SERVER.into()),
        sport: from.1,
        dport: PORT,
        udp: false,
        seq: 1000,
        ack: 1,
        syn: false,
        fin: false,
        rst: false,
        ack_flag: true,
        payload,
    }
}

const T0: u64 = 1_700_000_000_000_000_000;

struct Outcome {
    counters: Value,
    rss_mib: f64,
    secs: f64,
}

/// Runs `memtap replay` on `file` under `/usr/bin/time` (peak RSS of
/// memtap alone: measured in the test process, a forked child would
/// inherit this process's RSS as its high-water mark), killing both after
/// `limit`.
fn replay(file: &Path, workers: usize, limit: Duration) -> Outcome {
    use std::os::unix::process::CommandExt;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%M %e", env!("CARGO_BIN_EXE_memtap")])
        .args([
            "replay",
            "-q",
            "-f",
            "json",
            "--collectors",
            "1",
            "--memory",
            &budget().unwrap_or_else(|| BUDGET.into()),
            "--workers",
        ])
        .arg(workers.to_string())
        .args(["-t", "10.0.0.1:11211"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("/usr/bin/time (apt-get install time)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut v);
        v
    });
    let mut killed = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if !killed && start.elapsed() > limit {
            // The group of our own child (not reaped yet): time and memtap.
            // SAFETY: kill(2) with a negative pid signals that group only.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(
        !killed,
        "replay of {} at {workers} workers still running after {limit:?}: killed",
        file.display()
    );
    assert!(status.success(), "replay failed: {err}");
    let last = err.lines().last().unwrap_or_default();
    let mut f = last.split(' ').map(|x| x.parse::<f64>().unwrap());
    let (kib, secs) = (f.next().unwrap(), f.next().unwrap());
    let report: Value = serde_json::from_slice(&stdout).expect("JSON report");
    Outcome {
        counters: report["health"].clone(),
        rss_mib: kib / 1024.0,
        secs,
    }
}

fn write(segs: impl Iterator<Item = Seg>, path: &Path) {
    let mut w = PcapOut::new();
    for s in segs {
        w.frame(s.ts, &s.to_frame());
    }
    w.write(path);
}

/// Peak RSS (MiB) of a replay with no traffic state at `workers` workers:
/// the binary, its threads, channels and collector tables. What a flood
/// adds above it is what the budget bounds.
fn idle_rss(workers: usize) -> f64 {
    static SEEN: Mutex<Option<HashMap<usize, f64>>> = Mutex::new(None);
    if let Some(v) = SEEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&workers)
    {
        return *v;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.pcap");
    write(
        std::iter::once(seg(T0, client(0), b"get idle\r\n".to_vec())),
        &file,
    );
    let o = replay(&file, workers, Duration::from_secs(30));
    SEEN.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(workers, o.rss_mib);
    o.rss_mib
}

/// Replays `file` at each worker count, prints a row per run, hands each
/// run's counters to `check`, and checks its memory against the budget.
fn each_workers(case: &str, file: &Path, check: impl Fn(usize, &dyn Fn(&str) -> u64)) {
    if let Some(d) = std::env::var_os("MEMTAP_FLOOD_KEEP") {
        // Keep the capture for a closer look.
        std::fs::copy(file, Path::new(&d).join(format!("{case}.pcap"))).unwrap();
    }
    for w in WORKERS {
        let idle = idle_rss(w);
        // Every case replays in a few seconds on a 2-core machine; far
        // longer is a quadratic path, not a slow machine.
        let o = replay(file, w, Duration::from_secs(60));
        let c = |k: &str| {
            o.counters[k]
                .as_u64()
                .unwrap_or_else(|| panic!("no counter {k}"))
        };
        eprintln!(
            "flood | {case:<18} | workers {w} | RSS {:>6.1} MiB (idle {:>5.1}) | {:>5.2} s | flows {} table_full {} records {} lost {} pending_overflow {} shed_requests {} shed_carry {} udp_pending_overflow {} udp_timeouts {}",
            o.rss_mib,
            idle,
            o.secs,
            c("tcp_flows"),
            c("tcp_flow_table_full"),
            c("records"),
            c("lost_requests"),
            c("pending_overflow"),
            c("budget_shed_requests"),
            c("budget_shed_carry_bytes"),
            c("udp_pending_overflow"),
            c("udp_timeouts"),
        );
        if budget().is_some() {
            continue;
        }
        check(w, &c);
        // The whole process, binary, threads and collector tables
        // included, stays within the budget.
        assert!(
            o.rss_mib <= BUDGET_MIB,
            "{case} at {w} workers: peak RSS {:.1} MiB (idle {idle:.1} MiB), over the {BUDGET} budget",
            o.rss_mib
        );
    }
}

#[test]
fn syn_flood() {
    let n: u64 = if std::env::var_os("MEMTAP_FLOOD_FULL").is_some() {
        1_000_000
    } else {
        300_000
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("syn.pcap");
    write(
        (0..n).map(|i| Seg {
            syn: true,
            ack_flag: false,
            ack: 0,
            ..seg(T0 + i * 1000, client(i), Vec::new())
        }),
        &file,
    );
    each_workers("syn_flood", &file, |w, c| {
        assert_eq!(c("packets"), n);
        assert_eq!(c("tcp_segments"), n);
        // Each worker's table holds its share of flows; the rest are
        // refused and counted, never evicted (the flood lasts less than
        // the idle timeout).
        let max = bounds(w).max_flows as u64;
        assert_eq!(c("tcp_flows") + c("tcp_flow_table_full"), n);
        assert!(c("tcp_flows") <= max * w as u64);
        if w == 1 {
            assert_eq!(c("tcp_flows"), n.min(max));
        }
        assert_eq!(c("records"), 0);
        assert_eq!(c("tcp_evicted_idle"), 0);
    });
}

#[test]
fn one_packet_flows() {
    let n: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.pcap");
    write(
        (0..n).map(|i| {
            seg(
                T0 + i * 1000,
                client(i),
                format!("get k{i}\r\n").into_bytes(),
            )
        }),
        &file,
    );
    each_workers("one_packet_flows", &file, |w, c| {
        // Each is a connection seen mid-stream whose one get is never
        // answered: one lost record each, for those the flow share holds.
        let max = bounds(w).max_flows as u64;
        assert_eq!(c("tcp_flows") + c("tcp_flow_table_full"), n);
        assert_eq!(c("tcp_midstream"), c("tcp_flows"));
        assert_eq!(c("records"), c("tcp_flows"));
        assert_eq!(c("lost_requests"), c("tcp_flows"));
        if w == 1 {
            assert_eq!(c("tcp_flows"), n.min(max));
        }
    });
}

#[test]
fn unanswered_udp_requests() {
    let n: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("udp.pcap");
    write(
        (0..n).map(|i| {
            let mut p = Vec::new();
            p.extend_from_slice(&(i as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
            p.extend_from_slice(format!("get k{i}\r\n").as_bytes());
            Seg {
                udp: true,
                ..seg(T0 + i * 10_000, client(i), p)
            }
        }),
        &file,
    );
    each_workers("udp_unanswered", &file, |w, c| {
        // 2 s of requests, under the 5 s timeout: each worker keeps its
        // share of exchanges; the rest overflow. Those kept time out at
        // the end, each a lost record.
        assert_eq!(c("udp_datagrams"), n);
        assert_eq!(c("udp_pending_overflow") + c("udp_timeouts"), n);
        assert_eq!(c("records"), c("udp_timeouts"));
        assert!(c("udp_timeouts") <= bounds(w).udp_max_pending as u64 * w as u64);
        if w == 1 {
            assert_eq!(c("udp_timeouts"), bounds(1).udp_max_pending as u64);
        }
    });
}

#[test]
fn partial_lines() {
    let flows: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partial.pcap");
    // Not a get: memcached (and memtap) read a get line key by key, so
    // only a key is ever carried; any other line is held whole.
    let mut line = b"gat 0 ".to_vec();
    line.resize(60 << 10, b'a');
    let segs = (0..flows).flat_map(|f| {
        let cl = client(f);
        let syn = Seg {
            syn: true,
            ack_flag: false,
            ack: 0,
            seq: 999,
            ..seg(T0 + f * 100_000, cl, Vec::new())
        };
        let data = line.chunks(1448).enumerate().map(move |(i, ch)| Seg {
            seq: 1000 + (i * 1448) as u32,
            ..seg(T0 + f * 100_000 + 1 + i as u64, cl, ch.to_vec())
        });
        std::iter::once(syn).chain(data.collect::<Vec<_>>())
    });
    write(segs, &file);
    each_workers("partial_lines_60k", &file, |w, c| {
        // Under the 64 KiB line limit, so each is carried whole until the
        // end, then given up; no record, nothing cut by the line limit.
        // All of them (60 MB) do not fit the carry share: past it, lines
        // are shed and counted.
        assert_eq!(c("tcp_flows"), flows);
        assert_eq!(c("tcp_midstream"), 0);
        assert_eq!(c("records"), 0);
        assert_eq!(c("line_too_long"), 0);
        assert_eq!(c("tcp_gaps"), 0);
        let fit = bounds(w).max_carry_total * w as u64 / (60 << 10);
        assert!(fit < flows, "{fit}");
        assert!(c("budget_shed_carry_bytes") >= (flows - fit) * 1448);
        assert!(c("budget_shed_carry_bytes") <= flows * (60 << 10));
    });
}

#[test]
fn one_connection_200k_unanswered_gets() {
    let n: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gets.pcap");
    let cl = client(7);
    let mut stream = Vec::new();
    for i in 0..n {
        // A thousand keys: the collector's key table (bounded by
        // max_keys, outside the budget) stays small.
        stream.extend_from_slice(format!("get k{}\r\n", i % 1000).as_bytes());
    }
    let syn = Seg {
        syn: true,
        ack_flag: false,
        ack: 0,
        seq: 999,
        ..seg(T0, cl, Vec::new())
    };
    let data = stream.chunks(1448).enumerate().map(|(i, ch)| Seg {
        seq: 1000u32.wrapping_add((i * 1448) as u32),
        ..seg(T0 + 1000 + i as u64 * 1000, cl, ch.to_vec())
    });
    write(std::iter::once(syn).chain(data), &file);
    each_workers("one_conn_200k_gets", &file, |w, c| {
        // No answer ever comes: every get is a lost record, and the queue
        // was given up (at least once per max_pending_per_conn gets) when
        // full or when the budget could not grow it.
        assert_eq!(c("tcp_flows"), 1);
        assert_eq!(c("records"), n);
        assert_eq!(c("lost_requests"), n);
        // Under the connection's cap (MAX_PENDING_PER_CONN) the budget's
        // pending share is what runs out: the open gets are given up, their
        // shapes kept (so that late answers are still told apart) until
        // even those do not fit; then the connection is given up for good
        // and every later get recorded lost at once. Only the gets still
        // queued at the end are not counted as given up.
        assert!(n < MAX_PENDING_PER_CONN);
        assert_eq!(c("conns_given_up"), 1);
        assert_eq!(c("pending_overflow"), 0);
        let held = bounds(w).max_requests as u64;
        let shed = c("budget_shed_requests");
        assert!(shed >= n - held && shed <= n, "{shed}");
    });
}

/// Many connections, each with thousands of gets never answered: the
/// queues together would hold 2 million entries (about 800 MB); the
/// pending-request share holds what it can and the rest are given up.
#[test]
fn many_connections_unanswered_gets() {
    let conns: u64 = 500;
    let per: u64 = 4000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.pcap");
    let mut stream = Vec::new();
    for i in 0..per {
        stream.extend_from_slice(format!("get k{i}\r\n").as_bytes());
    }
    let chunks: Vec<&[u8]> = stream.chunks(1448).collect();
    let mut segs = Vec::new();
    for f in 0..conns {
        segs.push(Seg {
            syn: true,
            ack_flag: false,
            ack: 0,
            seq: 999,
            ..seg(T0 + f * 10, client(f), Vec::new())
        });
    }
    // Round robin: every connection's queue grows at once.
    for (i, ch) in chunks.iter().enumerate() {
        for f in 0..conns {
            segs.push(Seg {
                seq: 1000 + (i * 1448) as u32,
                ..seg(
                    T0 + 10_000 + (i as u64 * conns + f) * 10,
                    client(f),
                    ch.to_vec(),
                )
            });
        }
    }
    write(segs.into_iter(), &file);
    each_workers("many_conns_gets", &file, |w, c| {
        // Every get ends as a lost record; those the budget could not
        // keep queued were given up early and counted.
        let n = conns * per;
        assert_eq!(c("tcp_flows"), conns);
        assert_eq!(c("records"), n);
        assert_eq!(c("lost_requests"), n);
        assert_eq!(c("pending_overflow"), 0);
        let held = bounds(w).max_requests as u64 * w as u64;
        assert!(held < n);
        assert!(
            c("budget_shed_requests") >= n - held - conns * 4,
            "{}",
            c("budget_shed_requests")
        );
    });
}

/// UDP replies each holding a 60 KB partial line across 44 datagrams,
/// 400 at once (over 24 MB carried without a bound): the UDP carry share
/// holds what it can, the rest is shed and counted.
#[test]
fn udp_partial_replies() {
    let n: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("udp-partial.pcap");
    let mut line = b"VALUE ".to_vec();
    line.resize(60 << 10, b'a');
    let pieces: Vec<&[u8]> = line.chunks(1400).collect();
    let total = pieces.len() as u16;
    let udp = |ts: u64, from: (IpAddr, u16), to_server: bool, payload: Vec<u8>| {
        let mut s = Seg {
            udp: true,
            ..seg(ts, from, payload)
        };
        if !to_server {
            std::mem::swap(&mut s.src, &mut s.dst);
            std::mem::swap(&mut s.sport, &mut s.dport);
        }
        s
    };
    let frame = |id: u16, seq: u16, body: &[u8]| {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(body);
        p
    };
    let mut segs = Vec::new();
    for i in 0..n {
        let mut p = frame(i as u16, 0, format!("get k{i}\r\n").as_bytes());
        p[4..6].copy_from_slice(&1u16.to_be_bytes());
        segs.push(udp(T0 + i * 100, client(i), true, p));
    }
    // All replies in order, interleaved, well inside the 5 s timeout.
    let t1 = T0 + n * 100;
    for (k, piece) in pieces.iter().enumerate() {
        for i in 0..n {
            let ts = t1 + (k as u64 * n + i) * 100;
            segs.push(udp(ts, client(i), false, frame(i as u16, k as u16, piece)));
        }
    }
    write(segs.into_iter(), &file);
    each_workers("udp_partial_60k", &file, |w, c| {
        // No reply completes: every get tracked ends lost, by timeout or
        // when its partial line was shed; those the exchange share could
        // not take were refused and counted.
        assert_eq!(c("udp_datagrams"), n * (1 + u64::from(total)));
        assert_eq!(c("records") + c("udp_pending_overflow"), n);
        assert_eq!(c("lost_requests"), c("records"));
        if w == 1 {
            assert_eq!(c("records"), n);
        }
        let fit = bounds(w).udp_max_carry_total as u64 * w as u64 / (60 << 10);
        assert!(fit < n, "{fit}");
        assert!(
            c("budget_shed_carry_bytes") >= (n - fit) * 1400,
            "{}",
            c("budget_shed_carry_bytes")
        );
    });
}

/// Regression (found by the flood above): a connection whose requests are
/// never answered overflowed its pending queue on *every* request once
/// two overflows had happened inside one segment. `Session::overflow`
/// gives up the queue and pushes a marker and the new request; `emit`
/// stops at an open marker followed by another marker, so the lost
/// records stayed queued behind a run of markers until the end: the
/// queue grew past `max_pending_per_conn` without bound and each overflow
/// walked all of it (200k gets: 246 MiB and 484 s at one worker). The
/// queue must stay within a small multiple of its cap, its lost records
/// leaving as they are decided.
#[test]
fn unanswered_requests_leave_the_pending_queue() {
    use memtap::decode::{Packet, TcpInfo, Transport};
    use memtap::session::{Engine, EngineConfig, Record};
    let cap = 4usize;
    let mut cfg = memtap::config::Config::default();
    cfg.protocol.max_pending_per_conn = cap;
    let mut e = Engine::new(EngineConfig::from_config(&cfg), Default::default());
    let emitted = std::cell::Cell::new(0u64);
    let mut sink = |_: &Record<'_>| emitted.set(emitted.get() + 1);
    fn pkt(seq: u32, syn: bool, payload: &[u8]) -> Packet<'_> {
        Packet {
            ts: T0 + u64::from(seq),
            frame_no: 1,
            src: "10.1.0.7".parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            sport: 40000,
            dport: PORT,
            transport: Transport::Tcp,
            tcp: TcpInfo {
                seq,
                ack: 1,
                syn,
                fin: false,
                rst: false,
                ack_flag: !syn,
            },
            payload,
            truncated: false,
            wire_payload_len: payload.len(),
        }
    }
    e.packet(&pkt(999, true, b""), &mut sink);
    // 100 segments of 10 gets each: 1000 requests, no answer.
    let seg: Vec<u8> = (0..10)
        .flat_map(|i| format!("get k{i}\r\n").into_bytes())
        .collect();
    let mut seq = 1000u32;
    for _ in 0..100 {
        e.packet(&pkt(seq, false, &seg), &mut sink);
        seq += seg.len() as u32;
    }
    let sent = 1000u64;
    let held = sent - emitted.get();
    assert!(
        held <= 2 * cap as u64 + 10,
        "{held} of {sent} unanswered requests still queued (cap {cap}); counters {:?}",
        e.counters()
    );
    e.finish(&mut sink);
    assert_eq!(emitted.get(), sent);
}
