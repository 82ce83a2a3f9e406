//! One stored interval as plain rows: made from a window's `Tables`,
//! written to and read from the database (and the spool file), and folded
//! back into `Tables` so reports over the history run the replay's own
//! report code.
//!
//! Per-server split: a window's server table is per server, and is stored
//! one row per (sniffer, server, interval start). The other tables (keys,
//! clients, families, commands, results, distributions) are kept by the
//! collectors for the whole window, not per server, so they are stored per
//! (sniffer, interval start); each key row carries the servers the key was
//! seen on, which is how `--server` picks keys. Each server's
//! key-requests by (command, result) are stored per server too
//! (`server_command_stats`), so that the report's `servers[].commands`
//! comes back from the history as the replay made it.

use super::db::{Db, Value};
use crate::collect::heavy::Entry;
use crate::collect::hist::{Log2Hist, CLASSES};
use crate::collect::keytables::AddrTable;
use crate::collect::tables::{
    AddrRow, ClientId, ClientStats, CommandId, FamilyStats, KeyClients, KeyServers, KeyStats,
    SmallHist, TableLimits, Tables, Traffic, KEY_SERVERS, MAX_KEY_CLIENTS,
};
use crate::protocol::Outcome;
use crate::stats::Counters;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRow {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub errors: u64,
}

impl TrafficRow {
    fn of(t: &Traffic) -> TrafficRow {
        TrafficRow {
            requests: t.requests,
            hits: t.hits,
            misses: t.misses,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            errors: t.errors,
        }
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests,
            hits: self.hits,
            misses: self.misses,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            errors: self.errors,
        }
    }

    pub fn add(&mut self, o: &TrafficRow) {
        self.requests += o.requests;
        self.hits += o.hits;
        self.misses += o.misses;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.errors += o.errors;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_in + self.bytes_out
    }
}

/// What a key row holds besides its traffic (stored as JSON text).
///
/// Rows written before the per-key tables were exact (see
/// `collect::keytables`) have no `clients_table`/`servers_table`: their
/// clients are read back with bounds inferred from the old 8-row table
/// (exact when it had fewer than 8 rows, else each row within the list's
/// smallest count), their servers with the key's requests as the bound
/// when it had several, and `commands_other` as a command named `other`.
/// Readers that predate the new fields still find every old one filled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDetail {
    /// The servers the key was seen on, by address.
    pub servers: Vec<String>,
    /// Whether the key's server table dropped a server (it had more than
    /// it holds).
    pub servers_overflow: bool,
    /// Every command of the key with its requests (exact).
    pub commands: Vec<(String, u64)>,
    /// Requests of commands an older memtap did not name (0 now).
    pub commands_other: u64,
    /// Non-empty classes of the key's latency (µs) histogram.
    pub latency: Vec<(u8, u32)>,
    pub latency_max: u64,
    pub value_size: Vec<(u8, u32)>,
    pub value_size_max: u64,
    /// Its clients: (client id in hex, requests), most requests first.
    pub clients: Vec<(String, u64)>,
    /// The error bound of each of `clients`, in the same order.
    #[serde(default)]
    pub client_bounds: Vec<u64>,
    /// The client table's shape (absent in older rows).
    #[serde(default)]
    pub clients_table: Option<TableShape>,
    /// (requests, error bound) on each of `servers`, in the same order.
    #[serde(default)]
    pub server_counts: Vec<(u64, u64)>,
    /// The server table's shape (absent in older rows).
    #[serde(default)]
    pub servers_table: Option<TableShape>,
}

/// What rebuilds a key's client or server table beside its rows: its size,
/// and what it could not list (see `collect::keytables::AddrTable`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    pub size: u64,
    pub floor: u64,
    pub dropped: bool,
}

impl TableShape {
    fn of<const N: usize>(t: &AddrTable<N>) -> TableShape {
        TableShape {
            size: t.capacity() as u64,
            floor: t.floor(),
            dropped: t.dropped(),
        }
    }
}

/// The size of a key's client table before it was configurable.
const OLD_KEY_CLIENTS: usize = 8;

impl KeyDetail {
    fn of(v: &KeyStats) -> KeyDetail {
        let mut servers: Vec<(std::net::SocketAddr, AddrRow)> = v
            .servers
            .iter()
            .map(|r| (r.addr.socket_addr(), r))
            .collect();
        servers.sort_by_key(|s| s.0);
        let clients = v.clients.sorted();
        KeyDetail {
            servers: servers.iter().map(|s| s.0.to_string()).collect(),
            servers_overflow: v.servers.dropped(),
            commands: v
                .commands
                .sorted()
                .into_iter()
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
            commands_other: 0,
            latency: small_rows(&v.latency_us),
            latency_max: v.latency_us.max(),
            value_size: small_rows(&v.value_size),
            value_size_max: v.value_size.max(),
            clients: clients
                .iter()
                .map(|r| (hex(&r.addr.bytes()), r.count))
                .collect(),
            client_bounds: clients.iter().map(|r| r.error_bound).collect(),
            clients_table: Some(TableShape::of(&v.clients)),
            server_counts: servers
                .iter()
                .map(|s| (s.1.count, s.1.error_bound))
                .collect(),
            servers_table: Some(TableShape::of(&v.servers)),
        }
    }

