//! The binary protocol (memcached wiki "BinaryProtocolRevamped",
//! `protocol_binary.h`).
//!
//! Every packet is a 24-byte header followed by a body of `total body
//! length` bytes: extras, then key, then value. The header frames the
//! packet on its own, so an unknown opcode is still a well-formed message
//! (command `"unknown"`, `Kind::Other`); only an inconsistent header is
//! `Bad`. `consumed` covers header, extras and key; the value is left to
//! the session (`value_len == skip_after`, binary has no trailing CRLF).
//!
//! ```text
//!  byte  0      1       2..4      4       5         6..8            8..12     12..16  16..24
//!       magic opcode  key len  extras  data type  vbucket/status  body len  opaque  cas
//! ```

use super::{BadReason, Keys, Kind, Limits, Parse, Proto, Request, RespForm, Response};

pub const HEADER_LEN: usize = 24;
pub const MAGIC_REQUEST: u8 = 0x80;
pub const MAGIC_RESPONSE: u8 = 0x81;
/// `PROTOCOL_BINARY_RAW_BYTES`, the only data type ever defined.
const DATATYPE_RAW: u8 = 0x00;
/// Resynchronisation accepts smaller bodies than parsing does: a random
/// 0x80 byte followed by a "length" is rarely this small.
const RESYNC_MAX_BODY: u64 = 1 << 20;

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    /// vbucket id in requests, status in responses.
    pub vbucket_or_status: u16,
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Decodes the first 24 bytes of `buf` (all fields big-endian); `None`
    /// when fewer are available.
    pub fn read(buf: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            magic: h[0],
            opcode: h[1],
            key_len: u16::from_be_bytes([h[2], h[3]]),
            extras_len: h[4],
            data_type: h[5],
            vbucket_or_status: u16::from_be_bytes([h[6], h[7]]),
            body_len: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            cas: u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
        })
    }

    /// Header, extras and key: what a parse consumes.
    pub fn head_len(&self) -> usize {
        HEADER_LEN + usize::from(self.extras_len) + usize::from(self.key_len)
    }

    /// Value bytes after the key (saturating: only meaningful once
    /// `extras + key <= body` has been checked).
    pub fn value_len(&self) -> u64 {
        u64::from(self.body_len)
            .saturating_sub(u64::from(self.extras_len) + u64::from(self.key_len))
    }
}

/// Name, kind and quietness of every documented opcode.
fn op_info(op: u8) -> Option<(&'static str, Kind, bool)> {
    use Kind::*;
    let info = match op {
        0x00 => ("get", Retrieve, false),
        0x01 => ("set", Store, false),
        0x02 => ("add", Store, false),
        0x03 => ("replace", Store, false),
        0x04 => ("delete", Delete, false),
        0x05 => ("increment", Arith, false),
        0x06 => ("decrement", Arith, false),
        0x07 => ("quit", Quit, false),
        0x08 => ("flush", Other, false),
        0x09 => ("getq", Retrieve, true),
        0x0a => ("noop", Noop, false),
        0x0b => ("version", Other, false),
        0x0c => ("getk", Retrieve, false),
        0x0d => ("getkq", Retrieve, true),
        0x0e => ("append", Store, false),
        0x0f => ("prepend", Store, false),
        0x10 => ("stat", Other, false),
        0x11 => ("setq", Store, true),
        0x12 => ("addq", Store, true),
        0x13 => ("replaceq", Store, true),
        0x14 => ("deleteq", Delete, true),
        0x15 => ("incrementq", Arith, true),
        0x16 => ("decrementq", Arith, true),
        0x17 => ("quitq", Quit, true),
        0x18 => ("flushq", Other, true),
        0x19 => ("appendq", Store, true),
        0x1a => ("prependq", Store, true),
        0x1b => ("verbosity", Other, false),
        0x1c => ("touch", Touch, false),
        0x1d => ("gat", Retrieve, false),
        0x1e => ("gatq", Retrieve, true),
        0x20 => ("sasl_list_mechs", Other, false),
        0x21 => ("sasl_auth", Other, false),
        0x22 => ("sasl_step", Other, false),
        0x23 => ("gatk", Retrieve, false),
        0x24 => ("gatkq", Retrieve, true),
        // Range operations: specified, never implemented by memcached.
        0x30 => ("rget", Other, false),
        0x31 => ("rset", Other, false),
        0x32 => ("rsetq", Other, true),
        0x33 => ("rappend", Other, false),
        0x34 => ("rappendq", Other, true),
        0x35 => ("rprepend", Other, false),
        0x36 => ("rprependq", Other, true),
        0x37 => ("rdelete", Other, false),
        0x38 => ("rdeleteq", Other, true),
        0x39 => ("rincr", Other, false),
        0x3a => ("rincrq", Other, true),
        0x3b => ("rdecr", Other, false),
        0x3c => ("rdecrq", Other, true),
        // vbucket and TAP opcodes (membase/couchbase).
        0x3d => ("set_vbucket", Other, false),
        0x3e => ("get_vbucket", Other, false),
        0x3f => ("del_vbucket", Other, false),
        0x40 => ("tap_connect", Other, false),
        0x41 => ("tap_mutation", Other, false),
        0x42 => ("tap_delete", Other, false),
        0x43 => ("tap_flush", Other, false),
        0x44 => ("tap_opaque", Other, false),
        0x45 => ("tap_vbucket_set", Other, false),
        0x46 => ("tap_checkpoint_start", Other, false),
        0x47 => ("tap_checkpoint_end", Other, false),
        _ => return None,
    };
    Some(info)
}

