//! The live sources against the real kernel, on loopback.
//!
//! They need CAP_NET_RAW (CI runs them as root); without it, or without
//! AF_PACKET, each test prints why and passes without checking anything.
//! Every test uses its own random ports and fanout group, and a filter, so
//! other traffic on `lo` (parallel tests, other builds) cannot disturb it.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use memtap::capture::afpacket::{AfPacketSource, Fanout, RingConfig};
use memtap::capture::bpf::compile_filter;
use memtap::capture::live_pcap::{PcapConfig, PcapSource};
use memtap::capture::{CaptureError, Frame};
use memtap::decode::targets::{Target, Targets};
use memtap::stats::Counters;

fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A UDP socket on 127.0.0.1 at a random port in 23000..24000.
fn udp_socket() -> (UdpSocket, u16) {
    for _ in 0..200 {
        let port = 23000 + (random() % 1000) as u16;
        if let Ok(s) = UdpSocket::bind(("127.0.0.1", port)) {
            return (s, port);
        }
    }
    panic!("no free UDP port in 23000..24000");
}

fn tcp_listener() -> (TcpListener, u16) {
    for _ in 0..200 {
        let port = 23000 + (random() % 1000) as u16;
        if let Ok(s) = TcpListener::bind(("127.0.0.1", port)) {
            return (s, port);
        }
    }
    panic!("no free TCP port in 23000..24000");
}

/// A small ring, so parallel tests do not pin hundreds of MiB.
fn ring(filter: &str) -> RingConfig {
    let mut c = RingConfig::new("lo");
    c.block_size = 256 << 10;
    c.block_count = 8;
    c.filter = Some(compile_filter(filter, 1, c.snaplen).unwrap());
    c
}

/// Opens an AF_PACKET source, or says why the test cannot run.
fn open_ring(cfg: &RingConfig) -> Option<AfPacketSource> {
    match AfPacketSource::open(cfg) {
        Ok(s) => Some(s),
        Err(e @ CaptureError::PermissionDenied(_)) => {
            eprintln!("SKIPPED: live capture needs CAP_NET_RAW (run as root): {e}");
            None
        }
        Err(e) => {
            let m = e.to_string();
            if m.contains("Address family not supported") {
                eprintln!("SKIPPED: no AF_PACKET here: {m}");
                None
            } else {
                panic!("{m}");
            }
        }
    }
}

/// IPv4 in Ethernet: (proto, src, sport, dst, dport, payload).
struct Parsed<'a> {
    proto: u8,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &'a [u8],
}

fn parse(d: &[u8]) -> Option<Parsed<'_>> {
    if d.len() < 34 || d[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &d[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    let l4 = ip.get(ihl..total.min(ip.len()))?;
    let (sport, dport) = (
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    );
    let payload = match proto {
        17 => l4.get(8..)?,
        6 => l4.get(usize::from(l4[12] >> 4) * 4..)?,
        _ => return None,
    };
    Some(Parsed {
        proto,
        src: ip[12..16].try_into().ok()?,
        sport,
        dst: ip[16..20].try_into().ok()?,
        dport,
        payload,
    })
}

/// A source's `poll` with its timeout fixed.
type PollFn<'a> = dyn FnMut(&mut Counters, &mut dyn FnMut(&Frame<'_>)) -> usize + 'a;

/// Polls until `want` frames have come or `quiet` passes with nothing new
/// (at most 5 s), collecting (payload, wire_len, frame_no).
fn collect(
    poll: &mut PollFn<'_>,
    c: &mut Counters,
    want: usize,
    quiet: Duration,
) -> Vec<(Vec<u8>, u64)> {
    let mut got = Vec::new();
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let n = poll(c, &mut |f: &Frame<'_>| {
            let p = parse(f.data).expect("an IPv4 TCP/UDP frame");
            assert_eq!(f.linktype, 1);
            assert_eq!(f.wire_len as usize, f.data.len());
            assert!(
                f.ts.abs_diff(now_ns()) < 10_000_000_000,
                "timestamp {} is not now",
                f.ts
            );
            got.push((p.payload.to_vec(), f.frame_no));
        });
        if n > 0 {
            last = Instant::now();
        }
        // Past the count we still wait `quiet`: a duplicate would come late.
        if got.len() >= want && last.elapsed() >= quiet {
            break;
        }
        if got.len() < want && last.elapsed() >= Duration::from_secs(2) {
            break;
        }
    }
    got
}