    /// The key's client table as stored.
    pub fn client_table(&self) -> KeyClients {
        let mut rows: Vec<AddrRow> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, (c, n))| {
                let b = unhex(c);
                (b.len() == 19).then(|| AddrRow {
                    addr: ClientId::from_bytes(&b),
                    count: *n,
                    error_bound: self.client_bounds.get(i).copied().unwrap_or(0),
                })
            })
            .collect();
        match self.clients_table {
            Some(t) => KeyClients::from_parts(
                (t.size as usize).min(MAX_KEY_CLIENTS),
                t.floor,
                t.dropped,
                &rows,
            ),
            None if rows.len() >= OLD_KEY_CLIENTS => {
                // An old full table may have replaced rows: each count is
                // within the smallest of them, as is any client not listed.
                let min = rows.iter().map(|r| r.count).min().unwrap_or(0);
                for r in &mut rows {
                    r.error_bound = min.min(r.count);
                }
                KeyClients::from_parts(OLD_KEY_CLIENTS, 0, true, &rows)
            }
            None => KeyClients::from_parts(OLD_KEY_CLIENTS, 0, false, &rows),
        }
    }

    /// The key's server table as stored; `requests` are the key's (for old
    /// rows, which named servers without counts).
    pub fn server_table(&self, requests: u64) -> KeyServers {
        let addrs: Vec<ClientId> = self
            .servers
            .iter()
            .filter_map(|s| s.parse().ok().map(ClientId::server))
            .collect();
        match self.servers_table {
            Some(t) => {
                let rows: Vec<AddrRow> = addrs
                    .iter()
                    .zip(&self.server_counts)
                    .map(|(&addr, &(count, error_bound))| AddrRow {
                        addr,
                        count,
                        error_bound,
                    })
                    .collect();
                KeyServers::from_parts(
                    (t.size as usize).min(KEY_SERVERS),
                    t.floor,
                    t.dropped,
                    &rows,
                )
            }
            None => {
                // One server and no overflow: all the key's requests went
                // there. Otherwise each got at most all of them.
                let sure = addrs.len() == 1 && !self.servers_overflow;
                let rows: Vec<AddrRow> = addrs
                    .iter()
                    .map(|&addr| AddrRow {
                        addr,
                        count: requests,
                        error_bound: if sure { 0 } else { requests },
                    })
                    .collect();
                let floor = if self.servers_overflow { requests } else { 0 };
                KeyServers::from_parts(KEY_SERVERS, floor, !sure, &rows)
            }
        }
    }
}

/// A key, client or family row. `rest` rows sum what `--store-top` left
/// out, so that every table's rows still add up to the interval's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRow {
    pub rest: bool,
    pub item: Vec<u8>,
    pub count: u64,
    pub error_bound: u64,
    pub traffic: TrafficRow,
    pub detail: Option<KeyDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRow {
    pub proto: String,
    pub transport: String,
    pub command: String,
    pub count: u64,
    pub requests: u64,
}

/// One server's key-requests of one command, by result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCommandRow {
    pub server: String,
    pub proto: String,
    pub transport: String,
    pub command: String,
    pub count: u64,
    /// (result, key-requests), results that occurred, in `Outcome` order.
    pub results: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub sniffer: String,
    /// 0: fine interval; 1: rollup.
    pub level: u64,
    pub start: u64,
    pub end: u64,
    /// max_keys, max_clients, max_families of the tables.
    pub limits: [u64; 3],
    /// Evictions of the key, client and family tables.
    pub evictions: [u64; 3],
    /// commands, requests, hits, misses, bytes_in, bytes_out, keyless.
    pub totals: [u64; 7],
    pub value_size_max: u64,
    pub latency_max: u64,
    /// Fine intervals a rollup was made of (1 for a fine interval).
    pub fine_count: u64,
    pub servers: Vec<(String, TrafficRow)>,
    /// Absent from spool files of an earlier memtap.
    #[serde(default)]
    pub server_commands: Vec<ServerCommandRow>,
    pub commands: Vec<CommandRow>,
    pub results: Vec<(String, u64)>,
    /// ("value_size" | "latency_us", class, count).
    pub hists: Vec<(String, u64, u64)>,
    pub health: Vec<(String, u64)>,
    pub keys: Vec<ItemRow>,
    pub clients: Vec<ItemRow>,
    pub families: Vec<ItemRow>,
    /// Cache insight as JSON (`InsightTables`; absent when off, and from
    /// an earlier memtap).
    #[serde(default)]
    pub insight: Option<String>,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn small_rows(h: &SmallHist) -> Vec<(u8, u32)> {
    h.counts()
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| (i as u8, c))
        .collect()
}

fn small_of(rows: &[(u8, u32)], max: u64) -> SmallHist {
    let mut c = [0u32; 32];
    for &(i, n) in rows {
        if (i as usize) < 32 {
            c[i as usize] = c[i as usize].saturating_add(n);
        }
    }
    SmallHist::from_parts(c, max)
}

