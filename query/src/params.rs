//! Parsing of query parameters (SPEC §4): times are RFC 3339 or integer Unix seconds, durations
//! like `250ms`/`2s`/`1m`, ids hex of any case. Every error names the parameter.

use std::time::Duration;

use crate::ApiError;

fn bad(name: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{name}: {message}"))
}

/// A 16-byte trace id from 32 hex digits.
pub fn trace_id(name: &str, text: &str) -> Result<[u8; 16], ApiError> {
    let bytes = hex::decode(text.trim()).map_err(|_| bad(name, format!("{text:?} is not a hex trace id")))?;
    let id: [u8; 16] = bytes
        .try_into()
        .map_err(|_| bad(name, format!("{text:?} is not 32 hex digits (16 bytes)")))?;
    if id == [0; 16] {
        return Err(bad(name, "the all-zero trace id is invalid"));
    }
    Ok(id)
}

/// A time in Unix nanoseconds, from RFC 3339 or integer Unix seconds.
pub fn time(name: &str, text: &str) -> Result<u64, ApiError> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return seconds
            .checked_mul(1_000_000_000)
            .ok_or_else(|| bad(name, format!("{text} seconds is out of range")));
    }
    rfc3339(text).ok_or_else(|| {
        bad(
            name,
            format!("{text:?} is neither RFC 3339 (2026-11-25T20:00:00Z) nor Unix seconds"),
        )
    })
}

/// `yyyy-mm-ddThh:mm:ss[.fraction](Z|±hh:mm)` → Unix nanoseconds.
fn rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i64 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &fraction[..digits.min(9)];
        nanos = kept.parse::<i64>().ok()? * 10i64.pow(9 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let r = rest.as_bytes();
            if r.len() != 6 || r[3] != b':' {
                return None;
            }
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    let days = sift_proto::civil::days_from_civil(year, month as u32, day as u32);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    u64::try_from(seconds)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos as u64)
}

/// A duration like `250ms`, `2s`, `1.5m`, `1h`, `500us`, `10ns`.
pub fn duration(name: &str, text: &str) -> Result<Duration, ApiError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| bad(name, format!("{text:?} has no unit (use ns, us, ms, s, m or h)")))?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value
        .parse()
        .map_err(|_| bad(name, format!("{text:?} is not a duration like 250ms, 2s or 1m")))?;
    let nanos = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86_400e9,
        _ => {
            return Err(bad(
                name,
                format!("unknown unit {unit:?} (use ns, us, ms, s, m, h or d)"),
            ))
        }
    };
    Ok(Duration::from_nanos((value * nanos) as u64))
}

/// `limit`: default `default`, at most `max`, never 0.
pub fn limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| bad("limit", format!("{text:?} is not a positive integer")))?;
    if n == 0 || n > max {
        return Err(bad("limit", format!("must be between 1 and {max}, got {n}")));
    }
    Ok(n)
}

/// `key:value` (the value may itself contain `:`).
pub fn key_value(name: &str, text: &str) -> Result<(String, String), ApiError> {
    match text.split_once(':') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(bad(name, format!("{text:?} is not key:value"))),
    }
}

/// A severity as an OTLP severity number: a number 1–24 or a level name (trace, debug, info, warn,
/// error, fatal; any case).
pub fn severity(name: &str, text: &str) -> Result<i32, ApiError> {
    if let Ok(n) = text.trim().parse::<i32>() {
        if (1..=24).contains(&n) {
            return Ok(n);
        }
        return Err(bad(name, format!("severity number must be 1-24, got {n}")));
    }
    match text.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(1),
        "debug" => Ok(5),
        "info" => Ok(9),
        "warn" | "warning" => Ok(13),
        "error" => Ok(17),
        "fatal" => Ok(21),
        other => Err(bad(
            name,
            format!("unknown severity {other:?} (trace, debug, info, warn, error, fatal or 1-24)"),
        )),
    }
}

/// Query-string pairs, with repeated keys kept.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses a raw query string, rejecting names not in `known`.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = form_pairs(raw.unwrap_or(""));
        for (name, _) in &pairs {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {name:?} (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(Params(pairs))
    }

    /// The single value of `name`, if given (empty counts as absent).
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(n, v)| n == name && !v.is_empty());
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(bad(name, "given more than once"));
        }
        Ok(first)
    }

    /// Every value of a repeatable parameter.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `start`/`end` of a search (SPEC §4): without `start`, the hour before `end` (or before
    /// now) is searched.
    pub fn search_range(&self) -> Result<sift_storage::TimeRange, ApiError> {
        let mut range = self.range()?;
        if range.start.is_none() {
            let end = range.end.unwrap_or_else(now_nanos);
            range.start = Some(end.saturating_sub(HOUR_NANOS));
        }
        Ok(range)
    }

    /// `start`/`end` as a time range.
    pub fn range(&self) -> Result<sift_storage::TimeRange, ApiError> {
        let start = self.one("start")?.map(|t| time("start", t)).transpose()?;
        let end = self.one("end")?.map(|t| time("end", t)).transpose()?;
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err(ApiError::BadRequest("end: must be after start".into()));
            }
        }
        Ok(sift_storage::TimeRange { start, end })
    }
}

const HOUR_NANOS: u64 = 3_600_000_000_000;

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `application/x-www-form-urlencoded` pairs.
fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        assert_eq!(time("t", "1795636800").unwrap(), 1_795_636_800_000_000_000);
        assert_eq!(time("t", "2026-11-25T20:00:00Z").unwrap(), 1_795_636_800_000_000_000);
        assert_eq!(
            time("t", "2026-11-25T21:00:00+01:00").unwrap(),
            1_795_636_800_000_000_000
        );
        assert_eq!(time("t", "2026-11-25T20:00:00.25Z").unwrap(), 1_795_636_800_250_000_000);
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-25",
            "-5",
            "2026-11-25T20:00:00",
        ] {
            let e = time("start", bad).unwrap_err().to_string();
            assert!(e.starts_with("start: "), "{e}");
        }
    }

    #[test]
    fn durations_limits_ids_and_severities() {
        assert_eq!(duration("d", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("d", "1.5m").unwrap(), Duration::from_secs(90));
        assert!(duration("d", "5").is_err());
        assert!(duration("d", "5 parsecs").is_err());
        assert_eq!(limit(None, 20, 1000).unwrap(), 20);
        assert!(limit(Some("0"), 20, 1000).is_err());
        assert!(limit(Some("1001"), 20, 1000).is_err());
        assert!(limit(Some("-1"), 20, 1000).is_err());
        assert!(trace_id("id", "5B8EFFF798038103D269B633813FC60C").is_ok());
        assert!(trace_id("id", "5b8e").is_err());
        assert!(trace_id("id", "00000000000000000000000000000000").is_err());
        assert_eq!(severity("s", "WARN").unwrap(), 13);
        assert!(severity("s", "loud").is_err());
        assert_eq!(
            form_pairs("q=a+b%20c&attr=k%3Av"),
            vec![("q".into(), "a b c".into()), ("attr".into(), "k:v".into())]
        );
    }
}
