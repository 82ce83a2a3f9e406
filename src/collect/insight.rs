//! Cache insight: why each miss happened, miss storms (dogpiles), writes
//! nobody read, TTLs, slab fit, and keys seen on several servers.
//!
//! A collector owns every record of its keys (they are sharded by key), so
//! it can follow each key's life: stores with their exptimes, touches,
//! deletes, `flush_all`s of its server, hits and misses. Records reach a
//! collector from several workers out of time order; the analysis needs
//! the order the server saw, so the collector holds each worker's batches
//! until every worker's watermark has passed their records, then hands
//! them to [`Insight`] merged in packet-time order (`BRec::seen`: each
//! worker's records arrive already in that order, and the watermark bounds
//! what may still come).
//!
//! Per-key state lives in a fixed-size set-associative table (one entry a
//! key and server; the ways of a set hold every server's entry of a key,
//! which is how a key on several servers is noticed for free). When a key
//! falls out, its later misses are `forgotten`; a fixed Bloom filter of
//! every key seen tells `forgotten` (seen before) from `first` (never),
//! with its false-positive rate reported.
//!
//! What it produces is mergeable counters in [`InsightTables`] (per server
//! and for the pool), [`FamilyInsight`] beside each family's traffic and
//! [`KeyInsight`] beside each tracked key's: they travel with `Tables`
//! into windows, snapshots, reports, metrics and the store.

use super::batch::{BRec, RecordBatch};
use super::hist::Log2Hist;
use super::mrc::{item_bytes, Mrc, MrcConfig, MrcCounts};
use super::slab::{item_size, SlabClasses, SlabConfig};
use super::tables::{Added, Tables};
use crate::decode::Ts;
use crate::protocol::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Miss classes, in report order.
pub const MISS_CLASSES: [&str; 6] = [
    "first",
    "expired",
    "deleted",
    "evicted",
    "forgotten",
    "unknown_ttl",
];
pub const FIRST: usize = 0;
pub const EXPIRED: usize = 1;
pub const DELETED: usize = 2;
pub const EVICTED: usize = 3;
pub const FORGOTTEN: usize = 4;
/// A key seen present (a hit) before memtap saw it stored: its TTL is
/// unknown, so its later miss is an expiry or an eviction.
pub const UNKNOWN_TTL: usize = 5;

/// How a write ended unread, in report order.
pub const UNREAD_ENDS: [&str; 6] = [
    "overwritten",
    "deleted",
    "expired",
    "evicted",
    "forgotten",
    "at_end",
];
const U_OVERWRITTEN: usize = 0;
const U_DELETED: usize = 1;
const U_EXPIRED: usize = 2;
const U_EVICTED: usize = 3;
const U_FORGOTTEN: usize = 4;
const U_AT_END: usize = 5;

/// TTL classes of stores: 0 = never expires, 1 = already expired
/// (negative or a past absolute time), then `2 + k` for `[2^k, 2^(k+1))`
/// seconds; the last class holds everything longer.
pub const TTL_CLASSES: usize = 28;

pub fn ttl_class(ttl_secs: Option<i64>) -> usize {
    match ttl_secs {
        None => 0,
        Some(s) if s <= 0 => 1,
        Some(s) => (2 + (63 - s.leading_zeros() as usize)).min(TTL_CLASSES - 1),
    }
}

/// The label of TTL class `i` ("never", "expired", "1s", "2s", "4s", ...:
/// a class is named by its lower bound).
pub fn ttl_class_label(i: usize) -> String {
    match i {
        0 => "never".into(),
        1 => "expired".into(),
        i => {
            let s = 1u64 << (i - 2);
            if s >= 86_400 && s % 3600 == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{s}s")
            }
        }
    }
}

/// Thresholds and sizes of the analysis.
#[derive(Debug, Clone)]
pub struct InsightConfig {
    /// Key-server entries of the state table (per collector).
    pub max_keys: usize,
    /// Bytes of the Bloom filter of keys seen (per collector).
    pub seen_filter_bytes: usize,
    /// A miss storm: at least this many misses of one key ...
    pub storm_min_misses: u32,
    /// ... from at least this many distinct clients ...
    pub storm_min_clients: u32,
    /// ... before a store of it lands, all within this time of the first.
    pub storm_window_ns: u64,
    pub slab: SlabConfig,
    /// Keys on several servers kept as examples.
    pub examples: usize,
    /// The miss-ratio curves' sampling (its `scale` is set to the number
    /// of collectors by the pipeline).
    pub mrc: MrcConfig,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            max_keys: 131_072,
            seen_filter_bytes: 4 << 20,
            storm_min_misses: 3,
            storm_min_clients: 2,
            storm_window_ns: 10_000_000_000,
            slab: SlabConfig::default(),
            examples: 16,
            mrc: MrcConfig::default(),
        }
    }
}

/// Per server (or the pool): the counters of the analysis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerInsight {
    pub misses: [u64; 6],
    pub stores: u64,
    pub storms: u64,
    pub storm_misses: u64,
    /// Distinct clients of the largest storm, up to `STORM_CLIENTS` (8)
    /// (told apart by 16-bit hashes); `STORM_CLIENTS + 1` means more.
    pub storm_clients_max: u64,
    /// First miss to the store that ended a storm, in microseconds.
    pub refill_us: Log2Hist,
    pub unread: [u64; 6],
    pub unread_bytes: [u64; 6],
    /// Keys seen on this server and on another.
    pub multi_server_keys: u64,
    /// The miss-ratio curve's counts for this server's traffic.
    pub mrc: Option<MrcCounts>,
}

impl ServerInsight {
    pub fn merge(&mut self, o: &ServerInsight) {
        add(&mut self.misses, &o.misses);
        self.stores += o.stores;
        self.storms += o.storms;
        self.storm_misses += o.storm_misses;
        self.storm_clients_max = self.storm_clients_max.max(o.storm_clients_max);
        self.refill_us.merge(&o.refill_us);
        add(&mut self.unread, &o.unread);
        add(&mut self.unread_bytes, &o.unread_bytes);
        self.multi_server_keys += o.multi_server_keys;
        merge_mrc(&mut self.mrc, &o.mrc);
    }

    pub fn classified_misses(&self) -> u64 {
        self.misses.iter().sum()
    }
}

fn merge_mrc(a: &mut Option<MrcCounts>, b: &Option<MrcCounts>) {
    if let Some(y) = b {
        merge_counts(a, y);
    }
}

