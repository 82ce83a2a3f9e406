//! One TCP connection seen from the side: both directions rebuilt as
//! ordered byte streams, handed to a [`StreamHandler`] with their gaps.
//!
//! Owns, per direction: where the stream starts (its origin), the next
//! expected byte, the out-of-order bytes ([`SegmentStore`]) and the carry
//! (bytes the handler saw but did not consume). Never parses a command,
//! never reads a clock (time is the packet's timestamp), never panics on
//! what it is fed.
//!
//! Offsets: every byte of a direction has a 64-bit offset from the origin,
//! the sequence number after the SYN (or, when the capture began
//! mid-stream, the first data byte seen). Sequence numbers become offsets
//! relative to the next expected byte, so wraparound is handled in one
//! place ([`super::seq`]) and nothing else wraps.
//!
//! Copies: in-order payload is handed to the handler straight from the
//! packet. Bytes are copied only (a) into the carry when the handler leaves
//! some unconsumed, and while the carry is non-empty, and (b) into the store
//! when they arrive ahead of a hole.
//!
//! A hole is given up (the handler gets `on_gap(dir, len)`, carry dropped
//! first) when:
//! - the peer acknowledges bytes beyond its start while later data waits
//!   behind it: the receiver had them, the capture lost them (the usual
//!   case). An ACK ahead of everything seen declares nothing by itself: the
//!   capture may show an ACK before the data it covers;
//! - the data waiting behind it is older than `hole_timeout_ns`;
//! - a FIN or RST ends the direction, or the connection is flushed;
//! - an out-of-order budget (per flow or shared) is full: the oldest hole
//!   goes first, so the store makes room for newer data rather than drop it
//!   (`tcp_ooo_budget_gaps`; nothing is ever dropped for lack of room, so
//!   `tcp_ooo_dropped_bytes` stays 0);
//! - a frame was cut by the snap length (`segment_wire`): its missing tail.
//!
//! Departures from a TCP endpoint: overlapping data keeps the bytes that
//! arrived first; data after a FIN is ignored; a RST closes at once if its
//! sequence number is plausible (a tap cannot know the receive window).
//!
//! Counters: this module counts what happens inside a connection (the
//! `tcp_*` reassembly counters). Segments, new connections and closes are
//! the caller's to count (`tcp_segments`, `tcp_flows`, `tcp_closed`), except
//! a connection started in place by port reuse, counted in `tcp_flows` here.

use std::collections::VecDeque;

use super::segments::{SegmentStore, Stamp, StoreLimits};
use super::seq::{seq_add, seq_diff};
use super::{Dir, SegInfo, StreamHandler};
use crate::decode::{TcpInfo, Ts};
use crate::stats::Counters;

pub use super::segments::Budget;

/// Bounds and timers of the reassembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    /// Most out-of-order bytes one direction may hold.
    /// Rationale: a few RTTs of a fast flow; beyond that the hole is lost.
    pub max_ooo_per_flow: u64,
    /// Most separate out-of-order ranges one direction may hold (bounds the
    /// bookkeeping of hostile one-byte segments).
    pub max_ooo_ranges: usize,
    /// Cap of the shared [`Budget`] made by [`TcpConfig::budget`]; a
    /// connection itself reads only the `Budget` it is passed.
    pub max_ooo_global: u64,
    /// Most unconsumed bytes kept for the handler; beyond that the stream is
    /// declared desynchronised (`on_gap(dir, 0)`).
    /// Rationale: no memcached line or header needs more; values are skipped
    /// by length, never buffered.
    pub max_carry: usize,
    /// A hole whose following data has waited this long (packet time) is lost.
    pub hole_timeout_ns: u64,
    /// Segments farther than this from the next expected byte are bogus.
    /// Rationale: far above any real window (1 GiB), far below the 2 GiB where
    /// sequence comparisons become ambiguous.
    pub max_seq_jump: u32,
    /// Longest a segment waits (packet time) for the bytes of the other
    /// direction it acknowledges before it is delivered anyway
    /// (`tcp_causal_wait_expired`).
    /// Rationale: mirrored copies are skewed by microseconds to a few
    /// milliseconds; a longer wait means those bytes were lost.
    pub causal_wait_ns: u64,
    /// An acknowledgement gives up a hole it covers only once it has been
    /// seen this many segments of the connection ago, or
    /// `ack_grace_ns` ago: a mirror may show an ACK a few packets ahead of
    /// data it covers, which is then still to come.
    pub ack_grace_segments: u64,
    /// See `ack_grace_segments`.
    pub ack_grace_ns: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_ooo_per_flow: 1 << 20,
            max_ooo_ranges: 1024,
            max_ooo_global: 64 << 20,
            max_carry: 256 << 10,
            hole_timeout_ns: 1_000_000_000,
            max_seq_jump: 1 << 30,
            causal_wait_ns: 200_000_000,
            ack_grace_segments: 16,
            ack_grace_ns: 20_000_000,
        }
    }
}

impl TcpConfig {
    /// The shared budget for all the connections of one worker.
    pub fn budget(&self) -> Budget {
        Budget::new(self.max_ooo_global)
    }

    fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            max_bytes: usize::try_from(self.max_ooo_per_flow).unwrap_or(usize::MAX),
            max_ranges: self.max_ooo_ranges,
        }
    }
}

/// Consecutive bogus data segments after which a direction is re-anchored
/// on the new numbering (with `on_gap(dir, 0)`), so a stream that jumped
/// (a long capture loss) is not ignored for ever.
const BAD_SEQ_REANCHOR: u8 = 4;

/// An empty carry keeps at most this much capacity for the next message.
const KEEP_CARRY_CAPACITY: usize = 64 * 1024;

/// Acknowledgements a direction tracks through their grace; past that the
/// newest one is raised instead (it then waits a little longer).
const ACK_CANDIDATES: usize = 4;

/// Most causal gates one direction keeps; past that the newest gate is
/// widened instead (it then holds data a little longer, never less).
const MAX_GATES: usize = 64;

/// Bytes of a direction at or after `from` wait until the other direction
/// has delivered everything before `need`: the segment that carried them
/// acknowledged that much of the other direction, so its sender had
/// received those bytes first (capture order is not causal order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gate {
    from: u64,
    need: u64,
    /// Packet time the gated segment arrived.
    since: Ts,
}

/// One direction of a connection.
///
/// Invariants:
/// - the carry holds the stream bytes `[next_off - carry.len(), next_off)`;
/// - every stored out-of-order byte lies at or after `next_off + 1`
///   (a range that becomes contiguous is delivered at once);
/// - `fin`, once set, is at or after `next_off` until reached, and no byte
///   at or after it is delivered.
#[derive(Debug, Default)]
pub struct HalfStream {
    /// Sequence number of offset 0.
    origin: Option<u32>,
    /// The origin came from a SYN (this one's, or the peer's SYN-ACK).
    syn: bool,
    /// Offset of the next byte to deliver (everything before was delivered
    /// or declared lost).
    next_off: u64,
    carry: Vec<u8>,
    /// Capacity of `carry` counted in the budget's `carry_used`.
    carry_charged: usize,
    store: SegmentStore,
    /// Offset of the FIN.
    fin: Option<u64>,
    /// Highest offset of this stream acknowledged by the peer.
    acked: Option<u64>,
    /// The part of `acked` seen long enough ago to give up holes with
    /// (see `TcpConfig::ack_grace_segments`).
    acked_firm: Option<u64>,
    /// Acknowledgements waiting to become firm, oldest first: (offset,
    /// connection segment number, packet time) when first seen.
    ack_cand: [(u64, u64, Ts); ACK_CANDIDATES],
    /// How many of `ack_cand` are in use.
    ack_cands: usize,
    /// Causal gates on this direction, sorted by `from`, `need` strictly
    /// increasing; the front one is unsatisfied after `TcpConn::update_lim`.
    gates: VecDeque<Gate>,
    /// First offset that may not be delivered now (the front gate's
    /// `from`), `None` when nothing is gated.
    gate_lim: Option<u64>,
    /// Consecutive segments with a bogus sequence number.
    bad_run: u8,
}

/// What a direction's work needs besides the direction itself.
struct Ctx<'a, H> {
    h: &'a mut H,
    g: &'a mut Budget,
    c: &'a mut Counters,
    cfg: &'a TcpConfig,
}

impl HalfStream {
    /// Sequence number of stream offset 0, once known.
    pub fn origin(&self) -> Option<u32> {
        self.origin
    }

    /// Offset of the next byte expected.
    pub fn next_offset(&self) -> u64 {
        self.next_off
    }

    /// Bytes presented to the handler and kept for the next call.
    pub fn carry_len(&self) -> usize {
        self.carry.len()
    }

    /// Out-of-order bytes waiting behind a hole.
    pub fn queued_bytes(&self) -> usize {
        self.store.bytes()
    }

    /// Offset of the FIN, once seen.
    pub fn fin_offset(&self) -> Option<u64> {
        self.fin
    }

    /// Highest offset of this stream the peer acknowledged.
    pub fn peer_acked(&self) -> Option<u64> {
        self.acked
    }

    /// The FIN was seen and everything before it delivered or given up.
    pub fn is_finished(&self) -> bool {
        self.fin.is_some_and(|f| self.next_off >= f)
    }

    /// Bytes are waiting for the other direction (causal gates).
    pub fn is_held(&self) -> bool {
        self.gate_lim.is_some_and(|l| l <= self.next_off)
            && self.store.first_start() == Some(self.next_off)
    }

    /// Nothing for `TcpConn::settle` to do here: no gate, no stored
    /// bytes, no FIN to reach. (With no gate, `gate_lim` is `None`: every
    /// change to `gates` that can empty it sets the limit after.)
    fn at_rest(&self) -> bool {
        self.gates.is_empty()
            && self.gate_lim.is_none()
            && self.store.is_empty()
            && self.fin.is_none()
            && self.gates.capacity() <= MAX_GATES
    }

