//! TCP byte streams per connection and direction, and memcached's UDP
//! frame header. Knows nothing of memcached commands: it hands ordered
//! bytes, gaps and closes to a `StreamHandler` (implemented by `session`).

pub mod flows;
pub mod segments;
pub mod seq;
pub mod tcp;
pub mod udp;

use crate::decode::Ts;

/// Direction of a byte stream relative to the watched server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client → server.
    Request = 0,
    /// Server → client.
    Response = 1,
}

impl Dir {
    pub fn idx(self) -> usize {
        self as usize
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::Request => Dir::Response,
            Dir::Response => Dir::Request,
        }
    }
}

/// What the handler learns about the segment that delivered some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegInfo {
    /// Timestamp of the packet that delivered (completed) these bytes.
    pub ts: Ts,
    /// Frame number of that packet (for warnings).
    pub frame_no: u64,
    /// How far the *other* direction's stream had been acknowledged by the
    /// sender of this segment, as an offset in that stream (same origin as
    /// the `stream_off` the handler gets for that direction); `None` when
    /// unknown (no ACK flag, or the other direction has no origin yet).
    /// It is the highest acknowledgement that sender has sent so far
    /// (including this segment's), so it never moves backwards.
    pub peer_acked: Option<u64>,
}

/// Consumer of reassembled streams.
pub trait StreamHandler {
    /// In-order bytes of `dir`; `stream_off` is the offset of `data[0]` in
    /// that direction's stream. Returns how many bytes were consumed; the
    /// rest is kept by the reassembler and presented again, followed by new
    /// bytes, on the next call (this is the only place payload is copied).
    /// Returning 0 with `data.len()` above the reassembler's carry limit
    /// makes it declare the stream desynchronised (`on_gap` with len 0);
    /// so does leaving any remainder longer than that limit.
    fn on_data(&mut self, dir: Dir, data: &[u8], stream_off: u64, info: &SegInfo) -> usize;

    /// `len` bytes of `dir` will never be seen (lost segment, or bytes given
    /// up). Any unconsumed carry was dropped before this call. `len == 0`
    /// means "resynchronise at the next boundary" with no known length.
    fn on_gap(&mut self, dir: Dir, len: u64, info: &SegInfo);

    /// The connection ended (FIN/RST in both directions, idle timeout,
    /// eviction, or end of input). Pending requests resolve now.
    fn on_close(&mut self, info: &SegInfo);
}