/// Lower-case wire name of an opcode; `"unknown"` for undocumented ones.
pub fn opcode_name(op: u8) -> &'static str {
    op_info(op).map_or("unknown", |(name, _, _)| name)
}

/// Semantic class of an opcode; `Kind::Other` for undocumented ones.
pub fn opcode_kind(op: u8) -> Kind {
    op_info(op).map_or(Kind::Other, |(_, kind, _)| kind)
}

/// True for the quiet variants (the server stays silent on the common
/// outcome: a miss for getq/getkq/gatq/gatkq, success for the others).
pub fn opcode_quiet(op: u8) -> bool {
    op_info(op).is_some_and(|(_, _, quiet)| quiet)
}

/// True for an opcode this module has a name for.
pub fn opcode_known(op: u8) -> bool {
    op_info(op).is_some()
}

/// The opcode of a documented wire name (the inverse of `opcode_name`);
/// `None` for `"unknown"` and for names of other dialects.
pub fn opcode_of_name(name: &str) -> Option<u8> {
    (0..=u8::MAX).find(|&op| op_info(op).is_some_and(|(n, _, _)| n == name))
}

/// Parses one binary request header (magic 0x80) from the start of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Request<'a>> {
    let (h, consumed) = match frame(buf, MAGIC_REQUEST, lim) {
        Ok(framed) => framed,
        Err(early) => return early,
    };
    let mut req = Request::new(Proto::Binary, opcode_name(h.opcode), opcode_kind(h.opcode));
    req.keys = match key_of(buf, &h) {
        Some(key) => Keys::One(key),
        None => Keys::None,
    };
    req.quiet = opcode_quiet(h.opcode);
    req.opaque = h.opaque;
    req.value_len = h.value_len();
    req.skip_after = h.value_len();
    // The expiration field of the extras (framed: they are in `buf`).
    let ex = |at: usize| {
        let b = &buf[HEADER_LEN + at..HEADER_LEN + at + 4];
        i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    req.exptime = match (h.opcode, h.extras_len) {
        (0x01..=0x03 | 0x11..=0x13, 8) => Some(ex(4)),
        (0x1c..=0x1e | 0x23 | 0x24, 4) | (0x08 | 0x18, 4) => Some(ex(0)),
        (0x08 | 0x18, 0) => Some(0),
        _ => None,
    };
    if op_info(h.opcode).is_none() {
        // memcached answers an unknown opcode after it has read the key and
        // extras, then swallows the whole body length again (a 1.6 quirk):
        // what follows loses as many bytes.
        req.skip_after += (consumed - HEADER_LEN) as u64;
    }
    Parse::Done { consumed, msg: req }
}

