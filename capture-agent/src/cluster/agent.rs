//! The node controller: each pass compares what the watched captures and this node's pods ask
//! for with the engines running here, and closes the gap.
//!
//! For a capture whose window is open (see `window`) every Running pod of this node in the
//! capture's namespace that matches `spec.podSelector` (on a node matching `spec.nodeSelector`,
//! see `pods`) gets a target — one engine on the pod's host-side interface (found by `podnet`)
//! — including pods that start later. What becomes of each target is the rule both modes share,
//! [`crate::reconcile`]; this module adds what is the node agent's own: the window as the agent
//! computes it, this node's finalizer on captures it holds files of, writing this node's
//! PacketCaptureSlices (`slices`), and deleting the files and slices of deleted captures.
//!
//! The pass itself is synchronous (engines open sockets and join threads) and runs on a blocking
//! thread; what it decides to tell the API server (slice writes, finalizer patches) comes back
//! as [`Action`]s that the async loop in `mod.rs` sends.
//!
//! An agent that restarts finds this node's targets in its slices (its watch shows them; a
//! capture made before slices existed keeps them in its `status.targets`, read as well): they
//! are kept, and a target whose pod is still there resumes in a new file segment with the
//! earlier files and counters carried on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use capture_spec::{PacketCapture, PacketCaptureSlice, TargetStatus};
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::finalizer;
use super::pods::NodePods;
use super::slices::{stale_chunks, Owner, Throttle};
use super::watch::Watches;
use super::window::Window;
use super::AgentConfig;
use crate::podnet::Strategies;
use crate::reconcile::{CaptureRun, RingOpener, WindowState};

/// A finalizer patch not yet visible in the watched object is sent again after this long.
const FINALIZER_RETRY: Duration = Duration::from_secs(5);
/// Capture directories of captures that no longer exist are looked for this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What a pass asks the async side to send to the API server.
#[derive(Debug)]
pub enum Action {
    /// Server-side apply this node's slices of a capture (`targets` in chunks), and delete the
    /// `stale` ones (chunks an earlier, longer target list used).
    Apply {
        owner: Owner,
        targets: Vec<TargetStatus>,
        stale: Vec<String>,
    },
    /// Delete this node's slices of a deleted capture (garbage collection would too, where a
    /// controller manager runs it; this is sooner).
    DeleteSlices {
        namespace: String,
        names: Vec<String>,
    },
    /// A JSON patch of `metadata.finalizers` (adding or removing this node's).
    Finalizer {
        namespace: String,
        name: String,
        patch: serde_json::Value,
    },
}

/// A watched capture and this node's slices of it, as one pass sees them.
#[derive(Clone, Copy)]
struct Watched<'a> {
    capture: &'a PacketCapture,
    slices: &'a [&'a PacketCaptureSlice],
}

/// A capture as this agent tracks it: the run the shared reconciler drives, and what this agent
/// last told the API server about it.
pub struct NodeCapture {
    pub run: CaptureRun,
    throttle: Throttle,
    finalizer_requested: Option<Instant>,
}

/// A Kubernetes timestamp as chrono's.
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
    runs: Mutex<HashMap<String, NodeCapture>>,
    /// This node's labels, for `spec.nodeSelector` (refreshed by the async loop).
    pub node_labels: Mutex<BTreeMap<String, String>>,
    last_sweep: Mutex<Option<Instant>>,
    /// Starts targets on the process's engine thread.
    opener: RingOpener,
}

