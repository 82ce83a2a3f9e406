//! Out-of-order byte store for one direction of a TCP connection.
//!
//! Holds the bytes that arrived ahead of a hole, keyed by their 64-bit
//! stream offset (the caller turns sequence numbers into offsets, so nothing
//! here wraps). It knows nothing of TCP flags or of the handler: `tcp` decides
//! when a hole is given up and pops what became contiguous.
//!
//! Overlaps keep the bytes that arrived first; only the uncovered parts of a
//! new segment are copied in. Memory is bounded three ways: bytes per flow,
//! ranges per flow (hostile one-byte segments cost more in bookkeeping than
//! in bytes), and a [`Budget`] shared by every flow of a worker. An insert is
//! all or nothing: when any bound would be passed nothing is stored and the
//! caller frees room (by giving up the oldest hole) and retries.

use std::collections::VecDeque;

use crate::decode::Ts;

/// TCP bytes held across all the flows of one worker, against caps: the
/// out-of-order store (its ranges and spare buffers) and, separately, the
/// carried partial messages (`TcpConn`'s carry buffers, by capacity).
///
/// Shared by reference (`&mut Budget`) rather than owned by the flows, so
/// a flow that is dropped without [`SegmentStore::clear`] (or
/// `TcpConn::flush`) leaks its share of `used`: always release before dropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Out-of-order bytes held by all stores.
    pub used: u64,
    /// Capacity of the stores' spare buffers (kept for reuse).
    pub spare: u64,
    /// Most bytes all stores may hold together.
    pub cap: u64,
    /// Capacity of all carry buffers.
    pub carry_used: u64,
    /// Most carry capacity all flows may hold together.
    pub carry_cap: u64,
}

impl Budget {
    /// A budget for out-of-order bytes only; carries are unbounded.
    pub fn new(cap: u64) -> Self {
        Budget::with_carry(cap, u64::MAX)
    }

    pub fn with_carry(cap: u64, carry_cap: u64) -> Self {
        Budget {
            used: 0,
            spare: 0,
            cap,
            carry_used: 0,
            carry_cap,
        }
    }

    /// Bytes still free.
    pub fn available(&self) -> u64 {
        self.cap.saturating_sub(self.used + self.spare)
    }

    /// Carry capacity still free.
    pub fn carry_available(&self) -> u64 {
        self.carry_cap.saturating_sub(self.carry_used)
    }

    fn release(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n as u64);
    }
}

/// Per-flow bounds of a [`SegmentStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most bytes one store may hold.
    pub max_bytes: usize,
    /// Most separate ranges one store may hold.
    pub max_ranges: usize,
}

/// Which bound refused an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The per-flow byte bound.
    FlowBytes,
    /// The per-flow range bound.
    Ranges,
    /// The shared [`Budget`].
    Global,
}

/// What an accepted insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inserted {
    /// Bytes newly stored.
    pub new_bytes: usize,
    /// Bytes already held (duplicates), not stored again.
    pub dup_bytes: usize,
}

/// When and how some bytes arrived: the packet time, and how far the
/// sender of the segment had acknowledged the other direction then (an
/// offset in that stream, when known).
///
/// Kept per range so that bytes delivered late (after a hole fills, or
/// after a causal wait) are handed on with the time and acknowledgement
/// they arrived with, as if the capture had shown them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub ts: Ts,
    pub peer_acked: Option<u64>,
}

/// One stored range: `data` covers `[start, start + data.len())`.
#[derive(Debug)]
struct Range {
    start: u64,
    data: Vec<u8>,
    /// Packet time at which these bytes arrived.
    since: Ts,
    /// The arriving segments' acknowledgement of the other direction.
    peer_acked: Option<u64>,
}

/// A range taken from the front of the store.
#[derive(Debug)]
pub struct Popped {
    pub data: Vec<u8>,
    pub stamp: Stamp,
}

impl Range {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.data.len() as u64)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            ts: self.since,
            peer_acked: self.peer_acked,
        }
    }
}

