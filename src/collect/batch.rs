//! Records crossing from workers to collectors, in batches.
//!
//! A worker's `Batcher` is its `RecordSink`: it routes each record to the
//! collector that owns its key (a seeded-free, deterministic key hash, so
//! every key lives in exactly one collector) and copies the key into that
//! batch's byte arena — the one copy of a key between threads. Full
//! batches go over a bounded channel; empty ones come back over a recycle
//! channel, so the steady state allocates nothing.

use crate::decode::{Transport, Ts};
use crate::protocol::{Outcome, Proto};
use crate::session::{Record, RecordSink};
use crate::stats::{Counters, Warnings};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use std::net::SocketAddr;

/// A record with its key moved into the batch arena.
#[derive(Debug, Clone, Copy)]
pub struct BRec {
    pub ts: Ts,
    /// Packet time at which the worker resolved the record (it decides the
    /// window, so windows close on packet time alone).
    pub seen: Ts,
    /// The input frame the worker had reached then: among records resolved
    /// at one packet time by different workers, the one read first goes
    /// first when collectors merge them (so any number of workers applies
    /// records in the order one worker would).
    pub frame: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
    pub proto: Proto,
    pub command: &'static str,
    pub first: bool,
    key_off: u32,
    /// `u32::MAX`: no key.
    key_len: u32,
    /// `key_hash` of the key (0: no key), made once by the worker: the
    /// shard, the per-second key table and the cache insight all use it.
    pub key_hash: u64,
    pub result: Outcome,
    pub req_bytes: u64,
    pub exptime: Option<i32>,
    pub resp_bytes: u64,
    pub latency_ns: Option<u64>,
    /// A copy of a `flush_all` for a collector other than the one that
    /// counts it: only the cache-insight analysis reads it.
    pub echo: bool,
}

#[derive(Debug, Default)]
pub struct RecordBatch {
    pub worker: usize,
    /// Packet time the worker had reached when it sent the batch: every
    /// later record from that worker is resolved at or after it.
    pub watermark: Ts,
    pub recs: Vec<BRec>,
    pub keys: Vec<u8>,
    /// Set on the worker's last batches (the first collector gets the
    /// real totals, the others empty ones): the worker is done.
    pub last: Option<Box<WorkerTotals>>,
}

/// What a worker hands over when it finishes.
#[derive(Debug, Default, Clone)]
pub struct WorkerTotals {
    pub counters: Counters,
    pub warnings: Warnings,
}

impl RecordBatch {
    pub fn key(&self, r: &BRec) -> Option<&[u8]> {
        if r.key_len == u32::MAX {
            None
        } else {
            let s = r.key_off as usize;
            Some(&self.keys[s..s + r.key_len as usize])
        }
    }

    pub fn clear(&mut self) {
        self.recs.clear();
        self.keys.clear();
        self.last = None;
        self.watermark = 0;
    }

    /// Appends `o`'s records (their keys with them) when this batch then
    /// holds at most `max` records; false (and nothing done) otherwise.
    pub fn absorb(&mut self, o: &RecordBatch, max: usize) -> bool {
        if self.recs.len() + o.recs.len() > max {
            return false;
        }
        let base = self.keys.len() as u32;
        self.keys.extend_from_slice(&o.keys);
        self.recs.extend(o.recs.iter().map(|r| BRec {
            key_off: if r.key_len == u32::MAX {
                0
            } else {
                r.key_off + base
            },
            ..*r
        }));
        true
    }

    pub fn push(&mut self, r: &Record<'_>, seen: Ts) {
        self.push_as(r, (seen, 0), false, r.key.map_or(0, key_hash))
    }