fn merge_counts(a: &mut Option<MrcCounts>, b: &MrcCounts) {
    match a {
        Some(x) => x.merge(b),
        None => *a = Some(b.clone()),
    }
}

fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Beside a family's traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyInsight {
    pub misses: [u64; 6],
    pub stores: u64,
    pub unread: [u64; 6],
    pub unread_bytes: [u64; 6],
    pub ttl: [u64; TTL_CLASSES],
    /// Stored items as memcached accounts them, and the chunk bytes they
    /// take: the difference is slab waste.
    pub item_bytes: u64,
    pub chunk_bytes: u64,
}

impl FamilyInsight {
    pub fn merge(&mut self, o: &FamilyInsight) {
        add(&mut self.misses, &o.misses);
        self.stores += o.stores;
        add(&mut self.unread, &o.unread);
        add(&mut self.unread_bytes, &o.unread_bytes);
        add(&mut self.ttl, &o.ttl);
        self.item_bytes += o.item_bytes;
        self.chunk_bytes += o.chunk_bytes;
    }
}

/// Beside a tracked key's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyInsight {
    pub misses: [u32; 6],
    pub storms: u32,
    pub storm_misses: u32,
    pub storm_clients_max: u16,
    /// Longest refill of its storms, microseconds.
    pub refill_us_max: u64,
    pub unread: u32,
    pub unread_bytes: u64,
}

impl KeyInsight {
    pub fn merge(&mut self, o: &KeyInsight) {
        for (a, b) in self.misses.iter_mut().zip(o.misses) {
            *a = a.saturating_add(b);
        }
        self.storms += o.storms;
        self.storm_misses += o.storm_misses;
        self.storm_clients_max = self.storm_clients_max.max(o.storm_clients_max);
        self.refill_us_max = self.refill_us_max.max(o.refill_us_max);
        self.unread += o.unread;
        self.unread_bytes += o.unread_bytes;
    }
}

/// One slab class's share of the stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlabRow {
    pub items: u64,
    pub item_bytes: u64,
    pub chunk_bytes: u64,
}

/// A key seen on more than one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiServerKey {
    pub key: Vec<u8>,
    pub servers: Vec<SocketAddr>,
    /// Clients seen using it (with the server each used), from the moment
    /// it was noticed; at most `EXAMPLE_CLIENTS`.
    pub clients: Vec<(SocketAddr, SocketAddr)>,
}

const EXAMPLE_CLIENTS: usize = 8;
const EXAMPLE_SERVERS: usize = 8;

/// The analysis' counters for one period: mergeable like every table
/// (and stored per interval as JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InsightTables {
    pub servers: Vec<(SocketAddr, ServerInsight)>,
    pub slab: Vec<SlabRow>,
    pub ttl: [u64; TTL_CLASSES],
    pub multi: Vec<MultiServerKey>,
    /// Bounds: keys whose state fell out of the table, examples not kept.
    pub state_evictions: u64,
    pub examples_dropped: u64,
    /// Records applied; records that came after their turn (their worker
    /// broke the watermark promise: a live clock step) and were applied
    /// late anyway.
    pub applied: u64,
    pub late: u64,
    /// Bloom filter fill (per mille) and its false-positive rate (parts
    /// per million) at the period's end: the share of `forgotten` misses
    /// that may really be `first`.
    pub seen_filter_fp_ppm: u64,
    pub examples_cap: usize,
    /// The pool's miss-ratio curve counts (every server's traffic as one
    /// cache).
    pub mrc: Option<MrcCounts>,
    /// The slab classes the `slab` rows are of.
    pub slab_config: Option<SlabConfig>,
}

impl InsightTables {
    pub fn server(&mut self, s: SocketAddr) -> &mut ServerInsight {
        match self.servers.iter().position(|(a, _)| *a == s) {
            Some(i) => &mut self.servers[i].1,
            None => {
                self.servers.push((s, ServerInsight::default()));
                &mut self.servers.last_mut().expect("pushed").1
            }
        }
    }

    /// [`server`](Self::server), trying position `hint` first: the
    /// collector's own index of the server, which is where it sits in
    /// tables fed by that collector alone.
    #[inline]
    pub fn server_at(&mut self, hint: u16, s: SocketAddr) -> &mut ServerInsight {
        let i = hint as usize;
        if self.servers.get(i).is_some_and(|(a, _)| *a == s) {
            return &mut self.servers[i].1;
        }
        self.server(s)
    }

    /// The pool: every server's counters summed.
    pub fn pool(&self) -> ServerInsight {
        let mut p = ServerInsight::default();
        for (_, s) in &self.servers {
            p.merge(s);
        }
        // A key on two servers is counted by both; the pool counts it once.
        p.multi_server_keys = self.multi_keys();
        p.mrc = self.mrc.clone();
        p
    }

    fn multi_keys(&self) -> u64 {
        // Each noticed key bumps the server that noticed it only.
        self.servers.iter().map(|(_, s)| s.multi_server_keys).sum()
    }

    pub fn merge(&mut self, o: &InsightTables) {
        for (a, s) in &o.servers {
            self.server(*a).merge(s);
        }
        if self.slab.len() < o.slab.len() {
            self.slab.resize(o.slab.len(), SlabRow::default());
        }
        for (a, b) in self.slab.iter_mut().zip(&o.slab) {
            a.items += b.items;
            a.item_bytes += b.item_bytes;
            a.chunk_bytes += b.chunk_bytes;
        }
        add(&mut self.ttl, &o.ttl);
        self.examples_cap = self.examples_cap.max(o.examples_cap);
        for m in &o.multi {
            if self.multi.iter().any(|x| x.key == m.key) {
                continue;
            }
            if self.multi.len() < self.examples_cap {
                self.multi.push(m.clone());
            } else {
                self.examples_dropped += 1;
            }
        }
        self.state_evictions += o.state_evictions;
        self.examples_dropped += o.examples_dropped;
        self.applied += o.applied;
        self.late += o.late;
        self.seen_filter_fp_ppm = self.seen_filter_fp_ppm.max(o.seen_filter_fp_ppm);
        merge_mrc(&mut self.mrc, &o.mrc);
        self.slab_config = self.slab_config.or(o.slab_config);
    }

    pub fn clear(&mut self) {
        let cap = self.examples_cap;
        *self = InsightTables::default();
        self.examples_cap = cap;
    }
}

/// What a record does to a key's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    /// set/add/replace/cas, ms: a new item (its exptime, its size).
    Store,
    /// append/prepend: the item grows, keeps its exptime.
    Append,
    Delete,
    Touch,
    /// incr/decr: reads and rewrites in place.
    Arith,
    Flush,
}

