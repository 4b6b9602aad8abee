//! The capture-status controller of Kubernetes mode. The node agents own the targets (each node
//! its PacketCaptureSlices, see [`super::slices`]); the API owns the capture's status — `phase`,
//! `startedAt`, `finishedAt`, `message` and the totals of `summarize` over every node's targets —
//! under field manager `podcap-api`, and never writes a target. Every second it looks at every
//! capture, with its targets from the slice mirror (one walk over it per pass), and moves its
//! phase by the window rule the agents share ([`capture_spec::CaptureWindow::of_stored`]):
//!
//! - `Scheduled` before the window opens;
//! - `Capturing` while it is open;
//! - after it closes, once every target is finished (or [`ClusterSettings::finish_grace`] has
//!   passed): `Stopped` when a user stopped it, else `Completed`;
//! - `Failed` with a message when no node has reported anything
//!   [`ClusterSettings::report_timeout`] after the start, every target failed, or the spec
//!   cannot be read.
//!
//! The agents report nothing for a capture that has no target on their node, so only the API can
//! tell a capture that selects no pod from agents that are not running. For a capture no node has
//! reported on yet (and only for those, so a normal capture costs nothing more), each pass asks
//! the API server what its selectors match now ([`look_up`], a [`Selection`]): while it selects
//! no Running pod, or none on a node its `nodeSelector` matches, it stays `Capturing` with a
//! message saying so and what to change, and is not failed for the silence (the agents have
//! nothing to report); the report timeout counts from the last pass that saw it select nothing.
//! If its window closes that way, it is `Failed` with that reason.
//!
//! A PacketCapture applied with kubectl never passed the API's validation (the CRD only checks
//! the shape), so its window may be longer than the maximum, up to `duration: "1000000years"`:
//! the window is cut to the maximum, as the agents cut it, and the message says so and what to
//! change. One object can never stop the others from being served: the decision ([`desired`]) is
//! a pure function of what was read ([`Observed`]), and a panic in it, which would be a bug,
//! fails that one capture rather than the controller.
//!
//! The phase only moves forward; totals keep following the agents' reports after the end. A
//! change of phase, times or message is written at once; a change of totals alone at most once
//! per [`TOTALS_INTERVAL`] per capture, so a capture across many nodes costs the API server one
//! small write per capture every few seconds, not one per node report.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use capture_spec::{
    CaptureSpec, CaptureStatus, CaptureWindow, LabelSelector, Phase, StoredWindow, TargetState,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams};

use super::pods;
use super::slices::merged;
use super::store::api_owned_status;
use super::{chrono_time, store_error, Cluster, ClusterSettings, STOPPED_ANNOTATION};
use crate::store::StoreError;

/// How often every capture is looked at.
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// Share links of deleted captures are looked for once a minute.
const PRUNE_EVERY: u64 = 60;
/// The shortest time between two status writes of a capture that change only its totals.
pub const TOTALS_INTERVAL: Duration = Duration::from_secs(10);
/// The totals in a capture's status, which [`TOTALS_INTERVAL`] throttles.
const TOTALS: [&str; 5] = ["pods", "nodes", "packets", "bytes", "drops"];

/// What the API owns of `status` without the totals: what is written at once when it changes.
fn without_totals(status: &serde_json::Value) -> serde_json::Value {
    let mut owned = api_owned_status(status);
    if let Some(map) = owned.as_object_mut() {
        for key in TOTALS {
            map.remove(key);
        }
    }
    owned
}

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

/// What a capture's selectors match at one moment: the Running pods (not being deleted) of its
/// namespace that its `podSelector` matches, and how many of them are on a node its
/// `nodeSelector` matches (all of them without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub pods: usize,
    pub on_selected_nodes: usize,
}

