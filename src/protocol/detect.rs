//! Dialect dispatch and resynchronisation.
//!
//! memcached tells the dialects apart by the first byte of a message
//! (0x80 opens a binary request, anything else a text line) and, within
//! text, by the command word; the same rules work here for both
//! directions. A connection may mix text and meta commands freely.
//!
//! After a gap, or when a capture starts mid-connection, the byte stream
//! has to be re-entered at a message boundary: `find_request_boundary` and
//! `find_response_boundary` look for the first offset where a message
//! plausibly starts, preferring to skip a real message over locking onto
//! the middle of a value block.

use super::line::{parse_line, tokens};
use super::{binary, meta, text, BadReason, Limits, Parse, Request, RespForm, Response};

/// Parses one request of any dialect from the start of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Request<'a>> {
    match buf.first() {
        None => Parse::Need(1),
        Some(&binary::MAGIC_REQUEST) => binary::parse_request(buf, lim),
        Some(_) => parse_line(buf, lim, |line| request_line(line, lim)),
    }
}

/// Parses one response of any dialect from the start of `buf`.
pub fn parse_response<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Response<'a>> {
    match buf.first() {
        None => Parse::Need(1),
        Some(&binary::MAGIC_RESPONSE) => binary::parse_response(buf, lim),
        Some(_) => parse_line(buf, lim, |line| response_line(line, lim)),
    }
}

/// A text or meta request line; the first word decides.
fn request_line<'a>(line: &'a [u8], lim: &Limits) -> Result<Request<'a>, BadReason> {
    if two_byte_word(line).is_some_and(meta::is_request_word) {
        meta::request_from_line(line, lim)
    } else {
        text::request_from_line(line, lim)
    }
}

/// A text or meta response line. Meta codes are whole words, so `EN` is
/// meta while `END` is text.
fn response_line<'a>(line: &'a [u8], lim: &Limits) -> Result<Response<'a>, BadReason> {
    if two_byte_word(line).is_some_and(meta::is_response_word) {
        meta::response_from_line(line, lim)
    } else {
        text::response_from_line(line, lim)
    }
}

/// The first word of `line` when it is two bytes long, as every meta
/// word is. Looks at three bytes, where tokenizing the word (which the
/// dialect's parser does again) cost a scan a line; a line that starts
/// with spaces, which memcached skips, takes the tokenizer.
fn two_byte_word(line: &[u8]) -> Option<&[u8]> {
    match line {
        [a, b] | [a, b, b' ', ..] if *a != b' ' && *b != b' ' => Some(&line[..2]),
        [b' ', ..] => tokens(line).next().filter(|w| w.len() == 2),
        _ => None,
    }
}

/// The smallest offset in `buf` where a request plausibly starts, or
/// `None` when no offset can be confirmed yet.
///
/// Candidates are offset 0, every offset just after a `\n` (text and meta
/// lines), and every 0x80 byte (binary). A line candidate must be a
/// complete line that parses as `Done`; a binary candidate needs its whole
/// header, a documented opcode, data type 0, consistent lengths, a body
/// under 1 MiB and the extras/key layout of its opcode. On `None` the
/// unconfirmed tail (a partial last line, or a binary header cut short)
/// may still hold the next message.
pub fn find_request_boundary(buf: &[u8], lim: &Limits) -> Option<usize> {
    find_boundary(buf, binary::MAGIC_REQUEST, |at| {
        if at[0] == binary::MAGIC_REQUEST {
            binary::plausible_request(at, lim)
        } else {
            matches!(
                parse_line(at, lim, |line| request_line(line, lim)),
                Parse::Done { .. }
            )
        }
    })
}

/// The smallest offset in `buf` where a response plausibly starts, or
/// `None` when no offset can be confirmed yet.
///
/// As `find_request_boundary`, with 0x81 for binary. Lines are accepted
/// only when they start with an exact response keyword: a bare number
/// (an incr/decr answer) parses, but is too easily a line of some value
/// block to resynchronise on.
pub fn find_response_boundary(buf: &[u8], lim: &Limits) -> Option<usize> {
    find_boundary(buf, binary::MAGIC_RESPONSE, |at| {
        if at[0] == binary::MAGIC_RESPONSE {
            binary::plausible_response(at, lim)
        } else {
            match parse_line(at, lim, |line| response_line(line, lim)) {
                Parse::Done { msg, .. } => msg.form != RespForm::Number,
                _ => false,
            }
        }
    })
}

