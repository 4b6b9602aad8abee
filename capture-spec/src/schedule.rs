//! Capture schedules (`PacketCaptureSchedule`): a capture template run on a cron schedule, like a
//! Kubernetes CronJob runs a Job template. The spec and status shapes follow CronJob's
//! (`schedule`, `timeZone`, `suspend`, `concurrencyPolicy`, `startingDeadlineSeconds`), so an
//! operator who knows CronJobs knows these. Cron parsing and next run times live in [`cron`].
//!
//! Without `timeZone` the schedule runs on UTC, which is what a CronJob does on a
//! kube-controller-manager running in UTC (the usual case); podcap never uses the server's zone.

pub mod cron;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::capture::CaptureSpec;
use crate::status::Phase;
use cron::{CronExpressionError, CronSchedule};

/// How many finished captures a schedule keeps when `historyLimit` is unset (as CronJob's
/// `successfulJobsHistoryLimit`).
pub const DEFAULT_HISTORY_LIMIT: u32 = 3;

/// The largest `historyLimit` accepted: every kept capture holds files on the nodes.
pub const MAX_HISTORY_LIMIT: u32 = 100;

/// How many upcoming run times the status lists for the UI.
pub const NEXT_SCHEDULE_TIMES_SHOWN: usize = 5;

/// `PacketCaptureSchedule.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(kube::CustomResource, schemars::JsonSchema))]
// The `PacketCaptureSchedule` resource (see `crd`); the columns are CronJob's.
#[cfg_attr(
    feature = "kube",
    kube(
        group = "podcap.io",
        version = "v1alpha1",
        kind = "PacketCaptureSchedule",
        plural = "packetcaptureschedules",
        singular = "packetcaptureschedule",
        namespaced,
        status = "ScheduleStatus",
        derive = "PartialEq",
        shortname = "pcs",
        shortname = "pcapsched",
        category = "podcap",
        doc = "A capture schedule: a PacketCapture template run on a cron schedule, as a CronJob runs a Job template.",
        printcolumn = r#"{"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"}"#,
        printcolumn = r#"{"name": "Timezone", "type": "string", "jsonPath": ".spec.timeZone", "priority": 1}"#,
        printcolumn = r#"{"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"}"#,
        printcolumn = r#"{"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"}"#,
        printcolumn = r#"{"name": "Next Schedule", "type": "string", "format": "date-time", "jsonPath": ".status.nextScheduleTime", "priority": 1}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    )
)]
#[cfg_attr(
    feature = "kube",
    schemars(
        description = "When to run (schedule, timeZone, suspend), what to do when runs overlap (concurrencyPolicy), how many finished captures to keep (historyLimit), and the capture each run creates (template)."
    )
)]
pub struct ScheduleSpec {
    /// A CronJob cron expression: `"0 2 * * *"`, `"*/30 * * * * *"` (seconds first), `@daily`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, example = "0 2 * * *"))]
    pub schedule: String,
    /// IANA zone the schedule's wall clock is in, e.g. `Europe/Berlin`; unset means UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// When true, no new runs start; running captures carry on.
    #[serde(default)]
    pub suspend: bool,
    /// What to do when a run is due while the previous one is still capturing.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// How many finished captures to keep; unset means [`DEFAULT_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "kube",
        schemars(
            description = "How many finished captures to keep (unset: 3, at most 100).",
            range(max = 100)
        )
    )]
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub history_limit: Option<u32>,
    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub starting_deadline_seconds: Option<u64>,
    /// The capture each run creates; its window must be a `duration`.
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = crate::openapi::schedule_template)
    )]
    pub template: CaptureSpec,
}

/// CronJob's `concurrencyPolicy`, with the same default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum ConcurrencyPolicy {
    /// Start the new run even if the previous one is still capturing.
    #[default]
    Allow,
    /// Skip the new run while the previous one is still capturing.
    Forbid,
    /// Stop the previous run, then start the new one.
    Replace,
}

/// A schedule that cannot run: a bad cron expression or time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Cron(#[from] CronExpressionError),
    #[error("unknown timeZone {0:?}: use an IANA zone name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"")]
    UnknownTimeZone(String),
}

