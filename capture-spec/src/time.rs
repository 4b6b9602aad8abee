//! RFC 3339 times as specs and messages write them: `2025-06-01T02:00:00Z`. Parsing accepts any
//! offset (`+02:00`) and converts to UTC; a time that does not parse gets an error with an
//! example instead of chrono's terse "input contains invalid characters".

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer};

/// A time as podcap prints it: RFC 3339 in UTC with `Z`, fractions only when present.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 time, converting any offset to UTC.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, TimeError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| TimeError {
            text: text.to_string(),
            reason: e.to_string(),
        })
}

/// A time that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {text:?} is not an RFC 3339 time ({reason}): write e.g. \"2025-06-01T02:00:00Z\" or \"2025-06-01T04:00:00+02:00\"")]
pub struct TimeError {
    pub text: String,
    pub reason: String,
}

/// serde `deserialize_with` for optional spec times, so a bad `startTime` says how to write it.
pub(crate) fn deserialize_optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse_rfc3339(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn offsets_become_utc() {
        let t = parse_rfc3339("2025-06-01T04:00:00+02:00").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap());
        assert_eq!(rfc3339(t), "2025-06-01T02:00:00Z");
        let fractional = parse_rfc3339("2025-06-01T02:00:00.250Z").unwrap();
        assert_eq!(rfc3339(fractional), "2025-06-01T02:00:00.250Z");
    }

    #[test]
    fn bad_times_show_an_example() {
        let err = parse_rfc3339("tomorrow 2am").unwrap_err().to_string();
        assert!(
            err.starts_with("time \"tomorrow 2am\" is not an RFC 3339 time ("),
            "{err}"
        );
        assert!(
            err.ends_with("write e.g. \"2025-06-01T02:00:00Z\" or \"2025-06-01T04:00:00+02:00\"")
        );
        assert!(
            parse_rfc3339("2025-06-01 02:00:00").is_err(),
            "a space instead of T is not RFC 3339 as Kubernetes reads it"
        );
    }
}
