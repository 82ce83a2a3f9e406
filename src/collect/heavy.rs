//! A bounded heavy-hitter table: Space-Saving (Metwally, Agrawal, El Abbadi,
//! 2005) over byte-string keys, with a caller-defined stats payload per item.
//!
//! Collector threads keep per-key and per-client statistics in one
//! [`HeavyHitters`] each: memory is bounded by the capacity set at
//! construction, whatever the number of distinct keys in the traffic.
//!
//! # Guarantees
//!
//! Let `N` be the total weight given to [`HeavyHitters::update`] and `k` the
//! capacity.
//!
//! * While at most `k` distinct keys were seen the table is exact: every
//!   count is the true total and every `error_bound` is 0.
//! * Once full, a new key takes the place of the item with the smallest
//!   count `min` (the eviction is counted) and starts at `count = min +
//!   weight`, `error_bound = min`. For every item in the table `true <=
//!   count <= true + error_bound`, and `error_bound <= min <= N / k`.
//! * The counts of the items add up to `N` (at most `N` after a merge).
//! * Every key whose true total exceeds [`HeavyHitters::unmonitored_bound`]
//!   (at most `N / k`) is in the table.
//! * Merging keeps these, and raises no exact count for nothing: a key
//!   absent from one table gets that table's bound only when the table may
//!   have seen it. [`HeavyHitters::merge_disjoint`] is for shards that own
//!   disjoint keys (never); [`HeavyHitters::with_dropped_filter`] makes a
//!   table remember what it dropped, for shards whose keys overlap.
//!
//! # Payload
//!
//! `T: Default` is the caller's per-item payload (hits, misses, bytes, ...),
//! reached through [`Entry::stats`]. The table never reads it. When a key
//! is evicted its payload is dropped and the newcomer starts from
//! `T::default()`, so payload fields are *lower bounds* over the item's
//! tenure: they miss whatever the key did before it was (last) admitted.
//! [`Entry::error_bound`] is 0 when the item's count is exact, which (for
//! positive weights) means the key has been in the table since its first
//! occurrence, so its payload is complete too; reports should flag the
//! others.
//!
//! # Cost
//!
//! An open-addressed index of slot numbers ([`SlotIndex`]; foldhash with a
//! per-process, per-table random seed, since keys are attacker-controlled)
//! finds a key without allocating, and tells where a key's cells and item
//! lie, so a caller that knows its next keys can prefetch them
//! ([`HeavyHitters::prefetch_index`] and the two after it). The items are ordered by count in a stream summary
//! (Metwally et al.): one bucket per distinct count, in ascending order,
//! each holding a list of its items. An update by weight 1 (what the
//! collectors do) moves the item to the next bucket, or creates it: O(1),
//! where a binary heap needed a sift through up to log2(k) levels (each a
//! cache miss on a large table) whenever many items share the smallest
//! count, i.e. on every admission of a churning table. An update by weight
//! `w` walks past the buckets between the old and the new count. A key of
//! up to [`INLINE`](super::keybuf::INLINE) bytes is held in its item
//! ([`KeyBuf`]); a longer one in a heap buffer allocated only when the key
//! is admitted and no spare is at hand: an evicted key's buffer is reused
//! for its successor when the size fits, kept as a spare when the
//! successor is short, and [`HeavyHitters::clear`] keeps every buffer for
//! the next window.
//!
//! # Determinism
//!
//! The table's content, the order of [`HeavyHitters::iter`], and the result
//! of [`HeavyHitters::top_n`] and [`HeavyHitters::merge`] depend only on the
//! sequence of operations, never on hash values or hash-table iteration
//! order. Slots are assigned in admission order (an evicted item's slot goes
//! to its successor), and of several items tied at the minimum count the
//! one evicted is the one that reached that count first (each bucket lists
//! its items in the order they arrived in it; a merge rebuilds the buckets
//! in slot order). Sorted outputs break ties by key bytes.

use std::fmt;
use std::hash::BuildHasher;
use std::mem::size_of;

use hashbrown::DefaultHashBuilder;

use super::keybuf::KeyBuf;
use super::slot_index::SlotIndex;

/// A key buffer no larger than this is reused for any key that fits in it.
const MIN_REUSE: usize = 64;

/// Where an entry sits in its table, from [`HeavyHitters::update_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId(u32);

/// One item of a [`HeavyHitters`] table: its key, its (over)estimated count,
/// how much of that count may be overestimate, and the caller's payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry<T> {
    key: KeyBuf,
    count: u64,
    error_bound: u64,
    /// The caller's payload. Reset to `T::default()` when the key is
    /// admitted in place of an evicted one: its fields cover only the
    /// item's current tenure and are lower bounds when
    /// [`error_bound`](Entry::error_bound) is not 0.
    pub stats: T,
}

impl<T> Entry<T> {
    /// The key's bytes.
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.key.as_slice()
    }

    /// The estimated total weight of the key: `true <= count <= true +
    /// error_bound`.
    #[inline]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// How much of [`count`](Entry::count) may not belong to this key: the
    /// count it inherited when it was admitted in place of an evicted item
    /// (plus, after [`HeavyHitters::merge`], what it may have had in the
    /// other table). 0 means the count and the payload are exact.
    #[inline]
    pub fn error_bound(&self) -> u64 {
        self.error_bound
    }

    /// The weight the key certainly had: `count - error_bound <= true`.
    #[inline]
    pub fn guaranteed_count(&self) -> u64 {
        self.count.saturating_sub(self.error_bound)
    }

    /// Adds to the error bound (at most up to the count): a table rebuilt
    /// from stored rows (`store`) carries the bounds the rows had.
    pub fn raise_error_bound(&mut self, by: u64) {
        self.error_bound = self.error_bound.saturating_add(by).min(self.count);
    }

    /// Whether count and payload are exact (`error_bound == 0`).
    #[inline]
    pub fn is_exact(&self) -> bool {
        self.error_bound == 0
    }
}

impl<T: fmt::Debug> fmt::Debug for Entry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("count", &self.count)
            .field("error_bound", &self.error_bound)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Payloads that can be combined by [`HeavyHitters::merge`]: `self` becomes
/// the payload of the union of both streams. For payloads that need
/// something else (a closure, context), use [`HeavyHitters::merge_with`].
pub trait Merge {
    /// Folds `other` into `self`.
    fn merge(&mut self, other: &Self);
}

impl Merge for () {
    fn merge(&mut self, _: &()) {}
}

macro_rules! merge_by_saturating_add {
    ($($t:ty),*) => {$(
        impl Merge for $t {
            #[inline]
            fn merge(&mut self, other: &$t) {
                *self = self.saturating_add(*other);
            }
        }
    )*};
}
merge_by_saturating_add!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl Merge for f64 {
    #[inline]
    fn merge(&mut self, other: &f64) {
        *self += *other;
    }
}

impl Merge for f32 {
    #[inline]
    fn merge(&mut self, other: &f32) {
        *self += *other;
    }
}

impl<T: Merge, const N: usize> Merge for [T; N] {
    fn merge(&mut self, other: &[T; N]) {
        for (a, b) in self.iter_mut().zip(other) {
            a.merge(b);
        }
    }
}

macro_rules! merge_tuple {
    ($($n:tt $t:ident),+) => {
        impl<$($t: Merge),+> Merge for ($($t,)+) {
            fn merge(&mut self, other: &Self) {
                $( self.$n.merge(&other.$n); )+
            }
        }
    };
}
merge_tuple!(0 A);
merge_tuple!(0 A, 1 B);
merge_tuple!(0 A, 1 B, 2 C);
merge_tuple!(0 A, 1 B, 2 C, 3 D);
merge_tuple!(0 A, 1 B, 2 C, 3 D, 4 E);
merge_tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

#[derive(Clone)]
struct Slot<T> {
    entry: Entry<T>,
    /// The key's hash under this table's hasher (for rehashing and removal).
    hash: u64,
}

/// No item / no bucket.
const NIL: u32 = u32::MAX;

/// An item's place in the stream summary: its bucket and its neighbours in
/// that bucket's list. Kept apart from the (large) slots, for locality.
#[derive(Clone, Copy, Debug)]
struct Link {
    bucket: u32,
    prev: u32,
    next: u32,
}

/// All items with one count: a list of slots (oldest arrival first), and
/// the neighbouring buckets in ascending count order. Free buckets are
/// chained through `next`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    count: u64,
    head: u32,
    tail: u32,
    prev: u32,
    next: u32,
}

/// A bounded heavy-hitter table (Space-Saving) over byte-string keys with a
/// `T` payload per item. See the [module documentation](self) for the
/// guarantees.
#[derive(Clone)]
pub struct HeavyHitters<T = ()> {
    capacity: usize,
    /// Items, dense: slot indices `0..len`.
    slots: Vec<Slot<T>>,
    /// Slot index -> its place in the stream summary.
    links: Vec<Link>,
    /// The stream summary's buckets, live and free.
    buckets: Vec<Bucket>,
    /// The bucket of the smallest count (`NIL` when empty).
    min_bucket: u32,
    /// First free bucket, chained through `next`.
    free_bucket: u32,
    /// Key hash -> slot index.
    table: SlotIndex,
    hasher: DefaultHashBuilder,
    /// Key buffers kept by `clear` for later admissions.
    spare_keys: Vec<Vec<u8>>,
    /// Approximate heap bytes of all key buffers, live and spare.
    key_bytes: usize,
    /// Total weight seen (N), merges included.
    total: u64,
    evictions: u64,
    /// Upper bound on the true count of keys not in the table, left by a
    /// merge; 0 otherwise.
    floor: u64,
    /// The keys this table dropped, when asked to remember them
    /// ([`with_dropped_filter`](Self::with_dropped_filter)).
    dropped: Option<Box<Dropped>>,
}

/// The keys a table dropped (evicted, or left out by a merge): a Bloom
/// filter. A merge asks it whether a key absent from a table may have
/// occurred in that table's stream; "no" is certain, so a key the other
/// table never saw keeps an exact count. False positives only cost an
/// error bound, as if there were no filter; so the filter is bounded and
/// merely grows less useful as it fills.
///
/// Every filter in the process hashes with the same (randomly seeded)
/// hasher, so the filters of merged tables can be OR-ed. Crafted keys can
/// at worst make positives, i.e. error bounds that need not be there.
#[derive(Clone)]
struct Dropped {
    /// Empty until the first key is dropped (an exact table pays nothing).
    bits: Vec<u64>,
    /// Bits the filter gets once used: a power of two.
    size: usize,
    /// A key from a table without a filter, or one that knew nothing
    /// about its dropped keys, was merged in: assume every key.
    all: bool,
}

