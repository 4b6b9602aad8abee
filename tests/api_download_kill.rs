//! The API killed in the middle of a merged download: the client (curl, which we did not write)
//! must see a broken transfer, never a short file that looks complete. The merged download is
//! streamed with chunked transfer encoding, whose last chunk only a finished merge sends, so a
//! connection that ends before it is an error to every HTTP/1.1 client. After a restart on the
//! same data directory, the download gives the whole capture again, byte for byte the same as
//! before (the part the client got is a prefix of it), and the client can resume where it broke
//! off with `Range` + `If-Range`.

mod api_common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};
use serde_json::json;

const CAPTURES: &str = "/api/v1/namespaces/default/captures";
/// Enough merged bytes (about 28 MB) that the kernel's socket buffers and the server's own
/// chunk queue (together well under 16 MB) cannot already hold the whole download when the
/// server is killed.
const DATAGRAMS: u32 = 20_000;
const PAYLOAD: usize = 1_400;

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_download_cut_by_a_killed_api_is_broken_and_a_retry_after_restart_gets_it_all() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7700);
    let data = tempfile::Builder::new()
        .prefix("podcap-download-kill-")
        .tempdir()
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut api = Api::start_in(data.path());
    let created = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "big"}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [7700]}],
            "duration": "6s",
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    std::thread::sleep(Duration::from_millis(500));
    burst_from_pod(
        &pod,
        SocketAddr::new(pod.host_v4.into(), 7700),
        DATAGRAMS,
        PAYLOAD,
    );
    let finished = api.wait_until_completed("default", "big", Duration::from_secs(30));
    let packets = finished["status"]["targets"][0]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        packets > 10_000,
        "enough packets to cut a download in: {finished}"
    );

    // A slow client, cut off by SIGKILL after its first megabytes.
    let url = format!("{}{CAPTURES}/big/pcap", api.base);
    let part = scratch.path().join("part.pcapng");
    let curl = Command::new("curl")
        .args(["-sS", "--limit-rate", "2M", "--max-time", "60", "-o"])
        .arg(&part)
        .args(["-H", &format!("Authorization: Bearer {}", api.token), &url])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting curl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while file_len(&part) < 2 << 20 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    api.kill();
    let outcome = curl.wait_with_output().expect("curl");
    let got = std::fs::read(&part).unwrap();
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert!(
        !outcome.status.success(),
        "curl must see a broken transfer, not a complete one ({} bytes): {stderr}",
        got.len()
    );
    // 18: "transfer closed with outstanding read data remaining"; 56: receive failure.
    assert!(
        matches!(outcome.status.code(), Some(18 | 56)),
        "a cut transfer, not another failure: {:?} {stderr}",
        outcome.status
    );

    // After a restart: the same bytes, whole.
    let api = Api::start_in(data.path());
    let whole = api.get(&format!("{CAPTURES}/big/pcap"));
    assert_eq!(whole.status, 200);
    assert!(
        got.len() < whole.body.len(),
        "the cut download is shorter ({} of {} bytes)",
        got.len(),
        whole.body.len()
    );
    assert!(
        whole.body.starts_with(&got),
        "what the client got before the kill is the start of the same download"
    );
    let whole_file = scratch.path().join("whole.pcapng");
    std::fs::write(&whole_file, &whole.body).unwrap();
    assert_eq!(
        tshark::assert_tshark_reads_cleanly(&whole_file) as u64,
        packets
    );

    // And the broken download resumes where it stopped.
    let etag = whole
        .header("etag")
        .expect("a finished capture has an ETag")
        .to_string();
    let rest = api.get_as(
        &format!("{CAPTURES}/big/pcap"),
        None,
        &[
            ("Range", &format!("bytes={}-", got.len())),
            ("If-Range", &etag),
        ],
    );
    assert_eq!(rest.status, 206);
    let mut resumed = got;
    resumed.extend_from_slice(&rest.body);
    assert!(
        resumed == whole.body,
        "the resumed download is the whole capture"
    );
}
