//! End-to-end test of `--filter`: what an operator asks for is exactly what lands in the file.
//!
//! One unfiltered tcpdump is the reference, and one capture-agent per filter runs at the same
//! time on the same veth while the pod sends every kind of traffic the rules know (TCP, UDP,
//! ICMP, ICMPv6, SCTP, UDPLite, GRE, IPv4 and IPv6, and 802.1Q-tagged UDP). For each filter, the
//! frames in capture-agent's file must be exactly the reference's frames that tshark selects
//! with the equivalent display filter, within the window in which every capturer was running.
//!
//! The display filters follow libpcap's semantics, which the rules promise: ports only in
//! ports-bearing protocols (tshark also finds ports inside ICMP error payloads, hence the
//! `!icmp && !icmpv6`), ICMPv6 and protocol numbers only right after the fixed IPv6 header
//! (`ipv6.nxt`), tagged frames matched on their inner packet (tshark does that by itself).
//! tshark dissects UDPLite with the `udp.*` fields, so `udplite`/`!udplite` tells them apart.
//!
//! Peers are judged by tcpdump itself: the pod also talks from and to a second pair of addresses
//! (IPv4 and IPv6, in another /30 and /64), and for each peer filter the frames in
//! capture-agent's file must be exactly those that `tcpdump -r` keeps from the unfiltered
//! reference given the equivalent pcap-filter expression (`ip host`, `ip net`, `ip6 net`, ...).

mod agent_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;

use agent_common::pcapfile::frames_difference;
use agent_common::traffic;
use agent_common::{
    filter_args, in_pod, in_window, json_u64, must_read, now_ns, path_str, scratch_dir, tshark,
    Capturer, Frame, HostServices, Pod, UdpSink, BEFORE_STOP, SETTLE,
};
use podcap_testkit::pod::{run, POD_IF};

/// A capture-agent filter (one or more `--filter` rules) and the display filter equivalent.
struct Case {
    rules: &'static [&'static str],
    display_filter: &'static str,
}

const CASES: &[Case] = &[
    Case {
        rules: &["tcp:8080,443"],
        display_filter: "!icmp && !icmpv6 && tcp.port in {8080, 443}",
    },
    Case {
        rules: &["tcp:8000-8100"],
        display_filter: "!icmp && !icmpv6 && tcp.port in {8000..8100}",
    },
    Case {
        rules: &["udp:53"],
        display_filter: "!icmp && !icmpv6 && !udplite && udp.port == 53",
    },
    Case {
        rules: &["any:53"],
        display_filter: "!icmp && !icmpv6 && (tcp.port == 53 || udp.port == 53 || sctp.port == 53)",
    },
    Case {
        rules: &["icmp"],
        display_filter: "icmp",
    },
    Case {
        rules: &["icmpv6"],
        display_filter: "icmpv6 && ipv6.nxt == 58",
    },
    Case {
        rules: &["sctp:9899"],
        display_filter: "!icmp && !icmpv6 && sctp.port == 9899",
    },
    Case {
        rules: &["udplite:5000"],
        display_filter: "!icmp && !icmpv6 && udplite && udp.port == 5000",
    },
    Case {
        rules: &["47"],
        display_filter: "ip.proto == 47 || ipv6.nxt == 47",
    },
    Case {
        rules: &["udp:53", "tcp:443"],
        display_filter: "!icmp && !icmpv6 && ((!udplite && udp.port == 53) || tcp.port == 443)",
    },
    Case {
        rules: &["sctp"],
        display_filter: "sctp",
    },
];

