//! Per-second figures for the triggers: what one collector saw in each
//! second of packet time (its keys, every client's and server's share of
//! its records), closed on the same watermarks as windows and handed to
//! the trigger evaluator, which sums the collectors.
//!
//! A key lives in one collector, so its figures are exact; clients and
//! servers are summed over collectors. Each second keeps at most
//! `MAX_KEYS` keys and `MAX_CLIENTS` clients per collector (the first ones
//! seen; a hot key or client shows early in its second) and hands on the
//! `TOP` busiest of each: triggers look at those.

use super::batch::{BRec, RecordBatch};
use super::tables::SmallHist;
use crate::decode::Ts;
use crate::protocol::Outcome;
use hashbrown::HashMap;
use std::net::{IpAddr, SocketAddr};

/// The length of a second, in packet time.
pub const SECOND_NS: Ts = 1_000_000_000;
/// Keys and clients tracked per collector per second.
pub const MAX_KEYS: usize = 16_384;
pub const MAX_CLIENTS: usize = 4096;
/// Keys and clients handed on per collector per second.
pub const TOP: usize = 256;

/// One subject's figures over a second.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Agg {
    pub requests: u64,
    /// Request and response bytes.
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub lost: u64,
    /// Latency (ns) of the answered requests.
    pub latency: SmallHist,
    /// Miss runs (a key's misses with no store of it between them: a
    /// dogpile while it lasts): before the first store, after the last,
    /// and the longest; `stored` once a store was seen. Merged in time
    /// order, runs join across seconds.
    pub storm_head: u64,
    pub storm_tail: u64,
    pub storm_max: u64,
    pub stored: bool,
}

impl Agg {
    fn add(&mut self, r: &BRec) {
        self.requests += 1;
        self.bytes += r.req_bytes + r.resp_bytes;
        match r.result {
            Outcome::Hit => self.hits += 1,
            Outcome::Miss => {
                self.misses += 1;
                self.storm_tail += 1;
                if !self.stored {
                    self.storm_head += 1;
                }
                self.storm_max = self.storm_max.max(self.storm_tail);
            }
            Outcome::Lost => self.lost += 1,
            _ => {}
        }
        if super::insight::is_store_write(r.command, r.exptime, r.result) {
            self.stored = true;
            self.storm_tail = 0;
        }
        if let Some(l) = r.latency_ns {
            self.latency.add(l);
        }
    }

    pub fn merge(&mut self, o: &Agg) {
        self.requests += o.requests;
        self.bytes += o.bytes;
        self.hits += o.hits;
        self.misses += o.misses;
        self.lost += o.lost;
        self.latency.merge(&o.latency);
        // `o` follows `self` in time.
        self.storm_max = self
            .storm_max
            .max(o.storm_max)
            .max(self.storm_tail + o.storm_head);
        if !self.stored {
            self.storm_head += o.storm_head;
        }
        self.storm_tail = if o.stored {
            o.storm_tail
        } else {
            self.storm_tail + o.storm_tail
        };
        self.stored |= o.stored;
    }
}

/// What one collector hands on for one second.
#[derive(Clone, Default)]
pub struct SecondPart {
    pub start: Ts,
    /// Everything this collector saw in the second.
    pub all: Agg,
    pub keys: Vec<(Vec<u8>, Agg)>,
    /// Requests per client (a client rule looks at its rate only).
    pub clients: Vec<(IpAddr, u64)>,
    pub servers: Vec<(SocketAddr, Agg)>,
    /// Keys and clients not tracked because the second's table was full.
    pub untracked: u64,
}

/// Messages from collectors to the evaluator.
pub enum SecondMsg {
    Part(Box<SecondPart>),
    /// Every second ending at or before `upto` is closed in `collector`.
    Upto {
        collector: usize,
        upto: Ts,
    },
}

struct KeySlot {
    off: u32,
    len: u32,
    agg: Agg,
}

/// The open seconds of one collector.
#[derive(Default)]
pub struct Seconds {
    open: Vec<Open>,
    /// Recycled tables, so the steady state allocates nothing.
    spare: Vec<Open>,
    scratch: Vec<(u64, u64, usize)>,
}

#[derive(Default)]
struct Open {
    start: Ts,
    all: Agg,
    keys: HashMap<u64, KeySlot>,
    arena: Vec<u8>,
    clients: HashMap<IpAddr, u64>,
    servers: HashMap<SocketAddr, Agg>,
    untracked: u64,
}

impl Open {
    fn clear(&mut self) {
        self.all = Agg::default();
        self.keys.clear();
        self.arena.clear();
        self.clients.clear();
        self.servers.clear();
        self.untracked = 0;
    }
}

