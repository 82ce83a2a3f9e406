//! Pure memcached parsers: `&[u8]` in, at most one message out.
//!
//! Contract (after Suricata's app-layer parsers): a parser never stores
//! input and never looks at more than one message. It answers
//! * `Parse::Done { consumed, msg }`: a message header was parsed from the
//!   first `consumed` bytes. Value blocks are *not* part of `consumed`: the
//!   message says how many value bytes follow (`value_len`, plus the
//!   trailing `\r\n` for text/meta, see `Message::skip_after`), and the
//!   session skips them by count without buffering them.
//! * `Parse::Need(n)`: the input is a valid prefix; at least `n` bytes in
//!   total are needed before trying again (a lower bound).
//! * `Parse::Bad(reason)`: the input cannot start a message of this dialect.
//!
//! Keys are borrowed from the input slice (`&'a [u8]`), never copied here.

pub mod binary;
pub mod detect;
pub mod line;
pub mod meta;
pub mod sniff;
pub mod text;

/// Which of memcached's three dialects a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Text,
    Meta,
    Binary,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Text => "text",
            Proto::Meta => "meta",
            Proto::Binary => "binary",
        }
    }
}

/// Outcome of one parse attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    Done { consumed: usize, msg: T },
    Need(usize),
    Bad(BadReason),
}

/// Why a parser rejected its input. Each reason is a separate counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadReason {
    /// A text/meta line longer than the configured limit without `\n`.
    LineTooLong,
    /// The first word is not a command/response of this dialect.
    UnknownCommand,
    /// Right command, wrong arguments (missing key, non-numeric length, ...).
    BadArguments,
    /// A declared length over the sanity limit (value or binary body).
    LengthTooLarge,
    /// Binary header inconsistent (bad magic, extras+key > body, ...).
    BadBinaryHeader,
    /// A key longer than the protocol permits.
    KeyTooLong,
    /// A base64 key (`b` flag) that does not decode.
    BadBase64,
}

impl BadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BadReason::LineTooLong => "line_too_long",
            BadReason::UnknownCommand => "unknown_command",
            BadReason::BadArguments => "bad_arguments",
            BadReason::LengthTooLarge => "length_too_large",
            BadReason::BadBinaryHeader => "bad_binary_header",
            BadReason::KeyTooLong => "key_too_long",
            BadReason::BadBase64 => "bad_base64",
        }
    }
}

/// Limits the parsers enforce on hostile input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest text/meta line accepted (bytes, including `\r\n`).
    pub max_line: usize,
    /// Largest value length accepted in a header (bytes).
    pub max_value: u64,
    /// Largest binary key length accepted.
    pub max_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_value: 1 << 30,
            max_key: 4096,
        }
    }
}

/// The semantic class of a command, shared by the three dialects; decides
/// how its response maps to a `result` and what a quiet/no reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// get/gets/gat/gats, mg, binary get family: hit or miss.
    Retrieve,
    /// set/add/replace/append/prepend/cas, ms, binary set family.
    Store,
    /// delete, md.
    Delete,
    /// incr/decr, ma, binary increment/decrement.
    Arith,
    /// touch.
    Touch,
    /// mn, binary noop: flushes quiet pipelines.
    Noop,
    /// quit: the server closes the connection, never answers.
    Quit,
    /// Everything else (stats, version, flush_all, verbosity, me, sasl, ...),
    /// answered by a single response (or a multi-part one for stats).
    Other,
}

/// The result field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Hit,
    Miss,
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Value,
    Ok,
    Error,
    ClientError,
    ServerError,
    Noreply,
    Lost,
}

impl Outcome {
    /// Every outcome, in declaration order (`o as usize` indexes it).
    pub const ALL: [Outcome; 15] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stored,
        Outcome::NotStored,
        Outcome::Exists,
        Outcome::NotFound,
        Outcome::Deleted,
        Outcome::Touched,
        Outcome::Value,
        Outcome::Ok,
        Outcome::Error,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Noreply,
        Outcome::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stored => "stored",
            Outcome::NotStored => "not_stored",
            Outcome::Exists => "exists",
            Outcome::NotFound => "not_found",
            Outcome::Deleted => "deleted",
            Outcome::Touched => "touched",
            Outcome::Value => "value",
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Noreply => "noreply",
            Outcome::Lost => "lost",
        }
    }
}

#[cfg(test)]
mod outcome_tests {
    use super::Outcome;

    #[test]
    fn all_is_indexed_by_discriminant() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{o:?}");
        }
    }
}

/// A parsed request header (client → server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub proto: Proto,
    /// Lower-case wire name: "get", "set", "mg", binary "getkq", "noop", ...
    pub command: &'static str,
    pub kind: Kind,
    /// Keys in request order. Text get/gets/gat/gats may carry many; every
    /// other command carries zero or one. Meta `b` keys are returned still
    /// base64-encoded with `key_base64 = true`; the session decodes them.
    pub keys: Keys<'a>,
    pub key_base64: bool,
    /// Value bytes that follow the header (storage payload), excluding the
    /// text/meta trailing `\r\n`.
    pub value_len: u64,
    /// Bytes to skip after `consumed` before the next message: for text and
    /// meta storage commands `value_len + 2`, for binary `value_len`.
    pub skip_after: u64,
    /// Text `noreply`: no response will come.
    pub noreply: bool,
    /// Meta `q` flag or a binary quiet opcode: the server stays silent on
    /// the common outcome (see `Kind`).
    pub quiet: bool,
    /// Binary opaque, or for meta a hash-free copy of the `O` token (up to 32
    /// bytes, stored in `opaque_token`).
    pub opaque: u32,
    pub opaque_token: &'a [u8],
    /// Meta `k` flag: the response echoes the key.
    pub echo_key: bool,
    /// The item's new exptime, as sent (memcached's units: 0 never, up to
    /// 30 days relative seconds, above that a Unix time, negative already
    /// expired): storage commands but append/prepend, touch, gat/gats,
    /// meta `T`, binary extras. For `flush_all` its delay (0: now).
    pub exptime: Option<i64>,
    /// Text admin commands answered by a listing of lines up to `END`
    /// (`lru_crawler metadump`/`mgdump`: newer servers start it with
    /// `OK`), or by a log stream that never ends (`watch`).
    pub listing: bool,
}