/// Filter bits per item of capacity (8 bytes, a tenth of a small item): with
/// 3 probes, as many dropped keys as the capacity give 0.01% false
/// positives, ten times that many 5%.
const DROPPED_BITS_PER_ITEM: usize = 64;
const DROPPED_PROBES: u64 = 3;

fn dropped_hasher() -> &'static DefaultHashBuilder {
    static SEED: std::sync::OnceLock<DefaultHashBuilder> = std::sync::OnceLock::new();
    SEED.get_or_init(DefaultHashBuilder::default)
}

impl Dropped {
    fn new(capacity: usize) -> Dropped {
        Dropped {
            bits: Vec::new(),
            size: (capacity.saturating_mul(DROPPED_BITS_PER_ITEM))
                .next_power_of_two()
                .clamp(1024, 1 << 30),
            all: false,
        }
    }

    /// The bit positions of `key`: double hashing from one 64-bit hash.
    #[inline]
    fn probes(&self, key: &[u8]) -> impl Iterator<Item = usize> {
        let h = dropped_hasher().hash_one(key);
        let (a, b) = (h, (h >> 32) | 1);
        let mask = self.size as u64 - 1;
        (0..DROPPED_PROBES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) & mask) as usize)
    }

    #[inline]
    fn insert(&mut self, key: &[u8]) {
        if self.bits.is_empty() {
            self.bits = crate::prefetch::mapped_zeros(self.size / 64);
        }
        for p in self.probes(key) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    fn may_contain(&self, key: &[u8]) -> bool {
        if self.all {
            return true;
        }
        if self.bits.is_empty() {
            return false;
        }
        self.probes(key)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Adds every key of `other` (a table's filter) or, without one, every
    /// key at all.
    fn absorb(&mut self, other: Option<&Dropped>) {
        match other {
            Some(o) if o.all => self.all = true,
            Some(o) if o.bits.is_empty() => {}
            Some(o) if o.size == self.size && !self.bits.is_empty() => {
                for (a, b) in self.bits.iter_mut().zip(&o.bits) {
                    *a |= b;
                }
            }
            Some(o) if self.bits.is_empty() => {
                self.bits.clone_from(&o.bits);
                self.size = o.size;
            }
            // Filters of different sizes cannot be combined.
            _ => self.all = true,
        }
    }

    fn clear(&mut self) {
        self.bits.fill(0);
        self.all = false;
    }
}

impl<T: Default> HeavyHitters<T> {
    /// A table that holds at most `capacity` items. Memory is allocated as
    /// items arrive, up to what `capacity` items need.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0 or above 2^31.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "HeavyHitters capacity must be at least 1");
        // The index keeps at most 2^32 cells, at most half full.
        assert!(
            capacity <= 1 << 31,
            "HeavyHitters capacity must be at most 2^31"
        );
        HeavyHitters {
            capacity,
            slots: Vec::new(),
            links: Vec::new(),
            buckets: Vec::new(),
            min_bucket: NIL,
            free_bucket: NIL,
            table: SlotIndex::default(),
            hasher: DefaultHashBuilder::default(),
            spare_keys: Vec::new(),
            key_bytes: 0,
            total: 0,
            evictions: 0,
            floor: 0,
            dropped: None,
        }
    }

    /// A table that also remembers, in a bounded Bloom filter, which keys
    /// it dropped. Then [`merge`](Self::merge) adds another table's bound
    /// to a key only when that table may have seen the key; without the
    /// filter it must assume any table that evicted may have. Worth it for
    /// tables whose shards see overlapping keys (clients, families); a
    /// dropped key costs one more hash and three bit sets.
    pub fn with_dropped_filter(capacity: usize) -> Self {
        let mut t = Self::new(capacity);
        t.dropped = Some(Box::new(Dropped::new(capacity)));
        t
    }

    /// Adds `weight` to `key`'s count and returns its entry, admitting the
    /// key if it is not in the table (evicting the item with the smallest
    /// count when the table is full: the newcomer gets `count = min +
    /// weight`, `error_bound = min` and a `T::default()` payload).
    ///
    /// Does not allocate when `key` is present; admitting a key allocates
    /// its buffer only when no reusable one is at hand.
    pub fn update(&mut self, key: &[u8], weight: u64) -> &mut Entry<T> {
        let hash = self.hash_key(key);
        self.update_hashed(key, hash, weight)
    }

    /// [`update`](Self::update) with `hash` = [`hash_key`](Self::hash_key)
    /// of `key`, made ahead for the prefetches.
    #[inline]
    pub fn update_hashed(&mut self, key: &[u8], hash: u64, weight: u64) -> &mut Entry<T> {
        let s = self.update_at(key, hash, weight);
        self.at_mut(s)
    }

    /// [`update_hashed`](Self::update_hashed), returning where the entry
    /// is: [`at_mut`](Self::at_mut) finds it again without a lookup, until
    /// the table next changes.
    #[inline]
    pub fn update_at(&mut self, key: &[u8], hash: u64, weight: u64) -> SlotId {
        debug_assert_eq!(hash, self.hash_key(key));
        let slots = &self.slots;
        if let Some(s) = self
            .table
            .find(hash, |i| slots[i as usize].entry.key.as_slice() == key)
        {
            self.count_at(s, weight);
            return SlotId(s);
        }
        self.total = self.total.saturating_add(weight);
        if self.slots.len() < self.capacity {
            let floor = self.floor;
            let s = self.admit(key, hash, floor.saturating_add(weight), floor);
            self.place(s, floor.saturating_add(weight));
            SlotId(s)
        } else {
            SlotId(self.replace_min(key, hash, weight))
        }
    }

    /// [`update_at`](Self::update_at) of a key the caller expects at
    /// `hint` (where an earlier update left it): when that slot still
    /// holds `key`, the key is counted there with no hashing and no
    /// lookup. A slot reused for another key, or a table cleared since,
    /// falls back to the lookup. `same` tells whether a stored key is
    /// `key` (the caller may know a cheaper test than comparing bytes).
    #[inline]
    pub fn update_hinted(
        &mut self,
        key: &[u8],
        hint: Option<SlotId>,
        weight: u64,
        same: impl Fn(&[u8]) -> bool,
    ) -> SlotId {
        if let Some(SlotId(s)) = hint {
            if self
                .slots
                .get(s as usize)
                .is_some_and(|x| same(x.entry.key.as_slice()))
            {
                debug_assert_eq!(self.slots[s as usize].entry.key, key);
                self.count_at(s, weight);
                return SlotId(s);
            }
        }
        let hash = self.hash_key(key);
        self.update_at(key, hash, weight)
    }

    /// Adds `weight` to the item in slot `s`.
    #[inline]
    fn count_at(&mut self, s: u32, weight: u64) {
        self.total = self.total.saturating_add(weight);
        let entry = &mut self.slots[s as usize].entry;
        let count = entry.count.saturating_add(weight);
        if count != entry.count {
            entry.count = count;
            self.raise(s, count);
        }
    }

    /// Appends a new item in a fresh slot (the table is not full), in no
    /// bucket yet: the caller places it.
    fn admit(&mut self, key: &[u8], hash: u64, count: u64, error_bound: u64) -> u32 {
        let s = self.slots.len();
        if s == self.slots.capacity() {
            // Grow by doubling, but never past `capacity` items.
            let add = s.max(16).min(self.capacity - s);
            self.slots.reserve_exact(add);
            self.links.reserve_exact(add);
            // One more than the items: a move makes its new bucket before
            // it frees the old one.
            let want = s + add + 1;
            self.buckets
                .reserve_exact(want.saturating_sub(self.buckets.len()));
            // Map the new items' pages in one call, not by a fault each.
            crate::prefetch::populate(self.slots.spare_capacity_mut());
        }
        let mut buf = KeyBuf::default();
        self.store_key(&mut buf, key);
        self.slots.push(Slot {
            entry: Entry {
                key: buf,
                count,
                error_bound,
                stats: T::default(),
            },
            hash,
        });
        self.table.insert(hash, s as u32);
        self.links.push(Link {
            bucket: NIL,
            prev: NIL,
            next: NIL,
        });
        s as u32
    }

    /// Replaces the minimum item with `key` (the table is full).
    fn replace_min(&mut self, key: &[u8], hash: u64, weight: u64) -> u32 {
        let min = self.buckets[self.min_bucket as usize];
        let s = min.head as usize;
        self.unlink(s);
        let mut buf = std::mem::take(&mut self.slots[s].entry.key);
        if let Some(d) = self.dropped.as_deref_mut() {
            d.insert(&buf);
        }
        self.store_key(&mut buf, key);
        let count = min.count.saturating_add(weight);
        let slot = &mut self.slots[s];
        slot.entry = Entry {
            key: buf,
            count,
            error_bound: min.count,
            stats: T::default(),
        };
        slot.hash = hash;
        self.table.insert(hash, s as u32);
        if count != min.count {
            self.raise(s as u32, count);
        }
        self.evictions += 1;
        self.prefetch_victims();
        s as u32
    }

    /// The next replacements take the minimum bucket's items oldest first
    /// (until a hit raises one), and each touches what no record's
    /// lookahead asked for: the victim's index cell (removed), key bytes
    /// (dropped filter, buffer reused) and every line of its item
    /// (rewritten). With many more keys than the table holds, nearly every
    /// record is a replacement, and those misses came one after another.
    /// So after each replacement: the item lines of the victim after next,
    /// and the index cell and key bytes of the next victim, whose item
    /// lines were asked for one replacement ago. Only hints: a guess that
    /// a hit made wrong costs a wasted prefetch.
    #[inline]
    fn prefetch_victims(&self) {
        let (next, after) = self.next_victims();
        if next == NIL {
            return;
        }
        if after != NIL {
            self.prefetch_lines(after);
        }
        let x = &self.slots[next as usize];
        self.table.prefetch(x.hash);
        if let Some(b) = x.entry.key.heap_first() {
            crate::prefetch::prefetch(b);
        }
    }

    /// The slots the next two replacements take if no hit comes between
    /// (`NIL` for none): the oldest two at the minimum count, or the
    /// oldest at the count after it.
    #[inline]
    fn next_victims(&self) -> (u32, u32) {
        let Some(min) = self.buckets.get(self.min_bucket as usize) else {
            return (NIL, NIL);
        };
        let next = min.head;
        if next == NIL {
            return (NIL, NIL);
        }
        let mut after = self.links[next as usize].next;
        if after == NIL && min.next != NIL {
            after = self.buckets[min.next as usize].head;
        }
        (next, after)
    }
}

impl<T> HeavyHitters<T> {
    /// The entry of `key`, if it is in the table.
    pub fn get(&self, key: &[u8]) -> Option<&Entry<T>> {
        self.find(key).map(|s| &self.slots[s].entry)
    }

    /// The entry of `key`, if it is in the table, to change its payload
    /// without counting.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry<T>> {
        self.find(key).map(|s| &mut self.slots[s].entry)
    }

    /// The entry an [`update_at`](Self::update_at) returned, with no
    /// update (or admission, merge or clear) of this table since.
    #[inline]
    pub fn at_mut(&mut self, s: SlotId) -> &mut Entry<T> {
        &mut self.slots[s.0 as usize].entry
    }

    /// The entry of `key`: at `slot` when the caller has where an
    /// [`update_at`](Self::update_at) of `key` left it, else looked up.
    #[inline]
    pub fn at_or_get_mut(&mut self, slot: Option<SlotId>, key: &[u8]) -> Option<&mut Entry<T>> {
        match slot {
            Some(s) => {
                let e = self.at_mut(s);
                debug_assert_eq!(e.key, key);
                Some(e)
            }
            None => self.get_mut(key),
        }
    }

    /// Whether `key` is in the table.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    /// Number of items in the table (at most [`capacity`](Self::capacity)).
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table holds no item.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most items the table holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the table holds [`capacity`](Self::capacity) items.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.slots.len() == self.capacity
    }

    /// Keys evicted to admit others (including items dropped by
    /// [`merge`](Self::merge), and the evictions of merged tables).
    #[inline]
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Total weight given to the table (`N`), merged tables included.
    #[inline]
    pub fn total_weight(&self) -> u64 {
        self.total
    }

    /// Whether every count is exact and every key seen is in the table.
    #[inline]
    pub fn is_exact(&self) -> bool {
        self.evictions == 0 && self.floor == 0
    }

    /// The smallest count in the table (0 when empty).
    #[inline]
    pub fn min_count(&self) -> u64 {
        if self.min_bucket == NIL {
            0
        } else {
            self.buckets[self.min_bucket as usize].count
        }
    }

    /// An upper bound on the true total of any key *not* in the table: 0
    /// while the table is exact, else the smallest count (at most
    /// `total_weight() / capacity()` for a table that was never merged).
    /// Every key whose true total exceeds it is in the table, and every
    /// item's `error_bound` is at most it.
    pub fn unmonitored_bound(&self) -> u64 {
        if self.is_exact() {
            0
        } else if self.is_full() {
            self.min_count().max(self.floor)
        } else {
            self.floor
        }
    }

    /// Every item, in slot order: deterministic for a given sequence of
    /// operations, otherwise unspecified. Use [`top_n`](Self::top_n) for a
    /// ranking.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            inner: self.slots.iter(),
        }
    }

    /// The `n` items with the largest `by(entry)`, largest first; ties are
    /// broken by key bytes (ascending), so the result is deterministic.
    pub fn top_n(&self, n: usize, by: impl Fn(&Entry<T>) -> u64) -> Vec<&Entry<T>> {
        if n == 0 {
            return Vec::new();
        }
        let mut ranked: Vec<(u64, &Entry<T>)> = self
            .slots
            .iter()
            .map(|s| (by(&s.entry), &s.entry))
            .collect();
        let order = |a: &(u64, &Entry<T>), b: &(u64, &Entry<T>)| {
            b.0.cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key))
        };
        if n < ranked.len() {
            ranked.select_nth_unstable_by(n - 1, order);
            ranked.truncate(n);
        }
        ranked.sort_unstable_by(order);
        ranked.into_iter().map(|(_, e)| e).collect()
    }

    /// Empties the table and resets its counters (evictions, total weight),
    /// keeping every allocation, key buffers included, for the next window.
    /// The same updates then give the same table as a new one would.
    pub fn clear(&mut self) {
        for slot in self.slots.drain(..) {
            if let KeyBuf::Heap(v) = slot.entry.key {
                self.spare_keys.push(v);
            }
        }
        self.links.clear();
        self.buckets.clear();
        self.min_bucket = NIL;
        self.free_bucket = NIL;
        self.table.clear();
        self.total = 0;
        self.evictions = 0;
        self.floor = 0;
        if let Some(d) = self.dropped.as_deref_mut() {
            d.clear();
        }
    }

    /// Approximate heap and inline memory of the table in bytes: item
    /// storage, heap, hash table, and key buffers (with a malloc-like
    /// per-allocation overhead). Heap memory owned by `T` is not counted.
    /// Bounded by what `capacity` items with the longest keys need, however
    /// many distinct keys were seen.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.slots.capacity() * size_of::<Slot<T>>()
            + self.links.capacity() * size_of::<Link>()
            + self.buckets.capacity() * size_of::<Bucket>()
            + self.table.allocation_size()
            + self.spare_keys.capacity() * size_of::<Vec<u8>>()
            + self.key_bytes
            + self.dropped.as_ref().map_or(0, |d| {
                size_of::<Dropped>() + d.bits.capacity() * size_of::<u64>()
            })
    }

    /// Whether `key`, absent from this table, may have occurred in its
    /// stream (and then had at most
    /// [`unmonitored_bound`](Self::unmonitored_bound)): false for an exact
    /// table, and for a key its dropped-key filter has never seen.
    fn may_have_dropped(&self, key: &[u8]) -> bool {
        if self.is_exact() {
            return false;
        }
        match self.dropped.as_deref() {
            Some(d) => d.may_contain(key),
            None => true,
        }
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hash_key(key);
        self.table
            .find(hash, |i| self.slots[i as usize].entry.key.as_slice() == key)
            .map(|s| s as usize)
    }

    /// The hash [`update_hashed`](Self::update_hashed) wants for `key`
    /// (this table's own random seed).
    #[inline]
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The first of three prefetches for a later update of the key with
    /// `hash`, a few records ahead: its index cells.
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// The second: every line of the item the key's cells point to, read
    /// from the cells the first asked for.
    #[inline]
    pub fn prefetch_item(&self, hash: u64) {
        if let Some(s) = self.table.first_candidate(hash) {
            self.prefetch_lines(s);
            // Its place in the stream summary, which the count moves.
            crate::prefetch::prefetch(&self.links[s as usize]);
        }
    }

    /// Every line of the item in slot `s`: a line a step, and the last
    /// byte, as an item need not start on a line.
    #[inline]
    fn prefetch_lines(&self, s: u32) {
        let p = (&self.slots[s as usize] as *const Slot<T>).cast::<u8>();
        let size = size_of::<Slot<T>>();
        for off in (0..size).step_by(64).chain([size - 1]) {
            crate::prefetch::prefetch_addr(p.wrapping_add(off));
        }
    }

    /// The third: the item's key bytes, for the comparison, read from the
    /// item the second asked for.
    #[inline]
    pub fn prefetch_key(&self, hash: u64) {
        if let Some(s) = self.table.first_candidate(hash) {
            if let Some(b) = self.slots[s as usize].entry.key.heap_first() {
                crate::prefetch::prefetch(b);
            }
        }
    }

    /// Removes slot `s`'s key from the hash table.
    fn unlink(&mut self, s: usize) {
        let hash = self.slots[s].hash;
        if !self.table.remove(hash, s as u32) {
            unreachable!("slot {s} missing from the hash table");
        }
    }

    /// Puts `key` in `buf`: inline when it fits (a heap buffer it had is
    /// kept as a spare), else in a heap buffer, its own or a spare, reused
    /// when it fits and is not much larger. Keeps `key_bytes` current
    /// (spares included).
    fn store_key(&mut self, buf: &mut KeyBuf, key: &[u8]) {
        if let Some(inline) = KeyBuf::inline(key) {
            if let KeyBuf::Heap(v) = std::mem::replace(buf, inline) {
                self.spare_keys.push(v);
            }
            return;
        }
        let mut v = match buf.take_heap() {
            Some(v) => v,
            None => self.spare_keys.pop().unwrap_or_default(),
        };
        let cap = v.capacity();
        if cap < key.len() || cap > (2 * key.len()).max(MIN_REUSE) {
            self.key_bytes -= alloc_size(cap);
            v = key.to_vec();
            self.key_bytes += alloc_size(v.capacity());
        } else {
            v.clear();
            v.extend_from_slice(key);
        }
        *buf = KeyBuf::Heap(v);
    }

    /// A bucket for `count`, linked after `after` (or first when `NIL`).
    fn new_bucket(&mut self, count: u64, after: u32) -> u32 {
        let next = if after == NIL {
            self.min_bucket
        } else {
            self.buckets[after as usize].next
        };
        let b = Bucket {
            count,
            head: NIL,
            tail: NIL,
            prev: after,
            next,
        };
        let id = if self.free_bucket != NIL {
            let id = self.free_bucket;
            self.free_bucket = self.buckets[id as usize].next;
            self.buckets[id as usize] = b;
            id
        } else {
            self.buckets.push(b);
            (self.buckets.len() - 1) as u32
        };
        if after == NIL {
            self.min_bucket = id;
        } else {
            self.buckets[after as usize].next = id;
        }
        if next != NIL {
            self.buckets[next as usize].prev = id;
        }
        id
    }

    /// Unlinks the (empty) bucket `b` and chains it as free.
    fn free_bucket(&mut self, b: u32) {
        let Bucket { prev, next, .. } = self.buckets[b as usize];
        if prev == NIL {
            self.min_bucket = next;
        } else {
            self.buckets[prev as usize].next = next;
        }
        if next != NIL {
            self.buckets[next as usize].prev = prev;
        }
        self.buckets[b as usize].next = self.free_bucket;
        self.free_bucket = b;
    }

    /// Takes slot `s` out of its bucket's list (the bucket may be left
    /// empty).
    fn detach(&mut self, s: u32) {
        let Link { bucket, prev, next } = self.links[s as usize];
        let b = &mut self.buckets[bucket as usize];
        if prev == NIL {
            b.head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            b.tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
    }

    /// Appends slot `s` to bucket `b`'s list.
    fn attach(&mut self, s: u32, b: u32) {
        let bucket = &mut self.buckets[b as usize];
        let tail = bucket.tail;
        bucket.tail = s;
        if tail == NIL {
            bucket.head = s;
        } else {
            self.links[tail as usize].next = s;
        }
        self.links[s as usize] = Link {
            bucket: b,
            prev: tail,
            next: NIL,
        };
    }

    /// The bucket of `count`, found or made by walking up from bucket
    /// `from` (whose count is below `count`; `NIL`: from the smallest).
    fn bucket_for(&mut self, from: u32, count: u64) -> u32 {
        let mut at = from;
        loop {
            let next = if at == NIL {
                self.min_bucket
            } else {
                self.buckets[at as usize].next
            };
            if next == NIL || self.buckets[next as usize].count > count {
                return self.new_bucket(count, at);
            }
            if self.buckets[next as usize].count == count {
                return next;
            }
            at = next;
        }
    }

    /// Puts slot `s` (in no bucket) where `count` belongs.
    fn place(&mut self, s: u32, count: u64) {
        let b = self.bucket_for(NIL, count);
        self.attach(s, b);
    }

    /// Moves slot `s` up to `count` (above its bucket's count).
    #[inline]
    fn raise(&mut self, s: u32, count: u64) {
        let b = self.links[s as usize].bucket;
        let bucket = self.buckets[b as usize];
        debug_assert!(count > bucket.count);
        let alone = bucket.head == bucket.tail;
        if alone && (bucket.next == NIL || self.buckets[bucket.next as usize].count > count) {
            // The item keeps its bucket, which keeps its place.
            self.buckets[b as usize].count = count;
            return;
        }
        self.detach(s);
        let to = self.bucket_for(b, count);
        self.attach(s, to);
        if alone {
            self.free_bucket(b);
        }
    }

    /// Rebuilds the stream summary from the counts, ties in slot order.
    fn rebuild_summary(&mut self) {
        self.buckets.clear();
        self.min_bucket = NIL;
        self.free_bucket = NIL;
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        order.sort_by_key(|&s| (self.slots[s as usize].entry.count, s));
        let mut last = NIL;
        for s in order {
            let count = self.slots[s as usize].entry.count;
            if last == NIL || self.buckets[last as usize].count != count {
                last = self.new_bucket(count, last);
            }
            self.attach(s, last);
        }
    }
}

