//! What a tracked key keeps of its clients, servers and commands.
//!
//! * [`AddrTable`]: requests per address (the key's clients, or its
//!   servers), **exact while the key has no more distinct addresses than
//!   the table's size** (`--key-clients`, default 32, for clients;
//!   [`KEY_SERVERS`] for servers), a Space-Saving table beyond: every row
//!   then keeps `true <= count <= true + error_bound`, and every address
//!   whose true count exceeds [`AddrTable::unmonitored_bound`] is in it.
//! * [`KeyCommands`]: requests per command name, always exact (the names
//!   are the protocol's, a small finite set).
//!
//! Both grow on demand: a key with one or two clients (one server, two
//! commands) keeps them inline in the key's entry (no allocation, which
//! matters when keys churn through the key table); more spill to the heap,
//! growing by doubling up to the table's size and never past it. The
//! per-record path allocates only when a key gains rows past what it has
//! room for (at most log2(size) times in a key's tenure).
//!
//! # Cost
//!
//! Inline, a key's tables take 224 bytes of its 544-byte entry
//! ([`KeyClients`] 104, [`KeyServers`] 64, [`KeyCommands`] 56). A spilled
//! client or server table is one allocation of 42 bytes a row (a 2-byte
//! fingerprint, count, error bound, 3-word address) for 4, 8, 16, 32 rows
//! as the key gains clients: 1,344 bytes for a full 32-row table.
//!
//! # Determinism
//!
//! While a table is exact its content (a set of (address, count) rows)
//! does not depend on the order records arrive in, nor on how the stream
//! was split between collectors or windows and merged back: merges add
//! exact counts. Outputs are sorted (requests descending, then address),
//! so reports are identical for any number of workers and collectors.
//! Past the size, which address a full table replaces depends on arrival
//! order (Space-Saving); the bounds hold for any order.

use super::tables::ClientId;
use std::mem::size_of;

/// The most rows a key's client table may be given (`--key-clients`): a
/// record of a key with that many clients compares its client with every
/// row, so the size is kept small enough for that scan to stay cheap.
pub const MAX_KEY_CLIENTS: usize = 256;

/// The default size of a key's client table.
pub const DEFAULT_KEY_CLIENTS: usize = 32;

/// The size of a key's server table (consistent hashing puts a key on one
/// server; more means a pool resize or a misbehaving client).
pub const KEY_SERVERS: usize = 8;

/// Inline-then-heap storage: up to `N` rows inside the owner, then a heap
/// vector.
#[derive(Clone, Debug)]
enum Few<T, const N: usize> {
    Inline(u8, [T; N]),
    Heap(Vec<T>),
}

impl<T: Copy + Default, const N: usize> Default for Few<T, N> {
    fn default() -> Self {
        Few::Inline(0, [T::default(); N])
    }
}

impl<T: Copy + Default, const N: usize> Few<T, N> {
    #[inline]
    fn as_slice(&self) -> &[T] {
        match self {
            Few::Inline(n, a) => &a[..*n as usize],
            Few::Heap(v) => v,
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Few::Inline(n, a) => &mut a[..*n as usize],
            Few::Heap(v) => v,
        }
    }

    /// Appends `v`. `room` is the most rows this storage is meant to hold:
    /// the heap vector grows by doubling but never reserves past it.
    fn push(&mut self, v: T, room: usize) {
        match self {
            Few::Inline(n, a) if (*n as usize) < N => {
                a[*n as usize] = v;
                *n += 1;
            }
            Few::Inline(_, a) => {
                let mut h = Vec::with_capacity((2 * N).max(4).min(room).max(N + 1));
                h.extend_from_slice(a);
                h.push(v);
                *self = Few::Heap(h);
            }
            Few::Heap(h) => {
                if h.len() == h.capacity() {
                    let want = (2 * h.len()).min(room).max(h.len() + 1);
                    h.reserve_exact(want - h.len());
                }
                h.push(v);
            }
        }
    }

