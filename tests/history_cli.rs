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
        let mut hist = hist;
        common::without_per_key_insight(&mut hist);
        common::without_per_key_insight(&mut rep);
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

/// One chart's embedded data (the JSON uPlot draws from).
fn chart_data(dom: &str, chart: &str) -> Value {
    let start = dom
        .find(&format!("id=\"{chart}\""))
        .unwrap_or_else(|| panic!("{chart} in the page"));
    let end = start + dom[start..].find("</figure>").unwrap();
    let fig = &dom[start..end];
    let open = "<script type=\"application/json\" class=\"mt-data\">";
    let j = fig.find(open).expect("the chart's data") + open.len();
    serde_json::from_str(&fig[j..j + fig[j..].find("</script>").unwrap()]).unwrap()
}

/// One chart's points from its data: (series, x, exact count, value drawn).
fn points(dom: &str, chart: &str) -> Vec<(String, f64, u64, f64)> {
    let d = chart_data(dom, chart);
    let xs: Vec<f64> = serde_json::from_value(d["x"].clone()).unwrap();
    let mut out = Vec::new();
    for s in d["series"].as_array().unwrap() {
        for (i, x) in xs.iter().enumerate() {
            if let (Some(c), Some(v)) = (s["counts"][i].as_u64(), s["values"][i].as_f64()) {
                out.push((s["name"].as_str().unwrap().to_string(), *x, c, v));
            }
        }
    }
    out
}

/// An attribute of the element whose opening tag holds `at`.
fn attr_of(dom: &str, at: &str, name: &str) -> String {
    let i = dom.find(at).unwrap_or_else(|| panic!("{at} in the page"));
    let tag = &dom[dom[..i].rfind('<').unwrap()..i + dom[i..].find('>').unwrap()];
    let pat = format!("{name}=\"");
    let v = tag.find(&pat).unwrap_or_else(|| panic!("{name} in {tag}")) + pat.len();
    tag[v..v + tag[v..].find('"').unwrap()].replace("&quot;", "\"")
}

