//! Miss-ratio curves from the wire: the hit ratio this traffic would get
//! from an LRU cache of every size, in fixed memory.
//!
//! # The model
//!
//! The cache is one LRU list over objects weighted by their size in bytes
//! (the caller decides what a size is; [`item_bytes`] gives memcached's
//! own accounting of an item):
//!
//! * a **store** (`set`, `add`, `replace`, `cas`, `append`... that the
//!   server accepted) puts the object at the most-recently-used end with
//!   its new size: this is how look-aside clients fill after a miss;
//! * a **get** of an object in the list is a hit for every cache size `C`
//!   at least its *stack distance*: the bytes of the distinct objects used
//!   since its last use, its own size included (so "hit" means "it still
//!   fits in `C`"); it then moves to the most-recently-used end. On a real
//!   hit the size seen on the wire replaces the known one;
//! * a get of an object not in the list (never seen in the capture, or
//!   deleted since) is a *compulsory* miss: no cache size would have hit.
//!   It does not enter the list (a look-aside client's fill is the store
//!   that follows) — unless the real server hit it, which shows the object
//!   exists: it enters with the size seen. Such first-seen hits are
//!   counted apart ([`Curve::cold_hits`]): a capture that starts on a warm
//!   cache makes them, and the curve counts them as misses;
//! * a **delete** removes the object; `flush_all` ([`Mrc::flush`]) removes
//!   every object.
//!
//! Hit ratio at size `C` = gets at distance ≤ `C` / all gets. This is
//! exactly a byte-capacity LRU while objects keep or grow their sizes; a
//! delete or a shrink frees room that the stack view lets the objects
//! behind move into, where a real LRU has already evicted them — the
//! curve is then slightly optimistic for those objects. Expiry (TTL) is
//! not modelled: an expired object's get counts at its distance.
//!
//! # Cost: SHARDS, fixed size
//!
//! Keys are sampled spatially (Waldspurger et al., "Efficient MRC
//! Construction with SHARDS", FAST '15): the caller's 64-bit key hash is
//! remixed (so the sampling does not correlate with any use the caller
//! made of the same hash, e.g. choosing a collector) and a key is tracked
//! iff the top 32 bits of the mix are below a threshold `T`; the sampling
//! rate is `R = T / 2^32`. Distances among sampled keys are scaled by
//! `1/R` (and by [`MrcConfig::scale`], the number of key partitions that
//! feed separate instances). A non-sampled reference costs a remix and
//! one compare.
//!
//! The sampled set is bounded ([`MrcConfig::max_samples`]): when a new
//! key would exceed it, `T` drops to the largest sampled value and the keys
//! at or above it leave; the histogram so far is rescaled by `T'/T` so
//! that every count is at the final rate (SHARDS' fixed-size variant).
//! When the curve is read, the difference between the expected number of
//! sampled gets (`gets × R`) and the counted ones goes to the smallest
//! distances (SHARDS_adj: added to the first bucket, or taken off the
//! first non-empty ones): it corrects the error of sampling (or not) a
//! very hot key, whose reuses are short. A sampled distance is the
//! object's own size plus the others' bytes scaled by `1/R`.
//!
//! Stack distances come from a Fenwick tree over reference times (each
//! live object's size sits at the time of its last reference), compacted
//! in place when the time index runs out: O(log n) per sampled reference,
//! no allocation once the sampled set has reached its bound. Distances go
//! into log-spaced buckets (16 per doubling, 1 KiB to 1 TiB), so the
//! histogram is a fixed 481 counts.
//!
//! # Memory
//!
//! About 145 bytes per sampled key (hash map at half load, entry, heap
//! position, two time slots) plus a 3.8 KiB histogram: with the default
//! 8,192 samples at most about 1.2 MiB per instance ([`Mrc::heap_bytes`]),
//! reached only once that many keys are sampled.
//! The exact mode (every key, no bound) is for tests and small captures.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::hash::{BuildHasherDefault, Hasher};

