//! Schedules (`PacketCaptureSchedule`): the controller that turns each schedule's cron into
//! captures, as Kubernetes' CronJob controller turns a CronJob into Jobs, and what the REST
//! routes share with it. [`due`] says which run is due, [`status`] what a schedule's status
//! shows, [`controller`] starts the runs (through [`crate::runs::Runs`], as the routes do).
//!
//! A run's capture is named `{schedule}-{unix seconds of its run time}`. The name says which run
//! it is, so a restarted controller can never create a second capture for the same run (the
//! store refuses the name), and the history can show when each run was due. Everything else
//! lives in the store, so schedules survive restarts.

pub mod controller;
pub mod due;
pub mod status;

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::store::CaptureRecord;

pub use controller::Controller;

/// The longest schedule name: its captures' names add `-` and 10 digits and must still be
/// 63-character DNS labels (CronJob limits its names to 52 for the same reason).
pub const MAX_SCHEDULE_NAME_LENGTH: usize = 52;

/// What became of run times since the server started, for `/metrics` (counters a person would
/// graph: a schedule that keeps being held back or missing runs needs a look).
pub struct RunCounts {
    /// Runs whose capture was created.
    pub started: AtomicU64,
    /// Run times held back by `concurrencyPolicy: Forbid`, each counted once.
    pub held_back: AtomicU64,
    /// Run times that never got a run: passed over after an outage or a suspension, or while
    /// `Forbid` held them back (only the most recent one runs), or older than
    /// `startingDeadlineSeconds`.
    pub missed: AtomicU64,
}

pub static RUN_COUNTS: RunCounts = RunCounts {
    started: AtomicU64::new(0),
    held_back: AtomicU64::new(0),
    missed: AtomicU64::new(0),
};

static SCHEDULE_WRITES: Mutex<()> = Mutex::new(());

/// Serialises every change to schedules: the controller's work on one schedule and the PUT and
/// DELETE routes. The store replaces spec and status together, so without it the controller
/// could write back a spec that a PUT has just replaced, or start a run of a schedule that is
/// being deleted. Take it on blocking threads only.
pub fn lock_schedule_writes() -> MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic while holding the lock leaves nothing half-written.
    SCHEDULE_WRITES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The name of the capture that runs `schedule` at `run`.
pub fn capture_name(schedule: &str, run: DateTime<Utc>) -> String {
    format!("{schedule}-{}", run.timestamp())
}

/// The run time a capture of `schedule` was created for, read back from its name (its creation
/// time if the name is not one the controller gave).
pub fn run_time_of(schedule: &str, capture: &CaptureRecord) -> DateTime<Utc> {
    capture
        .name
        .strip_prefix(schedule)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|seconds| seconds.parse::<i64>().ok())
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
        .unwrap_or(capture.created_at)
}

/// True while a capture may still record: it counts against `concurrencyPolicy`.
pub fn is_active(capture: &CaptureRecord) -> bool {
    !capture.phase().is_finished()
}

#[cfg(test)]
mod tests {
    use capture_spec::Phase;
    use chrono::TimeZone;

    use super::*;

    fn capture(name: &str, phase: Phase) -> CaptureRecord {
        let created = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        CaptureRecord::for_test(name, phase, "nightly", created)
    }

    #[test]
    fn a_capture_name_carries_its_run_time() {
        let run = Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap();
        let name = capture_name("nightly", run);
        assert_eq!(name, "nightly-1748743200");
        assert_eq!(
            run_time_of("nightly", &capture(&name, Phase::Completed)),
            run
        );
        let odd = capture("nightly-manual", Phase::Completed);
        assert_eq!(run_time_of("nightly", &odd), odd.created_at);
    }

    #[test]
    fn scheduled_and_capturing_captures_are_active() {
        assert!(is_active(&capture("a", Phase::Scheduled)));
        assert!(is_active(&capture("a", Phase::Capturing)));
        for finished in [Phase::Completed, Phase::Stopped, Phase::Failed] {
            assert!(!is_active(&capture("a", finished)), "{finished}");
        }
    }
}
