//! Pods on one machine (standalone mode): every network namespace in `/var/run/netns` is a pod
//! named after it, in namespace `default`, labelled `podcap.io/netns: <name>`. Its capture
//! interface is the root-namespace end of its veth, found without help from any CNI by the
//! agent's pod → interface lookup ([`capture_agent::podnet::namespace_host_end`]): over
//! rtnetlink, inside the namespace its veth names its peer, and the peer must point back at it.
//!
//! An optional inventory file (`--inventory pods.yaml`) gives pods the namespaces, names and
//! labels they would have in a cluster, so selectors work the same way:
//!
//! ```yaml
//! pods:
//!   - {namespace: shop, name: web-1, labels: {app: web}, netns: web-1}
//!   - {namespace: shop, name: legacy, labels: {app: legacy}, interface: veth-legacy}
//! ```
//!
//! An entry with `netns` renames that namespace's pod (it keeps its `podcap.io/netns` label);
//! an entry with `interface` adds a pod on that host interface, which has no network namespace
//! podcap knows, so it can only be captured with `capturePoint: hostVeth`. A namespace's pod
//! captured with `capturePoint: podNetns` is recorded on its own end of the veth, inside the
//! namespace, and its target is named after that interface (`eth0`) rather than the host end. The file is read at every
//! discovery, so edits apply without a restart; a broken file is reported and ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use capture_agent::podnet::{self, HostInterface};
use serde::{Deserialize, Serialize};

/// Where `ip netns add` puts named network namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// The label every discovered pod carries, so a selector can pick one namespace.
pub const NETNS_LABEL: &str = "podcap.io/netns";

/// A pod as the API shows it and the capture runner uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node: String,
    /// The host-side interface podcap captures on.
    pub interface: String,
}

/// A pod and the host interface that carries its traffic, as discovery found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedPod {
    pub pod: Pod,
    pub host: HostInterface,
    /// Its network namespace and its own end of the veth there (capturePoint podNetns); None
    /// for an inventory pod named by its host interface.
    pub netns: Option<PodNamespace>,
}

/// A standalone pod's network namespace and the interface it calls its own there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespace {
    /// /var/run/netns/NAME.
    pub path: PathBuf,
    /// The pod's end of its veth, inside the namespace (often `eth0`).
    pub interface: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("listing {NETNS_DIR}: {0}")]
    ListNamespaces(#[source] std::io::Error),
}

/// The inventory file, set once at start-up.
static INVENTORY: OnceLock<PathBuf> = OnceLock::new();

/// Uses `path` as the inventory from now on (call once, at start-up).
pub fn use_inventory(path: PathBuf) {
    let _ = INVENTORY.set(path);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory {
    #[serde(default)]
    pods: Vec<InventoryPod>,
}

/// One pod of the inventory: a netns renamed, or a host interface added as a pod.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryPod {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub netns: Option<String>,
    pub interface: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading the inventory {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the inventory {path} is not valid: {message}. Each pod needs namespace, name, and netns or interface")]
    Invalid { path: String, message: String },
}

/// Reads and checks an inventory file (also used at start-up to refuse a broken one).
pub fn read_inventory(path: &Path) -> Result<Vec<InventoryPod>, InventoryError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: shown.clone(),
        source,
    })?;
    let inventory: Inventory =
        serde_norway::from_str(&text).map_err(|e| InventoryError::Invalid {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    for (index, pod) in inventory.pods.iter().enumerate() {
        let invalid = |message: String| InventoryError::Invalid {
            path: shown.clone(),
            message: format!("pods[{index}]: {message}"),
        };
        capture_spec::names::validate_namespace(&pod.namespace)
            .map_err(|e| invalid(e.to_string()))?;
        capture_spec::names::validate_name(&pod.name).map_err(|e| invalid(e.to_string()))?;
        for (key, value) in &pod.labels {
            capture_spec::label::validate_label_key(key).map_err(|e| invalid(e.to_string()))?;
            capture_spec::label::validate_label_value(value).map_err(|e| invalid(e.to_string()))?;
        }
        if pod.netns.is_some() == pod.interface.is_some() {
            return Err(invalid("give exactly one of netns or interface".into()));
        }
    }
    Ok(inventory.pods)
}

/// Applies the inventory (if any) to the discovered pods.
fn apply_inventory(pods: &mut Vec<LocatedPod>, node: &str) {
    let Some(path) = INVENTORY.get() else { return };
    let entries = match read_inventory(path) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, "ignoring the inventory until it is fixed");
            return;
        }
    };
    for InventoryPod {
        namespace,
        name,
        labels,
        netns,
        interface,
    } in entries
    {
        match (netns, interface) {
            (Some(netns), _) => {
                if let Some(LocatedPod { pod, .. }) = pods
                    .iter_mut()
                    .find(|p| p.pod.labels.get(NETNS_LABEL) == Some(&netns))
                {
                    pod.namespace = namespace;
                    pod.name = name;
                    pod.labels.extend(labels);
                }
            }
            (None, Some(interface)) => {
                if let Some(host) = podnet::named_interface(&interface) {
                    pods.push(LocatedPod {
                        pod: Pod {
                            namespace,
                            name,
                            labels,
                            node: node.to_string(),
                            interface,
                        },
                        host,
                        netns: None,
                    });
                }
            }
            (None, None) => {}
        }
    }
}

/// This machine's name, used as the node of every standalone pod.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_string())
}

/// Every pod on this machine right now. A namespace without a veth to the root namespace (no
/// capturable interface) is left out.
pub fn discover() -> Result<Vec<Pod>, DiscoveryError> {
    Ok(locate_all()?.into_iter().map(|found| found.pod).collect())
}

/// Every pod on this machine right now, with its host interface.
pub fn locate_all() -> Result<Vec<LocatedPod>, DiscoveryError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DiscoveryError::ListNamespaces(e)),
    };
    let node = node_name();
    let mut pods: Vec<LocatedPod> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let netns = entry.file_name().into_string().ok()?;
            let path = entry.path();
            let ends = podnet::namespace_ends(&path)
                .inspect_err(|error| tracing::debug!(netns, %error, "no pod in this namespace"))
                .ok()?;
            let host = ends.host;
            let labels = BTreeMap::from([(NETNS_LABEL.to_string(), netns.clone())]);
            Some(LocatedPod {
                pod: Pod {
                    namespace: "default".into(),
                    name: netns,
                    labels,
                    node: node.clone(),
                    interface: host.name.clone(),
                },
                host,
                netns: Some(PodNamespace {
                    path,
                    interface: ends.pod_interface,
                }),
            })
        })
        .collect();
    apply_inventory(&mut pods, &node);
    pods.sort_by(|a, b| (&a.pod.namespace, &a.pod.name).cmp(&(&b.pod.namespace, &b.pod.name)));
    Ok(pods)
}
