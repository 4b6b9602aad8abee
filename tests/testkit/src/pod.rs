//! A test "pod": a network namespace `pct{n}` whose `eth0` is one end of a veth pair, the other
//! end `pch{n}` living in the test's (root) namespace like a Kubernetes pod's host-side veth.
//!
//! Tests run in parallel (threads of one process and several test binaries), so every pod owns a
//! slot `n` in 1..=200, taken with an exclusive flock on `/tmp/podcap-test-slot-{n}.lock` and held
//! for the pod's lifetime. The kernel drops the lock with the process, so a crashed test never
//! leaks a slot; leftovers of a crashed test with the same names are deleted at setup. Everything
//! the pod creates is deleted by `Drop`, which also runs when a test panics.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, CloneFlags};

/// Slots are 1..=200: they become the third octet of 10.244.{n}.0/25 and part of the names.
const SLOTS: u16 = 200;

/// Classic BPF for a direct-action tc ingress filter on the host end: drop (TC_ACT_SHOT = 2)
/// IPv4/IPv6 packets of IP protocol 132 (SCTP), 136 (UDPLite) or 47 (GRE), pass (TC_ACT_OK = 0)
/// the rest. The host has no listener for these protocols; without the filter it answers with
/// ICMP protocol unreachable errors, and tshark matches ports and protocols inside ICMP error
/// payloads, which would blur the expected sets of the filter tests. AF_PACKET taps run before
/// tc ingress, so every capturer still sees these packets. (Listening raw sockets would also
/// silence the host, but nix's safe `SockProtocol` cannot name protocols 136 and 47.)
const TC_DROP_RAW_PROTOCOLS: &str = concat!(
    "11,",
    "40 0 0 12,",    // 0: ldh [12]               ethertype
    "21 0 2 2048,",  // 1: jeq #0x0800 ? 2 : 4
    "48 0 0 23,",    // 2: ldb [23]               IPv4 protocol
    "5 0 0 2,",      // 3: ja 6
    "21 0 5 34525,", // 4: jeq #0x86dd ? 5 : 10
    "48 0 0 20,",    // 5: ldb [20]               IPv6 next header
    "21 2 0 132,",   // 6: jeq #132 ? 9 : 7
    "21 1 0 136,",   // 7: jeq #136 ? 9 : 8
    "21 0 1 47,",    // 8: jeq #47 ? 9 : 10
    "6 0 0 2,",      // 9: ret #TC_ACT_SHOT
    "6 0 0 0",       // 10: ret #TC_ACT_OK
);

/// An exclusive claim on slot `n`, released when dropped (or when the process dies).
pub struct Slot {
    pub n: u8,
    _lock: Flock<File>,
}

impl Slot {
    /// Takes the first free slot, starting at a point that differs between processes so that
    /// parallel test binaries rarely race for the same slots.
    pub fn take() -> Slot {
        let start = (std::process::id() % u32::from(SLOTS)) as u16;
        for i in 0..SLOTS {
            let n = (start + i) % SLOTS + 1;
            let path = format!("/tmp/podcap-test-slot-{n}.lock");
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening {path}: {e}"));
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Slot {
                        n: n as u8,
                        _lock: lock,
                    }
                }
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, errno)) => panic!("locking {path}: {errno}"),
            }
        }
        panic!("all {SLOTS} test slots are taken: too many tests running at once?");
    }
}

/// The pod network of one test; deleted on drop.
pub struct Pod {
    slot: Slot,
    /// Held open for the pod's lifetime; see [`kernel_stamps_every_packet`].
    _stamps: std::net::UdpSocket,
    /// `pct{n}`, a name under /var/run/netns.
    pub netns: String,
    /// `pch{n}`, the host end in the test's namespace: where the capturers listen.
    pub host_if: String,
    pub host_mac: [u8; 6],
    pub pod_mac: [u8; 6],
    pub host_v4: Ipv4Addr,
    pub pod_v4: Ipv4Addr,
    pub host_v6: Ipv6Addr,
    pub pod_v6: Ipv6Addr,
    /// Addresses of the VLAN 100 "subnet" (10.244.{n}.128/25). The kernel has no 802.1Q support
    /// (CONFIG_VLAN_8021Q is off), so there are no `.100` subinterfaces: the pod sends tagged
    /// frames with a packet socket and the host drops them after the taps have seen them, with the
    /// tag already stripped by the receive path into the skb metadata, as on any VLAN host.
    pub vlan_host_v4: Ipv4Addr,
    pub vlan_pod_v4: Ipv4Addr,
}

pub const VLAN_ID: u16 = 100;
/// The pod end's name inside its namespace.
pub const POD_IF: &str = "eth0";