fn op_of(command: &str, exptime: Option<i32>) -> Option<Op> {
    Some(match command {
        "get" | "gets" | "gat" | "gats" | "bget" | "mg" | "getq" | "getk" | "getkq" | "gatq"
        | "gatk" | "gatkq" => Op::Get,
        "set" | "add" | "replace" | "cas" | "setq" | "addq" | "replaceq" => Op::Store,
        // ms in append/prepend mode carries no exptime.
        "ms" if exptime.is_some() => Op::Store,
        "ms" | "append" | "prepend" | "appendq" | "prependq" => Op::Append,
        "delete" | "deleteq" | "md" => Op::Delete,
        "touch" => Op::Touch,
        "incr" | "decr" | "ma" | "increment" | "decrement" | "incrementq" | "decrementq" => {
            Op::Arith
        }
        "flush_all" | "flush" | "flushq" => Op::Flush,
        _ => return None,
    })
}

/// The outcome says the write happened (quiet/noreply writes are assumed
/// to have: memcached answers their failures, which resolve otherwise).
fn wrote(o: Outcome) -> bool {
    matches!(o, Outcome::Stored | Outcome::Noreply)
}

/// Whether a record is a store that happened (a new item).
pub fn is_store_write(command: &str, exptime: Option<i32>, o: Outcome) -> bool {
    op_of(command, exptime) == Some(Op::Store) && wrote(o)
}

/// Whether `command` (keyless) changes every key of its server: a batcher
/// sends such records to every collector.
pub fn is_flush(command: &str) -> bool {
    matches!(command, "flush_all" | "flush" | "flushq")
}

const SEC: u64 = 1_000_000_000;
/// memcached's relative-exptime limit (30 days): larger values are Unix
/// times.
const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;
const NEVER: u64 = u64::MAX;

/// Packet time at which an item stored at `now` with `exptime` expires.
fn deadline(exptime: i32, now: Ts) -> u64 {
    let e = exptime as i64;
    if e == 0 {
        NEVER
    } else if e < 0 {
        now
    } else if e <= REALTIME_MAXDELTA {
        now.saturating_add(e as u64 * SEC)
    } else {
        (e as u64).saturating_mul(SEC)
    }
}

/// Seconds of TTL an exptime gives at `now` (for the TTL histogram).
fn ttl_secs(exptime: i32, now: Ts) -> Option<i64> {
    let e = exptime as i64;
    if e == 0 {
        None
    } else if e < 0 || e <= REALTIME_MAXDELTA {
        Some(e)
    } else {
        Some(e - (now / SEC) as i64)
    }
}

/// memcached's clock ticks once a second and an item set just before a tick
/// expires up to a second early: a miss this close to the deadline is an
/// expiry.
const CLOCK_SLACK: u64 = SEC;

const STORED: u16 = 1;
const DELETED_F: u16 = 2;
const UNREAD: u16 = 4;
/// Seen present (a hit) with no store seen: TTL unknown.
const PRESENT: u16 = 8;
const EPISODE: u16 = 16;
const MULTI: u16 = 32;

/// Distinct clients remembered per storm (counted up to this many).
pub const STORM_CLIENTS: usize = 8;

/// One cache line, aligned: a lookup that finds its way reads this line
/// only (at 80 bytes a state straddled two). The storm's clients are kept
/// as 16-bit hashes for that: two distinct clients of one storm count as
/// one with a chance of about 1 in 65,536.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct KeyState {
    /// Key hash; 0 marks a free way.
    h: u64,
    server: u16,
    flags: u16,
    /// Saturating count of distinct clients in the miss episode.
    ep_nclients: u16,
    bytes: u32,
    store_ts: Ts,
    deadline: u64,
    ep_first: Ts,
    ep_misses: u32,
    ep_clients: [u16; STORM_CLIENTS],
}

const WAYS: usize = 8;

/// What a lookup needs of one set, in one cache line: each way's tag (the
/// low 32 bits of its key hash, never 0 since `key_hash` sets bit 0; 0 when
/// the way is free), its server, and the ways' recency. A lookup reads this
/// line and then only the state it finds; a replacement reads only the
/// state it evicts. (Scanning the states' own hashes and ages read all of a
/// set's lines: measured, that was 15 % of a one-collector replay, and
/// picking the least recently used way by its age alone half as much again.)
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct SetMeta {
    tags: [u32; WAYS],
    servers: [u16; WAYS],
    /// Way numbers from the most to the least recently used, a nibble each.
    order: u32,
}

impl Default for SetMeta {
    fn default() -> Self {
        SetMeta {
            tags: [0; WAYS],
            servers: [0; WAYS],
            order: 0x7654_3210,
        }
    }
}

impl SetMeta {
    /// Makes way `w` the most recently used.
    #[inline]
    fn touch(&mut self, w: usize) {
        let o = self.order;
        // Where `w` is in the order: the zero nibble of `o ^ w…w` (every
        // way is in the order once, and the nibbles are below 8, so the
        // borrow trick flags exactly that one), not a loop over nibbles.
        const ONES: u32 = 0x1111_1111;
        let x = o ^ (w as u32 * ONES);
        let z = x.wrapping_sub(ONES) & !x & (ONES << 3);
        let p = if z == 0 {
            WAYS - 1
        } else {
            z.trailing_zeros() as usize / 4
        };
        let below = o & ((1u32 << (4 * p)) - 1);
        let above = if p + 1 < WAYS {
            o & !((1u32 << (4 * (p + 1))) - 1)
        } else {
            0
        };
        self.order = above | (below << 4) | w as u32;
    }

    /// The way to fill: a free one first, else the least recently used.
    #[inline]
    fn victim(&self) -> usize {
        match self.tags.iter().position(|&t| t == 0) {
            Some(i) => i,
            None => (self.order >> (4 * (WAYS - 1))) as usize & 0xf,
        }
    }
}

#[inline]
fn tag_of(h: u64) -> u32 {
    h as u32
}

/// The fixed per-key state: `sets × WAYS` entries, a set chosen by the key
/// hash, the least recently used way replaced.
struct StateTable {
    slots: Vec<KeyState>,
    meta: Vec<SetMeta>,
    mask: usize,
}

impl StateTable {
    fn new(entries: usize) -> StateTable {
        let sets = (entries / WAYS).max(1).next_power_of_two();
        StateTable {
            slots: vec![KeyState::default(); sets * WAYS],
            meta: vec![SetMeta::default(); sets],
            mask: sets - 1,
        }
    }

