//! The writer thread: closed intervals go to the database in batched
//! transactions. `submit` never blocks: an interval waits in a bounded
//! queue, and when the queue is full (the database is slow or down) it is
//! appended to a spool file, which the thread drains once the database
//! answers again. The backlog (intervals submitted, not yet committed) is a
//! figure the caller can export.
//!
//! Spool file: `<spool_dir>/memtap-spool-<sniffer>-<store>.jsonl`, where
//! `<store>` is a hash of the store's identity (its URL without the
//! password). The first line names the store and the id it was given when
//! created (`memtap_meta.store_id`); then one JSON item a line. A spool
//! whose id is not this store's (the database was re-created, or a file was
//! copied) is set aside as `….foreign-<id>`, never written here. The thread
//! renames the spool to `….taking` before reading, and deletes that only
//! after the items are committed, so a crash at any point leaves every item
//! on disk; a later writer for the same store and sniffer picks both files
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
    /// How long `finish` keeps trying to write (an unavailable or hung
    /// database) before it leaves the rest in the spool file (for the next
    /// writer): `store.flush_timeout`.
    pub retry_for: Duration,
    /// Fine intervals older than this (packet time, behind the newest
    /// written) are deleted once their rollup exists, whole rollup buckets
    /// at a time; reports then read the rollup for those buckets. 0 keeps
    /// them forever.
    pub keep_fine_ns: u64,
    /// Most bytes of the spool file; past it items are shed (counted).
    pub spool_max: u64,
    /// Start even when the database cannot be reached now (live capture:
    /// intervals spool until it answers). A bad URL still fails.
    pub start_offline: bool,
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
            spool_max: 256 << 20,
            start_offline: false,
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

/// A spool file's first line: whose items follow.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct SpoolHeader {
    memtap_spool: u32,
    store: String,
    /// `None`: spooled before this process ever reached the store; it is
    /// the same URL, so the items are taken by the store found there.
    store_id: Option<String>,
    sniffer: String,
}

/// A store's identity as spool files name it: the URL without any
/// password, a SQLite path made absolute.
pub fn identity(url: &StoreUrl) -> String {
    match url {
        StoreUrl::Sqlite(p) => {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let canon = match (abs.parent(), abs.file_name()) {
                (Some(d), Some(f)) => d.canonicalize().map(|d| d.join(f)).unwrap_or(abs),
                _ => abs,
            };
            format!("sqlite:{}", canon.display())
        }
        StoreUrl::Postgres(u) => {
            let Some(a) = u.find("://") else {
                return u.clone();
            };
            match u[a + 3..].rfind('@').map(|b| a + 3 + b) {
                Some(b) => {
                    let user = &u[a + 3..b];
                    let user = user.split(':').next().unwrap_or("");
                    format!("{}://{user}@{}", &u[..a], &u[b + 1..])
                }
                None => u.clone(),
            }
        }
    }
}

/// FNV-1a, 64 bits: a stable short name for a store identity.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The store's creation id, made on first use (a store made by an older
/// memtap gets one now).
pub fn store_id(db: &mut dyn Db) -> Result<String> {
    let rows = db.query("SELECT value FROM memtap_meta WHERE name = 'store_id'", &[])?;
    if let Some(r) = rows.first() {
        return Ok(r[0].text());
    }
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let id = format!(
        "{:016x}{:08x}",
        u64::from_le_bytes(b) ^ now,
        std::process::id()
    );
    db.exec(
        "INSERT INTO memtap_meta (name, value) VALUES ('store_id', $1)",
        &[id.as_str().into()],
    )?;
    // Another writer may have made one at the same moment: theirs or ours,
    // whichever the database kept.
    let rows = db.query("SELECT value FROM memtap_meta WHERE name = 'store_id'", &[])?;
    Ok(rows.first().map(|r| r[0].text()).unwrap_or(id))
}