impl Pod {
    // No Default: making a Pod creates a network namespace and a veth pair.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Pod {
        let slot = Slot::take();
        let n = slot.n;
        let pod = Pod {
            netns: format!("pct{n}"),
            host_if: format!("pch{n}"),
            // Fixed, locally administered MACs: no need to look them up, and easy to read in dumps.
            host_mac: [0x02, 0x44, 0x00, 0x00, n, 0x01],
            pod_mac: [0x02, 0x44, 0x00, 0x00, n, 0x02],
            host_v4: Ipv4Addr::new(10, 244, n, 1),
            pod_v4: Ipv4Addr::new(10, 244, n, 2),
            host_v6: format!("fd00:244:{n}::1").parse().unwrap(),
            pod_v6: format!("fd00:244:{n}::2").parse().unwrap(),
            vlan_host_v4: Ipv4Addr::new(10, 244, n, 129),
            vlan_pod_v4: Ipv4Addr::new(10, 244, n, 130),
            slot,
            _stamps: kernel_stamps_every_packet(),
        };
        pod.remove_leftovers();
        // If building fails half-way, dropping `pod` while panicking deletes what exists.
        pod.build();
        pod
    }

    pub fn slot(&self) -> u8 {
        self.slot.n
    }

    /// A test of ours that crashed (SIGKILL, abort) with this slot may have left these behind.
    fn remove_leftovers(&self) {
        let _ = quiet("ip", &["link", "del", &self.host_if]);
        let _ = quiet("ip", &["netns", "del", &self.netns]);
    }

    fn build(&self) {
        let (ns, host, n) = (self.netns.as_str(), self.host_if.as_str(), self.slot.n);
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let (host_mac, pod_mac) = (mac(self.host_mac), mac(self.pod_mac));
        run("ip", &["netns", "add", ns]);
        run(
            "ip",
            &[
                "link", "add", host, "address", &host_mac, "type", "veth", "peer", "name", POD_IF,
                "address", &pod_mac, "netns", ns,
            ],
        );
        // Less background noise: no router solicitations, no RA processing, no DAD probes.
        // (Link-local addresses still bring a few MLD/ND frames; the window comparisons allow it.)
        for key in [
            "accept_ra=0",
            "router_solicitations=0",
            "accept_dad=0",
            "dad_transmits=0",
        ] {
            let (name, value) = key.split_once('=').unwrap();
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{host}/{name}"), value)
                .unwrap_or_else(|e| panic!("setting {name} on {host}: {e}"));
        }
        let pod_sysctls: Vec<String> = [
            "accept_ra=0",
            "router_solicitations=0",
            "accept_dad=0",
            "dad_transmits=0",
        ]
        .iter()
        .flat_map(|kv| {
            [
                format!("net.ipv6.conf.{POD_IF}.{kv}"),
                format!("net.ipv6.conf.default.{kv}"),
            ]
        })
        .collect();
        let mut args = vec!["netns", "exec", ns, "sysctl", "-q", "-w"];
        args.extend(pod_sysctls.iter().map(String::as_str));
        run("ip", &args);

        run(
            "ip",
            &["addr", "add", &format!("10.244.{n}.1/25"), "dev", host],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("fd00:244:{n}::1/64"),
                "dev",
                host,
                "nodad",
            ],
        );
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.244.{n}.2/25"),
                "dev",
                POD_IF,
            ],
        );
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("fd00:244:{n}::2/64"),
                "dev",
                POD_IF,
                "nodad",
            ],
        );
        run("ip", &["link", "set", host, "up"]);
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        run("ip", &["-n", ns, "link", "set", POD_IF, "up"]);
        // Static neighbours: no ARP or neighbour solicitation in the middle of the traffic, so the
        // frames of each exchange are exactly the ones the test knows it caused.
        let host_side = ["ip"];
        let pod_side = ["ip", "-n", ns];
        for (side, address, mac, dev) in [
            (&host_side[..], self.pod_v4.to_string(), &pod_mac, host),
            (&host_side[..], self.pod_v6.to_string(), &pod_mac, host),
            (&pod_side[..], self.host_v4.to_string(), &host_mac, POD_IF),
            (&pod_side[..], self.host_v6.to_string(), &host_mac, POD_IF),
        ] {
            let neighbour = [
                "neigh",
                "replace",
                &address,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ];
            run(side[0], &[&side[1..], &neighbour[..]].concat());
        }
        run("tc", &["qdisc", "add", "dev", host, "clsact"]);
        run(
            "tc",
            &[
                "filter",
                "add",
                "dev",
                host,
                "ingress",
                "pref",
                "1",
                "bpf",
                "da",
                "bytecode",
                TC_DROP_RAW_PROTOCOLS,
            ],
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Deleting the host end deletes its peer too; then the namespace. Both are attempted even
        // if one fails, and failures only warn: a panic in drop would hide the test's own failure.
        if let Err(e) = quiet("ip", &["link", "del", &self.host_if]) {
            if std::path::Path::new(&format!("/sys/class/net/{}", self.host_if)).exists() {
                eprintln!("warning: deleting link {}: {e}", self.host_if);
            }
        }
        if let Err(e) = quiet("ip", &["netns", "del", &self.netns]) {
            eprintln!("warning: deleting netns {}: {e}", self.netns);
        }
    }
}

/// A socket that asks for receive timestamps (SO_TIMESTAMPNS), which turns on the kernel's global
/// "timestamps needed" switch while it is open. With the switch on, the kernel stamps each
/// received packet once, when it is queued, and every packet socket reports that one stamp; with
/// it off, AF_PACKET reads the clock separately for each socket at delivery, so two capturers of
/// the same frame disagree by a microsecond. tcpdump turns it on too; this makes it independent
/// of which capturers happen to be running on the machine.
fn kernel_stamps_every_packet() -> std::net::UdpSocket {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a timestamping socket");
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimestampns,
        &true,
    )
    .expect("setting SO_TIMESTAMPNS");
    socket
}

/// Runs `f` on a dedicated thread inside the pod's network namespace and returns its result.
/// setns(2) moves only the calling thread, which is why it never runs on the test's own thread.
/// A panic in `f` is re-raised here.
pub fn in_pod<T: Send>(pod: &Pod, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{}", pod.netns);
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("entering {path}: {e}"));
            f()
        });
        match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs a set-up command; panics with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) {
    if let Err(e) = quiet(program, args) {
        panic!("{e}");
    }
}

/// Runs a command, returning its stderr as the error if it fails.
pub fn quiet(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("starting {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