    fn push_as(&mut self, r: &Record<'_>, (seen, frame): (Ts, u64), echo: bool, key_hash: u64) {
        let (key_off, key_len) = match r.key {
            Some(k) => {
                let off = self.keys.len() as u32;
                self.keys.extend_from_slice(k);
                (off, k.len() as u32)
            }
            None => (0, u32::MAX),
        };
        self.recs.push(BRec {
            ts: r.ts,
            seen,
            frame,
            client: r.client,
            server: r.server,
            transport: r.transport,
            proto: r.proto,
            command: r.command,
            first: r.first,
            key_off,
            key_len,
            key_hash,
            result: r.result,
            req_bytes: r.req_bytes,
            exptime: r.exptime,
            resp_bytes: r.resp_bytes,
            latency_ns: r.latency_ns,
            echo,
        });
    }
}

/// The key hash every stage after the worker uses: fixed-seeded, so stable
/// across runs and threads (a key always lands in the same collector and
/// the same insight set), and a word at a time (the byte-at-a-time FNV it
/// replaces was computed three times a record). Never 0, which means "no
/// key". Not a defence against crafted keys: a skewed shard only slows one
/// collector, and every table is bounded anyway.
#[inline]
pub fn key_hash(k: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x6d65_6d74_6170).hash_one(k) | 1
}

/// The collector of a key hash (0, no key: the first).
#[inline]
pub fn shard_of_hash(h: u64, shards: usize) -> usize {
    crate::decode::shard(h, shards)
}

pub fn shard_of(key: Option<&[u8]>, shards: usize) -> usize {
    key.map_or(0, |k| shard_of_hash(key_hash(k), shards))
}

/// What to do when a collector's channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// File replay: wait, never lose a record.
    Block,
    /// Live capture: drop the batch and count it, unless the worker may
    /// wait (its [`Patience`]).
    Drop,
}

/// Live capture: whether a worker may wait now for room in a collector's
/// channel rather than drop a record batch. True while the buffer in front
/// of the worker (its capture ring, or its packet channel) is under half
/// full: waiting then moves a burst into that buffer, which is far larger
/// than the channel, instead of losing it; past half, the worker drops
/// record batches and keeps its buffer draining, so that the kernel does
/// not drop packets (a lost packet also breaks its stream).
pub type Patience = Box<dyn Fn() -> bool + Send>;

/// How long a waiting worker waits before asking its [`Patience`] again.
const PATIENCE_SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// A worker's record sink: per-collector batches and their channels.
pub struct Batcher {
    worker: usize,
    cur: Vec<RecordBatch>,
    to: Vec<Sender<RecordBatch>>,
    spare: Receiver<RecordBatch>,
    batch_records: usize,
    mode: Backpressure,
    /// Packet time of the packet being processed (records resolved now).
    pub now: Ts,
    /// Its frame number (`BRec::frame`).
    pub frame: u64,
    pub dropped_batches: u64,
    pub dropped_records: u64,
    /// Batches that waited for room in their channel, and got it.
    pub waited_batches: u64,
    /// Time spent blocked on a full channel (`Backpressure::Block`): the
    /// worker waiting for a collector.
    pub blocked_ns: u64,
    patience: Option<Patience>,
    /// Send every batch, full or not, each `batch_records` records made
    /// (see [`Batcher::syncing`]); `made` counts them.
    sync: bool,
    made: usize,
}

impl Batcher {
    pub fn new(
        worker: usize,
        to: Vec<Sender<RecordBatch>>,
        spare: Receiver<RecordBatch>,
        batch_records: usize,
        mode: Backpressure,
    ) -> Batcher {
        let cur = (0..to.len())
            .map(|_| RecordBatch {
                worker,
                ..RecordBatch::default()
            })
            .collect();
        Batcher {
            worker,
            cur,
            to,
            spare,
            batch_records: batch_records.max(1),
            mode,
            now: 0,
            frame: 0,
            dropped_batches: 0,
            dropped_records: 0,
            waited_batches: 0,
            blocked_ns: 0,
            patience: None,
            sync: false,
            made: 0,
        }
    }

    /// For collectors that merge several workers' records in packet-time
    /// order: they apply a record once every worker's watermark is past
    /// it, and a worker's watermark reaches a collector only with a batch.
    /// With several collectors, one that gets few of this worker's
    /// records would hold the other workers' until its batch filled; so
    /// each `batch_records` records made, every collector gets its batch
    /// (with one collector its batch fills in that time: nothing to do).
    pub fn syncing(mut self, on: bool) -> Batcher {
        self.sync = on && self.cur.len() > 1;
        self
    }

