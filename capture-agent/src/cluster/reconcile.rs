//! The node controller: each pass compares what the watched captures and this node's pods ask
//! for with the engines running here, and closes the gap.
//!
//! For a capture whose window is open (see `window`) every Running pod of this node in the
//! capture's namespace that matches `spec.podSelector` (on a node matching `spec.nodeSelector`)
//! gets a target — one engine on the pod's host-side interface (found by `podnet`) — including
//! pods that start later. A target stops when its pod goes away, stops Running or stops
//! matching, when its host interface changes (re-checked every pass), when the window ends, and
//! when the capture's `maxPackets`/`maxBytes` are reached. Those limits are shared by the
//! targets of one capture **on this node**: each node counts its own, so a capture on N nodes
//! may record up to N times the limit in total.
//!
//! The pass itself is synchronous (engines open sockets and join threads) and runs on a blocking
//! thread; what it decides to tell the API server (status applies, finalizer patches) comes back
//! as [`Action`]s that the async loop in `mod.rs` sends.
//!
//! An agent that restarts finds this node's entries in each capture's status: they are kept (an
//! entry this node stops applying would be deleted by the server), and a target whose pod is
//! still there resumes in a new file segment with the earlier files and counters carried on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use capture_spec::{CaptureSpec, PacketCapture, TargetState, TargetStatus};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::finalizer;
use super::status::Throttle;
use super::targets::{NodeTarget, TargetIdentity, TargetKey};
use super::watch::Watches;
use super::window::Window;
use super::AgentConfig;
use crate::budget::Budget;
use crate::podnet::{self, PodNetwork, Strategies};
use crate::target::Earlier;
use crate::EndReason;

/// A pod whose interface could not be found is tried again after this long.
const RESOLVE_RETRY: Duration = Duration::from_secs(3);
/// A finalizer patch not yet visible in the watched object is sent again after this long.
const FINALIZER_RETRY: Duration = Duration::from_secs(5);
/// Capture directories of captures that no longer exist are looked for this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What a pass asks the async side to send to the API server.
#[derive(Debug)]
pub enum Action {
    /// Server-side apply this node's `status.targets` entries.
    Apply {
        uid: String,
        namespace: String,
        name: String,
        targets: Vec<TargetStatus>,
    },
    /// A JSON patch of `metadata.finalizers` (adding or removing this node's).
    Finalizer {
        namespace: String,
        name: String,
        patch: serde_json::Value,
    },
}

/// One capture as this node runs it.
pub struct CaptureRun {
    pub namespace: String,
    pub name: String,
    pub spec: CaptureSpec,
    pub targets: BTreeMap<TargetKey, NodeTarget>,
    /// Every entry this node reports for the capture, running or not, including earlier runs'.
    pub entries: BTreeMap<TargetKey, TargetStatus>,
    budget: Option<Arc<Budget>>,
    throttle: Throttle,
    finalizer_requested: Option<Instant>,
    resolve_attempts: HashMap<TargetKey, Instant>,
}

/// The capture's per-node budget, counting what this node's earlier segments already used.
fn budget_for(
    spec: &CaptureSpec,
    entries: &BTreeMap<TargetKey, TargetStatus>,
) -> Option<Arc<Budget>> {
    if spec.max_packets.is_none() && spec.max_bytes.is_none() {
        return None;
    }
    let (packets, bytes) = entries
        .values()
        .fold((0, 0), |(p, b), t| (p + t.packets, b + t.bytes));
    Some(Arc::new(Budget::new(
        spec.max_packets,
        spec.max_bytes,
        packets,
        bytes,
    )))
}

impl CaptureRun {
    /// A run that starts from this node's entries in the capture's status (an earlier agent's).
    /// File sizes are read again from `directory`: an agent killed outright reported them up to
    /// two seconds before it died. (Packet counts of such a file stay as last reported.)
    fn seed(capture: &PacketCapture, node: &str, directory: &Path) -> CaptureRun {
        let mut entries: BTreeMap<TargetKey, TargetStatus> = capture
            .status
            .iter()
            .flat_map(|status| status.targets.iter())
            .filter(|t| t.node == node)
            .map(|t| (TargetKey::of(t), t.clone()))
            .collect();
        for file in entries.values_mut().flat_map(|t| t.files.iter_mut()) {
            if let Ok(meta) = std::fs::metadata(directory.join(&file.name)) {
                file.size = meta.len();
            }
        }
        CaptureRun {
            namespace: capture.metadata.namespace.clone().unwrap_or_default(),
            name: capture.metadata.name.clone().unwrap_or_default(),
            spec: capture.spec.clone(),
            budget: budget_for(&capture.spec, &entries),
            targets: BTreeMap::new(),
            entries,
            throttle: Throttle::default(),
            finalizer_requested: None,
            resolve_attempts: HashMap::new(),
        }
    }

