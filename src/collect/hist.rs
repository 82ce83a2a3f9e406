//! Distributions in log2 classes (Seafood's size and duration tables).
//!
//! Class 0 holds the value 0; class `i > 0` holds values in
//! `[2^(i-1), 2^i - 1]`, so its upper bound (`le`) is `2^i - 1`. Sixty-five
//! classes cover every `u64`; counts are `u64`, so merging never overflows
//! in practice and updates are one `leading_zeros` and one add.

pub const CLASSES: usize = 65;

#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Log2Hist {
    #[serde(with = "serde_counts")]
    counts: [u64; CLASSES],
    max: u64,
    total: u64,
}

impl Default for Log2Hist {
    fn default() -> Self {
        Log2Hist {
            counts: [0; CLASSES],
            max: 0,
            total: 0,
        }
    }
}

impl std::fmt::Debug for Log2Hist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log2Hist")
            .field("classes", &self.classes().collect::<Vec<_>>())
            .field("max", &self.max)
            .finish()
    }
}

/// The class of a value.
#[inline]
pub fn class_of(v: u64) -> usize {
    (64 - v.leading_zeros()) as usize
}

/// Upper bound of class `i` (inclusive).
#[inline]
pub fn class_le(i: usize) -> u64 {
    if i == 0 {
        0
    } else if i >= 64 {
        u64::MAX
    } else {
        (1u64 << i) - 1
    }
}

impl Log2Hist {
    #[inline]
    pub fn add(&mut self, v: u64) {
        self.counts[class_of(v)] += 1;
        self.total += 1;
        if v > self.max {
            self.max = v;
        }
    }

    pub fn merge(&mut self, o: &Log2Hist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The class counts, for storing the histogram and rebuilding it later
    /// (`store`).
    pub fn counts(&self) -> &[u64; CLASSES] {
        &self.counts
    }

    pub fn from_parts(counts: [u64; CLASSES], max: u64) -> Log2Hist {
        Log2Hist {
            total: counts.iter().sum(),
            counts,
            max,
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Non-empty classes as (upper bound, count), ascending.
    pub fn classes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (class_le(i), c))
    }

    /// The upper bound of the class holding the `q` quantile (0 < q <= 1),
    /// capped at the observed maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return class_le(i).min(self.max);
            }
        }
        self.max
    }

    pub fn clear(&mut self) {
        *self = Log2Hist::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_bounds() {
        assert_eq!(class_of(0), 0);
        assert_eq!(class_of(1), 1);
        assert_eq!(class_of(2), 2);
        assert_eq!(class_of(3), 2);
        assert_eq!(class_of(4), 3);
        assert_eq!(class_of(1023), 10);
        assert_eq!(class_of(1024), 11);
        assert_eq!(class_of(u64::MAX), 64);
        assert_eq!(class_le(0), 0);
        assert_eq!(class_le(2), 3);
        assert_eq!(class_le(11), 2047);
        assert_eq!(class_le(64), u64::MAX);
        for v in [0u64, 1, 2, 3, 4, 5, 1000, 1 << 40, u64::MAX] {
            let i = class_of(v);
            assert!(v <= class_le(i));
            assert!(i == 0 || v > class_le(i - 1));
        }
    }

    #[test]
    fn quantiles_and_merge() {
        let mut h = Log2Hist::default();
        for v in [0, 1, 5, 6, 7, 100, 100, 100, 100, 3000] {
            h.add(v);
        }
        assert_eq!(h.total(), 10);
        assert_eq!(h.max(), 3000);
        assert_eq!(
            h.classes().collect::<Vec<_>>(),
            vec![(0, 1), (1, 1), (7, 3), (127, 4), (4095, 1)]
        );
        assert_eq!(h.quantile(0.5), 7);
        assert_eq!(h.quantile(0.2), 1);
        assert_eq!(h.quantile(0.99), 3000);
        let mut g = Log2Hist::default();
        g.add(10_000);
        g.merge(&h);
        assert_eq!(g.total(), 11);
        assert_eq!(g.max(), 10_000);
        assert_eq!(g.quantile(1.0), 10_000);
        g.clear();
        assert_eq!(g.total(), 0);
        assert_eq!(g.quantile(0.5), 0);
    }
}

/// `[u64; 65]` through serde (arrays past 32 have no derive).
mod serde_counts {
    use super::CLASSES;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(c: &[u64; CLASSES], s: S) -> Result<S::Ok, S::Error> {
        c.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; CLASSES], D::Error> {
        let v = Vec::<u64>::deserialize(d)?;
        let mut c = [0; CLASSES];
        for (a, b) in c.iter_mut().zip(v) {
            *a = b;
        }
        Ok(c)
    }
}
