//! One memcached conversation: parses both directions of a TCP connection
//! (or one UDP exchange) and pairs each response with its request.
//!
//! Pairing rules, by dialect:
//! * text: strictly in order; a multi-key retrieval is answered by `VALUE`
//!   blocks for the hits, in request order, then one `END`; `noreply` and
//!   `quit` get nothing.
//! * meta: in order, but quiet (`q`) requests are silent on their common
//!   outcome; a reply (or `MN`) for a later request resolves every earlier
//!   quiet request by its command's rule (an `mg` without reply is a miss).
//!   An echoed opaque (`O`) or key (`k`) picks the request it answers.
//! * binary: in order with the opaque echoed; quiet opcodes are silent on
//!   success/miss, so a reply for a later request (or a Noop) resolves them.
//!
//! Safety rule: a response is never paired by guesswork. After anything
//! that may have hidden requests or responses (a gap outside a value block,
//! a mid-stream start, a response that does not fit its request), the
//! requests still open are recorded `lost` and a marker makes later
//! responses orphans until the server has acknowledged the next request.

use super::pending::{Pending, Queue, State, KEY_CAP, TS_UNKNOWN};
use super::record::{Record, RecordSink};
use super::rules::{Answer, Swallow};
use crate::decode::{Transport, Ts};
use crate::protocol::detect::{
    find_request_boundary, find_response_boundary, parse_request, parse_response,
};
use crate::protocol::text::KEY_MAX as TEXT_KEY_MAX;
use crate::protocol::{
    BadReason, Kind, Limits, Outcome, Parse, Proto, Request, RespForm, Response,
};
use crate::reassembly::{Dir, SegInfo, StreamHandler};
use crate::stats::Counters;
use base64::Engine as _;
use std::net::SocketAddr;

/// Per-direction parse state.
#[derive(Debug, Default)]
struct Side {
    /// Bytes of a value block still to skip.
    skip: u64,
    /// Entry that completes when the skip ends.
    skip_owner: Option<u64>,
    /// At a known message boundary (false after a gap or mid-stream start).
    synced: bool,
    /// Timestamp of the first byte of the message being assembled.
    msg_ts: Option<Ts>,
    /// Stream offset just past the last consumed byte (request side).
    next_off: u64,
    /// Response side: inside a multi-line response already counted as an
    /// orphan (`VALUE` blocks or `STAT` lines); its further lines and its
    /// `END` belong to it, not to the next request.
    orphan_open: bool,
    /// Request side: inside a `get`/`gets` line too long to hold whole;
    /// its keys are read as they arrive (as memcached reads them).
    keys_open: Option<OpenGet>,
    /// Request side: the rest of such a line is discarded (a key over
    /// memcached's 250 bytes spoiled it).
    keys_spoiled: bool,
    /// Request side: the value block being skipped is text or meta data,
    /// which must end in `\r\n` (checked as it is skipped).
    trailer: bool,
    /// Request side: stream offset up to which lines may be the data block
    /// of a rejected storage command that newer servers swallow.
    phantom_until: u64,
}

/// A long `get` line being read key by key.
#[derive(Debug, Clone, Copy)]
struct OpenGet {
    /// Its queue entry (`None` when it could not be tracked: each key is
    /// then recorded lost as it comes).
    id: Option<u64>,
    ts: Ts,
    command: &'static str,
    /// Keys read so far.
    keys: u64,
}

/// Counters a session bumps; merged into the pipeline's block by its owner.
pub struct Session {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
    limits: Limits,
    req: Side,
    resp: Side,
    queue: Queue,
    /// Where the search for the request a response answers begins, as
    /// (index, id): every entry in front of it is resolved and no marker.
    /// Resolved entries stay queued until the packet's records are emitted,
    /// so a segment of 10,000 pipelined answers searched from the front
    /// each time took 50 million steps. The id tells whether the index
    /// still holds (entries leave the front between packets); entries
    /// never reopen, so an entry behind the mark stays resolved.
    answer_from: (usize, u64),
    /// Given up by a limit beyond repair (`go_sticky`), and whether that
    /// limit was the memory budget.
    sticky: bool,
    sticky_budget: bool,
    pub counters: Counters,
}

/// Text and meta command words a malformed line may start with, so that
/// the `CLIENT_ERROR`/`ERROR` it draws is recorded under its name.
const KNOWN_WORDS: &[&str] = &[
    "get",
    "gets",
    "gat",
    "gats",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "delete",
    "incr",
    "decr",
    "touch",
    "stats",
    "flush_all",
    "version",
    "verbosity",
    "quit",
    "mg",
    "ms",
    "md",
    "ma",
    "mn",
    "me",
];

fn known_word(line: &[u8]) -> &'static str {
    let w = line
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    KNOWN_WORDS
        .iter()
        .find(|k| k.as_bytes() == w)
        .copied()
        .unwrap_or("unknown")
}

