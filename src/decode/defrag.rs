//! Bounded IPv4 reassembly.
//!
//! Datagrams are keyed by (source, destination, protocol, IP id). The pool
//! holds at most `max_datagrams` of them and `max_bytes` of payload in all;
//! a datagram not complete `timeout_ns` (packet time) after its first
//! fragment is given up. Buffers are recycled, so a warm pool allocates
//! nothing.
//!
//! Counters (all count fragments, not datagrams, except `ip_reassembled`):
//! `ip_fragments` every fragment seen; `ip_reassembled` datagrams rebuilt;
//! `ip_frag_timeout` fragments of datagrams that timed out (or were still
//! incomplete at [`DefragPool::finish`]); `ip_frag_overflow` fragments given
//! up because the pool was full; `ip_frag_bad` fragments of datagrams given
//! up for overlaps with different content or inconsistent lengths.

use hashbrown::HashMap;

use crate::stats::Counters;

/// Largest IPv4 datagram (header included).
pub const MAX_DATAGRAM: usize = 65_535;

/// Limits of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragLimits {
    /// Datagrams being reassembled at once.
    pub max_datagrams: usize,
    /// Payload bytes held by all datagrams being reassembled.
    pub max_bytes: usize,
    /// Give up a datagram this long (packet time, ns) after its first fragment.
    pub timeout_ns: u64,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: 1024,
            max_bytes: 16 << 20,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// Identifies one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub id: u16,
}

/// One fragment, as the IPv4 header describes it.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    pub key: FragKey,
    /// Offset of this piece in the datagram's payload, in bytes.
    pub offset: usize,
    /// More-fragments flag: false on the last piece.
    pub more: bool,
    /// IPv4 header length, for the 65535-byte limit.
    pub header_len: usize,
    /// The piece (the fragment's IP payload).
    pub data: &'a [u8],
    /// Packet time, ns.
    pub ts: u64,
}

struct Entry {
    key: FragKey,
    first_ts: u64,
    /// Payload rebuilt so far; its length is the highest end seen.
    buf: Vec<u8>,
    /// Byte ranges received, sorted and merged.
    ranges: Vec<(usize, usize)>,
    /// Payload length, known once the last piece came.
    total: Option<usize>,
    /// Fragments accepted (duplicates included).
    frags: u64,
}

/// The pool of datagrams being reassembled.
pub struct DefragPool {
    limits: DefragLimits,
    index: HashMap<FragKey, usize>,
    active: Vec<Entry>,
    spare: Vec<Entry>,
    /// Capacity held by `spare` buffers (kept ≤ `max_bytes`).
    spare_bytes: usize,
    /// Payload bytes held by `active` entries.
    bytes_in_use: usize,
    /// The datagram completed last; returned borrowed.
    done: Vec<u8>,
    /// Earliest packet time at which an entry times out.
    next_deadline: u64,
}

enum Verdict {
    Keep,
    Complete,
    Bad,
    Overflow,
}

impl DefragPool {
    pub fn new(limits: DefragLimits) -> DefragPool {
        let cap = limits.max_datagrams.min(4096);
        DefragPool {
            limits,
            index: HashMap::with_capacity(cap),
            active: Vec::with_capacity(cap),
            spare: Vec::new(),
            spare_bytes: 0,
            bytes_in_use: 0,
            done: Vec::new(),
            next_deadline: u64::MAX,
        }
    }

    /// Datagrams being reassembled.
    pub fn in_flight(&self) -> usize {
        self.active.len()
    }

    /// Payload bytes held by datagrams being reassembled.
    pub fn bytes_in_use(&self) -> usize {
        self.bytes_in_use
    }

    /// Gives up datagrams older than the timeout at packet time `now`.
    /// Cheap when nothing is due: call it for every packet.
    #[inline]
    pub fn expire(&mut self, now: u64, c: &mut Counters) {
        if now >= self.next_deadline {
            self.expire_slow(now, c);
        }
    }

    #[cold]
    fn expire_slow(&mut self, now: u64, c: &mut Counters) {
        let mut i = 0;
        while i < self.active.len() {
            if now.saturating_sub(self.active[i].first_ts) >= self.limits.timeout_ns {
                c.ip_frag_timeout += self.active[i].frags;
                self.release(i);
            } else {
                i += 1;
            }
        }
        self.recompute_deadline();
    }

    /// Gives up every datagram still incomplete (end of input): their
    /// fragments count as `ip_frag_timeout`.
    pub fn finish(&mut self, c: &mut Counters) {
        while !self.active.is_empty() {
            c.ip_frag_timeout += self.active[self.active.len() - 1].frags;
            self.release(self.active.len() - 1);
        }
        self.next_deadline = u64::MAX;
    }

