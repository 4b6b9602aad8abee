//! The capture-status controller of Kubernetes mode. The node agents own `status.targets` (each
//! its own entries, field manager `podcap-agent/NODE`); the API owns everything else in the
//! status — `phase`, `startedAt`, `finishedAt`, `message` and the totals of `summarize` — under
//! field manager `podcap-api`, and never writes a target. Every second it looks at every
//! capture and moves its phase by the window rule the agents share (start = `spec.startTime` or
//! the creation time; end = `spec.endTime`, else start + `spec.duration`, else start + the
//! maximum window):
//!
//! - `Scheduled` before the window opens;
//! - `Capturing` while it is open;
//! - after it closes, once every target is finished (or [`ClusterSettings::finish_grace`] has
//!   passed): `Stopped` when a user stopped it, else `Completed`;
//! - `Failed` with a message when no node has reported anything
//!   [`ClusterSettings::report_timeout`] after the start, or every target failed.
//!
//! The phase only moves forward; totals keep following the agents' reports after the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use capture_spec::{CaptureSpec, CaptureStatus, Phase, TargetState};
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

/// The capture's window by the shared rule.
pub fn window(
    spec: &CaptureSpec,
    created: DateTime<Utc>,
    max_window: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = spec.start_time.unwrap_or(created);
    let length = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let end = spec
        .end_time
        .or_else(|| spec.duration.map(|d| start + length(d.as_std())))
        .unwrap_or_else(|| start + length(max_window));
    (start, end)
}

/// The status the API wants for a capture at `now`: `current` with phase, times, message and
/// totals brought up to date.
pub fn desired(
    spec: &CaptureSpec,
    created: DateTime<Utc>,
    stopped: bool,
    current: &CaptureStatus,
    now: DateTime<Utc>,
    settings: &ClusterSettings,
) -> CaptureStatus {
    let mut status = current.clone();
    status.summarize();
    if status.phase.is_finished() {
        return status;
    }
    let (start, end) = window(spec, created, settings.max_window);
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
    let (phase, message) = if now < start {
        (
            Phase::Scheduled,
            Some(format!("waiting for its start time {}", start.to_rfc3339())),
        )
    } else if now < end {
        if silent && since_start >= settings.report_timeout {
            (Phase::Failed, Some(no_report))
        } else if all_failed {
            (Phase::Failed, Some(failed_targets()))
        } else {
            (Phase::Capturing, None)
        }
    } else {
        let grace = chrono::Duration::from_std(settings.finish_grace).unwrap_or_default();
        let all_finished = !silent && status.targets.iter().all(|t| t.state.is_finished());
        if !(all_finished || now >= end + grace) {
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
                if stopped {
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
    status.message = message;
    status
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
        if let Err(error) = reconcile(cluster, object, now).await {
            tracing::warn!(
                namespace = object.metadata.namespace.as_deref().unwrap_or_default(),
                name = object.metadata.name.as_deref().unwrap_or_default(),
                %error,
                "updating a capture's status"
            );
        }
    }
    Ok(uids)
}

async fn reconcile(
    cluster: &Cluster,
    object: &DynamicObject,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let current_value = object.data.get("status").cloned().unwrap_or_default();
    let current: CaptureStatus = serde_json::from_value(current_value.clone()).unwrap_or_default();
    let created = object
        .metadata
        .creation_timestamp
        .as_ref()
        .map(chrono_time)
        .unwrap_or(now);
    let stopped = object
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STOPPED_ANNOTATION));
    let wanted = match serde_json::from_value::<CaptureSpec>(
        object.data.get("spec").cloned().unwrap_or_default(),
    ) {
        Ok(spec) => desired(&spec, created, stopped, &current, now, &cluster.settings),
        Err(error) => {
            let mut failed = current.clone();
            if !failed.phase.is_finished() {
                failed.phase = Phase::Failed;
                failed.finished_at = Some(now);
                failed.message = Some(format!(
                    "the spec cannot be read ({error}): fix it and create the capture again"
                ));
            }
            failed
        }
    };
    let wanted_value = serde_json::to_value(&wanted)?;
    if api_owned_status(&wanted_value) == api_owned_status(&current_value) {
        return Ok(());
    }
    if wanted.phase != current.phase {
        tracing::info!(namespace, name, from = ?current.phase, to = ?wanted.phase, "capture phase");
    }
    cluster
        .store
        .apply_capture_status(&namespace, &name, &wanted)
        .await
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

    use super::*;

    fn settings() -> ClusterSettings {
        ClusterSettings {
            shares_namespace: "podcap-system".into(),
            max_window: Duration::from_secs(3600),
            report_timeout: Duration::from_secs(60),
            finish_grace: Duration::from_secs(30),
        }
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
        let t0 = Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap();
        let spec: CaptureSpec = serde_json::from_value(serde_json::json!({
            "startTime": "2025-06-01T02:00:10Z", "duration": "10s"
        }))
        .unwrap();
        let s = settings();
        let at = |secs: i64, status: &CaptureStatus, stopped: bool| {
            desired(
                &spec,
                t0,
                stopped,
                status,
                t0 + chrono::Duration::seconds(secs),
                &s,
            )
        };
        let scheduled = at(0, &CaptureStatus::default(), false);
        assert_eq!(scheduled.phase, Phase::Scheduled);
        let capturing = at(12, &scheduled, false);
        assert_eq!(capturing.phase, Phase::Capturing);
        assert!(capturing.started_at.is_some());
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
        let t0 = Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap();
        let spec: CaptureSpec =
            serde_json::from_value(serde_json::json!({"duration": "1h"})).unwrap();
        let failed = desired(
            &spec,
            t0,
            false,
            &CaptureStatus::default(),
            t0 + chrono::Duration::seconds(61),
            &settings(),
        );
        assert_eq!(failed.phase, Phase::Failed);
        assert!(failed
            .message
            .unwrap()
            .contains("no node's capture agent reported"));
    }
}