    fn lim(&self) -> u64 {
        self.gate_lim.unwrap_or(u64::MAX)
    }

    /// Notes that the peer acknowledged up to `a`: the new value becomes
    /// firm after the grace (see `promote_ack`).
    fn note_ack(&mut self, a: u64, seg_no: u64, ts: Ts) {
        if self.acked_firm.is_some_and(|f| a <= f) {
            return;
        }
        let n = self.ack_cands;
        if n > 0 && self.ack_cand[n - 1].0 >= a {
            return;
        }
        if n < ACK_CANDIDATES {
            self.ack_cand[n] = (a, seg_no, ts);
            self.ack_cands += 1;
        } else {
            self.ack_cand[n - 1] = (a, seg_no, ts);
        }
    }

    /// Makes the waiting acknowledgement firm once the grace has passed,
    /// then starts the grace of any later one.
    #[inline]
    fn promote_ack(&mut self, seg_no: u64, now: Ts, cfg: &TcpConfig) {
        if self.ack_cands == 0 {
            return;
        }
        let mut done = 0;
        for &(a, s, t) in &self.ack_cand[..self.ack_cands] {
            if seg_no.saturating_sub(s) < cfg.ack_grace_segments
                && now.saturating_sub(t) < cfg.ack_grace_ns
            {
                break;
            }
            self.acked_firm = Some(self.acked_firm.map_or(a, |f| f.max(a)));
            done += 1;
        }
        if done > 0 {
            self.ack_cand.copy_within(done..self.ack_cands, 0);
            self.ack_cands -= done;
        }
    }

    /// Bytes from `from` on wait until the other direction reaches `need`.
    fn add_gate(&mut self, from: u64, need: u64, since: Ts) {
        let i = self.gates.partition_point(|g| g.from <= from);
        if i > 0 && self.gates[i - 1].need >= need {
            // An earlier gate already holds these bytes at least as long.
            return;
        }
        if self.gates.len() >= MAX_GATES {
            if let Some(last) = self.gates.back_mut() {
                last.need = last.need.max(need);
            }
            return;
        }
        // Later gates that need no more than this one add nothing.
        while self.gates.get(i).is_some_and(|g| g.need <= need) {
            self.gates.remove(i);
        }
        self.gates.insert(i, Gate { from, need, since });
    }

    /// Drops the gates the other direction (delivered up to `other_pos`)
    /// has satisfied and sets the limit from the first one left.
    fn update_lim(&mut self, other_pos: u64) {
        while self.gates.front().is_some_and(|g| g.need <= other_pos) {
            self.gates.pop_front();
        }
        if self.gates.is_empty() && self.gates.capacity() > MAX_GATES {
            self.gates = VecDeque::new();
        }
        self.gate_lim = self.gates.front().map(|g| g.from.max(self.next_off));
    }

    /// Stops waiting: every gate goes (the caller counts why).
    fn release_gates(&mut self) {
        self.gates.clear();
        self.gate_lim = None;
    }

    /// Signed distance of `seq` from the next expected byte; `None` before
    /// the origin is known.
    fn rel(&self, seq: u32) -> Option<i32> {
        let origin = self.origin?;
        Some(seq_diff(seq, seq_add(origin, self.next_off)))
    }

    /// Hands in-order bytes starting at `next_off` to the handler.
    fn deliver<H: StreamHandler>(
        &mut self,
        dir: Dir,
        data: &[u8],
        info: &SegInfo,
        k: &mut Ctx<'_, H>,
    ) {
        if data.is_empty() {
            return;
        }
        let base = self.next_off;
        self.next_off = base.saturating_add(data.len() as u64);
        if !self.carry.is_empty() && !self.carry_fits(data.len(), k.g) {
            // The worker's carry budget is spent: the partial message is
            // shed, and the handler resynchronises on what follows.
            k.c.budget_shed_carry_bytes += self.carry.len() as u64;
            self.carry.clear();
            k.h.on_gap(dir, 0, info);
        }
        if self.carry.is_empty() {
            let n = k.h.on_data(dir, data, base, info).min(data.len());
            let rest = &data[n..];
            if rest.len() > k.cfg.max_carry {
                desync(dir, rest.len(), info, k);
            } else if !self.carry_fits(rest.len(), k.g) {
                k.c.budget_shed_carry_bytes += rest.len() as u64;
                k.h.on_gap(dir, 0, info);
            } else {
                self.carry.extend_from_slice(rest);
            }
        } else {
            let off = base.saturating_sub(self.carry.len() as u64);
            self.carry.extend_from_slice(data);
            let n =
                k.h.on_data(dir, &self.carry, off, info)
                    .min(self.carry.len());
            let left = self.carry.len() - n;
            if left > k.cfg.max_carry {
                self.carry.clear();
                desync(dir, left, info, k);
            } else {
                self.carry.drain(..n);
            }
        }
        if self.carry.is_empty() && self.carry.capacity() > KEEP_CARRY_CAPACITY {
            self.carry = Vec::new();
        }
        self.sync_carry(k.g);
    }

    /// Whether `extra` more bytes fit the carry without its growth passing
    /// the worker's carry budget (a `Vec` grows to at least twice its
    /// capacity).
    fn carry_fits(&self, extra: usize, g: &Budget) -> bool {
        let len = self.carry.len() + extra;
        let cap = self.carry.capacity();
        len <= cap || (len.max(2 * cap) - cap) as u64 <= g.carry_available()
    }

    /// Brings the budget's count of carry capacity up to date.
    fn sync_carry(&mut self, g: &mut Budget) {
        let cap = self.carry.capacity();
        if cap >= self.carry_charged {
            g.carry_used += (cap - self.carry_charged) as u64;
        } else {
            g.carry_used = g
                .carry_used
                .saturating_sub((self.carry_charged - cap) as u64);
        }
        self.carry_charged = cap;
    }

    /// Delivers every stored range that has become contiguous, up to the
    /// causal limit, each with the time and acknowledgement it arrived
    /// with (a byte cannot be available before the packet that delivers
    /// the bytes ahead of it, hence the later of the two times).
    fn drain<H: StreamHandler>(&mut self, dir: Dir, info: &SegInfo, k: &mut Ctx<'_, H>) {
        if self.store.is_empty() {
            // In-order traffic: called after every delivery, with nothing stored.
            return;
        }
        loop {
            // Nothing lies below next_off by invariant; trimming keeps that true regardless.
            k.c.tcp_retransmit_bytes += self.store.trim_front(self.next_off, k.g) as u64;
            let Some(p) = self.store.pop_before(self.next_off, self.lim(), k.g) else {
                return;
            };
            let info = SegInfo {
                ts: info.ts.max(p.stamp.ts),
                frame_no: info.frame_no,
                peer_acked: p.stamp.peer_acked.or(info.peer_acked),
            };
            self.deliver(dir, &p.data, &info, k);
            self.store.recycle(p.data, k.g);
        }
    }

    /// Declares `[next_off, upto)` lost (stopping at the first stored byte),
    /// then delivers what became contiguous. Always makes progress when the
    /// store is non-empty or `upto > next_off`.
    fn give_up<H: StreamHandler>(
        &mut self,
        dir: Dir,
        upto: u64,
        info: &SegInfo,
        k: &mut Ctx<'_, H>,
    ) {
        k.c.tcp_retransmit_bytes += self.store.trim_front(self.next_off, k.g) as u64;
        let upto = self.store.first_start().map_or(upto, |s| s.min(upto));
        if upto > self.next_off {
            let len = upto - self.next_off;
            self.carry.clear();
            k.c.tcp_gaps += 1;
            k.c.tcp_gap_bytes += len;
            self.next_off = upto;
            k.h.on_gap(dir, len, info);
        }
        self.drain(dir, info, k);
    }

    /// Gives up every hole before stored data, delivering all of it.
    fn give_up_queued<H: StreamHandler>(&mut self, dir: Dir, info: &SegInfo, k: &mut Ctx<'_, H>) {
        while let Some(s) = self.store.first_start() {
            let before = (self.next_off, self.store.bytes());
            self.give_up(dir, s, info, k);
            if before == (self.next_off, self.store.bytes()) {
                self.store.clear(k.g);
            }
        }
    }

    /// Takes the bytes `[off, off + data.len())` of this direction.
    /// Bytes at or past the causal limit wait in the store with the rest.
    fn ingest<H: StreamHandler>(
        &mut self,
        dir: Dir,
        mut off: u64,
        mut data: &[u8],
        ts: Ts,
        info: &SegInfo,
        k: &mut Ctx<'_, H>,
    ) {
        let stamp = Stamp {
            ts,
            peer_acked: info.peer_acked,
        };
        let mut counted_hold = false;
        loop {
            if off < self.next_off {
                let old = (self.next_off - off).min(data.len() as u64) as usize;
                k.c.tcp_retransmit_bytes += old as u64;
                data = &data[old..];
                off += old as u64;
            }
            if data.is_empty() {
                return;
            }
            let mark = (self.next_off, data.len());
            let mut released = false;
            let gated = off >= self.lim();
            if off > self.next_off || gated {
                match self
                    .store
                    .insert_stamped(off, data, stamp, &k.cfg.store_limits(), k.g)
                {
                    Ok(ins) => {
                        k.c.tcp_retransmit_bytes += ins.dup_bytes as u64;
                        if ins.new_bytes > 0 {
                            if gated && !counted_hold {
                                k.c.tcp_causal_held += 1;
                            } else if off > self.next_off {
                                k.c.tcp_ooo_segments += 1;
                            }
                        }
                        return;
                    }
                    Err(_) => {
                        let front = self.store.first_start().map_or(off, |s| s.min(off));
                        if front > self.next_off {
                            // No room: the oldest hole goes, which may make this segment in order.
                            k.c.tcp_ooo_budget_gaps += 1;
                            self.give_up(dir, front, info, k);
                        } else {
                            // No room left to wait in: deliver what waits, as if in capture order.
                            k.c.tcp_causal_budget_released += 1;
                            self.release_gates();
                            released = true;
                            counted_hold = true;
                            self.drain(dir, info, k);
                        }
                    }
                }
            } else {
                let room = self
                    .store
                    .first_start()
                    .map_or(u64::MAX, |s| s.saturating_sub(off))
                    .min(self.lim().saturating_sub(off));
                let n = room.min(data.len() as u64) as usize;
                let (now, rest) = data.split_at(n);
                self.deliver(dir, now, info, k);
                off += n as u64;
                data = rest;
                self.drain(dir, info, k);
            }
            if (self.next_off, data.len()) == mark && !released {
                // Cannot happen (every branch above advances); never spin on it.
                return;
            }
        }
    }

