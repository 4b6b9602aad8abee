//! When a capture runs: the one rule for its window, used by the API when it admits a capture,
//! by the API's status controller and runner, by the schedule controller and by the node agents.
//!
//! - start = `startTime`, else the moment the capture was created;
//! - end = `endTime`, else start + `duration`, else start + the maximum window (a capture with
//!   no end is never recorded forever by a forgotten object);
//! - never longer than the maximum window, and never past the last time chrono can hold.
//!
//! Two entry points, because a request and a stored object need different answers to a bad
//! window. [`CaptureSpec::window`] admits a new capture: it also reads a past `startTime` as now
//! (as Calico does: a capture cannot go back in time) and REFUSES what does not make a window,
//! with a message saying what to change. [`CaptureWindow::of_stored`] reads a capture that exists
//! already (a PacketCapture applied with kubectl never passed the API's validation): it always
//! returns a window, CLAMPED to the maximum, and says what was wrong so the status can tell the
//! user. Neither can overflow or panic, whatever the spec says (`duration: "1000000years"`).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::capture::CaptureSpec;
use crate::duration::{compact_duration, CaptureDuration};
use crate::time::rfc3339;

/// A capture's window: from `start` (inclusive) to `end` (exclusive). An end at or before the
/// start is a window that never opens (a capture stopped before it began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Why the start, end and duration of a new capture do not make a window.
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

/// A stored capture's window that was longer than the maximum and was cut to it: what the
/// capture's status says, so whoever applied it learns why it ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field} makes the window {}, longer than the maximum of {}: this capture records for {} only, until {}; set {field} so the window is at most {}{}", compact_duration(*.length), compact_duration(*.max), compact_duration(*.max), rfc3339(*.end), compact_duration(*.max), example(.field))]
pub struct WindowClamped {
    /// The field that set the length: `duration` or `endTime`.
    pub field: &'static str,
    /// The length the spec asked for.
    pub length: Duration,
    pub max: Duration,
    /// Where the window ends instead.
    pub end: DateTime<Utc>,
}

fn example(field: &str) -> &'static str {
    if field == "duration" {
        ", e.g. \"10m\""
    } else {
        ""
    }
}

/// A stored capture's window, and what had to be changed to make it one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWindow {
    pub window: CaptureWindow,
    /// Set when the spec asked for more than the maximum window.
    pub clamped: Option<WindowClamped>,
}

impl CaptureWindow {
    /// The window of a capture that exists, created at `created`, by the rule in the module
    /// comment, clamped to `max_window`; see [`CaptureWindow::of_stored`] for what was clamped.
    pub fn of(spec: &CaptureSpec, created: DateTime<Utc>, max_window: Duration) -> CaptureWindow {
        CaptureWindow::of_stored(spec, created, max_window).window
    }

    /// The window of a capture that exists, and whether it had to be cut to `max_window`. The
    /// anchors do not move, so every reader gets the same answer whenever it looks, including
    /// after a restart. `endTime` wins over `duration` when both are set: the API stops a
    /// capture by setting `endTime` to now, which may also be before its start.
    pub fn of_stored(
        spec: &CaptureSpec,
        created: DateTime<Utc>,
        max_window: Duration,
    ) -> StoredWindow {
        let start = spec.start_time.unwrap_or(created);
        let (field, length) = match (spec.end_time, spec.duration) {
            (Some(end), _) => {
                let length = (end - start).to_std().unwrap_or_default();
                if length <= max_window {
                    return StoredWindow {
                        window: CaptureWindow { start, end },
                        clamped: None,
                    };
                }
                ("endTime", length)
            }
            (None, Some(duration)) => ("duration", duration.as_std()),
            (None, None) => ("", max_window),
        };
        let window = CaptureWindow {
            start,
            end: after(start, length.min(max_window)),
        };
        let clamped = (length > max_window).then_some(WindowClamped {
            field,
            length,
            max: max_window,
            end: window.end,
        });
        StoredWindow { window, clamped }
    }

    /// How long the window is; zero when it never opens.
    pub fn length(&self) -> Duration {
        (self.end - self.start).to_std().unwrap_or_default()
    }

    /// Not started yet at `now`.
    pub fn is_ahead(&self, now: DateTime<Utc>) -> bool {
        now < self.start
    }

    /// Over at `now`: packets are no longer recorded (also for an end at or before the start).
    pub fn is_over(&self, now: DateTime<Utc>) -> bool {
        now >= self.end
    }

    /// Whether `now` falls inside the window (start inclusive, end exclusive).
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        !self.is_ahead(now) && !self.is_over(now)
    }
}

