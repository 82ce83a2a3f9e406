//! The per-connection queue of requests awaiting their answers.
//!
//! Entries stay in request order; an entry is *resolved* when its outcome is
//! known, and records leave only from the front, so a connection's records
//! come out in request order even when a later `noreply` request resolves
//! before an earlier `get` is answered.
//!
//! A *marker* entry stands for requests or responses memtap did not see
//! (a gap, a capture that started mid-connection, an overflow). Responses
//! that reach a marker are discarded as orphans until the server has
//! provably received the next real request (its ACK covers that request's
//! last byte); only then can a response be paired without guessing.

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

#[derive(Clone)]
pub struct Pending {
    pub id: u64,
    /// A gap barrier, not a request.
    pub marker: bool,
    pub proto: Proto,
    pub command: &'static str,
    pub kind: Kind,
    pub quiet: bool,
    pub noreply: bool,
    /// The keys of one multi-key command share a group id.
    pub group: u64,
    /// First entry of its command.
    pub first: bool,
    pub has_key: bool,
    pub key_len: u16,
    pub key: [u8; KEY_CAP],
    pub opaque: u32,
    pub opcode: u8,
    pub token_len: u8,
    pub token: [u8; TOKEN_CAP],
    /// Meta `k`: replies echo the key.
    pub echo_key: bool,
    /// Request fully received (header and value block).
    pub complete: bool,
    pub ts: Ts,
    pub req_done_ts: Ts,
    /// Offset just past the request's last byte in the request stream.
    pub req_end_off: u64,
    pub req_bytes: u64,
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
            proto: Proto::Text,
            command: "",
            kind: Kind::Other,
            quiet: false,
            noreply: false,
            group: 0,
            first: false,
            has_key: false,
            key_len: 0,
            key: [0; KEY_CAP],
            opaque: 0,
            opcode: 0,
            token_len: 0,
            token: [0; TOKEN_CAP],
            echo_key: false,
            complete: false,
            ts: 0,
            req_done_ts: 0,
            req_end_off: 0,
            req_bytes: 0,
            state: State::Waiting,
            outcome: Outcome::Lost,
            resp_bytes: 0,
            resp_ts: None,
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.has_key.then(|| &self.key[..self.key_len as usize])
    }

    pub fn token(&self) -> &[u8] {
        &self.token[..self.token_len as usize]
    }

    /// Stores a key, truncating at `KEY_CAP`; returns false if truncated.
    pub fn set_key(&mut self, k: &[u8]) -> bool {
        let n = k.len().min(KEY_CAP);
        self.key[..n].copy_from_slice(&k[..n]);
        self.key_len = n as u16;
        self.has_key = true;
        n == k.len()
    }

    pub fn set_token(&mut self, t: &[u8]) {
        let n = t.len().min(TOKEN_CAP);
        self.token[..n].copy_from_slice(&t[..n]);
        self.token_len = n as u8;
    }

    pub fn is_open(&self) -> bool {
        self.state != State::Resolved
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

/// The queue itself: a ring of entries reused across requests, so steady
/// state allocates nothing.
pub struct Queue {
    q: VecDeque<Pending>,
    next_id: u64,
    cap: usize,
    pool: Pool,
    /// Entries of capacity beyond `FREE_ENTRIES` drawn from `pool`.
    charged: usize,
}

/// Entries a queue holds without drawing on its pool (its first
/// allocation); they are part of the fixed cost of a flow or exchange.
pub const FREE_ENTRIES: usize = 4;
/// An emptied queue keeps up to this much capacity (a pipelining client
/// refills it at once); a larger one is freed back to the pool.
const KEEP_ENTRIES: usize = 16;

/// The pending-request share of one worker's memory budget, in entries
/// of queue capacity, drawn on by every queue of its sessions. Capacity
/// is what is charged: a `VecDeque` keeps its storage when it empties.
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
    pub fn new(cap_entries: usize) -> Pool {
        Pool(Some(Arc::new(PoolInner {
            used: AtomicUsize::new(0),
            cap: cap_entries,
        })))
    }

    /// Entries drawn now.
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

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue::with_pool(cap, Pool::default())
    }

    pub fn with_pool(cap: usize, pool: Pool) -> Queue {
        Queue {
            q: VecDeque::new(),
            next_id: 1,
            cap: cap.max(2),
            pool,
            charged: 0,
        }
    }

    /// Makes sure `n` more entries fit without growing past the pool;
    /// false (nothing changed) when the pool cannot give the storage.
    pub fn reserve(&mut self, n: usize) -> bool {
        let need = self.q.len() + n;
        if need <= self.q.capacity().max(FREE_ENTRIES) {
            return true;
        }
        // What a `VecDeque` would grow to by itself.
        let want = need.max(2 * self.q.capacity());
        let extra = want - FREE_ENTRIES - self.charged;
        if !self.pool.take(extra) {
            return false;
        }
        self.charged += extra;
        self.q.reserve_exact(want - self.q.len());
        self.sync();
        true
    }

    /// Brings `charged` in line with the capacity the queue holds.
    fn sync(&mut self) {
        let billable = self.q.capacity().saturating_sub(FREE_ENTRIES);
        if billable > self.charged {
            self.pool.force(billable - self.charged);
        } else {
            self.pool.give(self.charged - billable);
        }
        self.charged = billable;
    }

    /// Frees the storage of an emptied queue that grew large, when the
    /// pool runs short (while it has room, keeping it spares a client
    /// that pipelines deeply a reallocation per burst).
    pub fn shrink_if_empty(&mut self) {
        if self.q.is_empty() && self.q.capacity() > KEEP_ENTRIES && self.pool.short() {
            self.q = VecDeque::new();
            self.sync();
        }
    }

    /// Removes entry `i` (0 or 1: the front, or the one behind a marker).
    pub fn discard(&mut self, i: usize) {
        if i == 0 {
            self.q.pop_front();
        } else {
            self.q.remove(i);
        }
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn remove(&mut self, i: usize) -> Option<Pending> {
        self.q.remove(i)
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
        let e = self.q.back_mut().expect("just pushed");
        e.id = id;
        e
    }

    pub fn push_marker(&mut self) {
        if self.q.back().is_some_and(|e| e.marker) {
            return;
        }
        let e = self.push();
        e.marker = true;
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

    pub fn find_id(&mut self, id: u64) -> Option<&mut Pending> {
        // Ids grow along the queue: binary search by id.
        let i = self.q.binary_search_by_key(&id, |e| e.id).ok()?;
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
        self.q.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_truncate_at_cap() {
        let mut p = Pending::blank();
        assert!(p.set_key(b"abc"));
        assert_eq!(p.key(), Some(&b"abc"[..]));
        assert!(!p.set_key(&[b'x'; 300]));
        assert_eq!(p.key().unwrap().len(), KEY_CAP);
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
    }
}
