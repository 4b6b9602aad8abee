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

mod agent_common;

use std::thread::sleep;

use agent_common::pcapfile::frames_difference;
use agent_common::traffic;
use agent_common::{
    in_window, json_u64, must_read, now_ns, path_str, scratch_dir, tshark, Capturer, Frame,
    HostServices, Pod, BEFORE_STOP, SETTLE,
};

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

fn agent_args<'a>(pod: &'a Pod, case: &Case, output: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "--interface",
        pod.host_if.as_str(),
        "--output",
        output,
        "--json",
    ];
    // Eleven captures at once: a small ring each is plenty for this traffic.
    args.extend(["--ring-size", "8MiB"]);
    for rule in case.rules {
        args.extend(["--filter", rule]);
    }
    args
}

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
        .map(|(case, output)| Capturer::agent(&agent_args(&pod, case, output)))
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
