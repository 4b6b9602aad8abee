//! Fakes for the reconciler's tests, in the style of kube-rs controller-rs fixtures: pods a test
//! lists by hand (and changes between passes), and targets that record nothing but behave like
//! engines — they take packets from the capture's budget when told, end by themselves when
//! told, and report files named by segment as `TargetRun` does. No root, no kernel, no clock.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use capture_spec::{CaptureSpec, FileStatus, TargetKey, TargetState, TargetStatus};
use chrono::{DateTime, TimeZone, Utc};

use crate::budget::Budget;
use crate::podnet::{HostInterface, Method};
use crate::target::{Earlier, TargetIdentity};

use super::converge::{Ended, WindowState};
use super::opener::{OpenError, Opener, Target};
use super::run::CaptureRun;
use super::source::{LocateError, PodSource, Wanted};

pub const NODE: &str = "node-a";
pub const NAMESPACE: &str = "shop";

/// Seconds after a fixed instant, so tests read like a timeline.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap() + chrono::TimeDelta::seconds(seconds)
}

pub fn spec(json: &str) -> CaptureSpec {
    serde_json::from_str(json).unwrap()
}

pub fn key(pod: &str) -> TargetKey {
    TargetKey {
        node: NODE.into(),
        pod: pod.into(),
        interface: "eth0".into(),
    }
}

pub fn host(name: &str, ifindex: u32) -> HostInterface {
    HostInterface {
        ifindex,
        name: name.into(),
        method: Method::Route,
    }
}

/// One pod of the fake node.
#[derive(Debug, Clone)]
pub struct FakePod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub uid: String,
    /// None: its interface cannot be found (yet).
    pub host: Option<HostInterface>,
    /// Some(why): its interface can never be found (as a hostNetwork pod's), whatever `host`.
    pub never: Option<String>,
    /// Its network namespace (capturePoint podNetns); None: not found (yet).
    pub netns: Option<PathBuf>,
    /// Some(why): its namespace can never be entered (an agent without the privileges).
    pub netns_never: Option<String>,
}

/// The pods of the fake node; `unknown` makes a pass that cannot list them.
#[derive(Debug, Default)]
pub struct FakePods {
    pub pods: Vec<FakePod>,
    pub unknown: bool,
    /// The pod of every `locate` call, in order.
    pub located: RefCell<Vec<String>>,
}

/// Why a fake pod's interface was not found: `never` when it never will be.
#[derive(Debug)]
pub struct FakeLocateError {
    pub message: String,
    pub never: bool,
}

impl fmt::Display for FakeLocateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl LocateError for FakeLocateError {
    fn is_permanent(&self) -> bool {
        self.never
    }
}

impl FakePods {
    /// Adds pod `name` labelled `app=APP` in namespace shop, on host interface `veth-NAME`.
    pub fn add(&mut self, name: &str, app: &str, ifindex: u32) {
        self.pods.push(FakePod {
            namespace: NAMESPACE.into(),
            name: name.into(),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            uid: format!("uid-{name}-1"),
            host: Some(host(&format!("veth-{name}"), ifindex)),
            never: None,
            netns: Some(PathBuf::from(format!("/proc/{ifindex}/ns/net"))),
            netns_never: None,
        });
    }

    pub fn remove(&mut self, name: &str) {
        self.pods.retain(|p| p.name != name);
    }

    pub fn get_mut(&mut self, name: &str) -> &mut FakePod {
        self.pods.iter_mut().find(|p| p.name == name).unwrap()
    }

    fn current(&self, name: &str) -> Option<&FakePod> {
        self.pods.iter().find(|p| p.name == name)
    }
}

impl PodSource for FakePods {
    type Pod = String;
    type Error = FakeLocateError;

    fn wanted(&self, namespace: &str, spec: &CaptureSpec) -> Option<Vec<Wanted<String>>> {
        if self.unknown {
            return None;
        }
        Some(
            self.pods
                .iter()
                .filter(|p| p.namespace == namespace && spec.pod_selector.matches(&p.labels))
                .map(|p| Wanted {
                    key: key(&p.name),
                    namespace: p.namespace.clone(),
                    uid: p.uid.clone(),
                    pod: p.name.clone(),
                })
                .collect(),
        )
    }

