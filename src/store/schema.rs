//! Versioned schema migrations, and the store's fixed settings.
//!
//! Every row is keyed by (sniffer, level, start_ns): level 0 holds the
//! fine intervals (the closed windows), level 1 the coarse rollups. Keys
//! are composite rather than surrogate ids so that the same statements run
//! on SQLite and PostgreSQL and a re-ingested interval replaces itself.
//! All counters are BIGINT.

use super::db::{Db, Value};
use anyhow::{bail, Result};

/// Each entry is one migration; its version is its position + 1. `{BLOB}`
/// is the database's byte-string type. Never edit a shipped entry: append.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE intervals (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL,
    max_keys BIGINT NOT NULL, max_clients BIGINT NOT NULL, max_families BIGINT NOT NULL,
    key_evictions BIGINT NOT NULL, client_evictions BIGINT NOT NULL, family_evictions BIGINT NOT NULL,
    commands BIGINT NOT NULL, requests BIGINT NOT NULL, hits BIGINT NOT NULL, misses BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, keyless BIGINT NOT NULL,
    value_size_max BIGINT NOT NULL, latency_max BIGINT NOT NULL,
    fine_count BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns));
CREATE INDEX intervals_by_time ON intervals (level, start_ns);
CREATE TABLE server_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL, server TEXT NOT NULL,
    requests BIGINT NOT NULL, hits BIGINT NOT NULL, misses BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, errors BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, server));
CREATE INDEX server_stats_peaks ON server_stats (level, server, requests);
CREATE TABLE command_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    proto TEXT NOT NULL, transport TEXT NOT NULL, command TEXT NOT NULL,
    count BIGINT NOT NULL, requests BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, proto, transport, command));
CREATE TABLE result_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    result TEXT NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, result));
CREATE TABLE hist_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    hist TEXT NOT NULL, class BIGINT NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, hist, class));
CREATE TABLE health_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    name TEXT NOT NULL, value BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, name));
CREATE TABLE key_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    rest BIGINT NOT NULL, key {BLOB} NOT NULL, count BIGINT NOT NULL, error_bound BIGINT NOT NULL,
    requests BIGINT NOT NULL, hits BIGINT NOT NULL, misses BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, errors BIGINT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, rest, key));
CREATE INDEX key_stats_history ON key_stats (key, level, start_ns);
CREATE TABLE client_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    rest BIGINT NOT NULL, client {BLOB} NOT NULL, count BIGINT NOT NULL, error_bound BIGINT NOT NULL,
    requests BIGINT NOT NULL, hits BIGINT NOT NULL, misses BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, errors BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, rest, client));
CREATE TABLE family_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL,
    rest BIGINT NOT NULL, family {BLOB} NOT NULL, count BIGINT NOT NULL, error_bound BIGINT NOT NULL,
    requests BIGINT NOT NULL, hits BIGINT NOT NULL, misses BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL, errors BIGINT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, rest, family));
CREATE TABLE captures (
    sniffer TEXT NOT NULL, first_ns BIGINT NOT NULL, last_ns BIGINT NOT NULL, files TEXT NOT NULL,
    PRIMARY KEY (sniffer, first_ns));
"#,
    r#"
CREATE TABLE events (
    sniffer TEXT NOT NULL, ts_ns BIGINT NOT NULL, trigger_name TEXT NOT NULL, event TEXT NOT NULL,
    metric TEXT NOT NULL, subject_kind TEXT NOT NULL, subject TEXT NOT NULL,
    value_milli BIGINT NOT NULL, threshold_milli BIGINT NOT NULL, window_s BIGINT NOT NULL,
    PRIMARY KEY (sniffer, ts_ns, trigger_name, event, subject));
CREATE INDEX events_by_time ON events (ts_ns);
"#,
    // Each server's key-requests by command and result (the report's
    // servers[].commands); `results` is a JSON object result -> count.
    r#"
CREATE TABLE server_command_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL, server TEXT NOT NULL,
    proto TEXT NOT NULL, transport TEXT NOT NULL, command TEXT NOT NULL,
    count BIGINT NOT NULL, results TEXT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns, server, proto, transport, command));
"#,
    // Cache insight per interval: the collectors' mergeable counters
    // (miss classes, storms, unread writes, TTLs, slab fit, miss-ratio
    // curve counts per server and for the pool) as one JSON document.
    r#"