/// Buckets per doubling of the cache size.
const PER_DOUBLING: usize = 16;
/// 1 KiB .. 1 TiB.
const DOUBLINGS: usize = 30;
/// Histogram buckets: bucket `i` holds distances in `(BOUNDS[i-1], BOUNDS[i]]`
/// (bucket 0: up to 1 KiB).
pub const BUCKETS: usize = PER_DOUBLING * DOUBLINGS + 1;
/// `round(2^16 * 2^(j/16))`: the mantissas of one doubling.
const MANTISSAS: [u64; PER_DOUBLING] = [
    65536, 68438, 71468, 74632, 77936, 81386, 84990, 88752, 92682, 96785, 101070, 105545, 110218,
    115098, 120194, 125515,
];

const fn make_bounds() -> [u64; BUCKETS] {
    let mut b = [0u64; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        b[i] = ((1024u64 << (i / PER_DOUBLING)) * MANTISSAS[i % PER_DOUBLING]) >> 16;
        i += 1;
    }
    b
}

/// Upper bound in bytes of each histogram bucket: the cache sizes at
/// which the curve is exact.
pub static BOUNDS: [u64; BUCKETS] = make_bounds();

/// Sampling values are the top 32 bits of the remixed hash.
const FULL: u64 = 1 << 32;
const NONE: u32 = u32::MAX;

/// memcached's accounting of an item (`ITEM_ntotal`, 64-bit build, CAS
/// on): the 48-byte item header, the 8-byte CAS, the key and its NUL, the
/// client flags (4 bytes, only when non-zero) and the value with its
/// trailing CRLF. What `-m` counts before slab-class rounding.
pub fn item_bytes(key_len: usize, value_len: u64, flags_nonzero: bool) -> u32 {
    let n = (48 + 8 + 1 + 2 + if flags_nonzero { 4 } else { 0 } + key_len as u64)
        .saturating_add(value_len);
    n.min(u32::MAX as u64) as u32
}

/// How an instance samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MrcConfig {
    /// Initial SHARDS rate, in (0, 1].
    pub sample_rate: f64,
    /// Bound on the sampled keys tracked (the fixed-size variant lowers the
    /// rate to stay under it). At least 64.
    pub max_samples: usize,
    /// Every key, unbounded: tests and small captures.
    pub exact: bool,
    /// Key partitions feeding separate instances (collectors shard keys by
    /// hash): distances are multiplied by it so every instance's curve is
    /// at the scale of the whole traffic. 1 when one instance sees it all.
    pub scale: u32,
}

impl Default for MrcConfig {
    fn default() -> Self {
        MrcConfig {
            sample_rate: 0.01,
            max_samples: 8192,
            exact: false,
            scale: 1,
        }
    }
}

impl MrcConfig {
    /// Every key, no sampling, no bound.
    pub fn exact() -> Self {
        MrcConfig {
            exact: true,
            ..MrcConfig::default()
        }
    }

    /// The configuration's errors, in words, for the config loader.
    pub fn check(&self) -> Result<(), String> {
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return Err(format!(
                "mrc sample_rate {} is not in (0, 1]",
                self.sample_rate
            ));
        }
        if !(64..=1 << 30).contains(&self.max_samples) {
            return Err(format!(
                "mrc max_samples {} is not in 64..=2^30",
                self.max_samples
            ));
        }
        if self.scale == 0 {
            return Err("mrc scale must be at least 1".into());
        }
        Ok(())
    }
}

/// splitmix64's finalizer: a bijection, so distinct hashes stay distinct.
#[inline]
fn mix(h: u64) -> u64 {
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The map's hash of an already mixed key. Sampled keys all have small
/// top bits (below `T`), which hashbrown uses as its tag: multiplying
/// moves the random low bits up.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The mixed hash.
    key: u64,
    size: u32,
    /// Time index of the last reference.
    slot: u32,
    /// Position in the max-heap.
    heap: u32,
}

impl Entry {
    #[inline]
    fn sample_value(&self) -> u64 {
        self.key >> 32
    }
}

