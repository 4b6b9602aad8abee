//! Share links end to end: a link downloads the merged capture with no token, downloads are
//! counted, the token is never listed again, a viewer cannot share, and a revoked or expired
//! link answers 410 while an unknown one or one whose capture was deleted answers 404.

mod api_common;

use std::net::SocketAddr;
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};
use serde_json::json;

const CAPTURES: &str = "/api/v1/namespaces/default/captures";

#[test]
fn share_links_download_without_login_until_revoked_or_expired() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7700);
    let api = Api::start();
    let created = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "shared"}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [7700]}],
            "duration": "2s",
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7700), 12, 64);
    api.wait_for_phase("default", "shared", &["Completed"], Duration::from_secs(15));

    let shares = format!("{CAPTURES}/shared/shares");
    let share = api.post(&shares, &json!({"expiresIn": "1h"}));
    assert_eq!(
        share.status,
        201,
        "{}",
        String::from_utf8_lossy(&share.body)
    );
    let share = share.json();
    let url = share["url"].as_str().unwrap();
    let path = &url[url.find("/share/").unwrap()..];
    let token = share["token"].as_str().unwrap();
    assert_eq!(token.len(), 4 + 64, "256 random bits, hex");

    let download = api.get_as(path, Some(""), &[]);
    assert_eq!(download.status, 200, "no login needed");
    assert_eq!(download.content_type, "application/x-pcapng");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("shared.pcapng");
    std::fs::write(&file, &download.body).unwrap();
    assert_eq!(tshark::assert_tshark_reads_cleanly(&file), 12);

    let listed = api.get(&shares).json();
    let item = &listed["items"][0];
    assert_eq!(item["downloads"], 1, "{listed}");
    assert_eq!(item["state"], "Active");
    assert!(
        item.get("token").is_none() && item.get("url").is_none(),
        "the secret is shown once only: {listed}"
    );
    let stored = std::fs::read(api.data_dir.join("podcap.db")).unwrap();
    assert!(
        !stored.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored hashed"
    );

    let metrics = api.get_as("/metrics", Some(""), &[]);
    assert_eq!(metrics.status, 200, "metrics need no token");
    let metrics = String::from_utf8(metrics.body).unwrap();
    for line in [
        "podcap_share_downloads 1",
        "podcap_captures{phase=\"Completed\"} 1",
        "podcap_capture_packets 12",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} missing from:\n{metrics}"
        );
    }

    let viewer = api.create_token("viewer", &[]);
    api.post_as(&shares, Some(&viewer), &json!({})).problem(403);
    let (_, reason) = {
        let problem = api.post(&shares, &json!({"expiresIn": "8d"})).problem(422);
        (
            problem["invalidParams"][0]["name"].clone(),
            problem["invalidParams"][0]["reason"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    assert!(reason.contains("7d"), "{reason}");

    let id = item["id"].as_str().unwrap();
    assert_eq!(api.delete(&format!("{shares}/{id}")).status, 204);
    let revoked = api.get_as(path, Some(""), &[]).problem(410);
    assert!(
        revoked["detail"].as_str().unwrap().contains("revoked"),
        "{revoked}"
    );

    let short = api.post(&shares, &json!({"expiresIn": "1s"})).json();
    let short_url = short["url"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let expired = api
        .get_as(
            &short_url[short_url.find("/share/").unwrap()..],
            Some(""),
            &[],
        )
        .problem(410);
    assert!(
        expired["detail"].as_str().unwrap().contains("expired"),
        "{expired}"
    );

    api.get_as("/share/pcs_not-a-real-token", Some(""), &[])
        .problem(404);
    let live = api.post(&shares, &json!({})).json();
    assert_eq!(api.delete(&format!("{CAPTURES}/shared")).status, 204);
    let live_url = live["url"].as_str().unwrap();
    api.get_as(
        &live_url[live_url.find("/share/").unwrap()..],
        Some(""),
        &[],
    )
    .problem(404);
}
