//! Times as the history reports and the web page read and print them:
//! UTC, no time zone database needed (jiff does the calendar).

/// Parses a time: Unix seconds, or a UTC date and time (2026-11-17,
/// 2026-11-17T14:00, 2026-11-17 14:00:30Z, 2026-11-17T14:00:30.25), or
/// one with its offset (2026-11-17T15:00+01:00). Returns ns.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let bad = || anyhow::anyhow!("time {s:?}: use 2026-11-17T14:00 (UTC) or Unix seconds");
    // Decimal seconds, exactly (a float would miss a window start by
    // a few hundred ns).
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if frac.len() > 9 || frac.contains('.') {
            return Err(bad());
        }
        let w: u64 = whole.parse().map_err(|_| bad())?;
        let f: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| bad())?
        };
        return w
            .checked_mul(1_000_000_000)
            .and_then(|x| x.checked_add(f))
            .ok_or_else(bad);
    }
    // With an offset (Z, +01:00) it is an instant; without, a UTC civil
    // date-time. jiff's civil parser would drop an offset unread, so a
    // time that names one never reaches it.
    let ns = if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        ts.as_nanosecond()
    } else {
        let t = t.strip_suffix('Z').unwrap_or(t);
        let time = t.get(10..).unwrap_or("");
        if time.contains(['+', '-']) {
            return Err(bad());
        }
        let dt: jiff::civil::DateTime = match t.parse() {
            Ok(dt) => dt,
            // A bare date: its midnight.
            Err(_) => t
                .parse::<jiff::civil::Date>()
                .map_err(|_| bad())?
                .to_datetime(jiff::civil::Time::midnight()),
        };
        jiff::tz::Offset::UTC
            .to_timestamp(dt)
            .map_err(|_| bad())?
            .as_nanosecond()
    };
    anyhow::ensure!(ns >= 0, "time {s:?} is before 1970");
    u64::try_from(ns).map_err(|_| bad())
}

/// A time as the reports print it (UTC), with milliseconds only when there
/// are any (sub-second windows).
pub fn fmt_time(ns: u64) -> String {
    crate::time::utc(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1763388000").unwrap(), 1_763_388_000_000_000_000);
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000_000_000);
        assert_eq!(
            parse_time("2026-11-17T14:00").unwrap(),
            parse_time("2026-11-17 14:00:00Z").unwrap()
        );
        let t = parse_time("2026-11-17T14:00:30Z").unwrap();
        assert_eq!(fmt_time(t), "2026-11-17T14:00:30Z");
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_250_000_000), "1970-01-01T00:00:01.250Z");
        assert_eq!(
            parse_time("1970-01-01T00:00:01.250Z").unwrap(),
            1_250_000_000
        );
        assert_eq!(
            parse_time("1763776201.52").unwrap(),
            1_763_776_201_520_000_000
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01").is_err());
        // Every accepted form, to the nanosecond.
        let base = 1_794_924_000_000_000_000; // 2026-11-17T14:00:00Z
        for (text, ns) in [
            ("2026-11-17", base - 14 * 3_600_000_000_000),
            ("2026-11-17Z", base - 14 * 3_600_000_000_000),
            ("2026-11-17T14:00", base),
            ("2026-11-17 14:00", base),
            ("2026-11-17T14:00Z", base),
            ("2026-11-17T14:00:30", base + 30_000_000_000),
            ("2026-11-17 14:00:30Z", base + 30_000_000_000),
            ("2026-11-17T14:00:30.25Z", base + 30_250_000_000),
            ("2026-11-17T14:00:30.000000001", base + 30_000_000_001),
            (" 2026-11-17T14:00 ", base),
            ("1794924000", base),
            ("1794924000.000000001", base + 1),
            ("2026-11-17T15:00+01:00", base),
            ("2026-11-17T13:00:00-01:00", base),
        ] {
            assert_eq!(parse_time(text).unwrap(), ns, "{text}");
        }
        assert_eq!(fmt_time(base + 30_250_000_000), "2026-11-17T14:00:30.250Z");
        assert_eq!(parse_time("2024-02-29").unwrap(), 1_709_164_800_000_000_000);
        assert_eq!(fmt_time(1_709_164_800_000_000_000), "2024-02-29T00:00:00Z");
        // The largest time a u64 of nanoseconds holds.
        assert_eq!(fmt_time(u64::MAX), "2554-07-21T23:34:33.709Z");
        for bad in [
            "2026-02-30",
            "2026-11-17T24:00",
            "2026-11-17T14:60",
            "1969-12-31T23:59",
            "2026-11-17-01:00",
            "1.0000000001",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time("1969-12-31").unwrap_err().to_string(),
            "time \"1969-12-31\" is before 1970"
        );
    }
}
