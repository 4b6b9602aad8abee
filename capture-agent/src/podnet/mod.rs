//! Pod → host-side interface: which interface of this node carries one pod's traffic, found
//! without help from the CNI plugin, so the node agent can bind its AF_PACKET ring by ifindex.
//!
//! Three strategies, tried in order, the first answer wins:
//! 1. [`Method::Route`] — routed CNIs (Calico, Cilium, most others) install a host route to each
//!    pod IP, a /32 or /128 whose output device is the pod's veth ([`route`]).
//! 2. [`Method::Bridge`] — bridge CNIs (bridge, flannel, kindnet) put the veth on a bridge such as
//!    cni0: the pod's MAC (the caller's, or the host's neighbour entry for the pod IP) leads to
//!    the bridge port whose forwarding database has learned it ([`bridge`]).
//! 3. [`Method::Netns`] — anything else: a process of the pod (found by its cgroup, [`cgroup`])
//!    gives the pod's network namespace, where `eth0`'s veth peer index names the host end
//!    ([`netns`]). Needs CAP_SYS_ADMIN (setns) and the host PID namespace.
//!
//! Every answer is a veth (or netkit) whose peer lives in another network namespace, which is
//! what a pod's host end is; routes to tunnels, bridges or host-internal veths are not taken.
//! Kernel state is read over rtnetlink ([`netlink`] says why), never by running `ip`.
//!
//! Standalone mode's pods are simpler: a named network namespace (`ip netns add`) is a pod, and
//! [`namespace_host_end`] names its host end with the netns strategy's two-sided check; an
//! interface the operator names outright is taken as it is ([`named_interface`]).
//!
//! A capture inside the pod (capturePoint podNetns) needs the pod's namespace itself: a
//! standalone pod's is its /var/run/netns file ([`namespace_ends`] also names the pod's end of
//! the veth), a Kubernetes pod's is found through a process of the pod like the netns strategy
//! ([`pod_namespace`]), with the same privileges.

mod bridge;
pub mod cgroup;
mod error;
mod netlink;
mod netns;
mod route;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use error::{Attempt, PodNetError, StrategyError};
pub use netlink::NetlinkError;

use netlink::{Link, Netlink};

/// What the agent knows about a pod from the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// metadata.uid; its cgroup is named after it.
    pub uid: String,
    /// status.podIPs (IPv4 and/or IPv6).
    pub ips: Vec<IpAddr>,
    /// The pod's MAC if the caller already knows it; otherwise the bridge strategy looks the pod
    /// IPs up in the host's neighbour table.
    pub mac: Option<[u8; 6]>,
}

/// How an interface was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Route,
    Bridge,
    Netns,
    /// Named by the operator (standalone mode's inventory), not looked for.
    Named,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Route => "route",
            Method::Bridge => "bridge",
            Method::Netns => "netns",
            Method::Named => "named",
        })
    }
}

/// The pod's interface on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub ifindex: u32,
    pub name: String,
    pub method: Method,
}

/// Which strategies to try, and where the netns fallback finds processes.
#[derive(Debug, Clone)]
pub struct Strategies {
    pub route: bool,
    pub bridge: bool,
    /// Needs CAP_SYS_ADMIN (setns) and the host's /proc (hostPID); turn it off when the agent
    /// runs without them.
    pub netns: bool,
    /// The host's /proc: where processes and their cgroups are listed.
    pub proc_root: PathBuf,
    /// The pod's interface inside its namespace (Kubernetes: `eth0`).
    pub pod_interface: String,
}

impl Default for Strategies {
    fn default() -> Strategies {
        Strategies {
            route: true,
            bridge: true,
            netns: true,
            proc_root: PathBuf::from("/proc"),
            pod_interface: "eth0".to_string(),
        }
    }
}

impl Strategies {
    /// Only one strategy, for diagnosis and tests.
    pub fn only(method: Method) -> Strategies {
        Strategies {
            route: method == Method::Route,
            bridge: method == Method::Bridge,
            netns: method == Method::Netns,
            ..Strategies::default()
        }
    }
}

/// Finds the host-side interface of `pod`, trying the enabled strategies in order (route,
/// bridge, netns). The error lists what each strategy tried and what to check.
pub fn resolve(pod: &PodNetwork, strategies: &Strategies) -> Result<HostInterface, PodNetError> {
    let mut netlink = Netlink::open().map_err(|source| PodNetError::Netlink {
        uid: pod.uid.clone(),
        source,
    })?;
    let mut attempts = Vec::new();
    let enabled = [
        (Method::Route, strategies.route),
        (Method::Bridge, strategies.bridge),
        (Method::Netns, strategies.netns),
    ];
    for (method, _) in enabled.iter().filter(|(_, on)| *on) {
        let outcome = match method {
            Method::Route => route::find(&mut netlink, &pod.ips),
            Method::Bridge => bridge::find(&mut netlink, &pod.ips, pod.mac),
            Method::Netns => netns::find(
                &mut netlink,
                &strategies.proc_root,
                &pod.uid,
                &strategies.pod_interface,
            ),
            // Not a strategy: nothing is looked for.
            Method::Named => continue,
        };
        match outcome {
            Ok(link) => {
                let found = HostInterface {
                    ifindex: link.index,
                    name: link.name,
                    method: *method,
                };
                tracing::info!(pod = %pod.uid, interface = %found.name, ifindex = found.ifindex,
                    method = %method, "mapped pod to its host interface");
                return Ok(found);
            }
            Err(error) => {
                tracing::debug!(pod = %pod.uid, method = %method, %error, "strategy found nothing");
                attempts.push(Attempt {
                    method: *method,
                    error,
                });
            }
        }
    }
    if attempts.is_empty() {
        return Err(PodNetError::NothingEnabled {
            uid: pod.uid.clone(),
        });
    }
    Err(PodNetError::Unresolved {
        uid: pod.uid.clone(),
        ips: list(&pod.ips),
        attempts,
    })
}

