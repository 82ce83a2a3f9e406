//! What `memtap top` shows, without a terminal: cumulative snapshots in,
//! rows with rates, sorted and filtered, out. A rate is the difference of
//! the newest snapshot and the one at the start of the sliding window,
//! over the time between them; so the collectors are never asked for
//! anything but the copies of their tables they already make.

use crate::report::top::{quantile, Counts, KeyRow, Snapshot};
use std::collections::{HashMap, VecDeque};

/// Counters that measure work, or that are normal on a healthy capture:
/// every other non-zero counter is input given up, shown in the header.
const NOT_LOSS: &[&str] = &[
    "packets",
    "bytes",
    "files",
    "tcp_segments",
    "tcp_flows",
    "tcp_closed",
    "tcp_midstream",
    "tcp_evicted_idle",
    "tcp_ooo_segments",
    "tcp_retransmit_bytes",
    // A held segment waits for the other direction and is then delivered.
    "tcp_causal_held",
    "udp_datagrams",
    "udp_held_responses",
    "records",
    "ip_fragments",
    "ip_reassembled",
    "loopback_duplicates",
    "not_target",
    "non_ip",
    "non_tcp_udp",
];

/// Seconds of per-key rate history kept for the drill-down sparkline.
pub const SPARK_POINTS: usize = 180;
/// Keys whose history is kept: the busiest of each snapshot, and the keys
/// already followed, up to this many.
const SPARK_KEYS: usize = 400;
const SPARK_TOP: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Keys,
    Clients,
    Servers,
    Commands,
    Families,
    /// Why gets miss, per server and for the pool.
    Insight,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Keys,
        Tab::Clients,
        Tab::Servers,
        Tab::Commands,
        Tab::Families,
        Tab::Insight,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Keys => "keys",
            Tab::Clients => "clients",
            Tab::Servers => "servers",
            Tab::Commands => "commands",
            Tab::Families => "families",
            Tab::Insight => "why-miss",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// The column rows are ordered by (rates over the window, except `Total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Requests,
    Hits,
    Misses,
    /// Bytes in plus out.
    Bytes,
    /// p99 latency over the window.
    Latency,
    /// Requests over the whole run.
    Total,
}

impl Sort {
    pub fn title(self) -> &'static str {
        match self {
            Sort::Requests => "req/s",
            Sort::Hits => "hits/s",
            Sort::Misses => "misses/s",
            Sort::Bytes => "bytes/s",
            Sort::Latency => "p99",
            Sort::Total => "total",
        }
    }
}

impl From<crate::report::SortBy> for Sort {
    fn from(s: crate::report::SortBy) -> Sort {
        match s {
            crate::report::SortBy::Requests => Sort::Requests,
            crate::report::SortBy::Bytes => Sort::Bytes,
            crate::report::SortBy::Misses => Sort::Misses,
            crate::report::SortBy::Latency => Sort::Latency,
        }
    }
}

/// A key or server filter: a substring, or a regex when it starts with `~`.
#[derive(Debug, Clone)]
pub struct Filter {
    pub text: String,
    re: Option<regex::Regex>,
}

impl Filter {
    pub fn new(text: &str) -> Result<Filter, String> {
        let re = match text.strip_prefix('~') {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| format!("bad regex: {e}"))?),
            None => None,
        };
        Ok(Filter {
            text: text.to_string(),
            re,
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        match &self.re {
            Some(r) => r.is_match(s),
            None => s.contains(&self.text),
        }
    }
}

/// Per-second rates of a row over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub requests: f64,
    pub hits: f64,
    pub misses: f64,
    pub errors: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
}

impl Rates {
    fn of(c: &Counts, secs: f64) -> Rates {
        if secs <= 0.0 {
            return Rates::default();
        }
        Rates {
            requests: c.requests as f64 / secs,
            hits: c.hits as f64 / secs,
            misses: c.misses as f64 / secs,
            errors: c.errors as f64 / secs,
            bytes_in: c.bytes_in as f64 / secs,
            bytes_out: c.bytes_out as f64 / secs,
        }
    }

    /// Hits over hits and misses (None without either).
    pub fn hit_pct(&self) -> Option<f64> {
        let d = self.hits + self.misses;
        (d > 0.0).then(|| 100.0 * self.hits / d)
    }
}

/// One table row.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub rate: Rates,
    pub total: Counts,
    /// Latency over the window (keys only).
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    /// Share of the window's requests (servers).
    pub share: Option<f64>,
    /// Protocol and transport (commands).
    pub detail: String,
    /// Insight tab: misses by class (cumulative), then storms and unread
    /// writes.
    pub classes: Vec<u64>,
}

