//! This node's part of a capture's status: its `status.targets` entries, written with
//! server-side apply to the status subresource under the field manager `podcap-agent/NODE`
//! (forced), and nothing else. `status.targets` is a list-map keyed by node + pod + interface,
//! so each node owns exactly its own entries; the API's controller owns phase, startedAt,
//! finishedAt, message and the totals (manager `podcap-api`). An entry this node stops applying
//! is removed by the server, which is why every apply carries all of this node's entries,
//! including those of earlier agent runs (see `reconcile`).
//!
//! Applies are throttled per capture: counter changes at most once per [`MIN_INTERVAL`]; a
//! change of a target's state, file list or error is applied at the next pass.

use std::time::{Duration, Instant};

use capture_spec::{PacketCapture, TargetStatus};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The shortest time between two applies of counters for one capture.
pub const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// The apply document: apiVersion, kind, name, and `status.targets` with this node's entries.
pub fn apply_body(name: &str, targets: &[TargetStatus]) -> serde_json::Value {
    json!({
        "apiVersion": "podcap.io/v1alpha1",
        "kind": "PacketCapture",
        "metadata": {"name": name},
        "status": {"targets": targets},
    })
}

/// Applies this node's entries of capture `name`.
pub async fn apply(
    api: &Api<PacketCapture>,
    name: &str,
    manager: &str,
    targets: &[TargetStatus],
) -> Result<(), kube::Error> {
    let body = apply_body(name, targets);
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(drop)
}

/// What was last applied for one capture, and when.
#[derive(Debug, Default)]
pub struct Throttle {
    applied: Option<(Instant, Vec<TargetStatus>)>,
}

/// Per entry: pod, interface, state, file ids and error.
type Shape<'a> = (&'a str, &'a str, String, Vec<&'a str>, Option<&'a str>);

/// What identifies a "state change": per entry its key, state, files and error.
fn shape(targets: &[TargetStatus]) -> Vec<Shape<'_>> {
    targets
        .iter()
        .map(|t| {
            (
                t.pod.as_str(),
                t.interface.as_str(),
                format!("{:?}", t.state),
                t.files.iter().map(|f| f.id.as_str()).collect(),
                t.error.as_deref(),
            )
        })
        .collect()
}

impl Throttle {
    /// Whether `current` should be applied now.
    pub fn is_due(&self, current: &[TargetStatus], now: Instant) -> bool {
        match &self.applied {
            None => true,
            Some((_, last)) if last == current => false,
            Some((_, last)) if shape(last) != shape(current) => true,
            Some((at, _)) => now.duration_since(*at) >= MIN_INTERVAL,
        }
    }

    /// Records a successful apply.
    pub fn applied(&mut self, targets: Vec<TargetStatus>, at: Instant) {
        self.applied = Some((at, targets));
    }
}

#[cfg(test)]
mod tests {
    use capture_spec::{FileStatus, TargetState};

    use super::*;

    fn target(packets: u64, state: TargetState, files: usize) -> TargetStatus {
        TargetStatus {
            node: "node-a".into(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            interface: "eth0".into(),
            state,
            packets,
            files: (0..files)
                .map(|i| FileStatus {
                    id: format!("f{i}"),
                    ..FileStatus::default()
                })
                .collect(),
            ..TargetStatus::default()
        }
    }

    #[test]
    fn counters_wait_and_state_changes_do_not() {
        let start = Instant::now();
        let mut throttle = Throttle::default();
        let first = vec![target(1, TargetState::Capturing, 1)];
        assert!(throttle.is_due(&first, start));
        throttle.applied(first.clone(), start);
        assert!(!throttle.is_due(&first, start + Duration::from_secs(60)));
        let more = vec![target(5, TargetState::Capturing, 1)];
        assert!(!throttle.is_due(&more, start + Duration::from_millis(500)));
        assert!(throttle.is_due(&more, start + MIN_INTERVAL));
        let rotated = vec![target(5, TargetState::Capturing, 2)];
        assert!(throttle.is_due(&rotated, start + Duration::from_millis(10)));
        let done = vec![target(1, TargetState::Completed, 1)];
        assert!(throttle.is_due(&done, start + Duration::from_millis(10)));
    }

    #[test]
    fn the_body_carries_only_targets() {
        let body = apply_body("cap", &[target(3, TargetState::Capturing, 0)]);
        assert_eq!(body["metadata"], json!({"name": "cap"}));
        let status = body["status"].as_object().unwrap();
        assert_eq!(status.keys().collect::<Vec<_>>(), ["targets"]);
        assert_eq!(status["targets"][0]["node"], "node-a");
        assert_eq!(status["targets"][0]["packets"], 3);
    }
}
