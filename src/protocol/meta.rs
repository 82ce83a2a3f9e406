//! Meta commands (memcached 1.6, "Meta Commands" in `doc/protocol.txt`).
//!
//! Requests are `<cmd> <key> <flags>*` (`ms` adds `<datalen>` before the
//! flags and is followed by a data block plus `\r\n`); responses are a
//! two-letter code and returned flags, each flag a single letter optionally
//! followed by a token (`VA 5 kfoo Oabc t-1`).
//!
//! As in `text`, lines memcached rejects while parsing (`CLIENT_ERROR
//! invalid flag`, `duplicate flag`, `opaque token too long`, a key over the
//! limit) are `Bad` here. Flags this parser has no use for are ignored, so
//! flags added by newer servers do not break it.

use super::line::{check_key, parse_len, parse_line, parse_u64, tokens, Tokens};
use super::{BadReason, Keys, Kind, Limits, Parse, Proto, Request, RespForm, Response};

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`: longer `O` tokens are a client error.
pub const MAX_OPAQUE_LEN: usize = 32;

/// Parses one meta request header from the start of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Request<'a>> {
    parse_line(buf, lim, |line| request_from_line(line, lim))
}

/// Parses one meta response header from the start of `buf`.
pub fn parse_response<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Response<'a>> {
    parse_line(buf, lim, |line| response_from_line(line, lim))
}

/// The static wire name and kind of a meta request word.
fn lookup_request(word: &[u8]) -> Option<(&'static str, Kind)> {
    let entry = match word {
        b"mg" => ("mg", Kind::Retrieve),
        b"ms" => ("ms", Kind::Store),
        b"md" => ("md", Kind::Delete),
        b"ma" => ("ma", Kind::Arith),
        b"mn" => ("mn", Kind::Noop),
        b"me" => ("me", Kind::Other),
        _ => return None,
    };
    Some(entry)
}

/// True for the first word of a meta request (`mg ms md ma mn me`).
pub fn is_request_word(word: &[u8]) -> bool {
    lookup_request(word).is_some()
}

/// The response form of a meta return code.
fn lookup_response(word: &[u8]) -> Option<RespForm> {
    let form = match word {
        b"VA" => RespForm::MetaVa,
        b"HD" => RespForm::MetaHd,
        b"EN" => RespForm::MetaEn,
        b"NF" => RespForm::MetaNf,
        b"NS" => RespForm::MetaNs,
        b"EX" => RespForm::MetaEx,
        b"MN" => RespForm::MetaMn,
        b"ME" => RespForm::MetaMe,
        _ => return None,
    };
    Some(form)
}

/// True for a meta return code (`VA HD EN NF NS EX MN ME`); note that
/// `END` is not one, it is text.
pub fn is_response_word(word: &[u8]) -> bool {
    lookup_response(word).is_some()
}

/// Parses a complete meta request line (terminator already stripped).
pub fn request_from_line<'a>(line: &'a [u8], lim: &Limits) -> Result<Request<'a>, BadReason> {
    let mut toks = tokens(line);
    let word = toks.next().ok_or(BadReason::UnknownCommand)?;
    let (command, kind) = lookup_request(word).ok_or(BadReason::UnknownCommand)?;
    let mut req = Request::new(Proto::Meta, command, kind);
    if kind == Kind::Noop {
        // `mn` takes nothing; memcached ignores anything after it.
        return Ok(req);
    }
    // memcached takes at most 19 words to a meta line (20 to an ms, whose
    // datalen it reads first).
    let max = MAX_TOKENS + usize::from(kind == Kind::Store);
    if tokens(line).count() > max {
        return Err(BadReason::BadArguments);
    }
    let key = check_key(toks.next().ok_or(BadReason::BadArguments)?, lim)?;
    if key.len() > super::text::KEY_MAX {
        return Err(BadReason::KeyTooLong);
    }
    if kind == Kind::Store {
        let len = parse_len(toks.next().ok_or(BadReason::BadArguments)?, lim.max_value)?;
        req.value_len = len;
        // "<data block>\r\n", as for text storage commands.
        req.skip_after = len + 2;
    }
    let flags = match Flags::parse(toks, Side::Request, lim)
        .and_then(|f| check_key_encoding(key, f.base64).map(|_| f))
    {
        Ok(f) => f,
        Err(_) if kind == Kind::Store => {
            // memcached reads <datalen> before the flags: a line it then
            // rejects is answered CLIENT_ERROR *and* its data block is
            // swallowed. Framing it (flags ignored, key as on the wire)
            // keeps the stream in step; the answer records the error.
            req.keys = Keys::One(key);
            return Ok(req);
        }
        Err(e) => return Err(e),
    };
    req.keys = Keys::One(key);
    req.key_base64 = flags.base64;
    req.quiet = flags.quiet;
    req.echo_key = flags.echo_key;
    req.opaque_token = flags.opaque;
    req.exptime = match req.command {
        // ms stores with no TTL unless `T` says; append/prepend modes keep
        // the item's own.
        "ms" if matches!(flags.mode, Some(b'A' | b'a' | b'P' | b'p')) => None,
        "ms" => Some(flags.ttl.unwrap_or(0)),
        // mg `T` touches; ma's `T` only applies to an item it creates.
        "mg" => flags.ttl,
        _ => None,
    };
    Ok(req)
}

/// Parses a complete meta response line (terminator already stripped).
pub fn response_from_line<'a>(line: &'a [u8], lim: &Limits) -> Result<Response<'a>, BadReason> {
    let mut toks = tokens(line);
    let word = toks.next().ok_or(BadReason::UnknownCommand)?;
    let form = lookup_response(word).ok_or(BadReason::UnknownCommand)?;
    let mut resp = Response::new(Proto::Meta, form);
    match form {
        RespForm::MetaMe => {
            // "ME <key> <k>=<v>*": debug fields, not flags.
            resp.key = Some(check_key(toks.next().ok_or(BadReason::BadArguments)?, lim)?);
            return Ok(resp);
        }
        RespForm::MetaVa => {
            let len = parse_len(toks.next().ok_or(BadReason::BadArguments)?, lim.max_value)?;
            resp.value_len = len;
            resp.skip_after = len + 2;
        }
        _ => {}
    }
    let flags = Flags::parse(toks, Side::Response, lim)?;
    if let Some(key) = flags.key {
        check_key_encoding(key, flags.base64)?;
    }
    resp.key = flags.key;
    resp.key_base64 = flags.base64;
    resp.opaque_token = flags.opaque;
    Ok(resp)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// The flags this crate cares about.
#[derive(Debug, Default)]
struct Flags<'a> {
    base64: bool,
    quiet: bool,
    echo_key: bool,
    opaque: &'a [u8],
    /// Response `k<key>`.
    key: Option<&'a [u8]>,
    /// Request `T<ttl>`.
    ttl: Option<i64>,
    /// Request `M<mode>` (ms: E A P R S).
    mode: Option<u8>,
}

impl<'a> Flags<'a> {
    fn parse(toks: Tokens<'a>, side: Side, lim: &Limits) -> Result<Self, BadReason> {
        let mut flags = Flags::default();
        let mut seen = 0u64;
        for tok in toks {
            let Some((&letter, arg)) = tok.split_first() else {
                continue;
            };
            // memcached rejects anything but a letter, and a flag given
            // twice, before it touches the item.
            if !letter.is_ascii_alphabetic() {
                return Err(BadReason::BadArguments);
            }
            let bit = 1u64 << (letter - b'A');
            if seen & bit != 0 {
                return Err(BadReason::BadArguments);
            }
            seen |= bit;
            if side == Side::Request {
                check_request_flag(letter, arg)?;
            }
            match (letter, side) {
                (b'b', _) => flags.base64 = true,
                (b'q', Side::Request) => flags.quiet = true,
                (b'k', Side::Request) => flags.echo_key = true,
                // A returned `k` always carries the key.
                (b'k', Side::Response) if arg.is_empty() => return Err(BadReason::BadArguments),
                (b'k', Side::Response) => flags.key = Some(check_key(arg, lim)?),
                (b'O', _) if arg.len() > MAX_OPAQUE_LEN => return Err(BadReason::BadArguments),
                (b'O', _) => flags.opaque = arg,
                (b'T', Side::Request) => flags.ttl = crate::protocol::line::parse_i64(arg).ok(),
                (b'M', Side::Request) => flags.mode = arg.first().copied(),
                _ => {}
            }
        }
        Ok(flags)
    }
}

/// Most tokens memcached accepts on a meta request line, command and key
/// included (`MFLAG_MAX_OPT_LENGTH`).
const MAX_TOKENS: usize = 19;

/// A request flag memcached 1.6 knows, with a sound argument: anything
/// else is answered `CLIENT_ERROR invalid flag` or `... bad token ...`
/// whether the request is quiet or not.
fn check_request_flag(letter: u8, arg: &[u8]) -> Result<(), BadReason> {
    let int = |a: &[u8]| {
        let a = a.strip_prefix(b"-").unwrap_or(a);
        parse_u64(a).is_ok_and(|n| n <= i32::MAX as u64)
    };
    let ok = match letter {
        // No argument needed (any is ignored).
        b'b' | b'c' | b'f' | b'h' | b'k' | b'l' | b'O' | b'q' | b's' | b't' | b'u' | b'v'
        | b'I' | b'x' | b'S' | b'P' | b'L' => true,
        b'N' | b'T' | b'R' => int(arg),
        b'E' | b'C' | b'D' | b'J' => parse_u64(arg).is_ok(),
        b'F' => parse_u64(arg).is_ok_and(|n| n <= u32::MAX as u64),
        b'M' => arg.len() == 1,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(BadReason::BadArguments)
    }
}

/// A `b` key stays encoded (the session decodes it), but it must at least
/// be decodable.
fn check_key_encoding(key: &[u8], base64: bool) -> Result<(), BadReason> {
    if base64 && !plausible_base64(key) {
        Err(BadReason::BadBase64)
    } else {
        Ok(())
    }
}

/// Standard-alphabet base64 (`A-Z a-z 0-9 + /`), padded or not: padding
/// only at the end, at most two `=`, and a length that can decode (a
/// padded string is a multiple of 4; an unpadded one never leaves a lone
/// sextet, i.e. `len % 4 != 1`).
pub fn plausible_base64(s: &[u8]) -> bool {
    let body_len = s.len() - s.iter().rev().take_while(|&&b| b == b'=').count();
    let (body, pad) = s.split_at(body_len);
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    !body.is_empty()
        && pad.len() <= 2
        && body.iter().all(alphabet)
        && if pad.is_empty() {
            body.len() % 4 != 1
        } else {
            s.len() % 4 == 0
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::line::test_support::{assert_prefixes_need, need_of};

    fn lim() -> Limits {
        Limits::default()
    }

    fn req(command: &'static str, kind: Kind) -> Request<'static> {
        Request::new(Proto::Meta, command, kind)
    }

    fn resp(form: RespForm) -> Response<'static> {
        Response::new(Proto::Meta, form)
    }

    /// Exptimes are checked apart (`exptimes_are_kept`).
    fn check_req(buf: &[u8], want: Request<'_>) {
        assert_eq!(
            match parse_request(buf, &lim()) {
                Parse::Done { consumed, msg } => Parse::Done {
                    consumed,
                    msg: Request {
                        exptime: None,
                        ..msg
                    },
                },
                other => other,
            },
            Parse::Done {
                consumed: buf.len(),
                msg: want
            },
            "{buf:?}"
        );
        assert_prefixes_need(buf, |b| need_of(parse_request(b, &lim())));
    }

    fn check_resp(buf: &[u8], want: Response<'_>) {
        assert_eq!(
            parse_response(buf, &lim()),
            Parse::Done {
                consumed: buf.len(),
                msg: want
            },
            "{buf:?}"
        );
        assert_prefixes_need(buf, |b| need_of(parse_response(b, &lim())));
    }

    fn bad_req(buf: &[u8], reason: BadReason) {
        assert_eq!(parse_request(buf, &lim()), Parse::Bad(reason), "{buf:?}");
    }

    fn bad_resp(buf: &[u8], reason: BadReason) {
        assert_eq!(parse_response(buf, &lim()), Parse::Bad(reason), "{buf:?}");
    }

    #[test]
    fn mg() {
        check_req(
            b"mg foo\r\n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("mg", Kind::Retrieve)
            },
        );
        check_req(
            b"mg foo v t k q Oabc N30\r\n",
            Request {
                keys: Keys::One(b"foo"),
                quiet: true,
                echo_key: true,
                opaque_token: b"abc",
                ..req("mg", Kind::Retrieve)
            },
        );
        check_req(
            b"mg Zm9vYmFy b v\r\n",
            Request {
                keys: Keys::One(b"Zm9vYmFy"),
                key_base64: true,
                ..req("mg", Kind::Retrieve)
            },
        );
        check_req(
            b"mg foo s v\n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("mg", Kind::Retrieve)
            },
        );
    }

    #[test]
    fn ms() {
        check_req(
            b"ms foo 5 T0 F3 q\r\n",
            Request {
                keys: Keys::One(b"foo"),
                value_len: 5,
                skip_after: 7,
                quiet: true,
                ..req("ms", Kind::Store)
            },
        );
        check_req(
            b"ms foo 0\r\n",
            Request {
                keys: Keys::One(b"foo"),
                skip_after: 2,
                ..req("ms", Kind::Store)
            },
        );
        let Parse::Done { consumed, .. } = parse_request(b"ms k 2 MS\r\nhi\r\n", &lim()) else {
            panic!()
        };
        assert_eq!(consumed, 11);
        bad_req(b"ms foo\r\n", BadReason::BadArguments);
        bad_req(b"ms foo T0\r\n", BadReason::BadArguments);
        bad_req(b"ms foo -1\r\n", BadReason::BadArguments);
        bad_req(
            b"ms foo 99999999999999999999\r\n",
            BadReason::LengthTooLarge,
        );
        bad_req(b"ms foo 1073741825\r\n", BadReason::LengthTooLarge);
    }

    #[test]
    fn md_ma_mn_me() {
        check_req(
            b"md foo q\r\n",
            Request {
                keys: Keys::One(b"foo"),
                quiet: true,
                ..req("md", Kind::Delete)
            },
        );
        check_req(
            b"ma cnt MI D5 O1\r\n",
            Request {
                keys: Keys::One(b"cnt"),
                opaque_token: b"1",
                ..req("ma", Kind::Arith)
            },
        );
        check_req(b"mn\r\n", req("mn", Kind::Noop));
        check_req(b"mn ignored\r\n", req("mn", Kind::Noop));
        check_req(
            b"me foo\r\n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("me", Kind::Other)
            },
        );
        check_req(
            b"me Zm9v b\r\n",
            Request {
                keys: Keys::One(b"Zm9v"),
                key_base64: true,
                ..req("me", Kind::Other)
            },
        );
    }

    #[test]
    fn request_errors() {
        for cmd in ["mg", "ms", "md", "ma", "me"] {
            bad_req(format!("{cmd}\r\n").as_bytes(), BadReason::BadArguments);
        }
        bad_req(b"mx foo\r\n", BadReason::UnknownCommand);
        bad_req(b"get foo\r\n", BadReason::UnknownCommand);
        bad_req(b"\r\n", BadReason::UnknownCommand);
        bad_req(b"mg foo v v\r\n", BadReason::BadArguments);
        bad_req(b"mg foo 5\r\n", BadReason::BadArguments);
        bad_req(b"mg foo -q\r\n", BadReason::BadArguments);
        let opaque33 = format!("mg foo O{}\r\n", "x".repeat(33));
        bad_req(opaque33.as_bytes(), BadReason::BadArguments);
        let opaque32 = format!("mg foo O{}\r\n", "x".repeat(32));
        assert!(matches!(
            parse_request(opaque32.as_bytes(), &lim()),
            Parse::Done { .. }
        ));
        let long = format!("mg {} v\r\n", "k".repeat(4097));
        bad_req(long.as_bytes(), BadReason::KeyTooLong);
        bad_req(b"mg foo!bar b\r\n", BadReason::BadBase64);
        bad_req(b"mg Zm9vY b\r\n", BadReason::BadBase64);
        bad_req(b"mg Zm=9v b\r\n", BadReason::BadBase64);
        bad_req(b"md Zm9vYg=== b\r\n", BadReason::BadBase64);
        let small = Limits {
            max_line: 16,
            ..lim()
        };
        assert_eq!(
            parse_request(b"mg aaaaaaaaaaaaaaaaaaaaaa", &small),
            Parse::Bad(BadReason::LineTooLong)
        );
    }

    #[test]
    fn va() {
        check_resp(
            b"VA 5\r\n",
            Response {
                value_len: 5,
                skip_after: 7,
                ..resp(RespForm::MetaVa)
            },
        );
        check_resp(
            b"VA 5 kfoo Oabc t-1 f0 c123\r\n",
            Response {
                key: Some(b"foo"),
                opaque_token: b"abc",
                value_len: 5,
                skip_after: 7,
                ..resp(RespForm::MetaVa)
            },
        );
        check_resp(
            b"VA 0 b kZm9v\r\n",
            Response {
                key: Some(b"Zm9v"),
                key_base64: true,
                skip_after: 2,
                ..resp(RespForm::MetaVa)
            },
        );
        bad_resp(b"VA\r\n", BadReason::BadArguments);
        bad_resp(b"VA x\r\n", BadReason::BadArguments);
        bad_resp(b"VA 99999999999999999999\r\n", BadReason::LengthTooLarge);
        bad_resp(b"VA 5 b k!!\r\n", BadReason::BadBase64);
        bad_resp(b"VA 5 t1 t2\r\n", BadReason::BadArguments);
    }

    #[test]
    fn status_codes() {
        for (line, form) in [
            (&b"HD\r\n"[..], RespForm::MetaHd),
            (b"EN\r\n", RespForm::MetaEn),
            (b"NF\r\n", RespForm::MetaNf),
            (b"NS\r\n", RespForm::MetaNs),
            (b"EX\r\n", RespForm::MetaEx),
            (b"MN\r\n", RespForm::MetaMn),
            (b"HD\n", RespForm::MetaHd),
        ] {
            check_resp(line, resp(form));
        }
        check_resp(
            b"HD kfoo O123 c9\r\n",
            Response {
                key: Some(b"foo"),
                opaque_token: b"123",
                ..resp(RespForm::MetaHd)
            },
        );
        check_resp(
            b"NF kbar\r\n",
            Response {
                key: Some(b"bar"),
                ..resp(RespForm::MetaNf)
            },
        );
        check_resp(
            b"NS Ox\r\n",
            Response {
                opaque_token: b"x",
                ..resp(RespForm::MetaNs)
            },
        );
        check_resp(
            b"EX kZm9v b\r\n",
            Response {
                key: Some(b"Zm9v"),
                key_base64: true,
                ..resp(RespForm::MetaEx)
            },
        );
        // "kk" is the key "k": one base64 character cannot decode.
        bad_resp(b"EX kk b\r\n", BadReason::BadBase64);
        check_resp(
            b"EN Oq\r\n",
            Response {
                opaque_token: b"q",
                ..resp(RespForm::MetaEn)
            },
        );
        check_resp(
            b"ME foo exp=-1 la=3 cas=2 fetch=no cls=1 size=63\r\n",
            Response {
                key: Some(b"foo"),
                ..resp(RespForm::MetaMe)
            },
        );
        bad_resp(b"ME\r\n", BadReason::BadArguments);
        bad_resp(b"HD 5\r\n", BadReason::BadArguments);
        bad_resp(b"HD k\r\n", BadReason::BadArguments);
    }

    #[test]
    fn unknown_responses() {
        bad_resp(b"END\r\n", BadReason::UnknownCommand);
        bad_resp(b"VALUE k 0 1\r\n", BadReason::UnknownCommand);
        bad_resp(b"hd\r\n", BadReason::UnknownCommand);
        bad_resp(b"\r\n", BadReason::UnknownCommand);
    }

    #[test]
    fn words() {
        assert!(is_request_word(b"mn"));
        assert!(!is_request_word(b"mnx"));
        assert!(is_response_word(b"EN"));
        assert!(!is_response_word(b"END"));
    }

    #[test]
    fn base64_plausibility() {
        for ok in [
            &b"Zm9v"[..],
            b"Zm9vYg==",
            b"Zm9vYmE=",
            b"Zm9vYg",
            b"Zm9vYmE",
            b"a+/9",
        ] {
            assert!(plausible_base64(ok), "{ok:?}");
        }
        for bad in [
            &b""[..],
            b"=",
            b"==",
            b"Zm9vY",
            b"Zm9vY===",
            b"Zm9vYg=",
            b"Zm=v",
            b"Zm9v-_",
            b"Zm 9",
        ] {
            assert!(!plausible_base64(bad), "{bad:?}");
        }
    }
}
