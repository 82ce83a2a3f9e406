//! The per-connection queue of requests awaiting their answers.
//!
//! Entries stay in request order; an entry is *resolved* when its outcome is
//! known, and records leave only from the front, so a connection's records
//! come out in request order even when a later `noreply` request resolves
//! before an earlier `get` is answered.
//!
//! One entry is one command; its keys live beside it, compactly: the key
//! bytes in a per-queue arena and a 16-byte slot per key (outcome and value
//! bytes), so a text multi-get of 100,000 keys costs about its keys' bytes
//! plus 16 bytes a key, not a full entry a key.
//!
//! A *marker* entry stands for requests or responses memtap did not see
//! (a gap, a capture that started mid-connection). Responses that reach a
//! marker are discarded as orphans until the server has provably received
//! the next real request (its ACK covers that request's last byte).
//!
//! A *shed* entry is a request given up by a limit (its record already left
//! as `lost`), kept without its keys so that its answer, when it comes, is
//! still recognised as its own and never paired with a later request.

use crate::decode::Ts;
use crate::protocol::{Kind, Outcome, Proto};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// memcached's KEY_MAX_LENGTH. Longer keys (only the binary protocol can
/// carry them, and memcached rejects them) are kept truncated.
pub const KEY_CAP: usize = 250;
/// Longest meta opaque token memcached accepts.
pub const TOKEN_CAP: usize = 32;
/// `req_done_ts` of a request whose last bytes were lost in a hole.
pub const TS_UNKNOWN: Ts = Ts::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for (more of) its response.
    Waiting,
    /// Outcome known, response still arriving (value block, more listing
    /// lines, or the END of a multi-get).
    Partial,
    /// Final.
    Resolved,
}

/// One key of a command: where its bytes are, and what its answer said.
/// For a text retrieval each key has its own outcome (hit or miss); for
/// every other command the entry's outcome is the key's.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Absolute offset of the key in the queue's arena.
    off: u64,
    /// Value bytes of its `VALUE` block (saturating).
    pub resp_bytes: u32,
    len: u8,
    /// Set once the key's own answer is known.
    pub known: bool,
    pub outcome: Outcome,
}

#[derive(Clone)]
pub struct Pending {
    pub id: u64,
    /// A gap barrier, not a request.
    pub marker: bool,
    /// Given up by a limit: its record has left; only its shape remains.
    pub shed: bool,
    pub proto: Proto,
    pub command: &'static str,
    pub kind: Kind,
    pub quiet: bool,
    pub noreply: bool,
    /// Absolute index of its first key slot, and how many keys it has.
    pub slot0: u64,
    pub nkeys: u32,
    /// Text retrieval: every key before this slot is answered (over TCP
    /// hits come back in request order, so the keys a `VALUE` passes over
    /// missed; a UDP reply's messages may come in any order).
    pub cursor: u32,
    pub opaque: u32,
    pub opcode: u8,
    pub token_len: u8,
    pub token: [u8; TOKEN_CAP],
    /// Meta `k`: replies echo the key.
    pub echo_key: bool,
    /// Answered by lines up to `END` (see `Request::listing`).
    pub listing: bool,
    /// Answered by some server versions only (a malformed line ending in
    /// `noreply`, the data line of a rejected storage command): a reply
    /// that fits is its own, any other resolves it unanswered.
    pub optional: bool,
    /// A line that some server versions swallow as data: unanswered, it
    /// was no request and leaves no record.
    pub phantom: bool,
    /// A line memcached rejects: only an error answers it.
    pub malformed: bool,
    /// Its data block did not end in `\r\n`: memcached answers `CLIENT_ERROR
    /// bad data chunk` even to a quiet meta request.
    pub bad_chunk: bool,
    /// Request fully received (header and value block).
    pub complete: bool,
    pub ts: Ts,
    pub req_done_ts: Ts,
    /// Offset just past the request's last byte in the request stream.
    pub req_end_off: u64,
    pub req_bytes: u64,
    /// `Request::exptime`, clamped to memcached's 32 bits.
    pub exptime: Option<i32>,
    pub state: State,
    pub outcome: Outcome,
    pub resp_bytes: u64,
    pub resp_ts: Option<Ts>,
}