impl ScheduleSpec {
    /// A schedule running `template` on `schedule`, with CronJob's defaults for the rest.
    pub fn new(schedule: impl Into<String>, template: CaptureSpec) -> Self {
        ScheduleSpec {
            schedule: schedule.into(),
            time_zone: None,
            suspend: false,
            concurrency_policy: ConcurrencyPolicy::default(),
            history_limit: None,
            starting_deadline_seconds: None,
            template,
        }
    }

    /// How many finished captures to keep.
    pub fn effective_history_limit(&self) -> u32 {
        self.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT)
    }

    /// The parsed cron expression.
    pub fn cron(&self) -> Result<CronSchedule, ScheduleError> {
        Ok(CronSchedule::parse(&self.schedule)?)
    }

    /// The zone the schedule's wall clock is in (UTC when unset).
    pub fn zone(&self) -> Result<Tz, ScheduleError> {
        match &self.time_zone {
            None => Ok(Tz::UTC),
            Some(name) => parse_time_zone(name),
        }
    }

    /// The next `n` run times strictly after `after`, whether or not the schedule is suspended.
    pub fn next_runs(
        &self,
        after: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
        let zone = self.zone()?;
        Ok(self.cron()?.next_runs(&zone, after, n)?)
    }
}

/// An IANA time zone by its exact name (`Europe/Berlin`, `UTC`), as CronJob's `timeZone` takes
/// them.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    // tzdata's `Factory` zone (UTC, for machines whose zone is not set yet) is a valid CronJob
    // timeZone, since Go's time.LoadLocation reads it; chrono-tz leaves it out of its table.
    if name == "Factory" {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))
}

/// `PacketCaptureSchedule.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "kube", schemars(transform = crate::crd::schema::without_defaults))]
#[cfg_attr(
    feature = "kube",
    schemars(
        description = "When the schedule last ran and runs next, and the captures it created. Written by podcap."
    )
)]
pub struct ScheduleStatus {
    /// When the last run was due (not when its capture started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// When the next run is due; unset while suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// The next few run times ([`NEXT_SCHEDULE_TIMES_SHOWN`]), so the UI can show the pattern.
    #[cfg_attr(
        feature = "kube",
        schemars(description = "The next few run times, so the UI can show the pattern.")
    )]
    pub next_schedule_times: Vec<DateTime<Utc>>,
    /// Names of the captures of this schedule that are not finished.
    pub active: Vec<String>,
    /// Finished and running captures of this schedule, oldest first, at most the history limit
    /// of finished ones.
    pub history: Vec<ScheduleRun>,
}

