//! Faults a production box meets, each made for real and once per test:
//! a store on a full tmpfs, a PostgreSQL stopped under a live capture, a
//! webhook that never answers, a command that prints or leaves children
//! behind, a snippet directory that fills, unwritable output paths, an
//! interface deleted and made again (a veth pair with one end in a network
//! namespace), and many half-sent HTTP requests. Each asserts that the
//! report is complete and equals the fault-free run's, that nothing goes
//! into the wrong store, that every drop is counted, that /healthz says
//! what happened, and that memtap exits within its stated bound.
//!
//! Needs root (mounts, namespaces, PostgreSQL as `postgres`); skips with
//! the reason elsewhere, except in CI, which must run them.

mod common;
mod pg;
#[path = "common/tcp_conv.rs"]
mod tcp_conv;

use common::server::{free_port, is_root};
use common::PcapOut;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tcp_conv::Conn;

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const S: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * S;
const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 11211);

fn ready(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CI must run the fault tests as root"
    );
    eprintln!("skipping {test}: needs root");
    false
}

/// `clients` clients, each with its own connection, asking 20 gets a
/// second for `secs` seconds of packet time, every other one a hit.
/// Returns the requests written.
fn build(path: &Path, clients: u8, secs: u64) -> u64 {
    build_at(path, clients, secs, T0)
}

/// `build` starting at `t0` (captures whose intervals never meet).
fn build_at(path: &Path, clients: u8, secs: u64, t0: u64) -> u64 {
    let mut out = PcapOut::new();
    let mut conns: Vec<Conn> = (0..clients)
        .map(|c| {
            Conn::open(
                &mut out,
                t0 + c as u64 * 1000,
                (Ipv4Addr::new(10, 1, 0, c + 2), 40000 + c as u16),
                SERVER,
            )
        })
        .collect();
    let mut n = 0;
    for ms in (0..secs * 1000).step_by(50) {
        for (c, conn) in conns.iter_mut().enumerate() {
            let ts = t0 + S / 10 + ms * 1_000_000 + c as u64 * 10_000;
            let key = format!("k{c}-{}", ms % 400);
            let req = format!("get {key}\r\n");
            let resp = if (ms / 50) % 2 == 0 {
                format!("VALUE {key} 0 2\r\nxx\r\nEND\r\n")
            } else {
                "END\r\n".to_string()
            };
            conn.exchange(&mut out, ts, ts + 100_000, req.as_bytes(), resp.as_bytes());
            n += 1;
        }
    }
    out.write(path);
    n
}

