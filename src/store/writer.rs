//! The writer thread: closed intervals go to the database in batched
//! transactions. `submit` never blocks: an interval waits in a bounded
//! queue, and when the queue is full (the database is slow or down) it is
//! appended to a spool file, which the thread drains once the database
//! answers again. The backlog (intervals submitted, not yet committed) is a
//! figure the caller can export.
//!
//! Spool file: `<spool_dir>/memtap-spool-<sniffer>.jsonl`, one JSON item a
//! line. The thread renames it to `….taking` before reading, and deletes
//! that only after the items are committed, so a crash at any point leaves
//! every item on disk; a later writer for the same sniffer picks both files
//! up. Writing an item twice is harmless (an interval replaces itself).
//!
//! Live capture uses it like this (one writer per process):
//!
//! ```text
//! let w = store::Writer::spawn(url, StoreOptions { sniffer, store_top, fine_ns: window_ns,
//!                                                  rollup_ns, spool_dir, queue_len, ..Default::default() })?;
//! // each closed window, with that window's counter deltas:
//! w.submit(Interval { start, end, tables, counters });   // never blocks
//! gauge.set(w.backlog());                                // intervals not yet in the database
//! w.finish()?;                                           // at exit: flush, rollups, wait
//! ```

use super::db::{self, Db, StoreUrl, Value};
use super::schema::{self, Intervals};
use super::snapshot::{self, Filter, Snapshot};
use crate::collect::tables::Tables;
use crate::stats::Counters;
use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a writer stores what it is given.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// This sniffer's name (rows are keyed by sniffer, server, start).
    pub sniffer: String,
    /// Keys, clients and families kept per interval (0 = all), plus a
    /// remainder row each.
    pub store_top: usize,
    /// Fine interval (the window length), ns.
    pub fine_ns: u64,
    /// Rollup interval, ns (a whole multiple of `fine_ns`).
    pub rollup_ns: u64,
    /// Where the spool file lives.
    pub spool_dir: PathBuf,
    /// Intervals waiting in memory before they go to the spool file.
    pub queue_len: usize,
    /// How long `finish` keeps retrying an unavailable database before it
    /// leaves the rest in the spool file (for the next writer).
    pub retry_for: Duration,
    /// Fine intervals older than this (packet time, behind the newest
    /// written) are deleted once their rollup exists, whole rollup buckets
    /// at a time; reports then read the rollup for those buckets. 0 keeps
    /// them forever.
    pub keep_fine_ns: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sniffer: default_sniffer(),
            store_top: 0,
            fine_ns: 60_000_000_000,
            rollup_ns: 86_400_000_000_000,
            spool_dir: std::env::temp_dir(),
            queue_len: 64,
            retry_for: Duration::from_secs(30),
            keep_fine_ns: 0,
        }
    }
}

/// The host name, the default sniffer name.
pub fn default_sniffer() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// One closed window.
pub struct Interval {
    pub start: u64,
    pub end: u64,
    pub tables: Tables,
    /// Health counters for this interval (deltas, not running totals).
    pub counters: Counters,
}

/// A capture's identity: its files and time span (shown by history
/// reports as the `capture` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRow {
    pub first_ns: u64,
    pub last_ns: u64,
    pub files: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum Item {
    Interval(Box<Snapshot>),
    Capture(CaptureRow),
    Event(super::events::EventRow),
}

struct Shared {
    backlog: AtomicU64,
    lost: AtomicU64,
    /// Set by `finish`: from then on an unavailable database is retried
    /// for `retry_for` only.
    closing: std::sync::atomic::AtomicBool,
    spool: Mutex<()>,
    spool_path: PathBuf,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn taking_path(&self) -> PathBuf {
        let mut p = self.spool_path.clone().into_os_string();
        p.push(".taking");
        p.into()
    }

