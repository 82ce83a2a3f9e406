//! `memtap replay --serve`: the HTTP listener over a finished replay. The
//! JSON API must say exactly what the report says, /metrics must agree
//! with it, and the process must stop cleanly on a signal.

mod common;

use serde_json::Value;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

fn replay_json(args: &[&str]) -> Value {
    let o = Command::new(BIN)
        .args(["replay", "-q", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

#[test]
fn serve_answers_with_the_report_and_stops_on_sigint() {
    let cap = common::fixture_dir("text_tcp").join("capture.pcap");
    let cap = cap.to_str().unwrap();
    let args = ["--target", "*:21211", cap];
    let want = replay_json(&args);

    let mut child = Command::new(BIN)
        .args(["replay", "-q", "--format", "json", "--serve", "--listen"])
        .arg("127.0.0.1:0")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, err) = common::wait_for_listener(&mut child);
    // The report still goes to standard output first.
    let mut stdout = child.stdout.take().unwrap();
    // memtap keeps running, so read one JSON value, not to end of file.
    let printed: Value = serde_json::Deserializer::from_reader(&mut stdout)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(printed, want);

    let (st, ct, body) = common::http_get(&addr, "/api/report", None);
    assert_eq!((st, ct.as_str()), (200, "application/json"));
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got, want, "/api/report equals the replay report");
    let (st, ct, body) = common::http_get(&addr, "/api/insight", None);
    assert_eq!((st, ct.as_str()), (200, "application/json"));
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got, want["insight"], "/api/insight is the report's section");
    let (st, _, _) = common::http_get(&addr, "/api/insight?window=soon", None);
    assert_eq!(st, 400);
    let (st, _, page) = common::http_get(&addr, "/insight", None);
    assert_eq!(st, 200);
    assert!(page.contains("<h1>Why it misses</h1>"), "{page}");

    let (st, ct, m) = common::http_get(&addr, "/metrics", None);
    assert_eq!(st, 200);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    for (result, n) in want["results"].as_object().unwrap() {
        let tag = format!("result=\"{result}\"");
        let v: f64 = m
            .lines()
            .filter(|l| l.starts_with("memtap_requests_total{") && l.contains(&tag))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(v, n.as_u64().unwrap() as f64, "result {result}");
    }
    assert_eq!(
        metric(&m, "memtap_packets_total"),
        want["capture"]["packets"].as_u64().unwrap() as f64
    );

    // The capture spans one window: it is the last closed one.
    let (st, _, body) = common::http_get(&addr, "/api/windows", None);
    assert_eq!(st, 200);
    let w: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(w["windows_closed"], 1);
    assert_eq!(w["windows"][0]["totals"], want["totals"]);
    let (st, _, body) = common::http_get(&addr, "/api/report?window=last", None);
    assert_eq!(st, 200);
    let last: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(last["keys"], want["keys"]);
    assert_eq!(last["totals"], want["totals"]);
    let (st, _, _) = common::http_get(&addr, "/api/report?window=12", None);
    assert_eq!(st, 404);
    let (st, _, _) = common::http_get(&addr, "/api/report?window=soon", None);
    assert_eq!(st, 400);
    // The chart assets are served from the binary here too, whole.
    let (st, ct, js) = common::http_get(&addr, "/assets/uplot.js?v=1", None);
    assert_eq!((st, ct.as_str()), (200, "text/javascript; charset=utf-8"));
    assert_eq!(js, memtap::web::assets::UPLOT_JS);
    let (st, _, css) = common::http_get(&addr, "/assets/charts.css", None);
    assert_eq!((st, css.as_str()), (200, memtap::web::assets::CHARTS_CSS));
    let (st, _, body) = common::http_get(&addr, "/healthz", None);
    assert_eq!((st, body.as_str()), (200, "ok\n"));

    common::signal(&child, "INT");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGINT: {status:?}");
    let err = err.join().unwrap();
    assert!(err.contains("serving until interrupted"), "{err}");
}

#[test]
fn a_busy_port_fails_before_the_replay_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cap = common::fixture_dir("text_tcp").join("capture.pcap");
    let o = Command::new(BIN)
        .args(["replay", "-q", "--serve", "--listen", &addr])
        .arg(&cap)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    assert!(o.stdout.is_empty(), "no report when the listener fails");
}
