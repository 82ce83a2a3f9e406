//! The per-packet path allocates nothing in steady state: once a
//! connection is established and its buffers are warm, requests and
//! responses (text, meta, binary; whole or split across segments) go
//! through decode-free engine input, reassembly, parsing, pairing and a
//! record sink without a single heap allocation.

use memtap::decode::targets::Targets;
use memtap::decode::{Packet, TcpInfo, Transport};
use memtap::session::{Engine, EngineConfig, Record, RecordSink};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

struct Counting;

thread_local! {
    // Per thread: tests run in parallel and must not see each other's.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn allocs() -> u64 {
    ALLOCS.with(|a| a.get())
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
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

struct Conn {
    client: IpAddr,
    server: IpAddr,
    cport: u16,
    seq_c: u32,
    seq_s: u32,
    ts: u64,
}

impl Conn {
    fn pkt<'a>(&mut self, to_server: bool, payload: &'a [u8], syn: bool) -> Packet<'a> {
        self.ts += 10_000;
        let (src, dst, sport, dport, seq, ack) = if to_server {
            (
                self.client,
                self.server,
                self.cport,
                11211,
                self.seq_c,
                self.seq_s,
            )
        } else {
            (
                self.server,
                self.client,
                11211,
                self.cport,
                self.seq_s,
                self.seq_c,
            )
        };
        let adv = payload.len() as u32 + syn as u32;
        if to_server {
            self.seq_c = self.seq_c.wrapping_add(adv);
        } else {
            self.seq_s = self.seq_s.wrapping_add(adv);
        }
        Packet {
            ts: self.ts,
            frame_no: 0,
            src,
            dst,
            sport,
            dport,
            transport: Transport::Tcp,
            tcp: TcpInfo {
                seq,
                ack,
                syn,
                fin: false,
                rst: false,
                ack_flag: !(syn && to_server),
            },
            payload,
            truncated: false,
            wire_payload_len: payload.len(),
        }
    }
}

fn exchange(e: &mut Engine, c: &mut Conn, req: &[u8], resp: &[u8], sink: &mut dyn RecordSink) {
    // Requests whole; responses split in two segments (a message spanning
    // segments is carried — into a buffer that is warm by now).
    let p = c.pkt(true, req, false);
    e.packet(&p, sink);
    let (a, b) = resp.split_at(resp.len() / 2);
    let p = c.pkt(false, a, false);
    e.packet(&p, sink);
    let p = c.pkt(false, b, false);
    e.packet(&p, sink);
}

#[test]
fn steady_state_allocates_nothing() {
    let mut e = Engine::new(EngineConfig::default(), Targets::default());
    let mut c = Conn {
        client: "10.0.0.1".parse().unwrap(),
        server: "10.0.0.2".parse().unwrap(),
        cport: 40000,
        seq_c: 1000,
        seq_s: 5000,
        ts: 1_700_000_000_000_000_000,
    };
    let mut records = 0u64;
    let mut hits = 0u64;
    let mut sink = |r: &Record<'_>| {
        records += 1;
        if r.result == memtap::protocol::Outcome::Hit {
            hits += 1;
        }
    };
    let syn = c.pkt(true, b"", true);
    e.packet(&syn, &mut sink);
    let synack = c.pkt(false, b"", true);
    e.packet(&synack, &mut sink);
    let bin_get = {
        let mut v = vec![0x80, 0x0c, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 7];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(b"bin");
        v
    };
    let bin_resp = {
        let mut v = vec![0x81, 0x0c, 0, 3, 4, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 7];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(b"bin");
        v.extend_from_slice(b"value");
        v
    };
    let round = |e: &mut Engine, c: &mut Conn, sink: &mut dyn RecordSink| {
        exchange(
            e,
            c,
            b"get a b c\r\n",
            b"VALUE a 0 5\r\nhello\r\nVALUE c 0 3\r\nabc\r\nEND\r\n",
            sink,
        );
        exchange(e, c, b"set k 0 0 5\r\nworld\r\n", b"STORED\r\n", sink);
        exchange(
            e,
            c,
            b"mg a v k q\r\nmg zz v k q\r\nmn\r\n",
            b"VA 5 ka\r\nhello\r\nMN\r\n",
            sink,
        );
        exchange(e, c, &bin_get, &bin_resp, sink);
    };
    for _ in 0..200 {
        round(&mut e, &mut c, &mut sink);
    }
    let before = allocs();
    for _ in 0..2000 {
        round(&mut e, &mut c, &mut sink);
    }
    let allocs = allocs() - before;
    // 8 records a round (3 get keys, set, 2 mg, mn, getk), 4 of them hits
    // (a, c, mg a, getk) — checked so the
    // test cannot pass by doing nothing.
    assert_eq!(records, 2200 * 8);
    assert_eq!(hits, 2200 * 4);
    assert_eq!(allocs, 0, "allocations in 2000 steady-state rounds");
}