impl Selection {
    /// Counts from what the API server listed: `pods` of the capture's namespace and `nodes`
    /// (filtered by the selectors server-side or not: both are applied again here, so the
    /// result does not depend on the listing). The agents' own rules decide:
    /// [`LabelSelector::matches`] and [`CaptureSpec::selects_node`].
    pub fn of(spec: &CaptureSpec, pods: &[Pod], nodes: &[Node]) -> Selection {
        let no_labels = BTreeMap::new();
        let selected: Vec<&Pod> = pods
            .iter()
            .filter(|pod| pods::is_running(pod) && pod.metadata.deletion_timestamp.is_none())
            .filter(|pod| {
                spec.pod_selector
                    .matches(pod.metadata.labels.as_ref().unwrap_or(&no_labels))
            })
            .collect();
        let selected_nodes: BTreeSet<&str> = nodes
            .iter()
            .filter(|node| spec.selects_node(node.metadata.labels.as_ref().unwrap_or(&no_labels)))
            .filter_map(|node| node.metadata.name.as_deref())
            .collect();
        let on_selected_nodes = if spec.node_selector.is_none() {
            selected.len()
        } else {
            selected
                .iter()
                .filter(|pod| {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|node| selected_nodes.contains(node))
                })
                .count()
        };
        Selection {
            pods: selected.len(),
            on_selected_nodes,
        }
    }

    /// Why a capture with this selection captures nothing (and what to change), or None when
    /// it selects a pod on a selected node.
    fn reason(&self, spec: &CaptureSpec, namespace: &str) -> Option<Unselected> {
        let selector = if spec.pod_selector.is_empty() {
            "{} (every pod)".to_string()
        } else {
            spec.pod_selector.to_string()
        };
        if self.pods == 0 {
            Some(Unselected {
                what: format!(
                    "podSelector {selector} selects no Running pod in namespace {namespace}"
                ),
                fix: format!(
                    "check it against the pods' labels (kubectl -n {namespace} get pods --show-labels)"
                ),
            })
        } else if self.on_selected_nodes == 0 {
            let nodes = spec
                .node_selector
                .as_ref()
                .map(|labels| LabelSelector::from_labels(labels.clone()).to_string())
                .unwrap_or_default();
            let pods = if self.pods == 1 { "pod" } else { "pods" };
            Some(Unselected {
                what: format!(
                    "podSelector {selector} selects {} Running {pods} in {namespace}, but none is on a node nodeSelector {nodes} matches",
                    self.pods
                ),
                fix: "change nodeSelector, or compare it with the nodes' labels (kubectl get nodes --show-labels)".into(),
            })
        } else {
            None
        }
    }
}

/// Why a capture captures nothing, and what to change.
struct Unselected {
    what: String,
    fix: String,
}

/// What `spec`'s selectors match now in `namespace`, asked of the API server: the pods listed
/// with the podSelector (as `GET .../pods?selector=` lists them) and, when there is a
/// nodeSelector and a selected pod, the nodes listed with it.
pub async fn look_up(
    cluster: &Cluster,
    namespace: &str,
    spec: &CaptureSpec,
) -> Result<Selection, kube::Error> {
    let listed = pods::listed(cluster, namespace, &spec.pod_selector).await?;
    let nodes = match &spec.node_selector {
        Some(labels) if Selection::of(spec, &listed, &[]).pods > 0 => {
            let selector = LabelSelector::from_labels(labels.clone()).to_string();
            let mut params = ListParams::default();
            if !selector.is_empty() {
                params = params.labels(&selector);
            }
            Api::<Node>::all(cluster.client.clone())
                .list(&params)
                .await?
                .items
        }
        _ => Vec::new(),
    };
    Ok(Selection::of(spec, &listed, &nodes))
}

