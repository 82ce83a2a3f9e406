//! The chart components drawn by the real uPlot in headless Chromium,
//! from a page built with the same functions the server uses and opened
//! from a file (assets inlined: no network). The miss-ratio curve's
//! axes, markers and hover text, and a time chart's drag-to-zoom filling
//! the since/until boxes. Screenshots go to `target/test-artifacts/`.

mod common;
use common::browser::{browse, chromium};
use memtap::web::assets::standalone_page;
use memtap::web::charts::{mrc_chart, Fmt, TimeChart, TimeSeries};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// A pool curve and one server's, sizes 1 MiB .. 16 GiB.
fn curves() -> String {
    let pool: Vec<(f64, f64)> = (0..=14)
        .map(|e| {
            (
                MIB * f64::from(1u32 << e),
                [
                    0.10, 0.18, 0.27, 0.36, 0.45, 0.54, 0.62, 0.70, 0.77, 0.83, 0.88, 0.91, 0.94,
                    0.96, 0.97,
                ][e as usize],
            )
        })
        .collect();
    let one: Vec<(f64, f64)> = pool.iter().map(|&(s, r)| (s, r * 0.9)).collect();
    serde_json::json!({"series": [
        {"name": "pool", "unit": "bytes", "sampling": 0.01, "current_hit_ratio": 0.82,
         "attainable_hit_ratio": 0.97, "points": pool,
         "targets": [[0.9, 2.0 * GIB], [0.95, 4.0 * GIB], [0.99, null]]},
        {"name": "127.0.0.1:11211", "unit": "bytes", "current_hit_ratio": 0.7,
         "attainable_hit_ratio": 0.873, "points": one,
         "targets": [[0.9, 4.0 * GIB], [0.95, 8.0 * GIB], [0.99, null]]},
    ]})
    .to_string()
}

fn page_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Chromium's DOM of `html` opened from a file, after its scripts ran.
fn dom_of(chrome: &str, dir: &std::path::Path, html: &str) -> String {
    let file = dir.join("page.html");
    std::fs::write(&file, html).unwrap();
    if let Ok(keep) = std::env::var("MEMTAP_KEEP_PAGES") {
        std::fs::copy(
            &file,
            std::path::Path::new(&keep).join(format!("{}.html", html.len())),
        )
        .unwrap();
    }
    let profile = dir.join("profile");
    browse(
        chrome,
        &profile,
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("file://{}", file.display()),
    )
}