fn send_udp(to: u16, n: usize, tag: &str) -> Vec<Vec<u8>> {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    (0..n)
        .map(|i| {
            let p = format!("{tag} datagram {i} {}", "x".repeat(i * 37)).into_bytes();
            tx.send_to(&p, ("127.0.0.1", to)).unwrap();
            p
        })
        .collect()
}

#[test]
fn afpacket_on_lo_delivers_each_filtered_datagram_once() {
    let (rx, port) = udp_socket();
    let (_other, other_port) = udp_socket();
    // The filter memtap builds from its targets: the kernel must take it.
    let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(mut src) = open_ring(&ring(&Targets::new(vec![target]).bpf_expr())) else {
        return;
    };
    assert_eq!(src.linktype(), 1);
    let mut c = Counters::default();
    // Nothing but our datagrams can pass the filter; make sure the ring is
    // empty before we start.
    let _ = src.poll(Duration::from_millis(30), &mut c, &mut |_| {});
    let c0 = c.clone();

    const N: usize = 40;
    let sent = send_udp(port, N, "hello");
    let _ = send_udp(other_port, 15, "ignored");
    let got = collect(
        &mut |c, f| src.poll(Duration::from_millis(20), c, f).unwrap(),
        &mut c,
        N,
        Duration::from_millis(200),
    );

    assert_eq!(
        got.len(),
        N,
        "exactly one copy of each datagram (not 2N), none to port {other_port}"
    );
    for (i, (payload, _)) in got.iter().enumerate() {
        assert_eq!(payload, &sent[i], "datagram {i} in order and intact");
    }
    let nos: Vec<u64> = got.iter().map(|g| g.1).collect();
    assert!(
        nos.windows(2).all(|w| w[1] == w[0] + 1),
        "frame numbers run on: {nos:?}"
    );
    assert_eq!(c.packets - c0.packets, N as u64);
    assert_eq!(c.loopback_duplicates - c0.loopback_duplicates, N as u64);
    let bytes: usize = sent.iter().map(|p| p.len() + 14 + 20 + 8).sum();
    assert_eq!(c.bytes - c0.bytes, bytes as u64);
    assert_eq!(c.snaplen_truncated, 0);
    // The datagrams really arrived (the capture is passive).
    let mut buf = [0u8; 2048];
    rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(rx.recv(&mut buf).unwrap(), sent[0].len());
}

#[test]
fn afpacket_snap_length_cuts_packets_and_counts_them() {
    let (_rx, port) = udp_socket();
    let mut cfg = ring(&format!("udp dst port {port}"));
    cfg.snaplen = 60;
    // Compiled for the full length: the source caps the filter's returns.
    assert_eq!(
        cfg.filter,
        Some(compile_filter(&format!("udp dst port {port}"), 1, 65535).unwrap())
    );
    let Some(mut src) = open_ring(&cfg) else {
        return;
    };
    let mut c = Counters::default();
    let sent = send_udp(port, 5, "snap");
    let mut lens = Vec::new();
    let start = Instant::now();
    while lens.len() < 5 && start.elapsed() < Duration::from_secs(3) {
        src.poll(Duration::from_millis(20), &mut c, &mut |f| {
            lens.push((f.data.len(), f.wire_len as usize))
        })
        .unwrap();
    }
    let want: Vec<(usize, usize)> = sent
        .iter()
        .map(|p| ((p.len() + 42).min(60), p.len() + 42))
        .collect();
    assert_eq!(lens, want);
    let cut = want.iter().filter(|w| w.0 < w.1).count() as u64;
    assert!(cut >= 4, "the longer datagrams are cut");
    assert_eq!(c.snaplen_truncated, cut);
    assert_eq!(c.bytes, want.iter().map(|w| w.0 as u64).sum::<u64>());
}