/// Static names for the command table (its ids are `&'static str`): the
/// protocol's names where they match, otherwise interned once. Bounded so
/// a hostile database cannot grow it without end.
fn intern(s: &str) -> &'static str {
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<std::collections::BTreeSet<&'static str>>> = OnceLock::new();
    let m = NAMES.get_or_init(Default::default);
    let mut set = m.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&x) = set.get(s) {
        return x;
    }
    if set.len() >= 4096 {
        return "?";
    }
    let x: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(x);
    x
}

/// The rows of a heavy-hitter table to store: every row, or (with
/// `top > 0`) the union of the top `top` by each of `by`, plus one `rest`
/// row summing the others.
fn trim<'a, T>(
    entries: Vec<&'a Entry<T>>,
    top: usize,
    traffic: impl Fn(&T) -> &Traffic,
    by: &[fn(&Traffic) -> u64],
) -> (Vec<&'a Entry<T>>, Option<ItemRow>) {
    if top == 0 || entries.len() <= top {
        return (entries, None);
    }
    let mut keep = vec![false; entries.len()];
    for f in by {
        let mut idx: Vec<usize> = (0..entries.len()).collect();
        idx.sort_by(|&a, &b| {
            f(traffic(&entries[b].stats))
                .cmp(&f(traffic(&entries[a].stats)))
                .then(entries[b].count().cmp(&entries[a].count()))
                .then(entries[a].key().cmp(entries[b].key()))
        });
        for &i in idx.iter().take(top) {
            keep[i] = true;
        }
    }
    let mut rest = ItemRow {
        rest: true,
        item: Vec::new(),
        count: 0,
        error_bound: 0,
        traffic: TrafficRow::default(),
        detail: None,
    };
    let mut kept = Vec::new();
    for (e, k) in entries.into_iter().zip(keep) {
        if k {
            kept.push(e);
        } else {
            rest.count += e.count();
            rest.error_bound += e.error_bound();
            rest.traffic.add(&TrafficRow::of(traffic(&e.stats)));
        }
    }
    (kept, Some(rest))
}

const BY_REQUESTS: fn(&Traffic) -> u64 = |t| t.requests;
const BY_BYTES: fn(&Traffic) -> u64 = |t| t.bytes_in + t.bytes_out;
const BY_MISSES: fn(&Traffic) -> u64 = |t| t.misses;

impl Snapshot {
    /// A closed window's tables as rows. `store_top` > 0 keeps that many
    /// keys (by requests, bytes and misses), clients and families (by
    /// requests and bytes), with a remainder row each.
    pub fn from_tables(
        sniffer: &str,
        start: u64,
        end: u64,
        t: &Tables,
        counters: &Counters,
        store_top: usize,
    ) -> Snapshot {
        let tt = &t.totals;
        let mut servers: Vec<_> = t
            .servers
            .iter()
            .map(|(s, tr)| (s.to_string(), TrafficRow::of(tr)))
            .collect();
        servers.sort_by(|a, b| a.0.cmp(&b.0));
        let server_commands = t
            .breakdown
            .server_commands()
            .into_iter()
            .flat_map(|(s, cells)| {
                cells.into_iter().map(move |c| ServerCommandRow {
                    server: s.to_string(),
                    proto: c.id.proto.into(),
                    transport: c.id.transport.into(),
                    command: c.id.command.into(),
                    count: c.count,
                    results: Outcome::ALL
                        .iter()
                        .zip(c.requests.iter())
                        .filter(|(_, &n)| n > 0)
                        .map(|(o, &n)| (o.as_str().to_string(), n))
                        .collect(),
                })
            })
            .collect();
        let mut commands: Vec<_> = t
            .commands
            .iter()
            .map(|(id, c)| CommandRow {
                proto: id.proto.into(),
                transport: id.transport.into(),
                command: id.command.into(),
                count: c.count,
                requests: c.requests,
            })
            .collect();
        commands.sort_by(|a, b| {
            (&a.proto, &a.transport, &a.command).cmp(&(&b.proto, &b.transport, &b.command))
        });
        let mut hists = Vec::new();
        for (name, h) in [("value_size", &t.value_size), ("latency_us", &t.latency_us)] {
            for (i, &c) in h.counts().iter().enumerate() {
                if c > 0 {
                    hists.push((name.to_string(), i as u64, c));
                }
            }
        }
        let (keys, key_rest) = trim(
            t.keys.iter().collect(),
            store_top,
            |s: &KeyStats| &s.traffic,
            &[BY_REQUESTS, BY_BYTES, BY_MISSES],
        );
        let mut key_rows: Vec<ItemRow> = keys
            .into_iter()
            .map(|e| {
                let v = &e.stats;
                ItemRow {
                    rest: false,
                    item: e.key().to_vec(),
                    count: e.count(),
                    error_bound: e.error_bound(),
                    traffic: TrafficRow::of(&v.traffic),
                    detail: Some(KeyDetail::of(v)),
                }
            })
            .collect();
        key_rows.extend(key_rest);
        let plain = |e: &Entry<ClientStats>| ItemRow {
            rest: false,
            item: e.key().to_vec(),
            count: e.count(),
            error_bound: e.error_bound(),
            traffic: TrafficRow::of(&e.stats.traffic),
            detail: None,
        };
        let (clients, client_rest) = trim(
            t.clients.iter().collect(),
            store_top,
            |s: &ClientStats| &s.traffic,
            &[BY_REQUESTS, BY_BYTES],
        );
        let mut client_rows: Vec<ItemRow> = clients.into_iter().map(plain).collect();
        client_rows.extend(client_rest);
        let (fams, fam_rest) = trim(
            t.families.iter().collect(),
            store_top,
            |s: &FamilyStats| &s.traffic,
            &[BY_REQUESTS, BY_BYTES],
        );
        let mut fam_rows: Vec<ItemRow> = fams
            .into_iter()
            .map(|e| ItemRow {
                rest: false,
                item: e.key().to_vec(),
                count: e.count(),
                error_bound: e.error_bound(),
                traffic: TrafficRow::of(&e.stats.traffic),
                detail: None,
            })
            .collect();
        fam_rows.extend(fam_rest);
        Snapshot {
            sniffer: sniffer.to_string(),
            level: 0,
            start,
            end,
            limits: [
                t.keys.capacity() as u64,
                t.clients.capacity() as u64,
                t.families.capacity() as u64,
            ],
            evictions: [
                t.keys.evictions(),
                t.clients.evictions(),
                t.families.evictions(),
            ],
            totals: [
                tt.commands,
                tt.requests,
                tt.hits,
                tt.misses,
                tt.bytes_in,
                tt.bytes_out,
                tt.keyless,
            ],
            value_size_max: t.value_size.max(),
            latency_max: t.latency_us.max(),
            fine_count: 1,
            servers,
            server_commands,
            commands,
            results: Outcome::ALL
                .iter()
                .zip(t.results.iter())
                .filter(|(_, &n)| n > 0)
                .map(|(o, &n)| (o.as_str().to_string(), n))
                .collect(),
            hists,
            health: counters
                .iter()
                .filter(|(_, v)| *v > 0)
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            keys: key_rows,
            clients: client_rows,
            families: fam_rows,
            insight: (t.insight.applied > 0)
                .then(|| serde_json::to_string(&t.insight).ok())
                .flatten(),
        }
    }