fn screenshot(chrome: &str, dir: &std::path::Path, name: &str, size: &str) {
    let art = common::repo().join("target/test-artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let shot = art.join(name);
    let _ = std::fs::remove_file(&shot);
    browse(
        chrome,
        &dir.join("profile"),
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={size}"),
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ],
        &format!("file://{}", dir.join("page.html").display()),
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}

/// The element `tag` whose opening tag contains `attr`, with its text.
fn element<'a>(dom: &'a str, attr: &str) -> &'a str {
    let at = dom.find(attr).unwrap_or_else(|| panic!("{attr} in {dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find("</").unwrap();
    &dom[start..end]
}

fn attr(el: &str, name: &str) -> String {
    let pat = format!("{name}=\"");
    let at = el.find(&pat).unwrap_or_else(|| panic!("{name} in {el}")) + pat.len();
    el[at..at + el[at..].find('"').unwrap()].replace("&quot;", "\"")
}

/// The legend's value cells, in order (uPlot's `td.u-value`).
fn legend(dom: &str, fig: &str) -> Vec<String> {
    let start = dom.find(&format!("id=\"{fig}\"")).unwrap();
    let end = start + dom[start..].find("</figure>").unwrap();
    let re = regex::Regex::new(r#"<td class="u-value">([^<]*)</td>"#).unwrap();
    re.captures_iter(&dom[start..end])
        .map(|c| c[1].to_string())
        .collect()
}

#[test]
fn miss_ratio_curve_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        return;
    };
    let dir = page_dir();
    // The pointer at 1 GiB, halfway up: what a user hovering there sees.
    let body = format!(
        "{}<script>addEventListener('load', function () {{\
           var u = memtapCharts['mrc']; memtapCharts.pointAt(u, {GIB}, 50); }});</script>",
        mrc_chart("mrc", &curves())
    );
    let html = standalone_page("miss-ratio curve", &body);
    let dom = dom_of(chrome, dir.path(), &html);
    assert!(dom.contains("id=\"mrc\" data-kind=\"mrc\""), "{dom}");
    assert!(dom.contains("data-rendered=\"true\""), "uPlot drew it");
    let canvas = element(&dom, "<canvas");
    assert!(
        attr(canvas, "width").parse::<u32>().unwrap() >= 320,
        "{canvas}"
    );
    assert!(
        attr(canvas, "height").parse::<u32>().unwrap() >= 200,
        "{canvas}"
    );
    // The log axis is labelled in IEC sizes at powers of two, the y axis in %.
    let fig = element(&dom, "id=\"mrc\"");
    let xt: Vec<String> = serde_json::from_str(&attr(fig, "data-ticks-x")).unwrap();
    assert!(xt.iter().any(|t| t == "1 GiB"), "{xt:?}");
    assert!(xt.iter().all(|t| t.ends_with("iB")), "{xt:?}");
    let yt: Vec<String> = serde_json::from_str(&attr(fig, "data-ticks-y")).unwrap();
    assert_eq!(yt.first().map(String::as_str), Some("0 %"), "{yt:?}");
    assert_eq!(yt.last().map(String::as_str), Some("100 %"), "{yt:?}");
    // Hover: each curve's value at 1 GiB (2^10 MiB: the 11th point).
    assert_eq!(
        legend(&dom, "mrc"),
        vec![
            "1 GiB",
            "with 1 GiB, hit ratio 88.0 %",
            "with 1 GiB, hit ratio 79.2 %"
        ]
    );
    // Markers: a line per reachable target, at its size, left to right;
    // a line per curve at its current hit ratio.
    let re = regex::Regex::new(
        r#"class="mt-target[^"]*" data-series="([^"]*)" data-target="([^"]*)" data-size="([^"]*)" title="([^"]*)"[^>]*data-px="([^"]*)""#,
    )
    .unwrap();
    let targets: Vec<(String, String, f64, String, f64)> = re
        .captures_iter(&dom)
        .map(|c| {
            (
                c[1].to_string(),
                c[2].to_string(),
                c[3].parse().unwrap(),
                c[4].to_string(),
                c[5].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(targets.len(), 4, "{dom}");
    assert_eq!(
        targets[0].3,
        "pool: 90 % of attainable hits (hit ratio 87.3 %) with 2 GiB"
    );
    assert_eq!(
        (targets[1].0.as_str(), targets[1].1.as_str(), targets[1].2),
        ("pool", "0.95", 4.0 * GIB)
    );
    // On a log2 axis, 2 → 4 GiB and 4 → 8 GiB are the same distance.
    let px = |name: &str, t: &str| targets.iter().find(|x| x.0 == name && x.1 == t).unwrap().4;
    let (a, b, c) = (
        px("pool", "0.9"),
        px("pool", "0.95"),
        px("127.0.0.1:11211", "0.95"),
    );
    assert!(a < b && b < c, "{a} {b} {c}");
    assert!(((b - a) - (c - b)).abs() < 1.0, "{a} {b} {c}");
    let cur = regex::Regex::new(
        r#"class="mt-current" data-series="([^"]*)" data-ratio="([^"]*)" title="([^"]*)""#,
    )
    .unwrap();
    let cur: Vec<(String, String)> = cur
        .captures_iter(&dom)
        .map(|c| (c[1].to_string(), c[3].to_string()))
        .collect();
    assert_eq!(
        cur,
        vec![
            ("pool".into(), "pool: hit ratio now 82.0 %".into()),
            (
                "127.0.0.1:11211".into(),
                "127.0.0.1:11211: hit ratio now 70.0 %".into()
            )
        ]
    );
    // The unreachable target is said in words, not drawn.
    assert!(dom.contains("99 % of attainable hits: beyond the curve"));
    screenshot(chrome, dir.path(), "mrc-chart.png", "720,560");
}

#[test]
fn time_chart_zooms_by_dragging_and_fills_the_range_boxes() {
    let Some(chrome) = chromium() else {
        return;
    };
    let t0 = 1_794_924_000.0; // 2026-11-17 14:00:00 UTC
    let x: Vec<f64> = (0..10).map(|i| t0 + 60.0 * f64::from(i)).collect();
    let counts: Vec<Option<u64>> = (0..10).map(|i| Some(600 * (i + 1))).collect();
    let chart = TimeChart {
        id: "chart-rate".into(),
        title: "requests per server".into(),
        unit: "requests/s".into(),
        fmt: Fmt::Si,
        count_unit: "requests".into(),
        x: x.clone(),
        dur: vec![60.0; 10],
        series: vec![TimeSeries {
            name: "10.0.0.1:11211".into(),
            values: counts.iter().map(|c| c.map(|c| c as f64 / 60.0)).collect(),
            counts: counts.clone(),
            of: None,
        }],
        events: vec![(t0 + 150.0, "hot-key fired".into())],
    };
    // Drag from the 3rd interval to the 6th, as a pointer would, then
    // hover the 4th.
    let body = format!(
        "<form><input id=\"since\" value=\"\"><input id=\"until\" value=\"\"></form>\
         <div class=\"charts\">{}</div>\
         <script>addEventListener('load', function () {{\
           var u = memtapCharts['chart-rate'], r = u.over.getBoundingClientRect();\
           function ev(type, x, target) {{ (target || u.over).dispatchEvent(new MouseEvent(type, {{\
             clientX: r.left + u.valToPos(x, 'x'), clientY: r.top + 50, bubbles: true, movementX: 5, movementY: 0 }})); }}\
           ev('mousedown', {a}); ev('mousemove', {b}); ev('mouseup', {b}, document);\
           setTimeout(function () {{ memtapCharts.pointAt(u, {c});\
           var b = document.body; b.setAttribute('data-scale', u.scales.x.min + ',' + u.scales.x.max);\
           b.setAttribute('data-since', since.value); b.setAttribute('data-until', until.value);\
         }}, 50); }});</script>",
        chart.html(),
        a = x[2] - 1.0,
        b = x[5] + 1.0,
        c = x[3],
    );
    let dir = page_dir();
    let dom = dom_of(chrome, dir.path(), &standalone_page("zoom", &body));
    let scale = attr(element(&dom, "data-scale="), "data-scale");
    let (lo, hi) = scale.split_once(',').unwrap();
    let (lo, hi): (f64, f64) = (lo.parse().unwrap(), hi.parse().unwrap());
    assert!(
        (lo - (x[2] - 1.0)).abs() < 2.0 && (hi - (x[5] + 1.0)).abs() < 2.0,
        "{scale}"
    );
    // The boxes hold the visible intervals' range: 14:02 to 14:05's end
    // (uPlot applies a zoom on its next microtask: hence the timeout).
    let body = element(&dom, "data-scale=");
    assert_eq!(attr(body, "data-since"), "2026-11-17 14:02:00");
    assert_eq!(attr(body, "data-until"), "2026-11-17 14:06:00");
    let bar = element(&dom, "id=\"zoom\"");
    assert!(
        bar.contains("Zoomed to 2026-11-17 14:02:00 – 2026-11-17 14:06:00 UTC"),
        "{bar}"
    );
    let link = attr(element(&dom, "id=\"zoom-apply\""), "href");
    assert!(
        link.ends_with("?since=2026-11-17+14%3A02%3A00&amp;until=2026-11-17+14%3A06%3A00"),
        "{link}"
    );
    // Ticks in UTC every 30 s over the zoomed 3 minutes, the date under
    // the first.
    let xt: Vec<String> =
        serde_json::from_str(&attr(element(&dom, "id=\"chart-rate\""), "data-ticks-x")).unwrap();
    assert_eq!(
        xt.first().map(String::as_str),
        Some("14:02:00\n2026-11-17"),
        "{xt:?}"
    );
    assert_eq!(xt.last().map(String::as_str), Some("14:05:00"), "{xt:?}");
    assert!(xt.contains(&"14:03:30".to_string()), "{xt:?}");
    // Hover: the 4th interval's time, rate and exact count.
    assert_eq!(
        legend(&dom, "chart-rate"),
        vec!["2026-11-17 14:03:00", "40 requests/s (2400 requests)"]
    );
    // The event is marked at its time.
    let ev = element(&dom, "class=\"mt-event event\"");
    assert_eq!(attr(ev, "data-x"), (t0 + 150.0).to_string());
    assert_eq!(attr(ev, "title"), "hot-key fired");
}