/// Spare buffers kept for reuse, and the largest one worth keeping.
/// Rationale: out-of-order episodes are short; two buffers cover a hole
/// and the range behind it without holding much memory per idle flow.
/// A spare's capacity is charged to the [`Budget`] like stored bytes (a
/// flood of flows each left with spares must not hold memory unseen), so
/// only buffers of a full-size segment or less are kept.
const MAX_SPARES: usize = 2;
const MAX_SPARE_CAPACITY: usize = 16 * 1024;

/// Out-of-order ranges of one direction.
///
/// Invariants on `ranges`:
/// - sorted by `start`, pairwise disjoint, none empty (adjacent ranges are allowed);
/// - `bytes` is the sum of their lengths, and that sum is included in the
///   `Budget::used` of the budget passed to every call.
#[derive(Debug, Default)]
pub struct SegmentStore {
    ranges: VecDeque<Range>,
    bytes: usize,
    spare: Vec<Vec<u8>>,
    /// Capacity of `spare`, included in the budget's `used`.
    spare_bytes: usize,
}

impl SegmentStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Separate ranges held.
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Offset of the first byte held.
    pub fn first_start(&self) -> Option<u64> {
        self.ranges.front().map(|r| r.start)
    }

    /// Arrival time of the first range held (how long the first hole has
    /// kept data waiting).
    pub fn first_since(&self) -> Option<Ts> {
        self.ranges.front().map(|r| r.since)
    }

    /// End (exclusive) of the last byte held.
    pub fn last_end(&self) -> Option<u64> {
        self.ranges.back().map(Range::end)
    }

    /// [`insert_stamped`](Self::insert_stamped) with no acknowledgement known.
    pub fn insert(
        &mut self,
        off: u64,
        data: &[u8],
        ts: Ts,
        lim: &StoreLimits,
        g: &mut Budget,
    ) -> Result<Inserted, Full> {
        let stamp = Stamp {
            ts,
            peer_acked: None,
        };
        self.insert_stamped(off, data, stamp, lim, g)
    }

    /// Stores the parts of `[off, off + data.len())` not already held.
    ///
    /// All or nothing: on `Err` the store and the budget are unchanged.
    /// Only the last range is ever extended in place, and only by bytes
    /// with the same [`Stamp`]; any other new piece becomes a range of its
    /// own (so every byte keeps the stamp it arrived with).
    pub fn insert_stamped(
        &mut self,
        off: u64,
        data: &[u8],
        stamp: Stamp,
        lim: &StoreLimits,
        g: &mut Budget,
    ) -> Result<Inserted, Full> {
        let ts = stamp.ts;
        if data.is_empty() {
            return Ok(Inserted::default());
        }
        let end = off.saturating_add(data.len() as u64);
        let data = &data[..(end - off) as usize];
        let first = self.ranges.partition_point(|r| r.end() <= off);

        // Pass 1: what would be stored, and how many new ranges that takes.
        let mut new_bytes = 0usize;
        let mut new_ranges = 0usize;
        self.for_each_piece(first, off, end, stamp, |p_start, p_end, extends_tail| {
            new_bytes += (p_end - p_start) as usize;
            if !extends_tail {
                new_ranges += 1;
            }
        });
        let dup_bytes = data.len() - new_bytes;
        if new_bytes == 0 {
            return Ok(Inserted {
                new_bytes,
                dup_bytes,
            });
        }
        if self.bytes.saturating_add(new_bytes) > lim.max_bytes {
            return Err(Full::FlowBytes);
        }
        if self.ranges.len().saturating_add(new_ranges) > lim.max_ranges {
            return Err(Full::Ranges);
        }
        if new_bytes as u64 > g.available() {
            // Spare buffers give way to data.
            self.shrink(g);
            if new_bytes as u64 > g.available() {
                return Err(Full::Global);
            }
        }

        // Pass 2: store the pieces, left to right; earlier pieces shift later indexes.
        let mut i = first;
        let mut cur = off;
        while cur < end {
            match self.ranges.get(i) {
                Some(r) if r.start <= cur => {
                    cur = cur.max(r.end());
                    i += 1;
                }
                next => {
                    let p_end = next.map_or(end, |r| r.start.min(end));
                    let piece = &data[(cur - off) as usize..(p_end - off) as usize];
                    let tail = i == self.ranges.len()
                        && i > 0
                        && self.ranges[i - 1].end() == cur
                        && self.ranges[i - 1].stamp() == stamp;
                    if tail {
                        self.ranges[i - 1].data.extend_from_slice(piece);
                    } else {
                        let mut buf = self.take_spare(g);
                        buf.extend_from_slice(piece);
                        self.ranges.insert(
                            i,
                            Range {
                                start: cur,
                                data: buf,
                                since: ts,
                                peer_acked: stamp.peer_acked,
                            },
                        );
                        i += 1;
                    }
                    cur = p_end;
                }
            }
        }
        self.bytes += new_bytes;
        g.used = g.used.saturating_add(new_bytes as u64);
        Ok(Inserted {
            new_bytes,
            dup_bytes,
        })
    }

    /// Calls `f(start, end, extends_tail)` for each uncovered piece of
    /// `[off, end)` stamped `stamp`, scanning from range index `first`.
    fn for_each_piece(
        &self,
        first: usize,
        off: u64,
        end: u64,
        stamp: Stamp,
        mut f: impl FnMut(u64, u64, bool),
    ) {
        let n = self.ranges.len();
        let mut i = first;
        let mut cur = off;
        while cur < end {
            match self.ranges.get(i) {
                Some(r) if r.start <= cur => {
                    cur = cur.max(r.end());
                    i += 1;
                }
                next => {
                    let p_end = next.map_or(end, |r| r.start.min(end));
                    let tail = i == n
                        && i > 0
                        && self.ranges[i - 1].end() == cur
                        && self.ranges[i - 1].stamp() == stamp;
                    f(cur, p_end, tail);
                    cur = p_end;
                }
            }
        }
    }

    /// Removes and returns the first range when it starts exactly at `at`.
    /// Give the buffer back with [`recycle`](Self::recycle) once delivered.
    pub fn pop_at(&mut self, at: u64, g: &mut Budget) -> Option<Vec<u8>> {
        self.pop_before(at, u64::MAX, g).map(|p| p.data)
    }

    /// Removes and returns the bytes of the first range that lie before
    /// `limit`, when that range starts exactly at `at` (and `at < limit`).
    /// A range reaching past `limit` is split, its tail kept (one copy;
    /// ranges rarely straddle a limit, since each keeps one [`Stamp`]).
    pub fn pop_before(&mut self, at: u64, limit: u64, g: &mut Budget) -> Option<Popped> {
        if self.first_start() != Some(at) || at >= limit {
            return None;
        }
        let split = self.ranges.front().is_some_and(|r| r.end() > limit);
        let mut head = if split {
            self.take_spare(g)
        } else {
            Vec::new()
        };
        let r = self.ranges.front_mut()?;
        let stamp = r.stamp();
        let data = if split {
            let k = (limit - r.start) as usize;
            head.extend_from_slice(&r.data[..k]);
            r.data.drain(..k);
            r.start = limit;
            head
        } else {
            self.ranges.pop_front()?.data
        };
        self.bytes -= data.len();
        g.release(data.len());
        Some(Popped { data, stamp })
    }

    /// Drops every byte below `upto`; returns how many were dropped.
    pub fn trim_front(&mut self, upto: u64, g: &mut Budget) -> usize {
        let mut dropped = 0;
        while let Some(r) = self.ranges.front_mut() {
            if r.start >= upto {
                break;
            }
            if r.end() <= upto {
                dropped += r.data.len();
                if let Some(r) = self.ranges.pop_front() {
                    self.recycle(r.data, g);
                }
            } else {
                let k = (upto - r.start) as usize;
                r.data.drain(..k);
                r.start = upto;
                dropped += k;
                break;
            }
        }
        self.bytes -= dropped;
        g.release(dropped);
        dropped
    }

    /// Drops everything; returns how many bytes were held.
    pub fn clear(&mut self, g: &mut Budget) -> usize {
        let n = self.bytes;
        while let Some(r) = self.ranges.pop_front() {
            self.recycle(r.data, g);
        }
        self.bytes = 0;
        g.release(n);
        n
    }

    /// Keeps a delivered buffer for the next out-of-order range, when
    /// the budget has room for it.
    pub fn recycle(&mut self, mut buf: Vec<u8>, g: &mut Budget) {
        let cap = buf.capacity();
        if self.spare.len() < MAX_SPARES && cap <= MAX_SPARE_CAPACITY && cap as u64 <= g.available()
        {
            buf.clear();
            self.spare.push(buf);
            self.spare_bytes += cap;
            g.spare += cap as u64;
        }
    }

    fn take_spare(&mut self, g: &mut Budget) -> Vec<u8> {
        match self.spare.pop() {
            Some(b) => {
                self.spare_bytes -= b.capacity();
                g.spare -= b.capacity() as u64;
                b
            }
            None => Vec::new(),
        }
    }

    /// Drops the spare buffers (for a flow that goes quiet).
    pub fn shrink(&mut self, g: &mut Budget) {
        g.spare -= self.spare_bytes as u64;
        self.spare_bytes = 0;
        self.spare = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const BIG: StoreLimits = StoreLimits {
        max_bytes: usize::MAX,
        max_ranges: usize::MAX,
    };

    fn ranges(s: &SegmentStore) -> Vec<(u64, Vec<u8>)> {
        s.ranges.iter().map(|r| (r.start, r.data.clone())).collect()
    }

    #[test]
    fn first_arrival_wins_on_overlap() {
        let mut g = Budget::new(1000);
        let mut s = SegmentStore::new();
        assert_eq!(
            s.insert(10, b"bbbb", 0, &BIG, &mut g),
            Ok(Inserted {
                new_bytes: 4,
                dup_bytes: 0
            })
        );
        assert_eq!(
            s.insert(8, b"AAAAAAAA", 1, &BIG, &mut g),
            Ok(Inserted {
                new_bytes: 4,
                dup_bytes: 4
            })
        );
        // [8,10) before, [14,16) after (a range of its own: another time).
        assert_eq!(
            ranges(&s),
            vec![
                (8, b"AA".to_vec()),
                (10, b"bbbb".to_vec()),
                (14, b"AA".to_vec())
            ]
        );
        assert_eq!((s.bytes(), g.used), (8, 8));
        assert_eq!(s.first_since(), Some(1));
    }

    #[test]
    fn insert_is_all_or_nothing() {
        let mut g = Budget::new(6);
        let mut s = SegmentStore::new();
        let lim = StoreLimits {
            max_bytes: 4,
            max_ranges: 2,
        };
        assert_eq!(
            s.insert(0, b"abc", 0, &lim, &mut g),
            Ok(Inserted {
                new_bytes: 3,
                dup_bytes: 0
            })
        );
        assert_eq!(s.insert(10, b"de", 0, &lim, &mut g), Err(Full::FlowBytes));
        assert_eq!(
            s.insert(10, b"d", 0, &lim, &mut g),
            Ok(Inserted {
                new_bytes: 1,
                dup_bytes: 0
            })
        );
        assert_eq!(s.trim_front(3, &mut g), 3);
        assert_eq!(
            s.insert(20, b"e", 0, &lim, &mut g),
            Ok(Inserted {
                new_bytes: 1,
                dup_bytes: 0
            })
        );
        assert_eq!(s.insert(30, b"f", 0, &lim, &mut g), Err(Full::Ranges));
        let mut other = SegmentStore::new();
        g.used = 6;
        assert_eq!(other.insert(0, b"x", 0, &lim, &mut g), Err(Full::Global));
        assert_eq!(ranges(&s), vec![(10, b"d".to_vec()), (20, b"e".to_vec())]);
        assert_eq!(s.clear(&mut g), 2);
        assert_eq!(g.used, 4);
    }

    #[test]
    fn pop_only_at_the_front() {
        let mut g = Budget::new(100);
        let mut s = SegmentStore::new();
        s.insert(5, b"xy", 7, &BIG, &mut g).unwrap();
        assert_eq!(s.pop_at(4, &mut g), None);
        assert_eq!(s.pop_at(5, &mut g), Some(b"xy".to_vec()));
        assert!(s.is_empty());
        assert_eq!(g.used, 0);
    }

    #[test]
    fn offsets_near_u64_max_do_not_overflow() {
        let mut g = Budget::new(100);
        let mut s = SegmentStore::new();
        let r = s.insert(u64::MAX - 2, b"abcdef", 0, &BIG, &mut g).unwrap();
        assert_eq!(r.new_bytes, 2);
        assert_eq!(s.last_end(), Some(u64::MAX));
        s.clear(&mut g);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, Vec<u8>),
        Trim(u64),
        Pop(u64),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..200, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(o, d)| Op::Insert(o, d)),
            1 => (0u64..240).prop_map(Op::Trim),
            1 => (0u64..240).prop_map(Op::Pop),
            1 => Just(Op::PopFirst),
        ]
    }

    proptest! {
        /// Against an obviously-correct model: one map entry per stored byte.
        #[test]
        fn matches_bitmap_model(
            ops in proptest::collection::vec(op(), 1..60),
            max_bytes in 1usize..300,
            cap in 1u64..300,
        ) {
            let lim = StoreLimits { max_bytes, max_ranges: usize::MAX };
            let mut g = Budget::new(cap);
            let mut s = SegmentStore::new();
            let mut model: BTreeMap<u64, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(off, data) => {
                        let fresh: Vec<u64> = (off..off + data.len() as u64)
                            .filter(|o| !model.contains_key(o))
                            .collect();
                        let got = s.insert(off, &data, 0, &lim, &mut g);
                        let fits_flow = model.len() + fresh.len() <= max_bytes;
                        let fits_global = fresh.len() as u64 <= cap - model.len() as u64;
                        if fresh.is_empty() || (fits_flow && fits_global) {
                            prop_assert_eq!(got, Ok(Inserted {
                                new_bytes: fresh.len(),
                                dup_bytes: data.len() - fresh.len(),
                            }));
                            for o in fresh {
                                model.insert(o, data[(o - off) as usize]);
                            }
                        } else {
                            prop_assert!(got.is_err());
                        }
                    }
                    Op::Trim(upto) => {
                        let before = model.len();
                        model.retain(|&o, _| o >= upto);
                        prop_assert_eq!(s.trim_front(upto, &mut g), before - model.len());
                    }
                    Op::Pop(at) => {
                        let got = s.pop_at(at, &mut g);
                        if model.keys().next() != Some(&at) {
                            prop_assert_eq!(got, None);
                        } else {
                            let got = got.unwrap();
                            prop_assert!(!got.is_empty());
                            for (i, b) in got.iter().enumerate() {
                                prop_assert_eq!(model.remove(&(at + i as u64)), Some(*b));
                            }
                            s.recycle(got, &mut g);
                        }
                    }
                    Op::PopFirst => {
                        if let Some(at) = s.first_start() {
                            let got = s.pop_at(at, &mut g).unwrap();
                            for (i, b) in got.iter().enumerate() {
                                prop_assert_eq!(model.remove(&(at + i as u64)), Some(*b));
                            }
                        }
                    }
                }
                // Same bytes, same accounting, invariants kept.
                let flat: BTreeMap<u64, u8> = s.ranges.iter()
                    .flat_map(|r| r.data.iter().enumerate().map(move |(i, b)| (r.start + i as u64, *b)))
                    .collect();
                prop_assert_eq!(&flat, &model);
                prop_assert_eq!(s.bytes(), model.len());
                prop_assert_eq!(g.used, model.len() as u64);
                prop_assert_eq!(s.first_start(), model.keys().next().copied());
                prop_assert_eq!(s.last_end(), model.keys().next_back().map(|o| o + 1));
                for w in s.ranges.iter().collect::<Vec<_>>().windows(2) {
                    prop_assert!(w[0].end() <= w[1].start);
                }
                prop_assert!(s.ranges.iter().all(|r| !r.data.is_empty()));
            }
        }

        /// The range bound holds whatever the insert pattern.
        #[test]
        fn range_bound_holds(ops in proptest::collection::vec((0u64..400, 1usize..6), 1..80)) {
            let lim = StoreLimits { max_bytes: usize::MAX, max_ranges: 8 };
            let mut g = Budget::new(u64::MAX);
            let mut s = SegmentStore::new();
            for (off, len) in ops {
                let before = (s.bytes(), s.ranges());
                if s.insert(off, &vec![1; len], 0, &lim, &mut g).is_err() {
                    prop_assert_eq!((s.bytes(), s.ranges()), before);
                }
                prop_assert!(s.ranges() <= 8);
            }
        }
    }
}
