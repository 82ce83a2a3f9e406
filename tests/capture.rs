//! `memtap capture` end to end, as root: a real memcached on loopback,
//! real clients speaking text, meta, binary and UDP with counts the
//! clients themselves tallied from the answers they got, memtap capturing
//! on `lo` (both engines, one and two workers), and the report after
//! SIGINT compared exactly. Also: a SPAN-port rehearsal on a veth pair in a
//! network namespace fed by tcpreplay, config reload on SIGHUP, privilege
//! drop, the permission error, and servers found without --target (and
//! the hint and exit status 3 when none is).

mod common;

use common::server::{free_port, memcached, Proc};

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

/// Live capture needs root and a memcached binary; CI has both (the
/// project's setup script installs memcached and CI runs as root).
fn ready(test: &str) -> bool {
    let mc = Command::new("memcached").arg("-h").output().is_ok();
    if common::server::is_root() && mc {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run as root with memcached installed"
    );
    eprintln!("skipping {test}: needs root and memcached");
    false
}

/// What the clients saw: results by name, commands and key-requests.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    results: BTreeMap<String, u64>,
    commands: u64,
    requests: u64,
    connections: u64,
}

impl Tally {
    fn add(&mut self, result: &str, n: u64) {
        *self.results.entry(result.to_string()).or_default() += n;
        self.requests += n;
    }
}

struct Text {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Text {
    fn connect(port: u16) -> Text {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Text {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }
    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }
}

/// Text protocol: stores, single and multi gets, deletes.
fn drive_text(port: u16, t: &mut Tally) {
    let mut c = Text::connect(port);
    t.connections += 1;
    for i in 0..10 {
        c.send(format!("set k{i} 0 0 5\r\nvalue\r\n").as_bytes());
        assert_eq!(c.line(), "STORED\r\n");
        t.commands += 1;
        t.add("stored", 1);
    }
    for i in 0..15 {
        c.send(format!("get k{i}\r\n").as_bytes());
        t.commands += 1;
        let l = c.line();
        if l.starts_with("VALUE") {
            c.line();
            assert_eq!(c.line(), "END\r\n");
            t.add("hit", 1);
        } else {
            assert_eq!(l, "END\r\n");
            t.add("miss", 1);
        }
    }
    c.send(b"get k1 k2 nope\r\n");
    t.commands += 1;
    let mut hits = 0;
    loop {
        let l = c.line();
        if l == "END\r\n" {
            break;
        }
        c.line();
        hits += 1;
    }
    t.add("hit", hits);
    t.add("miss", 3 - hits);
    for (k, want, res) in [
        ("k9", "DELETED\r\n", "deleted"),
        ("nope", "NOT_FOUND\r\n", "not_found"),
    ] {
        c.send(format!("delete {k}\r\n").as_bytes());
        assert_eq!(c.line(), want);
        t.commands += 1;
        t.add(res, 1);
    }
}

/// Meta protocol: ms, mg hit and miss, md.
fn drive_meta(port: u16, t: &mut Tally) {
    let mut c = Text::connect(port);
    t.connections += 1;
    c.send(b"ms m1 3\r\nabc\r\n");
    assert_eq!(c.line(), "HD\r\n");
    t.add("stored", 1);
    c.send(b"mg m1 v\r\n");
    assert_eq!(c.line(), "VA 3\r\n");
    assert_eq!(c.line(), "abc\r\n");
    t.add("hit", 1);
    c.send(b"mg nope v\r\n");
    assert_eq!(c.line(), "EN\r\n");
    t.add("miss", 1);
    c.send(b"md m1\r\n");
    assert_eq!(c.line(), "HD\r\n");
    t.add("deleted", 1);
    t.commands += 4;
}

fn bin_req(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut v = vec![0x80, op];
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.push(extras.len() as u8);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&(body as u32).to_be_bytes());
    v.extend_from_slice(&opaque.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(extras);
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

/// Reads one binary response; returns its status.
fn bin_resp(s: &mut TcpStream) -> u16 {
    let mut h = [0u8; 24];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[0], 0x81);
    let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let mut b = vec![0; body];
    s.read_exact(&mut b).unwrap();
    u16::from_be_bytes([h[6], h[7]])
}

/// Binary protocol: a set, a get hit and a get miss.
fn drive_binary(port: u16, t: &mut Tally) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.connections += 1;
    s.write_all(&bin_req(0x01, b"b1", &[0; 8], b"xyz", 1))
        .unwrap();
    assert_eq!(bin_resp(&mut s), 0);
    t.add("stored", 1);
    s.write_all(&bin_req(0x00, b"b1", &[], &[], 2)).unwrap();
    assert_eq!(bin_resp(&mut s), 0);
    t.add("hit", 1);
    s.write_all(&bin_req(0x00, b"nope", &[], &[], 3)).unwrap();
    assert_eq!(bin_resp(&mut s), 1);
    t.add("miss", 1);
    t.commands += 3;
}