    /// Stops waiting for the other direction when the first gate has
    /// held its bytes longer than the causal wait; gives up holes the peer
    /// has (firmly) acknowledged, and holes that kept data waiting longer
    /// than the timeout; delivers what is contiguous; reaches the FIN when
    /// one is known and nothing waits.
    fn resolve<H: StreamHandler>(&mut self, dir: Dir, now: Ts, info: &SegInfo, k: &mut Ctx<'_, H>) {
        while let Some(g) = self.gates.front() {
            if now.saturating_sub(g.since) < k.cfg.causal_wait_ns {
                break;
            }
            k.c.tcp_causal_wait_expired += 1;
            self.gates.pop_front();
            // The next gate may be satisfied already; the caller's next
            // `update_lim` tells. Until then it holds.
            self.gate_lim = self.gates.front().map(|g| g.from.max(self.next_off));
        }
        if let Some(a) = self.acked_firm {
            while !self.store.is_empty() && a > self.next_off {
                let before = self.next_off;
                self.give_up(dir, a, info, k);
                if self.next_off == before {
                    break;
                }
            }
        }
        while let Some(t) = self.store.first_since() {
            if now.saturating_sub(t) < k.cfg.hole_timeout_ns {
                break;
            }
            let before = (self.next_off, self.store.bytes());
            let s = self.store.first_start().unwrap_or(self.next_off);
            self.give_up(dir, s, info, k);
            if before == (self.next_off, self.store.bytes()) {
                break;
            }
        }
        self.drain(dir, info, k);
        if let Some(f) = self.fin {
            if self.gate_lim.is_none_or(|l| l >= f) {
                self.reach_fin(dir, f, info, k);
            }
        }
    }

    /// Everything before the FIN is delivered or given up; nothing after it is kept.
    fn reach_fin<H: StreamHandler>(
        &mut self,
        dir: Dir,
        f: u64,
        info: &SegInfo,
        k: &mut Ctx<'_, H>,
    ) {
        while self.next_off < f {
            let before = self.next_off;
            self.give_up(dir, f, info, k);
            if self.next_off == before {
                break;
            }
        }
        self.store.clear(k.g);
        self.fin = Some(f.max(self.next_off));
    }

    /// Ends the direction: holes given up, queued bytes delivered, buffers freed.
    fn close<H: StreamHandler>(&mut self, dir: Dir, info: &SegInfo, k: &mut Ctx<'_, H>) {
        self.give_up_queued(dir, info, k);
        if let Some(f) = self.fin {
            self.reach_fin(dir, f, info, k);
        }
        self.store.clear(k.g);
        self.store.shrink(k.g);
        self.carry = Vec::new();
        self.sync_carry(k.g);
    }

    /// After a run of bogus sequence numbers: starts numbering again so
    /// that `seq` is the next expected byte, with an unknown-length gap.
    fn reanchor<H: StreamHandler>(
        &mut self,
        dir: Dir,
        seq: u32,
        info: &SegInfo,
        k: &mut Ctx<'_, H>,
    ) {
        self.release_gates();
        self.give_up_queued(dir, info, k);
        self.carry.clear();
        self.origin = Some(seq.wrapping_sub(self.next_off as u32));
        self.acked = None;
        self.acked_firm = None;
        self.ack_cands = 0;
        self.bad_run = 0;
        k.c.tcp_gaps += 1;
        k.h.on_gap(dir, 0, info);
    }
}

/// The unconsumed remainder outgrew the carry limit: drop it and resync.
fn desync<H: StreamHandler>(dir: Dir, dropped: usize, info: &SegInfo, k: &mut Ctx<'_, H>) {
    k.c.tcp_resync_skipped_bytes += dropped as u64;
    k.h.on_gap(dir, 0, info);
}

/// Information for bytes of `dir` delivered during the current packet.
fn info_for(half: &[HalfStream; 2], dir: Dir, ts: Ts, frame_no: u64) -> SegInfo {
    SegInfo {
        ts,
        frame_no,
        peer_acked: half[dir.other().idx()].acked,
    }
}

fn clamp_u64(x: i128) -> u64 {
    x.clamp(0, i128::from(u64::MAX)) as u64
}

/// Both directions of one TCP connection.
///
/// Lifecycle: open until both directions finished (FIN seen, everything
/// before it delivered or given up), a RST, or [`flush`](Self::flush); then
/// `on_close` is called once and [`is_closed`](Self::is_closed) turns true.
/// A closed connection ignores everything but a SYN with a new ISN, which
/// starts a new connection in place (as does such a SYN on an open
/// connection: the old one is flushed and closed first).
///
/// Must be [`flush`](Self::flush)ed before it is dropped, or the bytes it
/// holds stay counted in the shared [`Budget`].
#[derive(Debug)]
pub struct TcpConn {
    half: [HalfStream; 2],
    cfg: TcpConfig,
    /// Some segment was seen.
    started: bool,
    /// Counted in `tcp_midstream`.
    midstream: bool,
    closed: bool,
    last_frame: u64,
    /// Segments of this connection seen (for the acknowledgement grace).
    seg_no: u64,
}

impl Default for TcpConn {
    fn default() -> Self {
        TcpConn::new(TcpConfig::default())
    }
}

impl TcpConn {
    pub fn new(cfg: TcpConfig) -> Self {
        TcpConn {
            half: Default::default(),
            cfg,
            started: false,
            midstream: false,
            closed: false,
            last_frame: 0,
            seg_no: 0,
        }
    }

    /// One direction's state.
    pub fn half(&self, dir: Dir) -> &HalfStream {
        &self.half[dir.idx()]
    }

    /// `on_close` was called; later segments are ignored (but a new SYN).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes wait in a store (behind a hole, or for the other direction).
    pub fn is_waiting(&self) -> bool {
        !self.closed && self.half.iter().any(|h| !h.store.is_empty())
    }

    /// The connection was first seen without either SYN.
    pub fn is_midstream(&self) -> bool {
        self.midstream
    }

    /// `tcp` is a SYN that starts a new connection on this 4-tuple (port
    /// reuse): its ISN differs from the one this connection knows for that
    /// direction, or the connection is closed and knows none. A SYN without
    /// ACK is taken as the client's, a SYN-ACK as the server's.
    /// [`segment`](Self::segment) handles such a SYN itself; a caller that
    /// wants a fresh handler per connection checks this first.
    pub fn is_new_syn(&self, tcp: &TcpInfo) -> bool {
        let dir = if tcp.ack_flag {
            Dir::Response
        } else {
            Dir::Request
        };
        self.is_new_syn_from(dir, tcp)
    }

    fn is_new_syn_from(&self, dir: Dir, tcp: &TcpInfo) -> bool {
        if !tcp.syn || !self.started {
            return false;
        }
        match self.half[dir.idx()].origin {
            Some(o) => o != seq_add(tcp.seq, 1),
            None => self.closed,
        }
    }

    /// One segment of `dir` (its whole payload was captured).
    #[allow(clippy::too_many_arguments)]
    pub fn segment<H: StreamHandler>(
        &mut self,
        dir: Dir,
        tcp: &TcpInfo,
        payload: &[u8],
        ts: Ts,
        frame_no: u64,
        h: &mut H,
        g: &mut Budget,
        c: &mut Counters,
    ) {
        self.segment_wire(dir, tcp, payload, payload.len(), ts, frame_no, h, g, c);
    }

