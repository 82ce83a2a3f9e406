//! Reports over the stored history: the replay report over any range,
//! a key's history, and the busiest intervals per server.

use super::db::{Db, Value};
use super::snapshot::{self, Filter, Snapshot};
use crate::report::{self, LimitsOut, Report, ReportOptions, RunInfo};
use crate::stats::Counters;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// What part of the history a report covers.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Intervals starting in [since, until), ns.
    pub since: u64,
    pub until: Option<u64>,
    /// Empty: all.
    pub sniffers: Vec<String>,
    /// Empty: all.
    pub servers: Vec<String>,
}

impl Query {
    fn filter(&self) -> Filter {
        Filter {
            level: 0,
            since: self.since,
            until: self.until,
            sniffers: self.sniffers.clone(),
        }
    }
}

/// The intervals a query selects, restricted to its servers: the fine
/// intervals, and the rollups of buckets whose fine intervals retention
/// has deleted (`keep_fine`).
pub fn intervals(db: &mut dyn Db, q: &Query) -> Result<Vec<Snapshot>> {
    let mut v = snapshot::read(db, &q.filter())?;
    let rollup_ns = super::schema::stored(db)?.rollup_ns;
    let rolled = snapshot::read(
        db,
        &Filter {
            level: 1,
            ..q.filter()
        },
    )?;
    let mut added = false;
    for r in rolled {
        // Only buckets wholly inside the range whose fine rows are gone.
        if q.until.is_some_and(|u| r.start + rollup_ns > u) {
            continue;
        }
        let fine = db.query(
            "SELECT COUNT(*) FROM intervals WHERE sniffer = $1 AND level = 0 AND start_ns >= $2 \
             AND start_ns < $3",
            &[
                r.sniffer.as_str().into(),
                r.start.into(),
                (r.start + rollup_ns).into(),
            ],
        )?;
        if fine.first().map(|x| x[0].u64()).unwrap_or(0) == 0 {
            v.push(r);
            added = true;
        }
    }
    if added {
        v.sort_by(|a, b| (a.start, &a.sniffer).cmp(&(b.start, &b.sniffer)));
    }
    for s in &mut v {
        s.restrict_servers(&q.servers);
    }
    Ok(v)
}

/// The captures (files, span) that overlap the query.
fn captures(db: &mut dyn Db, q: &Query) -> Result<Vec<(u64, u64, Vec<String>)>> {
    let rows = db.query(
        "SELECT sniffer, first_ns, last_ns, files FROM captures WHERE first_ns < $1 AND last_ns >= $2 \
         ORDER BY first_ns, sniffer",
        &[
            Value::Int(q.until.map(|u| u.min(i64::MAX as u64) as i64).unwrap_or(i64::MAX)),
            q.since.into(),
        ],
    )?;
    Ok(rows
        .into_iter()
        .filter(|r| q.sniffers.is_empty() || q.sniffers.contains(&r[0].text()))
        .map(|r| {
            (
                r[1].u64(),
                r[2].u64(),
                serde_json::from_str(&r[3].text()).unwrap_or_default(),
            )
        })
        .collect())
}

/// The replay report summed from the stored intervals.
///
/// Over the whole span of a stored replay it equals that replay's JSON
/// report (same window length, same options, `--store-top 0`) field for
/// field: the tables are rebuilt and go through the same report code. The
/// `capture` section comes from the stored captures overlapping the range
/// (files in time order); without any (live capture) `files` is empty and
/// the span is the intervals'. `limits.*_evictions` sum the windows'
/// evictions (0 while every window's tables were exact, as the run's are).
pub fn report(db: &mut dyn Db, q: &Query, o: &ReportOptions) -> Result<Report> {
    let snaps = intervals(db, q)?;
    let f = snapshot::fold(&snaps);
    let caps = captures(db, q)?;
    let (first, last) = if caps.is_empty() {
        (
            f.first.unwrap_or(0),
            f.last_end.saturating_sub(1).max(f.first.unwrap_or(0)),
        )
    } else {
        (
            caps.iter().map(|c| c.0).min().unwrap_or(0),
            caps.iter().map(|c| c.1).max().unwrap_or(0),
        )
    };
    let info = RunInfo {
        files: caps.iter().flat_map(|c| c.2.clone()).collect(),
        counters: Counters::default(),
        first_ts: first,
        last_ts: last,
        servers_found: Vec::new(),
    };
    let t = &f.tables;
    let limits = LimitsOut {
        max_keys: f.limits.max_keys,
        max_clients: f.limits.max_clients,
        max_families: f.limits.max_families,
        key_clients: f.limits.key_clients,
        tracked_keys: t.keys.len(),
        tracked_clients: t.clients.len(),
        tracked_families: t.families.len(),
        key_evictions: f.evictions[0] + t.keys.evictions(),
        client_evictions: f.evictions[1] + t.clients.evictions(),
        family_evictions: f.evictions[2] + t.families.evictions(),
    };
    let mut rep = report::build(t, &[], &info, limits, o);
    for (name, v) in rep.health.iter_mut() {
        *v = f.health.get(*name).copied().unwrap_or(0);
    }
    rep.capture.packets = rep.health.get("packets").copied().unwrap_or(0);
    rep.capture.bytes = rep.health.get("bytes").copied().unwrap_or(0);
    Ok(rep)
}