    /// Stops the targets in `keys`, recording their final status with `state` and `error`.
    fn stop(&mut self, keys: &[TargetKey], state: TargetState, error: Option<String>) {
        for key in keys {
            if let Some(target) = self.targets.get(key) {
                target.run.request_stop();
            }
        }
        for key in keys {
            if let Some(mut target) = self.targets.remove(key) {
                target.run.finish();
                let mut status = target.run.status(state);
                if status.error.is_none() {
                    status.error.clone_from(&error);
                }
                self.entries.insert(key.clone(), status);
            }
        }
    }

    fn stop_all(&mut self, state: TargetState, error: Option<String>) {
        let keys: Vec<TargetKey> = self.targets.keys().cloned().collect();
        self.stop(&keys, state, error);
    }
}

/// A pod of this node that may be captured: Running, not being deleted, with IPs.
struct LivePod<'a> {
    pod: &'a Pod,
    uid: String,
    ips: Vec<IpAddr>,
}

fn live_pod(pod: &Pod) -> Option<LivePod<'_>> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    Some(LivePod {
        pod,
        uid: pod.metadata.uid.clone()?,
        ips,
    })
}

pub fn chrono_time(time: &Time) -> DateTime<Utc> {
    let ts = time.0;
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().unsigned_abs())
        .unwrap_or_default()
}

/// The agent's state shared by the reconciler and the file endpoint.
pub struct Agent {
    pub config: AgentConfig,
    pub finalizer: String,
    pub manager: String,
    strategies: Strategies,
    pub watches: Watches,
    runs: Mutex<HashMap<String, CaptureRun>>,
    /// This node's labels, for `spec.nodeSelector` (refreshed by the async loop).
    pub node_labels: Mutex<BTreeMap<String, String>>,
    last_sweep: Mutex<Option<Instant>>,
}

impl Agent {
    pub fn new(config: AgentConfig, watches: Watches) -> Agent {
        let strategies = Strategies {
            netns: config.netns_fallback,
            ..Strategies::default()
        };
        Agent {
            finalizer: finalizer::finalizer_name(&config.node),
            manager: finalizer::field_manager(&config.node),
            strategies,
            watches,
            runs: Mutex::new(HashMap::new()),
            node_labels: Mutex::new(BTreeMap::new()),
            last_sweep: Mutex::new(None),
            config,
        }
    }

