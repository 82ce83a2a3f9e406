//! Time in memtap is the packet's timestamp; nothing below `app` reads a
//! clock, so a replay is deterministic and windows close on packet time.

/// Nanoseconds since the Unix epoch, from the capture.
pub type Ts = u64;

/// A packet time as RFC 3339 UTC to the second, e.g.
/// `2026-11-22T13:20:45Z` (events and file names).
pub fn rfc3339(ts: Ts) -> String {
    let Ok(t) = jiff::Timestamp::from_second((ts / 1_000_000_000) as i64) else {
        return format!("{ts}ns");
    };
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}