impl<T: Default> HeavyHitters<T> {
    /// Folds `other` (another shard, or another time window) into `self`,
    /// combining payloads with [`Merge`]. See
    /// [`merge_with`](Self::merge_with).
    pub fn merge(&mut self, other: &HeavyHitters<T>)
    where
        T: Merge,
    {
        self.merge_with(other, |a, b| a.merge(b));
    }

    /// Folds the same stream's next part into `self` (a closed window into
    /// the run's table), combining payloads with [`Merge`]. See
    /// [`fold_with`](Self::fold_with).
    pub fn fold(&mut self, later: &HeavyHitters<T>)
    where
        T: Merge,
    {
        self.fold_with(later, |a, b| a.merge(b));
    }

    /// [`fold`](Self::fold) with a `combine` closure for payloads.
    ///
    /// An exact `later` (no evictions) is a list of keys with their true
    /// counts: each is given to `self` as one weighted update (weighted
    /// Space-Saving), in `later`'s slot order, so that folding the parts
    /// of a stream keeps the guarantees of a table fed the whole stream
    /// (`true <= count <= true + error_bound`, `error_bound <= N / k`).
    /// It costs `later`'s items and the steps their counts climb, at most
    /// its total weight, not `self`'s size, so a large run's table takes
    /// many small windows cheaply. A `later` that evicted may have dropped
    /// any key of `self`: that needs [`merge_with`](Self::merge_with),
    /// which it then is.
    pub fn fold_with(&mut self, later: &HeavyHitters<T>, combine: impl FnMut(&mut T, &T)) {
        self.fold_part_with(later, 0, usize::MAX, combine);
    }

