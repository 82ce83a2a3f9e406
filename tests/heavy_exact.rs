//! Bounded tables report exact counts for what they know exactly.
//!
//! A generated capture (a Zipf stream of text `get`s with 10x more distinct
//! keys than `--max-keys`, clients and key families also above their
//! limits) goes through the threaded pipeline with 2 workers, 2 collectors
//! and several windows. An independent count of every key, client and
//! family (whole run and per window) is the truth. An item that a
//! collector's table certainly never evicted (see [`Oracle`]) must be
//! reported with its exact count and `error_bound` 0; every other item must
//! keep `true <= count <= true + error_bound`, and every item whose true
//! count is above the table's unmonitored bound must be present.

mod common;
#[path = "common/tcp_conv.rs"]
mod tcp_conv;
use common::PcapOut;
use memtap::app::pipeline::{self, PipelineConfig, PipelineOutput};
use memtap::app::NoProgress;
use memtap::collect::batch::shard_of;
use memtap::collect::families::FamilyRules;
use memtap::collect::tables::{ClientGranularity, ClientId, TableLimits, Tables};
use memtap::collect::HeavyHitters;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use tcp_conv::{Conn, Rng};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 11211;
/// One request every 40 µs: 1 s windows hold 25,000 requests each.
const STEP_NS: u64 = 40_000;
const WINDOW_NS: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// Zipf(s) over ranks `0..n` by inverse CDF.
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

/// A family word made of letters that are not hex digits (so the built-in
/// collapsing keeps it).
fn family_word(mut f: usize) -> String {
    let mut w = String::from("fam");
    loop {
        w.push((b'g' + (f % 20) as u8) as char);
        f /= 20;
        if f == 0 {
            return w;
        }
    }
}

/// The family of key `rank`: the 2,000 hottest keys fall into 20 families,
/// hot in every collector; the rest into the other families, which churn.
fn family_of(rank: usize, families: usize) -> usize {
    if !(2000..SOLO_RANK).contains(&rank) {
        rank % 20
    } else {
        20 + rank % (families - 20)
    }
}

/// Solo clients: each asks for one key of its own (rank `SOLO_RANK + i`),
/// so it is seen by one collector only, while the other's client table
/// churns.
const SOLO: usize = 8;
const SOLO_RANK: usize = 1_000_000;

struct Stream {
    /// Per request: key, client index, packet time of the response.
    reqs: Vec<(String, usize, u64)>,
}

fn client_addr(c: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (c / 250) as u8, (c % 250 + 1) as u8)
}

/// Writes the capture and returns what it holds.
fn generate(
    path: &Path,
    seed: u64,
    requests: usize,
    keys: usize,
    clients: usize,
    families: usize,
) -> Stream {
    let key_law = Zipf::new(keys, 1.0);
    let client_law = Zipf::new(clients, 1.1);
    let mut rng = Rng(seed);
    let mut out = PcapOut::new();
    // Per client: (client seq, server seq), one connection each.
    let mut conns: Vec<Option<Conn>> = vec![None; clients + SOLO];
    let mut reqs = Vec::with_capacity(requests);
    for i in 0..requests {
        let ts = T0 + i as u64 * STEP_NS;
        let (mut rank, mut c) = (key_law.sample(&mut rng), client_law.sample(&mut rng));
        if rng.next() % 10 == 0 {
            let solo = (rng.next() % SOLO as u64) as usize;
            (rank, c) = (SOLO_RANK + solo, clients + solo);
        }
        let caddr = client_addr(c);
        let cport = 40_000 + c as u16;
        // Handshake, just before the first request.
        let conn = conns[c]
            .get_or_insert_with(|| Conn::open(&mut out, ts, (caddr, cport), (SERVER, PORT)));
        let key = format!("{}:{rank}", family_word(family_of(rank, families)));
        let req = format!("get {key}\r\n");
        let resp = if rank % 2 == 0 {
            format!("VALUE {key} 0 1\r\nx\r\nEND\r\n")
        } else {
            "END\r\n".to_string()
        };
        let resp_ts = ts + 10_000;
        conn.exchange(&mut out, ts + 3, resp_ts, req.as_bytes(), resp.as_bytes());
        reqs.push((key, c, resp_ts));
    }
    out.write(path);
    Stream { reqs }
}

