//! The benchmark's "pod": a network namespace whose `eth0` is one end of a
//! veth pair, the other end living in the root namespace like a Kubernetes
//! pod's host-side veth. All traffic of the benchmark goes from the pod to the
//! host end, where the capturers listen and where a tc ingress filter drops
//! every frame right after the packet taps have seen it, so nothing goes further
//! than the veth. `Pod` deletes what it created when dropped; leftovers of
//! earlier, killed benchmark processes are removed at start by name prefix.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// Namespace names are `podcap-bench-<pid>`.
const NETNS_PREFIX: &str = "podcap-bench-";
/// Host-side link names are `pcbh<pid>` (interface names are limited to 15 bytes).
const HOST_LINK_PREFIX: &str = "pcbh";
/// The pod's interface, inside its namespace.
pub const POD_LINK: &str = "eth0";
pub const POD_ADDR: &str = "10.244.250.2";
pub const HOST_ADDR: &str = "10.244.250.1";
const PREFIX_LEN: &str = "24";

/// Classic BPF program `ret #2`: in a direct-action tc filter, 2 is TC_ACT_SHOT,
/// i.e. drop. The obvious `matchall action drop` needs cls_matchall and
/// act_gact, which this kernel lacks; cls_bpf with classic bytecode is built in.
const TC_DROP_ALL_BYTECODE: &str = "1,6 0 0 2,";

/// A pod network owned by this process; deleted on drop.
#[derive(Debug)]
pub struct Pod {
    pub netns: String,
    pub host_link: String,
    created_netns: bool,
    created_link: bool,
}

impl Pod {
    /// Creates the namespace, the veth pair, addresses, the static neighbour
    /// entry and the ingress drop filter.
    pub fn create() -> Result<Pod> {
        let pid = std::process::id();
        let mut pod = Pod {
            netns: format!("{NETNS_PREFIX}{pid}"),
            host_link: format!("{HOST_LINK_PREFIX}{pid}"),
            created_netns: false,
            created_link: false,
        };
        // On error `pod` is dropped here, which deletes whatever was created so far.
        pod.build().context("building the pod network")?;
        Ok(pod)
    }

    fn build(&mut self) -> Result<()> {
        let (ns, host) = (self.netns.clone(), self.host_link.clone());
        run("ip", &["netns", "add", &ns])?;
        self.created_netns = true;
        run(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", POD_LINK, "netns", &ns,
            ],
        )?;
        self.created_link = true;

        // No IPv6 on either end: router solicitations, MLD reports and DAD
        // probes would otherwise add stray frames to the counters.
        fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1")
            .with_context(|| format!("disabling IPv6 on {host}"))?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sh",
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{POD_LINK}/disable_ipv6"),
            ],
        )?;

        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{HOST_ADDR}/{PREFIX_LEN}"),
                "dev",
                &host,
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{POD_ADDR}/{PREFIX_LEN}"),
                "dev",
                POD_LINK,
            ],
        )?;
        run("ip", &["link", "set", &host, "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", &ns, "link", "set", POD_LINK, "up"])?;

        // The host end drops everything it receives, so it would never answer
        // ARP: give the pod a permanent entry for the host end's MAC.
        let host_mac = fs::read_to_string(format!("/sys/class/net/{host}/address"))
            .with_context(|| format!("reading the MAC address of {host}"))?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "neigh",
                "replace",
                HOST_ADDR,
                "lladdr",
                host_mac.trim(),
                "dev",
                POD_LINK,
                "nud",
                "permanent",
            ],
        )?;

        // AF_PACKET taps run before tc ingress, so capturers on the host end see
        // every frame, and the drop keeps the traffic out of the host's stack
        // (no ICMP port unreachable, no socket lookups).
        run("tc", &["qdisc", "add", "dev", &host, "clsact"])?;
        run(
            "tc",
            &[
                "filter",
                "add",
                "dev",
                &host,
                "ingress",
                "pref",
                "1",
                "bpf",
                "da",
                "bytecode",
                TC_DROP_ALL_BYTECODE,
            ],
        )?;
        Ok(())
    }

    /// A counter of the host end, e.g. `rx_packets`.
    pub fn host_counter(&self, name: &str) -> Result<u64> {
        read_u64(&format!(
            "/sys/class/net/{}/statistics/{name}",
            self.host_link
        ))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes its peer too.
        if self.created_link {
            if let Err(error) = run("ip", &["link", "del", &self.host_link]) {
                eprintln!(
                    "warning: could not delete link {}: {error:#}",
                    self.host_link
                );
            }
        }
        if self.created_netns {
            if let Err(error) = run("ip", &["netns", "del", &self.netns]) {
                eprintln!("warning: could not delete netns {}: {error:#}", self.netns);
            }
        }
    }
}

/// Deletes namespaces and links of earlier benchmark processes that no longer
/// exist (killed with SIGKILL, or crashed before their guards ran). Names of a
/// still running benchmark are left alone.
pub fn remove_leftovers() -> Result<()> {
    // Links first: deleting a namespace also deletes the veth pair, and
    // deleting the veth first leaves an empty namespace to delete.
    for entry in fs::read_dir("/sys/class/net").context("listing /sys/class/net")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if owner_is_gone(&name, HOST_LINK_PREFIX) {
            eprintln!("removing leftover link {name}");
            run("ip", &["link", "del", &name])?;
        }
    }
    let namespaces = output("ip", &["netns", "list"])?;
    for name in namespaces
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if owner_is_gone(name, NETNS_PREFIX) {
            eprintln!("removing leftover namespace {name}");
            run("ip", &["netns", "del", name])?;
        }
    }
    Ok(())
}

/// True for `<prefix><pid>` names whose pid is not a running process.
pub fn owner_is_gone(name: &str, prefix: &str) -> bool {
    let Some(pid) = name.strip_prefix(prefix) else {
        return false;
    };
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !Path::new(&format!("/proc/{pid}")).exists()
}

fn read_u64(path: &str) -> Result<u64> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing {path}: {text:?}"))
}

/// Runs a set-up command and fails with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    output(program, args).map(drop)
}

/// Runs a short command and returns its stdout.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("starting {program}"))?;
    succeeded(program, args, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with `input` on its stdin (e.g. `ip -batch -`), its stdout discarded, and
/// fails with its stderr if it fails.
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("writing to {program}'s stdin"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {program}"))?;
    succeeded(program, args, &out)
}

/// The one rule for a failed set-up command: its command line, exit status and stderr.
fn succeeded(program: &str, args: &[&str], out: &Output) -> Result<()> {
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