    /// Keeps only what belongs to `servers`: their server rows, the keys
    /// seen on one of them, and totals from their server rows. Clients,
    /// families, commands, results and distributions are not split by
    /// server in a window, so they stay whole.
    pub fn restrict_servers(&mut self, servers: &[String]) {
        if servers.is_empty() {
            return;
        }
        self.servers.retain(|(s, _)| servers.contains(s));
        self.server_commands.retain(|c| servers.contains(&c.server));
        if let Some(j) = self.insight.as_mut() {
            // The pool's figures (curve, TTLs, slab fit) stay whole, like
            // clients and families.
            if let Ok(mut i) = serde_json::from_str::<crate::collect::insight::InsightTables>(j) {
                i.servers.retain(|(a, _)| servers.contains(&a.to_string()));
                if let Ok(k) = serde_json::to_string(&i) {
                    *j = k;
                }
            }
        }
        self.keys.retain(|k| {
            k.detail
                .as_ref()
                .is_some_and(|d| d.servers.iter().any(|s| servers.contains(s)))
        });
        let mut t = TrafficRow::default();
        for (_, r) in &self.servers {
            t.add(r);
        }
        self.totals[1] = t.requests;
        self.totals[2] = t.hits;
        self.totals[3] = t.misses;
        self.totals[4] = t.bytes_in;
        self.totals[5] = t.bytes_out;
    }
}

/// Which intervals to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub level: u64,
    /// Interval starts in [since, until), ns.
    pub since: u64,
    pub until: Option<u64>,
    /// Empty: every sniffer.
    pub sniffers: Vec<String>,
}

impl Filter {
    /// ` WHERE …` over (sniffer, level, start_ns), with its parameters.
    fn clause(&self) -> (String, Vec<Value>) {
        let mut p: Vec<Value> = vec![
            self.level.into(),
            self.since.into(),
            Value::Int(
                self.until
                    .map(|u| u.min(i64::MAX as u64) as i64)
                    .unwrap_or(i64::MAX),
            ),
        ];
        let mut sql = " WHERE level = $1 AND start_ns >= $2 AND start_ns < $3".to_string();
        if !self.sniffers.is_empty() {
            let marks: Vec<String> = (0..self.sniffers.len())
                .map(|i| format!("${}", i + 4))
                .collect();
            sql += &format!(" AND sniffer IN ({})", marks.join(", "));
            p.extend(self.sniffers.iter().map(|s| Value::from(s.as_str())));
        }
        (sql, p)
    }
}