/// One capture a schedule created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub struct ScheduleRun {
    /// The capture's name.
    pub name: String,
    /// The run time it was created for.
    pub scheduled_for: DateTime<Utc>,
    pub phase: Phase,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    const NIGHTLY: &str = r#"{"schedule":"0 2 * * *","timeZone":"Europe/Berlin","suspend":false,"concurrencyPolicy":"Forbid","historyLimit":5,"startingDeadlineSeconds":300,"template":{"podSelector":{"matchLabels":{"app":"db"}},"filters":[{"protocol":"TCP","ports":[5432]}],"duration":"10m","snapLength":262144,"rotation":{},"format":"pcapng"}}"#;

    #[test]
    fn spec_round_trips_with_camel_case_names() {
        let spec: ScheduleSpec = serde_json::from_str(NIGHTLY).unwrap();
        assert_eq!(spec.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(spec.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!(spec.effective_history_limit(), 5);
        assert_eq!(spec.starting_deadline_seconds, Some(300));
        assert_eq!(serde_json::to_string(&spec).unwrap(), NIGHTLY);
    }

    #[test]
    fn defaults_follow_cronjob() {
        let spec: ScheduleSpec =
            serde_json::from_str(r#"{"schedule":"@daily","template":{"duration":"1m"}}"#).unwrap();
        assert_eq!(spec.concurrency_policy, ConcurrencyPolicy::Allow);
        assert!(!spec.suspend);
        assert_eq!(spec.effective_history_limit(), 3);
        assert_eq!(spec.zone().unwrap(), Tz::UTC);
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            r#"{"schedule":"@daily","suspend":false,"concurrencyPolicy":"Allow","template":{"podSelector":{},"filters":[],"duration":"1m","snapLength":262144,"rotation":{},"format":"pcapng"}}"#
        );
        for policy in ["Forbid", "Allow", "Replace"] {
            let p: ConcurrencyPolicy = serde_json::from_str(&format!("\"{policy}\"")).unwrap();
            assert_eq!(format!("{p:?}"), policy);
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ScheduleSpec>(
            r#"{"schedule":"@daily","timezone":"UTC","template":{}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `timezone`"), "{err}");
        let err = serde_json::from_str::<ScheduleSpec>(
            r#"{"schedule":"@daily","template":{"startime":"x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `startime`"), "{err}");
    }

    #[test]
    fn next_runs_in_the_schedule_zone() {
        let spec: ScheduleSpec = serde_json::from_str(NIGHTLY).unwrap();
        // 02:00 Berlin summer time is 00:00 UTC.
        assert_eq!(
            spec.next_runs(utc(2025, 6, 1, 12, 0), 3).unwrap(),
            [
                utc(2025, 6, 2, 0, 0),
                utc(2025, 6, 3, 0, 0),
                utc(2025, 6, 4, 0, 0)
            ]
        );
        let mut utc_spec = spec.clone();
        utc_spec.time_zone = None;
        assert_eq!(
            utc_spec.next_runs(utc(2025, 6, 1, 12, 0), 1).unwrap(),
            [utc(2025, 6, 2, 2, 0)]
        );
        let mut new_york = spec;
        new_york.time_zone = Some("America/New_York".into());
        assert_eq!(
            new_york.next_runs(utc(2025, 6, 1, 12, 0), 1).unwrap(),
            [utc(2025, 6, 2, 6, 0)]
        );
    }

    #[test]
    fn unknown_zone_is_named_with_an_example() {
        let mut spec: ScheduleSpec = serde_json::from_str(NIGHTLY).unwrap();
        spec.time_zone = Some("Europe/Berln".into());
        assert_eq!(
            spec.next_runs(utc(2025, 6, 1, 12, 0), 1).unwrap_err().to_string(),
            "unknown timeZone \"Europe/Berln\": use an IANA zone name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
        );
        assert!(
            parse_time_zone("Local").is_err(),
            "an explicit zone is required, as in CronJob"
        );
        assert!(
            parse_time_zone("europe/berlin").is_err(),
            "zone names are case-sensitive"
        );
        assert_eq!(
            parse_time_zone("Factory").unwrap(),
            Tz::UTC,
            "as Go reads it"
        );
        spec.time_zone = None;
        spec.schedule = "0 2 * *".into();
        assert!(spec
            .next_runs(utc(2025, 6, 1, 12, 0), 1)
            .unwrap_err()
            .to_string()
            .starts_with("cron needs 5 fields"));
    }

    #[test]
    fn status_round_trips_with_camel_case_names() {
        let json = r#"{"lastScheduleTime":"2025-06-01T00:00:00Z","nextScheduleTime":"2025-06-02T00:00:00Z","nextScheduleTimes":["2025-06-02T00:00:00Z","2025-06-03T00:00:00Z"],"active":["nightly-29145600"],"history":[{"name":"nightly-29144160","scheduledFor":"2025-05-31T00:00:00Z","phase":"Completed"},{"name":"nightly-29145600","scheduledFor":"2025-06-01T00:00:00Z","phase":"Capturing"}]}"#;
        let status: ScheduleStatus = serde_json::from_str(json).unwrap();
        assert_eq!(status.history[0].phase, Phase::Completed);
        assert_eq!(status.history[1].scheduled_for, utc(2025, 6, 1, 0, 0));
        assert_eq!(serde_json::to_string(&status).unwrap(), json);
        assert_eq!(
            serde_json::to_string(&ScheduleStatus::default()).unwrap(),
            r#"{"nextScheduleTimes":[],"active":[],"history":[]}"#
        );
    }
}
