//! `memtap replay` on the fixtures: every key, client, server and command
//! of the report checked against an independent aggregation of the
//! fixtures' expected records; the same report from rewritten captures
//! and from every worker/collector count.

mod common;
use common::*;
use memtap::app::cli::AnalysisArgs;
use memtap::app::replay::{replay_report, setup};
use memtap::app::NoProgress;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use memtap::report::Report;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn analysis(workers: usize, collectors: usize) -> AnalysisArgs {
    AnalysisArgs {
        workers: Some(workers),
        collectors: Some(collectors),
        window: None,
        memory: None,
        trigger_dir: None,
        log_format: None,
        max_keys: None,
        max_clients: None,
        key_clients: None,
        client_granularity: None,
        redact_keys: None,
        metrics_top: None,
    }
}

fn report_for(case: &str, file: &Path, a: &AnalysisArgs, per_window: bool) -> Report {
    let cfg = Config::default();
    let s = setup(&cfg, a, Some(0), None, per_window).unwrap();
    let targets = Targets::new(vec![server_target(case)]);
    replay_report(&cfg, &targets, &[file.to_path_buf()], &s, &mut NoProgress)
        .unwrap()
        .0
}

fn capture(case: &str) -> PathBuf {
    fixture_dir(case).join("capture.pcap")
}

#[derive(Default, Debug, PartialEq, Clone)]
struct Agg {
    requests: u64,
    hits: u64,
    misses: u64,
    bytes_in: u64,
    bytes_out: u64,
    errors: u64,
}

impl Agg {
    fn add(&mut self, r: &Value) {
        self.requests += 1;
        match r["result"].as_str().unwrap() {
            "hit" => self.hits += 1,
            "miss" => self.misses += 1,
            "error" | "client_error" | "server_error" => self.errors += 1,
            _ => {}
        }
        self.bytes_in += r["req_bytes"].as_u64().unwrap();
        self.bytes_out += r["resp_bytes"].as_u64().unwrap();
    }

    fn of(v: &Value) -> Agg {
        Agg {
            requests: v["requests"].as_u64().unwrap(),
            hits: v["hits"].as_u64().unwrap(),
            misses: v["misses"].as_u64().unwrap(),
            bytes_in: v["bytes_in"].as_u64().unwrap(),
            bytes_out: v["bytes_out"].as_u64().unwrap(),
            errors: v.get("errors").and_then(Value::as_u64).unwrap_or(0),
        }
    }
}

/// The reference: a straightforward aggregation of expected.jsonl.
struct Reference {
    keys: BTreeMap<String, Agg>,
    key_clients: BTreeMap<String, BTreeMap<String, u64>>,
    key_servers: BTreeMap<String, Vec<String>>,
    clients: BTreeMap<String, Agg>,
    servers: BTreeMap<String, Agg>,
    commands: BTreeMap<(String, String, String), u64>,
    totals: Agg,
}

fn reference(case: &str) -> Reference {
    let mut r = Reference {
        keys: BTreeMap::new(),
        key_clients: BTreeMap::new(),
        key_servers: BTreeMap::new(),
        clients: BTreeMap::new(),
        servers: BTreeMap::new(),
        commands: BTreeMap::new(),
        totals: Agg::default(),
    };
    for rec in expected(case).values().flatten() {
        let client_ip = rec["client"]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .0
            .to_string();
        let server = rec["server"].as_str().unwrap().to_string();
        r.totals.add(rec);
        r.clients.entry(client_ip.clone()).or_default().add(rec);
        r.servers.entry(server.clone()).or_default().add(rec);
        *r.commands
            .entry((
                rec["proto"].as_str().unwrap().into(),
                rec["transport"].as_str().unwrap().into(),
                rec["command"].as_str().unwrap().into(),
            ))
            .or_default() += 1;
        if let Some(k) = rec["key"].as_str() {
            r.keys.entry(k.into()).or_default().add(rec);
            *r.key_clients
                .entry(k.into())
                .or_default()
                .entry(client_ip)
                .or_default() += 1;
            let s = r.key_servers.entry(k.into()).or_default();
            if !s.contains(&server) {
                s.push(server);
                s.sort();
            }
        }
    }
    r
}

