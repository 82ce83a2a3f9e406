//! The classic text protocol (memcached `doc/protocol.txt`).
//!
//! A request or response header is one line; storage commands and `VALUE`
//! responses announce a data block of `<bytes>` bytes plus `\r\n`, which is
//! not part of `consumed` but reported through `value_len`/`skip_after`.
//!
//! Argument checks mirror what memcached 1.6 (`proto_text.c`) enforces
//! before acting on a line: a line the server would reject with `ERROR` or
//! `CLIENT_ERROR` is `Bad` here. That matters most for storage commands:
//! when the server rejects the line it does *not* swallow the data block, so
//! neither may we. It also keeps the resynchronisation probes in `detect`
//! from locking onto value bytes that merely look like a command.

use super::line::{
    check_key, find_space, parse_i64, parse_len, parse_line, parse_u32, parse_u64, tokens, Tokens,
};

/// memcached's KEY_MAX_LENGTH: a longer text key is `CLIENT_ERROR bad
/// command line format` (the binary protocol's limit is `max_key`).
pub const KEY_MAX: usize = 250;

fn text_key<'a>(k: &'a [u8], lim: &Limits) -> Result<&'a [u8], BadReason> {
    if k.len() > KEY_MAX {
        return Err(BadReason::KeyTooLong);
    }
    check_key(k, lim)
}
use super::{BadReason, Keys, Kind, Limits, Parse, Proto, Request, RespForm, Response};

/// Parses one text request header from the start of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Request<'a>> {
    parse_line(buf, lim, |line| request_from_line(line, lim))
}

/// Parses one text response header from the start of `buf`.
pub fn parse_response<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Response<'a>> {
    parse_line(buf, lim, |line| response_from_line(line, lim))
}

/// How the arguments after a command word are laid out.
#[derive(Debug, Clone, Copy)]
enum Grammar {
    /// `get|gets <key>+`, or with `exptime` `gat|gats <exptime> <key>+`.
    Retrieval { exptime: bool },
    /// `<key> <flags> <exptime> <bytes> [noreply]`; `cas` adds
    /// `<cas unique>` before `[noreply]`.
    Storage { cas: bool },
    /// `delete <key> [0] [noreply]`.
    Delete,
    /// `incr|decr <key> <value> [noreply]`.
    Arith,
    /// `touch <key> <exptime> [noreply]`.
    Touch,
    /// `flush_all [delay] [noreply]`.
    FlushAll,
    /// `verbosity|cache_memlimit <n> [noreply]`.
    Level,
    /// No key; arguments are not checked (stats, admin commands, quit).
    FreeForm,
}

/// Maps a command word to its static wire name, kind and grammar.
/// Commands are case-sensitive: memcached answers `GET` with `ERROR`.
fn lookup(word: &[u8]) -> Option<(&'static str, Kind, Grammar)> {
    use Grammar::*;
    let entry = match word {
        b"get" => ("get", Kind::Retrieve, Retrieval { exptime: false }),
        b"gets" => ("gets", Kind::Retrieve, Retrieval { exptime: false }),
        b"gat" => ("gat", Kind::Retrieve, Retrieval { exptime: true }),
        b"gats" => ("gats", Kind::Retrieve, Retrieval { exptime: true }),
        // An old alias of get that 1.6 still answers.
        b"bget" => ("bget", Kind::Retrieve, Retrieval { exptime: false }),
        b"set" => ("set", Kind::Store, Storage { cas: false }),
        b"add" => ("add", Kind::Store, Storage { cas: false }),
        b"replace" => ("replace", Kind::Store, Storage { cas: false }),
        b"append" => ("append", Kind::Store, Storage { cas: false }),
        b"prepend" => ("prepend", Kind::Store, Storage { cas: false }),
        b"cas" => ("cas", Kind::Store, Storage { cas: true }),
        b"delete" => ("delete", Kind::Delete, Delete),
        b"incr" => ("incr", Kind::Arith, Arith),
        b"decr" => ("decr", Kind::Arith, Arith),
        b"touch" => ("touch", Kind::Touch, Touch),
        b"flush_all" => ("flush_all", Kind::Other, FlushAll),
        b"verbosity" => ("verbosity", Kind::Other, Level),
        b"cache_memlimit" => ("cache_memlimit", Kind::Other, Level),
        b"quit" => ("quit", Kind::Quit, FreeForm),
        b"stats" => ("stats", Kind::Other, FreeForm),
        b"version" => ("version", Kind::Other, FreeForm),
        b"shutdown" => ("shutdown", Kind::Other, FreeForm),
        b"slabs" => ("slabs", Kind::Other, FreeForm),
        b"lru" => ("lru", Kind::Other, FreeForm),
        b"lru_crawler" => ("lru_crawler", Kind::Other, FreeForm),
        b"watch" => ("watch", Kind::Other, FreeForm),
        b"misbehave" => ("misbehave", Kind::Other, FreeForm),
        b"debugtime" => ("debugtime", Kind::Other, FreeForm),
        b"debug" => ("debug", Kind::Other, FreeForm),
        b"extstore" => ("extstore", Kind::Other, FreeForm),
        b"refresh_certs" => ("refresh_certs", Kind::Other, FreeForm),
        // ElastiCache auto-discovery (`config get cluster`), answered by a
        // `CONFIG` block; see `config_line`.
        b"config" => ("config", Kind::Other, FreeForm),
        _ => return None,
    };
    Some(entry)
}

/// Parses a complete request line (terminator already stripped).
pub fn request_from_line<'a>(line: &'a [u8], lim: &Limits) -> Result<Request<'a>, BadReason> {
    let plain = match line.first() {
        Some(b'g') => single_get(line, lim),
        Some(b's') => plain_set(line, lim),
        _ => None,
    };
    match plain {
        Some(req) => Ok(req),
        None => tokenized_request(line, lim),
    }
}