/// One interval of a key's history (all sniffers summed).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyPoint {
    pub start: u64,
    pub end: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The key's rank by requests in the interval (1 = hottest; the best
    /// rank over sniffers).
    pub rank: u64,
    /// The servers it was seen on, by address.
    pub servers: Vec<String>,
    /// Its clients: (client, requests, error bound), most requests first;
    /// exact (bound 0) while a key has at most `--key-clients` clients.
    pub clients: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyHistory {
    pub key: String,
    pub points: Vec<KeyPoint>,
    /// First interval where the key ranked within the top N.
    pub first_top: Option<u64>,
    pub top: usize,
    /// The interval with the most requests.
    pub peak: Option<KeyPoint>,
}

/// A key's requests, hits, misses, bytes, clients and servers per interval.
pub fn key_history(db: &mut dyn Db, q: &Query, key: &[u8], top: usize) -> Result<KeyHistory> {
    let f = q.filter();
    let mut p: Vec<Value> = vec![
        key.into(),
        0u64.into(),
        f.since.into(),
        Value::Int(
            f.until
                .map(|u| u.min(i64::MAX as u64) as i64)
                .unwrap_or(i64::MAX),
        ),
    ];
    let rows = db.query(
        "SELECT sniffer, start_ns, requests, hits, misses, bytes_in, bytes_out, detail, count \
         FROM key_stats WHERE key = $1 AND level = $2 AND rest = 0 AND start_ns >= $3 AND start_ns < $4 \
         ORDER BY start_ns, sniffer",
        &p,
    )?;
    p.clear();
    let mut points: BTreeMap<u64, KeyPoint> = BTreeMap::new();
    for r in rows {
        let sniffer = r[0].text();
        if !q.sniffers.is_empty() && !q.sniffers.contains(&sniffer) {
            continue;
        }
        let start = r[1].u64();
        let detail: Option<snapshot::KeyDetail> = serde_json::from_str(&r[7].text()).ok();
        if !q.servers.is_empty()
            && !detail
                .as_ref()
                .is_some_and(|d| d.servers.iter().any(|s| q.servers.contains(s)))
        {
            continue;
        }
        let ahead = db.query(
            "SELECT COUNT(*) FROM key_stats WHERE sniffer = $1 AND level = 0 AND start_ns = $2 \
             AND rest = 0 AND count > $3",
            &[sniffer.as_str().into(), start.into(), r[8].clone()],
        )?;
        let rank = ahead.first().map(|a| a[0].u64()).unwrap_or(0) + 1;
        let end = db
            .query(
                "SELECT end_ns FROM intervals WHERE sniffer = $1 AND level = 0 AND start_ns = $2",
                &[sniffer.as_str().into(), start.into()],
            )?
            .first()
            .map(|e| e[0].u64())
            .unwrap_or(start);
        let pt = points.entry(start).or_insert(KeyPoint {
            start,
            end,
            requests: 0,
            hits: 0,
            misses: 0,
            bytes_in: 0,
            bytes_out: 0,
            rank,
            servers: Vec::new(),
            clients: Vec::new(),
        });
        pt.requests += r[2].u64();
        pt.hits += r[3].u64();
        pt.misses += r[4].u64();
        pt.bytes_in += r[5].u64();
        pt.bytes_out += r[6].u64();
        pt.rank = pt.rank.min(rank);
        if let Some(d) = detail {
            for s in &d.servers {
                if !pt.servers.contains(s) {
                    pt.servers.push(s.clone());
                }
            }
            pt.servers.sort();
            for r in d.client_table().iter() {
                let name = r.addr.render();
                match pt.clients.iter_mut().find(|x| x.0 == name) {
                    Some(x) => {
                        x.1 += r.count;
                        x.2 += r.error_bound;
                    }
                    None => pt.clients.push((name, r.count, r.error_bound)),
                }
            }
            pt.clients.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        }
    }
    let points: Vec<KeyPoint> = points.into_values().collect();
    let first_top = points
        .iter()
        .find(|p| top == 0 || p.rank as usize <= top)
        .map(|p| p.start);
    let peak = points
        .iter()
        .max_by(|a, b| a.requests.cmp(&b.requests).then(b.start.cmp(&a.start)))
        .cloned();
    Ok(KeyHistory {
        key: crate::escape::key_string(key),
        points,
        first_top,
        top,
        peak,
    })
}