    fn locate(&self, pod: &String) -> Result<HostInterface, FakeLocateError> {
        self.located.borrow_mut().push(pod.clone());
        let current = self.current(pod);
        if let Some(why) = current.and_then(|p| p.never.clone()) {
            return Err(FakeLocateError {
                message: why,
                never: true,
            });
        }
        current
            .and_then(|p| p.host.clone())
            .ok_or_else(|| FakeLocateError {
                message: format!("no host route to {pod}'s IPs"),
                never: false,
            })
    }

    fn still_carries(&self, pod: &String, host: &HostInterface) -> bool {
        self.current(pod).and_then(|p| p.host.as_ref()) == Some(host)
    }

    fn netns(&self, pod: &String) -> Result<PathBuf, FakeLocateError> {
        let current = self.current(pod);
        if let Some(why) = current.and_then(|p| p.netns_never.clone()) {
            return Err(FakeLocateError {
                message: why,
                never: true,
            });
        }
        current
            .and_then(|p| p.netns.clone())
            .ok_or_else(|| FakeLocateError {
                message: format!("no process of {pod} yet"),
                never: false,
            })
    }
}

/// What a test can do to a running fake target, and see of it.
#[derive(Debug, Default)]
pub struct FakeEngine {
    packets: AtomicU64,
    stop_requested: AtomicBool,
    /// Set when the engine ended by itself, with the state it reports.
    ended_as: Mutex<Option<TargetState>>,
    budget: Mutex<Option<Arc<Budget>>>,
}