const TABLES: &[&str] = &[
    "intervals",
    "server_stats",
    "server_command_stats",
    "command_stats",
    "result_stats",
    "hist_stats",
    "health_stats",
    "key_stats",
    "client_stats",
    "family_stats",
    "insight_stats",
];

/// Deletes one interval's rows.
pub fn write_delete(db: &mut dyn Db, sniffer: &str, level: u64, start: u64) -> Result<()> {
    for t in TABLES {
        db.exec(
            &format!("DELETE FROM {t} WHERE sniffer = $1 AND level = $2 AND start_ns = $3"),
            &[sniffer.into(), level.into(), start.into()],
        )?;
    }
    Ok(())
}

/// Deletes the intervals of one level starting in [from, to).
pub fn delete_range(db: &mut dyn Db, sniffer: &str, level: u64, from: u64, to: u64) -> Result<()> {
    for t in TABLES {
        db.exec(
            &format!(
                "DELETE FROM {t} WHERE sniffer = $1 AND level = $2 AND start_ns >= $3 AND start_ns < $4"
            ),
            &[sniffer.into(), level.into(), from.into(), to.into()],
        )?;
    }
    Ok(())
}

/// Writes one interval, replacing whatever the store had under its
/// (sniffer, level, start): ingesting the same interval twice changes
/// nothing. The caller holds the transaction.
pub fn write(db: &mut dyn Db, s: &Snapshot) -> Result<()> {
    let id = || -> Vec<Value> { vec![s.sniffer.as_str().into(), s.level.into(), s.start.into()] };
    write_delete(db, &s.sniffer, s.level, s.start)?;
    let mut p = id();
    p.push(s.end.into());
    p.extend(s.limits.iter().map(|&v| Value::from(v)));
    p.extend(s.evictions.iter().map(|&v| Value::from(v)));
    p.extend(s.totals.iter().map(|&v| Value::from(v)));
    p.push(s.value_size_max.into());
    p.push(s.latency_max.into());
    p.push(s.fine_count.into());
    db.exec(
        "INSERT INTO intervals (sniffer, level, start_ns, end_ns, max_keys, max_clients, max_families, \
         key_evictions, client_evictions, family_evictions, commands, requests, hits, misses, \
         bytes_in, bytes_out, keyless, value_size_max, latency_max, fine_count) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        &p,
    )?;
    let traffic = |p: &mut Vec<Value>, t: &TrafficRow| {
        for v in [
            t.requests,
            t.hits,
            t.misses,
            t.bytes_in,
            t.bytes_out,
            t.errors,
        ] {
            p.push(v.into());
        }
    };
    for (server, t) in &s.servers {
        let mut p = id();
        p.push(server.as_str().into());
        traffic(&mut p, t);
        db.exec(
            "INSERT INTO server_stats (sniffer, level, start_ns, server, requests, hits, misses, \
             bytes_in, bytes_out, errors) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &p,
        )?;
    }
    if let Some(i) = &s.insight {
        let mut p = id();
        p.push(i.as_str().into());
        db.exec(
            "INSERT INTO insight_stats (sniffer, level, start_ns, data) VALUES ($1, $2, $3, $4)",
            &p,
        )?;
    }
    for c in &s.server_commands {
        let mut p = id();
        p.extend([
            Value::from(c.server.as_str()),
            c.proto.as_str().into(),
            c.transport.as_str().into(),
            c.command.as_str().into(),
            c.count.into(),
            serde_json::to_string(&c.results)?.into(),
        ]);
        db.exec(
            "INSERT INTO server_command_stats (sniffer, level, start_ns, server, proto, transport, \
             command, count, results) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &p,
        )?;
    }
    for c in &s.commands {
        let mut p = id();
        p.extend([
            Value::from(c.proto.as_str()),
            c.transport.as_str().into(),
            c.command.as_str().into(),
            c.count.into(),
            c.requests.into(),
        ]);
        db.exec(
            "INSERT INTO command_stats (sniffer, level, start_ns, proto, transport, command, count, \
             requests) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &p,
        )?;
    }
    for (r, n) in &s.results {
        let mut p = id();
        p.extend([Value::from(r.as_str()), (*n).into()]);
        db.exec(
            "INSERT INTO result_stats (sniffer, level, start_ns, result, count) VALUES ($1, $2, $3, $4, $5)",
            &p,
        )?;
    }
    for (h, class, n) in &s.hists {
        let mut p = id();
        p.extend([Value::from(h.as_str()), (*class).into(), (*n).into()]);
        db.exec(
            "INSERT INTO hist_stats (sniffer, level, start_ns, hist, class, count) VALUES ($1, $2, $3, $4, $5, $6)",
            &p,
        )?;
    }
    for (name, v) in &s.health {
        let mut p = id();
        p.extend([Value::from(name.as_str()), (*v).into()]);
        db.exec(
            "INSERT INTO health_stats (sniffer, level, start_ns, name, value) VALUES ($1, $2, $3, $4, $5)",
            &p,
        )?;
    }
    for (table, col, rows) in [
        ("key_stats", "key", &s.keys),
        ("client_stats", "client", &s.clients),
        ("family_stats", "family", &s.families),
    ] {
        let keyed = table == "key_stats";
        let sql = format!(
            "INSERT INTO {table} (sniffer, level, start_ns, rest, {col}, count, error_bound, requests, \
             hits, misses, bytes_in, bytes_out, errors{}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13{})",
            if keyed { ", detail" } else { "" },
            if keyed { ", $14" } else { "" }
        );
        for r in rows {
            let mut p = id();
            p.extend([
                Value::from(r.rest as u64),
                Value::Blob(r.item.clone()),
                r.count.into(),
                r.error_bound.into(),
            ]);
            traffic(&mut p, &r.traffic);
            if keyed {
                let d = match &r.detail {
                    Some(d) => serde_json::to_string(d)?,
                    None => String::new(),
                };
                p.push(d.into());
            }
            db.exec(&sql, &p)?;
        }
    }
    Ok(())
}

