//! memcached over UDP: one exchange per (client, server, request id).
//!
//! A request must fit in one datagram. memcached 1.6 answers with a series
//! of *messages* under the request's id, each numbered on its own (field
//! notes): a message that fits one datagram is "sequence 0 of 1", a larger
//! one (a big value, or a whole single-key reply) is n datagrams "0..n-1
//! of n", and an empty "0 of 0" datagram may come first. The reply is one
//! text stream across its messages: the datagrams of a message are fed in
//! sequence order (one that arrives ahead of its turn waits, copied, in its
//! exchange), messages in arrival order, to a `Session` (the same pairing
//! rules as TCP) until it has nothing open; an exchange that does not
//! settle within the timeout is recorded as lost.
//!
//! A mirror port often delivers a response a few packets before its
//! request (field notes). A response datagram with no exchange is held,
//! copied, for a bounded packet time; when its request shows up, what was
//! held for it is replayed in arrival order, each datagram with its own
//! timestamp, exactly as if it had come after the request. One never
//! claimed is an orphan.
//!
//! The messages of one reply may be swapped or duplicated on the way too.
//! Each `VALUE` message pairs with its key wherever it sits in the request,
//! and the `END` that closes the reply is kept back (not copied: its bytes
//! are known) until `LINGER_DATAGRAMS` further datagrams or the hold time
//! have passed, so a `VALUE` overtaken by its `END` still counts. A settled
//! exchange lingers as long, so that a byte-identical copy of one of its
//! datagrams is recognised as a duplicate rather than taken for an orphan
//! or a new request.
//!
//! Timers run on the latest packet time seen, so a capture whose
//! timestamps step back never rewinds (or underflows) them.

use super::conn::Session;
use super::pending::Pool;
use super::record::RecordSink;
use crate::decode::{Transport, Ts};
use crate::protocol::Limits;
use crate::reassembly::udp::{parse_udp_frame, UdpFrame};
use crate::reassembly::{Dir, SegInfo, StreamHandler};
use crate::stats::Counters;
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Bounds and timers of a `UdpTable` (packet time).
#[derive(Debug, Clone, Copy)]
pub struct UdpConfig {
    /// Exchanges awaiting answers at once (`udp_pending_overflow` beyond).
    pub max_pending: usize,
    /// An exchange not settled after this long is given up (`udp_timeouts`).
    pub timeout_ns: u64,
    /// Bytes one exchange keeps unconsumed, and bytes it keeps waiting for
    /// an earlier datagram of their message (each).
    pub max_carry: usize,
    /// How long a response with no request waits for it; 0 disables holding.
    pub hold_ns: u64,
    /// Responses held at once (`udp_hold_full` beyond).
    pub max_held: usize,
    /// Bytes of held responses and of waiting datagrams, across the table.
    pub max_buffered: usize,
    /// Datagrams a finished exchange waits for stragglers and copies (its
    /// `END` held back meanwhile), at most `hold_ns`; 0 settles at once.
    pub linger_datagrams: u64,
    /// Capacity of all exchanges' carries together, beyond the
    /// `KEEP_CARRY` each keeps (`budget_shed_carry_bytes` beyond).
    pub max_carry_total: usize,
}

/// The default `linger_datagrams`: a mirror reorders within a few packets,
/// and an exchange's own datagrams are only part of the table's.
pub const LINGER_DATAGRAMS: u64 = 8;

/// Response fingerprints an exchange remembers (the latest ones): a copy
/// follows its original within a few packets.
const RECENT: usize = 16;

/// The `END` line that closes a retrieval's reply.
const END_LINE: &[u8] = b"END\r\n";

/// Buffers larger than this are freed rather than recycled, so one huge
/// reply does not pin its memory in every spare.
const RECYCLE_MAX: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: SocketAddr,
    server: SocketAddr,
    req_id: u16,
}

/// A datagram waiting in its exchange for the pieces before it.
#[derive(Debug, Clone, Copy)]
struct Part {
    seq: u16,
    total: u16,
    info: SegInfo,
    start: usize,
    len: usize,
    print: u64,
    /// A piece identical to one taken before it came, while no repeated
    /// message was being fed: most likely a copy, though it may be a piece
    /// of a repeated message (`get a a`) that overtook its first datagram.
    suspect: bool,
}

struct Exchange {
    session: Session,
    /// Response bytes not yet consumed (a line or value may span datagrams).
    carry: Vec<u8>,
    /// Capacity of `carry` beyond `KEEP_CARRY` drawn from the table's room.
    carry_charged: usize,
    /// Datagrams in the message being fed; 0 between messages.
    msg_total: u16,
    /// The sequence number that message needs next.
    msg_next: u16,
    /// Bytes the message being fed still needs, when its first datagram
    /// said (a `VALUE` line declares its data length): datagrams carry no
    /// message number, so the last piece of another message with as many
    /// datagrams fits its place too, and only its size tells them apart.
    msg_rest: Option<u64>,
    /// Datagrams that arrived ahead of their turn, in arrival order; their
    /// payloads lie in `parked_buf`.
    parked: Vec<Part>,
    parked_buf: Vec<u8>,
    last: Ts,
    /// Fingerprint of the request datagram, to tell a mirror's duplicate
    /// copy from a new request reusing the id.
    req_print: u64,
    /// Packet time of that request datagram.
    req_ts: Ts,
    /// Packet time of the first response datagram taken.
    first_resp: Option<Ts>,
    /// Fingerprints of the latest response datagrams taken (a ring).
    recent: [u64; RECENT],
    recent_n: usize,
    /// The message being fed began with a datagram seen before (a repeated
    /// `VALUE` message), so pieces identical to earlier ones belong to it.
    head_repeat: bool,
    /// Set once the reply is complete or its `END` came: the exchange
    /// lingers for stragglers and copies.
    closing: Option<Closing>,
}

#[derive(Debug, Clone, Copy)]
struct Closing {
    /// The `END` held back, with the time and place it came.
    end: Option<SegInfo>,
    /// Names this closing in the table's queue.
    ticket: u64,
    /// The client has sent its next request from this socket: the held
    /// `END` goes in before the server's next records for the client.
    moved_on: bool,
}

/// How far apart (packet time, either way) two byte-identical request
/// datagrams may be and still be one request seen twice. A mirror's or
/// the network's duplicate follows its original within microseconds; a
/// client that reuses an id with the same bytes does so after a round
/// trip at least (the crafted Flightplan trace repeats a datagram 9 ms
/// and more later), and that is a second request.
const DUPLICATE_WINDOW: Ts = 2_000_000;

/// A response datagram's fingerprint: its length, its first 40 bytes
/// (frame header and the response line, which names the key) and its last
/// 32. Two different datagrams of one exchange that agree on all of these
/// are not to be expected; reading whole 1.4 KB payloads would cost more
/// than the rest of the UDP path.
fn datagram_print(d: &[u8]) -> u64 {
    let head = &d[..d.len().min(40)];
    let tail = &d[d.len().saturating_sub(32)..];
    let mut h = (d.len() as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xff51_afd7_ed55_8ccd);
    for c in head.chunks(8).chain(tail.chunks(8)) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0xc4ce_b9fe_1a85_ec53)
            .rotate_left(31);
    }
    h
}

/// The key of a `VALUE` line at the start of a message.
fn value_key(payload: &[u8]) -> Option<&[u8]> {
    let rest = payload.strip_prefix(b"VALUE ")?;
    let end = rest.iter().position(|&b| b == b' ' || b == b'\r')?;
    Some(&rest[..end])
}

/// The length of a message that starts with a `VALUE` line: the line,
/// its data and the data's `\r\n`.
fn value_message_len(payload: &[u8]) -> Option<u64> {
    let line_end = memchr::memchr(b'\n', payload)?;
    let line = payload[..line_end].strip_suffix(b"\r")?;
    let mut toks = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    if toks.next()? != b"VALUE" {
        return None;
    }
    let bytes = toks.nth(2)?;
    let bytes: u64 = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    Some(line_end as u64 + 1 + bytes + 2)
}

