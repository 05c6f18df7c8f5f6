//! Typed scalar values used across the configuration: durations and network endpoints.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A duration written like the Collector's: `250ms`, `10s`, `1m`, `2h`, `7d` (units may be combined:
/// `1m30s`). A bare `0` is zero; negative values and missing units are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    /// From milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(StdDuration::from_millis(millis))
    }

    /// Parses the textual form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Duration(StdDuration::ZERO));
        }
        if text.starts_with('-') {
            return Err(format!("negative duration {text:?}"));
        }
        if text.is_empty() {
            return Err("empty duration".to_owned());
        }
        let mut total = StdDuration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("invalid duration {text:?}: expected a number"));
            }
            let number: f64 = rest[..digits]
                .parse()
                .map_err(|_| format!("invalid duration {text:?}"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let seconds = match unit {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                "" => return Err(format!("invalid duration {text:?}: missing unit (ms, s, m, h, d)")),
                other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
            };
            total += StdDuration::try_from_secs_f64(number * seconds)
                .map_err(|e| format!("invalid duration {text:?}: {e}"))?;
        }
        Ok(Duration(total))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => Duration::parse(&text).map_err(de::Error::custom),
            Raw::Number(0) => Ok(Duration(StdDuration::ZERO)),
            Raw::Number(n) => Err(de::Error::custom(format!(
                "invalid duration {n}: missing unit (ms, s, m, h, d)"
            ))),
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A `host:port` listen or connect address. Port 0 asks the OS for a free port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("invalid endpoint {text:?}: expected host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("invalid endpoint {text:?}: missing host"));
        }
        let port: u32 = port
            .parse()
            .map_err(|_| format!("invalid endpoint {text:?}: port {port:?} is not a number"))?;
        let port = u16::try_from(port)
            .map_err(|_| format!("invalid endpoint {text:?}: port {port} is out of range (0-65535)"))?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` suitable for binding (IPv6 hosts in brackets).
    pub fn to_bind_string(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Endpoint::parse(&text).map_err(de::Error::custom)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bind_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("250ms").unwrap().0, StdDuration::from_millis(250));
        assert_eq!(Duration::parse("10s").unwrap().0, StdDuration::from_secs(10));
        assert_eq!(Duration::parse("1m30s").unwrap().0, StdDuration::from_secs(90));
        assert_eq!(Duration::parse("7d").unwrap().0, StdDuration::from_secs(7 * 86_400));
        assert_eq!(Duration::parse("0").unwrap().0, StdDuration::ZERO);
        assert!(Duration::parse("-5s").unwrap_err().contains("negative"));
        assert!(Duration::parse("10").unwrap_err().contains("missing unit"));
        assert!(Duration::parse("10 parsecs").is_err());
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("127.0.0.1:4317").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 4317));
        assert_eq!(Endpoint::parse("[::1]:0").unwrap().to_bind_string(), "[::1]:0");
        assert!(Endpoint::parse("localhost").is_err());
        assert!(Endpoint::parse("localhost:70000").unwrap_err().contains("out of range"));
        assert!(Endpoint::parse(":80").is_err());
    }
}