/// Tries the candidate offsets of `buf` in ascending order; `plausible` is
/// called with a non-empty suffix of `buf`.
fn find_boundary(buf: &[u8], magic: u8, plausible: impl Fn(&[u8]) -> bool) -> Option<usize> {
    let candidates =
        memchr::memchr2_iter(b'\n', magic, buf).map(|i| if buf[i] == b'\n' { i + 1 } else { i });
    let mut last = None;
    std::iter::once(0).chain(candidates).find(|&off| {
        // A 0x80/0x81 right after a '\n' yields the same offset twice.
        let fresh = last != Some(off);
        last = Some(off);
        fresh && off < buf.len() && plausible(&buf[off..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Keys, Kind, Proto};
    use proptest::prelude::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn done_req(buf: &[u8]) -> (usize, Request<'_>) {
        match parse_request(buf, &lim()) {
            Parse::Done { consumed, msg } => (consumed, msg),
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    fn done_resp(buf: &[u8]) -> (usize, Response<'_>) {
        match parse_response(buf, &lim()) {
            Parse::Done { consumed, msg } => (consumed, msg),
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    /// A binary packet with an empty body apart from `key`/`extras`.
    fn bin(magic: u8, op: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let body = (extras.len() + key.len() + value.len()) as u32;
        let mut p = vec![magic, op];
        p.extend((key.len() as u16).to_be_bytes());
        p.extend([extras.len() as u8, 0, 0, 0]);
        p.extend(body.to_be_bytes());
        p.extend([0; 12]);
        p.extend(extras);
        p.extend(key);
        p.extend(value);
        p
    }

    /// The three-byte look gives the tokenizer's first word whenever
    /// that word is two bytes, and nothing otherwise: every line of up to
    /// four bytes over an alphabet of space, letters and a tab.
    #[test]
    fn two_byte_word_is_the_first_token_of_two_bytes() {
        let alphabet = [b' ', b'm', b'g', b'E', b'\t'];
        let mut lines: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=4 {
            let mut n = alphabet.len().pow(len);
            let mut idx = 0;
            while n > 0 {
                let mut line = Vec::new();
                let mut x = idx;
                for _ in 0..len {
                    line.push(alphabet[x % alphabet.len()]);
                    x /= alphabet.len();
                }
                lines.push(line);
                idx += 1;
                n -= 1;
            }
        }
        for extra in [
            &b"mg foo v"[..],
            b"  mg foo",
            b"get foo",
            b"EN",
            b"END",
            b"HD k",
        ] {
            lines.push(extra.to_vec());
        }
        assert_eq!(lines.len(), 1 + 5 + 25 + 125 + 625 + 6);
        let mut two = 0;
        for line in &lines {
            let want = tokens(line).next().filter(|w| w.len() == 2);
            assert_eq!(
                two_byte_word(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
            two += usize::from(want.is_some());
        }
        // Two letters alone (16), then a space (16) or after one (16), then at
        // four bytes "xy" + space + any (80), " xy " (16), "  xy" (16); and
        // four of the six extras.
        assert_eq!(two, 16 + 32 + 112 + 4);
    }

    #[test]
    fn requests_dispatch_by_first_byte_and_word() {
        let (n, r) = done_req(b"get foo\r\n");
        assert_eq!(
            (n, r.proto, r.command, r.keys),
            (9, Proto::Text, "get", Keys::One(&b"foo"[..]))
        );
        let (n, r) = done_req(b"mg foo v\r\n");
        assert_eq!(
            (n, r.proto, r.command, r.kind),
            (10, Proto::Meta, "mg", Kind::Retrieve)
        );
        let (n, r) = done_req(b"mn\r\n");
        assert_eq!(
            (n, r.proto, r.command, r.kind),
            (4, Proto::Meta, "mn", Kind::Noop)
        );
        let p = bin(0x80, 0x00, &[], b"foo", &[]);
        let (n, r) = done_req(&p);
        assert_eq!(
            (n, r.proto, r.command, r.keys),
            (27, Proto::Binary, "get", Keys::One(&b"foo"[..]))
        );
        assert_eq!(parse_request(b"", &lim()), Parse::Need(1));
        assert_eq!(parse_request(b"mg", &lim()), Parse::Need(3));
        assert_eq!(parse_request(b"\x80\x00", &lim()), Parse::Need(24));
        assert_eq!(
            parse_request(b"mx foo\r\n", &lim()),
            Parse::Bad(BadReason::UnknownCommand)
        );
        // 0x81 opens no binary request: read as a line, it awaits its '\n'
        // and then fails as an unknown command.
        assert_eq!(parse_request(b"\x81\x00", &lim()), Parse::Need(3));
        assert_eq!(
            parse_request(b"\x81\x00\n", &lim()),
            Parse::Bad(BadReason::UnknownCommand)
        );
    }

    #[test]
    fn responses_dispatch_by_first_byte_and_word() {
        let (n, r) = done_resp(b"EN\r\n");
        assert_eq!((n, r.proto, r.form), (4, Proto::Meta, RespForm::MetaEn));
        let (n, r) = done_resp(b"END\r\n");
        assert_eq!((n, r.proto, r.form), (5, Proto::Text, RespForm::End));
        let (n, r) = done_resp(b"VA 2 kfoo\r\nhi\r\n");
        assert_eq!(
            (n, r.form, r.key, r.skip_after),
            (11, RespForm::MetaVa, Some(&b"foo"[..]), 4)
        );
        let (n, r) = done_resp(b"VALUE foo 0 2\r\nhi\r\nEND\r\n");
        assert_eq!(
            (n, r.form, r.key, r.skip_after),
            (15, RespForm::Value, Some(&b"foo"[..]), 4)
        );
        let (n, r) = done_resp(b"SERVER_ERROR out of memory\r\n");
        assert_eq!(
            (n, r.proto, r.form),
            (28, Proto::Text, RespForm::ServerError)
        );
        let p = bin(0x81, 0x0a, &[], &[], &[]);
        let (n, r) = done_resp(&p);
        assert_eq!(
            (n, r.proto, r.form, r.opcode),
            (24, Proto::Binary, RespForm::Binary, Some(0x0a))
        );
        assert_eq!(parse_response(b"", &lim()), Parse::Need(1));
        assert_eq!(parse_response(b"EN", &lim()), Parse::Need(3));
        assert_eq!(
            parse_response(b"ENX\r\n", &lim()),
            Parse::Bad(BadReason::UnknownCommand)
        );
        // A binary request is no response; read as a line (its opcode 0x0a
        // is a '\n') it is an unknown word.
        assert_eq!(
            parse_response(&bin(0x80, 0x0a, &[], &[], &[]), &lim()),
            Parse::Bad(BadReason::UnknownCommand)
        );
        assert_eq!(
            parse_response(&bin(0x80, 0x00, &[], &[], &[]), &lim()),
            Parse::Need(25)
        );
    }

    #[test]
    fn hostile_input() {
        let small = Limits {
            max_line: 128,
            ..lim()
        };
        let endless = vec![b'g'; 1000];
        assert_eq!(
            parse_request(&endless, &small),
            Parse::Bad(BadReason::LineTooLong)
        );
        assert_eq!(
            parse_response(&endless, &small),
            Parse::Bad(BadReason::LineTooLong)
        );
        assert_eq!(
            parse_request(b"set k 0 0 99999999999999999999\r\n", &lim()),
            Parse::Bad(BadReason::LengthTooLarge)
        );
        assert_eq!(
            parse_request(b"ms k 99999999999999999999\r\n", &lim()),
            Parse::Bad(BadReason::LengthTooLarge)
        );
        let mut p = bin(0x80, 0x01, &[0; 8], b"k", b"v");
        p[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            parse_request(&p, &lim()),
            Parse::Bad(BadReason::LengthTooLarge)
        );
        p[8..12].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(
            parse_request(&p, &lim()),
            Parse::Bad(BadReason::BadBinaryHeader)
        );
    }

    #[test]
    fn request_boundaries() {
        let l = lim();
        assert_eq!(find_request_boundary(b"get foo\r\n", &l), Some(0));
        assert_eq!(find_request_boundary(b"lo\r\nget foo\r\n", &l), Some(4));
        assert_eq!(
            find_request_boundary(b"lo\r\nnot a command\r\nmg foo v\r\n", &l),
            Some(19)
        );
        // The value of a cut-off set does not parse as a command.
        assert_eq!(
            find_request_boundary(b"alue bytes\r\n\r\ndelete k\r\n", &l),
            Some(14)
        );
        // A complete line is required.
        assert_eq!(find_request_boundary(b"xx\r\nget foo", &l), None);
        assert_eq!(find_request_boundary(b"hello world\r\nfoo\r\n", &l), None);
        assert_eq!(find_request_boundary(b"", &l), None);
        // Binary: any offset, but only a plausible header.
        let mut buf = b"junk\x80\x00".to_vec();
        buf.extend(bin(0x80, 0x00, &[], b"key", &[]));
        assert_eq!(find_request_boundary(&buf, &l), Some(6));
        let mut buf = b"\n".to_vec();
        buf.extend(bin(0x80, 0x0a, &[], &[], &[]));
        assert_eq!(find_request_boundary(&buf, &l), Some(1));
        // A get without a key, or a header cut short, is no boundary.
        assert_eq!(
            find_request_boundary(&bin(0x80, 0x00, &[], &[], &[]), &l),
            None
        );
        assert_eq!(
            find_request_boundary(&bin(0x80, 0x0a, &[], &[], &[])[..20], &l),
            None
        );
        assert_eq!(find_request_boundary(&[0x80; 64], &l), None);
        assert_eq!(find_request_boundary(&[0u8; 64], &l), None);
    }

    #[test]
    fn response_boundaries() {
        let l = lim();
        assert_eq!(find_response_boundary(b"END\r\n", &l), Some(0));
        assert_eq!(
            find_response_boundary(b"xx\r\nVALUE k 0 2\r\nhi\r\nEND\r\n", &l),
            Some(4)
        );
        // A bare number is an incr answer or a value line: skipped.
        assert_eq!(find_response_boundary(b"xx\r\n42\r\nEND\r\n", &l), Some(8));
        assert_eq!(find_response_boundary(b"ue\r\nEN\r\n", &l), Some(4));
        assert_eq!(find_response_boundary(b"ue\r\nHD kfoo\r\n", &l), Some(4));
        assert_eq!(find_response_boundary(b"some value\r\nmore\r\n", &l), None);
        assert_eq!(find_response_boundary(b"xx\r\nSTORED", &l), None);
        let mut buf = b"tail of a value\x81".to_vec();
        buf.extend(bin(0x81, 0x0a, &[], &[], &[]));
        assert_eq!(find_response_boundary(&buf, &l), Some(16));
        // Requests are not responses, and vice versa.
        assert_eq!(find_response_boundary(b"get foo\r\n", &l), None);
        assert_eq!(find_request_boundary(b"END\r\n", &l), None);
        assert_eq!(
            find_response_boundary(&bin(0x80, 0x0a, &[], &[], &[]), &l),
            None
        );
    }

    /// Bytes that make up memcached messages, to steer fuzzing towards
    /// inputs that get past the first checks.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        let words: Vec<&'static [u8]> = vec![
            b"get ",
            b"gets ",
            b"gat ",
            b"set ",
            b"cas ",
            b"delete ",
            b"incr ",
            b"touch ",
            b"flush_all ",
            b"stats",
            b"mg ",
            b"ms ",
            b"md ",
            b"mn",
            b"me ",
            b"VALUE ",
            b"END",
            b"EN",
            b"VA ",
            b"HD ",
            b"STAT ",
            b"ME ",
            b"STORED",
            b"k ",
            b"0 ",
            b"5 ",
            b"-1 ",
            b"99999999999999999999 ",
            b"noreply",
            b"b ",
            b"q ",
            b"Oabc ",
            b"kfoo ",
            b"Zm9v ",
            b"\r\n",
            b"\n",
            b" ",
            b"\x80",
            b"\x81",
            b"\0",
            b"\x18",
        ];
        prop_oneof![
            prop::sample::select(words).prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..8),
        ]
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(fragment(), 0..40).prop_map(|f| f.concat()),
        ]
    }

    fn limits() -> impl Strategy<Value = Limits> {
        prop_oneof![
            Just(Limits::default()),
            Just(Limits {
                max_line: 16,
                max_value: 100,
                max_key: 4
            }),
            Just(Limits {
                max_line: 0,
                max_value: 0,
                max_key: 0
            }),
        ]
    }

    fn check_parse<T>(p: Parse<T>, len: usize) {
        match p {
            Parse::Done { consumed, .. } => assert!(consumed > 0 && consumed <= len),
            Parse::Need(n) => assert!(n > len),
            Parse::Bad(_) => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_and_stays_in_bounds(buf in input(), lim in limits()) {
            check_parse(parse_request(&buf, &lim), buf.len());
            check_parse(parse_response(&buf, &lim), buf.len());
            if let Some(off) = find_request_boundary(&buf, &lim) {
                prop_assert!(off < buf.len());
                prop_assert!(!matches!(parse_request(&buf[off..], &lim), Parse::Bad(_)));
            }
            if let Some(off) = find_response_boundary(&buf, &lim) {
                prop_assert!(off < buf.len());
                prop_assert!(!matches!(parse_response(&buf[off..], &lim), Parse::Bad(_)));
            }
        }

        #[test]
        fn strict_prefixes_of_messages_need_more(buf in input()) {
            let lim = Limits::default();
            if let Parse::Done { consumed, .. } = parse_request(&buf, &lim) {
                for i in 0..consumed {
                    prop_assert!(matches!(parse_request(&buf[..i], &lim), Parse::Need(n) if n > i));
                }
            }
            if let Parse::Done { consumed, .. } = parse_response(&buf, &lim) {
                for i in 0..consumed {
                    prop_assert!(matches!(parse_response(&buf[..i], &lim), Parse::Need(n) if n > i));
                }
            }
        }
    }
}
