//! Which run of a schedule is due, by CronJob's rules: of the run times that passed since the
//! last run (or since the schedule was created), only the most recent one runs — after an outage
//! a schedule makes up for at most one run, never for each one it missed. With
//! `startingDeadlineSeconds`, a run time older than the deadline is no longer due at all.
//!
//! Pure arithmetic on the cron expression in the schedule's zone: no store, no clock.

use capture_spec::{CronSchedule, ScheduleError, ScheduleSpec};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};

/// How far missed runs are counted; past it the count only says "at least this many".
pub const MISSED_COUNT_LIMIT: usize = 100;

/// What is due at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Due {
    /// The run to start now: the most recent run time not yet run.
    pub run: Option<DateTime<Utc>>,
    /// Earlier run times, since the last run, that are passed over for `run` (at most
    /// [`MISSED_COUNT_LIMIT`]).
    pub missed: usize,
    /// The most recent run time that is older than `startingDeadlineSeconds` and so will never
    /// run, when there is one after the last run.
    pub past_deadline: Option<DateTime<Utc>>,
}

/// The run due at `now` for a schedule whose last run (or creation) was at `since`.
pub fn due_at(
    spec: &ScheduleSpec,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Due, ScheduleError> {
    let runs = RunTimes {
        cron: spec.cron()?,
        zone: spec.zone()?,
    };
    // As CronJob does, look no further back than the deadline: older run times are not due, so
    // a schedule that was down for a year does not walk through a year of run times.
    let deadline = spec
        .starting_deadline_seconds
        .and_then(|seconds| i64::try_from(seconds).ok())
        .and_then(TimeDelta::try_seconds)
        .and_then(|deadline| now.checked_sub_signed(deadline));
    let earliest = match deadline {
        Some(deadline) if deadline > since => deadline,
        _ => since,
    };
    let run = runs.latest_in(earliest, now)?;
    let missed = match run {
        Some(_) => runs
            .count_in(earliest, now, MISSED_COUNT_LIMIT + 1)?
            .saturating_sub(1),
        None => 0,
    };
    let past_deadline = if earliest > since {
        runs.latest_in(since, earliest)?
    } else {
        None
    };
    Ok(Due {
        run,
        missed,
        past_deadline,
    })
}

/// The run times of one cron expression on one zone's wall clock.
struct RunTimes<Zone: TimeZone> {
    cron: CronSchedule,
    zone: Zone,
}

impl<Zone: TimeZone> RunTimes<Zone> {
    fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        Ok(self
            .cron
            .next_after(&after.with_timezone(&self.zone))?
            .with_timezone(&Utc))
    }

    /// The last run time in `(from, to]`.
    fn latest_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        if self.next_after(from)? > to {
            return Ok(None);
        }
        // Cron has no "previous run", so look back from `to` over a span that doubles until
        // it holds a run time, then walk forward: the walk covers a span at most twice the gap
        // to the latest run, not everything since `from`.
        let mut span = TimeDelta::seconds(1);
        let mut cursor = loop {
            let start = to
                .checked_sub_signed(span)
                .filter(|s| *s > from)
                .unwrap_or(from);
            let first = self.next_after(start)?;
            if first <= to {
                break first;
            }
            span = span.checked_mul(2).unwrap_or(TimeDelta::MAX);
        };
        loop {
            let next = self.next_after(cursor)?;
            if next > to {
                return Ok(Some(cursor));
            }
            cursor = next;
        }
    }

    /// How many run times are in `(from, to]`, counting no further than `limit`.
    fn count_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, ScheduleError> {
        let mut count = 0;
        let mut cursor = from;
        while count < limit {
            cursor = self.next_after(cursor)?;
            if cursor > to {
                break;
            }
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use capture_spec::CaptureSpec;
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, h, mi, s).unwrap()
    }

    fn spec(cron: &str) -> ScheduleSpec {
        ScheduleSpec::new(cron, CaptureSpec::default())
    }

    #[test]
    fn nothing_is_due_before_the_first_run_time() {
        let due = due_at(&spec("0 2 * * *"), at(1, 0, 0), at(1, 59, 59)).unwrap();
        assert_eq!(due, Due::default());
    }

    #[test]
    fn a_run_time_is_due_from_its_second_on_and_once() {
        let hourly = spec("0 * * * *");
        assert_eq!(
            due_at(&hourly, at(1, 0, 0), at(2, 0, 0)).unwrap().run,
            Some(at(2, 0, 0))
        );
        assert_eq!(
            due_at(&hourly, at(2, 0, 0), at(2, 0, 1)).unwrap().run,
            None,
            "already run"
        );
    }

    #[test]
    fn after_an_outage_only_the_most_recent_run_is_due() {
        let due = due_at(&spec("*/10 * * * *"), at(1, 0, 0), at(2, 5, 0)).unwrap();
        assert_eq!(due.run, Some(at(2, 0, 0)));
        assert_eq!(due.missed, 5, "01:10 to 01:50 pass over for 02:00");
        let every_second = due_at(&spec("* * * * * *"), at(0, 0, 0), at(2, 0, 0)).unwrap();
        assert_eq!(every_second.run, Some(at(2, 0, 0)));
        assert_eq!(
            every_second.missed, MISSED_COUNT_LIMIT,
            "counting stops at the limit"
        );
    }

    #[test]
    fn a_run_older_than_the_deadline_is_not_due() {
        let mut nightly = spec("0 2 * * *");
        nightly.starting_deadline_seconds = Some(300);
        let late = due_at(&nightly, at(1, 0, 0), at(2, 6, 0)).unwrap();
        assert_eq!(late.run, None);
        assert_eq!(late.past_deadline, Some(at(2, 0, 0)));
        let in_time = due_at(&nightly, at(1, 0, 0), at(2, 4, 59)).unwrap();
        assert_eq!(in_time.run, Some(at(2, 0, 0)));
        assert_eq!(in_time.past_deadline, None);
    }

    #[test]
    fn run_times_follow_the_schedule_zone() {
        let mut berlin = spec("0 2 * * *");
        berlin.time_zone = Some("Europe/Berlin".into());
        // 02:00 in Berlin summer time is 00:00 UTC.
        assert_eq!(
            due_at(&berlin, at(0, 0, 0) - TimeDelta::hours(1), at(0, 30, 0))
                .unwrap()
                .run,
            Some(at(0, 0, 0))
        );
    }

    #[test]
    fn a_schedule_idle_for_hours_finds_its_latest_run() {
        // Every second of 02:00-02:59, looked at from 23:00: the doubling look-back finds 02:59:59.
        let due = due_at(&spec("* * 2 * * *"), at(0, 0, 0), at(23, 0, 0)).unwrap();
        assert_eq!(due.run, Some(at(2, 59, 59)));
        assert_eq!(due.missed, MISSED_COUNT_LIMIT);
    }
}