/// `set <key> <flags> <exptime> <bytes>[ noreply]` written plainly: most
/// writes of a cache. As [`single_get`], anything else is the tokenizer's.
#[inline]
fn plain_set<'a>(line: &'a [u8], lim: &Limits) -> Option<Request<'a>> {
    let (key, flags, rest) = plain_head(line, b"set ", lim)?;
    parse_u64(flags).ok()?;
    let (exptime, rest) = split_token(rest)?;
    let exptime = parse_i64(exptime).ok()?;
    let (bytes, noreply) = match split_token(rest) {
        Some((bytes, b"noreply")) => (bytes, true),
        Some(_) => return None,
        None => (rest, false),
    };
    let bytes = parse_len(bytes, lim.max_value).ok()?;
    let mut req = Request::new(Proto::Text, "set", Kind::Store);
    req.exptime = Some(exptime);
    req.noreply = noreply;
    req.keys = Keys::One(key);
    req.value_len = bytes;
    req.skip_after = bytes + 2;
    Some(req)
}

/// `get <key>` written plainly (one space, one key that fits): most
/// requests of a cache. Anything else is left to the tokenizer, which
/// answers the same for these lines (a test and the `parse_text` fuzz
/// target compare the two) at about twice the instructions.
#[inline]
fn single_get<'a>(line: &'a [u8], lim: &Limits) -> Option<Request<'a>> {
    let key = line.strip_prefix(b"get ")?;
    if key.is_empty() || key.len() > KEY_MAX.min(lim.max_key) || find_space(key) < key.len() {
        return None;
    }
    let mut req = Request::new(Proto::Text, "get", Kind::Retrieve);
    req.keys = Keys::One(key);
    Some(req)
}

/// [`request_from_line`] by the tokenizer alone.
pub fn tokenized_request<'a>(line: &'a [u8], lim: &Limits) -> Result<Request<'a>, BadReason> {
    let mut toks = tokens(line);
    let word = toks.next().ok_or(BadReason::UnknownCommand)?;
    let (command, kind, grammar) = lookup(word).ok_or(BadReason::UnknownCommand)?;
    let req = Request::new(Proto::Text, command, kind);
    match grammar {
        Grammar::Retrieval { exptime } => retrieval(req, toks, exptime, lim),
        Grammar::Storage { cas } => storage(req, toks, cas, lim),
        Grammar::Delete => delete(req, toks, lim),
        Grammar::Arith => keyed_number(req, toks, lim, |t| parse_u64(t).is_ok()),
        Grammar::Touch => {
            let mut req = keyed_number(req, toks.clone(), lim, |t| parse_i64(t).is_ok())?;
            req.exptime = toks.clone().nth(1).and_then(|t| parse_i64(t).ok());
            Ok(req)
        }
        Grammar::FlushAll => flush_all(req, toks),
        Grammar::Level => level(req, toks),
        Grammar::FreeForm => Ok(free_form(req, toks)),
    }
}

/// Admin commands whose answer is a listing (see `Request::listing`).
fn free_form<'a>(mut req: Request<'a>, mut toks: Tokens<'a>) -> Request<'a> {
    // Admin commands that honour a last `noreply` (`set_noreply_maybe`),
    // for their answer and their errors alike.
    let last_noreply = toks.clone().last() == Some(b"noreply");
    req.noreply = last_noreply
        && match req.command {
            "lru" | "watch" | "extstore" | "refresh_certs" => true,
            "slabs" => toks.clone().next() == Some(b"automove"),
            _ => false,
        };
    req.listing = match req.command {
        "lru_crawler" => matches!(toks.next(), Some(b"metadump" | b"mgdump")),
        // `watch noreply` is refused silently and does not start a stream.
        "watch" => toks.last() != Some(b"noreply"),
        _ => false,
    };
    req
}

/// The next token as a key: missing is `BadArguments`, too long `KeyTooLong`.
fn key<'a>(toks: &mut Tokens<'a>, lim: &Limits) -> Result<&'a [u8], BadReason> {
    text_key(toks.next().ok_or(BadReason::BadArguments)?, lim)
}

/// The next token, which must satisfy `valid`.
fn arg<'a>(
    toks: &mut Tokens<'a>,
    valid: impl FnOnce(&[u8]) -> bool,
) -> Result<&'a [u8], BadReason> {
    toks.next()
        .filter(|t| valid(t))
        .ok_or(BadReason::BadArguments)
}

/// At most one more token, any token; true when it is `noreply`.
/// (memcached's `set_noreply_maybe` only looks at the last token; a
/// different word there is silently ignored, but a second one is `ERROR`.)
fn trailing_noreply(mut toks: Tokens<'_>) -> Result<bool, BadReason> {
    match (toks.next(), toks.next()) {
        (None, _) => Ok(false),
        (Some(last), None) => Ok(last == b"noreply"),
        (Some(_), Some(_)) => Err(BadReason::BadArguments),
    }
}

fn retrieval<'a>(
    mut req: Request<'a>,
    mut toks: Tokens<'a>,
    exptime: bool,
    lim: &Limits,
) -> Result<Request<'a>, BadReason> {
    // gat/gats: the exptime comes first and is not a key.
    if exptime {
        let t = toks.next().ok_or(BadReason::BadArguments)?;
        req.exptime = Some(parse_i64(t).map_err(|_| BadReason::BadArguments)?);
    }
    let list = toks.rest();
    let mut n = 0usize;
    for k in toks {
        text_key(k, lim)?;
        n += 1;
    }
    req.keys = match n {
        // `gat <exptime>` alone is answered `END`.
        0 if exptime => Keys::None,
        0 => return Err(BadReason::BadArguments),
        1 => Keys::One(list),
        _ => Keys::Many(list),
    };
    Ok(req)
}

