//! The capture-status controller of Kubernetes mode. The node agents own `status.targets` (each
//! its own entries, field manager `podcap-agent/NODE`); the API owns everything else in the
//! status — `phase`, `startedAt`, `finishedAt`, `message` and the totals of `summarize` — under
//! field manager `podcap-api`, and never writes a target. Every second it looks at every
//! capture and moves its phase by the window rule the agents share
//! ([`capture_spec::CaptureWindow::of_stored`]):
//!
//! - `Scheduled` before the window opens;
//! - `Capturing` while it is open;
//! - after it closes, once every target is finished (or [`ClusterSettings::finish_grace`] has
//!   passed): `Stopped` when a user stopped it, else `Completed`;
//! - `Failed` with a message when no node has reported anything
//!   [`ClusterSettings::report_timeout`] after the start, every target failed, or the spec
//!   cannot be read.
//!
//! A PacketCapture applied with kubectl never passed the API's validation (the CRD only checks
//! the shape), so its window may be longer than the maximum, up to `duration: "1000000years"`:
//! the window is cut to the maximum, as the agents cut it, and the message says so and what to
//! change. One object can never stop the others from being served: the decision ([`desired`]) is
//! a pure function of what was read ([`Observed`]), and a panic in it, which would be a bug,
//! fails that one capture rather than the controller.
//!
//! The phase only moves forward; totals keep following the agents' reports after the end.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use capture_spec::{CaptureSpec, CaptureStatus, CaptureWindow, Phase, StoredWindow, TargetState};
use chrono::{DateTime, Utc};
use kube::api::{DynamicObject, ListParams};

use super::store::api_owned_status;
use super::{chrono_time, store_error, Cluster, ClusterSettings, STOPPED_ANNOTATION};
use crate::store::StoreError;

/// How often every capture is looked at.
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// Share links of deleted captures are looked for once a minute.
const PRUNE_EVERY: u64 = 60;

fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Scheduled => 0,
        Phase::Capturing => 1,
        Phase::Completed | Phase::Stopped | Phase::Failed => 2,
    }
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// What the controller reads of one PacketCapture: everything [`desired`] decides from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The spec, or why it cannot be read.
    pub spec: Result<CaptureSpec, String>,
    /// The status as stored (the default when there is none, or it cannot be read).
    pub status: CaptureStatus,
    /// `metadata.creationTimestamp`, the start of a capture without `startTime`.
    pub created: DateTime<Utc>,
    /// A user stopped it (the `podcap.io/stopped-at` annotation).
    pub stopped: bool,
}

impl Observed {
    /// Reads `object`; an object without a creation time (which the API server always sets) is
    /// taken as created `now`.
    pub fn of(object: &DynamicObject, now: DateTime<Utc>) -> Observed {
        let status = object
            .data
            .get("status")
            .cloned()
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default();
        Observed {
            spec: serde_json::from_value(object.data.get("spec").cloned().unwrap_or_default())
                .map_err(|error| error.to_string()),
            status,
            created: object
                .metadata
                .creation_timestamp
                .as_ref()
                .map(chrono_time)
                .unwrap_or(now),
            stopped: object
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(STOPPED_ANNOTATION)),
        }
    }
}

/// Both messages, when there are two.
fn joined(first: Option<String>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (Some(first), Some(second)) => Some(format!("{first}; {second}")),
        (first, second) => first.or(second),
    }
}

