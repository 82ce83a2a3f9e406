//! Issue 17: the hot clients of each key, exact where they can be.
//!
//! A generated capture knows every key's clients, servers and commands:
//! keys with 1, 10, 11, 32 (the default `--key-clients`) and 40 distinct
//! clients, each client's requests Zipf-weighted; keys on one, three and
//! ten servers (the server table holds 8); a key read and written by eight
//! commands; and a few thousand filler keys with one to three clients.
//! It goes through the threaded pipeline with several worker, collector
//! and batch-size settings, through the store's interval snapshots folded
//! back (the roll-up path), and, rewritten as a mirror port shows it
//! (`scripts/mirror-rewrite.py --mode all`), through `memtap replay -f
//! json`. Required everywhere:
//!
//! * a key with at most 32 clients lists every client with its exact count
//!   and `error_bound` 0 (and `clients_unlisted_max` 0), identically for
//!   every setting;
//! * a key with 40: every row `true <= requests <= true + error_bound`,
//!   every client whose true count exceeds the table's smallest count is
//!   listed, and `clients_unlisted_max` is that smallest count;
//! * servers the same with 8 rows; commands always exact.

mod common;
#[path = "common/tcp_conv.rs"]
mod tcp_conv;
use common::{repo, PcapOut};
use memtap::app::pipeline::{self, PipelineConfig, PipelineOutput};
use memtap::app::NoProgress;
use memtap::collect::families::FamilyRules;
use memtap::collect::tables::{ClientGranularity, TableLimits, Tables};
use memtap::config::Config;
use memtap::decode::targets::Targets;
use memtap::report::{self, KeyOut, ReportOptions};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tcp_conv::{Conn, Rng};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const PORT: u16 = 11211;
/// One request every 20 µs; windows of 250 ms hold 12,500 each.
const STEP_NS: u64 = 20_000;
const WINDOW_NS: u64 = 250_000_000;
const T0: u64 = 1_700_000_000_000_000_000;
const CAP: usize = 32;

/// Zipf(s) over `0..n` by inverse CDF.
fn zipf(n: usize, s: f64, rng: &mut Rng) -> usize {
    let w: Vec<f64> = (1..=n).map(|r| (r as f64).powf(-s)).collect();
    let total: f64 = w.iter().sum();
    let mut u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (i, x) in w.iter().enumerate() {
        if u < *x {
            return i;
        }
        u -= x;
    }
    n - 1
}

fn client_addr(c: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (c / 200) as u8, (c % 200 + 1) as u8)
}

fn server_addr(s: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, s as u8 + 1)
}

/// One request: key, client, server, command, and when its response is
/// (the record's packet time, which picks its window).
struct Req {
    key: String,
    client: usize,
    server: usize,
    command: &'static str,
    resp_ts: u64,
}

/// What the capture holds, per key and per period (`RUN` or a window).
#[derive(Default)]
struct Truth {
    clients: HashMap<(u64, String), BTreeMap<String, u64>>,
    servers: HashMap<(u64, String), BTreeMap<String, u64>>,
    commands: HashMap<(u64, String), BTreeMap<String, u64>>,
    requests: HashMap<(u64, String), u64>,
}

const RUN: u64 = u64::MAX;

/// The keys of interest: (name, distinct clients, servers, commands).
fn hot_keys() -> Vec<(String, usize, usize, Vec<&'static str>)> {
    let mut v = Vec::new();
    for n in [1usize, 10, 11, 32, 40] {
        for copy in 0..2 {
            v.push((format!("user:{n}:{copy}:profile"), n, 1, vec!["get"]));
        }
    }
    v.push(("pool:resized".into(), 5, 3, vec!["get"]));
    v.push(("pool:spread".into(), 12, 10, vec!["get"]));
    v.push((
        "busy:commands".into(),
        6,
        1,
        vec![
            "get", "gets", "set", "delete", "touch", "incr", "append", "gat",
        ],
    ));
    v
}

