//! Chart fragments for the pages: each is a `<figure class="mt-chart">`
//! holding its data as JSON (`<script type="application/json"
//! class="mt-data">`), which `assets/charts.js` draws with uPlot (axes,
//! ticks, gridlines, hover legend, drag to zoom), plus a `<noscript>` table
//! of the same values so the page still says something without scripts.
//! The JSON is the contract: exact values, read by the browser tests too.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON inside `<script>`: `</` would end the element early, and `<!--`
/// would change how the parser reads the rest.
fn script_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--")
}

/// How a y axis prints its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fmt {
    /// 1.5 k, 2.3 M (counts, rates).
    Si,
    /// 1.5 KiB, 2 GiB (bytes).
    Iec,
    /// 0 to 100.
    Pct,
}

/// One line of a time chart; every vector is as long as the chart's `x`
/// (None: the interval has no row for it).
#[derive(Debug, Clone, Serialize)]
pub struct TimeSeries {
    pub name: String,
    /// What is drawn (a rate, or a percentage).
    pub values: Vec<Option<f64>>,
    /// The exact count behind each value (requests, bytes, hits).
    pub counts: Vec<Option<u64>>,
    /// For a percentage: the count it is a share of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<Vec<Option<u64>>>,
}

/// A chart over the stored intervals.
#[derive(Debug, Clone, Serialize)]
pub struct TimeChart {
    pub id: String,
    pub title: String,
    /// The y axis label, e.g. `requests/s`.
    pub unit: String,
    pub fmt: Fmt,
    /// What `counts` count, e.g. `requests`.
    pub count_unit: String,
    /// Interval starts, Unix seconds (as the JSON report writes them).
    pub x: Vec<f64>,
    /// Interval lengths, seconds (the rates' divisors).
    pub dur: Vec<f64>,
    pub series: Vec<TimeSeries>,
    /// Trigger events marked on the time axis: (Unix seconds, text).
    pub events: Vec<(f64, String)>,
}

/// Rows of a `<noscript>` table before it says "and N more".
const NOSCRIPT_ROWS: usize = 200;

/// "1.5 k", "20", "0.25": three significant digits, SI prefixes.
pub fn fmt_si(v: f64) -> String {
    let a = v.abs();
    let (d, p) = [
        (1e15, " P"),
        (1e12, " T"),
        (1e9, " G"),
        (1e6, " M"),
        (1e3, " k"),
    ]
    .into_iter()
    .find(|(d, _)| a >= *d)
    .unwrap_or((1.0, ""));
    format!("{}{p}", sig3(v / d))
}

/// "1.5 GiB", "512 B": three significant digits, IEC prefixes.
pub fn fmt_iec(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut i = 0;
    let mut x = v;
    while x.abs() >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    format!("{} {}", sig3(x), units[i])
}

