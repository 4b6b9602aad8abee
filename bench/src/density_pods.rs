//! The density benchmark's pods: N network namespaces the way
//! `capture-api --standalone` discovers pods (capture-api/src/pods.rs): every
//! namespace under /var/run/netns is a pod named after it, in namespace
//! `default`, labelled `podcap.io/netns: <name>`, whose capture interface is
//! the root-namespace end of the veth whose other end is inside it. Names are
//! `podcap-density-<pid>-<i>` (a valid pod name) with host ends `pcd<pid>-<i>`
//! (at most 15 bytes).
//!
//! Every pod's `eth0` has 10.244.251.2/24 — the same in each pod, which is
//! fine because each lives in its own namespace — and a permanent neighbour
//! entry for 10.244.251.1 pointing at its host end's MAC. The host ends have
//! no address at all (nothing is routed in the root namespace), no IPv6, and a
//! tc ingress filter that drops every frame after the packet taps have seen it
//! (as in netns.rs). The set only grows (N = 10, 30, 60, 110 reuse the pods
//! made for smaller N) and deletes everything it made when dropped; leftovers
//! of killed benchmark processes are deleted at start by name.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::netns;

const NETNS_PREFIX: &str = "podcap-density-";
const HOST_LINK_PREFIX: &str = "pcd";
/// The pods' address and the address they send to (their host end's MAC).
pub const POD_ADDR: &str = "10.244.251.2/24";
pub const DST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 244, 251, 1);
/// `ret #2` (TC_ACT_SHOT) for a direct-action cls_bpf filter; see netns.rs.
const TC_DROP_ALL_BYTECODE: &str = "1,6 0 0 2,";

/// One pod of the set.
#[derive(Debug, Clone)]
pub struct DensityPod {
    pub netns: String,
    pub host_link: String,
}

impl DensityPod {
    /// A counter of the host end, e.g. `rx_packets`.
    pub fn host_counter(&self, name: &str) -> Result<u64> {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.host_link);
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        text.trim()
            .parse()
            .with_context(|| format!("parsing {path}: {text:?}"))
    }
}

/// The pods this process made; deleted on drop.
#[derive(Debug, Default)]
pub struct PodSet {
    pods: Vec<DensityPod>,
}

impl PodSet {
    pub fn pods(&self) -> &[DensityPod] {
        &self.pods
    }

    /// Adds pods until there are `count`.
    pub fn grow_to(&mut self, count: usize) -> Result<()> {
        let pid = std::process::id();
        let first = self.pods.len();
        if count <= first {
            return Ok(());
        }
        let new: Vec<DensityPod> = (first..count)
            .map(|i| DensityPod {
                netns: format!("{NETNS_PREFIX}{pid}-{i}"),
                host_link: format!("{HOST_LINK_PREFIX}{pid}-{i}"),
            })
            .collect();
        // Registered before anything is made, so a failure half-way deletes
        // whatever exists of them (drop deletes only what exists).
        self.pods.extend(new.iter().cloned());

        let mut batch = String::new();
        for pod in &new {
            let (ns, host) = (&pod.netns, &pod.host_link);
            batch.push_str(&format!(
                "netns add {ns}\nlink add {host} type veth peer name {} netns {ns}\n",
                netns::POD_LINK
            ));
        }
        ip_batch(&batch, false).context("creating namespaces and veth pairs")?;

        let mut tc = String::new();
        for pod in &new {
            let (ns, host) = (&pod.netns, &pod.host_link);
            // No IPv6 on either end: router solicitations, MLD reports and
            // DAD probes would otherwise make quiet pods not quite quiet.
            fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1")
                .with_context(|| format!("disabling IPv6 on {host}"))?;
            let mac = fs::read_to_string(format!("/sys/class/net/{host}/address"))
                .with_context(|| format!("reading the MAC address of {host}"))?;
            let eth0 = netns::POD_LINK;
            let script = format!(
                "set -e; echo 1 > /proc/sys/net/ipv6/conf/{eth0}/disable_ipv6; \
                 ip addr add {POD_ADDR} dev {eth0}; ip link set lo up; ip link set {eth0} up; \
                 ip neigh replace {DST_ADDR} lladdr {} dev {eth0} nud permanent",
                mac.trim()
            );
            netns::run("ip", &["netns", "exec", ns, "sh", "-c", &script])
                .with_context(|| format!("setting up {ns}"))?;
            netns::run("ip", &["link", "set", host, "up"])?;
            tc.push_str(&format!(
                "qdisc add dev {host} clsact\n\
                 filter add dev {host} ingress pref 1 bpf da bytecode \"{TC_DROP_ALL_BYTECODE}\"\n"
            ));
        }
        batch_command("tc", &tc, false).context("adding the drop filters")?;
        Ok(())
    }
}

impl Drop for PodSet {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the
        // pair; the explicit link deletion covers a half-made pod.
        let mut batch = String::new();
        for pod in &self.pods {
            if Path::new(&format!("/sys/class/net/{}", pod.host_link)).exists() {
                batch.push_str(&format!("link del {}\n", pod.host_link));
            }
            if Path::new(&format!("/var/run/netns/{}", pod.netns)).exists() {
                batch.push_str(&format!("netns del {}\n", pod.netns));
            }
        }
        if !batch.is_empty() {
            if let Err(error) = ip_batch(&batch, true) {
                eprintln!("warning: deleting the density pods: {error:#}");
            }
        }
    }
}

/// Deletes namespaces and links of density benchmarks whose process is gone.
pub fn remove_leftovers() -> Result<()> {
    let mut batch = String::new();
    for entry in fs::read_dir("/sys/class/net").context("listing /sys/class/net")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if owner_is_gone(&name, HOST_LINK_PREFIX) {
            eprintln!("removing leftover link {name}");
            batch.push_str(&format!("link del {name}\n"));
        }
    }
    if let Ok(entries) = fs::read_dir("/var/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_is_gone(&name, NETNS_PREFIX) {
                eprintln!("removing leftover namespace {name}");
                batch.push_str(&format!("netns del {name}\n"));
            }
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    ip_batch(&batch, true)
}

/// True for `<prefix><pid>-<i>` names whose pid is not a running process.
fn owner_is_gone(name: &str, prefix: &str) -> bool {
    let Some((owner, index)) = name.rsplit_once('-') else {
        return false;
    };
    !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) && {
        netns::owner_is_gone(owner, prefix)
    }
}

fn ip_batch(commands: &str, force: bool) -> Result<()> {
    batch_command("ip", commands, force)
}

/// Runs `program -batch -` (with `-force`: go on after a failing line) with
/// `commands` on stdin.
fn batch_command(program: &str, commands: &str, force: bool) -> Result<()> {
    let mut args = vec!["-batch", "-"];
    if force {
        args.insert(0, "-force");
    }
    netns::run_with_input(program, &args, commands)
}

#[cfg(test)]
mod tests {
    use super::owner_is_gone;

    #[test]
    fn leftovers_are_recognised_by_a_dead_owner() {
        let me = std::process::id();
        assert!(!owner_is_gone(&format!("pcd{me}-3"), "pcd"));
        assert!(!owner_is_gone("pcd", "pcd"));
        assert!(!owner_is_gone("pcbh12-1", "pcd"));
        assert!(!owner_is_gone("podcap-density-x-1", "podcap-density-"));
        // pid_max is at most 2^22, so this pid never exists.
        assert!(owner_is_gone("pcd99999999-0", "pcd"));
        assert!(owner_is_gone(
            "podcap-density-99999999-12",
            "podcap-density-"
        ));
    }
}