impl Seconds {
    /// Counts a record in the second of its resolution time.
    pub fn add(&mut self, b: &RecordBatch, r: &BRec) {
        let start = r.seen - r.seen % SECOND_NS;
        let o = self.second(start);
        o.all.add(r);
        o.servers.entry(r.server).or_default().add(r);
        let full = o.clients.len() >= MAX_CLIENTS;
        match o.clients.get_mut(&r.client.ip()) {
            Some(n) => *n += 1,
            None if !full => {
                o.clients.insert(r.client.ip(), 1);
            }
            None => o.untracked += 1,
        }
        if let Some(k) = b.key(r) {
            // The worker's hash: a collision only merges two keys' figures
            // for one second.
            let h = r.key_hash;
            if let Some(s) = o.keys.get_mut(&h) {
                s.agg.add(r);
            } else if o.keys.len() < MAX_KEYS {
                let off = o.arena.len() as u32;
                o.arena.extend_from_slice(k);
                let mut agg = Agg::default();
                agg.add(r);
                o.keys.insert(
                    h,
                    KeySlot {
                        off,
                        len: k.len() as u32,
                        agg,
                    },
                );
            } else {
                o.untracked += 1;
            }
        }
    }

    fn second(&mut self, start: Ts) -> &mut Open {
        let i = match self.open.iter().position(|o| o.start >= start) {
            Some(i) if self.open[i].start == start => i,
            pos => {
                let mut o = self.spare.pop().unwrap_or_default();
                o.start = start;
                let i = pos.unwrap_or(self.open.len());
                self.open.insert(i, o);
                i
            }
        };
        &mut self.open[i]
    }

    /// Closes every second ending at or before `low` (or all of them),
    /// oldest first.
    pub fn close(&mut self, low: Option<Ts>, mut out: impl FnMut(SecondPart)) {
        while let Some(o) = self.open.first() {
            if low.is_some_and(|l| l < o.start + SECOND_NS) {
                break;
            }
            let mut o = self.open.remove(0);
            out(o.summary(&mut self.scratch));
            o.clear();
            self.spare.push(o);
        }
    }
}

/// Indexes of the `TOP` largest `(requests, tie)` entries, largest first
/// (ties by the smaller `tie`, so runs agree). Only those are copied out:
/// a busy second has tens of thousands of keys.
fn top_indexes(v: &mut [(u64, u64, usize)]) -> &[(u64, u64, usize)] {
    let order = |a: &(u64, u64, usize), b: &(u64, u64, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    if v.len() > TOP {
        v.select_nth_unstable_by(TOP - 1, order);
    }
    let n = v.len().min(TOP);
    v[..n].sort_unstable_by(order);
    &v[..n]
}

impl Open {
    fn summary(&self, scratch: &mut Vec<(u64, u64, usize)>) -> SecondPart {
        scratch.clear();
        let keyed: Vec<(&u64, &KeySlot)> = self.keys.iter().collect();
        scratch.extend(
            keyed
                .iter()
                .enumerate()
                .map(|(i, (h, s))| (s.agg.requests, **h, i)),
        );
        let keys = top_indexes(scratch)
            .iter()
            .map(|&(_, _, i)| {
                let s = keyed[i].1;
                let k = &self.arena[s.off as usize..(s.off + s.len) as usize];
                (k.to_vec(), s.agg.clone())
            })
            .collect();
        scratch.clear();
        let clients: Vec<(&IpAddr, &u64)> = self.clients.iter().collect();
        scratch.extend(clients.iter().enumerate().map(|(i, (c, n))| {
            let tie = match c {
                IpAddr::V4(v) => u64::from(u32::from(*v)),
                IpAddr::V6(v) => u128::from(*v) as u64,
            };
            (**n, tie, i)
        }));
        let clients = top_indexes(scratch)
            .iter()
            .map(|&(_, _, i)| (*clients[i].0, *clients[i].1))
            .collect();
        SecondPart {
            start: self.start,
            all: self.all.clone(),
            keys,
            clients,
            servers: self.servers.iter().map(|(s, a)| (*s, a.clone())).collect(),
            untracked: self.untracked,
        }
    }
}

#[cfg(test)]
mod storm_tests {
    use super::Agg;

    #[test]
    fn miss_runs_join_across_seconds() {
        // Second 1: miss miss STORE miss; second 2: miss miss miss.
        let a = Agg {
            storm_head: 2,
            storm_tail: 1,
            storm_max: 2,
            stored: true,
            ..Agg::default()
        };
        let b = Agg {
            storm_head: 3,
            storm_tail: 3,
            storm_max: 3,
            ..Agg::default()
        };
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(
            (m.storm_head, m.storm_tail, m.storm_max, m.stored),
            (2, 4, 4, true)
        );
        // Two seconds without a store: one run.
        let mut m = b.clone();
        m.merge(&b);
        assert_eq!(
            (m.storm_head, m.storm_tail, m.storm_max, m.stored),
            (6, 6, 6, false)
        );
    }
}