#[test]
fn afpacket_ring_stats_accumulate() {
    let (_rx, port) = udp_socket();
    let Some(mut src) = open_ring(&ring(&format!("udp dst port {port}"))) else {
        return;
    };
    let mut c = Counters::default();
    let mut delivered = 0;
    for round in 0..2 {
        let sent = send_udp(port, 100, &format!("burst{round}"));
        let got = collect(
            &mut |c, f| src.poll(Duration::from_millis(20), c, f).unwrap(),
            &mut c,
            sent.len(),
            Duration::from_millis(50),
        );
        delivered += got.len();
        src.update_stats(&mut c);
    }
    let k = src.kernel_stats();
    assert_eq!(delivered, 200);
    // The kernel counts both loopback copies; reading resets its numbers,
    // so a total at least 2x200 shows both reads were added up.
    assert!(k.packets >= 2 * delivered as u64, "{k:?}");
    assert_eq!(k.drops, 0);
    assert_eq!(c.kernel_drops, 0);
    assert_eq!(c.ring_freezes, 0);
}

#[test]
fn afpacket_full_ring_counts_drops_and_recovers() {
    let (_rx, port) = udp_socket();
    let mut cfg = ring(&format!("udp dst port {port}"));
    // Two 8 KiB blocks: a few dozen datagrams fill it.
    cfg.block_size = 8192;
    cfg.block_count = 2;
    cfg.snaplen = 1500;
    let Some(mut src) = open_ring(&cfg) else {
        return;
    };
    let mut c = Counters::default();
    // Nobody reads while 500 datagrams (1000 copies on lo) arrive.
    let _ = send_udp(port, 500, "flood");
    std::thread::sleep(Duration::from_millis(50));
    src.update_stats(&mut c);
    let k = src.kernel_stats();
    assert_eq!(
        k.packets, 1000,
        "every copy is counted, kept or dropped: {k:?}"
    );
    assert!(k.drops > 500, "{k:?}");
    assert!(k.freezes >= 1, "{k:?}");
    assert_eq!((c.kernel_drops, c.ring_freezes), (k.drops, k.freezes));
    let mut got = 0;
    while src
        .poll(Duration::from_millis(30), &mut c, &mut |_| got += 1)
        .unwrap()
        > 0
    {}
    // What was not dropped was delivered or skipped as a duplicate.
    assert_eq!(got as u64 + c.loopback_duplicates, k.packets - k.drops);

    // The ring thaws once read: the next datagrams all come through.
    let sent = send_udp(port, 10, "after");
    let got = collect(
        &mut |c, f| src.poll(Duration::from_millis(20), c, f).unwrap(),
        &mut c,
        10,
        Duration::from_millis(100),
    );
    assert_eq!(got.into_iter().map(|g| g.0).collect::<Vec<_>>(), sent);
    src.update_stats(&mut c);
    assert_eq!(src.kernel_stats().drops, k.drops, "no drops once read");
}

/// Both ends of a TCP connection, direction-independent.
fn conn_key(p: &Parsed<'_>) -> ([u8; 4], u16, [u8; 4], u16) {
    let a = (p.src, p.sport);
    let b = (p.dst, p.dport);
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    (x.0, x.1, y.0, y.1)
}

