//! The history web page: a form (time range, sniffers, servers, by
//! requests or bytes; GET parameters, so the state is in the URL), time
//! charts drawn in the browser by uPlot from JSON embedded in the page
//! (served from the binary: works offline; see `charts.rs`), and bar
//! charts drawn here as inline SVG. Every value is exact in the page: in
//! the charts' JSON, and in `data-*` attributes of the bars (the
//! headless-browser tests read both). Without scripts the time charts
//! fall back to tables.
//!
//! Routes: `/` (the page), `/key?key=K&…` (a key's history), and the
//! chart assets under `/assets/`.

use super::charts::{Fmt, TimeChart, TimeSeries};
use super::timebox;
use crate::report::{Report, ReportOptions, SortBy};
use crate::store::history::{self, Query};
use crate::store::snapshot::Snapshot;
use crate::store::when::fmt_time;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// The page's routes over the store at `url` (a connection per request,
/// on the blocking pool: the database clients are synchronous).
pub fn router(url: String) -> axum::Router {
    let url = Arc::new(url);
    let u2 = url.clone();
    axum::Router::new()
        .route(
            "/",
            get(move |q: RawQuery| page(url.clone(), q.0.unwrap_or_default(), false)),
        )
        .route(
            "/key",
            get(move |q: RawQuery| page(u2.clone(), q.0.unwrap_or_default(), true)),
        )
        .merge(super::assets::router())
}

