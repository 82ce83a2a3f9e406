//! Trigger events in the history: written by the writer thread beside the
//! intervals, read by `memtap report --store URL events` and marked on the
//! history page's time axis.

use super::db::{Db, Value};
use crate::trigger::{Event, EventKind};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One stored firing or clearing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub sniffer: String,
    pub ts_ns: u64,
    pub trigger: String,
    /// `fired` or `cleared`.
    pub event: String,
    pub metric: String,
    pub subject_kind: String,
    pub subject: String,
    pub value: f64,
    pub threshold: f64,
    pub window_s: u64,
}

impl EventRow {
    pub fn of(sniffer: &str, e: &Event) -> EventRow {
        EventRow {
            sniffer: sniffer.to_string(),
            ts_ns: e.ts,
            trigger: e.trigger.clone(),
            event: match e.event {
                EventKind::Fired => "fired",
                EventKind::Cleared => "cleared",
            }
            .into(),
            metric: e.metric.into(),
            subject_kind: e.subject_kind.into(),
            subject: e.subject_str.clone(),
            value: e.value,
            threshold: e.threshold,
            window_s: e.window_s,
        }
    }
}

/// Values are stored in thousandths (a BIGINT on either database).
fn milli(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

/// Writes one event (replacing itself if written before).
pub fn write(db: &mut dyn Db, e: &EventRow) -> Result<()> {
    let key = || -> Vec<Value> {
        vec![
            e.sniffer.as_str().into(),
            e.ts_ns.into(),
            e.trigger.as_str().into(),
            e.event.as_str().into(),
            e.subject.as_str().into(),
        ]
    };
    db.exec(
        "DELETE FROM events WHERE sniffer = $1 AND ts_ns = $2 AND trigger_name = $3 AND event = $4 AND subject = $5",
        &key(),
    )?;
    let mut p = key();
    p.push(e.metric.as_str().into());
    p.push(e.subject_kind.as_str().into());
    p.push(Value::Int(milli(e.value)));
    p.push(Value::Int(milli(e.threshold)));
    p.push(e.window_s.into());
    db.exec(
        "INSERT INTO events (sniffer, ts_ns, trigger_name, event, subject, metric, subject_kind, \
         value_milli, threshold_milli, window_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &p,
    )?;
    Ok(())
}

/// Events stamped in `[since, until)`, of the given sniffers (all when
/// empty), oldest first.
pub fn read(
    db: &mut dyn Db,
    since: u64,
    until: Option<u64>,
    sniffers: &[String],
) -> Result<Vec<EventRow>> {
    let rows = db.query(
        "SELECT sniffer, ts_ns, trigger_name, event, metric, subject_kind, subject, value_milli, \
         threshold_milli, window_s FROM events WHERE ts_ns >= $1 AND ts_ns < $2 \
         ORDER BY ts_ns, trigger_name, event, subject",
        &[since.into(), until.unwrap_or(i64::MAX as u64).into()],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| EventRow {
            sniffer: r[0].text(),
            ts_ns: r[1].u64(),
            trigger: r[2].text(),
            event: r[3].text(),
            metric: r[4].text(),
            subject_kind: r[5].text(),
            subject: r[6].text(),
            value: r[7].u64() as i64 as f64 / 1000.0,
            threshold: r[8].u64() as i64 as f64 / 1000.0,
            window_s: r[9].u64(),
        })
        .filter(|e| sniffers.is_empty() || sniffers.contains(&e.sniffer))
        .collect())
}
