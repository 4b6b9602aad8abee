//! The capture status (`PacketCapture.status`): where a capture is in its life, and per captured
//! pod interface what was recorded, dropped and written.
//!
//! `targets` is a list-type map keyed by `node` + `pod` + `interface`, so under server-side apply
//! each node's agent owns its own entries. Unlike specs, statuses accept unknown fields: they are
//! written by podcap components that may be a version ahead of the reader during an upgrade.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most targets a capture answer (REST) carries in `status.targets`; the rest are counted
/// in `targetsOmitted` and paged through `GET .../captures/{name}/targets`.
pub const INLINE_TARGETS: usize = 100;

/// Where a capture is in its life. The phase only moves forward:
/// `Scheduled` → `Capturing` → one of `Completed`, `Stopped`, `Failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum Phase {
    /// Accepted, waiting for its start time or for an agent to pick it up.
    #[default]
    Scheduled,
    /// At least one target is recording.
    Capturing,
    /// Ended by its window (`endTime`/`duration`) or a limit (`maxPackets`, `maxBytes`).
    Completed,
    /// Ended early by a user (`POST .../stop`); files are kept.
    Stopped,
    /// Could not capture at all: no target could be started, or every target failed.
    Failed,
}

impl Phase {
    /// Every phase, in life order.
    pub const ALL: [Phase; 5] = [
        Phase::Scheduled,
        Phase::Capturing,
        Phase::Completed,
        Phase::Stopped,
        Phase::Failed,
    ];

    /// The name as the API and the CRD spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Scheduled => "Scheduled",
            Phase::Capturing => "Capturing",
            Phase::Completed => "Completed",
            Phase::Stopped => "Stopped",
            Phase::Failed => "Failed",
        }
    }

    /// The phase named `name` exactly as [`Phase::as_str`] spells it.
    pub fn named(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == name)
    }

    /// True once the capture has ended, whichever way: nothing will be recorded any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Completed | Phase::Stopped | Phase::Failed)
    }
}

/// The state of one captured pod interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum TargetState {
    /// Found by the selector; recording has not begun (start time ahead, interface not ready).
    #[default]
    Waiting,
    /// Recording.
    Capturing,
    /// Finished with the capture's window or limits.
    Completed,
    /// Finished because the capture was stopped.
    Stopped,
    /// Could not record on this interface; `error` says why. Other targets carry on.
    Failed,
    /// The pod or its interface went away mid-capture; what was recorded is kept.
    Gone,
}

impl TargetState {
    /// True once this target records no more.
    pub fn is_finished(self) -> bool {
        !matches!(self, TargetState::Waiting | TargetState::Capturing)
    }
}

/// `PacketCapture.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "kube", schemars(transform = crate::crd::schema::without_defaults))]
#[cfg_attr(
    feature = "kube",
    schemars(
        description = "Where the capture is in its life, totals for `kubectl get`, and per captured pod interface what was recorded. Written by podcap."
    )
)]
pub struct CaptureStatus {
    pub phase: Phase,
    /// When the first target started recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the capture ended (completed, stopped or failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// A sentence for people: why the capture failed, or what it is waiting for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Distinct pods in `targets` (filled by `summarize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
    /// Distinct nodes in `targets` (filled by `summarize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    /// Packets written, summed over `targets` (filled by `summarize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    /// Bytes of packet data written, summed over `targets` (filled by `summarize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Kernel drops, summed over `targets` (filled by `summarize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drops: Option<u64>,
    /// One entry per captured pod interface. In a cluster each node's agent writes its entries
    /// into PacketCaptureSlices of its own, and the API shows them here; objects written before
    /// slices existed hold them in this list themselves (a list-type map keyed by node, pod and
    /// interface, each node's agent owning its own entries). A REST answer carries at most
    /// the first 100 here (see `targetsOmitted`); `GET .../targets` pages through all of them.
    #[cfg_attr(
        feature = "kube",
        schemars(extend(
            "x-kubernetes-list-type" = "map",
            "x-kubernetes-list-map-keys" = ["node", "pod", "interface"]
        ))
    )]
    pub targets: Vec<TargetStatus>,
    /// REST answers only: how many targets `targets` leaves out (it carries the first 100 by
    /// node, pod and interface); `GET .../captures/{name}/targets` pages through every one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets_omitted: Option<u64>,
}

impl CaptureStatus {
    /// Packets, bytes and kernel drops summed over every target.
    pub fn totals(&self) -> Counters {
        self.targets
            .iter()
            .fold(Counters::default(), |sum, t| Counters {
                packets: sum.packets.saturating_add(t.packets),
                bytes: sum.bytes.saturating_add(t.bytes),
                drops: sum.drops.saturating_add(t.drops),
            })
    }

    /// Fills `pods`, `nodes`, `packets`, `bytes` and `drops` from `targets`. Those totals exist
    /// because Kubernetes printer columns cannot sum a list; whoever writes the capture-wide
    /// status (phase, message) in a cluster should call this before writing.
    pub fn summarize(&mut self) {
        let targets = std::mem::take(&mut self.targets);
        self.summarize_over(&targets.iter().collect::<Vec<_>>());
        self.targets = targets;
    }