    #[inline]
    fn set_of(&self, h: u64) -> usize {
        ((h >> 32) as usize) & self.mask
    }

    /// Starts loading the line of `h`'s set.
    #[inline]
    fn prefetch_meta(&self, h: u64) {
        crate::prefetch::prefetch(&self.meta[self.set_of(h)]);
    }

    fn set(&mut self, h: u64) -> (&mut SetMeta, &mut [KeyState]) {
        let s = self.set_of(h);
        (&mut self.meta[s], &mut self.slots[s * WAYS..(s + 1) * WAYS])
    }
}

/// Bloom filter of every key hash seen: 3 probes within one 512-bit block
/// (a cache line) chosen by the hash, so a new key costs one cache miss
/// here rather than three, and one prefetch covers it.
struct SeenFilter {
    lines: Vec<Line>,
    set_bits: u64,
}

/// One cache line of filter bits. Aligned: a block of a plain `Vec<u64>`
/// started wherever the allocator put it (16 bytes into a page), so most
/// blocks spanned two lines, the prefetch asked for the first, and a probe
/// in the second missed.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u64; 8]);

impl SeenFilter {
    fn new(bytes: usize) -> SeenFilter {
        let words = (bytes / 8).max(8).next_power_of_two();
        SeenFilter {
            // Every line written now, so its page is mapped now (see
            // `prefetch::mapped_zeros`).
            lines: vec![Line([0; 8]); words / 8],
            set_bits: 0,
        }
    }

    /// The line that holds every probe of `h`.
    #[inline]
    fn line(&self, h: u64) -> usize {
        (h >> 27) as usize & (self.lines.len() - 1)
    }

    /// Word in the line and bit of each probe.
    #[inline]
    fn probes(h: u64) -> [(usize, u64); 3] {
        [h, h >> 9, h >> 18].map(|x| {
            let b = (x & 511) as usize;
            (b / 64, 1u64 << (b % 64))
        })
    }

    #[inline]
    fn prefetch(&self, h: u64) {
        crate::prefetch::prefetch(&self.lines[self.line(h)]);
    }

    /// Adds `h`; true when it was (probably) there already.
    fn insert(&mut self, h: u64) -> bool {
        let mut was = true;
        let l = self.line(h);
        let line = &mut self.lines[l].0;
        for (w, m) in Self::probes(h) {
            if line[w] & m == 0 {
                was = false;
                line[w] |= m;
                self.set_bits += 1;
            }
        }
        was
    }

    fn bytes(&self) -> usize {
        self.lines.len() * size_of::<Line>()
    }

    fn fp_ppm(&self) -> u64 {
        let fill = self.set_bits as f64 / (self.bytes() * 8) as f64;
        (fill.powi(3) * 1e6).round() as u64
    }
}

/// A record as insight applies it.
#[derive(Debug, Clone, Copy)]
struct Ev {
    seen: Ts,
    ts: Ts,
    h: u64,
    client: SocketAddr,
    server: SocketAddr,
    /// `server_mix(server)`: the seen filter remembers a key per server.
    srv: u64,
    op: Op,
    result: Outcome,
    bytes: u64,
    exptime: Option<i32>,
    /// A flush's copy for this collector (counted by another).
    echo: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct ServerClock {
    /// Effective time of the latest `flush_all` in force, and one delayed
    /// flush still to come.
    flushed_at: Ts,
    pending: Option<Ts>,
}

/// How far ahead of the record applied [`Insight::prefetch_ahead`] asks
/// for a set line (`FAR`) and for a state (`NEAR`).
pub const FAR: usize = 16;
pub const NEAR: usize = 8;

/// One record as insight sees it, with its key (empty for a flush), or
/// None for a record that tells nothing about a key's life.
fn event<'b>(b: &'b RecordBatch, r: &BRec) -> Option<(Ev, &'b [u8])> {
    let op = op_of(r.command, r.exptime)?;
    if matches!(r.result, Outcome::Lost) {
        return None;
    }
    let key = b.key(r);
    if key.is_none() && op != Op::Flush {
        return None;
    }
    let key = key.unwrap_or(b"");
    let ev = Ev {
        srv: server_mix(&r.server),
        seen: r.seen,
        ts: r.ts,
        h: if r.key_hash != 0 {
            r.key_hash
        } else {
            key_hash(key)
        },
        client: r.client,
        server: r.server,
        op,
        result: r.result,
        bytes: if op == Op::Get {
            r.resp_bytes
        } else {
            r.req_bytes
        },
        exptime: r.exptime,
        echo: r.echo,
    };
    Some((ev, key))
}

/// The key hash of the per-key state, the filter and the curves: the one
/// the worker made (`batch::key_hash`, never 0).
pub use super::batch::key_hash;

/// Mixed into a key's hash for the seen filter: a key new to a server is
/// `first` there, whatever the other servers saw. Never 0.
fn server_mix(a: &SocketAddr) -> u64 {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v) => u32::from(v) as u64,
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
        }
    };
    ((ip << 16) ^ u64::from(a.port())).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn client_hash(a: &SocketAddr) -> u16 {
    // Clients are hosts: the port of each connection does not matter.
    let h = match a.ip() {
        std::net::IpAddr::V4(v) => u32::from(v) as u64,
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64)
        }
    };
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as u16
}

/// A collector's analysis: the per-key state, the filter and the curves.
pub struct Insight {
    cfg: InsightConfig,
    classes: SlabClasses,
    table: StateTable,
    seen: SeenFilter,
    servers: Vec<SocketAddr>,
    /// Where each server is in `servers` (a pool may have hundreds), and
    /// the last one asked for (runs of one server's records are common).
    server_of: hashbrown::HashMap<SocketAddr, u16>,
    last_server: u16,
    clocks: Vec<ServerClock>,
    /// Highest `seen` applied so far: records older than it are late.
    applied_upto: Ts,
    last_ts: Ts,
    /// Miss storms ended since the last `take_storms` (for the triggers).
    pub storms_since: u64,
    pool_mrc: Mrc,
    server_mrc: Vec<Mrc>,
    /// The window the curves' counts are being gathered for.
    mrc_window: Option<Ts>,
}

impl Insight {
    pub fn new(cfg: &InsightConfig) -> Insight {
        Insight {
            classes: SlabClasses::new(&cfg.slab),
            table: StateTable::new(cfg.max_keys),
            seen: SeenFilter::new(cfg.seen_filter_bytes),
            cfg: cfg.clone(),
            servers: Vec::new(),
            server_of: hashbrown::HashMap::new(),
            last_server: 0,
            clocks: Vec::new(),
            applied_upto: 0,
            last_ts: 0,
            storms_since: 0,
            pool_mrc: Mrc::new(&cfg.mrc),
            server_mrc: Vec::new(),
            mrc_window: None,
        }
    }

