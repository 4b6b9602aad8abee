//! The schedule controller: every second, for each schedule that is not suspended, it starts
//! the run that is due (see [`super::due`]) as a capture of the schedule's template, applies
//! `concurrencyPolicy` to the runs still capturing, deletes finished runs beyond `historyLimit`,
//! and writes the status back. CronJob's rules throughout:
//!
//! - after an outage (or a suspension) only the most recent missed run starts, and only while it
//!   is within `startingDeadlineSeconds` when that is set;
//! - `Forbid` holds a due run back while an earlier one captures; the run is not marked as done,
//!   so it starts as soon as the earlier one ends, unless a newer run time or the deadline
//!   overtakes it;
//! - `Replace` stops the runs still capturing, then starts the new one.
//!
//! A run started on time captures exactly `[run time, run time + duration]`, so its window ends
//! on the schedule's clock (and before the pass that looks for the next run). A late run (after
//! a restart, or held back by `Forbid`) opens its window when it starts, so it still captures
//! for its whole `duration`; `scheduledFor` in the history keeps the time it was due.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture_spec::{
    CaptureSpec, CaptureWindow, ConcurrencyPolicy, ScheduleError, ScheduleSpec, ScheduleStatus,
};
use chrono::{DateTime, Utc};

use super::{capture_name, due, is_active, lock_schedule_writes, status, RUN_COUNTS};
use crate::captures::{create_capture, CreateError};
use crate::runs::{Runs, RunsError};
use crate::store::{CaptureRecord, ScheduleRecord, Store, StoreError};

/// How long after each whole second the controller looks: run times are whole seconds, so this
/// starts a run within a few milliseconds of its time.
const TICK_OFFSET: Duration = Duration::from_millis(20);

/// How late a run may start and still be on time (its window opening at its run time).
const ON_TIME: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runs(#[from] RunsError),
}

pub struct Controller {
    store: Arc<dyn Store>,
    runs: Arc<dyn Runs>,
    max_window: Duration,
    /// Per schedule uid and kind of report, the last condition logged, so one held-back or
    /// missed run is logged once rather than every second.
    reported: Mutex<HashMap<(String, &'static str), String>>,
}

/// What became of a due run.
enum RunOutcome {
    /// Its capture was created.
    Started,
    /// Its capture exists already: created before a restart, or by an earlier pass.
    AlreadyStarted,
    /// `Forbid` and these captures are still recording.
    HeldBack(Vec<String>),
    /// The template does not make a valid capture (e.g. `--max-window` was lowered since).
    Refused(String),
}

impl Controller {
    /// A controller whose captures are run by `runs` (the mode's backend).
    pub fn new(
        store: Arc<dyn Store>,
        runs: Arc<dyn Runs>,
        max_window: Duration,
    ) -> Arc<Controller> {
        Arc::new(Controller {
            store,
            runs,
            max_window,
            reported: Mutex::new(HashMap::new()),
        })
    }

    /// Passes forever, just after each whole second, on a blocking thread (the store and the
    /// runner are synchronous).
    pub async fn run_forever(self: Arc<Self>) {
        loop {
            let controller = self.clone();
            match tokio::task::spawn_blocking(move || controller.pass()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "schedule controller pass failed"),
                // The runtime is shutting down: not a failure.
                Err(error) if error.is_cancelled() => return,
                Err(error) => tracing::error!(%error, "schedule controller pass panicked"),
            }
            tokio::time::sleep(until_next_tick(Utc::now())).await;
        }
    }

    /// One pass over every schedule.
    pub fn pass(&self) -> Result<(), ControllerError> {
        let now = Utc::now();
        let schedules = self.store.schedules(None)?;
        let mut started = false;
        for schedule in &schedules {
            match self.reconcile(&schedule.namespace, &schedule.name, now) {
                Ok(started_one) => started |= started_one,
                Err(error) => tracing::error!(
                    namespace = %schedule.namespace, schedule = %schedule.name, %error,
                    "reconciling schedule"
                ),
            }
        }
        self.forget_reports_of_deleted(&schedules);
        if started {
            // Start the new captures now rather than at the runner's next pass, up to a second
            // into their window.
            if let Err(error) = self.runs.start_now() {
                tracing::error!(%error, "starting scheduled captures");
            }
        }
        Ok(())
    }