/// Which item a table kind is keyed by, and in which collector it lands.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Kind {
    Key,
    Client,
    Family,
}

/// The truth, and which items were certainly never evicted.
///
/// A Space-Saving table of capacity `k` fed `total` unit updates has a
/// minimum count of at most `total / k`, and only an item at the minimum
/// is evicted. So an item that was admitted while the table was not yet
/// full (fewer than `k` distinct items before it) and whose count stayed
/// above `total / k` at every later update is never evicted. Checked per
/// collector (keys are sharded by `shard_of`, clients and families follow
/// the keys) and per period (the whole run, or one window), in capture
/// order: the order a collector sees with one worker (with several, their
/// batches interleave and an item may be admitted later).
#[derive(Default)]
struct Oracle {
    /// (kind, period, item) -> true count. Period `u64::MAX` is the run.
    truth: HashMap<(Kind, u64, String), u64>,
    /// (kind, period, item) -> whether some collector may have evicted it.
    maybe_evicted: HashMap<(Kind, u64, String), bool>,
}

#[derive(Default)]
struct TableModel {
    total: u64,
    /// item -> (count so far, still certainly never evicted)
    items: HashMap<String, (u64, bool)>,
}

impl TableModel {
    fn update(&mut self, item: &str, k: u64) {
        let total = self.total;
        let distinct = self.items.len() as u64;
        match self.items.get_mut(item) {
            Some((c, safe)) => {
                // Any eviction since the last update happened with at most
                // `total` updates given.
                if *c * k <= total {
                    *safe = false;
                }
                *c += 1;
            }
            None => {
                self.items.insert(item.to_string(), (1, distinct < k));
            }
        }
        self.total += 1;
    }

    fn finish(&mut self, k: u64) {
        for (c, safe) in self.items.values_mut() {
            if *c * k <= self.total {
                *safe = false;
            }
        }
    }
}

const RUN: u64 = u64::MAX;

impl Oracle {
    fn new(s: &Stream, collectors: usize, limits: &TableLimits, families: usize) -> Oracle {
        let mut o = Oracle::default();
        let caps = [
            (Kind::Key, limits.max_keys.div_ceil(collectors) as u64),
            (Kind::Client, limits.max_clients as u64),
            (Kind::Family, limits.max_families as u64),
        ];
        let mut models: BTreeMap<(Kind, u64, usize), TableModel> = BTreeMap::new();
        for (key, c, ts) in &s.reqs {
            let shard = shard_of(Some(key.as_bytes()), collectors);
            let window = ts - ts % WINDOW_NS;
            let rank: usize = key.rsplit(':').next().unwrap().parse().unwrap();
            let items = [
                (Kind::Key, key.clone()),
                (Kind::Client, client_addr(*c).to_string()),
                (Kind::Family, family_word(family_of(rank, families))),
            ];
            for ((kind, item), (_, cap)) in items.iter().zip(caps) {
                for period in [RUN, window] {
                    *o.truth.entry((*kind, period, item.clone())).or_default() += 1;
                    models
                        .entry((*kind, period, shard))
                        .or_default()
                        .update(item, cap);
                }
            }
        }
        for ((kind, period, _), m) in &mut models {
            let cap = caps.iter().find(|c| c.0 == *kind).unwrap().1;
            m.finish(cap);
            for (item, (_, safe)) in &m.items {
                let e = o
                    .maybe_evicted
                    .entry((*kind, *period, item.clone()))
                    .or_default();
                *e |= !safe;
            }
        }
        o
    }
}

/// (item as the oracle names it, count, error bound) of every row.
fn rows<T>(t: &HeavyHitters<T>, name: impl Fn(&[u8]) -> String) -> Vec<(String, u64, u64)> {
    t.iter()
        .map(|e| (name(e.key()), e.count(), e.error_bound()))
        .collect()
}

fn family_name(f: &[u8]) -> String {
    // The family of `famXY:123` is `famXY:{n}`.
    let s = std::str::from_utf8(f).unwrap();
    s.strip_suffix(":{n}").unwrap_or(s).to_string()
}

struct Tally {
    checked_exact: usize,
    /// Items the model called never evicted that came back inexact.
    mispredicted: usize,
    inflated: usize,
    top100_inflated: usize,
}