fn storage<'a>(
    mut req: Request<'a>,
    mut toks: Tokens<'a>,
    cas: bool,
    lim: &Limits,
) -> Result<Request<'a>, BadReason> {
    let k = key(&mut toks, lim)?;
    // flags: memcached 1.6 reads them with strtoul, which takes 64 bits.
    arg(&mut toks, |t| parse_u64(t).is_ok())?;
    // exptime: may be negative. append/prepend keep the item's own.
    let t = toks.next().ok_or(BadReason::BadArguments)?;
    let exptime = parse_i64(t).map_err(|_| BadReason::BadArguments)?;
    if !matches!(req.command, "append" | "prepend") {
        req.exptime = Some(exptime);
    }
    let bytes = parse_len(toks.next().ok_or(BadReason::BadArguments)?, lim.max_value)?;
    if cas {
        arg(&mut toks, |t| parse_u64(t).is_ok())?; // cas unique: 64-bit
    }
    req.noreply = trailing_noreply(toks)?;
    req.keys = Keys::One(k);
    req.value_len = bytes;
    // "<data block>\r\n": the data is followed by its own CRLF.
    req.skip_after = bytes + 2;
    Ok(req)
}

fn delete<'a>(
    mut req: Request<'a>,
    mut toks: Tokens<'a>,
    lim: &Limits,
) -> Result<Request<'a>, BadReason> {
    req.keys = Keys::One(key(&mut toks, lim)?);
    // The old `delete <key> <time>` form is gone; memcached 1.6 only
    // tolerates a literal 0 there ("Usage: delete <key> [noreply]").
    req.noreply = match (toks.next(), toks.next(), toks.next()) {
        (None, _, _) => false,
        (Some(b"0"), None, _) => false,
        (Some(b"noreply"), None, _) => true,
        (Some(b"0"), Some(b"noreply"), None) => true,
        _ => return Err(BadReason::BadArguments),
    };
    Ok(req)
}

/// `<key> <number> [noreply]`: incr/decr (64-bit delta) and touch (exptime).
fn keyed_number<'a>(
    mut req: Request<'a>,
    mut toks: Tokens<'a>,
    lim: &Limits,
    valid: impl FnOnce(&[u8]) -> bool,
) -> Result<Request<'a>, BadReason> {
    req.keys = Keys::One(key(&mut toks, lim)?);
    arg(&mut toks, valid)?;
    req.noreply = trailing_noreply(toks)?;
    Ok(req)
}

fn flush_all<'a>(mut req: Request<'a>, mut toks: Tokens<'a>) -> Result<Request<'a>, BadReason> {
    let (first, second) = (toks.next(), toks.next());
    if toks.next().is_some() {
        return Err(BadReason::BadArguments);
    }
    req.noreply = second.or(first) == Some(b"noreply");
    // The delay is the first argument unless that is the lone `noreply`.
    let delay = if req.noreply && second.is_none() {
        None
    } else {
        first
    };
    // The delay rides in `exptime` (0 when absent: now).
    req.exptime = Some(match delay {
        Some(d) => parse_i64(d).map_err(|_| BadReason::BadArguments)?,
        None => 0,
    });
    Ok(req)
}

fn level<'a>(mut req: Request<'a>, mut toks: Tokens<'a>) -> Result<Request<'a>, BadReason> {
    // memcached looks only at the last token for `noreply`, so even a lone
    // `verbosity noreply` is silent (its error is suppressed).
    let first = toks.next().ok_or(BadReason::BadArguments)?;
    req.noreply = trailing_noreply(toks)? || first == b"noreply";
    Ok(req)
}

/// Parses a complete response line (terminator already stripped).
///
/// Only exact keywords are accepted (so `END` is text but `EN` is not, and
/// value bytes rarely pass for a response).
pub fn response_from_line<'a>(line: &'a [u8], lim: &Limits) -> Result<Response<'a>, BadReason> {
    // Every retrieval ends with `END`, about half of all response lines,
    // and most writes are answered `STORED`: through the tokenizer and the
    // keyword match either cost about 160 instructions.
    let plain = match line {
        b"END" => Some(text_response(RespForm::End)),
        b"STORED" => Some(text_response(RespForm::Stored)),
        _ => plain_value(line, lim),
    };
    match plain {
        Some(resp) => Ok(resp),
        None => tokenized_response(line, lim),
    }
}

/// `VALUE <key> <flags> <bytes>[ <cas>]` written plainly (single spaces,
/// every field valid): each hit's line. Anything else is left to the
/// tokenizer, which answers the same for these lines.
#[inline]
fn plain_value<'a>(line: &'a [u8], lim: &Limits) -> Option<Response<'a>> {
    let (key, flags, rest) = plain_head(line, b"VALUE ", lim)?;
    parse_u32(flags).ok()?;
    let bytes = match split_token(rest) {
        Some((bytes, cas)) => {
            if cas.is_empty() || find_space(cas) < cas.len() {
                return None;
            }
            parse_u64(cas).ok()?;
            bytes
        }
        None => rest,
    };
    let bytes = parse_len(bytes, lim.max_value).ok()?;
    let mut resp = text_response(RespForm::Value);
    resp.key = Some(key);
    resp.value_len = bytes;
    resp.skip_after = bytes + 2;
    Some(resp)
}

/// `<word ><key> <flags> <rest>` with single spaces and a key that fits
/// the limits: the key, the flags and the rest.
#[inline]
fn plain_head<'a>(
    line: &'a [u8],
    word: &[u8],
    lim: &Limits,
) -> Option<(&'a [u8], &'a [u8], &'a [u8])> {
    let rest = line.strip_prefix(word)?;
    let (key, rest) = split_token(rest)?;
    if key.len() > KEY_MAX.min(lim.max_key) {
        return None;
    }
    let (flags, rest) = split_token(rest)?;
    Some((key, flags, rest))
}