async fn page(url: Arc<String>, query: String, key: bool) -> Response {
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut params = Params::parse(&query)?;
        params.resolve(timebox::now_ns())?;
        let mut db = crate::store::open_read(&url)?;
        if key {
            key_page(db.as_mut(), &params)
        } else {
            main_page(db.as_mut(), &params)
        }
    })
    .await;
    match r {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            Html(format!(
                "<!doctype html><title>memtap</title><p class=error>{}</p>",
                esc(&format!("{e:#}"))
            )),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The form's state.
#[derive(Debug, Default, Clone)]
struct Params {
    since: String,
    until: String,
    sniffers: Vec<String>,
    servers: Vec<String>,
    by_bytes: bool,
    key: String,
    /// since and until in ns, once resolved (relative forms against the
    /// clock).
    range: (Option<u64>, Option<u64>),
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && s.is_char_boundary(i + 1) && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_encode(s: &str) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

impl Params {
    fn parse(q: &str) -> anyhow::Result<Params> {
        let mut p = Params::default();
        for kv in q.split('&').filter(|x| !x.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = url_decode(v);
            match k {
                "since" => p.since = v,
                "until" => p.until = v,
                "sniffer" if !v.is_empty() => p.sniffers.push(v),
                "server" if !v.is_empty() => p.servers.push(v),
                "by" => p.by_bytes = v == "bytes",
                "key" => p.key = v,
                _ => {}
            }
        }
        Ok(p)
    }

    /// Reads the since and until boxes (`now` is the clock, for the
    /// relative forms), and shows an absolute time as a UTC date and time,
    /// whatever form it was typed in: a relative one stays as typed, so a
    /// reload moves with the clock.
    fn resolve(&mut self, now: u64) -> anyhow::Result<()> {
        for (text, out, name) in [
            (&mut self.since, &mut self.range.0, "since"),
            (&mut self.until, &mut self.range.1, "until"),
        ] {
            if text.trim().is_empty() {
                continue;
            }
            let (ns, relative) =
                timebox::parse(text, now).map_err(|e| anyhow::anyhow!("{name}: {e:#}"))?;
            *out = Some(ns);
            if !relative {
                *text = timebox::show(ns);
            }
        }
        Ok(())
    }

    fn query(&self) -> anyhow::Result<Query> {
        Ok(Query {
            since: self.range.0.unwrap_or(0),
            until: self.range.1,
            sniffers: self.sniffers.clone(),
            servers: self.servers.clone(),
        })
    }

    /// The query string of this state (links keep it).
    fn href(&self) -> String {
        let mut v = Vec::new();
        if !self.since.is_empty() {
            v.push(format!("since={}", url_encode(&self.since)));
        }
        if !self.until.is_empty() {
            v.push(format!("until={}", url_encode(&self.until)));
        }
        for s in &self.sniffers {
            v.push(format!("sniffer={}", url_encode(s)));
        }
        for s in &self.servers {
            v.push(format!("server={}", url_encode(s)));
        }
        v.push(format!(
            "by={}",
            if self.by_bytes { "bytes" } else { "requests" }
        ));
        v.join("&amp;")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
form{background:#f4f4f4;padding:.6em;display:flex;gap:1em;flex-wrap:wrap;align-items:end}\
label{display:flex;flex-direction:column;font-size:.85em}\
table{border-collapse:collapse;font-size:.85em}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child{text-align:left}svg{background:#fff;border:1px solid #ccc;margin:4px}\
.charts{display:flex;flex-wrap:wrap}.muted{color:#777}";

const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const W: f64 = 560.0;

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// A trigger event to mark on a chart's time axis: (time, text).
type Mark = (u64, String);

/// The time axis of the charts: each interval start (ns) with its length
/// (ns), over every sniffer shown.
struct Axis {
    starts: Vec<u64>,
    durs: Vec<u64>,
}

impl Axis {
    fn of(spans: impl IntoIterator<Item = (u64, u64)>) -> Axis {
        let mut m: BTreeMap<u64, u64> = BTreeMap::new();
        for (start, end) in spans {
            let d = m.entry(start).or_default();
            *d = (*d).max(end.saturating_sub(start));
        }
        Axis {
            starts: m.keys().copied().collect(),
            durs: m.values().copied().collect(),
        }
    }

    /// Counts per interval as a rate per second (None where absent).
    fn rate(&self, name: &str, counts: &BTreeMap<u64, u64>) -> TimeSeries {
        let counts: Vec<Option<u64>> = self.starts.iter().map(|t| counts.get(t).copied()).collect();
        TimeSeries {
            name: name.to_string(),
            values: counts
                .iter()
                .zip(&self.durs)
                .map(|(c, &d)| {
                    c.map(|c| {
                        if d == 0 {
                            0.0
                        } else {
                            c as f64 * 1e9 / d as f64
                        }
                    })
                })
                .collect(),
            counts,
            of: None,
        }
    }

    fn chart(
        &self,
        id: &str,
        title: &str,
        by_bytes: bool,
        what: &str,
        series: Vec<TimeSeries>,
        marks: &[Mark],
    ) -> TimeChart {
        TimeChart {
            id: id.into(),
            title: title.into(),
            unit: if by_bytes {
                "bytes/s".into()
            } else {
                format!("{what}/s")
            },
            fmt: if by_bytes { Fmt::Iec } else { Fmt::Si },
            count_unit: if by_bytes {
                "bytes".into()
            } else {
                what.into()
            },
            x: self
                .starts
                .iter()
                .map(|&t| crate::report::secs(t))
                .collect(),
            dur: self.durs.iter().map(|&d| d as f64 / 1e9).collect(),
            series,
            events: marks
                .iter()
                .map(|(t, text)| (crate::report::secs(*t), text.clone()))
                .collect(),
        }
    }
}

/// A horizontal bar chart; each bar is a `rect.bar` with `data-label` and
/// `data-value` (exact).
fn bar_chart(id: &str, title: &str, bars: &[(String, f64)]) -> String {
    let h = 40.0 + 18.0 * bars.len().max(1) as f64;
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"{id}\" class=\"chart\" data-kind=\"bar\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title><text x=\"4\" y=\"16\" font-size=\"13\">{t}</text>",
        t = esc(title)
    );
    if bars.is_empty() {
        s.push_str("<text x=\"200\" y=\"40\" class=\"empty\" font-size=\"12\">no data</text>");
    }
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 26.0 + 18.0 * i as f64;
        let w = v / max * (W - 260.0);
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{ty}\" font-size=\"10\">{l}</text>\
             <rect class=\"bar\" data-label=\"{l}\" data-value=\"{dv}\" x=\"170\" y=\"{y}\" width=\"{w:.1}\" height=\"14\" fill=\"{c}\"><title>{l}: {dv}</title></rect>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"10\">{dv}</text>",
            ty = y + 11.0,
            l = esc(label),
            dv = num(*v),
            c = PALETTE[i % PALETTE.len()],
            tx = 174.0 + w,
        );
    }
    s.push_str("</svg>");
    s
}

/// Get-like commands (the rest are charted as "non-get").
const GETS: &[&str] = &[
    "get", "gets", "gat", "gats", "mg", "getq", "getk", "getkq", "gatq", "gatk", "gatkq",
];

fn form(p: &Params, sniffers: &[String], servers: &[String], action: &str) -> String {
    let mut s = format!("<form method=\"get\" action=\"{action}\">");
    if action == "/key" {
        let _ = write!(
            s,
            "<label>key<input name=\"key\" value=\"{}\"></label>",
            esc(&p.key)
        );
    }
    let _ = write!(
        s,
        "<label>since (UTC)<input name=\"since\" id=\"since\" placeholder=\"2026-11-17 14:00:00\" \
         title=\"{hint}\" value=\"{}\"></label>\
         <label>until (UTC)<input name=\"until\" id=\"until\" placeholder=\"now\" title=\"{hint}\" value=\"{}\"></label>",
        esc(&p.since),
        esc(&p.until),
        hint = timebox::HINT
    );
    for (name, all, chosen) in [
        ("sniffer", sniffers, &p.sniffers),
        ("server", servers, &p.servers),
    ] {
        let _ = write!(
            s,
            "<label>{name}s<select name=\"{name}\" id=\"{name}\" multiple size=\"{}\">",
            all.len().clamp(2, 6)
        );
        for v in all {
            let sel = if chosen.contains(v) { " selected" } else { "" };
            let _ = write!(s, "<option{sel}>{}</option>", esc(v));
        }
        s.push_str("</select></label>");
    }
    let _ = write!(
        s,
        "<label>by<select name=\"by\" id=\"by\"><option{}>requests</option><option{}>bytes</option></select></label>\
         <button type=\"submit\" id=\"go\">show</button></form>",
        if p.by_bytes { "" } else { " selected" },
        if p.by_bytes { " selected" } else { "" }
    );
    s
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style>{}</head><body>",
        esc(title),
        super::assets::head_tags()
    )
}

fn weight(by_bytes: bool, requests: u64, bytes: u64) -> u64 {
    if by_bytes {
        bytes
    } else {
        requests
    }
}

/// "Why it misses" over the range: the miss-ratio curves (pool and each
/// server, summed from the stored intervals) and the miss classes.
fn insight_section(rep: &Report) -> String {
    let Some(ins) = &rep.insight else {
        return String::new();
    };
    let mut h = String::from("<h2 id=\"insight\">Why it misses</h2>");
    let series: Vec<serde_json::Value> = std::iter::once(&ins.pool)
        .chain(&ins.servers)
        .filter_map(|s| {
            let mut m = s.mrc.clone()?;
            let has = m["points"].as_array().is_some_and(|p| !p.is_empty());
            m.as_object_mut()?
                .insert("name".into(), s.server.clone().into());
            has.then_some(m)
        })
        .collect();
    if series.is_empty() {
        h.push_str("<p>Too few gets sampled for a miss-ratio curve in this range.</p>");
    } else {
        let j = serde_json::json!({ "series": series }).to_string();
        h.push_str(&super::charts::mrc_chart("chart-mrc", &j));
    }
    h.push_str("<table id=\"miss-classes\"><tr><th>server</th><th>misses</th>");
    for c in crate::collect::insight::MISS_CLASSES {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("<th>storms</th></tr>");
    for s in ins.servers.iter().chain(std::iter::once(&ins.pool)) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            esc(&s.server),
            s.classified_misses
        );
        for c in crate::collect::insight::MISS_CLASSES {
            let _ = write!(h, "<td>{}</td>", s.misses[c]);
        }
        let _ = write!(h, "<td>{}</td></tr>", s.storms);
    }
    h.push_str("</table>");
    h
}

fn main_page(db: &mut dyn crate::store::db::Db, p: &Params) -> anyhow::Result<String> {
    let q = p.query()?;
    let (sniffers, servers) = history::names(db)?;
    let snaps = history::intervals(db, &q)?;
    let rep = history::report(
        db,
        &q,
        &ReportOptions {
            top: 20,
            sort: if p.by_bytes {
                SortBy::Bytes
            } else {
                SortBy::Requests
            },
            redact: Default::default(),
        },
    )?;
    let unit = if p.by_bytes { "bytes" } else { "requests" };
    let x0 = snaps.iter().map(|s| s.start).min().unwrap_or(0);
    let x1 = snaps.iter().map(|s| s.start).max().unwrap_or(0);
    // Events up to the end of the last interval shown.
    let xe = snaps.iter().map(|s| s.end).max().unwrap_or(0);
    let events = crate::store::events::read(db, q.since, q.until, &q.sniffers)?;
    let events: Vec<_> = events.into_iter().filter(|e| e.ts_ns <= xe).collect();
    let marks: Vec<Mark> = events
        .iter()
        .map(|e| {
            (
                e.ts_ns,
                format!(
                    "{} {} {}: {} {} {} = {} (threshold {}) at {}",
                    e.sniffer,
                    e.trigger,
                    e.event,
                    e.subject_kind,
                    e.subject,
                    e.metric,
                    e.value,
                    e.threshold,
                    fmt_time(e.ts_ns)
                ),
            )
        })
        .collect();
    let mut h = head("memtap history");
    h.push_str("<h1>memtap history</h1>");
    h.push_str(&form(p, &sniffers, &servers, "/"));
    let _ = write!(
        h,
        "<p class=\"muted\" id=\"summary\" data-intervals=\"{}\" data-requests=\"{}\">{} intervals, {} to {}; {} requests, {} hits, {} misses</p>",
        snaps.len(),
        rep.totals.requests,
        snaps.len(),
        fmt_time(x0),
        fmt_time(x1),
        rep.totals.requests,
        rep.totals.hits,
        rep.totals.misses
    );
    h.push_str("<div class=\"charts\">");
    // Per server, per interval (sniffers summed).
    // server → interval start → (requests, hits, misses, bytes).
    type PerServer = BTreeMap<String, BTreeMap<u64, (u64, u64, u64, u64)>>;
    let mut per: PerServer = BTreeMap::new();
    for s in &snaps {
        for (server, t) in &s.servers {
            let e = per
                .entry(server.clone())
                .or_default()
                .entry(s.start)
                .or_default();
            e.0 += t.requests;
            e.1 += t.hits;
            e.2 += t.misses;
            e.3 += t.bytes();
        }
    }
    let axis = Axis::of(snaps.iter().map(|s| (s.start, s.end)));
    let rate: Vec<TimeSeries> = per
        .iter()
        .map(|(srv, pts)| {
            let counts = pts
                .iter()
                .map(|(&t, v)| (t, weight(p.by_bytes, v.0, v.3)))
                .collect();
            axis.rate(srv, &counts)
        })
        .collect();
    h.push_str(
        &axis
            .chart(
                "chart-rate",
                &format!("{unit} per server"),
                p.by_bytes,
                "requests",
                rate,
                &marks,
            )
            .html(),
    );
    // Hit rate: hits / (hits + misses), in percent to 0.1.
    let hit: Vec<TimeSeries> = per
        .iter()
        .map(|(srv, pts)| {
            let at = |t: &u64| pts.get(t).filter(|v| v.1 + v.2 > 0);
            TimeSeries {
                name: srv.clone(),
                values: axis
                    .starts
                    .iter()
                    .map(|t| {
                        at(t).map(|v| (v.1 as f64 * 1000.0 / (v.1 + v.2) as f64).round() / 10.0)
                    })
                    .collect(),
                counts: axis.starts.iter().map(|t| at(t).map(|v| v.1)).collect(),
                of: Some(
                    axis.starts
                        .iter()
                        .map(|t| at(t).map(|v| v.1 + v.2))
                        .collect(),
                ),
            }
        })
        .collect();
    h.push_str(
        &TimeChart {
            id: "chart-hitrate".into(),
            title: "hit rate per server".into(),
            unit: "% hits".into(),
            fmt: Fmt::Pct,
            count_unit: "hits".into(),
            ..axis.chart("", "", false, "", hit, &marks)
        }
        .html(),
    );
    h.push_str(&top_keys_chart(&snaps, &rep, p.by_bytes, &axis));
    h.push_str(&commands_chart(&snaps, &axis));
    let clients: Vec<(String, f64)> = rep
        .clients
        .iter()
        .take(10)
        .map(|c| {
            (
                c.client.clone(),
                weight(p.by_bytes, c.requests, c.bytes_in + c.bytes_out) as f64,
            )
        })
        .collect();
    h.push_str(&bar_chart(
        "chart-clients",
        &format!("top clients ({unit})"),
        &clients,
    ));
    let dist = |v: &[crate::report::Bucket]| -> Vec<(String, f64)> {
        v.iter()
            .map(|b| (format!("≤ {}", b.le), b.count as f64))
            .collect()
    };
    h.push_str(&bar_chart(
        "chart-value-size",
        "value sizes (bytes, log2 classes)",
        &dist(&rep.distributions.value_size_bytes),
    ));
    h.push_str(&bar_chart(
        "chart-latency",
        "latency (µs, log2 classes)",
        &dist(&rep.distributions.latency_us),
    ));
    let total: u64 = rep
        .servers
        .iter()
        .map(|s| weight(p.by_bytes, s.requests, s.bytes_in + s.bytes_out))
        .sum();
    let share: Vec<(String, f64)> = rep
        .servers
        .iter()
        .map(|s| {
            let w = weight(p.by_bytes, s.requests, s.bytes_in + s.bytes_out);
            (
                s.server.clone(),
                if total == 0 {
                    0.0
                } else {
                    (w as f64 * 1000.0 / total as f64).round() / 10.0
                },
            )
        })
        .collect();
    h.push_str(&bar_chart(
        "chart-share",
        &format!("share of {unit} per server (%; hot shard)"),
        &share,
    ));
    h.push_str("</div>");
    h.push_str(&insight_section(&rep));
    h.push_str(&tables(&rep, p));
    h.push_str("</body></html>");
    Ok(h)
}

/// The top keys of the range, drawn per interval.
fn top_keys_chart(snaps: &[Snapshot], rep: &Report, by_bytes: bool, axis: &Axis) -> String {
    let top: Vec<&str> = rep.keys.iter().take(5).map(|k| k.key.as_str()).collect();
    let mut per: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); top.len()];
    for s in snaps {
        for k in s.keys.iter().filter(|k| !k.rest) {
            let name = crate::escape::key_string(&k.item);
            if let Some(i) = top.iter().position(|t| *t == name) {
                *per[i].entry(s.start).or_default() += weight(by_bytes, k.count, k.traffic.bytes());
            }
        }
    }
    let series = top
        .iter()
        .zip(&per)
        .map(|(k, counts)| axis.rate(k, counts))
        .collect();
    axis.chart(
        "chart-keys",
        "top keys over time",
        by_bytes,
        "requests",
        series,
        &[],
    )
    .html()
}

