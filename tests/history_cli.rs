//! The history as a user drives it: `memtap replay --store`, `memtap
//! report --store` (report, key history, peaks), and `memtap serve` loaded
//! in headless Chromium (Debian's `chromium`), whose charts must carry the
//! replay's exact per-window values. A screenshot of the page is saved to
//! `target/test-artifacts/`.

mod common;
use common::browser::{browse, chromium};
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

fn memtap(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memtap")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "memtap failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn capture(case: &str) -> PathBuf {
    fixture_dir(case).join("capture.pcap")
}

fn target(case: &str) -> String {
    server_target(case).to_string()
}

/// Replays a fixture into a store (10 ms windows), returning the replay's
/// JSON report (with its windows).
fn replay_into(store: &str, case: &str, sniffer: &str) -> Value {
    let cap = capture(case);
    let o = memtap(&[
        "replay",
        "--quiet",
        "--format",
        "json",
        "--per-window",
        "--window",
        "10ms",
        "--top",
        "0",
        "--target",
        &target(case),
        "--store",
        store,
        "--sniffer",
        sniffer,
        "--store-top",
        "0",
        cap.to_str().unwrap(),
    ]);
    serde_json::from_str(&ok(&o)).unwrap()
}

fn store_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("h.db").display())
}

#[test]
fn report_from_the_store_equals_the_replay_report() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(dir.path());
    for case in ["text_tcp", "udp"] {
        let dir = tempfile::tempdir().unwrap();
        let url = store_url(dir.path());
        let mut rep = replay_into(&url, case, "a");
        let hist: Value = serde_json::from_str(&ok(&memtap(&[
            "report", "--store", &url, "--format", "json", "--top", "0",
        ])))
        .unwrap();
        // The history report lists no windows (they are its rows).
        rep["windows"] = Value::Array(vec![]);
        assert_eq!(hist, rep, "{case}");
        // The text report renders from the same model.
        let text = ok(&memtap(&["report", "--store", &url]));
        assert!(text.contains(rep["keys"][0]["key"].as_str().unwrap()));
    }
    // Peaks and key history, text and JSON.
    let rep = replay_into(&url, "text_tcp", "a");
    let server = rep["servers"][0]["server"].as_str().unwrap().to_string();
    let best = rep["windows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["servers"].as_array().unwrap().iter())
        .filter(|s| s["server"] == server.as_str())
        .map(|s| s["requests"].as_u64().unwrap())
        .max()
        .unwrap();
    let peaks: Value = serde_json::from_str(&ok(&memtap(&[
        "report", "--store", &url, "--format", "json", "--top", "1", "peaks",
    ])))
    .unwrap();
    assert_eq!(peaks[0]["server"], server.as_str());
    assert_eq!(peaks[0]["requests"], best);
    let key = rep["keys"][0]["key"].as_str().unwrap();
    let kh: Value = serde_json::from_str(&ok(&memtap(&[
        "report", "--store", &url, "--format", "json", "key", key,
    ])))
    .unwrap();
    let sum: u64 = kh["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, rep["keys"][0]["requests"].as_u64().unwrap());
    let text = ok(&memtap(&["report", "--store", &url, "key", key]));
    assert!(text.starts_with(&format!("Key {key}\n")), "{text}");
    assert!(text.contains("peak: "), "{text}");
    // One-line errors.
    let o = memtap(&["report", "--store", "mysql://h/db"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "memtap: error: store URL \"mysql://h/db\": unknown scheme; use sqlite:PATH or postgres://USER@HOST:PORT/DB\n"
    );
    let o = memtap(&[
        "replay",
        "--quiet",
        "--window",
        "1s",
        "--store",
        &url,
        capture("text_tcp").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("the store keeps 10ms intervals") && e.lines().count() == 1,
        "{e}"
    );
}

/// `memtap serve` on a free port; killed on drop.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Server {
    fn start(url: &str) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--store", url, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let at = line.find("http://").expect(&line);
        Server {
            child,
            base: line[at..].trim().trim_end_matches('/').to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `circle.pt` points of one chart: (series, x, y).
fn points(dom: &str, chart: &str) -> Vec<(String, f64, f64)> {
    let start = dom
        .find(&format!("id=\"{chart}\""))
        .unwrap_or_else(|| panic!("{chart} in the page"));
    let end = start + dom[start..].find("</svg>").unwrap();
    let re =
        regex::Regex::new(r#"class="pt" data-series="([^"]*)" data-x="([^"]*)" data-y="([^"]*)""#)
            .unwrap();
    re.captures_iter(&dom[start..end])
        .map(|c| {
            (
                c[1].to_string(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn web_page_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = store_url(dir.path());
    let rep = replay_into(&url, "text_tcp", "a");
    let server = rep["servers"][0]["server"].as_str().unwrap().to_string();
    let windows: Vec<(f64, u64, u64, u64)> = rep["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| {
            let s = w["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["server"] == server.as_str())?;
            Some((
                w["start"].as_f64().unwrap(),
                s["requests"].as_u64().unwrap(),
                s["hits"].as_u64().unwrap(),
                s["misses"].as_u64().unwrap(),
            ))
        })
        .collect();
    assert!(windows.len() >= 2, "several windows to chart");
    let srv = Server::start(&url);
    let profile = tempfile::tempdir().unwrap();

    // Pick a range (from the second window on) and the server.
    let since = windows[1].0;
    let page = format!(
        "{}/?since={since}&server={}&by=requests",
        srv.base,
        server.replace(':', "%3A")
    );
    let dom = browse(chrome, profile.path(), &["--dump-dom"], &page);
    let want: Vec<(String, f64, f64)> = windows[1..]
        .iter()
        .map(|w| (server.clone(), w.0, w.1 as f64))
        .collect();
    let got = points(&dom, "chart-rate");
    assert_eq!(got.len(), want.len(), "one point per window in range");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-6, "x {} vs {}", g.1, w.1);
        assert_eq!(g.2, w.2);
    }
    // Hit rate: hits / (hits + misses), in percent to 0.1.
    for (g, w) in points(&dom, "chart-hitrate").iter().zip(&windows[1..]) {
        let want = (w.2 as f64 * 1000.0 / (w.2 + w.3) as f64).round() / 10.0;
        assert!((g.2 - want).abs() < 1e-9, "hit rate {} vs {want}", g.2);
    }
    // The server's share of its own filter is all of it.
    assert!(dom.contains(&format!(
        "class=\"bar\" data-label=\"{server}\" data-value=\"100\""
    )));
    for chart in [
        "chart-keys",
        "chart-commands",
        "chart-clients",
        "chart-value-size",
        "chart-latency",
        "chart-share",
    ] {
        assert!(dom.contains(&format!("id=\"{chart}\"")), "{chart}");
    }
    // The summary counts the range's requests.
    let in_range: u64 = windows[1..].iter().map(|w| w.1).sum();
    assert!(
        dom.contains(&format!("data-requests=\"{in_range}\"")),
        "summary"
    );

    // A key's history page opens from its link.
    let link = regex::Regex::new(r#"<a class="key" href="([^"]*)">([^<]*)</a>"#).unwrap();
    let first = link.captures(&dom).expect("key links");
    let href = first[1].replace("&amp;", "&");
    let kdom = browse(
        chrome,
        profile.path(),
        &["--dump-dom"],
        &format!("{}{}", srv.base, href),
    );
    assert!(kdom.contains("id=\"key\""), "key page");
    let kpts = points(&kdom, "chart-key");
    let total: f64 = kpts.iter().filter(|p| p.0 == "requests").map(|p| p.2).sum();
    // The link keeps the range: the key's requests from the second window.
    let all = ok(&memtap(&[
        "report",
        "--store",
        &url,
        "--format",
        "json",
        "--since",
        &since.to_string(),
        "key",
        &first[2].replace("&amp;", "&"),
    ]));
    let kh: Value = serde_json::from_str(&all).unwrap();
    let want: u64 = kh["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, want as f64);
    assert!(want > 0, "a top key of the range has requests in it");

    // Screenshot, kept as a test artifact.
    let art = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let shot = art.join("history-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        chrome,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
            "--hide-scrollbars",
        ],
        &page,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}