/// Both ends of a standalone pod's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceEnds {
    /// The end in the host's namespace.
    pub host: HostInterface,
    /// The name of the end inside the pod's namespace (capturePoint podNetns binds it there).
    pub pod_interface: String,
}

/// The host end of the veth of the network namespace at `path` (standalone mode's pods live in
/// /var/run/netns), checked from both sides like the netns strategy. Needs CAP_SYS_ADMIN.
pub fn namespace_host_end(path: &Path) -> Result<HostInterface, StrategyError> {
    Ok(namespace_ends(path)?.host)
}

/// [`namespace_host_end`], with the name the namespace gives its own end.
///
/// Answers are remembered per namespace (its nsfs device and inode) and reused while the host
/// end still has its name and index ([`still_valid`], one ioctl): looking inside a namespace
/// takes a thread that enters it and a netlink dump, and the standalone runner asks about every
/// namespace each second, which for a hundred pods was most of the service's CPU while idle.
pub fn namespace_ends(path: &Path) -> Result<NamespaceEnds, StrategyError> {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Mutex, OnceLock};
    /// Namespaces on a machine are few; past this, something churns: start over.
    const REMEMBERED: usize = 4096;
    static KNOWN: OnceLock<Mutex<HashMap<(u64, u64), NamespaceEnds>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Mutex::default);
    let key = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    if let Some(key) = key {
        let remembered = known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .cloned();
        if let Some(ends) = remembered.filter(|ends| still_valid(&ends.host)) {
            return Ok(ends);
        }
    }
    let ends = look_inside_namespace(path)?;
    if let Some(key) = key {
        let mut known = known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(key, ends.clone());
    }
    Ok(ends)
}

fn look_inside_namespace(path: &Path) -> Result<NamespaceEnds, StrategyError> {
    let mut netlink = Netlink::open()?;
    let (link, pod_interface) = netns::find_for_namespace(&mut netlink, path)?;
    Ok(NamespaceEnds {
        host: HostInterface {
            ifindex: link.index,
            name: link.name,
            method: Method::Netns,
        },
        pod_interface,
    })
}

/// The network namespace of a Kubernetes pod, as a file a capture socket can be opened in
/// (`/proc/<pid>/ns/net` of a process in the pod's cgroup; capturePoint podNetns). Needs what
/// the netns strategy needs: the host's /proc (hostPID) at `strategies.proc_root`, and
/// CAP_SYS_PTRACE for processes of other users; entering it then needs CAP_SYS_ADMIN.
pub fn pod_namespace(pod: &PodNetwork, strategies: &Strategies) -> Result<PathBuf, StrategyError> {
    netns::pod_namespace(&strategies.proc_root, &pod.uid)
}

/// The host interface called `name`, if there is one now.
pub fn named_interface(name: &str) -> Option<HostInterface> {
    let ifindex = nix::net::if_::if_nametoindex(name).ok()?;
    Some(HostInterface {
        ifindex,
        name: name.to_string(),
        method: Method::Named,
    })
}

/// Cheap re-check that an earlier answer still holds: an interface with this name still has
/// this ifindex (one SIOCGIFINDEX). A pod that was recreated gets a new veth, and ifindexes are
/// not reused soon, so a changed or missing index means: resolve again.
pub fn still_valid(interface: &HostInterface) -> bool {
    match nix::net::if_::if_nametoindex(interface.name.as_str()) {
        Ok(index) => index == interface.ifindex,
        Err(nix::errno::Errno::ENODEV) => false,
        Err(errno) => {
            tracing::warn!(interface = %interface.name, %errno, "cannot re-check interface");
            false
        }
    }
}

/// The one pod-facing link among `candidates` (deduplicated by index), or why there is none.
fn single(
    mut candidates: Vec<Link>,
    none: impl FnOnce() -> StrategyError,
    hint: &'static str,
) -> Result<Link, StrategyError> {
    candidates.sort_by_key(|link| link.index);
    candidates.dedup_by_key(|link| link.index);
    match candidates.len() {
        0 => Err(none()),
        1 => Ok(candidates.remove(0)),
        _ => Err(StrategyError::Ambiguous {
            candidates: candidates
                .iter()
                .map(|link| format!("{} (ifindex {})", link.name, link.index))
                .collect(),
            hint,
        }),
    }
}

fn list(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "no IPs".to_string();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
