//! The pages' since/until boxes: what they accept and how they show a
//! time. Absolute forms are the store's (`store::when::parse_time`: UTC
//! date and time, with an offset, or Unix seconds); relative ones count
//! back from the moment of the request, for a live sniffer's history
//! ("the last hour": since `-1h`), a superset of what `--since` takes on
//! the command line (`-2h`, `-90`, `-500ms`).

use crate::store::when::parse_time;

/// What the boxes accept, for their tooltips and error messages.
pub const HINT: &str = "use a UTC date and time (2026-11-17 14:00:00), Unix seconds, \
                        or a time before now (now, -15m, now-2h, 3d ago; units ms, s, m, h, d, w)";

/// The wall clock, ns since the epoch: the only clock the pages read, and
/// only for the relative forms (a replay's results never depend on it).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A box's text as ns since the epoch, and whether it was relative.
pub fn parse(text: &str, now: u64) -> anyhow::Result<(u64, bool)> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || anyhow::anyhow!("time {text:?}: {HINT}");
    let rel = if t == "now" {
        Some("")
    } else if let Some(r) = t.strip_prefix("now") {
        Some(r.trim_start().strip_prefix('-').ok_or_else(bad)?)
    } else if let Some(r) = t.strip_prefix('-') {
        Some(r)
    } else {
        t.strip_suffix("ago")
    };
    match rel {
        None => parse_time(text).map(|ns| (ns, false)).map_err(|_| bad()),
        Some(r) => {
            let r = r.trim();
            if r.is_empty() && t != "now" {
                return Err(bad());
            }
            let back = duration_ns(r).ok_or_else(bad)?;
            let ns = now
                .checked_sub(back)
                .ok_or_else(|| anyhow::anyhow!("time {text:?} is before 1970"))?;
            Ok((ns, true))
        }
    }
}

/// "90s", "1h30m", "2 d" (empty: zero); None when unreadable.
fn duration_ns(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let ns: u64 = match &rest[..unit_len] {
            // A bare number is seconds, as `--since -60` reads it.
            "" if total == 0 && rest.is_empty() => 1_000_000_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            "w" | "week" | "weeks" => 604_800_000_000_000,
            _ => return None,
        };
        rest = rest[unit_len..].trim_start();
        total = total.checked_add(n.checked_mul(ns)?)?;
    }
    Some(total)
}

/// A time as the boxes show it: `2026-12-06 19:35:00`, with as many
/// fraction digits (3, 6 or 9) as it needs, so reading it back gives the
/// same ns.
pub fn show(ns: u64) -> String {
    let whole = crate::time::utc(ns - ns % 1_000_000_000);
    let base = whole.trim_end_matches('Z').replacen('T', " ", 1);
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        base
    } else if frac % 1_000_000 == 0 {
        format!("{base}.{:03}", frac / 1_000_000)
    } else if frac % 1000 == 0 {
        format!("{base}.{:06}", frac / 1000)
    } else {
        format!("{base}.{frac:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_794_924_000_000_000_000; // 2026-11-17T14:00:00Z

    #[test]
    fn absolute_forms_round_trip_through_the_box() {
        for (text, ns) in [
            ("1794924000", NOW),
            ("2026-11-17T14:00", NOW),
            ("2026-11-17T15:00:00+01:00", NOW),
            ("1794924000.25", NOW + 250_000_000),
            ("1794924000.000001", NOW + 1000),
            ("1794924000.000000007", NOW + 7),
        ] {
            let (got, rel) = parse(text, 0).unwrap();
            assert_eq!((got, rel), (ns, false), "{text}");
            assert_eq!(
                parse(&show(got), 0).unwrap().0,
                ns,
                "{text} via {}",
                show(got)
            );
        }
        assert_eq!(show(NOW), "2026-11-17 14:00:00");
        assert_eq!(show(NOW + 250_000_000), "2026-11-17 14:00:00.250");
        assert_eq!(show(NOW + 1000), "2026-11-17 14:00:00.000001");
        assert_eq!(show(NOW + 7), "2026-11-17 14:00:00.000000007");
    }

    #[test]
    fn relative_forms_count_back_from_now() {
        for (text, back) in [
            ("now", 0),
            ("NOW", 0),
            ("-15m", 900),
            ("now-2h", 7200),
            ("now - 2h", 7200),
            ("3d ago", 3 * 86_400),
            ("1h30m ago", 5400),
            ("-1w", 604_800),
            ("-90 s", 90),
            ("-60", 60),
        ] {
            assert_eq!(
                parse(text, NOW).unwrap(),
                (NOW - back * 1_000_000_000, true),
                "{text}"
            );
        }
        assert_eq!(parse("-500ms", NOW).unwrap(), (NOW - 500_000_000, true));
        for bad in [
            "-",
            "-1h30",
            "now+1h",
            "-15x",
            "ago",
            "yesterday",
            "-h",
            "1h ago ago",
        ] {
            let e = parse(bad, NOW).unwrap_err().to_string();
            assert_eq!(e, format!("time {bad:?}: {HINT}"), "{bad}");
        }
        assert_eq!(
            parse("-3000w", NOW).unwrap_err().to_string(),
            "time \"-3000w\" is before 1970"
        );
    }
}
