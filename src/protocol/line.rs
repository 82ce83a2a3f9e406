//! Line framing, tokenizing and integer parsing shared by the text and meta
//! dialects.
//!
//! memcached's ASCII parser (`tokenize_command` in proto_text.c) splits a
//! line on single spaces and skips empty tokens, so runs of spaces and
//! leading/trailing spaces are harmless; tabs are *not* separators. Lines
//! end in `\r\n` per protocol.txt, but the server also accepts a bare `\n`
//! (it strips an optional `\r` before the `\n`), and so do we.

use super::{BadReason, Limits, Parse};

/// Splits the first line off `buf`.
///
/// `Done { consumed, msg }` gives the line without its `\n` or `\r\n`;
/// `consumed` includes the terminator. Without a `\n` in the first
/// `max_line` bytes the line can never become acceptable (`max_line`
/// counts the terminator), so that is `Bad(LineTooLong)`; a shorter
/// unterminated buffer is `Need(len + 1)`.
pub fn split_line(buf: &[u8], max_line: usize) -> Parse<&[u8]> {
    let window = &buf[..buf.len().min(max_line)];
    match memchr::memchr(b'\n', window) {
        Some(nl) => {
            let line = &buf[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Parse::Done {
                consumed: nl + 1,
                msg: line,
            }
        }
        None if buf.len() >= max_line => Parse::Bad(BadReason::LineTooLong),
        None => Parse::Need(buf.len() + 1),
    }
}

/// Frames one line of `buf` and hands it to `f`, which turns it into a
/// message or rejects it; `consumed` covers the line and its terminator.
pub fn parse_line<'a, T>(
    buf: &'a [u8],
    lim: &Limits,
    f: impl FnOnce(&'a [u8]) -> Result<T, BadReason>,
) -> Parse<T> {
    match split_line(buf, lim.max_line) {
        Parse::Done { consumed, msg } => match f(msg) {
            Ok(msg) => Parse::Done { consumed, msg },
            Err(reason) => Parse::Bad(reason),
        },
        Parse::Need(n) => Parse::Need(n),
        Parse::Bad(reason) => Parse::Bad(reason),
    }
}

/// Space-separated tokens of a line (no allocation).
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    rest: &'a [u8],
}

/// Tokenizes `line` the way memcached does: split on `' '`, skip empties.
pub fn tokens(line: &[u8]) -> Tokens<'_> {
    Tokens { rest: line }
}

impl<'a> Tokens<'a> {
    /// What has not been tokenized yet, without leading or trailing spaces:
    /// the raw key list of a `get`, the value of a `STAT` line, ...
    pub fn rest(&self) -> &'a [u8] {
        trim_spaces(self.rest)
    }

    /// True when no token is left.
    pub fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let s = &self.rest[start..];
        let end = find_space(s);
        self.rest = &s[end..];
        Some(&s[..end])
    }
}

/// The index of the first space in `s` (its length when none), eight
/// bytes at a time. Why not `memchr`: tokens are a few bytes to a few dozen,
/// and memchr's call and set-up cost about 45 instructions a token, more
/// than the search (4 tokens a request, 2 a response line).
#[inline]
pub(super) fn find_space(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ SPACES;
        // A zero byte of `x` is a space. The lowest flagged byte is always
        // a true one (a borrow only flags bytes above a zero byte).
        let m = x.wrapping_sub(ONES) & !x & HIGHS;
        if m != 0 {
            return at + (m.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b' ')
        .map_or(s.len(), |i| at + i)
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let Some(start) = s.iter().position(|&b| b != b' ') else {
        return b"";
    };
    let end = s
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(s.len(), |e| e + 1);
    &s[start..end]
}

/// Why a token is not the number it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// Empty, or a byte that is not an ASCII digit (or a misplaced sign).
    Invalid,
    /// Only digits, but more than the target type holds.
    Overflow,
}

/// Parses an ASCII decimal `u64`: digits only, no sign, no spaces.
pub fn parse_u64(tok: &[u8]) -> Result<u64, NumError> {
    if tok.is_empty() {
        return Err(NumError::Invalid);
    }
    let mut n: u64 = 0;
    let mut overflow = false;
    for &b in tok {
        if !b.is_ascii_digit() {
            return Err(NumError::Invalid);
        }
        // Keep scanning after an overflow so that "999…9x" is still
        // reported as Invalid rather than Overflow.
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
        {
            Some(v) => n = v,
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumError::Overflow)
    } else {
        Ok(n)
    }
}