/// What an instance counted: the histogram of stack distances and the
/// totals. Separate from the stack state so windows can be taken and
/// merged while the reuse distances span them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MrcCounts {
    /// Sampling threshold every weight is at (rate = t / 2^32).
    t: u64,
    /// Weights of sampled gets per distance bucket, at rate `t`.
    hist: Box<[f64]>,
    /// Sampled gets at distances beyond the last bucket (> 1 TiB).
    over: f64,
    /// Sampled compulsory misses.
    cold: f64,
    /// Sampled first-seen gets the server hit (a subset of `cold`).
    cold_hits: f64,
    /// Every get, sampled or not, and the server's hits among them.
    gets: u64,
    hits: u64,
    /// Sampled gets (unscaled).
    sampled: u64,
}

impl MrcCounts {
    fn new(t: u64) -> Self {
        MrcCounts {
            t,
            hist: vec![0.0; BUCKETS].into_boxed_slice(),
            over: 0.0,
            cold: 0.0,
            cold_hits: 0.0,
            gets: 0,
            hits: 0,
            sampled: 0,
        }
    }

    /// The sampling rate the counts are at.
    pub fn sample_rate(&self) -> f64 {
        self.t as f64 / FULL as f64
    }

    #[inline]
    fn record(&mut self, d: u64) {
        let i = BOUNDS.partition_point(|&b| b < d);
        match self.hist.get_mut(i) {
            Some(w) => *w += 1.0,
            None => self.over += 1.0,
        }
    }

    /// Brings every weight to the lower threshold `t`.
    fn rescale(&mut self, t: u64) {
        if t >= self.t {
            return;
        }
        let f = t as f64 / self.t as f64;
        for w in self.hist.iter_mut() {
            *w *= f;
        }
        self.over *= f;
        self.cold *= f;
        self.cold_hits *= f;
        self.t = t;
    }

    /// Adds `o`'s counts. Valid for counts over disjoint key partitions of
    /// the same traffic (instances with `scale` = the number of partitions;
    /// the sum is the whole traffic's curve), for counts of consecutive
    /// windows of one instance, and for both. The result is at the lower
    /// of the two rates.
    pub fn merge(&mut self, o: &MrcCounts) {
        let t = self.t.min(o.t);
        self.rescale(t);
        let f = if o.t == t { 1.0 } else { t as f64 / o.t as f64 };
        for (w, ow) in self.hist.iter_mut().zip(o.hist.iter()) {
            *w += ow * f;
        }
        self.over += o.over * f;
        self.cold += o.cold * f;
        self.cold_hits += o.cold_hits * f;
        self.gets += o.gets;
        self.hits += o.hits;
        self.sampled += o.sampled;
    }

    /// Zeroes the counts, keeping the rate.
    pub fn clear(&mut self) {
        self.hist.fill(0.0);
        self.over = 0.0;
        self.cold = 0.0;
        self.cold_hits = 0.0;
        self.gets = 0;
        self.hits = 0;
        self.sampled = 0;
    }

    /// The curve these counts make.
    pub fn curve(&self) -> Curve {
        let r = self.sample_rate();
        let current = if self.gets == 0 {
            0.0
        } else {
            self.hits as f64 / self.gets as f64
        };
        let mut hist = self.hist.to_vec();
        // SHARDS_adj: the sampled gets should number gets × R; the
        // difference comes mostly from a hot key in (or out of) the
        // sample, whose reuses are short.
        let counted: f64 = hist.iter().sum::<f64>() + self.over + self.cold;
        let expected = self.gets as f64 * r;
        if counted > 0.0 {
            let mut adj = expected - counted;
            if adj >= 0.0 {
                hist[0] += adj;
            } else {
                // Too many: take them off the shortest distances first.
                for w in hist.iter_mut() {
                    let take = w.min(-adj);
                    *w -= take;
                    adj += take;
                    if adj >= 0.0 {
                        break;
                    }
                }
            }
        }
        let denom = hist.iter().sum::<f64>() + self.over + self.cold;
        let mut c = Curve {
            points: Vec::new(),
            accesses: self.gets,
            current_hit_ratio: current,
            attainable_hit_ratio: 0.0,
            sample_rate: r,
            samples: self.sampled,
            cold_hits: (self.cold_hits / r).round() as u64,
        };
        if denom <= 0.0 {
            return c;
        }
        c.attainable_hit_ratio = (denom - self.cold) / denom;
        let mut cum = 0.0;
        for (i, &w) in hist.iter().enumerate() {
            if w > 0.0 {
                cum += w;
                c.points.push((BOUNDS[i], (cum / denom).min(1.0)));
            }
        }
        c
    }
}