    /// Adds one fragment; returns the datagram's payload when this piece
    /// completed it (valid until the next call). Counts `ip_fragments` and
    /// the outcome.
    pub fn insert(&mut self, f: &Fragment<'_>, c: &mut Counters) -> Option<&[u8]> {
        c.ip_fragments += 1;
        self.expire(f.ts, c);
        let len = f.data.len();
        let end = f.offset + len;
        // A piece must carry data, non-last pieces a multiple of 8 bytes,
        // and the datagram must fit in 65535 bytes.
        let sane = len > 0 && (!f.more || len % 8 == 0) && f.header_len + end <= MAX_DATAGRAM;
        let slot = match self.index.get(&f.key) {
            Some(&i) => i,
            None => {
                if !sane {
                    c.ip_frag_bad += 1;
                    return None;
                }
                if self.active.len() >= self.limits.max_datagrams
                    || self.bytes_in_use + end > self.limits.max_bytes
                {
                    c.ip_frag_overflow += 1;
                    return None;
                }
                let mut e = self.spare.pop().unwrap_or_else(|| Entry {
                    key: f.key,
                    first_ts: 0,
                    buf: Vec::new(),
                    ranges: Vec::new(),
                    total: None,
                    frags: 0,
                });
                self.spare_bytes -= e.buf.capacity().min(self.spare_bytes);
                e.key = f.key;
                e.first_ts = f.ts;
                e.total = None;
                e.frags = 0;
                e.buf.clear();
                e.ranges.clear();
                self.index.insert(f.key, self.active.len());
                self.active.push(e);
                let deadline = f.ts.saturating_add(self.limits.timeout_ns);
                self.next_deadline = self.next_deadline.min(deadline);
                self.active.len() - 1
            }
        };
        let verdict = if sane {
            self.place(slot, f)
        } else {
            Verdict::Bad
        };
        match verdict {
            Verdict::Keep => None,
            Verdict::Bad => {
                c.ip_frag_bad += self.active[slot].frags + 1;
                self.release(slot);
                self.recompute_deadline();
                None
            }
            Verdict::Overflow => {
                c.ip_frag_overflow += self.active[slot].frags + 1;
                self.release(slot);
                self.recompute_deadline();
                None
            }
            Verdict::Complete => {
                c.ip_reassembled += 1;
                let e = &mut self.active[slot];
                self.bytes_in_use -= e.buf.len().min(self.bytes_in_use);
                std::mem::swap(&mut self.done, &mut e.buf);
                // The entry now holds the previous datagram's buffer: empty
                // it so that `release` subtracts nothing more.
                e.buf.clear();
                self.release(slot);
                self.recompute_deadline();
                Some(&self.done)
            }
        }
    }

    /// Copies a sane piece into its entry.
    fn place(&mut self, slot: usize, f: &Fragment<'_>) -> Verdict {
        let end = f.offset + f.data.len();
        let e = &mut self.active[slot];
        let high = e.buf.len();
        if let Some(t) = e.total {
            if end > t || (!f.more && end != t) {
                return Verdict::Bad;
            }
        } else if !f.more {
            if high > end {
                return Verdict::Bad;
            }
            e.total = Some(end);
        }
        // Overlaps must repeat the same bytes.
        for &(a, b) in &e.ranges {
            let lo = a.max(f.offset);
            let hi = b.min(end);
            if lo < hi && e.buf[lo..hi] != f.data[lo - f.offset..hi - f.offset] {
                return Verdict::Bad;
            }
        }
        if end > high {
            let grow = end - high;
            if self.bytes_in_use + grow > self.limits.max_bytes {
                return Verdict::Overflow;
            }
            self.bytes_in_use += grow;
            e.buf.resize(end, 0);
        }
        e.buf[f.offset..end].copy_from_slice(f.data);
        e.frags += 1;
        merge_range(&mut e.ranges, f.offset, end);
        match e.total {
            Some(t) if e.ranges.len() == 1 && e.ranges[0] == (0, t) => Verdict::Complete,
            _ => Verdict::Keep,
        }
    }

    /// Removes `active[i]`, recycling its buffers.
    fn release(&mut self, i: usize) {
        let mut e = self.active.swap_remove(i);
        self.index.remove(&e.key);
        if let Some(moved) = self.active.get(i) {
            if let Some(slot) = self.index.get_mut(&moved.key) {
                *slot = i;
            }
        }
        self.bytes_in_use -= e.buf.len().min(self.bytes_in_use);
        e.buf.clear();
        e.ranges.clear();
        // Keep spare memory within the byte budget.
        if self.spare_bytes + e.buf.capacity() <= self.limits.max_bytes {
            self.spare_bytes += e.buf.capacity();
            self.spare.push(e);
        }
    }

    fn recompute_deadline(&mut self) {
        self.next_deadline = self
            .active
            .iter()
            .map(|e| e.first_ts.saturating_add(self.limits.timeout_ns))
            .min()
            .unwrap_or(u64::MAX);
    }
}

/// Inserts [a, b) into sorted, disjoint, non-adjacent ranges.
fn merge_range(r: &mut Vec<(usize, usize)>, a: usize, b: usize) {
    // First range that ends at or after `a` (could touch or overlap).
    let i = r.partition_point(|&(_, e)| e < a);
    let mut j = i;
    let (mut lo, mut hi) = (a, b);
    while j < r.len() && r[j].0 <= hi {
        lo = lo.min(r[j].0);
        hi = hi.max(r[j].1);
        j += 1;
    }
    r.splice(i..j, std::iter::once((lo, hi)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        merge_range(&mut r, 16, 24);
        merge_range(&mut r, 0, 8);
        assert_eq!(r, vec![(0, 8), (16, 24)]);
        merge_range(&mut r, 8, 16);
        assert_eq!(r, vec![(0, 24)]);
        merge_range(&mut r, 40, 48);
        merge_range(&mut r, 32, 36);
        merge_range(&mut r, 20, 44);
        assert_eq!(r, vec![(0, 48)]);
        merge_range(&mut r, 0, 8);
        assert_eq!(r, vec![(0, 48)]);
    }
}