/// Parses one binary response header (magic 0x81) from the start of `buf`.
pub fn parse_response<'a>(buf: &'a [u8], lim: &Limits) -> Parse<Response<'a>> {
    let (h, consumed) = match frame(buf, MAGIC_RESPONSE, lim) {
        Ok(framed) => framed,
        Err(early) => return early,
    };
    let mut resp = Response::new(Proto::Binary, RespForm::Binary);
    resp.key = key_of(buf, &h);
    resp.opcode = Some(h.opcode);
    resp.status = h.vbucket_or_status;
    resp.opaque = h.opaque;
    resp.value_len = h.value_len();
    resp.skip_after = h.value_len();
    Parse::Done {
        consumed,
        msg: resp,
    }
}

/// Validates the header and waits for extras and key. `Ok` carries the
/// header and the bytes to consume; `Err` the `Need`/`Bad` to return.
fn frame<T>(buf: &[u8], magic: u8, lim: &Limits) -> Result<(Header, usize), Parse<T>> {
    match buf.first() {
        None => return Err(Parse::Need(HEADER_LEN)),
        Some(&m) if m != magic => return Err(Parse::Bad(BadReason::BadBinaryHeader)),
        Some(_) => {}
    }
    let h = Header::read(buf).ok_or(Parse::Need(HEADER_LEN))?;
    check_header(&h, lim).map_err(Parse::Bad)?;
    let head = h.head_len();
    if buf.len() < head {
        return Err(Parse::Need(head));
    }
    Ok((h, head))
}

/// The consistency rules every packet must meet, whatever its opcode.
fn check_header(h: &Header, lim: &Limits) -> Result<(), BadReason> {
    if h.data_type != DATATYPE_RAW {
        return Err(BadReason::BadBinaryHeader);
    }
    if usize::from(h.key_len) > lim.max_key {
        return Err(BadReason::KeyTooLong);
    }
    if u64::from(h.body_len) > lim.max_value {
        return Err(BadReason::LengthTooLarge);
    }
    if u32::from(h.extras_len) + u32::from(h.key_len) > h.body_len {
        return Err(BadReason::BadBinaryHeader);
    }
    Ok(())
}

/// The key bytes of a framed packet (`buf` holds at least `head_len`).
fn key_of<'a>(buf: &'a [u8], h: &Header) -> Option<&'a [u8]> {
    let start = HEADER_LEN + usize::from(h.extras_len);
    (h.key_len > 0).then(|| &buf[start..start + usize::from(h.key_len)])
}

/// Resynchronisation probe: could a request start at `buf[0]`?
///
/// Needs the whole header. Beyond what parsing checks it requires a
/// documented opcode, a body under 1 MiB, and the extras/key/value layout
/// that opcode has in the protocol (a get has a key and nothing else, a
/// set 8 bytes of extras, ...), so that value bytes rarely pass.
pub fn plausible_request(buf: &[u8], lim: &Limits) -> bool {
    let Some(h) = plausible_common(buf, MAGIC_REQUEST, lim) else {
        return false;
    };
    let (extras, key, value) = (h.extras_len, h.key_len, h.value_len());
    let keyed = key > 0;
    match h.opcode {
        // get, getq, getk, getkq
        0x00 | 0x09 | 0x0c | 0x0d => extras == 0 && keyed && value == 0,
        // set, add, replace (+q): flags and expiration
        0x01..=0x03 | 0x11..=0x13 => extras == 8 && keyed,
        // append, prepend (+q)
        0x0e | 0x0f | 0x19 | 0x1a => extras == 0 && keyed,
        // delete(q)
        0x04 | 0x14 => extras == 0 && keyed && value == 0,
        // increment, decrement (+q): delta, initial, expiration
        0x05 | 0x06 | 0x15 | 0x16 => extras == 20 && keyed && value == 0,
        // quit(q), noop, version
        0x07 | 0x17 | 0x0a | 0x0b => extras == 0 && !keyed && value == 0,
        // flush(q): optional expiration
        0x08 | 0x18 => (extras == 0 || extras == 4) && !keyed && value == 0,
        // stat [group]
        0x10 => extras == 0 && value == 0,
        0x1b => extras == 4 && !keyed && value == 0,
        // touch, gat, gatq, gatk, gatkq: expiration
        0x1c..=0x1e | 0x23 | 0x24 => extras == 4 && keyed && value == 0,
        _ => true,
    }
}

