//! The replay report: a plain data model built from merged collector
//! tables, serialisable as the JSON contract (`memtap_report: 1`), and
//! rendered as text tables or CSV files by the submodules.
//!
//! The JSON contract is [`Report`] as serde writes it: field names as
//! declared, every count an integer, maps with sorted keys. Fields are
//! only ever added. Per server (`servers[]`, and in each window):
//!
//! ```json
//! {"server": "10.0.0.1:11211", "requests": 10, "hits": 5, "misses": 2,
//!  "bytes_in": 20, "bytes_out": 1540, "errors": 1,
//!  "commands": [
//!    {"proto": "text", "transport": "tcp", "command": "get", "count": 4,
//!     "requests": 7, "results": {"hit": 5, "miss": 2}},
//!    {"proto": "text", "transport": "tcp", "command": "set", "count": 3,
//!     "requests": 3, "results": {"client_error": 1, "stored": 2}}]}
//! ```
//!
//! `commands` (since the servers-counters work, issue 17) is exact for
//! every server: its entries' `requests` add up to the server's
//! `requests`, and summed over servers each (proto, transport, command)
//! gives the top-level `commands` row. README "How exact" maps memcached's
//! own `stats` counters onto these cells.
//!
//! # The contract's key rows
//!
//! Each of `keys` (whole run and windows) is a [`KeyOut`]: its counts and
//! `error_bound` as the key table has them, and what it holds per key:
//!
//! * `clients`: `{client, requests, error_bound}`, most requests first
//!   (ties by address). A key with at most `limits.key_clients` distinct
//!   clients (`--key-clients`) lists every one with its exact count and
//!   `error_bound` 0, and has `clients_unlisted_max` 0. A key with more
//!   lists that many: each row true <= `requests` <= true + `error_bound`;
//!   every client not listed made at most `clients_unlisted_max`
//!   requests, and every client above that is listed.
//! * `servers`: the addresses it was seen on, by address (as before);
//!   `server_requests`: the same as `{server, requests, error_bound}`,
//!   most requests first, bounded like the clients with 8 rows
//!   (`servers_unlisted_max`).
//! * `commands`: every command with its exact request count.
//!
//! All of it covers the key's time in the key table: everything for a key
//! whose own `error_bound` is 0. Exact rows are the same for any number of
//! workers and collectors (collect::keytables). Fields are only ever
//! added: readers should ignore the ones they do not know.

pub mod csv;
pub mod insight;
pub mod text;
pub mod top;

use crate::collect::breakdown::CommandCell;
use crate::collect::heavy::Entry;
use crate::collect::redact::Redact;
use crate::collect::tables::{ClientId, KeyServers, KeyStats, Tables};
use crate::protocol::Outcome;
use crate::stats::Counters;
use serde::Serialize;
use std::collections::BTreeMap;

/// How the top tables are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Requests,
    /// Bytes in plus bytes out.
    Bytes,
    Misses,
    /// 99th percentile latency, then maximum.
    Latency,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub memtap_report: u32,
    pub capture: Capture,
    pub health: BTreeMap<&'static str, u64>,
    pub totals: TotalsOut,
    pub results: BTreeMap<&'static str, u64>,
    pub commands: Vec<CommandOut>,
    pub servers: Vec<ServerOut>,
    pub keys: Vec<KeyOut>,
    pub clients: Vec<ClientOut>,
    pub families: Vec<FamilyOut>,
    pub distributions: Distributions,
    pub limits: LimitsOut,
    pub windows: Vec<WindowOut>,
    /// What the triggers did (only when some were configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggers: Option<crate::trigger::Summary>,
    /// Cache insight (absent when turned off or nothing was analysed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insight: Option<insight::InsightOut>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capture {
    pub files: Vec<String>,
    pub packets: u64,
    pub bytes: u64,
    pub first_ts: f64,
    pub last_ts: f64,
    /// The servers memtap found by itself (no `--target`), and how.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers_found: Vec<FoundOut>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FoundOut {
    pub server: String,
    pub transport: &'static str,
    /// `port` (traffic to 11211) or `protocol` (memcached requests
    /// answered by memcached responses on another port).
    pub how: &'static str,
    /// For `protocol`: the dialect of the first request seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<&'static str>,
}