impl Session {
    /// `synced` is false when the capture caught the connection mid-stream:
    /// both directions then resynchronise and early responses are orphans.
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        transport: Transport,
        synced: bool,
        limits: Limits,
        max_pending: usize,
        pool: super::pending::Pool,
    ) -> Session {
        let mut s = Session {
            client,
            server,
            transport,
            limits,
            req: Side::default(),
            resp: Side::default(),
            queue: Queue::with_pool(max_pending, pool),
            answer_from: (0, 0),
            sticky: false,
            sticky_budget: false,
            counters: Counters::default(),
        };
        s.reset(client, server, synced);
        s
    }

    /// Reuses the session for another conversation (UDP exchanges are
    /// recycled to keep the steady state allocation-free).
    pub fn reset(&mut self, client: SocketAddr, server: SocketAddr, synced: bool) {
        self.client = client;
        self.server = server;
        self.req = Side {
            synced,
            ..Side::default()
        };
        self.resp = Side {
            synced,
            ..Side::default()
        };
        while self.queue.pop_front().is_some() {}
        self.sticky = false;
        if !synced {
            self.queue.push_marker();
        }
    }

    /// Entries in the pending queue (requests and markers).
    pub fn pending_len(&self) -> usize {
        self.queue.len()
    }

    /// True when no request is waiting for an answer.
    pub fn idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the response stream stands between two responses (not
    /// inside a value block), so that a line there is a response line.
    pub fn between_responses(&self) -> bool {
        self.resp.skip == 0
    }

    /// Whether a UDP exchange is finished: nothing open and no value block
    /// being skipped.
    pub fn settled(&self) -> bool {
        self.resp.skip == 0
            && self.req.skip == 0
            && (0..self.queue.len()).all(|i| {
                let e = self.queue.get(i).expect("index in range");
                e.marker || !e.is_open()
            })
    }

    /// How many requests in the queue ask for `key` (a `get a a` asks
    /// twice, and its reply holds two identical `VALUE` blocks).
    pub fn asks_for(&self, key: &[u8]) -> usize {
        let n = key.len().min(super::pending::KEY_CAP);
        let key = &key[..n];
        self.queue
            .iter()
            .filter(|e| !e.marker && !e.shed)
            .map(|e| {
                (0..e.nkeys)
                    .filter(|&k| self.queue.key_at(e, k) == key)
                    .count()
            })
            .sum()
    }

    /// Pops every resolved entry at the front of the queue into `sink`.
    pub fn emit(&mut self, sink: &mut dyn RecordSink) {
        while let Some(front) = self.queue.front() {
            // Which entry leaves: the record is built from it in place, and
            // it is dropped after (no copy of the entry per record).
            let at = if front.marker && front.is_open() {
                // An open marker keeps guarding the requests behind it, but
                // requests already resolved need not wait for it.
                match self.queue.get(1) {
                    Some(next) if !next.is_open() => 1,
                    // Two open markers in a row guard the same next request:
                    // one suffices. Without this every overflow of a
                    // one-sided connection left one more marker behind,
                    // the queue filled with them and each request walked it.
                    Some(next) if next.marker => 0,
                    _ => break,
                }
            } else if front.is_open() {
                break;
            } else {
                0
            };
            let e = self.queue.get(at).expect("index exists");
            let swallowed = e.phantom && e.outcome == Outcome::Noreply;
            if !e.marker && !e.shed && !swallowed {
                let who = (self.client, self.server, self.transport);
                emit_entry(&self.queue, e, who, &mut self.counters, sink);
            }
            self.queue.discard(at);
        }
        self.queue.shrink_if_empty();
    }

    // ---------------------------------------------------------------- requests

    fn on_request_bytes(
        &mut self,
        data: &[u8],
        stream_off: u64,
        info: &SegInfo,
        mut sink: Option<&mut (dyn RecordSink + '_)>,
    ) -> usize {
        if self.req.skip == 0 && self.req.skip_owner.is_some() {
            // A hole ended exactly at the end of a value block.
            self.finish_request_value(stream_off, info.ts);
        }
        let mut pos = 0;
        let mut ahead = crate::prefetch::Stream::new(data);
        while pos < data.len() {
            ahead.run(data, pos);
            if self.req.skip > 0 {
                let n = (self.req.skip).min((data.len() - pos) as u64);
                if self.req.trailer && self.req.skip <= n + 2 {
                    self.check_trailer(&data[pos..pos + n as usize]);
                }
                self.req.skip -= n;
                pos += n as usize;
                if self.req.skip == 0 {
                    self.finish_request_value(stream_off + pos as u64, info.ts);
                }
                continue;
            }
            let buf = &data[pos..];
            if !self.req.synced {
                match find_request_boundary(buf, &self.limits) {
                    Some(off) => {
                        self.counters.tcp_resync_skipped_bytes += off as u64;
                        pos += off;
                        self.req.synced = true;
                        continue;
                    }
                    None => {
                        let drop = droppable_prefix(buf, self.limits.max_line);
                        self.counters.tcp_resync_skipped_bytes += drop as u64;
                        return pos + drop;
                    }
                }
            }
            if self.req.keys_open.is_some() {
                let n = self.read_keys(buf, stream_off + pos as u64, info.ts, sink.as_deref_mut());
                if n == 0 {
                    return pos;
                }
                pos += n;
                continue;
            }
            if self.req.msg_ts.is_none() {
                self.req.msg_ts = Some(info.ts);
            }
            let parsed = parse_request(buf, &self.limits);
            if matches!(parsed, Parse::Need(_) if buf.len() > LONG_LINE)
                || parsed == Parse::Bad(BadReason::LineTooLong)
            {
                if let Some((command, n)) = long_get(buf) {
                    let ts = self.req.msg_ts.take().unwrap_or(info.ts);
                    self.open_keys(command, ts, sink.as_deref_mut());
                    pos += n;
                    continue;
                }
            }
            match parsed {
                Parse::Need(_) => return pos,
                Parse::Done { consumed, msg } => {
                    let ts = self.req.msg_ts.take().unwrap_or(info.ts);
                    // The opcode as sent: undocumented ones are answered
                    // with their own opcode too.
                    let opcode = if msg.proto == Proto::Binary {
                        buf[1]
                    } else {
                        0
                    };
                    pos += consumed;
                    let end = stream_off + pos as u64;
                    // A line of over 2 KiB may have reached the server in
                    // reads that end before its newline: it then closes
                    // the connection instead of answering.
                    let may_close = msg.proto != Proto::Binary
                        && consumed > LONG_LINE + 2
                        && !matches!(msg.command, "get" | "gets");
                    self.add_request(&msg, opcode, ts, end, info.ts, sink.as_deref_mut());
                    if may_close {
                        if let Some(e) = self.queue.back_mut() {
                            if !e.shed && !e.marker && e.ts == ts && e.command == msg.command {
                                e.optional = true;
                            }
                        }
                    }
                }
                Parse::Bad(reason) => {
                    let ts = self.req.msg_ts.take().unwrap_or(info.ts);
                    let off = stream_off + pos as u64;
                    match self.bad_request(buf, reason, ts, off, info.ts, sink.as_deref_mut()) {
                        Some(n) => pos += n,
                        None => {
                            self.req.synced = false;
                            self.request_gap();
                        }
                    }
                }
            }
        }
        pos
    }

    /// A request line memcached will answer with an error: keeps pairing
    /// aligned by queueing it as its own record. Returns the bytes consumed,
    /// or `None` when the input is not line-shaped (resynchronise).
    fn bad_request(
        &mut self,
        buf: &[u8],
        reason: BadReason,
        ts: Ts,
        off: u64,
        now: Ts,
        mut sink: Option<&mut (dyn RecordSink + '_)>,
    ) -> Option<usize> {
        self.count_bad(reason, true);
        if buf.first() == Some(&0x80) {
            // memcached answers a binary header it cannot frame (key and
            // extras beyond the body, a key over 250 bytes) with an error
            // status, then closes: the error is this request's; nothing
            // after it is read.
            if reason != BadReason::LengthTooLarge && buf.len() >= 24 && self.fits(0, 0) {
                let name = crate::protocol::binary::opcode_name(buf[1]);
                let e = self.push_malformed(Proto::Binary, name, (ts, now, off + 24));
                e.opcode = buf[1];
                e.opaque = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
                // Another server may read on: then it was no request.
                e.optional = true;
                e.phantom = true;
            }
            return None;
        }
        if reason == BadReason::LineTooLong {
            return None;
        }
        let nl = memchr::memchr(b'\n', buf)?;
        let line = &buf[..nl + 1];
        if line.iter().any(|&b| b == 0 || b >= 0x80) {
            // Binary junk with a stray newline: not a command line.
            return None;
        }
        let name = known_word(line);
        let proto = if name.len() == 2 && name.starts_with('m') {
            Proto::Meta
        } else {
            Proto::Text
        };
        if !self.make_room(0, 0, sink.as_deref_mut()) {
            // Not tracked: recorded `lost` at once.
            self.untracked(None, name, proto, Kind::Other, ts, sink);
            return Some(line.len());
        }
        if name == "unknown" {
            self.counters.unknown_commands += 1;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let (answer, swallow) = super::rules::rejected(text);
        let end = off + line.len() as u64;
        let in_phantom = end <= self.req.phantom_until;
        let retrieval = matches!(name, "get" | "gets" | "gat" | "gats");
        let e = self.push_malformed(proto, name, (ts, now, end));
        e.optional = answer == Answer::Maybe || in_phantom || line.len() > LONG_LINE + 2;
        e.phantom = in_phantom;
        if answer == Answer::No {
            e.resolve_silent(Outcome::Noreply);
        }
        if retrieval && reason == BadReason::KeyTooLong {
            // memcached answers the whole request one CLIENT_ERROR: a
            // record for each of its keys says so.
            e.kind = Kind::Retrieve;
            let mut toks = crate::protocol::line::tokens(text);
            toks.next();
            if name.starts_with("gat") {
                toks.next();
            }
            for k in toks {
                self.queue.add_key(k);
            }
        }
        match swallow {
            Swallow::None => {}
            Swallow::Certain(n) => {
                self.req.skip = n + 2;
                self.req.skip_owner = None;
                self.req.trailer = false;
            }
            Swallow::Maybe(n) => self.req.phantom_until = end + n + 2,
        }
        Some(line.len())
    }

    /// Queues a request memcached rejects, whole since `now`; `at` is its
    /// (first byte time, last byte time, end offset).
    fn push_malformed(
        &mut self,
        proto: Proto,
        command: &'static str,
        at: (Ts, Ts, u64),
    ) -> &mut Pending {
        let e = self.queue.push();
        e.proto = proto;
        e.command = command;
        e.kind = Kind::Other;
        e.malformed = true;
        (e.ts, e.req_done_ts, e.req_end_off) = at;
        e.complete = true;
        e
    }

    /// Checks the bytes of `chunk` (the next bytes of a request value
    /// block) that are the block's closing `\r\n`: memcached answers a
    /// block that does not end so with `CLIENT_ERROR bad data chunk`.
    fn check_trailer(&mut self, chunk: &[u8]) {
        // Only the block's last two bytes matter: index them, rather than
        // walk the value (this loop was 30 % of `data` on a capture of
        // ordinary sets).
        let left = self.req.skip;
        for (back, want) in [(2u64, b'\r'), (1, b'\n')] {
            let Some(j) = left.checked_sub(back) else {
                continue;
            };
            let Some(&b) = usize::try_from(j).ok().and_then(|j| chunk.get(j)) else {
                continue;
            };
            if b != want {
                if let Some(e) = self.req.skip_owner.and_then(|id| self.queue.find_id(id)) {
                    e.bad_chunk = true;
                }
            }
        }
    }

    /// Starts a `get`/`gets` line too long to hold: the entry is queued
    /// now and its keys are added as they arrive (`read_keys`).
    fn open_keys(
        &mut self,
        command: &'static str,
        ts: Ts,
        mut sink: Option<&mut (dyn RecordSink + '_)>,
    ) {
        self.counters.long_multigets += 1;
        self.req.keys_spoiled = false;
        let id = if self.make_room(0, 0, sink.as_deref_mut()) {
            let e = self.queue.push();
            e.proto = Proto::Text;
            e.command = command;
            e.kind = Kind::Retrieve;
            e.ts = ts;
            Some(e.id)
        } else {
            // Its keys are recorded lost as they come; its shape is kept.
            self.keep_shape(
                None,
                command,
                Proto::Text,
                Kind::Retrieve,
                ts,
                sink.is_some(),
            );
            None
        };
        self.req.keys_open = Some(OpenGet {
            id,
            ts,
            command,
            keys: 0,
        });
    }

    /// Reads keys of an open long `get` line from `buf`, as memcached
    /// does: tokens split on spaces, each at most 250 bytes (a longer one
    /// spoils the line: memcached answers it with an error). Returns the
    /// bytes consumed; 0 when a key is still incomplete.
    fn read_keys(
        &mut self,
        buf: &[u8],
        off: u64,
        now: Ts,
        mut sink: Option<&mut (dyn RecordSink + '_)>,
    ) -> usize {
        let mut pos = 0;
        loop {
            if self.req.keys_spoiled {
                // The rest of a key too long to hold: skipped.
                match memchr::memchr2(b' ', b'\n', &buf[pos..]) {
                    Some(j) => {
                        pos += j;
                        self.req.keys_spoiled = false;
                    }
                    None => return buf.len(),
                }
            }
            while pos < buf.len() && buf[pos] == b' ' {
                pos += 1;
            }
            let rest = &buf[pos..];
            if rest.is_empty() {
                return pos;
            }
            let Some(j) = memchr::memchr2(b' ', b'\n', rest) else {
                if rest.len() > TEXT_KEY_MAX + 1 {
                    // A key over memcached's limit: the request will be
                    // answered CLIENT_ERROR; its key is kept truncated.
                    self.spoil_keys();
                    self.open_key(&rest[..TEXT_KEY_MAX], sink.as_deref_mut());
                    self.req.keys_spoiled = true;
                    return buf.len();
                }
                return pos;
            };
            let nl = rest[j] == b'\n';
            let mut tok = &rest[..j];
            if nl {
                tok = tok.strip_suffix(b"\r").unwrap_or(tok);
            }
            pos += j + 1;
            if tok.len() > TEXT_KEY_MAX {
                self.spoil_keys();
            }
            if !tok.is_empty() {
                self.open_key(&tok[..tok.len().min(KEY_CAP)], sink.as_deref_mut());
            }
            if nl {
                self.close_keys(off + pos as u64, now);
                return pos;
            }
        }
    }

    /// The open long `get` has a key over 250 bytes: memcached answers it
    /// with a single `CLIENT_ERROR`, which only errors may match.
    fn spoil_keys(&mut self) {
        if let Some(OpenGet { id: Some(id), .. }) = self.req.keys_open {
            if let Some(e) = self.queue.find_id(id) {
                if !e.malformed {
                    e.malformed = true;
                    self.counters.bad_requests += 1;
                }
            }
        }
    }

    /// One more key of the open long `get`.
    fn open_key(&mut self, key: &[u8], mut sink: Option<&mut (dyn RecordSink + '_)>) {
        let Some(open) = self.req.keys_open else {
            return;
        };
        if let Some(o) = self.req.keys_open.as_mut() {
            o.keys += 1;
        }
        if let Some(id) = open.id {
            let tracked = self.queue.back().is_some_and(|e| e.id == id && !e.shed);
            // Room made without shedding it: still the last entry, tracked.
            if tracked
                && self.make_room(1, key.len(), sink.as_deref_mut())
                && self.queue.back().is_some_and(|e| e.id == id && !e.shed)
            {
                self.queue.add_key(key);
                return;
            }
        }
        // Given up (its earlier keys already left as lost) or no room:
        // this key is lost too, recorded at once.
        let by_budget = if self.sticky {
            self.sticky_budget
        } else {
            self.queue.keys() < self.queue.cap()
        };
        self.count_shed(1, by_budget);
        if let Some(sink) = sink {
            self.counters.records += 1;
            self.counters.lost_requests += 1;
            sink.record(&Record {
                ts: open.ts,
                client: self.client,
                server: self.server,
                transport: self.transport,
                proto: Proto::Text,
                command: open.command,
                first: open.keys == 0,
                key: Some(key),
                result: Outcome::Lost,
                req_bytes: 0,
                exptime: None,
                resp_bytes: 0,
                latency_ns: None,
            });
        }
    }

    /// The newline of an open long `get`: the request is whole.
    fn close_keys(&mut self, end_off: u64, now: Ts) {
        if let Some(OpenGet { id: Some(id), .. }) = self.req.keys_open.take() {
            if let Some(e) = self.queue.find_id(id) {
                e.complete = true;
                e.req_done_ts = now;
                e.req_end_off = end_off;
            }
        }
        self.req.keys_spoiled = false;
    }

    fn add_request(
        &mut self,
        r: &Request<'_>,
        opcode: u8,
        ts: Ts,
        end_off: u64,
        now: Ts,
        mut sink: Option<&mut (dyn RecordSink + '_)>,
    ) {
        let (nkeys, key_bytes) = r
            .keys
            .iter()
            .fold((0, 0), |(n, b), k| (n + 1, b + k.len().min(KEY_CAP)));
        let has_value = r.skip_after > 0;
        if !self.make_room(nkeys, key_bytes, sink.as_deref_mut()) {
            // Not tracked: recorded `lost` at once; its value is still
            // skipped by length.
            self.untracked(Some(r), r.command, r.proto, r.kind, ts, sink);
            if has_value {
                self.req.skip = r.skip_after;
                self.req.skip_owner = None;
            }
            return;
        }
        let e = self.queue.push();
        e.proto = r.proto;
        e.command = r.command;
        e.kind = r.kind;
        e.quiet = r.quiet;
        e.noreply = r.noreply;
        e.opaque = r.opaque;
        e.opcode = opcode;
        e.set_token(r.opaque_token);
        e.echo_key = r.echo_key;
        e.listing = r.listing;
        e.ts = ts;
        e.req_bytes = r.value_len;
        e.exptime = r
            .exptime
            .map(|x| x.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
        if end_off <= self.req.phantom_until {
            // Maybe the data block of the rejected line before it.
            e.optional = true;
            e.phantom = true;
        }
        if !has_value {
            e.complete = true;
            e.req_done_ts = now;
            e.req_end_off = end_off;
        }
        let id = e.id;
        let mut truncated = 0u64;
        let mut bad_b64 = false;
        for k in r.keys.iter() {
            if r.key_base64 {
                let mut buf = [0u8; KEY_CAP];
                match base64::engine::general_purpose::STANDARD.decode_slice(k, &mut buf) {
                    Ok(n) => {
                        self.queue.add_key(&buf[..n]);
                    }
                    Err(_) => {
                        bad_b64 = true;
                        self.queue.add_key(k);
                    }
                }
            } else if !self.queue.add_key(k) {
                truncated += 1;
            }
        }
        if bad_b64 {
            self.counters.bad_base64 += 1;
        }
        self.counters.keys_truncated += truncated;
        if has_value {
            self.req.skip = r.skip_after;
            self.req.skip_owner = Some(id);
            self.req.trailer = r.proto != Proto::Binary;
        } else {
            self.settle_silent_last();
        }
    }

    /// noreply and quit requests are final as soon as they are complete.
    fn settle_silent_last(&mut self) {
        if let Some(e) = self.queue.back_mut() {
            // Binary Quit is answered before the close; text quit and QuitQ
            // are not.
            let silent_quit = e.kind == Kind::Quit && (e.proto != Proto::Binary || e.quiet);
            if !e.marker && !e.shed && (e.noreply || silent_quit) && e.is_open() {
                e.resolve_silent(Outcome::Noreply);
            }
        }
    }

    fn finish_request_value(&mut self, end_off: u64, now: Ts) {
        let Some(id) = self.req.skip_owner.take() else {
            return;
        };
        let Some(i) = self.queue.index_of(id) else {
            return;
        };
        let e = self.queue.get_mut(i).expect("in range");
        e.complete = true;
        e.req_done_ts = now;
        e.req_end_off = end_off;
        let silent_quit = e.kind == Kind::Quit && (e.proto != Proto::Binary || e.quiet);
        if !e.shed && (e.noreply || silent_quit) && e.is_open() {
            e.resolve_silent(Outcome::Noreply);
        }
    }

    /// A hole ended exactly at the end of a value block: the message is
    /// whole, but the time of its last byte is unknown.
    fn value_end_lost(&mut self, dir: Dir, len: u64) {
        match dir {
            Dir::Request => {
                // Inside a value block nothing is left unconsumed, so the
                // hole starts where the last consumed byte ended.
                let end = self.req.next_off + len;
                self.req.next_off = end;
                self.finish_request_value(end, TS_UNKNOWN);
            }
            Dir::Response => {
                if let Some(id) = self.resp.skip_owner.take() {
                    if let Some(e) = self.queue.find_id(id) {
                        if e.state == State::Partial {
                            e.state = State::Resolved;
                            e.resp_ts = None;
                        }
                    }
                }
            }
        }
    }

    /// Requests were lost (gap, junk): responses to them would shift the
    /// pairing, so a marker guards what follows.
    fn request_gap(&mut self) {
        self.req.keys_open = None;
        self.req.keys_spoiled = false;
        self.req.skip = 0;
        self.req.skip_owner = None;
        self.req.msg_ts = None;
        self.queue.push_marker();
    }

    /// Every open request may have lost its answer: record them `lost`,
    /// keeping only what a partial answer already proved (`give_up`).
    /// Returns how many records became `lost`.
    fn response_gap(&mut self) -> u64 {
        let owner = self.resp.skip_owner.take();
        self.resp.skip = 0;
        self.resp.msg_ts = None;
        self.resp.synced = false;
        self.resp.orphan_open = false;
        let mut lost = 0;
        for i in 0..self.queue.len() {
            let e = self.queue.get_mut(i).expect("in range");
            if e.is_open() && !e.marker {
                let cut = owner == Some(e.id);
                give_up(e, cut);
                lost += lost_records(&self.queue, self.queue.get(i).expect("in range"));
            }
        }
        self.queue.push_marker();
        lost
    }

    /// Whether a request of `keys` keys (`key_bytes` bytes) can be tracked
    /// now: within the connection's cap and the budget, with room for one
    /// entry more (the marker a gap may push never grows the queue past
    /// the budget).
    fn fits(&mut self, keys: usize, key_bytes: usize) -> bool {
        self.queue.keys() + keys.max(1) <= self.queue.cap()
            && self.queue.reserve(2, keys, key_bytes)
    }

    /// Frees room for a request of `keys` keys: first by handing resolved
    /// entries to `sink` (when the caller has one), then, if the open
    /// requests fill the connection's cap (or the worker's budget cannot
    /// grow the queue), by shedding them (`shed_open`). False when even
    /// then there is no room: the caller records the request `lost` and
    /// keeps only its shape (`track_untracked`).
    fn make_room(
        &mut self,
        keys: usize,
        key_bytes: usize,
        mut sink: Option<&mut (dyn RecordSink + '_)>,
    ) -> bool {
        if self.sticky {
            return false;
        }
        if self.fits(keys, key_bytes) {
            return true;
        }
        if let Some(s) = sink.as_deref_mut() {
            self.emit(s);
            if self.fits(keys, key_bytes) {
                return true;
            }
        }
        // Within the connection's cap, it was the budget that refused.
        let by_budget = self.queue.keys() + keys.max(1) <= self.queue.cap();
        self.shed_open(sink, by_budget);
        !self.sticky && self.fits(keys, key_bytes)
    }

    /// The open requests fill the queue: give them all up (shedding only
    /// the oldest would make no room for long on a connection whose
    /// answers lag). Their records leave now as `lost`; each keeps its
    /// shape (no keys) in the queue, so that its answer, when it comes,
    /// is consumed as its own and never paired with a later request.
    /// Without a sink (a UDP exchange) the records cannot leave yet: the
    /// open requests are given up as after a gap.
    fn shed_open(&mut self, sink: Option<&mut (dyn RecordSink + '_)>, by_budget: bool) {
        let Some(sink) = sink else {
            let orphan_open = self.resp.orphan_open;
            let lost = self.response_gap();
            self.count_shed(lost, by_budget);
            self.resp.synced = true;
            self.resp.orphan_open = orphan_open;
            return;
        };
        let mut lost = 0;
        let who = (self.client, self.server, self.transport);
        let reading = match self.req.keys_open {
            Some(OpenGet { id: Some(id), .. }) => id,
            _ => 0,
        };
        for i in 0..self.queue.len() {
            let e = self.queue.get(i).expect("in range");
            if e.marker || e.shed {
                continue;
            }
            if e.id == reading && e.nkeys == 0 {
                // A long get whose keys are still to come: each will be
                // recorded lost as it arrives (`open_key`).
            } else if e.is_open() {
                let mut copy = e.clone();
                give_up(&mut copy, false);
                lost += lost_records(&self.queue, &copy);
                emit_entry(&self.queue, &copy, who, &mut self.counters, sink);
            } else {
                emit_entry(&self.queue, e, who, &mut self.counters, sink);
            }
            self.queue.shed_entry(i);
        }
        self.queue.forget_keys();
        self.count_shed(lost, by_budget);
        if self.queue.shed_count() > self.queue.shed_cap() {
            // Too many answers owed to keep even their shapes: there is no
            // certain way back for this connection (see `go_sticky`).
            self.go_sticky(by_budget);
        }
    }

    fn count_shed(&mut self, lost: u64, by_budget: bool) {
        if by_budget {
            self.counters.budget_shed_requests += lost;
        } else {
            self.counters.pending_overflow += lost;
        }
    }

    /// Alignment is lost beyond repair by a limit: every request still
    /// owed an answer is given up, and so is the rest of the connection
    /// (its requests recorded `lost`, its responses orphans), since the
    /// answers to the requests dropped cannot be told from later ones.
    /// `by_budget`: the memory budget, not the connection's cap, refused
    /// (the counter that says why, for this and every later request).
    fn go_sticky(&mut self, by_budget: bool) {
        let lost = self.response_gap();
        self.count_shed(lost, by_budget);
        self.sticky = true;
        self.sticky_budget = by_budget;
        self.counters.conns_given_up += 1;
    }

    /// A request that could not be tracked: its records leave now as
    /// `lost`, and its shape stays in the queue so that its answer is not
    /// taken for a later request's. With no room even for that, or no
    /// sink to hand records to, the connection is given up.
    fn untracked(
        &mut self,
        r: Option<&Request<'_>>,
        command: &'static str,
        proto: Proto,
        kind: Kind,
        ts: Ts,
        sink: Option<&mut (dyn RecordSink + '_)>,
    ) {
        let n = r.map_or(1, |r| r.keys.iter().count().max(1));
        let by_budget = if self.sticky {
            self.sticky_budget
        } else {
            n <= self.queue.cap()
        };
        self.count_shed(n as u64, by_budget);
        let has_sink = sink.is_some();
        if let Some(sink) = sink {
            self.emit(sink);
            let mut one = |key: Option<&[u8]>, first: bool| {
                self.counters.records += 1;
                self.counters.lost_requests += 1;
                sink.record(&Record {
                    ts,
                    client: self.client,
                    server: self.server,
                    transport: self.transport,
                    proto,
                    command,
                    first,
                    key,
                    result: Outcome::Lost,
                    req_bytes: r.map_or(0, |r| r.value_len),
                    exptime: None,
                    resp_bytes: 0,
                    latency_ns: None,
                });
            };
            match r {
                Some(r) if r.keys.iter().next().is_some() => {
                    // Keys as the queue would have kept them (truncated;
                    // meta base64 keys as sent).
                    for (i, k) in r.keys.iter().enumerate() {
                        one(Some(&k[..k.len().min(KEY_CAP)]), i == 0);
                    }
                }
                _ => one(None, true),
            }
        }
        self.keep_shape(r, command, proto, kind, ts, has_sink);
    }

    /// Queues the shape (no keys, no record) of a request given up before
    /// it was tracked, so that its answer is consumed as its own. Without
    /// room for it, or without a sink (its records could not leave in
    /// order), the connection is given up (`go_sticky`).
    fn keep_shape(
        &mut self,
        r: Option<&Request<'_>>,
        command: &'static str,
        proto: Proto,
        kind: Kind,
        ts: Ts,
        has_sink: bool,
    ) {
        if !has_sink || self.sticky || !self.queue.reserve(2, 0, 0) {
            if !self.sticky {
                let by_budget = self.queue.keys() < self.queue.cap();
                self.go_sticky(by_budget);
            }
            return;
        }
        let e = self.queue.push();
        e.proto = proto;
        e.command = command;
        e.kind = kind;
        if let Some(r) = r {
            e.quiet = r.quiet;
            e.noreply = r.noreply;
            e.opaque = r.opaque;
            e.set_token(r.opaque_token);
            e.echo_key = r.echo_key;
            e.listing = r.listing;
        }
        e.ts = ts;
        e.complete = true;
        // A request answered by nothing owes nothing.
        let silent_quit = e.kind == Kind::Quit && (e.proto != Proto::Binary || e.quiet);
        if e.noreply || silent_quit {
            e.state = State::Resolved;
        }
        self.queue.shed_entry(self.queue.len() - 1);
    }

    // --------------------------------------------------------------- responses

    fn on_response_bytes(&mut self, data: &[u8], info: &SegInfo) -> usize {
        if self.resp.skip == 0 {
            if let Some(id) = self.resp.skip_owner.take() {
                self.complete_response(id, info.ts);
            }
        }
        let mut pos = 0;
        let mut ahead = crate::prefetch::Stream::new(data);
        while pos < data.len() {
            ahead.run(data, pos);
            if self.resp.skip > 0 {
                let n = (self.resp.skip).min((data.len() - pos) as u64);
                self.resp.skip -= n;
                pos += n as usize;
                if self.resp.skip == 0 {
                    if let Some(id) = self.resp.skip_owner.take() {
                        self.complete_response(id, info.ts);
                    }
                }
                continue;
            }
            let buf = &data[pos..];
            if !self.resp.synced {
                match find_response_boundary(buf, &self.limits) {
                    Some(off) => {
                        self.counters.tcp_resync_skipped_bytes += off as u64;
                        pos += off;
                        self.resp.synced = true;
                        continue;
                    }
                    None => {
                        let drop = droppable_prefix(buf, self.limits.max_line);
                        self.counters.tcp_resync_skipped_bytes += drop as u64;
                        return pos + drop;
                    }
                }
            }
            match parse_response(buf, &self.limits) {
                Parse::Need(_) => return pos,
                Parse::Done { consumed, msg } => {
                    pos += consumed;
                    self.on_response(&msg, info);
                }
                Parse::Bad(reason) => {
                    if let Some(n) = self.listing_line(buf, reason, info) {
                        pos += n;
                        continue;
                    }
                    self.count_bad(reason, false);
                    let _ = self.response_gap();
                }
            }
        }
        pos
    }

    /// Lines of `stats`-like listings that are not response keywords (e.g.
    /// `lru_crawler metadump` output) belong to the open listing.
    fn listing_line(&mut self, buf: &[u8], reason: BadReason, info: &SegInfo) -> Option<usize> {
        if reason != BadReason::UnknownCommand {
            return None;
        }
        let ts = info.ts;
        if self.resp.orphan_open {
            // One more line of a listing already counted as an orphan.
            return memchr::memchr(b'\n', buf).map(|nl| nl + 1);
        }
        let mut i = self.first_open()?;
        while self.queue.get(i)?.marker {
            // Behind a gap marker the line is an orphan, like any other
            // response, until the barrier is passed.
            if !self.barrier_passed(i, info.peer_acked) {
                let nl = memchr::memchr(b'\n', buf)?;
                self.counters.orphan_responses += 1;
                return Some(nl + 1);
            }
            self.queue.get_mut(i)?.state = State::Resolved;
            i = (i + 1..self.queue.len()).find(|&j| {
                let e = self.queue.get(j).expect("in range");
                e.marker || e.is_open()
            })?;
        }
        let e = self.queue.get_mut(i)?;
        if e.proto != Proto::Text || e.kind != Kind::Other || e.command == "unknown" {
            return None;
        }
        let nl = memchr::memchr(b'\n', buf)?;
        if e.command != "stats" && e.command != "lru_crawler" && e.command != "watch" {
            // A one-line answer memtap does not know: take it as the reply.
            e.outcome = Outcome::Ok;
            e.state = State::Resolved;
            e.resp_ts = Some(ts);
        } else {
            e.state = State::Partial;
        }
        Some(nl + 1)
    }

    fn first_open(&mut self) -> Option<usize> {
        let i = self.answer_front();
        (i < self.queue.len()).then_some(i)
    }

    /// Index of the first entry that is open or a marker (`len()` when
    /// none is), found from `answer_from`, which it moves up.
    fn answer_front(&mut self) -> usize {
        let (at, id) = self.answer_from;
        let mut i = match self.queue.get(at) {
            Some(e) if e.id == id => at,
            _ => self.queue.first_from_id(id),
        };
        while let Some(e) = self.queue.get(i) {
            if e.marker || e.is_open() {
                self.answer_from = (i, e.id);
                return i;
            }
            i += 1;
        }
        // All resolved: the next entry pushed lands at `i`.
        self.answer_from = (i, self.queue.next_id());
        i
    }

    fn count_bad(&mut self, reason: BadReason, request: bool) {
        if request {
            self.counters.bad_requests += 1;
        } else {
            self.counters.bad_responses += 1;
        }
        match reason {
            BadReason::LineTooLong => self.counters.line_too_long += 1,
            BadReason::LengthTooLarge => self.counters.length_too_large += 1,
            BadReason::BadBase64 => self.counters.bad_base64 += 1,
            _ => {}
        }
    }

    fn complete_response(&mut self, id: u64, ts: Ts) {
        if let Some(e) = self.queue.find_id(id) {
            if e.state == State::Partial {
                e.state = State::Resolved;
                e.resp_ts = Some(ts);
            }
        }
    }

    /// Pairs one parsed response with the request it answers.
    fn on_response(&mut self, r: &Response<'_>, info: &SegInfo) {
        // The END after an orphan's VALUE or STAT lines ends that orphan:
        // if it pairs with nothing it is not counted again. It is still
        // offered to the queue: when the orphan's own END was lost, this
        // one may answer the request in front.
        let mut ends_orphan = false;
        if self.resp.orphan_open {
            match r.form {
                RespForm::Value | RespForm::Stat => return self.skip_response_value(r),
                RespForm::End => ends_orphan = true,
                _ => {}
            }
            self.resp.orphan_open = false;
        }
        if self.sticky {
            return self.orphan_unless(r, ends_orphan);
        }
        let mut i = self.answer_front();
        loop {
            let Some(e) = self.queue.get(i) else {
                return self.orphan_unless(r, ends_orphan);
            };
            if !e.marker && !e.is_open() {
                i += 1;
                continue;
            }
            if e.marker {
                if self.barrier_passed(i, info.peer_acked) {
                    self.queue.get_mut(i).expect("in range").state = State::Resolved;
                    i += 1;
                    continue;
                }
                return self.orphan_unless(r, ends_orphan);
            }
            match fit(e, self.queue.key(e), r) {
                Fit::Match => return self.apply(i, r, info.ts),
                Fit::SkipQuiet => {
                    let e = self.queue.get_mut(i).expect("in range");
                    let o = if e.optional {
                        Outcome::Noreply
                    } else {
                        quiet_default(e)
                    };
                    e.resolve_silent(o);
                    i += 1;
                }
                Fit::Mismatch if ends_orphan => return,
                Fit::Mismatch => {
                    // Not what this request can receive: something was lost.
                    return self.unpairable(r);
                }
            }
        }
    }

    /// A marker at `i` lets responses through once the server has
    /// acknowledged the whole of the next real request.
    fn barrier_passed(&self, i: usize, peer_acked: Option<u64>) -> bool {
        let next = (i + 1..self.queue.len())
            .map(|j| self.queue.get(j).expect("in range"))
            .find(|e| !e.marker && e.is_open());
        match next {
            None => false,
            Some(e) if !e.complete => false,
            Some(e) => match peer_acked {
                Some(a) => a >= e.req_end_off,
                // No ACK information (UDP has none; a TCP capture without
                // ACK flags is degenerate): the request's presence suffices.
                None => self.transport == Transport::Udp,
            },
        }
    }

    /// A well-framed response that cannot answer the request in front:
    /// the open requests are lost, and its data block is still skipped
    /// (after the gap handling, which clears any skip in progress).
    fn unpairable(&mut self, r: &Response<'_>) {
        let _ = self.response_gap();
        self.resp.synced = true;
        self.orphan(r);
    }

    fn orphan_unless(&mut self, r: &Response<'_>, counted: bool) {
        if !counted {
            self.orphan(r);
        }
    }

    /// Counts a response, not a line: the rest of a multi-line one is
    /// swallowed with it (`orphan_open`).
    fn orphan(&mut self, r: &Response<'_>) {
        self.counters.orphan_responses += 1;
        self.resp.orphan_open =
            r.proto == Proto::Text && matches!(r.form, RespForm::Value | RespForm::Stat);
        self.skip_response_value(r);
    }

    fn skip_response_value(&mut self, r: &Response<'_>) {
        self.resp.skip = r.skip_after;
        self.resp.skip_owner = None;
    }

    fn apply(&mut self, i: usize, r: &Response<'_>, ts: Ts) {
        let e = self.queue.get(i).expect("in range");
        let per_key = e.per_key();
        match r.form {
            RespForm::Value if per_key => {
                // One hit of a text retrieval: find its key among the
                // request's keys.
                let Some(key) = r.key else {
                    return self.orphan(r);
                };
                let (shed, cursor, nkeys) = (e.shed, e.cursor, e.nkeys);
                if shed {
                    // Given up already: its hits are consumed, not counted.
                    let e = self.queue.get_mut(i).expect("in range");
                    e.state = State::Partial;
                    return self.skip_response_value(r);
                }
                // Over TCP the stream is in order: hits come back in
                // request order, so the keys passed over missed. Each VALUE
                // of a UDP reply is a message of its own and a mirror may
                // swap them: a key passed over may still get its VALUE,
                // and the END says which did not.
                let udp = self.transport == Transport::Udp;
                // Every key before the cursor is answered already.
                let Some(k) = self.queue.find_key(i, cursor, key) else {
                    // A VALUE for a key nobody asked for: pairing is off.
                    return self.unpairable(r);
                };
                if !udp {
                    for j in cursor..k {
                        let s = self.queue.slot_mut(i, j);
                        if !s.known {
                            s.known = true;
                            s.outcome = Outcome::Miss;
                        }
                    }
                }
                let s = self.queue.slot_mut(i, k);
                s.known = true;
                s.outcome = Outcome::Hit;
                s.resp_bytes = s
                    .resp_bytes
                    .saturating_add(u32::try_from(r.value_len).unwrap_or(u32::MAX));
                let mut next = if udp { cursor } else { k + 1 };
                while next < nkeys
                    && self
                        .queue
                        .slot(self.queue.get(i).expect("in range"), next)
                        .known
                {
                    next += 1;
                }
                let e = self.queue.get_mut(i).expect("in range");
                e.cursor = next;
                e.state = State::Partial;
                self.resp.skip = r.skip_after;
                self.resp.skip_owner = None;
            }
            RespForm::End | RespForm::Stat | RespForm::Line if per_key => {
                if r.form != RespForm::End {
                    return self.orphan(r);
                }
                // END closes the request; the keys without VALUE missed.
                self.queue.settle_keys(i, Outcome::Miss);
                let e = self.queue.get_mut(i).expect("in range");
                e.outcome = if e.nkeys == 0 {
                    Outcome::Ok
                } else {
                    Outcome::Miss
                };
                e.state = State::Resolved;
                e.resp_ts = Some(ts);
            }
            _ => {
                let (outcome, done) = outcome_of(e, r);
                if per_key {
                    // An error answers every key not yet answered.
                    self.queue.settle_keys(i, outcome);
                }
                let e = self.queue.get_mut(i).expect("in range");
                let id = e.id;
                e.outcome = outcome;
                if e.kind == Kind::Retrieve && matches!(outcome, Outcome::Hit) {
                    e.resp_bytes += r.value_len;
                }
                if per_key {
                    e.state = State::Resolved;
                    e.resp_ts = Some(ts);
                    return;
                }
                if !done {
                    e.state = State::Partial;
                    self.skip_response_value(r);
                    return;
                }
                if r.skip_after > 0 {
                    e.state = State::Partial;
                    self.resp.skip = r.skip_after;
                    self.resp.skip_owner = Some(id);
                } else {
                    e.state = State::Resolved;
                    e.resp_ts = Some(ts);
                }
            }
        }
    }

    /// Resolves every open request as lost, keeping what a partial answer
    /// already proved (connection over).
    fn close(&mut self) {
        if let Some(OpenGet { id: Some(id), .. }) = self.req.keys_open.take() {
            // A get line that never ended was never a request memcached
            // read: like any partial line at the end, it leaves no record.
            if let Some(e) = self.queue.find_id(id) {
                e.phantom = true;
                e.resolve_silent(Outcome::Noreply);
            }
        }
        let owner = self.resp.skip_owner.take();
        for e in self.queue.iter_mut() {
            if e.marker {
                e.state = State::Resolved;
            } else if e.is_open() {
                // Text quit and QuitQ are never answered; a binary Quit
                // always is, so one whose answer was not seen is lost.
                // ... and one that only some servers answer was not answered.
                if (e.kind == Kind::Quit && (e.proto != Proto::Binary || e.quiet)) || e.optional {
                    e.resolve_silent(Outcome::Noreply);
                } else if e.proto == Proto::Text && !e.malformed && e.command == "shutdown" {
                    // A shutdown that worked closes the connection unanswered.
                    e.resolve_silent(Outcome::Noreply);
                } else if e.listing && e.command == "watch" && e.state == State::Partial {
                    // A log stream ends with its connection.
                    e.state = State::Resolved;
                } else {
                    let cut = owner == Some(e.id);
                    give_up(e, cut);
                }
            }
        }
        // Markers left alone at the front would hold nothing back now.
        self.req.skip = 0;
        self.resp.skip = 0;
    }

    /// Ends the conversation and emits everything.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        self.close();
        while let Some(e) = self.queue.front() {
            if e.marker {
                self.queue.pop_front();
                continue;
            }
            break;
        }
        self.emit(sink);
        while self.queue.pop_front().is_some() {}
    }
}

/// Hands the records of entry `e` to `sink`: one per key (a text
/// retrieval's keys each with their own outcome), or one for a keyless
/// command.
fn emit_entry(
    queue: &Queue,
    e: &Pending,
    (client, server, transport): (SocketAddr, SocketAddr, Transport),
    counters: &mut Counters,
    sink: &mut dyn RecordSink,
) {
    let latency = e.latency();
    let mut one = |key: Option<&[u8]>, first: bool, result: Outcome, resp_bytes: u64| {
        counters.records += 1;
        if result == Outcome::Lost {
            counters.lost_requests += 1;
        }
        sink.record(&Record {
            ts: e.ts,
            client,
            server,
            transport,
            proto: e.proto,
            command: e.command,
            first,
            key,
            result,
            req_bytes: e.req_bytes,
            exptime: e.exptime,
            resp_bytes,
            latency_ns: latency,
        });
    };
    if e.nkeys == 0 {
        return one(None, true, e.outcome, e.resp_bytes);
    }
    if !e.per_key() {
        return one(queue.key(e), true, e.outcome, e.resp_bytes);
    }
    for k in 0..e.nkeys {
        let s = queue.slot(e, k);
        let o = if s.known { s.outcome } else { e.outcome };
        one(Some(queue.key_at(e, k)), k == 0, o, s.resp_bytes as u64);
    }
}

/// An open request whose answer will not be seen, or not all of it: what
/// the response already proved stands, the rest is `lost`. A text
/// retrieval's `VALUE` lines prove its hits, and misses for the keys
/// before them (hits come back in request order); a reply whose data
/// block was cut (`cut`) proved its outcome. The latency is unknown.
fn give_up(e: &mut Pending, cut: bool) {
    if e.per_key() {
        // The keys a `VALUE` (or a later one) proved keep their outcome;
        // the rest are lost.
        e.resolve_silent(Outcome::Lost);
        return;
    }
    if e.state == State::Partial && cut {
        e.state = State::Resolved;
        e.resp_ts = None;
    } else {
        e.resolve_silent(Outcome::Lost);
    }
}

/// How many records of a given-up entry say `lost`.
fn lost_records(q: &Queue, e: &Pending) -> u64 {
    if e.marker || e.shed || e.outcome != Outcome::Lost {
        return 0;
    }
    if !e.per_key() || e.nkeys == 0 {
        return 1;
    }
    (0..e.nkeys).filter(|&k| !q.slot(e, k).known).count() as u64
}

/// A request line still without its newline past this many bytes is read
/// key by key when it is a `get`/`gets` (memcached 1.6 treats a line of
/// over 2048 bytes without a newline as a large multi-get, or closes the
/// connection).
const LONG_LINE: usize = 2048;

/// A `get`/`gets` line (after up to 100 leading spaces, as memcached
/// allows): its command name and the bytes up to its first key.
fn long_get(buf: &[u8]) -> Option<(&'static str, usize)> {
    let lead = buf.iter().take(101).take_while(|&&b| b == b' ').count();
    if lead > 100 {
        return None;
    }
    let rest = &buf[lead..];
    if rest.starts_with(b"get ") {
        Some(("get", lead + 4))
    } else if rest.starts_with(b"gets ") {
        Some(("gets", lead + 5))
    } else {
        None
    }
}

/// How much of an unsynchronised buffer can be dropped while keeping any
/// tail that may still begin a message.
fn droppable_prefix(buf: &[u8], max_line: usize) -> usize {
    match memchr::memrchr(b'\n', buf) {
        Some(i) => i + 1,
        None if buf.len() > max_line => buf.len() - 24,
        None => 0,
    }
}

enum Fit {
    Match,
    SkipQuiet,
    Mismatch,
}

fn is_error_form(f: RespForm) -> bool {
    matches!(
        f,
        RespForm::Error | RespForm::ClientError | RespForm::ServerError
    )
}

/// Does response `r` answer open request `e`?
/// `key` is the request's (first) key.
fn fit(e: &Pending, key: Option<&[u8]>, r: &Response<'_>) -> Fit {
    if e.optional {
        // Answered by some servers only: a reply that fits is its own,
        // any other belongs to a later request.
        return match fit_answered(e, key, r) {
            Fit::Match => Fit::Match,
            _ => Fit::SkipQuiet,
        };
    }
    fit_answered(e, key, r)
}

fn fit_answered(e: &Pending, key: Option<&[u8]>, r: &Response<'_>) -> Fit {
    let quiet_skip = if e.quiet {
        Fit::SkipQuiet
    } else {
        Fit::Mismatch
    };
    match (e.proto, r.proto) {
        (Proto::Binary, Proto::Binary) => {
            let op = r.opcode.unwrap_or(0xfe);
            // GetK/GetKQ replies echo the key; Stat replies carry stat
            // names (the request's key, if any, names a stats group),
            // which is no conflict.
            let key_conflict = match (r.key, key) {
                (Some(k), Some(ek)) if !k.is_empty() && e.opcode != STAT_OPCODE => !same_key(k, ek),
                _ => false,
            };
            if op == e.opcode && r.opaque == e.opaque && !key_conflict {
                Fit::Match
            } else if e.quiet {
                Fit::SkipQuiet
            } else if op == e.opcode && !key_conflict {
                // Clients that leave the opaque unset still pair by order.
                Fit::Match
            } else {
                Fit::Mismatch
            }
        }
        (Proto::Binary, _) => quiet_skip,
        // A parsed meta request is never answered a bare `ERROR` (memcached's
        // answer to an unknown command); a quiet one is silent on the
        // outcome its `q` suppresses. Either reply is a later request's.
        // Nor does a quiet mg, md or ms with a sound data block draw a
        // CLIENT_ERROR: its request was well formed (only `ma` on a
        // non-numeric value, or a bad data chunk, can). Such an error is a
        // later malformed request's.
        (Proto::Meta, _)
            if e.quiet
                && (r.form == RespForm::Error
                    || quiet_suppresses(e, r.form)
                    || (r.form == RespForm::ClientError
                        && !e.malformed
                        && e.command != "ma"
                        && !e.bad_chunk)) =>
        {
            Fit::SkipQuiet
        }
        (Proto::Meta, _) if is_error_form(r.form) => Fit::Match,
        (Proto::Meta, Proto::Meta) => {
            let mut buf = [0u8; super::pending::KEY_CAP];
            let rkey = match r.key {
                Some(k) if r.key_base64 => {
                    match base64::engine::general_purpose::STANDARD.decode_slice(k, &mut buf) {
                        Ok(n) => Some(&buf[..n]),
                        Err(_) => Some(k),
                    }
                }
                k => k,
            };
            let rtok = r.opaque_token;
            let conflict = (e.token_len > 0 && !rtok.is_empty() && rtok != e.token())
                || matches!((rkey, key), (Some(k), Some(ek)) if !same_key(k, ek));
            // memcached echoes `k` and `O` on every reply of a request that
            // asked for them, and never otherwise: a reply shaped for
            // another request is not this quiet request's.
            let shaped_otherwise = (e.token_len > 0) == rtok.is_empty()
                || (e.echo_key && rkey.is_none())
                || (!e.echo_key && rkey.is_some() && r.form != RespForm::MetaMe);
            if e.quiet && (conflict || shaped_otherwise) {
                return Fit::SkipQuiet;
            }
            if conflict {
                return Fit::Mismatch;
            }
            if meta_compatible(e, r.form) {
                Fit::Match
            } else {
                quiet_skip
            }
        }
        (Proto::Meta, _) => quiet_skip,
        // `lru_crawler mgdump` ends its listing with a meta `EN`.
        (Proto::Text, Proto::Meta) if e.listing && r.form == RespForm::MetaEn => Fit::Match,
        (Proto::Text, Proto::Text) => {
            if text_compatible(e, r.form) {
                Fit::Match
            } else {
                Fit::Mismatch
            }
        }
        (Proto::Text, _) => Fit::Mismatch,
    }
}

/// Binary Stat, answered by one packet per statistic.
const STAT_OPCODE: u8 = 0x10;

/// The replies memcached 1.6 leaves out for a quiet (`q`) meta request:
/// `EN` of mg, `HD` of ms/md, `HD` or `VA` of a successful ma (`NF`, `NS`,
/// `EX` and errors are still sent; an mg hit is still sent).
fn quiet_suppresses(e: &Pending, f: RespForm) -> bool {
    match e.command {
        "mg" => f == RespForm::MetaEn,
        "ms" | "md" => f == RespForm::MetaHd,
        "ma" => matches!(f, RespForm::MetaHd | RespForm::MetaVa),
        _ => false,
    }
}

/// Keys are stored truncated at `KEY_CAP`; compare on that prefix.
fn same_key(wire: &[u8], stored: &[u8]) -> bool {
    let n = wire.len().min(super::pending::KEY_CAP);
    stored.len() == n && &wire[..n] == stored
}

fn meta_compatible(e: &Pending, f: RespForm) -> bool {
    use RespForm::*;
    if is_error_form(f) {
        return true;
    }
    if e.malformed {
        return false;
    }
    match e.command {
        "mg" => matches!(f, MetaVa | MetaHd | MetaEn),
        "ms" => matches!(f, MetaHd | MetaNs | MetaEx | MetaNf),
        "md" => matches!(f, MetaHd | MetaNf | MetaEx),
        "ma" => matches!(f, MetaHd | MetaVa | MetaNf | MetaNs | MetaEx),
        "mn" => f == MetaMn,
        "me" => matches!(f, MetaMe | MetaEn),
        _ => true,
    }
}

fn text_compatible(e: &Pending, f: RespForm) -> bool {
    use RespForm::*;
    if is_error_form(f) {
        return true;
    }
    if e.malformed {
        return false;
    }
    if e.listing {
        return matches!(f, Ok | Line | Stat | End | Other);
    }
    match e.kind {
        Kind::Retrieve => matches!(f, Value | End),
        Kind::Store => matches!(f, Stored | NotStored | Exists | NotFound),
        Kind::Delete => matches!(f, Deleted | NotFound),
        Kind::Arith => matches!(f, Number | NotFound),
        Kind::Touch => matches!(f, Touched | NotFound),
        Kind::Noop | Kind::Quit => false,
        Kind::Other => match e.command {
            "stats" => matches!(f, Stat | End | Line | Ok | Other),
            "version" => f == Version,
            "unknown" => false,
            _ => matches!(f, Ok | End | Stat | Line | Other | Version),
        },
    }
}

/// What a silent quiet request means.
fn quiet_default(e: &Pending) -> Outcome {
    match e.kind {
        Kind::Retrieve => Outcome::Miss,
        Kind::Store => Outcome::Stored,
        Kind::Delete => Outcome::Deleted,
        Kind::Arith => Outcome::Value,
        Kind::Touch => Outcome::Touched,
        Kind::Quit => Outcome::Noreply,
        _ => Outcome::Ok,
    }
}

/// Outcome of a non-`VALUE` response, and whether it ends the answer.
fn outcome_of(e: &Pending, r: &Response<'_>) -> (Outcome, bool) {
    use RespForm::*;
    if e.listing && !is_error_form(r.form) {
        // OK (newer servers), the listing's lines, then END (or EN).
        return (Outcome::Ok, matches!(r.form, End | MetaEn));
    }
    let o = match r.form {
        Error => Outcome::Error,
        ClientError => Outcome::ClientError,
        ServerError => Outcome::ServerError,
        Binary => return binary_outcome(e, r),
        Stored => Outcome::Stored,
        NotStored | MetaNs => Outcome::NotStored,
        Exists | MetaEx => Outcome::Exists,
        NotFound => Outcome::NotFound,
        Deleted => Outcome::Deleted,
        Touched => Outcome::Touched,
        Number => Outcome::Value,
        Stat | Line => return (Outcome::Ok, false),
        Ok | End | Version | Other | MetaMn | MetaMe => Outcome::Ok,
        MetaVa => match e.kind {
            Kind::Arith => Outcome::Value,
            _ => Outcome::Hit,
        },
        MetaHd => match e.kind {
            Kind::Retrieve => Outcome::Hit,
            Kind::Store => Outcome::Stored,
            Kind::Delete => Outcome::Deleted,
            Kind::Arith => Outcome::Value,
            Kind::Touch => Outcome::Touched,
            _ => Outcome::Ok,
        },
        // `me` is a debug command, not a retrieval: its EN is "no such key".
        MetaEn if e.kind != Kind::Retrieve => Outcome::NotFound,
        MetaEn => Outcome::Miss,
        MetaNf => match e.kind {
            Kind::Retrieve => Outcome::Miss,
            _ => Outcome::NotFound,
        },
        Value => Outcome::Hit,
    };
    (o, true)
}

/// Binary status codes (protocol_binary.h) to outcomes.
fn binary_outcome(e: &Pending, r: &Response<'_>) -> (Outcome, bool) {
    let o = match r.status {
        0x0000 => match e.kind {
            Kind::Retrieve => Outcome::Hit,
            Kind::Store => Outcome::Stored,
            Kind::Delete => Outcome::Deleted,
            Kind::Arith => Outcome::Value,
            Kind::Touch => Outcome::Touched,
            _ => Outcome::Ok,
        },
        0x0001 => match e.kind {
            Kind::Retrieve => Outcome::Miss,
            _ => Outcome::NotFound,
        },
        0x0002 => Outcome::Exists,
        0x0005 => Outcome::NotStored,
        0x0004 | 0x0006 => Outcome::ClientError,
        0x0021 => Outcome::Ok,
        0x0003 | 0x0082 | 0x0084 | 0x0085 | 0x0086 => Outcome::ServerError,
        _ => Outcome::Error,
    };
    // A Stat reply is a series of packets ended by one with an empty key.
    let done = !(e.command == "stat" && r.status == 0 && r.key.is_some_and(|k| !k.is_empty()));
    (o, done)
}

impl Session {
    fn data(
        &mut self,
        dir: Dir,
        data: &[u8],
        stream_off: u64,
        info: &SegInfo,
        sink: Option<&mut (dyn RecordSink + '_)>,
    ) -> usize {
        match dir {
            Dir::Request => {
                let n = self.on_request_bytes(data, stream_off, info, sink);
                self.req.next_off = stream_off + n as u64;
                n
            }
            Dir::Response => self.on_response_bytes(data, info),
        }
    }
}

/// A session fed by the reassembler that hands finished records to `sink`
/// as it parses: one segment may carry thousands of pipelined requests,
/// and without a sink the records the queue sheds would wait in it until
/// the segment ends.
pub struct Emitting<'a> {
    pub session: &'a mut Session,
    pub sink: &'a mut dyn RecordSink,
}

impl StreamHandler for Emitting<'_> {
    fn on_data(&mut self, dir: Dir, data: &[u8], stream_off: u64, info: &SegInfo) -> usize {
        self.session
            .data(dir, data, stream_off, info, Some(&mut *self.sink))
    }

    fn on_gap(&mut self, dir: Dir, len: u64, info: &SegInfo) {
        self.session.on_gap(dir, len, info);
    }

    fn on_close(&mut self, info: &SegInfo) {
        self.session.on_close(info);
    }
}

impl StreamHandler for Session {
    fn on_data(&mut self, dir: Dir, data: &[u8], stream_off: u64, info: &SegInfo) -> usize {
        self.data(dir, data, stream_off, info, None)
    }

    fn on_gap(&mut self, dir: Dir, len: u64, _info: &SegInfo) {
        let side = match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        };
        side.msg_ts = None;
        if len > 0 && side.skip >= len {
            // The hole lies inside a value block: skip it by its length.
            side.skip -= len;
            self.counters.value_gap_bytes += len;
            if side.skip == 0 {
                self.value_end_lost(dir, len);
            }
            return;
        }
        side.synced = false;
        match dir {
            Dir::Request => self.request_gap(),
            Dir::Response => {
                let _ = self.response_gap();
            }
        }
    }

    fn on_close(&mut self, _info: &SegInfo) {
        self.close();
    }
}
