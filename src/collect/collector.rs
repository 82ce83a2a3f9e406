//! The collector thread: receives record batches, updates its tables, and
//! closes windows on packet time.
//!
//! Windows: a record belongs to the window holding the packet time at which
//! it was resolved (`BRec::seen`), so a replay and a live capture cut the
//! same windows. Each batch carries its worker's watermark (records sent
//! later by that worker are resolved no earlier); a window closes once
//! every worker's watermark has passed its end, so its tables are final.

use super::batch::RecordBatch;
use super::families::FamilyRules;
use super::tables::{TableLimits, Tables};
use crate::decode::Ts;
use crate::stats::Counters;
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Clone)]
pub struct CollectorConfig {
    pub limits: TableLimits,
    /// Window length in ns; 0 disables windows.
    pub window_ns: u64,
    pub workers: usize,
    pub families: Option<Arc<FamilyRules>>,
}

/// One collector's share of a closed window.
pub struct WindowPart {
    pub collector: usize,
    pub start: Ts,
    pub end: Ts,
    pub tables: Box<Tables>,
}

/// What a collector hands back when every worker is done.
pub struct CollectorResult {
    pub run: Tables,
    /// Counters the workers sent with their last batches.
    pub counters: Counters,
}

pub fn window_start(ts: Ts, window_ns: u64) -> Ts {
    ts - ts % window_ns
}

/// Runs until every worker has sent its last batch (or all senders are
/// gone). Processed batches go back to their worker over `recycle`.
pub fn run(
    id: usize,
    cfg: CollectorConfig,
    rx: Receiver<RecordBatch>,
    recycle: Vec<Sender<RecordBatch>>,
    windows_out: Option<Sender<WindowPart>>,
) -> CollectorResult {
    let mut run = Tables::new(&cfg.limits);
    let mut open: VecDeque<(Ts, Tables)> = VecDeque::new();
    // Tables of closed windows, cleared and reused for later windows.
    let mut spare: Vec<Tables> = Vec::new();
    let mut watermark: Vec<Option<Ts>> = vec![Some(0); cfg.workers];
    let mut counters = Counters::default();
    let mut family = Vec::with_capacity(256);
    let rules = cfg.families.as_deref();
    let windows = cfg.window_ns > 0 && windows_out.is_some();

    while let Ok(mut b) = rx.recv() {
        for r in &b.recs {
            run.add(&b, r, rules, &mut family);
            if windows {
                let start = window_start(r.seen, cfg.window_ns);
                let t = window_tables(&mut open, &mut spare, start, &cfg.limits);
                t.add(&b, r, rules, &mut family);
            }
        }
        let w = b.worker.min(cfg.workers - 1);
        if let Some(last) = b.last.take() {
            counters.add(&last);
            watermark[w] = None;
        } else if let Some(m) = watermark[w].as_mut() {
            *m = (*m).max(b.watermark);
        }
        if let Some(out) = &windows_out {
            // Workers that finished hold nothing back.
            let low = watermark.iter().flatten().min().copied();
            while let Some((start, _)) = open.front() {
                let end = start + cfg.window_ns;
                if low.is_some_and(|l| l < end) {
                    break;
                }
                let (start, t) = open.pop_front().expect("front exists");
                send_window(out, id, start, cfg.window_ns, t, &mut spare);
            }
        }
        b.clear();
        if let Some(tx) = recycle.get(w) {
            let _ = tx.try_send(b);
        }
        if watermark.iter().all(|w| w.is_none()) {
            break;
        }
    }
    if let Some(out) = &windows_out {
        while let Some((start, t)) = open.pop_front() {
            send_window(out, id, start, cfg.window_ns, t, &mut spare);
        }
    }
    CollectorResult { run, counters }
}

fn window_tables<'a>(
    open: &'a mut VecDeque<(Ts, Tables)>,
    spare: &mut Vec<Tables>,
    start: Ts,
    limits: &TableLimits,
) -> &'a mut Tables {
    let pos = open.iter().position(|(s, _)| *s >= start);
    let idx = match pos {
        Some(i) if open[i].0 == start => i,
        Some(i) => {
            open.insert(
                i,
                (start, spare.pop().unwrap_or_else(|| Tables::new(limits))),
            );
            i
        }
        None => {
            open.push_back((start, spare.pop().unwrap_or_else(|| Tables::new(limits))));
            open.len() - 1
        }
    };
    &mut open[idx].1
}

fn send_window(
    out: &Sender<WindowPart>,
    id: usize,
    start: Ts,
    window_ns: u64,
    t: Tables,
    _spare: &mut Vec<Tables>,
) {
    // The reader merges and trims the part; its allocation goes with it
    // (one per window, not per record).
    let _ = out.send(WindowPart {
        collector: id,
        start,
        end: start + window_ns,
        tables: Box::new(t),
    });
}