    /// The runs, also for the file endpoint (which only reads them briefly).
    pub fn runs(&self) -> MutexGuard<'_, HashMap<String, CaptureRun>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where a capture's files live on this node: addressed by its uid only.
    pub fn capture_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.join("captures").join(uid)
    }

    /// One reconciliation pass over every watched capture.
    pub fn pass(&self, now: DateTime<Utc>) -> Vec<Action> {
        let captures = self.watches.captures.state();
        let pods = self.watches.pods.state();
        let labels = self
            .node_labels
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let mut actions = Vec::new();
        let mut runs = self.runs();
        let mut seen = HashSet::new();
        for capture in &captures {
            let Some(uid) = capture.metadata.uid.clone() else {
                continue;
            };
            seen.insert(uid.clone());
            if capture.metadata.deletion_timestamp.is_some() {
                self.release(&mut runs, &uid, capture, &mut actions);
            } else {
                self.sync(&mut runs, &uid, capture, &pods, &labels, now, &mut actions);
            }
        }
        // Deleted without this node's finalizer (it never wrote files, or the object went while
        // the agent was down): stop, and forget.
        let gone: Vec<String> = runs
            .keys()
            .filter(|uid| !seen.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            runs.remove(&uid);
            self.remove_files(&uid);
        }
        drop(runs);
        self.sweep(&seen);
        actions
    }

    /// A capture being deleted: stop its targets, delete its files here, drop our finalizer.
    fn release(
        &self,
        runs: &mut HashMap<String, CaptureRun>,
        uid: &str,
        capture: &PacketCapture,
        actions: &mut Vec<Action>,
    ) {
        if let Some(run) = runs.remove(uid) {
            tracing::info!(namespace = %run.namespace, name = %run.name, "capture deleted: stopping and deleting its files here");
            drop(run);
        }
        if !self.remove_files(uid) {
            return;
        }
        let current = capture.metadata.finalizers.clone().unwrap_or_default();
        if let Some(patch) = finalizer::remove_patch(&current, &self.finalizer) {
            actions.push(Action::Finalizer {
                namespace: capture.metadata.namespace.clone().unwrap_or_default(),
                name: capture.metadata.name.clone().unwrap_or_default(),
                patch,
            });
        }
    }

    /// Deletes a capture's directory; false if it could not be deleted.
    fn remove_files(&self, uid: &str) -> bool {
        let directory = self.capture_dir(uid);
        match std::fs::remove_dir_all(&directory) {
            Ok(()) => {
                tracing::info!(path = %directory.display(), "deleted capture files");
                true
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => {
                tracing::error!(path = %directory.display(), %error, "cannot delete capture files; keeping the finalizer and retrying");
                false
            }
        }
    }

    /// Deletes directories of captures that no longer exist (deleted while the agent was down).
    fn sweep(&self, existing: &HashSet<String>) {
        let Ok(mut last) = self.last_sweep.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < SWEEP_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("captures")) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !existing.contains(&uid) {
                self.remove_files(&uid);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sync(
        &self,
        runs: &mut HashMap<String, CaptureRun>,
        uid: &str,
        capture: &PacketCapture,
        pods: &[Arc<Pod>],
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
        actions: &mut Vec<Action>,
    ) {
        let spec = &capture.spec;
        let created = capture
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, chrono_time);
        let window = Window::of(spec, created, self.config.max_window);
        let node = self.config.node.as_str();
        let run = match runs.get_mut(uid) {
            Some(run) => run,
            // Nothing to do before the window opens, unless an earlier run left entries here.
            None if window.is_ahead(now)
                && !capture
                    .status
                    .iter()
                    .any(|s| s.targets.iter().any(|t| t.node == node)) =>
            {
                return
            }
            None => runs
                .entry(uid.to_string())
                .or_insert_with(|| CaptureRun::seed(capture, node, &self.capture_dir(uid))),
        };
        // The API stops a capture by setting endTime: the spec is re-read every pass.
        run.spec = spec.clone();
        let spent = run
            .budget
            .as_ref()
            .filter(|b| b.is_spent())
            .map(|b| match b.reason() {
                EndReason::PacketLimit => "maxPackets reached on this node",
                _ => "maxBytes reached on this node",
            });
        if !window.is_open(now) || spent.is_some() {
            run.stop_all(TargetState::Completed, None);
            // Entries of an earlier agent run that never resumed end with the window too.
            for entry in run.entries.values_mut() {
                if !entry.state.is_finished() && !window.is_ahead(now) {
                    entry.state = TargetState::Completed;
                }
            }
        } else {
            self.capture_pods(run, uid, pods, labels);
        }
        // Running targets report their live counters.
        for (key, target) in &run.targets {
            run.entries
                .insert(key.clone(), target.run.status(TargetState::Capturing));
        }
        let namespace = run.namespace.clone();
        let name = run.name.clone();
        // The finalizer goes on as soon as this node holds files for the capture.
        let holds_files =
            !run.targets.is_empty() || run.entries.values().any(|t| !t.files.is_empty());
        let has_finalizer = capture
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| *f == self.finalizer);
        if holds_files
            && !has_finalizer
            && run
                .finalizer_requested
                .is_none_or(|at| at.elapsed() >= FINALIZER_RETRY)
        {
            run.finalizer_requested = Some(Instant::now());
            actions.push(Action::Finalizer {
                namespace: namespace.clone(),
                name: name.clone(),
                patch: finalizer::add_patch(
                    capture.metadata.finalizers.as_deref(),
                    &self.finalizer,
                ),
            });
        }
        let targets: Vec<TargetStatus> = run.entries.values().cloned().collect();
        if !targets.is_empty() && run.throttle.is_due(&targets, Instant::now()) {
            actions.push(Action::Apply {
                uid: uid.to_string(),
                namespace,
                name,
                targets,
            });
        }
    }

    /// Starts and stops targets so that every matching Running pod of this node is captured.
    fn capture_pods(
        &self,
        run: &mut CaptureRun,
        uid: &str,
        pods: &[Arc<Pod>],
        labels: &BTreeMap<String, String>,
    ) {
        let interface = self.strategies.pod_interface.clone();
        let wanted: BTreeMap<TargetKey, LivePod<'_>> = if run.spec.selects_node(labels) {
            pods.iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(run.namespace.as_str()))
                .filter(|p| {
                    run.spec
                        .pod_selector
                        .matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
                })
                .filter_map(|p| live_pod(p))
                .map(|live| {
                    let key = TargetKey {
                        pod: live.pod.metadata.name.clone().unwrap_or_default(),
                        interface: interface.clone(),
                    };
                    (key, live)
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        // Targets whose pod went away, stopped matching, or moved to another interface.
        let mut gone = Vec::new();
        let mut moved = Vec::new();
        for (key, target) in &run.targets {
            match wanted.get(key) {
                None => gone.push(key.clone()),
                Some(live) if live.uid != target.identity.pod_uid => moved.push(key.clone()),
                Some(_) if !podnet::still_valid(&target.identity.host) => moved.push(key.clone()),
                Some(_) => {}
            }
        }
        run.stop(
            &gone,
            TargetState::Gone,
            Some("the pod stopped running here or no longer matches the podSelector".into()),
        );
        run.stop(
            &moved,
            TargetState::Gone,
            Some("the pod's host interface changed; continuing in a new file segment".into()),
        );
        // Targets that ended by themselves (a limit, the interface deleted, a write error).
        let ended: Vec<TargetKey> = run
            .targets
            .iter()
            .filter(|(_, t)| t.run.has_ended())
            .map(|(k, _)| k.clone())
            .collect();
        run.stop(&ended, TargetState::Completed, None);
        // Entries of an earlier agent run whose pod is not here any more.
        for (key, entry) in run.entries.iter_mut() {
            if !entry.state.is_finished()
                && !run.targets.contains_key(key)
                && !wanted.contains_key(key)
            {
                entry.state = TargetState::Gone;
                entry.error = Some("the pod is no longer running on this node".into());
            }
        }
        for (key, live) in wanted {
            if run.targets.contains_key(&key) {
                continue;
            }
            let previous = run.entries.get(&key);
            // A target that completed (limit) or failed to open is not retried in this window.
            if previous
                .is_some_and(|t| matches!(t.state, TargetState::Completed | TargetState::Failed))
            {
                continue;
            }
            if run
                .resolve_attempts
                .get(&key)
                .is_some_and(|at| at.elapsed() < RESOLVE_RETRY)
            {
                continue;
            }
            run.resolve_attempts.insert(key.clone(), Instant::now());
            let earlier = previous.map(Earlier::from_status).unwrap_or_default();
            let mut entry = previous.cloned().unwrap_or_else(|| TargetStatus {
                node: self.config.node.clone(),
                namespace: run.namespace.clone(),
                pod: key.pod.clone(),
                interface: key.interface.clone(),
                ..TargetStatus::default()
            });
            let network = PodNetwork {
                uid: live.uid.clone(),
                ips: live.ips.clone(),
                mac: None,
            };
            let host = match podnet::resolve(&network, &self.strategies) {
                Ok(host) => host,
                Err(error) => {
                    tracing::warn!(namespace = %run.namespace, pod = %key.pod, %error, "cannot find the pod's interface yet");
                    entry.state = TargetState::Waiting;
                    entry.error = Some(error.to_string());
                    run.entries.insert(key, entry);
                    continue;
                }
            };
            let directory = self.capture_dir(uid);
            if let Err(error) = std::fs::create_dir_all(&directory) {
                entry.state = TargetState::Failed;
                entry.error = Some(format!(
                    "cannot create {}: {error}; check --data-dir",
                    directory.display()
                ));
                run.entries.insert(key, entry);
                continue;
            }
            let identity = TargetIdentity {
                key: key.clone(),
                namespace: run.namespace.clone(),
                node: self.config.node.clone(),
                pod_uid: live.uid.clone(),
                host,
            };
            match NodeTarget::start(&directory, identity, &run.spec, earlier, run.budget.clone()) {
                Ok(target) => {
                    run.targets.insert(key, target);
                }
                Err(error) => {
                    tracing::error!(namespace = %run.namespace, pod = %key.pod, %error, "cannot capture");
                    entry.state = TargetState::Failed;
                    entry.error = Some(error.to_string());
                    run.entries.insert(key, entry);
                }
            }
        }
    }

    /// Records that `targets` were applied for capture `uid`.
    pub fn applied(&self, uid: &str, targets: Vec<TargetStatus>, at: Instant) {
        if let Some(run) = self.runs().get_mut(uid) {
            run.throttle.applied(targets, at);
        }
    }

    /// Stops every engine (files are closed cleanly) and returns every capture's entries to
    /// apply one last time. Targets stay `Capturing`: the next agent resumes them.
    pub fn shutdown(&self) -> Vec<Action> {
        let mut runs = self.runs();
        let mut actions = Vec::new();
        for (uid, run) in runs.iter_mut() {
            run.stop_all(TargetState::Capturing, None);
            if run.entries.is_empty() {
                continue;
            }
            actions.push(Action::Apply {
                uid: uid.clone(),
                namespace: run.namespace.clone(),
                name: run.name.clone(),
                targets: run.entries.values().cloned().collect(),
            });
        }
        actions
    }
}
