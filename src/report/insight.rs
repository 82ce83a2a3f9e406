//! The report's cache-insight section (`insight` in JSON, "Why it misses"
//! in text): built from a period's [`InsightTables`] and the cache-insight
//! columns of its key and family tables.

use super::{key_string, ReportOptions};
use crate::collect::insight::{
    ttl_class_label, InsightTables, ServerInsight, EVICTED, MISS_CLASSES, UNREAD_ENDS,
};
use crate::collect::mrc::TARGETS;
use crate::collect::slab::SlabClasses;
use crate::collect::tables::Tables;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InsightOut {
    /// Every server as one cache.
    pub pool: ServerInsightOut,
    pub servers: Vec<ServerInsightOut>,
    /// Families by classified misses, most first.
    pub families: Vec<FamilyInsightOut>,
    /// Tracked keys with classified misses, most first (at most `top`).
    pub keys: Vec<KeyInsightOut>,
    /// Tracked keys with miss storms, most storms first.
    pub storm_keys: Vec<KeyInsightOut>,
    /// Tracked keys with writes nobody read, most first.
    pub unread_keys: Vec<KeyInsightOut>,
    /// Stores by TTL class ("never", "expired", then lower bounds).
    pub ttl: Vec<TtlOut>,
    pub slab: SlabOut,
    pub multi_server: MultiOut,
    pub bounds: BoundsOut,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerInsightOut {
    pub server: String,
    /// Misses by class: first, expired, deleted, evicted, forgotten,
    /// unknown_ttl.
    pub misses: BTreeMap<&'static str, u64>,
    pub classified_misses: u64,
    /// Share of the classified misses that were evictions (0..1): the
    /// memory-pressure signal.
    pub evicted_share: f64,
    pub stores: u64,
    pub storms: u64,
    pub storm_misses: u64,
    /// Distinct clients of the largest storm, up to 8 (told apart by
    /// 16-bit hashes), 9 meaning more than 8.
    pub storm_clients_max: u64,
    /// First miss to refill, over the storms, microseconds (log2 class
    /// upper bounds).
    pub refill_us_p50: u64,
    pub refill_us_max: u64,
    /// Writes nobody read, by how they ended, and their value bytes.
    pub unread: BTreeMap<&'static str, u64>,
    pub unread_bytes: BTreeMap<&'static str, u64>,
    pub multi_server_keys: u64,
    /// The miss-ratio curve (see README "Why it misses"); absent with no
    /// gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrc: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FamilyInsightOut {
    pub family: String,
    pub misses: BTreeMap<&'static str, u64>,
    pub gets: u64,
    pub stores: u64,
    /// Gets per store (absent with no stores).
    pub gets_per_store: Option<f64>,
    pub unread: BTreeMap<&'static str, u64>,
    pub unread_bytes: u64,
    pub ttl: Vec<TtlOut>,
    pub item_bytes: u64,
    pub chunk_bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInsightOut {
    pub key: String,
    pub misses: BTreeMap<&'static str, u64>,
    pub storms: u64,
    pub storm_misses: u64,
    pub storm_clients_max: u64,
    pub refill_us_max: u64,
    pub unread_writes: u64,
    pub unread_bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TtlOut {
    pub ttl: String,
    pub stores: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlabClassOut {
    pub class: usize,
    pub chunk_size: u64,
    pub items: u64,
    pub item_bytes: u64,
    pub chunk_bytes: u64,
    pub wasted_bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlabOut {
    pub factor: f64,
    pub min_space: u64,
    pub chunk_max: u64,
    /// Classes that received stores (1-based, as `memcached -vv` numbers
    /// them).
    pub classes: Vec<SlabClassOut>,
    pub items: u64,
    pub item_bytes: u64,
    pub chunk_bytes: u64,
    /// Share of chunk bytes left unused (0..1).
    pub wasted_share: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MultiKeyOut {
    pub key: String,
    pub servers: Vec<String>,
    /// (client, server it used).
    pub clients: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MultiOut {
    pub keys: u64,
    pub examples: Vec<MultiKeyOut>,
    pub examples_dropped: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BoundsOut {
    /// Key states pushed out of the bounded state table (their later
    /// misses are `forgotten`).
    pub state_evictions: u64,
    /// Estimated false-positive rate of the seen-keys filter, parts per
    /// million: the share of `forgotten` misses that may be `first`.
    pub seen_filter_fp_ppm: u64,
    /// Records applied, and those that came after their turn.
    pub applied: u64,
    pub late: u64,
}

fn classes<T: Copy + Into<u64>>(v: &[T; 6]) -> BTreeMap<&'static str, u64> {
    MISS_CLASSES
        .iter()
        .zip(v)
        .map(|(n, c)| (*n, (*c).into()))
        .collect()
}

fn ends(v: &[u64; 6]) -> BTreeMap<&'static str, u64> {
    UNREAD_ENDS.iter().zip(v).map(|(n, c)| (*n, *c)).collect()
}

fn ttl_out(v: &[u64]) -> Vec<TtlOut> {
    v.iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| TtlOut {
            ttl: ttl_class_label(i),
            stores: *n,
        })
        .collect()
}

pub fn server_out(name: String, s: &ServerInsight) -> ServerInsightOut {
    let classified = s.classified_misses();
    ServerInsightOut {
        server: name,
        misses: classes(&s.misses),
        classified_misses: classified,
        evicted_share: if classified == 0 {
            0.0
        } else {
            round4(s.misses[EVICTED] as f64 / classified as f64)
        },
        stores: s.stores,
        storms: s.storms,
        storm_misses: s.storm_misses,
        storm_clients_max: s.storm_clients_max,
        refill_us_p50: s.refill_us.quantile(0.5),
        refill_us_max: s.refill_us.quantile(1.0),
        unread: ends(&s.unread),
        unread_bytes: ends(&s.unread_bytes),
        multi_server_keys: s.multi_server_keys,
        mrc: s
            .mrc
            .as_ref()
            .map(|c| c.curve())
            .filter(|c| c.accesses > 0)
            .map(|c| c.to_json()),
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub fn insight_out(t: &Tables, o: &ReportOptions) -> InsightOut {
    let ins: &InsightTables = &t.insight;
    let slab = &ins.slab_config.unwrap_or_default();
    let mut servers: Vec<ServerInsightOut> = ins
        .servers
        .iter()
        .map(|(a, s)| server_out(a.to_string(), s))
        .collect();
    servers.sort_by(|a, b| a.server.cmp(&b.server));
    let mut families: Vec<FamilyInsightOut> = t
        .families
        .iter()
        // Families with something to say (the store keeps no family
        // insight: its families would all be zeros).
        .filter(|e| e.stats.insight.stores > 0 || e.stats.insight.misses.iter().any(|&m| m > 0))
        .map(|e| {
            let f = &e.stats.insight;
            FamilyInsightOut {
                family: String::from_utf8_lossy(e.key()).into_owned(),
                misses: classes(&f.misses),
                gets: e.stats.traffic.hits + e.stats.traffic.misses,
                stores: f.stores,
                gets_per_store: (f.stores > 0).then(|| {
                    round4((e.stats.traffic.hits + e.stats.traffic.misses) as f64 / f.stores as f64)
                }),
                unread: ends(&f.unread),
                unread_bytes: f.unread_bytes.iter().sum(),
                ttl: ttl_out(&f.ttl),
                item_bytes: f.item_bytes,
                chunk_bytes: f.chunk_bytes,
            }
        })
        .collect();
    let fam_misses = |f: &FamilyInsightOut| f.misses.values().sum::<u64>();
    families.sort_by(|a, b| {
        fam_misses(b)
            .cmp(&fam_misses(a))
            .then(a.family.cmp(&b.family))
    });
    families.truncate(o.top);
    let key_out = |e: &crate::collect::Entry<crate::collect::tables::KeyStats>| {
        let k = &e.stats.insight;
        KeyInsightOut {
            key: key_string(e.key(), &o.redact),
            misses: classes(&k.misses),
            storms: k.storms as u64,
            storm_misses: k.storm_misses as u64,
            storm_clients_max: k.storm_clients_max as u64,
            refill_us_max: k.refill_us_max,
            unread_writes: k.unread as u64,
            unread_bytes: k.unread_bytes,
        }
    };
    let top_by = |by: &dyn Fn(&crate::collect::Entry<crate::collect::tables::KeyStats>) -> u64| {
        let mut v: Vec<_> = t.keys.iter().filter(|e| by(e) > 0).collect();
        v.sort_by(|a, b| by(b).cmp(&by(a)).then(a.key().cmp(b.key())));
        v.into_iter().take(o.top).map(key_out).collect::<Vec<_>>()
    };
    let keys = top_by(&|e| e.stats.insight.misses.iter().map(|&m| m as u64).sum());
    let storm_keys = top_by(&|e| e.stats.insight.storms as u64);
    let unread_keys = top_by(&|e| e.stats.insight.unread as u64);

    let sizes = SlabClasses::new(slab);
    let classes: Vec<SlabClassOut> = ins
        .slab
        .iter()
        .enumerate()
        .filter(|(_, r)| r.items > 0)
        .map(|(i, r)| SlabClassOut {
            class: i + 1,
            chunk_size: sizes.sizes.get(i).copied().unwrap_or(0),
            items: r.items,
            item_bytes: r.item_bytes,
            chunk_bytes: r.chunk_bytes,
            wasted_bytes: r.chunk_bytes - r.item_bytes.min(r.chunk_bytes),
        })
        .collect();
    let (items, item_bytes, chunk_bytes) = ins.slab.iter().fold((0, 0, 0), |(a, b, c), r| {
        (a + r.items, b + r.item_bytes, c + r.chunk_bytes)
    });
    InsightOut {
        pool: server_out("pool".into(), &ins.pool()),
        servers,
        families,
        keys,
        storm_keys,
        unread_keys,
        ttl: ttl_out(&ins.ttl),
        slab: SlabOut {
            factor: slab.factor,
            min_space: slab.min_space,
            chunk_max: slab.chunk_max,
            classes,
            items,
            item_bytes,
            chunk_bytes,
            wasted_share: if chunk_bytes == 0 {
                0.0
            } else {
                round4((chunk_bytes - item_bytes.min(chunk_bytes)) as f64 / chunk_bytes as f64)
            },
        },
        multi_server: MultiOut {
            keys: ins.pool().multi_server_keys,
            examples: ins
                .multi
                .iter()
                .map(|m| MultiKeyOut {
                    key: key_string(&m.key, &o.redact),
                    servers: m.servers.iter().map(|s| s.to_string()).collect(),
                    clients: m
                        .clients
                        .iter()
                        .map(|(c, s)| (c.ip().to_string(), s.to_string()))
                        .collect(),
                })
                .collect(),
            examples_dropped: ins.examples_dropped,
        },
        bounds: BoundsOut {
            state_evictions: ins.state_evictions,
            seen_filter_fp_ppm: ins.seen_filter_fp_ppm,
            applied: ins.applied,
            late: ins.late,
        },
    }
}

/// The sizes the curve says reach each target share of the attainable
/// hits, for the text report.
pub fn targets_line(mrc: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(ts) = mrc.get("targets").and_then(|t| t.as_array()) {
        for (t, share) in ts.iter().zip(TARGETS) {
            let size = t.get(1).and_then(|v| v.as_u64());
            parts.push(match size {
                Some(b) => format!("{:.0} % of attainable: {}", share * 100.0, iec(b)),
                None => format!("{:.0} % of attainable: out of range", share * 100.0),
            });
        }
    }
    parts.join(", ")
}

pub fn iec(b: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}