/// Checks one table of one period against the oracle.
fn check_table(
    o: &Oracle,
    kind: Kind,
    period: u64,
    rows: &[(String, u64, u64)],
    unmonitored: u64,
    label: &str,
) -> Tally {
    let mut tally = Tally {
        checked_exact: 0,
        mispredicted: 0,
        inflated: 0,
        top100_inflated: 0,
    };
    let by_item: HashMap<&str, (u64, u64)> = rows
        .iter()
        .map(|(i, c, e)| (i.as_str(), (*c, *e)))
        .collect();
    for (item, count, bound) in rows {
        let truth = o.truth[&(kind, period, item.clone())];
        assert!(
            truth <= *count && *count <= truth + bound,
            "{label}: {kind:?} {item}: true {truth}, count {count}, bound {bound}"
        );
        if *bound == 0 {
            assert_eq!(*count, truth, "{label}: {kind:?} {item} claims to be exact");
        }
        if *count > truth {
            tally.inflated += 1;
        }
    }
    let mut truths: Vec<(&String, u64)> = o
        .truth
        .iter()
        .filter(|((k, p, _), _)| *k == kind && *p == period)
        .map(|((_, _, i), &t)| (i, t))
        .collect();
    truths.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (n, (item, truth)) in truths.iter().enumerate() {
        let got = by_item.get(item.as_str());
        if n < 100 && got.is_some_and(|(c, _)| c > truth) {
            tally.top100_inflated += 1;
        }
        if *truth > unmonitored {
            assert!(
                got.is_some(),
                "{label}: {kind:?} {item} (true {truth} > {unmonitored}) missing"
            );
        }
        if !o.maybe_evicted[&(kind, period, (*item).clone())] {
            if got == Some(&(*truth, 0)) {
                tally.checked_exact += 1;
            } else {
                // The model follows capture order; a collector sees records
                // as their answers resolve them, which can differ a little.
                // Seen once in a loaded run: a client the model called safe
                // came back as (2,072, bound 161) for a true 1,911. Its
                // bound must hold (checked above for every row listed), and
                // such a miss must stay rare.
                tally.mispredicted += 1;
                assert!(
                    got.is_some(),
                    "{label}: {kind:?} {item} was never evicted but is missing"
                );
            }
        }
    }
    assert!(
        tally.mispredicted <= 1,
        "{label}: {kind:?}: {} items the model calls never evicted are not exact",
        tally.mispredicted
    );
    tally
}

fn check_tables(o: &Oracle, t: &Tables, period: u64, label: &str) -> [Tally; 3] {
    let client = |b: &[u8]| ClientId::from_bytes(b).render();
    let key = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    [
        check_table(
            o,
            Kind::Key,
            period,
            &rows(&t.keys, key),
            t.keys.unmonitored_bound(),
            label,
        ),
        check_table(
            o,
            Kind::Client,
            period,
            &rows(&t.clients, client),
            t.clients.unmonitored_bound(),
            label,
        ),
        check_table(
            o,
            Kind::Family,
            period,
            &rows(&t.families, family_name),
            t.families.unmonitored_bound(),
            label,
        ),
    ]
}

fn run(path: &Path, limits: TableLimits, workers: usize, collectors: usize) -> PipelineOutput {
    run_windows(path, limits, workers, collectors, true)
}

fn run_windows(
    path: &Path,
    limits: TableLimits,
    workers: usize,
    collectors: usize,
    windows: bool,
) -> PipelineOutput {
    let cfg = Config::default();
    let pc = PipelineConfig {
        workers,
        collectors,
        window_ns: WINDOW_NS,
        windows,
        limits,
        families: Some(Arc::new(FamilyRules::new(&cfg.families).unwrap())),
        memory: cfg.memory(),
        seconds: false,
        insight: None,
    };
    let targets = Targets::new(vec![format!("*:{PORT}").parse().unwrap()]);
    pipeline::run(&cfg, &targets, &[path.to_path_buf()], &pc, &mut NoProgress).unwrap()
}

const REQUESTS: usize = 150_000;
const FAMILIES: usize = 400;
const LIMITS: TableLimits = TableLimits {
    max_keys: 2000,
    max_clients: 150,
    max_families: 100,
    client_granularity: ClientGranularity::Ip,
    key_clients: 32,
    insight_examples: 16,
};