    /// Heap bytes of the fixed structures.
    pub fn heap_bytes(&self) -> usize {
        self.table.slots.len() * std::mem::size_of::<KeyState>()
            + self.table.meta.len() * std::mem::size_of::<SetMeta>()
            + self.seen.bytes()
            + self.pool_mrc.heap_bytes()
            + self.server_mrc.iter().map(Mrc::heap_bytes).sum::<usize>()
    }

    /// Hands the curves' counts gathered since the last call to the run's
    /// tables and to the window they belong to.
    fn flush_mrc(&mut self, run: &mut Tables, win: Option<&mut Tables>) {
        // Merged from where they are and cleared in place: no allocation
        // per batch (a period's first merge copies once).
        for t in std::iter::once(run).chain(win) {
            t.insight.slab_config = Some(self.cfg.slab);
            merge_counts(&mut t.insight.mrc, self.pool_mrc.counts());
            for (m, a) in self.server_mrc.iter().zip(&self.servers) {
                merge_counts(&mut t.insight.server(*a).mrc, m.counts());
            }
        }
        self.pool_mrc.clear_counts();
        for m in &mut self.server_mrc {
            m.clear_counts();
        }
    }

    pub fn slab_classes(&self) -> &SlabClasses {
        &self.classes
    }

    /// Applies one record. The collector hands records over in
    /// packet-time order: as they come from a single worker, else merged
    /// from its workers' batches (no queue of copies here: copying each
    /// record's key, family and a 128-byte event in and out again was a
    /// quarter of insight's cost). `added` is where adding the record to
    /// the run's tables and to its window's just left its key and family
    /// entries (a default: look them up).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_record(
        &mut self,
        b: &RecordBatch,
        r: &BRec,
        family: Option<&[u8]>,
        added: [Added; 2],
        run: &mut Tables,
        open: &mut VecDeque<(Ts, Tables)>,
        window_ns: u64,
        window_of: impl FnMut(&mut VecDeque<(Ts, Tables)>, Ts) -> Option<usize>,
    ) {
        if let Some((ev, key)) = event(b, r) {
            self.step(&ev, key, family, added, run, open, window_ns, window_of);
        }
    }

    /// A two-stage lookahead, called before each record applied: the set
    /// line of the record `FAR` ahead, and the state of the one `NEAR`
    /// ahead (its set line has arrived by then), so that the lookups'
    /// cache misses overlap instead of queueing.
    #[inline]
    pub fn prefetch_ahead(&self, far: Option<&BRec>, near: Option<&BRec>) {
        if let Some(r) = far.filter(|r| r.key_hash != 0) {
            self.table.prefetch_meta(r.key_hash);
        }
        if let Some(r) = near.filter(|r| r.key_hash != 0) {
            self.prefetch_key(r.key_hash, server_mix(&r.server));
        }
    }

    /// Hands the curves' counts to the run's tables and the current
    /// window: after each run of records applied.
    pub fn end_batch(&mut self, run: &mut Tables, open: &mut VecDeque<(Ts, Tables)>) {
        let cur = self
            .mrc_window
            .and_then(|s| open.iter().position(|(w, _)| *w == s));
        self.flush_mrc(run, cur.map(|i| &mut open[i].1));
    }

    /// One record in packet-time order: its window, the curves' window,
    /// then its effects.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        ev: &Ev,
        key: &[u8],
        fam: Option<&[u8]>,
        added: [Added; 2],
        run: &mut Tables,
        open: &mut VecDeque<(Ts, Tables)>,
        window_ns: u64,
        mut window_of: impl FnMut(&mut VecDeque<(Ts, Tables)>, Ts) -> Option<usize>,
    ) {
        let widx = if window_ns > 0 {
            window_of(open, ev.seen)
        } else {
            None
        };
        let start = widx.map(|i| open[i].0);
        if start != self.mrc_window {
            let prev = self
                .mrc_window
                .and_then(|s| open.iter().position(|(w, _)| *w == s));
            self.flush_mrc(run, prev.map(|i| &mut open[i].1));
            self.mrc_window = start;
        }
        let win = widx.map(|i| &mut open[i].1);
        self.apply(ev, key, fam, added, run, win);
    }

    #[inline]
    fn prefetch_key(&self, h: u64, srv: u64) {
        let t = &self.table;
        let s = t.set_of(h);
        let meta = &t.meta[s];
        let tag = tag_of(h);
        let w = match meta.tags.iter().position(|&x| x == tag) {
            Some(w) => w,
            None => {
                self.seen.prefetch(h ^ srv);
                meta.victim()
            }
        };
        crate::prefetch::prefetch(&t.slots[s * WAYS + w]);
    }

    fn server_idx(&mut self, s: SocketAddr) -> u16 {
        if self.servers.get(self.last_server as usize) == Some(&s) {
            return self.last_server;
        }
        let i = match self.server_of.get(&s) {
            Some(&i) => i,
            None if self.servers.len() < u16::MAX as usize - 1 => {
                self.servers.push(s);
                self.clocks.push(ServerClock::default());
                self.server_mrc.push(Mrc::new(&self.cfg.mrc));
                let i = (self.servers.len() - 1) as u16;
                self.server_of.insert(s, i);
                i
            }
            None => return u16::MAX - 1,
        };
        self.last_server = i;
        i
    }

    fn apply(
        &mut self,
        ev: &Ev,
        key: &[u8],
        fam: Option<&[u8]>,
        added: [Added; 2],
        run: &mut Tables,
        mut win: Option<&mut Tables>,
    ) {
        if ev.seen < self.applied_upto {
            run.insight.late += 1;
            if let Some(w) = win.as_deref_mut() {
                w.insight.late += 1;
            }
        }
        self.applied_upto = self.applied_upto.max(ev.seen);
        self.last_ts = self.last_ts.max(ev.ts);
        if !ev.echo {
            run.insight.applied += 1;
            if let Some(w) = win.as_deref_mut() {
                w.insight.applied += 1;
            }
        }
        let now = ev.ts;
        let sidx = self.server_idx(ev.server);
        // A delayed flush whose time has come.
        if let Some(c) = self.clocks.get_mut(sidx as usize) {
            if let Some(p) = c.pending.filter(|&p| p <= now) {
                c.flushed_at = c.flushed_at.max(p);
                c.pending = None;
            }
        }
        if ev.op == Op::Flush {
            if matches!(ev.result, Outcome::Ok | Outcome::Noreply) {
                let at = match ev.exptime.unwrap_or(0) {
                    d if d <= 0 => now,
                    d => deadline(d, now),
                };
                if let Some(c) = self.clocks.get_mut(sidx as usize) {
                    if at <= now {
                        c.flushed_at = c.flushed_at.max(at);
                        // The pool's curve keeps the other servers' items.
                        if let Some(m) = self.server_mrc.get_mut(sidx as usize) {
                            m.flush();
                        }
                    } else {
                        c.pending = Some(at);
                    }
                }
            }
            return;
        }
        let flushed_at = self.clocks.get(sidx as usize).map_or(0, |c| c.flushed_at);

        // Find the key's entry on this server, noticing its other servers.
        let h = ev.h;
        let (meta, set) = self.table.set(h);
        let tag = tag_of(h);
        let mut found = None;
        let mut other = None;
        for (i, st) in set.iter().enumerate() {
            if meta.tags[i] == tag && st.h == h {
                if meta.servers[i] == sidx {
                    found = Some(i);
                } else {
                    other = Some(i);
                }
            }
        }
        let mut newly_multi = None;
        if let Some(o) = other {
            if set[o].flags & MULTI == 0 {
                set[o].flags |= MULTI;
                newly_multi = Some(set[o].server);
            }
        }
        let mut out = Effects::default();
        let idx = match found {
            Some(i) => i,
            None => {
                let i = meta.victim();
                if meta.tags[i] != 0 {
                    out.state_evicted = true;
                    if set[i].flags & UNREAD != 0 {
                        out.forgotten_unread = Some((set[i].server, set[i].bytes as u64));
                    }
                }
                // Seen before *on this server*: a key new to a server is
                // `first` there, whatever the other servers saw.
                let known_before = self.seen.insert(h ^ ev.srv);
                meta.tags[i] = tag;
                meta.servers[i] = sidx;
                set[i] = KeyState {
                    h,
                    server: sidx,
                    deadline: NEVER,
                    ..KeyState::default()
                };
                if other.is_some() {
                    set[i].flags |= MULTI;
                }
                out.unknown = Some(known_before);
                i
            }
        };
        meta.touch(idx);
        let st = &mut set[idx];

        // Lazy endings: a flush or an expiry since the last store.
        if st.flags & STORED != 0 && st.flags & DELETED_F == 0 && flushed_at > st.store_ts {
            st.flags |= DELETED_F;
            if st.flags & UNREAD != 0 {
                st.flags &= !UNREAD;
                out.unread = Some((U_DELETED, st.bytes as u64));
            }
        }
        if st.flags & UNREAD != 0 && st.deadline != NEVER && now >= st.deadline {
            st.flags &= !UNREAD;
            out.unread = Some((U_EXPIRED, st.bytes as u64));
        }

        match ev.op {
            Op::Get => match ev.result {
                Outcome::Hit => {
                    if st.flags & STORED == 0 {
                        st.flags |= PRESENT;
                    }
                    st.flags &= !UNREAD;
                    if let Some(x) = ev.exptime {
                        st.deadline = deadline(x, now);
                    }
                    // Someone refilled it unseen: the episode is over.
                    st.flags &= !EPISODE;
                }
                Outcome::Miss => {
                    let class = match out.unknown {
                        Some(true) => FORGOTTEN,
                        Some(false) => FIRST,
                        None if st.flags & STORED == 0 => {
                            if st.flags & PRESENT != 0 {
                                UNKNOWN_TTL
                            } else {
                                FIRST
                            }
                        }
                        None if st.flags & DELETED_F != 0 => DELETED,
                        None if st.deadline != NEVER
                            && now.saturating_add(CLOCK_SLACK) >= st.deadline =>
                        {
                            EXPIRED
                        }
                        None => EVICTED,
                    };
                    out.miss = Some(class);
                    if class == EVICTED && st.flags & UNREAD != 0 {
                        st.flags &= !UNREAD;
                        out.unread = Some((U_EVICTED, st.bytes as u64));
                    }
                    // The miss storm bookkeeping.
                    if st.flags & EPISODE == 0
                        || now.saturating_sub(st.ep_first) > self.cfg.storm_window_ns
                    {
                        st.flags |= EPISODE;
                        st.ep_first = now;
                        st.ep_misses = 0;
                        st.ep_nclients = 0;
                    }
                    st.ep_misses += 1;
                    let c = client_hash(&ev.client);
                    let n = (st.ep_nclients as usize).min(STORM_CLIENTS);
                    if !st.ep_clients[..n].contains(&c) {
                        if n < STORM_CLIENTS {
                            st.ep_clients[n] = c;
                        }
                        st.ep_nclients = st.ep_nclients.saturating_add(1);
                    }
                }
                _ => {}
            },
            Op::Store if wrote(ev.result) => {
                if st.flags & UNREAD != 0 {
                    out.unread = Some((U_OVERWRITTEN, st.bytes as u64));
                }
                if st.flags & EPISODE != 0 {
                    if st.ep_misses >= self.cfg.storm_min_misses
                        && u32::from(st.ep_nclients) >= self.cfg.storm_min_clients
                        && now.saturating_sub(st.ep_first) <= self.cfg.storm_window_ns
                    {
                        out.storm = Some((
                            st.ep_misses,
                            st.ep_nclients.min(STORM_CLIENTS as u16 + 1),
                            now.saturating_sub(st.ep_first) / 1000,
                        ));
                    }
                    st.flags &= !EPISODE;
                }
                st.flags = (st.flags | STORED | UNREAD) & !(DELETED_F | PRESENT);
                st.store_ts = now;
                st.deadline = deadline(ev.exptime.unwrap_or(0), now);
                st.bytes = ev.bytes.min(u32::MAX as u64) as u32;
                out.stored = Some(ttl_class(ttl_secs(ev.exptime.unwrap_or(0), now)));
            }
            Op::Append if wrote(ev.result) => {
                st.bytes = st
                    .bytes
                    .saturating_add(ev.bytes.min(u32::MAX as u64) as u32);
            }
            Op::Delete if ev.result == Outcome::Deleted || ev.result == Outcome::Noreply => {
                if st.flags & UNREAD != 0 {
                    st.flags &= !UNREAD;
                    out.unread = Some((U_DELETED, st.bytes as u64));
                }
                st.flags |= DELETED_F | STORED;
                st.flags &= !PRESENT;
            }
            Op::Touch if matches!(ev.result, Outcome::Touched | Outcome::Noreply) => {
                if let Some(x) = ev.exptime {
                    st.deadline = deadline(x, now);
                }
            }
            Op::Arith if matches!(ev.result, Outcome::Value | Outcome::Hit) => {
                st.flags &= !UNREAD;
            }
            _ => {}
        }
        let size = item_bytes(key.len(), ev.bytes, false);
        let smrc = self.server_mrc.get_mut(sidx as usize);
        match ev.op {
            Op::Get if matches!(ev.result, Outcome::Hit | Outcome::Miss) => {
                let hit = ev.result == Outcome::Hit;
                self.pool_mrc.get(h, size, hit);
                if let Some(m) = smrc {
                    m.get(h, size, hit);
                }
            }
            Op::Store | Op::Append if wrote(ev.result) => {
                let total = item_bytes(key.len(), st.bytes as u64, false);
                self.pool_mrc.store(h, total);
                if let Some(m) = smrc {
                    m.store(h, total);
                }
            }
            Op::Delete if matches!(ev.result, Outcome::Deleted | Outcome::Noreply) => {
                self.pool_mrc.delete(h);
                if let Some(m) = smrc {
                    m.delete(h);
                }
            }
            _ => {}
        }
        let item = (ev.op == Op::Store && out.stored.is_some())
            .then(|| self.classes.place(item_size(key.len(), ev.bytes)))
            .map(|(c, chunk)| (c, item_size(key.len(), ev.bytes), chunk));
        if out.storm.is_some() {
            self.storms_since += 1;
        }
        let forgotten_server = out
            .forgotten_unread
            .and_then(|(s, b)| self.servers.get(s as usize).map(|a| (*a, b)));
        let multi_with = newly_multi.and_then(|s| self.servers.get(s as usize).copied());
        // The key and family entries are where adding the record left
        // them.
        for (t, at) in std::iter::once(run).chain(win).zip(added) {
            out.book(
                t,
                at,
                sidx,
                ev,
                key,
                fam,
                item,
                forgotten_server,
                multi_with,
            );
        }
    }

    /// At the end of the run: writes still unread are counted (expired if
    /// their time has passed, else `at_end`), and the filter's error rate,
    /// in the run and in its last window (so that the windows, stored,
    /// still add up to the run).
    pub fn finish(&mut self, run: &mut Tables, mut last: Option<&mut Tables>) {
        let end = self.last_ts;
        let servers = self.servers.clone();
        let clocks = self.clocks.clone();
        for st in self.table.slots.iter_mut().filter(|s| s.h != 0) {
            if st.flags & UNREAD == 0 {
                continue;
            }
            st.flags &= !UNREAD;
            let flushed = clocks.get(st.server as usize).map_or(0, |c| {
                match c.pending.filter(|&p| p <= end) {
                    Some(p) => p.max(c.flushed_at),
                    None => c.flushed_at,
                }
            });
            let why = if flushed > st.store_ts {
                U_DELETED
            } else if st.deadline != NEVER && end >= st.deadline {
                U_EXPIRED
            } else {
                U_AT_END
            };
            if let Some(a) = servers.get(st.server as usize) {
                for t in std::iter::once(&mut *run).chain(last.as_deref_mut()) {
                    let s = t.insight.server(*a);
                    s.unread[why] += 1;
                    s.unread_bytes[why] += st.bytes as u64;
                }
            }
        }
        run.insight.seen_filter_fp_ppm = self.seen.fp_ppm();
        if let Some(l) = last {
            l.insight.seen_filter_fp_ppm = self.seen.fp_ppm();
        }
    }
}