/// `start + length`, or the last time chrono can hold when that is further.
fn after(start: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(length)
        .ok()
        .and_then(|delta| start.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl CaptureSpec {
    /// The window of a capture being created at `now`: no `startTime`, or one already past, is
    /// now; the end is `endTime`, or the start plus `duration`, or the start plus `max_window`.
    /// Refuses both `endTime` and `duration`, an end not after the start, and a window longer
    /// than `max_window` (or past the last representable time), each with what to change.
    pub fn window(
        &self,
        now: DateTime<Utc>,
        max_window: Duration,
    ) -> Result<CaptureWindow, WindowError> {
        // A start already past means now, as in Calico: the capture cannot go back in time.
        let start = self.start_time.filter(|t| *t > now).unwrap_or(now);
        let length = match (self.end_time, self.duration) {
            (Some(_), Some(_)) => return Err(WindowError::EndTimeAndDuration),
            (Some(end), None) if end <= start => {
                return Err(if start == now {
                    WindowError::EndNotInFuture { end, now }
                } else {
                    WindowError::EndNotAfterStart { start, end }
                })
            }
            (Some(end), None) => (end - start).to_std().unwrap_or_default(),
            (None, Some(duration)) => duration.as_std(),
            (None, None) => max_window,
        };
        // The length is compared before it is added, so a duration of a million years is
        // "too long", never an overflow.
        if length > max_window {
            return Err(WindowError::TooLong {
                length,
                max: max_window,
                shorten: "duration or endTime",
            });
        }
        let end = TimeDelta::from_std(length)
            .ok()
            .and_then(|delta| start.checked_add_signed(delta));
        match (end, self.duration) {
            (Some(end), _) => Ok(CaptureWindow { start, end }),
            (None, Some(duration)) => Err(WindowError::OutOfRange(duration)),
            // Only a maximum window beyond chrono's range gets here: the capture runs until
            // the last time chrono can hold.
            (None, None) => Ok(CaptureWindow {
                start,
                end: DateTime::<Utc>::MAX_UTC,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, h, m, 0).unwrap()
    }

    fn spec(json: &str) -> CaptureSpec {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn no_start_is_now_and_past_start_is_now() {
        let now = at(10, 0);
        let w = spec(r#"{"duration":"10m"}"#).window(now, DAY).unwrap();
        assert_eq!(
            w,
            CaptureWindow {
                start: now,
                end: at(10, 10)
            }
        );
        let w = spec(r#"{"startTime":"2025-06-01T09:00:00Z","duration":"10m"}"#)
            .window(now, DAY)
            .unwrap();
        assert_eq!(w.start, now, "a start in the past means now");
        assert_eq!(w.end, at(10, 10));
        assert_eq!(w.length(), Duration::from_secs(600));
    }

    #[test]
    fn future_start_with_end_or_duration_and_an_open_end() {
        let now = at(10, 0);
        let w = spec(r#"{"startTime":"2025-06-01T12:00:00Z","endTime":"2025-06-01T12:30:00Z"}"#)
            .window(now, DAY)
            .unwrap();
        assert_eq!((w.start, w.end), (at(12, 0), at(12, 30)));
        let w = spec(r#"{"startTime":"2025-06-01T12:00:00Z","duration":"5m"}"#)
            .window(now, DAY)
            .unwrap();
        assert_eq!(w.end, at(12, 5));
        assert!(w.is_open(at(12, 0)) && !w.is_open(at(12, 5)) && w.is_ahead(at(11, 59)));
        let open = spec("{}").window(now, DAY).unwrap();
        assert_eq!(open.end, now + TimeDelta::days(1), "no end: the maximum");
    }

    #[test]
    fn inconsistent_windows_are_refused() {
        let now = at(10, 0);
        assert_eq!(
            spec(r#"{"endTime":"2025-06-01T11:00:00Z","duration":"5m"}"#)
                .window(now, DAY)
                .unwrap_err(),
            WindowError::EndTimeAndDuration
        );
        assert_eq!(
            spec(r#"{"startTime":"2025-06-01T12:00:00Z","endTime":"2025-06-01T12:00:00Z"}"#).window(now, DAY).unwrap_err().to_string(),
            "endTime 2025-06-01T12:00:00Z is not after startTime 2025-06-01T12:00:00Z: set endTime later than startTime, or use duration, e.g. \"10m\""
        );
        assert_eq!(
            spec(r#"{"startTime":"2025-06-01T12:00:00Z","endTime":"2025-06-01T11:00:00Z"}"#)
                .window(now, DAY)
                .unwrap_err(),
            WindowError::EndNotAfterStart {
                start: at(12, 0),
                end: at(11, 0)
            },
            "an end before the start"
        );
        assert_eq!(
            spec(r#"{"endTime":"2025-06-01T09:00:00Z"}"#).window(now, DAY).unwrap_err().to_string(),
            "endTime 2025-06-01T09:00:00Z is not in the future (the capture would start now, 2025-06-01T10:00:00Z): set a later endTime, or use duration, e.g. \"10m\""
        );
    }

    #[test]
    fn a_window_past_the_maximum_is_refused_however_long() {
        let now = at(0, 0);
        assert_eq!(
            spec(r#"{"duration":"30h"}"#)
                .window(now, DAY)
                .unwrap_err()
                .to_string(),
            "window is 30h; the maximum is 24h: shorten duration or endTime"
        );
        spec(r#"{"duration":"30h"}"#)
            .window(now, Duration::from_secs(30 * 3600))
            .unwrap();
        // Far past chrono's last year: still "too long", never an overflow.
        for huge in ["1000000years", "500000000000years"] {
            let error = spec(&format!(r#"{{"duration":"{huge}"}}"#))
                .window(now, DAY)
                .unwrap_err();
            assert!(
                matches!(error, WindowError::TooLong { max: DAY, .. }),
                "{huge}: {error}"
            );
            assert!(error
                .to_string()
                .ends_with("the maximum is 24h: shorten duration or endTime"));
        }
        let far_end = spec(r#"{"endTime":"9999-12-31T23:59:59Z"}"#)
            .window(now, DAY)
            .unwrap_err();
        assert!(matches!(far_end, WindowError::TooLong { .. }), "{far_end}");
    }

    #[test]
    fn times_near_chronos_last_are_refused_or_saturate_never_panic() {
        let last = DateTime::<Utc>::MAX_UTC;
        let near = last - TimeDelta::hours(1);
        assert_eq!(
            spec(r#"{"duration":"2h"}"#).window(near, DAY).unwrap_err(),
            WindowError::OutOfRange("2h".parse().unwrap()),
            "a duration that ends past the last time"
        );
        assert_eq!(
            spec("{}").window(near, DAY).unwrap().end,
            last,
            "an open window ends at the last time"
        );
        let unlimited = Duration::MAX;
        assert_eq!(spec("{}").window(at(0, 0), unlimited).unwrap().end, last);
        let stored = CaptureWindow::of_stored(&spec(r#"{"duration":"2h"}"#), near, DAY);
        assert_eq!(stored.window.end, last);
        assert_eq!(stored.clamped, None);
        assert_eq!(CaptureWindow::of(&spec("{}"), near, unlimited).end, last);
    }

    #[test]
    fn a_stored_window_is_anchored_on_its_creation() {
        let created = at(2, 0);
        let plain = CaptureWindow::of(&spec(r#"{"duration":"10m"}"#), created, DAY);
        assert_eq!((plain.start, plain.end), (at(2, 0), at(2, 10)));
        let later = CaptureWindow::of(
            &spec(r#"{"startTime":"2025-06-01T02:05:00Z","duration":"10m"}"#),
            created,
            DAY,
        );
        assert_eq!((later.start, later.end), (at(2, 5), at(2, 15)));
        assert!(later.is_ahead(at(2, 4)));
        assert!(later.is_open(at(2, 5)) && later.is_open(at(2, 14)));
        assert!(later.is_over(at(2, 15)));
        let open = CaptureWindow::of(&spec("{}"), created, Duration::from_secs(120));
        assert_eq!(open.end, at(2, 2), "no end: the maximum window");
    }

    #[test]
    fn a_stored_end_time_wins_and_may_be_before_the_start() {
        // The API stops a capture by setting endTime to now, also on one with a duration.
        let stopped = CaptureWindow::of_stored(
            &spec(r#"{"duration":"10m","endTime":"2025-06-01T02:03:00Z"}"#),
            at(2, 0),
            DAY,
        );
        assert_eq!(stopped.window.end, at(2, 3));
        assert_eq!(stopped.clamped, None);
        assert!(stopped.window.is_over(at(2, 3)));
        // Stopped before it began: never open, and nothing to clamp.
        let never = CaptureWindow::of_stored(
            &spec(r#"{"startTime":"2025-06-01T02:05:00Z","endTime":"2025-06-01T02:01:00Z"}"#),
            at(2, 0),
            DAY,
        );
        assert!(!never.window.is_open(at(2, 2)) && !never.window.is_open(at(2, 6)));
        assert_eq!(never.window.length(), Duration::ZERO);
        assert_eq!(never.clamped, None);
    }

    #[test]
    fn a_stored_window_past_the_maximum_is_clamped_with_a_message() {
        let created = at(10, 0);
        let huge = CaptureWindow::of_stored(&spec(r#"{"duration":"1000000years"}"#), created, DAY);
        assert_eq!(huge.window.start, created);
        assert_eq!(huge.window.end, created + TimeDelta::days(1));
        let clamped = huge.clamped.unwrap();
        assert_eq!(clamped.field, "duration");
        assert_eq!(
            clamped.to_string(),
            "spec.duration makes the window 8766000000h, longer than the maximum of 24h: this capture records for 24h only, until 2025-06-02T10:00:00Z; set duration so the window is at most 24h, e.g. \"10m\""
        );
        let far =
            CaptureWindow::of_stored(&spec(r#"{"endTime":"2025-06-03T10:00:00Z"}"#), created, DAY);
        assert_eq!(far.window.end, created + TimeDelta::days(1));
        assert_eq!(
            far.clamped.unwrap().to_string(),
            "spec.endTime makes the window 48h, longer than the maximum of 24h: this capture records for 24h only, until 2025-06-02T10:00:00Z; set endTime so the window is at most 24h"
        );
        let exact = CaptureWindow::of_stored(&spec(r#"{"duration":"24h"}"#), created, DAY);
        assert_eq!(exact.clamped, None, "the maximum itself is allowed");
    }
}