/// Parses an ASCII decimal `u32` (memcached 1.6 client flags are 32-bit).
pub fn parse_u32(tok: &[u8]) -> Result<u32, NumError> {
    let n = parse_u64(tok)?;
    u32::try_from(n).map_err(|_| NumError::Overflow)
}

/// Parses an ASCII decimal `i64` with an optional leading `-`: exptimes may
/// be negative ("a negative value means the item is immediately expired").
pub fn parse_i64(tok: &[u8]) -> Result<i64, NumError> {
    let (neg, digits) = match tok.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, tok),
    };
    let mag = parse_u64(digits)?;
    if neg {
        // -(2^63) is representable, 2^63 is not.
        0i64.checked_sub_unsigned(mag).ok_or(NumError::Overflow)
    } else {
        i64::try_from(mag).map_err(|_| NumError::Overflow)
    }
}

/// Parses a declared value length and holds it to `max`.
///
/// A non-number is `BadArguments`; a number too large for `u64` or over
/// the limit is `LengthTooLarge`, so `set k 0 0 99999999999999999999`
/// counts as an absurd length, not as garbage.
pub fn parse_len(tok: &[u8], max: u64) -> Result<u64, BadReason> {
    // memcached reads lengths with strtol, which takes a leading `+`.
    let tok = match tok {
        [b'+', rest @ ..] if !rest.is_empty() => rest,
        _ => tok,
    };
    match parse_u64(tok) {
        Ok(n) if n <= max => Ok(n),
        Ok(_) | Err(NumError::Overflow) => Err(BadReason::LengthTooLarge),
        Err(NumError::Invalid) => Err(BadReason::BadArguments),
    }
}

/// Holds a text/meta key to the configured key limit.
///
/// memcached itself stops at 250 bytes (KEY_MAX_LENGTH) and answers
/// `CLIENT_ERROR`; the limit is configurable here so that servers with
/// longer keys can still be analysed.
pub fn check_key<'a>(key: &'a [u8], lim: &Limits) -> Result<&'a [u8], BadReason> {
    if key.len() > lim.max_key {
        Err(BadReason::KeyTooLong)
    } else {
        Ok(key)
    }
}

