//! The node agent's pod source for the shared reconciler ([`crate::reconcile`]): the pods the
//! API server lists on this node (mirrored by `watch`), of which a capture wants those in its
//! namespace that are Running, not being deleted, have IPs, and match its `podSelector` — on a
//! node whose labels match its `nodeSelector`. A pod's host-side interface is found by
//! [`crate::podnet`] when its target starts, and re-checked (one ioctl) every pass.
//!
//! A hostNetwork pod is wanted like any other, so the capture's status shows it, but it lives
//! in the node's network namespace and has no interface of its own: locating it fails at once
//! with a permanent error, and its target is `Failed` with what to do instead.
//!
//! A capture inside the pods (`capturePoint: podNetns`) takes a pod's network namespace from a
//! process of the pod, as the netns strategy does, so it needs that strategy's privileges
//! (`--netns-fallback`: hostPID, SYS_ADMIN, SYS_PTRACE). An agent without them fails such a
//! target at once, saying which overlay grants them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use capture_spec::{CaptureSpec, TargetKey};
use k8s_openapi::api::core::v1::Pod;

use crate::podnet::{self, HostInterface, PodNetError, PodNetwork, Strategies, StrategyError};
use crate::reconcile::{LocateError, PodSource, Wanted};

/// This node's pods as of one pass.
pub struct NodePods<'a> {
    pub node: &'a str,
    /// This node's labels, for `spec.nodeSelector`.
    pub labels: &'a BTreeMap<String, String>,
    pub pods: &'a [Arc<Pod>],
    pub strategies: &'a Strategies,
}

/// A pod of this node that a capture may want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePod {
    /// A pod in a network namespace of its own: [`crate::podnet`] finds its host end.
    Own(PodNetwork),
    /// A pod with `spec.hostNetwork: true`, named `namespace/name`: it shares the node's
    /// network namespace (its IP is the node's), so no interface carries its traffic alone.
    HostNetwork { uid: String, pod: String },
}

impl NodePod {
    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        match self {
            NodePod::Own(network) => &network.uid,
            NodePod::HostNetwork { uid, .. } => uid,
        }
    }
}

/// Why a pod of this node has no host interface to capture.
#[derive(Debug, thiserror::Error)]
pub enum NodePodError {
    #[error(
        "pod {pod} uses the node's network namespace (hostNetwork: true), so it has no interface \
         of its own to capture: capture the node's interfaces instead, or leave it out with the \
         podSelector"
    )]
    HostNetwork { pod: String },
    #[error(transparent)]
    NotFound(#[from] PodNetError),
    #[error(
        "capturePoint podNetns needs the node agent to enter pod network namespaces, \
         which this agent may not (it runs without --netns-fallback): deploy it with the \
         netns-fallback overlay (kubectl apply -k deploy/overlays/netns-fallback: hostPID, \
         SYS_ADMIN and SYS_PTRACE), or capture with capturePoint hostVeth"
    )]
    PodNetnsNotAllowed,
    #[error("cannot find the pod's network namespace for capturePoint podNetns: {0}")]
    PodNetns(#[source] StrategyError),
}

impl LocateError for NodePodError {
    fn is_permanent(&self) -> bool {
        match self {
            // A pod's hostNetwork cannot change (the pod spec is immutable there).
            NodePodError::HostNetwork { .. } => true,
            // Routes, bridge ports and veths are the kernel's state, which the CNI may still be
            // setting up for a pod that has just started.
            NodePodError::NotFound(_) => false,
            // The agent's privileges are its pod's, which do not change while it runs.
            NodePodError::PodNetnsNotAllowed => true,
            NodePodError::PodNetns(source) => matches!(source, StrategyError::Permission { .. }),
        }
    }
}

impl PodSource for NodePods<'_> {
    type Pod = NodePod;
    type Error = NodePodError;

    fn wanted(&self, namespace: &str, spec: &CaptureSpec) -> Option<Vec<Wanted<NodePod>>> {
        if !spec.selects_node(self.labels) {
            return Some(Vec::new());
        }
        let no_labels = BTreeMap::new();
        Some(
            self.pods
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
                .filter(|p| {
                    spec.pod_selector
                        .matches(p.metadata.labels.as_ref().unwrap_or(&no_labels))
                })
                .filter_map(|p| {
                    let pod = live_network(p)?;
                    Some(Wanted {
                        key: TargetKey {
                            node: self.node.to_string(),
                            pod: p.metadata.name.clone()?,
                            interface: self.strategies.pod_interface.clone(),
                        },
                        namespace: namespace.to_string(),
                        uid: pod.uid().to_string(),
                        pod,
                    })
                })
                .collect(),
        )
    }

    fn locate(&self, pod: &NodePod) -> Result<HostInterface, NodePodError> {
        match pod {
            NodePod::Own(network) => Ok(podnet::resolve(network, self.strategies)?),
            // Not looked for: the strategies would find nothing or, worse, a node interface that
            // carries every host-network pod's traffic and the node's own.
            NodePod::HostNetwork { pod, .. } => Err(NodePodError::HostNetwork { pod: pod.clone() }),
        }
    }

    fn still_carries(&self, _pod: &NodePod, host: &HostInterface) -> bool {
        podnet::still_valid(host)
    }

    fn netns(&self, pod: &NodePod) -> Result<PathBuf, NodePodError> {
        match pod {
            NodePod::Own(_) if !self.strategies.netns => Err(NodePodError::PodNetnsNotAllowed),
            NodePod::Own(network) => {
                podnet::pod_namespace(network, self.strategies).map_err(NodePodError::PodNetns)
            }
            // Never asked (locate refuses first); the same answer if it were.
            NodePod::HostNetwork { pod, .. } => Err(NodePodError::HostNetwork { pod: pod.clone() }),
        }
    }
}