fn generate(path: &Path, seed: u64) -> (Vec<Req>, Truth) {
    let mut rng = Rng(seed);
    let mut plan: Vec<(String, usize, usize, &'static str)> = Vec::new();
    let mut next_client = 0;
    for (key, n, servers, cmds) in hot_keys() {
        // Each key its own clients (a window of the client numbers), each
        // client at least once, then 150 a client, Zipf-weighted.
        let base = next_client;
        next_client += n;
        let mut reqs: Vec<usize> = (0..n).collect();
        for _ in 0..150 * n {
            reqs.push(zipf(n, 1.0, &mut rng));
        }
        for (i, c) in reqs.into_iter().enumerate() {
            let server = if servers == 1 {
                key.len() % 10
            } else {
                (i + c) % servers
            };
            plan.push((key.clone(), base + c, server, cmds[i % cmds.len()]));
        }
    }
    // Filler: 3,000 keys with 1-3 clients among 100 shared ones.
    let shared = next_client;
    for k in 0..3000 {
        let key = format!("fill:{k}");
        let n = 1 + k % 3;
        for i in 0..(1 + rng.below(6)) {
            plan.push((key.clone(), shared + (k + i % n) % 100, k % 10, "get"));
        }
    }
    // Interleave all of it.
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i + 1));
    }
    write(path, plan)
}