/// A key's drill-down.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDetail {
    pub line: Line,
    /// Its clients: (client, requests/s over the window, total), most
    /// requests first; exact for a key with at most `--key-clients`.
    pub clients: Vec<(String, f64, u64)>,
    /// The error bound of each of `clients` (0: exact), same order.
    pub client_bounds: Vec<u64>,
    /// Its servers, each with its requests (and `±bound` when not exact).
    pub servers: Vec<String>,
    /// Its commands: (command, requests/s, total).
    pub commands: Vec<(String, f64, u64)>,
    /// Requests per second, one point a snapshot, oldest first.
    pub spark: Vec<f64>,
    pub error_bound: u64,
}

/// What the header shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    pub source: String,
    pub at_ns: u64,
    /// Seconds the rates are taken over (less than the window early on).
    pub span: f64,
    pub packets: f64,
    pub bytes: f64,
    pub records: f64,
    pub requests: f64,
    pub hit_pct: Option<f64>,
    pub total_requests: u64,
    pub tracked_keys: usize,
    /// Non-zero loss counters: (name, total, grew within the window).
    pub losses: Vec<(String, u64, bool)>,
}

/// Where Enter led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Key(String),
    Client(String),
}

/// The text prompt open at the bottom line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Key,
    Server,
}

/// What a key press asks of the model (the input loop maps keys to these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    NextTab,
    PrevTab,
    Tab(Tab),
    Sort(Sort),
    Reverse,
    Freeze,
    Reset,
    Up,
    Down,
    Page(i64),
    Home,
    End,
    Enter,
    Back,
    Help,
    Prompt(Prompt),
    /// A character typed into the open prompt.
    Type(char),
    Erase,
}

struct Indexed {
    snap: Snapshot,
    keys: HashMap<String, usize>,
    clients: HashMap<String, usize>,
    servers: HashMap<String, usize>,
    families: HashMap<String, usize>,
    commands: HashMap<(String, String, String), usize>,
}

impl Indexed {
    fn new(snap: Snapshot) -> Indexed {
        let idx = |names: Vec<String>| {
            names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, i))
                .collect::<HashMap<_, _>>()
        };
        Indexed {
            keys: idx(snap.keys.iter().map(|k| k.key.clone()).collect()),
            clients: idx(snap.clients.iter().map(|r| r.name.clone()).collect()),
            servers: idx(snap.servers.iter().map(|r| r.name.clone()).collect()),
            families: idx(snap.families.iter().map(|r| r.name.clone()).collect()),
            commands: snap
                .commands
                .iter()
                .enumerate()
                .map(|(i, c)| ((c.proto.clone(), c.transport.clone(), c.command.clone()), i))
                .collect(),
            snap,
        }
    }

    fn key(&self, k: &str) -> Option<&KeyRow> {
        self.keys.get(k).map(|&i| &self.snap.keys[i])
    }
}

/// Extends the sparkline history with the rates between two snapshots.
fn follow(spark: &mut HashMap<String, VecDeque<f64>>, prev: &Indexed, new: &Indexed) {
    let dt = (new.snap.at_ns.saturating_sub(prev.snap.at_ns)) as f64 / 1e9;
    if dt <= 0.0 {
        return;
    }
    let delta = |k: &KeyRow| {
        let old = prev
            .key(&k.key)
            .map_or(k.error_bound, |o| o.counts.requests);
        k.counts.requests.saturating_sub(old) as f64 / dt
    };
    let mut busiest: Vec<(f64, usize)> = new
        .snap
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (delta(k), i))
        .filter(|(d, _)| *d > 0.0)
        .collect();
    let cut = busiest.len().min(SPARK_TOP);
    if cut > 0 && busiest.len() > cut {
        busiest.select_nth_unstable_by(cut - 1, |a, b| b.0.total_cmp(&a.0));
        busiest.truncate(cut);
    }
    for (_, i) in busiest {
        spark.entry(new.snap.keys[i].key.clone()).or_default();
    }
    for (k, h) in spark.iter_mut() {
        let r = new.key(k).map_or(0.0, delta);
        h.push_back(r);
        if h.len() > SPARK_POINTS {
            h.pop_front();
        }
    }
    if spark.len() > SPARK_KEYS {
        // Forget the keys quiet the longest.
        let mut by: Vec<(f64, String)> = spark
            .iter()
            .map(|(k, h)| (h.iter().rev().take(30).sum::<f64>(), k.clone()))
            .collect();
        by.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let drop = spark.len() - SPARK_KEYS;
        for (_, k) in by.into_iter().take(drop) {
            spark.remove(&k);
        }
    }
}

