//! Strategy 3, the fallback for any CNI: ask the pod's own network namespace.
//!
//! A process of the pod (found by its cgroup) gives the namespace as /proc/<pid>/ns/net. Inside
//! it, the pod's `eth0` is one end of a veth pair, and its IFLA_LINK is the other end's ifindex
//! on the host. The query runs on a short-lived thread that setns(2)s into the pod namespace and
//! opens a netlink socket there (a socket answers for the namespace it was created in; sysfs would
//! still show the mounter's namespace). setns moves only that thread, which ends right after, so
//! no other thread of the agent ever runs in a pod's namespace.
//!
//! An ifindex alone is ambiguous across namespaces (most pods' eth0 have the same small index),
//! so the answer is checked from both sides before it is believed: the pod's eth0 peers into the
//! agent's namespace, and the host interface is a veth whose peer is that eth0 in that pod's
//! namespace (same index, same namespace id).
//!
//! Privileges: setns into a network namespace needs CAP_SYS_ADMIN; opening another process's
//! /proc/<pid>/ns/net needs ptrace read access to it (root, or CAP_SYS_PTRACE for processes of
//! other users); seeing pod processes at all needs the host PID namespace (hostPID).
//!
//! The same two-sided check maps a standalone pod — a network namespace made with `ip netns
//! add`, bind-mounted in /var/run/netns — to its host end ([`find_for_namespace`]); there the
//! namespace file is given, and its veth may have any name.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

use super::cgroup;
use super::error::StrategyError;
use super::netlink::{Link, Netlink};

/// Distinct pod namespaces tried at most. All processes of a pod share one; more than one means
/// processes in the pod's cgroup that joined another namespace, which is rare and bounded here.
const MAX_NAMESPACES: usize = 4;

const HINT_PROCESSES: &str = "the agent needs the host's PID namespace (hostPID) to see pod \
    processes; `grep -l pod<uid> /proc/*/cgroup` lists them";
const HINT_PERMISSION: &str =
    "entering a pod's network namespace needs CAP_SYS_ADMIN, and opening \
    /proc/<pid>/ns/net needs root or CAP_SYS_PTRACE; or disable the netns strategy";
const HINT_PEER: &str = "`nsenter -t <pid> -n ip -d link show <pod interface>` shows the veth \
    and its peer (`@ifN`); the peer must be in the agent's (the host's) network namespace";
const HINT_NAMED_PEER: &str = "`ip -n <namespace> -d link show` shows the namespace's veth and \
    its peer (`@ifN`); the peer must be in the host's network namespace";

/// The processes in a cgroup of the pod with this uid (at least one, or an error saying none).
fn pod_processes(proc_root: &Path, uid: &str) -> Result<Vec<u32>, StrategyError> {
    let pids = cgroup::pids_in_pod(proc_root, uid).map_err(|source| StrategyError::Io {
        what: format!("listing processes in {}", proc_root.display()),
        source,
    })?;
    if pids.is_empty() {
        return Err(StrategyError::NotFound {
            detail: format!(
                "no process in {} is in a cgroup of pod {uid}",
                proc_root.display()
            ),
            hint: HINT_PROCESSES,
        });
    }
    Ok(pids)
}

/// The host end of the veth whose pod end is `pod_interface` in the namespace of a process in
/// the pod's cgroup.
pub(super) fn find(
    netlink: &mut Netlink,
    proc_root: &Path,
    uid: &str,
    pod_interface: &str,
) -> Result<Link, StrategyError> {
    let pids = pod_processes(proc_root, uid)?;
    let (host_ns, host_id) = host_namespace()?;

    let mut seen = Vec::new();
    let mut notes = Vec::new();
    let mut denied = false;
    for pid in pids {
        if seen.len() >= MAX_NAMESPACES {
            break;
        }
        let path = proc_root.join(pid.to_string()).join("ns/net");
        let pod_ns = match File::open(&path) {
            Ok(file) => file,
            // The process exited since the scan.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                denied |= e.kind() == io::ErrorKind::PermissionDenied;
                notes.push(format!("opening {}: {e}", path.display()));
                continue;
            }
        };
        let Ok(id) = namespace_id(&pod_ns) else {
            continue;
        };
        if id == host_id {
            notes.push(format!(
                "process {pid} is in the host's network namespace (a hostNetwork pod has no veth)"
            ));
            break;
        }
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        match host_end(netlink, &pod_ns, &host_ns, PodSide::Named(pod_interface)) {
            Ok((link, _)) => {
                tracing::debug!(pid, interface = %link.name, "pod namespace names its host veth");
                return Ok(link);
            }
            Err(Miss::Denied(detail)) => {
                denied = true;
                notes.push(format!("process {pid}: {detail}"));
            }
            Err(Miss::Note(detail)) => notes.push(format!("process {pid}: {detail}")),
            Err(Miss::Failed(error)) => return Err(error),
        }
    }
    let detail = notes.join(", ");
    if denied {
        return Err(StrategyError::Permission {
            detail,
            hint: HINT_PERMISSION,
        });
    }
    Err(StrategyError::NotFound {
        detail,
        hint: HINT_PEER,
    })
}