impl<'a> Request<'a> {
    /// A request with no keys, no value block and every flag cleared; the
    /// parsers start from this and fill in what the wire says.
    pub fn new(proto: Proto, command: &'static str, kind: Kind) -> Self {
        Request {
            proto,
            command,
            kind,
            keys: Keys::None,
            key_base64: false,
            value_len: 0,
            skip_after: 0,
            noreply: false,
            quiet: false,
            opaque: 0,
            opaque_token: b"",
            echo_key: false,
            exptime: None,
            listing: false,
        }
    }
}

/// Keys of a request, borrowed from the parsed line/packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys<'a> {
    None,
    One(&'a [u8]),
    /// Text multi-key retrieval: the raw key list (space separated tokens
    /// of the request line); iterate with `Keys::iter`.
    Many(&'a [u8]),
}

impl<'a> Keys<'a> {
    pub fn iter(&self) -> KeyIter<'a> {
        match *self {
            Keys::None => KeyIter {
                rest: b"",
                single: None,
            },
            Keys::One(k) => KeyIter {
                rest: b"",
                single: Some(k),
            },
            Keys::Many(list) => KeyIter {
                rest: list,
                single: None,
            },
        }
    }
    pub fn count(&self) -> usize {
        self.iter().count()
    }
}

pub struct KeyIter<'a> {
    rest: &'a [u8],
    single: Option<&'a [u8]>,
}

impl<'a> Iterator for KeyIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(k) = self.single.take() {
            return Some(k);
        }
        let s = self.rest;
        let start = s.iter().position(|&b| b != b' ' && b != b'\t')?;
        let s = &s[start..];
        let end = s
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(s.len());
        self.rest = &s[end..];
        Some(&s[..end])
    }
}

/// A parsed response header (server → client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub proto: Proto,
    pub form: RespForm,
    /// Key carried by the response: text `VALUE <key>`, meta `k` echo (still
    /// base64 when `key_base64`), binary response key (GetK/GetKQ).
    pub key: Option<&'a [u8]>,
    pub key_base64: bool,
    /// Value bytes that follow (VALUE/VA data, binary value), excluding
    /// the trailing `\r\n` of text/meta.
    pub value_len: u64,
    /// Bytes to skip after `consumed` before the next message (text/meta:
    /// `value_len + 2` when a data block follows; binary: `value_len`).
    pub skip_after: u64,
    /// Binary opaque; for meta the echoed `O` token in `opaque_token`.
    pub opaque: u32,
    pub opaque_token: &'a [u8],
    /// Binary: the opcode this response answers.
    pub opcode: Option<u8>,
    /// Binary: status field.
    pub status: u16,
}

impl<'a> Response<'a> {
    /// A response of the given shape with no key, no value block and
    /// zeroed binary fields; the parsers fill in what the wire says.
    pub fn new(proto: Proto, form: RespForm) -> Self {
        Response {
            proto,
            form,
            key: None,
            key_base64: false,
            value_len: 0,
            skip_after: 0,
            opaque: 0,
            opaque_token: b"",
            opcode: None,
            status: 0,
        }
    }
}

/// The shape of a response line/packet, independent of the command it
/// answers; the session maps (Kind, RespForm) to an `Outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RespForm {
    /// Text `VALUE k f n [cas]` (one item of a retrieval; more may follow).
    Value,
    /// Text `END` (ends a retrieval or a stats listing).
    End,
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    /// Text `OK` (flush_all, verbosity, ...).
    Ok,
    /// Text `STAT name value`: one line of a stats listing; more follow.
    Stat,
    /// Text `VERSION x`.
    Version,
    /// A bare number: the answer to incr/decr.
    Number,
    Error,
    ClientError,
    ServerError,
    /// Meta `VA <size> <flags>`: a hit with a value (value_len set).
    MetaVa,
    /// Meta `HD`: success without value.
    MetaHd,
    /// Meta `EN`: miss.
    MetaEn,
    /// Meta `NF`, `NS`, `EX`: not found / not stored / exists.
    MetaNf,
    MetaNs,
    MetaEx,
    /// Meta `MN`: end of a quiet pipeline.
    MetaMn,
    /// Meta `ME <key> ...`: debug answer.
    MetaMe,
    /// A binary response packet; see `status`, `opcode`, `value_len`.
    Binary,
    /// Text response lines that are part of other listings (e.g. `ITEM`
    /// lines of `lru_crawler metadump`, `CONFIG` lines): more follow.
    Line,
    /// Text responses the parser recognised as a final line but that carry
    /// no other meaning (e.g. `RESET`).
    Other,
}