pub struct Model {
    ring: VecDeque<Indexed>,
    /// Snapshots that came while frozen, applied on thaw.
    held: VecDeque<Snapshot>,
    pub window_ns: u64,
    pub tab: Tab,
    pub sort: Sort,
    pub reverse: bool,
    pub key_filter: Option<Filter>,
    pub server_filter: Option<Filter>,
    pub frozen: bool,
    pub help: bool,
    pub stack: Vec<Screen>,
    pub selected: usize,
    saved: Vec<usize>,
    pub prompt: Option<(Prompt, String)>,
    /// A message for the status line (bad regex, source finished, ...).
    pub status: Option<String>,
    pub quit: bool,
    spark: HashMap<String, VecDeque<f64>>,
}

impl Model {
    pub fn new(window_ns: u64, sort: Sort) -> Model {
        Model {
            ring: VecDeque::new(),
            held: VecDeque::new(),
            window_ns: window_ns.max(1),
            tab: Tab::Keys,
            sort,
            reverse: false,
            key_filter: None,
            server_filter: None,
            frozen: false,
            help: false,
            stack: Vec::new(),
            selected: 0,
            saved: Vec::new(),
            prompt: None,
            status: None,
            quit: false,
            spark: HashMap::new(),
        }
    }

    /// Takes in the next cumulative snapshot (newer than the last).
    pub fn ingest(&mut self, s: Snapshot) {
        if self.frozen {
            self.held.push_back(s);
            // Only the window's worth matters once thawed.
            while self.held.len() > 2
                && self.held[1].at_ns + self.window_ns <= self.held.back().map_or(0, |b| b.at_ns)
            {
                self.held.pop_front();
            }
            return;
        }
        self.push(s);
    }

    fn push(&mut self, s: Snapshot) {
        if let Some(last) = self.ring.back() {
            if s.at_ns < last.snap.at_ns {
                // A source restarted (or the clock stepped back): rates
                // from before mean nothing now.
                self.ring.clear();
            }
        }
        let ix = Indexed::new(s);
        if let Some(prev) = self.ring.back() {
            follow(&mut self.spark, prev, &ix);
        }
        self.ring.push_back(ix);
        // Keep the newest snapshot at or before the window's start as the
        // baseline; older ones are of no use.
        let newest = self.ring.back().map_or(0, |b| b.snap.at_ns);
        while self.ring.len() > 2 && self.ring[1].snap.at_ns + self.window_ns <= newest {
            self.ring.pop_front();
        }
    }

    /// The newest snapshot and the baseline, with the seconds between
    /// them (0 with fewer than two snapshots).
    fn span(&self) -> Option<(&Indexed, Option<&Indexed>, f64)> {
        let new = self.ring.back()?;
        if self.ring.len() < 2 {
            return Some((new, None, 0.0));
        }
        let old = self.ring.front()?;
        let dt = new.snap.at_ns.saturating_sub(old.snap.at_ns) as f64 / 1e9;
        Some((new, Some(old), dt))
    }

    pub fn has_data(&self) -> bool {
        !self.ring.is_empty()
    }

    /// Run totals of the newest snapshot.
    pub fn totals(&self) -> Option<Counts> {
        self.ring.back().map(|i| i.snap.totals)
    }

    pub fn header(&self) -> Header {
        let Some((new, old, dt)) = self.span() else {
            return Header::default();
        };
        let c = |s: &Snapshot, n: &str| s.counters.get(n).copied().unwrap_or(0);
        let rate = |n: &str| match old {
            Some(o) if dt > 0.0 => c(&new.snap, n).saturating_sub(c(&o.snap, n)) as f64 / dt,
            _ => 0.0,
        };
        let tot = match old {
            Some(o) => new.snap.totals.since(&o.snap.totals),
            None => Counts::default(),
        };
        let r = Rates::of(&tot, dt);
        Header {
            source: new.snap.source.join(", "),
            at_ns: new.snap.at_ns,
            span: dt,
            packets: rate("packets"),
            bytes: rate("bytes"),
            records: rate("records"),
            requests: r.requests,
            hit_pct: r.hit_pct(),
            total_requests: new.snap.totals.requests,
            tracked_keys: new.snap.tracked_keys,
            losses: new
                .snap
                .counters
                .iter()
                .filter(|(n, v)| **v > 0 && !NOT_LOSS.contains(&n.as_str()))
                .map(|(n, v)| {
                    let grew = old.is_some_and(|o| c(&o.snap, n) < *v);
                    (n.clone(), *v, grew)
                })
                .collect(),
        }
    }

