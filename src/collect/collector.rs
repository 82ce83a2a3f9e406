//! The collector thread: receives record batches, updates its tables, and
//! closes windows on packet time.
//!
//! Windows: a record belongs to the window holding the packet time at which
//! it was resolved (`BRec::seen`), so a replay and a live capture cut the
//! same windows. Each batch carries its worker's watermark (records sent
//! later by that worker are resolved no earlier); a window closes once
//! every worker's watermark has passed its end, so its tables are final.

use super::batch::{BRec, RecordBatch};
use super::families::{FamilyMemo, FamilyRules};
use super::insight::{self, Insight, InsightConfig};
use super::seconds::{SecondMsg, Seconds, SECOND_NS};
use super::tables::{Added, KeyAhead, TableLimits, Tables};
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
    /// The most batches held for insight's merge of several workers
    /// (see `Held`).
    pub hold_batches: usize,
    /// The records of a full batch (`Shape::batch_records`).
    pub batch_records: usize,
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
    /// Time spent waiting for a batch with none queued.
    pub idle_ns: u64,
}

/// With windows at least this long a record is added to its window's
/// tables only, and the run's tables are made of the windows, each folded
/// in when it closes ([`Tables::fold`]): adding each record to two tables
/// as large as the caches cannot hold was half a live collector's work.
/// A fold costs the window's items, about what adding their records cost
/// when most keys come once a window, so short windows add to both.
pub const FOLD_FROM_NS: u64 = 1_000_000_000;

/// Key items folded into the run per queued window, each time the
/// collector takes a batch: about a batch's records, so that a window of
/// a million keys is folded over a thousand batches, not in one stall of
/// half a second while the rings fill.
const FOLD_STEP: usize = 1024;

/// The windows the run's tables do not hold yet.
///
/// A fold keeps the run's tables exact only while the window is: a
/// window that evicted a key may have dropped what the run still counts
/// exactly. So a window is folded, as far as it got, just before one of
/// its tables (keys, clients, families) could evict; from then on its
/// records go to the run's tables too, as without folding, and it is not
/// folded again when it closes. A closed window is folded `FOLD_STEP`
/// keys at a time and sent once folded (and behind those before it).
struct Folding {
    on: bool,
    /// Starts of the open windows already folded.
    synced: Vec<Ts>,
    /// Closed windows not sent yet, in the order they closed.
    queue: VecDeque<Closing>,
}

struct Closing {
    start: Ts,
    tables: Tables,
    /// Where its fold stands (`Tables::fold_part`): `None` when the run
    /// holds it already.
    next: Option<usize>,
}

