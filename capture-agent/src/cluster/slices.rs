//! This node's part of a capture's status: its targets, in `PacketCaptureSlice` objects of its
//! own (see `capture_spec::slice`), written with server-side apply under the field manager
//! `podcap-agent/NODE` (forced), and nothing else. The capture's own status (phase, times,
//! message, totals) is the API's. Each apply carries all of this node's targets of the capture,
//! split into chunks; a chunk this node no longer needs (fewer targets than before) is deleted.
//! An agent that restarts reads its earlier slices back from its watch (see `agent`).
//!
//! Writes are throttled per capture: counter changes at most once per [`MIN_INTERVAL`] (the
//! bound that keeps a 1,000-node capture at ≤ 6,000 writes a minute); a change of a target's
//! state, file list or error is written at the next pass; nothing is written when nothing
//! changed.

use std::time::{Duration, Instant};

use capture_spec::slice::{
    chunks, node_label_value, slice_name, CAPTURE_LABEL, CAPTURE_UID_LABEL, NODE_LABEL,
};
use capture_spec::{PacketCaptureSlice, SliceSummary, TargetStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

/// The shortest time between two writes of counters for one capture.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// The capture a node's slices belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The apply document of chunk `chunk`: the whole slice object, owned by the capture.
pub fn slice_body(
    owner: &Owner,
    node: &str,
    chunk: u32,
    targets: &[TargetStatus],
) -> serde_json::Value {
    json!({
        "apiVersion": "podcap.io/v1alpha1",
        "kind": "PacketCaptureSlice",
        "metadata": {
            "name": slice_name(&owner.name, &owner.uid, node, chunk),
            "namespace": owner.namespace,
            "labels": {
                CAPTURE_LABEL: owner.name,
                CAPTURE_UID_LABEL: owner.uid,
                NODE_LABEL: node_label_value(node),
            },
            // Garbage collection deletes the slices with their capture.
            "ownerReferences": [{
                "apiVersion": "podcap.io/v1alpha1",
                "kind": "PacketCapture",
                "name": owner.name,
                "uid": owner.uid,
            }],
        },
        "spec": {
            "capture": owner.name,
            "captureUID": owner.uid,
            "node": node,
            "chunk": chunk,
            "summary": SliceSummary::of(targets),
            "targets": targets,
        },
    })
}

/// What one write sent: how many objects, and how many bytes of request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub objects: usize,
    pub bytes: usize,
}

/// Applies this node's targets of `owner` as chunks 0..n, then deletes the slices named in
/// `stale` (chunks from an earlier, longer list). Stops at the first failure.
pub async fn apply(
    api: &Api<PacketCaptureSlice>,
    owner: &Owner,
    node: &str,
    manager: &str,
    targets: &[TargetStatus],
    stale: &[String],
) -> Result<Written, kube::Error> {
    let mut written = Written::default();
    let params = PatchParams::apply(manager).force();
    for (chunk, members) in chunks(targets).iter().enumerate() {
        let chunk = u32::try_from(chunk).unwrap_or(u32::MAX);
        let body = slice_body(owner, node, chunk, members);
        let name = slice_name(&owner.name, &owner.uid, node, chunk);
        written.bytes += serde_json::to_vec(&body).map_or(0, |json| json.len());
        api.patch(&name, &params, &Patch::Apply(&body)).await?;
        written.objects += 1;
    }
    delete(api, stale).await?;
    written.objects += stale.len();
    Ok(written)
}

/// Deletes the slices named; one already gone is fine.
pub async fn delete(api: &Api<PacketCaptureSlice>, names: &[String]) -> Result<(), kube::Error> {
    for name in names {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The names of `node`'s chunks of `owner` that a list of `targets` no longer uses, among the
/// `existing` slices (what the agent's watch shows of this node's slices of the capture).
pub fn stale_chunks<'a>(
    existing: impl IntoIterator<Item = &'a PacketCaptureSlice>,
    targets: &[TargetStatus],
) -> Vec<String> {
    let used = chunks(targets).len();
    existing
        .into_iter()
        .filter(|slice| usize::try_from(slice.spec.chunk).unwrap_or(usize::MAX) >= used)
        .filter_map(|slice| slice.metadata.name.clone())
        .collect()
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
    fn the_body_is_a_whole_slice_owned_by_the_capture() {
        let owner = Owner {
            namespace: "shop".into(),
            name: "cap".into(),
            uid: "uid-1".into(),
        };
        let body = slice_body(&owner, "node-a", 0, &[target(3, TargetState::Capturing, 0)]);
        assert_eq!(body["metadata"]["namespace"], "shop");
        assert_eq!(body["metadata"]["labels"][CAPTURE_UID_LABEL], "uid-1");
        assert_eq!(body["metadata"]["labels"][NODE_LABEL], "node-a");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(body["spec"]["summary"]["packets"], 3);
        assert_eq!(body["spec"]["targets"][0]["node"], "node-a");
        let slice: PacketCaptureSlice = serde_json::from_value(body).unwrap();
        assert_eq!(slice.spec.capture_uid, "uid-1");
        assert_eq!(
            stale_chunks([&slice], &[]),
            [slice.metadata.name.clone().unwrap()]
        );
        assert!(stale_chunks([&slice], &slice.spec.targets).is_empty());
    }
}