    fn key_line(k: &KeyRow, old: Option<&Indexed>, dt: f64) -> Line {
        let (base, lat_old) = match old.and_then(|o| o.key(&k.key)) {
            Some(o) => (o.counts, Some(&o.latency_us)),
            // New in the window: a heavy-hitter entry admitted by
            // eviction starts at its error bound, not at zero.
            None => (
                Counts {
                    requests: k.error_bound.min(k.counts.requests),
                    ..Counts::default()
                },
                None,
            ),
        };
        let d = k.counts.since(&base);
        let lat: Vec<u64> = k
            .latency_us
            .iter()
            .enumerate()
            .map(|(i, &n)| n.saturating_sub(lat_old.and_then(|l| l.get(i)).copied().unwrap_or(0)))
            .collect();
        let (p50, p99) = if old.is_none() {
            // One snapshot: the run so far is all there is.
            (
                quantile(&k.latency_us, k.latency_max_us, 0.5),
                quantile(&k.latency_us, k.latency_max_us, 0.99),
            )
        } else {
            (
                quantile(&lat, k.latency_max_us, 0.5),
                quantile(&lat, k.latency_max_us, 0.99),
            )
        };
        Line {
            name: k.key.clone(),
            rate: Rates::of(&d, dt),
            total: k.counts,
            p50,
            p99,
            share: None,
            detail: String::new(),
            classes: Vec::new(),
        }
    }

    fn passes_server(&self, servers: &[String]) -> bool {
        match &self.server_filter {
            None => true,
            Some(f) => servers.iter().any(|s| f.matches(s)),
        }
    }

    fn passes_key(&self, name: &str) -> bool {
        self.key_filter.as_ref().is_none_or(|f| f.matches(name))
    }

    /// The rows of the table screen of the current tab, filtered and
    /// sorted.
    pub fn rows(&self) -> Vec<Line> {
        let Some((new, old, dt)) = self.span() else {
            return Vec::new();
        };
        let plain = |rows: &[crate::report::top::Row],
                     pick: fn(&Indexed) -> &HashMap<String, usize>,
                     list: fn(&Snapshot) -> &Vec<crate::report::top::Row>| {
            rows.iter()
                .map(|r| {
                    let base = old
                        .and_then(|o| pick(o).get(&r.name).map(|&i| list(&o.snap)[i].counts))
                        .unwrap_or(Counts {
                            requests: r.error_bound.min(r.counts.requests),
                            ..Counts::default()
                        });
                    Line {
                        name: r.name.clone(),
                        rate: Rates::of(&r.counts.since(&base), dt),
                        total: r.counts,
                        p50: None,
                        p99: None,
                        share: None,
                        detail: String::new(),
                        classes: Vec::new(),
                    }
                })
                .collect::<Vec<_>>()
        };
        let mut v: Vec<Line> = match self.tab {
            Tab::Keys => new
                .snap
                .keys
                .iter()
                .filter(|k| self.passes_key(&k.key) && self.passes_server(&k.servers))
                .map(|k| Model::key_line(k, old, dt))
                .collect(),
            Tab::Clients => plain(&new.snap.clients, |i| &i.clients, |s| &s.clients),
            Tab::Families => plain(&new.snap.families, |i| &i.families, |s| &s.families)
                .into_iter()
                .filter(|l| self.passes_key(&l.name))
                .collect(),
            Tab::Servers => {
                let mut v: Vec<Line> = plain(&new.snap.servers, |i| &i.servers, |s| &s.servers)
                    .into_iter()
                    .filter(|l| self.passes_server(std::slice::from_ref(&l.name)))
                    .collect();
                let all: f64 = v.iter().map(|l| l.rate.requests).sum();
                let all_total: u64 = v.iter().map(|l| l.total.requests).sum();
                for l in &mut v {
                    l.share = Some(if all > 0.0 {
                        100.0 * l.rate.requests / all
                    } else if all_total > 0 {
                        100.0 * l.total.requests as f64 / all_total as f64
                    } else {
                        0.0
                    });
                }
                v
            }
            Tab::Commands => new
                .snap
                .commands
                .iter()
                .map(|c| {
                    let k = (c.proto.clone(), c.transport.clone(), c.command.clone());
                    let (oc, or) = old
                        .and_then(|o| o.commands.get(&k).map(|&i| &o.snap.commands[i]))
                        .map_or((0, 0), |o| (o.count, o.requests));
                    let secs = if dt > 0.0 { dt } else { f64::INFINITY };
                    Line {
                        name: c.command.clone(),
                        rate: Rates {
                            requests: c.requests.saturating_sub(or) as f64 / secs,
                            // Commands on the wire per second.
                            hits: c.count.saturating_sub(oc) as f64 / secs,
                            ..Rates::default()
                        },
                        total: Counts {
                            requests: c.requests,
                            hits: c.count,
                            ..Counts::default()
                        },
                        p50: None,
                        p99: None,
                        share: None,
                        detail: format!("{}/{}", c.proto, c.transport),
                        classes: Vec::new(),
                    }
                })
                .collect(),
            Tab::Insight => new
                .snap
                .insight
                .iter()
                .filter(|r| {
                    r.server == "pool" || self.passes_server(std::slice::from_ref(&r.server))
                })
                .map(|r| {
                    let misses: u64 = r.misses.iter().sum();
                    let old_misses: u64 = old
                        .and_then(|o| o.snap.insight.iter().find(|x| x.server == r.server))
                        .map_or(0, |x| x.misses.iter().sum());
                    let secs = if dt > 0.0 { dt } else { f64::INFINITY };
                    let mut classes = r.misses.clone();
                    classes.extend([r.storms, r.unread_writes]);
                    Line {
                        name: r.server.clone(),
                        rate: Rates {
                            misses: misses.saturating_sub(old_misses) as f64 / secs,
                            ..Rates::default()
                        },
                        total: Counts {
                            misses,
                            requests: misses,
                            ..Counts::default()
                        },
                        p50: None,
                        p99: None,
                        share: None,
                        detail: String::new(),
                        classes,
                    }
                })
                .collect(),
        };
        self.sort_lines(&mut v);
        v
    }

