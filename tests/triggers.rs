//! Triggers end to end through the real binary. Replay (packet time) of a
//! capture built here with exactly known traffic: steady gets on many
//! keys, a burst on one key, a client asking for absent keys; then live
//! capture on `lo` with a real memcached and a real client.
//!
//! Checked: the key-share rule fires exactly once and clears after the
//! burst, the hit-ratio rule fires when misses come; the snippet holds the
//! burst's connection and replays to exactly the key's requests in its
//! span; webhooks reach a listener on loopback and a failing one is
//! counted; snippets never pass the quota.

mod common;
use common::{PcapOut, Seg};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const SERVER: [u8; 4] = [10, 0, 0, 1];
const PORT: u16 = 11211;
const T0: u64 = 1_700_000_000_000_000_000;
const S: u64 = 1_000_000_000;

/// One TCP connection: request and response byte streams with their seq.
struct Conn {
    client: (IpAddr, u16),
    cseq: u32,
    sseq: u32,
}

impl Conn {
    fn open(out: &mut Vec<Seg>, i: u8, port: u16, ts: u64) -> Conn {
        let client = (IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)), port);
        let c = Conn {
            client,
            cseq: 1000,
            sseq: 5000,
        };
        out.push(c.seg(ts, true, Vec::new(), true));
        out.push(c.seg(ts + 1000, false, Vec::new(), true));
        Conn {
            cseq: 1001,
            sseq: 5001,
            ..c
        }
    }

    fn seg(&self, ts: u64, to_server: bool, payload: Vec<u8>, syn: bool) -> Seg {
        let server = (IpAddr::V4(SERVER.into()), PORT);
        let (src, dst, seq, ack) = if to_server {
            (self.client, server, self.cseq, self.sseq)
        } else {
            (server, self.client, self.sseq, self.cseq)
        };
        Seg {
            ts,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            udp: false,
            seq: if syn { seq.wrapping_sub(1) } else { seq },
            ack: if syn && to_server { 0 } else { ack },
            syn,
            fin: false,
            rst: false,
            ack_flag: !(syn && to_server),
            payload,
        }
    }

    /// A get and its answer 100 µs later.
    fn get(&mut self, out: &mut Vec<Seg>, ts: u64, key: &str, hit: bool) {
        let req = format!("get {key}\r\n").into_bytes();
        out.push(self.seg(ts, true, req.clone(), false));
        self.cseq = self.cseq.wrapping_add(req.len() as u32);
        let resp = if hit {
            format!("VALUE {key} 0 5\r\nvalue\r\nEND\r\n").into_bytes()
        } else {
            b"END\r\n".to_vec()
        };
        out.push(self.seg(ts + 100_000, false, resp.clone(), false));
        self.sseq = self.sseq.wrapping_add(resp.len() as u32);
    }
}

/// 30 seconds: 5 clients asking 50 keys (100 gets/s in all, hits) the
/// whole time; from second 10 to 15 a sixth client asks `hot` 400 times a
/// second; from second 20 to 25 a seventh asks absent keys 200 times a
/// second. Returns the capture and the times of the `hot` gets.
fn build(path: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    let mut steady: Vec<Conn> = (0..5)
        .map(|i| Conn::open(&mut out, i + 1, 40000, T0))
        .collect();
    let mut burst = Conn::open(&mut out, 9, 41000, T0 + 9 * S);
    let mut misser = Conn::open(&mut out, 10, 42000, T0 + 19 * S);
    let mut hot = Vec::new();
    for ms in 0..30_000u64 {
        let ts = T0 + 2 * S / 1000 + ms * 1_000_000;
        if ms % 10 == 0 {
            let n = ms / 10;
            steady[(n % 5) as usize].get(&mut out, ts, &format!("key{}", n % 50), true);
        }
        if (10_000..15_000).contains(&ms) && ms % 5 < 2 {
            // 400/s: two gets every 5 ms, 300 µs apart.
            let t = ts + (ms % 5) * 300_000;
            burst.get(&mut out, t, "hot", true);
            hot.push(t);
        }
        if (20_000..25_000).contains(&ms) && ms % 5 == 0 {
            misser.get(&mut out, ts + 200_000, &format!("absent{ms}"), false);
        }
    }
    out.sort_by_key(|s| s.ts);
    let mut w = PcapOut::new();
    for s in &out {
        w.frame(s.ts, &s.to_frame());
    }
    w.write(path);
    hot
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("memtap.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[[trigger]]
name = "hot-key"
metric = "key_share_pct"
above = 50.0
clear = 20.0
window = "2s"
cooldown = "60s"
min_requests = 20
before = "2s"
after = "1s"

[[trigger]]
name = "misses"
metric = "server_hit_ratio_pct"
below = 50.0
clear = 80.0
window = "2s"
min_requests = 50
record = false
{extra}
"#
        ),
    )
    .unwrap();
    p
}