fn traffic_at(r: &[Value], at: usize) -> TrafficRow {
    TrafficRow {
        requests: r[at].u64(),
        hits: r[at + 1].u64(),
        misses: r[at + 2].u64(),
        bytes_in: r[at + 3].u64(),
        bytes_out: r[at + 4].u64(),
        errors: r[at + 5].u64(),
    }
}

/// Reads the intervals `f` selects, in (start, sniffer) order.
pub fn read(db: &mut dyn Db, f: &Filter) -> Result<Vec<Snapshot>> {
    let (w, p) = f.clause();
    let mut map: BTreeMap<(u64, String), Snapshot> = BTreeMap::new();
    for r in db.query(
        &format!(
            "SELECT sniffer, start_ns, end_ns, max_keys, max_clients, max_families, key_evictions, \
             client_evictions, family_evictions, commands, requests, hits, misses, bytes_in, \
             bytes_out, keyless, value_size_max, latency_max, fine_count FROM intervals{w}"
        ),
        &p,
    )? {
        let u = |i: usize| r[i].u64();
        let s = Snapshot {
            sniffer: r[0].text(),
            level: f.level,
            start: u(1),
            end: u(2),
            limits: [u(3), u(4), u(5)],
            evictions: [u(6), u(7), u(8)],
            totals: [u(9), u(10), u(11), u(12), u(13), u(14), u(15)],
            value_size_max: u(16),
            latency_max: u(17),
            fine_count: u(18),
            ..Default::default()
        };
        map.insert((s.start, s.sniffer.clone()), s);
    }
    let id = |r: &[Value]| (r[1].u64(), r[0].text());
    for r in db.query(
        &format!("SELECT sniffer, start_ns, server, requests, hits, misses, bytes_in, bytes_out, errors FROM server_stats{w}"),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.servers.push((r[2].text(), traffic_at(&r, 3)));
        }
    }
    for r in db.query(
        &format!(
            "SELECT sniffer, start_ns, server, proto, transport, command, count, results \
             FROM server_command_stats{w}"
        ),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.server_commands.push(ServerCommandRow {
                server: r[2].text(),
                proto: r[3].text(),
                transport: r[4].text(),
                command: r[5].text(),
                count: r[6].u64(),
                results: serde_json::from_str(&r[7].text())?,
            });
        }
    }
    for r in db.query(
        &format!("SELECT sniffer, start_ns, proto, transport, command, count, requests FROM command_stats{w}"),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.commands.push(CommandRow {
                proto: r[2].text(),
                transport: r[3].text(),
                command: r[4].text(),
                count: r[5].u64(),
                requests: r[6].u64(),
            });
        }
    }
    for r in db.query(
        &format!("SELECT sniffer, start_ns, result, count FROM result_stats{w}"),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.results.push((r[2].text(), r[3].u64()));
        }
    }
    for r in db.query(
        &format!("SELECT sniffer, start_ns, hist, class, count FROM hist_stats{w}"),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.hists.push((r[2].text(), r[3].u64(), r[4].u64()));
        }
    }
    for r in db.query(
        &format!("SELECT sniffer, start_ns, data FROM insight_stats{w}"),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.insight = Some(r[2].text());
        }
    }
    for r in db.query(
        &format!("SELECT sniffer, start_ns, name, value FROM health_stats{w}"),
        &p,
    )? {
        if let Some(s) = map.get_mut(&id(&r)) {
            s.health.push((r[2].text(), r[3].u64()));
        }
    }
    for (table, col) in [
        ("key_stats", "key"),
        ("client_stats", "client"),
        ("family_stats", "family"),
    ] {
        let keyed = table == "key_stats";
        for r in db.query(
            &format!(
                "SELECT sniffer, start_ns, rest, {col}, count, error_bound, requests, hits, misses, \
                 bytes_in, bytes_out, errors{} FROM {table}{w}",
                if keyed { ", detail" } else { "" }
            ),
            &p,
        )? {
            let Some(s) = map.get_mut(&id(&r)) else {
                continue;
            };
            let detail = if keyed {
                let t = r[12].text();
                if t.is_empty() {
                    None
                } else {
                    Some(serde_json::from_str(&t)?)
                }
            } else {
                None
            };
            let row = ItemRow {
                rest: r[2].u64() != 0,
                item: r[3].blob(),
                count: r[4].u64(),
                error_bound: r[5].u64(),
                traffic: traffic_at(&r, 6),
                detail,
            };
            match table {
                "key_stats" => s.keys.push(row),
                "client_stats" => s.clients.push(row),
                _ => s.families.push(row),
            }
        }
    }
    Ok(map.into_values().collect())
}