CREATE TABLE insight_stats (
    sniffer TEXT NOT NULL, level BIGINT NOT NULL, start_ns BIGINT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (sniffer, level, start_ns));
"#,
];

pub const VERSION: u64 = MIGRATIONS.len() as u64;

/// Interval lengths fixed when the store is created (Seafood's I2/I1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub fine_ns: u64,
    pub rollup_ns: u64,
}

fn meta(db: &mut dyn Db, name: &str) -> Result<Option<String>> {
    let rows = db.query(
        "SELECT value FROM memtap_meta WHERE name = $1",
        &[name.into()],
    )?;
    Ok(rows.first().map(|r| r[0].text()))
}

/// The interval lengths of an existing store (read only).
pub fn stored(db: &mut dyn Db) -> Result<Intervals> {
    match (meta(db, "fine_ns")?, meta(db, "rollup_ns")?) {
        (Some(f), Some(r)) => Ok(Intervals {
            fine_ns: f.parse().unwrap_or(1),
            rollup_ns: r.parse::<u64>().unwrap_or(1).max(1),
        }),
        _ => bail!("the store is empty: nothing has been written to it yet"),
    }
}

/// Brings the schema up to date and returns the store's interval lengths.
/// `want` sets them on a new store; on an existing one they must agree
/// (`None`: take what the store has).
pub fn migrate(db: &mut dyn Db, want: Option<Intervals>) -> Result<Intervals> {
    db.batch(
        "CREATE TABLE IF NOT EXISTS memtap_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )?;
    let have: u64 = meta(db, "schema_version")?
        .map(|v| v.parse().unwrap_or(u64::MAX))
        .unwrap_or(0);
    if have > VERSION {
        bail!("the store's schema version {have} is newer than this memtap's ({VERSION}); upgrade memtap");
    }
    for v in have..VERSION {
        let sql = MIGRATIONS[v as usize].replace("{BLOB}", db.blob_type());
        db.batch("BEGIN")?;
        let r = (|| -> Result<()> {
            db.batch(&sql)?;
            db.exec("DELETE FROM memtap_meta WHERE name = 'schema_version'", &[])?;
            db.exec(
                "INSERT INTO memtap_meta (name, value) VALUES ('schema_version', $1)",
                &[(v + 1).to_string().into()],
            )?;
            Ok(())
        })();
        match r {
            Ok(()) => db.batch("COMMIT")?,
            Err(e) => {
                let _ = db.batch("ROLLBACK");
                return Err(e.context(format!("store schema migration {}", v + 1)));
            }
        }
    }
    let fine = meta(db, "fine_ns")?.and_then(|v| v.parse::<u64>().ok());
    let rollup = meta(db, "rollup_ns")?.and_then(|v| v.parse::<u64>().ok());
    match (fine, rollup, want) {
        (Some(f), Some(r), want) => {
            let have = Intervals {
                fine_ns: f,
                rollup_ns: r,
            };
            if let Some(w) = want {
                if w != have {
                    bail!(
                        "the store keeps {} intervals rolled up per {}; this run asks for {} and {} \
                         (interval lengths are fixed when a store is created)",
                        dur(f),
                        dur(r),
                        dur(w.fine_ns),
                        dur(w.rollup_ns)
                    );
                }
            }
            Ok(have)
        }
        (_, _, Some(w)) => {
            if w.fine_ns == 0 || w.rollup_ns < w.fine_ns || w.rollup_ns % w.fine_ns != 0 {
                bail!("the rollup interval must be a whole multiple of the fine interval");
            }
            for (n, v) in [("fine_ns", w.fine_ns), ("rollup_ns", w.rollup_ns)] {
                db.exec(
                    "INSERT INTO memtap_meta (name, value) VALUES ($1, $2)",
                    &[n.into(), Value::Text(v.to_string())],
                )?;
            }
            Ok(w)
        }
        (_, _, None) => bail!("the store is empty: nothing has been written to it yet"),
    }
}

/// A duration as the CLI takes it (`60s`, `1d`), for messages.
pub fn dur(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if ns % 1_000_000_000 != 0 {
        format!("{}ms", ns / 1_000_000)
    } else if s % 86400 == 0 {
        format!("{}d", s / 86400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