/// The host end of the veth of the network namespace at `path` (a standalone pod), whatever
/// the namespace calls its end: the one veth whose peer is in the host's namespace and peers
/// back. Returns the host end and the name of the namespace's end.
pub(super) fn find_for_namespace(
    netlink: &mut Netlink,
    path: &Path,
) -> Result<(Link, String), StrategyError> {
    let (host_ns, host_id) = host_namespace()?;
    let pod_ns = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => StrategyError::Permission {
            detail: format!("opening {}", path.display()),
            hint: HINT_PERMISSION,
        },
        _ => StrategyError::Io {
            what: format!("opening {}", path.display()),
            source,
        },
    })?;
    let is_host = namespace_id(&pod_ns).map_err(|source| StrategyError::Io {
        what: format!("reading {}", path.display()),
        source,
    })? == host_id;
    if is_host {
        return Err(StrategyError::NotFound {
            detail: format!("{} is the host's network namespace", path.display()),
            hint: HINT_NAMED_PEER,
        });
    }
    match host_end(netlink, &pod_ns, &host_ns, PodSide::AnyVeth) {
        Ok(ends) => Ok(ends),
        Err(Miss::Denied(detail)) => Err(StrategyError::Permission {
            detail,
            hint: HINT_PERMISSION,
        }),
        Err(Miss::Note(detail)) => Err(StrategyError::NotFound {
            detail: format!("{}: {detail}", path.display()),
            hint: HINT_NAMED_PEER,
        }),
        Err(Miss::Failed(error)) => Err(error),
    }
}

/// The network namespace of the pod with this uid, as the file of a process in the pod's
/// cgroup (`PROC/<pid>/ns/net`, lowest pid first: usually the sandbox's pause process, which
/// lives as long as the pod), for opening a capture socket inside it (capturePoint podNetns).
/// A process in the agent's own namespace is never taken: that would capture the node.
pub(super) fn pod_namespace(proc_root: &Path, uid: &str) -> Result<PathBuf, StrategyError> {
    let pids = pod_processes(proc_root, uid)?;
    let (_, host_id) = host_namespace()?;
    let mut notes = Vec::new();
    let mut denied = false;
    for pid in pids {
        let path = proc_root.join(pid.to_string()).join("ns/net");
        match File::open(&path).and_then(|file| namespace_id(&file)) {
            Ok(id) if id == host_id => {
                notes.push(format!(
                    "process {pid} is in the host's network namespace (a hostNetwork pod has none of its own)"
                ));
                break;
            }
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                denied |= e.kind() == io::ErrorKind::PermissionDenied;
                notes.push(format!("opening {}: {e}", path.display()));
            }
        }
    }
    let detail = notes.join(", ");
    if denied {
        return Err(StrategyError::Permission {
            detail,
            hint: HINT_PERMISSION,
        });
    }
    Err(StrategyError::NotFound {
        detail: format!("pod {uid}: {detail}"),
        hint: HINT_PROCESSES,
    })
}

/// The namespace of this thread — the one a netlink socket it opens answers for — and its id.
fn host_namespace() -> Result<(File, (u64, u64)), StrategyError> {
    let host_ns = File::open("/proc/thread-self/ns/net").map_err(|source| StrategyError::Io {
        what: "opening /proc/thread-self/ns/net".to_string(),
        source,
    })?;
    let host_id = namespace_id(&host_ns).map_err(|source| StrategyError::Io {
        what: "reading /proc/thread-self/ns/net".to_string(),
        source,
    })?;
    Ok((host_ns, host_id))
}

/// Which interface of a pod's namespace is the pod's end of its veth.
#[derive(Debug, Clone, Copy)]
enum PodSide<'a> {
    /// The interface with this name (Kubernetes: `eth0`).
    Named(&'a str),
    /// Any interface whose peer is in another namespace (standalone pods name theirs freely).
    AnyVeth,
}

/// Why one pod namespace gave no answer.
enum Miss {
    Note(String),
    Denied(String),
    Failed(StrategyError),
}

impl From<super::netlink::NetlinkError> for Miss {
    fn from(error: super::netlink::NetlinkError) -> Miss {
        Miss::Failed(error.into())
    }
}