/// Writes `plan` (key, client, server, command per request, in capture
/// order) as a capture: one connection per (client, server), opened just
/// before its first request, each request answered 10 µs later.
fn write(path: &Path, plan: Vec<(String, usize, usize, &'static str)>) -> (Vec<Req>, Truth) {
    let mut out = PcapOut::new();
    // Per (client, server): (client seq, server seq) of its connection.
    let mut conns: HashMap<(usize, usize), Conn> = HashMap::new();
    let mut reqs = Vec::with_capacity(plan.len());
    let mut truth = Truth::default();
    for (i, (key, c, s, cmd)) in plan.into_iter().enumerate() {
        let ts = T0 + i as u64 * STEP_NS;
        let (caddr, saddr) = (client_addr(c), server_addr(s));
        let cport = 20_000 + s as u16;
        let conn = conns
            .entry((c, s))
            .or_insert_with(|| Conn::open(&mut out, ts, (caddr, cport), (saddr, PORT)));
        let (req, resp) = match cmd {
            "get" if i % 2 == 0 => (
                format!("get {key}\r\n"),
                format!("VALUE {key} 0 1\r\nx\r\nEND\r\n"),
            ),
            "get" | "gets" => (format!("{cmd} {key}\r\n"), "END\r\n".to_string()),
            "gat" => (format!("gat 0 {key}\r\n"), "END\r\n".to_string()),
            "set" => (format!("set {key} 0 0 1\r\nx\r\n"), "STORED\r\n".into()),
            "append" => (
                format!("append {key} 0 0 1\r\nx\r\n"),
                "NOT_STORED\r\n".into(),
            ),
            "delete" => (format!("delete {key}\r\n"), "NOT_FOUND\r\n".into()),
            "touch" => (format!("touch {key} 0\r\n"), "NOT_FOUND\r\n".into()),
            "incr" => (format!("incr {key} 1\r\n"), "NOT_FOUND\r\n".into()),
            other => unreachable!("{other}"),
        };
        let resp_ts = ts + 10_000;
        conn.exchange(&mut out, ts + 3, resp_ts, req.as_bytes(), resp.as_bytes());
        let window = resp_ts - resp_ts % WINDOW_NS;
        for period in [RUN, window] {
            let id = (period, key.clone());
            *truth
                .clients
                .entry(id.clone())
                .or_default()
                .entry(caddr.to_string())
                .or_default() += 1;
            *truth
                .servers
                .entry(id.clone())
                .or_default()
                .entry(format!("{saddr}:{PORT}"))
                .or_default() += 1;
            *truth
                .commands
                .entry(id.clone())
                .or_default()
                .entry(cmd.to_string())
                .or_default() += 1;
            *truth.requests.entry(id).or_default() += 1;
        }
        reqs.push(Req {
            key,
            client: c,
            server: s,
            command: cmd,
            resp_ts,
        });
    }
    out.write(path);
    (reqs, truth)
}

/// A key's rows as every output has them: (name, requests, error bound).
type Rows = Vec<(String, u64, u64)>;

/// What the checks read of a key, from a `KeyOut` or the JSON report.
#[derive(Debug, Clone, PartialEq)]
struct KeyView {
    requests: u64,
    error_bound: u64,
    clients: Rows,
    clients_unlisted_max: u64,
    servers: Rows,
    servers_unlisted_max: u64,
    commands: BTreeMap<String, u64>,
}

impl KeyView {
    fn of(k: &KeyOut) -> KeyView {
        KeyView {
            requests: k.requests,
            error_bound: k.error_bound,
            clients: k
                .clients
                .iter()
                .map(|c| (c.client.clone(), c.requests, c.error_bound))
                .collect(),
            clients_unlisted_max: k.clients_unlisted_max,
            servers: k
                .server_requests
                .iter()
                .map(|s| (s.server.clone(), s.requests, s.error_bound))
                .collect(),
            servers_unlisted_max: k.servers_unlisted_max,
            commands: k
                .commands
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
        }
    }

    fn of_json(k: &Value) -> KeyView {
        let rows = |v: &Value, name: &str| -> Rows {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r[name].as_str().unwrap().to_string(),
                        r["requests"].as_u64().unwrap(),
                        r["error_bound"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        KeyView {
            requests: k["requests"].as_u64().unwrap(),
            error_bound: k["error_bound"].as_u64().unwrap(),
            clients: rows(&k["clients"], "client"),
            clients_unlisted_max: k["clients_unlisted_max"].as_u64().unwrap(),
            servers: rows(&k["server_requests"], "server"),
            servers_unlisted_max: k["servers_unlisted_max"].as_u64().unwrap(),
            commands: k["commands"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(c, n)| (c.clone(), n.as_u64().unwrap()))
                .collect(),
        }
    }
}

/// Every reported key by name.
type Keys = BTreeMap<String, KeyView>;

/// The sorted order every output promises: requests descending, then name
/// (names are IPv4 addresses here, ordered as addresses).
fn assert_sorted(rows: &Rows, label: &str) {
    let addr = |s: &str| -> (Ipv4Addr, u16) {
        match s.split_once(':') {
            Some((a, p)) => (a.parse().unwrap(), p.parse().unwrap()),
            None => (s.parse().unwrap(), 0),
        }
    };
    for w in rows.windows(2) {
        assert!(
            w[0].1 > w[1].1 || (w[0].1 == w[1].1 && addr(&w[0].0) < addr(&w[1].0)),
            "{label}: rows out of order: {w:?}"
        );
    }
}

/// One table of one key against the truth. Returns whether it was exact.
fn check_rows(
    rows: &Rows,
    unlisted: u64,
    truth: &BTreeMap<String, u64>,
    cap: usize,
    label: &str,
) -> bool {
    assert_sorted(rows, label);
    if truth.len() <= cap {
        let got: BTreeMap<&String, (u64, u64)> =
            rows.iter().map(|(c, n, b)| (c, (*n, *b))).collect();
        let wanted: BTreeMap<&String, (u64, u64)> =
            truth.iter().map(|(c, n)| (c, (*n, 0))).collect();
        assert_eq!(got, wanted, "{label}: not every row exact");
        assert_eq!(unlisted, 0, "{label}: an exact table lists everything");
        return true;
    }
    assert_eq!(rows.len(), cap, "{label}: a full table");
    let min = rows.iter().map(|r| r.1).min().unwrap();
    assert_eq!(
        unlisted, min,
        "{label}: unlisted bound is the smallest count"
    );
    for (c, n, b) in rows {
        let t = truth.get(c).copied().unwrap_or(0);
        assert!(
            t <= *n && *n <= t + b,
            "{label}: {c}: true {t}, requests {n}, bound {b}"
        );
    }
    for (c, &t) in truth {
        if t > min {
            assert!(
                rows.iter().any(|r| &r.0 == c),
                "{label}: {c} (true {t} > {min}) missing"
            );
        }
    }
    false
}

/// Checks the keys of interest (and every filler key) of one period.
fn check_keys(keys: &BTreeMap<String, KeyView>, truth: &Truth, period: u64, label: &str) -> usize {
    let mut exact = 0;
    for (key, v) in keys {
        let id = (period, key.clone());
        let Some(tr) = truth.requests.get(&id) else {
            panic!("{label}: {key} reported but not in the period");
        };
        assert_eq!((v.requests, v.error_bound), (*tr, 0), "{label}: {key}");
        if check_rows(
            &v.clients,
            v.clients_unlisted_max,
            &truth.clients[&id],
            CAP,
            &format!("{label}: {key} clients"),
        ) {
            exact += 1;
        }
        check_rows(
            &v.servers,
            v.servers_unlisted_max,
            &truth.servers[&id],
            8,
            &format!("{label}: {key} servers"),
        );
        assert_eq!(v.commands, truth.commands[&id], "{label}: {key} commands");
    }
    let want = truth.requests.keys().filter(|(p, _)| *p == period).count();
    assert_eq!(
        keys.len(),
        want,
        "{label}: every key of the period reported"
    );
    exact
}

/// Two runs agree on every key, and on every exact table of it (which
/// rows a full table keeps may depend on record order).
fn assert_same_exact(a: &Keys, b: &Keys, label: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{label}"
    );
    for (k, v) in a {
        let w = &b[k];
        assert_eq!(
            (v.requests, v.error_bound),
            (w.requests, w.error_bound),
            "{label}: {k}"
        );
        assert_eq!(v.commands, w.commands, "{label}: {k}");
        if v.clients_unlisted_max == 0 || w.clients_unlisted_max == 0 {
            assert_eq!(v.clients, w.clients, "{label}: {k} clients");
            assert_eq!(
                v.clients_unlisted_max, w.clients_unlisted_max,
                "{label}: {k}"
            );
        }
        if v.servers_unlisted_max == 0 || w.servers_unlisted_max == 0 {
            assert_eq!(v.servers, w.servers, "{label}: {k} servers");
            assert_eq!(
                v.servers_unlisted_max, w.servers_unlisted_max,
                "{label}: {k}"
            );
        }
    }
}

fn run(
    path: &Path,
    workers: usize,
    collectors: usize,
    memory: Option<u64>,
    key_clients: usize,
) -> PipelineOutput {
    let cfg = Config::default();
    let pc = PipelineConfig {
        workers,
        collectors,
        window_ns: WINDOW_NS,
        windows: true,
        limits: TableLimits {
            max_keys: 100_000,
            max_clients: 10_000,
            max_families: 1000,
            client_granularity: ClientGranularity::Ip,
            key_clients,
            insight_examples: 16,
        },
        families: Some(Arc::new(FamilyRules::new(&cfg.families).unwrap())),
        memory: memory.or(cfg.memory()),
        seconds: false,
        insight: None,
    };
    let targets = Targets::new(vec![format!("*:{PORT}").parse().unwrap()]);
    pipeline::run(&cfg, &targets, &[path.to_path_buf()], &pc, &mut NoProgress).unwrap()
}

fn views(t: &Tables) -> BTreeMap<String, KeyView> {
    let o = ReportOptions {
        top: 0,
        sort: Default::default(),
        redact: Default::default(),
    };
    report::tables_out(t, &o)
        .keys
        .iter()
        .map(|k| (k.key.clone(), KeyView::of(k)))
        .collect()
}

fn capture(dir: &Path) -> (PathBuf, Vec<Req>, Truth) {
    let path = dir.join("key_clients.pcap");
    let (reqs, truth) = generate(&path, 17);
    (path, reqs, truth)
}

#[test]
fn generated_capture_has_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reqs, truth) = capture(dir.path());
    for (key, n, servers, cmds) in hot_keys() {
        let id = (RUN, key.clone());
        assert_eq!(truth.clients[&id].len(), n, "{key}");
        assert_eq!(truth.servers[&id].len(), servers, "{key}");
        assert_eq!(truth.commands[&id].len(), cmds.len(), "{key}");
    }
    assert!(reqs.len() > 30_000);
    // Each request's connection is (client, server): the generator's own
    // bookkeeping is consistent.
    let per_key: usize = reqs.iter().filter(|r| r.key == "busy:commands").count();
    assert_eq!(
        per_key as u64,
        truth.requests[&(RUN, "busy:commands".into())]
    );
    assert!(reqs
        .iter()
        .any(|r| r.command == "gat" && r.server < 10 && r.client > 0));
    assert!(reqs.windows(2).all(|w| w[0].resp_ts < w[1].resp_ts));
}