fn replay(args: &[&str], file: &Path) -> (Value, String) {
    let o = Command::new(BIN)
        .args([
            "replay",
            "-f",
            "json",
            "--collectors",
            "2",
            "--workers",
            "2",
            "-t",
            "10.0.0.1:11211",
        ])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    (serde_json::from_slice(&o.stdout).unwrap(), err)
}

fn events(r: &Value) -> Vec<(String, String, String, u64)> {
    r["triggers"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["trigger"].as_str().unwrap().to_string(),
                e["event"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap().to_string(),
                (e["ts"].as_u64().unwrap() - T0) / S,
            )
        })
        .collect()
}

fn key_requests(r: &Value, key: &str) -> u64 {
    r["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == key)
        .map_or(0, |k| k["requests"].as_u64().unwrap())
}

#[test]
fn replay_fires_once_clears_and_the_snippet_replays_the_burst() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("burst.pcap");
    let hot = build(&cap);
    let snips = dir.path().join("snips");
    let cfg = config(dir.path(), "");
    let (r, err) = replay(
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--trigger-dir",
            snips.to_str().unwrap(),
        ],
        &cap,
    );
    // Steady traffic fires nothing. Traffic starts 2 ms into each second;
    // an event's time is the end of the second judged, its window the
    // `window` seconds before. The burst (10.002 s to 15.001 s) fires the
    // key rule at 11 (window [9, 11): 400 of 600 gets, 66.67 %) and clears
    // it at 17 ([15, 17) holds its last two gets); the misses (20.002 s to
    // 24.997 s) fire the ratio rule at 21 ([19, 21): 100 hits of 300) and
    // clear it at 27 (at 26, [24, 26) is still 50 %).
    let ev = events(&r);
    assert_eq!(
        ev,
        vec![
            ("hot-key".into(), "fired".into(), "hot".into(), 11),
            ("hot-key".into(), "cleared".into(), "hot".into(), 17),
            ("misses".into(), "fired".into(), "10.0.0.1:11211".into(), 21),
            (
                "misses".into(),
                "cleared".into(),
                "10.0.0.1:11211".into(),
                27
            ),
        ],
        "{err}"
    );
    let t = &r["triggers"];
    assert_eq!(
        t["firings"],
        serde_json::json!([["hot-key", 1], ["misses", 1]])
    );
    assert_eq!(t["snippets_written"], 1);
    assert!(
        err.contains("memtap: trigger hot-key fired: key hot key_share_pct = "),
        "{err}"
    );
    // The snippet: [fired - 2 s, fired + 1 s], the burst client's
    // connection only; replayed, `hot` has exactly the gets in that span.
    let files: Vec<PathBuf> = std::fs::read_dir(&snips)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("memtap-hot-key-key-hot-"), "{name}");
    let fired = T0 + 11 * S;
    let (from, to) = (fired - 2 * S, fired + S);
    let want = hot.iter().filter(|&&t| t >= from && t <= to).count() as u64;
    assert!(want > 500);
    let (snip, _) = replay(&[], &files[0]);
    assert_eq!(key_requests(&snip, "hot"), want);
    // The section comment names the rule, the subject and the value.
    let bytes = std::fs::read(&files[0]).unwrap();
    let comment = b"memtap trigger hot-key fired: key hot key_share_pct = 66.67 (threshold 50";
    assert!(bytes.windows(comment.len()).any(|w| w == comment));
    // The same run with --log-format json: one JSON object a line.
    let (_, err) = replay(&["-c", cfg.to_str().unwrap(), "--log-format", "json"], &cap);
    let lines: Vec<Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(lines[0]["trigger"], "hot-key");
    assert_eq!(lines[0]["event"], "fired");
    assert_eq!(lines[0]["subject_kind"], "key");
    assert_eq!(lines[0]["value"], 66.67);
    assert_eq!(lines[0]["threshold"], 50.0);
    assert_eq!(lines[0]["time"], "2023-11-14T22:13:31Z");
    // Nothing but the burst's connection.
    assert_eq!(snip["totals"]["requests"], want);
}