/// A non-empty token and what follows the single space after it; `None`
/// when `s` has no space or starts with one.
#[inline]
fn split_token(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = find_space(s);
    if end == 0 || end == s.len() {
        return None;
    }
    Some((&s[..end], &s[end + 1..]))
}

/// [`response_from_line`] by the tokenizer alone.
pub fn tokenized_response<'a>(line: &'a [u8], lim: &Limits) -> Result<Response<'a>, BadReason> {
    let mut toks = tokens(line);
    let word = toks.next().ok_or(BadReason::UnknownCommand)?;
    let form = match word {
        b"VALUE" => return value_line(toks, lim),
        b"CONFIG" => return Ok(config_line(toks, lim)),
        b"END" => RespForm::End,
        b"STORED" => RespForm::Stored,
        b"NOT_STORED" => RespForm::NotStored,
        b"EXISTS" => RespForm::Exists,
        b"NOT_FOUND" => RespForm::NotFound,
        b"DELETED" => RespForm::Deleted,
        b"TOUCHED" => RespForm::Touched,
        b"OK" => RespForm::Ok,
        b"RESET" => RespForm::Other,
        // Free-text forms: the rest of the line is a message.
        // "ERROR:" is how 1.6 words "ERROR: shutdown not enabled".
        // `refresh_certs` without TLS answers "Error TLS not enabled".
        b"ERROR" | b"ERROR:" | b"Error" => return Ok(text_response(RespForm::Error)),
        b"CLIENT_ERROR" | b"CLIENT_ERROR:" => return Ok(text_response(RespForm::ClientError)),
        // Newer servers word it "SERVER_ERROR: shutdown not enabled".
        b"SERVER_ERROR" | b"SERVER_ERROR:" => return Ok(text_response(RespForm::ServerError)),
        b"VERSION" => return Ok(text_response(RespForm::Version)),
        // `slabs reassign` / `lru_crawler` refusals: "BUSY [message]" etc.
        // ... and `cache_memlimit`, `lru_crawler` and `watch` refusals: each
        // says the command failed.
        b"BUSY"
        | b"BADCLASS"
        | b"NOSPARE"
        | b"NOTFULL"
        | b"UNSAFE"
        | b"SAME"
        | b"NOTSTARTED"
        | b"MEMLIMIT_TOO_SMALL"
        | b"MEMLIMIT_ADJUST_FAILED"
        | b"WATCHER_TOO_MANY"
        | b"WATCHER_FAILED" => return Ok(text_response(RespForm::Error)),
        b"STAT" => {
            // "STAT <name> <value>"; some values contain spaces, some
            // (e.g. `stats settings`) may be empty, the name may not.
            toks.next().ok_or(BadReason::BadArguments)?;
            return Ok(text_response(RespForm::Stat));
        }
        // Listing lines of `stats cachedump` and `stats detail dump`.
        b"ITEM" | b"PREFIX" => return Ok(text_response(RespForm::Line)),
        // The answer to incr/decr: "the new value of the item's data",
        // a 64-bit unsigned decimal.
        w if parse_u64(w).is_ok() => RespForm::Number,
        _ => return Err(BadReason::UnknownCommand),
    };
    // Fixed keywords take no arguments.
    if !toks.is_empty() {
        return Err(BadReason::BadArguments);
    }
    Ok(text_response(form))
}

fn text_response<'a>(form: RespForm) -> Response<'a> {
    Response::new(Proto::Text, form)
}

/// `VALUE <key> <flags> <bytes> [<cas unique>]`, followed by the data block
/// and `\r\n`.
fn value_line<'a>(mut toks: Tokens<'a>, lim: &Limits) -> Result<Response<'a>, BadReason> {
    let k = key(&mut toks, lim)?;
    arg(&mut toks, |t| parse_u32(t).is_ok())?;
    let bytes = parse_len(toks.next().ok_or(BadReason::BadArguments)?, lim.max_value)?;
    if let Some(cas) = toks.next() {
        if parse_u64(cas).is_err() || toks.next().is_some() {
            return Err(BadReason::BadArguments);
        }
    }
    let mut resp = text_response(RespForm::Value);
    resp.key = Some(k);
    resp.value_len = bytes;
    resp.skip_after = bytes + 2;
    Ok(resp)
}