/// A pod that may be captured: Running, not being deleted, with a uid, and either on the node's
/// network (hostNetwork) or with what podnet needs (its IPs); None for any other pod.
fn live_network(pod: &Pod) -> Option<NodePod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let uid = pod.metadata.uid.clone()?;
    if pod.spec.as_ref().and_then(|spec| spec.host_network) == Some(true) {
        return Some(NodePod::HostNetwork {
            uid,
            pod: format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            ),
        });
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
    Some(NodePod::Own(PodNetwork {
        uid,
        ips,
        mac: None,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, app: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                    "labels": {"app": app}},
                "spec": {"nodeName": "node-a", "containers": []},
                "status": {"phase": phase, "podIP": "10.0.0.7",
                    "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]},
            }))
            .unwrap(),
        )
    }

    fn spec(json: serde_json::Value) -> CaptureSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn running_matching_pods_of_the_namespace_are_wanted_on_a_selected_node() {
        let mut deleting = (*pod("web-3", "web", "Running")).clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let pods = [
            pod("web-1", "web", "Running"),
            pod("web-2", "web", "Pending"),
            Arc::new(deleting),
            pod("db-1", "db", "Running"),
        ];
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let strategies = Strategies::default();
        let source = NodePods {
            node: "node-a",
            labels: &labels,
            pods: &pods,
            strategies: &strategies,
        };
        let web = spec(json!({"podSelector": {"matchLabels": {"app": "web"}}}));
        let wanted = source.wanted("shop", &web).unwrap();
        assert_eq!(wanted.len(), 1, "{wanted:?}");
        assert_eq!(
            wanted[0].key,
            TargetKey {
                node: "node-a".into(),
                pod: "web-1".into(),
                interface: "eth0".into()
            }
        );
        assert_eq!(wanted[0].uid, "uid-web-1");
        let NodePod::Own(network) = &wanted[0].pod else {
            panic!("web-1 has a network of its own: {wanted:?}");
        };
        assert_eq!(
            network.ips,
            [
                "10.0.0.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert!(source.wanted("other", &web).unwrap().is_empty());
        let elsewhere = spec(json!({"nodeSelector": {"zone": "b"}}));
        assert!(source.wanted("shop", &elsewhere).unwrap().is_empty());
        let here = spec(json!({"nodeSelector": {"zone": "a"}}));
        assert_eq!(source.wanted("shop", &here).unwrap().len(), 2);
    }

    #[test]
    fn a_host_network_pod_is_wanted_and_can_never_be_located() {
        let mut on_host = (*pod("agent-1", "web", "Running")).clone();
        if let Some(spec) = on_host.spec.as_mut() {
            spec.host_network = Some(true);
        }
        let pods = [Arc::new(on_host)];
        let labels = BTreeMap::new();
        let strategies = Strategies::default();
        let source = NodePods {
            node: "node-a",
            labels: &labels,
            pods: &pods,
            strategies: &strategies,
        };
        let web = spec(json!({"podSelector": {"matchLabels": {"app": "web"}}}));
        let wanted = source.wanted("shop", &web).unwrap();
        assert_eq!(wanted.len(), 1, "{wanted:?}");
        assert_eq!(wanted[0].key.pod, "agent-1");
        assert_eq!(wanted[0].uid, "uid-agent-1");
        assert_eq!(
            wanted[0].pod,
            NodePod::HostNetwork {
                uid: "uid-agent-1".into(),
                pod: "shop/agent-1".into()
            }
        );

        let error = source.locate(&wanted[0].pod).unwrap_err();
        assert!(error.is_permanent(), "{error}");
        assert_eq!(
            error.to_string(),
            "pod shop/agent-1 uses the node's network namespace (hostNetwork: true), so it has \
             no interface of its own to capture: capture the node's interfaces instead, or leave \
             it out with the podSelector"
        );
    }

    #[test]
    fn pod_netns_needs_the_netns_fallback_and_says_which_overlay_grants_it() {
        let pods = [pod("web-1", "web", "Running")];
        let labels = BTreeMap::new();
        let without = Strategies {
            netns: false,
            ..Strategies::default()
        };
        let source = NodePods {
            node: "node-a",
            labels: &labels,
            pods: &pods,
            strategies: &without,
        };
        let web = spec(json!({"capturePoint": "podNetns"}));
        let wanted = source.wanted("shop", &web).unwrap();
        let error = source.netns(&wanted[0].pod).unwrap_err();
        assert!(error.is_permanent(), "{error}");
        let message = error.to_string();
        for needed in [
            "deploy/overlays/netns-fallback",
            "hostPID",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "hostVeth",
        ] {
            assert!(message.contains(needed), "{needed} in {message}");
        }

        // With the fallback, a pod none of whose processes is visible yet waits.
        let empty_proc = std::env::temp_dir().join(format!("podcap-proc-{}", std::process::id()));
        std::fs::create_dir_all(&empty_proc).unwrap();
        let with = Strategies {
            netns: true,
            proc_root: empty_proc.clone(),
            ..Strategies::default()
        };
        let source = NodePods {
            strategies: &with,
            ..source
        };
        let error = source.netns(&wanted[0].pod).unwrap_err();
        std::fs::remove_dir_all(&empty_proc).unwrap();
        assert!(!error.is_permanent(), "{error}");
        assert!(error.to_string().contains("hostPID"), "{error}");
    }

    #[test]
    fn an_interface_not_found_yet_is_not_permanent() {
        // What podnet says of a pod whose veth the CNI has not made yet.
        let error = NodePodError::from(PodNetError::Unresolved {
            uid: "uid-1".into(),
            ips: "10.0.0.7".into(),
            attempts: Vec::new(),
        });
        assert!(!error.is_permanent(), "{error}");
    }
}
