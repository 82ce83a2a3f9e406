//! Times as the history reports and the web page read and print them:
//! UTC, no time zone database needed.

/// Parses a time: Unix seconds, or a UTC date and time (2026-11-17,
/// 2026-11-17T14:00, 2026-11-17 14:00:30Z). Returns ns.
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
    let t = t.trim_end_matches('Z');
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, tm)) => (d, tm),
        None => (t, "00:00"),
    };
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    // Fractional seconds, as fmt_time prints them (…:45.250).
    let (time, sub_ns) = match time.split_once('.') {
        Some((t, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (t, format!("{f:0<9}").parse::<u64>().map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
        None => (time, 0),
    };
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    if d.len() != 3 || hms.len() < 2 || hms.len() > 3 {
        return Err(bad());
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hms[0] > 23 || hms[1] > 59 {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms.get(2).copied().unwrap_or(0);
    anyhow::ensure!(secs >= 0, "time {s:?} is before 1970");
    Ok(secs as u64 * 1_000_000_000 + sub_ns)
}

/// A time as the reports print it (UTC).
pub fn fmt_time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    // Milliseconds only when there are any (sub-second windows).
    let ms = ns % 1_000_000_000 / 1_000_000;
    let frac = if ns % 1_000_000_000 == 0 {
        String::new()
    } else {
        format!(".{ms:03}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
    }
}
