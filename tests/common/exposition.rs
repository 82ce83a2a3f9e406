//! Metrics of a fixture replay, and a small parser of the text exposition
//! (label values unescaped) for the tests that compare them with the
//! report.

use super::{fixture_dir, server_target};
use memtap::app::cli::AnalysisArgs;
use memtap::app::pipeline;
use memtap::app::replay::{make_report, setup};
use memtap::app::NoProgress;
use memtap::collect::redact::Redact;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use memtap::export::prometheus::{render, ExportInput, Format};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Replayed {
    /// The report as JSON (the contract other tools read).
    pub report: Value,
    pub prom: String,
    pub om: String,
}

/// Replays a fixture through the library's pipeline (windows on) and
/// renders its metrics in both formats with the last closed window.
pub fn replay_fixture(case: &str, workers: usize, collectors: usize) -> Replayed {
    let mut cfg = Config::default();
    // A fixture has a few dozen keys: 1 % sampling would leave the
    // miss-ratio curve empty. Every key is followed instead.
    cfg.insight.mrc_exact = true;
    let a = AnalysisArgs {
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
    };
    let s = setup(&cfg, &a, Some(0), None, true).unwrap();
    let targets = Targets::new(vec![server_target(case)]);
    let files: Vec<PathBuf> = vec![fixture_dir(case).join("capture.pcap")];
    let out = pipeline::run(&cfg, &targets, &files, &s.pipeline, &mut NoProgress).unwrap();
    let report = serde_json::to_value(make_report(&out, &files, &s)).unwrap();
    let input = ExportInput {
        run: &out.run,
        last_window: out.windows.last().map(|w| &w.2),
        counters: &out.counters,
        top: s.metrics_top,
        redact: &Redact::None,
        version: env!("CARGO_PKG_VERSION"),
        flows_active: 0,
        windows_closed: out.windows.len() as u64,
        store: Some(Default::default()),
        triggers: None,
        servers_found: &[],
    };
    let mut prom = String::new();
    render(&mut prom, &input, Format::Prometheus004);
    let mut om = String::new();
    render(&mut om, &input, Format::OpenMetrics);
    Replayed { report, prom, om }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, l: &str) -> &str {
        self.labels.get(l).map(String::as_str).unwrap_or("")
    }
}

/// Every sample line, label values unescaped. Panics on a malformed line.
pub fn samples(text: &str) -> Vec<Sample> {
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).expect("name");
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = 0;
            loop {
                let (i, c) = chars.next().expect("unterminated labels");
                if c == '}' {
                    end = i + 1;
                    break;
                }
                if c == ',' {
                    continue;
                }
                // name="value"
                let mut lname = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    lname.push(c);
                }
                assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                let mut val = String::new();
                loop {
                    let (_, c) = chars.next().expect("unterminated value");
                    match c {
                        '"' => break,
                        '\\' => match chars.next().expect("escape").1 {
                            'n' => val.push('\n'),
                            '\\' => val.push('\\'),
                            '"' => val.push('"'),
                            e => panic!("bad escape \\{e} in {line}"),
                        },
                        c => val.push(c),
                    }
                }
                assert!(labels.insert(lname, val).is_none(), "label twice: {line}");
                let _ = end;
            }
            rest = &r[end..];
        }
        let value: f64 = rest.trim().parse().unwrap_or_else(|_| panic!("{line}"));
        v.push(Sample {
            name,
            labels,
            value,
        });
    }
    v
}

/// Family names declared by `# TYPE` lines, with the sample names they
/// allow (histograms: `_bucket`, `_sum`, `_count`).
pub fn declared_names(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            v.push(name.to_string());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    v.push(format!("{name}{s}"));
                }
            }
        }
    }
    v
}

/// A checker program, or `None` (the reason printed) when missing outside
/// CI; under `CI=true` a missing checker fails the test.
pub fn checker(path: &str, package: &str) -> Option<PathBuf> {
    let p = if path.starts_with('/') {
        Some(PathBuf::from(path)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|v| {
            std::env::split_paths(&v)
                .map(|d| d.join(path))
                .find(|f| f.is_file())
        })
    };
    if p.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{path} is missing under CI (Debian package `{package}`; scripts/setup.sh installs it)"
        );
        eprintln!("skipped: {path} is missing (Debian package `{package}`)");
    }
    p
}

/// Runs `cmd args` with `input` on stdin; panics with its output unless it
/// succeeds.
pub fn run_ok(cmd: &std::path::Path, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let r = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(r.status.success(), "{} {args:?}: {text}", cmd.display());
    text
}
