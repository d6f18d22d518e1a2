//! Human-friendly durations for flags, env vars and the TOML file:
//! `250ms`, `5s`, `15m`, `1h`, `1d`, or a bare number of seconds.
//!
//! Every duration is at most [`MAX`] (365 days): larger values are refused
//! here, so no option can overflow `Duration`, `Instant` or `Millis`
//! arithmetic later (e.g. `99999999999999999999d` used to panic).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest accepted duration: 365 days. No SPEC timing comes close, and
/// it keeps `now + d` (in milliseconds) far from `u64::MAX`.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// A parsed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 5s, 15m, 1h, 1d)"))?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            other => return Err(format!("unknown duration unit `{other}` in `{s}` (use ms, s, m, h or d)")),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("`{s}` is not a valid duration"));
        }
        if secs > MAX.as_secs_f64() {
            return Err(too_long(s));
        }
        // In range, so `from_secs_f64` cannot panic.
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

fn too_long(s: &str) -> String {
    format!("`{s}` is longer than the maximum of 365d")
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) if n > MAX.as_secs() => Err(serde::de::Error::custom(too_long(&n.to_string()))),
            Raw::Secs(n) => Ok(Dur(Duration::from_secs(n))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("250ms".parse::<Dur>().unwrap().0, Duration::from_millis(250));
        assert_eq!("5".parse::<Dur>().unwrap().0, Duration::from_secs(5));
        assert_eq!("1.5s".parse::<Dur>().unwrap().0, Duration::from_millis(1500));
        assert_eq!("15m".parse::<Dur>().unwrap().0, Duration::from_secs(900));
        assert_eq!("1d".parse::<Dur>().unwrap().0, Duration::from_secs(86400));
        assert!("5 parsecs".parse::<Dur>().is_err());
        assert!("soon".parse::<Dur>().is_err());
    }

    #[test]
    fn refuses_overflowing_and_huge_values() {
        // Used to panic in `Duration::from_secs_f64`.
        let inf = format!("1{}s", "0".repeat(400));
        for s in ["99999999999999999999d", inf.as_str(), "18446744073709551616", "366d", "8761h"] {
            let e = s.parse::<Dur>().unwrap_err();
            assert!(e.contains("365d") || e.contains("not a valid"), "{s}: {e}");
        }
        assert_eq!("365d".parse::<Dur>().unwrap().0, MAX);
        let t: Result<std::collections::BTreeMap<String, Dur>, _> = toml::from_str("d = 9223372036854775807");
        assert!(t.unwrap_err().to_string().contains("365d"));
        let t: std::collections::BTreeMap<String, Dur> = toml::from_str("d = 60").unwrap();
        assert_eq!(t["d"].0, Duration::from_secs(60));
    }
}