    fn sort_lines(&self, v: &mut [Line]) {
        let sort = self.sort;
        let val = |l: &Line| -> (f64, f64) {
            match sort {
                Sort::Requests => (l.rate.requests, l.total.requests as f64),
                Sort::Hits => (l.rate.hits, l.total.hits as f64),
                Sort::Misses => (l.rate.misses, l.total.misses as f64),
                Sort::Bytes => (
                    l.rate.bytes_in + l.rate.bytes_out,
                    (l.total.bytes_in + l.total.bytes_out) as f64,
                ),
                Sort::Latency => (
                    l.p99.map_or(-1.0, |p| p as f64),
                    l.p50.map_or(-1.0, |p| p as f64),
                ),
                Sort::Total => (l.total.requests as f64, l.rate.requests),
            }
        };
        v.sort_by(|a, b| {
            let (x, y) = (val(a), val(b));
            let o =
                y.0.total_cmp(&x.0)
                    .then(y.1.total_cmp(&x.1))
                    .then_with(|| a.name.cmp(&b.name))
                    .then_with(|| a.detail.cmp(&b.detail));
            if self.reverse {
                o.reverse()
            } else {
                o
            }
        });
    }

    pub fn key_detail(&self, key: &str) -> Option<KeyDetail> {
        let (new, old, dt) = self.span()?;
        let k = new.key(key)?;
        let ok = old.and_then(|o| o.key(key));
        let secs = if dt > 0.0 { dt } else { f64::INFINITY };
        let pair_rate =
            |then: Option<u64>, now: u64| now.saturating_sub(then.unwrap_or(0)) as f64 / secs;
        let clients = k
            .clients
            .iter()
            .map(|(c, n)| {
                let then = ok.and_then(|o| o.clients.iter().find(|x| &x.0 == c).map(|x| x.1));
                (c.clone(), pair_rate(then, *n), *n)
            })
            .collect();
        let commands = k
            .commands
            .iter()
            .map(|(c, n)| {
                let then = ok.and_then(|o| o.commands.iter().find(|x| &x.0 == c).map(|x| x.1));
                (c.clone(), pair_rate(then, *n), *n)
            })
            .collect();
        let servers = if k.server_requests.is_empty() {
            k.servers.clone()
        } else {
            k.server_requests
                .iter()
                .map(|(s, n, b)| match b {
                    0 => format!("{s} ({n})"),
                    b => format!("{s} ({n} ±{b})"),
                })
                .collect()
        };
        Some(KeyDetail {
            line: Model::key_line(k, old, dt),
            clients,
            client_bounds: (0..k.clients.len())
                .map(|i| k.client_bounds.get(i).copied().unwrap_or(0))
                .collect(),
            servers,
            commands,
            spark: self
                .spark
                .get(key)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default(),
            error_bound: k.error_bound,
        })
    }