fn sig3(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn fmt_value(fmt: Fmt, v: f64) -> String {
    match fmt {
        Fmt::Si => fmt_si(v),
        Fmt::Iec => fmt_iec(v),
        Fmt::Pct => format!("{v:.1} %"),
    }
}

impl TimeChart {
    pub fn html(&self) -> String {
        let mut h = String::new();
        let empty = self
            .series
            .iter()
            .all(|s| s.values.iter().all(Option::is_none));
        let _ = write!(
            h,
            "<figure class=\"mt-chart\" id=\"{id}\" data-kind=\"time\"><figcaption>{t} <span class=\"unit\">({u})</span></figcaption>\
             <script type=\"application/json\" class=\"mt-data\">{j}</script>",
            id = esc(&self.id),
            t = esc(&self.title),
            u = esc(&self.unit),
            j = script_json(self),
        );
        if empty {
            h.push_str("<p class=\"empty\">no data</p></figure>");
            return h;
        }
        h.push_str("<div class=\"mt-plot\"></div><noscript><table class=\"mt-values\"><tr><th>interval (UTC)</th>");
        for s in &self.series {
            let _ = write!(h, "<th>{}</th>", esc(&s.name));
        }
        h.push_str("</tr>");
        for (i, x) in self.x.iter().enumerate().take(NOSCRIPT_ROWS) {
            let ns = (x * 1e9).round().max(0.0) as u64;
            let _ = write!(h, "<tr><td>{}</td>", crate::time::utc(ns));
            for s in &self.series {
                match (s.values[i], s.counts[i]) {
                    (Some(v), Some(c)) => {
                        let _ = write!(h, "<td>{} ({c})</td>", fmt_value(self.fmt, v));
                    }
                    (Some(v), None) => {
                        let _ = write!(h, "<td>{}</td>", fmt_value(self.fmt, v));
                    }
                    _ => h.push_str("<td></td>"),
                }
            }
            h.push_str("</tr>");
        }
        if self.x.len() > NOSCRIPT_ROWS {
            let _ = write!(
                h,
                "<tr><td colspan=\"{}\">and {} more intervals: narrow the range</td></tr>",
                self.series.len() + 1,
                self.x.len() - NOSCRIPT_ROWS
            );
        }
        h.push_str("</table></noscript>");
        if !self.events.is_empty() {
            h.push_str("<noscript><ul class=\"mt-events\">");
            for (_, text) in &self.events {
                let _ = write!(h, "<li>{}</li>", esc(text));
            }
            h.push_str("</ul></noscript>");
        }
        h.push_str("</figure>");
        h
    }
}

/// One miss-ratio curve as `mrc_chart` accepts it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    #[serde(default)]
    pub name: Option<String>,
    /// `bytes` (the default) or `objects`.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub sampling: Option<f64>,
    #[serde(default)]
    pub current_hit_ratio: Option<f64>,
    #[serde(default)]
    pub attainable_hit_ratio: Option<f64>,
    /// (cache size, hit ratio 0..1), sizes increasing.
    pub points: Vec<(f64, f64)>,
    /// (share of the attainable hits, size reaching it or null).
    #[serde(default)]
    pub targets: Vec<(f64, Option<f64>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    series: Vec<Curve>,
}

#[derive(Serialize)]
struct MrcData<'a> {
    kind: &'static str,
    unit: &'a str,
    series: &'a [Curve],
}

fn check_curve(c: &Curve, unit: &str) -> Result<(), String> {
    let name = c.name.as_deref().unwrap_or("the curve");
    if c.unit.as_deref().unwrap_or("bytes") != unit {
        return Err(format!("{name}: every curve must have the unit {unit}"));
    }
    let ratio = |r: f64| r.is_finite() && (0.0..=1.0).contains(&r);
    let mut last = 0.0;
    for &(size, hr) in &c.points {
        if !(size.is_finite() && size > last) {
            return Err(format!(
                "{name}: sizes must be positive and increasing (log axis), got {size} after {last}"
            ));
        }
        if !ratio(hr) {
            return Err(format!("{name}: hit ratio {hr} is not within 0..1"));
        }
        last = size;
    }
    for r in [c.current_hit_ratio, c.attainable_hit_ratio, c.sampling]
        .into_iter()
        .flatten()
    {
        if !ratio(r) {
            return Err(format!("{name}: ratio {r} is not within 0..1"));
        }
    }
    for &(t, size) in &c.targets {
        if !ratio(t) || size.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
            return Err(format!("{name}: bad target [{t}, {size:?}]"));
        }
    }
    Ok(())
}

