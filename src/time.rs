//! Time in memtap is the packet's timestamp; nothing below `app` reads a
//! clock, so a replay is deterministic and windows close on packet time.

/// Nanoseconds since the Unix epoch, from the capture.
pub type Ts = u64;

/// A time as RFC 3339 UTC, with milliseconds only when there are any,
/// e.g. `2026-11-22T13:20:45Z` or `2026-11-22T13:20:45.250Z`.
pub fn utc(ns: Ts) -> String {
    let t = jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::MAX);
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    let frac = if ns % 1_000_000_000 == 0 {
        String::new()
    } else {
        format!(".{:03}", ns % 1_000_000_000 / 1_000_000)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// A packet time as RFC 3339 UTC to the second (events, file names).
pub fn rfc3339(ts: Ts) -> String {
    utc(ts - ts % 1_000_000_000)
}