    fn fresh(&mut self) -> RecordBatch {
        // A new batch gets its full size at once: grown by doubling, each
        // of the ~100 a replay makes before reuse starts copied its
        // records five times over (4 M instructions of memcpy on the first
        // 200,000 packets of big.pcap).
        let mut b = self.spare.try_recv().unwrap_or_else(|_| RecordBatch {
            recs: Vec::with_capacity(self.batch_records),
            ..RecordBatch::default()
        });
        b.clear();
        b.worker = self.worker;
        b
    }

    fn send(&mut self, shard: usize) {
        let fresh = self.fresh();
        let mut b = std::mem::replace(&mut self.cur[shard], fresh);
        b.watermark = self.now;
        match self.mode {
            Backpressure::Block => {
                // A closed channel means the collector is gone (shutdown).
                // Timed only when it has to wait.
                if let Err(TrySendError::Full(b)) = self.to[shard].try_send(b) {
                    let t = std::time::Instant::now();
                    let _ = self.to[shard].send(b);
                    self.blocked_ns += t.elapsed().as_nanos() as u64;
                }
            }
            Backpressure::Drop => {
                let mut b = match self.to[shard].try_send(b) {
                    Ok(()) => return,
                    Err(TrySendError::Full(b)) => b,
                    Err(TrySendError::Disconnected(b)) => return self.count_dropped(&b),
                };
                loop {
                    if !self.patience.as_ref().is_some_and(|may_wait| may_wait()) {
                        return self.count_dropped(&b);
                    }
                    match self.to[shard].send_timeout(b, PATIENCE_SLICE) {
                        Ok(()) => {
                            self.waited_batches += 1;
                            return;
                        }
                        Err(SendTimeoutError::Timeout(x)) => b = x,
                        Err(SendTimeoutError::Disconnected(x)) => return self.count_dropped(&x),
                    }
                }
            }
        }
    }

    fn count_dropped(&mut self, b: &RecordBatch) {
        self.dropped_batches += 1;
        self.dropped_records += b.recs.len() as u64;
    }

    /// Lets a live worker wait for a full collector channel while
    /// `patience` says so.
    pub fn set_patience(&mut self, patience: Option<Patience>) {
        self.patience = patience;
    }

    pub fn set_mode(&mut self, mode: Backpressure) {
        self.mode = mode;
    }

    /// Sends every batch (even empty ones, which carry the watermark that
    /// lets collectors close windows).
    pub fn flush(&mut self) {
        self.made = 0;
        for shard in 0..self.cur.len() {
            self.send(shard);
        }
    }

    /// Sends the final batches, the first carrying the worker's counters.
    /// Sends the last batches; returns the time spent blocked in all
    /// (`blocked_ns`).
    pub fn finish(mut self, totals: WorkerTotals) -> u64 {
        self.cur[0].last = Some(Box::new(totals));
        for shard in 1..self.cur.len() {
            self.cur[shard].last = Some(Box::default());
        }
        self.flush();
        self.blocked_ns
    }
}

