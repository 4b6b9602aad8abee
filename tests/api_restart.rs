//! A killed API loses nothing completed: SIGKILL the server while one capture is running and
//! another has completed, start it again on the same data directory, and the completed capture
//! is intact while the running one resumes in a new file segment, says there was a gap, and
//! completes with the packets of both segments.

mod api_common;

use std::net::SocketAddr;
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";

fn spec(pod: &Pod, port: u16, duration: &str) -> Value {
    json!({
        "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
        "filters": [{"protocol": "UDP", "ports": [port]}],
        "duration": duration,
    })
}

fn only_target(capture: &Value) -> &Value {
    let targets = capture["status"]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets: {capture}"));
    assert_eq!(targets.len(), 1, "{capture}");
    &targets[0]
}

#[test]
fn sigkill_and_restart_lose_nothing_and_resume_in_a_new_segment() {
    let pod = Pod::new();
    let _sinks = (
        UdpSink::bind(pod.host_v4.into(), 7600),
        UdpSink::bind(pod.host_v4.into(), 7601),
    );
    let data = tempfile::Builder::new()
        .prefix("podcap-restart-")
        .tempdir()
        .unwrap();
    let mut api = Api::start_in(data.path());
    let destination = |port| SocketAddr::new(pod.host_v4.into(), port);

    assert_eq!(
        api.post(
            CAPTURES,
            &json!({"metadata": {"name": "done"}, "spec": spec(&pod, 7601, "1s")})
        )
        .status,
        201
    );
    burst_from_pod(&pod, destination(7601), 10, 64);
    let done_before =
        api.wait_for_phase("default", "done", &["Completed"], Duration::from_secs(15));

    assert_eq!(
        api.post(
            CAPTURES,
            &json!({"metadata": {"name": "open"}, "spec": spec(&pod, 7600, "12s")})
        )
        .status,
        201
    );
    burst_from_pod(&pod, destination(7600), 20, 64);
    // Long enough for the runner to record the packets and files (it writes status every second).
    std::thread::sleep(Duration::from_millis(2500));
    let before = api.get(&format!("{CAPTURES}/open")).json();
    assert_eq!(only_target(&before)["packets"], 20, "{before}");
    api.kill();

    let api = Api::start_in(data.path());
    let resumed = api.get(&format!("{CAPTURES}/open")).json();
    assert_eq!(resumed["status"]["phase"], "Capturing", "{resumed}");
    let message = resumed["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("resumed"),
        "the status says there was a gap: {resumed}"
    );
    burst_from_pod(&pod, destination(7600), 15, 64);
    let finished = api.wait_for_phase(
        "default",
        "open",
        &["Completed", "Failed"],
        Duration::from_secs(30),
    );
    assert_eq!(finished["status"]["phase"], "Completed", "{finished}");
    let target = only_target(&finished);
    assert_eq!(
        target["packets"], 35,
        "both segments' packets are counted: {finished}"
    );
    let files = target["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "one file per segment: {finished}");
    let scratch = tempfile::tempdir().unwrap();
    let mut in_files = 0;
    for file in files {
        let id = file["id"].as_str().unwrap();
        let download = api.get(&format!("{CAPTURES}/open/files/{id}"));
        assert_eq!(download.status, 200);
        let path = scratch.path().join(id);
        std::fs::write(&path, &download.body).unwrap();
        in_files += tshark::assert_tshark_reads_cleanly(&path);
    }
    assert_eq!(
        in_files, 35,
        "the killed segment's file holds its packets and reads cleanly"
    );

    let done_after = api.get(&format!("{CAPTURES}/done")).json();
    assert_eq!(
        done_after["status"], done_before["status"],
        "a completed capture is untouched by the restart"
    );
}