/// UDP: gets framed with memcached's 8-byte header, one datagram each.
fn drive_udp(port: u16, t: &mut Tally) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (id, key) in [(1u16, "k0"), (2, "k1"), (3, "nope")] {
        let mut d = id.to_be_bytes().to_vec();
        d.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
        d.extend_from_slice(format!("get {key}\r\n").as_bytes());
        s.send_to(&d, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).unwrap();
        let body = &buf[8..n];
        t.add(
            if body.starts_with(b"VALUE") {
                "hit"
            } else {
                "miss"
            },
            1,
        );
        t.commands += 1;
    }
}

fn drive_all(port: u16) -> Tally {
    let mut t = Tally::default();
    drive_text(port, &mut t);
    drive_meta(port, &mut t);
    drive_binary(port, &mut t);
    drive_udp(port, &mut t);
    t
}

struct Capture {
    proc: Proc,
    addr: Option<String>,
    err: Option<std::thread::JoinHandle<String>>,
}

/// Starts `memtap capture` and waits until its threads run (the listener
/// line comes before the sockets are read; the "capturing on" line after).
fn start_capture(args: &[&str]) -> Capture {
    let mut child = Command::new(BIN)
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut r = BufReader::new(err);
    let mut seen = String::new();
    let mut addr = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            let _ = child.wait();
            panic!("memtap capture exited early:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("memtap: listening on http://") {
            addr = Some(rest.split('/').next().unwrap().to_string());
        }
        if line.starts_with("memtap: capturing on") {
            break;
        }
    }
    let err = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        seen + &rest
    });
    Capture {
        proc: Proc(child),
        addr,
        err: Some(err),
    }
}

impl Capture {
    /// SIGINT, then the exit status, standard output and stderr text.
    fn interrupt(mut self) -> (std::process::ExitStatus, String, String) {
        // Let the last packets leave the rings (blocks retire in 10 ms).
        std::thread::sleep(Duration::from_millis(300));
        common::signal(&self.proc.0, "INT");
        let mut out = String::new();
        self.proc
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.proc.0.wait().unwrap();
        let err = self.err.take().unwrap().join().unwrap();
        (status, out, err)
    }

    /// SIGINT, then the report from standard output and the stderr text.
    fn stop(self) -> (Value, String) {
        let (status, out, err) = self.interrupt();
        assert!(status.success(), "exit {status:?}; stderr:\n{err}");
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{out}\n{err}"));
        (v, err)
    }
}