/// The hover legend's values of one chart (uPlot's `td.u-value`).
fn legend(dom: &str, chart: &str) -> Vec<String> {
    let start = dom.find(&format!("id=\"{chart}\"")).unwrap();
    let end = start + dom[start..].find("</figure>").unwrap();
    regex::Regex::new(r#"<td class="u-value">([^<]*)</td>"#)
        .unwrap()
        .captures_iter(&dom[start..end])
        .map(|c| c[1].to_string())
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
    let dom = browse(
        chrome,
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &page,
    );
    let want: Vec<(String, f64, u64)> = windows[1..]
        .iter()
        .map(|w| (server.clone(), w.0, w.1))
        .collect();
    let got = points(&dom, "chart-rate");
    assert_eq!(got.len(), want.len(), "one point per window in range");
    let dur: Vec<f64> =
        serde_json::from_value(chart_data(&dom, "chart-rate")["dur"].clone()).unwrap();
    for ((g, w), d) in got.iter().zip(&want).zip(&dur) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-6, "x {} vs {}", g.1, w.1);
        assert_eq!(g.2, w.2);
        // Drawn as requests per second of its 10 ms window.
        assert!((d - 0.01).abs() < 1e-9, "window length {d}");
        assert!(
            (g.3 - w.2 as f64 / 0.01).abs() < 1e-6,
            "rate {} vs {}",
            g.3,
            w.2
        );
    }
    // Hit rate: hits / (hits + misses), in percent to 0.1.
    for (g, w) in points(&dom, "chart-hitrate").iter().zip(&windows[1..]) {
        let want = (w.2 as f64 * 1000.0 / (w.2 + w.3) as f64).round() / 10.0;
        assert!((g.3 - want).abs() < 1e-9, "hit rate {} vs {want}", g.3);
        assert_eq!(g.2, w.2, "hits");
    }
    // uPlot drew it: a canvas of the chart's size, UTC time ticks with the
    // date, y ticks in requests per second with SI prefixes.
    assert_eq!(attr_of(&dom, "id=\"chart-rate\"", "data-rendered"), "true");
    let rate_fig = &dom[dom.find("id=\"chart-rate\"").unwrap()..];
    assert!(
        attr_of(rate_fig, "<canvas", "width")
            .parse::<u32>()
            .unwrap()
            >= 320
    );
    assert!(
        attr_of(rate_fig, "<canvas", "height")
            .parse::<u32>()
            .unwrap()
            >= 200
    );
    let xt: Vec<String> =
        serde_json::from_str(&attr_of(&dom, "id=\"chart-rate\"", "data-ticks-x")).unwrap();
    let day = regex::Regex::new(r"^\d\d:\d\d:\d\d\.\d{3}\n\d{4}-\d\d-\d\d$").unwrap();
    assert!(day.is_match(&xt[0]), "{xt:?}");
    assert!(xt.len() >= 3, "{xt:?}");
    let yt: Vec<String> =
        serde_json::from_str(&attr_of(&dom, "id=\"chart-rate\"", "data-ticks-y")).unwrap();
    assert_eq!(yt[0], "0", "{yt:?}");
    let si = |t: &str| -> f64 {
        let (n, m) = match t.split_once(' ') {
            Some((n, "k")) => (n, 1e3),
            Some((n, "M")) => (n, 1e6),
            None => (t, 1.0),
            _ => panic!("tick {t}"),
        };
        n.parse::<f64>().unwrap() * m
    };
    let top = got.iter().map(|g| g.3).fold(0.0, f64::max);
    let ticks: Vec<f64> = yt.iter().map(|t| si(t)).collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{yt:?}");
    assert!(
        *ticks.last().unwrap() <= top * 1.2 && ticks.len() >= 3,
        "{yt:?} for {top}"
    );
    // The since box shows the time typed as Unix seconds as a UTC date
    // and time, and that text selects the same range.
    let shown = attr_of(&dom, "id=\"since\"", "value");
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{3})?$")
            .unwrap()
            .is_match(&shown),
        "{shown}"
    );
    let in_range: u64 = windows[1..].iter().map(|w| w.1).sum();
    let again = browse(
        chrome,
        profile.path(),
        &["--dump-dom"],
        &format!(
            "{}/?since={}&until=now&server={}",
            srv.base,
            shown.replace(' ', "+").replace(':', "%3A"),
            server.replace(':', "%3A")
        ),
    );
    assert!(
        again.contains(&format!("data-requests=\"{in_range}\"")),
        "{shown}"
    );
    assert_eq!(attr_of(&again, "id=\"until\"", "value"), "now");
    let none = browse(
        chrome,
        profile.path(),
        &["--dump-dom"],
        &format!("{}/?since=now", srv.base),
    );
    assert!(none.contains("data-intervals=\"0\""), "nothing after now");
    // Hover (the pointer put at the third window by #at=): the legend
    // shows that window's time and its exact count.
    let w = &windows[2];
    let hover = browse(
        chrome,
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("{page}#at={}", w.0),
    );
    let lg = legend(&hover, "chart-rate");
    assert_eq!(lg.len(), 2, "{lg:?}");
    assert!(lg[0].starts_with(&shown[..10]), "{lg:?}");
    assert!(
        lg[1].ends_with(&format!(" requests/s ({} requests)", w.1)),
        "{lg:?} vs {}",
        w.1
    );
    // A zoom recorded in the URL (#zoom=FROM,TO, as a drag leaves it)
    // narrows the charts and offers the range to the server: following
    // the link shows exactly the zoomed window.
    let zoomed = browse(
        chrome,
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("{page}#zoom={},{}", w.0 - 0.001, w.0 + 0.001),
    );
    let apply = attr_of(&zoomed, "id=\"zoom-apply\"", "href").replace("&amp;", "&");
    let narrow = browse(
        chrome,
        profile.path(),
        &["--dump-dom"],
        &format!("{}{apply}", srv.base),
    );
    assert!(
        narrow.contains(&format!("data-intervals=\"1\" data-requests=\"{}\"", w.1)),
        "{apply}"
    );
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
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("{}{}", srv.base, href),
    );
    assert!(kdom.contains("id=\"key\""), "key page");
    let kpts = points(&kdom, "chart-key");
    let total: u64 = kpts.iter().filter(|p| p.0 == "requests").map(|p| p.2).sum();
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
    assert_eq!(total, want);
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
            "--window-size=1400,1800",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ],
        &page,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}
