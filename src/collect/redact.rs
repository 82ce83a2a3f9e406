//! Key redaction for reports that leave the machine.
//!
//! * `none`: keys as they are.
//! * `hash`: `#` and 16 lowercase hex digits of SipHash-2-4 under fixed,
//!   public keys. The same key gives the same pseudonym on every run and
//!   every machine, so reports can be compared and joined. It is a
//!   pseudonym, not encryption: anyone can compute it, so a guessable key
//!   (`user:1234`, a word, an e-mail address) is recovered by hashing
//!   candidates and comparing (a dictionary attack). Use it to keep keys out
//!   of casual sight, not to protect secrets.
//! * `truncate:N`: the first `N` bytes, then `…` (U+2026) when the key was
//!   longer. The cut counts bytes, so it may split a multi-byte character;
//!   escaping is the output's job.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

/// How keys appear in output. Parses from `none`, `hash`, `truncate:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redact {
    #[default]
    None,
    Hash,
    /// Keep this many bytes (at least 1).
    Truncate(usize),
}

/// The SipHash key of `hash`: fixed forever, as pseudonyms must stay
/// comparable across versions. ("memtap-k", "ey-hash1" in little endian.)
const K0: u64 = u64::from_le_bytes(*b"memtap-k");
const K1: u64 = u64::from_le_bytes(*b"ey-hash1");

impl Redact {
    /// Writes the redacted form of `key` into `out` (cleared first).
    pub fn apply(&self, key: &[u8], out: &mut Vec<u8>) {
        out.clear();
        match *self {
            Redact::None => out.extend_from_slice(key),
            Redact::Hash => {
                let h = siphash24(K0, K1, key);
                out.push(b'#');
                for shift in (0..16).rev() {
                    out.push(b"0123456789abcdef"[(h >> (shift * 4)) as usize & 0xf]);
                }
            }
            Redact::Truncate(n) => {
                if key.len() > n {
                    out.extend_from_slice(&key[..n]);
                    out.extend_from_slice("…".as_bytes());
                } else {
                    out.extend_from_slice(key);
                }
            }
        }
    }
}

impl FromStr for Redact {
    type Err = String;

    fn from_str(s: &str) -> Result<Redact, String> {
        match s {
            "none" => return Ok(Redact::None),
            "hash" => return Ok(Redact::Hash),
            "truncate" => {
                return Err("truncate needs a length: truncate:N, N >= 1".into());
            }
            _ => {}
        }
        let Some(n) = s.strip_prefix("truncate:") else {
            return Err(format!(
                "unknown redaction {s:?}: expected none, hash or truncate:N"
            ));
        };
        let bad =
            || format!("bad truncate length {n:?}: expected truncate:N with N a whole number >= 1");
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match n.parse::<usize>() {
            Ok(0) => Err("truncate:0 would hide every key: N must be at least 1".into()),
            Ok(n) => Ok(Redact::Truncate(n)),
            Err(_) => Err(format!("truncate length {n} is too large")),
        }
    }
}