/// Helpers shared by the parser tests of this module's siblings.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::protocol::Parse;

    /// `Ok(n)` for `Need(n)`, else the outcome as text; erases the borrow so
    /// that test closures can return it.
    pub(crate) fn need_of<T: std::fmt::Debug>(p: Parse<T>) -> Result<usize, String> {
        match p {
            Parse::Need(n) => Ok(n),
            other => Err(format!("{other:?}")),
        }
    }

    /// Every strict prefix of a complete message must ask for more input,
    /// with a `Need` that promises progress (more than it was given).
    pub(crate) fn assert_prefixes_need(buf: &[u8], parse: impl Fn(&[u8]) -> Result<usize, String>) {
        for i in 0..buf.len() {
            match parse(&buf[..i]) {
                Ok(n) => assert!(n > i, "prefix {i} of {buf:?}: Need({n})"),
                Err(other) => panic!("prefix {i} of {buf:?}: {other}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_space_agrees_with_a_byte_scan() {
        // Every length to 40 and every position of the first space, with
        // bytes around it that the word trick could confuse (0x20 +- 1,
        // 0xa0, 0x00, 0x21 after a space).
        for len in 0..40 {
            for first in 0..=len {
                for fill in [b'a', 0x1f, 0x21, 0xa0, 0x00, 0xff] {
                    let mut v = vec![fill; len];
                    if first < len {
                        v[first] = b' ';
                        for b in v.iter_mut().skip(first + 1) {
                            *b = if fill == b'a' { b' ' } else { 0x21 };
                        }
                    }
                    let want = v.iter().position(|&b| b == b' ').unwrap_or(len);
                    assert_eq!(
                        find_space(&v),
                        want,
                        "len {len} first {first} fill {fill:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn split_line_crlf_and_bare_lf() {
        assert_eq!(
            split_line(b"get a\r\nrest", 100),
            Parse::Done {
                consumed: 7,
                msg: &b"get a"[..]
            }
        );
        assert_eq!(
            split_line(b"get a\nrest", 100),
            Parse::Done {
                consumed: 6,
                msg: &b"get a"[..]
            }
        );
        assert_eq!(
            split_line(b"\r\n", 100),
            Parse::Done {
                consumed: 2,
                msg: &b""[..]
            }
        );
        assert_eq!(
            split_line(b"\n", 100),
            Parse::Done {
                consumed: 1,
                msg: &b""[..]
            }
        );
        // Only one '\r' belongs to the terminator.
        assert_eq!(
            split_line(b"a\r\r\n", 100),
            Parse::Done {
                consumed: 4,
                msg: &b"a\r"[..]
            }
        );
    }

    #[test]
    fn split_line_needs_more() {
        assert_eq!(split_line(b"", 100), Parse::Need(1));
        assert_eq!(split_line(b"get a", 100), Parse::Need(6));
        assert_eq!(split_line(b"get a\r", 100), Parse::Need(7));
    }

    #[test]
    fn split_line_limit_counts_the_terminator() {
        // "abc\r\n" is 5 bytes: accepted at 5, too long at 4.
        assert_eq!(
            split_line(b"abc\r\n", 5),
            Parse::Done {
                consumed: 5,
                msg: &b"abc"[..]
            }
        );
        assert_eq!(
            split_line(b"abc\r\n", 4),
            Parse::Bad(BadReason::LineTooLong)
        );
        assert_eq!(split_line(b"abc", 4), Parse::Need(4));
        assert_eq!(split_line(b"abcd", 4), Parse::Bad(BadReason::LineTooLong));
        let endless = vec![b'x'; 10_000];
        assert_eq!(
            split_line(&endless, 1024),
            Parse::Bad(BadReason::LineTooLong)
        );
        assert_eq!(split_line(&endless, 20_000), Parse::Need(10_001));
    }

    #[test]
    fn tokens_collapse_spaces() {
        let t: Vec<&[u8]> = tokens(b"  get  a b   ").collect();
        assert_eq!(t, vec![&b"get"[..], b"a", b"b"]);
        assert_eq!(tokens(b"").next(), None);
        assert_eq!(tokens(b"    ").next(), None);
        // Tabs are part of a token, as in memcached.
        let t: Vec<&[u8]> = tokens(b"a\tb c").collect();
        assert_eq!(t, vec![&b"a\tb"[..], b"c"]);
    }

    #[test]
    fn tokens_rest() {
        let mut t = tokens(b"get  k1 k2  k3  ");
        assert_eq!(t.next(), Some(&b"get"[..]));
        assert_eq!(t.rest(), b"k1 k2  k3");
        assert!(!t.is_empty());
        t.by_ref().for_each(drop);
        assert_eq!(t.rest(), b"");
        assert!(t.is_empty());
    }

    #[test]
    fn unsigned_numbers() {
        assert_eq!(parse_u64(b"0"), Ok(0));
        assert_eq!(parse_u64(b"007"), Ok(7));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), Err(NumError::Overflow));
        assert_eq!(parse_u64(b"99999999999999999999"), Err(NumError::Overflow));
        assert_eq!(parse_u64(b"99999999999999999999x"), Err(NumError::Invalid));
        assert_eq!(parse_u64(b""), Err(NumError::Invalid));
        assert_eq!(parse_u64(b"-1"), Err(NumError::Invalid));
        assert_eq!(parse_u64(b"+1"), Err(NumError::Invalid));
        assert_eq!(parse_u64(b"1 "), Err(NumError::Invalid));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Err(NumError::Overflow));
    }

    #[test]
    fn signed_numbers() {
        assert_eq!(parse_i64(b"-1"), Ok(-1));
        assert_eq!(parse_i64(b"42"), Ok(42));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), Err(NumError::Overflow));
        assert_eq!(parse_i64(b"-9223372036854775809"), Err(NumError::Overflow));
        assert_eq!(parse_i64(b"-"), Err(NumError::Invalid));
        assert_eq!(parse_i64(b"--1"), Err(NumError::Invalid));
    }

    #[test]
    fn keys_are_held_to_the_limit() {
        let lim = Limits {
            max_key: 3,
            ..Limits::default()
        };
        assert_eq!(check_key(b"abc", &lim), Ok(&b"abc"[..]));
        assert_eq!(check_key(b"abcd", &lim), Err(BadReason::KeyTooLong));
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_len(b"5", 10), Ok(5));
        assert_eq!(parse_len(b"10", 10), Ok(10));
        assert_eq!(parse_len(b"11", 10), Err(BadReason::LengthTooLarge));
        assert_eq!(
            parse_len(b"99999999999999999999", u64::MAX),
            Err(BadReason::LengthTooLarge)
        );
        assert_eq!(parse_len(b"-1", 10), Err(BadReason::BadArguments));
        assert_eq!(parse_len(b"five", 10), Err(BadReason::BadArguments));
    }
}
