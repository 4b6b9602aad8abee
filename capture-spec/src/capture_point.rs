//! Where a capture's socket sees a pod's packets (`spec.capturePoint`): on the host side of the
//! pod's veth (`hostVeth`, the default), or on the pod's own interface inside its network
//! namespace (`podNetns`). eBPF datapaths that hand packets straight to the pod
//! (`bpf_redirect_peer`, netkit) bypass the host side, so only `podNetns` sees those. Either way
//! a file's directions are the pod's: a packet the pod sends is outbound.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `spec.capturePoint`: where a capture sees a pod's packets, `hostVeth` (the pod's host-side
/// veth, the default) or `podNetns` (the pod's own interface inside its network namespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum CapturePoint {
    /// The pod's host-side interface (its veth's host end), from the node's network namespace.
    #[default]
    HostVeth,
    /// The pod's own interface (`eth0`) inside its network namespace: also sees what eBPF
    /// datapaths redirect past the host side. In a cluster the node agent needs the
    /// netns-fallback overlay's privileges (hostPID, SYS_ADMIN, SYS_PTRACE) to enter pods.
    PodNetns,
}

impl CapturePoint {
    /// Every capture point, in the order forms and help texts list them.
    pub const ALL: [CapturePoint; 2] = [CapturePoint::HostVeth, CapturePoint::PodNetns];

    /// The name the spec uses: `hostVeth`, `podNetns`.
    pub fn api_name(self) -> &'static str {
        match self {
            CapturePoint::HostVeth => "hostVeth",
            CapturePoint::PodNetns => "podNetns",
        }
    }

    /// The name command lines use: `host-veth`, `pod-netns`.
    pub fn cli_name(self) -> &'static str {
        match self {
            CapturePoint::HostVeth => "host-veth",
            CapturePoint::PodNetns => "pod-netns",
        }
    }

    /// True for the default (`hostVeth`), which specs leave out when they are written: a spec
    /// that does not ask for `podNetns` reads the same to an agent that predates the field.
    pub fn is_default(&self) -> bool {
        *self == CapturePoint::HostVeth
    }
}

impl fmt::Display for CapturePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// A capture point that is neither `hostVeth` nor `podNetns`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capture point {0:?}: use hostVeth (host-veth) or podNetns (pod-netns)")]
pub struct UnknownCapturePoint(pub String);

impl FromStr for CapturePoint {
    type Err = UnknownCapturePoint;

    /// Either spelling, any case: `podNetns`, `pod-netns`, `PODNETNS`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let squashed: String = text
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match squashed.as_str() {
            "hostveth" => Ok(CapturePoint::HostVeth),
            "podnetns" => Ok(CapturePoint::PodNetns),
            _ => Err(UnknownCapturePoint(text.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_and_the_spec_form_is_written() {
        for point in CapturePoint::ALL {
            assert_eq!(point.api_name().parse::<CapturePoint>(), Ok(point));
            assert_eq!(point.cli_name().parse::<CapturePoint>(), Ok(point));
            assert_eq!(
                serde_json::to_value(point).unwrap(),
                serde_json::json!(point.api_name())
            );
        }
        assert_eq!("PODNETNS".parse(), Ok(CapturePoint::PodNetns));
        assert_eq!(
            "eth0".parse::<CapturePoint>().unwrap_err().to_string(),
            "unknown capture point \"eth0\": use hostVeth (host-veth) or podNetns (pod-netns)"
        );
        assert!(serde_json::from_value::<CapturePoint>(serde_json::json!("pod-netns")).is_err());
    }
}