/// 40k key ranks give 10x more distinct keys than `max_keys`; 600 clients
/// and 400 families, 4x above their limits.
fn zipf_capture(dir: &Path) -> (std::path::PathBuf, Stream) {
    let path = dir.join("zipf.pcap");
    let stream = generate(&path, 7, REQUESTS, 40_000, 600, FAMILIES);
    (path, stream)
}

fn window_starts(stream: &Stream) -> Vec<u64> {
    let mut periods: Vec<u64> = stream.reqs.iter().map(|r| r.2 - r.2 % WINDOW_NS).collect();
    periods.dedup();
    periods
}

#[test]
fn never_evicted_items_are_exact_in_the_run_and_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stream) = zipf_capture(dir.path());
    let collectors = 2;
    let oracle = Oracle::new(&stream, collectors, &LIMITS, FAMILIES);
    let distinct_keys = oracle
        .truth
        .keys()
        .filter(|(k, p, _)| *k == Kind::Key && *p == RUN)
        .count();
    assert!(distinct_keys >= 10 * LIMITS.max_keys, "{distinct_keys}");

    let out = run(&path, LIMITS, 1, collectors);
    assert_eq!(out.run.totals.requests, REQUESTS as u64);
    assert!(out.run.keys.evictions() > 0);
    assert!(out.run.clients.evictions() > 0);
    assert!(out.run.families.evictions() > 0);
    let [k, c, f] = check_tables(&oracle, &out.run, RUN, "run");
    // Enough items were certainly never evicted for the check to matter.
    assert!(k.checked_exact >= 90, "{} keys", k.checked_exact);
    assert!(c.checked_exact >= 5, "{} clients", c.checked_exact);
    assert!(f.checked_exact >= 3, "{} families", f.checked_exact);
    // Among them the solo clients, which one collector never saw while its
    // client table evicted.
    for i in 0..SOLO {
        let client = client_addr(600 + i).to_string();
        assert!(!oracle.maybe_evicted[&(Kind::Client, RUN, client)]);
    }
    assert_eq!(k.top100_inflated, 0);
    assert!(k.inflated > 0, "evicted keys carry some overestimate");

    let starts: Vec<u64> = out.windows.iter().map(|w| w.0).collect();
    assert_eq!(starts, window_starts(&stream));
    assert_eq!(starts.len(), 6);
    for (start, _, t) in &out.windows {
        let [k, c, f] = check_tables(&oracle, t, *start, &format!("window {start}"));
        assert!(
            k.checked_exact >= 50,
            "window {start}: {} keys",
            k.checked_exact
        );
        assert!(
            c.checked_exact >= 5,
            "window {start}: {} clients",
            c.checked_exact
        );
        assert!(
            f.checked_exact >= 3,
            "window {start}: {} families",
            f.checked_exact
        );
    }
}

/// With several workers a collector's order is not the capture's, so which
/// items were never evicted is not known here; the bounds must hold all
/// the same, and the hottest keys (in every worker's first batch) are
/// exact.
#[test]
fn bounds_hold_with_several_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stream) = zipf_capture(dir.path());
    let oracle = Oracle::new(&stream, 2, &LIMITS, FAMILIES);
    // No item is taken as never evicted: only bounds are checked.
    let bounds_only = Oracle {
        maybe_evicted: oracle
            .maybe_evicted
            .keys()
            .map(|k| (k.clone(), true))
            .collect(),
        truth: oracle.truth,
    };
    let out = run(&path, LIMITS, 2, 2);
    assert_eq!(out.run.totals.requests, REQUESTS as u64);
    check_tables(&bounds_only, &out.run, RUN, "run");
    for (start, _, t) in &out.windows {
        check_tables(&bounds_only, t, *start, &format!("window {start}"));
    }
    let mut hottest: Vec<(&String, u64)> = bounds_only
        .truth
        .iter()
        .filter(|((k, p, _), _)| *k == Kind::Key && *p == RUN)
        .map(|((_, _, i), &t)| (i, t))
        .collect();
    hottest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (key, truth) in &hottest[..5] {
        let e = out.run.keys.get(key.as_bytes()).unwrap();
        assert_eq!((e.count(), e.error_bound()), (*truth, 0), "{key}");
    }
}

