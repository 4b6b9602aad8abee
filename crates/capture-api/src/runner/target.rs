//! A target of a standalone capture: one pod's interface, keyed by namespace, pod and host
//! interface, run by capture-agent's shared [`capture_agent::target::TargetRun`] (its own engine
//! thread and file segments in the capture's directory; an API restart starts a new segment).

use std::path::Path;
use std::sync::Arc;

use capture_agent::budget::Budget;
use capture_agent::target::{self, TargetIdentity};
use capture_agent::{CaptureError, LiveView};
use capture_spec::{CaptureSpec, TargetState, TargetStatus};

pub use capture_agent::target::{file_status, Earlier};

/// Which pod interface a target captures (in standalone mode, the host-side interface).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub namespace: String,
    pub pod: String,
    pub interface: String,
}

pub struct TargetRun {
    key: TargetKey,
    run: target::TargetRun,
}

impl TargetRun {
    /// Opens the capture (sockets bound before this returns) and starts its thread.
    pub fn start(
        directory: &Path,
        key: TargetKey,
        node: &str,
        spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<TargetRun, CaptureError> {
        let identity = TargetIdentity {
            namespace: key.namespace.clone(),
            pod: key.pod.clone(),
            interface: key.interface.clone(),
            node: node.to_string(),
            host_interface: key.interface.clone(),
        };
        let run = target::TargetRun::start(directory, identity, spec, earlier, budget)?;
        Ok(TargetRun { key, run })
    }

    pub fn key(&self) -> &TargetKey {
        &self.key
    }

    /// The pcapng description of this target's interface: "namespace/pod on node".
    pub fn description(&self) -> String {
        self.run.identity().description()
    }

    pub fn live(&self) -> &Arc<LiveView> {
        self.run.live()
    }

    /// Asks the engine to drain and stop; [`TargetRun::finish`] waits for it.
    pub fn request_stop(&self) {
        self.run.request_stop();
    }

    /// True once the engine ended by itself (limit reached, interface deleted, write failure).
    pub fn has_ended(&self) -> bool {
        self.run.has_ended()
    }

    /// Waits for the engine thread and keeps its report.
    pub fn finish(&mut self) {
        self.run.finish();
    }

    /// The target's status now: earlier segments plus this one, live or final.
    pub fn status(&self, stopping_state: TargetState) -> TargetStatus {
        self.run.status(stopping_state)
    }
}