    /// Bytes on the heap (besides the owner's own size).
    fn heap_bytes(&self) -> usize {
        match self {
            Few::Inline(..) => 0,
            Few::Heap(v) => v.capacity() * size_of::<T>(),
        }
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for Few<T, N> {
    fn eq(&self, o: &Self) -> bool {
        self.as_slice() == o.as_slice()
    }
}

impl<T: Copy + Default + Eq, const N: usize> Eq for Few<T, N> {}

/// One row of an [`AddrTable`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrRow {
    pub addr: ClientId,
    /// Requests, possibly overcounted by up to `error_bound`.
    pub count: u64,
    /// 0 when `count` is exact; else how much of it may belong to other
    /// addresses (the count of the row this one replaced, plus what a
    /// merge added for the other side).
    pub error_bound: u64,
}

impl AddrRow {
    /// Requests the address certainly made: `count - error_bound <= true`.
    pub fn guaranteed(&self) -> u64 {
        self.count.saturating_sub(self.error_bound)
    }
}

/// A 16-bit digest of an address, kept beside a spilled table's counts.
#[inline]
fn fingerprint(w: &[u64; 3]) -> u16 {
    let x = w[0].rotate_left(29) ^ w[1] ^ (w[2] << 17);
    let x = x ^ (x >> 32);
    (x ^ (x >> 16)) as u16
}

/// Lanes of 16 bits: each word holds four fingerprints.
const LO: u64 = 0x0001_0001_0001_0001;
const HI: u64 = 0x8000_8000_8000_8000;

/// The rows of a spilled table in one allocation of words, column by
/// column for `cap` rows: fingerprints (four a word, so 32 rows in one
/// cache line), then counts, then error bounds, then addresses (three
/// words each). A record scans the fingerprints and compares a whole
/// address only where one matches; an eviction looks for a row at the
/// smallest count from where the last one left off. (Whole rows side by
/// side, a heap vector per column, and a scan of every count at each
/// eviction each cost time: together +11% user time replaying a capture
/// whose hot keys have thousands of clients.)
#[derive(Clone, Debug)]
struct Spilled {
    words: Vec<u64>,
    len: u16,
    cap: u16,
    /// At most the smallest count (counts only grow): a row holding it
    /// holds the smallest.
    low: u64,
    /// Where the next search for a row at `low` starts.
    cursor: u16,
}

impl Spilled {
    fn with_capacity(cap: usize) -> Spilled {
        let cap = cap.clamp(1, u16::MAX as usize);
        Spilled {
            words: vec![0; Self::words_for(cap)],
            len: 0,
            cap: cap as u16,
            low: 0,
            cursor: 0,
        }
    }

    fn words_for(cap: usize) -> usize {
        cap.div_ceil(4) + 5 * cap
    }

    #[inline]
    fn fp_words(&self) -> usize {
        (self.cap as usize).div_ceil(4)
    }

    #[inline]
    fn counts(&self) -> &[u64] {
        let f = self.fp_words();
        &self.words[f..f + self.len as usize]
    }

    #[inline]
    fn count_at(&self, i: usize) -> usize {
        self.fp_words() + i
    }

    #[inline]
    fn bound_at(&self, i: usize) -> usize {
        self.fp_words() + self.cap as usize + i
    }

    #[inline]
    fn addr_at(&self, i: usize) -> usize {
        self.fp_words() + 2 * self.cap as usize + 3 * i
    }

    #[inline]
    fn find(&self, a: &[u64; 3]) -> Option<usize> {
        let f = fingerprint(a) as u64;
        let pat = f * LO;
        let n = self.len as usize;
        for (w, &word) in self.words[..n.div_ceil(4)].iter().enumerate() {
            // Exact zero-lane test: a lane's high bit is set iff the
            // lane of `x` is 0.
            // (x & 0x7fff..) + 0x7fff.. sets a lane's high bit iff its
            // low 15 bits are not all 0 (no carry leaves a lane); or-ing x
            // adds the lane's own high bit.
            let x = word ^ pat;
            let mut m = !((((x & !HI).wrapping_add(!HI)) | x) | !HI);
            while m != 0 {
                let lane = m.trailing_zeros() as usize / 16;
                let i = 4 * w + lane;
                if i >= n {
                    break;
                }
                let at = self.addr_at(i);
                if self.words[at..at + 3] == a[..] {
                    return Some(i);
                }
                m &= m - 1;
            }
        }
        None
    }

    fn get(&self, i: usize) -> AddrRow {
        let at = self.addr_at(i);
        AddrRow {
            addr: ClientId::from_words(&[self.words[at], self.words[at + 1], self.words[at + 2]]),
            count: self.words[self.count_at(i)],
            error_bound: self.words[self.bound_at(i)],
        }
    }

