//! When a capture runs: the window resolved from `startTime`, `endTime` and `duration`.
//!
//! The rules follow Calico's PacketCapture: no `startTime`, or one already past, means now; the
//! end is `endTime`, or the start plus `duration`; giving both is an error, as is an end that is
//! not after the start. Resolve the window once, when the capture is admitted: afterwards the
//! status (`startedAt`) is the truth, since "now" keeps moving.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::duration::{compact_duration, CaptureDuration};
use crate::time::rfc3339;

/// A resolved capture window. `end` is `None` for a capture that runs until it is stopped or
/// reaches a limit (`maxPackets`, `maxBytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureWindow {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl CaptureWindow {
    /// How long the window is; `None` when it has no end.
    pub fn length(&self) -> Option<Duration> {
        self.end.and_then(|end| (end - self.start).to_std().ok())
    }

    /// Whether `time` falls inside the window (start inclusive, end exclusive).
    pub fn contains(&self, time: DateTime<Utc>) -> bool {
        time >= self.start && self.end.is_none_or(|end| time < end)
    }
}

/// Why the start, end and duration do not make a window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("endTime and duration are both set: keep one, endTime for a fixed end or duration for a length from the start")]
    EndTimeAndDuration,
    #[error("endTime {} is not in the future (the capture would start now, {}): set a later endTime, or use duration, e.g. \"10m\"", rfc3339(*.end), rfc3339(*.now))]
    EndNotInFuture {
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("endTime {} is not after startTime {}: set endTime later than startTime, or use duration, e.g. \"10m\"", rfc3339(*.end), rfc3339(*.start))]
    EndNotAfterStart {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error(
        "duration {0} reaches past the last time podcap can represent: use a shorter duration"
    )]
    OutOfRange(CaptureDuration),
    #[error("window is {}; the maximum is {}: shorten {}", compact_duration(*.length), compact_duration(*.max), .shorten)]
    TooLong {
        length: Duration,
        max: Duration,
        /// Which fields to shorten, as the message names them.
        shorten: &'static str,
    },
}

/// Resolves a window from the spec's fields. `now` is passed in so results are reproducible.
pub fn resolve_window(
    now: DateTime<Utc>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    duration: Option<CaptureDuration>,
) -> Result<CaptureWindow, WindowError> {
    // A start already past means now, as in Calico: the capture cannot go back in time.
    let start = start_time.filter(|t| *t > now).unwrap_or(now);
    let end = match (end_time, duration) {
        (Some(_), Some(_)) => return Err(WindowError::EndTimeAndDuration),
        (Some(end), None) if end <= start => {
            return Err(if start == now {
                WindowError::EndNotInFuture { end, now }
            } else {
                WindowError::EndNotAfterStart { start, end }
            })
        }
        (Some(end), None) => Some(end),
        (None, Some(length)) => Some(
            TimeDelta::from_std(length.as_std())
                .ok()
                .and_then(|delta| start.checked_add_signed(delta))
                .ok_or(WindowError::OutOfRange(length))?,
        ),
        (None, None) => None,
    };
    Ok(CaptureWindow { start, end })
}

/// Refuses a window longer than `max`; `shorten` names the fields that set its length.
pub fn check_window_length(
    window: &CaptureWindow,
    max: Duration,
    shorten: &'static str,
) -> Result<(), WindowError> {
    match window.length() {
        Some(length) if length > max => Err(WindowError::TooLong {
            length,
            max,
            shorten,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, h, m, 0).unwrap()
    }

    fn minutes(n: u64) -> Option<CaptureDuration> {
        Some(CaptureDuration::new(Duration::from_secs(n * 60)).unwrap())
    }

    #[test]
    fn no_start_is_now_and_past_start_is_now() {
        let now = at(10, 0);
        let w = resolve_window(now, None, None, minutes(10)).unwrap();
        assert_eq!(
            w,
            CaptureWindow {
                start: now,
                end: Some(at(10, 10))
            }
        );
        let w = resolve_window(now, Some(at(9, 0)), None, minutes(10)).unwrap();
        assert_eq!(w.start, now, "a start in the past means now");
        assert_eq!(w.end, Some(at(10, 10)));
        assert_eq!(w.length(), Some(Duration::from_secs(600)));
    }

    #[test]
    fn future_start_with_end_or_duration() {
        let now = at(10, 0);
        let w = resolve_window(now, Some(at(12, 0)), Some(at(12, 30)), None).unwrap();
        assert_eq!(
            w,
            CaptureWindow {
                start: at(12, 0),
                end: Some(at(12, 30))
            }
        );
        let w = resolve_window(now, Some(at(12, 0)), None, minutes(5)).unwrap();
        assert_eq!(w.end, Some(at(12, 5)));
        let open = resolve_window(now, None, None, None).unwrap();
        assert_eq!(open.end, None);
        assert_eq!(open.length(), None);
        assert!(open.contains(at(23, 0)));
        assert!(w.contains(at(12, 0)) && !w.contains(at(12, 5)) && !w.contains(at(11, 59)));
    }

    #[test]
    fn inconsistent_windows_are_refused() {
        let now = at(10, 0);
        assert_eq!(
            resolve_window(now, None, Some(at(11, 0)), minutes(5)).unwrap_err(),
            WindowError::EndTimeAndDuration
        );
        assert_eq!(
            resolve_window(now, Some(at(12, 0)), Some(at(12, 0)), None).unwrap_err().to_string(),
            "endTime 2025-06-01T12:00:00Z is not after startTime 2025-06-01T12:00:00Z: set endTime later than startTime, or use duration, e.g. \"10m\""
        );
        assert_eq!(
            resolve_window(now, None, Some(at(9, 0)), None).unwrap_err().to_string(),
            "endTime 2025-06-01T09:00:00Z is not in the future (the capture would start now, 2025-06-01T10:00:00Z): set a later endTime, or use duration, e.g. \"10m\""
        );
        let huge = CaptureDuration::new(Duration::from_secs(u64::MAX / 2)).unwrap();
        assert!(matches!(
            resolve_window(now, None, None, Some(huge)),
            Err(WindowError::OutOfRange(_))
        ));
    }

    #[test]
    fn length_limit() {
        let w = resolve_window(at(0, 0), None, None, minutes(30 * 60)).unwrap();
        assert_eq!(
            check_window_length(&w, Duration::from_secs(24 * 3600), "duration or endTime")
                .unwrap_err()
                .to_string(),
            "window is 30h; the maximum is 24h: shorten duration or endTime"
        );
        check_window_length(&w, Duration::from_secs(30 * 3600), "duration").unwrap();
    }
}
