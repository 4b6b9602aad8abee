//! How long a capture runs (`spec.duration`): a positive length written the way operators write
//! it in Kubernetes and Go tools, `"90s"`, `"10m"`, `"1h30m"` (humantime syntax, so `"1h 30m"`
//! and `"2days"` work too), and printed back compactly (`"1h30m"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A capture length, always longer than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaptureDuration(Duration);

/// A duration that cannot be a capture length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration {text:?} is not valid ({reason}): write a number and a unit, e.g. \"90s\", \"10m\" or \"1h30m\"")]
    Syntax { text: String, reason: String },
    #[error("duration {0} has no unit: write it with one, e.g. \"{0}s\" or \"{0}m\"")]
    NoUnit(String),
    #[error("duration {0:?} is zero: give a length longer than zero, e.g. \"10m\"")]
    Zero(String),
}

impl CaptureDuration {
    /// A capture length; refuses zero.
    pub fn new(length: Duration) -> Result<CaptureDuration, DurationError> {
        if length.is_zero() {
            return Err(DurationError::Zero(compact_duration(length)));
        }
        Ok(CaptureDuration(length))
    }

    pub fn as_std(self) -> Duration {
        self.0
    }
}

impl From<CaptureDuration> for Duration {
    fn from(d: CaptureDuration) -> Duration {
        d.0
    }
}

impl FromStr for CaptureDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DurationError::NoUnit(trimmed.to_string()));
        }
        let length = humantime::parse_duration(trimmed).map_err(|e| DurationError::Syntax {
            text: text.to_string(),
            reason: e.to_string(),
        })?;
        if length.is_zero() {
            return Err(DurationError::Zero(text.to_string()));
        }
        Ok(CaptureDuration(length))
    }
}

impl fmt::Display for CaptureDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&compact_duration(self.0))
    }
}

/// Writes a duration the way Go and kubectl do, largest unit hours: `90s` → `1m30s`,
/// `30h`, `1h30m`, `1s500ms`; zero is `0s`. humantime parses every output back.
pub fn compact_duration(length: Duration) -> String {
    let total = length.as_secs();
    let nanos = length.subsec_nanos();
    let parts = [
        (total / 3600, "h"),
        (total / 60 % 60, "m"),
        (total % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_string()
    } else {
        text
    }
}

impl Serialize for CaptureDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CaptureDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = CaptureDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"90s\", \"10m\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CaptureDuration, E> {
                v.parse().map_err(E::custom)
            }
            // A bare number is the most common mistake; say which unit to add.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CaptureDuration, E> {
                Err(E::custom(DurationError::NoUnit(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CaptureDuration, E> {
                Err(E::custom(DurationError::NoUnit(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<CaptureDuration, E> {
                Err(E::custom(DurationError::NoUnit(v.to_string())))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Duration {
        text.parse::<CaptureDuration>().unwrap().as_std()
    }

    #[test]
    fn operator_spellings_parse() {
        assert_eq!(parse("90s"), Duration::from_secs(90));
        assert_eq!(parse("10m"), Duration::from_secs(600));
        assert_eq!(parse("1h30m"), Duration::from_secs(5400));
        assert_eq!(parse("1h 30m"), Duration::from_secs(5400));
        assert_eq!(parse("1500ms"), Duration::from_millis(1500));
        assert_eq!(parse("2days"), Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn prints_compactly_and_round_trips() {
        for (text, printed) in [
            ("90s", "1m30s"),
            ("10m", "10m"),
            ("1h30m", "1h30m"),
            ("30h", "30h"),
            ("1500ms", "1s500ms"),
            ("2d", "48h"),
            ("1h0m5s", "1h5s"),
        ] {
            let d: CaptureDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), printed);
            assert_eq!(printed.parse::<CaptureDuration>().unwrap(), d);
        }
        assert_eq!(compact_duration(Duration::ZERO), "0s");
        assert_eq!(
            compact_duration(Duration::from_nanos(1_001_001)),
            "1ms1us1ns"
        );
    }

    #[test]
    fn json_is_a_string() {
        let d: CaptureDuration = serde_json::from_str("\"10m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"10m\"");
    }

    #[test]
    fn errors_say_what_to_write() {
        let err = |t: &str| t.parse::<CaptureDuration>().unwrap_err().to_string();
        assert_eq!(
            err("0s"),
            "duration \"0s\" is zero: give a length longer than zero, e.g. \"10m\""
        );
        assert_eq!(
            err("600"),
            "duration 600 has no unit: write it with one, e.g. \"600s\" or \"600m\""
        );
        assert!(err("ten minutes").starts_with("duration \"ten minutes\" is not valid ("));
        assert!(err("ten minutes").ends_with("e.g. \"90s\", \"10m\" or \"1h30m\""));
        assert!(err("").contains("is not valid"));
        assert!(err("-5m").contains("is not valid"));
        let json = serde_json::from_str::<CaptureDuration>("600")
            .unwrap_err()
            .to_string();
        assert!(json.contains("duration 600 has no unit"), "{json}");
        assert!(CaptureDuration::new(Duration::ZERO).is_err());
        assert_eq!(
            CaptureDuration::new(Duration::from_secs(5))
                .unwrap()
                .as_std(),
            Duration::from_secs(5)
        );
    }
}
