//! `bpfFilter` through the real `capture-api --standalone` binary over HTTP.
//!
//! Hostile input is text for libpcap and nothing else: shell syntax, tcpdump flags, a newline, a
//! NUL, 1025 characters, deep nesting and an expression libpcap refuses are each a 422 naming
//! `spec.bpfFilter`, no capture is stored, and no command the text names ever runs (each would
//! have created a marker file). A capture with an expression records exactly the frames a
//! tcpdump given the same rules and expression records on the same pod at the same time, and its
//! file says in `if_filter` what was asked.

mod agent_common;
mod api_common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use agent_common::Capturer;
use api_common::pcapfile::frames_difference;
use api_common::traffic::burst_from_pod;
use api_common::{must_read, Api, Pod, UdpSink};
use capture_spec::Filter;
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";
const SCHEDULES: &str = "/api/v1/namespaces/default/schedules";

/// A selector no pod has: the refused captures must not touch other tests' pods even if they
/// were accepted by mistake.
fn no_pods() -> Value {
    json!({"matchLabels": {"podcap.io/netns": "no-such-pod"}})
}

/// The one invalid parameter of a 422.
fn refusal(answer: api_common::Answer) -> (String, String) {
    let problem = answer.problem(422);
    let params = problem["invalidParams"]
        .as_array()
        .unwrap_or_else(|| panic!("{problem}"));
    assert_eq!(params.len(), 1, "{problem}");
    (
        params[0]["name"].as_str().unwrap_or_default().to_string(),
        params[0]["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn hostile_expressions_are_422_and_nothing_runs() {
    let api = Api::start();
    let scratch = tempfile::tempdir().expect("temp dir");
    let marker = scratch.path().join("ran");
    let marker_text = marker.to_str().expect("utf-8 path");
    // What tcpdump's -z would run after a rotation: it would leave the marker.
    let script = scratch.path().join("z.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {marker_text}\n")).expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let libpcap = "libpcap cannot compile the expression: ";
    let one_line = "write the expression on one line, with plain spaces between its words";
    let cases: Vec<(String, String)> = vec![
        ("-z /x".into(), libpcap.into()),
        (format!("-z {}", script.display()), libpcap.into()),
        ("-w /etc/passwd".into(), libpcap.into()),
        ("; rm -rf /".into(), libpcap.into()),
        (format!("tcp; touch {marker_text}"), libpcap.into()),
        ("$(reboot)".into(), libpcap.into()),
        (format!("tcp and $(touch {marker_text})"), libpcap.into()),
        (format!("tcp `touch {marker_text}`"), libpcap.into()),
        (format!("tcp | touch {marker_text}"), libpcap.into()),
        (
            "tcp\nport 80".into(),
            format!("bpfFilter contains a line break (\\n) at character 4: {one_line}"),
        ),
        (
            format!("tcp\n-z {}", script.display()),
            "bpfFilter contains a line break (\\n) at character 4".into(),
        ),
        (
            "tcp\0; reboot".into(),
            format!("bpfFilter contains a NUL character at character 4: {one_line}"),
        ),
        (
            "t".repeat(1025),
            "bpfFilter is 1025 characters long; the most is 1024: shorten the expression".into(),
        ),
        (
            format!("{}tcp", "(".repeat(500)),
            format!("{libpcap}can't parse filter expression: syntax error"),
        ),
        (
            format!("{}tcp port 99999{}", "(".repeat(500), ")".repeat(500)),
            format!("{libpcap}illegal port number 99999 > 65535"),
        ),
        (
            "tcp port 99999".into(),
            format!(
                "{libpcap}illegal port number 99999 > 65535: write a pcap-filter(7) expression as \
                 tcpdump takes it, e.g. \"tcp port 443 and net 10.0.0.0/8\""
            ),
        ),
    ];
    for (expression, reason) in &cases {
        let (field, got) = refusal(api.post(
            CAPTURES,
            &json!({"spec": {"podSelector": no_pods(), "bpfFilter": expression, "duration": "1m"}}),
        ));
        assert_eq!(field, "spec.bpfFilter", "{expression:?}: {got}");
        assert!(got.starts_with(reason.as_str()), "{expression:?}: {got}");
        // A dry run and a schedule's template go through the same check.
        let (field, _) = refusal(api.post(
            &format!("{CAPTURES}?dryRun=All"),
            &json!({"spec": {"podSelector": no_pods(), "bpfFilter": expression}}),
        ));
        assert_eq!(field, "spec.bpfFilter", "dry run of {expression:?}");
        let (field, _) = refusal(api.post(
            SCHEDULES,
            &json!({"spec": {"schedule": "0 2 * * *", "template": {
                "podSelector": no_pods(), "bpfFilter": expression, "duration": "1m"}}}),
        ));
        assert_eq!(
            field, "spec.template.bpfFilter",
            "schedule with {expression:?}"
        );
    }
    // Deep nesting that libpcap accepts is a capture like any other (dry run: nothing stored).
    let nested = format!("{}udp{}", "(".repeat(500), ")".repeat(500));
    let answer = api.post(
        &format!("{CAPTURES}?dryRun=All"),
        &json!({"spec": {"podSelector": no_pods(), "bpfFilter": nested}}),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    let listed = api.get(CAPTURES).json();
    assert_eq!(
        listed["items"],
        json!([]),
        "a refused capture was stored: {listed}"
    );
    let listed = api.get(SCHEDULES).json();
    assert_eq!(
        listed["items"],
        json!([]),
        "a refused schedule was stored: {listed}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !marker.exists(),
        "a command named in a bpfFilter ran: {} exists",
        marker.display()
    );
}

#[test]
fn a_capture_with_an_expression_records_what_tcpdump_records() {
    let pod = Pod::new();
    let (kept, other) = (7601u16, 7600u16);
    let _sinks = (
        UdpSink::bind(pod.host_v4.into(), kept),
        UdpSink::bind(pod.host_v4.into(), other),
    );
    let expression = format!("udp dst port {kept} and greater 100");
    let rules = Filter::parse_cli(&[format!("udp:{other},{kept}")]).expect("rules");
    let scratch = tempfile::tempdir().expect("temp dir");
    let reference = scratch.path().join("tcpdump.pcap");
    let tcpdump = Capturer::tcpdump_filtered(
        &pod.host_if,
        &reference,
        &format!("udp and (port {other} or port {kept}) and ({expression})"),
    );

    let api = Api::start();
    let capture = api
        .post(
            CAPTURES,
            &json!({"metadata": {"name": "bpf"}, "spec": {
                "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
                "filters": [{"protocol": "UDP", "ports": [other, kept]}],
                "bpfFilter": expression,
                "duration": "4s",
            }}),
        )
        .created();
    assert_eq!(
        capture["spec"]["bpfFilter"],
        expression.as_str(),
        "{capture}"
    );
    assert_eq!(capture["status"]["phase"], "Capturing", "{capture}");

    // Kept: 20 big datagrams to the kept port. Rejected by the expression: small ones to it
    // (frames under 100 bytes) and big ones to the other port, which the rules keep.
    let to = |port| SocketAddr::new(pod.host_v4.into(), port);
    burst_from_pod(&pod, to(kept), 20, 120);
    burst_from_pod(&pod, to(kept), 15, 10);
    burst_from_pod(&pod, to(other), 25, 120);
    let done = api.wait_until_completed("default", "bpf", Duration::from_secs(20));
    tcpdump.stop().assert_success();
    assert_eq!(done["status"]["targets"][0]["packets"], 20, "{done}");

    let merged = api.get(&format!("{CAPTURES}/bpf/pcap"));
    assert_eq!(merged.status, 200);
    let file = scratch.path().join("merged.pcapng");
    std::fs::write(&file, &merged.body).expect("writing the download");
    let ours = must_read(&file);
    let theirs = must_read(&reference);
    assert_eq!(theirs.frames.len(), 20, "tcpdump's reference");
    if let Some(difference) = frames_difference(
        &ours.frames,
        &theirs.frames,
        "the API's capture vs tcpdump with the same rules and expression",
    ) {
        panic!("{difference}");
    }
    let files = api.get(&format!("{CAPTURES}/bpf/files")).json();
    let id = files["items"][0]["id"].as_str().expect("a file id");
    let one = api.get(&format!("{CAPTURES}/bpf/files/{id}"));
    let path = scratch.path().join("one.pcapng");
    std::fs::write(&path, &one.body).expect("writing the file");
    let mut wanted = vec![0u8];
    wanted.extend_from_slice(
        format!("({expression}) and ({})", rules.to_pcap_expression()).as_bytes(),
    );
    assert_eq!(
        if_filter(&path).as_deref(),
        Some(wanted.as_slice()),
        "the interface block says what was asked"
    );
}

fn if_filter(path: &Path) -> Option<Vec<u8>> {
    must_read(path).interfaces.first()?.filter.clone()
}