/// Resynchronisation probe: could a response start at `buf[0]`?
///
/// Like `plausible_request`, plus a documented status, no extras on an
/// error, and the layouts successful answers have.
pub fn plausible_response(buf: &[u8], lim: &Limits) -> bool {
    let Some(h) = plausible_common(buf, MAGIC_RESPONSE, lim) else {
        return false;
    };
    let status = h.vbucket_or_status;
    if !matches!(status, 0x00..=0x09 | 0x20 | 0x21 | 0x81..=0x86) {
        return false;
    }
    if status != 0 {
        // Errors carry a message as value, and getk misses the key.
        return h.extras_len == 0;
    }
    match h.opcode {
        // get/gat family hits: 4 bytes of flags
        0x00 | 0x09 | 0x0c | 0x0d | 0x1d | 0x1e | 0x23 | 0x24 => h.extras_len == 4,
        // storage, delete, quit, noop, flush: an empty body
        0x01..=0x04 | 0x07 | 0x08 | 0x0a | 0x0e | 0x0f | 0x11..=0x14 | 0x17..=0x1a => {
            h.body_len == 0
        }
        // increment/decrement: the new value, 8 bytes
        0x05 | 0x06 | 0x15 | 0x16 => h.extras_len == 0 && h.key_len == 0 && h.body_len == 8,
        _ => true,
    }
}

