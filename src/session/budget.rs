//! How one worker's share of the memory budget (`[limits] memory`) is
//! divided among the structures that grow with traffic, and what one item
//! of each costs.
//!
//! The split is fixed, not first come first served: a flood of one kind
//! (SYNs, unanswered requests, partial lines) fills its own part and is
//! shed there, while the others keep room for the traffic that matters.
//! Each part bounds either a count (flows, exchanges: the count times the
//! item's cost) or bytes (capacity actually held).

use super::engine::Engine;
use super::pending::Pending;

/// Parts of a worker's share, in percent: (what, percent). They add up
/// to 100.
pub const PARTS: [(&str, u64); 9] = [
    ("TCP flows", 25),
    ("TCP out-of-order bytes", 10),
    ("TCP carried partial messages", 10),
    ("pending requests (TCP and UDP)", 10),
    ("UDP exchanges", 15),
    ("UDP held and waiting datagrams", 5),
    ("UDP carried partial lines", 5),
    ("IP fragments", 5),
    ("packet and record batches between threads", 15),
];

/// The bounds one worker gets from its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// The share itself, bytes.
    pub share: u64,
    pub flows: usize,
    pub ooo_bytes: u64,
    pub carry_bytes: u64,
    /// Pending-request entries (queue capacity).
    pub requests: usize,
    pub udp_exchanges: usize,
    pub udp_buffered: usize,
    pub udp_carry: usize,
    /// Bytes of fragments being reassembled; the pool keeps as much again
    /// in spare buffers, so this is half its part.
    pub frag_bytes: usize,
    /// Bytes of the worker's packet and record batches in flight between
    /// threads (the application sizes its channels to it).
    pub pipeline_bytes: u64,
}

/// Bytes one item of each counted kind costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    /// A TCP connection: its state, its slot in the flow table and in the
    /// recently-closed table (each with hash-table slack), and the first
    /// entries of its pending queue.
    pub flow: usize,
    /// A pending request (one key of a command): one queue entry.
    pub request: usize,
    /// A UDP exchange: its state (live and recycled), its slots, and the
    /// small buffers it keeps across reuse.
    pub exchange: usize,
}

pub fn costs() -> Costs {
    Costs {
        flow: Engine::bytes_per_flow(),
        request: std::mem::size_of::<Pending>(),
        exchange: super::udp::UdpTable::bytes_per_exchange(),
    }
}

fn part(share: u64, name: &str) -> u64 {
    let pct = PARTS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, p)| *p);
    share / 100 * pct + share % 100 * pct / 100
}

fn count(bytes: u64, each: usize) -> usize {
    usize::try_from(bytes / each.max(1) as u64)
        .unwrap_or(usize::MAX)
        .max(1)
}

fn bytes(b: u64) -> usize {
    usize::try_from(b).unwrap_or(usize::MAX)
}

impl Split {
    /// The split of one worker's `share` bytes.
    pub fn of(share: u64) -> Split {
        let c = costs();
        let [flows, ooo, carry, requests, exchanges, buffered, udp_carry, frag, pipeline] =
            PARTS.map(|(name, _)| part(share, name));
        Split {
            share,
            flows: count(flows, c.flow),
            ooo_bytes: ooo,
            carry_bytes: carry,
            requests: count(requests, c.request),
            udp_exchanges: count(exchanges, c.exchange),
            // The table keeps up to a quarter as much again in spare buffers.
            udp_buffered: bytes(buffered / 5 * 4),
            udp_carry: bytes(udp_carry),
            frag_bytes: bytes(frag / 2),
            pipeline_bytes: pipeline,
        }
    }

    /// No budget: every bound is the configured one.
    pub fn unbounded() -> Split {
        Split {
            share: u64::MAX,
            flows: usize::MAX,
            ooo_bytes: u64::MAX,
            carry_bytes: u64::MAX,
            requests: usize::MAX,
            udp_exchanges: usize::MAX,
            udp_buffered: usize::MAX,
            udp_carry: usize::MAX,
            frag_bytes: usize::MAX,
            pipeline_bytes: u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_whole() {
        assert_eq!(PARTS.iter().map(|(_, p)| p).sum::<u64>(), 100);
        let s = Split::of(100 << 20);
        let c = costs();
        let used = s.flows as u64 * c.flow as u64
            + s.ooo_bytes
            + s.carry_bytes
            + s.requests as u64 * c.request as u64
            + s.udp_exchanges as u64 * c.exchange as u64
            + s.udp_buffered as u64 * 5 / 4
            + s.udp_carry as u64
            + 2 * s.frag_bytes as u64
            + s.pipeline_bytes;
        assert!(used <= 100 << 20, "{used}");
        // Rounding down to whole items loses less than one item per part.
        assert!(
            used > (100 << 20) - 3 * c.flow.max(c.exchange) as u64,
            "{used}"
        );
    }

    #[test]
    fn costs_are_what_the_readme_states() {
        // README "Memory budget" states these per-item costs and the flows
        // 512 MiB follows; a change in a structure's size shows here first
        // (then update the README's table with it).
        assert_eq!(
            costs(),
            Costs {
                flow: 2754,
                request: 160,
                exchange: 4993,
            }
        );
        let two = Split::of(256 << 20);
        assert_eq!(2 * two.flows, 48_734);
        assert_eq!(two.ooo_bytes, (256 << 20) / 10);
        assert_eq!(two.requests, (256usize << 20) / 10 / 160);
    }
}
