//! `/metrics` content after a fixture replay: every counter equals the
//! report's figure, histograms are cumulative with `_count` equal to the
//! report's distribution totals, both formats pass their checkers
//! (`promtool check metrics`, the strict OpenMetrics parser), and top-N
//! series of keys that leave the top are gone at the next render.

mod common;
use common::exposition::*;
use common::*;
use memtap::collect::batch::RecordBatch;
use memtap::collect::redact::Redact;
use memtap::collect::tables::{ClientGranularity, TableLimits, Tables};
use memtap::decode::Transport;
use memtap::export::prometheus::{render, ExportInput, Format};
use memtap::protocol::{Outcome, Proto};
use memtap::session::Record;
use memtap::stats::Counters;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn sum_where(s: &[Sample], name: &str, pred: impl Fn(&Sample) -> bool) -> u64 {
    s.iter()
        .filter(|x| x.name == name && pred(x))
        .map(|x| x.value as u64)
        .sum()
}

fn check_against_report(case: &str, r: &Replayed) {
    let rep = &r.report;
    let s = samples(&r.prom);
    let all = |_: &Sample| true;

    // Requests: the total, by result, by server, by command.
    let totals = &rep["totals"];
    assert_eq!(
        sum_where(&s, "memtap_requests_total", all),
        totals["requests"].as_u64().unwrap(),
        "{case}: requests"
    );
    assert!(totals["requests"].as_u64().unwrap() > 0, "{case}: empty");
    assert_eq!(
        sum_where(&s, "memtap_commands_total", all),
        totals["commands"].as_u64().unwrap(),
        "{case}: commands"
    );
    for (result, n) in rep["results"].as_object().unwrap() {
        assert_eq!(
            sum_where(&s, "memtap_requests_total", |x| x.label("result") == result),
            n.as_u64().unwrap(),
            "{case}: result {result}"
        );
    }
    for c in rep["commands"].as_array().unwrap() {
        let same = |x: &Sample| {
            x.label("proto") == c["proto"]
                && x.label("transport") == c["transport"]
                && x.label("command") == c["command"]
        };
        assert_eq!(
            sum_where(&s, "memtap_requests_total", same),
            c["requests"].as_u64().unwrap(),
            "{case}: {c}"
        );
        assert_eq!(
            sum_where(&s, "memtap_commands_total", same),
            c["count"].as_u64().unwrap(),
            "{case}: {c}"
        );
    }
    let servers = rep["servers"].as_array().unwrap();
    assert_eq!(
        s.iter()
            .filter(|x| x.name == "memtap_server_requests_total")
            .count(),
        servers.len()
    );
    for sv in servers {
        let name = sv["server"].as_str().unwrap();
        let at = |x: &Sample| x.label("server") == name;
        for f in [
            "requests",
            "hits",
            "misses",
            "errors",
            "bytes_in",
            "bytes_out",
        ] {
            assert_eq!(
                sum_where(&s, &format!("memtap_server_{f}_total"), at),
                sv[f].as_u64().unwrap(),
                "{case}: {name} {f}"
            );
        }
        assert_eq!(
            sum_where(&s, "memtap_requests_total", at),
            sv["requests"].as_u64().unwrap(),
            "{case}: {name} joint requests"
        );
        assert_eq!(
            sum_where(&s, "memtap_requests_total", |x| at(x)
                && x.label("result") == "hit"),
            sv["hits"].as_u64().unwrap(),
            "{case}: {name} joint hits"
        );
    }
    assert_eq!(
        sum_where(&s, "memtap_server_overflow_requests_total", all),
        0
    );

    // Health: every counter of the report.
    for (name, v) in rep["health"].as_object().unwrap() {
        assert_eq!(
            sum_where(&s, &format!("memtap_{name}_total"), all),
            v.as_u64().unwrap(),
            "{case}: health {name}"
        );
    }
    assert_eq!(
        rep["health"].as_object().unwrap().len(),
        Counters::default().iter().count()
    );
    let limits = &rep["limits"];
    for (table, field) in [
        ("keys", "key_evictions"),
        ("clients", "client_evictions"),
        ("families", "family_evictions"),
    ] {
        assert_eq!(
            sum_where(&s, "memtap_heavy_hitter_evictions_total", |x| x
                .label("table")
                == table),
            limits[field].as_u64().unwrap()
        );
    }
    assert_eq!(
        sum_where(&s, "memtap_windows_closed_total", all),
        rep["windows"].as_array().unwrap().len() as u64
    );

    // Histograms: cumulative, +Inf == _count, _count == the report's
    // distribution totals.
    for (name, dist) in [
        ("memtap_request_latency_seconds", "latency_us"),
        ("memtap_value_size_bytes", "value_size_bytes"),
    ] {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for x in s.iter().filter(|x| x.name == format!("{name}_bucket")) {
            let key = format!("{}/{}", x.label("server"), x.label("class"));
            let le = match x.label("le") {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap(),
            };
            series.entry(key).or_default().push((le, x.value));
        }
        let mut counted = 0u64;
        for (key, b) in &series {
            assert!(
                b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{case}: {name} {key}: {b:?}"
            );
            let count = s
                .iter()
                .find(|x| {
                    x.name == format!("{name}_count")
                        && format!("{}/{}", x.label("server"), x.label("class")) == *key
                })
                .unwrap()
                .value;
            assert_eq!(b.last().unwrap(), &(f64::INFINITY, count), "{case}: {key}");
            counted += count as u64;
        }
        let want: u64 = rep["distributions"][dist]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, want, "{case}: {name} count");
    }

    // Top-N: the last window's top keys (report windows are in order).
    let w = rep["windows"].as_array().unwrap().last().unwrap();
    let top_keys: BTreeSet<&str> = s
        .iter()
        .filter(|x| x.name == "memtap_top_key_requests")
        .map(|x| x.label("key"))
        .collect();
    assert!(top_keys.len() <= 10);
    let window_keys: BTreeSet<&str> = w["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert!(top_keys.is_subset(&window_keys), "{case}");
    assert_eq!(
        sum_where(&s, "memtap_window_requests", all),
        w["totals"]["requests"].as_u64().unwrap()
    );
}

