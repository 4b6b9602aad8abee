//! Storage safety: captures can never fill the disk. When the capture files reach the data
//! directory's quota, running captures stop with a status that says why (their files kept and
//! readable) and new ones are refused with 507; finished captures' files are deleted after the
//! retention period, and the status says when.

mod api_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";

fn capture(pod: &Pod, name: &str, port: u16, duration: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
        "filters": [{"protocol": "UDP", "ports": [port]}],
        "duration": duration,
    }})
}

#[test]
fn reaching_the_quota_stops_captures_and_refuses_new_ones() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7900);
    let api = Api::start_with(&["--quota", "64KiB"]);
    assert_eq!(
        api.post(CAPTURES, &capture(&pod, "big", 7900, "1m")).status,
        201
    );
    // ~300 KB of packets: far past the quota.
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7900), 300, 1000);
    let stopped = api.wait_for_phase(
        "default",
        "big",
        &["Stopped", "Failed"],
        Duration::from_secs(15),
    );
    assert_eq!(stopped["status"]["phase"], "Stopped", "{stopped}");
    let message = stopped["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("quota") && message.contains("--quota"),
        "the status says why and what to do: {message}"
    );

    let merged = api.get(&format!("{CAPTURES}/big/pcap"));
    assert_eq!(merged.status, 200);
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("big.pcapng");
    std::fs::write(&path, &merged.body).unwrap();
    assert!(
        tshark::assert_tshark_reads_cleanly(&path) > 0,
        "what was captured is kept"
    );

    let refused = api
        .post(CAPTURES, &capture(&pod, "more", 7900, "1m"))
        .problem(507);
    assert!(
        refused["detail"].as_str().unwrap().contains("quota"),
        "{refused}"
    );
}

#[test]
fn finished_captures_lose_their_files_after_the_retention() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7901);
    let api = Api::start_with(&["--retention", "2s"]);
    let created = api.post(CAPTURES, &capture(&pod, "brief", 7901, "1s"));
    assert_eq!(created.status, 201);
    let uid = created.json()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7901), 10, 64);
    let done = api.wait_for_phase("default", "brief", &["Completed"], Duration::from_secs(15));
    assert!(
        done["status"]["targets"][0]["files"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "{done}"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let expired = loop {
        let capture = api.get(&format!("{CAPTURES}/brief")).json();
        if capture["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retention"))
        {
            break capture;
        }
        assert!(Instant::now() < deadline, "files never expired: {capture}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        expired["status"]["phase"], "Completed",
        "the capture's record stays"
    );
    assert_eq!(
        expired["status"]["targets"][0]["files"],
        json!([]),
        "{expired}"
    );
    assert_eq!(
        expired["status"]["targets"][0]["packets"], 10,
        "its counts stay: {expired}"
    );
    assert!(
        !api.data_dir.join("captures").join(uid).exists(),
        "the files are gone from disk"
    );
}
