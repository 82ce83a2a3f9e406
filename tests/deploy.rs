//! The deploy kit against what memtap renders: every metric the dashboard
//! and the rules use exists in `/metrics`; `promtool check rules` and
//! `promtool check config` pass, and so do the alerts' unit tests
//! (`promtool test rules`); the dashboard JSON parses and has its
//! variables; `systemd-analyze verify` accepts the unit (when available).

mod common;
use common::exposition::*;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn deploy(p: &str) -> PathBuf {
    repo().join("deploy").join(p)
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(deploy("grafana/dashboards/memtap.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every PromQL expression of the dashboard (panel targets and query
/// variables).
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut v = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            v.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for t in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = t["query"]["query"].as_str() {
            v.push(q.to_string());
        }
    }
    v
}

/// Metric names in some PromQL (parsed loosely): identifiers starting
/// `memtap_`, with `_bucket`, `_sum` and `_count` stripped.
fn memtap_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("memtap_") {
        let start = i + at;
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        // Not the tail of a longer identifier (e.g. a recording rule name).
        if start == 0 || !ident(b[start - 1]) {
            let mut name = &text[start..end];
            for s in ["_bucket", "_sum", "_count"] {
                name = name.strip_suffix(s).unwrap_or(name);
            }
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn dashboard_parses_and_has_its_variables() {
    let d = dashboard();
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    assert_eq!(d["__inputs"][0]["type"], "datasource");
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no ${n} variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let server = var("server");
    assert_eq!(server["type"], "query");
    assert!(server["definition"]
        .as_str()
        .unwrap()
        .starts_with("label_values(memtap_server_requests_total"));
    assert_eq!(var("key")["type"], "query");
    // Every panel reads the chosen data source, and panel ids are unique.
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()));
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(!p["targets"].as_array().unwrap().is_empty());
        }
    }
    // The panels the issue asks for.
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for t in [
        "Request rate by command and server",
        "Hit ratio by server",
        "Latency heatmap",
        "Value sizes",
        "Top keys",
        "Top clients",
        "Hot clients of key $key",
        "Drops (kernel, ring, channels)",
    ] {
        assert!(titles.contains(&t), "panel {t}");
    }
    let exprs = dashboard_exprs(&d);
    assert!(exprs
        .iter()
        .any(|e| e.contains("memtap_top_key_client_requests{key=\"$key\"}")));
    assert!(exprs
        .iter()
        .all(|e| !e.contains("memtap_top_key_requests{") || e.contains("server=~\"$server\"")));
}

/// The cache-insight panels (issue 18) and the series each reads.
#[test]
fn dashboard_shows_the_cache_insight_series() {
    let d = dashboard();
    let panel = |title: &str| -> Vec<String> {
        let p = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("panel {title}"));
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect()
    };
    for (title, metrics) in [
        (
            "Misses by class and server",
            &["memtap_misses_by_class_total"][..],
        ),
        (
            "Evicted share of misses by server (memory pressure)",
            &["memtap_misses_by_class_total"],
        ),
        (
            "Misses by class, top key families",
            &["memtap_family_misses_by_class_total"],
        ),
        (
            "Miss storms (dogpiles) by server",
            &["memtap_miss_storms_total"],
        ),
        (
            "Writes nobody reads by server",
            &[
                "memtap_unread_writes_total",
                "memtap_unread_write_bytes_total",
            ],
        ),
        (
            "Cache size for 90 / 95 / 99 % of attainable hits (miss-ratio curve)",
            &["memtap_mrc_size_bytes"],
        ),
        (
            "Hit ratio now (miss-ratio curve)",
            &["memtap_mrc_hit_ratio"],
        ),
    ] {
        let used: BTreeSet<String> = panel(title).iter().flat_map(|e| memtap_names(e)).collect();
        let want: BTreeSet<String> = metrics.iter().map(|m| m.to_string()).collect();
        assert_eq!(used, want, "{title}");
    }
    let evicted = &panel("Evicted share of misses by server (memory pressure)")[0];
    assert!(evicted.contains("class=\"evicted\""), "{evicted}");
    assert!(
        panel("Cache size for 90 / 95 / 99 % of attainable hits (miss-ratio curve)")[0]
            .contains("by (server, target)")
    );
}