fn config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("memtap.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// Every client firing once: 10 requests a second per client is above 5.
const RULE: &str = r#"
[[trigger]]
name = "busy"
metric = "client_requests_per_s"
above = 5.0
clear = 1.0
window = "1s"
"#;

fn replay(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let o = Command::new(BIN)
        .args([
            "replay",
            "-f",
            "json",
            "--workers",
            "2",
            "--collectors",
            "2",
            "-t",
            "10.0.0.1:11211",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (o, t.elapsed())
}

fn report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the report ({e}): {:?}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout[..o.stdout.len().min(200)]),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The report without what the actions did (which is what a fault
/// changes): the traffic figures must be the fault-free run's.
fn traffic(r: &Value) -> Value {
    let mut r = r.clone();
    if let Some(t) = r.get_mut("triggers").and_then(|t| t.as_object_mut()) {
        for k in [
            "webhooks_sent",
            "webhooks_failed",
            "commands_run",
            "commands_failed",
            "actions_dropped",
            "actions_abandoned",
            "actions_pending",
            "snippets_written",
            "snippet_bytes",
            "snippet_errors",
            "snippets_over_quota",
            "files",
            "ring_frames",
            "ring_evicted",
        ] {
            t.remove(k);
        }
    }
    r
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, opts: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs {opts}");
        Tmpfs(at.to_path_buf())
    }

    /// Fills what is left with a file (removed with `free`).
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let buf = vec![0u8; 4096];
        while f.write_all(&buf).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn history(url: &str) -> Value {
    let o = Command::new(BIN)
        .args(["report", "-f", "json", "--store", url])
        .output()
        .unwrap();
    assert!(o.status.success(), "report: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("memtap-spool") && n.contains(".jsonl"))
        .collect();
    v.sort();
    v
}

/// Fault 1 and 2 (replay): the store's disk is full. The report comes out
/// whole and on time; the intervals wait in a spool that belongs to that
/// store: a run into another store does not take them, and the next run
/// into the first store writes them once.
#[test]
fn a_full_store_disk_costs_neither_the_report_nor_another_store() {
    if !ready("full_store") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    let other_cap = dir.path().join("b.pcap");
    let n = build(&cap, 3, 8);
    let m = build_at(&other_cap, 1, 3, T0 + 3600 * S);
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[store]\nspool_dir = \"{}\"\nflush_timeout = \"1s\"\nsniffer = \"s1\"\n",
            spool.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let (clean, _) = replay(&["-c", cfg, "--window", "1s", cap.to_str().unwrap()]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    let clean = report(&clean);
    assert_eq!(clean["totals"]["requests"], n);

    let small = Tmpfs::mount(&dir.path().join("small"), "size=2m");
    let url = format!("sqlite:{}/h.db", small.0.display());
    // The store exists (made by a first, tiny run), then its disk fills.
    let (o, _) = replay(&[
        "-c",
        cfg,
        "--window",
        "1s",
        "--store",
        &url,
        other_cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    small.fill();
    let (o, took) = replay(&[
        "-c",
        cfg,
        "--window",
        "1s",
        "--store",
        &url,
        cap.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "all spooled, nothing lost: {err}");
    assert_eq!(report(&o), clean, "the report is the fault-free one");
    assert!(
        took < Duration::from_secs(6),
        "flush_timeout bounds it: {took:?}"
    );
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains("for the next run"), "{err}");
    assert_eq!(spool_files(&spool).len(), 1, "{:?}", spool_files(&spool));

    // Another store, same sniffer and spool directory: gets only its own.
    let other = format!("sqlite:{}/other.db", dir.path().display());
    let (o, _) = replay(&[
        "-c",
        cfg,
        "--window",
        "1s",
        "--store",
        &other,
        other_cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let h = history(&other);
    assert_eq!(h["totals"]["requests"], m);
    assert_eq!(h["capture"]["files"].as_array().unwrap().len(), 1);
    assert_eq!(
        spool_files(&spool).len(),
        1,
        "the spool is left for its store"
    );

    // Space again: the next run into the full store writes the spool, and
    // the same capture once more (idempotent) adds nothing twice.
    small.free();
    let (o, _) = replay(&[
        "-c",
        cfg,
        "--window",
        "1s",
        "--store",
        &url,
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(spool_files(&spool).is_empty(), "{:?}", spool_files(&spool));
    let h = history(&url);
    assert_eq!(h["totals"]["requests"], n + m);
}

/// `replay ARGS --serve`: its /metrics once the replay is done, then
/// SIGINT; with the exit status and the log.
fn replay_served(args: &[&str]) -> (String, std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .args([
            "replay",
            "-f",
            "json",
            "--workers",
            "2",
            "--collectors",
            "2",
            "-t",
            "10.0.0.1:11211",
            "--serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, log) = common::wait_for_listener(&mut child);
    // 503 until the replay (and the store's part) is done.
    let t = Instant::now();
    let metrics = loop {
        let (code, _, body) = common::http_get(&addr, "/metrics", None);
        if code == 200 {
            break body;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{code}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    common::signal(&child, "INT");
    let st = child.wait().unwrap();
    (metrics, st, log.join().unwrap())
}

/// A sample's value on /metrics (a family without labels).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Items in a spool file (its first line is the header) and its bytes.
fn spooled(dir: &Path) -> (u64, u64) {
    let files = spool_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let p = dir.join(&files[0]);
    let text = std::fs::read_to_string(&p).unwrap();
    (text.lines().count() as u64 - 1, text.len() as u64)
}

/// The store is down and the spool reaches `store.spool_max`: what does
/// not fit is shed, and /metrics says exactly how much, beside what waits
/// in the spool (backlog and bytes); the exit status says data was lost.
#[test]
fn a_full_spool_sheds_and_metrics_count_it() {
    if !ready("spool_shed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 3, 120);
    // A database that is down: nothing listens on its port.
    let url = format!("postgres://memtap@127.0.0.1:{}/x", free_port());
    let run = |name: &str, max: &str| {
        let spool = dir.path().join(name);
        std::fs::create_dir(&spool).unwrap();
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[store]\nspool_dir = \"{}\"\nflush_timeout = \"1s\"\nsniffer = \"s1\"\nspool_max = \"{max}\"\n",
                spool.display()
            ),
        )
        .unwrap();
        let (m, st, log) = replay_served(&[
            "-c",
            cfg.to_str().unwrap(),
            "--window",
            "1s",
            "--store",
            &url,
            cap.to_str().unwrap(),
        ]);
        (m, st, log, spool)
    };
    // Room for all: the number of items the run spools.
    let (m, st, log, spool) = run("all", "256MiB");
    assert!(st.success(), "{log}");
    let (all, bytes) = spooled(&spool);
    assert!(all > 100, "{all}");
    assert_eq!(metric(&m, "memtap_store_backlog"), all);
    assert_eq!(metric(&m, "memtap_store_spool_bytes"), bytes);
    assert_eq!(metric(&m, "memtap_store_shed_total"), 0);
    assert_eq!(metric(&m, "memtap_store_spool_foreign_total"), 0);
    assert_eq!(metric(&m, "memtap_store_lost_total"), 0);
    // 1 MiB holds about half of them (each interval is ~20 KB).
    let (m, st, log, spool) = run("small", "1MiB");
    assert!(!st.success(), "shed is lost: {log}");
    let (kept, bytes) = spooled(&spool);
    assert!(kept > 0 && kept < all, "{kept} of {all}");
    assert!(bytes <= 1 << 20, "{bytes}");
    assert_eq!(metric(&m, "memtap_store_backlog"), kept);
    assert_eq!(metric(&m, "memtap_store_spool_bytes"), bytes);
    assert_eq!(metric(&m, "memtap_store_shed_total"), all - kept, "{log}");
    assert_eq!(metric(&m, "memtap_store_lost_total"), 0);
    assert!(log.contains("intervals are shed from now on"), "{log}");
    assert!(
        log.contains(&format!("({} items lost in all)", all - kept)),
        "{log}"
    );
}

/// A spool made for a store that was since re-created at the same path
/// (a new creation id) is set aside, counted, never written into it.
#[test]
fn a_spool_of_an_earlier_store_at_the_same_path_is_set_aside() {
    if !ready("foreign_spool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    let n = build(&cap, 2, 3);
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[store]\nspool_dir = \"{}\"\nflush_timeout = \"1s\"\nsniffer = \"s1\"\n",
            spool.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let small = Tmpfs::mount(&dir.path().join("small"), "size=2m");
    let url = format!("sqlite:{}/h.db", small.0.display());
    let args = |u: &str| -> Vec<String> {
        [
            "-c",
            cfg,
            "--window",
            "1s",
            "--store",
            u,
            cap.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let a = args(&url);
    let (o, _) = replay(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    small.fill();
    let (o, _) = replay(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(spool_files(&spool).len(), 1);
    // The store is replaced by a new one at the same path.
    small.free();
    for f in std::fs::read_dir(&small.0).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    let (aside, _) = spooled(&spool);
    let (m, st, err) = replay_served(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(st.success(), "{err}");
    assert!(err.contains("belong to an earlier store"), "{err}");
    // Every item of the old spool is counted as set aside; nothing waits.
    assert_eq!(metric(&m, "memtap_store_spool_foreign_total"), aside);
    assert_eq!(metric(&m, "memtap_store_backlog"), 0);
    assert_eq!(metric(&m, "memtap_store_spool_bytes"), 0);
    assert_eq!(metric(&m, "memtap_store_shed_total"), 0);
    assert_eq!(metric(&m, "memtap_store_lost_total"), 0);
    let files = spool_files(&spool);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains(".foreign-"), "{files:?}");
    assert_eq!(history(&url)["totals"]["requests"], n, "written once");
}

/// A webhook that accepts and never answers, beside one that answers: the
/// answering one gets every event (the hung target holds only itself), the
/// run exits within webhook and drain timeouts, and every action of the
/// hung target is counted (failed, dropped or abandoned).
#[test]
fn a_hung_webhook_holds_neither_the_others_nor_the_exit() {
    if !ready("hung_webhook") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 12, 4);
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in hung.incoming().take(64) {
            keep.push(s);
        }
    });
    let ok = TcpListener::bind("127.0.0.1:0").unwrap();
    let ok_addr = ok.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in ok.incoming() {
            let Ok(mut s) = s else { break };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(());
        }
    });
    let plain = config(dir.path(), RULE);
    let (clean, _) = replay(&["-c", plain.to_str().unwrap(), cap.to_str().unwrap()]);
    let clean = report(&clean);
    let events = clean["triggers"]["events"].as_array().unwrap().len() as u64;
    assert!(events >= 12, "{events}");
    let cfg = dir.path().join("hooks.toml");
    std::fs::write(
        &cfg,
        format!(
            "{RULE}webhook = \"http://{hung_addr}/hook\"\n\n[[trigger]]\nname = \"busy2\"\nmetric = \"client_requests_per_s\"\nabove = 5.0\nclear = 1.0\nwindow = \"1s\"\nwebhook = \"http://{ok_addr}/hook\"\n\n[recorder]\nwebhook_timeout = \"1s\"\n\n[actions]\ndrain_timeout = \"1s\"\nqueue_len = 16\n"
        ),
    )
    .unwrap();
    let (o, took) = replay(&["-c", cfg.to_str().unwrap(), cap.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(took < Duration::from_secs(8), "{took:?}: {err}");
    let r = report(&o);
    let t = &r["triggers"];
    let u = |k: &str| t[k].as_u64().unwrap();
    // Both rules fire alike: twice the events of one.
    assert_eq!(t["events"].as_array().unwrap().len() as u64, 2 * events);
    // The report does not wait for the actions: what was still queued or
    // running then is `actions_pending`; the rest is counted already.
    assert_eq!(u("actions_abandoned"), 0, "counted after the report: {t}");
    assert_eq!(
        u("webhooks_sent") + u("webhooks_failed") + u("actions_dropped") + u("actions_pending"),
        2 * events,
        "every action is counted: {t}"
    );
    assert!(u("actions_pending") > 0, "the hung one at least: {t}");
    // After the report, within the drain, the answering target gets every
    // event; the hung one's pending actions are abandoned, counted on the
    // log.
    let abandoned = abandoned_in(&err);
    assert!(abandoned >= 1 && abandoned <= u("actions_pending"), "{err}");
    let mut got = 0;
    while rx.try_recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, events, "{err}");
    assert!(
        u("webhooks_failed") + u("actions_dropped") + abandoned <= events,
        "only the hung target's: {t}\n{err}"
    );
    // The traffic figures are the fault-free run's.
    let mut a = traffic(&r);
    let mut b = traffic(&clean);
    for v in [&mut a, &mut b] {
        v["triggers"].as_object_mut().unwrap().remove("events");
        v["triggers"].as_object_mut().unwrap().remove("firings");
        v["triggers"].as_object_mut().unwrap().remove("active");
        v["triggers"].as_object_mut().unwrap().remove("cleared");
    }
    assert_eq!(a, b);
    drop(held);
}

/// The count on the log line of actions abandoned at exit (0 if none).
fn abandoned_in(log: &str) -> u64 {
    log.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("memtap: warning: actions: ")?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("still queued or running after actions.drain_timeout")
                .then(|| n.parse().unwrap())
        })
        .unwrap_or(0)
}

/// Reads a child's standard output as it comes: the text, and when its
/// last line arrived (the report is written at once, as a whole).
fn timed_stdout(child: &mut std::process::Child) -> std::thread::JoinHandle<(String, Instant)> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(out);
        let mut text = String::new();
        let mut last = Instant::now();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return (text, last);
            }
            last = Instant::now();
            text.push_str(&line);
        }
    })
}

/// A loopback webhook that accepts and never answers (the connections are
/// held until the test ends).
fn hung_webhook() -> std::net::SocketAddr {
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hung.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in hung.incoming() {
            keep.push(s);
        }
    });
    addr
}

/// A replay whose only webhook never answers: the report is on standard
/// output before the actions' grace starts, with the actions still pending
/// then; the exit follows within `drain_timeout`, the abandoned counted.
#[test]
fn the_report_of_a_replay_does_not_wait_for_a_hung_webhook() {
    if !ready("report_first_replay") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 2, 3);
    let plain = config(dir.path(), RULE);
    let (clean, _) = replay(&["-c", plain.to_str().unwrap(), cap.to_str().unwrap()]);
    let events = report(&clean)["triggers"]["events"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert!(events >= 2, "{events}");
    let hook = hung_webhook();
    // The webhook's own timeout is far off: only the drain ends them.
    let cfg = config(
        dir.path(),
        &format!(
            "{RULE}webhook = \"http://{hook}/hook\"\n\n[recorder]\nwebhook_timeout = \"60s\"\n\n[actions]\ndrain_timeout = \"3s\"\n"
        ),
    );
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(["replay", "-f", "json", "-t", "10.0.0.1:11211", "-c"])
        .arg(&cfg)
        .arg(&cap)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = timed_stdout(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let st = child.wait().unwrap();
    let exited = Instant::now();
    let (text, reported) = out.join().unwrap();
    assert!(st.success(), "{err}");
    let gap = exited - reported;
    assert!(
        gap >= Duration::from_millis(2500),
        "the report came {gap:?} before the exit, not before the 3 s drain: {err}"
    );
    assert!(
        exited - start < Duration::from_secs(8),
        "{:?}: {err}",
        exited - start
    );
    let r: Value = serde_json::from_str(&text).unwrap();
    let t = &r["triggers"];
    assert_eq!(t["events"].as_array().unwrap().len() as u64, events);
    // One webhook per event, none done when the report was written.
    assert_eq!(t["actions_pending"], events, "{t}");
    assert_eq!(t["webhooks_sent"], 0);
    assert_eq!(t["webhooks_failed"], 0);
    assert_eq!(t["actions_dropped"], 0);
    assert_eq!(t["actions_abandoned"], 0);
    assert_eq!(abandoned_in(&err), events, "{err}");
    assert!(
        err.contains("actions.drain_timeout (3s): abandoned"),
        "{err}"
    );
}

/// The same for a live capture on lo stopped by SIGINT, its report in
/// text: the report (with the pending actions in its Triggers section)
/// is out before the drain, the exit within it.
#[test]
fn the_report_of_a_capture_does_not_wait_for_a_hung_webhook() {
    if !ready("report_first_capture") {
        return;
    }
    let port = free_port();
    let _mc = common::server::memcached(port);
    let dir = tempfile::tempdir().unwrap();
    let hook = hung_webhook();
    let cfg = config(
        dir.path(),
        &format!(
            "{RULE}webhook = \"http://{hook}/hook\"\n\n[recorder]\nwebhook_timeout = \"60s\"\n\n[actions]\ndrain_timeout = \"3s\"\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["capture", "-i", "lo", "--workers", "1", "-f", "text"])
        .args(["--listen", "127.0.0.1:0", "-t"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-c")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_addr, log) = common::wait_for_listener(&mut child);
    let out = timed_stdout(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    // 20 gets a second for 3 s: the client fires.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..60 {
        write!(c, "get k{i}\r\n").unwrap();
        let _ = c.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let stop = Instant::now();
    common::signal(&child, "INT");
    let st = child.wait().unwrap();
    let exited = Instant::now();
    let (text, reported) = out.join().unwrap();
    let log = log.join().unwrap();
    assert!(st.success(), "{log}");
    let row = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` row:\n{text}"))
    };
    let pending = row("actions pending at the report");
    assert!(pending >= 1, "{text}");
    assert_eq!(pending, row("events"), "one hung webhook per event");
    assert_eq!(row("webhooks sent"), 0);
    assert_eq!(abandoned_in(&log), pending, "{log}");
    let gap = exited - reported;
    assert!(
        gap >= Duration::from_millis(2500),
        "the report came {gap:?} before the exit: {log}"
    );
    assert!(
        exited - stop < Duration::from_secs(6),
        "{:?}: {log}",
        exited - stop
    );
}

/// A command's output goes to memtap's log, not into the report on
/// standard output; one that outlives its timeout is killed with its
/// children (its whole process group).
#[test]
fn commands_print_to_the_log_and_die_whole_on_timeout() {
    if !ready("commands") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 1, 3);
    let pids = dir.path().join("pids");
    let cfg = config(
        dir.path(),
        &format!(
            "{RULE}command = \"echo to-stdout-$MEMTAP_EVENT; echo to-stderr >&2; sleep 300 & echo $! >> {}; wait\"\n\n[recorder]\ncommand_timeout = \"1s\"\n\n[actions]\ndrain_timeout = \"5s\"\n",
            pids.display()
        ),
    );
    let (o, took) = replay(&["-c", cfg.to_str().unwrap(), cap.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let r = report(&o);
    assert!(err.contains("to-stdout-fired"), "{err}");
    assert!(err.contains("to-stderr"), "{err}");
    let t = &r["triggers"];
    let events = t["events"].as_array().unwrap().len() as u64;
    // The report did not wait for them; each was killed at its timeout,
    // within the drain after the report (none abandoned).
    assert_eq!(
        t["commands_failed"].as_u64().unwrap() + t["actions_pending"].as_u64().unwrap(),
        events,
        "{t}"
    );
    assert_eq!(t["actions_abandoned"], 0);
    assert_eq!(abandoned_in(&err), 0, "{err}");
    assert_eq!(
        err.matches("command killed after 1s (its whole process group)")
            .count() as u64,
        events,
        "{err}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    let list = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<&str> = list.lines().collect();
    assert_eq!(pids.len() as u64, events);
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .unwrap_or_default()
                    .contains(") Z "),
            "the command's child {p} outlived it"
        );
    }
}

/// Snippets on a disk that fills: each is whole or absent, never a cut or
/// empty file; the failures are counted.
#[test]
fn a_full_snippet_disk_leaves_no_partial_file() {
    if !ready("snippets_full") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 6, 4);
    let snips = Tmpfs::mount(&dir.path().join("snips"), "size=64k");
    let cfg = config(
        dir.path(),
        &format!(
            "{RULE}before = \"1s\"\nafter = \"1s\"\n\n[recorder]\ndir = \"{}\"\n",
            snips.0.display()
        ),
    );
    let (o, _) = replay(&["-c", cfg.to_str().unwrap(), cap.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let t = report(&o)["triggers"].clone();
    let written = t["snippets_written"].as_u64().unwrap();
    let errors = t["snippet_errors"].as_u64().unwrap();
    assert!(errors > 0, "the disk filled: {t}");
    assert_eq!(written + errors, 6, "one snippet per firing: {t}");
    let files: Vec<(String, u64)> = std::fs::read_dir(&snips.0)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(files.len() as u64, written, "{files:?}");
    for (name, len) in &files {
        assert!(
            name.ends_with(".pcapng") && !name.starts_with('.'),
            "{name}"
        );
        assert!(*len > 0, "{name} is empty");
        let r = Command::new(BIN)
            .args(["replay", "-q", "-f", "json", "-t", "10.0.0.1:11211"])
            .arg(snips.0.join(name))
            .output()
            .unwrap();
        assert!(r.status.success(), "{name} reads whole: {}", stderr(&r));
    }
    assert!(err.contains("partial file removed"), "{err}");
}

/// Output paths that cannot be written are refused at start, with a line
/// saying why, before any capture.
#[test]
fn unwritable_outputs_are_refused_at_start() {
    if !ready("outputs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let start = |args: &[&str]| {
        let t = Instant::now();
        let o = Command::new(BIN)
            .args(["capture", "-i", "lo", "--no-listen", "-t", "127.0.0.1:1"])
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(t.elapsed() < Duration::from_secs(5));
        stderr(&o)
    };
    let e = start(&["--report-file", "/nonexistent/dir/r.json"]);
    assert!(
        e.contains("--report-file directory /nonexistent/dir: no such directory"),
        "{e}"
    );
    let ro = Tmpfs::mount(&dir.path().join("ro"), "ro,size=1m");
    let rf = ro.0.join("r.json");
    let e = start(&["--report-file", rf.to_str().unwrap()]);
    assert!(e.contains("not writable"), "{e}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let cfg = config(dir.path(), RULE);
    let e = start(&[
        "-c",
        cfg.to_str().unwrap(),
        "--trigger-dir",
        file.to_str().unwrap(),
    ]);
    assert!(e.contains("is a file, not a directory"), "{e}");
    let e = start(&[
        "-c",
        cfg.to_str().unwrap(),
        "--trigger-dir",
        ro.0.to_str().unwrap(),
    ]);
    assert!(
        e.contains("trigger directory") && e.contains("not writable"),
        "{e}"
    );
}

/// `replay CAP --serve -c CFG`, done and with no connection of its own
/// left open: ready for a flood. (child, address, log reader)
fn serve_for_flood(
    cap: &std::path::Path,
    cfg: &std::path::Path,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(BIN)
        .args([
            "replay",
            "-q",
            "-f",
            "json",
            "-t",
            "10.0.0.1:11211",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "-c",
        ])
        .arg(cfg)
        .arg(cap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, log) = common::wait_for_listener(&mut child);
    assert_eq!(wait_health(&addr, 200).0, 200, "the replay is done");
    // The health checks' connections are gone before the flood (else the
    // flood may count one of them among those it closed).
    std::thread::sleep(Duration::from_millis(300));
    (child, addr, log)
}

/// Many half-sent requests: they are cut at the header timeout, the
/// excess over the cap closes the oldest (logged), and /metrics answers.
#[test]
fn half_sent_requests_are_cut_and_capped() {
    if !ready("http_abuse") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 1, 2);
    let cfg = config(
        dir.path(),
        "[http]\nmax_connections = 20\nheader_timeout = \"500ms\"\n",
    );
    let (mut child, addr, log) = serve_for_flood(&cap, &cfg);
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    // All 200 are closed by memtap: 180 for newer ones, 20 at the header
    // timeout.
    let t = Instant::now();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 512];
        let n = s.read(&mut b).unwrap_or(0);
        // Closed, or a 408 before closing: never a hang.
        assert!(n == 0 || b.starts_with(b"HTTP/1.1 408"), "{n}");
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let (code, _, body) = common::http_get(&addr, "/metrics", None);
    assert_eq!(code, 200);
    assert!(body.contains("memtap_requests_total"));
    // Each of the 200 closed by memtap is counted once, by why: at least
    // the last 20 (holding the slots) at the header timeout (more when
    // opening them took longer than it).
    assert!(closed(&body, "header_timeout") >= 20, "{body}");
    assert_eq!(closed(&body, "refused"), 0, "none was busy: {body}");
    assert_eq!(
        closed(&body, "evicted") + closed(&body, "refused") + closed(&body, "header_timeout"),
        200,
        "{body}"
    );
    // A head over the size limit is refused.
    let mut s = TcpStream::connect(&addr).unwrap();
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let _ = s.write_all(big.as_bytes());
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = Vec::new();
    let _ = s.read_to_end(&mut b);
    assert!(
        b.is_empty() || b.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    common::signal(&child, "INT");
    assert!(child.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(
        log.contains(
            "connections open (http.max_connections): the oldest idle ones are closed for new ones"
        ),
        "{log}"
    );
    assert!(
        log.contains("idle connections closed for newer ones"),
        "{log}"
    );
}

/// A labelled sample's value on /metrics.
fn closed(text: &str, reason: &str) -> u64 {
    metric(
        text,
        &format!("memtap_http_connections_closed_total{{reason=\"{reason}\"}}"),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A flood of idle half-sent connections, far past http.max_connections
/// and held open: a real scrape is still answered at once (it closes the
/// oldest idle one), again and again, long before the header timeout;
/// every flood connection memtap closed is counted on /metrics; memory
/// stays at its baseline during and after.
#[test]
fn a_flood_of_idle_connections_never_keeps_a_scrape_out() {
    if !ready("http_flood") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("a.pcap");
    build(&cap, 1, 2);
    let cfg = config(
        dir.path(),
        "[http]\nmax_connections = 16\nheader_timeout = \"20s\"\n",
    );
    let (mut child, addr, log) = serve_for_flood(&cap, &cfg);
    let pid = child.id();
    let base = rss_kib(pid);
    const FLOOD: usize = 400;
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Let memtap take them all from the kernel's queue.
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let (code, _, body) = common::http_get(&addr, "/metrics", None);
        slowest = slowest.max(t.elapsed());
        assert_eq!(code, 200);
        assert!(body.contains("memtap_requests_total"));
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a scrape waited {slowest:?} (header timeout 20 s)"
    );
    let during = rss_kib(pid);
    // Which flood connections memtap closed: the rest are still open.
    std::thread::sleep(Duration::from_millis(300));
    let mut open = 0;
    for mut s in &flood {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 16];
        if matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            open += 1;
        }
    }
    // The newest 16 held the slots; the first scrape closed the oldest of
    // them; a later one closes another only if it comes before the slot
    // of the one before it is given back.
    assert!((11..=15).contains(&open), "{open} flood connections open");
    let (_, _, m2) = common::http_get(&addr, "/metrics", None);
    // None was busy: every one closed was evicted, none refused.
    assert_eq!(closed(&m2, "evicted"), (FLOOD - open) as u64, "{m2}");
    assert_eq!(closed(&m2, "refused"), 0);
    assert_eq!(closed(&m2, "header_timeout"), 0);
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    eprintln!(
        "RSS before {base} KiB, during {during} KiB, after {after} KiB; slowest scrape {slowest:?}"
    );
    for (when, kib) in [("during", during), ("after", after)] {
        assert!(
            kib < base + 16 * 1024,
            "RSS {when} the flood: {kib} KiB, before {base} KiB"
        );
    }
    common::signal(&child, "INT");
    assert!(child.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(
        log.contains("the oldest idle ones are closed for new ones"),
        "{log}"
    );
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A veth pair, memtap's end in this namespace, the other in `ns`.
fn veth(ns: &str, a: &str, b: &str) {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ip(&["link", "set", b, "netns", ns]);
    ip(&["addr", "add", "10.77.0.1/24", "dev", a]);
    ip(&["link", "set", a, "up"]);
    ip(&[
        "netns",
        "exec",
        ns,
        "ip",
        "addr",
        "add",
        "10.77.0.2/24",
        "dev",
        b,
    ]);
    ip(&["netns", "exec", ns, "ip", "link", "set", b, "up"]);
}

/// `n` memcached UDP gets from the namespace to 10.77.0.1:11211.
fn send_udp(ns: &str, n: usize) {
    let script = format!(
        "for i in $(seq {n}); do printf '\\000\\001\\000\\000\\000\\001\\000\\000get k$i\\r\\n' > /dev/udp/10.77.0.1/11211; done"
    );
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "bash", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
}

fn packets_seen(addr: &str) -> u64 {
    let (_, _, b) = common::http_get(addr, "/api/report", None);
    serde_json::from_str::<Value>(&b).map_or(0, |v| v["capture"]["packets"].as_u64().unwrap_or(0))
}

fn health(addr: &str) -> (u16, String) {
    let (c, _, b) = common::http_get(addr, "/healthz", None);
    (c, b)
}

fn wait_health(addr: &str, want: u16) -> (u16, String) {
    let t = Instant::now();
    loop {
        let h = health(addr);
        if h.0 == want || t.elapsed() > Duration::from_secs(5) {
            return h;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The capture interface is deleted under an afpacket capture, then made
/// again with the same name: /healthz is 503 naming it meanwhile, the
/// capture resumes on the new one, the blind time is logged, and the
/// report counts every packet sent while it could see.
#[test]
fn afpacket_capture_follows_its_interface_out_and_back() {
    if !ready("iface_gone") {
        return;
    }
    let ns = format!("mtf{}", std::process::id());
    let (a, b) = (
        format!("mtfa{}", std::process::id() % 10000),
        format!("mtfb{}", std::process::id() % 10000),
    );
    ip(&["netns", "add", &ns]);
    let _ns = Netns(ns.clone());
    veth(&ns, &a, &b);
    let dir = tempfile::tempdir().unwrap();
    let rf = dir.path().join("r.json");
    let mut child = Command::new(BIN)
        .args([
            "capture",
            "-i",
            &a,
            "--engine",
            "afpacket",
            "--workers",
            "1",
            "-t",
            "10.77.0.1:11211",
            "--listen",
            "127.0.0.1:0",
            "-f",
            "json",
            "--report-file",
        ])
        .arg(&rf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, log) = common::wait_for_listener(&mut child);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(wait_health(&addr, 200).0, 200);
    send_udp(&ns, 40);
    // Seen before the interface goes (the count is the test's, not the
    // kernel's queueing).
    let t = Instant::now();
    while packets_seen(&addr) < 40 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ip(&["link", "del", &a]);
    let (code, body) = wait_health(&addr, 503);
    assert_eq!(code, 503, "{body}");
    // Which the capture thread meets first, the socket's error or the
    // interface's absence, is a race; either names the capture's fault.
    assert!(
        body.contains(&format!("interface {a} is gone"))
            || body.contains(&format!("capture on `{a}` failed: Network is down")),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(500));
    veth(&ns, &a, &b);
    let (code, body) = wait_health(&addr, 200);
    assert_eq!(code, 200, "{body}");
    send_udp(&ns, 60);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    common::signal(&child, "INT");
    assert!(child.wait().unwrap().success());
    assert!(t.elapsed() < Duration::from_secs(5));
    let log = log.join().unwrap();
    assert!(log.contains("capturing again after"), "{log}");
    assert!(log.contains("blind for"), "{log}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&rf).unwrap()).unwrap();
    assert_eq!(r["capture"]["packets"], 100, "{log}");
}

/// PostgreSQL stops under a live capture with a store: /healthz says so
/// (with the backlog), the outage is logged when it starts, and SIGINT
/// still gives the whole report at once, the intervals going to the spool
/// within flush_timeout. Started with the database down, it captures too.
#[test]
fn a_store_that_stops_under_a_capture_costs_no_report() {
    if !ready("pg_down_capture") {
        return;
    }
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let url = cluster.database("faults");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[store]\nspool_dir = \"{}\"\nflush_timeout = \"1s\"\nsniffer = \"live\"\n",
            spool.display()
        ),
    );
    let ns = format!("mtp{}", std::process::id());
    let (a, b) = (
        format!("mtpa{}", std::process::id() % 10000),
        format!("mtpb{}", std::process::id() % 10000),
    );
    ip(&["netns", "add", &ns]);
    let _ns = Netns(ns.clone());
    veth(&ns, &a, &b);
    let rf = dir.path().join("r.json");
    let mut child = Command::new(BIN)
        .args([
            "capture",
            "-c",
            cfg.to_str().unwrap(),
            "-i",
            &a,
            "--workers",
            "1",
            "--window",
            "1s",
            "-t",
            "10.77.0.1:11211",
            "--store",
            &url,
            "--listen",
            "127.0.0.1:0",
            "-f",
            "json",
            "--report-file",
        ])
        .arg(&rf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, log) = common::wait_for_listener(&mut child);
    send_udp(&ns, 30);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.stop();
    // Windows close (and go to the store) as traffic goes on.
    let mut sent = 30;
    let mut h = (200, String::new());
    for _ in 0..20 {
        send_udp(&ns, 5);
        sent += 5;
        std::thread::sleep(Duration::from_millis(300));
        h = health(&addr);
        if h.0 == 503 {
            break;
        }
    }
    let (code, body) = h;
    if code != 503 {
        common::signal(&child, "INT");
        let _ = child.wait();
        panic!("{body}: {}", log.join().unwrap());
    }
    assert!(
        body.contains("unreachable") && body.contains("backlog"),
        "{body}"
    );
    let t = Instant::now();
    common::signal(&child, "INT");
    let st = child.wait().unwrap();
    let took = t.elapsed();
    let log = log.join().unwrap();
    assert!(st.success(), "spooled, not lost: {log}");
    assert!(took < Duration::from_secs(5), "{took:?}: {log}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&rf).unwrap()).unwrap();
    assert_eq!(r["capture"]["packets"], sent);
    assert!(log.contains("unreachable"), "{log}");
    assert!(log.contains("for the next run"), "{log}");
    assert_eq!(spool_files(&spool).len(), 1, "{log}");
    let _ = free_port();
}
