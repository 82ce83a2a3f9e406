//! TCP sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4).
//!
//! Every function is total: a passive tap sees hostile and half-captured
//! flows, so nothing here may panic or overflow (smoltcp's `SeqNumber - SeqNumber`
//! panics on underflow; this module is the non-panicking replacement).
//! Comparisons are only meaningful for numbers less than 2^31 apart, which the
//! reassembler guarantees by rejecting segments farther than a plausibility
//! window from the next expected byte.

/// Signed distance `a - b` in sequence space: positive when `a` is after `b`.
///
/// Exactly 2^31 apart is ambiguous and reads as `i32::MIN`.
#[inline]
pub fn seq_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// `a` comes strictly before `b`.
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    seq_diff(a, b) < 0
}

/// `a` comes before `b` or equals it.
#[inline]
pub fn seq_le(a: u32, b: u32) -> bool {
    seq_diff(a, b) <= 0
}

/// `a` comes strictly after `b`.
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    seq_diff(a, b) > 0
}

/// `a` comes after `b` or equals it.
#[inline]
pub fn seq_ge(a: u32, b: u32) -> bool {
    seq_diff(a, b) >= 0
}

/// The later of two sequence numbers.
#[inline]
pub fn seq_max(a: u32, b: u32) -> u32 {
    if seq_ge(a, b) {
        a
    } else {
        b
    }
}

/// The earlier of two sequence numbers.
#[inline]
pub fn seq_min(a: u32, b: u32) -> u32 {
    if seq_le(a, b) {
        a
    } else {
        b
    }
}

/// `a + n` in sequence space (`n` is taken modulo 2^32, as on the wire).
#[inline]
pub fn seq_add(a: u32, n: u64) -> u32 {
    a.wrapping_add(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn diff_across_wrap() {
        assert_eq!(seq_diff(5, u32::MAX - 4), 10);
        assert_eq!(seq_diff(u32::MAX - 4, 5), -10);
        assert_eq!(seq_diff(7, 7), 0);
        assert_eq!(seq_diff(0x8000_0000, 0), i32::MIN);
        assert_eq!(seq_diff(0, 0x8000_0000), i32::MIN);
    }

    #[test]
    fn comparisons_across_wrap() {
        let a = u32::MAX - 1;
        let b = 3;
        assert!(seq_lt(a, b) && seq_le(a, b) && !seq_gt(a, b) && !seq_ge(a, b));
        assert!(seq_gt(b, a) && seq_ge(b, a));
        assert!(seq_le(a, a) && seq_ge(a, a) && !seq_lt(a, a));
        assert_eq!(seq_max(a, b), b);
        assert_eq!(seq_min(a, b), a);
        assert_eq!(seq_add(u32::MAX, 1), 0);
        assert_eq!(seq_add(10, (1u64 << 32) + 5), 15);
    }

    proptest! {
        #[test]
        fn add_then_diff_roundtrips(a: u32, n in 0u32..0x7fff_ffff) {
            let b = seq_add(a, u64::from(n));
            prop_assert_eq!(seq_diff(b, a), n as i32);
            prop_assert_eq!(seq_diff(a, b), -(n as i32));
            prop_assert!(seq_ge(b, a));
            prop_assert_eq!(seq_gt(b, a), n > 0);
        }

        #[test]
        fn total_on_any_input(a: u32, b: u32, n: u64) {
            let _ = (seq_diff(a, b), seq_lt(a, b), seq_max(a, b), seq_min(a, b), seq_add(a, n));
        }
    }
}