struct Shared {
    backlog: AtomicU64,
    lost: AtomicU64,
    /// Items not spooled because the spool file was at `spool_max`.
    shed: AtomicU64,
    /// Items of another store's spool set aside.
    foreign: AtomicU64,
    /// Items the thread took from the queue and has not yet written or
    /// spooled (what a hung database call may take down with it).
    in_hand: AtomicU64,
    /// Set by `finish`: from then on the writer gives up at `deadline`.
    closing: std::sync::atomic::AtomicBool,
    deadline: Mutex<Option<Instant>>,
    spool: Mutex<()>,
    spool_path: PathBuf,
    spool_max: u64,
    store: String,
    sniffer: String,
    store_id: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    /// When the current outage started.
    down_since: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn taking_path(&self) -> PathBuf {
        let mut p = self.spool_path.clone().into_os_string();
        p.push(".taking");
        p.into()
    }

    /// Where the id of the store last reached at this address is kept, so
    /// that a writer starting while it is down still marks its spool with
    /// the store it was meant for.
    fn id_path(&self) -> PathBuf {
        let name = self
            .spool_path
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .replace("memtap-spool-", "memtap-store-")
            })
            .unwrap_or_default();
        self.spool_path.with_file_name(name).with_extension("id")
    }

    fn set_store_id(&self, id: String) {
        if lock(&self.store_id).as_deref() != Some(id.as_str()) {
            let _ = std::fs::write(self.id_path(), &id);
            *lock(&self.store_id) = Some(id);
        }
    }

    fn spool_bytes(&self) -> u64 {
        [self.spool_path.clone(), self.taking_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Appends items; those past `spool_max` are shed (counted, and taken
    /// off the backlog). Returns how many were shed.
    fn append(&self, items: &[Item]) -> Result<u64> {
        let _g = lock(&self.spool);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spool_path)
            .with_context(|| format!("spool file {}", self.spool_path.display()))?;
        let mut size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut w = std::io::BufWriter::new(f);
        if size == 0 {
            let h = SpoolHeader {
                memtap_spool: 1,
                store: self.store.clone(),
                store_id: lock(&self.store_id).clone(),
                sniffer: self.sniffer.clone(),
            };
            let line = serde_json::to_string(&h)? + "\n";
            w.write_all(line.as_bytes())?;
            size += line.len() as u64;
        }
        let mut shed = 0;
        for i in items {
            let line = serde_json::to_string(i)? + "\n";
            if size + line.len() as u64 > self.spool_max {
                shed += 1;
                continue;
            }
            w.write_all(line.as_bytes())?;
            size += line.len() as u64;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        if shed > 0 {
            if self.shed.fetch_add(shed, Ordering::Relaxed) == 0 {
                eprintln!(
                    "memtap: error: store {}: the spool file {} is full ({} bytes, store.spool_max): \
                     intervals are shed from now on (memtap_store_shed_total)",
                    self.store,
                    self.spool_path.display(),
                    self.spool_max
                );
            }
            self.backlog.fetch_sub(shed, Ordering::Relaxed);
        }
        Ok(shed)
    }

    /// Items on disk for this store: a `.taking` file left over, else the
    /// spool file (renamed to `.taking` first). A file of another store
    /// (its id differs from the one `id` names) is set aside, counted.
    fn take(&self, id: &str) -> Vec<Item> {
        let taking = self.taking_path();
        if !taking.exists() {
            let _g = lock(&self.spool);
            if std::fs::rename(&self.spool_path, &taking).is_err() {
                return Vec::new();
            }
        }
        let (h, items) = read_spool(&taking);
        if let Some(other) = h.and_then(|h| h.store_id).filter(|o| o != id) {
            let mut aside = self.spool_path.clone().into_os_string();
            aside.push(format!(".foreign-{other}"));
            let _ = std::fs::rename(&taking, &aside);
            self.foreign
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            self.backlog
                .fetch_sub(items.len() as u64, Ordering::Relaxed);
            eprintln!(
                "memtap: warning: store {}: {} spooled items belong to an earlier store at this \
                 address (id {other}, this one is {id}); not written, kept in {}",
                self.store,
                items.len(),
                std::path::Path::new(&aside).display()
            );
            return Vec::new();
        }
        items
    }

    fn outage(&self, e: &anyhow::Error) {
        let mut since = lock(&self.down_since);
        if since.is_none() {
            *since = Some(Instant::now());
            eprintln!(
                "memtap: warning: store {} unreachable: {e:#}; intervals wait in the queue and {}",
                self.store,
                self.spool_path.display()
            );
        }
        *lock(&self.last_error) = Some(format!("{e:#}"));
    }

    fn reachable(&self) {
        if let Some(t) = lock(&self.down_since).take() {
            eprintln!(
                "memtap: store {} reachable again after {:.1} s",
                self.store,
                t.elapsed().as_secs_f64()
            );
        }
        *lock(&self.last_error) = None;
    }
}

fn read_spool(p: &std::path::Path) -> (Option<SpoolHeader>, Vec<Item>) {
    let Ok(f) = std::fs::File::open(p) else {
        return (None, Vec::new());
    };
    let mut lines = std::io::BufReader::new(f).lines().map_while(|l| l.ok());
    let header = lines
        .next()
        .and_then(|l| serde_json::from_str::<SpoolHeader>(&l).ok());
    // A line cut by a crash is not an item; its interval was also still
    // in memory then, so nothing committed is lost.
    let items = lines
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    (header, items)
}

/// Writes closed intervals to a store from its own thread.
pub struct Writer {
    tx: Option<Sender<Item>>,
    /// The queue's other end, to spool what the thread did not take when
    /// it does not finish in time.
    rx: Receiver<Item>,
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

fn open_with_id(url: &StoreUrl, want: Intervals) -> Result<(Box<dyn Db>, String)> {
    let (mut db, _) = open(url, Some(want))?;
    let id = store_id(db.as_mut()).map_err(|e| anyhow!("store {url}: {e:#}"))?;
    Ok((db, id))
}

/// The spool file a writer for this store and sniffer uses.
pub fn spool_path(spool_dir: &std::path::Path, url: &StoreUrl, sniffer: &str) -> PathBuf {
    let safe: String = sniffer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    spool_dir.join(format!(
        "memtap-spool-{safe}-{:016x}.jsonl",
        fnv(&identity(url))
    ))
}

/// What a writer's figures are, read from any thread.
#[derive(Clone)]
pub struct WriterStats(Arc<Shared>);

impl WriterStats {
    pub fn backlog(&self) -> u64 {
        self.0.backlog.load(Ordering::Relaxed)
    }
    /// Items that could be neither queued nor spooled.
    pub fn lost(&self) -> u64 {
        self.0.lost.load(Ordering::Relaxed)
    }
    /// Items shed at the spool's bound.
    pub fn shed(&self) -> u64 {
        self.0.shed.load(Ordering::Relaxed)
    }
    /// Items of another store's spool set aside (not written).
    pub fn foreign(&self) -> u64 {
        self.0.foreign.load(Ordering::Relaxed)
    }
    pub fn spool_bytes(&self) -> u64 {
        self.0.spool_bytes()
    }
    /// While the store cannot be written: why, for `/healthz`.
    pub fn problem(&self) -> Option<String> {
        let e = lock(&self.0.last_error).clone()?;
        Some(format!(
            "store {} unreachable: {e}; backlog {} intervals, spool {} bytes",
            self.0.store,
            self.backlog(),
            self.spool_bytes()
        ))
    }
}

impl Writer {
    /// Opens the store (failing if it cannot be opened now, unless
    /// `start_offline`, so a wrong URL is caught at start) and starts the
    /// writer thread. Outages after that are ridden out through the queue
    /// and the spool file.
    pub fn spawn(url: &str, opts: StoreOptions) -> Result<Writer> {
        let url: StoreUrl = url.parse()?;
        anyhow::ensure!(!opts.sniffer.is_empty(), "the sniffer name is empty");
        let want = Intervals {
            fine_ns: opts.fine_ns,
            rollup_ns: opts.rollup_ns,
        };
        if let StoreUrl::Sqlite(p) = &url {
            check_writable_dir(p, "store")?;
        }
        std::fs::create_dir_all(&opts.spool_dir)
            .with_context(|| format!("spool directory {}", opts.spool_dir.display()))?;
        check_writable_dir(&opts.spool_dir.join("x"), "spool")?;
        let shared = Arc::new(Shared {
            backlog: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            in_hand: AtomicU64::new(0),
            closing: Default::default(),
            deadline: Mutex::new(None),
            spool: Mutex::new(()),
            spool_path: spool_path(&opts.spool_dir, &url, &opts.sniffer),
            spool_max: opts.spool_max,
            store: identity(&url),
            sniffer: opts.sniffer.clone(),
            store_id: Mutex::new(None),
            last_error: Mutex::new(None),
            down_since: Mutex::new(None),
        });
        // Only an unreachable database is ridden out from the start; one
        // that answers with a wrong schema or interval lengths is refused.
        let db = match db::connect(&url) {
            Ok(mut db) => {
                schema::migrate(db.as_mut(), Some(want))
                    .map_err(|e| anyhow!("store {url}: {e:#}"))?;
                let id = store_id(db.as_mut()).map_err(|e| anyhow!("store {url}: {e:#}"))?;
                shared.set_store_id(id);
                Some(db)
            }
            Err(e) if opts.start_offline => {
                if let Ok(id) = std::fs::read_to_string(shared.id_path()) {
                    *lock(&shared.store_id) = Some(id.trim().to_string());
                }
                shared.outage(&e);
                None
            }
            Err(e) => return Err(e),
        };
        // What a previous run left behind counts as backlog.
        let left =
            read_spool(&shared.taking_path()).1.len() + read_spool(&shared.spool_path).1.len();
        shared.backlog.store(left as u64, Ordering::Relaxed);
        let (tx, rx) = bounded(opts.queue_len.max(1));
        let sh = shared.clone();
        let o = opts.clone();
        let thread_rx = rx.clone();
        let handle = std::thread::Builder::new()
            .name("memtap-store".into())
            .spawn(move || run(url, want, db, thread_rx, sh, o))
            .context("spawn the store writer thread")?;
        Ok(Writer {
            tx: Some(tx),
            rx,
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

    /// The writer's figures, readable after `finish` too.
    pub fn stats(&self) -> WriterStats {
        WriterStats(self.shared.clone())
    }

    /// The last database error, while the backlog waits on it.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// The spool file this writer falls back to.
    pub fn spool_path(&self) -> &std::path::Path {
        &self.shared.spool_path
    }

    /// Writes everything submitted, computes the rollups, and stops, within
    /// `retry_for`; what is left then waits in the spool file (an error
    /// saying so). A database that hangs does not hold the caller: past
    /// the deadline the queue is spooled from here.
    pub fn finish(mut self) -> Result<()> {
        let deadline = Instant::now() + self.opts.retry_for;
        *lock(&self.shared.deadline) = Some(deadline);
        self.shared.closing.store(true, Ordering::Relaxed);
        drop(self.tx.take());
        let Some(h) = self.handle.take() else {
            return Ok(());
        };
        // The thread's own give-up is at the deadline; a moment more for it
        // to spool and return.
        let hard = deadline + Duration::from_secs(1);
        while !h.is_finished() && Instant::now() < hard {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            return match h.join() {
                Ok(r) => r,
                Err(_) => Err(anyhow!("the store writer thread panicked")),
            };
        }
        // Hung in a database call: spool what it has not taken; the batch
        // in its hands is written by it or not at all (counted lost).
        let rest: Vec<Item> = self.rx.try_iter().collect();
        let n = rest.len() as u64;
        if let Err(e) = self.shared.append(&rest) {
            self.shared.lost.fetch_add(n, Ordering::Relaxed);
            return Err(anyhow!(
                "store {}: {n} intervals lost: {e:#}",
                self.shared.store
            ));
        }
        let in_hand = self.shared.in_hand.load(Ordering::Relaxed);
        self.shared.lost.fetch_add(in_hand, Ordering::Relaxed);
        Err(anyhow!(
            "store {}: the database did not answer within store.flush_timeout ({:?}); {n} items wait in {} for the next run, {in_hand} in flight may be lost",
            self.shared.store,
            self.opts.retry_for,
            self.shared.spool_path.display()
        ))
    }
}

/// The directory a file will be made in exists (or can be made) and can be
/// written: checked at start, not found out hours later.
pub fn check_writable_dir(file: &std::path::Path, what: &str) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dir.is_file() {
        anyhow::bail!(
            "{what} directory {}: is a file, not a directory",
            dir.display()
        );
    }
    if !dir.exists() {
        anyhow::bail!("{what} directory {}: no such directory", dir.display());
    }
    // Made and removed: permissions, a read-only mount and a full inode
    // table all show up here (access(2) would miss the last two).
    let probe = dir.join(format!(".memtap-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => anyhow::bail!("{what} directory {}: not writable: {e}", dir.display()),
    }
    Ok(())
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        lock(&self.shared.deadline).get_or_insert(Instant::now() + self.opts.retry_for);
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

const BATCH: usize = 32;
/// How often an idle writer checks that its database still answers.
const PING: Duration = Duration::from_secs(1);

fn run(
    url: StoreUrl,
    want: Intervals,
    db: Option<Box<dyn Db>>,
    rx: Receiver<Item>,
    sh: Arc<Shared>,
    o: StoreOptions,
) -> Result<()> {
    let mut db = db;
    let mut pending: Vec<Item> = Vec::new();
    let mut from_spool = false;
    let mut closed = false;
    let mut backoff = Duration::from_millis(50);
    let mut last_ping = Instant::now();
    // Rollup buckets with new fine intervals, and the latest fine start.
    let mut touched: BTreeSet<u64> = BTreeSet::new();
    let mut newest = 0u64;
    let past_deadline = |sh: &Shared| {
        sh.closing.load(Ordering::Relaxed)
            && lock(&sh.deadline).is_some_and(|d| Instant::now() >= d)
    };
    loop {
        let err = if db.is_none() {
            match open_with_id(&url, want) {
                Ok((d, id)) => {
                    // Reachable once a write (or a ping) succeeds: a
                    // locked or full SQLite file opens fine.
                    sh.set_store_id(id);
                    db = Some(d);
                    None
                }
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let r = match err {
            Some(e) => Err(e),
            None => {
                if pending.is_empty() {
                    let id = lock(&sh.store_id).clone().unwrap_or_default();
                    pending = sh.take(&id);
                    from_spool = !pending.is_empty();
                }
                if pending.is_empty() {
                    if closed {
                        break;
                    }
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(i) => pending.push(i),
                        Err(RecvTimeoutError::Timeout) => {
                            // Idle: a database that went away shows in
                            // /healthz now, not at the next window.
                            if last_ping.elapsed() >= PING {
                                last_ping = Instant::now();
                                let d = db.as_mut().expect("connected above");
                                match d.query("SELECT 1", &[]) {
                                    Ok(_) => sh.reachable(),
                                    Err(e) => {
                                        sh.outage(&e);
                                        db = None;
                                    }
                                }
                            }
                            continue;
                        }
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
                    sh.in_hand.store(pending.len() as u64, Ordering::Relaxed);
                }
                closed |= sh.closing.load(Ordering::Relaxed) && rx.is_empty();
                let d = db.as_mut().expect("connected above");
                write_batch(d.as_mut(), &pending, &o)
            }
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
                sh.in_hand.store(0, Ordering::Relaxed);
                if from_spool {
                    let _ = std::fs::remove_file(sh.taking_path());
                    from_spool = false;
                }
                sh.reachable();
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
                sh.outage(&e);
                db = None;
                if past_deadline(&sh) {
                    // Leave everything for the next writer of this store.
                    let mut rest: Vec<Item> = if from_spool {
                        // Already on disk in the `.taking` file.
                        pending.clear();
                        Vec::new()
                    } else {
                        std::mem::take(&mut pending)
                    };
                    rest.extend(rx.try_iter());
                    if let Err(ae) = sh.append(&rest) {
                        sh.lost.fetch_add(rest.len() as u64, Ordering::Relaxed);
                        return Err(anyhow!(
                            "store {}: {} intervals lost: {ae:#} (the store: {e:#})",
                            sh.store,
                            rest.len()
                        ));
                    }
                    return Err(anyhow!(
                        "store {}: {} intervals not written ({e:#}); they wait in {} for the next run",
                        sh.store,
                        sh.backlog.load(Ordering::Relaxed),
                        sh.spool_path.display()
                    ));
                }
                // While the database is away, the queue fills and
                // `submit` spills to the spool file; nothing waits here
                // but this thread.
                let cap = if sh.closing.load(Ordering::Relaxed) {
                    Duration::from_millis(200)
                } else {
                    Duration::from_secs(2)
                };
                // In slices: `finish` shortens the wait to the close's pace.
                let until = Instant::now() + backoff.min(cap);
                while Instant::now() < until && !past_deadline(&sh) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                backoff = (backoff * 2).min(cap);
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