    /// One segment of `dir` whose payload was `wire_len` bytes on the wire,
    /// of which `payload` was captured (snap length): the missing tail is
    /// declared a gap as soon as the stream reaches it.
    #[allow(clippy::too_many_arguments)]
    pub fn segment_wire<H: StreamHandler>(
        &mut self,
        dir: Dir,
        tcp: &TcpInfo,
        payload: &[u8],
        wire_len: usize,
        ts: Ts,
        frame_no: u64,
        h: &mut H,
        g: &mut Budget,
        c: &mut Counters,
    ) {
        if self.is_new_syn_from(dir, tcp) {
            self.flush(ts, h, g, c);
            self.half = Default::default();
            self.midstream = false;
            self.closed = false;
            c.tcp_flows += 1;
        }
        self.started = true;
        self.last_frame = frame_no;
        self.seg_no += 1;
        if self.closed {
            return;
        }
        let d = dir.idx();
        let o = dir.other().idx();
        let wire_len = wire_len.max(payload.len());
        let cfg = self.cfg;
        let mut k = Ctx { h, g, c, cfg: &cfg };

        if tcp.syn {
            if self.half[d].origin.is_none() {
                self.half[d].origin = Some(seq_add(tcp.seq, 1));
                self.half[d].syn = true;
            }
            if tcp.ack_flag && self.half[o].origin.is_none() {
                // The SYN-ACK acknowledges the client's SYN: ISN + 1.
                self.half[o].origin = Some(tcp.ack);
                self.half[o].syn = true;
            }
        }
        let data_seq = if tcp.syn {
            seq_add(tcp.seq, 1)
        } else {
            tcp.seq
        };
        if self.half[d].origin.is_none() && (wire_len > 0 || tcp.fin) {
            self.half[d].origin = Some(data_seq);
            if !self.half[0].syn && !self.half[1].syn && !self.midstream {
                self.midstream = true;
                k.c.tcp_midstream += 1;
            }
        }

        // Where the segment lies, if this direction is placed at all.
        let start = match self.half[d].rel(data_seq) {
            None => None,
            Some(rel) if rel.unsigned_abs() <= self.cfg.max_seq_jump => {
                self.half[d].bad_run = 0;
                Some(i128::from(self.half[d].next_off) + i128::from(rel))
            }
            Some(_) => {
                k.c.tcp_bad_seq += 1;
                let hs = &mut self.half[d];
                hs.bad_run = hs.bad_run.saturating_add(1);
                if hs.bad_run < BAD_SEQ_REANCHOR || payload.is_empty() || hs.fin.is_some() {
                    return;
                }
                let info = info_for(&self.half, dir, ts, frame_no);
                self.half[d].reanchor(dir, data_seq, &info, &mut k);
                Some(i128::from(self.half[d].next_off))
            }
        };

        // How far this segment's sender had received the other direction.
        let mut acks = None;
        if tcp.ack_flag {
            let seg_no = self.seg_no;
            let hs = &mut self.half[o];
            if let Some(rel) = hs.rel(tcp.ack) {
                let a = i128::from(hs.next_off) + i128::from(rel);
                if rel.unsigned_abs() <= self.cfg.max_seq_jump && a >= 0 {
                    let a = clamp_u64(a);
                    hs.acked = Some(hs.acked.map_or(a, |x| x.max(a)));
                    hs.note_ack(a, seg_no, ts);
                    acks = Some(a);
                }
            }
        }

        if tcp.rst {
            let info = SegInfo {
                ts,
                frame_no,
                peer_acked: None,
            };
            self.release_all(ts, frame_no, &mut k);
            for dir in [Dir::Request, Dir::Response] {
                let info = info_for(&self.half, dir, ts, frame_no);
                self.half[dir.idx()].close(dir, &info, &mut k);
            }
            self.closed = true;
            k.h.on_close(&info);
            return;
        }

        if let (Some(start), Some(a)) = (start, acks) {
            // New data that acknowledges bytes of the other direction not
            // delivered yet waits for them. Retransmitted bytes and pure
            // ACKs hold nothing back.
            let end = start + payload.len() as i128;
            let from = start.max(i128::from(self.half[d].next_off));
            if end > from && a > self.other_pos(dir) {
                self.half[d].add_gate(clamp_u64(from), a, ts);
            }
        }

        if let Some(start) = start {
            self.update_lim(dir);
            let info = info_for(&self.half, dir, ts, frame_no);
            let hs = &mut self.half[d];
            let limit = hs.fin.map_or(i128::MAX, i128::from);
            let cap_end = (start + payload.len() as i128).min(limit);
            let wire_end = (start + wire_len as i128).min(limit);
            if cap_end > start {
                // Bytes before the origin are old; the rest is trimmed by `ingest`.
                let skip = clamp_u64(-start) as usize;
                let take = (cap_end - start) as usize;
                if skip < take {
                    hs.ingest(
                        dir,
                        clamp_u64(start),
                        &payload[skip..take],
                        ts,
                        &info,
                        &mut k,
                    );
                }
                k.c.tcp_retransmit_bytes += skip.min(take) as u64;
            }
            let next = i128::from(hs.next_off);
            if wire_end > cap_end && next >= cap_end && next < wire_end {
                // The capture cut this segment short: its tail is lost.
                hs.give_up(dir, clamp_u64(wire_end), &info, &mut k);
            }
            if tcp.fin && hs.fin.is_none() && wire_end >= 0 {
                // A FIN behind what was already delivered ends the stream where it stands.
                hs.fin = Some(clamp_u64(wire_end).max(hs.next_off));
            }
        }

        self.settle(ts, frame_no, &mut k);
        if self.half[0].is_finished() && self.half[1].is_finished() {
            for dir in [Dir::Request, Dir::Response] {
                let info = info_for(&self.half, dir, ts, frame_no);
                self.half[dir.idx()].close(dir, &info, &mut k);
            }
            self.closed = true;
            k.h.on_close(&SegInfo {
                ts,
                frame_no,
                peer_acked: None,
            });
        }
    }

    /// Gives up holes that have kept data waiting longer than the timeout,
    /// without a packet of this connection (for idle ticks).
    pub fn check_timeouts<H: StreamHandler>(
        &mut self,
        now: Ts,
        h: &mut H,
        g: &mut Budget,
        c: &mut Counters,
    ) {
        if self.closed {
            return;
        }
        let cfg = self.cfg;
        let mut k = Ctx { h, g, c, cfg: &cfg };
        let frame = self.last_frame;
        self.settle(now, frame, &mut k);
    }

    /// How far `dir`'s peer direction has been delivered, counting its FIN
    /// (which takes one sequence number, so an ACK of it is one past).
    fn other_pos(&self, dir: Dir) -> u64 {
        let o = &self.half[dir.other().idx()];
        o.next_off + u64::from(o.is_finished())
    }

    fn update_lim(&mut self, dir: Dir) {
        let pos = self.other_pos(dir);
        self.half[dir.idx()].update_lim(pos);
    }

    /// Repeats what makes progress (waits that ended, holes given up,
    /// contiguous bytes delivered in both directions) until nothing
    /// changes: delivering one direction may release the other.
    fn settle<H: StreamHandler>(&mut self, now: Ts, frame_no: u64, k: &mut Ctx<'_, H>) {
        for h in &mut self.half {
            h.promote_ack(self.seg_no, now, k.cfg);
        }
        if self.half[0].at_rest() && self.half[1].at_rest() {
            // The common case of in-order traffic: nothing waits, so the
            // rounds below would change nothing (about 250 instructions a
            // packet on big.pcap).
            return;
        }
        loop {
            let mark = |c: &Self| {
                (
                    c.half[0].next_off,
                    c.half[1].next_off,
                    c.half[0].gates.len(),
                    c.half[1].gates.len(),
                    c.half[0].fin,
                    c.half[1].fin,
                )
            };
            let before = mark(self);
            for dir in [Dir::Request, Dir::Response] {
                self.update_lim(dir);
                let info = info_for(&self.half, dir, now, frame_no);
                self.half[dir.idx()].resolve(dir, now, &info, k);
            }
            if mark(self) == before {
                return;
            }
        }
    }

    /// The connection ends: whatever waits for the other direction is
    /// delivered, the longest-waiting first, each release counted as an
    /// expired wait.
    fn release_all<H: StreamHandler>(&mut self, now: Ts, frame_no: u64, k: &mut Ctx<'_, H>) {
        loop {
            self.settle(now, frame_no, k);
            let oldest = [Dir::Request, Dir::Response]
                .into_iter()
                .filter(|d| self.half[d.idx()].is_held())
                .min_by_key(|d| self.half[d.idx()].gates.front().map_or(0, |g| g.since));
            let Some(d) = oldest else {
                break;
            };
            k.c.tcp_causal_wait_expired += 1;
            let h = &mut self.half[d.idx()];
            h.gates.pop_front();
            h.gate_lim = None;
        }
        for h in &mut self.half {
            h.release_gates();
        }
    }