/// A live source as the fanout test drives it.
trait Poll {
    fn poll_once(&mut self, c: &mut Counters, f: &mut dyn FnMut(&Frame<'_>)) -> usize;
}

impl Poll for AfPacketSource {
    fn poll_once(&mut self, c: &mut Counters, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        self.poll(Duration::from_millis(5), c, f).unwrap()
    }
}

impl Poll for PcapSource {
    fn poll_once(&mut self, c: &mut Counters, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        self.poll(Duration::from_millis(5), c, f).unwrap()
    }
}

#[test]
fn afpacket_fanout_splits_by_connection() {
    let (listener, port) = tcp_listener();
    let filter = format!("tcp port {port}");
    let group = (random() % 60000) as u16 + 1000;
    let mut cfg = ring(&filter);
    cfg.fanout = Some(Fanout { group });
    let Some(a) = open_ring(&cfg) else {
        return;
    };
    let b = AfPacketSource::open(&cfg).expect("second member of the group");
    // A plain socket with the same filter sees every packet once.
    let all = AfPacketSource::open(&ring(&filter)).unwrap();
    check_fanout(
        listener,
        port,
        [Box::new(a), Box::new(b), Box::new(all)],
        true,
    );
}

#[test]
fn pcap_fanout_splits_by_connection() {
    let (listener, port) = tcp_listener();
    let group = (random() % 60000) as u16 + 1000;
    let mut cfg = PcapConfig::new("lo");
    cfg.buffer_size = 2 << 20;
    cfg.filter = Some(format!("tcp port {port}"));
    let all = match PcapSource::open(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    cfg.fanout = Some(Fanout { group });
    let a = PcapSource::open(&cfg).unwrap();
    let b = PcapSource::open(&cfg).unwrap();
    // Let the members settle before any traffic (see PcapConfig::fanout).
    std::thread::sleep(Duration::from_millis(20));
    check_fanout(
        listener,
        port,
        [Box::new(a), Box::new(b), Box::new(all)],
        false,
    );
}

/// Runs TCP connections to `listener` and checks that members 0 and 1 of
/// a fanout group split the packets by connection, against member 2, a
/// plain source with the same filter.
fn check_fanout(listener: TcpListener, port: u16, mut srcs: [Box<dyn Poll>; 3], ring: bool) {
    const CONNS: usize = 24;
    let server = std::thread::spawn(move || {
        for _ in 0..CONNS {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..3 {
                let n = s.read(&mut buf).unwrap();
                s.write_all(&buf[..n]).unwrap();
            }
        }
    });
    for i in 0..CONNS {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        for j in 0..3 {
            let msg = format!("conn {i} msg {j}");
            s.write_all(msg.as_bytes()).unwrap();
            let mut buf = vec![0u8; msg.len()];
            s.read_exact(&mut buf).unwrap();
        }
    }
    server.join().unwrap();

    type Key = ([u8; 4], u16, [u8; 4], u16);
    let mut per: [BTreeMap<Key, usize>; 3] = Default::default();
    let mut counts = [
        Counters::default(),
        Counters::default(),
        Counters::default(),
    ];
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && last.elapsed() < Duration::from_millis(300) {
        for (i, src) in srcs.iter_mut().enumerate() {
            let map = &mut per[i];
            let n = src.poll_once(&mut counts[i], &mut |f| {
                let p = parse(f.data).unwrap();
                assert_eq!(p.proto, 6);
                *map.entry(conn_key(&p)).or_default() += 1;
            });
            if n > 0 {
                last = Instant::now();
            }
        }
    }
    let total = |m: &BTreeMap<Key, usize>| m.values().sum::<usize>();
    let (na, nb, nall) = (total(&per[0]), total(&per[1]), total(&per[2]));
    assert_eq!(per[2].len(), CONNS, "the plain socket saw every connection");
    assert!(nall >= CONNS * 9, "handshake, data, acks: {nall}");
    assert_eq!(
        na + nb,
        nall,
        "each packet reached exactly one member ({na} + {nb})"
    );
    let ka: BTreeSet<_> = per[0].keys().collect();
    let kb: BTreeSet<_> = per[1].keys().collect();
    assert!(ka.is_disjoint(&kb), "a connection split across members");
    for (k, n) in &per[2] {
        let m = per[0].get(k).or(per[1].get(k)).copied().unwrap_or(0);
        assert_eq!(m, *n, "connection {k:?}: all its packets on one member");
    }
    assert!(
        !ka.is_empty() && !kb.is_empty(),
        "the hash used both members ({} / {})",
        ka.len(),
        kb.len()
    );
    if ring {
        assert_eq!(
            counts[0].loopback_duplicates + counts[1].loopback_duplicates,
            counts[2].loopback_duplicates
        );
    }
}

#[test]
fn pcap_on_lo_delivers_each_filtered_datagram_once() {
    let (_rx, port) = udp_socket();
    let (_other, other_port) = udp_socket();
    let mut cfg = PcapConfig::new("lo");
    cfg.buffer_size = 4 << 20;
    cfg.filter = Some(format!("udp dst port {port}"));
    let mut src = match PcapSource::open(&cfg) {
        Ok(s) => s,
        Err(e @ CaptureError::PermissionDenied(_)) => {
            eprintln!("SKIPPED: live capture needs CAP_NET_RAW: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(src.linktype(), 1);
    let mut c = Counters::default();
    const N: usize = 40;
    let sent = send_udp(port, N, "pcap");
    let _ = send_udp(other_port, 15, "ignored");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut ts = Vec::new();
    let mut got = Vec::new();
    let start = Instant::now();
    let mut last = Instant::now();
    while start.elapsed() < Duration::from_secs(5)
        && (got.len() < N || last.elapsed() < Duration::from_millis(200))
    {
        let n = src
            .poll(Duration::from_millis(20), &mut c, &mut |f| {
                got.push(parse(f.data).unwrap().payload.to_vec());
                ts.push(f.ts);
            })
            .unwrap();
        if n > 0 {
            last = Instant::now();
        }
        if got.len() < N && last.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    assert_eq!(
        got, sent,
        "exactly one copy of each, in order; none to port {other_port}"
    );
    assert_eq!(c.packets, N as u64);
    // Nanosecond timestamps read right: within a few seconds of now (a
    // microsecond value taken for nanoseconds would be ~1970).
    for t in &ts {
        assert!(
            t.abs_diff(started) < 10_000_000_000,
            "timestamp {t} vs now {started}"
        );
    }
    src.update_stats(&mut c);
    let s = src.pcap_stats();
    assert!(s.received >= N as u64, "{s:?}");
    assert_eq!(s.dropped, 0);
    assert_eq!(c.kernel_drops, 0);
}

/// libpcap's `any`: cooked frames from every interface, each loopback
/// packet once (libpcap drops the outgoing copy on `lo` there too).
#[test]
fn pcap_on_any_delivers_cooked_frames_once() {
    let (_rx, port) = udp_socket();
    let mut cfg = PcapConfig::new("any");
    cfg.buffer_size = 2 << 20;
    cfg.filter = Some(format!("udp dst port {port}"));
    let mut src = match PcapSource::open(&cfg) {
        Ok(s) => s,
        Err(e @ CaptureError::PermissionDenied(_)) => {
            eprintln!("SKIPPED: live capture needs CAP_NET_RAW: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let lt = src.linktype();
    assert!(lt == 113 || lt == 276, "LINUX_SLL or LINUX_SLL2, got {lt}");
    let sent = send_udp(port, 10, "any");
    let mut c = Counters::default();
    let mut n = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        n += src
            .poll(Duration::from_millis(20), &mut c, &mut |f| {
                assert!(f.data.ends_with(&sent[0]) || sent.iter().any(|p| f.data.ends_with(p)));
            })
            .unwrap();
    }
    assert_eq!(n, sent.len());
}

#[test]
fn errors_name_the_interface_and_the_expression() {
    let e = AfPacketSource::open(&RingConfig::new("memtap-nope0"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no such network interface `memtap-nope0`"),
        "{e}"
    );
    let e = PcapSource::open(&PcapConfig::new("memtap-nope0"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no such network interface `memtap-nope0`"),
        "{e}"
    );

    let e = compile_filter("tcp port eleven", 1, 65535)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bad filter `tcp port eleven`: "), "{e}");
    let mut cfg = PcapConfig::new("lo");
    cfg.buffer_size = 1 << 20;
    cfg.filter = Some("udp and banana".into());
    match PcapSource::open(&cfg) {
        Err(CaptureError::PermissionDenied(_)) => {
            eprintln!("SKIPPED the pcap bad-filter check: no CAP_NET_RAW")
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("bad filter `udp and banana`: "), "{e}");
        }
        Ok(_) => panic!("a bad filter was accepted"),
    }
}

/// Run by `unprivileged_open_says_cap_net_raw` as user nobody: tries both
/// engines and prints what they say.
#[test]
fn helper_open_as_given_user() {
    if std::env::var_os("MEMTAP_LIVE_HELPER").is_none() {
        return;
    }
    let a = AfPacketSource::open(&RingConfig::new("lo"))
        .err()
        .map(|e| e.to_string());
    let p = PcapSource::open(&PcapConfig::new("lo"))
        .err()
        .map(|e| e.to_string());
    println!("AFPACKET-ERR: {}", a.unwrap_or_else(|| "opened".into()));
    println!("PCAP-ERR: {}", p.unwrap_or_else(|| "opened".into()));
}

#[test]
fn unprivileged_open_says_cap_net_raw() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "helper_open_as_given_user",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEMTAP_LIVE_HELPER", "1")
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "SKIPPED: cannot run the helper as nobody (not root?): {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED: setpriv not available: {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for engine in ["AFPACKET-ERR: ", "PCAP-ERR: "] {
        let line = text
            .lines()
            .find_map(|l| l.split_once(engine).map(|x| x.1))
            .unwrap_or_else(|| panic!("no {engine} line in {text}"));
        assert!(
            line.starts_with("permission denied capturing on `lo`: memtap lacks CAP_NET_RAW; run as root, or: setcap cap_net_raw,cap_net_admin+eip $(command -v memtap)"),
            "{engine}{line}"
        );
        assert!(line.contains("AmbientCapabilities=CAP_NET_RAW"), "{line}");
    }
}

/// A veth pair made for one test and deleted when dropped (deleting one
/// end deletes both).
struct Veth {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Veth {
    /// `None` (with the reason printed) where veth pairs cannot be made.
    fn new(up: bool) -> Option<Veth> {
        let n = random() % 100_000;
        let v = Veth {
            a: format!("mtap{n}a"),
            b: format!("mtap{n}b"),
        };
        if !ip(&["link", "add", &v.a, "type", "veth", "peer", "name", &v.b]) {
            eprintln!("SKIPPED: cannot create a veth pair (not root, or no veth support)");
            return None;
        }
        if up && !(ip(&["link", "set", &v.a, "up"]) && ip(&["link", "set", &v.b, "up"])) {
            panic!("cannot bring {}/{} up", v.a, v.b);
        }
        Some(v)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        ip(&["link", "del", &self.a]);
    }
}

/// Ethernet (optionally 802.1Q-tagged) IPv4 UDP frame to 192.0.2.2:dport.
fn udp_frame(vlan: Option<u16>, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa];
    if let Some(id) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn vlan_tags_the_kernel_strips_are_put_back() {
    let Some(v) = Veth::new(true) else { return };
    let port = 23000 + (random() % 1000) as u16;
    let target: Target = format!("192.0.2.2:{port}").parse().unwrap();
    let expr = Targets::new(vec![target]).bpf_expr();
    // Capture on b what is sent on a: the receive path takes the tag off
    // into the packet's metadata before packet sockets see it.
    let mut cfg = ring(&expr);
    cfg.iface = v.b.clone();
    cfg.promisc = true;
    let Some(mut ring_src) = open_ring(&cfg) else {
        return;
    };
    assert!(promisc(&v.b), "promiscuous while open");
    let mut pcfg = PcapConfig::new(&v.b);
    pcfg.buffer_size = 2 << 20;
    pcfg.filter = Some(expr.clone());
    let mut pcap_src = PcapSource::open(&pcfg).unwrap();
    // Let IPv6 autoconfiguration noise pass before sending (filtered
    // anyway), and give both sockets time to settle.
    std::thread::sleep(Duration::from_millis(50));

    let frames = [
        udp_frame(Some(42), port, b"tagged"),
        udp_frame(None, port, b"plain"),
        udp_frame(Some(42), port.wrapping_add(1), b"other port"),
        udp_frame(Some(7), port, b"tagged again"),
    ];
    let mut tx = pcap::Capture::from_device(v.a.as_str())
        .unwrap()
        .open()
        .unwrap();
    for f in &frames {
        tx.sendpacket(f.as_slice()).unwrap();
    }
    let want = [&frames[0], &frames[1], &frames[3]];

    let mut c = Counters::default();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut got_pcap: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        ring_src
            .poll(Duration::from_millis(10), &mut c, &mut |f| {
                assert_eq!(f.wire_len as usize, f.data.len());
                got.push(f.data.to_vec());
            })
            .unwrap();
        pcap_src
            .poll(Duration::from_millis(10), &mut c, &mut |f| {
                got_pcap.push(f.data.to_vec())
            })
            .unwrap();
        if got.len() >= want.len()
            && got_pcap.len() >= want.len()
            && start.elapsed() > Duration::from_millis(300)
        {
            break;
        }
    }
    assert_eq!(
        got.iter().collect::<Vec<_>>(),
        want,
        "af-packet: the frames as sent, tags included"
    );
    assert_eq!(
        got_pcap.iter().collect::<Vec<_>>(),
        want,
        "libpcap: the frames as sent, tags included"
    );
    assert_eq!(c.loopback_duplicates, 0);

    // The interface going down is reported by the next poll.
    drop(pcap_src);
    assert!(ip(&["link", "set", &v.b, "down"]));
    let r = ring_src.poll(Duration::from_millis(200), &mut c, &mut |_| {});
    let e = r
        .expect_err("poll after the interface went down")
        .to_string();
    assert!(
        e.contains(&format!("`{}`", v.b)) && e.contains("down"),
        "{e}"
    );
    drop(ring_src);
    assert!(!promisc(&v.b), "promiscuous mode left on after close");
}

/// IFF_PROMISC as the kernel reports it.
fn promisc(iface: &str) -> bool {
    let f = std::fs::read_to_string(format!("/sys/class/net/{iface}/flags")).unwrap();
    u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).unwrap() & 0x100 != 0
}

#[test]
fn down_and_non_ethernet_interfaces_are_refused_clearly() {
    if let Some(v) = Veth::new(false) {
        match AfPacketSource::open(&RingConfig::new(&v.a)) {
            Err(CaptureError::PermissionDenied(_)) => {}
            Err(e) => assert_eq!(
                e.to_string(),
                format!(
                    "interface `{0}` is down (bring it up with `ip link set {0} up`)",
                    v.a
                )
            ),
            Ok(_) => panic!("opened a down interface"),
        }
    }
    let tun = format!("mtap{}t", random() % 100_000);
    if !ip(&["tuntap", "add", "dev", &tun, "mode", "tun"]) {
        eprintln!("SKIPPED the tun check: cannot create a tun device");
        return;
    }
    ip(&["link", "set", &tun, "up"]);
    let r = AfPacketSource::open(&RingConfig::new(&tun))
        .err()
        .map(|e| e.to_string());
    ip(&["link", "del", &tun]);
    let e = r.expect("a tun device (no link header) must be refused");
    assert!(
        e.contains(&format!("`{tun}`")) && e.contains("use `--engine pcap`"),
        "{e}"
    );
}

/// Not a check: rough delivery rates of both engines on `lo` with default
/// rings. `cargo test --release --test live_sources -- --ignored
/// --nocapture throughput`.
#[test]
#[ignore]
fn throughput_report() {
    const N: usize = 200_000;
    let (_rx, port) = udp_socket();
    let expr = format!("udp dst port {port}");
    // `step(c, false)` polls once; `step(c, true)` reads the statistics.
    let run = |name: &str, step: &mut dyn FnMut(&mut Counters, bool) -> usize| {
        let sender = std::thread::spawn(move || {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.connect(("127.0.0.1", port)).unwrap();
            let p = [7u8; 100];
            let t = Instant::now();
            for _ in 0..N {
                let _ = tx.send(&p);
            }
            t.elapsed()
        });
        let mut c = Counters::default();
        let t = Instant::now();
        let mut idle = Instant::now();
        while idle.elapsed() < Duration::from_millis(300) {
            if step(&mut c, false) > 0 {
                idle = Instant::now();
            }
        }
        let send_time = sender.join().unwrap();
        step(&mut c, true);
        let secs = t.elapsed().as_secs_f64() - 0.3;
        eprintln!(
            "{name}: sent {N} in {:.2}s, delivered {} ({:.0} pkt/s), kernel drops {}, freezes {}",
            send_time.as_secs_f64(),
            c.packets,
            c.packets as f64 / secs,
            c.kernel_drops,
            c.ring_freezes
        );
    };
    let mut cfg = RingConfig::new("lo");
    cfg.filter = Some(compile_filter(&expr, 1, cfg.snaplen).unwrap());
    let Some(mut a) = open_ring(&cfg) else {
        return;
    };
    run("af-packet (64 x 1 MiB)", &mut |c, fin| {
        if fin {
            a.update_stats(c);
            return 0;
        }
        a.poll(Duration::from_millis(20), c, &mut |_| {}).unwrap()
    });
    drop(a);
    let mut cfg = PcapConfig::new("lo");
    cfg.filter = Some(expr);
    let mut p = PcapSource::open(&cfg).unwrap();
    run("libpcap (64 MiB)", &mut |c, fin| {
        if fin {
            p.update_stats(c);
            return 0;
        }
        p.poll(Duration::from_millis(20), c, &mut |_| {}).unwrap()
    });
}

/// A worker may wait for a collector only while its ring is under half
/// full (`Patience`): the gauge must read the kernel's fill of a real
/// ring. Each datagram here waits past the block timeout, so it closes a
/// block of its own (both loopback copies fit one 4 KiB block).
#[test]
fn a_ring_gauge_reads_how_many_blocks_wait() {
    let (_rx, port) = udp_socket();
    let mut cfg = ring(&format!("udp and dst port {port}"));
    cfg.block_size = 4096;
    cfg.block_count = 8;
    cfg.snaplen = 1500;
    let Some(mut src) = open_ring(&cfg) else {
        return;
    };
    let gauge = src.gauge();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let wait = || std::thread::sleep(Duration::from_millis(60));
    assert_eq!((gauge.filled_blocks(), gauge.under_half()), (0, true));
    for n in 1..=5 {
        tx.send_to(&[b'x'; 600], ("127.0.0.1", port)).unwrap();
        wait();
        assert_eq!(gauge.filled_blocks(), n, "after datagram {n}");
        // Half of 8 blocks: the block 4 ahead of the reader is taken.
        assert_eq!(gauge.under_half(), n <= 4, "after datagram {n}");
    }
    let mut c = Counters::default();
    let mut got = 0;
    src.poll(Duration::from_millis(20), &mut c, &mut |_| got += 1)
        .unwrap();
    assert_eq!(got, 5);
    assert_eq!((gauge.filled_blocks(), gauge.under_half()), (0, true));
    // Read from a new place in the ring, the gauge follows the reader.
    for _ in 0..2 {
        tx.send_to(&[b'y'; 600], ("127.0.0.1", port)).unwrap();
        wait();
    }
    assert_eq!((gauge.filled_blocks(), gauge.under_half()), (2, true));
    // The gauge keeps the mapping alive after its source is gone.
    drop(src);
    assert_eq!(gauge.filled_blocks(), 2);
}
