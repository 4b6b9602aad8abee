//! The standalone runner's pod source for the shared reconciler
//! ([`capture_agent::reconcile`]): the pods discovered on this machine ([`crate::pods`]), each
//! already mapped to its host interface. A capture wants those of its namespace that match its
//! `podSelector`; all of them live on this machine, which a `nodeSelector` can only name by
//! `kubernetes.io/hostname`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use capture_agent::podnet::HostInterface;
use capture_agent::reconcile::{PodSource, Wanted};
use capture_spec::{CaptureSpec, TargetKey};

use crate::pods::LocatedPod;

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
    /// Discovery found the host interface already.
    type Pod = HostInterface;
    type Error = Infallible;

    fn wanted(&self, namespace: &str, spec: &CaptureSpec) -> Option<Vec<Wanted<HostInterface>>> {
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
                    // Standalone targets are named by their host interface.
                    key: TargetKey {
                        node: self.node.clone(),
                        pod: found.pod.name.clone(),
                        interface: found.pod.interface.clone(),
                    },
                    namespace: namespace.to_string(),
                    // A namespace or veth made again has a new interface index.
                    uid: found.host.ifindex.to_string(),
                    pod: found.host.clone(),
                })
                .collect(),
        )
    }

    fn locate(&self, host: &HostInterface) -> Result<HostInterface, Infallible> {
        Ok(host.clone())
    }

    fn still_carries(&self, found: &HostInterface, running: &HostInterface) -> bool {
        found == running
    }
}

#[cfg(test)]
mod tests {
    use capture_agent::podnet::Method;

    use super::*;
    use crate::pods::Pod;

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
        let before = found("shop", "web-1", "web", 7).host;
        let again = found("shop", "web-1", "web", 70).host;
        assert!(source.still_carries(&before, &before));
        assert!(!source.still_carries(&again, &before));
    }
}