    /// [`CaptureStatus::summarize`] over `targets` (the capture's every target, by reference)
    /// instead of `self.targets`.
    pub fn summarize_over(&mut self, targets: &[&TargetStatus]) {
        let pods: BTreeSet<(&str, &str)> = targets
            .iter()
            .map(|t| (t.namespace.as_str(), t.pod.as_str()))
            .collect();
        let nodes: BTreeSet<&str> = targets.iter().map(|t| t.node.as_str()).collect();
        let count = |n: usize| Some(u32::try_from(n).unwrap_or(u32::MAX));
        (self.pods, self.nodes) = (count(pods.len()), count(nodes.len()));
        let sum = |of: fn(&TargetStatus) -> u64| {
            targets.iter().map(|t| of(t)).fold(0, u64::saturating_add)
        };
        self.packets = Some(sum(|t| t.packets));
        self.bytes = Some(sum(|t| t.bytes));
        self.drops = Some(sum(|t| t.drops));
    }

    /// A copy of everything but the targets (every field named, so a new one cannot be
    /// forgotten here): what a view that shows only some targets starts from.
    pub fn without_targets(&self) -> CaptureStatus {
        CaptureStatus {
            phase: self.phase,
            started_at: self.started_at,
            finished_at: self.finished_at,
            message: self.message.clone(),
            pods: self.pods,
            nodes: self.nodes,
            packets: self.packets,
            bytes: self.bytes,
            drops: self.drops,
            targets: Vec::new(),
            targets_omitted: self.targets_omitted,
        }
    }

    /// The status as an answer shows it: its first [`INLINE_TARGETS`] targets by node, pod and
    /// interface, and `targets_omitted` when there are more. Clones only the targets it shows.
    pub fn inline_view(&self) -> CaptureStatus {
        self.without_targets()
            .showing(&self.targets.iter().collect::<Vec<_>>())
    }

    /// This status (without targets of its own) showing the first [`INLINE_TARGETS`] of
    /// `targets` (the capture's every target, by reference) and counting the rest in
    /// `targets_omitted`.
    pub fn showing(mut self, targets: &[&TargetStatus]) -> CaptureStatus {
        let (first, more) = first_targets(targets, None, INLINE_TARGETS);
        self.targets = first;
        self.targets_omitted = (more > 0).then(|| u64::try_from(more).unwrap_or(u64::MAX));
        self
    }

    /// The target with this key, if the status has one.
    pub fn target(&self, key: &TargetKey) -> Option<&TargetStatus> {
        self.targets.iter().find(|t| t.key() == *key)
    }
}

/// The first `limit` of `targets` by node, pod and interface, after the key `after` when given,
/// cloned; and how many more follow them. Only the targets returned are cloned, so a page of a
/// capture with tens of thousands of targets costs a page.
pub fn first_targets(
    targets: &[&TargetStatus],
    after: Option<&TargetKey>,
    limit: usize,
) -> (Vec<TargetStatus>, usize) {
    let mut rest: Vec<&TargetStatus> = targets
        .iter()
        .copied()
        .filter(|t| after.is_none_or(|after| !t.key_at_most(after)))
        .collect();
    let total = rest.len();
    if limit == 0 {
        return (Vec::new(), total);
    }
    if total > limit {
        rest.select_nth_unstable_by(limit - 1, |a, b| a.cmp_by_key(b));
        rest.truncate(limit);
    }
    rest.sort_unstable_by(|a, b| a.cmp_by_key(b));
    let shown = rest.len();
    (rest.into_iter().cloned().collect(), total - shown)
}

/// Counters summed over targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

/// What identifies a target in the `targets` list-type map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub node: String,
    pub pod: String,
    pub interface: String,
}

/// One captured pod interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
// The list-map keys of `targets` must be required in the CRD schema (serde defaults every field,
// which would otherwise leave them optional).
#[cfg_attr(feature = "kube", schemars(extend("required" = ["node", "pod", "interface"])))]
pub struct TargetStatus {
    /// The node whose agent records this target (and holds its files).
    pub node: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's interface name as the pod sees it (`eth0`).
    pub interface: String,
    pub state: TargetState,
    /// Packets written to files.
    pub packets: u64,
    /// Bytes of packet data written (captured lengths).
    pub bytes: u64,
    /// Packets the kernel dropped because the capture could not keep up.
    pub drops: u64,
    /// The files written for this target, oldest first.
    pub files: Vec<FileStatus>,
    /// Why the target failed or went away, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetStatus {
    /// Orders targets as their [`TargetKey`]s order (node, pod, interface) without building
    /// the keys: sorting tens of thousands of targets must not allocate per comparison.
    pub fn cmp_by_key(&self, other: &TargetStatus) -> std::cmp::Ordering {
        (&self.node, &self.pod, &self.interface).cmp(&(&other.node, &other.pod, &other.interface))
    }