    fn set(&mut self, i: usize, r: AddrRow) {
        let a = r.addr.words();
        let f = fingerprint(&a) as u64;
        let shift = 16 * (i % 4);
        let fw = &mut self.words[i / 4];
        *fw = (*fw & !(0xffff << shift)) | (f << shift);
        let (c, b, at) = (self.count_at(i), self.bound_at(i), self.addr_at(i));
        self.words[c] = r.count;
        self.words[b] = r.error_bound;
        self.words[at..at + 3].copy_from_slice(&a);
    }

    /// Appends `r`, growing to `room` rows at most (doubling).
    fn push(&mut self, r: AddrRow, room: usize) {
        let n = self.len as usize;
        if n == self.cap as usize {
            let cap = (2 * n).min(room).max(n + 1);
            let mut bigger = Spilled::with_capacity(cap);
            for i in 0..n {
                bigger.len += 1;
                bigger.set(i, self.get(i));
            }
            bigger.low = self.low;
            bigger.cursor = self.cursor;
            *self = bigger;
        }
        self.len += 1;
        // A new row may hold less than the rows before it (a table whose
        // size was raised after it had filled): `low` must stay a lower
        // bound of every count.
        self.low = self.low.min(r.count);
        self.set(n, r);
    }

    /// A row with the smallest count, to evict, and that count.
    fn evictee(&mut self) -> Option<(usize, u64)> {
        let n = self.len as usize;
        let start = (self.cursor as usize).min(n);
        let low = self.low;
        let counts = self.counts();
        let at = |v: u64| (start..n).chain(0..start).find(|&i| counts[i] == v);
        let (i, low) = match at(low) {
            Some(i) => (i, low),
            None => {
                // Every row passed `low`: the smallest count rose.
                let m = *counts.iter().min()?;
                (at(m)?, m)
            }
        };
        self.low = low;
        self.cursor = (i + 1) as u16;
        Some((i, low))
    }
}

/// A table's rows: up to `N` whole rows inline, then [`Spilled`].
#[derive(Clone, Debug)]
enum Rows<const N: usize> {
    Inline(u8, [AddrRow; N]),
    Spilled(Spilled),
}

impl<const N: usize> Default for Rows<N> {
    fn default() -> Self {
        Rows::Inline(0, [AddrRow::default(); N])
    }
}

impl<const N: usize> Rows<N> {
    /// The index of `addr`'s row.
    #[inline]
    fn find(&self, addr: &ClientId) -> Option<usize> {
        match self {
            Rows::Inline(n, rows) => rows[..*n as usize].iter().position(|r| r.addr == *addr),
            Rows::Spilled(s) => s.find(&addr.words()),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        match self {
            Rows::Inline(n, _) => *n as usize,
            Rows::Spilled(s) => s.len as usize,
        }
    }

    #[inline]
    fn add_at(&mut self, i: usize, w: u64) {
        let c = match self {
            Rows::Inline(_, rows) => &mut rows[i].count,
            Rows::Spilled(s) => {
                let at = s.count_at(i);
                &mut s.words[at]
            }
        };
        *c = c.saturating_add(w);
    }

    fn get(&self, i: usize) -> AddrRow {
        match self {
            Rows::Inline(_, rows) => rows[i],
            Rows::Spilled(s) => s.get(i),
        }
    }

    fn set(&mut self, i: usize, r: AddrRow) {
        match self {
            Rows::Inline(_, rows) => rows[i] = r,
            Rows::Spilled(s) => s.set(i, r),
        }
    }

    /// The smallest count (0 when empty).
    fn min_count(&self) -> u64 {
        match self {
            Rows::Inline(n, rows) => rows[..*n as usize].iter().map(|r| r.count).min(),
            Rows::Spilled(s) => s.counts().iter().copied().min(),
        }
        .unwrap_or(0)
    }

    /// A row with the smallest count, to evict, and that count.
    fn evictee(&mut self) -> Option<(usize, u64)> {
        match self {
            Rows::Inline(n, rows) => rows[..*n as usize]
                .iter()
                .enumerate()
                .min_by_key(|&(i, r)| (r.count, i))
                .map(|(i, r)| (i, r.count)),
            Rows::Spilled(s) => s.evictee(),
        }
    }

    /// Appends `r`. `room` is the most rows this table is meant to hold:
    /// a spilled table grows by doubling but never past it.
    fn push(&mut self, r: AddrRow, room: usize) {
        match self {
            Rows::Inline(n, rows) if (*n as usize) < N => {
                rows[*n as usize] = r;
                *n += 1;
            }
            Rows::Inline(n, rows) => {
                let len = *n as usize;
                let mut s = Spilled::with_capacity((2 * len).max(4).min(room).max(len + 1));
                for x in rows[..len].iter().chain(std::iter::once(&r)) {
                    s.push(*x, room);
                }
                *self = Rows::Spilled(s);
            }
            Rows::Spilled(s) => s.push(r, room),
        }
    }

    fn iter(&self) -> impl Iterator<Item = AddrRow> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Rows::Inline(..) => 0,
            Rows::Spilled(s) => s.words.capacity() * size_of::<u64>(),
        }
    }
}