/// FNV-1a over a request datagram: requests are short, and a collision
/// only makes a reused id look like a duplicate of identical bytes.
fn fingerprint(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Exchange {
    /// Whether datagram `seq` of `total` continues the reply stream now.
    fn fits(&self, seq: u16, total: u16, len: usize) -> bool {
        if self.msg_total == 0 {
            seq == 0
        } else {
            total == self.msg_total
                && seq == self.msg_next
                // A last piece is the rest of its message, maybe with the
                // reply's END after it.
                && (seq + 1 < total
                    || self
                        .msg_rest
                        .is_none_or(|r| len as u64 == r || len as u64 == r + END_LINE.len() as u64))
        }
    }

    /// Notes that datagram `msg_next` (or 0) of `total`, `payload`, was fed.
    fn advance(&mut self, total: u16, payload: &[u8]) {
        if self.msg_total == 0 {
            if total > 1 {
                self.msg_total = total;
                self.msg_next = 1;
                self.msg_rest =
                    value_message_len(payload).and_then(|n| n.checked_sub(payload.len() as u64));
            }
        } else {
            self.msg_next += 1;
            self.msg_rest = self
                .msg_rest
                .and_then(|r| r.checked_sub(payload.len() as u64));
            if self.msg_next == self.msg_total {
                self.msg_total = 0;
                self.msg_next = 0;
                self.msg_rest = None;
            }
        }
    }

    /// How many datagrams with this fingerprint were taken lately.
    fn times_seen(&self, print: u64) -> usize {
        self.recent[..self.recent_n.min(RECENT)]
            .iter()
            .filter(|&&p| p == print)
            .count()
    }

    /// Whether a datagram is a copy of one taken lately. A piece after
    /// the first of a message is a copy when its place is already filled;
    /// a message's first datagram when it was seen byte for byte, except
    /// the `VALUE` messages of a key the request names more than once
    /// (`get a a`), each of which is an answer of its own.
    fn is_copy(&self, frame: &UdpFrame<'_>, print: u64) -> bool {
        if frame.seq > 0 {
            // Between messages an identical piece may also belong to a
            // repeated message whose first datagram is still to come: it
            // waits, marked (`Part::seen_before`), and is sorted out then.
            // (A piece of another message of the same size may come while
            // one is being fed: only an identical one is a copy.)
            return (self.msg_total == frame.total
                && frame.seq < self.msg_next
                && self.times_seen(print) > 0)
                || self.parked.iter().any(|p| p.print == print);
        }
        let times = self.times_seen(print);
        if times == 0 {
            return false;
        }
        match value_key(frame.payload) {
            Some(key) => times >= self.session.asks_for(key),
            None => true,
        }
    }

    fn remember(&mut self, print: u64) {
        self.recent[self.recent_n % RECENT] = print;
        self.recent_n += 1;
    }

    /// Whether a waiting part may be fed now: it is next in the message,
    /// and not a copy of an earlier piece (unless this message repeats one).
    fn takes(&self, p: &Part) -> bool {
        self.fits(p.seq, p.total, p.len) && !p.suspect
    }

    /// The part to feed next: one that is next and no suspect. A suspect
    /// that is next only as a last resort, or when the message being fed
    /// repeats an earlier one (so its pieces are identical to earlier ones)
    /// and the reply has gone on past its place: a later piece of this
    /// message or the start of another is waiting.
    fn next_part(&self, last_resort: bool) -> Option<usize> {
        if let Some(i) = self.parked.iter().position(|p| self.takes(p)) {
            return Some(i);
        }
        let stalled = self.head_repeat
            && self.msg_total > 0
            && self.parked.iter().any(|p| {
                !p.suspect && (p.seq == 0 || p.total == self.msg_total && p.seq > self.msg_next)
            });
        if !(last_resort || stalled) {
            return None;
        }
        self.parked
            .iter()
            .position(|p| p.suspect && self.fits(p.seq, p.total, p.len))
    }

    /// Notes that a message's first datagram was fed.
    fn began(&mut self, seq: u16, print: u64) {
        if seq == 0 {
            self.head_repeat = self.times_seen(print) > 1;
        }
    }

    /// Feeds the waiting parts that have become next; with `last_resort`
    /// also those taken for copies. A part is fed at the latest time of the
    /// pieces so far (`now` at least): the reply was not whole before the
    /// last of them arrived. Returns the `END` kept back (with `may_hold`)
    /// and the bytes fed.
    fn drain_parked(
        &mut self,
        now: Ts,
        room: &mut CarryRoom,
        mut may_hold: bool,
        last_resort: bool,
    ) -> (Option<SegInfo>, usize) {
        let mut held_end = None;
        let mut fed = 0;
        while let Some(i) = self.next_part(last_resort) {
            let p = self.parked.remove(i);
            self.began(p.seq, p.print);
            let buf = std::mem::take(&mut self.parked_buf);
            self.advance(p.total, &buf[p.start..p.start + p.len]);
            self.parked_buf = buf;
            let at = SegInfo {
                ts: p.info.ts.max(now),
                ..p.info
            };
            let data = std::mem::take(&mut self.parked_buf);
            let hold = may_hold && self.msg_total == 0;
            let end = feed_holding_end(self, &data[p.start..p.start + p.len], &at, room, hold);
            self.parked_buf = data;
            if end.is_some() {
                held_end = end;
                may_hold = false;
            }
            fed += p.len;
        }
        if self.parked.is_empty() {
            self.parked_buf.clear();
        }
        (held_end, fed)
    }

    /// Drops every waiting part (the reply is over): those identical to
    /// a datagram taken (copies) and the others (pieces whose message never
    /// completed). Returns (copies, their bytes, the others' bytes).
    fn drop_leftovers(&mut self) -> (u64, usize, usize) {
        let (mut n, mut copy_bytes, mut other_bytes) = (0, 0, 0);
        for p in &self.parked {
            // Each part was remembered on arrival: twice means a copy.
            if p.suspect || self.times_seen(p.print) > 1 {
                n += 1;
                copy_bytes += p.len;
            } else {
                other_bytes += p.len;
            }
        }
        self.parked.clear();
        self.parked_buf.clear();
        (n, copy_bytes, other_bytes)
    }

    /// Whether the next datagram starts a message (nothing half-fed).
    fn at_boundary(&self) -> bool {
        self.msg_total == 0 && self.parked.is_empty() && self.carry.is_empty()
    }

    /// Forgets every waiting datagram; returns their bytes.
    fn unpark_all(&mut self) -> usize {
        let n = self.parked.iter().map(|p| p.len).sum();
        self.parked.clear();
        self.parked_buf.clear();
        n
    }
}

/// Bounds on the bytes exchanges carry from one datagram to the next (a
/// line split across datagrams): per exchange, and the capacity of all
/// carries together (the table's share of the memory budget).
#[derive(Debug, Clone, Copy)]
struct CarryRoom {
    max_carry: usize,
    /// Carry capacity beyond `KEEP_CARRY` drawn by live exchanges.
    used: usize,
    cap: usize,
}

/// Carry capacity an exchange keeps across reuse, part of its fixed cost
/// (see `EXCHANGE_COST`); only capacity beyond it is drawn from the room.
pub const KEEP_CARRY: usize = 1024;

/// Another exchange of the same client socket and server.
fn same_flow(a: &Key, b: &Key) -> bool {
    a.client == b.client && a.server == b.server && a.req_id != b.req_id
}

/// Hands reply bytes to the session, keeping what it did not consume.
fn feed(x: &mut Exchange, data: &[u8], info: &SegInfo, room: &mut CarryRoom) {
    let s = &mut x.session;
    let carry = &mut x.carry;
    if carry.is_empty() {
        let used = s.on_data(Dir::Response, data, 0, info);
        carry.extend_from_slice(&data[used..]);
    } else {
        carry.extend_from_slice(data);
        let used = s.on_data(Dir::Response, carry, 0, info);
        carry.drain(..used);
    }
    if carry.len() > room.max_carry {
        carry.clear();
        s.on_gap(Dir::Response, 0, info);
    }
    let billable = carry.capacity().saturating_sub(KEEP_CARRY);
    if billable > x.carry_charged {
        let grow = billable - x.carry_charged;
        if room.used + grow > room.cap {
            // The table's carry share is spent: this partial line is shed
            // and the reply resynchronises after it.
            s.counters.budget_shed_carry_bytes += carry.len() as u64;
            *carry = Vec::new();
            room.used -= x.carry_charged;
            x.carry_charged = 0;
            s.on_gap(Dir::Response, 0, info);
            return;
        }
        room.used += grow;
        x.carry_charged = billable;
    }
}

/// Gives back an exchange's carry (it is being recycled): a large one is
/// freed, a small one kept for the next exchange.
fn release_carry(x: &mut Exchange, room: &mut CarryRoom) {
    room.used -= x.carry_charged;
    x.carry_charged = 0;
    x.carry.clear();
    if x.carry.capacity() > KEEP_CARRY {
        x.carry = Vec::new();
    }
}

/// Feeds a datagram's payload; with `hold`, an `END` line that ends it at
/// a response boundary is kept back instead and its time returned.
fn feed_holding_end(
    x: &mut Exchange,
    data: &[u8],
    info: &SegInfo,
    room: &mut CarryRoom,
    hold: bool,
) -> Option<SegInfo> {
    if let Some(body) = data.strip_suffix(END_LINE).filter(|_| hold) {
        feed(x, body, info, room);
        // Inside a value block the same bytes are data, not a line.
        if x.carry.is_empty() && x.session.between_responses() {
            return Some(*info);
        }
        feed(x, END_LINE, info, room);
        return None;
    }
    feed(x, data, info, room);
    None
}

/// A response datagram (header included) seen before its request.
struct Held {
    /// `None` once replayed; the entry waits to be popped.
    key: Option<Key>,
    /// Table clock when it was held.
    at: Ts,
    info: SegInfo,
    data: Vec<u8>,
}

/// All open UDP exchanges of one pipeline, and responses held for
/// requests not seen yet.
pub struct UdpTable {
    map: HashMap<Key, usize>,
    slots: Vec<Option<(Key, Exchange)>>,
    /// Recycled exchanges, so steady state allocates nothing.
    spare: Vec<Exchange>,
    free_slots: Vec<usize>,
    limits: Limits,
    cfg: UdpConfig,
    last_sweep: Ts,
    /// Latest packet time seen.
    clock: Ts,
    /// Held responses in arrival order (hence in `at` order).
    held: VecDeque<Held>,
    /// Live held responses per key: a request finds its own without a scan,
    /// and with none held it costs nothing.
    held_of: HashMap<Key, u32>,
    held_live: usize,
    /// Bytes held plus bytes waiting in exchanges.
    buffered: usize,
    spare_bufs: Vec<Vec<u8>>,
    /// Capacity of `spare_bufs`.
    spare_bytes: usize,
    /// Datagrams seen (both directions): the lingering exchanges' clock.
    datagrams: u64,
    /// Lingering exchanges in the order they began to: (key, ticket,
    /// `datagrams` then, clock then). Entries whose exchange went another
    /// way are skipped when they come up.
    closing: VecDeque<(Key, u64, u64, Ts)>,
    /// Lingering exchanges with an `END` held whose client moved on.
    moved_on: usize,
    next_ticket: u64,
    carry_room: CarryRoom,
    /// The pending-request budget the exchanges' sessions draw on.
    requests: Pool,
    pub counters: Counters,
}

impl UdpTable {
    pub fn new(limits: Limits, cfg: UdpConfig) -> UdpTable {
        UdpTable {
            // Sized once for the most exchanges: slots and spares never
            // double (untouched capacity costs address space, not memory).
            map: HashMap::with_capacity(cfg.max_pending.clamp(1, 1 << 20)),
            slots: Vec::with_capacity(cfg.max_pending.clamp(1, 1 << 20)),
            spare: Vec::with_capacity(cfg.max_pending.clamp(1, 1 << 20)),
            free_slots: Vec::new(),
            limits,
            cfg: UdpConfig {
                max_pending: cfg.max_pending.max(1),
                ..cfg
            },
            last_sweep: 0,
            clock: 0,
            held: VecDeque::new(),
            held_of: HashMap::new(),
            held_live: 0,
            buffered: 0,
            spare_bufs: Vec::new(),
            spare_bytes: 0,
            datagrams: 0,
            closing: VecDeque::new(),
            moved_on: 0,
            next_ticket: 0,
            carry_room: CarryRoom {
                max_carry: cfg.max_carry,
                used: 0,
                cap: cfg.max_carry_total,
            },
            requests: Pool::default(),
            counters: Counters::default(),
        }
    }

    /// Bytes one exchange costs (see `budget::Costs::exchange`): its
    /// slot, a recycled copy (the table keeps as many spares as it had
    /// exchanges; both sized once, never doubled), its map entry with
    /// hash-table slack, its place in the closing queue and free list, the
    /// two buffers it keeps across reuse, and the first entries of its
    /// session's queue.
    pub fn bytes_per_exchange() -> usize {
        use std::mem::size_of;
        size_of::<Option<(Key, Exchange)>>()
            + size_of::<Exchange>()
            + 2 * size_of::<usize>()
            + (size_of::<(Key, usize)>() + 1) * 16 / 7
            + 2 * size_of::<(Key, u64, u64, Ts)>()
            + KEEP_CARRY
            + super::pending::FREE_ENTRIES * size_of::<super::pending::Pending>()
    }

    /// Makes the exchanges' sessions draw their pending requests from
    /// `pool` (before any exchange exists).
    pub fn with_request_pool(mut self, pool: Pool) -> UdpTable {
        debug_assert!(self.slots.is_empty());
        self.requests = pool;
        self
    }

    /// Carry capacity drawn beyond what each exchange keeps.
    pub fn carry_bytes(&self) -> usize {
        self.carry_room.used
    }

    /// Exchanges awaiting an answer.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Responses held for a request not seen yet.
    pub fn held(&self) -> usize {
        self.held_live
    }

    /// Bytes held or waiting for an earlier datagram.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    fn new_exchange(&mut self, client: SocketAddr, server: SocketAddr) -> Exchange {
        let now = self.clock;
        match self.spare.pop() {
            Some(mut x) => {
                x.session.reset(client, server, true);
                x.carry.clear();
                x.msg_total = 0;
                x.msg_next = 0;
                x.msg_rest = None;
                x.last = now;
                x.req_print = 0;
                x.req_ts = now;
                x.first_resp = None;
                x.recent_n = 0;
                x.head_repeat = false;
                x.closing = None;
                x
            }
            None => Exchange {
                session: Session::new(
                    client,
                    server,
                    Transport::Udp,
                    true,
                    self.limits,
                    1024,
                    self.requests.clone(),
                ),
                carry: Vec::new(),
                carry_charged: 0,
                msg_total: 0,
                msg_next: 0,
                msg_rest: None,
                parked: Vec::new(),
                parked_buf: Vec::new(),
                last: now,
                req_print: 0,
                req_ts: now,
                first_resp: None,
                recent: [0; RECENT],
                recent_n: 0,
                head_repeat: false,
                closing: None,
            },
        }
    }

    /// Finishes and recycles the exchange in `slot`.
    fn retire(&mut self, slot: usize, sink: &mut dyn RecordSink) {
        if let Some((key, mut x)) = self.slots[slot].take() {
            self.map.remove(&key);
            // Datagrams still waiting lost a piece before them for good.
            let waiting = x.unpark_all();
            self.buffered -= waiting;
            self.counters.udp_unassembled_bytes += waiting as u64;
            x.session.finish(sink);
            self.counters.add(&x.session.counters);
            x.session.counters = Counters::default();
            release_carry(&mut x, &mut self.carry_room);
            // Few exchanges ever wait for a piece: their buffers go back
            // to the table's spares rather than stay with a spare exchange.
            let parked = std::mem::take(&mut x.parked_buf);
            self.recycle(parked);
            self.free_slots.push(slot);
            self.spare.push(x);
        }
    }

    /// Moves the clock to `ts` (never back) and runs the timers. Every
    /// TCP packet comes here too (`sweep`), mostly with no UDP traffic in
    /// flight: each timer with nothing to time is skipped inline.
    #[inline]
    fn tick(&mut self, ts: Ts, sink: &mut dyn RecordSink) {
        if ts > self.clock {
            self.clock = ts;
        }
        if !self.held.is_empty() {
            self.expire_held();
        }
        if !self.closing.is_empty() {
            self.release_closing(sink);
        }
        let now = self.clock;
        if now >= self.last_sweep.saturating_add(self.cfg.timeout_ns / 4 + 1) {
            self.last_sweep = now;
            // An exchange lives in `map` while it holds a slot.
            if !self.map.is_empty() {
                self.sweep_exchanges(sink);
            }
        }
    }

    /// Starts the lingering of the exchange in `slot`, with its `END` held
    /// back if it has one.
    fn start_closing(&mut self, slot: usize, end: Option<SegInfo>) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let (key, x) = self.slots[slot].as_mut().expect("slot is full");
        x.closing = Some(Closing {
            end,
            ticket,
            moved_on: false,
        });
        self.closing
            .push_back((*key, ticket, self.datagrams, self.clock));
    }

    /// The slot whose exchange still lingers under this queue entry.
    fn lingering(&self, key: &Key, ticket: u64) -> Option<usize> {
        let &slot = self.map.get(key)?;
        let (_, x) = self.slots[slot].as_ref()?;
        x.closing
            .is_some_and(|c| c.ticket == ticket)
            .then_some(slot)
    }

    /// The slot of the exchange that queue entry `i` lingers for, when it
    /// is another exchange of `next`'s client socket and server.
    fn lingering_in_flow(&self, i: usize, next: &Key) -> Option<usize> {
        let (k, ticket, _, _) = self.closing[i];
        if !same_flow(&k, next) {
            return None;
        }
        self.lingering(&k, ticket)
    }

    /// Ends the lingering exchanges whose time is up.
    fn release_closing(&mut self, sink: &mut dyn RecordSink) {
        while let Some(&(key, ticket, n, at)) = self.closing.front() {
            let Some(slot) = self.lingering(&key, ticket) else {
                self.closing.pop_front();
                continue;
            };
            let due = self.datagrams.saturating_sub(n) >= self.cfg.linger_datagrams
                || self.clock.saturating_sub(at) > self.cfg.hold_ns;
            if !due {
                break;
            }
            self.closing.pop_front();
            self.finish_closing(slot, sink);
        }
    }

    /// Makes room by ending the oldest lingering exchange; false if none.
    fn close_oldest(&mut self, sink: &mut dyn RecordSink) -> bool {
        while let Some((key, ticket, _, _)) = self.closing.pop_front() {
            if let Some(slot) = self.lingering(&key, ticket) {
                self.finish_closing(slot, sink);
                return true;
            }
        }
        false
    }

    /// The client sent its next request from the same socket: the replies
    /// it had are over (a client that already has its answer does not wait
    /// for more), so their held `END`s go in before anything the server
    /// answers next. Left to the datagram count, a held `END` let the
    /// client's next records (a look-aside refill after a miss) overtake
    /// the miss, by how far depending on how flows were split among
    /// workers. Not at once, though: on a mirror the new request may be
    /// seen before a `VALUE` of the old reply that the client had (the two
    /// directions are mirrored apart), while the server's answer to it
    /// comes after that reply's last datagram (one direction keeps its
    /// order). The exchanges still linger, for copies of their datagrams.
    fn settle_flow(&mut self, next: &Key) {
        for i in 0..self.closing.len() {
            let Some(slot) = self.lingering_in_flow(i, next) else {
                continue;
            };
            let (_, x) = self.slots[slot].as_mut().expect("slot is full");
            if let Some(c) = x
                .closing
                .as_mut()
                .filter(|c| c.end.is_some() && !c.moved_on)
            {
                c.moved_on = true;
                self.moved_on += 1;
            }
        }
    }

    /// Feeds the held `END`s of the flow's exchanges whose client moved on
    /// (`settle_flow`), before records of `next` go out.
    fn settle_moved_on(&mut self, next: &Key, sink: &mut dyn RecordSink) {
        for i in 0..self.closing.len() {
            let Some(slot) = self.lingering_in_flow(i, next) else {
                continue;
            };
            let room = &mut self.carry_room;
            let (_, x) = self.slots[slot].as_mut().expect("slot is full");
            if !x.closing.is_some_and(|c| c.moved_on && c.end.is_some()) {
                continue;
            }
            if !x.at_boundary() {
                // A piece is still missing: the usual wait decides.
                continue;
            }
            if let Some(info) = x.closing.as_mut().and_then(|c| c.end.take()) {
                self.moved_on -= 1;
                feed(x, END_LINE, &info, room);
                x.session.emit(sink);
            }
        }
    }

    /// Feeds the `END` held back, if any, and retires the exchange.
    fn finish_closing(&mut self, slot: usize, sink: &mut dyn RecordSink) {
        let room = &mut self.carry_room;
        let (_, x) = self.slots[slot].as_mut().expect("slot is full");
        let now = self.clock;
        // Identical pieces kept aside may be needed after all (two values
        // with byte-identical datagrams); the rest were copies.
        let (end, fed) = x.drain_parked(now, room, false, true);
        debug_assert!(end.is_none());
        self.buffered -= fed;
        let (copies, copy_bytes, other_bytes) = x.drop_leftovers();
        self.counters.udp_duplicate_responses += copies;
        self.counters.udp_unassembled_bytes += other_bytes as u64;
        self.buffered -= copy_bytes + other_bytes;
        let closing = x.closing.take();
        if closing.is_some_and(|c| c.moved_on && c.end.is_some()) {
            self.moved_on -= 1;
        }
        if let Some(info) = closing.and_then(|c| c.end) {
            if x.at_boundary() {
                feed(x, END_LINE, &info, &mut self.carry_room);
                x.session.emit(sink);
            }
            // Otherwise a message begun after the END never completed: the
            // retirement below counts its pieces and records what is open.
        }
        self.retire(slot, sink);
    }

    /// A datagram from a client to a target.
    pub fn request(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        payload: &[u8],
        info: &SegInfo,
        sink: &mut dyn RecordSink,
    ) {
        self.datagrams += 1;
        self.tick(info.ts, sink);
        let Some(frame) = parse_udp_frame(payload) else {
            self.counters.udp_bad_frame += 1;
            return;
        };
        if frame.total > 1 {
            // memcached refuses requests spanning datagrams; so do we.
            self.counters.udp_multi_datagram_requests += 1;
            return;
        }
        let key = Key {
            client,
            server,
            req_id: frame.req_id,
        };
        if !self.closing.is_empty() {
            self.settle_flow(&key);
        }
        let print = fingerprint(payload);
        if let Some(&slot) = self.map.get(&key) {
            let (_, x) = self.slots[slot].as_ref().expect("mapped slot is full");
            if x.req_print == print
                && x.req_ts.abs_diff(info.ts) <= DUPLICATE_WINDOW
                && x.first_resp.is_none_or(|r| info.ts <= r)
            {
                // The same datagram again, captured before its answer: a
                // mirror's (or the network's) duplicate, not a new request.
                // One stamped after the answer is the client asking again.
                self.counters.udp_duplicate_requests += 1;
                return;
            }
            if x.closing.is_some() {
                self.finish_closing(slot, sink);
            } else {
                // The id was reused before the old exchange settled.
                self.counters.udp_timeouts += 1;
                self.retire(slot, sink);
            }
        }
        if self.map.len() >= self.cfg.max_pending && !self.close_oldest(sink) {
            self.counters.udp_pending_overflow += 1;
            return;
        }
        let mut x = self.new_exchange(client, server);
        x.req_print = print;
        x.req_ts = info.ts;
        let used = x.session.on_data(Dir::Request, frame.payload, 0, info);
        if used < frame.payload.len() {
            // A request cut short inside its datagram: nothing will follow.
            x.session.counters.bad_requests += 1;
        }
        if self.moved_on > 0 && x.session.settled() {
            // Recorded now (noreply): after the replies it followed.
            self.settle_moved_on(&key, sink);
        }
        x.session.emit(sink);
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let settled = x.session.settled();
        self.slots[slot] = Some((key, x));
        self.map.insert(key, slot);
        if settled {
            // Nothing to answer (noreply): what is held for this id is not
            // its answer, as it would not be if it came now. It lingers
            // all the same, so that a copy of it is not a second request.
            if self.cfg.linger_datagrams > 0 {
                self.start_closing(slot, None);
            } else {
                self.retire(slot, sink);
            }
        } else if self.held_live > 0 && self.held_of.contains_key(&key) {
            if self.moved_on > 0 {
                self.settle_moved_on(&key, sink);
            }
            self.replay_held(key, slot, sink);
        }
    }

    /// A datagram from a target back to a client.
    pub fn response(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        payload: &[u8],
        info: &SegInfo,
        sink: &mut dyn RecordSink,
    ) {
        self.datagrams += 1;
        self.tick(info.ts, sink);
        let Some(frame) = parse_udp_frame(payload) else {
            self.counters.udp_bad_frame += 1;
            return;
        };
        let key = Key {
            client,
            server,
            req_id: frame.req_id,
        };
        match self.map.get(&key) {
            Some(&slot) => {
                if self.moved_on > 0 {
                    self.settle_moved_on(&key, sink);
                }
                self.deliver(slot, &frame, datagram_print(payload), info, sink);
            }
            None => self.hold(key, payload, info),
        }
    }

    /// One response datagram into its exchange; true when it settled (and
    /// retired) the exchange.
    fn deliver(
        &mut self,
        slot: usize,
        frame: &UdpFrame<'_>,
        print: u64,
        info: &SegInfo,
        sink: &mut dyn RecordSink,
    ) -> bool {
        // The empty "0 of 0" datagram stands alone, like "0 of 1".
        let total = frame.total.max(1);
        if frame.seq >= total {
            self.counters.udp_bad_seq += 1;
            return false;
        }
        let max_carry = self.cfg.max_carry;
        let room = &mut self.carry_room;
        let linger = self.cfg.linger_datagrams > 0;
        let len = frame.payload.len();
        let (_, x) = self.slots[slot].as_mut().expect("mapped slot is full");
        let is_end = total == 1 && frame.payload == END_LINE;
        let end_held = x.closing.is_some_and(|c| c.end.is_some());
        if (is_end && end_held) || x.is_copy(frame, print) {
            self.counters.udp_duplicate_responses += 1;
            return false;
        }
        let seen_before = x.times_seen(print) > 0;
        x.remember(print);
        x.first_resp.get_or_insert(info.ts);
        x.last = self.clock;
        // The END that closes the reply (alone or at the end of the last
        // message) is kept back, as a VALUE it overtook may still come.
        let may_hold = linger && x.closing.is_none();
        let mut held_end = None;
        // A piece identical to an earlier one, in a message that does not
        // repeat an earlier one, is most likely a copy: it waits, and is
        // used only if nothing else comes for its place (`drain_parked`).
        // One that has to wait is suspect whatever the message: a copy of
        // an earlier piece sorts before the real one otherwise.
        let suspect = seen_before && frame.seq > 0;
        if x.parked.is_empty() && x.fits(frame.seq, total, len) && (!suspect || x.head_repeat) {
            // In order (the common case): fed without a copy.
            x.began(frame.seq, print);
            x.advance(total, frame.payload);
            let hold = may_hold && x.msg_total == 0;
            held_end = feed_holding_end(x, frame.payload, info, room, hold);
        } else if x.parked_buf.len() + len > max_carry
            || self.buffered + len > self.cfg.max_buffered
        {
            // No room to wait for the missing piece: the reply is cut here.
            let waiting = x.unpark_all();
            self.buffered -= waiting;
            self.counters.udp_unassembled_bytes += (waiting + len) as u64;
            x.msg_total = 0;
            x.msg_next = 0;
            x.msg_rest = None;
            x.carry.clear();
            x.session.on_gap(Dir::Response, 0, info);
        } else {
            if x.parked_buf.capacity() == 0 {
                if let Some(b) = self.spare_bufs.pop() {
                    self.spare_bytes -= b.capacity();
                    x.parked_buf = b;
                }
            }
            let start = x.parked_buf.len();
            x.parked_buf.extend_from_slice(frame.payload);
            x.parked.push(Part {
                seq: frame.seq,
                total,
                info: *info,
                start,
                len,
                print,
                suspect,
            });
            self.buffered += len;
            // This may have been the piece the others waited for.
            let (end, fed) = x.drain_parked(info.ts, room, may_hold, false);
            held_end = end;
            self.buffered -= fed;
        }
        x.session.emit(sink);
        if held_end.is_some() {
            self.start_closing(slot, held_end);
            return false;
        }
        if x.session.settled() {
            if !linger {
                self.retire(slot, sink);
                return true;
            }
            if x.closing.is_none() {
                self.start_closing(slot, None);
            }
        }
        false
    }

    /// Keeps a response whose request has not been seen (yet).
    fn hold(&mut self, key: Key, datagram: &[u8], info: &SegInfo) {
        if self.cfg.hold_ns == 0 || self.cfg.max_held == 0 {
            self.counters.udp_orphan_responses += 1;
            return;
        }
        if self.held_live >= self.cfg.max_held
            || self.buffered + datagram.len() > self.cfg.max_buffered
        {
            self.counters.udp_orphan_responses += 1;
            self.counters.udp_hold_full += 1;
            return;
        }
        if self.held.len() >= self.cfg.max_held.saturating_mul(2) {
            // Replayed entries behind an old one: drop them (in place).
            self.held.retain(|h| h.key.is_some());
        }
        let mut data = self.take_spare();
        data.extend_from_slice(datagram);
        self.held.push_back(Held {
            key: Some(key),
            at: self.clock,
            info: *info,
            data,
        });
        self.held_live += 1;
        self.buffered += datagram.len();
        *self.held_of.entry(key).or_insert(0) += 1;
    }

    /// Bookkeeping of a held response leaving the hold.
    fn release_held(&mut self, key: Key, len: usize) {
        self.held_live -= 1;
        self.buffered -= len;
        if let Some(n) = self.held_of.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.held_of.remove(&key);
            }
        }
    }

    /// Keeps a buffer for the next held or parked datagram. The spares'
    /// capacity is bounded by a quarter of `max_buffered`, so what the
    /// table holds (held, waiting, spare) stays within 1.25 times it.
    fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        let cap = buf.capacity();
        if cap > 0
            && cap <= RECYCLE_MAX
            && self.spare_bufs.len() < self.cfg.max_held
            && self.spare_bytes + cap <= self.cfg.max_buffered / 4
        {
            self.spare_bytes += cap;
            self.spare_bufs.push(buf);
        }
    }

    fn take_spare(&mut self) -> Vec<u8> {
        match self.spare_bufs.pop() {
            Some(b) => {
                self.spare_bytes -= b.capacity();
                b
            }
            None => Vec::new(),
        }
    }

    /// Feeds what was held for `key` to its new exchange, in arrival order.
    fn replay_held(&mut self, key: Key, slot: usize, sink: &mut dyn RecordSink) {
        let mut i = 0;
        while i < self.held.len() && self.held_of.contains_key(&key) {
            if self.held[i].key != Some(key) {
                i += 1;
                continue;
            }
            let h = &mut self.held[i];
            h.key = None;
            let data = std::mem::take(&mut h.data);
            let info = h.info;
            self.release_held(key, data.len());
            self.counters.udp_held_responses += 1;
            // Only datagrams that parsed were held.
            let retired = match parse_udp_frame(&data) {
                Some(frame) => self.deliver(slot, &frame, datagram_print(&data), &info, sink),
                None => false,
            };
            self.recycle(data);
            if retired {
                // Anything else held for this id answers nothing now, as
                // it would not had it come after the reply.
                break;
            }
            i += 1;
        }
        while matches!(self.held.front(), Some(h) if h.key.is_none()) {
            self.held.pop_front();
        }
    }

    /// Held responses past the hold time become orphans.
    fn expire_held(&mut self) {
        while let Some(h) = self.held.front() {
            match h.key {
                None => {
                    self.held.pop_front();
                }
                Some(key) => {
                    if self.clock.saturating_sub(h.at) <= self.cfg.hold_ns {
                        break;
                    }
                    let h = self.held.pop_front().expect("front exists");
                    self.release_held(key, h.data.len());
                    self.counters.udp_orphan_responses += 1;
                    self.recycle(h.data);
                }
            }
        }
    }

    /// Moves packet time forward without a packet: held responses and
    /// exchanges time out.
    pub fn sweep(&mut self, now: Ts, sink: &mut dyn RecordSink) {
        self.tick(now, sink);
    }

    /// Gives up exchanges idle past the timeout (`tick` runs it every
    /// quarter of the timeout).
    fn sweep_exchanges(&mut self, sink: &mut dyn RecordSink) {
        let now = self.clock;
        for slot in 0..self.slots.len() {
            let Some((_, x)) = &self.slots[slot] else {
                continue;
            };
            if now.saturating_sub(x.last) <= self.cfg.timeout_ns {
                continue;
            }
            if x.closing.is_some() {
                self.finish_closing(slot, sink);
                continue;
            }
            let (_, x) = self.slots[slot].as_mut().expect("slot is full");
            let (end, fed) = x.drain_parked(now, &mut self.carry_room, false, true);
            debug_assert!(end.is_none());
            self.buffered -= fed;
            if !x.session.settled() {
                self.counters.udp_timeouts += 1;
            }
            self.retire(slot, sink);
        }
    }

    /// End of input: every open exchange resolves now, and what is still
    /// held will never meet its request.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        // Lingering exchanges end as they would have, in the order they
        // began to; the rest never got their answer.
        while self.close_oldest(sink) {}
        debug_assert_eq!(self.moved_on, 0, "a marked END outlived its exchange");
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.counters.udp_timeouts += 1;
                self.retire(slot, sink);
            }
        }
        while let Some(h) = self.held.pop_front() {
            if let Some(key) = h.key {
                self.release_held(key, h.data.len());
                self.counters.udp_orphan_responses += 1;
            }
            self.recycle(h.data);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Exchanges fed datagram by datagram, with memcached 1.6's framing;
    //! records compared whole (result, sizes, request time and latency).

    use super::*;
    use crate::protocol::Outcome;
    use crate::session::Record;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Rec {
        command: &'static str,
        key: String,
        result: Outcome,
        resp_bytes: u64,
        ts: Ts,
        latency: Option<u64>,
    }

    fn client() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }

    fn server() -> SocketAddr {
        "10.0.0.2:11211".parse().unwrap()
    }

    fn cfg() -> UdpConfig {
        UdpConfig {
            max_pending: 64,
            timeout_ns: 1_000_000,
            max_carry: 64 << 10,
            hold_ns: 1_000,
            max_held: 64,
            max_buffered: 1 << 20,
            linger_datagrams: 0,
            max_carry_total: usize::MAX,
        }
    }

    /// One datagram on the wire: request or response, header fields,
    /// payload, timestamp.
    #[derive(Debug, Clone)]
    struct D {
        resp: bool,
        id: u16,
        seq: u16,
        total: u16,
        payload: Vec<u8>,
        ts: Ts,
    }

    fn req(id: u16, line: &str, ts: Ts) -> D {
        D {
            resp: false,
            id,
            seq: 0,
            total: 1,
            payload: line.as_bytes().to_vec(),
            ts,
        }
    }

    fn resp(id: u16, seq: u16, total: u16, payload: &[u8], ts: Ts) -> D {
        D {
            resp: true,
            id,
            seq,
            total,
            payload: payload.to_vec(),
            ts,
        }
    }

    /// A message cut the way memcached cuts it (1,392 payload bytes a
    /// datagram), timestamps from `ts` on.
    fn message(id: u16, payload: &[u8], ts: Ts) -> Vec<D> {
        let chunks: Vec<&[u8]> = payload.chunks(1392).collect();
        let n = chunks.len() as u16;
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| resp(id, i as u16, n, c, ts + i as Ts))
            .collect()
    }

    fn value_block(key: &str, n: usize, end: bool) -> Vec<u8> {
        let mut v = format!("VALUE {key} 0 {n}\r\n").into_bytes();
        v.extend((0..n).map(|i| b'a' + (i % 26) as u8));
        v.extend_from_slice(b"\r\n");
        if end {
            v.extend_from_slice(b"END\r\n");
        }
        v
    }

    struct Run {
        t: UdpTable,
        out: Vec<Rec>,
    }

    impl Run {
        fn new(cfg: UdpConfig) -> Run {
            Run {
                t: UdpTable::new(Limits::default(), cfg),
                out: Vec::new(),
            }
        }

        /// (command, result) of each record so far.
        fn results(&self) -> Vec<(&'static str, Outcome)> {
            self.out.iter().map(|x| (x.command, x.result)).collect()
        }

        fn push(&mut self, d: &D) {
            self.push_from(client(), d);
        }

        /// `d` on the flow of client socket `c`.
        fn push_from(&mut self, c: SocketAddr, d: &D) {
            let mut f = Vec::new();
            for v in [d.id, d.seq, d.total, 0] {
                f.extend(v.to_be_bytes());
            }
            f.extend(&d.payload);
            let info = SegInfo {
                ts: d.ts,
                frame_no: 0,
                peer_acked: None,
            };
            let out = &mut self.out;
            let mut sink = |r: &Record<'_>| {
                out.push(Rec {
                    command: r.command,
                    key: String::from_utf8_lossy(r.key.unwrap_or(b"")).into_owned(),
                    result: r.result,
                    resp_bytes: r.resp_bytes,
                    ts: r.ts,
                    latency: r.latency_ns,
                })
            };
            if d.resp {
                self.t.response(c, server(), &f, &info, &mut sink);
            } else {
                self.t.request(c, server(), &f, &info, &mut sink);
            }
        }

        fn all(cfg: UdpConfig, ds: &[D]) -> Run {
            let mut r = Run::new(cfg);
            for d in ds {
                r.push(d);
            }
            r
        }

        fn finish(&mut self) {
            let out = &mut self.out;
            self.t.finish(&mut |r: &Record<'_>| {
                out.push(Rec {
                    command: r.command,
                    key: String::from_utf8_lossy(r.key.unwrap_or(b"")).into_owned(),
                    result: r.result,
                    resp_bytes: r.resp_bytes,
                    ts: r.ts,
                    latency: r.latency_ns,
                })
            });
        }

        /// (key, result, resp_bytes, latency) of every record.
        fn short(&self) -> Vec<(&str, Outcome, u64, Option<u64>)> {
            self.out
                .iter()
                .map(|r| (r.key.as_str(), r.result, r.resp_bytes, r.latency))
                .collect()
        }
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }

    /// The reply of the field notes: `(0,0,len 0)`, `(0,1) VALUE cfg_8`,
    /// `(0,4) VALUE user:0…`, `(1,4)`, `(2,4)`, `(3,4)`, `(0,1) VALUE
    /// cfg_18`, `(0,1) VALUE user:5`, `(0,1) END`; request at 100, reply
    /// datagrams at 200.. (the 4-datagram message at 202..205).
    fn field_notes_reply(id: u16) -> (D, Vec<D>) {
        let rq = req(id, "get cfg_8 miss:1 user:0 cfg_18 miss:2 user:5\r\n", 100);
        let mut ds = vec![
            resp(id, 0, 0, b"", 200),
            resp(id, 0, 1, &value_block("cfg_8", 10, false), 201),
        ];
        let big = message(id, &value_block("user:0", 4500, false), 202);
        assert_eq!(big.len(), 4);
        ds.extend(big);
        ds.push(resp(id, 0, 1, &value_block("cfg_18", 20, false), 206));
        ds.push(resp(id, 0, 1, &value_block("user:5", 30, false), 207));
        ds.push(resp(id, 0, 1, b"END\r\n", 208));
        (rq, ds)
    }

    fn field_notes_records() -> Vec<(&'static str, Outcome, u64, Option<u64>)> {
        // Every key is answered by the END, at 208.
        vec![
            ("cfg_8", Outcome::Hit, 10, Some(108)),
            ("miss:1", Outcome::Miss, 0, Some(108)),
            ("user:0", Outcome::Hit, 4500, Some(108)),
            ("cfg_18", Outcome::Hit, 20, Some(108)),
            ("miss:2", Outcome::Miss, 0, Some(108)),
            ("user:5", Outcome::Hit, 30, Some(108)),
        ]
    }

    #[test]
    fn field_notes_layout_in_order() {
        let (rq, ds) = field_notes_reply(7);
        let mut all = vec![rq];
        all.extend(ds.iter().cloned());
        // Fed one at a time: nothing is recorded before the END.
        let mut r = Run::new(cfg());
        for d in &all[..all.len() - 1] {
            r.push(d);
            assert!(r.out.is_empty());
        }
        r.push(&all[all.len() - 1]);
        assert_eq!(r.short(), field_notes_records());
        assert!(r.out.iter().all(|x| x.ts == 100 && x.command == "get"));
        assert!(r.t.is_empty());
        assert_eq!(r.t.buffered_bytes(), 0);
        assert_eq!(
            r.t.counters,
            Counters {
                records: 6,
                ..Counters::default()
            }
        );
    }

    #[test]
    fn every_order_of_a_message_inside_a_reply_reassembles() {
        let (rq, ds) = field_notes_reply(7);
        for p in permutations(4) {
            let mut all = vec![rq.clone(), ds[0].clone(), ds[1].clone()];
            all.extend(p.iter().map(|&i| ds[2 + i].clone()));
            all.extend(ds[6..].iter().cloned());
            let r = Run::all(cfg(), &all);
            assert_eq!(r.short(), field_notes_records(), "order {p:?}");
            assert!(r.t.is_empty(), "{p:?}");
            assert_eq!(r.t.buffered_bytes(), 0, "{p:?}");
            assert_eq!(r.t.counters.udp_unassembled_bytes, 0);
        }
    }

    #[test]
    fn every_order_of_a_single_key_reply_reassembles() {
        // `get k` of a big value: one message holding VALUE, data and END.
        for n in 1..=5usize {
            let size = 1392 * n - 30;
            let reply = message(3, &value_block("k", size, true), 50);
            assert_eq!(reply.len(), n);
            for p in permutations(n) {
                let mut all = vec![req(3, "get k\r\n", 40)];
                all.extend(p.iter().map(|&i| reply[i].clone()));
                let r = Run::all(cfg(), &all);
                // Whole when its last datagram (at 50+n-1) is in, whatever
                // the order.
                let lat = Some(10 + n as u64 - 1);
                assert_eq!(
                    r.short(),
                    vec![("k", Outcome::Hit, size as u64, lat)],
                    "n {n} order {p:?}"
                );
                assert!(r.t.is_empty());
                assert_eq!(r.t.buffered_bytes(), 0);
            }
        }
    }

    #[test]
    fn empty_total_zero_datagram_settles_nothing() {
        let mut r = Run::all(cfg(), &[req(1, "get a b\r\n", 10), resp(1, 0, 0, b"", 11)]);
        assert!(r.out.is_empty());
        assert_eq!(r.t.len(), 1);
        r.push(&resp(1, 0, 1, b"END\r\n", 12));
        assert_eq!(
            r.short(),
            vec![
                ("a", Outcome::Miss, 0, Some(2)),
                ("b", Outcome::Miss, 0, Some(2)),
            ]
        );
        assert!(r.t.is_empty());
        assert_eq!(r.t.counters.udp_orphan_responses, 0);
    }

    #[test]
    fn a_response_before_its_request_is_paired_as_if_after() {
        let rq = req(5, "get k\r\n", 100);
        let rs = resp(5, 0, 1, b"VALUE k 0 2\r\nhi\r\nEND\r\n", 103);
        let in_order = Run::all(cfg(), &[rq.clone(), rs.clone()]);
        assert_eq!(in_order.short(), vec![("k", Outcome::Hit, 2, Some(3))]);
        // Captured first (the timestamps as they were: the clock steps back).
        let mut early = Run::new(cfg());
        early.push(&rs);
        assert_eq!((early.t.held(), early.t.buffered_bytes()), (1, 30));
        assert!(early.out.is_empty());
        early.push(&rq);
        assert_eq!(early.out, in_order.out);
        assert_eq!(early.t.counters.udp_held_responses, 1);
        assert_eq!(early.t.counters.udp_orphan_responses, 0);
        assert_eq!((early.t.held(), early.t.buffered_bytes()), (0, 0));
        assert!(early.t.is_empty());
    }

    #[test]
    fn a_whole_reply_before_its_request_is_replayed_in_order() {
        let (rq, ds) = field_notes_reply(9);
        let mut all = ds.clone();
        all.push(rq.clone());
        let mut r = Run::all(cfg(), &all);
        assert_eq!(r.short(), field_notes_records());
        assert_eq!(r.t.counters.udp_held_responses, 9);
        assert_eq!((r.t.held(), r.t.buffered_bytes()), (0, 0));
        // Half of it early, its big message permuted across the request.
        let mut mixed = vec![ds[0].clone(), ds[1].clone(), ds[4].clone(), ds[2].clone()];
        mixed.push(rq);
        mixed.extend([ds[5].clone(), ds[3].clone()]);
        mixed.extend(ds[6..].iter().cloned());
        let m = Run::all(cfg(), &mixed);
        assert_eq!(m.out, r.out);
        assert_eq!(m.t.counters.udp_held_responses, 4);
        r.finish();
        assert_eq!(r.t.counters.udp_orphan_responses, 0);
    }

    #[test]
    fn held_responses_expire_after_the_hold_time_exactly() {
        // hold 1000: held at 0, 10 and 20 (ids 1-3).
        let mut r = Run::new(cfg());
        for (id, ts) in [(1, 0), (2, 10), (3, 20)] {
            r.push(&resp(id, 0, 1, b"END\r\n", ts));
        }
        assert_eq!(r.t.held(), 3);
        r.push(&req(50, "get x\r\n", 1000));
        assert_eq!((r.t.held(), r.t.counters.udp_orphan_responses), (3, 0));
        r.push(&req(51, "get y\r\n", 1001));
        assert_eq!((r.t.held(), r.t.counters.udp_orphan_responses), (2, 1));
        // A timestamp from the past holds at the clock, never below it.
        r.push(&resp(4, 0, 1, b"END\r\n", 5));
        r.push(&req(52, "get z\r\n", 1015));
        assert_eq!((r.t.held(), r.t.counters.udp_orphan_responses), (2, 2));
        // The request of an expired response meets nothing.
        r.push(&req(1, "get w\r\n", 1016));
        assert_eq!(r.t.counters.udp_held_responses, 0);
        r.t.sweep(2001, &mut |_: &Record<'_>| {});
        assert_eq!((r.t.held(), r.t.counters.udp_orphan_responses), (1, 3));
        // Id 4, held at 1001, still pairs until 2001.
        r.push(&req(4, "get v\r\n", 2001));
        assert_eq!(r.t.counters.udp_held_responses, 1);
        assert_eq!(r.out.last().unwrap().key, "v");
        assert_eq!(r.out.last().unwrap().result, Outcome::Miss);
        // Answered "before" it was asked: no latency, never an underflow.
        assert_eq!(r.out.last().unwrap().latency, None);
        assert_eq!(r.t.held(), 0);
        r.finish();
        assert_eq!(r.t.counters.udp_orphan_responses, 3);
        assert_eq!(r.t.counters.udp_timeouts, 4);
        assert_eq!(r.t.buffered_bytes(), 0);
    }

    #[test]
    fn finish_turns_held_responses_into_orphans() {
        let mut r = Run::new(cfg());
        r.push(&resp(1, 0, 0, b"", 1));
        r.push(&resp(1, 0, 1, b"END\r\n", 2));
        r.push(&resp(2, 1, 3, b"xyz", 3));
        assert_eq!((r.t.held(), r.t.buffered_bytes()), (3, 8 + 13 + 11));
        r.finish();
        assert_eq!((r.t.held(), r.t.buffered_bytes()), (0, 0));
        assert_eq!(r.t.counters.udp_orphan_responses, 3);
        assert!(r.out.is_empty());
    }

    #[test]
    fn a_flood_of_orphans_never_holds_more_than_the_bounds() {
        let mut c = cfg();
        c.max_held = 8;
        let mut r = Run::new(c);
        for id in 0..100u16 {
            r.push(&resp(id, 0, 1, b"END\r\n", id as Ts));
            assert!(r.t.held() <= 8);
        }
        assert_eq!(r.t.held(), 8);
        assert_eq!(r.t.counters.udp_hold_full, 92);
        assert_eq!(r.t.counters.udp_orphan_responses, 92);
        // The ones held still pair.
        r.push(&req(3, "get k\r\n", 200));
        assert_eq!(r.short(), vec![("k", Outcome::Miss, 0, None)]);
        assert_eq!(r.t.counters.udp_held_responses, 1);
        r.finish();
        assert_eq!(r.t.counters.udp_orphan_responses, 99);
        // Byte bound: 3 datagrams of 1,008 bytes fit in 3,100, the 4th not.
        let mut c = cfg();
        c.max_buffered = 3100;
        let mut r = Run::new(c);
        for id in 0..10u16 {
            r.push(&resp(id, 0, 1, &[b'x'; 1000], 1));
        }
        assert_eq!((r.t.held(), r.t.buffered_bytes()), (3, 3024));
        assert_eq!(r.t.counters.udp_hold_full, 7);
        // Replayed entries do not pile up behind an old one.
        let mut c = cfg();
        c.max_held = 4;
        let mut r = Run::new(c);
        r.push(&resp(999, 0, 1, b"END\r\n", 0));
        for id in 0..50u16 {
            r.push(&resp(id, 0, 1, b"END\r\n", 1));
            r.push(&req(id, "get k\r\n", 1));
        }
        assert_eq!(r.t.counters.udp_held_responses, 50);
        assert_eq!(r.t.counters.udp_hold_full, 0);
        assert!(r.t.held.len() <= 9, "{}", r.t.held.len());
    }

    #[test]
    fn waiting_datagrams_are_bounded_per_exchange() {
        // A 20,000-byte value, its 15 datagrams in reverse: with 4,000
        // bytes to wait in, the fourth to wait cuts the reply.
        let mut c = cfg();
        c.max_carry = 4000;
        let reply = message(2, &value_block("big", 20_000, true), 10);
        assert_eq!(reply.len(), 15);
        let mut r = Run::new(c);
        r.push(&req(2, "get big\r\n", 1));
        for d in reply.iter().rev() {
            r.push(d);
        }
        let parked: usize = reply[11..].iter().map(|d| d.payload.len()).sum();
        assert_eq!(parked, 3 * 1392 + 538);
        assert_eq!(r.short(), vec![("big", Outcome::Lost, 0, None)]);
        assert_eq!(r.t.counters.udp_unassembled_bytes, parked as u64);
        // What came after the cut has no exchange: held, then orphans.
        assert_eq!(r.t.held(), 11);
        r.finish();
        assert_eq!(r.t.counters.udp_orphan_responses, 11);
        assert_eq!(r.t.buffered_bytes(), 0);
    }

    #[test]
    fn a_message_missing_a_piece_times_out_and_counts_what_waited() {
        let reply = message(4, &value_block("k", 3000, true), 10);
        assert_eq!(reply.len(), 3);
        let mut r = Run::new(cfg());
        r.push(&req(4, "get k\r\n", 1));
        r.push(&reply[0]);
        r.push(&reply[2]);
        assert_eq!(r.t.buffered_bytes(), reply[2].payload.len());
        // A bad sequence number is ignored.
        r.push(&resp(4, 3, 3, b"junk", 13));
        assert_eq!(r.t.counters.udp_bad_seq, 1);
        r.t.sweep(2_000_000, &mut |_: &Record<'_>| {});
        // (A sink that drops: look at the counters.)
        assert_eq!(r.t.counters.udp_timeouts, 1);
        assert_eq!(
            r.t.counters.udp_unassembled_bytes,
            reply[2].payload.len() as u64
        );
        assert_eq!(r.t.buffered_bytes(), 0);
        assert!(r.t.is_empty());
    }

    // ------------------------------------------------ mirror order (linger)

    fn mirror_cfg() -> UdpConfig {
        UdpConfig {
            hold_ns: 1_000_000,
            timeout_ns: 10_000_000,
            linger_datagrams: LINGER_DATAGRAMS,
            ..cfg()
        }
    }

    /// The field notes' reply with `moves` applied (datagram i to place j),
    /// fed with the request first; records after the end of input.
    fn run_mirrored(ds: &[D]) -> Run {
        let mut r = Run::all(mirror_cfg(), ds);
        r.finish();
        r
    }

    #[test]
    fn an_end_that_overtook_values_waits_for_them() {
        let (rq, ds) = field_notes_reply(7);
        let mut all = vec![rq];
        all.extend(ds.iter().cloned());
        let clean = run_mirrored(&all);
        assert_eq!(clean.short(), field_notes_records());
        // Request, VALUE cfg_8, VALUE cfg_18 (ahead of the big message),
        // the big message, the END, then what it overtook: the empty
        // datagram and VALUE user:5.
        let order = [0, 2, 7, 3, 4, 5, 6, 9, 1, 8];
        let moved: Vec<D> = order.iter().map(|&i| all[i].clone()).collect();
        let r = run_mirrored(&moved);
        assert_eq!(r.short(), field_notes_records());
        assert_eq!(r.t.counters.orphan_responses, 0);
        assert_eq!(r.t.counters.udp_duplicate_responses, 0);
        assert_eq!(r.t.counters.udp_timeouts, 0);
        assert_eq!((r.t.len(), r.t.buffered_bytes()), (0, 0));
    }

    #[test]
    fn copies_of_reply_datagrams_are_counted_not_fed() {
        let (rq, ds) = field_notes_reply(7);
        let mut all = vec![rq.clone(), rq];
        for (i, d) in ds.iter().enumerate() {
            all.push(d.clone());
            // Every datagram twice (the big message's pieces, the VALUE
            // messages, the empty one and the END); the copies of the big
            // message's first two pieces come after its last.
            if i != 2 && i != 3 {
                all.push(d.clone());
            }
            if i == 5 {
                all.push(ds[2].clone());
                all.push(ds[3].clone());
            }
        }
        let r = run_mirrored(&all);
        assert_eq!(r.short(), field_notes_records());
        assert_eq!(r.t.counters.udp_duplicate_requests, 1);
        assert_eq!(r.t.counters.udp_duplicate_responses, 9);
        assert_eq!(r.t.counters.orphan_responses, 0);
        assert_eq!(r.t.counters.udp_orphan_responses, 0);
        assert_eq!(r.t.counters.udp_unassembled_bytes, 0);
        assert_eq!((r.t.len(), r.t.buffered_bytes()), (0, 0));
    }

    #[test]
    fn a_key_named_twice_gets_both_identical_values() {
        // `get a a`: two identical VALUE messages are two answers, and a
        // third identical one is a copy.
        let v = value_block("a", 3, false);
        let ds = [
            req(4, "get a a\r\n", 10),
            resp(4, 0, 1, &v, 11),
            resp(4, 0, 1, &v, 12),
            resp(4, 0, 1, &v, 12),
            resp(4, 0, 1, b"END\r\n", 13),
        ];
        let r = run_mirrored(&ds);
        assert_eq!(
            r.short(),
            vec![
                ("a", Outcome::Hit, 3, Some(3)),
                ("a", Outcome::Hit, 3, Some(3)),
            ]
        );
        assert_eq!(r.t.counters.udp_duplicate_responses, 1);
        assert_eq!(r.t.counters.orphan_responses, 0);
    }

    #[test]
    fn the_clients_next_request_puts_its_held_end_in() {
        let mut r = Run::new(mirror_cfg());
        r.push(&req(1, "get k\r\n", 10));
        r.push(&resp(1, 0, 1, b"END\r\n", 11));
        assert!(r.out.is_empty());
        // The client refills the key from the same socket. Its miss goes in
        // before the server's answer to the refill, with its own time and
        // latency.
        r.push(&req(2, "set k 0 0 1\r\nv\r\n", 20));
        assert!(r.out.is_empty());
        r.push(&resp(2, 0, 1, b"STORED\r\n", 21));
        let got = |r: &Run| -> Vec<(&str, Outcome, Ts, Option<u64>)> {
            r.out
                .iter()
                .map(|x| (x.command, x.result, x.ts, x.latency))
                .collect()
        };
        assert_eq!(
            got(&r),
            [
                ("get", Outcome::Miss, 10, Some(1)),
                ("set", Outcome::Stored, 20, Some(1))
            ]
        );
        // The first exchange still lingers: copies of its datagrams are
        // recognised, not taken for a second request or an orphan.
        r.push(&resp(1, 0, 1, b"END\r\n", 11));
        r.push(&req(1, "get k\r\n", 10));
        assert_eq!(r.t.counters.udp_duplicate_responses, 1);
        assert_eq!(r.t.counters.udp_duplicate_requests, 1);
        r.finish();
        assert_eq!(r.out.len(), 2);
        assert_eq!(r.t.counters.udp_timeouts, 0);
        assert_eq!(r.t.counters.orphan_responses, 0);
        assert_eq!(r.t.moved_on, 0);
    }

    #[test]
    fn a_value_seen_after_the_clients_next_request_is_still_its_replys() {
        // memcached 1.6 answers a UDP multi-get one datagram per VALUE and
        // one for the END. On a mirror the END overtook the VALUE before it,
        // and the client's next request, mirrored apart, came before that
        // VALUE too; the answer to the next request comes after it.
        let mut r = Run::new(mirror_cfg());
        r.push(&req(1, "get a b\r\n", 10));
        r.push(&resp(1, 0, 1, b"END\r\n", 13));
        r.push(&req(2, "get c\r\n", 20));
        r.push(&resp(1, 0, 1, &value_block("a", 3, false), 12));
        r.push(&resp(2, 0, 1, b"END\r\n", 21));
        r.finish();
        let got: Vec<(&str, &str, Outcome)> = r
            .out
            .iter()
            .map(|x| (x.command, x.key.as_str(), x.result))
            .collect();
        assert_eq!(
            got,
            [
                ("get", "a", Outcome::Hit),
                ("get", "b", Outcome::Miss),
                ("get", "c", Outcome::Miss)
            ]
        );
        assert_eq!(r.t.counters.udp_orphan_responses, 0);
        assert_eq!(r.t.counters.udp_timeouts, 0);
        assert_eq!(r.t.moved_on, 0);
    }

    #[test]
    fn two_next_requests_mark_a_held_end_once() {
        // The client sends twice before the server answers either: the
        // held END is marked once and goes in once, before the answers.
        let mut r = Run::new(mirror_cfg());
        r.push(&req(1, "get k\r\n", 10));
        r.push(&resp(1, 0, 1, b"END\r\n", 11));
        r.push(&req(2, "get a\r\n", 20));
        r.push(&req(3, "get b\r\n", 21));
        assert_eq!(r.t.moved_on, 1);
        r.push(&resp(2, 0, 1, b"END\r\n", 22));
        assert_eq!(r.t.moved_on, 0);
        r.push(&resp(3, 0, 1, b"END\r\n", 23));
        r.finish();
        let keys: Vec<&str> = r.out.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["k", "a", "b"]);
        assert_eq!(r.t.moved_on, 0);
    }

    #[test]
    fn the_reply_before_the_clients_next_request_still_goes_first() {
        // A noreply refill, recorded as it comes; and a refill whose answer
        // was mirrored before the request.
        let cases: [(&[D], Outcome); 2] = [
            (
                &[req(2, "set k 0 0 1 noreply\r\nv\r\n", 20)],
                Outcome::Noreply,
            ),
            (
                &[
                    resp(2, 0, 1, b"STORED\r\n", 21),
                    req(2, "set k 0 0 1\r\nv\r\n", 20),
                ],
                Outcome::Stored,
            ),
        ];
        for (next, set) in cases {
            let mut r = Run::new(mirror_cfg());
            r.push(&req(1, "get k\r\n", 10));
            r.push(&resp(1, 0, 1, b"END\r\n", 11));
            for d in next {
                r.push(d);
            }
            assert_eq!(r.results(), [("get", Outcome::Miss), ("set", set)]);
            r.finish();
            assert_eq!(r.out.len(), 2);
            assert_eq!(r.t.counters.udp_orphan_responses, 0);
            assert_eq!(r.t.moved_on, 0);
        }
    }

    #[test]
    fn a_finished_exchange_lingers_for_copies_then_retires() {
        let mut r = Run::new(mirror_cfg());
        r.push(&req(1, "get k\r\n", 10));
        r.push(&resp(1, 0, 1, b"END\r\n", 11));
        // The END is kept back: nothing recorded, the exchange still open.
        assert!(r.out.is_empty());
        assert_eq!(r.t.len(), 1);
        // A copy of the END and one of the request are recognised.
        r.push(&resp(1, 0, 1, b"END\r\n", 11));
        r.push(&req(1, "get k\r\n", 10));
        assert_eq!(r.t.counters.udp_duplicate_responses, 1);
        assert_eq!(r.t.counters.udp_duplicate_requests, 1);
        // Eight datagrams after the END (its copies included; here the
        // others are another client's) it is fed, with its own time.
        let other: SocketAddr = "10.0.0.9:40001".parse().unwrap();
        let gets = |r: &Run| r.out.iter().filter(|x| x.command == "get").count();
        for id in 2..7u16 {
            r.push_from(other, &req(id, "delete x noreply\r\n", 12));
        }
        assert_eq!(gets(&r), 0);
        r.push_from(other, &req(7, "delete x noreply\r\n", 12));
        assert_eq!(gets(&r), 1);
        let k = r.out.iter().find(|x| x.command == "get").unwrap();
        assert_eq!((k.result, k.latency), (Outcome::Miss, Some(1)));
        // The noreply deletes linger too: a copy of one is not a second.
        r.push_from(other, &req(7, "delete x noreply\r\n", 12));
        assert_eq!(r.t.counters.udp_duplicate_requests, 2);
        r.finish();
        assert_eq!(r.out.len(), 7);
        assert_eq!(r.t.counters.udp_timeouts, 0);
        assert_eq!((r.t.len(), r.t.held()), (0, 0));
    }
}
