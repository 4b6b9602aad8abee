//! When a capture runs, as the node agent sees it. Unlike the API's admission-time
//! `CaptureSpec::window` (where "no start" means the moment of the request), the agent must come
//! to the same answer whenever it looks, including after a restart, so the window is anchored on
//! fields that do not move:
//!
//! - start = `spec.startTime`, else `metadata.creationTimestamp`;
//! - end = `spec.endTime`, else start + `spec.duration`, else start + `--max-window` (a capture
//!   with no end is never recorded forever by a forgotten object);
//! - a capture whose `endTime` is at or before now is over ("stopped": the API stops a capture by
//!   setting `endTime` to now).

use std::time::Duration;

use capture_spec::CaptureSpec;
use chrono::{DateTime, TimeDelta, Utc};

/// A capture's fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window of `spec`, created at `created`, with `max_window` for captures without an end.
    pub fn of(spec: &CaptureSpec, created: DateTime<Utc>, max_window: Duration) -> Window {
        let start = spec.start_time.unwrap_or(created);
        let after = |length: Duration| {
            TimeDelta::from_std(length)
                .ok()
                .and_then(|delta| start.checked_add_signed(delta))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        let end = match (spec.end_time, spec.duration) {
            (Some(end), _) => end,
            (None, Some(duration)) => after(duration.as_std()),
            (None, None) => after(max_window),
        };
        Window { start, end }
    }

    /// Not started yet.
    pub fn is_ahead(&self, now: DateTime<Utc>) -> bool {
        now < self.start
    }

    /// Over: packets are no longer recorded (also for an end at or before the start).
    pub fn is_over(&self, now: DateTime<Utc>) -> bool {
        now >= self.end
    }

    /// Inside the window: start inclusive, end exclusive.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        !self.is_ahead(now) && !self.is_over(now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 2, minute, 0).unwrap()
    }

    fn spec(json: &str) -> CaptureSpec {
        serde_json::from_str(json).unwrap()
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn start_is_start_time_or_creation() {
        let created = at(0);
        let plain = Window::of(&spec(r#"{"duration":"10m"}"#), created, DAY);
        assert_eq!((plain.start, plain.end), (at(0), at(10)));
        let later = Window::of(
            &spec(r#"{"startTime":"2025-06-01T02:05:00Z","duration":"10m"}"#),
            created,
            DAY,
        );
        assert_eq!((later.start, later.end), (at(5), at(15)));
        assert!(later.is_ahead(at(4)));
        assert!(later.is_open(at(5)));
        assert!(later.is_open(at(14)));
        assert!(later.is_over(at(15)));
    }

    #[test]
    fn end_time_wins_and_stops_the_capture() {
        let window = Window::of(&spec(r#"{"endTime":"2025-06-01T02:03:00Z"}"#), at(0), DAY);
        assert_eq!(window.end, at(3));
        assert!(window.is_over(at(3)));
        // Stopped before it began (endTime set to "now" before startTime): never open.
        let never = Window::of(
            &spec(r#"{"startTime":"2025-06-01T02:05:00Z","endTime":"2025-06-01T02:01:00Z"}"#),
            at(0),
            DAY,
        );
        assert!(!never.is_open(at(2)) && !never.is_open(at(6)));
    }

    #[test]
    fn no_end_means_the_maximum_window() {
        let window = Window::of(&spec("{}"), at(0), Duration::from_secs(120));
        assert_eq!(window.end, at(2));
    }
}