/// A miss-ratio curve: for cache sizes, the hit ratio an LRU cache of that
/// size would have had on the traffic seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// (cache bytes, hit ratio), increasing in both; a step function: the
    /// ratio holds from its size up to the next point's.
    pub points: Vec<(u64, f64)>,
    /// Gets the curve stands for (all of them, not only the sampled).
    pub accesses: u64,
    /// The real server's hit ratio over the same gets.
    pub current_hit_ratio: f64,
    /// An infinite cache's: all but the compulsory misses.
    pub attainable_hit_ratio: f64,
    /// The sampling rate at the end (1 in exact mode).
    pub sample_rate: f64,
    /// Sampled gets behind the curve.
    pub samples: u64,
    /// Gets (estimated) the server hit on keys first seen in the capture:
    /// counted as misses, since the capture holds no reuse for them.
    pub cold_hits: u64,
}

/// Shares of the attainable hits that reports give sizes for.
pub const TARGETS: [f64; 3] = [0.9, 0.95, 0.99];

impl Curve {
    /// The hit ratio at cache size `bytes` (exact at the points' sizes).
    pub fn ratio_at(&self, bytes: u64) -> f64 {
        match self.points.partition_point(|p| p.0 <= bytes) {
            0 => 0.0,
            i => self.points[i - 1].1,
        }
    }

    /// The smallest size at which the curve reaches `share` of the
    /// attainable hit ratio; `None` when it never does (no gets, nothing
    /// attainable, or beyond 1 TiB).
    pub fn size_for(&self, share_of_attainable: f64) -> Option<u64> {
        if self.attainable_hit_ratio <= 0.0 {
            return None;
        }
        // A relative slack: the sums behind both sides round differently.
        let want = share_of_attainable * self.attainable_hit_ratio * (1.0 - 1e-12);
        self.points.iter().find(|p| p.1 >= want).map(|p| p.0)
    }

    /// `{"unit":"bytes","sampling":R,"current_hit_ratio":x,
    /// "attainable_hit_ratio":y,"points":[[bytes,ratio],...],
    /// "targets":[[0.9,bytes|null],[0.95,..],[0.99,..]]}`; ratios rounded
    /// to 6 decimals.
    pub fn to_json(&self) -> serde_json::Value {
        let r6 = |x: f64| (x * 1e6).round() / 1e6;
        serde_json::json!({
            "unit": "bytes",
            "sampling": self.sample_rate,
            "current_hit_ratio": r6(self.current_hit_ratio),
            "attainable_hit_ratio": r6(self.attainable_hit_ratio),
            "points": self.points.iter().map(|&(b, r)| serde_json::json!([b, r6(r)])).collect::<Vec<_>>(),
            "targets": TARGETS.iter().map(|&s| serde_json::json!([s, self.size_for(s)])).collect::<Vec<_>>(),
        })
    }
}

/// One miss-ratio curve builder: the sampled LRU stack and its counts.
#[derive(Debug, Clone)]
pub struct Mrc {
    /// Sampling threshold on the top 32 bits of the mixed hash.
    t: u64,
    /// Sampled keys kept at most (`usize::MAX` in exact mode).
    max: usize,
    /// Time slots at most (twice the keys, so a compaction frees half).
    max_slots: usize,
    scale: u64,
    map: KeyMap,
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Max-heap of entries by sampling value: the first to leave.
    heap: Vec<u32>,
    /// Fenwick tree (1-based) over time slots: the size of the object
    /// whose last reference is at that slot.
    fen: Vec<u64>,
    /// The entry at each time slot, `NONE` when superseded.
    slot_entry: Vec<u32>,
    clock: u32,
    /// Bytes of every tracked object.
    total: u64,
    counts: MrcCounts,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
    }
}

