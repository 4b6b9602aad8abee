//! A target of a standalone capture: one pod's interface, keyed by namespace, pod and host
//! interface, run by capture-agent's shared [`capture_agent::target::TargetRun`] (its own engine
//! thread and file segments in the capture's directory; an API restart starts a new segment).

use std::path::Path;
use std::sync::Arc;

use capture_agent::budget::Budget;
use capture_agent::target::{TargetIdentity, TargetRun};
use capture_agent::CaptureError;
use capture_spec::CaptureSpec;

pub use capture_agent::target::{file_status, Earlier};

/// Which pod interface a target captures (in standalone mode, the host-side interface).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub namespace: String,
    pub pod: String,
    pub interface: String,
}

/// Opens the capture of `key` on `node` (sockets bound before this returns) and starts its
/// thread, in segment `earlier.segments + 1`.
pub fn start(
    directory: &Path,
    key: &TargetKey,
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
    TargetRun::start(directory, identity, spec, earlier, budget)
}
