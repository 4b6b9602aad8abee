//! How a mode tells the reconciler which pod interfaces a capture wants: a [`PodSource`] is a
//! snapshot of the pods of this node (or machine) for one pass, which selects a capture's pods,
//! finds the host interface that carries a pod's traffic, and says whether an earlier answer
//! still holds. When it cannot find one, its [`LocateError`] says whether the interface may
//! still appear (the target waits) or never will (the target fails). For a capture inside the
//! pods (`capturePoint: podNetns`) it also names each pod's network namespace, or says why it
//! cannot (a pod with no namespace of its own, an agent without the privileges to enter one).

use std::path::PathBuf;

use capture_spec::{CaptureSpec, TargetKey};

use crate::podnet::HostInterface;

/// A pod interface a capture wants recorded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<P> {
    /// Node, pod and interface, as the target's status entry names them.
    pub key: TargetKey,
    /// The pod's namespace.
    pub namespace: String,
    /// Which incarnation of the pod this is (Kubernetes: `metadata.uid`). A pod made again under
    /// the same name has a new one, and its target continues in a new file segment.
    pub uid: String,
    /// What [`PodSource::locate`] needs to find the pod's host interface.
    pub pod: P,
}

/// The pods of one pass, as one mode finds them.
pub trait PodSource {
    /// What the source needs to locate one pod.
    type Pod;
    /// Why a pod's host interface or network namespace cannot be found, and whether it ever can
    /// be.
    type Error: LocateError;

    /// The pod interfaces that capture `spec` of namespace `namespace` selects here now, or
    /// None when they cannot be known this pass (running targets are then left as they are).
    fn wanted(&self, namespace: &str, spec: &CaptureSpec) -> Option<Vec<Wanted<Self::Pod>>>;

    /// The host-side interface that carries `pod`'s traffic.
    fn locate(&self, pod: &Self::Pod) -> Result<HostInterface, Self::Error>;

    /// Whether `host`, found for `pod` earlier, still carries its traffic.
    fn still_carries(&self, pod: &Self::Pod, host: &HostInterface) -> bool;

    /// The network namespace of `pod` (a file such as /var/run/netns/NAME or
    /// /proc/PID/ns/net), in which a capture with `capturePoint: podNetns` binds the interface
    /// its target key names. Asked after [`PodSource::locate`] found the host end.
    fn netns(&self, pod: &Self::Pod) -> Result<PathBuf, Self::Error>;
}

/// Why [`PodSource::locate`] found no host interface for a pod.
pub trait LocateError: std::fmt::Display {
    /// True when the pod can never be captured as it is, whatever the node does next (a
    /// hostNetwork pod has no interface of its own): its target fails and is not tried again
    /// in the capture's window, like one whose ring could not be opened. False when the
    /// interface may still appear (the CNI may still be wiring the pod): the target waits and
    /// is tried again after [`super::RETRY_AFTER`].
    fn is_permanent(&self) -> bool;
}

/// A source that always finds its pods' interfaces (the standalone runner's, which discovered
/// them already) has nothing to say.
impl LocateError for std::convert::Infallible {
    fn is_permanent(&self) -> bool {
        match *self {}
    }
}