#[test]
fn every_metric_used_exists_in_the_output() {
    // A fixture replay with a closed window and a store: every family.
    let r = replay_fixture("text_tcp", 1, 1);
    let declared: BTreeSet<String> = declared_names(&r.prom).into_iter().collect();
    let with_samples: BTreeSet<String> = samples(&r.prom).into_iter().map(|s| s.name).collect();
    let rules = std::fs::read_to_string(deploy("prometheus/memtap-rules.yml")).unwrap();
    let mut used = memtap_names(&rules);
    let from_rules = used.len();
    for e in dashboard_exprs(&dashboard()) {
        used.extend(memtap_names(&e));
    }
    assert!(from_rules >= 8, "{used:?}");
    assert!(used.len() >= 25, "{used:?}");
    for name in &used {
        assert!(declared.contains(name), "{name} is not in /metrics");
        let has_samples =
            with_samples.contains(name) || with_samples.contains(&format!("{name}_count"));
        assert!(has_samples, "{name} has no samples after a replay");
    }
}

#[test]
fn loose_promql_names() {
    let n = memtap_names(
        "sum by (le) (rate(memtap_request_latency_seconds_bucket{x=\"1\"}[5m])) / memtap:hit_ratio:rate5m + memtap_x_total",
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        vec!["memtap_request_latency_seconds", "memtap_x_total"]
    );
}

#[test]
fn promtool_checks_rules_and_config() {
    let Some(promtool) = checker("promtool", "prometheus") else {
        return;
    };
    let rules = deploy("prometheus/memtap-rules.yml");
    let out = run_ok(&promtool, &["check", "rules", rules.to_str().unwrap()], "");
    assert!(out.contains("SUCCESS"), "{out}");
    let cfg = deploy("prometheus/prometheus.yml");
    let out = run_ok(&promtool, &["check", "config", cfg.to_str().unwrap()], "");
    assert!(out.contains("SUCCESS"), "{out}");
    // The alerts fire (and stay quiet) as meant: hot key share, kernel
    // drops on one sniffer, hit ratio against an hour ago.
    let tests = deploy("prometheus/memtap-rules.test.yml");
    let out = run_ok(&promtool, &["test", "rules", tests.to_str().unwrap()], "");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn provisioning_points_at_the_dashboards() {
    let ds = std::fs::read_to_string(deploy("grafana/provisioning/datasources/prometheus.yaml"))
        .unwrap();
    assert!(ds.contains("apiVersion: 1") && ds.contains("type: prometheus"));
    let db =
        std::fs::read_to_string(deploy("grafana/provisioning/dashboards/memtap.yaml")).unwrap();
    assert!(db.contains("apiVersion: 1") && db.contains("type: file") && db.contains("path:"));
    let prom = std::fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
    for k in [
        "127.0.0.1:9718",
        "sample_limit:",
        "label_value_length_limit:",
        "memtap-rules.yml",
    ] {
        assert!(prom.contains(k), "{k}");
    }
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy("systemd/memtap.service")).unwrap();
    for k in [
        "User=memtap",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=memtap",
        "ConfigurationDirectory=memtap",
        "AF_PACKET",
        "AF_NETLINK",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "--listen 127.0.0.1:9718",
    ] {
        assert!(unit.contains(k), "{k}");
    }
    let docker = std::fs::read_to_string(deploy("docker/Dockerfile")).unwrap();
    for k in [
        "FROM rust:1-bookworm AS build",
        "FROM debian:bookworm-slim",
        "libpcap0.8",
        "USER memtap",
        "EXPOSE 9718",
        "--network host",
        "--cap-add NET_RAW",
    ] {
        assert!(docker.contains(k), "{k}");
    }
    // systemd-analyze is optional everywhere (containers have none).
    let Some(sa) = std::env::var_os("PATH").and_then(|v| {
        std::env::split_paths(&v)
            .map(|d| d.join("systemd-analyze"))
            .find(|f| f.is_file())
    }) else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    // Verify a copy whose ExecStart points at the binary just built (verify
    // checks that the executable exists).
    let dir = std::env::temp_dir().join(format!("memtap-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("memtap.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/memtap", env!("CARGO_BIN_EXE_memtap")),
    )
    .unwrap();
    let r = std::process::Command::new(sa)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(r.status.success(), "systemd-analyze verify: {text}");
    assert!(!text.contains("memtap.service:"), "warnings: {text}");
}