/// The threaded pipeline, whole run and every window, for several shapes:
/// exact rows identical across all of them.
#[test]
fn exact_for_any_workers_collectors_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, truth) = capture(dir.path());
    let windows: Vec<u64> = {
        let mut w: Vec<u64> = truth
            .requests
            .keys()
            .map(|(p, _)| *p)
            .filter(|&p| p != RUN)
            .collect();
        w.sort();
        w.dedup();
        w
    };
    assert!(windows.len() >= 3, "windows: {windows:?}");
    let mut first: Option<(Keys, Vec<Keys>)> = None;
    // (workers, collectors, memory budget): 16 MiB with 2 workers cuts
    // the batches between threads to their floor (smaller batches, more
    // of them, another interleaving).
    for (w, c, mem) in [
        (1, 1, None),
        (4, 3, None),
        (2, 2, Some(16u64 << 20)),
        (3, 1, None),
    ] {
        let label = format!("--workers {w} --collectors {c} memory {mem:?}");
        let out = run(&path, w, c, mem, CAP);
        let run_keys = views(&out.run);
        let exact = check_keys(&run_keys, &truth, RUN, &label);
        // Every hot key of at most 32 clients, and every filler key.
        assert_eq!(
            exact,
            run_keys.len() - 2,
            "{label}: all but the 40-client keys"
        );
        let user40 = &run_keys["user:40:0:profile"];
        assert!(user40.clients_unlisted_max > 0);
        assert!(run_keys["pool:spread"].servers_unlisted_max > 0);
        let mut win_keys = Vec::new();
        assert_eq!(out.windows.len(), windows.len(), "{label}");
        for (start, _, t) in &out.windows {
            let v = views(t);
            check_keys(&v, &truth, *start, &format!("{label}, window {start}"));
            win_keys.push(v);
        }
        match &first {
            None => first = Some((run_keys, win_keys)),
            Some((r0, w0)) => {
                assert_same_exact(&run_keys, r0, &label);
                for (a, b) in win_keys.iter().zip(w0) {
                    assert_same_exact(a, b, &format!("{label}, a window"));
                }
            }
        }
    }
}

