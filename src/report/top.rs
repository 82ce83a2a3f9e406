//! The snapshot `memtap top` works from: the whole-run tables so far, as
//! cumulative counts, with what a live view needs beyond the report (each
//! key's latency classes, so a window's percentiles can be taken from the
//! difference of two snapshots). Built in process by every way into the
//! view, and served as JSON on `/api/top` for `top --connect`.

use super::key_string;
use crate::collect::heavy::Entry;
use crate::collect::redact::Redact;
use crate::collect::tables::{ClientId, KeyStats, Tables, Traffic};
use crate::stats::Counters;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The JSON contract's version (`memtap_top` field).
pub const VERSION: u32 = 1;

/// Cumulative counts of one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl From<&Traffic> for Counts {
    fn from(t: &Traffic) -> Counts {
        Counts {
            requests: t.requests,
            hits: t.hits,
            misses: t.misses,
            errors: t.errors,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
        }
    }
}

impl Counts {
    /// What was added since `old` (zero where a heavy-hitter count was
    /// re-admitted lower than before).
    pub fn since(&self, old: &Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(old.requests),
            hits: self.hits.saturating_sub(old.hits),
            misses: self.misses.saturating_sub(old.misses),
            errors: self.errors.saturating_sub(old.errors),
            bytes_in: self.bytes_in.saturating_sub(old.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(old.bytes_out),
        }
    }
}

/// A client, server or key family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Upper bound on the overcount (heavy-hitter tables; 0 when exact).
    #[serde(default)]
    pub error_bound: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    pub key: String,
    #[serde(flatten)]
    pub counts: Counts,
    pub error_bound: u64,
    /// Latency (µs) counts per log2 class (`collect::hist::class_le`),
    /// trailing empty classes left out.
    pub latency_us: Vec<u64>,
    pub latency_max_us: u64,
    /// The servers it was seen on, by address.
    pub servers: Vec<String>,
    /// Its clients with their requests to it, most first: exact for a key
    /// with at most `--key-clients` clients.
    pub clients: Vec<(String, u64)>,
    /// Its commands with their requests (exact).
    pub commands: Vec<(String, u64)>,
    /// The error bound of each of `clients`, in the same order (empty from
    /// an older memtap).
    #[serde(default)]
    pub client_bounds: Vec<u64>,
    /// Its servers with its requests and error bound on each, most first
    /// (empty from an older memtap).
    #[serde(default)]
    pub server_requests: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRow {
    pub proto: String,
    pub transport: String,
    pub command: String,
    /// Commands on the wire.
    pub count: u64,
    /// Key-requests.
    pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub memtap_top: u32,
    /// What is being watched (files, interface, or the remote's source).
    pub source: Vec<String>,
    /// The time the tables cover up to, ns since the Unix epoch: packet
    /// time in a replay, wall-clock time when taken from a live capture.
    pub at_ns: u64,
    /// Every health counter (packets, bytes, records, losses).
    pub counters: BTreeMap<String, u64>,
    pub totals: Counts,
    /// Keys tracked, of which `keys` holds the most requested.
    pub tracked_keys: usize,
    pub keys: Vec<KeyRow>,
    pub clients: Vec<Row>,
    pub servers: Vec<Row>,
    pub families: Vec<Row>,
    pub commands: Vec<CommandRow>,
    /// Cache insight per server and for the pool (absent from an earlier
    /// memtap's snapshots).
    #[serde(default)]
    pub insight: Vec<InsightRow>,
}

/// One server's (or the pool's) cache-insight counters, cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InsightRow {
    pub server: String,
    /// Misses by class, in `collect::insight::MISS_CLASSES` order.
    pub misses: Vec<u64>,
    pub storms: u64,
    pub unread_writes: u64,
    pub stores: u64,
}

/// Bound on the latency quantile `q` (class upper bound, capped at `max`)
/// from log2 class counts.
pub fn quantile(classes: &[u64], max: u64, q: f64) -> Option<u64> {
    let total: u64 = classes.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in classes.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(if i >= 31 {
                max
            } else {
                crate::collect::hist::class_le(i).min(max)
            });
        }
    }
    Some(max)
}