/// The pod's candidate ends, as seen inside the pod's namespace.
struct PodEnds {
    links: Vec<Link>,
    /// The id the pod's namespace gives the agent's namespace, if it has one.
    host_nsid: Option<i32>,
}

/// The host end of the pod's veth, and the name of the pod's end.
fn host_end(
    netlink: &mut Netlink,
    pod_ns: &File,
    host_ns: &File,
    side: PodSide<'_>,
) -> Result<(Link, String), Miss> {
    let pod_ends = inside(pod_ns, host_ns, side)?;
    let mut notes = Vec::new();
    for pod_link in &pod_ends.links {
        match peer_on_host(netlink, pod_ns, pod_link, pod_ends.host_nsid) {
            Ok(link) => return Ok((link, pod_link.name.clone())),
            Err(Miss::Note(note)) => notes.push(note),
            Err(other) => return Err(other),
        }
    }
    Err(Miss::Note(notes.join(", ")))
}

/// The host end of `pod_link`, checked from both sides.
fn peer_on_host(
    netlink: &mut Netlink,
    pod_ns: &File,
    pod_link: &Link,
    host_nsid: Option<i32>,
) -> Result<Link, Miss> {
    let pod_interface = &pod_link.name;
    let (Some(peer_index), Some(peer_nsid)) = (pod_link.peer_index, pod_link.peer_netnsid) else {
        return Err(Miss::Note(format!(
            "{pod_interface} ({}) has no veth peer in another namespace",
            pod_link.kind_name()
        )));
    };
    if !pod_link.is_pod_facing() {
        return Err(Miss::Note(format!(
            "{pod_interface} is a {}, not a veth",
            pod_link.kind_name()
        )));
    }
    if host_nsid.is_some_and(|host| host != peer_nsid) {
        return Err(Miss::Note(format!(
            "{pod_interface}'s peer is in a namespace other than the agent's"
        )));
    }
    let Some(host_link) = netlink.link(peer_index)? else {
        return Err(Miss::Note(format!(
            "{pod_interface}'s peer ifindex {peer_index} does not exist on the host"
        )));
    };
    // Asked after the host link was read: reading a veth makes the kernel assign its peer
    // namespace an id if it had none.
    let pod_nsid = netlink.nsid_of(pod_ns.as_fd())?;
    let peers_back = host_link.peer_index == Some(pod_link.index)
        && host_link.peer_netnsid.is_some()
        && host_link.peer_netnsid == pod_nsid;
    if !host_link.is_pod_facing() || !peers_back {
        return Err(Miss::Note(format!(
            "host ifindex {peer_index} ({}, {}) is not the peer of the pod's {pod_interface}",
            host_link.name,
            host_link.kind_name()
        )));
    }
    Ok(host_link)
}

/// Reads the pod's candidate ends inside its namespace, on a thread of its own that ends after.
fn inside(pod_ns: &File, host_ns: &File, side: PodSide<'_>) -> Result<PodEnds, Miss> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("podnet-setns".to_string())
            .spawn_scoped(scope, || -> Result<PodEnds, Miss> {
                setns(pod_ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
                    Errno::EPERM => Miss::Denied("setns into the pod's network namespace".into()),
                    other => Miss::Note(format!("setns into the pod's network namespace: {other}")),
                })?;
                let mut netlink = Netlink::open()?;
                let links = match side {
                    PodSide::Named(name) => {
                        let Some(link) = netlink.link_by_name(name)? else {
                            return Err(Miss::Note(format!(
                                "the pod's namespace has no interface {name}"
                            )));
                        };
                        vec![link]
                    }
                    PodSide::AnyVeth => {
                        let links: Vec<Link> = netlink
                            .links()?
                            .into_iter()
                            .filter(|link| link.peer_netnsid.is_some())
                            .collect();
                        if links.is_empty() {
                            return Err(Miss::Note(
                                "the namespace has no interface whose peer is in another namespace"
                                    .into(),
                            ));
                        }
                        links
                    }
                };
                let host_nsid = netlink.nsid_of(host_ns.as_fd())?;
                Ok(PodEnds { links, host_nsid })
            })
            .map_err(|source| {
                Miss::Failed(StrategyError::Io {
                    what: "starting the setns thread".to_string(),
                    source,
                })
            })?;
        worker.join().unwrap_or_else(|_| {
            Err(Miss::Failed(StrategyError::Io {
                what: "the setns thread".to_string(),
                source: io::Error::other("panicked"),
            }))
        })
    })
}

/// A network namespace's identity: the device and inode of its nsfs file.
fn namespace_id(file: &File) -> io::Result<(u64, u64)> {
    let metadata = file.metadata()?;
    Ok((metadata.dev(), metadata.ino()))
}