/// What the controller reads of one PacketCapture: everything [`desired`] decides from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// `metadata.namespace`, for messages.
    pub namespace: String,
    /// The spec, or why it cannot be read.
    pub spec: Result<CaptureSpec, String>,
    /// The status as stored (the default when there is none, or it cannot be read).
    pub status: CaptureStatus,
    /// `metadata.creationTimestamp`, the start of a capture without `startTime`.
    pub created: DateTime<Utc>,
    /// A user stopped it (the `podcap.io/stopped-at` annotation).
    pub stopped: bool,
    /// What its selectors match now; None when not looked up (see [`Observed::wants_selection`])
    /// or the look-up failed.
    pub selection: Option<Selection>,
    /// The last pass that saw it select no pod on a selected node: the report timeout counts
    /// from there, since the agents had nothing to report before.
    pub unselected_at: Option<DateTime<Utc>>,
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
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
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
            selection: None,
            unselected_at: None,
        }
    }

    /// Whether [`desired`] needs to know what the selectors match: no node has reported on the
    /// capture yet, it is not finished, and its window has opened (it may have closed).
    pub fn wants_selection(&self, now: DateTime<Utc>, settings: &ClusterSettings) -> bool {
        let Ok(spec) = &self.spec else {
            return false;
        };
        self.status.targets.is_empty()
            && !self.status.phase.is_finished()
            && !CaptureWindow::of_stored(spec, self.created, settings.max_window)
                .window
                .is_ahead(now)
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
    let silent = status.targets.is_empty();
    // Selecting nothing is why a silent capture is silent; it has stopped being so once a node
    // reports.
    let unselected = observed
        .selection
        .filter(|_| silent)
        .and_then(|selection| selection.reason(spec, &observed.namespace));
    // The agents had nothing to report while the capture selected nothing.
    let waited_from = observed
        .unselected_at
        .map_or(start, |at| at.max(start))
        .min(now);
    let waited = (now - waited_from).to_std().unwrap_or_default();
    let all_failed = !silent
        && status
            .targets
            .iter()
            .all(|t| t.state == TargetState::Failed);
    let no_report = format!(
        "no node's capture agent reported on this capture within {} of {}: check that its podSelector matches Running pods (GET /api/v1/namespaces/NS/pods?selector=...) and that capture-agent runs on their nodes (kubectl -n podcap-system get pods -o wide)",
        human(settings.report_timeout),
        if waited_from > start {
            "its pods being selected"
        } else {
            "its start"
        }
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
        if let Some(Unselected { what, fix }) = unselected {
            // Not failed at the report timeout: the agents are not at fault, and a pod that
            // starts later in the window is still captured.
            (
                Phase::Capturing,
                Some(format!(
                    "{what} yet; pods that start before {} are captured; {fix}",
                    end.to_rfc3339()
                )),
            )
        } else if silent && waited >= settings.report_timeout {
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
        } else if let Some(Unselected { what, fix }) = unselected {
            (
                Phase::Failed,
                Some(format!(
                    "selected no pod during its window: {what}; {fix}, and create the capture again"
                )),
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

/// The status to apply to `object` (read as `observed`) at `now`, or None when what the API
/// owns is already so (or the object is being deleted). A panic while deciding, which would be a
/// podcap bug, fails this capture with a message instead of ending the controller for every
/// capture.
pub fn wanted(
    object: &DynamicObject,
    observed: &Observed,
    now: DateTime<Utc>,
    settings: &ClusterSettings,
) -> Option<CaptureStatus> {
    if object.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let wanted = catch_unwind(AssertUnwindSafe(|| desired(observed, now, settings)))
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
    // Targets are never the API's to write: compared without them (a large capture has tens of
    // thousands, and this runs every second).
    let changed = serde_json::to_value(wanted.without_targets())
        .is_ok_and(|value| api_owned_status(&value) != api_owned_status(&current));
    changed.then_some(wanted)
}

/// What the controller remembers between passes, by capture uid.
#[derive(Debug, Default)]
pub struct Memory {
    /// Captures whose selection look-up failure has been logged at warn (later ones go to
    /// debug, so an apiserver hiccup does not log a line per capture per second).
    warned: BTreeSet<String>,
    /// The last pass that saw each capture select no pod on a selected node
    /// ([`Observed::unselected_at`]).
    unselected_at: BTreeMap<String, DateTime<Utc>>,
    /// When each capture's status was last written.
    written: BTreeMap<String, std::time::Instant>,
}

impl Memory {
    /// Fills in `observed.selection` (when it is wanted) and `observed.unselected_at`.
    async fn observe(
        &mut self,
        cluster: &Cluster,
        uid: &str,
        name: &str,
        observed: &mut Observed,
        now: DateTime<Utc>,
    ) {
        // The window rule is pure but, like `desired`, must not end the controller if it panics.
        let wants = catch_unwind(AssertUnwindSafe(|| {
            observed.wants_selection(now, &cluster.settings)
        }))
        .unwrap_or(false);
        if wants {
            if let Ok(spec) = &observed.spec {
                let namespace = observed.namespace.as_str();
                match look_up(cluster, namespace, spec).await {
                    Ok(selection) => {
                        if selection.on_selected_nodes == 0 {
                            self.unselected_at.insert(uid.to_string(), now);
                        }
                        observed.selection = Some(selection);
                    }
                    // Not knowing what it selects leaves the capture to the report timeout.
                    Err(error) if self.warned.insert(uid.to_string()) => tracing::warn!(
                        namespace, name, %error, "looking up the pods a silent capture selects"
                    ),
                    Err(error) => tracing::debug!(
                        namespace, name, %error, "looking up the pods a silent capture selects"
                    ),
                }
            }
        } else {
            // Once a node reports, or the capture is finished, the selection no longer matters.
            self.unselected_at.remove(uid);
        }
        observed.unselected_at = self.unselected_at.get(uid).copied();
    }

    /// Forgets the captures that are gone.
    fn keep(&mut self, uids: &BTreeSet<String>) {
        self.warned.retain(|uid| uids.contains(uid));
        self.unselected_at.retain(|uid, _| uids.contains(uid));
        self.written.retain(|uid, _| uids.contains(uid));
    }

    /// Whether `wanted` is to be written now over `current` (the stored status): at once when
    /// more than the totals changed, else once [`TOTALS_INTERVAL`] has passed since the last
    /// write.
    fn is_due(
        &self,
        uid: &str,
        current: &serde_json::Value,
        wanted: &CaptureStatus,
        now: std::time::Instant,
    ) -> bool {
        let urgent = serde_json::to_value(wanted.without_targets()).map_or(true, |value| {
            without_totals(&value) != without_totals(current)
        });
        urgent
            || self
                .written
                .get(uid)
                .is_none_or(|at| now.duration_since(*at) >= TOTALS_INTERVAL)
    }
}

/// One pass over every capture; the uids of all captures.
pub async fn pass(cluster: &Cluster, memory: &mut Memory) -> Result<BTreeSet<String>, StoreError> {
    // Without every node's slices a capture would look silent, and be failed for it.
    cluster.store.slices.ready().await?;
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
    memory.keep(&uids);
    let mut slices = cluster.store.slices.by_capture();
    for object in &objects.items {
        if object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let uid = object.metadata.uid.as_deref().unwrap_or_default();
        let mut observed = Observed::of(object, now);
        let ours = slices.remove(uid).unwrap_or_default();
        observed.status.targets = merged(&observed.status.targets, &ours);
        memory.observe(cluster, uid, name, &mut observed, now).await;
        let Some(wanted) = wanted(object, &observed, now, &cluster.settings) else {
            continue;
        };
        let current = object.data.get("status").cloned().unwrap_or_default();
        if !memory.is_due(uid, &current, &wanted, std::time::Instant::now()) {
            continue;
        }
        let before = observed.status.phase;
        if wanted.phase != before {
            tracing::info!(namespace, name, from = ?before, to = ?wanted.phase, "capture phase");
        }
        if let Err(error) = cluster
            .store
            .apply_capture_status(namespace, name, &wanted)
            .await
        {
            tracing::warn!(namespace, name, %error, "updating a capture's status");
        } else {
            memory
                .written
                .insert(uid.to_string(), std::time::Instant::now());
        }
    }
    Ok(uids)
}

/// Passes forever; every [`PRUNE_EVERY`] passes, also deletes the share links of captures
/// that are gone.
pub async fn run_forever(cluster: Arc<Cluster>) {
    let mut passes = 0u64;
    let mut memory = Memory::default();
    loop {
        match pass(&cluster, &mut memory).await {
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

    /// [`wanted`] for `object` as the controller reads it, with no selection looked up.
    fn wanted_at(
        object: &DynamicObject,
        now: DateTime<Utc>,
        settings: &ClusterSettings,
    ) -> Option<CaptureStatus> {
        wanted(object, &Observed::of(object, now), now, settings)
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
            .map(|o| wanted_at(o, after(5), &s).expect("every capture gets a new status"))
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
        assert_eq!(wanted_at(&applied, after(6), &s), None);
        let mut deleting = applied.clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        assert_eq!(
            wanted_at(&deleting, after(700), &s),
            None,
            "a capture being deleted is left alone"
        );
    }

    /// A silent capture of `spec` that selects `pods` Running pods, `on_selected_nodes` of them
    /// on selected nodes.
    fn selecting(spec: Value, pods: usize, on_selected_nodes: usize) -> Observed {
        let mut seen = observed(spec);
        seen.selection = Some(Selection {
            pods,
            on_selected_nodes,
        });
        seen
    }

    #[test]
    fn a_capture_selecting_no_pod_says_so_and_fails_only_when_its_window_closes() {
        let s = settings();
        let spec = json!({"podSelector": {"matchLabels": {"app": "web"}}, "duration": "10m"});
        let none = selecting(spec.clone(), 0, 0);
        let early = desired(&none, after(5), &s);
        assert_eq!(early.phase, Phase::Capturing);
        assert_eq!(
            early.message.as_deref(),
            Some("podSelector app=web selects no Running pod in namespace shop yet; pods that start before 2025-06-01T02:10:00+00:00 are captured; check it against the pods' labels (kubectl -n shop get pods --show-labels)")
        );
        let late = desired(&none, after(300), &s);
        assert_eq!(
            (late.phase, late.message),
            (Phase::Capturing, early.message),
            "not failed at the report timeout: the agents have nothing to report"
        );
        let closed = desired(&none, after(600 + 30), &s);
        assert_eq!(closed.phase, Phase::Failed);
        assert_eq!(
            closed.message.as_deref(),
            Some("selected no pod during its window: podSelector app=web selects no Running pod in namespace shop; check it against the pods' labels (kubectl -n shop get pods --show-labels), and create the capture again")
        );
        let every = desired(&selecting(json!({"duration": "10m"}), 0, 0), after(5), &s);
        assert!(every.message.unwrap().starts_with(
            "podSelector {} (every pod) selects no Running pod in namespace shop yet"
        ));
    }

    #[test]
    fn pods_on_no_selected_node_are_said_so() {
        let s = settings();
        let spec = json!({"podSelector": {"matchLabels": {"app": "web"}}, "nodeSelector": {"disk": "ssd", "zone": "a"}, "duration": "10m"});
        let open = desired(&selecting(spec.clone(), 2, 0), after(300), &s);
        assert_eq!(open.phase, Phase::Capturing);
        assert_eq!(
            open.message.as_deref(),
            Some("podSelector app=web selects 2 Running pods in shop, but none is on a node nodeSelector disk=ssd,zone=a matches yet; pods that start before 2025-06-01T02:10:00+00:00 are captured; change nodeSelector, or compare it with the nodes' labels (kubectl get nodes --show-labels)")
        );
        let closed = desired(&selecting(spec, 1, 0), after(630), &s);
        assert_eq!(closed.phase, Phase::Failed);
        assert!(closed.message.unwrap().starts_with(
            "selected no pod during its window: podSelector app=web selects 1 Running pod in shop, but none is on a node nodeSelector disk=ssd,zone=a matches; change nodeSelector"
        ));
    }

    #[test]
    fn selected_pods_with_silent_agents_still_fail_at_the_report_timeout() {
        let s = settings();
        let spec = json!({"podSelector": {"matchLabels": {"app": "web"}}, "duration": "10m"});
        let mut seen = selecting(spec.clone(), 2, 2);
        let waiting = desired(&seen, after(30), &s);
        assert_eq!((waiting.phase, waiting.message), (Phase::Capturing, None));
        let failed = desired(&seen, after(61), &s);
        assert_eq!(failed.phase, Phase::Failed);
        assert!(failed
            .message
            .unwrap()
            .starts_with("no node's capture agent reported on this capture within 1m of its start: check that its podSelector"));
        // The pods appeared at 5 min: the agents get the report timeout from then.
        seen.unselected_at = Some(after(300));
        let fresh = desired(&seen, after(330), &s);
        assert_eq!((fresh.phase, fresh.message), (Phase::Capturing, None));
        let failed = desired(&seen, after(361), &s);
        assert_eq!(failed.phase, Phase::Failed);
        assert!(failed
            .message
            .unwrap()
            .starts_with("no node's capture agent reported on this capture within 1m of its pods being selected:"));
        // Closed without a report from any node: the same failure.
        let closed = desired(&selecting(spec, 1, 1), after(630), &s);
        assert_eq!(closed.phase, Phase::Failed);
        assert!(closed
            .message
            .unwrap()
            .starts_with("no node's capture agent reported"));
    }

    #[test]
    fn a_capture_with_targets_has_no_selection_message() {
        let s = settings();
        let mut seen = selecting(json!({"duration": "10m"}), 0, 0);
        seen.status.targets = vec![target(TargetState::Capturing)];
        let capturing = desired(&seen, after(300), &s);
        assert_eq!(
            (capturing.phase, capturing.message),
            (Phase::Capturing, None)
        );
        assert!(!seen.wants_selection(after(300), &s), "nor is it looked up");
    }

    #[test]
    fn only_silent_captures_in_or_after_their_window_are_looked_up() {
        let s = settings();
        let now = observed(json!({"duration": "10m"}));
        assert!(now.wants_selection(after(1), &s));
        assert!(now.wants_selection(after(700), &s), "closed, not finished");
        let later = observed(json!({"startTime": "2025-06-01T03:00:00Z", "duration": "10m"}));
        assert!(!later.wants_selection(after(1), &s));
        let mut finished = now.clone();
        finished.status.phase = Phase::Failed;
        assert!(!finished.wants_selection(after(1), &s));
        assert!(!observed(json!({"duration": 600})).wants_selection(after(1), &s));
    }

    /// A pod as the API server lists it.
    fn pod(name: &str, labels: Value, node: &str, phase: &str, deleting: bool) -> Pod {
        let mut metadata = json!({"name": name, "namespace": "shop", "labels": labels});
        if deleting {
            metadata["deletionTimestamp"] = json!("2025-06-01T02:00:00Z");
        }
        serde_json::from_value(json!({
            "metadata": metadata,
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn node(name: &str, labels: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    #[test]
    fn a_selection_counts_running_matching_pods_and_those_on_selected_nodes() {
        let pods = [
            pod("web-1", json!({"app": "web"}), "node-a", "Running", false),
            pod("web-2", json!({"app": "web"}), "node-b", "Running", false),
            pod("web-3", json!({"app": "web"}), "node-a", "Pending", false),
            pod("web-4", json!({"app": "web"}), "node-a", "Running", true),
            pod("db-1", json!({"app": "db"}), "node-a", "Running", false),
        ];
        let nodes = [
            node("node-a", json!({"disk": "ssd"})),
            node("node-b", json!({"disk": "hdd"})),
        ];
        let spec = |value: Value| serde_json::from_value::<CaptureSpec>(value).unwrap();
        let web = json!({"podSelector": {"matchLabels": {"app": "web"}}});
        assert_eq!(
            Selection::of(&spec(web.clone()), &pods, &nodes),
            Selection {
                pods: 2,
                on_selected_nodes: 2
            },
            "Running and not being deleted; without a nodeSelector every node counts"
        );
        let mut ssd = web.clone();
        ssd["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(
            Selection::of(&spec(ssd), &pods, &nodes),
            Selection {
                pods: 2,
                on_selected_nodes: 1
            }
        );
        let mut nvme = web;
        nvme["nodeSelector"] = json!({"disk": "nvme"});
        assert_eq!(
            Selection::of(&spec(nvme), &pods, &nodes),
            Selection {
                pods: 2,
                on_selected_nodes: 0
            }
        );
        assert_eq!(
            Selection::of(
                &spec(json!({"podSelector": {"matchLabels": {"app": "cache"}}})),
                &pods,
                &nodes
            ),
            Selection {
                pods: 0,
                on_selected_nodes: 0
            }
        );
        assert_eq!(
            Selection::of(&spec(json!({})), &pods, &[]).pods,
            3,
            "the empty podSelector selects every Running pod"
        );
    }

    #[test]
    fn totals_alone_wait_and_everything_else_is_written_at_once() {
        let mut memory = Memory::default();
        let start = std::time::Instant::now();
        let current = json!({"phase": "Capturing", "packets": 5, "pods": 1});
        let mut wanted: CaptureStatus = serde_json::from_value(current.clone()).unwrap();
        wanted.packets = Some(9);
        assert!(
            memory.is_due("u", &current, &wanted, start),
            "never written"
        );
        memory.written.insert("u".into(), start);
        assert!(!memory.is_due("u", &current, &wanted, start + Duration::from_secs(3)));
        assert!(memory.is_due("u", &current, &wanted, start + TOTALS_INTERVAL));
        wanted.phase = Phase::Completed;
        assert!(
            memory.is_due("u", &current, &wanted, start + Duration::from_secs(1)),
            "a phase change waits for nothing"
        );
        // Targets are never the API's to write, so they never make a write due.
        let mut with_targets = wanted.clone();
        with_targets.phase = Phase::Capturing;
        with_targets.packets = Some(5);
        with_targets.targets = vec![target(TargetState::Capturing)];
        assert!(!memory.is_due("u", &current, &with_targets, start + Duration::from_secs(1)));
    }
}