#[test]
fn each_filter_keeps_exactly_what_the_equivalent_display_filter_selects() {
    let pod = Pod::new();
    let _services = HostServices::start(&pod);
    let dir = scratch_dir();
    let reference = dir.path().join("tcpdump.pcap");
    let outputs: Vec<String> = (0..CASES.len())
        .map(|i| path_str(&dir.path().join(format!("filter-{i}.pcapng"))).to_string())
        .collect();

    let tcpdump = Capturer::tcpdump(&pod.host_if, &reference);
    let agents: Vec<Capturer> = CASES
        .iter()
        .zip(&outputs)
        .map(|(case, output)| {
            Capturer::agent_beside_others(&pod.host_if, output, &filter_args(case.rules))
        })
        .collect();
    let t0 = now_ns();
    traffic::send_all_kinds(&pod);
    sleep(SETTLE);
    let t1 = now_ns();
    sleep(BEFORE_STOP);
    let finished: Vec<_> = agents.into_iter().map(Capturer::stop).collect();
    tcpdump.stop().assert_success();

    let reference_frames = must_read(&reference).frames;
    let reference_in_window = in_window(&reference_frames, t0, t1);
    let mut failures = Vec::new();
    for ((case, output), finished) in CASES.iter().zip(&outputs).zip(&finished) {
        let what = format!("--filter {}", case.rules.join(" --filter "));
        finished.assert_success();
        let ours = must_read(output.as_ref());
        let summary = finished.summary();
        assert_eq!(
            json_u64(&summary, "packets"),
            ours.frames.len() as u64,
            "{what}: summary vs file: {summary}"
        );
        let filter_option = ours.interfaces[0].filter.clone().unwrap_or_default();
        assert!(
            filter_option.len() > 1 && filter_option[0] == 0,
            "{what}: the IDB should carry the filter as a libpcap expression (if_filter), got {filter_option:?}"
        );

        let expected: Vec<Frame> = in_window(
            &tshark::matching_indexes(&reference, case.display_filter)
                .into_iter()
                .map(|i| reference_frames[i].clone())
                .collect::<Vec<_>>(),
            t0,
            t1,
        );
        // Neither trivially empty nor trivially everything: the filter must both keep and reject.
        assert!(
            !expected.is_empty(),
            "{what}: the traffic has no frame for `{}`; the test proves nothing",
            case.display_filter
        );
        assert!(
            expected.len() < reference_in_window.len(),
            "{what}: `{}` selects every frame of the reference; the test proves nothing",
            case.display_filter
        );
        let ours_in_window = in_window(&ours.frames, t0, t1);
        // Collect every filter's verdict before failing: one broken rule should not hide another.
        let context = format!(
            "{what} vs tshark -Y '{}' on tcpdump's capture",
            case.display_filter
        );
        failures.extend(frames_difference(&ours_in_window, &expected, &context));
    }
    assert!(
        failures.is_empty(),
        "{} of {} filters kept the wrong frames:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

/// The second pair of addresses: the host end's and the pod's, IPv4 (10.244.n.5 and .6, so
/// both in 10.244.n.4/30) and IPv6 (fd00:244:n:1::5 and ::6, a /64 of their own).
struct SecondPair {
    host_v4: Ipv4Addr,
    pod_v4: Ipv4Addr,
    host_v6: Ipv6Addr,
    pod_v6: Ipv6Addr,
}

impl SecondPair {
    /// Adds the addresses to both ends, with static neighbours so no ARP or neighbour
    /// solicitation lands in the middle of the traffic. They go with the pod's veth.
    fn add(pod: &Pod) -> SecondPair {
        let n = pod.slot();
        let pair = SecondPair {
            host_v4: Ipv4Addr::new(10, 244, n, 5),
            pod_v4: Ipv4Addr::new(10, 244, n, 6),
            host_v6: format!("fd00:244:{n}:1::5").parse().unwrap(),
            pod_v6: format!("fd00:244:{n}:1::6").parse().unwrap(),
        };
        let host = pod.host_if.as_str();
        let ns = pod.netns.as_str();
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let (host_mac, pod_mac) = (mac(pod.host_mac), mac(pod.pod_mac));
        let (h4, p4) = (
            format!("{}/25", pair.host_v4),
            format!("{}/25", pair.pod_v4),
        );
        let (h6, p6) = (
            format!("{}/64", pair.host_v6),
            format!("{}/64", pair.pod_v6),
        );
        run("ip", &["addr", "add", &h4, "dev", host]);
        run("ip", &["addr", "add", &h6, "dev", host, "nodad"]);
        run("ip", &["-n", ns, "addr", "add", &p4, "dev", POD_IF]);
        run(
            "ip",
            &["-n", ns, "addr", "add", &p6, "dev", POD_IF, "nodad"],
        );
        for address in [pair.host_v4.to_string(), pair.host_v6.to_string()] {
            run(
                "ip",
                &[
                    "-n", ns, "neigh", "replace", &address, "lladdr", &host_mac, "dev", POD_IF,
                ],
            );
        }
        for address in [pair.pod_v4.to_string(), pair.pod_v6.to_string()] {
            run(
                "ip",
                &[
                    "neigh", "replace", &address, "lladdr", &pod_mac, "dev", host,
                ],
            );
        }
        pair
    }

    /// UDP to port 53 of the second host addresses, from the second pod addresses and from the
    /// pod's first ones (so some packets have one end in each pair).
    fn send(&self, pod: &Pod) {
        let flows = [
            (IpAddr::V4(self.pod_v4), IpAddr::V4(self.host_v4)),
            (IpAddr::V4(pod.pod_v4), IpAddr::V4(self.host_v4)),
            (IpAddr::V6(self.pod_v6), IpAddr::V6(self.host_v6)),
            (IpAddr::V6(pod.pod_v6), IpAddr::V6(self.host_v6)),
        ];
        in_pod(pod, || {
            for (source, destination) in flows {
                let socket = UdpSocket::bind((source, 0))
                    .unwrap_or_else(|e| panic!("binding UDP to {source}: {e}"));
                for i in 0..3 {
                    socket
                        .send_to(format!("podcap peer {i}").as_bytes(), (destination, 53))
                        .unwrap_or_else(|e| panic!("sending {source} -> {destination}: {e}"));
                    sleep(std::time::Duration::from_millis(5));
                }
            }
        });
    }
}

/// A peer filter and the pcap-filter expression that means the same on this traffic (for
/// untagged frames; [`with_vlan`] adds the tagged ones).
struct PeerCase {
    rules: Vec<String>,
    expression: String,
}

fn peer_cases(pod: &Pod, second: &SecondPair) -> Vec<PeerCase> {
    let n = pod.slot();
    let case = |rules: &[String], expression: String| PeerCase {
        rules: rules.to_vec(),
        expression,
    };
    vec![
        // One IPv4 address, either end; ARP naming it is not IP.
        case(
            &[format!("@{}", pod.host_v4)],
            format!("ip host {}", pod.host_v4),
        ),
        // The VLAN 100 subnet: only the tagged frames.
        case(
            &[format!("udp:53@10.244.{n}.128/25")],
            format!("udp port 53 and ip net 10.244.{n}.128/25"),
        ),
        // A /30 holding the second pair: packets with one end in it, or both.
        case(
            &[format!("@10.244.{n}.4/30")],
            format!("ip net 10.244.{n}.4/30"),
        ),
        case(
            &[format!("@{}/32", second.pod_v4)],
            format!("ip host {}", second.pod_v4),
        ),
        case(
            &[format!("tcp:443,8080@fd00:244:{n}::/64")],
            format!("(tcp port 443 or tcp port 8080) and ip6 net fd00:244:{n}::/64"),
        ),
        case(
            &[format!("@{}", second.pod_v6)],
            format!("ip6 host {}", second.pod_v6),
        ),
        case(
            &[format!("udp:53@fd00:244:{n}:1::4/126")],
            format!("udp port 53 and ip6 net fd00:244:{n}:1::4/126"),
        ),
        case(
            &[format!("udp@{},{}", second.pod_v4, second.host_v6)],
            format!(
                "udp and (ip host {} or ip6 host {})",
                second.pod_v4, second.host_v6
            ),
        ),
        case(
            &[
                format!("tcp:443@{}", pod.host_v6),
                format!("udp:53@{}", second.host_v4),
            ],
            format!(
                "(tcp port 443 and ip6 host {}) or (udp port 53 and ip host {})",
                pod.host_v6, second.host_v4
            ),
        ),
        // Two groups in one family: TCP to 9000 passes the first group's peer test, fails its
        // port test (which moved X to the transport header) and must still be read right by the
        // second group.
        case(
            &[format!("tcp:443@{}", pod.host_v4), "tcp:9000".to_string()],
            format!(
                "(tcp port 443 and ip host {}) or tcp port 9000",
                pod.host_v4
            ),
        ),
        // Every IPv6 packet but the link-local ones (neighbour discovery, MLD).
        case(&["@fd00::/8".to_string()], "ip6 net fd00::/8".to_string()),
    ]
}

/// The expression for untagged frames and for frames with one VLAN tag, which the reference
/// file holds with the tag in place.
fn with_vlan(expression: &str) -> String {
    format!("({expression}) or (vlan and ({expression}))")
}

/// `tcpdump -r REFERENCE -w OUTPUT EXPRESSION`: what libpcap keeps of the reference.
fn tcpdump_keeps(reference: &Path, output: &Path, expression: &str) -> Vec<Frame> {
    let result = Command::new("tcpdump")
        .args(["-n", "--time-stamp-precision=nano", "-r"])
        .arg(reference)
        .arg("-w")
        .arg(output)
        .arg(expression)
        .output()
        .expect("running tcpdump -r");
    assert!(
        result.status.success(),
        "tcpdump -r ... {expression:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    must_read(output).frames
}

#[test]
fn each_peer_filter_keeps_exactly_what_tcpdump_keeps_with_host_and_net() {
    let pod = Pod::new();
    let _services = HostServices::start(&pod);
    let second = SecondPair::add(&pod);
    let _sinks = [
        UdpSink::bind(IpAddr::V4(second.host_v4), 53),
        UdpSink::bind(IpAddr::V6(second.host_v6), 53),
    ];
    let cases = peer_cases(&pod, &second);
    let dir = scratch_dir();
    let reference = dir.path().join("tcpdump.pcap");
    let outputs: Vec<String> = (0..cases.len())
        .map(|i| path_str(&dir.path().join(format!("peers-{i}.pcapng"))).to_string())
        .collect();

    let tcpdump = Capturer::tcpdump(&pod.host_if, &reference);
    let agents: Vec<Capturer> = cases
        .iter()
        .zip(&outputs)
        .map(|(case, output)| {
            Capturer::agent_beside_others(&pod.host_if, output, &filter_args(&case.rules))
        })
        .collect();
    let t0 = now_ns();
    traffic::send_all_kinds(&pod);
    second.send(&pod);
    sleep(SETTLE);
    let t1 = now_ns();
    sleep(BEFORE_STOP);
    let finished: Vec<_> = agents.into_iter().map(Capturer::stop).collect();
    tcpdump.stop().assert_success();

    let reference_in_window = in_window(&must_read(&reference).frames, t0, t1);
    let mut failures = Vec::new();
    let mut compared = 0;
    for (index, ((case, output), finished)) in cases.iter().zip(&outputs).zip(&finished).enumerate()
    {
        let what = format!("--filter {}", case.rules.join(" --filter "));
        finished.assert_success();
        let ours = must_read(output.as_ref());
        let if_filter = ours.interfaces[0].filter.clone().unwrap_or_default();
        let if_filter = String::from_utf8_lossy(if_filter.get(1..).unwrap_or_default());
        assert!(
            if_filter.contains(" host ") || if_filter.contains(" net "),
            "{what}: the IDB's if_filter should name the peers, got {if_filter:?}"
        );
        let expression = with_vlan(&case.expression);
        let kept = tcpdump_keeps(
            &reference,
            &dir.path().join(format!("tcpdump-{index}.pcap")),
            &expression,
        );
        let expected = in_window(&kept, t0, t1);
        assert!(
            !expected.is_empty() && expected.len() < reference_in_window.len(),
            "{what}: `{expression}` keeps {} of {} frames; the test proves nothing",
            expected.len(),
            reference_in_window.len()
        );
        eprintln!(
            "{what:<48} keeps {:>3} of {} frames, as tcpdump '{}'",
            expected.len(),
            reference_in_window.len(),
            case.expression
        );
        compared += expected.len();
        let context = format!("{what} vs tcpdump -r '{expression}' on tcpdump's capture");
        failures.extend(frames_difference(
            &in_window(&ours.frames, t0, t1),
            &expected,
            &context,
        ));
    }
    eprintln!(
        "{} peer filters, {compared} frames kept in all, out of {} frames in the window",
        cases.len(),
        reference_in_window.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} peer filters kept the wrong frames:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
