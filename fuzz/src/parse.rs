//! The protocol parsers (text, meta, binary, and the dialect detector).
//! Input: one byte of options (bit 0: small limits), then the bytes a
//! parser is given. Each parser is held to its contract (see
//! `protocol/mod.rs`): `Done` consumes at least one byte and no more than
//! given, borrows only from its message, reads one message (more bytes
//! after it change nothing), and every prefix of it asks for more (a split
//! anywhere, i.e. any segment boundary, must not reject it); `Need(n)`
//! asks for more than it has; lengths stay within the limits.

use memtap::protocol::{binary, detect, line, meta, text, Keys, Limits, Parse, Proto};
use memtap::protocol::{Request, Response};
use std::fmt::Debug;

#[derive(Clone, Copy)]
pub enum Dialect {
    Text,
    Meta,
    Binary,
    Detect,
}

fn limits(small: bool) -> Limits {
    if small {
        Limits {
            max_line: 1024,
            max_value: 1 << 20,
            max_key: 250,
        }
    } else {
        Limits::default()
    }
}

fn within(outer: &[u8], inner: &[u8]) {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    assert!(
        inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len()),
        "a borrowed slice outside the message"
    );
}

trait Msg: Debug {
    fn check(&self, msg_bytes: &[u8], lim: &Limits);
}

fn check_lengths(value_len: u64, skip_after: u64, lim: &Limits) {
    assert!(value_len <= lim.max_value, "value_len {value_len}");
    assert!(
        skip_after == value_len || skip_after == value_len + 2 || skip_after == 0 && value_len == 0,
        "skip_after {skip_after} for value_len {value_len}"
    );
}

impl Msg for Request<'_> {
    fn check(&self, m: &[u8], lim: &Limits) {
        if self.command == "unknown" && self.proto == Proto::Binary {
            // memcached swallows an unknown opcode's body length again
            // after its extras and key: at most 255 + 65535 bytes more.
            assert!(
                self.value_len <= lim.max_value,
                "value_len {}",
                self.value_len
            );
            assert!(self.skip_after >= self.value_len);
            assert!(self.skip_after - self.value_len <= 255 + 65_535);
        } else {
            check_lengths(self.value_len, self.skip_after, lim);
        }
        within(m, self.opaque_token);
        if let Keys::One(k) | Keys::Many(k) = self.keys {
            within(m, k);
        }
        for k in self.keys.iter() {
            within(m, k);
            assert!(!k.is_empty() || self.proto == Proto::Binary);
            assert!(
                k.len() <= lim.max_key.max(65_535),
                "key of {} bytes",
                k.len()
            );
        }
    }
}

impl Msg for Response<'_> {
    fn check(&self, m: &[u8], lim: &Limits) {
        check_lengths(self.value_len, self.skip_after, lim);
        within(m, self.opaque_token);
        if let Some(k) = self.key {
            within(m, k);
        }
    }
}

/// Checks one parser on `buf` (a macro: the message borrows the input, so
/// the parser cannot be passed as one generic function). Returns 1 when a
/// message parsed.
macro_rules! check_parser {
    ($buf:expr, $lim:expr, $f:path) => {{
        let (buf, lim): (&[u8], &Limits) = ($buf, $lim);
        match $f(buf, lim) {
            Parse::Done { consumed, msg } => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                msg.check(&buf[..consumed], lim);
                let mut longer = buf.to_vec();
                longer.extend_from_slice(b"get x\r\n\x80\x81 junk");
                match $f(&longer, lim) {
                    Parse::Done {
                        consumed: c2,
                        msg: m2,
                    } => {
                        assert_eq!(c2, consumed, "more input changed the message");
                        assert_eq!(format!("{m2:?}"), format!("{msg:?}"));
                    }
                    other => panic!("Done, then with more bytes {other:?}"),
                }
                // Every prefix, for short messages; a spread of them for
                // long ones (a value of megabytes).
                let step = (consumed / 64).max(1);
                for k in (0..consumed).step_by(step).chain([consumed - 1]) {
                    match $f(&buf[..k], lim) {
                        Parse::Need(n) => assert!(n > k && n <= consumed, "prefix {k}: Need({n})"),
                        other => panic!("prefix {k} of a {consumed}-byte message: {other:?}"),
                    }
                }
                1u32
            }
            Parse::Need(n) => {
                assert!(n > buf.len(), "Need({n}) with {} bytes", buf.len());
                0
            }
            Parse::Bad(_) => 0,
        }
    }};
}

pub fn run(d: Dialect, data: &[u8]) {
    let Some((&opts, buf)) = data.split_first() else {
        return;
    };
    let lim = &limits(opts & 1 == 1);
    match d {
        Dialect::Text => {
            check_parser!(buf, lim, text::parse_request);
            check_parser!(buf, lim, text::parse_response);
            if let Parse::Done { consumed, msg } = line::split_line(buf, lim.max_line) {
                assert!(consumed <= lim.max_line.min(buf.len()));
                assert!(!msg.contains(&b'\n'));
                // The shortcuts for common lines answer what the tokenizer does.
                assert_eq!(
                    text::request_from_line(msg, lim),
                    text::tokenized_request(msg, lim)
                );
                assert_eq!(
                    text::response_from_line(msg, lim),
                    text::tokenized_response(msg, lim)
                );
                for t in line::tokens(msg) {
                    assert!(!t.is_empty() && !t.contains(&b' '), "{t:?}");
                    let _ = line::parse_u64(t);
                    let _ = line::parse_i64(t);
                }
            }
        }
        Dialect::Meta => {
            check_parser!(buf, lim, meta::parse_request);
            check_parser!(buf, lim, meta::parse_response);
        }
        Dialect::Binary => {
            check_parser!(buf, lim, binary::parse_request);
            check_parser!(buf, lim, binary::parse_response);
            let _ = binary::plausible_request(buf, lim);
            let _ = binary::plausible_response(buf, lim);
            if let Some(h) = binary::Header::read(buf) {
                assert!(h.head_len() >= binary::HEADER_LEN);
            }
        }
        Dialect::Detect => {
            check_parser!(buf, lim, detect::parse_request);
            check_parser!(buf, lim, detect::parse_response);
            if let Some(off) = detect::find_request_boundary(buf, lim) {
                assert!(off < buf.len());
                if buf[off] != binary::MAGIC_REQUEST {
                    let ok = matches!(detect::parse_request(&buf[off..], lim), Parse::Done { .. });
                    assert!(ok, "request boundary {off} does not parse");
                }
            }
            if let Some(off) = detect::find_response_boundary(buf, lim) {
                assert!(off < buf.len());
                if buf[off] != binary::MAGIC_RESPONSE {
                    let ok = matches!(detect::parse_response(&buf[off..], lim), Parse::Done { .. });
                    assert!(ok, "response boundary {off} does not parse");
                }
            }
        }
    }
}