/// ElastiCache's `CONFIG <name> <flags> <bytes>` carries a data block like
/// `VALUE` does; any other `CONFIG` line is a plain listing line.
fn config_line<'a>(mut toks: Tokens<'a>, lim: &Limits) -> Response<'a> {
    let mut resp = text_response(RespForm::Line);
    let (name, flags, bytes, extra) = (toks.next(), toks.next(), toks.next(), toks.next());
    if let (Some(_), Some(flags), Some(bytes), None) = (name, flags, bytes, extra) {
        if let (Ok(_), Ok(bytes)) = (parse_u32(flags), parse_len(bytes, lim.max_value)) {
            resp.value_len = bytes;
            resp.skip_after = bytes + 2;
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `first` grows into by adding up to `levels` words of
    /// `words`, one space apart (a line grows further only while `keep`
    /// says so), each also with a space before and after it, is read the
    /// same with and without the shortcuts, under the default limits and
    /// small ones. Returns how many lines were compared.
    fn shortcuts_agree(
        first: &[u8],
        words: &[&[u8]],
        levels: usize,
        keep: impl Fn(&[u8]) -> bool,
    ) -> usize {
        let small = Limits {
            max_line: 2048,
            max_value: 100,
            max_key: 3,
        };
        let mut lines: Vec<Vec<u8>> = vec![first.to_vec()];
        let mut checked = 0;
        for _ in 0..levels {
            let mut next = Vec::new();
            for l in &lines {
                for w in words {
                    let sep: &[u8] = if l.is_empty() { b"" } else { b" " };
                    next.push([&l[..], sep, w].concat());
                }
            }
            for l in &next {
                for line in [l.clone(), [b" ", &l[..]].concat(), [&l[..], b" "].concat()] {
                    for lim in [Limits::default(), small] {
                        let show = String::from_utf8_lossy(&line);
                        assert_eq!(
                            request_from_line(&line, &lim),
                            tokenized_request(&line, &lim),
                            "{show:?}"
                        );
                        assert_eq!(
                            response_from_line(&line, &lim),
                            tokenized_response(&line, &lim),
                            "{show:?}"
                        );
                        checked += 1;
                    }
                }
            }
            lines = next.into_iter().filter(|l| keep(l)).collect();
        }
        checked
    }

    /// The shortcuts for `get <key>`, `set`, `VALUE`, `END` and `STORED`
    /// lines answer exactly what the tokenizer does, on lines made to
    /// cross their edges: extra spaces, empty and long keys, bad, signed
    /// and oversized numbers, a cas, a trailing word.
    #[test]
    fn the_shortcuts_match_the_tokenizer() {
        let long = vec![b'k'; 251];
        let mut words: Vec<&[u8]> = vec![
            b"k",
            &long,
            b"0",
            b"-1",
            b"+5",
            b"99999999999999999999",
            b"x1",
            b"noreply",
            b"",
        ];
        // `set` and up to six more words.
        assert!(shortcuts_agree(b"set", &words, 6, |_| true) > 2_000_000);
        // Up to five words from the start, growing from `get` and `VALUE`.
        words.extend([
            &b"get"[..],
            b"VALUE",
            b"END",
            b"STORED",
            b"key:1",
            &long[..250],
            b"7",
            b"4294967296",
        ]);
        let grow = |l: &[u8]| l.starts_with(b"get") || l.starts_with(b"VALUE");
        assert!(shortcuts_agree(b"", &words, 5, grow) > 100_000);
        // And the shortcuts were taken where they should be.
        assert!(single_get(b"get key:1", &lim()).is_some());
        assert!(plain_set(b"set k 0 -1 7 noreply", &lim()).is_some());
        assert!(plain_set(b"set k 0 -1 7", &lim()).is_some());
        assert!(plain_set(b"set k 0 -1 7 x", &lim()).is_none());
        assert!(plain_value(b"VALUE key:1 0 7 99", &lim()).is_some());
        assert!(plain_value(b"VALUE key:1 0 7", &lim()).is_some());
        assert!(plain_value(b"VALUE key:1 0 7 ", &lim()).is_none());
        assert_eq!(
            response_from_line(b"END", &lim()),
            Ok(text_response(RespForm::End))
        );
        assert_eq!(
            response_from_line(b"STORED", &lim()),
            Ok(text_response(RespForm::Stored))
        );
    }

    #[test]
    fn exptimes_are_kept() {
        let e = |line: &[u8]| match parse_request(line, &lim()) {
            Parse::Done { msg, .. } => msg.exptime,
            other => panic!("{other:?}"),
        };
        assert_eq!(e(b"set k 0 100 1\r\n"), Some(100));
        assert_eq!(e(b"add k 5 -1 1 noreply\r\n"), Some(-1));
        assert_eq!(e(b"cas k 0 2592001 1 7\r\n"), Some(2_592_001));
        // append/prepend keep the item's own exptime.
        assert_eq!(e(b"append k 0 100 1\r\n"), None);
        assert_eq!(e(b"touch k 30\r\n"), Some(30));
        assert_eq!(e(b"gat 60 a b\r\n"), Some(60));
        assert_eq!(e(b"get a\r\n"), None);
        // flush_all's delay; none is now.
        assert_eq!(e(b"flush_all\r\n"), Some(0));
        assert_eq!(e(b"flush_all 10 noreply\r\n"), Some(10));
        assert_eq!(e(b"flush_all noreply\r\n"), Some(0));
        let m = |line: &[u8]| match super::super::meta::parse_request(line, &lim()) {
            Parse::Done { msg, .. } => msg.exptime,
            other => panic!("{other:?}"),
        };
        assert_eq!(m(b"ms k 1 T90\r\n"), Some(90));
        assert_eq!(m(b"ms k 1\r\n"), Some(0));
        assert_eq!(m(b"ms k 1 MA T90\r\n"), None);
        assert_eq!(m(b"mg k v T30\r\n"), Some(30));
        assert_eq!(m(b"mg k v\r\n"), None);
    }
    use crate::protocol::line::test_support::{assert_prefixes_need, need_of};

    fn lim() -> Limits {
        Limits::default()
    }

    fn req(command: &'static str, kind: Kind) -> Request<'static> {
        Request::new(Proto::Text, command, kind)
    }

    fn resp(form: RespForm) -> Response<'static> {
        Response::new(Proto::Text, form)
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
    fn retrieval_commands() {
        check_req(
            b"get foo\r\n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("get", Kind::Retrieve)
            },
        );
        check_req(
            b"gets foo\r\n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("gets", Kind::Retrieve)
            },
        );
        check_req(
            b"get a bb  ccc\r\n",
            Request {
                keys: Keys::Many(b"a bb  ccc"),
                ..req("get", Kind::Retrieve)
            },
        );
        check_req(
            b"gets a b\r\n",
            Request {
                keys: Keys::Many(b"a b"),
                ..req("gets", Kind::Retrieve)
            },
        );
        check_req(
            b"gat 100 foo\r\n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("gat", Kind::Retrieve)
            },
        );
        check_req(
            b"gats -1 a b\r\n",
            Request {
                keys: Keys::Many(b"a b"),
                ..req("gats", Kind::Retrieve)
            },
        );
        // `noreply` is just a key for retrievals.
        check_req(
            b"get noreply\r\n",
            Request {
                keys: Keys::One(b"noreply"),
                ..req("get", Kind::Retrieve)
            },
        );
        // Bare '\n' and trailing spaces.
        check_req(
            b"get foo  \n",
            Request {
                keys: Keys::One(b"foo"),
                ..req("get", Kind::Retrieve)
            },
        );
        let Parse::Done { msg, .. } = parse_request(b"get a bb  ccc\r\n", &lim()) else {
            panic!()
        };
        assert_eq!(
            msg.keys.iter().collect::<Vec<_>>(),
            vec![&b"a"[..], b"bb", b"ccc"]
        );
        assert_eq!(msg.keys.count(), 3);
    }

    #[test]
    fn retrieval_errors() {
        bad_req(b"get\r\n", BadReason::BadArguments);
        bad_req(b"get   \r\n", BadReason::BadArguments);
        bad_req(b"gat foo\r\n", BadReason::BadArguments);
        check_req(b"gat 10\r\n", req("gat", Kind::Retrieve));
        let long = format!("get a {}\r\n", "k".repeat(4097));
        bad_req(long.as_bytes(), BadReason::KeyTooLong);
        let long = format!("get a {} b\r\n", "k".repeat(251));
        bad_req(long.as_bytes(), BadReason::KeyTooLong);
        let max = format!("get {}\r\n", "k".repeat(250));
        assert!(matches!(
            parse_request(max.as_bytes(), &lim()),
            Parse::Done { .. }
        ));
    }

    #[test]
    fn storage_commands() {
        for cmd in ["set", "add", "replace", "append", "prepend"] {
            let line = format!("{cmd} foo 5 0 10\r\n");
            check_req(
                line.as_bytes(),
                Request {
                    keys: Keys::One(b"foo"),
                    value_len: 10,
                    skip_after: 12,
                    ..req(cmd, Kind::Store)
                },
            );
        }
        check_req(
            b"set foo 4294967295 -1 0 noreply\r\n",
            Request {
                keys: Keys::One(b"foo"),
                skip_after: 2,
                noreply: true,
                ..req("set", Kind::Store)
            },
        );
        // A non-`noreply` trailing word is ignored, as memcached does.
        check_req(
            b"set foo 0 0 3 later\r\n",
            Request {
                keys: Keys::One(b"foo"),
                value_len: 3,
                skip_after: 5,
                ..req("set", Kind::Store)
            },
        );
        check_req(
            b"cas foo 0 0 3 18446744073709551615\r\n",
            Request {
                keys: Keys::One(b"foo"),
                value_len: 3,
                skip_after: 5,
                ..req("cas", Kind::Store)
            },
        );
        check_req(
            b"cas foo 0 0 3 7 noreply\r\n",
            Request {
                keys: Keys::One(b"foo"),
                value_len: 3,
                skip_after: 5,
                noreply: true,
                ..req("cas", Kind::Store)
            },
        );
        // The data block is not part of `consumed`.
        let Parse::Done { consumed, .. } = parse_request(b"set a 0 0 5\r\nhello\r\n", &lim())
        else {
            panic!()
        };
        assert_eq!(consumed, 13);
    }

    #[test]
    fn storage_errors() {
        bad_req(b"set\r\n", BadReason::BadArguments);
        bad_req(b"set foo\r\n", BadReason::BadArguments);
        bad_req(b"set foo 0 0\r\n", BadReason::BadArguments);
        bad_req(b"set foo x 0 5\r\n", BadReason::BadArguments);
        bad_req(
            b"set foo 18446744073709551616 0 5\r\n",
            BadReason::BadArguments,
        );
        bad_req(b"set foo 0 x 5\r\n", BadReason::BadArguments);
        bad_req(b"set foo 0 0 x\r\n", BadReason::BadArguments);
        bad_req(b"set foo 0 0 -5\r\n", BadReason::BadArguments);
        bad_req(b"set foo 0 0 5 noreply extra\r\n", BadReason::BadArguments);
        bad_req(
            b"set k 0 0 99999999999999999999\r\n",
            BadReason::LengthTooLarge,
        );
        bad_req(b"set k 0 0 1073741825\r\n", BadReason::LengthTooLarge);
        bad_req(b"cas foo 0 0 5\r\n", BadReason::BadArguments);
        bad_req(b"cas foo 0 0 5 x\r\n", BadReason::BadArguments);
        let long = format!("set {} 0 0 1\r\n", "k".repeat(4097));
        bad_req(long.as_bytes(), BadReason::KeyTooLong);
        let small = Limits {
            max_value: 10,
            ..lim()
        };
        assert_eq!(
            parse_request(b"set k 0 0 11\r\n", &small),
            Parse::Bad(BadReason::LengthTooLarge)
        );
        assert!(matches!(
            parse_request(b"set k 0 0 10\r\n", &small),
            Parse::Done { .. }
        ));
    }

    #[test]
    fn delete_command() {
        let want = |noreply| Request {
            keys: Keys::One(b"foo"),
            noreply,
            ..req("delete", Kind::Delete)
        };
        check_req(b"delete foo\r\n", want(false));
        check_req(b"delete foo 0\r\n", want(false));
        check_req(b"delete foo noreply\r\n", want(true));
        check_req(b"delete foo 0 noreply\r\n", want(true));
        bad_req(b"delete\r\n", BadReason::BadArguments);
        bad_req(b"delete foo 10\r\n", BadReason::BadArguments);
        bad_req(b"delete foo noreply 0\r\n", BadReason::BadArguments);
        bad_req(b"delete foo 0 noreply x\r\n", BadReason::BadArguments);
    }

    #[test]
    fn arith_and_touch() {
        check_req(
            b"incr n 1\r\n",
            Request {
                keys: Keys::One(b"n"),
                ..req("incr", Kind::Arith)
            },
        );
        check_req(
            b"decr n 18446744073709551615 noreply\r\n",
            Request {
                keys: Keys::One(b"n"),
                noreply: true,
                ..req("decr", Kind::Arith)
            },
        );
        check_req(
            b"touch t 3600\r\n",
            Request {
                keys: Keys::One(b"t"),
                ..req("touch", Kind::Touch)
            },
        );
        check_req(
            b"touch t -1 noreply\r\n",
            Request {
                keys: Keys::One(b"t"),
                noreply: true,
                ..req("touch", Kind::Touch)
            },
        );
        bad_req(b"incr n\r\n", BadReason::BadArguments);
        bad_req(b"incr n -1\r\n", BadReason::BadArguments);
        bad_req(b"incr n 18446744073709551616\r\n", BadReason::BadArguments);
        bad_req(b"decr n 1 noreply x\r\n", BadReason::BadArguments);
        bad_req(b"touch t\r\n", BadReason::BadArguments);
        bad_req(b"touch t soon\r\n", BadReason::BadArguments);
    }

    #[test]
    fn other_commands() {
        check_req(b"stats\r\n", req("stats", Kind::Other));
        check_req(b"stats slabs\r\n", req("stats", Kind::Other));
        check_req(b"stats cachedump 1 100\r\n", req("stats", Kind::Other));
        check_req(b"version\r\n", req("version", Kind::Other));
        check_req(b"quit\r\n", req("quit", Kind::Quit));
        check_req(b"flush_all\r\n", req("flush_all", Kind::Other));
        check_req(b"flush_all 10\r\n", req("flush_all", Kind::Other));
        check_req(
            b"flush_all noreply\r\n",
            Request {
                noreply: true,
                ..req("flush_all", Kind::Other)
            },
        );
        check_req(
            b"flush_all 0 noreply\r\n",
            Request {
                noreply: true,
                ..req("flush_all", Kind::Other)
            },
        );
        check_req(b"verbosity 1\r\n", req("verbosity", Kind::Other));
        check_req(
            b"verbosity 1 noreply\r\n",
            Request {
                noreply: true,
                ..req("verbosity", Kind::Other)
            },
        );
        check_req(
            b"cache_memlimit 100\r\n",
            req("cache_memlimit", Kind::Other),
        );
        check_req(
            b"cache_memlimit 100 noreply\r\n",
            Request {
                noreply: true,
                ..req("cache_memlimit", Kind::Other)
            },
        );
        for cmd in [
            "shutdown",
            "slabs",
            "lru",
            "lru_crawler",
            "watch",
            "misbehave",
            "debugtime",
            "debug",
            "extstore",
            "refresh_certs",
            "config",
        ] {
            let line = format!("{cmd} some args\r\n");
            let want = Request {
                listing: cmd == "watch",
                ..req(cmd, Kind::Other)
            };
            check_req(line.as_bytes(), want);
        }
        for (line, listing) in [
            (&b"lru_crawler metadump all\r\n"[..], true),
            (b"lru_crawler mgdump 1\r\n", true),
            (b"lru_crawler crawl 1\r\n", false),
            (b"watch\r\n", true),
            (b"watch fetchers mutations\r\n", true),
            (b"watch noreply\r\n", false),
        ] {
            let Parse::Done { msg, .. } = parse_request(line, &lim()) else {
                panic!("{line:?}")
            };
            assert_eq!(msg.listing, listing, "{line:?}");
        }
        check_req(b"slabs reassign 1 2\r\n", req("slabs", Kind::Other));
        check_req(b"slabs automove 1\r\n", req("slabs", Kind::Other));
        bad_req(b"flush_all soon\r\n", BadReason::BadArguments);
        bad_req(b"flush_all 1 noreply x\r\n", BadReason::BadArguments);
        bad_req(b"verbosity\r\n", BadReason::BadArguments);
        check_req(
            b"verbosity noreply\r\n",
            Request {
                noreply: true,
                ..req("verbosity", Kind::Other)
            },
        );
        bad_req(b"verbosity 1 noreply x\r\n", BadReason::BadArguments);
    }

    #[test]
    fn unknown_requests() {
        bad_req(b"GET foo\r\n", BadReason::UnknownCommand);
        bad_req(b"gett foo\r\n", BadReason::UnknownCommand);
        bad_req(b"mg foo v\r\n", BadReason::UnknownCommand);
        bad_req(b"mn\r\n", BadReason::UnknownCommand);
        bad_req(b"\r\n", BadReason::UnknownCommand);
        bad_req(b"   \r\n", BadReason::UnknownCommand);
        bad_req(b"\x80\x00\x00\x00\n", BadReason::UnknownCommand);
    }

    #[test]
    fn endless_lines() {
        let small = Limits {
            max_line: 64,
            ..lim()
        };
        let endless = vec![b'a'; 100];
        assert_eq!(
            parse_request(&endless, &small),
            Parse::Bad(BadReason::LineTooLong)
        );
        assert_eq!(
            parse_response(&endless, &small),
            Parse::Bad(BadReason::LineTooLong)
        );
        let mut get = b"get ".to_vec();
        get.extend(std::iter::repeat_n(b'k', 70_000));
        assert_eq!(
            parse_request(&get, &lim()),
            Parse::Bad(BadReason::LineTooLong)
        );
        // A valid line that is exactly max_line long is accepted.
        let line = b"get 0123456789\r\n";
        let exact = Limits {
            max_line: line.len(),
            ..lim()
        };
        assert!(matches!(
            parse_request(line, &exact),
            Parse::Done { consumed: 16, .. }
        ));
        let short = Limits {
            max_line: line.len() - 1,
            ..lim()
        };
        assert_eq!(
            parse_request(line, &short),
            Parse::Bad(BadReason::LineTooLong)
        );
    }

    #[test]
    fn value_responses() {
        check_resp(
            b"VALUE foo 5 10\r\n",
            Response {
                key: Some(b"foo"),
                value_len: 10,
                skip_after: 12,
                ..resp(RespForm::Value)
            },
        );
        check_resp(
            b"VALUE foo 0 0 18446744073709551615\r\n",
            Response {
                key: Some(b"foo"),
                value_len: 0,
                skip_after: 2,
                ..resp(RespForm::Value)
            },
        );
        let Parse::Done { consumed, msg } =
            parse_response(b"VALUE k 0 5\r\nhello\r\nEND\r\n", &lim())
        else {
            panic!()
        };
        assert_eq!((consumed, msg.value_len, msg.skip_after), (13, 5, 7));
        bad_resp(b"VALUE\r\n", BadReason::BadArguments);
        bad_resp(b"VALUE foo\r\n", BadReason::BadArguments);
        bad_resp(b"VALUE foo 0\r\n", BadReason::BadArguments);
        bad_resp(b"VALUE foo x 5\r\n", BadReason::BadArguments);
        bad_resp(b"VALUE foo 0 x\r\n", BadReason::BadArguments);
        bad_resp(b"VALUE foo 0 5 x\r\n", BadReason::BadArguments);
        bad_resp(b"VALUE foo 0 5 1 2\r\n", BadReason::BadArguments);
        bad_resp(
            b"VALUE foo 0 99999999999999999999\r\n",
            BadReason::LengthTooLarge,
        );
        bad_resp(b"VALUE foo 0 2000000000\r\n", BadReason::LengthTooLarge);
    }

    #[test]
    fn fixed_responses() {
        for (line, form) in [
            (&b"END\r\n"[..], RespForm::End),
            (b"STORED\r\n", RespForm::Stored),
            (b"NOT_STORED\r\n", RespForm::NotStored),
            (b"EXISTS\r\n", RespForm::Exists),
            (b"NOT_FOUND\r\n", RespForm::NotFound),
            (b"DELETED\r\n", RespForm::Deleted),
            (b"TOUCHED\r\n", RespForm::Touched),
            (b"OK\r\n", RespForm::Ok),
            (b"RESET\r\n", RespForm::Other),
            (b"0\r\n", RespForm::Number),
            (b"18446744073709551615\r\n", RespForm::Number),
            (b"END\n", RespForm::End),
        ] {
            check_resp(line, resp(form));
        }
        bad_resp(b"END foo\r\n", BadReason::BadArguments);
        bad_resp(b"STORED 1\r\n", BadReason::BadArguments);
        bad_resp(b"42 43\r\n", BadReason::BadArguments);
    }

    #[test]
    fn free_text_responses() {
        for (line, form) in [
            (&b"STAT pid 1234\r\n"[..], RespForm::Stat),
            (b"STAT version 1.6.21\r\n", RespForm::Stat),
            (b"STAT domain_socket\r\n", RespForm::Stat),
            (b"VERSION 1.6.21\r\n", RespForm::Version),
            (b"ERROR\r\n", RespForm::Error),
            (b"ERROR unknown command\r\n", RespForm::Error),
            (b"ERROR: shutdown not enabled\r\n", RespForm::Error),
            (
                b"SERVER_ERROR: shutdown not enabled\r\n",
                RespForm::ServerError,
            ),
            (b"Error TLS not enabled\r\n", RespForm::Error),
            (b"NOTSTARTED crawler not running\r\n", RespForm::Error),
            (
                b"MEMLIMIT_TOO_SMALL cannot set maxbytes\r\n",
                RespForm::Error,
            ),
            (b"CLIENT_ERROR bad data chunk\r\n", RespForm::ClientError),
            (
                b"SERVER_ERROR out of memory storing object\r\n",
                RespForm::ServerError,
            ),
            (
                b"BUSY currently processing crawler request\r\n",
                RespForm::Error,
            ),
            (b"BADCLASS invalid src or dst class id\r\n", RespForm::Error),
            (b"NOSPARE\r\n", RespForm::Error),
            (b"NOTFULL\r\n", RespForm::Error),
            (b"UNSAFE\r\n", RespForm::Error),
            (b"SAME\r\n", RespForm::Error),
            (b"ITEM foo [5 b; 0 s]\r\n", RespForm::Line),
            (b"PREFIX foo get 1 hit 1 set 0 del 0\r\n", RespForm::Line),
            (b"CONFIG something\r\n", RespForm::Line),
        ] {
            check_resp(line, resp(form));
        }
        bad_resp(b"STAT\r\n", BadReason::BadArguments);
    }

    #[test]
    fn config_block() {
        check_resp(
            b"CONFIG cluster 0 147\r\n",
            Response {
                value_len: 147,
                skip_after: 149,
                ..resp(RespForm::Line)
            },
        );
    }

    #[test]
    fn unknown_responses() {
        bad_resp(b"EN\r\n", BadReason::UnknownCommand);
        bad_resp(b"HD\r\n", BadReason::UnknownCommand);
        bad_resp(b"end\r\n", BadReason::UnknownCommand);
        bad_resp(b"VALUES foo 0 1\r\n", BadReason::UnknownCommand);
        bad_resp(b"hello world\r\n", BadReason::UnknownCommand);
        bad_resp(b"99999999999999999999\r\n", BadReason::UnknownCommand);
        bad_resp(b"-1\r\n", BadReason::UnknownCommand);
        bad_resp(b"\r\n", BadReason::UnknownCommand);
    }
}
