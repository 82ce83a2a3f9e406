//! memcached over UDP: one exchange per (client, server, request id).
//!
//! A request must fit in one datagram. Responses come as one or more
//! datagrams carrying the same request id. Classic servers number them
//! (sequence 0..total); memcached 1.6 sends each `VALUE` block and the
//! final `END` as separate datagrams that all say "sequence 0 of 1" (see
//! field notes), and may add an empty 8-byte datagram. Both shapes are
//! handled the same way: the payloads are fed in arrival order to a
//! `Session` (the same pairing rules as TCP) until it has nothing open; an
//! exchange that does not settle within the timeout is recorded as lost.

use super::conn::Session;
use super::record::RecordSink;
use crate::decode::{Transport, Ts};
use crate::protocol::Limits;
use crate::reassembly::udp::parse_udp_frame;
use crate::reassembly::{Dir, SegInfo, StreamHandler};
use crate::stats::Counters;
use hashbrown::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: SocketAddr,
    server: SocketAddr,
    req_id: u16,
}

struct Exchange {
    session: Session,
    /// Response bytes not yet consumed (a classic multi-datagram reply can
    /// split a line or value across datagrams).
    carry: Vec<u8>,
    next_seq: u16,
    last: Ts,
}

/// All open UDP exchanges of one pipeline.
pub struct UdpTable {
    map: HashMap<Key, usize>,
    slots: Vec<Option<(Key, Exchange)>>,
    /// Recycled exchanges, so steady state allocates nothing.
    spare: Vec<Exchange>,
    free_slots: Vec<usize>,
    limits: Limits,
    cap: usize,
    timeout_ns: u64,
    last_sweep: Ts,
    max_carry: usize,
    pub counters: Counters,
}

impl UdpTable {
    pub fn new(limits: Limits, cap: usize, timeout_ns: u64, max_carry: usize) -> UdpTable {
        UdpTable {
            map: HashMap::new(),
            slots: Vec::new(),
            spare: Vec::new(),
            free_slots: Vec::new(),
            limits,
            cap: cap.max(1),
            timeout_ns,
            last_sweep: 0,
            max_carry,
            counters: Counters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn new_exchange(&mut self, client: SocketAddr, server: SocketAddr, now: Ts) -> Exchange {
        match self.spare.pop() {
            Some(mut x) => {
                x.session.reset(client, server, true);
                x.carry.clear();
                x.next_seq = 0;
                x.last = now;
                x
            }
            None => Exchange {
                session: Session::new(client, server, Transport::Udp, true, self.limits, 1024),
                carry: Vec::new(),
                next_seq: 0,
                last: now,
            },
        }
    }

    /// Finishes and recycles the exchange in `slot`.
    fn retire(&mut self, slot: usize, sink: &mut dyn RecordSink) {
        if let Some((key, mut x)) = self.slots[slot].take() {
            self.map.remove(&key);
            x.session.finish(sink);
            self.counters.add(&x.session.counters);
            x.session.counters = Counters::default();
            self.free_slots.push(slot);
            self.spare.push(x);
        }
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
        self.sweep(info.ts, sink);
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
        if let Some(&slot) = self.map.get(&key) {
            // The id was reused before the old exchange settled.
            self.counters.udp_timeouts += 1;
            self.retire(slot, sink);
        }
        if self.map.len() >= self.cap {
            self.counters.udp_pending_overflow += 1;
            return;
        }
        let mut x = self.new_exchange(client, server, info.ts);
        let used = x.session.on_data(Dir::Request, frame.payload, 0, info);
        if used < frame.payload.len() {
            // A request cut short inside its datagram: nothing will follow.
            x.session.counters.bad_requests += 1;
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
            self.retire(slot, sink);
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
        self.sweep(info.ts, sink);
        let Some(frame) = parse_udp_frame(payload) else {
            self.counters.udp_bad_frame += 1;
            return;
        };
        let key = Key {
            client,
            server,
            req_id: frame.req_id,
        };
        let Some(&slot) = self.map.get(&key) else {
            self.counters.udp_orphan_responses += 1;
            return;
        };
        let max_carry = self.max_carry;
        let (_, x) = self.slots[slot].as_mut().expect("mapped slot is full");
        x.last = info.ts;
        if frame.total > 1 {
            if frame.seq != x.next_seq {
                // A numbered reply lost or reordered a datagram.
                x.carry.clear();
                x.session.on_gap(Dir::Response, 0, info);
            }
            x.next_seq = frame.seq.wrapping_add(1);
        }
        if x.carry.is_empty() {
            let used = x.session.on_data(Dir::Response, frame.payload, 0, info);
            x.carry.extend_from_slice(&frame.payload[used..]);
        } else {
            x.carry.extend_from_slice(frame.payload);
            let used = x.session.on_data(Dir::Response, &x.carry, 0, info);
            x.carry.drain(..used);
        }
        if x.carry.len() > max_carry {
            x.carry.clear();
            x.session.on_gap(Dir::Response, 0, info);
        }
        x.session.emit(sink);
        if x.session.settled() {
            self.retire(slot, sink);
        }
    }

    /// Gives up exchanges idle past the timeout (packet time).
    pub fn sweep(&mut self, now: Ts, sink: &mut dyn RecordSink) {
        if now < self.last_sweep.saturating_add(self.timeout_ns / 4 + 1) {
            return;
        }
        self.last_sweep = now;
        for slot in 0..self.slots.len() {
            let expired = matches!(&self.slots[slot], Some((_, x)) if now.saturating_sub(x.last) > self.timeout_ns);
            if expired {
                self.counters.udp_timeouts += 1;
                self.retire(slot, sink);
            }
        }
    }

    /// End of input: every open exchange resolves now.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.counters.udp_timeouts += 1;
                self.retire(slot, sink);
            }
        }
    }
}