/// Everything a run's key, client and family tables say, item by item
/// (sorted: the order of slots is not part of it).
fn contents(t: &Tables) -> Vec<String> {
    let mut out: Vec<String> = t
        .keys
        .iter()
        .map(|e| {
            let k = &e.stats;
            format!(
                "key {} {} {} {:?} {:?} {:?} {:?} {:?} {:?}",
                String::from_utf8_lossy(e.key()),
                e.count(),
                e.error_bound(),
                k.traffic,
                k.commands.sorted(),
                k.clients.sorted(),
                k.servers.sorted(),
                k.latency_us.counts(),
                k.value_size.counts(),
            )
        })
        .chain(t.clients.iter().map(|e| {
            format!(
                "client {:?} {} {} {:?}",
                e.key(),
                e.count(),
                e.error_bound(),
                e.stats.traffic
            )
        }))
        .chain(t.families.iter().map(|e| {
            format!(
                "family {} {} {} {:?}",
                String::from_utf8_lossy(e.key()),
                e.count(),
                e.error_bound(),
                e.stats.traffic
            )
        }))
        .collect();
    out.sort();
    out
}

/// With windows of a second or more a collector adds each record to its
/// window's tables only, and folds each window into the run's as it
/// closes. While no table evicts, that run is item for item the one a
/// pipeline without windows makes, and the windows add up to it. With
/// per-key client tables too small for the hot keys, every row keeps its
/// bounds, and a key with no more clients than the table is exact.
#[test]
fn folded_windows_make_the_run_a_pipeline_without_windows_makes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.pcap");
    // 60,000 requests over 2.4 s: three windows; 500 key ranks (and the
    // solo keys), 100 clients (and the solo ones), 40 families.
    let stream = generate(&path, 9, 60_000, 500, 100, 40);
    let limits = TableLimits {
        max_keys: 4000,
        max_clients: 1000,
        max_families: 1000,
        key_clients: 256,
        ..LIMITS
    };
    for (workers, collectors) in [(1, 1), (2, 2)] {
        let folded = run_windows(&path, limits, workers, collectors, true);
        let plain = run_windows(&path, limits, workers, collectors, false);
        let starts: Vec<u64> = folded.windows.iter().map(|w| w.0).collect();
        assert_eq!(starts, window_starts(&stream));
        assert_eq!(starts.len(), 3);
        assert!(plain.windows.is_empty());
        assert_eq!(folded.run.totals.requests, 60_000);
        assert_eq!(folded.run.totals, plain.run.totals);
        assert_eq!(folded.run.results, plain.run.results);
        assert!(folded.run.keys.is_exact() && plain.run.keys.is_exact());
        assert!(folded.run.keys.len() > 400);
        assert_eq!(contents(&folded.run), contents(&plain.run));
        let mut sum = Tables::new(&limits);
        for (_, _, w) in &folded.windows {
            sum.fold(w);
        }
        assert_eq!(contents(&sum), contents(&plain.run));
    }

    // Each key's true clients.
    let mut truth: HashMap<(String, ClientId), u64> = HashMap::new();
    for (key, c, _) in &stream.reqs {
        let addr = std::net::SocketAddr::from((client_addr(*c), 40_000 + *c as u16));
        *truth
            .entry((key.clone(), ClientId::new(addr, ClientGranularity::Ip)))
            .or_default() += 1;
    }
    let limits = TableLimits {
        key_clients: 32,
        ..limits
    };
    let folded = run_windows(&path, limits, 1, 1, true);
    let (mut exact_keys, mut crowded_keys) = (0, 0);
    for e in folded.run.keys.iter() {
        let key = String::from_utf8(e.key().to_vec()).unwrap();
        let clients = &e.stats.clients;
        let distinct = truth.keys().filter(|(k, _)| *k == key).count();
        let m = clients.unmonitored_bound();
        for r in clients.iter() {
            let t = truth.get(&(key.clone(), r.addr)).copied().unwrap_or(0);
            assert!(
                t <= r.count && r.count <= t + r.error_bound,
                "{key}: {r:?}, true {t}"
            );
        }
        for ((k, a), &t) in &truth {
            if *k == key && t > m {
                assert!(
                    clients.iter().any(|r| r.addr == *a),
                    "{key}: {a:?} ({t} > {m}) missing"
                );
            }
        }
        if distinct <= 32 {
            assert!(clients.is_exact(), "{key}: {distinct} clients");
            exact_keys += 1;
        } else {
            crowded_keys += 1;
        }
    }
    assert!(
        exact_keys > 300 && crowded_keys > 5,
        "{exact_keys} {crowded_keys}"
    );
}