    /// End of input or eviction: remaining holes become gaps, queued bytes
    /// are delivered, buffers are freed, then `on_close` (once).
    pub fn flush<H: StreamHandler>(&mut self, ts: Ts, h: &mut H, g: &mut Budget, c: &mut Counters) {
        if self.closed {
            return;
        }
        let cfg = self.cfg;
        let mut k = Ctx { h, g, c, cfg: &cfg };
        let frame = self.last_frame;
        self.release_all(ts, frame, &mut k);
        for dir in [Dir::Request, Dir::Response] {
            let info = info_for(&self.half, dir, ts, self.last_frame);
            self.half[dir.idx()].close(dir, &info, &mut k);
        }
        self.closed = true;
        k.h.on_close(&SegInfo {
            ts,
            frame_no: self.last_frame,
            peer_acked: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const REQ: Dir = Dir::Request;
    const RESP: Dir = Dir::Response;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ev {
        /// dir, stream_off, len, zero-copy (data pointed into the packet)
        Data(Dir, u64, usize, bool),
        Gap(Dir, u64),
        Close,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        All,
        /// Up to and including the last b'\n'.
        Lines,
        Nothing,
    }

    /// Records what it is handed; checks every call against the true streams.
    struct Rec {
        mode: Mode,
        got: [Vec<u8>; 2],
        ev: Vec<Ev>,
        /// Where the next on_data must start (None after an unknown-length gap).
        pos: [Option<u64>; 2],
        /// End of the last presentation.
        end: [u64; 2],
        truth: [Vec<u8>; 2],
        /// The packet payload being fed (to tell zero-copy from carry).
        pkt: (usize, usize),
        acked: Vec<Option<u64>>,
    }

    impl Rec {
        fn new(mode: Mode) -> Self {
            Rec {
                mode,
                got: Default::default(),
                ev: Vec::new(),
                pos: [Some(0); 2],
                end: [0; 2],
                truth: Default::default(),
                pkt: (0, 0),
                acked: Vec::new(),
            }
        }
        fn gaps(&self) -> Vec<(Dir, u64)> {
            self.ev
                .iter()
                .filter_map(|e| {
                    if let Ev::Gap(d, l) = e {
                        Some((*d, *l))
                    } else {
                        None
                    }
                })
                .collect()
        }
        fn closes(&self) -> usize {
            self.ev.iter().filter(|e| **e == Ev::Close).count()
        }
    }

    impl StreamHandler for Rec {
        fn on_data(&mut self, dir: Dir, data: &[u8], off: u64, info: &SegInfo) -> usize {
            let d = dir.idx();
            assert!(!data.is_empty());
            if let Some(p) = self.pos[d] {
                assert_eq!(off, p, "{dir:?} data at {off}, expected {p}");
            }
            let t = &self.truth[d];
            if (off as usize).saturating_add(data.len()) <= t.len() {
                assert_eq!(
                    data,
                    &t[off as usize..off as usize + data.len()],
                    "{dir:?} bytes at {off}"
                );
            }
            let p = data.as_ptr() as usize;
            let zero_copy = p >= self.pkt.0 && p < self.pkt.0 + self.pkt.1;
            self.ev.push(Ev::Data(dir, off, data.len(), zero_copy));
            self.acked.push(info.peer_acked);
            let n = match self.mode {
                Mode::All => data.len(),
                Mode::Lines => data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
                Mode::Nothing => 0,
            };
            self.got[d].extend_from_slice(&data[..n]);
            self.pos[d] = Some(off + n as u64);
            self.end[d] = off + data.len() as u64;
            n
        }
        fn on_gap(&mut self, dir: Dir, len: u64, _info: &SegInfo) {
            let d = dir.idx();
            self.ev.push(Ev::Gap(dir, len));
            self.pos[d] = if len == 0 {
                None
            } else {
                Some(self.end[d].max(self.pos[d].unwrap_or(0)) + len)
            };
            self.end[d] = self.pos[d].unwrap_or(self.end[d]);
        }
        fn on_close(&mut self, _info: &SegInfo) {
            self.ev.push(Ev::Close);
            self.pos = [Some(0); 2];
            self.end = [0; 2];
        }
    }

    fn flags(seq: u32) -> TcpInfo {
        TcpInfo {
            seq,
            ..TcpInfo::default()
        }
    }
    fn d(seq: u32, ack: u32) -> TcpInfo {
        TcpInfo {
            seq,
            ack,
            ack_flag: true,
            ..TcpInfo::default()
        }
    }

    struct H {
        conn: TcpConn,
        rec: Rec,
        g: Budget,
        c: Counters,
        ts: Ts,
        frame: u64,
        isn: [u32; 2],
    }

    impl H {
        fn new(cfg: TcpConfig, mode: Mode) -> Self {
            let g = cfg.budget();
            H {
                conn: TcpConn::new(cfg),
                rec: Rec::new(mode),
                g,
                c: Counters::default(),
                ts: 0,
                frame: 0,
                isn: [0; 2],
            }
        }
        fn send(&mut self, dir: Dir, tcp: TcpInfo, payload: &[u8]) {
            self.frame += 1;
            self.rec.pkt = (payload.as_ptr() as usize, payload.len());
            let (ts, frame) = (self.ts, self.frame);
            self.conn.segment(
                dir,
                &tcp,
                payload,
                ts,
                frame,
                &mut self.rec,
                &mut self.g,
                &mut self.c,
            );
            self.rec.pkt = (0, 0);
        }
        /// Sequence number of stream offset `off` in `dir`.
        fn seq(&self, dir: Dir, off: u64) -> u32 {
            seq_add(self.isn[dir.idx()], 1 + off)
        }
        fn handshake(&mut self, c_isn: u32, s_isn: u32) {
            self.isn = [c_isn, s_isn];
            self.send(
                REQ,
                TcpInfo {
                    seq: c_isn,
                    syn: true,
                    ..TcpInfo::default()
                },
                b"",
            );
            self.send(
                RESP,
                TcpInfo {
                    seq: s_isn,
                    ack: c_isn.wrapping_add(1),
                    syn: true,
                    ack_flag: true,
                    ..TcpInfo::default()
                },
                b"",
            );
            self.send(REQ, d(c_isn.wrapping_add(1), s_isn.wrapping_add(1)), b"");
        }
        /// Data of `dir` at stream offset `off`, acking nothing new.
        fn data(&mut self, dir: Dir, off: u64, payload: &[u8]) {
            let tcp = d(self.seq(dir, off), self.seq(dir.other(), 0));
            self.send(dir, tcp, payload);
        }
        fn ack(&mut self, dir: Dir, acked_off_of_other: u64) {
            let tcp = d(
                self.seq(dir, self.conn.half(dir).next_offset()),
                self.seq(dir.other(), acked_off_of_other),
            );
            self.send(dir, tcp, b"");
        }
        /// An ACK seen long enough ago to give up the holes it covers
        /// (the grace for ACKs a mirror shows ahead of their data).
        fn ack_firm(&mut self, dir: Dir, acked_off_of_other: u64) {
            self.ack(dir, acked_off_of_other);
            self.ts += TcpConfig::default().ack_grace_ns;
            self.ack(dir, acked_off_of_other);
        }
        fn fin(&mut self, dir: Dir, off: u64, payload: &[u8]) {
            let mut tcp = d(self.seq(dir, off), self.seq(dir.other(), 0));
            tcp.fin = true;
            self.send(dir, tcp, payload);
        }
        fn flush(&mut self) {
            let ts = self.ts;
            self.conn.flush(ts, &mut self.rec, &mut self.g, &mut self.c);
        }
    }

    fn stream(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn with_truth(mode: Mode, req: &[u8]) -> H {
        let mut h = H::new(TcpConfig::default(), mode);
        h.rec.truth[0] = req.to_vec();
        h.handshake(1000, 9000);
        h
    }

    #[test]
    fn every_split_point_in_either_order_delivers_the_same() {
        let s = stream(100);
        for k in 0..=100 {
            for reversed in [false, true] {
                let mut h = with_truth(Mode::All, &s);
                let mut parts = vec![(0u64, &s[..k]), (k as u64, &s[k..])];
                parts.retain(|p| !p.1.is_empty());
                if reversed {
                    parts.reverse();
                }
                for (off, p) in parts {
                    h.data(REQ, off, p);
                }
                assert_eq!(h.rec.got[0], s, "split at {k}, reversed {reversed}");
                assert!(h.rec.gaps().is_empty());
                let ooo = u64::from(reversed && k > 0 && k < 100);
                assert_eq!(h.c.tcp_ooo_segments, ooo);
                assert_eq!((h.c.tcp_retransmit_bytes, h.g.used), (0, 0));
            }
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

    #[test]
    fn all_permutations_of_four_segments() {
        let s = stream(100);
        let cuts = [0usize, 10, 35, 40, 100];
        let perms = permutations(4);
        assert_eq!(perms.len(), 24);
        for perm in perms {
            let mut h = with_truth(Mode::All, &s);
            for &i in &perm {
                h.data(REQ, cuts[i] as u64, &s[cuts[i]..cuts[i + 1]]);
            }
            assert_eq!(h.rec.got[0], s, "{perm:?}");
            assert!(h.rec.gaps().is_empty());
            assert_eq!(h.conn.half(REQ).queued_bytes(), 0);
            assert_eq!(h.g.used, 0);
        }
    }

    #[test]
    fn duplicates_are_trimmed_and_counted() {
        let s = stream(60);
        let mut h = with_truth(Mode::All, &s);
        h.data(REQ, 20, &s[20..40]);
        h.data(REQ, 20, &s[20..40]); // duplicate of queued data
        h.data(REQ, 0, &s[0..20]);
        h.data(REQ, 0, &s[0..20]); // duplicate of delivered data
        h.data(REQ, 40, &s[40..60]);
        h.data(REQ, 30, &s[30..60]);
        assert_eq!(h.rec.got[0], s);
        assert_eq!(h.c.tcp_retransmit_bytes, 20 + 20 + 30);
        assert_eq!(h.c.tcp_ooo_segments, 1);
        assert!(h.rec.gaps().is_empty());
    }

    #[test]
    fn overlaps_with_older_and_newer_bytes() {
        let s = stream(100);
        let mut h = with_truth(Mode::All, &s);
        h.data(REQ, 0, &s[0..50]);
        h.data(REQ, 30, &s[30..80]); // 20 old, 30 new
        assert_eq!(h.rec.got[0], &s[..80]);
        h.data(REQ, 90, &s[90..100]); // queued
        h.data(REQ, 70, &s[70..95]); // 10 old, 10 new, 5 already queued
        assert_eq!(h.rec.got[0], s);
        assert_eq!(h.c.tcp_retransmit_bytes, 20 + 10 + 5);
    }

    #[test]
    fn first_arrival_wins_inside_a_hole() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(1, 2);
        h.data(REQ, 4, b"EFGH");
        h.data(REQ, 0, b"abcdefgh");
        assert_eq!(h.rec.got[0], b"abcdEFGH");
    }

    #[test]
    fn missing_segment_detected_by_ack() {
        let s = stream(40);
        let mut h = with_truth(Mode::All, &s);
        h.data(REQ, 0, &s[0..10]);
        h.data(REQ, 20, &s[20..30]);
        h.data(REQ, 30, &s[30..40]);
        assert_eq!(h.rec.got[0], &s[..10]);
        // The server acked 15: bytes [10, 15) are lost, [15, 20) may still
        // come; once the ACK has been seen for the grace, that is.
        h.ack(RESP, 15);
        assert!(h.rec.gaps().is_empty());
        h.ts += TcpConfig::default().ack_grace_ns;
        h.ack(RESP, 15);
        assert_eq!(h.rec.gaps(), vec![(REQ, 5)]);
        assert_eq!(h.conn.half(REQ).next_offset(), 15);
        h.ack_firm(RESP, 40);
        assert_eq!(h.rec.gaps(), vec![(REQ, 5), (REQ, 5)]);
        assert_eq!(&h.rec.got[0][10..], &s[20..40]);
        assert_eq!((h.c.tcp_gaps, h.c.tcp_gap_bytes, h.g.used), (2, 10, 0));
        // A late retransmission of the hole is old news.
        h.data(REQ, 10, &s[10..20]);
        assert_eq!(h.c.tcp_retransmit_bytes, 10);
        assert_eq!(h.rec.got[0].len(), 30);
    }

    #[test]
    fn ack_without_queued_data_declares_nothing() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(7, 8);
        h.data(REQ, 0, b"0123");
        h.ack(RESP, 10); // the ACK ran ahead of the capture; data may follow
        h.data(REQ, 4, b"456789");
        assert_eq!(h.rec.got[0], b"0123456789");
        // Now data arrives after a hole the peer already acked: given up at once.
        h.data(REQ, 14, b"EFGH");
        assert!(h.rec.gaps().is_empty());
        h.ack_firm(RESP, 18);
        assert_eq!(h.rec.gaps(), vec![(REQ, 4)]);
        assert_eq!(h.rec.got[0], b"0123456789EFGH");
    }

    #[test]
    fn an_ack_a_few_packets_ahead_of_its_data_declares_no_gap() {
        // A mirror shows the server's ACK of [10, 20) before that segment.
        let s = stream(30);
        let mut h = with_truth(Mode::All, &s);
        h.data(REQ, 0, &s[0..10]);
        h.data(REQ, 20, &s[20..30]);
        h.ack(RESP, 30);
        h.ack(RESP, 30);
        h.data(REQ, 10, &s[10..20]);
        assert_eq!(h.rec.got[0], s);
        assert!(h.rec.gaps().is_empty());
        // But sixteen segments later the ACK is firm: a hole it covers is lost.
        let mut h = with_truth(Mode::All, &s);
        h.data(REQ, 0, &s[0..10]);
        h.data(REQ, 20, &s[20..30]);
        for _ in 0..=16 {
            h.ack(RESP, 30);
        }
        assert_eq!(h.rec.gaps(), vec![(REQ, 10)]);
    }

    /// Data of `dir` at `off` whose sender had received `acked` bytes of
    /// the other direction.
    fn data_acking(h: &mut H, dir: Dir, off: u64, acked: u64, payload: &[u8]) {
        let tcp = d(h.seq(dir, off), h.seq(dir.other(), acked));
        h.send(dir, tcp, payload);
    }

    #[test]
    fn a_reply_shown_before_its_request_waits_for_it() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.rec.truth = [b"get k\r\n".to_vec(), b"END\r\n".to_vec()];
        h.handshake(100, 5000);
        h.ts = 10;
        data_acking(&mut h, RESP, 0, 7, b"END\r\n");
        assert!(h.rec.got[1].is_empty());
        assert_eq!((h.c.tcp_causal_held, h.g.used), (1, 5));
        h.ts = 5;
        data_acking(&mut h, REQ, 0, 0, b"get k\r\n");
        assert_eq!(
            h.rec.ev,
            vec![Ev::Data(REQ, 0, 7, true), Ev::Data(RESP, 0, 5, false)]
        );
        // Handed on with the time it arrived with, not the request's.
        assert_eq!(h.rec.acked, vec![Some(0), Some(7)]);
        assert_eq!((h.c.tcp_causal_wait_expired, h.g.used), (0, 0));
    }

    #[test]
    fn an_ack_of_the_fin_is_satisfied_by_the_fin() {
        // The reply acknowledges the client's FIN (one past its last byte).
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(100, 5000);
        data_acking(&mut h, RESP, 0, 8, b"END\r\n");
        h.fin(REQ, 0, b"get k\r\n");
        assert_eq!(h.rec.got, [b"get k\r\n".to_vec(), b"END\r\n".to_vec()]);
        assert_eq!(h.c.tcp_causal_wait_expired, 0);
    }

    #[test]
    fn a_full_budget_ends_the_wait() {
        let cfg = TcpConfig {
            max_ooo_per_flow: 8,
            ..TcpConfig::default()
        };
        let mut h = H::new(cfg, Mode::All);
        h.handshake(100, 5000);
        data_acking(&mut h, RESP, 0, 7, b"VALUE");
        data_acking(&mut h, RESP, 5, 7, b" k 0");
        assert_eq!(h.c.tcp_causal_budget_released, 1);
        assert_eq!(h.rec.got[1], b"VALUE k 0");
        assert_eq!(h.g.used, 0);
    }

    #[test]
    fn pure_acks_and_retransmissions_hold_nothing_back() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(100, 5000);
        h.data(REQ, 0, b"get a\r\n");
        data_acking(&mut h, RESP, 0, 7, b"END\r\n");
        // A retransmission of the reply acking a request not seen yet.
        data_acking(&mut h, RESP, 0, 14, b"END\r\n");
        h.ack(RESP, 20);
        data_acking(&mut h, REQ, 7, 5, b"get b\r\n");
        assert_eq!(
            h.rec.got,
            [b"get a\r\nget b\r\n".to_vec(), b"END\r\n".to_vec()]
        );
        assert_eq!((h.c.tcp_causal_held, h.c.tcp_retransmit_bytes), (0, 5));
    }

    #[test]
    fn missing_segment_detected_by_fin() {
        let s = stream(30);
        let mut h = with_truth(Mode::All, &s);
        h.data(REQ, 0, &s[0..10]);
        h.fin(REQ, 20, &s[20..30]);
        assert_eq!(h.rec.gaps(), vec![(REQ, 10)]);
        assert_eq!(&h.rec.got[0][10..], &s[20..30]);
        assert!(h.conn.half(REQ).is_finished());
        assert!(!h.conn.is_closed());
        // The other side closes too: once, with the FIN consuming a sequence number.
        h.fin(RESP, 0, b"");
        assert!(h.conn.is_closed());
        assert_eq!(h.rec.closes(), 1);
        let ack = d(h.seq(REQ, 31), h.seq(RESP, 1));
        h.send(REQ, ack, b"");
        assert_eq!(h.rec.closes(), 1);
        assert_eq!(h.c.tcp_bad_seq, 0);
    }

    #[test]
    fn bare_fin_after_lost_data_ends_the_stream_with_a_gap() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(100, 200);
        h.data(RESP, 0, b"abc");
        h.fin(RESP, 10, b"");
        assert_eq!(h.rec.gaps(), vec![(RESP, 7)]);
        assert_eq!(h.conn.half(RESP).fin_offset(), Some(10));
        h.data(RESP, 10, b"after fin");
        assert_eq!(h.rec.got[1], b"abc");
    }

    #[test]
    fn sequence_wraparound() {
        let s = stream(100);
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.rec.truth = [s.clone(), s.clone()];
        h.handshake(u32::MAX - 5, u32::MAX - 60);
        for (a, b) in [(0, 10), (20, 30), (10, 20), (30, 100)] {
            h.data(REQ, a, &s[a as usize..b as usize]);
            h.data(RESP, a, &s[a as usize..b as usize]);
        }
        assert_eq!(h.rec.got, [s.clone(), s.clone()]);
        assert!(h.rec.gaps().is_empty());
        h.ack(RESP, 100);
        assert_eq!(h.conn.half(REQ).peer_acked(), Some(100));
        h.data(REQ, 200, b"x");
        h.ack_firm(RESP, 201);
        assert_eq!(h.rec.gaps(), vec![(REQ, 100)]);
        assert_eq!(h.c.tcp_bad_seq, 0);
    }

    #[test]
    fn mid_stream_start() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.send(REQ, d(5000, 70000), b"get a\r\n");
        h.send(RESP, d(70000, 5007), b"END\r\n");
        h.send(REQ, d(5007, 70005), b"get b\r\n");
        assert_eq!(
            h.rec.got,
            [b"get a\r\nget b\r\n".to_vec(), b"END\r\n".to_vec()]
        );
        assert_eq!(h.c.tcp_midstream, 1);
        assert!(h.conn.is_midstream());
        assert_eq!(h.conn.half(REQ).origin(), Some(5000));
        assert_eq!(h.rec.ev[0], Ev::Data(REQ, 0, 7, true));
        // peer_acked: the response was sent having seen the whole first request.
        assert_eq!(h.rec.acked, vec![None, Some(7), Some(5)]);
    }