impl Pending {
    pub fn blank() -> Pending {
        Pending {
            id: 0,
            marker: false,
            shed: false,
            proto: Proto::Text,
            command: "",
            kind: Kind::Other,
            quiet: false,
            noreply: false,
            slot0: 0,
            nkeys: 0,
            cursor: 0,
            opaque: 0,
            opcode: 0,
            token_len: 0,
            token: [0; TOKEN_CAP],
            echo_key: false,
            listing: false,
            optional: false,
            phantom: false,
            bad_chunk: false,
            malformed: false,
            complete: false,
            ts: 0,
            req_done_ts: 0,
            req_end_off: 0,
            req_bytes: 0,
            exptime: None,
            state: State::Waiting,
            outcome: Outcome::Lost,
            resp_bytes: 0,
            resp_ts: None,
        }
    }

    pub fn token(&self) -> &[u8] {
        &self.token[..self.token_len as usize]
    }

    pub fn set_token(&mut self, t: &[u8]) {
        let n = t.len().min(TOKEN_CAP);
        self.token[..n].copy_from_slice(&t[..n]);
        self.token_len = n as u8;
    }

    pub fn is_open(&self) -> bool {
        self.state != State::Resolved
    }

    /// A text retrieval: each key has its own outcome.
    pub fn per_key(&self) -> bool {
        self.proto == Proto::Text && self.kind == Kind::Retrieve
    }

    /// Final outcome without a response (`latency` stays null).
    pub fn resolve_silent(&mut self, o: Outcome) {
        self.outcome = o;
        self.state = State::Resolved;
        self.resp_ts = None;
    }

    /// Unknown (`None`) until the request is whole (an answer can pair
    /// with a request whose tail is still in a hole), when its last byte
    /// was lost (`TS_UNKNOWN`), and when the answer came first.
    pub fn latency(&self) -> Option<u64> {
        if !self.complete {
            return None;
        }
        self.resp_ts.and_then(|t| t.checked_sub(self.req_done_ts))
    }
}

/// The queue itself: rings of entries, slots and key bytes reused across
/// requests, so steady state allocates nothing.
pub struct Queue {
    q: VecDeque<Pending>,
    slots: VecDeque<Slot>,
    /// Absolute index of `slots[0]`.
    slot_base: u64,
    /// Key bytes; `arena[..dead]` belongs to entries already gone.
    arena: Vec<u8>,
    /// Absolute offset of `arena[0]`.
    arena_base: u64,
    dead: usize,
    next_id: u64,
    /// Most keys (requests) open at once.
    cap: usize,
    /// Keys held by live entries (shed entries hold none).
    keys: usize,
    /// Most shed entries kept for alignment.
    shed_cap: usize,
    shed: usize,
    pool: Pool,
    /// Bytes of storage beyond the free first entries drawn from `pool`.
    charged: usize,
}

/// Entries a queue holds without drawing on its pool (its first
/// allocation); they are part of the fixed cost of a flow or exchange.
pub const FREE_ENTRIES: usize = 4;
/// An emptied queue keeps up to this much capacity (a pipelining client
/// refills it at once); a larger one is freed back to the pool.
const KEEP_ENTRIES: usize = 16;
/// Bytes one key costs beside its own bytes.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// The pending-request share of one worker's memory budget, in bytes of
/// queue storage (entries, key slots, key bytes), drawn on by every queue
/// of its sessions. Capacity is what is charged: storage is kept when a
/// queue empties.
///
/// Shared by handle because queues live in sessions that the reassembler
/// drives; it is touched only when a queue's storage grows or is freed,
/// never per request. The default handle is unbounded.
#[derive(Debug, Clone, Default)]
pub struct Pool(Option<Arc<PoolInner>>);