/// An HTTP listener on loopback that answers 200 and keeps the bodies.
fn listener() -> (String, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8(body).unwrap());
        }
    });
    (addr, rx)
}

#[test]
fn webhooks_and_commands_run_and_failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("burst.pcap");
    build(&cap);
    let (addr, bodies) = listener();
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = dir.path().join("commands.log");
    let extra = format!(
        r#"webhook = "http://{closed}/hook"

[[trigger]]
name = "hot-hook"
metric = "key_requests_per_s"
above = 300.0
clear = 100.0
window = "1s"
record = false
webhook = "http://{addr}/hook"
command = "echo $MEMTAP_TRIGGER $MEMTAP_EVENT $MEMTAP_SUBJECT_KIND $MEMTAP_SUBJECT >> {}"
"#,
        log.display()
    );
    let cfg = config(dir.path(), &extra);
    let (r, err) = replay(&["-c", cfg.to_str().unwrap()], &cap);
    let t = &r["triggers"];
    // hot-hook fires and clears once each: two posts and two commands; the
    // misses rule's webhook (nobody listening) fails twice, counted. The
    // report does not wait for actions: what had not finished when it was
    // written is `actions_pending`, and finishes after it (within
    // `actions.drain_timeout`), as the listener, the command's file and
    // the log show below.
    let n = |k: &str| t[k].as_u64().unwrap();
    assert_eq!(
        n("webhooks_sent")
            + n("webhooks_failed")
            + n("commands_run")
            + n("commands_failed")
            + n("actions_pending"),
        6,
        "{t}"
    );
    assert_eq!(n("commands_failed"), 0);
    assert!(!err.contains("abandoned"), "{err}");
    assert_eq!(
        err.matches(&format!("memtap: warning: webhook http://{closed}/hook"))
            .count(),
        2,
        "{err}"
    );
    let got: Vec<Value> = (0..2)
        .map(|_| {
            serde_json::from_str(
                &bodies
                    .recv_timeout(std::time::Duration::from_secs(5))
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(got[0]["trigger"], "hot-hook");
    assert_eq!(got[0]["event"], "fired");
    assert_eq!(got[0]["subject"], "hot");
    assert_eq!(got[0]["metric"], "key_requests_per_s");
    assert_eq!(got[0]["value"], 400.0);
    assert_eq!(got[1]["event"], "cleared");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "hot-hook fired key hot\nhot-hook cleared key hot\n"
    );
    assert!(
        err.contains(&format!("memtap: warning: webhook http://{closed}/hook")),
        "{err}"
    );
    // The events themselves are the same as without actions.
    assert_eq!(
        t["firings"],
        serde_json::json!([["hot-key", 1], ["misses", 1], ["hot-hook", 1]])
    );
}

/// 40 keys each burst for a second, with 4 KB values: 40 firings, each
/// snippet hundreds of KB; the quota (1 MiB) stops them and counts the
/// rest, and the files in the directory never pass it.
#[test]
fn snippets_never_pass_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("bursts.pcap");
    let mut out = Vec::new();
    let mut conns: Vec<Conn> = (0..40)
        .map(|i| Conn::open(&mut out, i + 1, 43000, T0))
        .collect();
    let value = "v".repeat(4000);
    for (b, c) in conns.iter_mut().enumerate() {
        for i in 0..200u64 {
            let ts = T0 + S + b as u64 * S + i * 5_000_000;
            let key = format!("burst{b}");
            let req = format!("get {key}\r\n").into_bytes();
            out.push(c.seg(ts, true, req.clone(), false));
            c.cseq = c.cseq.wrapping_add(req.len() as u32);
            let resp = format!("VALUE {key} 0 4000\r\n{value}\r\nEND\r\n").into_bytes();
            out.push(c.seg(ts + 100_000, false, resp.clone(), false));
            c.sseq = c.sseq.wrapping_add(resp.len() as u32);
        }
    }
    out.sort_by_key(|s| s.ts);
    let mut w = PcapOut::new();
    for s in &out {
        w.frame(s.ts, &s.to_frame());
    }
    w.write(&cap);
    let snips = dir.path().join("snips");
    let cfg = dir.path().join("q.toml");
    std::fs::write(
        &cfg,
        r#"
[recorder]
quota = "1MiB"
per_rule_per_hour = 1000

[[trigger]]
name = "each"
metric = "key_requests_per_s"
above = 100.0
window = "1s"
before = "1s"
after = "1s"
"#,
    )
    .unwrap();
    let (r, err) = replay(
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--trigger-dir",
            snips.to_str().unwrap(),
        ],
        &cap,
    );
    let t = &r["triggers"];
    assert_eq!(t["firings"], serde_json::json!([["each", 40]]), "{err}");
    let written = t["snippets_written"].as_u64().unwrap();
    let over = t["snippets_over_quota"].as_u64().unwrap();
    assert!(written >= 1 && over >= 1, "{t}");
    assert_eq!(written + over, 40);
    let on_disk: u64 = std::fs::read_dir(&snips)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, t["snippet_bytes"].as_u64().unwrap());
    assert!(on_disk <= 1 << 20, "{on_disk}");
    // A second run counts the files already there against the quota.
    let (r2, _) = replay(
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--trigger-dir",
            snips.to_str().unwrap(),
        ],
        &cap,
    );
    let left = (1u64 << 20) - on_disk;
    assert!(r2["triggers"]["snippet_bytes"].as_u64().unwrap() <= left);
    // The hourly rate: 3 snippets of the rule, the 37 others counted.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("quota = \"1MiB\"", "quota = \"1GiB\"")
            .replace("per_rule_per_hour = 1000", "per_rule_per_hour = 3"),
    )
    .unwrap();
    let rate_dir = dir.path().join("rate");
    let (r3, _) = replay(
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--trigger-dir",
            rate_dir.to_str().unwrap(),
        ],
        &cap,
    );
    assert_eq!(r3["triggers"]["snippets_written"], 3);
    assert_eq!(r3["triggers"]["snippets_over_rate"], 37);
    assert_eq!(std::fs::read_dir(&rate_dir).unwrap().count(), 3);
}