/// The miss-ratio curve chart: cache size (log axis, KiB/MiB/GiB) against
/// hit ratio (%), a horizontal line at the current hit ratio, a vertical
/// marker at each target's size, and on hover "with 1.5 GiB, hit ratio
/// 91.2 %" per curve. Returns an HTML fragment (a `figure`) for a page
/// that has [`super::assets::head_tags`] in its head.
///
/// `curve_json` is one curve:
///
/// ```json
/// {"unit": "bytes", "sampling": 0.01,
///  "current_hit_ratio": 0.82, "attainable_hit_ratio": 0.97,
///  "points": [[1048576, 0.41], [2097152, 0.63]],
///  "targets": [[0.9, 1572864], [0.95, 2097152], [0.99, null]]}
/// ```
///
/// or several, overlaid with a legend, each with a `name`:
///
/// ```json
/// {"series": [{"name": "pool", "points": [...], ...},
///             {"name": "127.0.0.1:11211", "points": [...], ...}]}
/// ```
///
/// Fields: `points` (required): `[size, hit_ratio]` pairs, sizes positive
/// and strictly increasing, hit ratios in 0..1. `unit`: `"bytes"` (the
/// default; IEC sizes) or `"objects"` (SI counts); all curves alike.
/// `sampling` (SHARDS rate, 0..1), `current_hit_ratio`,
/// `attainable_hit_ratio`: optional, 0..1. `targets`: `[share, size]`,
/// share of the attainable hits in 0..1, size null when the curve never
/// reaches it. `name`: optional for one curve (default "pool"). Unknown
/// fields are refused. Bad JSON yields a `<p class="error">` saying why,
/// never a panic.
pub fn mrc_chart(id: &str, curve_json: &str) -> String {
    let err = |m: String| {
        format!(
            "<p class=\"error\" id=\"{}\">miss-ratio curve: {}</p>",
            esc(id),
            esc(&m)
        )
    };
    // Which form decides the parser, so a mistake is named precisely.
    let parsed = match serde_json::from_str::<serde_json::Value>(curve_json) {
        Ok(v) if v.get("series").is_some() => serde_json::from_value::<Many>(v).map(|m| m.series),
        Ok(v) => serde_json::from_value::<Curve>(v).map(|c| vec![c]),
        Err(e) => Err(e),
    };
    let mut curves = match parsed {
        Ok(c) => c,
        Err(e) => return err(format!("unreadable JSON ({e})")),
    };
    if curves.is_empty() {
        return err("no curves".into());
    }
    let unit = curves[0].unit.clone().unwrap_or_else(|| "bytes".into());
    if unit != "bytes" && unit != "objects" {
        return err(format!("unit {unit:?}: use \"bytes\" or \"objects\""));
    }
    for (i, c) in curves.iter_mut().enumerate() {
        if c.name.is_none() {
            c.name = Some(if i == 0 {
                "pool".into()
            } else {
                format!("curve {}", i + 1)
            });
        }
        if let Err(m) = check_curve(c, &unit) {
            return err(m);
        }
    }
    let size = |v: f64| {
        if unit == "bytes" {
            fmt_iec(v)
        } else {
            format!("{} objects", fmt_si(v))
        }
    };
    let data = MrcData {
        kind: "mrc",
        unit: &unit,
        series: &curves,
    };
    let mut h = format!(
        "<figure class=\"mt-chart mt-mrc\" id=\"{}\" data-kind=\"mrc\"><figcaption>Miss-ratio curve: hit ratio by cache size \
         <span class=\"unit\">(LRU, {})</span></figcaption>\
         <script type=\"application/json\" class=\"mt-data\">{}</script>",
        esc(id),
        if unit == "bytes" { "bytes" } else { "objects" },
        script_json(&data)
    );
    h.push_str("<div class=\"mt-plot\"></div><ul class=\"mt-summary\">");
    for c in &curves {
        let mut line = format!("<b>{}</b>:", esc(c.name.as_deref().unwrap_or("")));
        if let Some(r) = c.current_hit_ratio {
            let _ = write!(line, " hit ratio now {:.1} %", r * 100.0);
        }
        if let Some(r) = c.attainable_hit_ratio {
            let _ = write!(line, ", at most {:.1} %", r * 100.0);
        }
        for (t, s) in &c.targets {
            let _ = match s {
                Some(s) => write!(
                    line,
                    "; {:.0} % of attainable hits with {}",
                    t * 100.0,
                    size(*s)
                ),
                None => write!(
                    line,
                    "; {:.0} % of attainable hits: beyond the curve",
                    t * 100.0
                ),
            };
        }
        if let Some(s) = c.sampling {
            let _ = write!(line, " (sampled {} % of keys)", sig3(s * 100.0));
        }
        let _ = write!(h, "<li>{line}</li>");
    }
    h.push_str("</ul><noscript><table class=\"mt-values\"><tr><th>curve</th><th>cache size</th><th>hit ratio</th></tr>");
    let mut rows = 0;
    for c in &curves {
        for (s, r) in &c.points {
            if rows == NOSCRIPT_ROWS {
                break;
            }
            rows += 1;
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.1} %</td></tr>",
                esc(c.name.as_deref().unwrap_or("")),
                size(*s),
                r * 100.0
            );
        }
    }
    h.push_str("</table></noscript></figure>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_iec(1536.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(fmt_iec(512.0), "512 B");
        assert_eq!(fmt_iec(1024.0), "1 KiB");
        assert_eq!(fmt_iec(10.0 * 1024.0 * 1024.0), "10 MiB");
        assert_eq!(fmt_si(1234.0), "1.23 k");
        assert_eq!(fmt_si(0.25), "0.25");
        assert_eq!(fmt_si(0.0), "0");
        assert_eq!(fmt_si(20e6), "20 M");
        assert_eq!(fmt_si(150.0), "150");
    }

    #[test]
    fn time_chart_embeds_exact_values() {
        let c = TimeChart {
            id: "c".into(),
            title: "t</script>".into(),
            unit: "requests/s".into(),
            fmt: Fmt::Si,
            count_unit: "requests".into(),
            x: vec![60.0, 120.0],
            dur: vec![60.0, 60.0],
            series: vec![TimeSeries {
                name: "a".into(),
                values: vec![Some(0.05), None],
                counts: vec![Some(3), None],
                of: None,
            }],
            events: vec![(90.0, "hot-key fired".into())],
        };
        let h = c.html();
        assert!(h.contains(
            "\"series\":[{\"name\":\"a\",\"values\":[0.05,null],\"counts\":[3,null]}],\"events\":[[90.0,\"hot-key fired\"]]}</script>"
        ), "{h}");
        assert!(h.contains("\"title\":\"t<\\/script>\""), "{h}");
        assert_eq!(h.matches("</script>").count(), 1);
        assert!(
            h.contains("<tr><td>1970-01-01T00:01:00Z</td><td>0.05 (3)</td></tr>"),
            "{h}"
        );
        assert!(h.contains("<li>hot-key fired</li>"));
    }

    #[test]
    fn mrc_accepts_one_or_several_curves_and_refuses_bad_ones() {
        let one = r#"{"unit":"bytes","sampling":0.01,"current_hit_ratio":0.82,"attainable_hit_ratio":0.97,
            "points":[[1048576,0.41],[1073741824,0.9]],"targets":[[0.9,1610612736],[0.99,null]]}"#;
        let h = mrc_chart("m", one);
        assert!(h.contains("data-kind=\"mrc\""), "{h}");
        assert!(h.contains("\"name\":\"pool\""), "{h}");
        assert!(h.contains(
            "<li><b>pool</b>: hit ratio now 82.0 %, at most 97.0 %; 90 % of attainable hits with 1.5 GiB; \
             99 % of attainable hits: beyond the curve (sampled 1 % of keys)</li>"
        ), "{h}");
        assert!(
            h.contains("<tr><td>pool</td><td>1 MiB</td><td>41.0 %</td></tr>"),
            "{h}"
        );
        let many = r#"{"series":[{"name":"pool","points":[[1024,0.5]]},{"name":"b<1>","points":[[2048,0.25]]}]}"#;
        let h = mrc_chart("m", many);
        assert!(h.contains("<li><b>b&lt;1&gt;</b>:</li>"), "{h}");
        for (bad, why) in [
            ("{", "unreadable JSON"),
            (
                r#"{"points":[[0,0.5]]}"#,
                "sizes must be positive and increasing",
            ),
            (
                r#"{"points":[[2,0.5],[1,0.6]]}"#,
                "sizes must be positive and increasing",
            ),
            (
                r#"{"points":[[2,1.5]]}"#,
                "hit ratio 1.5 is not within 0..1",
            ),
            (r#"{"points":[],"colour":"red"}"#, "unknown field `colour`"),
            (r#"{"series":[]}"#, "no curves"),
            (r#"{"unit":"pages","points":[]}"#, "unit \"pages\""),
            (r#"{"points":[],"targets":[[0.9,-1]]}"#, "bad target"),
        ] {
            let h = mrc_chart("m", bad);
            assert!(
                h.starts_with("<p class=\"error\" id=\"m\">miss-ratio curve: "),
                "{bad}: {h}"
            );
            assert!(h.contains(&esc(why)), "{bad}: {h}");
        }
    }
}
