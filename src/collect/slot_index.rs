//! The hash index of a heavy-hitter table: key hash -> slot number.
//!
//! Why not hashbrown: a collector looks up keys at random in tables far
//! larger than the caches, so each lookup waited on three misses in a row
//! (control bytes, index, item). The collector knows its next records'
//! keys, so it can ask for those lines early, but only if it can find
//! where a hash lands, which hashbrown does not tell. This index is one
//! flat array of 8-byte cells, so the cells of a hash are at a known
//! address, and a cell names its slot without touching the slot.
//!
//! Open addressing with linear probing, kept at most half full (about 1.5
//! cells read per hit, 2.5 per miss, nearly always in one cache line), and
//! deletion by backward shift, which leaves no tombstones: a churning table
//! (every admission evicts) keeps short probe sequences without rebuilds.
//!
//! A cell is `(hash as u32) << 32 | (slot + 1)`, 0 when empty. The low 32
//! bits of the hash give both the home cell and a tag that rules out most
//! other keys without reading their slot; the caller's `eq` decides. The
//! caller hashes with a per-table random seed (keys come off the wire), so
//! crafted keys cannot pile up on one home.

/// Cells never exceed 2^32, so a cell's 32 hash bits always give its home.
const MAX_CELLS: usize = 1 << 32;
const MIN_CELLS: usize = 16;

#[derive(Clone, Default)]
pub struct SlotIndex {
    cells: Vec<u64>,
    /// `cells.len() - 1` (0 while there are no cells).
    mask: usize,
    len: usize,
}

#[inline]
fn cell(hash: u64, slot: u32) -> u64 {
    (hash & 0xffff_ffff) << 32 | (slot as u64 + 1)
}

#[inline]
fn cell_slot(c: u64) -> u32 {
    (c as u32).wrapping_sub(1)
}

impl SlotIndex {
    /// Number of slots indexed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub fn allocation_size(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<u64>()
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Makes room for `n` slots without growing again.
    pub fn reserve(&mut self, n: usize) {
        let want = n.saturating_mul(2).next_power_of_two().max(MIN_CELLS);
        if want > self.cells.len() {
            self.resize(want.min(MAX_CELLS));
        }
    }

    fn resize(&mut self, cells: usize) {
        let old = std::mem::replace(&mut self.cells, crate::prefetch::mapped_zeros(cells));
        self.mask = cells - 1;
        for c in old.into_iter().filter(|&c| c != 0) {
            let mut i = self.home(c >> 32);
            while self.cells[i] != 0 {
                i = (i + 1) & self.mask;
            }
            self.cells[i] = c;
        }
    }

    /// The slot whose cell matches `hash` and which `eq` accepts.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let want = hash << 32;
        let mut i = self.home(hash);
        loop {
            let c = self.cells[i];
            if c == 0 {
                return None;
            }
            if c & !0xffff_ffff == want && eq(cell_slot(c)) {
                return Some(cell_slot(c));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The first slot whose cell matches `hash`: the likely one, for a
    /// prefetch (reads only cells).
    #[inline]
    pub fn first_candidate(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Asks for the cache line of `hash`'s home cell.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if let Some(c) = self.cells.get(self.home(hash)) {
            crate::prefetch::prefetch(c);
        }
    }

    /// Indexes `slot` under `hash` (the caller knows no other slot holds
    /// the same key).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        debug_assert!(slot < u32::MAX);
        if (self.len + 1) * 2 > self.cells.len() {
            self.reserve(self.len + 1);
        }
        let mut i = self.home(hash);
        while self.cells[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.cells[i] = cell(hash, slot);
        self.len += 1;
    }

    /// Removes `slot`, indexed under `hash`, shifting back the cells after
    /// it that it displaced. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        if self.len == 0 {
            return false;
        }
        let target = cell(hash, slot);
        let mut i = self.home(hash);
        loop {
            let c = self.cells[i];
            if c == 0 {
                return false;
            }
            if c == target {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Close the gap at `i`: a later cell in the run moves into it
        // unless its home lies cyclically in (i, j], where it is found
        // without passing `i`.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let c = self.cells[j];
            if c == 0 {
                break;
            }
            let home = self.home(c >> 32);
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.cells[i] = c;
                i = j;
            }
        }
        self.cells[i] = 0;
        self.len -= 1;
        true
    }

    /// Forgets every slot, keeping the cells' allocation.
    pub fn clear(&mut self) {
        self.cells.fill(0);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A deterministic generator, so a failure replays.
    fn lcg(s: &mut u64) -> u64 {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *s >> 11
    }

    #[test]
    fn finds_inserts_and_forgets_removals_like_a_map() {
        let mut idx = SlotIndex::default();
        // slot -> hash; the low 32 bits drawn from 64 values, half at the
        // bottom and half at the top of the range, so homes collide and
        // runs wrap around the end of the array.
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut s = 7;
        let mut next_slot = 0u32;
        for step in 0..20_000 {
            let op = lcg(&mut s) % 3;
            if op < 2 || model.is_empty() {
                let low = lcg(&mut s) % 64;
                let low = if low < 32 {
                    low
                } else {
                    0xffff_ffff - (low - 32)
                };
                let h = low | (lcg(&mut s) << 40);
                idx.insert(h, next_slot);
                model.insert(next_slot, h);
                next_slot += 1;
            } else {
                let victim = *model
                    .keys()
                    .nth((lcg(&mut s) as usize) % model.len())
                    .unwrap();
                let h = model.remove(&victim).unwrap();
                assert!(
                    idx.remove(h, victim),
                    "step {step}: slot {victim} not found"
                );
                assert!(!idx.remove(h, victim), "step {step}: removed twice");
            }
            assert_eq!(idx.len(), model.len());
            if step % 97 == 0 {
                for (&slot, &h) in &model {
                    assert_eq!(idx.find(h, |c| c == slot), Some(slot), "step {step}");
                }
                assert!(idx.cells.len() >= 2 * idx.len());
            }
        }
        // Every live cell is reachable from its home without crossing an
        // empty cell: the backward shift kept the invariant.
        for (i, &c) in idx.cells.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let mut k = idx.home(c >> 32);
            while k != i {
                assert_ne!(idx.cells[k], 0, "cell {i} cut off from its home");
                k = (k + 1) & idx.mask;
            }
        }
    }

    #[test]
    fn a_tag_match_is_only_a_candidate() {
        let mut idx = SlotIndex::default();
        // Same low 32 bits: the same home and tag; `eq` tells them apart.
        idx.insert(0x1_0000_0005, 1);
        idx.insert(0x2_0000_0005, 2);
        assert_eq!(idx.first_candidate(0x9_0000_0005), Some(1));
        assert_eq!(idx.find(0x5, |s| s == 2), Some(2));
        assert_eq!(idx.find(0x5, |_| false), None);
        assert_eq!(idx.find(0x6, |_| true), None);
        assert!(idx.remove(0x5, 1));
        assert_eq!(idx.first_candidate(0x5), Some(2));
    }

    #[test]
    fn clear_keeps_the_cells_and_empties_them() {
        let mut idx = SlotIndex::default();
        for s in 0..100 {
            idx.insert(s as u64 * 0x9e37_79b9, s);
        }
        let bytes = idx.allocation_size();
        assert_eq!(bytes, 256 * 8);
        idx.clear();
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.allocation_size(), bytes);
        assert_eq!(idx.find(0, |_| true), None);
        idx.insert(3, 9);
        assert_eq!(idx.find(3, |_| true), Some(9));
    }
}