fn check_against_reference(case: &str, rep: &Report) {
    let want = reference(case);
    let v = serde_json::to_value(rep).unwrap();
    assert_eq!(v["memtap_report"], 1);
    let t = &v["totals"];
    let mut tot = Agg::of(t);
    tot.errors = want.totals.errors;
    assert_eq!(tot, want.totals, "{case}: totals");

    let keys: BTreeMap<String, &Value> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_string(), k))
        .collect();
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        want.keys.keys().collect::<Vec<_>>(),
        "{case}: key set"
    );
    for (k, kv) in &keys {
        assert_eq!(Agg::of(kv), want.keys[k], "{case}: key {k}");
        assert_eq!(kv["error_bound"], 0, "{case}: key {k}");
        let servers: Vec<String> = kv["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(servers, want.key_servers[k], "{case}: key {k} servers");
        let clients: BTreeMap<String, u64> = kv["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["client"].as_str().unwrap().to_string(),
                    c["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(clients, want.key_clients[k], "{case}: key {k} clients");
    }
    let clients: BTreeMap<String, Agg> = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["client"].as_str().unwrap().to_string(), Agg::of(c)))
        .collect();
    assert_eq!(clients, want.clients, "{case}: clients");
    let servers: BTreeMap<String, Agg> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["server"].as_str().unwrap().to_string(), Agg::of(s)))
        .collect();
    assert_eq!(servers, want.servers, "{case}: servers");
    let commands: BTreeMap<(String, String, String), u64> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                (
                    c["proto"].as_str().unwrap().into(),
                    c["transport"].as_str().unwrap().into(),
                    c["command"].as_str().unwrap().into(),
                ),
                c["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(commands, want.commands, "{case}: commands (key-requests)");
    // Commands on the wire never exceed key-requests, and only multi-key
    // retrievals make them differ.
    for c in v["commands"].as_array().unwrap() {
        let (n, r) = (
            c["count"].as_u64().unwrap(),
            c["requests"].as_u64().unwrap(),
        );
        assert!(n >= 1 && n <= r, "{case}: {c}");
        if !["get", "gets", "gat", "gats"].contains(&c["command"].as_str().unwrap()) {
            assert_eq!(n, r, "{case}: {c}");
        }
    }
    assert_eq!(v["limits"]["key_evictions"], 0);
}

#[test]
fn fixture_reports_match_the_reference() {
    for case in cases() {
        let rep = report_for(case, &capture(case), &analysis(1, 1), false);
        check_against_reference(case, &rep);
    }
}

/// Commands on the wire, pinned per fixture: the multi-key gets are the
/// only commands with several key-requests (text_tcp: one `get` of five
/// keys; udp: a `get` and a `gets` of four and a `get` of two; mixed:
/// three `get`s of five keys and four of two; pipelined: 150 `get`s carry
/// 279 key-requests — counted independently from the request lines of the
/// capture with tshark's stream follower).
#[test]
fn wire_command_counts() {
    for (case, commands, requests) in [
        ("text_tcp", 43, 47),
        ("meta_tcp", 32, 32),
        ("binary_tcp", 58, 58),
        ("udp", 11, 18),
        ("udp_big", 49, 156),
        ("mixed_noreply", 48, 64),
        ("pipelined_tcp", 566, 695),
    ] {
        let rep = report_for(case, &capture(case), &analysis(1, 1), false);
        assert_eq!(
            (rep.totals.commands, rep.totals.requests),
            (commands, requests),
            "{case}"
        );
    }
}

fn without_capture_and_health(rep: &Report) -> Value {
    let mut v = serde_json::to_value(rep).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("capture");
    o.remove("health");
    // The miss-ratio curves are estimates whose sample follows how keys
    // are split over collectors (each curve scaled up by their number),
    // and each collector has its own seen-keys filter: those two may
    // differ. Every class, storm, unread write and count may not.
    if let Some(i) = o.get_mut("insight").and_then(|i| i.as_object_mut()) {
        i.get_mut("pool")
            .and_then(|p| p.as_object_mut())
            .map(|p| p.remove("mrc"));
        for s in i
            .get_mut("servers")
            .and_then(|s| s.as_array_mut())
            .into_iter()
            .flatten()
        {
            s.as_object_mut().map(|s| s.remove("mrc"));
        }
        i.get_mut("bounds")
            .and_then(|b| b.as_object_mut())
            .map(|b| b.remove("seen_filter_fp_ppm"));
    }
    v
}