fn plausible_common(buf: &[u8], magic: u8, lim: &Limits) -> Option<Header> {
    let h = Header::read(buf)?;
    let ok = h.magic == magic
        && opcode_known(h.opcode)
        && check_header(&h, lim).is_ok()
        && u64::from(h.body_len) <= RESYNC_MAX_BODY;
    ok.then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::line::test_support::{assert_prefixes_need, need_of};

    fn lim() -> Limits {
        Limits::default()
    }

    /// Builds a packet: header + extras + key + value.
    fn packet(
        magic: u8,
        op: u8,
        status: u16,
        opaque: u32,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> Vec<u8> {
        let body = (extras.len() + key.len() + value.len()) as u32;
        let mut p = vec![magic, op];
        p.extend((key.len() as u16).to_be_bytes());
        p.push(extras.len() as u8);
        p.push(0);
        p.extend(status.to_be_bytes());
        p.extend(body.to_be_bytes());
        p.extend(opaque.to_be_bytes());
        p.extend(0x0102_0304_0506_0708u64.to_be_bytes());
        p.extend(extras);
        p.extend(key);
        p.extend(value);
        p
    }

    fn request(op: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        packet(MAGIC_REQUEST, op, 0, 0xdead_beef, extras, key, value)
    }

    #[test]
    fn every_opcode_is_named() {
        #[rustfmt::skip]
        let table: &[(u8, &str, Kind, bool)] = &[
            (0x00, "get", Kind::Retrieve, false), (0x01, "set", Kind::Store, false),
            (0x02, "add", Kind::Store, false), (0x03, "replace", Kind::Store, false),
            (0x04, "delete", Kind::Delete, false), (0x05, "increment", Kind::Arith, false),
            (0x06, "decrement", Kind::Arith, false), (0x07, "quit", Kind::Quit, false),
            (0x08, "flush", Kind::Other, false), (0x09, "getq", Kind::Retrieve, true),
            (0x0a, "noop", Kind::Noop, false), (0x0b, "version", Kind::Other, false),
            (0x0c, "getk", Kind::Retrieve, false), (0x0d, "getkq", Kind::Retrieve, true),
            (0x0e, "append", Kind::Store, false), (0x0f, "prepend", Kind::Store, false),
            (0x10, "stat", Kind::Other, false), (0x11, "setq", Kind::Store, true),
            (0x12, "addq", Kind::Store, true), (0x13, "replaceq", Kind::Store, true),
            (0x14, "deleteq", Kind::Delete, true), (0x15, "incrementq", Kind::Arith, true),
            (0x16, "decrementq", Kind::Arith, true), (0x17, "quitq", Kind::Quit, true),
            (0x18, "flushq", Kind::Other, true), (0x19, "appendq", Kind::Store, true),
            (0x1a, "prependq", Kind::Store, true), (0x1b, "verbosity", Kind::Other, false),
            (0x1c, "touch", Kind::Touch, false), (0x1d, "gat", Kind::Retrieve, false),
            (0x1e, "gatq", Kind::Retrieve, true), (0x20, "sasl_list_mechs", Kind::Other, false),
            (0x21, "sasl_auth", Kind::Other, false), (0x22, "sasl_step", Kind::Other, false),
            (0x23, "gatk", Kind::Retrieve, false), (0x24, "gatkq", Kind::Retrieve, true),
            (0x30, "rget", Kind::Other, false), (0x31, "rset", Kind::Other, false),
            (0x32, "rsetq", Kind::Other, true), (0x33, "rappend", Kind::Other, false),
            (0x34, "rappendq", Kind::Other, true), (0x35, "rprepend", Kind::Other, false),
            (0x36, "rprependq", Kind::Other, true), (0x37, "rdelete", Kind::Other, false),
            (0x38, "rdeleteq", Kind::Other, true), (0x39, "rincr", Kind::Other, false),
            (0x3a, "rincrq", Kind::Other, true), (0x3b, "rdecr", Kind::Other, false),
            (0x3c, "rdecrq", Kind::Other, true), (0x3d, "set_vbucket", Kind::Other, false),
            (0x3e, "get_vbucket", Kind::Other, false), (0x3f, "del_vbucket", Kind::Other, false),
            (0x40, "tap_connect", Kind::Other, false), (0x41, "tap_mutation", Kind::Other, false),
            (0x42, "tap_delete", Kind::Other, false), (0x43, "tap_flush", Kind::Other, false),
            (0x44, "tap_opaque", Kind::Other, false), (0x45, "tap_vbucket_set", Kind::Other, false),
            (0x46, "tap_checkpoint_start", Kind::Other, false),
            (0x47, "tap_checkpoint_end", Kind::Other, false),
        ];
        for &(op, name, kind, quiet) in table {
            assert_eq!(
                (opcode_name(op), opcode_kind(op), opcode_quiet(op)),
                (name, kind, quiet),
                "{op:#x}"
            );
            assert_eq!(opcode_of_name(name), Some(op));
            assert!(opcode_known(op));
        }
        let documented = table.iter().map(|t| t.0).collect::<Vec<_>>();
        for op in (0..=u8::MAX).filter(|op| !documented.contains(op)) {
            assert_eq!(
                (opcode_name(op), opcode_kind(op), opcode_quiet(op)),
                ("unknown", Kind::Other, false)
            );
            assert!(!opcode_known(op));
        }
        assert_eq!(opcode_of_name("unknown"), None);
        assert_eq!(opcode_of_name("mg"), None);
    }

    #[test]
    fn header_decoding() {
        let p = packet(
            MAGIC_RESPONSE,
            0x0c,
            0x0001,
            7,
            &[1, 2, 3, 4],
            b"key",
            b"val",
        );
        assert_eq!(
            Header::read(&p),
            Some(Header {
                magic: 0x81,
                opcode: 0x0c,
                key_len: 3,
                extras_len: 4,
                data_type: 0,
                vbucket_or_status: 1,
                body_len: 10,
                opaque: 7,
                cas: 0x0102_0304_0506_0708,
            })
        );
        assert_eq!(Header::read(&p[..23]), None);
    }

    #[test]
    fn get_request() {
        let p = request(0x00, &[], b"foo", &[]);
        let want = Request {
            keys: Keys::One(b"foo"),
            opaque: 0xdead_beef,
            ..Request::new(Proto::Binary, "get", Kind::Retrieve)
        };
        assert_eq!(
            parse_request(&p, &lim()),
            Parse::Done {
                consumed: 27,
                msg: want
            }
        );
        assert_prefixes_need(&p, |b| need_of(parse_request(b, &lim())));
        assert_eq!(parse_request(&p[..10], &lim()), Parse::Need(24));
        assert_eq!(parse_request(&p[..25], &lim()), Parse::Need(27));
    }

    #[test]
    fn quiet_get_and_set_request() {
        let p = request(0x0d, &[], b"k", &[]);
        let Parse::Done { consumed, msg } = parse_request(&p, &lim()) else {
            panic!()
        };
        assert_eq!(
            (consumed, msg.command, msg.quiet, msg.kind),
            (25, "getkq", true, Kind::Retrieve)
        );

        let p = request(0x11, &[0, 0, 0, 1, 0, 0, 0, 0], b"key", b"hello");
        let want = Request {
            keys: Keys::One(b"key"),
            opaque: 0xdead_beef,
            value_len: 5,
            skip_after: 5,
            quiet: true,
            // Flags 0, expiration 0 in the extras.
            exptime: Some(0),
            ..Request::new(Proto::Binary, "setq", Kind::Store)
        };
        // The value is not consumed.
        assert_eq!(
            parse_request(&p, &lim()),
            Parse::Done {
                consumed: 24 + 8 + 3,
                msg: want
            }
        );
        assert_prefixes_need(&p[..35], |b| need_of(parse_request(b, &lim())));
    }

    #[test]
    fn keyless_and_unknown_requests() {
        let p = request(0x0a, &[], &[], &[]);
        let want = Request {
            opaque: 0xdead_beef,
            ..Request::new(Proto::Binary, "noop", Kind::Noop)
        };
        assert_eq!(
            parse_request(&p, &lim()),
            Parse::Done {
                consumed: 24,
                msg: want
            }
        );
        let p = request(0x07, &[], &[], &[]);
        let Parse::Done { msg, .. } = parse_request(&p, &lim()) else {
            panic!()
        };
        assert_eq!(
            (msg.command, msg.kind, msg.keys),
            ("quit", Kind::Quit, Keys::None)
        );
        // Unknown opcodes are framed by their length, not rejected; memcached
        // swallows the body length again after the key and extras.
        let p = request(0xee, &[9; 2], b"k", b"vv");
        let want = Request {
            keys: Keys::One(b"k"),
            opaque: 0xdead_beef,
            value_len: 2,
            skip_after: 5,
            ..Request::new(Proto::Binary, "unknown", Kind::Other)
        };
        assert_eq!(
            parse_request(&p, &lim()),
            Parse::Done {
                consumed: 27,
                msg: want
            }
        );
    }

    #[test]
    fn responses() {
        let p = packet(MAGIC_RESPONSE, 0x0c, 0, 42, &[0, 0, 0, 0], b"key", b"value");
        let want = Response {
            key: Some(b"key"),
            value_len: 5,
            skip_after: 5,
            opaque: 42,
            opcode: Some(0x0c),
            status: 0,
            ..Response::new(Proto::Binary, RespForm::Binary)
        };
        assert_eq!(
            parse_response(&p, &lim()),
            Parse::Done {
                consumed: 31,
                msg: want
            }
        );
        assert_prefixes_need(&p[..31], |b| need_of(parse_response(b, &lim())));

        let p = packet(MAGIC_RESPONSE, 0x00, 0x0001, 1, &[], &[], b"Not found");
        let want = Response {
            value_len: 9,
            skip_after: 9,
            opaque: 1,
            opcode: Some(0x00),
            status: 1,
            ..Response::new(Proto::Binary, RespForm::Binary)
        };
        assert_eq!(
            parse_response(&p, &lim()),
            Parse::Done {
                consumed: 24,
                msg: want
            }
        );
    }

    #[test]
    fn bad_headers() {
        let good = request(0x01, &[0; 8], b"key", b"v");
        let mutate = |at: usize, bytes: &[u8]| {
            let mut p = good.clone();
            p[at..at + bytes.len()].copy_from_slice(bytes);
            p
        };
        let bad =
            |p: &[u8], reason| assert_eq!(parse_request(p, &lim()), Parse::Bad(reason), "{p:?}");
        bad(&mutate(0, &[0x81]), BadReason::BadBinaryHeader);
        bad(&[0x81], BadReason::BadBinaryHeader);
        bad(&mutate(5, &[1]), BadReason::BadBinaryHeader);
        // extras + key > body
        bad(&mutate(8, &10u32.to_be_bytes()), BadReason::BadBinaryHeader);
        bad(&mutate(4, &[200]), BadReason::BadBinaryHeader);
        // bogus body lengths
        bad(
            &mutate(8, &u32::MAX.to_be_bytes()),
            BadReason::LengthTooLarge,
        );
        bad(
            &mutate(8, &((1u32 << 30) + 1).to_be_bytes()),
            BadReason::LengthTooLarge,
        );
        // key over the limit
        bad(&mutate(2, &5000u16.to_be_bytes()), BadReason::KeyTooLong);
        let small = Limits {
            max_key: 2,
            ..lim()
        };
        assert_eq!(
            parse_request(&good, &small),
            Parse::Bad(BadReason::KeyTooLong)
        );
        assert_eq!(
            parse_response(&good, &lim()),
            Parse::Bad(BadReason::BadBinaryHeader)
        );
        assert_eq!(
            parse_request(b"get foo\r\n", &lim()),
            Parse::Bad(BadReason::BadBinaryHeader)
        );
    }

    #[test]
    fn resync_plausibility() {
        let l = lim();
        assert!(plausible_request(&request(0x00, &[], b"k", &[]), &l));
        assert!(plausible_request(&request(0x01, &[0; 8], b"k", b"v"), &l));
        assert!(plausible_request(&request(0x05, &[0; 20], b"k", &[]), &l));
        assert!(plausible_request(&request(0x0a, &[], &[], &[]), &l));
        assert!(plausible_request(&request(0x1c, &[0; 4], b"k", &[]), &l));
        assert!(plausible_request(
            &request(0x21, &[], b"PLAIN", b"\0u\0p"),
            &l
        ));
        // Layouts that no client sends.
        assert!(!plausible_request(&request(0x00, &[], &[], &[]), &l));
        assert!(!plausible_request(&request(0x01, &[], b"k", b"v"), &l));
        assert!(!plausible_request(&request(0x0a, &[], &[], b"x"), &l));
        // Unknown opcode, too big, too short, wrong magic.
        assert!(!plausible_request(&request(0xee, &[], &[], &[]), &l));
        assert!(!plausible_request(
            &request(0x01, &[0; 8], b"k", &vec![0; 1 << 20]),
            &l
        ));
        assert!(!plausible_request(&request(0x0a, &[], &[], &[])[..23], &l));
        assert!(!plausible_request(
            &packet(MAGIC_RESPONSE, 0x0a, 0, 0, &[], &[], &[]),
            &l
        ));

        let resp = |op, status, extras: &[u8], key: &[u8], value: &[u8]| {
            packet(MAGIC_RESPONSE, op, status, 0, extras, key, value)
        };
        assert!(plausible_response(&resp(0x00, 0, &[0; 4], &[], b"v"), &l));
        assert!(plausible_response(
            &resp(0x00, 1, &[], &[], b"Not found"),
            &l
        ));
        assert!(plausible_response(&resp(0x0c, 1, &[], b"k", &[]), &l));
        assert!(plausible_response(&resp(0x01, 0, &[], &[], &[]), &l));
        assert!(plausible_response(&resp(0x05, 0, &[], &[], &[0; 8]), &l));
        assert!(plausible_response(&resp(0x0b, 0, &[], &[], b"1.6.21"), &l));
        assert!(!plausible_response(&resp(0x00, 0, &[], &[], &[]), &l));
        assert!(!plausible_response(&resp(0x00, 0x55, &[], &[], &[]), &l));
        assert!(!plausible_response(&resp(0x00, 1, &[0; 4], &[], &[]), &l));
        assert!(!plausible_response(&resp(0x01, 0, &[], &[], b"x"), &l));
        assert!(!plausible_response(&resp(0x05, 0, &[], &[], &[0; 4]), &l));
    }
}