#[test]
fn every_counter_equals_the_report() {
    for case in cases() {
        for (workers, collectors) in [(1, 1), (2, 2)] {
            let r = replay_fixture(case, workers, collectors);
            check_against_report(case, &r);
        }
    }
}

#[test]
fn the_formats_differ_only_in_metadata() {
    for case in cases() {
        let r = replay_fixture(case, 1, 1);
        // Same samples in the same order.
        // OpenMetrics writes integral `le` values as `1.0`, 0.0.4 as `1`.
        let mut b = samples(&r.om);
        for x in &mut b {
            if let Some(le) = x.labels.get_mut("le") {
                if let Some(v) = le.strip_suffix(".0") {
                    *le = v.to_string();
                }
            }
        }
        let a = samples(&r.prom);
        assert_eq!(a.len(), b.len(), "{case}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{case}");
        }
        assert!(r.om.ends_with("# EOF\n"));
        assert!(!r.prom.contains("# EOF"));
    }
}

#[test]
fn promtool_check_metrics_passes() {
    let Some(promtool) = checker("promtool", "prometheus") else {
        return;
    };
    for case in cases() {
        let r = replay_fixture(case, 1, 1);
        run_ok(&promtool, &["check", "metrics"], &r.prom);
    }
}

#[test]
fn openmetrics_parses_strictly() {
    let Some(py) = checker("/usr/bin/python3", "python3") else {
        return;
    };
    let script = repo().join("scripts/check-openmetrics.py");
    if std::process::Command::new(&py)
        .args(["-c", "import prometheus_client"])
        .status()
        .map_or(true, |s| !s.success())
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3-prometheus-client is missing under CI"
        );
        eprintln!("skipped: python3-prometheus-client is not installed");
        return;
    }
    for case in cases() {
        let r = replay_fixture(case, 1, 1);
        run_ok(&py, &[script.to_str().unwrap()], &r.om);
    }
}

// ---- Top-N churn ----

/// A window's tables from (key, client, requests).
fn window(rows: &[(&str, &str, usize)]) -> Tables {
    let mut t = Tables::new(&TableLimits {
        max_keys: 100,
        max_clients: 100,
        max_families: 10,
        client_granularity: ClientGranularity::Ip,
        key_clients: 32,
        insight_examples: 16,
    });
    let mut b = RecordBatch::default();
    for &(key, client, n) in rows {
        for _ in 0..n {
            b.push(
                &Record {
                    ts: 1,
                    client: client.parse().unwrap(),
                    server: "10.1.0.1:11211".parse().unwrap(),
                    transport: Transport::Tcp,
                    proto: Proto::Text,
                    command: "get",
                    first: true,
                    key: Some(key.as_bytes()),
                    result: Outcome::Hit,
                    req_bytes: 0,
                    exptime: None,
                    resp_bytes: 10,
                    latency_ns: Some(30_000),
                },
                1,
            );
        }
    }
    let mut fam = Vec::new();
    for r in &b.recs {
        t.add(&b, r, None, &mut fam);
    }
    t
}

