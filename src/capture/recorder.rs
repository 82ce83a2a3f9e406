//! The flight recorder: a bounded ring of the recent frames one thread
//! saw, kept by bytes and by age, from which a trigger takes the packets
//! around its firing.
//!
//! Frames are copied into one preallocated byte ring (a small header, then
//! the frame), oldest evicted first; nothing is allocated per frame. A
//! frame that would wrap is placed at the start, the tail of the buffer
//! left as a gap. Taking a span copies it out (rare: once per firing).

use crate::time::Ts;
use std::collections::VecDeque;

/// Bytes of a frame's header in the ring.
const HEADER: usize = 8 + 4 + 4;

/// Where one frame lies.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: usize,
    len: usize,
    ts: Ts,
}

/// A copied-out frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub ts: Ts,
    pub linktype: u32,
    pub wire_len: u32,
    pub data: Vec<u8>,
}

pub struct Ring {
    buf: Vec<u8>,
    slots: VecDeque<Slot>,
    /// Next write position.
    head: usize,
    max_age_ns: Ts,
    /// Frames kept since the start, and frames evicted for room (not age).
    pub kept: u64,
    pub evicted_for_room: u64,
    /// Frames larger than the whole ring, never kept.
    pub too_large: u64,
}

impl Ring {
    /// A ring of `bytes` (frames and their headers) keeping frames up to
    /// `max_age_ns` old. Its memory is allocated here, once.
    pub fn new(bytes: usize, max_age_ns: Ts) -> Ring {
        Ring {
            buf: vec![0; bytes],
            // One slot per 64 bytes of ring at most: the smallest frames.
            slots: VecDeque::with_capacity(bytes / 64 + 1),
            head: 0,
            max_age_ns,
            kept: 0,
            evicted_for_room: 0,
            too_large: 0,
        }
    }

    /// Bytes the ring holds (its capacity; allocated up front).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Frames held now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held now (frames and headers, not counting a wrap gap).
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(|s| s.len).sum()
    }

    /// Keeps a frame (its captured bytes).
    pub fn push(&mut self, ts: Ts, linktype: u32, wire_len: u32, data: &[u8]) {
        let len = HEADER + data.len();
        if len > self.buf.len() {
            self.too_large += 1;
            return;
        }
        // Age first: what is too old goes whatever the room.
        while self
            .slots
            .front()
            .is_some_and(|s| ts.saturating_sub(s.ts) > self.max_age_ns)
        {
            self.slots.pop_front();
        }
        let wrap = self.head + len > self.buf.len();
        let at = if wrap { 0 } else { self.head };
        if wrap {
            // The end of the buffer is left as a gap; the frames still
            // there are the oldest of all.
            while self.slots.front().is_some_and(|f| f.at >= self.head) {
                self.slots.pop_front();
                self.evicted_for_room += 1;
            }
        }
        // The frames the new one overwrites are the oldest left.
        while self
            .slots
            .front()
            .is_some_and(|f| f.at < at + len && at < f.at + f.len)
        {
            self.slots.pop_front();
            self.evicted_for_room += 1;
        }
        if self.slots.len() == self.slots.capacity() {
            // More tiny frames than slots: the oldest goes.
            self.slots.pop_front();
            self.evicted_for_room += 1;
        }
        let b = &mut self.buf[at..at + len];
        b[..8].copy_from_slice(&ts.to_le_bytes());
        b[8..12].copy_from_slice(&linktype.to_le_bytes());
        b[12..16].copy_from_slice(&wire_len.to_le_bytes());
        b[HEADER..].copy_from_slice(data);
        self.slots.push_back(Slot { at, len, ts });
        self.head = at + len;
        self.kept += 1;
    }

    /// Copies out the frames stamped in `[from, to]`, oldest first.
    pub fn take(&self, from: Ts, to: Ts) -> Vec<Kept> {
        self.slots
            .iter()
            .filter(|s| s.ts >= from && s.ts <= to)
            .map(|s| {
                let b = &self.buf[s.at..s.at + s.len];
                Kept {
                    ts: s.ts,
                    linktype: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
                    wire_len: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
                    data: b[HEADER..].to_vec(),
                }
            })
            .collect()
    }

    /// Packet time of the oldest frame held.
    pub fn oldest(&self) -> Option<Ts> {
        self.slots.front().map(|s| s.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_by_bytes_oldest_out_first() {
        let mut r = Ring::new(1000, u64::MAX);
        for i in 0..100u64 {
            r.push(i, 1, 100, &[i as u8; 84]);
        }
        // 100-byte slots: 10 fit.
        assert_eq!(r.len(), 10);
        assert!(r.bytes() <= r.capacity());
        let got = r.take(0, u64::MAX);
        assert_eq!(
            got.iter().map(|k| k.ts).collect::<Vec<_>>(),
            (90..100).collect::<Vec<_>>()
        );
        assert!(got
            .iter()
            .all(|k| k.data == vec![k.ts as u8; 84] && k.wire_len == 100));
        assert_eq!(r.evicted_for_room, 90);
    }

    #[test]
    fn keeps_by_age() {
        let mut r = Ring::new(1 << 20, 10);
        for i in 0..100u64 {
            r.push(i, 1, 10, b"x");
        }
        assert_eq!(r.oldest(), Some(89));
        assert_eq!(r.take(95, 97).len(), 3);
    }

    #[test]
    fn mixed_sizes_wrap_without_overlap() {
        let mut r = Ring::new(4096, u64::MAX);
        let mut n = 0u64;
        for i in 0..5000u64 {
            let len = (i * 37 % 1500) as usize;
            r.push(i, 1, len as u32, &vec![(i % 251) as u8; len]);
            n += 1;
            assert!(r.bytes() <= r.capacity());
            // Every frame held reads back intact.
            for k in r.take(0, u64::MAX) {
                assert_eq!(
                    k.data,
                    vec![(k.ts % 251) as u8; (k.ts * 37 % 1500) as usize]
                );
            }
        }
        assert_eq!(r.kept, n);
        assert!(!r.is_empty());
        let mut big = Ring::new(100, u64::MAX);
        big.push(1, 1, 200, &[0; 200]);
        assert_eq!((big.len(), big.too_large), (0, 1));
    }
}