#[test]
fn collector_tables_allocate_nothing_for_known_keys() {
    use memtap::collect::batch::RecordBatch;
    use memtap::collect::families::{FamilyConfig, FamilyRules};
    use memtap::collect::tables::{ClientGranularity, TableLimits, Tables};
    use memtap::protocol::{Outcome, Proto};
    let limits = TableLimits {
        max_keys: 1000,
        max_clients: 100,
        max_families: 100,
        client_granularity: ClientGranularity::Ip,
        key_clients: 32,
        insight_examples: 16,
    };
    let mut t = Tables::new(&limits);
    let rules = FamilyRules::new(&FamilyConfig::default()).unwrap();
    let mut fam = Vec::with_capacity(256);
    let mut b = RecordBatch::default();
    let keys: Vec<String> = (0..500).map(|i| format!("user:{i}:profile")).collect();
    for (i, k) in keys.iter().enumerate() {
        b.push(
            &Record {
                ts: 1,
                client: format!("10.0.{}.1:4000", i % 50).parse().unwrap(),
                server: "10.1.0.1:11211".parse().unwrap(),
                transport: Transport::Tcp,
                proto: Proto::Text,
                command: "get",
                first: true,
                key: Some(k.as_bytes()),
                result: if i % 3 == 0 {
                    Outcome::Miss
                } else {
                    Outcome::Hit
                },
                req_bytes: 0,
                exptime: None,
                resp_bytes: 100,
                latency_ns: Some(20_000),
            },
            1,
        );
    }
    let pass = |t: &mut Tables, fam: &mut Vec<u8>| {
        for r in &b.recs {
            t.add(&b, r, Some(&rules), fam);
        }
    };
    pass(&mut t, &mut fam);
    let before = allocs();
    for _ in 0..20 {
        pass(&mut t, &mut fam);
    }
    assert_eq!(allocs() - before, 0);
    assert_eq!(t.totals.requests, 21 * 500);
    assert_eq!(t.keys.len(), 500);
    assert_eq!(t.families.len(), 1);
}

/// A key's client table grows once, up to `--key-clients` rows, and then
/// never allocates: neither while it holds exact counts nor when, past its
/// size, it replaces rows (Space-Saving). Keys churning through a full key
/// table with one or two clients keep them inside their entry.
#[test]
fn key_client_tables_allocate_nothing_once_grown() {
    use memtap::collect::batch::RecordBatch;
    use memtap::collect::tables::{ClientGranularity, TableLimits, Tables};
    use memtap::protocol::{Outcome, Proto};
    let limits = TableLimits {
        max_keys: 100,
        max_clients: 1000,
        max_families: 100,
        client_granularity: ClientGranularity::Ip,
        key_clients: 32,
        insight_examples: 16,
    };
    let mut t = Tables::new(&limits);
    let mut fam = Vec::with_capacity(256);
    let mut b = RecordBatch::default();
    let mut push = |key: String, client: usize, server: usize| {
        b.push(
            &Record {
                ts: 1,
                client: format!("10.0.{}.{}:4000", client / 200, client % 200 + 1)
                    .parse()
                    .unwrap(),
                server: format!("10.1.0.{}:11211", server + 1).parse().unwrap(),
                transport: Transport::Tcp,
                proto: Proto::Text,
                command: ["get", "set", "delete"][client % 3],
                first: true,
                key: Some(key.as_bytes()),
                result: Outcome::Hit,
                req_bytes: 0,
                exptime: None,
                resp_bytes: 100,
                latency_ns: Some(20_000),
            },
            1,
        );
    };
    // Hot keys: 10 with 20 clients (exact), 10 with 80 (past the size),
    // on up to 12 servers (past the server table's 8).
    for round in 0..80 {
        for k in 0..20 {
            let clients = if k < 10 { 20 } else { 80 };
            push(format!("hot:{k}"), (round * 7 + k) % clients, round % 12);
        }
    }
    // Churn: 400 one-client keys through the 100-key table.
    for k in 0..400 {
        push(format!("cold:{k}"), k, 0);
    }
    let pass = |t: &mut Tables, fam: &mut Vec<u8>| {
        for r in &b.recs {
            t.add(&b, r, None, fam);
        }
    };
    pass(&mut t, &mut fam);
    pass(&mut t, &mut fam);
    let before = allocs();
    for _ in 0..20 {
        pass(&mut t, &mut fam);
    }
    assert_eq!(allocs() - before, 0, "allocations in 20 steady passes");
    assert!(t.keys.evictions() > 0, "the key table churned");
    // Every hot key is still there, its client table full or exact.
    for k in 0..20 {
        let e = t.keys.get(format!("hot:{k}").as_bytes());
        let Some(e) = e else { continue };
        let c = &e.stats.clients;
        if k < 10 && e.error_bound() == 0 {
            assert!(c.is_exact() && c.len() == 20, "hot:{k}");
        }
        assert!(c.len() <= 32);
    }
}

