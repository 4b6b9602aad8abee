//! The standalone runner's pod source for the shared reconciler
//! ([`capture_agent::reconcile`]): the pods discovered on this machine ([`crate::pods`]), each
//! already mapped to its host interface. A capture wants those of its namespace that match its
//! `podSelector`; all of them live on this machine, which a `nodeSelector` can only name by
//! `kubernetes.io/hostname`. With `capturePoint: podNetns` a target is the pod's own end of its
//! veth inside the pod's namespace, and is named after it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capture_agent::podnet::HostInterface;
use capture_agent::reconcile::{LocateError, PodSource, Wanted};
use capture_spec::{CapturePoint, CaptureSpec, TargetKey};

use crate::pods::LocatedPod;

/// Why a pod of this machine cannot be captured where the capture asks.
#[derive(Debug, thiserror::Error)]
pub enum MachinePodError {
    #[error(
        "pod {pod} is the host interface {interface} named by the inventory, not a network \
         namespace: capturePoint podNetns cannot enter it; capture it with capturePoint hostVeth, \
         or list it in the inventory by its netns"
    )]
    NoNamespace { pod: String, interface: String },
}

impl LocateError for MachinePodError {
    fn is_permanent(&self) -> bool {
        // The inventory entry would have to change; the pod then has another uid anyway.
        true
    }
}

/// The label by which a `nodeSelector` names this machine.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// This machine's pods as of one pass.
pub struct MachinePods {
    node: String,
    /// None when discovery failed this pass: running targets are kept.
    pods: Option<Vec<LocatedPod>>,
}

impl MachinePods {
    pub fn new(node: &str, pods: Option<Vec<LocatedPod>>) -> MachinePods {
        MachinePods {
            node: node.to_string(),
            pods,
        }
    }
}

impl PodSource for MachinePods {
    /// Discovery found the host interface (and the namespace) already.
    type Pod = LocatedPod;
    type Error = MachinePodError;

    fn wanted(&self, namespace: &str, spec: &CaptureSpec) -> Option<Vec<Wanted<LocatedPod>>> {
        let pods = self.pods.as_ref()?;
        let node_labels = BTreeMap::from([(HOSTNAME_LABEL.to_string(), self.node.clone())]);
        if !spec.selects_node(&node_labels) {
            return Some(Vec::new());
        }
        Some(
            pods.iter()
                .filter(|found| {
                    found.pod.namespace == namespace && spec.pod_selector.matches(&found.pod.labels)
                })
                .map(|found| Wanted {
                    // Standalone targets are named by the interface captured: the host end,
                    // or the pod's own end inside its namespace.
                    key: TargetKey {
                        node: self.node.clone(),
                        pod: found.pod.name.clone(),
                        interface: match (spec.capture_point, &found.netns) {
                            (CapturePoint::PodNetns, Some(netns)) => netns.interface.clone(),
                            _ => found.pod.interface.clone(),
                        },
                    },
                    namespace: namespace.to_string(),
                    // A namespace or veth made again has a new interface index.
                    uid: found.host.ifindex.to_string(),
                    pod: found.clone(),
                })
                .collect(),
        )
    }

    fn locate(&self, found: &LocatedPod) -> Result<HostInterface, MachinePodError> {
        Ok(found.host.clone())
    }

    fn still_carries(&self, found: &LocatedPod, running: &HostInterface) -> bool {
        found.host == *running
    }

    fn netns(&self, found: &LocatedPod) -> Result<PathBuf, MachinePodError> {
        found
            .netns
            .as_ref()
            .map(|netns| netns.path.clone())
            .ok_or_else(|| MachinePodError::NoNamespace {
                pod: format!("{}/{}", found.pod.namespace, found.pod.name),
                interface: found.host.name.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use capture_agent::podnet::Method;

    use super::*;
    use crate::pods::{Pod, PodNamespace};

    fn found(namespace: &str, name: &str, app: &str, ifindex: u32) -> LocatedPod {
        LocatedPod {
            pod: Pod {
                namespace: namespace.into(),
                name: name.into(),
                labels: BTreeMap::from([("app".to_string(), app.to_string())]),
                node: "box".into(),
                interface: format!("veth-{name}"),
            },
            host: HostInterface {
                ifindex,
                name: format!("veth-{name}"),
                method: Method::Netns,
            },
            netns: Some(PodNamespace {
                path: PathBuf::from(format!("/var/run/netns/{name}")),
                interface: "eth0".into(),
            }),
        }
    }

    fn spec(json: &str) -> CaptureSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn selects_by_namespace_labels_and_hostname_only() {
        let source = MachinePods::new(
            "box",
            Some(vec![
                found("shop", "web-1", "web", 7),
                found("shop", "db-1", "db", 8),
                found("other", "web-2", "web", 9),
            ]),
        );
        let web = spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}}"#);
        let wanted = source.wanted("shop", &web).unwrap();
        assert_eq!(wanted.len(), 1);
        assert_eq!(
            wanted[0].key,
            TargetKey {
                node: "box".into(),
                pod: "web-1".into(),
                interface: "veth-web-1".into()
            }
        );
        assert_eq!(wanted[0].uid, "7");
        let here = spec(r#"{"nodeSelector": {"kubernetes.io/hostname": "box"}}"#);
        assert_eq!(source.wanted("shop", &here).unwrap().len(), 2);
        for elsewhere in [
            r#"{"nodeSelector": {"kubernetes.io/hostname": "other"}}"#,
            r#"{"nodeSelector": {"zone": "a"}}"#,
        ] {
            assert!(source.wanted("shop", &spec(elsewhere)).unwrap().is_empty());
        }
        assert!(MachinePods::new("box", None).wanted("shop", &web).is_none());
    }

    #[test]
    fn a_veth_made_again_no_longer_carries_the_pod() {
        let source = MachinePods::new("box", None);
        let before = found("shop", "web-1", "web", 7);
        let again = found("shop", "web-1", "web", 70);
        assert!(source.still_carries(&before, &before.host));
        assert!(!source.still_carries(&again, &before.host));
    }

    #[test]
    fn pod_netns_targets_are_the_pods_own_interface_in_its_namespace() {
        let mut named = found("shop", "legacy", "web", 9);
        named.netns = None;
        let source = MachinePods::new("box", Some(vec![found("shop", "web-1", "web", 7), named]));
        let inside = spec(r#"{"capturePoint": "podNetns"}"#);
        let wanted = source.wanted("shop", &inside).unwrap();
        let (web, legacy) = (&wanted[0], &wanted[1]);
        assert_eq!(
            (web.key.pod.as_str(), legacy.key.pod.as_str()),
            ("web-1", "legacy")
        );
        assert_eq!(web.key.interface, "eth0");
        assert_eq!(
            source.netns(&web.pod).unwrap(),
            PathBuf::from("/var/run/netns/web-1")
        );
        // An inventory pod named by its host interface keeps that name, and cannot be entered.
        assert_eq!(legacy.key.interface, "veth-legacy");
        let error = source.netns(&legacy.pod).unwrap_err();
        assert!(error.is_permanent());
        assert!(
            error.to_string().contains("capturePoint hostVeth"),
            "{error}"
        );
        let outside = source.wanted("shop", &spec("{}")).unwrap();
        assert_eq!(outside[0].key.interface, "veth-web-1");
    }
}
