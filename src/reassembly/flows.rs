//! The table of live connections of one worker, keyed by client and server
//! endpoints, with a capacity and an idle timeout on packet time.
//!
//! Generic over the value (a connection's reassembler and session), which it
//! never looks into: it stores each value's last-seen time beside it. Values
//! leave the table only through the caller's hands ([`FlowTable::sweep`],
//! [`FlowTable::remove`], [`FlowTable::drain_all`]), so the caller can flush
//! them (`TcpConn::flush`) before they are dropped.
//!
//! Eviction policy: a flow idle longer than the timeout is evicted by the
//! next sweep; sweeps run at most once per second of packet time (each one
//! scans the table). When the table is full, new flows are refused and
//! counted (`tcp_flow_table_full`); existing flows are never pushed out for
//! a newcomer, so a flood of new 4-tuples cannot break live conversations.

use std::net::IpAddr;

use hashbrown::HashMap;

use crate::decode::Ts;
use crate::stats::Counters;

/// A connection's endpoints, oriented by the watched server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
}

impl FlowKey {
    pub fn new(client_ip: IpAddr, client_port: u16, server_ip: IpAddr, server_port: u16) -> Self {
        FlowKey {
            client: (client_ip, client_port),
            server: (server_ip, server_port),
        }
    }
}

/// Packet time between two sweeps.
/// Rationale: a sweep scans the whole table; once a second bounds that cost
/// while idle timeouts are counted in seconds to minutes.
pub const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

#[derive(Debug)]
struct Entry<V> {
    last_seen: Ts,
    value: V,
}

/// Live flows, at most `capacity` of them.
#[derive(Debug)]
pub struct FlowTable<V> {
    map: HashMap<FlowKey, Entry<V>>,
    capacity: usize,
    idle_timeout_ns: u64,
    /// Packet time from which the next sweep may run.
    next_sweep: Ts,
    /// Idle evictions not yet added to a `Counters`.
    unreported_evictions: u64,
}

impl<V> FlowTable<V> {
    /// Bytes one flow takes in the table itself: its slot and control
    /// byte, times the slack of a hash table that doubles when 7/8 full
    /// (up to 16/7 slots per flow).
    pub fn bytes_per_flow() -> usize {
        (std::mem::size_of::<(FlowKey, Entry<V>)>() + 1) * 16 / 7
    }