/// The flight recorder (triggers) keeps every watched frame: its ring is
/// allocated once, and keeping frames, large or small, wrapping and
/// evicting, allocates nothing. The per-second figures a collector keeps
/// for the triggers reuse their tables too.
#[test]
fn flight_recorder_and_trigger_seconds_allocate_nothing() {
    use memtap::capture::recorder::Ring;
    let mut ring = Ring::new(1 << 20, 5_000_000_000);
    let frames: Vec<Vec<u8>> = [60usize, 1514, 9000, 64_000, 200]
        .iter()
        .map(|&n| vec![0xab; n])
        .collect();
    let mut ts = 1_700_000_000_000_000_000u64;
    let push = |ring: &mut Ring, ts: &mut u64, rounds: usize| {
        for _ in 0..rounds {
            for f in &frames {
                *ts += 10_000;
                ring.push(*ts, 1, f.len() as u32, f);
            }
        }
    };
    push(&mut ring, &mut ts, 100);
    let before = allocs();
    push(&mut ring, &mut ts, 10_000);
    assert_eq!(allocs() - before, 0, "allocations keeping 50,000 frames");
    assert_eq!(ring.kept, 50_500);
    assert!(ring.bytes() <= ring.capacity());
    assert!(ring.evicted_for_room > 0);

    use memtap::collect::batch::RecordBatch;
    use memtap::collect::seconds::Seconds;
    use memtap::protocol::{Outcome, Proto};
    let mut b = RecordBatch::default();
    for i in 0..300u64 {
        b.push(
            &Record {
                ts: 1,
                client: format!("10.0.{}.1:4000", i % 20).parse().unwrap(),
                server: "10.1.0.1:11211".parse().unwrap(),
                transport: Transport::Tcp,
                proto: Proto::Text,
                command: "get",
                first: true,
                key: Some(format!("k{}", i % 100).as_bytes()),
                result: Outcome::Hit,
                req_bytes: 10,
                exptime: None,
                resp_bytes: 100,
                latency_ns: Some(20_000),
            },
            0,
        );
    }
    let mut secs = Seconds::default();
    let second = |secs: &mut Seconds, b: &mut RecordBatch, s: u64| {
        for r in b.recs.iter_mut() {
            r.seen = s * 1_000_000_000;
        }
        for r in &b.recs {
            secs.add(b, r);
        }
    };
    for s in 0..5 {
        second(&mut secs, &mut b, s);
        secs.close(Some(s * 1_000_000_000), |_| {});
    }
    // Counting records allocates nothing (a closed second's tables are
    // reused); closing hands a summary on, once a second.
    let mut counted = 0;
    for s in 5..50 {
        let before = allocs();
        second(&mut secs, &mut b, s);
        counted += allocs() - before;
        secs.close(Some(s * 1_000_000_000), |_| {});
    }
    assert_eq!(counted, 0, "allocations counting 45 seconds of records");
}

/// Sends `n` datagrams to 127.0.0.1:port, then polls `poll` (from this
/// thread, so the per-thread count sees only it) until they have come;
/// returns the allocations made by the polls after the first delivery.
fn live_poll_allocs(port: u16, n: usize, poll: &mut dyn FnMut(&mut u64) -> usize) -> (u64, u64) {
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = [b'x'; 300];
    let mut seen = 0u64;
    // Warm up: one packet through the path first.
    tx.send_to(&payload, ("127.0.0.1", port)).unwrap();
    let start = std::time::Instant::now();
    while seen == 0 && start.elapsed() < std::time::Duration::from_secs(3) {
        poll(&mut seen);
    }
    for _ in 1..n {
        tx.send_to(&payload, ("127.0.0.1", port)).unwrap();
    }
    let before = allocs();
    let start = std::time::Instant::now();
    while seen < n as u64 && start.elapsed() < std::time::Duration::from_secs(3) {
        poll(&mut seen);
    }
    (allocs() - before, seen)
}