#[test]
fn a_bad_rule_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[trigger]]\nname = \"x\"\nmetric = \"key_share_pct\"\nabove = 150.0\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["replay", "-c", cfg.to_str().unwrap()])
        .arg(common::fixture_dir("text_tcp").join("capture.pcap"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "memtap: error: config {}: trigger \"x\": threshold 150 is out of range: 0 to 100 (percent)",
            cfg.display()
        )
    );
}

/// A text connection that waits for each answer.
struct Client {
    r: BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn set(&mut self, key: &str) {
        self.w
            .write_all(format!("set {key} 0 0 5\r\nvalue\r\n").as_bytes())
            .unwrap();
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        assert_eq!(l, "STORED\r\n");
    }

    fn get(&mut self, key: &str) {
        self.w
            .write_all(format!("get {key}\r\n").as_bytes())
            .unwrap();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).unwrap();
            if l == "END\r\n" {
                return;
            }
        }
    }
}

/// Live capture on `lo` with a real memcached: steady gets on 20 keys,
/// then a burst on one key from its own connection, then steady again.
/// The key rule fires exactly once and clears; `/metrics` and
/// `/api/events` show it; the snippet (taken from the capture threads'
/// rings) replays to exactly the burst's gets.
#[test]
fn live_burst_fires_once_and_its_snippet_replays_it() {
    if !common::server::is_root() || Command::new("memcached").arg("-h").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with memcached"
        );
        eprintln!("skipping: needs root and memcached");
        return;
    }
    let port = common::server::free_port();
    let _mc = common::server::memcached(port);
    let dir = tempfile::tempdir().unwrap();
    let snips = dir.path().join("snips");
    let cfg = dir.path().join("live.toml");
    std::fs::write(
        &cfg,
        r#"
[[trigger]]
name = "hot-key"
metric = "key_share_pct"
above = 50.0
clear = 20.0
window = "1s"
min_requests = 20
before = "6s"
after = "4s"

[[trigger]]
name = "misses"
metric = "server_hit_ratio_pct"
below = 40.0
clear = 80.0
window = "1s"
min_requests = 50
record = false
"#,
    )
    .unwrap();
    let target = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args([
            "capture",
            "-i",
            "lo",
            "--workers",
            "2",
            "--collectors",
            "2",
            "-t",
            &target,
        ])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
            "-c",
            cfg.to_str().unwrap(),
        ])
        .args(["--trigger-dir", snips.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = common::server::Proc(child);
    let child = &mut guard.0;
    // Wait for the capture threads, and find the listener.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut addr = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "capture exited:\n{seen}"
        );
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("memtap: listening on http://") {
            addr = rest.split('/').next().unwrap().to_string();
        }
        if line.starts_with("memtap: capturing on") {
            break;
        }
    }
    let err_thread = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        seen + &rest
    });
    let mut steady = Client::connect(port);
    for i in 0..20 {
        steady.set(&format!("k{i}"));
    }
    steady.set("hot");
    let pace = |n: u64, per_s: u64, f: &mut dyn FnMut(u64)| {
        let start = std::time::Instant::now();
        for i in 0..n {
            f(i);
            let due = std::time::Duration::from_micros(i * 1_000_000 / per_s);
            if let Some(d) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(d);
            }
        }
    };
    // 3 s steady at 100/s, 1.5 s burst at 400/s (plus steady on the side
    // at the same pace), 3 s steady.
    pace(300, 100, &mut |i| steady.get(&format!("k{}", i % 20)));
    let mut burst = Client::connect(port);
    let burst_n = 600u64;
    std::thread::scope(|s| {
        s.spawn(|| pace(burst_n, 400, &mut |_| burst.get("hot")));
        pace(150, 100, &mut |i| steady.get(&format!("k{}", i % 20)));
    });
    pace(300, 100, &mut |i| steady.get(&format!("k{}", i % 20)));
    // A client asking for absent keys (300/s beside 100 hits/s: 25 % hits).
    let mut misser = Client::connect(port);
    std::thread::scope(|s| {
        s.spawn(|| pace(450, 300, &mut |i| misser.get(&format!("absent{i}"))));
        pace(150, 100, &mut |i| steady.get(&format!("k{}", i % 20)));
    });
    pace(300, 100, &mut |i| steady.get(&format!("k{}", i % 20)));
    // The events and metrics while it runs.
    let (st, _, events) = common::http_get(&addr, "/api/events", None);
    assert_eq!(st, 200);
    let events: Value = serde_json::from_str(&events).unwrap();
    let kinds: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    let server = target.clone();
    assert_eq!(
        kinds,
        vec![
            ("fired".to_string(), "hot".to_string()),
            ("cleared".to_string(), "hot".to_string()),
            ("fired".to_string(), server.clone()),
            ("cleared".to_string(), server),
        ]
    );
    let (_, _, metrics) = common::http_get(&addr, "/metrics", None);
    for line in [
        "memtap_trigger_firings_total{trigger=\"hot-key\"} 1\n",
        "memtap_trigger_firings_total{trigger=\"misses\"} 1\n",
        "memtap_triggers_active{trigger=\"hot-key\"} 0\n",
        "memtap_trigger_snippets_total{result=\"written\"} ",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // Let the snippet's `after` pass, then stop.
    std::thread::sleep(std::time::Duration::from_secs(2));
    common::signal(child, "INT");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let err = err_thread.join().unwrap();
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        r["triggers"]["firings"],
        serde_json::json!([["hot-key", 1], ["misses", 1]]),
        "{err}"
    );
    assert_eq!(r["triggers"]["snippets_written"], 1, "{err}");
    let files: Vec<PathBuf> = std::fs::read_dir(&snips)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    // The whole burst lies within [fired - 6 s, fired + 4 s], and so does
    // the `set hot` on the steady connection (about 4 s before firing):
    // both connections carried the key, so both are in the snippet.
    let o = Command::new(BIN)
        .args(["replay", "-f", "json", "-t", &target])
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(o.status.success());
    let snip: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(key_requests(&snip, "hot"), burst_n + 1, "{err}");
}