    #[test]
    fn syn_ack_alone_is_not_mid_stream() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.send(
            RESP,
            TcpInfo {
                seq: 50,
                ack: 11,
                syn: true,
                ack_flag: true,
                ..TcpInfo::default()
            },
            b"",
        );
        h.send(REQ, d(11, 51), b"get a\r\n");
        assert_eq!(h.c.tcp_midstream, 0);
        assert_eq!(h.conn.half(REQ).origin(), Some(11));
        assert_eq!(h.rec.got[0], b"get a\r\n");
    }

    #[test]
    fn partial_consumption_copies_only_across_segments() {
        let mut h = H::new(TcpConfig::default(), Mode::Lines);
        h.handshake(1, 2);
        h.data(REQ, 0, b"get a\r\nget");
        assert_eq!(h.conn.half(REQ).carry_len(), 3);
        h.data(REQ, 10, b" b\r\nget c");
        h.data(REQ, 19, b"\r\n");
        h.data(REQ, 21, b"get d\r\n");
        assert_eq!(h.rec.got[0], b"get a\r\nget b\r\nget c\r\nget d\r\n");
        assert_eq!(
            h.rec.ev,
            vec![
                Ev::Data(REQ, 0, 10, true),
                Ev::Data(REQ, 7, 12, false),
                Ev::Data(REQ, 14, 7, false),
                Ev::Data(REQ, 21, 7, true),
            ]
        );
        assert_eq!(h.conn.half(REQ).carry_len(), 0);
    }

    #[test]
    fn carry_limit_declares_a_resync() {
        let cfg = TcpConfig {
            max_carry: 16,
            ..TcpConfig::default()
        };
        let mut h = H::new(cfg, Mode::Nothing);
        h.handshake(1, 2);
        h.data(REQ, 0, &[b'x'; 10]);
        assert_eq!(h.conn.half(REQ).carry_len(), 10);
        h.data(REQ, 10, &[b'x'; 10]);
        assert_eq!(h.conn.half(REQ).carry_len(), 0);
        assert_eq!(h.rec.gaps(), vec![(REQ, 0)]);
        assert_eq!(h.c.tcp_resync_skipped_bytes, 20);
        // Too big to keep on the zero-copy path: never copied at all.
        h.data(REQ, 20, &[b'y'; 40]);
        assert_eq!(h.c.tcp_resync_skipped_bytes, 60);
        assert_eq!(h.rec.gaps(), vec![(REQ, 0), (REQ, 0)]);
        assert_eq!(h.c.tcp_gaps, 0);
        // And the stream goes on at the right offset.
        h.rec.mode = Mode::All;
        h.data(REQ, 60, b"ok");
        assert_eq!(h.rec.ev.last(), Some(&Ev::Data(REQ, 60, 2, true)));
    }

    #[test]
    fn per_flow_budget_gives_up_the_oldest_hole() {
        let s = stream(60);
        let cfg = TcpConfig {
            max_ooo_per_flow: 20,
            ..TcpConfig::default()
        };
        let mut h = H::new(cfg, Mode::All);
        h.rec.truth[0] = s.clone();
        h.handshake(1, 2);
        h.data(REQ, 10, &s[10..25]);
        assert_eq!(h.g.used, 15);
        // 25 bytes would pass 20: the oldest hole [0,10) goes, then [30,40) fits.
        h.data(REQ, 30, &s[30..40]);
        assert_eq!(h.c.tcp_ooo_budget_gaps, 1);
        assert_eq!(h.rec.gaps(), vec![(REQ, 10)]);
        assert_eq!(h.rec.got[0], &s[10..25]);
        assert_eq!(
            (h.c.tcp_gaps, h.c.tcp_gap_bytes, h.c.tcp_ooo_dropped_bytes),
            (1, 10, 0)
        );
        assert_eq!(h.g.used, 10);
        // A segment bigger than the whole budget is never queued: the hole before it goes.
        h.data(REQ, 45, &[0; 30]);
        assert_eq!(h.c.tcp_ooo_budget_gaps, 3);
        assert_eq!(h.rec.gaps(), vec![(REQ, 10), (REQ, 5), (REQ, 5)]);
        assert_eq!(h.conn.half(REQ).next_offset(), 75);
        assert_eq!(h.g.used, 0);
    }

    #[test]
    fn global_budget_is_shared_between_connections() {
        let s = stream(40);
        let cfg = TcpConfig {
            max_ooo_global: 20,
            ..TcpConfig::default()
        };
        let mut g = cfg.budget();
        let mut c = Counters::default();
        let mut a = TcpConn::new(cfg);
        let mut b = TcpConn::new(cfg);
        let (mut ra, mut rb) = (Rec::new(Mode::All), Rec::new(Mode::All));
        let syn = TcpInfo {
            seq: 0,
            syn: true,
            ..TcpInfo::default()
        };
        a.segment(REQ, &syn, b"", 0, 1, &mut ra, &mut g, &mut c);
        b.segment(REQ, &syn, b"", 0, 2, &mut rb, &mut g, &mut c);
        a.segment(REQ, &flags(11), &s[10..25], 0, 3, &mut ra, &mut g, &mut c);
        assert_eq!(g.used, 15);
        b.segment(REQ, &flags(11), &s[10..20], 0, 4, &mut rb, &mut g, &mut c);
        // b could not queue: it gave up its own hole and delivered at once.
        assert_eq!(rb.gaps(), vec![(REQ, 10)]);
        assert_eq!(rb.got[0], &s[10..20]);
        assert_eq!((g.used, c.tcp_ooo_budget_gaps), (15, 1));
        assert_eq!(a.half(REQ).queued_bytes(), 15);
        a.flush(0, &mut ra, &mut g, &mut c);
        b.flush(0, &mut rb, &mut g, &mut c);
        assert_eq!(g.used, 0);
        assert_eq!(
            (ra.gaps(), ra.closes(), rb.closes()),
            (vec![(REQ, 10)], 1, 1)
        );
    }

    #[test]
    fn too_many_ranges_gives_up_holes() {
        let cfg = TcpConfig {
            max_ooo_ranges: 3,
            ..TcpConfig::default()
        };
        let mut h = H::new(cfg, Mode::All);
        h.handshake(1, 2);
        for off in [20u64, 15, 10, 5] {
            h.data(REQ, off, b"ab");
        }
        // The newest segment lies before every queued one: only the hole before it goes.
        assert_eq!(h.c.tcp_ooo_budget_gaps, 1);
        assert_eq!(h.rec.gaps(), vec![(REQ, 5)]);
        assert_eq!(h.rec.got[0], b"ab");
        assert_eq!(h.conn.half(REQ).queued_bytes(), 6);
        h.flush();
        assert_eq!(h.g.used, 0);
    }

    #[test]
    fn rst_closes_at_once_and_delivers_what_is_queued() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(10, 20);
        h.data(REQ, 0, b"get a\r\n");
        h.data(REQ, 10, b"get c\r\n");
        let mut rst = flags(h.seq(RESP, 0));
        rst.rst = true;
        h.send(RESP, rst, b"");
        assert!(h.conn.is_closed());
        assert_eq!(h.rec.got[0], b"get a\r\nget c\r\n");
        assert_eq!(h.rec.gaps(), vec![(REQ, 3)]);
        assert_eq!(h.rec.closes(), 1);
        assert_eq!(h.g.used, 0);
        h.data(REQ, 17, b"more");
        h.send(RESP, rst, b"");
        h.flush();
        assert_eq!(h.rec.closes(), 1);
        assert_eq!(h.rec.got[0].len(), 14);
    }

    #[test]
    fn port_reuse_starts_a_new_connection() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(100, 200);
        h.data(REQ, 0, b"one");
        h.fin(REQ, 3, b"");
        h.fin(RESP, 0, b"");
        assert!(h.conn.is_closed());
        let syn = TcpInfo {
            seq: 100,
            syn: true,
            ..TcpInfo::default()
        };
        assert!(!h.conn.is_new_syn(&syn), "same ISN: a retransmission");
        h.send(REQ, syn, b"");
        assert!(h.conn.is_closed());
        let syn = TcpInfo {
            seq: 5_000_000,
            syn: true,
            ..TcpInfo::default()
        };
        assert!(h.conn.is_new_syn(&syn));
        h.handshake(5_000_000, 7);
        assert!(!h.conn.is_closed());
        h.data(REQ, 0, b"two");
        assert_eq!(h.rec.got[0], b"onetwo");
        assert_eq!(h.rec.ev.last(), Some(&Ev::Data(REQ, 0, 3, true)));
        assert_eq!(h.c.tcp_flows, 1);
        assert_eq!(h.rec.closes(), 1);

        // A new SYN while the old connection looks open: it is closed first.
        h.data(REQ, 3, b"x");
        h.data(REQ, 10, b"queued");
        h.handshake(42, 43);
        assert_eq!(h.rec.closes(), 2);
        assert_eq!(h.c.tcp_flows, 2);
        assert_eq!(h.rec.got[0], b"onetwoxqueued");
        assert_eq!(h.g.used, 0);
        h.data(REQ, 0, b"three");
        assert_eq!(h.conn.half(REQ).next_offset(), 5);
    }

    #[test]
    fn bogus_sequence_numbers_are_ignored() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(1000, 2000);
        h.data(REQ, 0, b"abc");
        let far = d(h.seq(REQ, 3).wrapping_add(0x6000_0000), h.seq(RESP, 0));
        h.send(REQ, far, b"junk");
        let mut far_rst = far;
        far_rst.rst = true;
        h.send(REQ, far_rst, b"");
        assert_eq!(h.c.tcp_bad_seq, 2);
        assert!(!h.conn.is_closed());
        h.data(REQ, 3, b"def");
        assert_eq!(h.rec.got[0], b"abcdef");
        // A bogus ACK does not declare holes.
        h.data(REQ, 10, b"zz");
        let bad_ack = d(h.seq(RESP, 0), h.seq(REQ, 0).wrapping_add(0x9000_0000));
        h.send(RESP, bad_ack, b"");
        assert!(h.rec.gaps().is_empty());
    }

    #[test]
    fn a_stream_that_jumped_is_reanchored() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(1000, 2000);
        h.data(REQ, 0, b"abc");
        let base = h.seq(REQ, 0).wrapping_add(0x7000_0000);
        for i in 0..BAD_SEQ_REANCHOR as u32 {
            h.send(REQ, d(base.wrapping_add(i * 2), h.seq(RESP, 0)), b"xy");
        }
        assert_eq!(h.c.tcp_bad_seq, u64::from(BAD_SEQ_REANCHOR));
        assert_eq!(h.rec.gaps(), vec![(REQ, 0)]);
        assert_eq!(h.rec.got[0], b"abcxy");
        h.send(REQ, d(base.wrapping_add(8), h.seq(RESP, 0)), b"zz");
        assert_eq!(h.rec.got[0], b"abcxyzz");
    }

    #[test]
    fn hole_times_out_on_packet_time() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(1, 2);
        h.data(REQ, 0, b"a");
        h.ts = 10 * MS;
        h.data(REQ, 5, b"f");
        h.ts = 900 * MS;
        h.data(REQ, 6, b"g");
        assert!(h.rec.gaps().is_empty());
        h.ts = 1010 * MS;
        h.data(RESP, 0, b"reply");
        assert_eq!(h.rec.gaps(), vec![(REQ, 4)]);
        assert_eq!(h.rec.got[0], b"afg");
        // The idle-tick variant.
        h.data(REQ, 10, b"k");
        let mut c = Counters::default();
        h.conn
            .check_timeouts(2100 * MS, &mut h.rec, &mut h.g, &mut c);
        assert_eq!(c.tcp_gaps, 1);
        assert_eq!(h.rec.got[0], b"afgk");
    }

    #[test]
    fn flush_gives_up_holes_then_closes_once() {
        let mut h = H::new(TcpConfig::default(), Mode::Lines);
        h.handshake(1, 2);
        h.data(REQ, 0, b"get a\r\nge");
        h.data(REQ, 20, b"get z\r\n");
        h.data(RESP, 3, b"END\r\n");
        assert!(h.g.used > 0);
        h.flush();
        assert_eq!(h.rec.gaps(), vec![(REQ, 11), (RESP, 3)]);
        assert_eq!(
            h.rec.got,
            [b"get a\r\nget z\r\n".to_vec(), b"END\r\n".to_vec()]
        );
        assert_eq!((h.rec.closes(), h.g.used), (1, 0));
        assert!(h.conn.is_closed());
        h.flush();
        assert_eq!(h.rec.closes(), 1);
    }

    #[test]
    fn snap_length_cut_becomes_a_gap_at_once() {
        let mut h = H::new(TcpConfig::default(), Mode::All);
        h.handshake(1, 2);
        let tcp = d(h.seq(RESP, 0), h.seq(REQ, 0));
        h.frame += 1;
        h.conn.segment_wire(
            RESP,
            &tcp,
            b"VALUE k 0 100",
            120,
            0,
            h.frame,
            &mut h.rec,
            &mut h.g,
            &mut h.c,
        );
        assert_eq!(h.rec.gaps(), vec![(RESP, 107)]);
        h.data(RESP, 120, b"END\r\n");
        assert_eq!(h.rec.got[1], b"VALUE k 0 100END\r\n");
        assert_eq!(h.c.tcp_ooo_segments, 0);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut h = H::new(
            TcpConfig {
                max_carry: 8,
                max_ooo_per_flow: 64,
                ..TcpConfig::default()
            },
            Mode::Lines,
        );
        let mut x: u32 = 12345;
        for i in 0..5000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let tcp = TcpInfo {
                seq: if x & 1 == 0 {
                    x
                } else {
                    1000u32.wrapping_add(x % 300)
                },
                ack: x.rotate_left(7),
                syn: x % 97 == 0,
                fin: x % 89 == 0,
                rst: x % 301 == 0,
                ack_flag: x & 4 == 0,
            };
            let len = (x >> 20) as usize % 40;
            let payload = vec![b'\n'; len];
            h.ts = u64::from(x % 3000) * MS;
            let dir = if x & 8 == 0 { REQ } else { RESP };
            h.frame = u64::from(i);
            h.conn.segment_wire(
                dir,
                &tcp,
                &payload,
                len + (x as usize % 3),
                h.ts,
                h.frame,
                &mut h.rec,
                &mut h.g,
                &mut h.c,
            );
            assert!(h.g.used <= 2 * 64);
        }
        h.flush();
        assert_eq!(h.g.used, 0);
    }

    /// Cut `s` at the given points into (offset, bytes) segments.
    fn cut(s: &[u8], mut points: Vec<usize>) -> Vec<(u64, Vec<u8>)> {
        points.push(0);
        points.push(s.len());
        points.sort_unstable();
        points.dedup();
        points
            .windows(2)
            .map(|w| (w[0] as u64, s[w[0]..w[1]].to_vec()))
            .collect()
    }

    proptest! {
        /// Random segmentation, reordering and duplication of both
        /// directions, with nothing missing: exactly the original bytes.
        #[test]
        fn reorder_and_duplicates_deliver_the_original(
            req in proptest::collection::vec(prop_oneof![Just(b'\n'), 0u8..255], 0..1500),
            resp in proptest::collection::vec(any::<u8>(), 0..1500),
            req_cuts in proptest::collection::vec(0usize..1500, 0..30),
            resp_cuts in proptest::collection::vec(0usize..1500, 0..30),
            dups in proptest::collection::vec((any::<bool>(), 0usize..64), 0..20),
            isn in (any::<u32>(), any::<u32>()),
            order_seed in any::<u64>(),
            lines in any::<bool>(),
        ) {
            let mode = if lines { Mode::Lines } else { Mode::All };
            let mut h = H::new(TcpConfig::default(), mode);
            h.rec.truth = [req.clone(), resp.clone()];
            h.handshake(isn.0, isn.1);
            let mut segs: Vec<(Dir, u64, Vec<u8>)> = Vec::new();
            let rc: Vec<usize> = req_cuts.into_iter().filter(|&c| c < req.len()).collect();
            let sc: Vec<usize> = resp_cuts.into_iter().filter(|&c| c < resp.len()).collect();
            segs.extend(cut(&req, rc).into_iter().filter(|s| !s.1.is_empty()).map(|(o, b)| (REQ, o, b)));
            segs.extend(cut(&resp, sc).into_iter().filter(|s| !s.1.is_empty()).map(|(o, b)| (RESP, o, b)));
            for (dir, i) in dups {
                let same: Vec<_> = segs.iter().filter(|s| (s.0 == REQ) == dir).cloned().collect();
                if !same.is_empty() {
                    segs.push(same[i % same.len()].clone());
                }
            }
            // Deterministic shuffle from the seed (Fisher-Yates over an LCG).
            let mut x = order_seed;
            for i in (1..segs.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                segs.swap(i, (x >> 33) as usize % (i + 1));
            }
            for (dir, off, bytes) in &segs {
                h.data(*dir, *off, bytes);
            }
            prop_assert!(h.rec.gaps().is_empty());
            for (i, s) in [&req, &resp].into_iter().enumerate() {
                let dir = if i == 0 { REQ } else { RESP };
                let carry = h.conn.half(dir).carry_len();
                prop_assert_eq!(&h.rec.got[i][..], &s[..s.len() - carry]);
                prop_assert_eq!(h.conn.half(dir).next_offset(), s.len() as u64);
            }
            prop_assert_eq!(h.g.used, 0);
            h.flush();
            prop_assert_eq!(h.rec.closes(), 1);
        }

        /// With segments lost: every delivered byte is at its true offset
        /// (the recorder checks), and delivered plus declared-lost bytes
        /// cover the stream up to the last segment that got through.
        #[test]
        fn losses_are_accounted_exactly(
            req in proptest::collection::vec(any::<u8>(), 1..1500),
            cuts in proptest::collection::vec(0usize..1500, 0..30),
            lost in proptest::collection::vec(any::<bool>(), 30),
            acks in proptest::collection::vec(0u64..1600, 0..5),
            isn in any::<u32>(),
            order_seed in any::<u64>(),
        ) {
            let mut h = H::new(TcpConfig::default(), Mode::All);
            h.rec.truth[0] = req.clone();
            h.handshake(isn, 1);
            let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < req.len()).collect();
            let mut segs: Vec<_> = cut(&req, cuts)
                .into_iter()
                .enumerate()
                .filter(|(i, s)| !s.1.is_empty() && (*i % 3 == 0 || !lost[*i % 30]))
                .map(|(_, s)| s)
                .collect();
            let end = segs.iter().map(|s| s.0 + s.1.len() as u64).max().unwrap_or(0);
            let mut x = order_seed;
            for i in (1..segs.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                segs.swap(i, (x >> 33) as usize % (i + 1));
            }
            for (i, (off, bytes)) in segs.iter().enumerate() {
                h.data(REQ, *off, bytes);
                if let Some(&a) = acks.get(i) {
                    // The server acks only what was sent.
                    h.ack(RESP, a.min(end));
                }
            }
            h.flush();
            let gap_bytes: u64 = h.rec.gaps().iter().map(|g| g.1).sum();
            prop_assert_eq!(h.rec.got[0].len() as u64 + gap_bytes, end);
            prop_assert_eq!(gap_bytes, h.c.tcp_gap_bytes);
            prop_assert_eq!(h.g.used, 0);
        }

        /// Arbitrary headers, payloads, snap lengths and times: no panic, the
        /// budget bound holds, and a flush gives everything back.
        #[test]
        fn arbitrary_segments_never_panic(
            ops in proptest::collection::vec(
                (any::<bool>(), any::<u32>(), 0u32..4096, any::<u32>(), 0u8..32, 0usize..48, 0usize..8, 0u64..3000),
                1..120,
            ),
            carry in 1usize..64,
        ) {
            let cfg = TcpConfig { max_carry: carry, max_ooo_per_flow: 96, max_ooo_ranges: 4, ..TcpConfig::default() };
            let mut h = H::new(cfg, Mode::Lines);
            for (i, (req, far, near, ack, fl, len, extra, ms)) in ops.into_iter().enumerate() {
                let tcp = TcpInfo {
                    seq: if fl & 16 == 0 { 1000u32.wrapping_add(near) } else { far },
                    ack: if fl & 16 == 0 { 5000u32.wrapping_add(ack % 4096) } else { ack },
                    syn: fl & 1 != 0 && fl & 8 == 0,
                    fin: fl & 2 != 0,
                    rst: fl & 31 == 31,
                    ack_flag: fl & 4 != 0,
                };
                let payload: Vec<u8> = (0..len).map(|j| if j % 5 == 4 { b'\n' } else { b'a' }).collect();
                let dir = if req { REQ } else { RESP };
                h.ts = ms * MS;
                let (ts, frame) = (h.ts, i as u64);
                h.conn.segment_wire(dir, &tcp, &payload, len + extra, ts, frame, &mut h.rec, &mut h.g, &mut h.c);
                prop_assert!(h.g.used <= 2 * 96);
                prop_assert!(h.conn.half(REQ).carry_len() <= carry && h.conn.half(RESP).carry_len() <= carry);
            }
            h.flush();
            prop_assert_eq!(h.g.used, 0);
            prop_assert!(h.rec.closes() >= 1);
        }
    }
}
