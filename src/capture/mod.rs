//! Raw frames in, nothing parsed beyond the capture file's own framing.

pub mod file;

use crate::time::Ts;

/// One captured frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts: Ts,
    /// 1-based index of the frame across all input files.
    pub frame_no: u64,
    /// pcap LINKTYPE_* value of the interface the frame was captured on.
    pub linktype: u32,
    /// Length on the wire (may exceed `data.len()` when cut by snap length).
    pub wire_len: u32,
    pub data: &'a [u8],
}
