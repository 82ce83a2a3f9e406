//! Time in memtap is the packet's timestamp; nothing below `app` reads a
//! clock, so a replay is deterministic and windows close on packet time.

/// Nanoseconds since the Unix epoch, from the capture.
pub type Ts = u64;
