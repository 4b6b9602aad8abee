//! The node agent's pod source for the shared reconciler ([`crate::reconcile`]): the pods the
//! API server lists on this node (mirrored by `watch`), of which a capture wants those in its
//! namespace that are Running, not being deleted, have IPs, and match its `podSelector` — on a
//! node whose labels match its `nodeSelector`. A pod's host-side interface is found by
//! [`crate::podnet`] when its target starts, and re-checked (one ioctl) every pass.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use capture_spec::{CaptureSpec, TargetKey};
use k8s_openapi::api::core::v1::Pod;

use crate::podnet::{self, HostInterface, PodNetError, PodNetwork, Strategies};
use crate::reconcile::{PodSource, Wanted};

/// This node's pods as of one pass.
pub struct NodePods<'a> {
    pub node: &'a str,
    /// This node's labels, for `spec.nodeSelector`.
    pub labels: &'a BTreeMap<String, String>,
    pub pods: &'a [Arc<Pod>],
    pub strategies: &'a Strategies,
}

impl PodSource for NodePods<'_> {
    type Pod = PodNetwork;
    type Error = PodNetError;

    fn wanted(&self, namespace: &str, spec: &CaptureSpec) -> Option<Vec<Wanted<PodNetwork>>> {
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
                    let network = live_network(p)?;
                    Some(Wanted {
                        key: TargetKey {
                            node: self.node.to_string(),
                            pod: p.metadata.name.clone()?,
                            interface: self.strategies.pod_interface.clone(),
                        },
                        namespace: namespace.to_string(),
                        uid: network.uid.clone(),
                        pod: network,
                    })
                })
                .collect(),
        )
    }

    fn locate(&self, pod: &PodNetwork) -> Result<HostInterface, PodNetError> {
        podnet::resolve(pod, self.strategies)
    }

    fn still_carries(&self, _pod: &PodNetwork, host: &HostInterface) -> bool {
        podnet::still_valid(host)
    }
}

/// What podnet needs of a pod that may be captured: Running, not being deleted, with a uid and
/// IPs; None for any other pod.
fn live_network(pod: &Pod) -> Option<PodNetwork> {
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
    Some(PodNetwork {
        uid: pod.metadata.uid.clone()?,
        ips,
        mac: None,
    })
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
        assert_eq!(
            wanted[0].pod.ips,
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
}