    /// Whether this target's key is at most `key`.
    pub fn key_at_most(&self, key: &TargetKey) -> bool {
        (&self.node, &self.pod, &self.interface) <= (&key.node, &key.pod, &key.interface)
    }

    pub fn key(&self) -> TargetKey {
        TargetKey {
            node: self.node.clone(),
            pod: self.pod.clone(),
            interface: self.interface.clone(),
        }
    }
}

/// One file a target wrote, downloadable at `.../files/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub struct FileStatus {
    /// Stable identifier used in download URLs.
    pub id: String,
    /// File name offered on download.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Packets in the file.
    pub packets: u64,
    /// Timestamp of the file's first packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_packet_at: Option<DateTime<Utc>>,
    /// Timestamp of the file's last packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_packet_at: Option<DateTime<Utc>>,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn phases_are_spelled_as_serde_spells_them() {
        for phase in super::Phase::ALL {
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::json!(phase.as_str())
            );
            assert_eq!(super::Phase::named(phase.as_str()), Some(phase));
        }
        assert_eq!(super::Phase::named("capturing"), None);
    }

    use super::*;

    const FULL: &str = r#"{"phase":"Capturing","startedAt":"2025-06-01T02:00:00Z","message":"capturing 1 pod","targets":[{"node":"node-1","namespace":"shop","pod":"db-0","interface":"eth0","state":"Capturing","packets":10,"bytes":1500,"drops":2,"files":[{"id":"f1","name":"db-0-eth0-1.pcapng","size":2048,"packets":10,"firstPacketAt":"2025-06-01T02:00:01Z","lastPacketAt":"2025-06-01T02:00:09.500Z"}]},{"node":"node-2","namespace":"shop","pod":"db-1","interface":"eth0","state":"Failed","packets":0,"bytes":0,"drops":0,"files":[],"error":"interface eth0 not found"}]}"#;

    #[test]
    fn full_status_round_trips_exactly() {
        let status: CaptureStatus = serde_json::from_str(FULL).unwrap();
        assert_eq!(status.phase, Phase::Capturing);
        assert_eq!(
            status.started_at,
            Some(Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap())
        );
        let file = &status.targets[0].files[0];
        assert_eq!(file.name, "db-0-eth0-1.pcapng");
        assert_eq!(
            file.first_packet_at,
            Some(Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 1).unwrap())
        );
        assert_eq!(status.targets[1].state, TargetState::Failed);
        assert_eq!(serde_json::to_string(&status).unwrap(), FULL);
    }

    #[test]
    fn phases_and_states_are_spelled_as_in_the_design() {
        for (phase, finished) in [
            (Phase::Scheduled, false),
            (Phase::Capturing, false),
            (Phase::Completed, true),
            (Phase::Stopped, true),
            (Phase::Failed, true),
        ] {
            let text = serde_json::to_string(&phase).unwrap();
            assert_eq!(text, format!("\"{phase:?}\""));
            assert_eq!(serde_json::from_str::<Phase>(&text).unwrap(), phase);
            assert_eq!(phase.is_finished(), finished, "{phase:?}");
        }
        assert!(!TargetState::Waiting.is_finished());
        assert!(!TargetState::Capturing.is_finished());
        assert!(TargetState::Gone.is_finished());
        assert_eq!(
            serde_json::to_string(&TargetState::Gone).unwrap(),
            "\"Gone\""
        );
    }

    #[test]
    fn status_tolerates_missing_and_newer_fields() {
        let status: CaptureStatus =
            serde_json::from_str(r#"{"phase":"Completed","futureField":1}"#).unwrap();
        assert_eq!(status.phase, Phase::Completed);
        assert!(status.targets.is_empty());
        assert_eq!(
            serde_json::to_string(&CaptureStatus::default()).unwrap(),
            r#"{"phase":"Scheduled","targets":[]}"#
        );
    }

    #[test]
    fn summarize_fills_the_totals_kubectl_shows() {
        let mut status: CaptureStatus = serde_json::from_str(FULL).unwrap();
        status.targets.push(TargetStatus {
            interface: "net1".into(),
            ..status.targets[0].clone()
        });
        status.summarize();
        assert_eq!(
            (
                status.pods,
                status.nodes,
                status.packets,
                status.bytes,
                status.drops
            ),
            (Some(2), Some(2), Some(20), Some(3000), Some(4))
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["packets"], 20);
        assert_eq!(
            serde_json::from_value::<CaptureStatus>(json).unwrap(),
            status
        );
    }

    #[test]
    fn totals_and_keys() {
        let status: CaptureStatus = serde_json::from_str(FULL).unwrap();
        assert_eq!(
            status.totals(),
            Counters {
                packets: 10,
                bytes: 1500,
                drops: 2
            }
        );
        let key = TargetKey {
            node: "node-2".into(),
            pod: "db-1".into(),
            interface: "eth0".into(),
        };
        assert_eq!(
            status.target(&key).unwrap().error.as_deref(),
            Some("interface eth0 not found")
        );
    }
}