const FIRST_SLOTS: usize = 1024;

impl Mrc {
    /// An empty instance. Out-of-range settings are clamped
    /// ([`MrcConfig::check`] tells the user about them).
    pub fn new(cfg: &MrcConfig) -> Mrc {
        let (t, max, max_slots) = if cfg.exact {
            (FULL, usize::MAX, NONE as usize - 1)
        } else {
            let r = if cfg.sample_rate.is_nan() {
                1.0
            } else {
                cfg.sample_rate.clamp(0.0, 1.0)
            };
            let max = cfg.max_samples.clamp(64, 1 << 30);
            (
                ((r * FULL as f64) as u64).clamp(1, FULL),
                max,
                2 * (max + 1),
            )
        };
        let slots = FIRST_SLOTS.min(max_slots);
        Mrc {
            t,
            max,
            max_slots,
            scale: cfg.scale.max(1) as u64,
            map: KeyMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
            heap: Vec::new(),
            fen: vec![0; slots + 1],
            slot_entry: vec![NONE; slots],
            clock: 0,
            total: 0,
            counts: MrcCounts::new(t),
        }
    }

    /// A get of the key whose 64-bit hash is `h` (any good hash of the
    /// key bytes; the same for every reference of the key). `hit` is the
    /// real server's answer; on a hit `bytes` is the object's size, on a
    /// miss it is ignored (the last known size holds).
    #[inline]
    pub fn get(&mut self, h: u64, bytes: u32, hit: bool) {
        self.counts.gets += 1;
        self.counts.hits += hit as u64;
        let k = mix(h);
        if k >> 32 < self.t {
            self.get_sampled(k, bytes, hit);
        }
    }

    /// A store the server accepted: the object now exists with `bytes`.
    #[inline]
    pub fn store(&mut self, h: u64, bytes: u32) {
        let k = mix(h);
        if k >> 32 < self.t {
            match self.map.get(&k) {
                Some(&e) => self.touch(e, bytes),
                None => self.insert(k, bytes),
            }
        }
    }

    /// A delete (or any command that removed the object).
    #[inline]
    pub fn delete(&mut self, h: u64) {
        let k = mix(h);
        if k >> 32 < self.t {
            if let Some(&e) = self.map.get(&k) {
                self.remove(e);
            }
        }
    }

    /// `flush_all`: every object is gone (the counts stay).
    pub fn flush(&mut self) {
        self.map.clear();
        self.entries.clear();
        self.free.clear();
        self.heap.clear();
        self.fen.fill(0);
        self.slot_entry.fill(NONE);
        self.clock = 0;
        self.total = 0;
    }

    /// Adds `o`'s counts to this instance's (see [`MrcCounts::merge`] for
    /// what is valid); the stack state stays this instance's.
    pub fn merge(&mut self, o: &Mrc) {
        self.counts.merge(&o.counts);
    }

    pub fn counts(&self) -> &MrcCounts {
        &self.counts
    }

    /// The counts so far, leaving zeroed ones at the current rate: one
    /// window's curve, while reuse distances keep spanning windows.
    /// Forgets the counts so far (as `take_counts`, without a new
    /// allocation); the stack state stays.
    pub fn clear_counts(&mut self) {
        self.counts.clear();
    }

    pub fn take_counts(&mut self) -> MrcCounts {
        let fresh = MrcCounts::new(self.t);
        std::mem::replace(&mut self.counts, fresh)
    }

    pub fn curve(&self) -> Curve {
        self.counts.curve()
    }

    /// The current sampling rate.
    pub fn sample_rate(&self) -> f64 {
        self.t as f64 / FULL as f64
    }

    /// Sampled keys tracked now.
    pub fn tracked(&self) -> usize {
        self.map.len()
    }