    /// A client's keys: the keys it is among the hottest clients of, with
    /// its own requests to each (rate over the window, total).
    pub fn client_keys(&self, client: &str) -> Vec<Line> {
        let Some((new, old, dt)) = self.span() else {
            return Vec::new();
        };
        let secs = if dt > 0.0 { dt } else { f64::INFINITY };
        let mut v: Vec<Line> = new
            .snap
            .keys
            .iter()
            .filter(|k| self.passes_key(&k.key) && self.passes_server(&k.servers))
            .filter_map(|k| {
                let n = k.clients.iter().find(|c| c.0 == client)?.1;
                let then = old
                    .and_then(|o| o.key(&k.key))
                    .and_then(|o| o.clients.iter().find(|c| c.0 == client))
                    .map_or(0, |c| c.1);
                Some(Line {
                    name: k.key.clone(),
                    rate: Rates {
                        requests: n.saturating_sub(then) as f64 / secs,
                        ..Rates::default()
                    },
                    total: Counts {
                        requests: n,
                        ..Counts::default()
                    },
                    p50: None,
                    p99: None,
                    share: None,
                    detail: String::new(),
                    classes: Vec::new(),
                })
            })
            .collect();
        let keep = self.sort;
        // Only requests are known per (key, client): sort by them.
        let mut m = Model::new(self.window_ns, Sort::Requests);
        m.reverse = self.reverse;
        if keep == Sort::Total {
            m.sort = Sort::Total;
        }
        m.sort_lines(&mut v);
        v
    }

    /// Rows on the current screen (for moving the selection).
    pub fn screen_len(&self) -> usize {
        match self.stack.last() {
            None => self.rows().len(),
            Some(Screen::Client(c)) => self.client_keys(c).len(),
            Some(Screen::Key(k)) => self.key_detail(k).map_or(0, |d| d.clients.len()),
        }
    }

    /// Applies one key press.
    pub fn act(&mut self, a: Action) {
        if let Some((kind, text)) = self.prompt.as_mut() {
            match a {
                Action::Type(c) => text.push(c),
                Action::Erase => {
                    text.pop();
                }
                Action::Back => self.prompt = None,
                Action::Enter => {
                    let (kind, text) = (*kind, text.clone());
                    self.prompt = None;
                    let f = if text.is_empty() {
                        Ok(None)
                    } else {
                        Filter::new(&text).map(Some)
                    };
                    match f {
                        Ok(f) => {
                            match kind {
                                Prompt::Key => self.key_filter = f,
                                Prompt::Server => self.server_filter = f,
                            }
                            self.status = None;
                            self.selected = 0;
                        }
                        Err(e) => self.status = Some(e),
                    }
                }
                _ => {}
            }
            return;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            if a != Action::Quit {
                return;
            }
        }
        let len = self.screen_len();
        match a {
            Action::Quit => self.quit = true,
            Action::NextTab | Action::PrevTab | Action::Tab(_) => {
                let i = self.tab.index();
                let n = Tab::ALL.len();
                self.tab = match a {
                    Action::NextTab => Tab::ALL[(i + 1) % n],
                    Action::PrevTab => Tab::ALL[(i + n - 1) % n],
                    Action::Tab(t) => t,
                    _ => self.tab,
                };
                self.stack.clear();
                self.saved.clear();
                self.selected = 0;
            }
            Action::Sort(s) => {
                if self.sort == s {
                    self.reverse = !self.reverse;
                } else {
                    self.sort = s;
                    self.reverse = false;
                }
            }
            Action::Reverse => self.reverse = !self.reverse,
            Action::Freeze => {
                self.frozen = !self.frozen;
                if !self.frozen {
                    while let Some(s) = self.held.pop_front() {
                        self.push(s);
                    }
                }
            }
            Action::Reset => {
                while self.ring.len() > 1 {
                    self.ring.pop_front();
                }
            }
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(len.saturating_sub(1)),
            Action::Page(n) => {
                let s = self.selected as i64 + n;
                self.selected = s.clamp(0, len.saturating_sub(1) as i64) as usize;
            }
            Action::Home => self.selected = 0,
            Action::End => self.selected = len.saturating_sub(1),
            Action::Enter => self.enter(),
            Action::Back => {
                if self.stack.pop().is_some() {
                    self.selected = self.saved.pop().unwrap_or(0);
                }
            }
            Action::Help => self.help = true,
            Action::Prompt(p) => {
                let cur = match p {
                    Prompt::Key => &self.key_filter,
                    Prompt::Server => &self.server_filter,
                };
                self.prompt = Some((p, cur.as_ref().map(|f| f.text.clone()).unwrap_or_default()));
            }
            Action::Type(_) | Action::Erase => {}
        }
    }