fn results_of(r: &Value) -> BTreeMap<String, u64> {
    r["results"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn metric_sum(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

fn live_on_lo(engine: &str, workers: &str) {
    let port = free_port();
    let _mc = memcached(port);
    let target = format!("127.0.0.1:{port}");
    let cap = start_capture(&[
        "-i",
        "lo",
        "--engine",
        engine,
        "--workers",
        workers,
        "--collectors",
        "2",
        "-t",
        &target,
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ]);
    let tally = drive_all(port);
    // Traffic to another memcached port must not count (kernel filter).
    let other = free_port();
    let _mc2 = memcached(other);
    let mut junk = Tally::default();
    drive_text(other, &mut junk);

    // Per-thread counters over HTTP: every connection was tracked by
    // exactly one thread (fanout keeps both directions together; a split
    // connection would be tracked twice and leave orphans).
    let addr = cap.addr.clone().unwrap();
    let t0 = Instant::now();
    let metrics = loop {
        let (st, _, m) = common::http_get(&addr, "/metrics", None);
        assert_eq!(st, 200);
        if metric_sum(&m, "memtap_thread_udp_datagrams_total{") >= 6
            || t0.elapsed() > Duration::from_secs(5)
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        metric_sum(&metrics, "memtap_thread_tcp_flows_total{"),
        tally.connections,
        "{metrics}"
    );
    let nthreads = metrics
        .lines()
        .filter(|l| l.starts_with("memtap_thread_tcp_flows_total{"))
        .count();
    let want_threads = workers.parse::<usize>().unwrap() + usize::from(engine == "pcap");
    assert_eq!(nthreads, want_threads);
    // The live exposition (per-thread families included) lints clean.
    if let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        p.stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let o = p.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI needs promtool");
    }

    let (r, err) = cap.stop();
    assert_eq!(
        results_of(&r),
        tally.results,
        "results by outcome; stderr:\n{err}"
    );
    assert_eq!(r["totals"]["requests"], tally.requests);
    assert_eq!(r["totals"]["commands"], tally.commands);
    let h = &r["health"];
    for c in [
        "orphan_responses",
        "lost_requests",
        "tcp_gaps",
        "kernel_drops",
        "records_dropped",
        "packets_dropped",
    ] {
        assert_eq!(h[c], 0, "{c}; stderr:\n{err}");
    }
    assert_eq!(h["tcp_flows"], tally.connections);
    assert_eq!(h["records"], tally.requests);
    assert_eq!(r["capture"]["files"][0], "interface lo");
    if engine == "afpacket" {
        // Each packet is seen once: the outgoing copy is skipped.
        assert_eq!(h["loopback_duplicates"], r["capture"]["packets"]);
    }
    assert!(
        err.contains(&format!(
            "capturing on lo ({engine} engine, {workers} workers"
        )),
        "{err}"
    );
    // The per-thread lines at stop add up to the report's packets.
    let per_thread: u64 = err
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("memtap: ")?;
            let (name, rest) = rest.split_once(": ")?;
            if name.starts_with("capture-") || name == "reader" {
                rest.split(' ').next()?.parse::<u64>().ok()
            } else {
                None
            }
        })
        .sum();
    assert_eq!(
        per_thread,
        r["capture"]["packets"].as_u64().unwrap(),
        "{err}"
    );
}

#[test]
fn afpacket_one_worker_counts_every_request_once() {
    if ready("afpacket_one_worker") {
        live_on_lo("afpacket", "1");
    }
}

#[test]
fn afpacket_two_workers_keep_connections_together() {
    if ready("afpacket_two_workers") {
        live_on_lo("afpacket", "2");
    }
}

#[test]
fn pcap_engine_counts_every_request_once() {
    if ready("pcap_engine") {
        live_on_lo("pcap", "2");
    }
}