fn key_row(e: &Entry<KeyStats>, redact: &Redact) -> KeyRow {
    let s = &e.stats;
    let mut lat: Vec<u64> = s.latency_us.counts().iter().map(|&c| c as u64).collect();
    while lat.last() == Some(&0) {
        lat.pop();
    }
    let commands: Vec<(String, u64)> = s
        .commands
        .sorted()
        .into_iter()
        .map(|(c, n)| (c.to_string(), n))
        .collect();
    let clients = s.clients.sorted();
    KeyRow {
        key: key_string(e.key(), redact),
        counts: Counts {
            requests: e.count(),
            ..Counts::from(&s.traffic)
        },
        error_bound: e.error_bound(),
        latency_us: lat,
        latency_max_us: s.latency_us.max(),
        servers: super::key_servers(&s.servers),
        clients: clients.iter().map(|r| (r.addr.render(), r.count)).collect(),
        commands,
        client_bounds: clients.iter().map(|r| r.error_bound).collect(),
        server_requests: s
            .servers
            .sorted()
            .into_iter()
            .map(|r| (r.addr.socket_addr().to_string(), r.count, r.error_bound))
            .collect(),
    }
}

/// The snapshot of `t`: every tracked client, server, family and command,
/// and the `key_limit` most requested keys (0: all).
pub fn snapshot(
    t: &Tables,
    counters: &Counters,
    source: &[String],
    at_ns: u64,
    redact: &Redact,
    key_limit: usize,
) -> Snapshot {
    let keys = super::top_sorted(t.keys.iter(), key_limit, |e| (e.count(), 0))
        .into_iter()
        .map(|e| key_row(e, redact))
        .collect();
    let row = |name: String, tr: &Traffic, count: u64, bound: u64| Row {
        name,
        counts: Counts {
            requests: count,
            ..Counts::from(tr)
        },
        error_bound: bound,
    };
    let tt = &t.totals;
    Snapshot {
        memtap_top: VERSION,
        source: source.to_vec(),
        at_ns,
        counters: counters.iter().map(|(k, v)| (k.to_string(), v)).collect(),
        totals: Counts {
            requests: tt.requests,
            hits: tt.hits,
            misses: tt.misses,
            errors: t.servers.iter().map(|(_, s)| s.errors).sum::<u64>(),
            bytes_in: tt.bytes_in,
            bytes_out: tt.bytes_out,
        },
        tracked_keys: t.keys.len(),
        keys,
        clients: t
            .clients
            .iter()
            .map(|e| {
                row(
                    ClientId::from_bytes(e.key()).render(),
                    &e.stats.traffic,
                    e.count(),
                    e.error_bound(),
                )
            })
            .collect(),
        servers: t
            .servers
            .iter()
            .map(|(s, tr)| row(s.to_string(), tr, tr.requests, 0))
            .collect(),
        families: t
            .families
            .iter()
            .map(|e| {
                row(
                    key_string(e.key(), redact),
                    &e.stats.traffic,
                    e.count(),
                    e.error_bound(),
                )
            })
            .collect(),
        insight: insight_rows(t),
        commands: t
            .commands
            .iter()
            .map(|(id, c)| CommandRow {
                proto: id.proto.into(),
                transport: id.transport.into(),
                command: id.command.into(),
                count: c.count,
                requests: c.requests,
            })
            .collect(),
    }
}

fn insight_rows(t: &Tables) -> Vec<InsightRow> {
    if t.insight.applied == 0 {
        return Vec::new();
    }
    let row = |server: String, s: &crate::collect::insight::ServerInsight| InsightRow {
        server,
        misses: s.misses.to_vec(),
        storms: s.storms,
        unread_writes: s.unread.iter().sum(),
        stores: s.stores,
    };
    let mut v: Vec<InsightRow> = t
        .insight
        .servers
        .iter()
        .map(|(a, s)| row(a.to_string(), s))
        .collect();
    v.sort_by(|a, b| a.server.cmp(&b.server));
    v.push(row("pool".into(), &t.insight.pool()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_classes() {
        assert_eq!(quantile(&[], 0, 0.5), None);
        // 3 samples in class 0 (0 µs), 1 in class 3 (4..=7 µs).
        assert_eq!(quantile(&[3, 0, 0, 1], 7, 0.5), Some(0));
        assert_eq!(quantile(&[3, 0, 0, 1], 6, 0.99), Some(6));
        assert_eq!(quantile(&[0, 0, 0, 4], 100, 0.99), Some(7));
    }

    #[test]
    fn counts_since_never_go_negative() {
        let a = Counts {
            requests: 10,
            hits: 4,
            ..Counts::default()
        };
        let b = Counts {
            requests: 7,
            hits: 5,
            ..Counts::default()
        };
        assert_eq!(a.since(&b).requests, 3);
        assert_eq!(a.since(&b).hits, 0);
    }
}