impl FoundOut {
    pub fn from_found(f: &crate::protocol::sniff::Found) -> FoundOut {
        use crate::protocol::sniff::How;
        FoundOut {
            server: f.addr.to_string(),
            transport: match f.transport {
                crate::decode::Transport::Tcp => "tcp",
                crate::decode::Transport::Udp => "udp",
            },
            how: f.how.as_str(),
            dialect: match f.how {
                How::Port => None,
                How::Protocol(p) => Some(p.as_str()),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct TotalsOut {
    pub commands: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommandOut {
    pub proto: &'static str,
    pub transport: &'static str,
    pub command: &'static str,
    pub count: u64,
    pub requests: u64,
}

/// One server's row. `commands` splits its key-requests by (proto,
/// transport, command) and result, exactly: the figures to hold against
/// the server's own `stats` counters (README "How exact"). The
/// `requests` of its entries add up to the server's `requests`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerOut {
    pub server: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
    pub commands: Vec<ServerCommandOut>,
}

/// A command on one server: `count` commands on the wire, `requests`
/// key-requests, and those by result (only results that occurred, named
/// as in `results`). Sorted by `count`, then `requests` (both
/// descending), then (proto, transport, command).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerCommandOut {
    pub proto: &'static str,
    pub transport: &'static str,
    pub command: &'static str,
    pub count: u64,
    pub requests: u64,
    pub results: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LatencyOut {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// One client of a key: `requests` is exact when `error_bound` is 0, else
/// true <= `requests` <= true + `error_bound`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyClientOut {
    pub client: String,
    pub requests: u64,
    pub error_bound: u64,
}

/// One server of a key, with the key's requests to it (bounded as
/// [`KeyClientOut`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyServerOut {
    pub server: String,
    pub requests: u64,
    pub error_bound: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyOut {
    pub key: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
    pub error_bound: u64,
    /// The servers the key was seen on, by address.
    pub servers: Vec<String>,
    /// The same servers with the key's requests to each, most first.
    pub server_requests: Vec<KeyServerOut>,
    /// The most requests a server not in `server_requests` can have had
    /// for the key (0: every server is listed).
    pub servers_unlisted_max: u64,
    pub latency_us: LatencyOut,
    pub value_size_max: u64,
    /// Every command of the key with its requests (exact).
    pub commands: BTreeMap<&'static str, u64>,
    /// The key's clients, most requests first.
    pub clients: Vec<KeyClientOut>,
    /// The most requests a client not in `clients` can have made to the
    /// key (0: every client is listed, each with its exact count).
    pub clients_unlisted_max: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClientOut {
    pub client: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
    pub error_bound: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FamilyOut {
    pub family: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
    pub error_bound: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Bucket {
    pub le: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Distributions {
    pub value_size_bytes: Vec<Bucket>,
    pub latency_us: Vec<Bucket>,
}

/// How much the bounded tables held, and what they gave up.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct LimitsOut {
    pub max_keys: usize,
    pub max_clients: usize,
    pub max_families: usize,
    /// Rows of each key's client table (`--key-clients`).
    pub key_clients: usize,
    pub tracked_keys: usize,
    pub tracked_clients: usize,
    pub tracked_families: usize,
    pub key_evictions: u64,
    pub client_evictions: u64,
    pub family_evictions: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowOut {
    pub start: f64,
    pub end: f64,
    pub totals: TotalsOut,
    pub results: BTreeMap<&'static str, u64>,
    pub commands: Vec<CommandOut>,
    pub servers: Vec<ServerOut>,
    pub keys: Vec<KeyOut>,
    pub clients: Vec<ClientOut>,
    pub families: Vec<FamilyOut>,
    pub distributions: Distributions,
}

/// What shapes the report besides the data.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Rows of the key/client/family tables; 0 = all tracked.
    pub top: usize,
    pub sort: SortBy,
    pub redact: Redact,
}

pub fn secs(ts: u64) -> f64 {
    // Microsecond precision, like the records.
    (ts / 1000) as f64 / 1e6
}

/// A key as every output shows it: redacted, then escaped. The "…" that
/// marks a truncated key is kept as is (it is not part of the key).
pub fn key_string(k: &[u8], redact: &Redact) -> String {
    let mut red = Vec::with_capacity(k.len());
    redact.apply(k, &mut red);
    const MORE: &str = "\u{2026}";
    if matches!(redact, Redact::Truncate(_)) && red.as_slice() != k {
        if let Some(cut) = red.strip_suffix(MORE.as_bytes()) {
            return crate::escape::key_string(cut) + MORE;
        }
    }
    crate::escape::key_string(&red)
}

fn sort_key_of(e: &Entry<KeyStats>, by: SortBy) -> (u64, u64) {
    let t = &e.stats.traffic;
    match by {
        SortBy::Requests => (t.requests, 0),
        SortBy::Bytes => (t.bytes_in + t.bytes_out, t.requests),
        SortBy::Misses => (t.misses, t.requests),
        SortBy::Latency => (e.stats.latency_us.quantile(0.99), e.stats.latency_us.max()),
    }
}

fn traffic_sort(t: &crate::collect::tables::Traffic, by: SortBy) -> (u64, u64) {
    match by {
        SortBy::Requests | SortBy::Latency => (t.requests, 0),
        SortBy::Bytes => (t.bytes_in + t.bytes_out, t.requests),
        SortBy::Misses => (t.misses, t.requests),
    }
}

/// Sorts descending by `f`, ties by key bytes ascending, and keeps `top`.
fn top_sorted<'a, T>(
    items: impl Iterator<Item = &'a Entry<T>>,
    top: usize,
    f: impl Fn(&Entry<T>) -> (u64, u64),
) -> Vec<&'a Entry<T>>
where
    T: 'a,
{
    let mut v: Vec<&Entry<T>> = items.collect();
    let order = |a: &&Entry<T>, b: &&Entry<T>| f(b).cmp(&f(a)).then_with(|| a.key().cmp(b.key()));
    if top > 0 && v.len() > top {
        // Select the top rows first: a full sort of a 100k-key table for
        // 20 rows is wasted work at the end of every report.
        v.select_nth_unstable_by(top - 1, order);
        v.truncate(top);
    }
    v.sort_by(order);
    v
}

/// A server's (command, result) cells as the report lists them.
pub fn server_commands_out(cells: &[CommandCell]) -> Vec<ServerCommandOut> {
    let mut v: Vec<ServerCommandOut> = cells
        .iter()
        .map(|c| ServerCommandOut {
            proto: c.id.proto,
            transport: c.id.transport,
            command: c.id.command,
            count: c.count,
            requests: c.total(),
            results: Outcome::ALL
                .iter()
                .zip(c.requests.iter())
                .filter(|(_, &n)| n > 0)
                .map(|(o, &n)| (o.as_str(), n))
                .collect(),
        })
        .collect();
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.requests.cmp(&a.requests))
            .then((a.proto, a.transport, a.command).cmp(&(b.proto, b.transport, b.command)))
    });
    v
}

/// A key's servers by address, as `KeyOut::servers` lists them.
pub fn key_servers(t: &KeyServers) -> Vec<String> {
    let mut v: Vec<std::net::SocketAddr> = t.iter().map(|r| r.addr.socket_addr()).collect();
    v.sort();
    v.iter().map(|s| s.to_string()).collect()
}

/// The tables part shared by the whole run and each window.
pub struct TablesOut {
    pub totals: TotalsOut,
    pub results: BTreeMap<&'static str, u64>,
    pub commands: Vec<CommandOut>,
    pub servers: Vec<ServerOut>,
    pub keys: Vec<KeyOut>,
    pub clients: Vec<ClientOut>,
    pub families: Vec<FamilyOut>,
    pub distributions: Distributions,
}

pub fn tables_out(t: &Tables, o: &ReportOptions) -> TablesOut {
    let mut commands: Vec<CommandOut> = t
        .commands
        .iter()
        .map(|(id, c)| CommandOut {
            proto: id.proto,
            transport: id.transport,
            command: id.command,
            count: c.count,
            requests: c.requests,
        })
        .collect();
    commands.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.requests.cmp(&a.requests))
            .then((a.proto, a.transport, a.command).cmp(&(b.proto, b.transport, b.command)))
    });
    let mut per_server: BTreeMap<std::net::SocketAddr, Vec<ServerCommandOut>> = t
        .breakdown
        .server_commands()
        .into_iter()
        .map(|(s, cells)| (s, server_commands_out(&cells)))
        .collect();
    let mut servers: Vec<(std::net::SocketAddr, ServerOut)> = t
        .servers
        .iter()
        .map(|(s, tr)| {
            (
                *s,
                ServerOut {
                    server: s.to_string(),
                    requests: tr.requests,
                    hits: tr.hits,
                    misses: tr.misses,
                    bytes_in: tr.bytes_in,
                    bytes_out: tr.bytes_out,
                    errors: tr.errors,
                    commands: per_server.remove(s).unwrap_or_default(),
                },
            )
        })
        .collect();
    servers.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
    let keys = top_sorted(t.keys.iter(), o.top, |e| sort_key_of(e, o.sort))
        .into_iter()
        .map(|e| {
            let v = &e.stats;
            KeyOut {
                key: key_string(e.key(), &o.redact),
                requests: e.count(),
                hits: v.traffic.hits,
                misses: v.traffic.misses,
                bytes_in: v.traffic.bytes_in,
                bytes_out: v.traffic.bytes_out,
                errors: v.traffic.errors,
                error_bound: e.error_bound(),
                servers: key_servers(&v.servers),
                server_requests: v
                    .servers
                    .sorted()
                    .into_iter()
                    .map(|r| KeyServerOut {
                        server: r.addr.socket_addr().to_string(),
                        requests: r.count,
                        error_bound: r.error_bound,
                    })
                    .collect(),
                servers_unlisted_max: v.servers.unmonitored_bound(),
                latency_us: LatencyOut {
                    p50: v.latency_us.quantile(0.5),
                    p99: v.latency_us.quantile(0.99),
                    max: v.latency_us.max(),
                },
                value_size_max: v.value_size.max(),
                commands: v.commands.iter().copied().collect(),
                clients: v
                    .clients
                    .sorted()
                    .into_iter()
                    .map(|r| KeyClientOut {
                        client: r.addr.render(),
                        requests: r.count,
                        error_bound: r.error_bound,
                    })
                    .collect(),
                clients_unlisted_max: v.clients.unmonitored_bound(),
            }
        })
        .collect();
    let clients = top_sorted(t.clients.iter(), o.top, |e| {
        traffic_sort(&e.stats.traffic, o.sort)
    })
    .into_iter()
    .map(|e| {
        let tr = &e.stats.traffic;
        ClientOut {
            client: ClientId::from_bytes(e.key()).render(),
            requests: e.count(),
            hits: tr.hits,
            misses: tr.misses,
            bytes_in: tr.bytes_in,
            bytes_out: tr.bytes_out,
            errors: tr.errors,
            error_bound: e.error_bound(),
        }
    })
    .collect();
    let families = top_sorted(t.families.iter(), o.top, |e| {
        traffic_sort(&e.stats.traffic, o.sort)
    })
    .into_iter()
    .map(|e| {
        let tr = &e.stats.traffic;
        FamilyOut {
            // Families are derived from keys: privacy applies to them too.
            family: key_string(e.key(), &o.redact),
            requests: e.count(),
            hits: tr.hits,
            misses: tr.misses,
            bytes_in: tr.bytes_in,
            bytes_out: tr.bytes_out,
            errors: tr.errors,
            error_bound: e.error_bound(),
        }
    })
    .collect();
    let tt = &t.totals;
    TablesOut {
        totals: TotalsOut {
            commands: tt.commands,
            requests: tt.requests,
            hits: tt.hits,
            misses: tt.misses,
            bytes_in: tt.bytes_in,
            bytes_out: tt.bytes_out,
        },
        results: Outcome::ALL
            .iter()
            .zip(t.results.iter())
            .filter(|(_, &n)| n > 0)
            .map(|(o, &n)| (o.as_str(), n))
            .collect(),
        commands,
        servers: servers.into_iter().map(|(_, s)| s).collect(),
        keys,
        clients,
        families,
        distributions: Distributions {
            value_size_bytes: t
                .value_size
                .classes()
                .map(|(le, count)| Bucket { le, count })
                .collect(),
            latency_us: t
                .latency_us
                .classes()
                .map(|(le, count)| Bucket { le, count })
                .collect(),
        },
    }
}