fn commands_chart(snaps: &[Snapshot], axis: &Axis) -> String {
    let mut per: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
    for s in snaps {
        for c in &s.commands {
            if !GETS.contains(&c.command.as_str()) {
                *per.entry(c.command.clone())
                    .or_default()
                    .entry(s.start)
                    .or_default() += c.count;
            }
        }
    }
    let series = per
        .iter()
        .map(|(name, counts)| axis.rate(name, counts))
        .collect();
    axis.chart(
        "chart-commands",
        "non-get commands",
        false,
        "commands",
        series,
        &[],
    )
    .html()
}

/// A client or server with its requests to a key: `name (n)`, or
/// `name (n ±b)` when the count may be up to `b` too high.
fn counted(name: &str, n: u64, b: u64) -> String {
    if b == 0 {
        format!("{name} ({n})")
    } else {
        format!("{name} ({n} ±{b})")
    }
}

fn tables(rep: &Report, p: &Params) -> String {
    let mut h = String::from(
        "<h2>Top keys</h2><table id=\"keys\"><tr><th>key</th><th>requests</th><th>hits</th><th>misses</th>\
         <th>bytes in</th><th>bytes out</th><th>servers</th><th>top clients</th></tr>",
    );
    for k in &rep.keys {
        let clients: Vec<String> = k
            .clients
            .iter()
            .take(3)
            .map(|c| counted(&c.client, c.requests, c.error_bound))
            .collect();
        let servers: Vec<String> = k
            .server_requests
            .iter()
            .map(|s| counted(&s.server, s.requests, s.error_bound))
            .collect();
        let _ = write!(
            h,
            "<tr><td><a class=\"key\" href=\"/key?key={}&amp;{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            url_encode(&k.key),
            p.href(),
            esc(&k.key),
            k.requests,
            k.hits,
            k.misses,
            k.bytes_in,
            k.bytes_out,
            esc(&servers.join(", ")),
            esc(&clients.join(", "))
        );
    }
    h.push_str("</table><h2>Top clients</h2><table id=\"clients\"><tr><th>client</th><th>requests</th><th>hits</th><th>misses</th><th>bytes in</th><th>bytes out</th></tr>");
    for c in &rep.clients {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.client),
            c.requests,
            c.hits,
            c.misses,
            c.bytes_in,
            c.bytes_out
        );
    }
    h.push_str("</table>");
    h
}

