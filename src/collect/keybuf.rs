//! A heavy-hitter item's key bytes, held in the item itself when short.
//!
//! Most memcached keys are short (a prefix and an id, a hash). Held
//! inline, such a key costs no allocation when it is admitted, and the
//! comparison that confirms a lookup reads the item's first line, which
//! the collector has already asked for, instead of a heap buffer one more
//! dependent cache miss away. Longer keys (memcached allows 250 bytes)
//! live in a heap buffer, which the table reuses.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;

/// The longest key held inline: with the tag and the length byte, the
/// inline form is as large as the heap form (a `Vec`) aligned up, 40 bytes.
pub const INLINE: usize = 38;

#[derive(Clone)]
pub enum KeyBuf {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Default for KeyBuf {
    fn default() -> Self {
        KeyBuf::Inline {
            len: 0,
            bytes: [0; INLINE],
        }
    }
}

impl KeyBuf {
    /// `key` held inline, when it fits.
    #[inline]
    pub fn inline(key: &[u8]) -> Option<KeyBuf> {
        if key.len() > INLINE {
            return None;
        }
        let mut bytes = [0; INLINE];
        bytes[..key.len()].copy_from_slice(key);
        Some(KeyBuf::Inline {
            len: key.len() as u8,
            bytes,
        })
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            KeyBuf::Inline { len, bytes } => &bytes[..*len as usize],
            KeyBuf::Heap(v) => v,
        }
    }

    /// Bytes of the heap buffer (0 when inline).
    #[inline]
    pub fn heap_capacity(&self) -> usize {
        match self {
            KeyBuf::Inline { .. } => 0,
            KeyBuf::Heap(v) => v.capacity(),
        }
    }

    /// The first byte of a heap-held key, to prefetch before a comparison
    /// (an inline key is in the item).
    #[inline]
    pub fn heap_first(&self) -> Option<&u8> {
        match self {
            KeyBuf::Inline { .. } => None,
            KeyBuf::Heap(v) => v.first(),
        }
    }

    /// The heap buffer, if any, leaving an empty inline key.
    #[inline]
    pub fn take_heap(&mut self) -> Option<Vec<u8>> {
        match std::mem::take(self) {
            KeyBuf::Heap(v) => Some(v),
            KeyBuf::Inline { .. } => None,
        }
    }
}

impl Deref for KeyBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for KeyBuf {
    #[inline]
    fn eq(&self, o: &KeyBuf) -> bool {
        self.as_slice() == o.as_slice()
    }
}

impl Eq for KeyBuf {}

impl PartialEq<&[u8]> for KeyBuf {
    #[inline]
    fn eq(&self, o: &&[u8]) -> bool {
        self.as_slice() == *o
    }
}

impl PartialOrd for KeyBuf {
    fn partial_cmp(&self, o: &KeyBuf) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for KeyBuf {
    fn cmp(&self, o: &KeyBuf) -> Ordering {
        self.as_slice().cmp(o.as_slice())
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_slice().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_inline_and_long_ones_are_not() {
        assert_eq!(std::mem::size_of::<KeyBuf>(), 40);
        let k = KeyBuf::inline(b"user:42").unwrap();
        assert_eq!((k.as_slice(), k.heap_capacity()), (&b"user:42"[..], 0));
        assert!(k.heap_first().is_none());
        let max = [b'x'; INLINE];
        assert_eq!(KeyBuf::inline(&max).unwrap().as_slice(), &max[..]);
        assert!(KeyBuf::inline(&[b'x'; INLINE + 1]).is_none());
        assert_eq!(KeyBuf::inline(b"").unwrap().as_slice(), b"");
        assert_eq!(KeyBuf::default().as_slice(), b"");
    }

    #[test]
    fn keys_compare_by_bytes_whatever_their_form() {
        let long = vec![b'a'; INLINE + 5];
        let mut h = KeyBuf::Heap(long.clone());
        assert_eq!(h.as_slice(), &long[..]);
        assert_eq!(h.heap_first(), Some(&b'a'));
        // Same bytes in either form are equal and order the same.
        assert_eq!(KeyBuf::Heap(b"ab".to_vec()), KeyBuf::inline(b"ab").unwrap());
        assert!(KeyBuf::inline(b"ab").unwrap() < KeyBuf::Heap(b"b".to_vec()));
        assert!(KeyBuf::inline(b"b").unwrap() > KeyBuf::Heap(b"ab".to_vec()));
        assert_eq!(h.take_heap(), Some(long));
        assert_eq!((h.as_slice(), h.heap_capacity()), (&b""[..], 0));
        assert_eq!(h.take_heap(), None);
    }
}