    /// Brings one schedule up to date at `now`; true if it started a capture.
    fn reconcile(
        &self,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ControllerError> {
        let _writes = lock_schedule_writes();
        // Read again under the lock: a PUT or DELETE may have come in since the list was read.
        let Some(record) = self.store.schedule(namespace, name)? else {
            return Ok(false);
        };
        let spec = &record.spec;
        let mut status = record.status.clone();
        let mut started = false;
        if !spec.suspend {
            started = self.run_due(&record, spec, &mut status, now)?;
        }
        let mut captures = self.store.captures_of_schedule(namespace, name)?;
        let expired = status::beyond_history_limit(name, &captures, spec.effective_history_limit());
        if !expired.is_empty() {
            for capture in expired {
                // One capture that cannot be deleted must not keep the others or the status
                // from being brought up to date; it is tried again next pass.
                match self.runs.delete(self.store.as_ref(), capture) {
                    Ok(()) => tracing::info!(namespace, schedule = name, capture = %capture.name,
                        "deleted a run beyond historyLimit"),
                    Err(error) => {
                        tracing::error!(namespace, schedule = name, capture = %capture.name,
                        %error, "deleting a run beyond historyLimit")
                    }
                }
            }
            captures = self.store.captures_of_schedule(namespace, name)?;
        }
        status::set_runs(&mut status, name, &captures);
        if let Err(error) = status::set_upcoming(&mut status, spec, now) {
            self.report_once(&record.uid, "unrunnable", error.to_string(), || {
                tracing::error!(namespace, schedule = name, %error, "schedule cannot run; fix it with PUT");
            });
        }
        if status != record.status {
            self.store
                .update_schedule(&record.uid, &record.spec, &status)?;
        }
        Ok(started)
    }

    /// Starts the run that is due, if any; true if it created a capture.
    fn run_due(
        &self,
        record: &ScheduleRecord,
        spec: &ScheduleSpec,
        status: &mut ScheduleStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, ControllerError> {
        let (namespace, name) = (record.namespace.as_str(), record.name.as_str());
        let since = status.last_schedule_time.unwrap_or(record.created_at);
        let due = match due::due_at(spec, since, now) {
            Ok(due) => due,
            Err(error) => {
                self.report_unrunnable(record, &error);
                return Ok(false);
            }
        };
        if let Some(missed) = due.past_deadline {
            self.report_once(&record.uid, "past deadline", missed.to_rfc3339(), || {
                RUN_COUNTS.missed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(namespace, schedule = name, run = %missed,
                    "a run was missed by more than startingDeadlineSeconds and will not start");
            });
        }
        let Some(run) = due.run else {
            return Ok(false);
        };
        match self.start_run(record, spec, run, now)? {
            RunOutcome::Started => {
                RUN_COUNTS.started.fetch_add(1, Ordering::Relaxed);
                RUN_COUNTS.missed.fetch_add(
                    u64::try_from(due.missed).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                if due.missed > 0 {
                    tracing::warn!(namespace, schedule = name, run = %run, missed = due.missed,
                        "run times passed without a run (the API was down, the schedule suspended, or Forbid held them back): started only the most recent");
                }
                tracing::info!(namespace, schedule = name, run = %run, capture = %capture_name(name, run), "started a scheduled capture");
                status.last_schedule_time = Some(run);
                Ok(true)
            }
            RunOutcome::AlreadyStarted => {
                status.last_schedule_time = Some(run);
                Ok(false)
            }
            RunOutcome::HeldBack(active) => {
                self.report_once(&record.uid, "held back", run.to_rfc3339(), || {
                    RUN_COUNTS.held_back.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(namespace, schedule = name, run = %run, ?active,
                        "concurrencyPolicy Forbid: the run waits while the previous one captures");
                });
                Ok(false)
            }
            RunOutcome::Refused(problems) => {
                // Marked as run all the same: retrying every second cannot fix the template.
                tracing::error!(namespace, schedule = name, run = %run, %problems,
                    "the template does not make a valid capture; fix it with PUT");
                status.last_schedule_time = Some(run);
                Ok(false)
            }
        }
    }

    /// Applies the concurrency policy and creates the run's capture.
    fn start_run(
        &self,
        record: &ScheduleRecord,
        spec: &ScheduleSpec,
        run: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RunOutcome, ControllerError> {
        let (namespace, name) = (record.namespace.as_str(), record.name.as_str());
        let capture = capture_name(name, run);
        let mut active = self.active_captures(namespace, name, &capture)?;
        let policy = spec.concurrency_policy;
        if policy != ConcurrencyPolicy::Allow
            && active
                .iter()
                .any(|c| window_is_over(c, now, self.max_window))
        {
            // Their window is over but the runner has not finished them yet: let it, so they
            // end Completed rather than being held against (or stopped by) the new run.
            self.runs.start_now()?;
            active = self.active_captures(namespace, name, &capture)?;
        }
        match policy {
            ConcurrencyPolicy::Allow => {}
            ConcurrencyPolicy::Forbid if !active.is_empty() => {
                return Ok(RunOutcome::HeldBack(
                    active.into_iter().map(|c| c.name).collect(),
                ));
            }
            ConcurrencyPolicy::Forbid => {}
            ConcurrencyPolicy::Replace => {
                for previous in active {
                    self.runs.stop(self.store.as_ref(), &previous)?;
                    tracing::info!(namespace, schedule = name, capture = %previous.name,
                        "concurrencyPolicy Replace: stopped the previous run");
                }
            }
        }
        match create_capture(
            self.store.as_ref(),
            namespace,
            &capture,
            spec.template.clone(),
            Some(name),
            self.max_window,
            window_opens(run, Utc::now(), &spec.template, self.max_window),
        ) {
            Ok(_) => Ok(RunOutcome::Started),
            Err(CreateError::Store(StoreError::AlreadyExists { .. })) => {
                Ok(RunOutcome::AlreadyStarted)
            }
            Err(CreateError::Invalid(problems)) => Ok(RunOutcome::Refused(problems.to_string())),
            Err(CreateError::Store(error)) => Err(error.into()),
        }
    }

    /// The schedule's captures still recording, other than `run_capture` (the due run's own
    /// capture, if it exists already).
    fn active_captures(
        &self,
        namespace: &str,
        schedule: &str,
        run_capture: &str,
    ) -> Result<Vec<CaptureRecord>, StoreError> {
        Ok(self
            .store
            .captures_of_schedule(namespace, schedule)?
            .into_iter()
            .filter(|c| is_active(c) && c.name != run_capture)
            .collect())
    }

    fn report_unrunnable(&self, record: &ScheduleRecord, error: &ScheduleError) {
        self.report_once(&record.uid, "unrunnable", error.to_string(), || {
            tracing::error!(namespace = %record.namespace, schedule = %record.name, %error,
                "schedule cannot run; fix it with PUT");
        });
    }

    /// Runs `log` unless `condition` is what was last logged of this kind for this schedule.
    fn report_once(&self, uid: &str, kind: &'static str, condition: String, log: impl FnOnce()) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (uid.to_string(), kind);
        if reported.get(&key) != Some(&condition) {
            log();
            reported.insert(key, condition);
        }
    }

    fn forget_reports_of_deleted(&self, schedules: &[ScheduleRecord]) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reported.retain(|(uid, _), _| schedules.iter().any(|s| &s.uid == uid));
    }
}

/// True when a capture's window has closed (it is only waiting for the runner to finish it).
fn window_is_over(capture: &CaptureRecord, now: DateTime<Utc>, max_window: Duration) -> bool {
    CaptureWindow::of(&capture.spec, capture.created_at, max_window).is_over(now)
}

/// When a run's capture window opens: at its run time when the run starts on time (within
/// [`ON_TIME`], and early enough that most of the window is still ahead), otherwise now.
fn window_opens(
    run: DateTime<Utc>,
    now: DateTime<Utc>,
    template: &CaptureSpec,
    max_window: Duration,
) -> DateTime<Utc> {
    let late = (now - run).to_std().unwrap_or_default();
    let length = CaptureWindow::of(template, run, max_window).length();
    if late < ON_TIME && late * 2 < length {
        run
    } else {
        now
    }
}

/// How long until just after the next whole second.
fn until_next_tick(now: DateTime<Utc>) -> Duration {
    let into_second = Duration::from_nanos(u64::from(now.timestamp_subsec_nanos()));
    Duration::from_secs(1).saturating_sub(into_second) + TICK_OFFSET
}

#[cfg(test)]
mod tests {
    use capture_spec::Phase;
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn template(duration: &str) -> CaptureSpec {
        serde_json::from_value(serde_json::json!({ "duration": duration })).unwrap()
    }

    #[test]
    fn an_on_time_run_captures_from_its_run_time_and_a_late_one_for_its_whole_duration() {
        let run = Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap();
        let tick = run + TimeDelta::milliseconds(20);
        assert_eq!(window_opens(run, tick, &template("10m"), DAY), run);
        let after_restart = run + TimeDelta::seconds(90);
        assert_eq!(
            window_opens(run, after_restart, &template("10m"), DAY),
            after_restart
        );
        let most_of_a_short_window_gone = run + TimeDelta::milliseconds(600);
        assert_eq!(
            window_opens(run, most_of_a_short_window_gone, &template("1s"), DAY),
            most_of_a_short_window_gone
        );
    }

    #[test]
    fn a_window_is_over_by_the_shared_rule() {
        let created = Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap();
        let mut capture = CaptureRecord::for_test("run", Phase::Capturing, "nightly", created);
        let over_after = |capture: &CaptureRecord, minutes: i64| {
            window_is_over(capture, created + TimeDelta::minutes(minutes), DAY)
        };
        capture.spec = template("10m");
        assert!(!over_after(&capture, 9) && over_after(&capture, 10));
        // Applied with kubectl with a huge duration: the maximum window, not an overflow.
        capture.spec = template("1000000years");
        assert!(!over_after(&capture, 23 * 60) && over_after(&capture, 24 * 60));
    }

    #[test]
    fn passes_come_just_after_each_whole_second() {
        let now = Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap() + TimeDelta::milliseconds(300);
        assert_eq!(
            until_next_tick(now),
            Duration::from_millis(700) + TICK_OFFSET
        );
    }
}
