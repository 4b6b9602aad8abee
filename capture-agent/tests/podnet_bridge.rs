//! podnet's bridge strategy against the real kernel: a bridge `pcbr{n}` with two pod veths as
//! ports, pod IPs on the bridge's subnet (as with the bridge/flannel/kindnet CNIs). After one
//! bounded ping the host's neighbour table and the bridge FDB know each pod's MAC, and each pod
//! resolves to its own port — by IPv4, by IPv6 and by a MAC the caller gives; a pod that never
//! sent anything (its entries flushed) is found too, by asking for its address. Needs root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use capture_agent::podnet::{resolve, still_valid, Method, PodNetwork, Strategies, StrategyError};
use podcap_testkit::netlab::Undo;
use podcap_testkit::pod::{run, Slot};
use podcap_testkit::traffic::{icmp_echo, icmpv6_echo};

/// One bridge-CNI "node": bridge `pcbr{n}` (10.244.n.1/24, fd00:244:n::1/64) with pods `a` and
/// `b`, each a namespace `pcb{n}{x}` whose eth0 pairs with the bridge port `pcbh{n}{x}`. The
/// slot makes the names and 10.244.n.0/24 ours; everything is deleted on drop.
struct BridgeNode {
    n: u8,
    bridge: String,
    _undo: Undo,
    _slot: Slot,
}

struct BridgePod {
    port: String,
    mac: [u8; 6],
    v4: Ipv4Addr,
    v6: Ipv6Addr,
}

impl BridgeNode {
    fn new() -> BridgeNode {
        let slot = Slot::take();
        let n = slot.n;
        let bridge = format!("pcbr{n}");
        // Leftovers of a crashed run with this slot.
        for x in ['a', 'b'] {
            let _ = podcap_testkit::pod::quiet("ip", &["link", "del", &format!("pcbh{n}{x}")]);
            let _ = podcap_testkit::pod::quiet("ip", &["netns", "del", &format!("pcb{n}{x}")]);
        }
        let _ = podcap_testkit::pod::quiet("ip", &["link", "del", &bridge]);

        let mut undo = Undo::new();
        undo.run(
            "ip",
            &["link", "add", &bridge, "type", "bridge"],
            &["ip", "link", "del", &bridge],
        );
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{bridge}/accept_dad"), "0").unwrap();
        run(
            "ip",
            &["addr", "add", &format!("10.244.{n}.1/24"), "dev", &bridge],
        );
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("fd00:244:{n}::1/64"),
                "dev",
                &bridge,
                "nodad",
            ],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        for x in ['a', 'b'] {
            let pod = BridgeNode::pod_of(n, x);
            let ns = format!("pcb{n}{x}");
            undo.run("ip", &["netns", "add", &ns], &["ip", "netns", "del", &ns]);
            let mac = mac_string(&pod.mac);
            undo.run(
                "ip",
                &[
                    "link", "add", &pod.port, "type", "veth", "peer", "name", "eth0", "address",
                    &mac, "netns", &ns,
                ],
                &["ip", "link", "del", &pod.port],
            );
            run("ip", &["link", "set", &pod.port, "master", &bridge, "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", pod.v4),
                    "dev",
                    "eth0",
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/64", pod.v6),
                    "dev",
                    "eth0",
                    "nodad",
                ],
            );
            // No router solicitations: the pods should talk only when a test makes them.
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.eth0.router_solicitations=0",
                ],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        }
        BridgeNode {
            n,
            bridge,
            _undo: undo,
            _slot: slot,
        }
    }

    fn pod(&self, x: char) -> BridgePod {
        BridgeNode::pod_of(self.n, x)
    }

    fn pod_of(n: u8, x: char) -> BridgePod {
        let host = if x == 'a' { 2 } else { 3 };
        BridgePod {
            port: format!("pcbh{n}{x}"),
            mac: [0x02, 0x44, 0xbb, 0x00, n, host],
            v4: Ipv4Addr::new(10, 244, n, host),
            v6: format!("fd00:244:{n}::{host}").parse().unwrap(),
        }
    }
}

fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn network(ips: &[IpAddr], mac: Option<[u8; 6]>) -> PodNetwork {
    PodNetwork {
        uid: "0b6f1a2c-0000-4000-8000-00000000b001".to_string(),
        ips: ips.to_vec(),
        mac,
    }
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap()
}