/// With `--store`, events go to the history: `memtap report --store URL
/// events` lists them, and the history page marks them on its charts'
/// time axis (checked in headless Chromium).
#[test]
fn stored_events_are_listed_and_marked_on_the_history_page() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("burst.pcap");
    build(&cap);
    let spool = dir.path().join("spool");
    let cfg = config(
        dir.path(),
        &format!("\n[store]\nspool_dir = \"{}\"\n", spool.display()),
    );
    let url = format!("sqlite:{}", dir.path().join("h.db").display());
    let (r, err) = replay(
        &[
            "-c",
            cfg.to_str().unwrap(),
            "--window",
            "1s",
            "--store",
            &url,
            "--sniffer",
            "box1",
        ],
        &cap,
    );
    assert_eq!(events(&r).len(), 4, "{err}");
    let o = Command::new(BIN)
        .args(["report", "--store", &url, "--format", "json", "events"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stored: Value = serde_json::from_slice(&o.stdout).unwrap();
    let got: Vec<(String, String, String, String, u64, f64)> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["sniffer"].as_str().unwrap().into(),
                e["trigger"].as_str().unwrap().into(),
                e["event"].as_str().unwrap().into(),
                e["subject"].as_str().unwrap().into(),
                (e["ts_ns"].as_u64().unwrap() - T0) / S,
                e["threshold"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "box1".into(),
                "hot-key".into(),
                "fired".into(),
                "hot".into(),
                11,
                50.0
            ),
            (
                "box1".into(),
                "hot-key".into(),
                "cleared".into(),
                "hot".into(),
                17,
                50.0
            ),
            (
                "box1".into(),
                "misses".into(),
                "fired".into(),
                "10.0.0.1:11211".into(),
                21,
                50.0
            ),
            (
                "box1".into(),
                "misses".into(),
                "cleared".into(),
                "10.0.0.1:11211".into(),
                27,
                50.0
            ),
        ]
    );
    let first = &stored["events"][0];
    assert_eq!(first["value"], 66.67);
    assert_eq!(first["metric"], "key_share_pct");
    let text = Command::new(BIN)
        .args(["report", "--store", &url, "events"])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("hot-key          fired    key      hot"),
        "{text}"
    );

    let Some(chrome) = common::browser::chromium() else {
        return;
    };
    let mut srv = Command::new(BIN)
        .args(["serve", "--store", &url, "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(srv.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let srv = common::server::Proc(srv);
    let at = line.find("http://").expect(&line);
    let base = line[at..].trim().trim_end_matches('/').to_string();
    let profile = tempfile::tempdir().unwrap();
    let dom = common::browser::browse(
        chrome,
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("{base}/"),
    );
    // A screenshot with the pointer on the first event, as a test artifact.
    let art = common::repo().join("target/test-artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let shot = art.join("history-events.png");
    let _ = std::fs::remove_file(&shot);
    common::browser::browse(
        chrome,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1100",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ],
        &format!("{base}/#at={}", (T0 + 12 * S) / 1_000_000_000),
    );
    assert!(std::fs::read(&shot)
        .expect("screenshot")
        .starts_with(b"\x89PNG"));
    drop(srv);
    // The chart script placed each event on the time axis (data-px: its
    // pixel, empty when out of view).
    let start = dom.find("id=\"chart-rate\"").expect("the rate chart");
    let end = start + dom[start..].find("</figure>").unwrap();
    let re = regex::Regex::new(
        r#"<div class="mt-event event" data-x="([^"]*)" title="([^"]*)"[^>]*data-px="([^"]*)""#,
    )
    .unwrap();
    let found: Vec<(f64, String, f64)> = re
        .captures_iter(&dom[start..end])
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].to_string(),
                c[3].parse().unwrap(),
            )
        })
        .collect();
    let marks: Vec<f64> = found.iter().map(|m| m.0).collect();
    let want: Vec<f64> = [11u64, 17, 21, 27]
        .iter()
        .map(|s| ((T0 + s * S) / 1_000_000_000) as f64)
        .collect();
    // Later events further right.
    assert!(found.windows(2).all(|w| w[0].2 < w[1].2), "{found:?}");
    assert_eq!(marks, want);
    assert!(
        found[0]
            .1
            .starts_with("box1 hot-key fired: key hot key_share_pct = 66.67 (threshold 50) at "),
        "event title {found:?}"
    );
}

