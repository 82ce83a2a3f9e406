//! How much the channels between the reader, the workers and the
//! collectors may hold: batch sizes and channel depths, cut down to fit
//! each worker's pipeline part of the memory budget.
//!
//! Packet batches (reader to worker, and back for reuse) and record
//! batches (worker to collectors, and back) are recycled, so what they
//! hold is set by how many may be in flight and how big each grows. On a
//! machine with many workers and a small budget the defaults (tuned for
//! throughput) would hold more than the budget, so they shrink: depths
//! first, then batch sizes, never below a floor that keeps every thread
//! busy.

use super::pipeline::PMETA_BYTES;
use crate::collect::batch::BRec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Packet batches queued to one worker (shared-reader modes).
    pub packet_depth: usize,
    /// A packet batch is sent once it holds this many payload bytes ...
    pub batch_bytes: usize,
    /// ... or this many packets.
    pub batch_packets: usize,
    /// Record batches per worker a collector's channel holds.
    pub record_depth: usize,
    pub batch_records: usize,
}

/// A packet's payload can pass a batch's byte mark by this much.
const MAX_PAYLOAD: usize = 64 << 10;
/// Key bytes a record brings into its batch, on average (memcached keys
/// are at most 250 bytes; typical ones are far shorter).
const KEY_BYTES: usize = 64;
const MIN_DEPTH: usize = 2;
const MIN_BATCH_BYTES: usize = 64 << 10;
const MIN_BATCH_PACKETS: usize = 64;
const MIN_BATCH_RECORDS: usize = 128;

impl Shape {
    /// Replay: the reader waits for workers, so shallow packet channels
    /// suffice. The record channels are deeper: while a capture's first
    /// keys arrive (admissions, evictions, fresh pages) a collector falls
    /// behind its worker for tens of milliseconds, and catches up later,
    /// when the worker is the slower; at 16 batches the worker stalled
    /// about 40 ms on `big.pcap`. Cut down like the rest to fit the budget.
    pub const REPLAY: Shape = Shape {
        packet_depth: 16,
        batch_bytes: 512 << 10,
        batch_packets: 512,
        record_depth: 64,
        batch_records: 1024,
    };
    /// Live capture waits only while the buffer in front has room (see
    /// `batch::Patience`): deeper channels absorb bursts while a thread
    /// is descheduled.
    pub const LIVE: Shape = Shape {
        packet_depth: 64,
        batch_bytes: 256 << 10,
        batch_packets: 256,
        record_depth: 128,
        batch_records: 1024,
    };

    fn packet_bytes(&self) -> u64 {
        // In the queue, in the reuse queue (two more), being filled and
        // being read.
        let batches = 2 * self.packet_depth + 4;
        (batches * (self.batch_bytes + MAX_PAYLOAD + self.batch_packets * PMETA_BYTES)) as u64
    }

    fn record_bytes(&self, collectors: usize) -> u64 {
        // Each collector's channel (its depth per worker), as many again
        // waiting for reuse twice over, and the batch being filled.
        let batches = (3 * self.record_depth + 1) * collectors.max(1);
        (batches * self.batch_records * (std::mem::size_of::<BRec>() + KEY_BYTES)) as u64
    }

    /// Most bytes one worker's batches hold with this shape.
    pub fn bytes(&self, collectors: usize) -> u64 {
        self.packet_bytes() + self.record_bytes(collectors)
    }

    /// `base`, cut down until one worker's batches fit `budget` bytes (or
    /// the floor is reached).
    pub fn within(base: Shape, budget: u64, collectors: usize) -> Shape {
        let mut s = base;
        while s.bytes(collectors) > budget {
            let packets_first = s.packet_bytes() >= s.record_bytes(collectors);
            if !(packets_first && s.shrink_packets() || s.shrink_records() || s.shrink_packets()) {
                break;
            }
        }
        s
    }

    fn shrink_packets(&mut self) -> bool {
        if self.packet_depth > MIN_DEPTH {
            self.packet_depth = (self.packet_depth / 2).max(MIN_DEPTH);
        } else if self.batch_bytes > MIN_BATCH_BYTES {
            self.batch_bytes = (self.batch_bytes / 2).max(MIN_BATCH_BYTES);
            self.batch_packets = (self.batch_packets / 2).max(MIN_BATCH_PACKETS);
        } else {
            return false;
        }
        true
    }

    fn shrink_records(&mut self) -> bool {
        if self.record_depth > MIN_DEPTH {
            self.record_depth = (self.record_depth / 2).max(MIN_DEPTH);
        } else if self.batch_records > MIN_BATCH_RECORDS {
            self.batch_records = (self.batch_records / 2).max(MIN_BATCH_RECORDS);
        } else {
            return false;
        }
        true
    }

    /// The least any worker's batches can hold.
    pub fn floor(collectors: usize) -> u64 {
        Shape {
            packet_depth: MIN_DEPTH,
            batch_bytes: MIN_BATCH_BYTES,
            batch_packets: MIN_BATCH_PACKETS,
            record_depth: MIN_DEPTH,
            batch_records: MIN_BATCH_RECORDS,
        }
        .bytes(collectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_share_keeps_the_defaults() {
        let b = Shape::REPLAY.bytes(1);
        assert_eq!(Shape::within(Shape::REPLAY, b, 1), Shape::REPLAY);
        assert_eq!(Shape::within(Shape::LIVE, u64::MAX, 4), Shape::LIVE);
    }

    #[test]
    fn replay_keeps_its_deep_record_channels_in_a_512_mib_budget() {
        // The depth that lets a collector fall behind through a capture's
        // first keys without stopping its worker (docs/performance.md,
        // "Stages waiting on each other"): a 512 MiB budget, one worker
        // and one collector keep all of it; asking for twice as much
        // would be cut back to it.
        let share = crate::session::budget::Split::of(512 << 20).pipeline_bytes;
        assert_eq!(Shape::within(Shape::REPLAY, share, 1), Shape::REPLAY);
        let deeper = Shape {
            record_depth: 2 * Shape::REPLAY.record_depth,
            ..Shape::REPLAY
        };
        assert_eq!(Shape::within(deeper, share, 1), Shape::REPLAY);
    }

    #[test]
    fn a_small_share_shrinks_to_fit_then_stops_at_the_floor() {
        for budget in [1u64 << 20, 4 << 20, 16 << 20] {
            for collectors in [1, 4] {
                let s = Shape::within(Shape::LIVE, budget, collectors);
                assert!(
                    s.bytes(collectors) <= budget.max(Shape::floor(collectors)),
                    "{budget} {collectors}: {s:?}"
                );
            }
        }
        let tiny = Shape::within(Shape::REPLAY, 0, 2);
        assert_eq!(tiny.bytes(2), Shape::floor(2));
        assert_eq!(
            (tiny.packet_depth, tiny.record_depth),
            (MIN_DEPTH, MIN_DEPTH)
        );
    }
}
