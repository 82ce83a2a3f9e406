//! A real Prometheus server scrapes `memtap replay --serve` and its query
//! API must give back exactly what the report says: the total of
//! key-requests, a request rate of exactly 0 (a finished replay does not
//! move), and the top key with its request count.
//!
//! Prometheus is Debian's `/usr/bin/prometheus` (package `prometheus`,
//! installed by scripts/setup.sh), started on loopback with a temporary
//! data directory and the shipped scrape config (`deploy/prometheus/
//! prometheus.yml`, guard rails included) pointed at memtap with a 1 s
//! scrape interval. Without the binary the test is skipped with a reason,
//! except under CI, where that is a failure.

mod common;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Longest wait for Prometheus to start and for the first scrapes.
const PATIENCE: Duration = Duration::from_secs(30);

/// Kills what is still running when the test ends, failed or not.
struct Procs(Vec<(&'static str, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Procs {
    fn get(&mut self, name: &str) -> &mut Child {
        &mut self.0.iter_mut().find(|(n, _)| *n == name).unwrap().1
    }
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A port nobody listens on now (Prometheus needs an explicit one): bind
/// port 0 and let it go. Another process could take it in between; the
/// wait for Prometheus below would then fail with its log.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET over HTTP/1.0 (so Go answers with a plain body and closes): the
/// status and body, or None while nothing listens.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// An instant query: the `data.result` vector.
fn query(prom: &str, q: &str) -> Vec<Value> {
    let (st, body) = get(prom, &format!("/api/v1/query?query={}", percent_encode(q)))
        .unwrap_or_else(|| panic!("Prometheus at {prom} does not answer"));
    assert_eq!(st, 200, "query {q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "query {q}: {body}");
    assert_eq!(v["data"]["resultType"], "vector", "query {q}: {body}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// The value of a one-sample vector.
fn scalar(prom: &str, q: &str) -> f64 {
    let r = query(prom, q);
    assert_eq!(r.len(), 1, "query {q}: {r:?}");
    sample_value(&r[0])
}

fn sample_value(s: &Value) -> f64 {
    s["value"][1].as_str().unwrap().parse().unwrap()
}

/// Polls `cond` every 200 ms until it holds or PATIENCE runs out; then
/// fails with Prometheus's view of the target (its last scrape error) and
/// its log.
fn wait_until(what: &str, prom: &str, log: &Path, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > PATIENCE {
            panic!(
                "{what}: not within {PATIENCE:?}; targets: {}\nPrometheus log:\n{}",
                get(prom, "/api/v1/targets").map_or_else(|| "-".into(), |(_, b)| b),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The shipped scrape config with this test's target and a 1 s interval.
fn prometheus_config(target: &str, dir: &Path) -> String {
    let deploy = common::repo().join("deploy/prometheus");
    let shipped = std::fs::read_to_string(deploy.join("prometheus.yml")).unwrap();
    // The rules load too: a config Prometheus refuses fails the test.
    std::fs::copy(
        deploy.join("memtap-rules.yml"),
        dir.join("memtap-rules.yml"),
    )
    .unwrap();
    let mut cfg = shipped.clone();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ("\"127.0.0.1:9718\"", &format!("\"{target}\"")),
    ] {
        assert!(
            cfg.contains(from),
            "deploy/prometheus/prometheus.yml: no `{from}`"
        );
        cfg = cfg.replacen(from, to, 1);
    }
    cfg
}

#[test]
fn prometheus_scrapes_the_report_exactly() {
    if !Path::new(PROMETHEUS).exists() {
        if under_ci() {
            panic!("{PROMETHEUS} missing under CI: scripts/setup.sh installs package prometheus");
        }
        eprintln!(
            "SKIPPED: {PROMETHEUS} missing (apt-get install prometheus, or scripts/setup.sh)"
        );
        return;
    }
    let cap = common::fixture_dir("text_tcp").join("capture.pcap");
    let cap = cap.to_str().unwrap();
    let args = ["--target", "*:21211", cap];

    let o = Command::new(BIN)
        .args(["replay", "-q", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let requests = report["totals"]["requests"].as_u64().unwrap();
    assert!(requests > 0);
    let keys = report["keys"].as_array().expect("report keys");
    let top_count = keys[0]["requests"].as_u64().unwrap();
    // Several keys may share the top count; any of them is the top key.
    let top_keys: Vec<&str> = keys
        .iter()
        .filter(|k| k["requests"].as_u64() == Some(top_count))
        .map(|k| k["key"].as_str().unwrap())
        .collect();

    let mut procs = Procs(Vec::new());
    let mut memtap = Command::new(BIN)
        .args(["replay", "-q", "--format", "json", "--serve", "--listen"])
        .arg("127.0.0.1:0")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (target, memtap_err) = common::wait_for_listener(&mut memtap);
    procs.0.push(("memtap", memtap));

    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, prometheus_config(&target, dir.path())).unwrap();
    let log = dir.path().join("prometheus.log");
    let prom = format!("127.0.0.1:{}", free_port());
    let prometheus = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    procs.0.push(("prometheus", prometheus));

    // Up, scraped twice at least (a rate needs two samples), no scrape
    // refused by the guard rails.
    let up = format!("up{{job=\"memtap\",instance=\"{target}\"}}");
    wait_until("target up", &prom, &log, || {
        if let Ok(Some(st)) = procs.get("prometheus").try_wait() {
            panic!(
                "prometheus exited ({st}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        get(&prom, "/-/ready").is_some_and(|(st, _)| st == 200)
            && query(&prom, &up)
                .first()
                .is_some_and(|s| sample_value(s) == 1.0)
    });
    wait_until("two scrapes", &prom, &log, || {
        scalar(&prom, &format!("count_over_time({up}[1m])")) >= 2.0
    });
    let targets = get(&prom, "/api/v1/targets").unwrap().1;
    let t: Value = serde_json::from_str(&targets).unwrap();
    let active = &t["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{targets}");
    assert_eq!(active["lastError"], "", "{targets}");

    assert_eq!(
        scalar(&prom, "sum(memtap_requests_total)"),
        requests as f64,
        "sum(memtap_requests_total) equals the report's totals.requests"
    );
    // Per result too: each result's series sum to the report's figure.
    for (result, n) in report["results"].as_object().unwrap() {
        assert_eq!(
            scalar(
                &prom,
                &format!("sum(memtap_requests_total{{result=\"{result}\"}})")
            ),
            n.as_u64().unwrap() as f64,
            "result {result}"
        );
    }
    assert_eq!(
        scalar(&prom, "sum(rate(memtap_requests_total[10s]))"),
        0.0,
        "a finished replay's counters do not move"
    );

    let top = query(&prom, "topk(1, memtap_top_key_requests)");
    assert_eq!(top.len(), 1, "{top:?}");
    let key = top[0]["metric"]["key"].as_str().unwrap();
    assert!(
        top_keys.contains(&key),
        "top key {key:?}, report's: {top_keys:?}"
    );
    assert_eq!(sample_value(&top[0]), top_count as f64, "{top:?}");
    assert_eq!(
        scalar(&prom, "memtap_window_requests"),
        requests as f64,
        "the capture is one window"
    );

    // memtap stops cleanly on SIGINT; Prometheus goes with the guard.
    let m = procs.get("memtap");
    common::signal(m, "INT");
    let status = m.wait().unwrap();
    let err = memtap_err.join().unwrap();
    assert!(status.success(), "memtap after SIGINT: {status:?}\n{err}");
}