impl fmt::Display for Redact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redact::None => f.write_str("none"),
            Redact::Hash => f.write_str("hash"),
            Redact::Truncate(n) => write!(f, "truncate:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for Redact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// SipHash-2-4 (Aumasson and Bernstein), 64-bit output.
fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn red(r: Redact, key: &[u8]) -> Vec<u8> {
        let mut out = b"stale".to_vec();
        r.apply(key, &mut out);
        out
    }

    #[test]
    fn siphash_reference_vectors() {
        // From the SipHash paper's vectors.h: key 00..0f, message 00..(len-1).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(k0, k1, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(k0, k1, &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    #[allow(deprecated)]
    fn siphash_agrees_with_std() {
        use std::hash::{Hasher, SipHasher};
        for len in 0..100usize {
            let msg: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let mut h = SipHasher::new_with_keys(K0, K1);
            h.write(&msg);
            assert_eq!(siphash24(K0, K1, &msg), h.finish(), "len {len}");
        }
    }

    #[test]
    fn none_copies() {
        assert_eq!(red(Redact::None, b""), b"");
        assert_eq!(red(Redact::None, b"user:1"), b"user:1");
        assert_eq!(red(Redact::None, b"\x00\xff\r\n"), b"\x00\xff\r\n");
    }

    /// Pinned: these pseudonyms must never change between versions.
    #[test]
    fn hash_is_stable() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "#463f0f1a3d8b9829"),
            (b"a", "#8041ecb8c25fb0d5"),
            (b"user:12345:profile", "#c2c7bf9faced4b58"),
            (b"user:12346:profile", "#4e45f47ad9035c68"),
            (b"\x00\xff", "#d1c18f4f42252f43"),
        ];
        for (key, want) in cases {
            let got = red(Redact::Hash, key);
            assert_eq!(String::from_utf8(got).unwrap(), *want, "key {key:?}");
        }
        let long = vec![b'k'; 1 << 20];
        let h = red(Redact::Hash, &long);
        assert_eq!(h.len(), 17);
        assert_eq!(h, red(Redact::Hash, &long));
    }

    #[test]
    fn truncate() {
        let t = |n, k: &[u8]| String::from_utf8_lossy(&red(Redact::Truncate(n), k)).into_owned();
        assert_eq!(t(4, b""), "");
        assert_eq!(t(4, b"abc"), "abc");
        assert_eq!(t(4, b"abcd"), "abcd");
        assert_eq!(t(4, b"abcde"), "abcd…");
        assert_eq!(t(1, b"user:1"), "u…");
        assert_eq!(
            red(Redact::Truncate(2), b"\x00\xff\x01"),
            b"\x00\xff\xe2\x80\xa6"
        );
        // Bytes, not characters: "é" is two bytes and may be split.
        assert_eq!(
            red(Redact::Truncate(1), "é".as_bytes()),
            b"\xc3\xe2\x80\xa6"
        );
        assert_eq!(t(usize::MAX, b"abc"), "abc");
        let long = vec![b'x'; 100_000];
        assert_eq!(t(250, &long), format!("{}…", "x".repeat(250)));
    }

    #[test]
    fn parse() {
        assert_eq!("none".parse(), Ok(Redact::None));
        assert_eq!("hash".parse(), Ok(Redact::Hash));
        assert_eq!("truncate:1".parse(), Ok(Redact::Truncate(1)));
        assert_eq!("truncate:64".parse(), Ok(Redact::Truncate(64)));
        let err = |s: &str| s.parse::<Redact>().unwrap_err();
        assert_eq!(
            err("truncate:0"),
            "truncate:0 would hide every key: N must be at least 1"
        );
        assert_eq!(
            err("truncate"),
            "truncate needs a length: truncate:N, N >= 1"
        );
        for bad in [
            "truncate:",
            "truncate:x",
            "truncate:-1",
            "truncate:+3",
            "truncate: 3",
            "truncate:1.5",
        ] {
            let n = &bad["truncate:".len()..];
            assert_eq!(
                err(bad),
                format!(
                    "bad truncate length {n:?}: expected truncate:N with N a whole number >= 1"
                )
            );
        }
        for bad in ["", "Hash", "NONE", "sha256", " hash", "hash ", "truncate=3"] {
            assert_eq!(
                err(bad),
                format!("unknown redaction {bad:?}: expected none, hash or truncate:N")
            );
        }
        for r in [Redact::None, Redact::Hash, Redact::Truncate(7)] {
            assert_eq!(r.to_string().parse(), Ok(r));
        }
        assert_eq!(Redact::default(), Redact::None);
    }

    #[test]
    fn deserialize() {
        #[derive(Debug, Deserialize)]
        struct C {
            redact: Redact,
        }
        let c: C = toml::from_str("redact = \"truncate:12\"").unwrap();
        assert_eq!(c.redact, Redact::Truncate(12));
        let c: C = toml::from_str("redact = \"hash\"").unwrap();
        assert_eq!(c.redact, Redact::Hash);
        let e = toml::from_str::<C>("redact = \"truncate:0\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("N must be at least 1"), "{e}");
        let e = toml::from_str::<C>("redact = 3").unwrap_err().to_string();
        assert!(e.contains("redact"), "{e}");
        let r: Redact = serde_json::from_str("\"none\"").unwrap();
        assert_eq!(r, Redact::None);
    }

    proptest! {
        #[test]
        fn shapes(key in proptest::collection::vec(any::<u8>(), 0..300), n in 1usize..300) {
            let h = red(Redact::Hash, &key);
            prop_assert_eq!(h.len(), 17);
            prop_assert_eq!(h[0], b'#');
            prop_assert!(h[1..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
            let t = red(Redact::Truncate(n), &key);
            if key.len() > n {
                prop_assert_eq!(&t[..n], &key[..n]);
                prop_assert_eq!(&t[n..], "…".as_bytes());
            } else {
                prop_assert_eq!(&t, &key);
            }
        }
    }
}