/// A size other than the default: 10 clients fit, 11 do not.
#[test]
fn the_size_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, truth) = capture(dir.path());
    let out = run(&path, 2, 2, None, 10);
    let keys = views(&out.run);
    for (key, n) in [("user:10:0:profile", 10), ("user:11:0:profile", 11)] {
        let v = &keys[key];
        let id = (RUN, key.to_string());
        let exact = check_rows(
            &v.clients,
            v.clients_unlisted_max,
            &truth.clients[&id],
            10,
            key,
        );
        assert_eq!(exact, n <= 10, "{key}");
    }
    assert_eq!(out.run.key_clients(), 10);
}

/// Not a test: writes a capture for timing `memtap replay` where keys
/// have many clients (the per-record scan of a key's client rows, and
/// Space-Saving past them, at their most expensive):
/// `MEMTAP_BENCH_PCAP=bench-out/many-clients.pcap cargo test --release
/// --test key_clients -- --ignored many_clients_bench_capture`. 400,000
/// gets, keys Zipf(1.0) over 40,000, clients Zipf(0.8) over 4,000 drawn
/// independently: the hottest keys see thousands of clients, the tail
/// one or two.
#[test]
#[ignore]
fn many_clients_bench_capture() {
    let Ok(path) = std::env::var("MEMTAP_BENCH_PCAP") else {
        eprintln!("set MEMTAP_BENCH_PCAP to the file to write");
        return;
    };
    let mut rng = Rng(99);
    let keys = Zipf::new(40_000, 1.0);
    let clients = Zipf::new(4_000, 0.8);
    let plan: Vec<(String, usize, usize, &'static str)> = (0..400_000)
        .map(|_| {
            let k = keys.sample(&mut rng);
            (
                format!("bench:{k}"),
                clients.sample(&mut rng),
                k % 10,
                "get",
            )
        })
        .collect();
    let (reqs, truth) = write(Path::new(&path), plan);
    let most = truth
        .clients
        .iter()
        .filter(|((p, _), _)| *p == RUN)
        .map(|(_, c)| c.len())
        .max();
    eprintln!(
        "{path}: {} requests, most clients of a key {most:?}",
        reqs.len()
    );
}

/// Zipf(s) over `0..n`, by binary search of the CDF (for large `n`).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|r| {
                acc += (r as f64).powf(-s);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Zipf(cdf)
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        self.0.partition_point(|&c| c <= u).min(self.0.len() - 1)
    }
}