fn render_window(w: &Tables, top: usize) -> String {
    let mut out = String::new();
    render(
        &mut out,
        &ExportInput {
            run: w,
            last_window: Some(w),
            counters: &Counters::default(),
            top,
            redact: &Redact::None,
            version: "test",
            flows_active: 0,
            windows_closed: 1,
            store: None,
            triggers: None,
            servers_found: &[],
        },
        Format::Prometheus004,
    );
    out
}

/// The top-N series of a render: (name, labels) of every `memtap_top_*`
/// sample.
fn top_series(out: &str) -> BTreeSet<(String, Vec<(String, String)>)> {
    samples(out)
        .into_iter()
        .filter(|x| x.name.starts_with("memtap_top_"))
        .map(|x| (x.name, x.labels.into_iter().collect()))
        .collect()
}

#[test]
fn top_n_churn_leaves_no_stale_series() {
    // Window 1: a, b, "q\"uote" on top; window 2: the quoted key and a
    // leave, d and e enter, b stays; clients churn too.
    let w1 = window(&[
        ("a", "10.0.0.1:1", 50),
        ("b", "10.0.0.2:1", 40),
        ("q\"uote\\", "10.0.0.3:1", 30),
        ("c", "10.0.0.4:1", 1),
    ]);
    let w2 = window(&[
        ("d", "10.0.0.5:1", 70),
        ("e", "10.0.0.6:1", 60),
        ("b", "10.0.0.2:1", 45),
        ("a", "10.0.0.1:1", 2),
        ("q\"uote\\", "10.0.0.3:1", 1),
    ]);
    let top = 3;
    let first = render_window(&w1, top);
    let second = render_window(&w2, top);

    let keys = |out: &str| -> BTreeSet<String> {
        samples(out)
            .into_iter()
            .filter(|x| x.name.starts_with("memtap_top_key_"))
            .map(|x| x.label("key").to_string())
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    // A backslash of a key reads `\x5c` in every output (report::key_string).
    assert_eq!(keys(&first), set(&["a", "b", "q\"uote\\x5c"]));
    assert_eq!(keys(&second), set(&["b", "d", "e"]));

    // Exactly the series of window 2's top, none of window 1's leavers.
    let want: BTreeSet<(String, Vec<(String, String)>)> = {
        let mut v = BTreeSet::new();
        let srv = "10.1.0.1:11211".to_string();
        for (k, c) in [("d", "10.0.0.5"), ("e", "10.0.0.6"), ("b", "10.0.0.2")] {
            for f in [
                "memtap_top_key_requests",
                "memtap_top_key_bytes",
                "memtap_top_key_misses",
            ] {
                v.insert((
                    f.to_string(),
                    vec![
                        ("key".to_string(), k.to_string()),
                        ("server".to_string(), srv.clone()),
                    ],
                ));
            }
            v.insert((
                "memtap_top_key_client_requests".to_string(),
                vec![
                    ("client".to_string(), c.to_string()),
                    ("key".to_string(), k.to_string()),
                ],
            ));
            v.insert((
                "memtap_top_client_requests".to_string(),
                vec![("client".to_string(), c.to_string())],
            ));
        }
        v
    };
    assert_eq!(top_series(&second), want);
    let gone: Vec<_> = top_series(&first)
        .difference(&top_series(&second))
        .cloned()
        .collect();
    assert!(!gone.is_empty());
    for (name, labels) in &gone {
        assert!(
            !second.lines().any(|l| l.starts_with(name.as_str())
                && labels.iter().all(|(k, v)| {
                    let mut e = String::new();
                    for ch in v.chars() {
                        match ch {
                            '\\' => e.push_str("\\\\"),
                            '"' => e.push_str("\\\""),
                            c => e.push(c),
                        }
                    }
                    l.contains(&format!("{k}=\"{e}\""))
                })),
            "stale {name} {labels:?}"
        );
    }
    assert!(!second.contains("uote"));
    assert!(!second.contains("10.0.0.3"));

    // And back: window 1 again restores exactly its own series.
    assert_eq!(top_series(&render_window(&w1, top)), top_series(&first));
    let _: Option<Value> = None;
}