fn key_page(db: &mut dyn crate::store::db::Db, p: &Params) -> anyhow::Result<String> {
    let q = p.query()?;
    let (sniffers, servers) = history::names(db)?;
    let key = crate::escape::unescape_key(&p.key);
    let kh = history::key_history(db, &q, &key, 20)?;
    let mut h = head(&format!("memtap key {}", kh.key));
    let _ = write!(
        h,
        "<h1>Key <span id=\"key\">{}</span></h1><p><a href=\"/?{}\">back to the overview</a></p>",
        esc(&kh.key),
        p.href()
    );
    h.push_str(&form(p, &sniffers, &servers, "/key"));
    match &kh.peak {
        None => {
            h.push_str("<p id=\"absent\">This key is not in the stored history for this range.</p>")
        }
        Some(pk) => {
            let _ = write!(
                h,
                "<p id=\"peak\" data-requests=\"{}\" data-start=\"{}\">Peak: {} requests at {}. {}</p>",
                pk.requests,
                pk.start / 1_000_000_000,
                pk.requests,
                fmt_time(pk.start),
                match kh.first_top {
                    Some(f) => format!("First in the top {}: {}.", kh.top, fmt_time(f)),
                    None => format!("Never in the top {}.", kh.top),
                }
            );
        }
    }
    let axis = Axis::of(kh.points.iter().map(|p| (p.start, p.end)));
    let mk = |name: &str, f: &dyn Fn(&history::KeyPoint) -> u64| {
        let counts = kh.points.iter().map(|p| (p.start, f(p))).collect();
        axis.rate(name, &counts)
    };
    let series = if p.by_bytes {
        vec![
            mk("bytes_in", &|p| p.bytes_in),
            mk("bytes_out", &|p| p.bytes_out),
        ]
    } else {
        vec![
            mk("requests", &|p| p.requests),
            mk("hits", &|p| p.hits),
            mk("misses", &|p| p.misses),
        ]
    };
    h.push_str(
        &axis
            .chart(
                "chart-key",
                "the key per interval",
                p.by_bytes,
                "requests",
                series,
                &[],
            )
            .html(),
    );
    h.push_str("<table id=\"points\"><tr><th>interval</th><th>requests</th><th>hits</th><th>misses</th><th>bytes in</th><th>bytes out</th><th>rank</th><th>servers</th><th>clients</th></tr>");
    for pt in &kh.points {
        let clients: Vec<String> = pt
            .clients
            .iter()
            .map(|(c, n, b)| counted(c, *n, *b))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt_time(pt.start),
            pt.requests,
            pt.hits,
            pt.misses,
            pt.bytes_in,
            pt.bytes_out,
            pt.rank,
            esc(&pt.servers.join(", ")),
            esc(&clients.join(", "))
        );
    }
    h.push_str("</table></body></html>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip() {
        let p = Params::parse(
            "since=2026-11-17T14%3A00&server=10.0.0.1%3A11211&server=b&by=bytes&key=a+b",
        )
        .unwrap();
        assert_eq!(p.since, "2026-11-17T14:00");
        assert_eq!(p.servers, vec!["10.0.0.1:11211", "b"]);
        assert!(p.by_bytes);
        assert_eq!(p.key, "a b");
        assert_eq!(
            p.href(),
            "since=2026-11-17T14:00&amp;server=10.0.0.1:11211&amp;server=b&amp;by=bytes"
        );
    }

    #[test]
    fn boxes_show_utc_and_keep_relative_forms() {
        let now = 1_794_924_000_000_000_000; // 2026-11-17T14:00:00Z
        let mut p = Params::parse("since=1794920400.25&until=-15m").unwrap();
        p.resolve(now).unwrap();
        assert_eq!(p.since, "2026-11-17 13:00:00.250");
        assert_eq!(p.until, "-15m");
        assert_eq!(
            p.range,
            (Some(1_794_920_400_250_000_000), Some(now - 900_000_000_000))
        );
        let mut p = Params::parse("since=yesterday").unwrap();
        assert_eq!(
            p.resolve(now).unwrap_err().to_string(),
            format!("since: time \"yesterday\": {}", timebox::HINT)
        );
    }

    #[test]
    fn bars_carry_exact_values() {
        let b = bar_chart("b", "t", &[("x<y".into(), 4.0)]);
        assert!(b.contains("data-label=\"x&lt;y\" data-value=\"4\""), "{b}");
    }

    #[test]
    fn axis_rates() {
        let a = Axis::of([
            (0, 500_000_000),
            (1_000_000_000, 1_500_000_000),
            (0, 250_000_000),
        ]);
        assert_eq!(a.starts, vec![0, 1_000_000_000]);
        assert_eq!(a.durs, vec![500_000_000, 500_000_000]);
        let s = a.rate("x", &BTreeMap::from([(1_000_000_000, 3)]));
        assert_eq!(s.values, vec![None, Some(6.0)]);
        assert_eq!(s.counts, vec![None, Some(3)]);
    }
}