    /// Part of [`fold_with`](Self::fold_with): `later`'s items from slot
    /// `from` on, at most `n` of them, so that a large fold can be spread
    /// over time. Returns where the next part starts; `later.len()` once
    /// it is all folded. A `later` that evicted is merged whole by the
    /// part from 0.
    pub fn fold_part_with(
        &mut self,
        later: &HeavyHitters<T>,
        from: usize,
        n: usize,
        mut combine: impl FnMut(&mut T, &T),
    ) -> usize {
        if !later.is_exact() {
            if from == 0 {
                self.merge_with(later, combine);
            }
            return later.slots.len();
        }
        let from = from.min(later.slots.len());
        let end = from.saturating_add(n).min(later.slots.len());
        for slot in &later.slots[from..end] {
            let e = &slot.entry;
            if e.count == 0 {
                continue;
            }
            let hash = self.hash_key(&e.key);
            let s = self.update_at(&e.key, hash, e.count);
            combine(&mut self.slots[s.0 as usize].entry.stats, &e.stats);
        }
        end
    }

    /// Folds `other` into `self` when no key can have occurred in both
    /// streams (collectors that own disjoint key shards, for the same
    /// period). A key absent from one table then certainly had 0 there, so
    /// no count is raised: a key exact in its shard stays exact. See
    /// [`merge_disjoint_with`](Self::merge_disjoint_with).
    pub fn merge_disjoint(&mut self, other: &HeavyHitters<T>)
    where
        T: Merge,
    {
        self.merge_disjoint_with(other, |a, b| a.merge(b));
    }

    /// Folds `other` into `self` (mergeable Space-Saving, Agarwal et al.
    /// 2012), combining payloads of keys present in both with `combine`; a
    /// key only in `other` gets `T::default()` combined with its payload.
    ///
    /// With `m1`, `m2` the [`unmonitored_bound`](Self::unmonitored_bound)s
    /// of `self` and `other` before the merge (0 for an exact table), a key
    /// present in only one table is counted as if it had `m` (count and
    /// error) in the other, unless the other table's dropped-key filter
    /// ([`with_dropped_filter`](Self::with_dropped_filter)) says it never
    /// dropped that key: then it had 0 there, and an exact count stays
    /// exact. Then the `capacity` items with the largest counts are kept
    /// (ties: smaller key bytes first) and the rest are counted as
    /// evictions. So for the union of both streams:
    ///
    /// * `true <= count <= true + error_bound` for every item;
    /// * `error_bound <= m1 + m2`, hence at most `N1/k1 + N2/k2`, i.e.
    ///   `(N1 + N2) / k` for tables of equal capacity `k` — the same bound
    ///   as one table fed both streams;
    /// * every key whose true total exceeds the new `unmonitored_bound()` is
    ///   kept.
    ///
    /// Two exact tables whose union fits give the exact union. Payloads of
    /// items that were missing from one side miss that side's part.
    pub fn merge_with(&mut self, other: &HeavyHitters<T>, combine: impl FnMut(&mut T, &T)) {
        self.merge_impl(other, false, combine);
    }

    /// [`merge_disjoint`](Self::merge_disjoint) with a `combine` closure
    /// for payloads. The guarantees of [`merge_with`](Self::merge_with)
    /// hold with `error_bound <= max(m1, m2)` (an item's error comes from
    /// its own shard alone), and the new `unmonitored_bound()` is at least
    /// `max(m1, m2)`.
    pub fn merge_disjoint_with(
        &mut self,
        other: &HeavyHitters<T>,
        combine: impl FnMut(&mut T, &T),
    ) {
        self.merge_impl(other, true, combine);
    }

    fn merge_impl(
        &mut self,
        other: &HeavyHitters<T>,
        disjoint: bool,
        mut combine: impl FnMut(&mut T, &T),
    ) {
        let m1 = self.unmonitored_bound();
        let m2 = other.unmonitored_bound();
        // What a key absent from one side may have had there: decided
        // before anything changes (self's filter and bound change below).
        let absent_from_other = |key: &[u8]| {
            if !disjoint && other.may_have_dropped(key) {
                m2
            } else {
                0
            }
        };

        // Fold other's counts into the items we have.
        let mut matched = vec![false; other.slots.len()];
        for slot in self.slots.iter_mut() {
            let entry = &mut slot.entry;
            let (add, err) = match other.find(&entry.key) {
                Some(j) => {
                    matched[j] = true;
                    let theirs = &other.slots[j].entry;
                    combine(&mut entry.stats, &theirs.stats);
                    (theirs.count, theirs.error_bound)
                }
                None => {
                    let m = absent_from_other(&entry.key);
                    (m, m)
                }
            };
            entry.count = entry.count.saturating_add(add);
            entry.error_bound = entry.error_bound.saturating_add(err);
        }

        // Keys only in `other`, in its slot order, with what they may have
        // had here.
        let mut incoming: Vec<(u32, u64)> = (0..other.slots.len() as u32)
            .filter(|&j| !matched[j as usize])
            .map(|j| {
                let key = &other.slots[j as usize].entry.key;
                let m = if !disjoint && self.may_have_dropped(key) {
                    m1
                } else {
                    0
                };
                (j, m)
            })
            .collect();
        self.total = self.total.saturating_add(other.total);
        self.evictions = self.evictions.saturating_add(other.evictions);
        if other.evictions > 0 || other.floor > 0 {
            if let Some(d) = self.dropped.as_deref_mut() {
                d.absorb(other.dropped.as_deref());
            }
        }
        let mut freed: Vec<u32> = Vec::new();
        if self.slots.len() + incoming.len() > self.capacity {
            #[derive(Clone, Copy)]
            enum Src {
                Ours(u32),
                Theirs(u32, u64),
            }
            let mut ranked: Vec<(u64, Src)> = self
                .slots
                .iter()
                .enumerate()
                .map(|(s, slot)| (slot.entry.count, Src::Ours(s as u32)))
                .chain(incoming.iter().map(|&(j, m)| {
                    let count = other.slots[j as usize].entry.count.saturating_add(m);
                    (count, Src::Theirs(j, m))
                }))
                .collect();
            let key_of = |src: Src| -> &[u8] {
                match src {
                    Src::Ours(s) => &self.slots[s as usize].entry.key,
                    Src::Theirs(j, _) => &other.slots[j as usize].entry.key,
                }
            };
            ranked.select_nth_unstable_by(self.capacity, |a, b| {
                b.0.cmp(&a.0).then_with(|| key_of(a.1).cmp(key_of(b.1)))
            });
            incoming.clear();
            for &(_, src) in &ranked[..self.capacity] {
                if let Src::Theirs(j, m) = src {
                    incoming.push((j, m));
                }
            }
            for &(_, src) in &ranked[self.capacity..] {
                match src {
                    Src::Ours(s) => freed.push(s),
                    // Left out: a later merge must know it was seen.
                    Src::Theirs(j, _) => {
                        if let Some(d) = self.dropped.as_deref_mut() {
                            d.insert(&other.slots[j as usize].entry.key);
                        }
                    }
                }
            }
            incoming.sort_unstable_by_key(|&(j, _)| j);
            freed.sort_unstable();
            self.evictions = self
                .evictions
                .saturating_add((ranked.len() - self.capacity) as u64);
        }
        debug_assert!(freed.len() <= incoming.len());

        // Admit the kept newcomers: first into the freed slots, then new ones.
        for &s in &freed {
            self.unlink(s as usize);
            if let Some(d) = self.dropped.as_deref_mut() {
                d.insert(&self.slots[s as usize].entry.key);
            }
        }
        for (n, &(j, m)) in incoming.iter().enumerate() {
            let theirs = &other.slots[j as usize].entry;
            let count = theirs.count.saturating_add(m);
            let error_bound = theirs.error_bound.saturating_add(m);
            let mut stats = T::default();
            combine(&mut stats, &theirs.stats);
            let hash = self.hasher.hash_one(theirs.key.as_slice());
            if let Some(&s) = freed.get(n) {
                let s = s as usize;
                let mut buf = std::mem::take(&mut self.slots[s].entry.key);
                self.store_key(&mut buf, &theirs.key);
                self.slots[s] = Slot {
                    entry: Entry {
                        key: buf,
                        count,
                        error_bound,
                        stats,
                    },
                    hash,
                };
                self.table.insert(hash, s as u32);
            } else {
                // Placed by the rebuild below.
                let s = self.admit(&theirs.key, hash, count, error_bound);
                self.slots[s as usize].entry.stats = stats;
            }
        }
        self.floor = if disjoint {
            m1.max(m2)
        } else {
            m1.saturating_add(m2)
        };
        self.rebuild_summary();
    }
}