    fn append(&self, items: &[Item]) -> Result<()> {
        let _g = self.spool.lock().unwrap_or_else(|e| e.into_inner());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spool_path)
            .with_context(|| format!("spool file {}", self.spool_path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for i in items {
            serde_json::to_writer(&mut w, i)?;
            w.write_all(b"\n")?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        Ok(())
    }

    /// Items on disk: a `.taking` file left over, else the spool file
    /// (renamed to `.taking` first).
    fn take(&self) -> Vec<Item> {
        let taking = self.taking_path();
        if !taking.exists() {
            let _g = self.spool.lock().unwrap_or_else(|e| e.into_inner());
            if std::fs::rename(&self.spool_path, &taking).is_err() {
                return Vec::new();
            }
        }
        read_items(&taking)
    }
}

fn read_items(p: &std::path::Path) -> Vec<Item> {
    let Ok(f) = std::fs::File::open(p) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        // A line cut by a crash is not an item; its interval was also
        // still in memory then, so nothing committed is lost.
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Writes closed intervals to a store from its own thread.
pub struct Writer {
    tx: Option<Sender<Item>>,
    shared: Arc<Shared>,
    opts: StoreOptions,
    handle: Option<std::thread::JoinHandle<Result<()>>>,
}

/// Opens a store and brings its schema up to date.
pub fn open(url: &StoreUrl, want: Option<Intervals>) -> Result<(Box<dyn Db>, Intervals)> {
    let mut db = db::connect(url)?;
    let iv = schema::migrate(db.as_mut(), want).map_err(|e| anyhow!("store {url}: {e:#}"))?;
    Ok((db, iv))
}

impl Writer {
    /// Opens the store (failing if it cannot be opened now, so a wrong URL
    /// is caught at start) and starts the writer thread. Outages after
    /// that are ridden out through the queue and the spool file.
    pub fn spawn(url: &str, opts: StoreOptions) -> Result<Writer> {
        let url: StoreUrl = url.parse()?;
        anyhow::ensure!(!opts.sniffer.is_empty(), "the sniffer name is empty");
        let want = Intervals {
            fine_ns: opts.fine_ns,
            rollup_ns: opts.rollup_ns,
        };
        let (db, _) = open(&url, Some(want))?;
        std::fs::create_dir_all(&opts.spool_dir)
            .with_context(|| format!("spool directory {}", opts.spool_dir.display()))?;
        let safe: String = opts
            .sniffer
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            backlog: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            closing: Default::default(),
            spool: Mutex::new(()),
            spool_path: opts.spool_dir.join(format!("memtap-spool-{safe}.jsonl")),
            last_error: Mutex::new(None),
        });
        // What a previous run left behind counts as backlog.
        let left = read_items(&shared.taking_path()).len() + read_items(&shared.spool_path).len();
        shared.backlog.store(left as u64, Ordering::Relaxed);
        let (tx, rx) = bounded(opts.queue_len.max(1));
        let sh = shared.clone();
        let o = opts.clone();
        let handle = std::thread::Builder::new()
            .name("memtap-store".into())
            .spawn(move || run(url, want, db, rx, sh, o))
            .context("spawn the store writer thread")?;
        Ok(Writer {
            tx: Some(tx),
            shared,
            opts,
            handle: Some(handle),
        })
    }

    fn send(&self, item: Item) {
        self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        let Some(tx) = &self.tx else { return };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                if let Err(e) = self.shared.append(&[item]) {
                    self.shared.lost.fetch_add(1, Ordering::Relaxed);
                    self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
                    eprintln!("memtap: error: store: an interval is lost: {e:#}");
                }
            }
        }
    }

    /// Queues a closed interval; never blocks (queue, then spool file).
    pub fn submit(&self, iv: Interval) {
        let snap = Snapshot::from_tables(
            &self.opts.sniffer,
            iv.start,
            iv.end,
            &iv.tables,
            &iv.counters,
            self.opts.store_top,
        );
        self.send(Item::Interval(Box::new(snap)));
    }

    /// Records a capture's files and time span (replay).
    pub fn submit_capture(&self, c: CaptureRow) {
        self.send(Item::Capture(c));
    }

    /// Records a trigger's firing or clearing.
    pub fn submit_event(&self, e: &crate::trigger::Event) {
        self.send(Item::Event(super::events::EventRow::of(
            &self.opts.sniffer,
            e,
        )));
    }

    /// Intervals (and capture rows) submitted and not yet committed.
    pub fn backlog(&self) -> u64 {
        self.shared.backlog.load(Ordering::Relaxed)
    }

    /// Items that could be neither queued nor spooled.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// The last database error, while the backlog waits on it.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The spool file this writer falls back to.
    pub fn spool_path(&self) -> &std::path::Path {
        &self.shared.spool_path
    }

    /// Writes everything submitted, computes the rollups, and stops.
    pub fn finish(mut self) -> Result<()> {
        self.shared.closing.store(true, Ordering::Relaxed);
        drop(self.tx.take());
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow!("the store writer thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

const BATCH: usize = 32;

fn run(
    url: StoreUrl,
    want: Intervals,
    db: Box<dyn Db>,
    rx: Receiver<Item>,
    sh: Arc<Shared>,
    o: StoreOptions,
) -> Result<()> {
    let mut db = Some(db);
    let mut pending: Vec<Item> = Vec::new();
    let mut from_spool = false;
    let mut closed = false;
    let mut give_up: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    // Rollup buckets with new fine intervals, and the latest fine start.
    let mut touched: BTreeSet<u64> = BTreeSet::new();
    let mut newest = 0u64;
    loop {
        if pending.is_empty() {
            pending = sh.take();
            from_spool = !pending.is_empty();
        }
        if pending.is_empty() {
            if closed {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(i) => pending.push(i),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    continue;
                }
            }
            while pending.len() < BATCH {
                match rx.try_recv() {
                    Ok(i) => pending.push(i),
                    Err(_) => break,
                }
            }
        }
        closed |= sh.closing.load(Ordering::Relaxed) && rx.is_empty();
        let closing = sh.closing.load(Ordering::Relaxed);
        if closing && give_up.is_none() {
            give_up = Some(Instant::now() + o.retry_for);
        }
        let r = match db.as_mut() {
            Some(d) => write_batch(d.as_mut(), &pending, &o),
            None => match open(&url, Some(want)) {
                Ok((d, _)) => {
                    db = Some(d);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match r {
            Ok(()) => {
                for i in &pending {
                    if let Item::Interval(s) = i {
                        touched.insert(s.start - s.start % o.rollup_ns);
                        newest = newest.max(s.start);
                    }
                }
                sh.backlog
                    .fetch_sub(pending.len() as u64, Ordering::Relaxed);
                pending.clear();
                if from_spool {
                    let _ = std::fs::remove_file(sh.taking_path());
                    from_spool = false;
                }
                *sh.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                backoff = Duration::from_millis(50);
                // A bucket is closed once a fine interval past it arrived.
                // Rollups and retention wait while anything submitted is
                // still queued or spooled: a spilled interval is older
                // than those queued after it, and its bucket must not be
                // rolled up and pruned without it.
                let settled = sh.backlog.load(Ordering::Relaxed) == 0;
                let done: Vec<u64> = touched
                    .iter()
                    .copied()
                    .filter(|&b| settled && b + o.rollup_ns <= newest)
                    .collect();
                for b in done {
                    if let Some(d) = db.as_mut() {
                        if rollup(d.as_mut(), &o, b).is_ok() {
                            touched.remove(&b);
                        }
                    }
                }
                if let Some(d) = db.as_mut().filter(|_| settled) {
                    // A failed prune is retried after the next batch.
                    let _ = prune(d.as_mut(), &o, newest);
                }
            }
            Err(e) => {
                *sh.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
                db = None;
                if closing && give_up.is_some_and(|g| Instant::now() >= g) {
                    // Leave everything for the next writer of this sniffer.
                    let mut rest: Vec<Item> = std::mem::take(&mut pending);
                    rest.extend(rx.try_iter());
                    sh.append(&rest)?;
                    if from_spool {
                        let _ = std::fs::remove_file(sh.taking_path());
                    }
                    return Err(anyhow!(
                        "store {url}: {} intervals not written ({e:#}); they wait in {} for the next run",
                        sh.backlog.load(Ordering::Relaxed),
                        sh.spool_path.display()
                    ));
                }
                // While the database is away, the queue fills and
                // `submit` spills to the spool file; nothing waits here
                // but this thread.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    if let Some(d) = db.as_mut() {
        for b in touched {
            rollup(d.as_mut(), &o, b)?;
        }
        prune(d.as_mut(), &o, newest)?;
    }
    Ok(())
}

/// Retention: deletes this sniffer's fine intervals in rollup buckets
/// that ended `keep_fine_ns` or more before `newest` and have a rollup.
/// Whole buckets only, so a report takes each bucket either from its fine
/// intervals or from its rollup, never half of each.
fn prune(db: &mut dyn Db, o: &StoreOptions, newest: u64) -> Result<()> {
    if o.keep_fine_ns == 0 || newest < o.keep_fine_ns {
        return Ok(());
    }
    let cutoff = newest - o.keep_fine_ns;
    let buckets = db.query(
        "SELECT start_ns FROM intervals WHERE sniffer = $1 AND level = 1 AND start_ns + $2 <= $3 \
         AND EXISTS (SELECT 1 FROM intervals f WHERE f.sniffer = $1 AND f.level = 0 \
         AND f.start_ns >= intervals.start_ns AND f.start_ns < intervals.start_ns + $2)",
        &[o.sniffer.as_str().into(), o.rollup_ns.into(), cutoff.into()],
    )?;
    for b in buckets {
        let start = b[0].u64();
        db.batch("BEGIN")?;
        let r = snapshot::delete_range(db, &o.sniffer, 0, start, start + o.rollup_ns);
        match r {
            Ok(()) => db.batch("COMMIT")?,
            Err(e) => {
                let _ = db.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

fn write_batch(db: &mut dyn Db, items: &[Item], o: &StoreOptions) -> Result<()> {
    db.batch("BEGIN")?;
    let r = (|| -> Result<()> {
        for i in items {
            match i {
                Item::Interval(s) => {
                    let bucket = s.start - s.start % o.rollup_ns;
                    if let Some(r) = pruned_rollup(db, o, bucket)? {
                        // Retention already replaced this bucket's fine
                        // intervals by its rollup: a late one (windows
                        // closed out of order, or a store that caught up)
                        // is added to the rollup, not kept alone.
                        let merged = rollup_of(o, bucket, &[r, (**s).clone()]);
                        snapshot::write(db, &merged)?;
                        continue;
                    }
                    snapshot::write(db, s)?;
                    // Its rollup is stale now; it is made again when the
                    // bucket closes (or at finish).
                    snapshot::write_delete(db, &s.sniffer, 1, bucket)?;
                }
                Item::Event(e) => super::events::write(db, e)?,
                Item::Capture(c) => {
                    db.exec(
                        "DELETE FROM captures WHERE sniffer = $1 AND first_ns = $2",
                        &[o.sniffer.as_str().into(), c.first_ns.into()],
                    )?;
                    db.exec(
                        "INSERT INTO captures (sniffer, first_ns, last_ns, files) VALUES ($1, $2, $3, $4)",
                        &[
                            o.sniffer.as_str().into(),
                            c.first_ns.into(),
                            c.last_ns.into(),
                            Value::Text(serde_json::to_string(&c.files)?),
                        ],
                    )?;
                }
            }
        }
        Ok(())
    })();
    match r {
        Ok(()) => db.batch("COMMIT"),
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The rollup of `bucket` when retention has deleted its fine intervals
/// (a rollup and no fine row left), else `None`.
fn pruned_rollup(db: &mut dyn Db, o: &StoreOptions, bucket: u64) -> Result<Option<Snapshot>> {
    if o.keep_fine_ns == 0 {
        return Ok(None);
    }
    let read = |db: &mut dyn Db, level| {
        snapshot::read(
            db,
            &Filter {
                level,
                since: bucket,
                until: Some(bucket + o.rollup_ns),
                sniffers: vec![o.sniffer.clone()],
            },
        )
    };
    let mut rollups = read(db, 1)?;
    if rollups.is_empty() || !read(db, 0)?.is_empty() {
        return Ok(None);
    }
    Ok(rollups.pop())
}

/// The rollup snapshot of `bucket` folded from `parts` (fine intervals,
/// or an earlier rollup and late fine intervals).
fn rollup_of(o: &StoreOptions, bucket: u64, parts: &[Snapshot]) -> Snapshot {
    let f = snapshot::fold(parts);
    let mut s = Snapshot::from_tables(
        &o.sniffer,
        bucket,
        bucket + o.rollup_ns,
        &f.tables,
        &Counters::default(),
        o.store_top,
    );
    s.level = 1;
    s.fine_count = f.fine_count;
    for (e, v) in s.evictions.iter_mut().zip(f.evictions) {
        *e += v;
    }
    s.limits = [
        f.limits.max_keys as u64,
        f.limits.max_clients as u64,
        f.limits.max_families as u64,
    ];
    s.health = f.health.into_iter().filter(|(_, v)| *v > 0).collect();
    s
}

/// Makes the rollup of one bucket from its fine intervals.
fn rollup(db: &mut dyn Db, o: &StoreOptions, bucket: u64) -> Result<()> {
    let fine = snapshot::read(
        db,
        &Filter {
            level: 0,
            since: bucket,
            until: Some(bucket + o.rollup_ns),
            sniffers: vec![o.sniffer.clone()],
        },
    )?;
    if fine.is_empty() {
        return Ok(());
    }
    let s = rollup_of(o, bucket, &fine);
    db.batch("BEGIN")?;
    match snapshot::write(db, &s) {
        Ok(()) => db.batch("COMMIT"),
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}
