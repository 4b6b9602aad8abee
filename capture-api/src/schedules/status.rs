//! What a schedule's status shows: the coming run times (none while suspended, since none will
//! run), the captures still running, and the history of its runs read from the store — the
//! store's captures are the truth, the status is their summary. Also which finished captures
//! fall beyond `historyLimit` and are to be deleted.

use capture_spec::{
    ScheduleError, ScheduleRun, ScheduleSpec, ScheduleStatus, NEXT_SCHEDULE_TIMES_SHOWN,
};
use chrono::{DateTime, Utc};

use super::{is_active, run_time_of};
use crate::store::CaptureRecord;

/// Sets the coming run times after `now`; clears them while the schedule is suspended.
pub fn set_upcoming(
    status: &mut ScheduleStatus,
    spec: &ScheduleSpec,
    now: DateTime<Utc>,
) -> Result<(), ScheduleError> {
    status.next_schedule_times = if spec.suspend {
        Vec::new()
    } else {
        spec.next_runs(now, NEXT_SCHEDULE_TIMES_SHOWN)?
    };
    status.next_schedule_time = status.next_schedule_times.first().copied();
    Ok(())
}

/// Runs in the order they were due (then by name, for runs of the same second).
fn by_run_time<'a>(schedule: &str, captures: &'a [CaptureRecord]) -> Vec<&'a CaptureRecord> {
    let mut sorted: Vec<&CaptureRecord> = captures.iter().collect();
    sorted.sort_by(|a, b| {
        (run_time_of(schedule, a), &a.name).cmp(&(run_time_of(schedule, b), &b.name))
    });
    sorted
}

/// Sets `active` and `history` from the schedule's captures as they are now.
pub fn set_runs(status: &mut ScheduleStatus, schedule: &str, captures: &[CaptureRecord]) {
    let sorted = by_run_time(schedule, captures);
    status.active = sorted
        .iter()
        .filter(|c| is_active(c))
        .map(|c| c.name.clone())
        .collect();
    status.history = sorted
        .iter()
        .map(|c| ScheduleRun {
            name: c.name.clone(),
            scheduled_for: run_time_of(schedule, c),
            phase: c.phase(),
        })
        .collect();
}

/// The finished captures beyond the newest `limit` finished ones, oldest first. Running captures
/// are never among them: a run is only history once it has ended.
pub fn beyond_history_limit<'a>(
    schedule: &str,
    captures: &'a [CaptureRecord],
    limit: u32,
) -> Vec<&'a CaptureRecord> {
    let finished: Vec<&CaptureRecord> = by_run_time(schedule, captures)
        .into_iter()
        .filter(|c| !is_active(c))
        .collect();
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let excess = finished.len().saturating_sub(keep);
    finished.into_iter().take(excess).collect()
}

#[cfg(test)]
mod tests {
    use capture_spec::{CaptureSpec, Phase};
    use chrono::TimeZone;

    use super::*;

    fn capture(name: &str, phase: Phase) -> CaptureRecord {
        // Creation order is the opposite of run order, to show history follows run times.
        let created = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        CaptureRecord::for_test(name, phase, "s", created)
    }

    fn names(captures: &[&CaptureRecord]) -> Vec<String> {
        captures.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn history_is_in_run_order_and_active_lists_running_captures() {
        let captures = [
            capture("s-300", Phase::Capturing),
            capture("s-100", Phase::Completed),
            capture("s-200", Phase::Stopped),
        ];
        let mut status = ScheduleStatus::default();
        set_runs(&mut status, "s", &captures);
        assert_eq!(status.active, ["s-300"]);
        let history: Vec<(&str, i64, Phase)> = status
            .history
            .iter()
            .map(|r| (r.name.as_str(), r.scheduled_for.timestamp(), r.phase))
            .collect();
        assert_eq!(
            history,
            [
                ("s-100", 100, Phase::Completed),
                ("s-200", 200, Phase::Stopped),
                ("s-300", 300, Phase::Capturing)
            ]
        );
    }

    #[test]
    fn only_the_oldest_finished_captures_fall_beyond_the_limit() {
        let captures = [
            capture("s-400", Phase::Capturing),
            capture("s-300", Phase::Failed),
            capture("s-100", Phase::Completed),
            capture("s-200", Phase::Completed),
        ];
        assert_eq!(
            names(&beyond_history_limit("s", &captures, 1)),
            ["s-100", "s-200"]
        );
        assert_eq!(
            names(&beyond_history_limit("s", &captures, 0)),
            ["s-100", "s-200", "s-300"]
        );
        assert!(beyond_history_limit("s", &captures, 3).is_empty());
    }

    #[test]
    fn a_suspended_schedule_shows_no_coming_runs() {
        let mut spec = ScheduleSpec::new("0 2 * * *", CaptureSpec::default());
        let now = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        let mut status = ScheduleStatus::default();
        set_upcoming(&mut status, &spec, now).unwrap();
        assert_eq!(status.next_schedule_times.len(), NEXT_SCHEDULE_TIMES_SHOWN);
        assert_eq!(
            status.next_schedule_time,
            Some(Utc.with_ymd_and_hms(2025, 6, 2, 2, 0, 0).unwrap())
        );
        spec.suspend = true;
        set_upcoming(&mut status, &spec, now).unwrap();
        assert_eq!(status.next_schedule_time, None);
        assert!(status.next_schedule_times.is_empty());
    }
}
