//! The live stream, read by tshark while the capture runs: `GET .../live` piped into
//! `tshark -r -` shows the pod's packets as they cross its veth, on an interface described as
//! the pod; a capture that is not running answers 409.

mod api_common;

use std::net::SocketAddr;
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{Api, Pod, UdpSink};
use podcap_testkit::tshark::LiveTshark;
use serde_json::json;

const CAPTURES: &str = "/api/v1/namespaces/default/captures";
const PACKETS: usize = 30;

#[test]
fn tshark_reads_the_live_stream_while_capturing() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7800);
    let api = Api::start();
    let created = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "watched"}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [7800]}],
            "duration": "1m",
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );

    let (status, stream) = api.get_stream(&format!("{CAPTURES}/watched/live"));
    assert_eq!(status, 200);
    let live = LiveTshark::start(
        stream,
        PACKETS,
        &["frame.interface_description", "udp.dstport"],
    );
    // Traffic after the stream is open, a little at a time, as a watcher would see it.
    for _ in 0..3 {
        burst_from_pod(
            &pod,
            SocketAddr::new(pod.host_v4.into(), 7800),
            (PACKETS / 3) as u32,
            64,
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (rows, relay) = live.rows();
    let lines: Vec<String> = rows.iter().map(|row| row.join("\t")).collect();
    assert_eq!(
        lines.len(),
        PACKETS,
        "tshark saw every packet live: {lines:?}"
    );
    let expected = format!("default/{} on ", pod.netns);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&expected) && l.ends_with("\t7800")),
        "{lines:?}"
    );

    // Stopping the capture ends the stream.
    assert_eq!(
        api.post(&format!("{CAPTURES}/watched/stop"), &json!({}))
            .status,
        200
    );
    relay.join().unwrap();
    api.get(&format!("{CAPTURES}/watched/live")).problem(409);
}
