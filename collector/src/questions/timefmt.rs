//! Times as admins type and read them: sacct's `-S`/`-E` forms in, local time out.
//!
//! The ledger stores Unix seconds; people think in local time. Parsing accepts the forms sacct
//! documents that matter in practice (`YYYY-MM-DD[THH:MM[:SS]]`, `now`, `now-3days`, `today`,
//! `midnight`) plus `@EPOCH`; every error names the bad text and lists what is accepted.

use chrono::{DateTime, Local, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone};

/// What [`parse_time`] accepts, for error messages and `--help`.
pub const ACCEPTED: &str = "YYYY-MM-DD[THH:MM[:SS]], now, now-<N>[seconds|minutes|hours|days|weeks], \
                            today, midnight or @<unix seconds>";

/// Parses a time argument relative to `now` (local time zone). Returns Unix seconds.
pub fn parse_time(text: &str, now: DateTime<Local>) -> Result<i64, String> {
    let bad = |why: &str| format!("invalid time '{text}'{why} (accepted: {ACCEPTED})");
    let s = text.trim();
    let lower = s.to_ascii_lowercase();
    if let Some(epoch) = s.strip_prefix('@') {
        return epoch.parse::<i64>().map_err(|_| bad(": '@' must be followed by whole seconds"));
    }
    match lower.as_str() {
        "now" => return Ok(now.timestamp()),
        "today" | "midnight" => return local_seconds(now.date_naive().and_time(NaiveTime::MIN)).map_err(|e| bad(&e)),
        _ => {}
    }
    if let Some(rest) = lower.strip_prefix("now") {
        let (sign, rest) = match rest.as_bytes().first() {
            Some(b'-') => (-1, &rest[1..]),
            Some(b'+') => (1, &rest[1..]),
            _ => return Err(bad("")),
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(": expected a number after 'now-'"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad(": number too large"))?;
        let unit = match &rest[digits..] {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            other => return Err(bad(&format!(": unknown unit '{other}'"))),
        };
        let delta = n.checked_mul(unit).ok_or_else(|| bad(": number too large"))?;
        return Ok(now.timestamp() + sign * delta);
    }
    let norm = s.replacen(' ', "T", 1);
    if let Ok(d) = NaiveDate::parse_from_str(&norm, "%Y-%m-%d") {
        return local_seconds(d.and_time(NaiveTime::MIN)).map_err(|e| bad(&e));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(&norm, fmt) {
            return local_seconds(dt).map_err(|e| bad(&e));
        }
    }
    Err(bad(""))
}

/// [`parse_time`] against the current time, for command-line parsing.
pub fn parse_time_arg(text: &str) -> Result<i64, String> {
    parse_time(text, Local::now())
}

fn local_seconds(dt: NaiveDateTime) -> Result<i64, String> {
    match Local.from_local_datetime(&dt) {
        LocalResult::Single(t) => Ok(t.timestamp()),
        // A repeated hour (DST ends): the earlier reading, like sacct.
        LocalResult::Ambiguous(a, _) => Ok(a.timestamp()),
        LocalResult::None => Err(": that local time does not exist (daylight saving change)".into()),
    }
}

fn local(t: i64) -> Option<DateTime<Local>> {
    // The zone's offset, looked up once per UTC day when it is the same at both ends of it (no
    // change of daylight saving time that day): a listing prints thousands of times, mostly a
    // few a day, and each lookup of the zone costs more than the formatting.
    thread_local! {
        static DAY: std::cell::Cell<Option<(i64, chrono::FixedOffset)>> = const { std::cell::Cell::new(None) };
    }
    let day = t.div_euclid(86_400);
    let offset = match DAY.get() {
        Some((d, o)) if d == day => Some(o),
        _ => {
            let at = |s: i64| Local.timestamp_opt(s, 0).single().map(|d| *d.offset());
            let (first, last) = (at(day * 86_400), at(day * 86_400 + 86_399));
            if first.is_some() && first == last {
                DAY.set(first.map(|o| (day, o)));
                first
            } else {
                None
            }
        }
    };
    match offset {
        Some(o) => Some(DateTime::from_naive_utc_and_offset(DateTime::from_timestamp(t, 0)?.naive_utc(), o)),
        None => Local.timestamp_opt(t, 0).single(),
    }
}

/// RFC 3339 in local time with offset (`2024-03-01T14:05:00+01:00`), for JSON.
pub fn rfc3339(t: i64) -> String {
    local(t).map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, false)).unwrap_or_else(|| t.to_string())
}