#[test]
fn live_sources_poll_without_allocating() {
    use memtap::capture::afpacket::{AfPacketSource, RingConfig};
    use memtap::capture::bpf::compile_filter;
    use memtap::capture::live_pcap::{PcapConfig, PcapSource};
    use memtap::stats::Counters;
    use std::time::Duration;

    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let expr = format!("udp dst port {port}");
    let mut cfg = RingConfig::new("lo");
    cfg.block_size = 256 << 10;
    cfg.block_count = 8;
    cfg.filter = Some(compile_filter(&expr, 1, cfg.snaplen).unwrap());
    let mut src = match AfPacketSource::open(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let mut c = Counters::default();
    let (n, seen) = live_poll_allocs(port, 200, &mut |seen| {
        src.poll(Duration::from_millis(20), &mut c, &mut |_| *seen += 1)
            .unwrap()
    });
    assert_eq!(seen, 200);
    assert_eq!(n, 0, "af-packet poll allocated");

    let mut pcfg = PcapConfig::new("lo");
    pcfg.buffer_size = 2 << 20;
    pcfg.filter = Some(expr);
    let mut psrc = PcapSource::open(&pcfg).unwrap();
    let (n, seen) = live_poll_allocs(port, 200, &mut |seen| {
        psrc.poll(Duration::from_millis(20), &mut c, &mut |_| *seen += 1)
            .unwrap()
    });
    assert_eq!(seen, 200);
    assert_eq!(n, 0, "libpcap poll allocated");
}

/// Live discovery's finder (`protocol::sniff`, fed every packet while no
/// target is named): once sized, flows coming and going, sweeps, a table
/// found full, and the packets of servers already found allocate nothing.
#[test]
fn the_live_finder_allocates_nothing_once_sized() {
    use memtap::protocol::sniff::Finder;
    const FLOWS: usize = 512;
    let pkt =
        |src: IpAddr, sport: u16, dst: IpAddr, dport: u16, ts: u64, payload: &'static [u8]| {
            Packet {
                ts,
                frame_no: 0,
                src,
                dst,
                sport,
                dport,
                transport: Transport::Tcp,
                tcp: TcpInfo::default(),
                payload,
                truncated: false,
                wire_payload_len: payload.len(),
            }
        };
    let client: IpAddr = "10.0.0.9".parse().unwrap();
    let server: IpAddr = "10.0.0.1".parse().unwrap();
    let web: IpAddr = "10.0.0.2".parse().unwrap();
    let mut f = Finder::with_max_flows(FLOWS);
    // Found before counting: the known set grows once per server.
    f.packet(&pkt(client, 40000, server, 22122, 1, b"get k\r\n"));
    assert!(f
        .packet(&pkt(server, 22122, client, 40000, 1, b"END\r\n"))
        .is_some());
    f.packet(&pkt(client, 40000, server, 11211, 1, b""));
    let before = allocs();
    let mut ts = 1_000;
    // Rounds of flows that are not memcached, each round more than the
    // table holds, swept between rounds: slots of removed flows are
    // reused again and again.
    for round in 0..20u16 {
        for i in 0..(FLOWS as u16 + 50) {
            ts += 1;
            // Clear of 11211 (a port that finds a server by itself).
            let port = 20_000 + round * 600 + i;
            for _ in 0..5 {
                f.packet(&pkt(client, port, web, 443, ts, b"\x16\x03\x01tls"));
                f.packet(&pkt(web, 443, client, port, ts, b"\x16\x03\x03tls"));
            }
            // The found servers' packets, between them.
            f.packet(&pkt(client, 40000, server, 22122, ts, b"get k\r\n"));
            f.packet(&pkt(server, 11211, client, 40001, ts, b"END\r\n"));
        }
        f.sweep(ts, 1_000_000);
    }
    let n = allocs() - before;
    assert_eq!(n, 0, "allocations in the finder's steady state");
    assert_eq!(f.untracked_flows, 20 * 50 * 10);
    assert_eq!(f.found().len(), 2);
}