impl<const N: usize> PartialEq for Rows<N> {
    fn eq(&self, o: &Self) -> bool {
        self.len() == o.len() && self.iter().eq(o.iter())
    }
}

impl<const N: usize> Eq for Rows<N> {}

/// Requests per address of one key: exact while it has no more distinct
/// addresses than its size, Space-Saving beyond (see the module
/// documentation). `INLINE` rows live inside the table itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrTable<const INLINE: usize> {
    rows: Rows<INLINE>,
    /// Upper bound on the true count of an address absent from the table
    /// that no eviction accounts for (left by a merge with a table that
    /// had dropped addresses); 0 otherwise.
    floor: u64,
    /// The most rows (0: not set yet, the first `add` or merge sets it).
    cap: u16,
    /// Whether the table ever dropped an address (evicted it, or left it
    /// out of a merge, or merged a table that had).
    dropped: bool,
}

/// A key's clients: two rows inline (most keys have one to three).
pub type KeyClients = AddrTable<2>;
/// A key's servers: one row inline.
pub type KeyServers = AddrTable<1>;

impl<const INLINE: usize> AddrTable<INLINE> {
    /// Adds `w` requests of `addr`. `cap` is the table's size; a table
    /// keeps the largest size it was given.
    #[inline]
    pub fn add(&mut self, addr: ClientId, w: u64, cap: usize) {
        match self.rows.find(&addr) {
            Some(i) => self.rows.add_at(i, w),
            None => self.admit(addr, w, cap),
        }
    }

    /// An address not in the table: a new row while there is room, else
    /// Space-Saving: it takes the place of the row with the smallest count
    /// (the first of them), inheriting that count as its error bound.
    fn admit(&mut self, addr: ClientId, w: u64, cap: usize) {
        let cap = self.set_cap(cap);
        if self.rows.len() < cap {
            // While exact, 0; else (room after merges of tables of other
            // sizes) what the address may have had before.
            let b = self.unmonitored_bound();
            self.rows.push(
                AddrRow {
                    addr,
                    count: b.saturating_add(w),
                    error_bound: b,
                },
                cap,
            );
            return;
        }
        let Some((i, min)) = self.rows.evictee() else {
            return;
        };
        self.rows.set(
            i,
            AddrRow {
                addr,
                count: min.saturating_add(w),
                error_bound: min,
            },
        );
        self.dropped = true;
    }

    /// Raises the size to `cap` (0: leaves it) and returns it.
    fn set_cap(&mut self, cap: usize) -> usize {
        let cap = cap.min(u16::MAX as usize) as u16;
        self.cap = self.cap.max(cap).max(1);
        self.cap as usize
    }