/// One of a server's busiest intervals.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Peak {
    pub server: String,
    pub sniffer: String,
    pub start: u64,
    pub end: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
}

/// The `n` busiest intervals of each server (by requests, or by bytes in
/// plus out), busiest first (Seafood's peak table).
pub fn peaks(db: &mut dyn Db, q: &Query, n: usize, by_bytes: bool) -> Result<Vec<Peak>> {
    // Straight from the per-server rows (no key rows read).
    let f = q.filter();
    let rows = db.query(
        &format!(
            "SELECT s.server, s.sniffer, s.start_ns, i.end_ns, s.requests, s.hits, s.misses, \
             s.bytes_in, s.bytes_out, s.errors FROM server_stats s JOIN intervals i \
             ON i.sniffer = s.sniffer AND i.level = s.level AND i.start_ns = s.start_ns \
             WHERE s.level = 0 AND s.start_ns >= $1 AND s.start_ns < $2 \
             ORDER BY s.server, {} DESC, s.start_ns",
            if by_bytes {
                "s.bytes_in + s.bytes_out"
            } else {
                "s.requests"
            }
        ),
        &[
            f.since.into(),
            Value::Int(
                f.until
                    .map(|u| u.min(i64::MAX as u64) as i64)
                    .unwrap_or(i64::MAX),
            ),
        ],
    )?;
    let mut out: Vec<Peak> = Vec::new();
    let mut per_server = 0;
    for r in rows {
        let p = Peak {
            server: r[0].text(),
            sniffer: r[1].text(),
            start: r[2].u64(),
            end: r[3].u64(),
            requests: r[4].u64(),
            hits: r[5].u64(),
            misses: r[6].u64(),
            bytes_in: r[7].u64(),
            bytes_out: r[8].u64(),
            errors: r[9].u64(),
        };
        if (!q.sniffers.is_empty() && !q.sniffers.contains(&p.sniffer))
            || (!q.servers.is_empty() && !q.servers.contains(&p.server))
        {
            continue;
        }
        if out.last().is_none_or(|l| l.server != p.server) {
            per_server = 0;
        }
        per_server += 1;
        if n == 0 || per_server <= n {
            out.push(p);
        }
    }
    Ok(out)
}

/// Sniffers and servers present in the store (for the web page's choices).
pub fn names(db: &mut dyn Db) -> Result<(Vec<String>, Vec<String>)> {
    let sn = db.query(
        "SELECT DISTINCT sniffer FROM intervals ORDER BY sniffer",
        &[],
    )?;
    let sv = db.query(
        "SELECT DISTINCT server FROM server_stats ORDER BY server",
        &[],
    )?;
    Ok((
        sn.iter().map(|r| r[0].text()).collect(),
        sv.iter().map(|r| r[0].text()).collect(),
    ))
}

/// The span of the stored fine intervals: (first start, last end).
pub fn span(db: &mut dyn Db) -> Result<Option<(u64, u64)>> {
    let r = db.query(
        "SELECT MIN(start_ns), MAX(end_ns) FROM intervals WHERE level = 0",
        &[],
    )?;
    Ok(r.first().and_then(|r| match (&r[0], &r[1]) {
        (Value::Int(a), Value::Int(b)) => Some((*a as u64, *b as u64)),
        _ => None,
    }))
}