    /// Heap memory held (bounded by `max_samples` outside exact mode).
    pub fn heap_bytes(&self) -> usize {
        self.map.allocation_size()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + (self.free.capacity() + self.heap.capacity() + self.slot_entry.capacity()) * 4
            + self.fen.capacity() * 8
            + self.counts.hist.len() * 8
    }

    #[cold]
    #[inline(never)]
    fn get_sampled(&mut self, k: u64, bytes: u32, hit: bool) {
        self.counts.sampled += 1;
        match self.map.get(&k) {
            Some(&e) => {
                let ent = self.entries[e as usize];
                let newer = self.total - self.prefix(ent.slot);
                // Bytes of the whole traffic: each sampled byte of the
                // others stands for 1/R (and each partition for `scale`);
                // the object's own size counts once.
                let others = (newer as u128 * self.scale as u128 * FULL as u128 / self.t as u128)
                    .min(u64::MAX as u128) as u64;
                let scaled = others.saturating_add(ent.size as u64);
                self.counts.record(scaled);
                let size = if hit { bytes } else { ent.size };
                self.touch(e, size);
            }
            None => {
                self.counts.cold += 1.0;
                if hit {
                    self.counts.cold_hits += 1.0;
                    self.insert(k, bytes);
                }
            }
        }
    }

    /// Sum of the slots up to and including `slot`.
    fn prefix(&self, slot: u32) -> u64 {
        let mut i = slot as usize + 1;
        let mut s = 0u64;
        while i > 0 {
            s = s.wrapping_add(self.fen[i]);
            i &= i - 1;
        }
        s
    }

    fn fen_add(&mut self, slot: u32, v: u64) {
        let mut i = slot as usize + 1;
        while i < self.fen.len() {
            self.fen[i] = self.fen[i].wrapping_add(v);
            i += i & i.wrapping_neg();
        }
    }

    fn fen_sub(&mut self, slot: u32, v: u64) {
        let mut i = slot as usize + 1;
        while i < self.fen.len() {
            self.fen[i] = self.fen[i].wrapping_sub(v);
            i += i & i.wrapping_neg();
        }
    }

    /// Moves entry `e` to now with `size`.
    fn touch(&mut self, e: u32, size: u32) {
        let old = self.entries[e as usize];
        self.fen_sub(old.slot, old.size as u64);
        self.slot_entry[old.slot as usize] = NONE;
        self.total -= old.size as u64;
        let slot = self.next_slot();
        self.place(e, slot, size);
    }

    fn place(&mut self, e: u32, slot: u32, size: u32) {
        let ent = &mut self.entries[e as usize];
        ent.slot = slot;
        ent.size = size;
        self.slot_entry[slot as usize] = e;
        self.fen_add(slot, size as u64);
        self.total += size as u64;
    }

    fn next_slot(&mut self) -> u32 {
        if self.clock as usize == self.slot_entry.len() {
            self.compact();
        }
        let s = self.clock;
        self.clock += 1;
        s
    }

    /// Renumbers the live slots 0.. in order and rebuilds the tree; grows
    /// the index while it is less than twice the live objects.
    #[cold]
    fn compact(&mut self) {
        let mut live = 0usize;
        for i in 0..self.clock as usize {
            let e = self.slot_entry[i];
            if e != NONE {
                self.slot_entry[live] = e;
                self.entries[e as usize].slot = live as u32;
                live += 1;
            }
        }
        let n = self.slot_entry.len();
        if (live + 1) * 2 > n && n < self.max_slots {
            let m = (n * 2).min(self.max_slots);
            self.slot_entry.resize(m, NONE);
            self.fen.resize(m + 1, 0);
        }
        self.slot_entry[live..].fill(NONE);
        self.fen.fill(0);
        for i in 0..live {
            self.fen[i + 1] = self.entries[self.slot_entry[i] as usize].size as u64;
        }
        let len = self.fen.len();
        for i in 1..len {
            let j = i + (i & i.wrapping_neg());
            if j < len {
                self.fen[j] = self.fen[j].wrapping_add(self.fen[i]);
            }
        }
        self.clock = live as u32;
    }