impl<T: fmt::Debug> fmt::Debug for HeavyHitters<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeavyHitters")
            .field("capacity", &self.capacity)
            .field("len", &self.slots.len())
            .field("total_weight", &self.total)
            .field("evictions", &self.evictions)
            .field("items", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// Iterator over the items of a [`HeavyHitters`], in slot order.
pub struct Iter<'a, T> {
    inner: std::slice::Iter<'a, Slot<T>>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a Entry<T>;

    #[inline]
    fn next(&mut self) -> Option<&'a Entry<T>> {
        self.inner.next().map(|s| &s.entry)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<'a, T> IntoIterator for &'a HeavyHitters<T> {
    type Item = &'a Entry<T>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Approximate bytes a heap allocation of `cap` bytes takes (glibc-like:
/// 8-byte header, 16-byte granularity, 32-byte minimum).
#[inline]
fn alloc_size(cap: usize) -> usize {
    if cap == 0 {
        0
    } else {
        ((cap + 8 + 15) & !15).max(32)
    }
}

#[cfg(test)]
impl<T> HeavyHitters<T> {
    /// Checks every internal invariant (test helper).
    fn check_invariants(&self) {
        let n = self.slots.len();
        assert!(n <= self.capacity);
        assert_eq!(self.links.len(), n);
        assert_eq!(self.table.len(), n);
        // Buckets: ascending counts, none empty, lists consistent, every
        // item in exactly one.
        let mut seen = 0;
        let (mut b, mut prev_b, mut prev_count) = (self.min_bucket, NIL, None);
        while b != NIL {
            let bucket = self.buckets[b as usize];
            assert_eq!(bucket.prev, prev_b);
            assert!(prev_count < Some(bucket.count), "bucket order broken");
            assert_ne!(bucket.head, NIL, "empty bucket {b}");
            let (mut s, mut prev_s) = (bucket.head, NIL);
            while s != NIL {
                let link = self.links[s as usize];
                assert_eq!((link.bucket, link.prev), (b, prev_s));
                assert_eq!(self.slots[s as usize].entry.count, bucket.count);
                seen += 1;
                prev_s = s;
                s = link.next;
            }
            assert_eq!(bucket.tail, prev_s);
            prev_count = Some(bucket.count);
            prev_b = b;
            b = bucket.next;
        }
        assert_eq!(seen, n);
        let mut key_bytes = 0;
        for (s, slot) in self.slots.iter().enumerate() {
            assert_eq!(slot.hash, self.hasher.hash_one(slot.entry.key.as_slice()));
            assert_eq!(self.find(&slot.entry.key), Some(s));
            assert!(slot.entry.error_bound <= slot.entry.count);
            key_bytes += alloc_size(slot.entry.key.heap_capacity());
        }
        for buf in &self.spare_keys {
            key_bytes += alloc_size(buf.capacity());
        }
        assert_eq!(key_bytes, self.key_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// SplitMix64: a small seeded RNG, deterministic across platforms.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Zipf(s) over ranks `0..n` (rank 0 the most frequent), by inverse CDF.
    struct Zipf {
        cdf: Vec<f64>,
    }

    impl Zipf {
        fn new(n: usize, s: f64) -> Self {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=n)
                .map(|r| {
                    acc += (r as f64).powf(-s);
                    acc
                })
                .collect();
            for c in &mut cdf {
                *c /= acc;
            }
            Zipf { cdf }
        }

        fn sample(&self, rng: &mut Rng) -> usize {
            let u = rng.unit();
            self.cdf
                .partition_point(|&c| c <= u)
                .min(self.cdf.len() - 1)
        }
    }

    fn key(rank: usize) -> Vec<u8> {
        format!("key:{rank}").into_bytes()
    }

    fn rank_of(key: &[u8]) -> usize {
        std::str::from_utf8(&key[4..]).unwrap().parse().unwrap()
    }

    /// A Zipf stream of `(rank, weight)`.
    fn zipf_stream(
        seed: u64,
        universe: usize,
        s: f64,
        n: usize,
        max_weight: u64,
    ) -> Vec<(usize, u64)> {
        let zipf = Zipf::new(universe, s);
        let mut rng = Rng(seed);
        (0..n)
            .map(|_| {
                let r = zipf.sample(&mut rng);
                let w = if max_weight == 1 {
                    1
                } else {
                    1 + rng.below(max_weight)
                };
                (r, w)
            })
            .collect()
    }

    #[derive(Default, Clone, Debug, PartialEq)]
    struct Stats {
        weight: u64,
        updates: u64,
    }

    impl Merge for Stats {
        fn merge(&mut self, o: &Stats) {
            self.weight += o.weight;
            self.updates += o.updates;
        }
    }

    fn feed(t: &mut HeavyHitters<Stats>, keys: &[Vec<u8>], stream: &[(usize, u64)]) {
        for &(r, w) in stream {
            let e = t.update(&keys[r], w);
            e.stats.weight += w;
            e.stats.updates += 1;
        }
    }

    fn truth(stream: &[(usize, u64)], universe: usize) -> Vec<u64> {
        let mut t = vec![0u64; universe];
        for &(r, w) in stream {
            t[r] += w;
        }
        t
    }

    /// Checks the Space-Saving guarantees of `t` against the true totals
    /// `truth` of a stream of total weight `n`, for a table of `capacity`.
    fn check_guarantees(
        t: &HeavyHitters<Stats>,
        truth: &[u64],
        n: u64,
        capacity: usize,
        top: usize,
    ) {
        t.check_invariants();
        assert_eq!(t.total_weight(), n);
        let bound = t.unmonitored_bound();
        assert!(
            bound as u128 * capacity as u128 <= n as u128,
            "bound {bound} > N/k"
        );
        let mut sum = 0u64;
        for e in t.iter() {
            let tr = truth[rank_of(e.key())];
            assert!(tr <= e.count(), "{e:?}: true {tr} above count");
            assert!(
                e.count() <= tr + e.error_bound(),
                "{e:?}: true {tr} too low"
            );
            assert!(e.error_bound() <= bound, "{e:?}: error above bound {bound}");
            assert!(e.stats.weight <= tr, "payload above truth");
            assert!(e.guaranteed_count() <= e.stats.weight);
            if e.is_exact() {
                assert_eq!(e.stats.weight, tr, "exact item has partial payload");
            }
            sum += e.count();
        }
        assert!(sum <= n);
        // Every key above the bound is present.
        for (r, &tr) in truth.iter().enumerate() {
            if tr > bound {
                assert!(
                    t.contains(&key(r)),
                    "rank {r} (true {tr} > {bound}) missing"
                );
            }
        }
        // The true top `top` keys are present.
        let mut ranks: Vec<usize> = (0..truth.len()).collect();
        ranks.sort_by(|&a, &b| truth[b].cmp(&truth[a]).then(a.cmp(&b)));
        for &r in &ranks[..top] {
            assert!(t.contains(&key(r)), "true top-{top} rank {r} missing");
        }
    }

    fn keys(universe: usize) -> Vec<Vec<u8>> {
        (0..universe).map(key).collect()
    }

    fn contents<T: Clone>(t: &HeavyHitters<T>) -> Vec<(Vec<u8>, u64, u64, T)> {
        t.iter()
            .map(|e| {
                (
                    e.key().to_vec(),
                    e.count(),
                    e.error_bound(),
                    e.stats.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut t: HeavyHitters<Stats> = HeavyHitters::new(1000);
        let mut want: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let k = format!("k{}", rng.below(1000)).into_bytes();
            let w = rng.below(100);
            let e = t.update(&k, w);
            e.stats.weight += w;
            *want.entry(k).or_default() += w;
        }
        t.check_invariants();
        assert_eq!(t.len(), want.len());
        assert_eq!(t.evictions(), 0);
        assert!(t.is_exact());
        assert_eq!(t.unmonitored_bound(), 0);
        assert_eq!(t.total_weight(), want.values().sum::<u64>());
        for (k, &c) in &want {
            let e = t.get(k).unwrap();
            assert_eq!((e.count(), e.error_bound(), e.stats.weight), (c, 0, c));
        }
        assert!(t.get(b"absent").is_none());
        // Full but never evicted is still exact.
        let mut t: HeavyHitters = HeavyHitters::new(3);
        for k in [b"a", b"b", b"c", b"a"] {
            t.update(k, 1);
        }
        assert!(t.is_full() && t.is_exact());
        assert_eq!(t.unmonitored_bound(), 0);
    }

    #[test]
    fn a_hint_is_used_only_while_its_slot_holds_the_key() {
        let mut t: HeavyHitters<u64> = HeavyHitters::new(2);
        let a = t.update_hinted(b"a", None, 3, |k| k == b"a");
        // Right hint: counted there.
        assert_eq!(t.update_hinted(b"a", Some(a), 2, |k| k == b"a"), a);
        assert_eq!(t.get(b"a").map(|e| e.count()), Some(5));
        let b = t.update_hinted(b"b", None, 1, |k| k == b"b");
        // A hint pointing at another key's slot is looked past.
        assert_eq!(t.update_hinted(b"a", Some(b), 1, |k| k == b"a"), a);
        assert_eq!(t.get(b"a").map(|e| e.count()), Some(6));
        // "b" (the minimum) is evicted: its slot now holds "c", and a hint
        // to it for "b" admits "b" afresh, as a lookup would.
        let c = t.update_hinted(b"c", None, 1, |k| k == b"c");
        assert_eq!(c, b);
        assert_eq!(
            t.get(b"c").map(|e| (e.count(), e.error_bound())),
            Some((2, 1))
        );
        t.update_hinted(b"b", Some(b), 1, |k| k == b"b");
        assert_eq!(
            t.get(b"b").map(|e| (e.count(), e.error_bound())),
            Some((3, 2))
        );
        assert!(t.get(b"c").is_none());
        assert_eq!(t.total_weight(), 9);
        // A hint past a cleared table.
        t.clear();
        let a2 = t.update_hinted(b"a", Some(a), 4, |k| k == b"a");
        assert_eq!(t.get(b"a").map(|e| e.count()), Some(4));
        assert_eq!(t.update_hinted(b"a", Some(a2), 1, |k| k == b"a"), a2);
        assert_eq!(t.total_weight(), 5);
    }

    /// What `prefetch_victims` asks for must be what the next two
    /// replacements take, else the hint is wasted.
    #[test]
    fn the_next_victims_are_foreseen() {
        let mut t: HeavyHitters<u64> = HeavyHitters::new(4);
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            t.update(k, 1);
        }
        t.update(b"d", 1);
        let slot = |t: &HeavyHitters<u64>, k: &[u8]| {
            t.table
                .find(t.hash_key(k), |i| t.slots[i as usize].entry.key == k)
                .unwrap()
        };
        let mut taken = Vec::new();
        for (i, k) in [&b"e"[..], b"f", b"g", b"h", b"i"].iter().enumerate() {
            let (next, after) = t.next_victims();
            let s = t.update_at(k, t.hash_key(k), 1).0;
            assert_eq!(s, next, "replacement {i}");
            taken.push(s);
            if i < 4 {
                assert_eq!(t.next_victims().0, after, "after replacement {i}");
            }
        }
        // a, b and c (slots 0-2) at count 1 go first, oldest first; then
        // d (slot 3), which had 2 before e, f and g came in at 2; then e,
        // in a's old slot.
        assert_eq!(taken, [0, 1, 2, 3, 0]);
        assert_eq!(slot(&t, b"i"), 0);
        // A hit on the next victim makes the guess wrong, which is only
        // a wasted prefetch: the replacement takes the real minimum.
        let (next, _) = t.next_victims();
        let k = t.slots[next as usize].entry.key.clone();
        t.update(&k, 1);
        assert_ne!(t.next_victims().0, next);
        t.check_invariants();
    }

    #[test]
    fn eviction_inherits_min() {
        let mut t: HeavyHitters<u64> = HeavyHitters::new(2);
        t.update(b"a", 3).stats += 1;
        t.update(b"b", 1).stats += 1;
        // b has the minimum (1).
        let c = t.update(b"c", 1);
        assert_eq!((c.count(), c.error_bound(), c.stats), (2, 1, 0));
        c.stats += 1;
        assert!(!t.contains(b"b"));
        assert_eq!(t.evictions(), 1);
        // Now c (2).
        let d = t.update(b"d", 5);
        assert_eq!(
            (d.count(), d.error_bound(), d.guaranteed_count()),
            (7, 2, 5)
        );
        assert!(!t.contains(b"c"));
        // Now a (4).
        assert_eq!(t.update(b"a", 1).count(), 4);
        let e = t.update(b"e", 1);
        assert_eq!((e.count(), e.error_bound()), (5, 4));
        assert_eq!(t.get(b"d").unwrap().count(), 7);
        assert_eq!(t.evictions(), 3);
        assert!(!t.is_exact());
        assert_eq!(t.unmonitored_bound(), 5);
        assert_eq!(t.total_weight(), 12);
        assert_eq!(t.iter().map(|e| e.count()).sum::<u64>(), 12);
        t.check_invariants();
        // A re-admitted key starts over: its payload is reset.
        let a = t.update(b"a", 1);
        assert_eq!((a.count(), a.error_bound(), a.stats), (6, 5, 0));
    }

    #[test]
    fn weight_zero_and_empty_key() {
        let mut t: HeavyHitters = HeavyHitters::new(2);
        assert_eq!(t.update(b"", 0).count(), 0);
        assert_eq!(t.update(b"x", 0).count(), 0);
        t.update(b"", 2);
        let y = t.update(b"y", 0);
        assert_eq!((y.count(), y.error_bound()), (0, 0));
        assert!(t.contains(b"") && !t.contains(b"x"));
        t.check_invariants();
    }

    #[test]
    fn top_n_sorted_with_key_tie_break() {
        let mut t: HeavyHitters<u64> = HeavyHitters::new(10);
        for (k, c, s) in [
            ("d", 5, 1),
            ("b", 7, 9),
            ("a", 5, 3),
            ("c", 5, 2),
            ("e", 1, 8),
        ] {
            t.update(k.as_bytes(), c).stats = s;
        }
        let keys = |v: Vec<&Entry<u64>>| -> Vec<String> {
            v.iter()
                .map(|e| String::from_utf8(e.key().to_vec()).unwrap())
                .collect()
        };
        assert_eq!(keys(t.top_n(10, |e| e.count())), ["b", "a", "c", "d", "e"]);
        assert_eq!(keys(t.top_n(3, |e| e.count())), ["b", "a", "c"]);
        assert_eq!(keys(t.top_n(2, |e| e.stats)), ["b", "e"]);
        assert!(t.top_n(0, |e| e.count()).is_empty());
        assert_eq!(t.iter().len(), 5);
    }

    #[test]
    fn zipf_fixed_seeds() {
        let universe = 200_000;
        let keys = keys(universe);
        for (seed, s, capacity, max_weight) in [
            (1, 1.1, 2000, 1),
            (2, 1.1, 5000, 1),
            (3, 1.05, 2500, 1),
            (4, 1.2, 2000, 1000),
        ] {
            let stream = zipf_stream(seed, universe, s, 300_000, max_weight);
            let truth = truth(&stream, universe);
            let n: u64 = truth.iter().sum();
            let distinct = truth.iter().filter(|&&c| c > 0).count();
            assert!(distinct > 5 * capacity, "{distinct} distinct keys");
            let mut t = HeavyHitters::new(capacity);
            feed(&mut t, &keys, &stream);
            assert!(t.evictions() > 0);
            check_guarantees(&t, &truth, n, capacity, 100);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn zipf_streams_keep_the_top(seed in any::<u64>(), s in 1.05f64..1.3, capacity in 2000usize..5000) {
            let universe = 200_000;
            let keys = keys(universe);
            let stream = zipf_stream(seed, universe, s, 200_000, 1);
            let truth = truth(&stream, universe);
            let mut t = HeavyHitters::new(capacity);
            feed(&mut t, &keys, &stream);
            check_guarantees(&t, &truth, stream.len() as u64, capacity, 100);
        }

        /// Every update does what Space-Saving says, checked against a
        /// brute-force model after every step: counts, errors, and that an
        /// evicted key had the minimum count.
        #[test]
        fn matches_reference_model(
            capacity in 1usize..8,
            ops in proptest::collection::vec((0u8..20, 0u64..5), 0..300),
        ) {
            let mut t: HeavyHitters<u64> = HeavyHitters::new(capacity);
            // key -> (count, error, payload)
            let mut model: HashMap<Vec<u8>, (u64, u64, u64)> = HashMap::new();
            let mut evictions = 0;
            for &(k, w) in &ops {
                let k = vec![b'k'; k as usize];
                t.update(&k, w).stats += w;
                if let Some(m) = model.get_mut(&k) {
                    m.0 += w;
                    m.2 += w;
                } else if model.len() < capacity {
                    model.insert(k, (w, 0, w));
                } else {
                    let min = model.values().map(|m| m.0).min().unwrap();
                    let gone: Vec<Vec<u8>> = model.keys().filter(|m| !t.contains(m)).cloned().collect();
                    prop_assert_eq!(gone.len(), 1);
                    prop_assert_eq!(model[&gone[0]].0, min, "evicted a non-minimum item");
                    model.remove(&gone[0]);
                    model.insert(k, (min + w, min, w));
                    evictions += 1;
                }
                t.check_invariants();
                prop_assert_eq!(t.evictions(), evictions);
                prop_assert_eq!(t.len(), model.len());
                for e in t.iter() {
                    prop_assert_eq!(Some(&(e.count(), e.error_bound(), e.stats)), model.get(e.key()));
                }
            }
        }
    }

    #[test]
    fn deterministic_regardless_of_hash_seed() {
        let universe = 50_000;
        let keys = keys(universe);
        let stream = zipf_stream(11, universe, 1.0, 100_000, 10);
        let run = || {
            // Every table has its own random hash seed.
            let mut a = HeavyHitters::new(500);
            feed(&mut a, &keys, &stream[..60_000]);
            let mut b = HeavyHitters::new(500);
            feed(&mut b, &keys, &stream[60_000..]);
            let before = contents(&a);
            a.merge(&b);
            let top: Vec<_> = a
                .top_n(50, |e| e.count())
                .iter()
                .map(|e| e.key().to_vec())
                .collect();
            (before, contents(&a), top, a.evictions())
        };
        let first = run();
        for _ in 0..3 {
            assert_eq!(run(), first);
        }
    }

    #[test]
    fn merge_exact_union() {
        let mut a: HeavyHitters<Stats> = HeavyHitters::new(100);
        let mut b: HeavyHitters<Stats> = HeavyHitters::new(100);
        let mut want: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut rng = Rng(5);
        for i in 0..5000 {
            let k = format!("k{}", rng.below(80)).into_bytes();
            let w = 1 + rng.below(9);
            let t = if i % 3 == 0 { &mut a } else { &mut b };
            let e = t.update(&k, w);
            e.stats.weight += w;
            e.stats.updates += 1;
            *want.entry(k).or_default() += w;
        }
        a.merge(&b);
        a.check_invariants();
        assert!(a.is_exact());
        assert_eq!(a.len(), want.len());
        assert_eq!(a.total_weight(), want.values().sum::<u64>());
        for (k, &c) in &want {
            let e = a.get(k).unwrap();
            assert_eq!((e.count(), e.error_bound(), e.stats.weight), (c, 0, c));
        }
        assert_eq!(a.iter().map(|e| e.stats.updates).sum::<u64>(), 5000);
        // Merging an empty table changes nothing.
        let before = contents(&a);
        a.merge(&HeavyHitters::new(7));
        assert_eq!(contents(&a), before);
    }

    #[test]
    fn merge_truncates_exact_tables() {
        // Two exact tables whose union does not fit: the largest counts stay.
        let mut a: HeavyHitters<Stats> = HeavyHitters::new(3);
        let mut b: HeavyHitters<Stats> = HeavyHitters::new(3);
        for (k, c) in [("a", 5), ("b", 1), ("c", 3)] {
            a.update(k.as_bytes(), c);
        }
        for (k, c) in [("b", 1), ("d", 4), ("e", 3)] {
            b.update(k.as_bytes(), c);
        }
        a.merge(&b);
        a.check_invariants();
        let got: Vec<_> = a
            .top_n(3, |e| e.count())
            .iter()
            .map(|e| (e.key().to_vec(), e.count(), e.error_bound()))
            .collect();
        // c and e tie at 3: c (smaller key) stays; b (2) and e go.
        assert_eq!(
            got,
            [
                (b"a".to_vec(), 5, 0),
                (b"d".to_vec(), 4, 0),
                (b"c".to_vec(), 3, 0)
            ]
        );
        assert_eq!(a.evictions(), 2);
        assert!(!a.is_exact());
        assert_eq!(a.unmonitored_bound(), 3);
        // The next newcomer inherits the minimum.
        let f = a.update(b"f", 1);
        assert_eq!((f.count(), f.error_bound()), (4, 3));
    }

    /// Windows folded into a run's table as each closes, as a collector
    /// with windows builds its run: while the run's table holds every
    /// key, the very table one fed record by record gives (counts,
    /// bounds, payloads); past that, Space-Saving's guarantees; and
    /// windows that evicted themselves are merged, within the same.
    #[test]
    fn folding_windows_gives_what_streaming_gives() {
        let universe = 200_000;
        let keys = keys(universe);
        let stream = zipf_stream(31, universe, 1.1, 300_000, 3);
        let truth = truth(&stream, universe);
        let n: u64 = stream.iter().map(|&(_, w)| w).sum();
        let sorted = |t: &HeavyHitters<Stats>| {
            let mut c = contents(t);
            c.sort_by(|a, b| a.0.cmp(&b.0));
            c
        };

        let distinct = truth.iter().filter(|&&t| t > 0).count();
        let mut streamed = HeavyHitters::new(distinct);
        feed(&mut streamed, &keys, &stream);
        let mut folded = HeavyHitters::new(distinct);
        let mut window = HeavyHitters::new(distinct);
        for part in stream.chunks(20_000) {
            window.clear();
            feed(&mut window, &keys, part);
            assert!(window.is_exact());
            folded.fold(&window);
            folded.check_invariants();
        }
        assert!(folded.is_exact());
        assert_eq!(folded.total_weight(), n);
        assert_eq!(sorted(&folded), sorted(&streamed));

        // A run's table smaller than the keys: it evicts as it folds.
        let capacity = 2000;
        let mut folded = HeavyHitters::new(capacity);
        for part in stream.chunks(20_000) {
            let mut window = HeavyHitters::new(20_000);
            feed(&mut window, &keys, part);
            assert!(window.is_exact());
            folded.fold(&window);
            folded.check_invariants();
        }
        assert!(folded.evictions() > 0);
        check_guarantees(&folded, &truth, n, capacity, 100);

        // Windows as small as the run's table evict too: merged.
        let mut folded = HeavyHitters::new(capacity);
        let mut window = HeavyHitters::new(capacity);
        for part in stream.chunks(20_000) {
            window.clear();
            feed(&mut window, &keys, part);
            assert!(!window.is_exact());
            folded.fold(&window);
            folded.check_invariants();
        }
        check_guarantees(&folded, &truth, n, capacity, 100);
    }

    /// A fold spread over parts of any size is the fold in one go.
    #[test]
    fn a_fold_in_parts_is_the_fold_in_one_go() {
        let universe = 20_000;
        let keys = keys(universe);
        let stream = zipf_stream(41, universe, 1.0, 60_000, 2);
        for (capacity, part) in [(50_000, 1), (50_000, 7), (3000, 1000), (3000, usize::MAX)] {
            let mut whole = HeavyHitters::new(capacity);
            let mut parts = HeavyHitters::new(capacity);
            for chunk in stream.chunks(15_000) {
                let mut window = HeavyHitters::new(50_000);
                feed(&mut window, &keys, chunk);
                whole.fold(&window);
                let mut from = 0;
                loop {
                    let next =
                        parts.fold_part_with(&window, from, part, |a: &mut Stats, b| a.merge(b));
                    assert!(next > from || next == window.len());
                    assert!(next - from <= part);
                    from = next;
                    if from == window.len() {
                        break;
                    }
                }
                parts.check_invariants();
            }
            assert_eq!(contents(&parts), contents(&whole), "{capacity} {part}");
        }
    }

    #[test]
    fn merge_shards_and_windows_keep_guarantees() {
        let universe = 200_000;
        let keys = keys(universe);
        let capacity = 2000;
        let stream = zipf_stream(21, universe, 1.1, 300_000, 1);
        let truth = truth(&stream, universe);
        let n = stream.len() as u64;

        // Shards: split by key, as collector threads would.
        let mut shards: Vec<HeavyHitters<Stats>> =
            (0..4).map(|_| HeavyHitters::new(capacity)).collect();
        for &(r, w) in &stream {
            let e = shards[r % 4].update(&keys[r], w);
            e.stats.weight += w;
        }
        let mut merged = shards[0].clone();
        for s in &shards[1..] {
            merged.merge(s);
            merged.check_invariants();
        }
        check_guarantees(&merged, &truth, n, capacity, 100);
        // The same shards as what they are, disjoint: into a table as large
        // as all of them, every item is its shard's, count and bound.
        let mut union = HeavyHitters::new(4 * capacity);
        for s in &shards {
            union.merge_disjoint(s);
            union.check_invariants();
        }
        check_guarantees(&union, &truth, n, 4 * capacity, 100);
        assert_eq!(union.len(), 4 * capacity);
        for e in union.iter() {
            assert_eq!(Some(e), shards[rank_of(e.key()) % 4].get(e.key()));
        }
        let exact = union.iter().filter(|e| e.is_exact()).count();
        assert!(exact >= 100, "{exact} exact items");
        // Into a table of one shard's size: the largest counts stay.
        let mut small = HeavyHitters::new(capacity);
        for s in &shards {
            small.merge_disjoint(s);
        }
        check_guarantees(&small, &truth, n, capacity, 100);

        // Windows: consecutive slices, each in a reused (cleared) table,
        // folded into an accumulator.
        let mut acc: HeavyHitters<Stats> = HeavyHitters::new(capacity);
        let mut window = HeavyHitters::new(capacity);
        for part in stream.chunks(40_000) {
            window.clear();
            feed(&mut window, &keys, part);
            acc.merge(&window);
            acc.check_invariants();
        }
        check_guarantees(&acc, &truth, n, capacity, 100);

        // Shards of different capacity: error <= N1/k1 + N2/k2.
        let (left, right) = stream.split_at(100_000);
        let mut a = HeavyHitters::new(1000);
        feed(&mut a, &keys, left);
        let mut b = HeavyHitters::new(4000);
        feed(&mut b, &keys, right);
        let limit = left.len() as u64 / 1000 + right.len() as u64 / 4000;
        a.merge(&b);
        a.check_invariants();
        for e in a.iter() {
            let tr = truth[rank_of(e.key())];
            assert!(tr <= e.count() && e.count() <= tr + e.error_bound());
            assert!(e.error_bound() <= limit);
        }
    }

    /// Two shards that own disjoint keys, each evicting, folded into an
    /// accumulator as collectors' tables are: keys never evicted in their
    /// shard keep exact counts; the plain merge would add the other
    /// shard's minimum to each.
    #[test]
    fn merge_disjoint_keeps_exact_counts() {
        let shard = |keys: [&[u8]; 6]| {
            let mut t: HeavyHitters<u64> = HeavyHitters::new(3);
            // hot 5, warm 3, then three cold keys churn the last slot.
            for (k, n) in keys.iter().zip([5, 3, 1, 1, 1, 1]) {
                for _ in 0..n {
                    t.update(k, 1).stats += 1;
                }
            }
            t
        };
        let a = shard([b"a", b"aa", b"a1", b"a2", b"a3", b"a4"]);
        let b = shard([b"b", b"bb", b"b1", b"b2", b"b3", b"b4"]);
        // a1 (1) is replaced by a2 (2, bound 1), a2 by a3 (3, bound 2), and
        // one of aa and a3 (3) by a4 (4, bound 3).
        assert_eq!(a.evictions(), 3);
        assert_eq!(a.unmonitored_bound(), 3);
        let exact = |t: &HeavyHitters<u64>, k: &[u8]| {
            let e = t.get(k).unwrap();
            (e.count(), e.error_bound(), e.stats)
        };
        assert_eq!(exact(&a, b"a"), (5, 0, 5));
        let mut acc: HeavyHitters<u64> = HeavyHitters::new(6);
        acc.merge_disjoint(&a);
        acc.merge_disjoint(&b);
        acc.check_invariants();
        assert_eq!(exact(&acc, b"a"), (5, 0, 5));
        assert_eq!(exact(&acc, b"b"), (5, 0, 5));
        assert_eq!(acc.total_weight(), 24);
        assert_eq!(acc.evictions(), 6);
        // A key of neither table had at most one shard's bound.
        assert_eq!(acc.unmonitored_bound(), 3);
        for e in acc.iter() {
            assert_eq!(e, a.get(e.key()).or(b.get(e.key())).unwrap());
        }
        // The plain merge assumes b may have seen "a": +3 and bound 3.
        let mut plain: HeavyHitters<u64> = HeavyHitters::new(6);
        plain.merge(&a);
        plain.merge(&b);
        assert_eq!(exact(&plain, b"a"), (8, 3, 5));

        // Truncation keeps the largest and raises the bound to what was
        // left out.
        let mut small: HeavyHitters<u64> = HeavyHitters::new(3);
        small.merge_disjoint(&a);
        small.merge_disjoint(&b);
        small.check_invariants();
        let got: Vec<_> = small
            .top_n(3, |e| e.count())
            .iter()
            .map(|e| (e.key().to_vec(), e.count(), e.error_bound()))
            .collect();
        assert_eq!(got[..2], [(b"a".to_vec(), 5, 0), (b"b".to_vec(), 5, 0)]);
        assert_eq!(got[2], (b"a4".to_vec(), 4, 3));
        assert_eq!(small.evictions(), 9);
        assert_eq!(small.unmonitored_bound(), 4);
    }

    /// Tables whose streams overlap (clients seen by every collector): with
    /// the dropped-key filter, a key absent from a table that never dropped
    /// it gets nothing added; one that was dropped gets the bound.
    #[test]
    fn dropped_filter_spares_keys_the_other_never_saw() {
        let feed = |t: &mut HeavyHitters<u64>, ops: &[(&[u8], u64)]| {
            for &(k, n) in ops {
                for _ in 0..n {
                    t.update(k, 1).stats += 1;
                }
            }
        };
        for filtered in [true, false] {
            let new = |cap| {
                if filtered {
                    HeavyHitters::with_dropped_filter(cap)
                } else {
                    HeavyHitters::new(cap)
                }
            };
            // a: x 4; y 1 is replaced by z (2, bound 1), z by w (3, bound
            // 2): bound 3.
            let mut a: HeavyHitters<u64> = new(2);
            feed(&mut a, &[(b"x", 4), (b"y", 1), (b"z", 1), (b"w", 1)]);
            assert_eq!((a.evictions(), a.unmonitored_bound()), (2, 3));
            // b: exact, has y (dropped by a) and v (never seen by a).
            let mut b: HeavyHitters<u64> = new(4);
            feed(&mut b, &[(b"y", 6), (b"v", 5), (b"x", 1)]);
            // c: u replaced by t (2, bound 1): bound 2; never saw x.
            let mut c: HeavyHitters<u64> = new(1);
            feed(&mut c, &[(b"u", 1), (b"t", 1)]);
            assert_eq!(c.unmonitored_bound(), 2);

            let mut acc: HeavyHitters<u64> = new(8);
            for t in [&a, &b, &c] {
                acc.merge(t);
                acc.check_invariants();
            }
            let row = |k: &[u8]| {
                let e = acc.get(k).unwrap();
                (e.count(), e.error_bound(), e.stats)
            };
            // True totals: x 5, y 7, v 5, t 1, w 1.
            if filtered {
                // x: 4 in a, 1 in b; c never saw it.
                assert_eq!(row(b"x"), (5, 0, 5));
                // y: a dropped it (so up to 3 there).
                assert_eq!(row(b"y"), (9, 3, 6));
                // v, w, t: only the table holding them saw them.
                assert_eq!(row(b"v"), (5, 0, 5));
                assert_eq!(row(b"w"), (3, 2, 1));
                assert_eq!(row(b"t"), (2, 1, 1));
            } else {
                // Every evicting table may have had any key.
                assert_eq!(row(b"x"), (7, 2, 5));
                assert_eq!(row(b"y"), (11, 5, 6));
                assert_eq!(row(b"v"), (10, 5, 5));
                assert_eq!(row(b"w"), (5, 4, 1));
                assert_eq!(row(b"t"), (5, 4, 1));
            }
            assert_eq!(acc.unmonitored_bound(), 5);
            assert_eq!(acc.total_weight(), 21);
        }
    }

    #[test]
    fn dropped_filter_remembers_evictions_and_merge_drops() {
        let mut t: HeavyHitters = HeavyHitters::with_dropped_filter(2);
        for k in [b"a", b"b", b"c"] {
            t.update(k, 1);
        }
        // "a" was evicted (the first at the minimum): a positive. A key
        // the table never saw is (barring a false positive on these
        // fixed inputs under a random seed: 1 in millions) a negative.
        assert!(t.may_have_dropped(b"a"));
        assert!(!t.may_have_dropped(b"never"));
        // A merge that leaves keys out remembers them.
        let mut small: HeavyHitters = HeavyHitters::with_dropped_filter(1);
        small.merge(&t);
        let kept = small.iter().next().unwrap().key().to_vec();
        for k in [&b"a"[..], b"b", b"c"] {
            assert_eq!(small.may_have_dropped(k), k != kept.as_slice(), "{k:?}");
        }
        // Clearing forgets.
        small.clear();
        assert!(!small.may_have_dropped(b"a"));
        // A table without a filter that dropped keys makes every key
        // suspect in the table it is merged into.
        let mut plain: HeavyHitters = HeavyHitters::new(1);
        plain.update(b"p", 1);
        plain.update(b"q", 1);
        let mut f: HeavyHitters = HeavyHitters::with_dropped_filter(4);
        f.merge(&plain);
        assert!(f.may_have_dropped(b"anything"));
    }

    #[test]
    fn merge_into_larger_table_keeps_floor() {
        // A full, evicting table merged into a larger, empty one: keys seen
        // only later must still get the merged error bound.
        let mut small: HeavyHitters = HeavyHitters::new(2);
        for k in [b"a", b"b", b"c", b"a", b"a"] {
            small.update(k, 1);
        }
        let m = small.unmonitored_bound();
        assert!(m > 0);
        let mut big: HeavyHitters = HeavyHitters::new(10);
        big.merge(&small);
        assert!(!big.is_full());
        assert_eq!(big.unmonitored_bound(), m);
        // "b" was evicted from `small` and may have had up to `m`.
        let b = big.update(b"b", 1);
        assert_eq!((b.count(), b.error_bound()), (m + 1, m));
        big.check_invariants();
    }

    #[test]
    fn clear_keeps_allocations_and_replays_identically() {
        let universe = 20_000;
        let keys = keys(universe);
        let stream = zipf_stream(3, universe, 1.0, 50_000, 3);
        let mut t = HeavyHitters::new(1000);
        feed(&mut t, &keys, &stream);
        let full = contents(&t);
        let mem = t.memory_bytes();
        t.clear();
        assert!(t.is_empty() && t.is_exact());
        assert_eq!((t.evictions(), t.total_weight()), (0, 0));
        assert!(t.get(&keys[0]).is_none());
        // Only the list of kept key buffers is new.
        let cleared = t.memory_bytes();
        assert!(cleared >= mem && cleared <= mem + 1024 * size_of::<Vec<u8>>());
        t.check_invariants();
        for _ in 0..2 {
            feed(&mut t, &keys, &stream);
            t.check_invariants();
            assert_eq!(contents(&t), full);
            assert_eq!(t.memory_bytes(), cleared);
            t.clear();
            assert_eq!(t.memory_bytes(), cleared);
        }
    }

    /// A key of 8..64 bytes for `i`, distinct for every `i`.
    fn varied_key(i: u64, buf: &mut Vec<u8>) {
        use std::io::Write;
        buf.clear();
        write!(buf, "u{i}:").unwrap();
        let len = 8 + (Rng(i).next() % 57) as usize;
        buf.resize(len.max(buf.len()), b'x');
    }

    #[test]
    fn memory_flat_as_distinct_keys_grow_tenfold() {
        let capacity = 10_000;
        let mut t: HeavyHitters<Stats> = HeavyHitters::new(capacity);
        let mut rng = Rng(99);
        let mut buf = Vec::new();
        let mut next_new = 0u64;
        let mut mem_at = Vec::new();
        for target in [100_000u64, 1_000_000] {
            while next_new < target {
                // Half the updates repeat a hot key, half bring a new one.
                let i = if rng.below(2) == 0 {
                    rng.below(100)
                } else {
                    next_new += 1;
                    100 + next_new
                };
                varied_key(i, &mut buf);
                t.update(&buf, 1).stats.updates += 1;
            }
            mem_at.push(t.memory_bytes());
        }
        t.check_invariants();
        let (small, large) = (mem_at[0] as f64, mem_at[1] as f64);
        assert!((large - small).abs() / small < 0.10, "{mem_at:?}");
        // And it is bounded by the capacity: under 256 bytes an item here.
        assert!(mem_at[1] < capacity * 256, "{mem_at:?}");
        for h in 0..100 {
            varied_key(h, &mut buf);
            assert!(t.contains(&buf), "hot key {h} lost");
        }
    }

    #[test]
    fn short_keys_live_in_the_item_and_long_ones_reuse_their_buffers() {
        use super::super::keybuf::INLINE;
        // One item: every new key evicts the last.
        let mut t: HeavyHitters<Stats> = HeavyHitters::new(1);
        let short = |i: u8| vec![b'a' + i; INLINE];
        let long = |i: u8| vec![b'a' + i; INLINE + 3];
        let one = alloc_size(INLINE + 3);
        // (key admitted, heap bytes after, spare buffers after): a short
        // key costs none; a long one takes a buffer; a short key evicting
        // it keeps the buffer as a spare (still counted), which the next
        // long key takes; a long key after a long one rewrites it.
        let steps = [
            (short(0), 0, 0),
            (long(1), one, 0),
            (short(2), one, 1),
            (long(3), one, 0),
            (long(4), one, 0),
        ];
        for (key, bytes, spares) in steps {
            t.update(&key, 1);
            let keys: Vec<&[u8]> = t.iter().map(|e| e.key()).collect();
            assert_eq!(keys, vec![&key[..]]);
            assert_eq!(
                (t.key_bytes, t.spare_keys.len()),
                (bytes, spares),
                "{key:?}"
            );
            t.check_invariants();
        }
        // Clear keeps the heap buffer for the next window.
        t.clear();
        assert_eq!((t.key_bytes, t.spare_keys.len()), (one, 1));
        t.update(&long(5), 1);
        assert_eq!((t.key_bytes, t.spare_keys.len()), (one, 0));
        t.check_invariants();
        assert_eq!(t.iter().next().unwrap().key(), &long(5)[..]);
    }

    #[test]
    #[should_panic(expected = "capacity")]
    fn zero_capacity_panics() {
        let _: HeavyHitters = HeavyHitters::new(0);
    }
}