    fn enter(&mut self) {
        let next = match self.stack.last() {
            None => {
                let rows = self.rows();
                let Some(l) = rows.get(self.selected) else {
                    return;
                };
                match self.tab {
                    Tab::Keys => Screen::Key(l.name.clone()),
                    Tab::Clients => Screen::Client(l.name.clone()),
                    _ => return,
                }
            }
            Some(Screen::Client(c)) => match self.client_keys(c).get(self.selected) {
                Some(l) => Screen::Key(l.name.clone()),
                None => return,
            },
            Some(Screen::Key(k)) => match self
                .key_detail(k)
                .and_then(|d| d.clients.get(self.selected).cloned())
            {
                Some((c, _, _)) => Screen::Client(c),
                None => return,
            },
        };
        self.stack.push(next);
        self.saved.push(self.selected);
        self.selected = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::top::Row;

    fn key(name: &str, req: u64, hits: u64, lat: Vec<u64>, clients: &[(&str, u64)]) -> KeyRow {
        KeyRow {
            key: name.into(),
            counts: Counts {
                requests: req,
                hits,
                misses: req - hits,
                errors: 0,
                bytes_in: req * 10,
                bytes_out: hits * 100,
            },
            error_bound: 0,
            latency_max_us: 1000,
            latency_us: lat,
            servers: vec!["10.0.0.1:11211".into()],
            clients: clients.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            commands: vec![("get".into(), req)],
            client_bounds: Vec::new(),
            server_requests: Vec::new(),
        }
    }

    fn snap(at_s: u64, keys: Vec<KeyRow>) -> Snapshot {
        let mut totals = Counts::default();
        for k in &keys {
            totals.requests += k.counts.requests;
            totals.hits += k.counts.hits;
            totals.misses += k.counts.misses;
        }
        Snapshot {
            memtap_top: 1,
            source: vec!["test".into()],
            at_ns: at_s * 1_000_000_000,
            counters: [
                ("packets".to_string(), at_s * 100),
                ("tcp_gaps".to_string(), at_s / 5),
                // Held segments are delivered later: not a loss.
                ("tcp_causal_held".to_string(), at_s),
            ]
            .into_iter()
            .collect(),
            totals,
            tracked_keys: keys.len(),
            keys,
            clients: vec![Row {
                name: "10.0.0.9".into(),
                counts: Counts {
                    requests: at_s * 7,
                    ..Counts::default()
                },
                error_bound: 0,
            }],
            servers: vec![],
            families: vec![],
            commands: vec![],
            insight: vec![crate::report::top::InsightRow {
                server: "pool".into(),
                misses: vec![at_s, 0, 0, 3 * at_s, 0, 0],
                storms: at_s / 10,
                unread_writes: 2,
                stores: at_s,
            }],
        }
    }

    #[test]
    fn the_insight_tab_shows_miss_classes_and_their_rate() {
        let mut m = Model::new(10_000_000_000, Sort::Misses);
        for t in 0..=20u64 {
            m.ingest(snap(t, vec![]));
        }
        m.tab = Tab::Insight;
        let rows = m.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "pool");
        // 4 misses a second (1 first, 3 evicted), cumulative 80.
        assert_eq!(rows[0].rate.misses, 4.0);
        assert_eq!(rows[0].total.misses, 80);
        assert_eq!(rows[0].classes, vec![20, 0, 0, 60, 0, 0, 2, 2]);
    }