    /// The rows, in no particular order (see [`sorted`](Self::sorted)).
    pub fn iter(&self) -> impl Iterator<Item = AddrRow> + '_ {
        self.rows.iter()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }

    /// The table's size (0 before the first row).
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Whether every row is exact and every address seen is in the table.
    pub fn is_exact(&self) -> bool {
        !self.dropped && self.floor == 0
    }

    /// An upper bound on the requests of any address *not* in the table:
    /// 0 while the table is exact, else its smallest count (an address is
    /// only ever dropped at the smallest count, and counts only grow), or
    /// what a merge left as bound when that is more. Every address whose
    /// true count exceeds it is in the table.
    pub fn unmonitored_bound(&self) -> u64 {
        if self.dropped {
            self.rows.min_count().max(self.floor)
        } else {
            self.floor
        }
    }

    /// Rows by requests descending, then address: the same for any record
    /// order while the table is exact.
    pub fn sorted(&self) -> Vec<AddrRow> {
        let mut v: Vec<AddrRow> = self.rows.iter().collect();
        v.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.addr.cmp(&b.addr)));
        v
    }

    /// Folds `o` (the same key in another stream: another window, another
    /// store interval) into `self`, as mergeable Space-Saving does. With
    /// `m1`, `m2` the two tables' [`unmonitored_bound`](Self::unmonitored_bound)s
    /// (0 for an exact table): an address in both gets the sum of counts
    /// and of bounds; one in only one table gets the other's `m` added to
    /// its count and its bound (it may have been dropped there). Past the
    /// size, the rows with the largest counts are kept (ties: smaller
    /// address). Two exact tables whose union fits give the exact union.
    pub fn merge(&mut self, o: &Self) {
        if o.rows.len() == 0 && o.is_exact() {
            self.set_cap(o.cap as usize);
            return;
        }
        if self.rows.len() == 0 && self.is_exact() {
            let cap = self.cap.max(o.cap);
            *self = o.clone();
            self.cap = cap;
            return;
        }
        let cap = self.set_cap(o.cap as usize);
        let m1 = self.unmonitored_bound();
        let m2 = o.unmonitored_bound();
        let mut all: Vec<AddrRow> = self
            .rows
            .iter()
            .map(|mut r| {
                // What the other side had of it: its row, or at most m2.
                let (c, e) = match o.rows.find(&r.addr) {
                    Some(j) => {
                        let x = o.rows.get(j);
                        (x.count, x.error_bound)
                    }
                    None => (m2, m2),
                };
                r.count = r.count.saturating_add(c);
                r.error_bound = r.error_bound.saturating_add(e);
                r
            })
            .collect();
        // Theirs that we lack, with at most m1 from our side.
        for x in o.rows.iter() {
            if self.rows.find(&x.addr).is_none() {
                all.push(AddrRow {
                    addr: x.addr,
                    count: x.count.saturating_add(m1),
                    error_bound: x.error_bound.saturating_add(m1),
                });
            }
        }
        if all.len() > cap {
            all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.addr.cmp(&b.addr)));
            all.truncate(cap);
            self.dropped = true;
        }
        self.rows = Rows::default();
        for r in all {
            self.rows.push(r, cap);
        }
        self.dropped |= o.dropped || m1 > 0 || m2 > 0;
        self.floor = m1.saturating_add(m2);
    }

    /// Folds the same key's table for a later period into this one (a
    /// closed window into the run's). An exact `later` is a list of
    /// addresses with their true counts: each is added as one weighted
    /// update, so that the fold of a stream's parts keeps what one table
    /// fed the whole stream guarantees (every address of a key with at
    /// most `cap` of them exact; past that, Space-Saving's bounds). A
    /// `later` that dropped addresses may have dropped any of ours:
    /// [`merge`](Self::merge).
    pub fn fold(&mut self, later: &Self) {
        if !later.is_exact() || (self.rows.len() == 0 && self.is_exact()) {
            self.merge(later);
            return;
        }
        let cap = self.set_cap(later.cap as usize);
        for r in later.rows.iter() {
            self.add(r.addr, r.count, cap);
        }
    }

    /// A table rebuilt from stored parts (`store`): `rows` as they were
    /// (at most `cap` are kept), the size, and what was not listed.
    pub fn from_parts(cap: usize, floor: u64, dropped: bool, rows: &[AddrRow]) -> Self {
        let mut t = Self::default();
        let cap = t.set_cap(cap.max(rows.len().min(u16::MAX as usize)));
        for r in rows.iter().take(cap) {
            t.rows.push(*r, cap);
        }
        t.floor = floor;
        t.dropped = dropped || floor > 0;
        t
    }

    /// The merge floor, for storing the table (see [`from_parts`](Self::from_parts)).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether the table ever dropped an address.
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// Heap bytes beyond the table's own size.
    pub fn heap_bytes(&self) -> usize {
        self.rows.heap_bytes()
    }
}

/// Requests per command of one key, exact: the names are the protocol's
/// (a few dozen at most); a key sees one to three, kept inline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCommands {
    rows: Few<(&'static str, u64), 2>,
}

impl KeyCommands {
    #[inline]
    pub fn add(&mut self, c: &'static str, n: u64) {
        // Names are static strings: by address first, the text only when
        // no address matches (see `CommandId::same_names`).
        let rows = self.rows.as_mut_slice();
        let i = match rows.iter().position(|s| std::ptr::eq(s.0, c)) {
            Some(i) => Some(i),
            None => rows.iter().position(|s| s.0 == c),
        };
        match i {
            Some(i) => rows[i].1 = rows[i].1.saturating_add(n),
            None => self.rows.push((c, n), usize::MAX),
        }
    }