    pub fn new(capacity: usize, idle_timeout_ns: u64) -> Self {
        FlowTable {
            map: HashMap::new(),
            capacity,
            idle_timeout_ns,
            next_sweep: 0,
            unreported_evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn get(&self, key: &FlowKey) -> Option<&V> {
        self.map.get(key).map(|e| &e.value)
    }

    /// The flow's value, marked seen at `now`.
    pub fn get_mut(&mut self, key: &FlowKey, now: Ts) -> Option<&mut V> {
        let e = self.map.get_mut(key)?;
        e.last_seen = e.last_seen.max(now);
        Some(&mut e.value)
    }

    /// The flow's value, created with `new` when absent, marked seen at
    /// `now`. `None` (counted in `tcp_flow_table_full`) when the flow is new
    /// and the table full: call [`sweep`](Self::sweep) first so idle flows
    /// make room. Also adds the idle evictions of earlier sweeps to `c`.
    pub fn get_or_insert_with(
        &mut self,
        key: FlowKey,
        now: Ts,
        c: &mut Counters,
        new: impl FnOnce() -> V,
    ) -> Option<&mut V> {
        self.report(c);
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            c.tcp_flow_table_full += 1;
            return None;
        }
        let e = self.map.entry(key).or_insert_with(|| Entry {
            last_seen: now,
            value: new(),
        });
        e.last_seen = e.last_seen.max(now);
        Some(&mut e.value)
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<V> {
        self.map.remove(key).map(|e| e.value)
    }

    /// Hands every flow idle longer than the timeout to `f`, at most once
    /// per [`SWEEP_INTERVAL_NS`] of packet time (other calls return at
    /// once). Evictions are counted in `tcp_evicted_idle` by the next
    /// [`get_or_insert_with`](Self::get_or_insert_with) or [`report`](Self::report).
    /// Returns whether it swept (so the caller may do its own once-a-second work).
    pub fn sweep(&mut self, now: Ts, mut f: impl FnMut(FlowKey, V)) -> bool {
        if now < self.next_sweep {
            return false;
        }
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL_NS);
        let idle = self.idle_timeout_ns;
        for (k, e) in self
            .map
            .extract_if(|_, e| now.saturating_sub(e.last_seen) > idle)
        {
            self.unreported_evictions += 1;
            f(k, e.value);
        }
        true
    }

    /// Adds the idle evictions not yet counted to `c`.
    pub fn report(&mut self, c: &mut Counters) {
        c.tcp_evicted_idle += std::mem::take(&mut self.unreported_evictions);
    }

    /// Hands every flow to `f` and empties the table (end of input).
    pub fn drain_all(&mut self, mut f: impl FnMut(FlowKey, V)) {
        for (k, e) in self.map.drain() {
            f(k, e.value);
        }
    }

    pub fn for_each(&self, mut f: impl FnMut(&FlowKey, &V)) {
        for (k, e) in &self.map {
            f(k, &e.value);
        }
    }

    /// Visits every flow mutably, without marking it seen (idle ticks).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&FlowKey, &mut V)) {
        for (k, e) in &mut self.map {
            f(k, &mut e.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const S: u64 = 1_000_000_000;

    fn key(port: u16) -> FlowKey {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        FlowKey::new(ip, port, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 11211)
    }

    #[test]
    fn refuses_new_flows_when_full_but_serves_existing_ones() {
        let mut c = Counters::default();
        let mut t = FlowTable::new(2, 10 * S);
        assert_eq!(
            t.get_or_insert_with(key(1), 0, &mut c, || 1).copied(),
            Some(1)
        );
        assert_eq!(
            t.get_or_insert_with(key(2), 0, &mut c, || 2).copied(),
            Some(2)
        );
        assert!(t.get_or_insert_with(key(3), 0, &mut c, || 3).is_none());
        assert_eq!(c.tcp_flow_table_full, 1);
        *t.get_or_insert_with(key(1), 1, &mut c, || 9).unwrap() += 10;
        assert_eq!(t.get(&key(1)), Some(&11));
        assert_eq!(t.remove(&key(2)), Some(2));
        assert!(t.get_or_insert_with(key(3), 2, &mut c, || 3).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn sweep_evicts_idle_flows_once_per_second_and_counts_them() {
        let mut c = Counters::default();
        let mut t = FlowTable::new(10, 5 * S);
        t.get_or_insert_with(key(1), 0, &mut c, || 1);
        t.get_or_insert_with(key(2), 0, &mut c, || 2);
        let mut out = Vec::new();
        t.sweep(0, |k, v| out.push((k, v)));
        assert!(out.is_empty());
        t.get_mut(&key(2), 4 * S);
        // Not yet a second since the last sweep: nothing scanned.
        t.sweep(S - 1, |k, v| out.push((k, v)));
        t.sweep(6 * S, |k, v| out.push((k, v)));
        assert_eq!(out, vec![(key(1), 1)]);
        assert_eq!(t.len(), 1);
        t.get_or_insert_with(key(3), 6 * S, &mut c, || 3);
        assert_eq!(c.tcp_evicted_idle, 1);
        // Time stepping back neither evicts nor panics.
        t.sweep(8 * S, |k, v| out.push((k, v)));
        t.sweep(0, |k, v| out.push((k, v)));
        assert_eq!(out.len(), 1);
        t.sweep(20 * S, |k, v| out.push((k, v)));
        assert_eq!(out.len(), 3);
        t.report(&mut c);
        assert_eq!(c.tcp_evicted_idle, 3);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_makes_room_after_a_sweep() {
        let mut c = Counters::default();
        let mut t = FlowTable::new(1, S);
        t.get_or_insert_with(key(1), 0, &mut c, || 1);
        t.sweep(0, |_, _| ());
        assert!(t.get_or_insert_with(key(2), 3 * S, &mut c, || 2).is_none());
        let mut flushed = Vec::new();
        t.sweep(3 * S, |k, v| flushed.push((k, v)));
        assert_eq!(flushed, vec![(key(1), 1)]);
        assert!(t.get_or_insert_with(key(2), 3 * S, &mut c, || 2).is_some());
        assert_eq!((c.tcp_flow_table_full, c.tcp_evicted_idle), (1, 1));
    }

    #[test]
    fn drain_all_hands_out_everything() {
        let mut c = Counters::default();
        let mut t = FlowTable::new(10, S);
        for p in 0..5 {
            t.get_or_insert_with(key(p), 0, &mut c, || p);
        }
        let mut sum = 0;
        t.for_each(|_, v| sum += *v);
        t.for_each_mut(|_, v| *v += 1);
        let mut got = Vec::new();
        t.drain_all(|_, v| got.push(v));
        got.sort();
        assert_eq!((sum, got), (10, vec![1, 2, 3, 4, 5]));
        assert!(t.is_empty());
    }
}