    #[test]
    fn rates_are_window_differences() {
        let mut m = Model::new(10_000_000_000, Sort::Requests);
        // "hot" steady at 50/s after a burst before the window; "old" was
        // big once and is idle now.
        for t in 0..=20u64 {
            m.ingest(snap(
                t,
                vec![
                    key(
                        "hot",
                        1000 + 50 * t,
                        40 * t,
                        vec![0, 0, 0, 50 * t],
                        &[("10.0.0.9", 50 * t)],
                    ),
                    key("old", 5000, 5000, vec![5000], &[]),
                ],
            ));
        }
        let rows = m.rows();
        assert_eq!(rows[0].name, "hot");
        assert_eq!(rows[0].rate.requests, 50.0);
        assert_eq!(rows[0].rate.hits, 40.0);
        assert_eq!(rows[0].rate.misses, 10.0);
        assert_eq!(rows[0].rate.hit_pct(), Some(80.0));
        assert_eq!(rows[0].total.requests, 2000);
        assert_eq!(rows[0].p99, Some(7));
        assert_eq!(rows[1].name, "old");
        assert_eq!(rows[1].rate.requests, 0.0);
        assert_eq!(rows[1].p99, None, "no requests in the window");
        // By run totals, the idle key leads.
        m.act(Action::Sort(Sort::Total));
        assert_eq!(m.rows()[0].name, "old");
        // Same key again reverses.
        m.act(Action::Sort(Sort::Total));
        assert!(m.reverse);
        assert_eq!(m.rows()[0].name, "hot");
        let h = m.header();
        assert_eq!(h.span, 10.0);
        assert_eq!(h.packets, 100.0);
        assert_eq!(h.requests, 50.0);
        assert_eq!(h.losses, vec![("tcp_gaps".to_string(), 4, true)]);
    }

    #[test]
    fn filters_drilldown_and_back() {
        let mut m = Model::new(10_000_000_000, Sort::Requests);
        for t in 0..3u64 {
            m.ingest(snap(
                t,
                vec![
                    key("user:1", 10 * t, 0, vec![], &[("10.0.0.9", 10 * t)]),
                    key("session:7", 30 * t, 0, vec![], &[("10.0.0.8", 30 * t)]),
                ],
            ));
        }
        assert_eq!(m.rows()[0].name, "session:7");
        for a in [
            Action::Prompt(Prompt::Key),
            Action::Type('u'),
            Action::Type('s'),
            Action::Enter,
        ] {
            m.act(a);
        }
        let names: Vec<_> = m.rows().into_iter().map(|l| l.name).collect();
        assert_eq!(names, vec!["user:1"]);
        m.act(Action::Prompt(Prompt::Key));
        for _ in 0..2 {
            m.act(Action::Erase);
        }
        for c in "~^s.*:\\d$".chars() {
            m.act(Action::Type(c));
        }
        m.act(Action::Enter);
        assert_eq!(m.rows().len(), 1);
        assert_eq!(m.rows()[0].name, "session:7");
        m.act(Action::Prompt(Prompt::Key));
        m.act(Action::Type('('));
        m.act(Action::Enter);
        assert!(m.status.as_deref().unwrap().starts_with("bad regex"));
        // Enter on the key, then on its client, then back twice.
        m.act(Action::Enter);
        assert_eq!(m.stack, vec![Screen::Key("session:7".into())]);
        let d = m.key_detail("session:7").unwrap();
        assert_eq!(d.clients, vec![("10.0.0.8".to_string(), 30.0, 60)]);
        assert_eq!(d.spark, vec![30.0, 30.0]);
        m.act(Action::Enter);
        assert_eq!(m.stack.last(), Some(&Screen::Client("10.0.0.8".into())));
        m.key_filter = None;
        let ck = m.client_keys("10.0.0.8");
        assert_eq!(ck.len(), 1);
        assert_eq!(ck[0].rate.requests, 30.0);
        m.act(Action::Back);
        m.act(Action::Back);
        assert!(m.stack.is_empty());
    }

    #[test]
    fn freeze_holds_the_view_and_reset_restarts_rates() {
        let mut m = Model::new(10_000_000_000, Sort::Requests);
        m.ingest(snap(0, vec![key("a", 0, 0, vec![], &[])]));
        m.ingest(snap(1, vec![key("a", 10, 0, vec![], &[])]));
        m.act(Action::Freeze);
        m.ingest(snap(2, vec![key("a", 100, 0, vec![], &[])]));
        assert_eq!(m.rows()[0].rate.requests, 10.0);
        m.act(Action::Freeze);
        assert_eq!(m.rows()[0].rate.requests, 50.0);
        m.act(Action::Reset);
        assert_eq!(m.rows()[0].rate.requests, 0.0);
        m.ingest(snap(3, vec![key("a", 120, 0, vec![], &[])]));
        assert_eq!(m.rows()[0].rate.requests, 20.0);
    }

    #[test]
    fn a_key_admitted_by_eviction_starts_at_its_error_bound() {
        let mut m = Model::new(10_000_000_000, Sort::Requests);
        m.ingest(snap(0, vec![]));
        let mut k = key("new", 105, 0, vec![], &[]);
        k.error_bound = 100;
        m.ingest(snap(1, vec![k]));
        assert_eq!(m.rows()[0].rate.requests, 5.0);
    }
}