#[test]
fn same_report_for_every_worker_and_collector_count() {
    for case in cases() {
        let base =
            without_capture_and_health(&report_for(case, &capture(case), &analysis(1, 1), true));
        for (w, c) in [(2, 1), (1, 2), (2, 2), (4, 4), (3, 2)] {
            let rep = report_for(case, &capture(case), &analysis(w, c), true);
            // (Not assert_eq!: the diff of two whole reports is unreadable.)
            let got = without_capture_and_health(&rep);
            if got != base {
                let g = serde_json::to_string_pretty(&got).unwrap();
                let b = serde_json::to_string_pretty(&base).unwrap();
                let first = g
                    .lines()
                    .zip(b.lines())
                    .position(|(x, y)| x != y)
                    .unwrap_or(0);
                panic!(
                    "{case}: {w} workers, {c} collectors differ at line {first}:\n got: {}\nwant: {}",
                    g.lines().nth(first).unwrap_or(""),
                    b.lines().nth(first).unwrap_or("")
                );
            }
            assert_eq!(rep.health["records"], base_records(case), "{case}");
        }
    }
}

fn base_records(case: &str) -> u64 {
    expected(case).values().map(|v| v.len() as u64).sum()
}

#[test]
fn same_report_from_rewritten_captures() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let base =
            without_capture_and_health(&report_for(case, &capture(case), &analysis(1, 1), false));
        let segs = read_segments(&capture(case));
        let path = dir.path().join(format!("{case}.pcap"));
        write_segments(&reorder_and_retransmit(&split(&segs, 1448)), &path);
        let rep = report_for(case, &path, &analysis(2, 2), false);
        let mut got = without_capture_and_health(&rep);
        let mut want = base.clone();
        // Latency percentiles may move by the reordering delay; the rest
        // must not.
        for v in [&mut got, &mut want] {
            strip_latency(v);
        }
        assert_eq!(got, want, "{case}");
    }
}

fn strip_latency(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("latency_us");
            for (_, x) in o.iter_mut() {
                strip_latency(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_latency),
        _ => {}
    }
}

#[test]
fn windows_add_up_to_the_run() {
    for case in cases() {
        let cfg = Config::default();
        let mut a = analysis(2, 2);
        a.window = Some("10ms".into());
        let s = setup(&cfg, &a, Some(0), None, true).unwrap();
        let targets = Targets::new(vec![server_target(case)]);
        let (rep, _) =
            replay_report(&cfg, &targets, &[capture(case)], &s, &mut NoProgress).unwrap();
        assert!(!rep.windows.is_empty(), "{case}");
        let mut sum = memtap::report::TotalsOut::default();
        let mut prev_end = 0.0;
        for w in &rep.windows {
            assert!(w.start >= prev_end, "{case}: windows in order");
            assert!(
                (w.end - w.start - 0.01).abs() < 1e-5,
                "{case}: 10 ms windows"
            );
            prev_end = w.end;
            sum.commands += w.totals.commands;
            sum.requests += w.totals.requests;
            sum.hits += w.totals.hits;
            sum.misses += w.totals.misses;
            sum.bytes_in += w.totals.bytes_in;
            sum.bytes_out += w.totals.bytes_out;
        }
        assert_eq!(sum, rep.totals, "{case}");
    }
}

#[test]
fn bounded_key_table_reports_error_bounds() {
    let case = "mixed_noreply";
    let mut a = analysis(1, 1);
    a.max_keys = Some(3);
    let rep = report_for(case, &capture(case), &a, false);
    let exact = reference(case);
    assert_eq!(rep.keys.len(), 3);
    assert!(rep.limits.key_evictions > 0);
    for k in &rep.keys {
        let truth = exact.keys[&k.key].requests;
        assert!(
            k.requests >= truth && k.requests <= truth + k.error_bound,
            "{k:?}"
        );
    }
    // Whole-run totals stay exact whatever the key table holds.
    assert_eq!(rep.totals.requests, exact.totals.requests);
}