/// The status the API wants for a capture at `now`: the stored one with phase, times, message
/// and totals brought up to date. Pure: no cluster, no clock.
pub fn desired(
    observed: &Observed,
    now: DateTime<Utc>,
    settings: &ClusterSettings,
) -> CaptureStatus {
    let mut status = observed.status.clone();
    status.summarize();
    if status.phase.is_finished() {
        return status;
    }
    let spec = match &observed.spec {
        Ok(spec) => spec,
        Err(error) => {
            status.phase = Phase::Failed;
            status.finished_at = Some(now);
            status.message = Some(format!(
                "the spec cannot be read ({error}): fix it and create the capture again"
            ));
            return status;
        }
    };
    let StoredWindow { window, clamped } =
        CaptureWindow::of_stored(spec, observed.created, settings.max_window);
    let (start, end) = (window.start, window.end);
    let clamped = clamped.map(|problem| problem.to_string());
    let since_start = (now - start).to_std().unwrap_or_default();
    let silent = status.targets.is_empty();
    let all_failed = !silent
        && status
            .targets
            .iter()
            .all(|t| t.state == TargetState::Failed);
    let no_report = format!(
        "no node's capture agent reported on this capture within {} of its start: check that its podSelector matches Running pods (GET /api/v1/namespaces/NS/pods?selector=...) and that capture-agent runs on their nodes (kubectl -n podcap-system get pods -o wide)",
        human(settings.report_timeout)
    );
    let failed_targets = || {
        let errors: Vec<String> = status
            .targets
            .iter()
            .map(|t| {
                format!(
                    "{}/{} on {}: {}",
                    t.namespace,
                    t.pod,
                    t.node,
                    t.error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        format!("every target failed: {}", errors.join("; "))
    };
    let (phase, message) = if window.is_ahead(now) {
        (
            Phase::Scheduled,
            Some(format!("waiting for its start time {}", start.to_rfc3339())),
        )
    } else if window.is_open(now) {
        if silent && since_start >= settings.report_timeout {
            (Phase::Failed, Some(no_report))
        } else if all_failed {
            (Phase::Failed, Some(failed_targets()))
        } else {
            (Phase::Capturing, None)
        }
    } else {
        // Subtracted, not added: an end at the last time chrono holds has no "end + grace".
        let graced = (now - end).to_std().unwrap_or_default() >= settings.finish_grace;
        let all_finished = !silent && status.targets.iter().all(|t| t.state.is_finished());
        if !(all_finished || graced) {
            (
                Phase::Capturing,
                Some("the window has closed; waiting for the nodes to finish their files".into()),
            )
        } else if silent {
            (Phase::Failed, Some(no_report))
        } else if all_failed {
            (Phase::Failed, Some(failed_targets()))
        } else {
            let unfinished: Vec<String> = status
                .targets
                .iter()
                .filter(|t| !t.state.is_finished())
                .map(|t| format!("{}/{} on {}", t.namespace, t.pod, t.node))
                .collect();
            let message = (!unfinished.is_empty()).then(|| {
                format!(
                    "finished without the end of {} reported within {} of the window's end; their files may be incomplete",
                    unfinished.join(", "),
                    human(settings.finish_grace)
                )
            });
            (
                if observed.stopped {
                    Phase::Stopped
                } else {
                    Phase::Completed
                },
                message,
            )
        }
    };
    if rank(phase) < rank(status.phase) {
        return status;
    }
    if phase != Phase::Scheduled && status.started_at.is_none() && phase != Phase::Failed {
        status.started_at = Some(now.min(end).max(start));
    }
    if phase.is_finished() {
        status.finished_at = Some(now);
    }
    status.phase = phase;
    status.message = joined(message, clamped);
    status
}

/// The status to apply to `object` at `now`, or None when what the API owns is already so (or
/// the object is being deleted). A panic while deciding, which would be a podcap bug, fails this
/// capture with a message instead of ending the controller for every capture.
pub fn wanted(
    object: &DynamicObject,
    now: DateTime<Utc>,
    settings: &ClusterSettings,
) -> Option<CaptureStatus> {
    if object.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let observed = Observed::of(object, now);
    let wanted = catch_unwind(AssertUnwindSafe(|| desired(&observed, now, settings)))
        .unwrap_or_else(|_| {
            let mut failed = observed.status.clone();
            failed.phase = Phase::Failed;
            failed.finished_at = Some(now);
            failed.message = Some(
                "podcap could not work out this capture's status (a podcap bug: the API log has the details; please report it): delete the capture and create it again".into(),
            );
            failed
        });
    let current = object.data.get("status").cloned().unwrap_or_default();
    let changed = serde_json::to_value(&wanted)
        .is_ok_and(|value| api_owned_status(&value) != api_owned_status(&current));
    changed.then_some(wanted)
}

/// One pass over every capture; the uids of all captures.
pub async fn pass(cluster: &Cluster) -> Result<BTreeSet<String>, StoreError> {
    let now = Utc::now();
    let objects = cluster
        .store
        .capture_api(None)
        .list(&ListParams::default())
        .await
        .map_err(|e| store_error("listing PacketCaptures", e))?;
    let uids = objects
        .items
        .iter()
        .filter_map(|object| object.metadata.uid.clone())
        .collect();
    for object in &objects.items {
        let Some(wanted) = wanted(object, now, &cluster.settings) else {
            continue;
        };
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let before = Observed::of(object, now).status.phase;
        if wanted.phase != before {
            tracing::info!(namespace, name, from = ?before, to = ?wanted.phase, "capture phase");
        }
        if let Err(error) = cluster
            .store
            .apply_capture_status(namespace, name, &wanted)
            .await
        {
            tracing::warn!(namespace, name, %error, "updating a capture's status");
        }
    }
    Ok(uids)
}

/// Passes forever; every [`PRUNE_EVERY`] passes, also deletes the share links of captures
/// that are gone.
pub async fn run_forever(cluster: Arc<Cluster>) {
    let mut passes = 0u64;
    loop {
        match pass(&cluster).await {
            Ok(uids) if passes.is_multiple_of(PRUNE_EVERY) => {
                match cluster.store.shares.prune(&uids, Utc::now()).await {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(deleted, "share links of deleted captures removed")
                    }
                    Err(error) => tracing::warn!(%error, "pruning share links"),
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "capture status pass failed"),
        }
        passes += 1;
        tokio::time::sleep(PASS_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use capture_spec::{FileStatus, TargetStatus};
    use chrono::TimeZone;
    use serde_json::{json, Value};

    use super::*;

    fn settings() -> ClusterSettings {
        ClusterSettings {
            shares_namespace: "podcap-system".into(),
            max_window: Duration::from_secs(3600),
            report_timeout: Duration::from_secs(60),
            finish_grace: Duration::from_secs(30),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap()
    }

    fn after(secs: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(secs)
    }

    /// A PacketCapture as the API server lists it (created at [`t0`]), as a fixture.
    fn object(name: &str, spec: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "podcap.io/v1alpha1",
            "kind": "PacketCapture",
            "metadata": {
                "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                "creationTimestamp": "2025-06-01T02:00:00Z",
            },
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn observed(spec: Value) -> Observed {
        Observed::of(&object("web", spec, json!({})), t0())
    }

    fn target(state: TargetState) -> TargetStatus {
        TargetStatus {
            node: "node-a".into(),
            namespace: "shop".into(),
            pod: "web".into(),
            interface: "eth0".into(),
            state,
            packets: 3,
            files: vec![FileStatus::default()],
            ..TargetStatus::default()
        }
    }

    #[test]
    fn the_phase_follows_the_window_and_the_agents() {
        let mut seen = observed(json!({"startTime": "2025-06-01T02:00:10Z", "duration": "10s"}));
        let s = settings();
        let mut at = |secs: i64, status: &CaptureStatus, stopped: bool| {
            seen.status = status.clone();
            seen.stopped = stopped;
            desired(&seen, after(secs), &s)
        };
        let scheduled = at(0, &CaptureStatus::default(), false);
        assert_eq!(scheduled.phase, Phase::Scheduled);
        let capturing = at(12, &scheduled, false);
        assert_eq!(capturing.phase, Phase::Capturing);
        assert!(capturing.started_at.is_some());
        assert_eq!(capturing.message, None);
        let mut reported = capturing.clone();
        reported.targets = vec![target(TargetState::Capturing)];
        let waiting = at(21, &reported, false);
        assert_eq!(
            waiting.phase,
            Phase::Capturing,
            "a target is still capturing"
        );
        assert_eq!(waiting.packets, Some(3));
        reported.targets = vec![target(TargetState::Completed)];
        assert_eq!(at(21, &reported, false).phase, Phase::Completed);
        assert_eq!(at(21, &reported, true).phase, Phase::Stopped);
        reported.targets = vec![target(TargetState::Capturing)];
        let late = at(60, &reported, false);
        assert_eq!(late.phase, Phase::Completed, "the grace period passed");
        assert!(late.message.as_deref().unwrap().contains("node-a"));
        assert_eq!(
            at(0, &late, false).phase,
            Phase::Completed,
            "never backwards"
        );
    }

    #[test]
    fn silence_fails_a_capture() {
        let failed = desired(&observed(json!({"duration": "1h"})), after(61), &settings());
        assert_eq!(failed.phase, Phase::Failed);
        assert!(failed
            .message
            .unwrap()
            .contains("no node's capture agent reported"));
    }

    #[test]
    fn a_huge_duration_is_cut_to_the_maximum_window_and_said_so() {
        let huge = observed(json!({"duration": "1000000years"}));
        let s = settings();
        let capturing = desired(&huge, after(5), &s);
        assert_eq!(capturing.phase, Phase::Capturing);
        assert_eq!(
            capturing.message.as_deref(),
            Some("spec.duration makes the window 8766000000h, longer than the maximum of 1h: this capture records for 1h only, until 2025-06-01T03:00:00Z; set duration so the window is at most 1h, e.g. \"10m\"")
        );
        let mut reported = huge.clone();
        reported.status = capturing;
        reported.status.targets = vec![target(TargetState::Completed)];
        let done = desired(&reported, after(3600), &s);
        assert_eq!(
            done.phase,
            Phase::Completed,
            "it ends with the maximum window"
        );
        assert!(done
            .message
            .unwrap()
            .contains("spec.duration makes the window"));
        // Starting in the future, the message says both what it waits for and what is wrong.
        let later = desired(
            &observed(json!({"startTime": "2025-06-01T05:00:00Z", "duration": "1000000years"})),
            after(0),
            &s,
        );
        assert_eq!(later.phase, Phase::Scheduled);
        let message = later.message.unwrap();
        assert!(message.starts_with("waiting for its start time 2025-06-01T05:00:00+00:00; spec.duration makes the window"), "{message}");
    }

    #[test]
    fn an_end_time_past_the_maximum_is_cut_too() {
        let far = desired(
            &observed(json!({"endTime": "2030-01-01T00:00:00Z"})),
            after(5),
            &settings(),
        );
        assert_eq!(far.phase, Phase::Capturing);
        assert!(far
            .message
            .unwrap()
            .starts_with("spec.endTime makes the window"));
    }

    #[test]
    fn a_spec_that_cannot_be_read_fails_with_what_is_wrong() {
        let failed = desired(
            &observed(json!({"duration": "ten minutes"})),
            after(1),
            &settings(),
        );
        assert_eq!(failed.phase, Phase::Failed);
        let message = failed.message.unwrap();
        assert!(
            message.starts_with("the spec cannot be read (duration \"ten minutes\" is not valid"),
            "{message}"
        );
        assert!(
            message.ends_with("fix it and create the capture again"),
            "{message}"
        );
    }

    #[test]
    fn every_capture_of_a_pass_gets_its_status_whatever_the_others_say() {
        let s = settings();
        let objects = [
            object("huge", json!({"duration": "1000000years"}), json!({})),
            object("unreadable", json!({"duration": 600}), json!({})),
            object("normal", json!({"duration": "10m"}), json!({})),
        ];
        let statuses: Vec<CaptureStatus> = objects
            .iter()
            .map(|o| wanted(o, after(5), &s).expect("every capture gets a new status"))
            .collect();
        assert_eq!(statuses[0].phase, Phase::Capturing);
        assert!(statuses[0]
            .message
            .as_deref()
            .unwrap()
            .contains("spec.duration"));
        assert_eq!(statuses[1].phase, Phase::Failed);
        assert_eq!(statuses[2].phase, Phase::Capturing);
        assert_eq!(statuses[2].message, None);
        // Applied, they are left alone until something changes.
        let applied = object(
            "normal",
            json!({"duration": "10m"}),
            serde_json::to_value(&statuses[2]).unwrap(),
        );
        assert_eq!(wanted(&applied, after(6), &s), None);
        let mut deleting = applied.clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        assert_eq!(
            wanted(&deleting, after(700), &s),
            None,
            "a capture being deleted is left alone"
        );
    }
}