/// The fold of many intervals: tables as a replay's run tables, plus what
/// the report needs beside them.
pub struct Folded {
    pub tables: Tables,
    pub limits: TableLimits,
    pub evictions: [u64; 3],
    pub health: BTreeMap<String, u64>,
    pub first: Option<u64>,
    pub last_end: u64,
    pub fine_count: u64,
}

/// Folds intervals into one set of tables (remainder rows stay out of the
/// key, client and family tables: they are not keys).
pub fn fold(snaps: &[Snapshot]) -> Folded {
    let mut lim = [1u64; 3];
    for s in snaps {
        for (l, v) in lim.iter_mut().zip(s.limits) {
            *l = (*l).max(v);
        }
    }
    // Each key's client table keeps the size it was stored with; new
    // rows of the folded tables (none) would get the largest.
    let key_clients = snaps
        .iter()
        .flat_map(|s| s.keys.iter())
        .filter_map(|r| r.detail.as_ref()?.clients_table.map(|t| t.size as usize))
        .max()
        .unwrap_or(crate::collect::keytables::DEFAULT_KEY_CLIENTS);
    let limits = TableLimits {
        max_keys: lim[0] as usize,
        max_clients: lim[1] as usize,
        max_families: lim[2] as usize,
        client_granularity: Default::default(),
        key_clients,
        insight_examples: 16,
    };
    let mut t = Tables::new(&limits);
    let mut out = Folded {
        tables: Tables::new(&TableLimits {
            max_keys: 1,
            max_clients: 1,
            max_families: 1,
            client_granularity: Default::default(),
            key_clients: 1,
            insight_examples: 16,
        }),
        limits,
        evictions: [0; 3],
        health: BTreeMap::new(),
        first: None,
        last_end: 0,
        fine_count: 0,
    };
    for s in snaps {
        out.first = Some(out.first.map_or(s.start, |f: u64| f.min(s.start)));
        out.last_end = out.last_end.max(s.end);
        out.fine_count += s.fine_count;
        for (e, v) in out.evictions.iter_mut().zip(s.evictions) {
            *e += v;
        }
        let tt = &mut t.totals;
        tt.commands += s.totals[0];
        tt.requests += s.totals[1];
        tt.hits += s.totals[2];
        tt.misses += s.totals[3];
        tt.bytes_in += s.totals[4];
        tt.bytes_out += s.totals[5];
        tt.keyless += s.totals[6];
        for (server, r) in &s.servers {
            if let Ok(a) = server.parse() {
                t.servers.get(a).merge(&r.traffic());
            }
        }
        if let Some(i) = s
            .insight
            .as_deref()
            .and_then(|j| serde_json::from_str::<crate::collect::insight::InsightTables>(j).ok())
        {
            t.insight.merge(&i);
        }
        for c in &s.server_commands {
            let Ok(a) = c.server.parse() else {
                continue;
            };
            let mut requests = [0u64; Outcome::ALL.len()];
            for (name, n) in &c.results {
                if let Some(i) = Outcome::ALL.iter().position(|o| o.as_str() == name) {
                    requests[i] += n;
                }
            }
            t.breakdown.add_counts(
                a,
                CommandId {
                    proto: intern(&c.proto),
                    transport: intern(&c.transport),
                    command: intern(&c.command),
                },
                c.count,
                &requests,
            );
        }
        for c in &s.commands {
            let e = t.commands.get(CommandId {
                proto: intern(&c.proto),
                transport: intern(&c.transport),
                command: intern(&c.command),
            });
            e.count += c.count;
            e.requests += c.requests;
        }
        for (name, n) in &s.results {
            if let Some(i) = Outcome::ALL.iter().position(|o| o.as_str() == name) {
                t.results[i] += n;
            }
        }
        let mut vs = [0u64; CLASSES];
        let mut lat = [0u64; CLASSES];
        for (h, class, n) in &s.hists {
            let c = *class as usize;
            if c < CLASSES {
                match h.as_str() {
                    "value_size" => vs[c] += n,
                    "latency_us" => lat[c] += n,
                    _ => {}
                }
            }
        }
        t.value_size
            .merge(&Log2Hist::from_parts(vs, s.value_size_max));
        t.latency_us
            .merge(&Log2Hist::from_parts(lat, s.latency_max));
        for (n, v) in &s.health {
            *out.health.entry(n.clone()).or_default() += v;
        }
        for r in s.keys.iter().filter(|r| !r.rest) {
            let e = t.keys.update(&r.item, r.count);
            e.raise_error_bound(r.error_bound);
            let mut k = KeyStats {
                traffic: r.traffic.traffic(),
                ..Default::default()
            };
            if let Some(d) = &r.detail {
                k.servers = d.server_table(r.traffic.requests);
                for (c, n) in &d.commands {
                    k.commands.add(intern(c), *n);
                }
                if d.commands_other > 0 {
                    k.commands.add("other", d.commands_other);
                }
                k.latency_us = small_of(&d.latency, d.latency_max);
                k.value_size = small_of(&d.value_size, d.value_size_max);
                k.clients = d.client_table();
            }
            crate::collect::heavy::Merge::merge(&mut e.stats, &k);
        }
        for r in s.clients.iter().filter(|r| !r.rest) {
            let e = t.clients.update(&r.item, r.count);
            e.raise_error_bound(r.error_bound);
            e.stats.traffic.merge(&r.traffic.traffic());
        }
        for r in s.families.iter().filter(|r| !r.rest) {
            let e = t.families.update(&r.item, r.count);
            e.raise_error_bound(r.error_bound);
            e.stats.traffic.merge(&r.traffic.traffic());
        }
    }
    out.tables = t;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::tables::{ClientGranularity, KeyServers};

    fn client(i: u8) -> ClientId {
        ClientId::new(([10, 0, 0, i], 1).into(), ClientGranularity::Ip)
    }

    /// A key's detail as the store keeps it gives back the same tables.
    #[test]
    fn key_detail_round_trips() {
        let mut k = KeyStats::default();
        for i in 0..40u8 {
            for _ in 0..=i {
                k.clients.add(client(i), 1, 32);
            }
            k.servers
                .add(ClientId::server(([10, 1, 0, i % 10], 11211).into()), 1, 8);
            k.commands.add(["get", "set", "touch"][i as usize % 3], 1);
        }
        let d = KeyDetail::of(&k);
        let d: KeyDetail = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        let c = d.client_table();
        assert_eq!(c.sorted(), k.clients.sorted());
        assert_eq!(c.unmonitored_bound(), k.clients.unmonitored_bound());
        assert_eq!((c.capacity(), c.is_exact()), (32, false));
        let s = d.server_table(0);
        assert_eq!(s.sorted(), k.servers.sorted());
        assert_eq!(s.unmonitored_bound(), k.servers.unmonitored_bound());
        assert_eq!(d.commands.len(), 3);
    }

    /// Rows an older memtap wrote (an 8-slot client list without bounds,
    /// servers without counts, an `other` command count) read back with
    /// bounds that hold for what that table could have done.
    #[test]
    fn old_key_details_stay_readable() {
        let hexc = |i: u8| hex(&client(i).bytes());
        // Fewer than 8 clients: the old table never replaced one, exact.
        let few = format!(
            r#"{{"servers":["10.1.0.1:11211"],"servers_overflow":false,"commands":[["get",7]],
            "commands_other":0,"latency":[],"latency_max":0,"value_size":[],"value_size_max":0,
            "clients":[["{}",5],["{}",2]]}}"#,
            hexc(1),
            hexc(2)
        );
        let d: KeyDetail = serde_json::from_str(&few).unwrap();
        let c = d.client_table();
        assert!(c.is_exact());
        assert_eq!(
            c.sorted()
                .iter()
                .map(|r| (r.count, r.error_bound))
                .collect::<Vec<_>>(),
            [(5, 0), (2, 0)]
        );
        let s: KeyServers = d.server_table(7);
        assert!(s.is_exact());
        assert_eq!(s.sorted()[0].count, 7);
        // A full old list and two servers with overflow: bounded.
        let rows: Vec<String> = (0..8)
            .map(|i| format!(r#"["{}",{}]"#, hexc(i), 10 + i))
            .collect();
        let full = format!(
            r#"{{"servers":["10.1.0.1:11211","10.1.0.2:11211"],"servers_overflow":true,
            "commands":[["get",90]],"commands_other":4,"latency":[],"latency_max":0,
            "value_size":[],"value_size_max":0,"clients":[{}]}}"#,
            rows.join(",")
        );
        let d: KeyDetail = serde_json::from_str(&full).unwrap();
        let c = d.client_table();
        assert!(!c.is_exact());
        assert_eq!(c.unmonitored_bound(), 10);
        assert!(c.iter().all(|r| r.error_bound == 10));
        let s = d.server_table(94);
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|r| (r.count, r.error_bound) == (94, 94)));
        assert_eq!(s.unmonitored_bound(), 94);
        // `other` is kept as a command of that name when folded.
        let snap = Snapshot {
            limits: [10, 10, 10],
            keys: vec![ItemRow {
                rest: false,
                item: b"k".to_vec(),
                count: 94,
                error_bound: 0,
                traffic: TrafficRow {
                    requests: 94,
                    ..Default::default()
                },
                detail: Some(d),
            }],
            ..Default::default()
        };
        let f = fold(&[snap]);
        let e = f.tables.keys.get(b"k").unwrap();
        let cmds: Vec<(&str, u64)> = e.stats.commands.sorted();
        assert_eq!(cmds, [("get", 90), ("other", 4)]);
    }
}