    fn insert(&mut self, k: u64, size: u32) {
        let ent = Entry {
            key: k,
            size: 0,
            slot: NONE,
            heap: NONE,
        };
        let e = match self.free.pop() {
            Some(e) => {
                self.entries[e as usize] = ent;
                e
            }
            None => {
                push_bounded(&mut self.entries, ent, self.max.saturating_add(1));
                (self.entries.len() - 1) as u32
            }
        };
        self.map_room();
        self.map.insert(k, e);
        let slot = self.next_slot();
        self.place(e, slot, size);
        self.heap_push(e);
        if self.map.len() > self.max {
            self.lower_rate();
        }
    }

    /// Grows the map by doubling up to room for twice the sample bound:
    /// from there hashbrown clears deleted slots in place instead of
    /// growing again, so the memory stops at that size.
    fn map_room(&mut self) {
        if self.max == usize::MAX {
            return;
        }
        let len = self.map.len();
        let target = 2 * (self.max + 2);
        let cap = self.map.capacity();
        if cap < target && (len == cap || 2 * len > self.max) {
            let want = if 2 * len > self.max {
                target
            } else {
                (2 * len).clamp(16, target)
            };
            self.map.reserve(want - len);
        }
    }

    fn remove(&mut self, e: u32) {
        let ent = self.entries[e as usize];
        self.map.remove(&ent.key);
        self.heap_remove(e);
        self.fen_sub(ent.slot, ent.size as u64);
        self.total -= ent.size as u64;
        self.slot_entry[ent.slot as usize] = NONE;
        push_bounded(&mut self.free, e, self.max.saturating_add(1));
    }

    /// SHARDS fixed-size: the threshold drops to the largest sampled value,
    /// whose keys leave; the counts follow to the new rate.
    #[cold]
    fn lower_rate(&mut self) {
        let t = self.entries[self.heap[0] as usize].sample_value();
        while let Some(&top) = self.heap.first() {
            if self.entries[top as usize].sample_value() < t {
                break;
            }
            self.remove(top);
        }
        self.t = t;
        self.counts.rescale(t);
    }

    fn heap_value(&self, pos: usize) -> u64 {
        self.entries[self.heap[pos] as usize].sample_value()
    }

    fn heap_set(&mut self, pos: usize, e: u32) {
        self.heap[pos] = e;
        self.entries[e as usize].heap = pos as u32;
    }

    fn heap_push(&mut self, e: u32) {
        push_bounded(&mut self.heap, e, self.max.saturating_add(1));
        let pos = self.heap.len() - 1;
        self.entries[e as usize].heap = pos as u32;
        self.sift_up(pos);
    }

    fn heap_remove(&mut self, e: u32) {
        let pos = self.entries[e as usize].heap as usize;
        let last = self.heap.pop().expect("entry in heap");
        if pos < self.heap.len() {
            self.heap_set(pos, last);
            self.sift_down(pos);
            self.sift_up(pos);
        }
        self.entries[e as usize].heap = NONE;
    }

    fn sift_up(&mut self, mut pos: usize) {
        let e = self.heap[pos];
        let v = self.entries[e as usize].sample_value();
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap_value(parent) >= v {
                break;
            }
            let p = self.heap[parent];
            self.heap_set(pos, p);
            pos = parent;
        }
        self.heap_set(pos, e);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let e = self.heap[pos];
        let v = self.entries[e as usize].sample_value();
        let n = self.heap.len();
        loop {
            let l = 2 * pos + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.heap_value(r) > self.heap_value(l) {
                r
            } else {
                l
            };
            if self.heap_value(c) <= v {
                break;
            }
            let ce = self.heap[c];
            self.heap_set(pos, ce);
            pos = c;
        }
        self.heap_set(pos, e);
    }
}

/// Pushes, growing the capacity by doubling but never past `bound`.
fn push_bounded<T>(v: &mut Vec<T>, x: T, bound: usize) {
    if v.len() == v.capacity() {
        let want = (v.capacity() * 2).clamp(16, bound.max(v.len() + 1));
        v.reserve_exact(want - v.len());
    }
    v.push(x);
}

#[cfg(test)]
mod tests;
