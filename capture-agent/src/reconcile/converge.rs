//! The decisions of one pass over one capture (see the module doc of [`super`]): end every
//! target when the window is over or a limit is reached; otherwise bring the targets in line
//! with the pods the [`PodSource`] wants — start, re-map, end as `Gone` — and take every
//! running target's live counters into its entry. A capture with `capturePoint: podNetns` binds
//! each target inside its pod's network namespace, which the source names.

use std::collections::BTreeMap;

use capture_spec::{CapturePoint, CaptureWindow, TargetKey, TargetState, TargetStatus};
use chrono::{DateTime, TimeDelta, Utc};

use crate::target::{Earlier, TargetIdentity};
use crate::EndReason;

use super::opener::{Opener, Target};
use super::run::{CaptureRun, Running};
use super::source::{LocateError, PodSource, Wanted};

/// A pod whose host interface could not be found yet is tried again after this long; no pod
/// interface is tried more often than that.
pub const RETRY_AFTER: TimeDelta = TimeDelta::seconds(3);

const POD_GONE: &str = "the pod stopped running here or no longer matches the podSelector";
const POD_MOVED: &str = "the pod's host interface changed; continuing in a new file segment";
const EARLIER_POD_GONE: &str = "the pod is no longer running on this node";

/// Where `now` is in the capture's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Not started yet.
    Ahead,
    /// Recording.
    Open,
    /// Over (also: stopped by the API setting the end to now).
    Over,
}

impl WindowState {
    /// Where `now` is in `window` (computed by the caller, by the product's one rule of windows).
    pub fn of(window: &CaptureWindow, now: DateTime<Utc>) -> WindowState {
        if window.is_ahead(now) {
            WindowState::Ahead
        } else if window.is_open(now) {
            WindowState::Open
        } else {
            WindowState::Over
        }
    }
}

/// Why a capture ended on this node in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Its window is over.
    Window,
    /// Its `maxPackets` or `maxBytes` was reached here.
    Limit(EndReason),
}

impl<T: Target> CaptureRun<T> {
    /// One pass: decides, starts and stops targets, and updates the entries. Returns why the
    /// capture ended, if it has.
    pub fn reconcile<S, O>(
        &mut self,
        window: WindowState,
        pods: &S,
        opener: &O,
        now: DateTime<Utc>,
    ) -> Option<Ended>
    where
        S: PodSource,
        O: Opener<Target = T>,
    {
        let ended = match (self.limit_reached(), window) {
            (Some(limit), _) => Some(Ended::Limit(limit)),
            (None, WindowState::Over) => Some(Ended::Window),
            (None, WindowState::Ahead | WindowState::Open) => None,
        };
        match (&ended, window) {
            (None, WindowState::Open) => self.converge(pods, opener, now),
            // Before the window nothing records; entries of an earlier run wait for it.
            (None, _) => self.stop_all(TargetState::Completed),
            (Some(_), _) => self.end(TargetState::Completed),
        }
        self.refresh();
        ended
    }