/// What applying one record changed, booked into a period's tables.
#[derive(Default)]
struct Effects {
    /// The key had no entry: `Some(seen before)`.
    unknown: Option<bool>,
    miss: Option<usize>,
    /// A store, with its TTL class.
    stored: Option<usize>,
    unread: Option<(usize, u64)>,
    /// (misses, distinct clients, refill µs).
    storm: Option<(u32, u16, u64)>,
    state_evicted: bool,
    forgotten_unread: Option<(u16, u64)>,
}

impl Effects {
    #[allow(clippy::too_many_arguments)]
    fn book(
        &self,
        t: &mut Tables,
        at: Added,
        sidx: u16,
        ev: &Ev,
        key: &[u8],
        fam: Option<&[u8]>,
        item: Option<(usize, u64, u64)>,
        forgotten: Option<(SocketAddr, u64)>,
        multi_with: Option<SocketAddr>,
    ) {
        let ins = &mut t.insight;
        if self.state_evicted {
            ins.state_evictions += 1;
        }
        if let Some((a, b)) = forgotten {
            let s = ins.server(a);
            s.unread[U_FORGOTTEN] += 1;
            s.unread_bytes[U_FORGOTTEN] += b;
        }
        if let Some((c, total, chunk)) = item {
            if ins.slab.len() <= c {
                ins.slab.resize(c + 1, SlabRow::default());
            }
            let row = &mut ins.slab[c];
            row.items += 1;
            row.item_bytes += total;
            row.chunk_bytes += chunk;
        }
        if let Some(c) = self.stored {
            ins.ttl[c] += 1;
        }
        if let Some(other) = multi_with {
            note_multi(ins, key, other, ev);
        } else if let Some(m) = ins.multi.iter_mut().find(|m| m.key == key) {
            m.add(ev.server, ev.client);
        }
        let s = ins.server_at(sidx, ev.server);
        if let Some(c) = self.miss {
            s.misses[c] += 1;
        }
        if self.stored.is_some() {
            s.stores += 1;
        }
        if let Some((why, b)) = self.unread {
            s.unread[why] += 1;
            s.unread_bytes[why] += b;
        }
        if let Some((m, c, us)) = self.storm {
            s.storms += 1;
            s.storm_misses += m as u64;
            s.storm_clients_max = s.storm_clients_max.max(c as u64);
            s.refill_us.add(us);
        }
        if multi_with.is_some() {
            s.multi_server_keys += 1;
        }
        // Plain hits change no family figure: no lookup for them.
        let touches_family = self.miss.is_some() || self.stored.is_some() || self.unread.is_some();
        if let Some(f) = fam
            .filter(|_| touches_family)
            .and_then(|f| t.families.at_or_get_mut(at.family, f))
        {
            let fi = &mut f.stats.insight;
            if let Some(c) = self.miss {
                fi.misses[c] += 1;
            }
            if let Some(c) = self.stored {
                fi.stores += 1;
                fi.ttl[c] += 1;
            }
            if let Some((why, b)) = self.unread {
                fi.unread[why] += 1;
                fi.unread_bytes[why] += b;
            }
            if let Some((_, total, chunk)) = item {
                fi.item_bytes += total;
                fi.chunk_bytes += chunk;
            }
        }
        if self.miss.is_some() || self.unread.is_some() || self.storm.is_some() {
            if let Some(k) = t.keys.at_or_get_mut(at.key, key) {
                let ki = &mut k.stats.insight;
                if let Some(c) = self.miss {
                    ki.misses[c] = ki.misses[c].saturating_add(1);
                }
                if let Some((_, b)) = self.unread {
                    ki.unread += 1;
                    ki.unread_bytes += b;
                }
                if let Some((m, c, us)) = self.storm {
                    ki.storms += 1;
                    ki.storm_misses += m;
                    ki.storm_clients_max = ki.storm_clients_max.max(c);
                    ki.refill_us_max = ki.refill_us_max.max(us);
                }
            }
        }
    }
}