    pub fn merge(&mut self, o: &KeyCommands) {
        for &(c, n) in o.rows.as_slice() {
            self.add(c, n);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, u64)> {
        self.rows.as_slice().iter()
    }

    /// Sorted by requests descending, then name.
    pub fn sorted(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.rows.as_slice().to_vec();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// Heap bytes beyond the table's own size.
    pub fn heap_bytes(&self) -> usize {
        self.rows.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::tables::ClientGranularity;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    /// One of `clients` addresses, the first ones the most often.
    fn skewed(rng: &mut Rng, clients: u32) -> ClientId {
        let i = (rng.next() % clients as u64) as u32;
        c(i * i / clients)
    }

    fn c(i: u32) -> ClientId {
        let [a, b, x, y] = i.to_be_bytes();
        ClientId::new(
            SocketAddr::from(([10 + a, b, x, y], 1)),
            ClientGranularity::Ip,
        )
    }

    /// SplitMix64.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// Checks every row against the truth, and that every address whose
    /// true count exceeds the unmonitored bound is present.
    fn check(t: &KeyClients, truth: &BTreeMap<ClientId, u64>) {
        let m = t.unmonitored_bound();
        for r in t.iter() {
            let tr = truth.get(&r.addr).copied().unwrap_or(0);
            assert!(
                tr <= r.count && r.count <= tr + r.error_bound,
                "row {r:?}, true {tr}"
            );
            assert!(r.error_bound <= m || t.is_exact(), "{r:?} bound above {m}");
        }
        for (a, &n) in truth {
            if n > m {
                assert!(t.iter().any(|r| r.addr == *a), "{a:?} ({n} > {m}) missing");
            }
        }
        if t.is_exact() {
            let got: BTreeMap<ClientId, u64> = t.iter().map(|r| (r.addr, r.count)).collect();
            assert_eq!(&got, truth);
            assert!(t.iter().all(|r| r.error_bound == 0));
        }
    }

    #[test]
    fn exact_up_to_the_size_in_any_order() {
        let mut rng = Rng(3);
        let mut stream: Vec<ClientId> = Vec::new();
        for i in 0..32u32 {
            for _ in 0..=i {
                stream.push(c(i));
            }
        }
        let mut want: Option<Vec<AddrRow>> = None;
        for _ in 0..5 {
            // Shuffle.
            for i in (1..stream.len()).rev() {
                stream.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            let mut t = KeyClients::default();
            for &a in &stream {
                t.add(a, 1, 32);
            }
            assert!(t.is_exact());
            assert_eq!(t.unmonitored_bound(), 0);
            let s = t.sorted();
            assert_eq!(s.len(), 32);
            assert_eq!(s[0].count, 32);
            assert!(s.iter().all(|r| r.error_bound == 0));
            match &want {
                None => want = Some(s),
                Some(w) => assert_eq!(w, &s),
            }
        }
    }

    #[test]
    fn grows_on_demand_and_never_past_the_size() {
        let mut t = KeyClients::default();
        t.add(c(0), 1, 32);
        t.add(c(1), 1, 32);
        assert_eq!(t.heap_bytes(), 0, "two clients stay inline");
        // 42 bytes a spilled row: fingerprint, count, bound and address.
        let bytes = |rows: usize| 8 * (rows.div_ceil(4) + 5 * rows);
        t.add(c(2), 1, 32);
        assert_eq!(t.heap_bytes(), bytes(4), "then room for 4");
        for i in 3..100 {
            t.add(c(i), 1, 32);
        }
        assert_eq!(t.len(), 32);
        assert_eq!(t.heap_bytes(), bytes(32));
        assert_eq!(bytes(32), 32 * 42);
        let mut u = KeyClients::default();
        for i in 0..30 {
            u.add(c(i), 1, 20);
        }
        assert_eq!(u.len(), 20);
        assert_eq!(u.heap_bytes(), bytes(20));
    }

    #[test]
    fn space_saving_past_the_size_keeps_its_bounds() {
        let mut rng = Rng(11);
        for cap in [1usize, 2, 8, 32] {
            let mut t = KeyClients::default();
            let mut truth = BTreeMap::new();
            for _ in 0..5000 {
                // Zipf-ish over 200 clients.
                let i = (rng.next() % 200) as u32;
                let i = i * i / 200;
                t.add(c(i), 1, cap);
                *truth.entry(c(i)).or_insert(0) += 1;
            }
            assert!(!t.is_exact());
            assert_eq!(t.len(), cap);
            let sum: u64 = t.iter().map(|r| r.count).sum();
            assert_eq!(sum, 5000, "Space-Saving keeps the total");
            check(&t, &truth);
        }
    }

    #[test]
    fn merge_of_exact_tables_is_the_exact_union() {
        let mut a = KeyClients::default();
        let mut b = KeyClients::default();
        for i in 0..10 {
            a.add(c(i), i as u64 + 1, 32);
        }
        for i in 5..20 {
            b.add(c(i), 100, 32);
        }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab.sorted(), ba.sorted());
        assert!(ab.is_exact());
        assert_eq!(ab.len(), 20);
        let r7 = ab.iter().find(|r| r.addr == c(7)).unwrap();
        assert_eq!((r7.count, r7.error_bound), (108, 0));
        // Into an empty table: a copy.
        let mut e = KeyClients::default();
        e.merge(&a);
        assert_eq!(e, a);
    }

    #[test]
    fn merge_adds_the_other_sides_bound_to_absent_rows() {
        // a: exact, 3 clients. b: full (size 2) and evicting.
        let mut a = KeyClients::default();
        a.add(c(1), 10, 2);
        let mut b = KeyClients::default();
        b.add(c(2), 7, 2);
        b.add(c(3), 5, 2);
        b.add(c(4), 1, 2); // replaces c(3): count 6, bound 5
        assert!(!b.is_exact());
        assert_eq!(b.unmonitored_bound(), 6);
        let mut m = a.clone();
        m.merge(&b);
        // c(1): 10 here, and at most 6 in b (absent there): 16 ± 6. c(2)
        // (7) and c(4) (6 ± 5) from b, with nothing from a (exact): c(4)
        // is left out by the size 2 (smaller count).
        let s = m.sorted();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].addr, s[0].count, s[0].error_bound), (c(1), 16, 6));
        assert_eq!((s[1].addr, s[1].count, s[1].error_bound), (c(2), 7, 0));
        assert!(!m.is_exact());
        assert_eq!(m.unmonitored_bound(), 7);
        let truth: BTreeMap<ClientId, u64> = [(c(1), 10), (c(2), 7), (c(3), 5), (c(4), 1)]
            .into_iter()
            .collect();
        check(&m, &truth);
        // The other way round gives the same rows.
        let mut n = b.clone();
        n.merge(&a);
        assert_eq!(n.sorted(), s);
    }