impl RecordSink for Batcher {
    fn record(&mut self, r: &Record<'_>) {
        let h = r.key.map_or(0, key_hash);
        let shard = shard_of_hash(h, self.cur.len());
        let now = (self.now, self.frame);
        self.cur[shard].push_as(r, now, false, h);
        if self.cur[shard].recs.len() >= self.batch_records {
            self.send(shard);
        }
        // A flush touches every key of its server, and keys live in every
        // collector: the others get an echo.
        if r.key.is_none() && crate::collect::insight::is_flush(r.command) {
            for other in (0..self.cur.len()).filter(|&s| s != shard) {
                self.cur[other].push_as(r, now, true, 0);
                if self.cur[other].recs.len() >= self.batch_records {
                    self.send(other);
                }
            }
        }
        if self.sync {
            self.made += 1;
            if self.made >= self.batch_records {
                self.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of(None, 4), 0);
        assert_eq!(shard_of(Some(b"user:1"), 1), 0);
        let a = shard_of(Some(b"user:1"), 4);
        assert_eq!(a, shard_of(Some(b"user:1"), 4));
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[shard_of(Some(format!("key:{i}").as_bytes()), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
    }

    /// A collector's keys spread over all of the slots its tables index
    /// by `h >> 32` (cache insight's sets): the shard takes other bits.
    /// With `(h >> 32) % 2` as the shard, collector 0 had only even sets.
    #[test]
    fn a_shards_keys_use_every_set() {
        for shards in [2usize, 3, 4, 8] {
            let mut sets = vec![0u32; 64];
            for i in 0..40_000 {
                let h = key_hash(format!("key:{i}").as_bytes());
                if shard_of_hash(h, shards) == 0 {
                    sets[((h >> 32) & 63) as usize] += 1;
                }
            }
            let n: u32 = sets.iter().sum();
            let (lo, hi) = (sets.iter().min().unwrap(), sets.iter().max().unwrap());
            // About n / 64 each; every set used, none twice its share.
            assert!(
                *lo > n / 64 / 2 && *hi < n / 64 * 2,
                "{shards} shards: {sets:?}"
            );
        }
        assert_eq!(shard_of_hash(0, 4), 0);
        assert_eq!(shard_of_hash(u64::MAX, 4), 3);
    }

    #[test]
    fn batches_carry_keys_and_recycle() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let (_spare_tx, spare_rx) = crossbeam_channel::bounded(4);
        let mut b = Batcher::new(3, vec![tx], spare_rx, 2, Backpressure::Block);
        let rec = Record {
            latency_ns: Some(1000),
            ..rec(Some(b"abc"))
        };
        b.now = 9;
        b.record(&rec);
        b.record(&Record {
            key: None,
            ..rec.clone()
        });
        let got = rx.try_recv().unwrap();
        assert_eq!(got.worker, 3);
        assert_eq!(got.watermark, 9);
        assert_eq!(got.recs.len(), 2);
        assert_eq!(got.key(&got.recs[0]), Some(&b"abc"[..]));
        assert_eq!(got.key(&got.recs[1]), None);
        assert_eq!(got.recs[0].seen, 9);
        b.finish(WorkerTotals {
            counters: Counters {
                records: 2,
                ..Counters::default()
            },
            warnings: Warnings::default(),
        });
        let last = rx.try_recv().unwrap();
        assert_eq!(last.last.unwrap().counters.records, 2);
    }

    fn rec(key: Option<&'static [u8]>) -> Record<'static> {
        Record {
            ts: 5,
            client: "10.0.0.1:4000".parse().unwrap(),
            server: "10.0.0.2:11211".parse().unwrap(),
            transport: Transport::Tcp,
            proto: Proto::Text,
            command: "get",
            first: true,
            key,
            result: Outcome::Hit,
            req_bytes: 0,
            exptime: None,
            resp_bytes: 7,
            latency_ns: None,
        }
    }

    /// A small batch goes into another's room with its keys rebased, its
    /// keyless records still keyless, and not past `max` records.
    #[test]
    fn a_batch_absorbs_another_within_its_room() {
        let mut a = RecordBatch::default();
        a.push(&rec(Some(b"first")), 1);
        let mut b = RecordBatch::default();
        b.push(&rec(Some(b"second")), 2);
        b.push(&rec(None), 3);
        b.push(&rec(Some(b"third")), 4);
        assert!(!a.absorb(&b, 3), "4 records do not fit in 3");
        assert_eq!(a.recs.len(), 1);
        assert!(a.absorb(&b, 4));
        let keys: Vec<Option<&[u8]>> = a.recs.iter().map(|r| a.key(r)).collect();
        assert_eq!(
            keys,
            [
                Some(&b"first"[..]),
                Some(&b"second"[..]),
                None,
                Some(&b"third"[..])
            ]
        );
        let seen: Vec<Ts> = a.recs.iter().map(|r| r.seen).collect();
        assert_eq!(seen, [1, 2, 3, 4]);
    }

    /// Syncing, every collector gets its batch (and the worker's
    /// watermark) each `batch_records` records made, full or not; records
    /// carry the frame the worker had reached.
    #[test]
    fn a_syncing_batcher_sends_every_collector_its_batch() {
        let (tx0, rx0) = crossbeam_channel::bounded(16);
        let (tx1, rx1) = crossbeam_channel::bounded(16);
        let (_spare_tx, spare_rx) = crossbeam_channel::bounded(4);
        let mut b = Batcher::new(0, vec![tx0, tx1], spare_rx, 4, Backpressure::Block).syncing(true);
        // Keys that all go to collector 0.
        let keys: Vec<&'static [u8]> = (0..100)
            .map(|i| &*Box::leak(format!("k{i}").into_bytes().into_boxed_slice()))
            .filter(|k| shard_of(Some(k), 2) == 0)
            .take(4)
            .collect();
        for (i, k) in keys.iter().enumerate() {
            b.now = 10 + i as Ts;
            b.frame = 100 + i as u64;
            b.record(&rec(Some(k)));
        }
        let full = rx0.try_recv().unwrap();
        assert_eq!(full.recs.len(), 4);
        assert_eq!(full.recs[3].frame, 103);
        let empty = rx1.try_recv().expect("collector 1 hears the watermark");
        assert!(empty.recs.is_empty());
        assert_eq!(empty.watermark, 13);
        // Not syncing, collector 1 hears nothing until its batch fills.
        let (tx0, rx0) = crossbeam_channel::bounded(16);
        let (tx1, rx1) = crossbeam_channel::bounded(16);
        let (_spare_tx, spare_rx) = crossbeam_channel::bounded(4);
        let mut b = Batcher::new(0, vec![tx0, tx1], spare_rx, 4, Backpressure::Block);
        for k in &keys {
            b.record(&rec(Some(k)));
        }
        assert_eq!(rx0.try_recv().unwrap().recs.len(), 4);
        assert!(rx1.try_recv().is_err());
    }

    #[test]
    fn a_live_worker_waits_for_room_only_while_its_buffer_may_fill() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (_spare_tx, spare_rx) = crossbeam_channel::bounded(4);
        let mut b = Batcher::new(0, vec![tx], spare_rx, 1, Backpressure::Drop);
        b.record(&rec(Some(b"a")));
        // The channel is full: with no patience the next batch is dropped.
        b.record(&rec(Some(b"b")));
        assert_eq!(
            (b.dropped_batches, b.dropped_records, b.waited_batches),
            (1, 1, 0)
        );

        // Patient: it waits until the collector takes a batch, and keeps it.
        b.set_patience(Some(Box::new(|| true)));
        let taker = {
            let rx = rx.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                rx.recv().unwrap().recs[0].key_len
            })
        };
        b.record(&rec(Some(b"cc")));
        assert_eq!(taker.join().unwrap(), 1, "the first batch (key a)");
        assert_eq!((b.dropped_batches, b.waited_batches), (1, 1));
        assert_eq!(rx.try_recv().unwrap().recs[0].key_len, 2, "key cc kept");

        // Patient until the buffer in front passes half: then it drops.
        b.record(&rec(Some(b"ddd")));
        let room = Arc::new(AtomicBool::new(true));
        let r = room.clone();
        b.set_patience(Some(Box::new(move || r.load(Ordering::Relaxed))));
        let t = Instant::now();
        let filler = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            room.store(false, Ordering::Relaxed);
        });
        b.record(&rec(Some(b"eeee")));
        filler.join().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(
            (b.dropped_batches, b.dropped_records, b.waited_batches),
            (2, 2, 1)
        );
        assert_eq!(rx.try_recv().unwrap().recs[0].key_len, 3);
        assert!(rx.try_recv().is_err());
    }
}
