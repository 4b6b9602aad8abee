//! Per-node capture detail (`PacketCaptureSlice`, feature `kube`): one node's targets of one
//! capture, in objects of their own beside the capture, as EndpointSlices are beside a Service.
//!
//! Why: when every node's agent wrote its targets into the capture's own `status.targets`, one
//! capture across ~130 nodes of 10 pods outgrew etcd's 1.5 MiB request limit, and every counter
//! update rewrote a megabyte. Now the capture's status keeps phase, times, message and totals
//! (aggregated by capture-api), and each node's agent writes only its own slices:
//!
//! - one object per capture, node and chunk, named [`slice_name`], in the capture's namespace,
//!   labelled [`CAPTURE_LABEL`], [`CAPTURE_UID_LABEL`] and [`NODE_LABEL`], and owned by the
//!   capture (so garbage collection removes it with the capture);
//! - at most [`MAX_TARGETS_PER_SLICE`] targets and about [`SLICE_BUDGET_BYTES`] of JSON per
//!   chunk ([`chunks`]), so an object stays far below etcd's limit whatever a node captures;
//! - `spec.summary` repeats the chunk's counts and counters, because printer columns cannot sum
//!   a list: `kubectl get pcapslice -l podcap.io/capture=web` reads per node.
//!
//! The slice has a spec and no status: its one writer is the node's agent, which server-side
//! applies the whole object under its field manager; `targets` is an atomic list, so the
//! object's managedFields stay a few lines whatever it holds.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::status::{TargetState, TargetStatus};

/// Label: the capture's name.
pub const CAPTURE_LABEL: &str = "podcap.io/capture";
/// Label: the capture's uid (what the API selects slices by: a name is reused, a uid never).
pub const CAPTURE_UID_LABEL: &str = "podcap.io/capture-uid";
/// Label: the node whose agent writes the slice (a hash when the node name is longer than a
/// label value may be, see [`node_label_value`]).
pub const NODE_LABEL: &str = "podcap.io/node";

/// The most targets one slice holds (EndpointSlice's default is 100 endpoints, for the same
/// reason: a change rewrites one chunk, not a node's whole list).
pub const MAX_TARGETS_PER_SLICE: usize = 100;
/// A chunk is closed once its targets' JSON passes this size, so that with the object's metadata
/// a slice stays well below the 256 KiB podcap allows itself per object (etcd refuses 1.5 MiB).
pub const SLICE_BUDGET_BYTES: usize = 128 * 1024;

/// How many characters of the capture's name a slice name keeps.
const NAME_PREFIX: usize = 40;

/// `PacketCaptureSlice.spec`: one node's targets of one capture (chunk `chunk` of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(kube::CustomResource, schemars::JsonSchema)]
#[kube(
    group = "podcap.io",
    version = "v1alpha1",
    kind = "PacketCaptureSlice",
    plural = "packetcaptureslices",
    singular = "packetcaptureslice",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    shortname = "pcapslice",
    shortname = "pcapslices",
    category = "podcap",
    doc = "One node's part of a PacketCapture: per captured pod interface its state, counters and files. Written by the node's capture agent; owned by the capture.",
    printcolumn = r#"{"name": "Capture", "type": "string", "jsonPath": ".spec.capture", "description": "The PacketCapture this slice belongs to"}"#,
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".spec.node", "description": "The node whose agent captures these targets"}"#,
    printcolumn = r#"{"name": "Targets", "type": "integer", "jsonPath": ".spec.summary.targets", "description": "Pod interfaces in this slice"}"#,
    printcolumn = r#"{"name": "Capturing", "type": "integer", "jsonPath": ".spec.summary.capturing", "description": "Of them, recording now"}"#,
    printcolumn = r#"{"name": "Failed", "type": "integer", "jsonPath": ".spec.summary.failed", "description": "Of them, failed", "priority": 1}"#,
    printcolumn = r#"{"name": "Packets", "type": "integer", "jsonPath": ".spec.summary.packets", "description": "Packets written"}"#,
    printcolumn = r#"{"name": "Drops", "type": "integer", "jsonPath": ".spec.summary.drops", "description": "Packets the kernel dropped"}"#,
    printcolumn = r#"{"name": "Chunk", "type": "integer", "jsonPath": ".spec.chunk", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[schemars(
    description = "One node's targets of one PacketCapture (chunk `chunk` of them), as its agent reports them."
)]
// The agent always writes every field: defaults in the schema would only bloat it.
#[schemars(transform = crate::crd::schema::without_defaults)]
pub struct SliceSpec {
    /// The capture's name.
    pub capture: String,
    /// The capture's uid: a slice left by an earlier capture of the same name is not read.
    #[serde(rename = "captureUID")]
    pub capture_uid: String,
    /// The node whose agent records these targets and holds their files.
    pub node: String,
    /// Which of the node's chunks this is, from 0.
    pub chunk: u32,
    /// Counts and counters of `targets`, for printer columns.
    pub summary: SliceSummary,
    /// The targets, as in `PacketCapture.status.targets` before slices existed.
    pub targets: Vec<TargetStatus>,
}

/// What `kubectl get pcapslice` shows of a chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(schemars::JsonSchema)]
pub struct SliceSummary {
    pub targets: u32,
    pub capturing: u32,
    pub failed: u32,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

impl SliceSummary {
    pub fn of(targets: &[TargetStatus]) -> SliceSummary {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        SliceSummary {
            targets: count(targets.len()),
            capturing: count(
                targets
                    .iter()
                    .filter(|t| t.state == TargetState::Capturing)
                    .count(),
            ),
            failed: count(
                targets
                    .iter()
                    .filter(|t| t.state == TargetState::Failed)
                    .count(),
            ),
            packets: targets
                .iter()
                .map(|t| t.packets)
                .fold(0, u64::saturating_add),
            bytes: targets.iter().map(|t| t.bytes).fold(0, u64::saturating_add),
            drops: targets.iter().map(|t| t.drops).fold(0, u64::saturating_add),
        }
    }
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..5])
}