#[test]
fn sighup_reloads_targets_and_keeps_the_tables() {
    if !ready("sighup_reload") {
        return;
    }
    let (a, b) = (free_port(), free_port());
    let _ma = memcached(a);
    let _mb = memcached(b);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("memtap.toml");
    let write_cfg = |port: u16| {
        std::fs::write(
            &cfg,
            format!("[[target]]\nhost = \"127.0.0.1\"\nport = {port}\n"),
        )
        .unwrap();
    };
    write_cfg(a);
    let cap = start_capture(&[
        "-i",
        "lo",
        "-c",
        cfg.to_str().unwrap(),
        "--workers",
        "1",
        "--no-listen",
        "--format",
        "json",
    ]);
    let mut ta = Tally::default();
    drive_text(a, &mut ta);
    let mut ignored = Tally::default();
    drive_text(b, &mut ignored);
    write_cfg(b);
    // Garbage first: the reload is refused and the running config stays.
    std::fs::write(&cfg, "[[target]]\nhost = \"not an address\"\n").unwrap();
    common::signal(&cap.proc.0, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    write_cfg(b);
    common::signal(&cap.proc.0, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    let mut tb = Tally::default();
    drive_meta(b, &mut tb);
    drive_meta(a, &mut ignored);
    let (r, err) = cap.stop();
    assert!(
        err.contains("reload failed, keeping the running config"),
        "{err}"
    );
    assert!(
        err.contains(&format!("config reloaded: targets 127.0.0.1/32:{b};")),
        "{err}"
    );
    // Port a's text traffic before the reload plus port b's meta traffic
    // after it, nothing else; the tables kept the first part.
    assert_eq!(r["totals"]["requests"], ta.requests + tb.requests, "{err}");
    let servers: Vec<&str> = r["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    assert_eq!(
        servers.len(),
        2,
        "both servers, each for its own period: {servers:?}"
    );
}

#[test]
fn drops_to_the_user_after_opening_the_sockets() {
    if !ready("privilege_drop") {
        return;
    }
    let port = free_port();
    let _mc = memcached(port);
    let target = format!("127.0.0.1:{port}");
    let cap = start_capture(&[
        "-i",
        "lo",
        "-t",
        &target,
        "--workers",
        "1",
        "--user",
        "nobody",
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", cap.proc.0.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4]
    );
    let caps = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(caps.ends_with("0000000000000000"), "{caps}");
    let mut t = Tally::default();
    drive_meta(port, &mut t);
    let (r, _) = cap.stop();
    assert_eq!(results_of(&r), t.results);
}

#[test]
fn without_permission_it_names_the_capability() {
    if !ready("permission_error") {
        return;
    }
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
            "capture",
            "-i",
            "lo",
            "--no-listen",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("CAP_NET_RAW") && err.contains("setcap"),
        "{err}"
    );
}

#[test]
fn bad_interface_filter_or_port_is_one_line() {
    let o = Command::new(BIN)
        .args(["capture", "-i", "nosuch0", "--no-listen"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuch0"), "{err}");
    let o = Command::new(BIN)
        .args(["capture", "--no-listen"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("-i IFACE"));
    // A filter libpcap rejects: one line quoting it.
    let o = Command::new(BIN)
        .args(["capture", "-i", "lo", "--no-listen", "--filter", "port ((("])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad filter") && err.contains("port ((("),
        "{err}"
    );
    if common::server::is_root() {
        // A busy listener port: one line naming the address.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let o = Command::new(BIN)
            .args(["capture", "-i", "lo", "--listen", &addr])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    }
}

/// Deletes the namespace (and with it the veth pair) when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        // Normally gone with the namespace; this catches a half-made pair.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}a", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

/// Strips what depends on the clock (latencies, timestamps, windows) and
/// on the input's name, leaving what the traffic itself determines.
fn timeless(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.contains("latency") && *k != "capture" && *k != "windows")
                .map(|(k, v)| (k.clone(), timeless(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(timeless).collect()),
        x => x.clone(),
    }
}

#[test]
fn span_port_rehearsal_matches_replay_of_the_same_file() {
    if !ready("span_rehearsal") {
        return;
    }
    if Command::new("tcpreplay").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI needs tcpreplay");
        eprintln!("skipping span_rehearsal: no tcpreplay");
        return;
    }
    let ns = format!("mt{}", std::process::id() % 100_000);
    let (a, b) = (format!("{ns}a"), format!("{ns}b"));
    let _g = Netns(ns.clone());
    ip(&["netns", "add", &ns]);
    ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    // The fixtures come from loopback, whose segments reach 64 KiB (GSO):
    // the veth must carry them whole, as a mirror port carries jumbo
    // frames.
    ip(&["link", "set", &a, "mtu", "65535"]);
    ip(&["link", "set", &b, "mtu", "65535"]);
    ip(&["link", "set", &b, "netns", &ns]);
    ip(&["link", "set", &a, "up"]);
    ip(&["netns", "exec", &ns, "ip", "link", "set", &b, "up"]);

    for case in ["text_tcp", "meta_tcp", "binary_tcp", "udp"] {
        let file = common::fixture_dir(case).join("capture.pcap");
        let target = common::server_target(case).to_string();
        let replay = Command::new(BIN)
            .args(["replay", "-q", "--format", "json", "--workers", "2", "-t"])
            .arg(&target)
            .arg(&file)
            .output()
            .unwrap();
        assert!(replay.status.success());
        let want: Value = serde_json::from_slice(&replay.stdout).unwrap();

        let cap = start_capture(&[
            "-i",
            &a,
            "--promisc",
            "--workers",
            "2",
            "-t",
            &target,
            "--no-listen",
            "--format",
            "json",
        ]);
        let st = Command::new("ip")
            .args(["netns", "exec", &ns, "tcpreplay", "-q", "-i", &b])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "tcpreplay {case}");
        let (got, err) = cap.stop();
        assert_eq!(
            timeless(&got["totals"]),
            timeless(&want["totals"]),
            "{case}: {err}"
        );
        for part in [
            "results", "commands", "servers", "keys", "clients", "families",
        ] {
            assert_eq!(
                timeless(&got[part]),
                timeless(&want[part]),
                "{case}: {part}"
            );
        }
        assert_eq!(
            got["capture"]["packets"], want["capture"]["packets"],
            "{case}"
        );
        assert_eq!(got["health"]["kernel_drops"], 0, "{case}");
    }
}

#[test]
fn a_quiet_network_still_closes_windows() {
    if !ready("quiet_windows") {
        return;
    }
    let port = free_port();
    let _mc = memcached(port);
    let target = format!("127.0.0.1:{port}");
    let cap = start_capture(&[
        "-i",
        "lo",
        "-t",
        &target,
        "--workers",
        "2",
        "--window",
        "1s",
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ]);
    let mut t = Tally::default();
    drive_text(port, &mut t);
    // No packet after this: only the clock can close the window(s).
    let addr = cap.addr.clone().unwrap();
    let t0 = Instant::now();
    let windows = loop {
        let (st, _, body) = common::http_get(&addr, "/api/windows", None);
        assert_eq!(st, 200);
        let w: Value = serde_json::from_str(&body).unwrap();
        let sum: u64 = w["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["totals"]["requests"].as_u64().unwrap())
            .sum();
        if sum == t.requests {
            break w;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "windows never closed on a quiet network: {w}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(windows["windows_closed"].as_u64().unwrap() >= 1);
    let (st, _, last) = common::http_get(&addr, "/api/report?window=last", None);
    assert_eq!(st, 200);
    let last: Value = serde_json::from_str(&last).unwrap();
    assert!(last["totals"]["requests"].as_u64().unwrap() > 0);
    let (r, _) = cap.stop();
    assert_eq!(r["totals"]["requests"], t.requests);
}

#[test]
fn capture_store_keeps_the_windows_and_serves_the_history() {
    if !ready("capture_store") {
        return;
    }
    let port = free_port();
    let _mc = memcached(port);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("h.db").display());
    let target = format!("127.0.0.1:{port}");
    let cap = start_capture(&[
        "-i",
        "lo",
        "-t",
        &target,
        "--workers",
        "2",
        "--window",
        "1s",
        "--store",
        &db,
        "--sniffer",
        "lo-test",
        "--store-top",
        "0",
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ]);
    let mut t = Tally::default();
    drive_text(port, &mut t);
    std::thread::sleep(Duration::from_millis(1500));
    drive_meta(port, &mut t);
    let addr = cap.addr.clone().unwrap();
    // The history page shares the listener; /metrics shows the backlog.
    let (st, ct, page) = common::http_get(&addr, "/", None);
    assert_eq!(st, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(page.contains("<svg") || page.contains("<form"), "{page}");
    let (_, _, m) = common::http_get(&addr, "/metrics", None);
    assert!(m.contains("\nmemtap_store_backlog "), "{m}");
    let (live, err) = cap.stop();
    assert_eq!(live["totals"]["requests"], t.requests, "{err}");

    let o = Command::new(BIN)
        .args(["report", "--store", &db, "--format", "json", "--top", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hist: Value = serde_json::from_slice(&o.stdout).unwrap();
    for part in ["totals", "results", "commands", "servers", "clients"] {
        assert_eq!(hist[part], live[part], "{part}");
    }
    let keys = |r: &Value| -> Vec<(String, u64)> {
        let mut v: Vec<_> = r["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["key"].as_str().unwrap().to_string(),
                    k["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(keys(&hist), keys(&live));
    // Health counters are stored per window and add up to the run's.
    for c in ["packets", "records", "tcp_flows", "loopback_duplicates"] {
        assert_eq!(hist["health"][c], live["health"][c], "health {c}");
    }
}

/// The `memtap_server_found_info` series of `server` in a scrape, by
/// transport.
fn found_in_metrics(addr: &str, server: &str) -> Vec<String> {
    let (st, _, m) = common::http_get(addr, "/metrics", None);
    assert_eq!(st, 200);
    let tag = format!("memtap_server_found_info{{server=\"{server}\",");
    m.lines()
        .filter(|l| l.starts_with(&tag))
        .map(|l| l.to_string())
        .collect()
}

/// Waits until the scrape lists `want` series for `server`.
fn wait_found(addr: &str, server: &str, want: usize) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let got = found_in_metrics(addr, server);
        if got.len() >= want || t0.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The report's row of `server` and its results summed over commands.
fn server_row(r: &Value, server: &str) -> (Value, BTreeMap<String, u64>) {
    let row = r["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == server)
        .unwrap_or_else(|| panic!("no row for {server}: {}", r["servers"]))
        .clone();
    let mut results = BTreeMap::new();
    for c in row["commands"].as_array().unwrap() {
        for (k, v) in c["results"].as_object().unwrap() {
            *results.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
    }
    results.retain(|_, v| *v > 0);
    (row, results)
}

/// No --target, memcached on a port memtap has never heard of: the first
/// exchange finds it, the connection that showed it is taken up in the
/// middle from its next request, UDP is found as well, and every request
/// after that is counted exactly. Other tests may run memcached on lo at
/// the same time (and be found too): everything asserted is this server's.
fn discovers_on_lo(engine: &str) {
    let port = free_port();
    let _mc = memcached(port);
    let server = format!("127.0.0.1:{port}");
    let cap = start_capture(&[
        "-i",
        "lo",
        "--engine",
        engine,
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ]);
    let addr = cap.addr.clone().unwrap();
    // The probe: a miss whose request goes by unwatched (nothing is known
    // yet) and whose answer shows the server.
    let mut probe = Text::connect(port);
    probe.send(b"get probe\r\n");
    assert_eq!(probe.line(), "END\r\n");
    let tcp = wait_found(&addr, &server, 1);
    assert_eq!(
        tcp,
        [format!(
            "memtap_server_found_info{{server=\"{server}\",transport=\"tcp\",how=\"protocol\",\
             dialect=\"text\"}} 1"
        )]
    );
    // Every thread takes it up at its next batch (at most a tick away).
    std::thread::sleep(Duration::from_millis(300));
    let mut tally = Tally::default();
    // The probe's connection, already running: counted from here on.
    probe.send(b"set p 0 0 2\r\nhi\r\n");
    assert_eq!(probe.line(), "STORED\r\n");
    probe.send(b"get p\r\n");
    assert_eq!(probe.line(), "VALUE p 0 2\r\n");
    assert_eq!(probe.line(), "hi\r\n");
    assert_eq!(probe.line(), "END\r\n");
    tally.add("stored", 1);
    tally.add("hit", 1);
    tally.commands += 2;
    drop(probe);
    // UDP to the same address is watched already (a target is an address
    // and a port), and is found in its own right too.
    drive_udp(port, &mut tally);
    let both = wait_found(&addr, &server, 2);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(
        both[1].contains("transport=\"udp\",how=\"protocol\",dialect=\"text\""),
        "{both:?}"
    );
    drive_text(port, &mut tally);
    drive_meta(port, &mut tally);
    drive_binary(port, &mut tally);
    let (r, err) = cap.stop();

    let found: Vec<&Value> = r["capture"]["servers_found"]
        .as_array()
        .unwrap_or_else(|| panic!("no servers_found: {}", r["capture"]))
        .iter()
        .filter(|f| f["server"] == server.as_str())
        .collect();
    assert_eq!(
        found,
        [
            &serde_json::json!({"server": server, "transport": "tcp", "how": "protocol",
                                "dialect": "text"}),
            &serde_json::json!({"server": server, "transport": "udp", "how": "protocol",
                                "dialect": "text"}),
        ],
        "{err}"
    );
    for t in ["tcp", "udp"] {
        let line = format!("memtap: found memcached server {server} ({t}, by protocol: text)\n");
        assert_eq!(err.matches(&line).count(), 1, "{line}: {err}");
    }
    let (row, results) = server_row(&r, &server);
    assert_eq!(results, tally.results, "{row}\n{err}");
    assert_eq!(row["requests"], tally.requests, "{row}");
    assert_eq!(row["hits"], tally.results["hit"], "{row}");
    assert_eq!(row["misses"], tally.results["miss"], "{row}");
    let commands: u64 = row["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(commands, tally.commands, "{row}");
    // The probe's connection was taken up mid-stream.
    assert!(r["health"]["tcp_midstream"].as_u64().unwrap() >= 1, "{err}");
    assert_eq!(r["health"]["discovery_untracked_flows"], 0);
    assert!(
        err.contains("no --target: watching port 11211 and looking for memcached servers"),
        "{err}"
    );
}

#[test]
fn afpacket_finds_a_server_without_target() {
    if ready("afpacket_finds_a_server") {
        discovers_on_lo("afpacket");
    }
}

#[test]
fn pcap_finds_a_server_without_target() {
    if ready("pcap_finds_a_server") {
        discovers_on_lo("pcap");
    }
}

/// No --target, and only an HTTP exchange in the capture (its filter keeps
/// other tests' traffic on lo out): the one-line hint, and exit status 3
/// with --strict.
#[test]
fn nothing_found_live_says_so_and_strict_exits_3() {
    if !ready("nothing_found_live") {
        return;
    }
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hport = http.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        let (mut s, _) = http.accept().unwrap();
        // The whole request: a close with bytes unread would be a reset.
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short");
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
    });
    let filter = format!("tcp port {hport}");
    let cap = start_capture(&[
        "-i",
        "lo",
        "--no-listen",
        "--strict",
        "--filter",
        &filter,
        "--format",
        "json",
    ]);
    let (status, _, body) = common::http_get(&format!("127.0.0.1:{hport}"), "/", None);
    assert_eq!((status, body.as_str()), (200, "ok"));
    served.join().unwrap();
    let (status, out, err) = cap.interrupt();
    assert_eq!(status.code(), Some(3), "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let packets = r["capture"]["packets"].as_u64().unwrap();
    assert!(packets >= 6, "a TCP exchange and its handshake: {packets}");
    assert_eq!(r["health"]["not_target"], packets);
    assert!(
        r["capture"].get("servers_found").is_none(),
        "{}",
        r["capture"]
    );
    let hint = format!(
        "memtap: no memcached traffic in {packets} packets: nothing to port 11211, and no flow \
         whose first packets are memcached requests answered by memcached responses; if the \
         servers are there, name them with --target HOST:PORT\n"
    );
    assert_eq!(err.matches(&hint).count(), 1, "{err}");
}