impl FakeEngine {
    /// Records `count` packets of 100 bytes, as far as the capture's budget allows; an engine
    /// refused by the budget ends by itself, as a real one does.
    pub fn record(&self, count: u64) {
        let budget = self.budget.lock().unwrap().clone();
        for _ in 0..count {
            if let Some(budget) = &budget {
                if budget.take(100).is_err() {
                    self.end_by_itself(TargetState::Completed);
                    return;
                }
            }
            self.packets.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends as an engine does when its interface is deleted (`Gone`) or a write fails.
    pub fn end_by_itself(&self, state: TargetState) {
        *self.ended_as.lock().unwrap() = Some(state);
    }

    pub fn was_stopped(&self) -> bool {
        self.stop_requested.load(Ordering::Relaxed)
    }
}

/// A fake target: one segment of one pod interface.
pub struct FakeTarget {
    identity: TargetIdentity,
    segment: u32,
    earlier: Earlier,
    engine: Arc<FakeEngine>,
}

impl Target for FakeTarget {
    fn request_stop(&self) {
        self.engine.stop_requested.store(true, Ordering::Relaxed);
    }

    fn has_ended(&self) -> bool {
        self.engine.ended_as.lock().unwrap().is_some()
    }

    fn finish(&mut self) {}

    fn status(&self, stopping_state: TargetState) -> TargetStatus {
        let ended_as = *self.engine.ended_as.lock().unwrap();
        let state = match ended_as {
            Some(state) => state,
            None if self.engine.was_stopped() => stopping_state,
            None => TargetState::Capturing,
        };
        let packets = self.engine.packets.load(Ordering::Relaxed);
        let name = format!("{}_s{}.pcapng", self.identity.pod, self.segment);
        self.earlier.carry_into(TargetStatus {
            packets,
            bytes: packets * 100,
            files: vec![FileStatus {
                id: name.clone(),
                name,
                packets,
                ..FileStatus::default()
            }],
            error: (ended_as == Some(TargetState::Gone)).then(|| "interface went away".into()),
            ..self.identity.entry(state)
        })
    }
}

/// One call of [`FakeOpener::open`].
#[derive(Debug, Clone)]
pub struct Opened {
    pub pod: String,
    pub host_interface: String,
    /// The pod namespace the target was opened in (capturePoint podNetns).
    pub pod_netns: Option<PathBuf>,
    pub segment: u32,
    pub engine: Arc<FakeEngine>,
}

/// Opens fake targets and remembers every one; pods in `refuse` fail to open.
#[derive(Debug, Default)]
pub struct FakeOpener {
    pub opened: RefCell<Vec<Opened>>,
    pub refuse: RefCell<HashSet<String>>,
}

impl FakeOpener {
    /// The engine of the latest target opened for `pod`.
    pub fn engine(&self, pod: &str) -> Arc<FakeEngine> {
        self.opened
            .borrow()
            .iter()
            .rev()
            .find(|o| o.pod == pod)
            .map(|o| o.engine.clone())
            .unwrap()
    }

    /// (pod, segment) of every open, in order.
    pub fn log(&self) -> Vec<(String, u32)> {
        self.opened
            .borrow()
            .iter()
            .map(|o| (o.pod.clone(), o.segment))
            .collect()
    }
}

impl Opener for FakeOpener {
    type Target = FakeTarget;

    fn open(
        &self,
        _directory: &Path,
        identity: TargetIdentity,
        _spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<FakeTarget, OpenError> {
        if self.refuse.borrow().contains(&identity.pod) {
            return Err(OpenError::Capture(crate::CaptureError::Poll(
                std::io::Error::other(format!("no such device {}", identity.host_interface)),
            )));
        }
        let engine = Arc::new(FakeEngine {
            budget: Mutex::new(budget),
            ..FakeEngine::default()
        });
        let segment = earlier.segments + 1;
        self.opened.borrow_mut().push(Opened {
            pod: identity.pod.clone(),
            host_interface: identity.host_interface.clone(),
            pod_netns: identity.pod_netns.clone(),
            segment,
            engine: engine.clone(),
        });
        Ok(FakeTarget {
            identity,
            segment,
            earlier,
            engine,
        })
    }
}

/// A capture on the fake node: its pods, its opener and its run, driven pass by pass.
pub struct Scene {
    pub pods: FakePods,
    pub opener: FakeOpener,
    pub run: CaptureRun<FakeTarget>,
}

impl Scene {
    /// A capture of `spec` in namespace shop over `pods` (name, app label, host ifindex).
    pub fn new(spec: &CaptureSpec, pods: &[(&str, &str, u32)]) -> Scene {
        Scene::resumed(spec, pods, &[])
    }

    /// The same, carrying on from `earlier` status entries (a restart).
    pub fn resumed(
        spec: &CaptureSpec,
        pods: &[(&str, &str, u32)],
        earlier: &[TargetStatus],
    ) -> Scene {
        let mut fake_pods = FakePods::default();
        for (name, app, ifindex) in pods {
            fake_pods.add(name, app, *ifindex);
        }
        Scene {
            pods: fake_pods,
            opener: FakeOpener::default(),
            run: CaptureRun::resume(NAMESPACE, "cap", spec, NODE, "/nonexistent".into(), earlier),
        }
    }

    /// One reconcile pass `seconds` into the timeline.
    pub fn pass(&mut self, window: WindowState, seconds: i64) -> Option<Ended> {
        self.run
            .reconcile(window, &self.pods, &self.opener, at(seconds))
    }

    /// The entry of `pod`.
    pub fn entry(&self, pod: &str) -> &TargetStatus {
        self.run
            .entries()
            .find(|t| t.key() == key(pod))
            .unwrap_or_else(|| panic!("no entry for {pod}: {:?}", self.run.report()))
    }

    /// The engine of the latest target opened for `pod`.
    pub fn engine(&self, pod: &str) -> Arc<FakeEngine> {
        self.opener.engine(pod)
    }

    /// (pod, segment) of every target opened, in order.
    pub fn opened(&self) -> Vec<(String, u32)> {
        self.opener.log()
    }

    /// How often `pod`'s interface was looked for.
    pub fn lookups(&self, pod: &str) -> usize {
        self.pods
            .located
            .borrow()
            .iter()
            .filter(|p| *p == pod)
            .count()
    }
}