#[test]
fn each_pod_resolves_to_its_own_bridge_port() {
    let node = BridgeNode::new();
    let (a, b) = (node.pod('a'), node.pod('b'));
    // One ping each: the host resolves the pod's MAC (ARP for a, NDP for b) on the bridge, and
    // the bridge learns the MAC on the pod's port from the answers.
    icmp_echo(a.v4, 1);
    icmpv6_echo(b.v6, 1);

    let only_bridge = Strategies::only(Method::Bridge);
    let found_a = resolve(&network(&[a.v4.into()], None), &only_bridge).unwrap();
    assert_eq!(found_a.name, a.port);
    assert_eq!(found_a.ifindex, ifindex(&a.port));
    assert_eq!(found_a.method, Method::Bridge);
    assert!(still_valid(&found_a));

    let found_b = resolve(&network(&[b.v6.into()], None), &only_bridge).unwrap();
    assert_eq!(found_b.name, b.port);
    assert_eq!(found_b.ifindex, ifindex(&b.port));

    // A MAC the caller already knows needs no neighbour entry.
    let by_mac = resolve(&network(&[], Some(b.mac)), &only_bridge).unwrap();
    assert_eq!(by_mac.name, b.port);

    // All strategies: the bridge CNI has no host route (only 10.244.n.0/24 to the bridge),
    // so the route strategy passes and the bridge one answers.
    let found = resolve(&network(&[a.v4.into()], None), &Strategies::default()).unwrap();
    assert_eq!(
        (found.name.as_str(), found.method),
        (a.port.as_str(), Method::Bridge)
    );
    println!("bridge {}: a -> {found_a:?}, b -> {found_b:?}", node.bridge);
}

#[test]
fn a_quiet_pod_is_found_before_it_sends_anything() {
    let node = BridgeNode::new();
    let a = node.pod('a');
    forget(&node, &a);
    // podcap asks for the pod's address itself (one ARP request from the bridge), and the
    // answer teaches both tables.
    let found = resolve(
        &network(&[a.v4.into()], None),
        &Strategies::only(Method::Bridge),
    )
    .unwrap();
    assert_eq!(
        (found.name.as_str(), found.method),
        (a.port.as_str(), Method::Bridge)
    );

    // The same by IPv6 (a neighbour solicitation).
    let b = node.pod('b');
    forget(&node, &b);
    let found = resolve(
        &network(&[b.v6.into()], None),
        &Strategies::only(Method::Bridge),
    )
    .unwrap();
    assert_eq!(found.name, b.port);
}

/// Makes the host and the bridge forget `pod`, as if its entries had aged out: flushes the
/// neighbour entries on the bridge and the pod's FDB entry until neither comes back. A pod
/// whose link just came up still sends a few IPv6 multicast reports (MLD) for a second or two,
/// and each teaches the bridge its MAC again, so one flush is not enough; bounded at 5 s.
fn forget(node: &BridgeNode, pod: &BridgePod) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        for family in ["-4", "-6"] {
            let _ =
                podcap_testkit::pod::quiet("ip", &[family, "neigh", "flush", "dev", &node.bridge]);
        }
        let _ = podcap_testkit::pod::quiet(
            "bridge",
            &[
                "fdb",
                "del",
                &mac_string(&pod.mac),
                "dev",
                &pod.port,
                "master",
            ],
        );
        // Long enough for a report already on its way to arrive and be learned again.
        std::thread::sleep(std::time::Duration::from_millis(200));
        if !knows(&node.bridge, pod) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the host or the bridge still knows pod {} after 5 s of flushing",
            pod.port
        );
    }
}

/// Whether the host's neighbour table has a resolved entry for the pod on `bridge`, or the
/// bridge's FDB has learned the pod's MAC.
fn knows(bridge: &str, pod: &BridgePod) -> bool {
    let output = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let neighbours = output(&["ip", "neigh", "show", "dev", bridge]);
    let resolved = neighbours.lines().any(|line| {
        (line.starts_with(&format!("{} ", pod.v4)) || line.starts_with(&format!("{} ", pod.v6)))
            && line.contains("lladdr")
    });
    let fdb = output(&["bridge", "fdb", "show", "br", bridge]);
    resolved || fdb.contains(&format!("{} dev {}", mac_string(&pod.mac), pod.port))
}

#[test]
fn an_address_nobody_answers_is_not_found() {
    let node = BridgeNode::new();
    // On the bridge's subnet, but no pod has it: the ARP request goes unanswered.
    let nobody = Ipv4Addr::new(10, 244, node.n, 9);
    let error = resolve(
        &network(&[nobody.into()], None),
        &Strategies::only(Method::Bridge),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error.attempts()[0].error, StrategyError::NotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains("no neighbour entry with a MAC"),
        "{message}"
    );

    // A MAC the bridge never saw.
    let error = resolve(
        &network(&[], Some([0x02, 0x44, 0xbb, 0xff, node.n, 0x09])),
        &Strategies::only(Method::Bridge),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("no bridge port has learned"),
        "{error}"
    );
}