    /// One skewed stream per round, counted two ways: in random parts
    /// (collectors) merged, and in consecutive parts (windows) each folded
    /// into the run's table as it closes. Every bound holds both ways; a
    /// key with no more addresses than the size is exact, and folded it is
    /// the very table one fed record by record gives.
    #[test]
    fn merges_of_random_splits_and_folds_of_windows_keep_every_bound() {
        let mut rng = Rng(5);
        for round in 0..300 {
            let cap = 1 + (round % 12);
            let clients = 1 + (rng.next() % 30) as u32;
            let stream: Vec<ClientId> = (0..rng.next() % 600)
                .map(|_| skewed(&mut rng, clients))
                .collect();
            let mut truth = BTreeMap::new();
            let mut streamed = KeyClients::default();
            for &a in &stream {
                *truth.entry(a).or_insert(0u64) += 1;
                streamed.add(a, 1, cap);
            }

            let parts = 1 + (rng.next() % 4) as usize;
            let mut tables = vec![KeyClients::default(); parts];
            for &a in &stream {
                tables[(rng.next() % parts as u64) as usize].add(a, 1, cap);
            }
            let mut all = KeyClients::default();
            for t in &tables {
                all.merge(t);
            }
            check(&all, &truth);

            let mut run = KeyClients::default();
            let mut seen = BTreeMap::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (part, later) =
                    rest.split_at((1 + rng.next() % 150).min(rest.len() as u64) as usize);
                let mut window = KeyClients::default();
                for &a in part {
                    window.add(a, 1, cap);
                    *seen.entry(a).or_insert(0u64) += 1;
                }
                run.fold(&window);
                check(&run, &seen);
                rest = later;
            }
            if truth.len() <= cap {
                assert!(all.is_exact(), "round {round}: fits, so exact");
                assert!(run.is_exact(), "round {round}: fits, so exact");
                assert_eq!(run.sorted(), streamed.sorted(), "round {round}");
            }
        }
    }

    #[test]
    fn fingerprint_collisions_are_told_apart() {
        // Two addresses with the same fingerprint (the port's bits moved
        // into the address): each keeps its own count.
        let mut a = [0u8; 19];
        a[..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        a[16..18].copy_from_slice(&7u16.to_be_bytes());
        let x = ClientId::from_bytes(&a);
        let lo = x.words()[1] ^ ((7u64 ^ 9) << 17);
        let mut b = a;
        b[8..16].copy_from_slice(&lo.to_ne_bytes());
        b[16..18].copy_from_slice(&9u16.to_be_bytes());
        let y = ClientId::from_bytes(&b);
        assert_ne!(x, y);
        assert_eq!(fingerprint(&x.words()), fingerprint(&y.words()));
        assert_eq!(ClientId::from_words(&y.words()), y);
        let mut t = KeyClients::default();
        for i in 0..10 {
            t.add(c(i), 1, 32);
        }
        t.add(x, 3, 32);
        t.add(y, 5, 32);
        t.add(x, 1, 32);
        let got: BTreeMap<ClientId, u64> = t.iter().map(|r| (r.addr, r.count)).collect();
        assert_eq!((got[&x], got[&y], got.len()), (4, 5, 12));
    }

    #[test]
    fn many_addresses_with_ports_stay_exact_up_to_the_largest_size() {
        let mut rng = Rng(21);
        let mut t = KeyClients::default();
        let mut truth = BTreeMap::new();
        for _ in 0..20_000 {
            let host = (rng.next() % 36) as u8;
            let port = (rng.next() % 7) as u16;
            let a = ClientId::new(
                SocketAddr::from(([10, 0, 0, host], port)),
                ClientGranularity::IpPort,
            );
            t.add(a, 1, MAX_KEY_CLIENTS);
            *truth.entry(a).or_insert(0u64) += 1;
        }
        assert_eq!(t.len(), truth.len());
        check(&t, &truth);
        assert!(t.is_exact());
    }

    #[test]
    fn a_table_whose_size_is_raised_after_filling_keeps_its_bounds() {
        // Full at size 8 and evicting, then fed with size 12: new rows
        // start low, and the next evictions must take them, not a row at
        // the old smallest count.
        let mut t = KeyClients::default();
        let mut truth = BTreeMap::new();
        let mut feed = |t: &mut KeyClients, i: u32, n: u64, cap: usize| {
            for _ in 0..n {
                t.add(c(i), 1, cap);
                *truth.entry(c(i)).or_insert(0u64) += 1;
            }
        };
        for i in 0..12 {
            feed(&mut t, i, 20 + i as u64, 8);
        }
        assert!(!t.is_exact());
        for i in 100..110 {
            feed(&mut t, i, 1, 12);
        }
        assert_eq!(t.len(), 12);
        check(&t, &truth);
    }

    #[test]
    fn rebuilt_from_parts_is_the_same_table() {
        let mut t = KeyClients::default();
        for i in 0..40 {
            t.add(c(i % 13), 1 + i as u64, 8);
        }
        let u = KeyClients::from_parts(t.capacity(), t.floor(), t.dropped(), &t.sorted());
        assert_eq!(u.sorted(), t.sorted());
        assert_eq!(u.unmonitored_bound(), t.unmonitored_bound());
        assert_eq!(u.is_exact(), t.is_exact());
    }

    #[test]
    fn commands_are_exact_and_sorted() {
        let mut k = KeyCommands::default();
        for (cmd, n) in [
            ("get", 3),
            ("set", 1),
            ("get", 2),
            ("mg", 1),
            ("touch", 1),
            ("delete", 4),
            ("gat", 1),
        ] {
            k.add(cmd, n);
        }
        assert_eq!(
            k.sorted(),
            vec![
                ("get", 5),
                ("delete", 4),
                ("gat", 1),
                ("mg", 1),
                ("set", 1),
                ("touch", 1)
            ]
        );
        let mut j = KeyCommands::default();
        j.add("get", 1);
        j.merge(&k);
        assert_eq!(j.sorted()[0], ("get", 6));
    }

    #[test]
    fn sizes() {
        // What a key pays for these tables (README, "Memory").
        assert_eq!(size_of::<AddrRow>(), 40);
        assert_eq!(size_of::<KeyClients>(), 104);
        assert_eq!(size_of::<KeyServers>(), 64);
        assert_eq!(size_of::<KeyCommands>(), 56);
    }
}