    /// Starts and stops targets so that every wanted pod interface is recorded.
    fn converge<S, O>(&mut self, pods: &S, opener: &O, now: DateTime<Utc>)
    where
        S: PodSource,
        O: Opener<Target = T>,
    {
        let Some(wanted) = pods.wanted(&self.namespace, &self.spec) else {
            // Pods unknown this pass: whatever records keeps recording.
            self.collect_ended();
            return;
        };
        let wanted: BTreeMap<TargetKey, Wanted<S::Pod>> = wanted
            .into_iter()
            .map(|pod| (pod.key.clone(), pod))
            .collect();
        let mut gone = Vec::new();
        let mut moved = Vec::new();
        for (key, running) in &self.running {
            match wanted.get(key) {
                None => gone.push(key.clone()),
                Some(pod) if pod.uid != running.uid => moved.push(key.clone()),
                Some(pod) if !pods.still_carries(&pod.pod, &running.host) => {
                    moved.push(key.clone());
                }
                Some(_) => {}
            }
        }
        self.stop(&gone, TargetState::Gone, Some(POD_GONE));
        self.stop(&moved, TargetState::Gone, Some(POD_MOVED));
        self.collect_ended();
        for (key, entry) in &mut self.entries {
            if !entry.state.is_finished()
                && !self.running.contains_key(key)
                && !wanted.contains_key(key)
            {
                entry.state = TargetState::Gone;
                entry.error = Some(EARLIER_POD_GONE.into());
            }
        }
        for (key, pod) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            // A target that completed (a limit), failed to open, or whose pod can never be
            // located is not retried in this window.
            if self
                .entries
                .get(&key)
                .is_some_and(|t| matches!(t.state, TargetState::Completed | TargetState::Failed))
            {
                continue;
            }
            if self
                .attempts
                .get(&key)
                .is_some_and(|at| *at <= now && now - *at < RETRY_AFTER)
            {
                continue;
            }
            self.attempts.insert(key, now);
            self.start(pod, pods, opener);
        }
    }

    /// Targets that ended by themselves keep the state their engine reported.
    fn collect_ended(&mut self) {
        let ended: Vec<TargetKey> = self
            .running
            .iter()
            .filter(|(_, running)| running.target.has_ended())
            .map(|(key, _)| key.clone())
            .collect();
        self.stop(&ended, TargetState::Completed, None);
    }

    /// Locates `pod`'s host interface and starts its target, or records why it waits or failed.
    fn start<S, O>(&mut self, pod: Wanted<S::Pod>, pods: &S, opener: &O)
    where
        S: PodSource,
        O: Opener<Target = T>,
    {
        let previous = self.entries.get(&pod.key);
        let earlier = previous.map(Earlier::from_status).unwrap_or_default();
        let mut entry = previous.cloned().unwrap_or_else(|| TargetStatus {
            node: pod.key.node.clone(),
            namespace: pod.namespace.clone(),
            pod: pod.key.pod.clone(),
            interface: pod.key.interface.clone(),
            ..TargetStatus::default()
        });
        let host = match pods.locate(&pod.pod) {
            Ok(host) => host,
            Err(error) => {
                // "Never" fails, so `converge` leaves it alone for the rest of the window; "not
                // yet" waits and is tried again after RETRY_AFTER.
                entry.state = if error.is_permanent() {
                    tracing::error!(namespace = %pod.namespace, pod = %pod.key.pod, %error, "cannot capture the pod: it has no interface to capture");
                    TargetState::Failed
                } else {
                    tracing::warn!(namespace = %pod.namespace, pod = %pod.key.pod, %error, "cannot find the pod's interface yet");
                    TargetState::Waiting
                };
                entry.error = Some(error.to_string());
                self.entries.insert(pod.key, entry);
                return;
            }
        };
        tracing::debug!(pod = %pod.key.pod, interface = %host.name, method = %host.method, "pod mapped");
        let pod_netns = match self.spec.capture_point {
            CapturePoint::HostVeth => None,
            CapturePoint::PodNetns => match pods.netns(&pod.pod) {
                Ok(path) => Some(path),
                Err(error) => {
                    entry.state = if error.is_permanent() {
                        tracing::error!(namespace = %pod.namespace, pod = %pod.key.pod, %error, "cannot capture inside the pod");
                        TargetState::Failed
                    } else {
                        tracing::warn!(namespace = %pod.namespace, pod = %pod.key.pod, %error, "cannot find the pod's network namespace yet");
                        TargetState::Waiting
                    };
                    entry.error = Some(error.to_string());
                    self.entries.insert(pod.key, entry);
                    return;
                }
            },
        };
        let identity = TargetIdentity {
            namespace: pod.namespace.clone(),
            pod: pod.key.pod.clone(),
            interface: pod.key.interface.clone(),
            node: pod.key.node.clone(),
            host_interface: host.name.clone(),
            pod_netns,
        };
        match opener.open(
            &self.directory,
            identity,
            &self.spec,
            earlier,
            self.budget.clone(),
        ) {
            Ok(target) => {
                self.running.insert(
                    pod.key,
                    Running {
                        uid: pod.uid,
                        host,
                        target,
                    },
                );
            }
            Err(error) => {
                tracing::error!(namespace = %pod.namespace, pod = %pod.key.pod, %error, "cannot capture");
                entry.state = TargetState::Failed;
                entry.error = Some(error.to_string());
                self.entries.insert(pod.key, entry);
            }
        }
    }
}