/// The store's path: each window as the interval rows it is stored as
/// (JSON and back), folded into one set of tables (as reports over the
/// history and the coarse roll-up do): merges of the same key across
/// windows keep exact counts exact and every bound sound.
#[test]
fn windows_folded_as_the_store_does_stay_exact() {
    use memtap::store::snapshot::{fold, Snapshot};
    let dir = tempfile::tempdir().unwrap();
    let (path, _, truth) = capture(dir.path());
    let out = run(&path, 2, 2, None, CAP);
    let snaps: Vec<Snapshot> = out
        .windows
        .iter()
        .map(|(s, e, t)| {
            let snap = Snapshot::from_tables("t", *s, *e, t, &Default::default(), 0);
            let text = serde_json::to_string(&snap).unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    let f = fold(&snaps);
    let keys = views(&f.tables);
    let exact = check_keys(&keys, &truth, RUN, "folded windows");
    // The 40-client keys are exact in no window either (each window sees
    // most of their clients): the fold keeps them bounded.
    assert_eq!(exact, keys.len() - 2);
    // The roll-up of the whole run equals the run's own tables on every
    // exact key.
    let run_keys = views(&out.run);
    for (k, v) in &keys {
        if v.clients_unlisted_max == 0 {
            assert_eq!(v.clients, run_keys[k].clients, "{k}");
        }
        if v.servers_unlisted_max == 0 {
            assert_eq!(v.servers, run_keys[k].servers, "{k}");
        }
        assert_eq!(v.commands, run_keys[k].commands, "{k}");
    }
}

fn replay_json(file: &Path, extra: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("replay")
        .arg(file)
        .args(["-t", &format!("*:{PORT}"), "-f", "json", "--top", "0", "-q"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "memtap replay {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json_views(rep: &Value) -> BTreeMap<String, KeyView> {
    rep["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap().to_string(), KeyView::of_json(k)))
        .collect()
}

/// `memtap replay -f json` on the capture and on a mirror port's copy of
/// it (responses before requests, swaps, duplicates, wire-size segments):
/// the same exact rows.
#[test]
fn replay_binary_and_mirror_copy_give_the_exact_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, truth) = capture(dir.path());
    let mirrored = dir.path().join("mirrored.pcap");
    let o = Command::new("python3")
        .arg(repo().join("scripts/mirror-rewrite.py"))
        .arg(&path)
        .arg(&mirrored)
        .args(["--mode", "all", "--seed", "7", "--server-port", "11211"])
        .output()
        .expect("python3 runs scripts/mirror-rewrite.py");
    assert!(
        o.status.success(),
        "mirror-rewrite: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut reference: Option<BTreeMap<String, KeyView>> = None;
    for (file, args) in [
        (&path, &["--workers", "1", "--collectors", "1"][..]),
        (&path, &["--workers", "4", "--collectors", "3"][..]),
        (&mirrored, &["--workers", "1", "--collectors", "1"][..]),
        (&mirrored, &["--workers", "4", "--collectors", "3"][..]),
    ] {
        let label = format!("{} {args:?}", file.display());
        let rep = replay_json(file, args);
        assert_eq!(rep["limits"]["key_clients"], 32, "{label}");
        let keys = json_views(&rep);
        let exact = check_keys(&keys, &truth, RUN, &label);
        assert_eq!(exact, keys.len() - 2, "{label}");
        match &reference {
            None => reference = Some(keys),
            Some(r) => assert_same_exact(&keys, r, &label),
        }
    }
    // The flag: a smaller size makes the 11-client keys bounded.
    let rep = replay_json(&path, &["--key-clients", "10"]);
    let keys = json_views(&rep);
    assert_eq!(keys["user:10:0:profile"].clients_unlisted_max, 0);
    assert!(keys["user:11:0:profile"].clients_unlisted_max > 0);
    assert_eq!(keys["user:11:0:profile"].clients.len(), 10);
}