/// The name of chunk `chunk` of `node`'s slices of capture `capture` (uid `uid`):
/// `{capture, at most 40 characters}-{10 hex digits of sha256(uid/node)}-{chunk}`. Always a
/// valid object name: the capture's name is a DNS label, and what follows is hex and digits.
pub fn slice_name(capture: &str, uid: &str, node: &str, chunk: u32) -> String {
    let prefix: String = capture.chars().take(NAME_PREFIX).collect();
    let prefix = prefix.trim_end_matches('-');
    format!("{prefix}-{}-{chunk}", short_hash(&format!("{uid}/{node}")))
}

/// The value of [`NODE_LABEL`] for `node`: the name itself when it fits in a label value (63
/// characters), else `h-` and a hash of it. Node names are DNS subdomains, up to 253 characters.
pub fn node_label_value(node: &str) -> String {
    if node.len() <= 63 {
        node.to_string()
    } else {
        format!("h-{}", hex::encode(&Sha256::digest(node.as_bytes())[..16]))
    }
}

/// Splits one node's targets (sorted by pod and interface, so a chunk keeps its members while
/// counters change) into chunks of at most [`MAX_TARGETS_PER_SLICE`] targets and about
/// [`SLICE_BUDGET_BYTES`] of JSON each. No targets make no chunk.
pub fn chunks(targets: &[TargetStatus]) -> Vec<Vec<TargetStatus>> {
    let mut sorted: Vec<&TargetStatus> = targets.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.interface).cmp(&(&b.namespace, &b.pod, &b.interface))
    });
    let mut chunks = Vec::new();
    let mut current: Vec<TargetStatus> = Vec::new();
    let mut size = 0;
    for target in sorted {
        let bytes = serde_json::to_vec(target).map_or(0, |json| json.len());
        if !current.is_empty()
            && (current.len() >= MAX_TARGETS_PER_SLICE || size + bytes > SLICE_BUDGET_BYTES)
        {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += bytes;
        current.push(target.clone());
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;
    use crate::status::FileStatus;

    fn target(pod: usize, files: usize) -> TargetStatus {
        TargetStatus {
            node: "node-a".into(),
            namespace: "shop".into(),
            pod: format!("web-{pod:05}"),
            interface: "eth0".into(),
            state: TargetState::Capturing,
            packets: 7,
            bytes: 700,
            drops: 1,
            files: (0..files)
                .map(|i| FileStatus {
                    id: format!("{pod}-{i}-0123456789abcdef0123456789abcdef"),
                    name: format!("web-{pod:05}-eth0-{i}.pcapng"),
                    size: 1 << 20,
                    packets: 1000,
                    ..FileStatus::default()
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn names_are_valid_stable_and_distinct_per_node_and_chunk() {
        let long = "a".repeat(63);
        let name = slice_name(&long, "uid-1", "node-a", 3);
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with(&"a".repeat(40)));
        assert!(name.ends_with("-3"));
        assert_eq!(name, slice_name(&long, "uid-1", "node-a", 3));
        assert_ne!(name, slice_name(&long, "uid-1", "node-b", 3));
        assert_ne!(name, slice_name(&long, "uid-2", "node-a", 3));
        // A cut that ends in '-' would make "--": the name stays a DNS label anyway.
        let dashed = format!("{}-b", "a".repeat(39));
        assert!(!slice_name(&dashed, "u", "n", 0).contains("--"));
        assert_eq!(node_label_value("node-a"), "node-a");
        let long_node = format!("{}.example.internal", "n".repeat(60));
        assert_eq!(node_label_value(&long_node).len(), 34);
    }

    #[test]
    fn chunks_keep_to_count_and_size_and_lose_nothing() {
        let many: Vec<TargetStatus> = (0..250).rev().map(|i| target(i, 1)).collect();
        let split = chunks(&many);
        assert_eq!(
            split.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(split[0][0].pod, "web-00000");
        let heavy: Vec<TargetStatus> = (0..100).map(|i| target(i, 40)).collect();
        for chunk in chunks(&heavy) {
            let bytes = serde_json::to_vec(&chunk).unwrap().len();
            assert!(bytes <= SLICE_BUDGET_BYTES + 16 * 1024, "{bytes}");
        }
        assert_eq!(chunks(&heavy).iter().map(Vec::len).sum::<usize>(), 100);
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn the_summary_counts_what_kubectl_shows() {
        let mut targets = vec![target(0, 1), target(1, 1)];
        targets[1].state = TargetState::Failed;
        let summary = SliceSummary::of(&targets);
        assert_eq!(
            (summary.targets, summary.capturing, summary.failed),
            (2, 1, 1)
        );
        assert_eq!((summary.packets, summary.drops), (14, 2));
    }

    #[test]
    fn the_crd_has_readable_columns_and_an_atomic_target_list() {
        let crd = PacketCaptureSlice::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("packetcaptureslices.podcap.io")
        );
        let version = &crd.spec.versions[0];
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Capture",
                "Node",
                "Targets",
                "Capturing",
                "Packets",
                "Drops",
                "Age"
            ]
        );
        let schema = serde_json::to_value(&version.schema).unwrap();
        let targets = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["targets"];
        assert_eq!(targets["type"], "array");
        assert!(targets.get("x-kubernetes-list-type").is_none());
    }
}