/// Everything the report needs that is not in the tables.
pub struct RunInfo {
    pub files: Vec<String>,
    pub counters: Counters,
    pub first_ts: u64,
    pub last_ts: u64,
    /// The servers memtap found by itself (no `--target`), and how.
    pub servers_found: Vec<FoundOut>,
}

pub fn build(
    run: &Tables,
    windows: &[(u64, u64, TablesOut)],
    info: &RunInfo,
    limits: LimitsOut,
    o: &ReportOptions,
) -> Report {
    let t = tables_out(run, o);
    Report {
        memtap_report: 1,
        capture: Capture {
            files: info.files.clone(),
            packets: info.counters.packets,
            bytes: info.counters.bytes,
            first_ts: secs(info.first_ts),
            last_ts: secs(info.last_ts),
            servers_found: info.servers_found.clone(),
        },
        health: info.counters.iter().collect(),
        totals: t.totals,
        results: t.results,
        commands: t.commands,
        servers: t.servers,
        keys: t.keys,
        clients: t.clients,
        families: t.families,
        distributions: t.distributions,
        limits,
        windows: windows
            .iter()
            .map(|(s, e, w)| WindowOut {
                start: secs(*s),
                end: secs(*e),
                totals: w.totals.clone(),
                results: w.results.clone(),
                commands: w.commands.clone(),
                servers: w.servers.clone(),
                keys: w.keys.clone(),
                clients: w.clients.clone(),
                families: w.families.clone(),
                distributions: w.distributions.clone(),
            })
            .collect(),
        triggers: None,
        insight: (run.insight.applied > 0).then(|| insight::insight_out(run, o)),
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn keys_are_redacted_then_escaped() {
        assert_eq!(key_string(b"ab\x00cd", &Redact::None), "ab\\x00cd");
        assert_eq!(
            key_string(b"ab\x00cd", &Redact::Truncate(3)),
            "ab\\x00\u{2026}"
        );
        assert_eq!(key_string(b"ab", &Redact::Truncate(3)), "ab");
        let h = key_string(b"user:1", &Redact::Hash);
        assert!(h.starts_with('#') && h.len() == 17, "{h}");
        assert_eq!(h, key_string(b"user:1", &Redact::Hash));
    }

    #[test]
    fn servers_list_their_commands_by_result() {
        use crate::collect::batch::RecordBatch;
        use crate::collect::tables::{ClientGranularity, TableLimits};
        use crate::decode::Transport;
        use crate::protocol::Proto;
        use crate::session::Record;
        let limits = TableLimits {
            max_keys: 10,
            max_clients: 10,
            max_families: 10,
            client_granularity: ClientGranularity::Ip,
            key_clients: 32,
            insight_examples: 16,
        };
        let mut b = RecordBatch::default();
        let s1: std::net::SocketAddr = "10.0.0.1:11211".parse().unwrap();
        let s2: std::net::SocketAddr = "10.0.0.2:11211".parse().unwrap();
        let recs: &[(std::net::SocketAddr, Proto, &'static str, bool, Outcome)] = &[
            // One `get a b c` on s1: one command, three key-requests.
            (s1, Proto::Text, "get", true, Outcome::Hit),
            (s1, Proto::Text, "get", false, Outcome::Miss),
            (s1, Proto::Text, "get", false, Outcome::Hit),
            (s1, Proto::Text, "delete", true, Outcome::Noreply),
            (s1, Proto::Binary, "getkq", true, Outcome::Miss),
            (s1, Proto::Binary, "noop", true, Outcome::Ok),
            (s2, Proto::Text, "get", true, Outcome::Lost),
            (s2, Proto::Text, "incr", true, Outcome::Value),
            (s2, Proto::Text, "incr", true, Outcome::NotFound),
        ];
        for &(server, proto, command, first, result) in recs {
            b.push(
                &Record {
                    ts: 1,
                    client: "10.0.0.9:1".parse().unwrap(),
                    server,
                    transport: Transport::Tcp,
                    proto,
                    command,
                    first,
                    key: (command != "noop").then_some(b"k".as_slice()),
                    result,
                    req_bytes: 0,
                    exptime: None,
                    resp_bytes: 0,
                    latency_ns: None,
                },
                1,
            );
        }
        let mut t = Tables::new(&limits);
        let mut fam = Vec::new();
        for r in &b.recs {
            t.add(&b, r, None, &mut fam);
        }
        let o = ReportOptions {
            top: 0,
            sort: SortBy::Requests,
            redact: Redact::None,
        };
        let out = tables_out(&t, &o);
        let rows = |s: &ServerOut| -> Vec<String> {
            s.commands
                .iter()
                .map(|c| {
                    let r: Vec<String> =
                        c.results.iter().map(|(k, n)| format!("{k}={n}")).collect();
                    format!(
                        "{} {} {} {}/{} {}",
                        c.proto,
                        c.transport,
                        c.command,
                        c.count,
                        c.requests,
                        r.join(",")
                    )
                })
                .collect()
        };
        assert_eq!(out.servers[0].server, "10.0.0.1:11211");
        assert_eq!(
            rows(&out.servers[0]),
            [
                "text tcp get 1/3 hit=2,miss=1",
                "binary tcp getkq 1/1 miss=1",
                "binary tcp noop 1/1 ok=1",
                "text tcp delete 1/1 noreply=1",
            ]
        );
        assert_eq!(
            rows(&out.servers[1]),
            [
                "text tcp incr 2/2 not_found=1,value=1",
                "text tcp get 1/1 lost=1"
            ]
        );
        for s in &out.servers {
            assert_eq!(
                s.commands.iter().map(|c| c.requests).sum::<u64>(),
                s.requests
            );
        }
        // Summed over servers, each command is the top-level row.
        for c in &out.commands {
            let n: u64 = out
                .servers
                .iter()
                .flat_map(|s| s.commands.iter())
                .filter(|x| (x.proto, x.transport, x.command) == (c.proto, c.transport, c.command))
                .map(|x| x.count)
                .sum();
            assert_eq!(n, c.count, "{}", c.command);
        }
        let json = serde_json::to_value(&out.servers[1]).unwrap();
        assert_eq!(
            json["commands"][0],
            serde_json::json!({"proto": "text", "transport": "tcp", "command": "incr",
                "count": 2, "requests": 2, "results": {"not_found": 1, "value": 1}})
        );
    }
}
