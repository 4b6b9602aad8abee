//! A target of a capture on this node, as the agent tracks it: the shared
//! [`crate::target::TargetRun`] (one pod interface, its engine thread and file segments in
//! `DATA_DIR/captures/{uid}/`) plus what the agent re-checks every pass: the pod's uid, and the
//! host interface podnet mapped it to and how.

use std::path::Path;
use std::sync::Arc;

use capture_spec::{CaptureSpec, TargetStatus};

use crate::budget::Budget;
use crate::podnet::HostInterface;
use crate::target::{self, Earlier};
use crate::CaptureError;

/// A target within one capture on this node (the node itself is implied).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub pod: String,
    /// The interface as the pod sees it (`eth0`).
    pub interface: String,
}

impl TargetKey {
    pub fn of(status: &TargetStatus) -> TargetKey {
        TargetKey {
            pod: status.pod.clone(),
            interface: status.interface.clone(),
        }
    }
}

/// Who a target is on this node: names for files and status, and the interface it binds.
pub struct TargetIdentity {
    pub key: TargetKey,
    pub namespace: String,
    pub node: String,
    pub pod_uid: String,
    pub host: HostInterface,
}

impl TargetIdentity {
    /// pcapng `if_description`: "namespace/pod on NODE".
    pub fn description(&self) -> String {
        format!("{}/{} on {}", self.namespace, self.key.pod, self.node)
    }
}

/// A running target on this node: who it is, and the shared run that captures it.
pub struct NodeTarget {
    pub identity: TargetIdentity,
    pub run: target::TargetRun,
}

impl NodeTarget {
    /// Opens the capture on the host interface (its ring is bound before this returns) and
    /// starts its thread, in segment `earlier.segments + 1`.
    pub fn start(
        directory: &Path,
        identity: TargetIdentity,
        spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<NodeTarget, CaptureError> {
        let shared = target::TargetIdentity {
            namespace: identity.namespace.clone(),
            pod: identity.key.pod.clone(),
            interface: identity.key.interface.clone(),
            node: identity.node.clone(),
            host_interface: identity.host.name.clone(),
        };
        tracing::debug!(pod = %identity.key.pod, method = %identity.host.method, "pod mapped");
        let run = target::TargetRun::start(directory, shared, spec, earlier, budget)?;
        Ok(NodeTarget { identity, run })
    }
}
