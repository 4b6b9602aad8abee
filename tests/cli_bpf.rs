//! End-to-end test of `--bpf`: a pcap-filter expression keeps, frame for frame, what tcpdump
//! keeps given the same expression on the same veth at the same time.
//!
//! For each case one capture-agent (`--bpf EXPR`, with `--filter` rules in the combined case) and
//! one tcpdump (`tcpdump -i IF ... EXPR`, the rules written as their pcap-filter equivalent) run
//! while the pod sends every kind of traffic the test kit knows (TCP with handshakes, UDP, ICMP,
//! ICMPv6, SCTP, UDPLite, GRE, IPv4 and IPv6, 802.1Q-tagged UDP), and an unfiltered tcpdump shows
//! that each expression both keeps and rejects frames. Traffic stays between the pod and its host
//! end (10.244.0.0/16, fd00::/8).

mod agent_common;

use std::thread::sleep;

use agent_common::pcapfile::frames_difference;
use agent_common::traffic;
use agent_common::{
    filter_args, in_window, json_u64, must_read, now_ns, path_str, scratch_dir, Capturer,
    HostServices, Pod, BEFORE_STOP, SETTLE,
};

struct Case {
    what: &'static str,
    /// capture-agent's `--filter` rules, ANDed with the expression.
    rules: Vec<String>,
    expression: String,
    /// What tcpdump is given: the expression, with the rules' equivalent ANDed in.
    tcpdump: String,
    /// The `if_filter` text the file must carry.
    if_filter: String,
}

fn cases(pod: &Pod) -> Vec<Case> {
    let n = pod.slot();
    let syn = "tcp[tcpflags] & tcp-syn != 0".to_string();
    let host_net = format!("host {} or net fd00:244:{n}::/64", pod.host_v4);
    let dns_part = format!("ip6 or src net 10.244.{n}.128/25");
    let udp53 = capture_spec::Filter::parse_cli(&["udp:53"])
        .expect("udp:53")
        .to_pcap_expression();
    vec![
        Case {
            what: "TCP flags",
            rules: vec![],
            expression: syn.clone(),
            tcpdump: syn.clone(),
            if_filter: syn,
        },
        Case {
            what: "host and net",
            rules: vec![],
            expression: host_net.clone(),
            tcpdump: host_net.clone(),
            if_filter: host_net,
        },
        Case {
            what: "--filter udp:53 and an expression",
            rules: vec!["udp:53".into()],
            expression: dns_part.clone(),
            tcpdump: format!("udp port 53 and ({dns_part})"),
            if_filter: format!("({dns_part}) and ({udp53})"),
        },
    ]
}

#[test]
fn each_expression_keeps_exactly_what_tcpdump_keeps_with_it() {
    let pod = Pod::new();
    let _services = HostServices::start(&pod);
    let dir = scratch_dir();
    let cases = cases(&pod);
    let everything = dir.path().join("everything.pcap");
    let path = |name: String| path_str(&dir.path().join(name)).to_string();
    let ours: Vec<String> = (0..cases.len())
        .map(|i| path(format!("agent-{i}.pcapng")))
        .collect();
    let theirs: Vec<String> = (0..cases.len())
        .map(|i| path(format!("tcpdump-{i}.pcap")))
        .collect();

    let unfiltered = Capturer::tcpdump(&pod.host_if, &everything);
    let references: Vec<Capturer> = cases
        .iter()
        .zip(&theirs)
        .map(|(case, output)| {
            Capturer::tcpdump_filtered(&pod.host_if, output.as_ref(), &case.tcpdump)
        })
        .collect();
    let agents: Vec<Capturer> = cases
        .iter()
        .zip(&ours)
        .map(|(case, output)| {
            let mut extra = vec!["--bpf", case.expression.as_str()];
            extra.extend(filter_args(&case.rules));
            Capturer::agent_beside_others(&pod.host_if, output, &extra)
        })
        .collect();
    let t0 = now_ns();
    traffic::send_all_kinds(&pod);
    sleep(SETTLE);
    let t1 = now_ns();
    sleep(BEFORE_STOP);
    let finished: Vec<_> = agents.into_iter().map(Capturer::stop).collect();
    for reference in references {
        reference.stop().assert_success();
    }
    unfiltered.stop().assert_success();

    let all = in_window(&must_read(&everything).frames, t0, t1).len();
    let mut failures = Vec::new();
    for (((case, ours), theirs), finished) in cases.iter().zip(&ours).zip(&theirs).zip(&finished) {
        finished.assert_success();
        let file = must_read(ours.as_ref());
        assert_eq!(
            json_u64(&finished.summary(), "packets"),
            file.frames.len() as u64,
            "{}: summary vs file",
            case.what
        );
        let mut if_filter = vec![0u8];
        if_filter.extend_from_slice(case.if_filter.as_bytes());
        assert_eq!(
            file.interfaces[0].filter.as_deref(),
            Some(if_filter.as_slice()),
            "{}: the interface block's if_filter",
            case.what
        );
        let expected = in_window(&must_read(theirs.as_ref()).frames, t0, t1);
        assert!(
            !expected.is_empty() && expected.len() < all,
            "{}: tcpdump kept {} of {all} frames; the test proves nothing",
            case.what,
            expected.len()
        );
        let context = format!("--bpf {:?} vs tcpdump {:?}", case.expression, case.tcpdump);
        failures.extend(frames_difference(
            &in_window(&file.frames, t0, t1),
            &expected,
            &context,
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions kept other frames than tcpdump:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn an_expression_libpcap_refuses_is_an_error_naming_the_flag() {
    let dir = scratch_dir();
    let output = dir.path().join("refused.pcapng");
    let finished = agent_common::capture::run_agent_to_end(
        &[
            "--interface",
            "lo",
            "--output",
            path_str(&output),
            "--bpf",
            "tcp port 99999",
        ],
        std::time::Duration::from_secs(10),
    );
    assert!(!finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.contains(
            "bad --bpf: libpcap cannot compile the expression: illegal port number 99999 > 65535"
        ),
        "{}",
        finished.stderr
    );
    assert!(!output.exists(), "a file was written for a refused capture");
}