fn note_multi(ins: &mut InsightTables, key: &[u8], other: SocketAddr, ev: &Ev) {
    if let Some(m) = ins.multi.iter_mut().find(|m| m.key == key) {
        m.add(other, ev.client);
        m.add(ev.server, ev.client);
        return;
    }
    if ins.multi.len() >= ins.examples_cap {
        ins.examples_dropped += 1;
        return;
    }
    let mut m = MultiServerKey {
        key: key.to_vec(),
        servers: vec![other],
        clients: Vec::new(),
    };
    m.add(ev.server, ev.client);
    ins.multi.push(m);
}

impl MultiServerKey {
    fn add(&mut self, server: SocketAddr, client: SocketAddr) {
        if !self.servers.contains(&server) && self.servers.len() < EXAMPLE_SERVERS {
            self.servers.push(server);
        }
        let c = (client.ip(), server);
        if !self.clients.iter().any(|(a, s)| (a.ip(), *s) == c)
            && self.clients.len() < EXAMPLE_CLIENTS
        {
            self.clients.push((client, server));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key's probes all fall in one cache line, which is what the
    /// prefetch asks for: the filter's lines start on line boundaries.
    #[test]
    fn the_seen_filter_probes_one_aligned_line() {
        let mut f = SeenFilter::new(4096);
        assert_eq!(f.lines.len(), 64);
        assert_eq!(f.lines.as_ptr() as usize % 64, 0);
        let hashes: Vec<u64> = (1..=200u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let fresh = hashes.iter().filter(|&&h| !f.insert(h)).count();
        assert!(fresh >= 195, "{fresh} of 200 new");
        assert!(hashes.iter().all(|&h| f.insert(h)), "all seen again");
        // Each insert set at most three bits, all in the hash's own line.
        let set: u32 = f.lines.iter().flat_map(|l| l.0).map(u64::count_ones).sum();
        assert_eq!(u64::from(set), f.set_bits);
        assert!(f.set_bits <= 600);
        let h = hashes[0];
        let mut g = SeenFilter::new(4096);
        g.insert(h);
        let lit: Vec<usize> = (0..g.lines.len())
            .filter(|&i| g.lines[i].0.iter().any(|&w| w != 0))
            .collect();
        assert_eq!(lit, [g.line(h)]);
        assert_eq!(g.bytes(), 4096);
    }

    #[test]
    fn state_costs_what_docs_insight_says() {
        // docs/insight.md "Bounds": 131,072 entries of this size, plus one
        // 64-byte line per set of 8 (8 bytes an entry).
        assert_eq!(std::mem::size_of::<KeyState>(), 64);
        assert_eq!(std::mem::size_of::<SetMeta>(), 64);
        let i = Insight::new(&InsightConfig::default());
        assert_eq!(
            i.heap_bytes(),
            131_072 * (64 + 8) + (4 << 20) + i.pool_mrc.heap_bytes()
        );
    }

    #[test]
    fn a_set_replaces_its_least_recently_used_way() {
        let mut m = SetMeta::default();
        // Free ways first, in order.
        for w in 0..WAYS {
            assert_eq!(m.victim(), w);
            m.tags[w] = 1;
            m.touch(w);
        }
        // Full: way 0 was used longest ago; using it makes way 1 the one.
        assert_eq!(m.victim(), 0);
        m.touch(0);
        assert_eq!(m.victim(), 1);
        m.touch(5);
        m.touch(1);
        assert_eq!(m.victim(), 2);
        // Every way stays in the order exactly once.
        let mut seen: Vec<u32> = (0..WAYS).map(|p| (m.order >> (4 * p)) & 0xf).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..WAYS as u32).collect::<Vec<_>>());
        // Touching the most recent way changes nothing.
        let o = m.order;
        m.touch(1);
        assert_eq!(m.order, o);
        // A freed way is taken before any used one.
        m.tags[6] = 0;
        assert_eq!(m.victim(), 6);
        // Against a list kept in recency order, over a long random walk.
        let mut m = SetMeta {
            tags: [1; WAYS],
            ..SetMeta::default()
        };
        let mut list: Vec<usize> = (0..WAYS).collect();
        let mut x = 12345u64;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let w = (x >> 40) as usize % WAYS;
            m.touch(w);
            list.retain(|&v| v != w);
            list.insert(0, w);
            let order: Vec<usize> = (0..WAYS)
                .map(|p| (m.order >> (4 * p)) as usize & 0xf)
                .collect();
            assert_eq!(order, list);
            assert_eq!(m.victim(), list[WAYS - 1]);
        }
    }

    #[test]
    fn ttl_classes() {
        assert_eq!(ttl_class(None), 0);
        assert_eq!(ttl_class(Some(-1)), 1);
        assert_eq!(ttl_class(Some(1)), 2);
        assert_eq!(ttl_class(Some(100)), 8);
        assert_eq!(ttl_class_label(8), "64s");
        assert_eq!(ttl_class(Some(i64::MAX)), TTL_CLASSES - 1);
    }

    #[test]
    fn deadlines_follow_memcached() {
        let now = 1_700_000_000 * SEC;
        assert_eq!(deadline(0, now), NEVER);
        assert_eq!(deadline(-1, now), now);
        assert_eq!(deadline(30, now), now + 30 * SEC);
        // Over 30 days: a Unix time.
        assert_eq!(deadline(1_700_000_100, now), 1_700_000_100 * SEC);
    }
}
