//! The live stream, read by tshark while the capture runs: `GET .../live` piped into
//! `tshark -r -` shows the pod's packets as they cross its veth, on an interface described as
//! the pod; a capture that is not running answers 409.

mod api_common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{Api, Pod, UdpSink};
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

    let (status, mut stream) = api.get_stream(&format!("{CAPTURES}/watched/live"));
    assert_eq!(status, 200);
    let mut tshark = Command::new("tshark")
        .args([
            "-n",
            "-r",
            "-",
            "-c",
            &PACKETS.to_string(),
            "-T",
            "fields",
            "-e",
            "frame.interface_description",
            "-e",
            "udp.dstport",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tshark");
    let mut tshark_in = tshark.stdin.take().unwrap();
    let relay = std::thread::spawn(move || {
        // Ends when tshark has its packets and closes its input (or the stream ends).
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 || tshark_in.write_all(&buffer[..n]).is_err() {
                break;
            }
            let _ = tshark_in.flush();
        }
    });
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
    let output = tshark.wait_with_output().expect("tshark ran");
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
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
