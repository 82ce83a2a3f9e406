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
use super::insight::{Insight, InsightConfig};
use super::seconds::{SecondMsg, Seconds, SECOND_NS};
use super::tables::{KeyAhead, TableLimits, Tables};
use crate::decode::Ts;
use crate::stats::{Counters, Warnings};
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
    /// Cache insight; `None` turns it off.
    pub insight: Option<InsightConfig>,
}

/// What a collector says about windows.
pub enum WindowMsg {
    /// Its share of a closed window (only windows it had records for).
    Part {
        start: Ts,
        end: Ts,
        tables: Box<Tables>,
    },
    /// It has closed every window that ends at or before `upto`: a window
    /// is complete once every collector has said so.
    Upto { collector: usize, upto: Ts },
}

/// Requests a live pipeline sends a running collector.
pub enum Ctl {
    /// A copy of the whole-run tables so far (for HTTP views).
    Snapshot(Sender<Tables>),
    /// New table limits, for windows opened from now on (the whole-run
    /// table keeps the size it was made with).
    Limits(TableLimits),
}

/// What a collector hands back when every worker is done.
pub struct CollectorResult {
    pub run: Tables,
    /// Counters and warnings the workers sent with their last batches.
    pub counters: Counters,
    pub warnings: Warnings,
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
    windows_out: Option<Sender<WindowMsg>>,
    mut ctl: Option<Receiver<Ctl>>,
    seconds_out: Option<Sender<SecondMsg>>,
) -> CollectorResult {
    // Per-second figures for the triggers, with where they go.
    let mut seconds = seconds_out.map(|out| (Seconds::default(), out));
    let mut said_seconds: Ts = 0;
    let mut cfg = cfg;
    let mut run = Tables::new(&cfg.limits);
    let mut open: VecDeque<(Ts, Tables)> = VecDeque::new();
    let mut watermark: Vec<Option<Ts>> = vec![Some(0); cfg.workers];
    let mut counters = Counters::default();
    let mut warnings = Warnings::default();
    let mut family = Vec::with_capacity(256);
    let rules = cfg.families.as_deref();
    let windows = cfg.window_ns > 0 && windows_out.is_some();
    let mut said_upto: Ts = 0;
    let mut insight = cfg.insight.as_ref().map(Insight::new);
    let mut ahead = KeyAhead::default();
    let mut insight_done = false;
    let insight_windows = if windows { cfg.window_ns } else { 0 };
    // One worker sends records in packet-time order: insight applies them
    // as they come instead of queueing them for the merge of workers.
    let direct = cfg.workers == 1;

    loop {
        let next = match &ctl {
            None => rx.recv(),
            Some(c) => crossbeam_channel::select! {
                recv(rx) -> m => m,
                recv(c) -> m => {
                    match m {
                        Ok(Ctl::Snapshot(tx)) => {
                            let mut t = Tables::new(&cfg.limits);
                            t.merge(&run);
                            let _ = tx.send(t);
                        }
                        Ok(Ctl::Limits(l)) => cfg.limits = l,
                        // Nobody will ask again: stop selecting on it (a
                        // disconnected channel is always ready).
                        Err(_) => ctl = None,
                    }
                    continue;
                }
            },
        };
        let Ok(mut b) = next else { break };
        ahead.run(&mut run, &b, |run, idx, key_hash| {
            let r = &b.recs[idx];
            // The family is found once a record, for every table.
            let fam = match (rules, b.key(r)) {
                (Some(rules), Some(key)) => rules.family_into(key, &mut family),
                _ => false,
            };
            let fam = fam.then_some(&family[..]);
            let added = run.add_hashed(&b, r, fam, key_hash);
            if let Some((s, _)) = seconds.as_mut() {
                if !r.echo {
                    s.add(&b, r);
                }
            }
            if windows && !r.echo {
                let start = window_start(r.seen, cfg.window_ns);
                let t = window_tables(&mut open, start, &cfg.limits);
                t.add_in_family(&b, r, fam);
            }
            if let Some(i) = insight.as_mut() {
                if direct {
                    i.prefetch_ahead(&b, idx);
                    let win = insight_window(cfg.limits, insight_windows);
                    i.apply_now(&b, r, fam, added, run, &mut open, insight_windows, win);
                } else {
                    i.push(&b, r, fam);
                }
            }
        });
        if direct {
            if let Some(i) = insight.as_mut() {
                i.end_batch(&mut run, &mut open);
            }
        }
        let w = b.worker.min(cfg.workers - 1);
        if let Some(last) = b.last.take() {
            counters.add(&last.counters);
            warnings.merge(&last.warnings);
            watermark[w] = None;
        } else if let Some(m) = watermark[w].as_mut() {
            *m = (*m).max(b.watermark);
        }
        if let Some(i) = insight.as_mut() {
            // Records every worker has passed, in packet-time order, before
            // their windows close below.
            let low = watermark.iter().flatten().min().copied();
            let win = insight_window(cfg.limits, insight_windows);
            i.release(low, &mut run, &mut open, insight_windows, win);
            if low.is_none() {
                // Every worker is done: the run's closing counts go to its
                // last window before the windows close below.
                i.finish(&mut run, open.back_mut().map(|(_, t)| t));
                insight_done = true;
            }
        }
        if let Some((s, out)) = seconds.as_mut() {
            // Seconds close like windows: once every worker is past them.
            let low = watermark.iter().flatten().min().copied();
            s.close(low, |p| {
                let _ = out.send(SecondMsg::Part(Box::new(p)));
            });
            let upto = match low {
                Some(l) => l - l % SECOND_NS,
                None => Ts::MAX,
            };
            if upto > said_seconds {
                said_seconds = upto;
                let _ = out.send(SecondMsg::Upto {
                    collector: id,
                    upto,
                });
            }
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
                send_window(out, start, cfg.window_ns, t);
            }
            // Every window ending at or before `low` is closed here.
            let upto = match low {
                Some(l) => window_start(l, cfg.window_ns),
                None => Ts::MAX,
            };
            if upto > said_upto {
                said_upto = upto;
                let _ = out.send(WindowMsg::Upto {
                    collector: id,
                    upto,
                });
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
    if let Some(i) = insight.as_mut().filter(|_| !insight_done) {
        // The channels closed before every worker said it was done.
        let win = insight_window(cfg.limits, insight_windows);
        i.release(None, &mut run, &mut open, insight_windows, win);
        i.finish(&mut run, open.back_mut().map(|(_, t)| t));
    }
    if let Some((s, out)) = seconds.as_mut() {
        s.close(None, |p| {
            let _ = out.send(SecondMsg::Part(Box::new(p)));
        });
        let _ = out.send(SecondMsg::Upto {
            collector: id,
            upto: Ts::MAX,
        });
    }
    if let Some(out) = &windows_out {
        while let Some((start, t)) = open.pop_front() {
            send_window(out, start, cfg.window_ns, t);
        }
        let _ = out.send(WindowMsg::Upto {
            collector: id,
            upto: Ts::MAX,
        });
    }
    CollectorResult {
        run,
        counters,
        warnings,
    }
}

/// The open window starting at `start`, created on first use (one
/// allocation per window, not per record).
fn window_tables<'a>(
    open: &'a mut VecDeque<(Ts, Tables)>,
    start: Ts,
    limits: &TableLimits,
) -> &'a mut Tables {
    let idx = window_index(open, start, limits);
    &mut open[idx].1
}

/// How insight finds (or opens) the window of a record's packet time.
fn insight_window(
    limits: TableLimits,
    window_ns: u64,
) -> impl FnMut(&mut VecDeque<(Ts, Tables)>, Ts) -> Option<usize> {
    move |open, seen| Some(window_index(open, window_start(seen, window_ns), &limits))
}

fn window_index(open: &mut VecDeque<(Ts, Tables)>, start: Ts, limits: &TableLimits) -> usize {
    let pos = open.iter().position(|(s, _)| *s >= start);
    match pos {
        Some(i) if open[i].0 == start => i,
        Some(i) => {
            open.insert(i, (start, Tables::new(limits)));
            i
        }
        None => {
            open.push_back((start, Tables::new(limits)));
            open.len() - 1
        }
    }
}

fn send_window(out: &Sender<WindowMsg>, start: Ts, window_ns: u64, t: Tables) {
    let _ = out.send(WindowMsg::Part {
        start,
        end: start + window_ns,
        tables: Box::new(t),
    });
}