#[derive(Debug)]
struct PoolInner {
    used: AtomicUsize,
    cap: usize,
}

impl Pool {
    pub fn new(cap_bytes: usize) -> Pool {
        Pool(Some(Arc::new(PoolInner {
            used: AtomicUsize::new(0),
            cap: cap_bytes,
        })))
    }

    /// Bytes drawn now.
    pub fn used(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |p| p.used.load(Ordering::Relaxed))
    }

    /// More than half of the pool is drawn (an unbounded pool never is).
    fn short(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|p| p.used.load(Ordering::Relaxed) > p.cap / 2)
    }

    fn take(&self, n: usize) -> bool {
        let Some(p) = &self.0 else { return true };
        let prev = p.used.fetch_add(n, Ordering::Relaxed);
        if prev.saturating_add(n) > p.cap {
            p.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Draws `n` whether or not it fits (storage that already grew).
    fn force(&self, n: usize) {
        if let Some(p) = &self.0 {
            p.used.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn give(&self, n: usize) {
        if let Some(p) = &self.0 {
            p.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.pool.give(self.charged);
    }
}

const ENTRY_BYTES: usize = std::mem::size_of::<Pending>();

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue::with_pool(cap, Pool::default())
    }

    pub fn with_pool(cap: usize, pool: Pool) -> Queue {
        let cap = cap.max(2);
        Queue {
            q: VecDeque::new(),
            slots: VecDeque::new(),
            slot_base: 0,
            arena: Vec::new(),
            arena_base: 0,
            dead: 0,
            next_id: 1,
            cap,
            keys: 0,
            shed_cap: cap.clamp(1024, 1 << 16),
            shed: 0,
            pool,
            charged: 0,
        }
    }

    fn storage(&self) -> usize {
        self.q.capacity().saturating_sub(FREE_ENTRIES) * ENTRY_BYTES
            + self.slots.capacity() * SLOT_BYTES
            + self.arena.capacity()
    }

    /// Makes sure `entries` more entries with `keys` more keys of
    /// `key_bytes` bytes fit without growing past the pool; false (nothing
    /// changed) when the pool cannot give the storage.
    pub fn reserve(&mut self, entries: usize, keys: usize, key_bytes: usize) -> bool {
        let need_q = self.q.len() + entries;
        let need_s = self.slots.len() + keys;
        let need_a = self.arena.len() - self.dead + key_bytes;
        let grow_q = need_q > self.q.capacity().max(FREE_ENTRIES);
        let grow_s = need_s > self.slots.capacity();
        let grow_a = need_a > self.arena.capacity();
        if !(grow_q || grow_s || grow_a) {
            return true;
        }
        // What the containers would grow to by themselves.
        let want_q = if grow_q {
            need_q.max(2 * self.q.capacity()).max(FREE_ENTRIES)
        } else {
            self.q.capacity()
        };
        let want_s = if grow_s {
            need_s.max(2 * self.slots.capacity()).max(4)
        } else {
            self.slots.capacity()
        };
        let want_a = if grow_a {
            need_a.max(2 * self.arena.capacity()).max(64)
        } else {
            self.arena.capacity()
        };
        let after =
            want_q.saturating_sub(FREE_ENTRIES) * ENTRY_BYTES + want_s * SLOT_BYTES + want_a;
        let extra = after.saturating_sub(self.charged);
        if !self.pool.take(extra) {
            return false;
        }
        self.charged += extra;
        if grow_q {
            self.q.reserve_exact(want_q - self.q.len());
        }
        if grow_s {
            self.slots.reserve_exact(want_s - self.slots.len());
        }
        if grow_a {
            self.compact_arena();
            self.arena.reserve_exact(want_a - self.arena.len());
        }
        self.sync();
        true
    }

    /// Brings `charged` in line with the storage the queue holds.
    fn sync(&mut self) {
        let billable = self.storage();
        if billable > self.charged {
            self.pool.force(billable - self.charged);
        } else {
            self.pool.give(self.charged - billable);
        }
        self.charged = billable;
    }

    fn compact_arena(&mut self) {
        if self.dead > 0 {
            self.arena.drain(..self.dead);
            self.arena_base += self.dead as u64;
            self.dead = 0;
        }
    }

    /// Frees the storage of an emptied queue that grew large, when the
    /// pool runs short (while it has room, keeping it spares a client
    /// that pipelines deeply a reallocation per burst).
    pub fn shrink_if_empty(&mut self) {
        if self.q.is_empty()
            && (self.q.capacity() > KEEP_ENTRIES
                || self.slots.capacity() > 4 * KEEP_ENTRIES
                || self.arena.capacity() > 64 * KEEP_ENTRIES)
            && self.pool.short()
        {
            self.q = VecDeque::new();
            self.slots = VecDeque::new();
            self.arena_base += self.arena.len() as u64;
            self.arena = Vec::new();
            self.dead = 0;
            self.sync();
        }
    }

    /// Forgets the keys of entries gone from the front.
    fn trim(&mut self) {
        let (slot_keep, arena_keep) = match self.q.front() {
            Some(e) => {
                let s = e.slot0;
                let a = self
                    .slots
                    .get((s - self.slot_base) as usize)
                    .map_or(self.arena_base + self.arena.len() as u64, |sl| sl.off);
                (s, a)
            }
            None => (
                self.slot_base + self.slots.len() as u64,
                self.arena_base + self.arena.len() as u64,
            ),
        };
        while self.slot_base < slot_keep && self.slots.pop_front().is_some() {
            self.slot_base += 1;
        }
        self.dead = (arena_keep - self.arena_base) as usize;
        if self.q.is_empty() {
            self.arena_base += self.arena.len() as u64;
            self.arena.clear();
            self.dead = 0;
        } else if self.dead > 4096 && self.dead * 2 > self.arena.len() {
            self.compact_arena();
        }
    }

    fn forget(&mut self, e: &Pending) {
        if e.shed {
            self.shed -= 1;
        } else if !e.marker {
            self.keys -= (e.nkeys as usize).max(1);
        }
    }

    /// Removes entry `i` (0 or 1: the front, or the one behind a marker).
    pub fn discard(&mut self, i: usize) {
        let e = if i == 0 {
            self.q.pop_front()
        } else {
            self.q.remove(i)
        };
        if let Some(e) = e {
            self.forget(&e);
        }
        self.trim();
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Keys (key-requests) held by live entries; a keyless request counts one.
    pub fn keys(&self) -> usize {
        self.keys
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn shed_count(&self) -> usize {
        self.shed
    }

    pub fn shed_cap(&self) -> usize {
        self.shed_cap
    }

    /// Appends a blank entry and returns it for filling.
    pub fn push(&mut self) -> &mut Pending {
        let id = self.next_id;
        self.next_id += 1;
        let grows = self.q.len() == self.q.capacity();
        self.q.push_back(Pending::blank());
        if grows {
            // A push nobody reserved for (a marker): charged all the same.
            self.sync();
        }
        self.keys += 1;
        let slot0 = self.slot_base + self.slots.len() as u64;
        let e = self.q.back_mut().expect("just pushed");
        e.id = id;
        e.slot0 = slot0;
        e
    }

    pub fn push_marker(&mut self) {
        if self.q.back().is_some_and(|e| e.marker) {
            return;
        }
        let e = self.push();
        e.marker = true;
        self.keys -= 1;
    }

    /// Adds a key to the last entry, truncated at `KEY_CAP`; returns false
    /// if truncated.
    pub fn add_key(&mut self, k: &[u8]) -> bool {
        let n = k.len().min(KEY_CAP);
        let grows = self.slots.len() == self.slots.capacity()
            || self.arena.len() + n > self.arena.capacity();
        let off = self.arena_base + self.arena.len() as u64;
        self.arena.extend_from_slice(&k[..n]);
        self.slots.push_back(Slot {
            off,
            resp_bytes: 0,
            len: n as u8,
            known: false,
            outcome: Outcome::Lost,
        });
        if grows {
            self.sync();
        }
        let e = self.q.back_mut().expect("an entry to add keys to");
        e.nkeys += 1;
        if e.nkeys > 1 {
            self.keys += 1;
        }
        n == k.len()
    }

    /// Turns open entry `i` into a shed one: its keys are dropped (their
    /// records have left), its shape stays.
    pub fn shed_entry(&mut self, i: usize) {
        let e = self.q.get_mut(i).expect("in range");
        debug_assert!(!e.marker && !e.shed);
        self.keys -= (e.nkeys as usize).max(1);
        e.shed = true;
        e.nkeys = 0;
        e.cursor = 0;
        self.shed += 1;
    }

    /// After every entry was shed: their keys' storage can go (entries
    /// without keys point past the last slot, which keeps slots in order).
    pub fn forget_keys(&mut self) {
        let end = self.slot_base + self.slots.len() as u64;
        for e in self.q.iter_mut() {
            if e.nkeys == 0 {
                e.slot0 = end;
            }
        }
        self.trim();
    }

    pub fn get(&self, i: usize) -> Option<&Pending> {
        self.q.get(i)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Pending> {
        self.q.get_mut(i)
    }

    pub fn back_mut(&mut self) -> Option<&mut Pending> {
        self.q.back_mut()
    }

    pub fn back(&self) -> Option<&Pending> {
        self.q.back()
    }

    /// Index of the entry with id `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        // Ids grow along the queue: binary search by id.
        self.q.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// Index of the first entry whose id is `id` or later (`len()` when
    /// none is).
    pub fn first_from_id(&self, id: u64) -> usize {
        match self.q.binary_search_by_key(&id, |e| e.id) {
            Ok(i) | Err(i) => i,
        }
    }

    /// The id the next entry pushed will have.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub fn find_id(&mut self, id: u64) -> Option<&mut Pending> {
        let i = self.index_of(id)?;
        self.q.get_mut(i)
    }

    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, Pending> {
        self.q.iter()
    }

    pub fn iter_mut(&mut self) -> std::collections::vec_deque::IterMut<'_, Pending> {
        self.q.iter_mut()
    }

    pub fn front(&self) -> Option<&Pending> {
        self.q.front()
    }

    pub fn pop_front(&mut self) -> Option<Pending> {
        let e = self.q.pop_front();
        if let Some(e) = &e {
            self.forget(e);
        }
        self.trim();
        e
    }

    fn slot_index(&self, e: &Pending, k: u32) -> usize {
        (e.slot0 + k as u64 - self.slot_base) as usize
    }

    /// Key `k` of entry `e`.
    pub fn key_at(&self, e: &Pending, k: u32) -> &[u8] {
        let s = &self.slots[self.slot_index(e, k)];
        let a = (s.off - self.arena_base) as usize;
        &self.arena[a..a + s.len as usize]
    }

    /// The first (for all but text retrievals, the only) key of `e`.
    pub fn key(&self, e: &Pending) -> Option<&[u8]> {
        (e.nkeys > 0).then(|| self.key_at(e, 0))
    }

    pub fn slot(&self, e: &Pending, k: u32) -> &Slot {
        &self.slots[self.slot_index(e, k)]
    }

    /// Slot `k` of entry `i`.
    pub fn slot_mut(&mut self, i: usize, k: u32) -> &mut Slot {
        let e = &self.q[i];
        let at = self.slot_index(e, k);
        &mut self.slots[at]
    }

    /// The first key of entry `i` not yet answered at or after `from`
    /// whose bytes are `key` (keys compare on their stored prefix).
    pub fn find_key(&self, i: usize, from: u32, key: &[u8]) -> Option<u32> {
        let e = &self.q[i];
        let n = key.len().min(KEY_CAP);
        let key = &key[..n];
        (from..e.nkeys).find(|&k| {
            let s = self.slot(e, k);
            !s.known && s.len as usize == n && self.key_at(e, k) == key
        })
    }

    /// Marks every key of entry `i` not yet answered with outcome `o`.
    pub fn settle_keys(&mut self, i: usize, o: Outcome) {
        let e = &self.q[i];
        let (a, n) = (self.slot_index(e, 0), e.nkeys as usize);
        for s in self.slots.range_mut(a..a + n) {
            if !s.known {
                s.known = true;
                s.outcome = o;
            }
        }
    }

    /// Bytes of storage this queue holds now (entries, slots, key bytes).
    pub fn storage_bytes(&self) -> usize {
        self.q.capacity() * ENTRY_BYTES + self.slots.capacity() * SLOT_BYTES + self.arena.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_truncate_at_cap() {
        let mut q = Queue::new(8);
        q.push();
        assert!(q.add_key(b"abc"));
        let e = q.back().unwrap().clone();
        assert_eq!(q.key(&e), Some(&b"abc"[..]));
        q.push();
        assert!(!q.add_key(&[b'x'; 300]));
        let e = q.back().unwrap().clone();
        assert_eq!(q.key(&e).unwrap().len(), KEY_CAP);
    }

    #[test]
    fn markers_do_not_stack_and_ids_are_searchable() {
        let mut q = Queue::new(8);
        q.push_marker();
        q.push_marker();
        assert_eq!(q.len(), 1);
        let id = q.push().id;
        q.push_marker();
        assert_eq!(q.len(), 3);
        assert_eq!(q.find_id(id).unwrap().id, id);
        assert!(q.find_id(999).is_none());
        assert_eq!(q.keys(), 1);
    }

    #[test]
    fn keys_live_beside_entries_and_are_freed_with_them() {
        let mut q = Queue::new(1 << 20);
        for round in 0..3u32 {
            q.push();
            for k in 0..1000u32 {
                q.add_key(format!("key:{round}:{k}").as_bytes());
            }
            q.push();
            q.add_key(b"single");
            assert_eq!(q.keys(), 1001);
            let e = q.get(0).unwrap().clone();
            assert_eq!(q.key_at(&e, 999), format!("key:{round}:999").as_bytes());
            assert_eq!(
                q.find_key(0, 10, format!("key:{round}:500").as_bytes()),
                Some(500)
            );
            assert_eq!(
                q.find_key(0, 501, format!("key:{round}:500").as_bytes()),
                None
            );
            q.pop_front();
            let e = q.get(0).unwrap().clone();
            assert_eq!(q.key(&e), Some(&b"single"[..]));
            q.pop_front();
            assert!(q.is_empty());
            assert_eq!(q.keys(), 0);
        }
    }

    #[test]
    fn a_hundred_thousand_keys_cost_about_their_bytes() {
        let mut q = Queue::new(1 << 20);
        q.push();
        let mut key_bytes = 0;
        for k in 0..100_000u32 {
            let key = format!("user:{k:08}:profile");
            key_bytes += key.len();
            q.add_key(key.as_bytes());
        }
        // Key bytes plus a 16-byte slot a key, with the containers'
        // doubling slack at most.
        assert_eq!(SLOT_BYTES, 16);
        assert!(q.storage_bytes() <= 2 * (key_bytes + 100_000 * SLOT_BYTES) + 4096);
    }

    #[test]
    fn the_pool_bounds_storage_and_gets_it_back() {
        let pool = Pool::new(64 * 1024);
        {
            let mut q = Queue::with_pool(1 << 20, pool.clone());
            let mut fitted = 0;
            while q.reserve(1, 10, 200) {
                q.push();
                for _ in 0..10 {
                    q.add_key(&[b'k'; 20]);
                }
                fitted += 1;
            }
            assert!(fitted > 50, "{fitted}");
            assert!(pool.used() <= 64 * 1024);
        }
        assert_eq!(pool.used(), 0);
    }
}