impl Folding {
    fn new(on: bool) -> Folding {
        Folding {
            on,
            synced: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// Whether the open window starting at `start` is yet to be folded.
    fn pending(&self, start: Ts) -> bool {
        self.on && !self.synced.contains(&start)
    }

    /// The window starting at `start` closes: sent now when the run
    /// holds it and none is queued, else queued.
    fn close(&mut self, start: Ts, t: Tables, out: &Sender<WindowMsg>, window_ns: u64) {
        let fold = self.pending(start);
        self.synced.retain(|&s| s != start);
        if !fold && self.queue.is_empty() {
            send_window(out, start, window_ns, t);
            return;
        }
        self.queue.push_back(Closing {
            start,
            tables: t,
            next: fold.then_some(0),
        });
    }

    /// Folds at most `budget` key items of the queued windows into
    /// `run`, and sends each one folded.
    fn step(
        &mut self,
        run: &mut Tables,
        mut budget: usize,
        out: &Sender<WindowMsg>,
        window_ns: u64,
    ) {
        while let Some(c) = self.queue.front_mut() {
            if let Some(from) = c.next {
                if budget == 0 {
                    return;
                }
                let end = run.fold_part(&c.tables, from, budget);
                budget -= (end - from).min(budget);
                if end < c.tables.keys.len() {
                    c.next = Some(end);
                    return;
                }
            }
            let c = self.queue.pop_front().expect("front exists");
            send_window(out, c.start, window_ns, c.tables);
        }
    }

    /// `upto` held below the windows not sent yet.
    fn sent_upto(&self, upto: Ts) -> Ts {
        self.queue.iter().map(|c| c.start).fold(upto, Ts::min)
    }

    /// What the run's tables do not hold yet, added to `t` (a copy of
    /// them): the rest of the queued windows, and the open ones.
    fn add_unfolded(&self, t: &mut Tables, open: &VecDeque<(Ts, Tables)>) {
        for c in &self.queue {
            if let Some(from) = c.next {
                t.fold_part(&c.tables, from, usize::MAX);
            }
        }
        for (start, w) in open {
            if self.pending(*start) {
                t.fold(w);
            }
        }
    }
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
    let mut memo = FamilyMemo::default();
    let windows = cfg.window_ns > 0 && windows_out.is_some();
    let mut folding = Folding::new(windows && cfg.window_ns >= FOLD_FROM_NS);
    let mut said_upto: Ts = 0;
    let mut insight = cfg.insight.as_ref().map(Insight::new);
    let mut ahead = KeyAhead::default();
    let mut insight_done = false;
    // Insight needs its records in packet-time order. One worker sends
    // them so: they are applied as they come. Several workers' batches
    // are held until every watermark has passed their records, then
    // applied merged (tables and insight together, so that insight books
    // into the entries adding the record just left).
    let merge = insight.is_some() && cfg.workers > 1;
    let mut held = Held::new(cfg.workers, cfg.batch_records);

    let mut idle_ns = 0u64;
    loop {
        if let Some(out) = windows_out.as_ref().filter(|_| !folding.queue.is_empty()) {
            if rx.is_empty() && ctl.as_ref().is_none_or(|c| c.is_empty()) {
                // Nothing to take: fold on while it lasts.
                folding.step(&mut run, 8 * FOLD_STEP, out, cfg.window_ns);
                let low = watermark.iter().flatten().min().copied();
                say_upto(out, id, low, cfg.window_ns, &folding, &mut said_upto);
                continue;
            }
        }
        let next = match &ctl {
            // Timed only when there is nothing queued.
            None => rx.try_recv().or_else(|_| {
                let t = std::time::Instant::now();
                let m = rx.recv();
                idle_ns += t.elapsed().as_nanos() as u64;
                m
            }),
            Some(c) => crossbeam_channel::select! {
                recv(rx) -> m => m,
                recv(c) -> m => {
                    match m {
                        Ok(Ctl::Snapshot(tx)) => {
                            let mut t = Tables::new(&cfg.limits);
                            t.merge(&run);
                            folding.add_unfolded(&mut t, &open);
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
        if let Some((s, _)) = seconds.as_mut() {
            for r in b.recs.iter().filter(|r| !r.echo) {
                s.add(&b, r);
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
        let low = watermark.iter().flatten().min().copied();
        let mut apply = Apply {
            cfg: &cfg,
            windows,
            folding: &mut folding,
            memo: &mut memo,
            open: &mut open,
            insight: insight.as_mut(),
            ahead: &mut ahead,
        };
        if merge {
            if b.recs.is_empty() {
                // Only its watermark mattered (a heartbeat).
                give_back(&recycle, w, b);
            } else {
                b.worker = w;
                if let Some(spare) = held.hold(w, b) {
                    give_back(&recycle, w, spare);
                }
            }
            // Records every worker has passed, in packet-time order, before
            // their windows close below.
            held.release(low, &mut apply, &mut run, &recycle);
            // Memory first: past the limit, the oldest batch goes now,
            // with every record up to its last. What a lagging worker
            // sends from before that is applied `late` (counted).
            while held.batches.len() > cfg.hold_batches.max(1) {
                let t = held.batches[0].recs.last().map_or(0, |r| r.seen);
                held.release(Some(t.saturating_add(1)), &mut apply, &mut run, &recycle);
            }
        } else {
            apply.records(&mut run, b.recs.len(), |i| (&b, &b.recs[i]));
            give_back(&recycle, w, b);
        }
        if let Some(i) = insight.as_mut().filter(|_| low.is_none()) {
            // Every worker is done: the run's closing counts go to its
            // last window before the windows close below.
            finish_insight(i, &folding, &mut run, &mut open);
            insight_done = true;
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
                folding.close(start, t, out, cfg.window_ns);
            }
            let budget = FOLD_STEP * folding.queue.len();
            folding.step(&mut run, budget, out, cfg.window_ns);
            say_upto(out, id, low, cfg.window_ns, &folding, &mut said_upto);
        }
        if watermark.iter().all(|w| w.is_none()) {
            break;
        }
    }
    if let Some(i) = insight.as_mut().filter(|_| !insight_done) {
        // The channels closed before every worker said it was done.
        let mut apply = Apply {
            cfg: &cfg,
            windows,
            folding: &mut folding,
            memo: &mut memo,
            open: &mut open,
            insight: Some(&mut *i),
            ahead: &mut ahead,
        };
        held.release(None, &mut apply, &mut run, &[]);
        finish_insight(i, &folding, &mut run, &mut open);
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
            folding.close(start, t, out, cfg.window_ns);
        }
        folding.step(&mut run, usize::MAX, out, cfg.window_ns);
        let _ = out.send(WindowMsg::Upto {
            collector: id,
            upto: Ts::MAX,
        });
    }
    CollectorResult {
        run,
        counters,
        warnings,
        idle_ns,
    }
}

/// Tells the pipeline that every window ending at or before the start of
/// `low`'s (all of them once `low` is `None`) is closed here and sent.
fn say_upto(
    out: &Sender<WindowMsg>,
    collector: usize,
    low: Option<Ts>,
    window_ns: u64,
    folding: &Folding,
    said: &mut Ts,
) {
    let upto = match low {
        Some(l) => window_start(l, window_ns),
        None => Ts::MAX,
    };
    let upto = folding.sent_upto(upto);
    if upto > *said {
        *said = upto;
        let _ = out.send(WindowMsg::Upto { collector, upto });
    }
}

/// Cache insight's closing counts: into the last window when the run is
/// made of folded windows (it is folded in after), else into the run and
/// that window.
fn finish_insight(
    i: &mut Insight,
    folding: &Folding,
    run: &mut Tables,
    open: &mut VecDeque<(Ts, Tables)>,
) {
    match open.back_mut() {
        Some((start, last)) if folding.pending(*start) => i.finish(last, None),
        last => i.finish(run, last.map(|(_, t)| t)),
    }
}

/// What applying a record touches, for one run of records in order.
struct Apply<'a> {
    cfg: &'a CollectorConfig,
    /// Per-window tables are kept (and sent).
    windows: bool,
    /// Records go to their window's tables only, until it is synced
    /// (`FOLD_FROM_NS`, `Folding`).
    folding: &'a mut Folding,
    memo: &'a mut FamilyMemo,
    open: &'a mut VecDeque<(Ts, Tables)>,
    insight: Option<&'a mut Insight>,
    ahead: &'a mut KeyAhead,
}

impl Apply<'_> {
    /// Applies `n` records in order, record `i` being `at(i)`: the run's
    /// tables, its window's, and insight, with the key table's and
    /// insight's lookups started ahead.
    fn records<'b>(
        &mut self,
        run: &mut Tables,
        n: usize,
        at: impl Fn(usize) -> (&'b RecordBatch, &'b BRec) + Copy,
    ) {
        if !self.folding.on {
            self.in_order(run, n, at);
            return;
        }
        let window_ns = self.cfg.window_ns;
        let mut i = 0;
        while i < n {
            let start = window_start(at(i).1.seen, window_ns);
            let mut j = i + 1;
            while j < n && window_start(at(j).1.seen, window_ns) == start {
                j += 1;
            }
            let w = window_index(self.open, start, &self.cfg.limits);
            while i < j {
                if !self.folding.pending(start) {
                    self.in_order(run, j - i, |k| at(i + k));
                    break;
                }
                // A record adds at most one key, client and family: this
                // many fit without an eviction.
                let t = &self.open[w].1;
                let room = [
                    t.keys.capacity() - t.keys.len(),
                    t.clients.capacity() - t.clients.len(),
                    t.families.capacity() - t.families.len(),
                ]
                .into_iter()
                .min()
                .unwrap_or(0);
                if room == 0 {
                    run.fold(t);
                    self.folding.synced.push(start);
                    continue;
                }
                let m = room.min(j - i);
                // As if the window's tables were the run's, with no
                // windows.
                let mut none = VecDeque::new();
                let mut off = Folding::new(false);
                let mut span = Apply {
                    cfg: self.cfg,
                    windows: false,
                    folding: &mut off,
                    memo: &mut *self.memo,
                    open: &mut none,
                    insight: self.insight.as_deref_mut(),
                    ahead: &mut *self.ahead,
                };
                span.in_order(&mut self.open[w].1, m, |k| at(i + k));
                i += m;
            }
            i = j;
        }
    }

    /// [`records`](Self::records) into `run` and, without fold, into
    /// their windows.
    fn in_order<'b>(
        &mut self,
        run: &mut Tables,
        n: usize,
        at: impl Fn(usize) -> (&'b RecordBatch, &'b BRec) + Copy,
    ) {
        // Out of `self` while the closure borrows `self`.
        let mut ahead = std::mem::take(self.ahead);
        let mut wins = std::mem::take(&mut ahead.window_hashes);
        wins.clear();
        if self.windows {
            wins.extend((0..n).map(|i| {
                let (b, r) = at(i);
                let key = b.key(r).filter(|_| !r.echo)?;
                let start = window_start(r.seen, self.cfg.window_ns);
                let at = self.open.iter().position(|(s, _)| *s == start)?;
                Some((at, start, self.open[at].1.keys.hash_key(key)))
            }));
        }
        ahead.run_over(run, n, at, |run, idx, key_hash| {
            let (b, r) = at(idx);
            let get = |k: usize| (k < n).then(|| at(k).1);
            if !wins.is_empty() {
                self.prefetch_window(&wins, idx);
            }
            let win_hash = wins.get(idx).copied().flatten();
            self.one(
                run,
                b,
                r,
                key_hash,
                win_hash,
                get(idx + insight::FAR),
                get(idx + insight::NEAR),
            );
        });
        ahead.window_hashes = wins;
        *self.ahead = ahead;
        if let Some(i) = self.insight.as_deref_mut() {
            i.end_batch(run, self.open);
        }
    }

    /// The window tables' part of `KeyAhead`, for the records ahead of
    /// record `idx`: the same three steps, the same distances.
    #[inline(always)]
    fn prefetch_window(&self, wins: &[Option<(usize, Ts, u64)>], idx: usize) {
        // A window opened by the batch may have moved the others: the
        // start is checked where the window was.
        let table = |k: usize| {
            let (at, start, h) = wins.get(k).copied().flatten()?;
            let (_, t) = self.open.get(at).filter(|(s, _)| *s == start)?;
            Some((&t.keys, h))
        };
        if let Some((keys, h)) = table(idx + KeyAhead::FAR) {
            keys.prefetch_index(h);
        }
        if let Some((keys, h)) = table(idx + KeyAhead::MID) {
            keys.prefetch_item(h);
        }
        if let Some((keys, h)) = table(idx + KeyAhead::NEAR) {
            keys.prefetch_key(h);
        }
    }

    /// Applies one record of a batch (`win_hash`: its window and the key's
    /// hash in that window's table, when made ahead; `far` and `near`: the
    /// records insight looks ahead to).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn one(
        &mut self,
        run: &mut Tables,
        b: &RecordBatch,
        r: &BRec,
        key_hash: Option<u64>,
        win_hash: Option<(usize, Ts, u64)>,
        far: Option<&BRec>,
        near: Option<&BRec>,
    ) {
        // The family is found once a record, for every table; a key the
        // table holds remembers its own. So the key is counted first.
        let (fam_id, key_slot) = match (self.cfg.families.as_deref(), b.key(r)) {
            (Some(rules), Some(key)) if !r.echo => {
                let h = key_hash.unwrap_or_else(|| run.keys.hash_key(key));
                let slot = run.keys.update_at(key, h, 1);
                let k = &mut run.keys.at_mut(slot).stats;
                let id = rules.family_id(key, k.family, self.memo);
                k.family = FamilyMemo::memo(id);
                (id, Some(slot))
            }
            _ => (0, None),
        };
        let fam = self.memo.name(fam_id);
        let added = run.add_hashed(b, r, fam, key_hash, key_slot);
        let mut win_added = Added::default();
        if self.windows && !r.echo {
            // The window found ahead, unless a window the batch opened
            // moved it; else found (or opened) now.
            let ahead = win_hash.filter(|&(at, s, _)| self.open.get(at).is_some_and(|w| w.0 == s));
            let (t, h) = match ahead {
                Some((at, _, h)) => (&mut self.open[at].1, Some(h)),
                None => {
                    let start = window_start(r.seen, self.cfg.window_ns);
                    (window_tables(self.open, start, &self.cfg.limits), None)
                }
            };
            win_added = t.add_hashed(b, r, fam, h, None);
        }
        if let Some(i) = self.insight.as_deref_mut() {
            i.prefetch_ahead(far, near);
            let window_ns = if self.windows { self.cfg.window_ns } else { 0 };
            let win = insight_window(self.cfg.limits, window_ns);
            let added = [added, win_added];
            i.apply_record(b, r, fam, added, run, self.open, window_ns, win);
        }
    }
}

/// Hands a processed batch back to worker `w`, emptied (dropped when its
/// recycle channel is full or gone).
fn give_back(recycle: &[Sender<RecordBatch>], w: usize, mut b: RecordBatch) {
    b.clear();
    if let Some(tx) = recycle.get(w) {
        let _ = tx.try_send(b);
    }
}

/// No batch (in [`Held::next`]).
const NONE: usize = usize::MAX;

/// The batches held for the merge, in the order they came, and where each
/// worker's next record to apply is. At most `hold_batches` of them: a
/// worker whose watermark stands still (records all resolved at one
/// packet time, as a flood of unanswered requests given up together)
/// would otherwise hold every other worker's batches, past the memory
/// the pipeline was sized for.
struct Held {
    batches: Vec<RecordBatch>,
    /// Per worker: its next record, as (index in `batches`, record);
    /// the index is `NONE` when it has none held.
    next: Vec<(usize, usize)>,
    /// The merge's scratch: the records to apply, as (batch, record),
    /// and each worker's next time.
    order: Vec<(u32, u32)>,
    heads: Vec<(Ts, u64)>,
    /// The records a batch holds when full.
    batch_records: usize,
}

impl Held {
    fn new(workers: usize, batch_records: usize) -> Held {
        Held {
            batch_records,
            batches: Vec::new(),
            next: vec![(NONE, 0); workers],
            order: Vec::new(),
            heads: Vec::new(),
        }
    }

    /// Holds `b`, from worker `w`. A small batch (a heartbeat's, a few
    /// records) goes into the room left in `w`'s last batch still held,
    /// and comes back to be recycled: what is held is then about as many
    /// batches as records fill, however often the workers send.
    fn hold(&mut self, w: usize, b: RecordBatch) -> Option<RecordBatch> {
        if self.next[w].0 == NONE {
            self.next[w] = (self.batches.len(), 0);
        } else if let Some(last) = self.batches.iter_mut().rev().find(|x| x.worker == w) {
            // Behind the worker's place (which is at or before its last
            // batch), so its records keep their order.
            if last.absorb(&b, self.batch_records) {
                return Some(b);
            }
        }
        self.batches.push(b);
        None
    }

    /// Moves worker `w`'s place past used-up (and empty) batches.
    fn settle(&mut self, w: usize) {
        let (mut k, mut i) = self.next[w];
        while k < self.batches.len() && i >= self.batches[k].recs.len() {
            k += 1;
            i = 0;
            while k < self.batches.len() && self.batches[k].worker != w {
                k += 1;
            }
        }
        self.next[w] = if k < self.batches.len() {
            (k, i)
        } else {
            (NONE, 0)
        };
    }

    /// The time and frame of worker `w`'s next record when it is below
    /// `low` (as `below` says), else MAX.
    fn head(&mut self, w: usize, below: impl Fn(Ts) -> bool) -> (Ts, u64) {
        self.settle(w);
        match self.next[w] {
            (NONE, _) => (Ts::MAX, 0),
            (k, i) => {
                let r = &self.batches[k].recs[i];
                if below(r.seen) {
                    (r.seen, r.frame)
                } else {
                    (Ts::MAX, 0)
                }
            }
        }
    }

    /// Applies, in packet-time order, every held record resolved before
    /// `low` (every one if `None`), then hands the batches used up back
    /// to their workers.
    fn release(
        &mut self,
        low: Option<Ts>,
        apply: &mut Apply,
        run: &mut Tables,
        recycle: &[Sender<RecordBatch>],
    ) {
        let below = |seen: Ts| low.is_none_or(|l| seen < l);
        self.order.clear();
        // Each worker's next record's (time, frame), or MAX when it has
        // none below `low`; the earliest goes next (then the one read
        // first: the order one worker would have made them in).
        let mut heads = std::mem::take(&mut self.heads);
        heads.clear();
        for w in 0..self.next.len() {
            let h = self.head(w, below);
            heads.push(h);
        }
        loop {
            let mut w = 0;
            for (x, &h) in heads.iter().enumerate().skip(1) {
                if h < heads[w] {
                    w = x;
                }
            }
            if heads[w].0 == Ts::MAX {
                break;
            }
            let (k, i) = &mut self.next[w];
            self.order.push((*k as u32, *i as u32));
            *i += 1;
            // Mostly the next record of the same batch.
            heads[w] = match self.batches[*k].recs.get(*i) {
                Some(r) if below(r.seen) => (r.seen, r.frame),
                Some(_) => (Ts::MAX, 0),
                None => self.head(w, below),
            };
        }
        self.heads = heads;
        if !self.order.is_empty() {
            let (batches, order) = (&self.batches, &self.order);
            apply.records(run, order.len(), |j| {
                let (k, i) = order[j];
                let b = &batches[k as usize];
                (b, &b.recs[i as usize])
            });
        }
        // The batches behind their worker's place are used up: back to
        // their workers; the others move up, in order.
        let mut keep = 0;
        for k in 0..self.batches.len() {
            let w = self.batches[k].worker;
            let used = match self.next[w] {
                (NONE, _) => true,
                (at, _) => k < at,
            };
            if used {
                continue;
            }
            if self.next[w].0 == k {
                self.next[w].0 = keep;
            }
            self.batches.swap(keep, k);
            keep += 1;
        }
        for b in self.batches.drain(keep..) {
            give_back(recycle, b.worker, b);
        }
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