/// SIGHUP reloads the rules: a rule whose threshold is lowered fires on
/// the same traffic; a bad rule is refused in one line and the running
/// rules stay.
#[test]
fn sighup_reloads_rules_and_refuses_a_bad_one() {
    if !common::server::is_root() || Command::new("memcached").arg("-h").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with memcached"
        );
        eprintln!("skipping: needs root and memcached");
        return;
    }
    let port = common::server::free_port();
    let _mc = common::server::memcached(port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("reload.toml");
    let rule = |above: &str| {
        format!(
            "[[trigger]]\nname = \"rate\"\nmetric = \"key_requests_per_s\"\nabove = {above}\nwindow = \"1s\"\n"
        )
    };
    std::fs::write(&cfg, rule("100000.0")).unwrap();
    let target = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args([
            "capture",
            "-i",
            "lo",
            "--workers",
            "1",
            "--no-listen",
            "-t",
            &target,
        ])
        .args(["--format", "json", "-c", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = common::server::Proc(child);
    let child = &mut guard.0;
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut wait_for = |prefix: &str| -> String {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "capture exited:\n{seen}"
            );
            seen.push_str(&line);
            if line.starts_with(prefix) {
                return line;
            }
        }
    };
    wait_for("memtap: capturing on");
    let mut c = Client::connect(port);
    c.set("k");
    let drive = |c: &mut Client| {
        for _ in 0..300 {
            c.get("k");
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    };
    drive(&mut c);
    std::fs::write(&cfg, rule("50.0")).unwrap();
    common::signal(child, "HUP");
    wait_for("memtap: config reloaded");
    drive(&mut c);
    let fired = wait_for("memtap: trigger rate fired");
    assert!(fired.contains("key k key_requests_per_s = "), "{fired}");
    std::fs::write(&cfg, rule("50.0") + "clear = 90.0\n").unwrap();
    common::signal(child, "HUP");
    let refused = wait_for("memtap: reload failed");
    assert_eq!(
        refused.trim_end(),
        format!(
            "memtap: reload failed, keeping the running config: config {}: trigger \"rate\": `clear` = 90 must be at or below the threshold 50 (hysteresis)",
            cfg.display()
        )
    );
    common::signal(child, "INT");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["triggers"]["firings"], serde_json::json!([["rate", 1]]));
}