/// sacct's display form, local time (`2024-03-01T14:05:00`).
pub fn display(t: Option<i64>) -> String {
    use chrono::{Datelike, Timelike};
    match t.and_then(local) {
        // Written field by field: a listing prints thousands, and chrono's format() parses its
        // pattern each time.
        Some(d) if (0..=9999).contains(&d.year()) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S").to_string(),
        None => "Unknown".into(),
    }
}

/// sacct's elapsed form: `[D-]HH:MM:SS`.
pub fn elapsed(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// A memory size in KiB, shortened the way sacct does (`512K`, `1.50G`).
pub fn kib(k: i64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    let mut v = k as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{k}K")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Local> {
        Local.with_ymd_and_hms(2024, 3, 10, 15, 30, 20).single().unwrap()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Local.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap().timestamp()
    }

    #[test]
    fn absolute_forms() {
        assert_eq!(parse_time("2024-01-02", now()).unwrap(), at(2024, 1, 2, 0, 0, 0));
        assert_eq!(parse_time("2024-01-02T03:04", now()).unwrap(), at(2024, 1, 2, 3, 4, 0));
        assert_eq!(parse_time("2024-01-02T03:04:05", now()).unwrap(), at(2024, 1, 2, 3, 4, 5));
        assert_eq!(parse_time("2024-01-02 03:04:05", now()).unwrap(), at(2024, 1, 2, 3, 4, 5));
        assert_eq!(parse_time("@1700000000", now()).unwrap(), 1_700_000_000);
    }

    #[test]
    fn relative_forms() {
        let n = now().timestamp();
        assert_eq!(parse_time("now", now()).unwrap(), n);
        assert_eq!(parse_time("NOW-90", now()).unwrap(), n - 90);
        assert_eq!(parse_time("now-2hours", now()).unwrap(), n - 7200);
        assert_eq!(parse_time("now-3days", now()).unwrap(), n - 3 * 86_400);
        assert_eq!(parse_time("now-1weeks", now()).unwrap(), n - 7 * 86_400);
        assert_eq!(parse_time("now-5minutes", now()).unwrap(), n - 300);
        assert_eq!(parse_time("now+10seconds", now()).unwrap(), n + 10);
        assert_eq!(parse_time("today", now()).unwrap(), at(2024, 3, 10, 0, 0, 0));
        assert_eq!(parse_time("midnight", now()).unwrap(), at(2024, 3, 10, 0, 0, 0));
    }

    #[test]
    fn bad_times_name_the_value_and_the_forms() {
        for bad in ["yesterday", "2024-13-01", "2024-01-02T25:00", "now-", "now-3fortnights", "@x", "", "now*2"] {
            let e = parse_time(bad, now()).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
            assert!(e.contains("YYYY-MM-DD"), "{e}");
        }
        assert!(parse_time("now-3fortnights", now()).unwrap_err().contains("unknown unit 'fortnights'"));
    }

    #[test]
    fn display_forms() {
        assert_eq!(elapsed(59), "00:00:59");
        assert_eq!(elapsed(3661), "01:01:01");
        assert_eq!(elapsed(2 * 86_400 + 5), "2-00:00:05");
        assert_eq!(kib(512), "512K");
        assert_eq!(kib(1536), "1.50M");
        assert_eq!(kib(3 * 1024 * 1024), "3.00G");
        assert_eq!(display(None), "Unknown");
        let t = at(2024, 1, 2, 3, 4, 5);
        assert_eq!(display(Some(t)), "2024-01-02T03:04:05");
        assert!(rfc3339(t).starts_with("2024-01-02T03:04:05"), "{}", rfc3339(t));
        assert_eq!(chrono::DateTime::parse_from_rfc3339(&rfc3339(t)).unwrap().timestamp(), t);
    }
}