impl Agent {
    pub fn new(config: AgentConfig, watches: Watches, opener: RingOpener) -> Agent {
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
            opener,
            config,
        }
    }

    /// The runs, also for the file endpoint (which only reads them briefly).
    pub fn runs(&self) -> MutexGuard<'_, HashMap<String, NodeCapture>> {
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
        let slices = self.watches.slices.state();
        // This node's slices by capture uid (the watch selects by label; the spec says for sure).
        let mut ours: HashMap<&str, Vec<&PacketCaptureSlice>> = HashMap::new();
        for slice in slices.iter().filter(|s| s.spec.node == self.config.node) {
            ours.entry(slice.spec.capture_uid.as_str())
                .or_default()
                .push(slice);
        }
        let labels = self
            .node_labels
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let source = NodePods {
            node: &self.config.node,
            labels: &labels,
            pods: &pods,
            strategies: &self.strategies,
        };
        let mut actions = Vec::new();
        let mut runs = self.runs();
        let mut seen = HashSet::new();
        for capture in &captures {
            let Some(uid) = capture.metadata.uid.clone() else {
                continue;
            };
            seen.insert(uid.clone());
            let slices = ours.get(uid.as_str()).map_or(&[][..], Vec::as_slice);
            if capture.metadata.deletion_timestamp.is_some() {
                self.release(&mut runs, &uid, capture, slices, &mut actions);
            } else {
                let watched = Watched { capture, slices };
                self.sync(&mut runs, &uid, &watched, &source, now, &mut actions);
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

    /// A capture being deleted: stop its targets, delete its files and slices here, drop our
    /// finalizer.
    fn release(
        &self,
        runs: &mut HashMap<String, NodeCapture>,
        uid: &str,
        capture: &PacketCapture,
        slices: &[&PacketCaptureSlice],
        actions: &mut Vec<Action>,
    ) {
        let names: Vec<String> = slices
            .iter()
            .filter_map(|slice| slice.metadata.name.clone())
            .collect();
        if !names.is_empty() {
            actions.push(Action::DeleteSlices {
                namespace: capture.metadata.namespace.clone().unwrap_or_default(),
                names,
            });
        }
        if let Some(NodeCapture { run, .. }) = runs.remove(uid) {
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

    fn sync(
        &self,
        runs: &mut HashMap<String, NodeCapture>,
        uid: &str,
        watched: &Watched<'_>,
        pods: &NodePods<'_>,
        now: DateTime<Utc>,
        actions: &mut Vec<Action>,
    ) {
        let Watched { capture, slices } = *watched;
        let spec = &capture.spec;
        let created = capture
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, chrono_time);
        let window = Window::of(spec, created, self.config.max_window);
        let node = self.config.node.as_str();
        let earlier = earlier_targets(capture, slices, node);
        let tracked = match runs.get_mut(uid) {
            Some(tracked) => tracked,
            // Nothing to do before the window opens, unless an earlier run left entries here.
            None if window.is_ahead(now) && earlier.is_empty() => return,
            None => runs.entry(uid.to_string()).or_insert_with(|| NodeCapture {
                run: CaptureRun::resume(
                    capture.metadata.namespace.as_deref().unwrap_or_default(),
                    capture.metadata.name.as_deref().unwrap_or_default(),
                    spec,
                    node,
                    self.capture_dir(uid),
                    &earlier,
                ),
                throttle: Throttle::default(),
                finalizer_requested: None,
            }),
        };
        let run = &mut tracked.run;
        // The API stops a capture by setting endTime: the spec is re-read every pass.
        run.spec = spec.clone();
        run.reconcile(WindowState::of(&window, now), pods, &self.opener, now);
        // The finalizer goes on as soon as this node holds files for the capture.
        let has_finalizer = capture
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| *f == self.finalizer);
        if run.holds_files()
            && !has_finalizer
            && tracked
                .finalizer_requested
                .is_none_or(|at| at.elapsed() >= FINALIZER_RETRY)
        {
            tracked.finalizer_requested = Some(Instant::now());
            actions.push(Action::Finalizer {
                namespace: run.namespace.clone(),
                name: run.name.clone(),
                patch: finalizer::add_patch(
                    capture.metadata.finalizers.as_deref(),
                    &self.finalizer,
                ),
            });
        }
        let targets = run.report();
        if !targets.is_empty() && tracked.throttle.is_due(&targets, Instant::now()) {
            actions.push(Action::Apply {
                owner: Owner {
                    namespace: run.namespace.clone(),
                    name: run.name.clone(),
                    uid: uid.to_string(),
                },
                stale: stale_chunks(slices.iter().copied(), &targets),
                targets,
            });
        }
    }

    /// Records that `targets` were applied for capture `uid`.
    pub fn applied(&self, uid: &str, targets: Vec<TargetStatus>, at: Instant) {
        if let Some(tracked) = self.runs().get_mut(uid) {
            tracked.throttle.applied(targets, at);
        }
    }

    /// Stops every engine (files are closed cleanly) and returns every capture's slices to
    /// write one last time. Targets stay `Capturing`: the next agent resumes them.
    pub fn shutdown(&self) -> Vec<Action> {
        let slices = self.watches.slices.state();
        let mut runs = self.runs();
        let mut actions = Vec::new();
        for (uid, NodeCapture { run, .. }) in runs.iter_mut() {
            run.suspend();
            let targets = run.report();
            if targets.is_empty() {
                continue;
            }
            let ours = slices
                .iter()
                .filter(|s| s.spec.capture_uid == *uid && s.spec.node == self.config.node)
                .map(|s| s.as_ref());
            actions.push(Action::Apply {
                owner: Owner {
                    namespace: run.namespace.clone(),
                    name: run.name.clone(),
                    uid: uid.clone(),
                },
                stale: stale_chunks(ours, &targets),
                targets,
            });
        }
        actions
    }
}

/// What earlier runs on `node` reported for `capture`: the targets in its slices, else (a
/// capture made before slices existed) its `status.targets` entries of this node.
pub fn earlier_targets(
    capture: &PacketCapture,
    slices: &[&PacketCaptureSlice],
    node: &str,
) -> Vec<TargetStatus> {
    let mut chunks: Vec<&PacketCaptureSlice> = slices.to_vec();
    chunks.sort_by_key(|slice| slice.spec.chunk);
    let from_slices: Vec<TargetStatus> = chunks
        .iter()
        .flat_map(|slice| slice.spec.targets.iter().cloned())
        .collect();
    if !from_slices.is_empty() {
        return from_slices;
    }
    capture
        .status
        .iter()
        .flat_map(|status| status.targets.iter())
        .filter(|target| target.node == node)
        .cloned()
        .collect()
}
