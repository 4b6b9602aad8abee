//! The audit trail against the real standalone API: a capture with traffic is created,
//! downloaded (merged and one file), previewed, shared, its share link used and revoked, read by
//! a viewer, refused to a caller without a token, and deleted. `GET /api/v1/audit` (admins only,
//! paged) then shows each of those as one event with who, what, the status and the bytes the
//! client really received; share links appear as `share:<hash prefix>`, never with their
//! secret; the same events are JSON lines on the API's stdout; `/metrics` counts them per kind;
//! and they are still there after a restart.

mod api_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{Api, Pod, UdpSink};
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";

/// Every event `GET /api/v1/audit` has, paging `page` at a time.
fn all_events(api: &Api, page: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(token) => format!("/api/v1/audit?limit={page}&continue={token}"),
            None => format!("/api/v1/audit?limit={page}"),
        };
        let answer = api.get(&path);
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let list = answer.json();
        let items = list["items"].as_array().unwrap().clone();
        assert!(items.len() <= page);
        events.extend(items);
        match list["metadata"]["continue"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => return events,
        }
    }
}

/// The events of `kind`, waiting (bounded) until there are `count` of them: events are written
/// when an answer's body has been sent.
fn events_of(api: &Api, kind: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<Value> = all_events(api, 3)
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect();
        if events.len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{count} {kind} events expected, got {events:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_access_to_packets_and_every_change_is_one_audit_event() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7900);
    let data = tempfile::Builder::new()
        .prefix("podcap-audit-")
        .tempdir()
        .unwrap();
    let mut api = Api::start_in(data.path());
    let created = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "audited"}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [7900]}],
            "duration": "2s",
        }}),
    );
    assert_eq!(created.status, 201);
    std::thread::sleep(Duration::from_millis(300));
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7900), 30, 200);
    let finished = api.wait_until_completed("default", "audited", Duration::from_secs(20));
    let capture = format!("{CAPTURES}/audited");

    let merged = api.get(&format!("{capture}/pcap"));
    assert_eq!(merged.status, 200);
    let file_id = finished["status"]["targets"][0]["files"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = api.get(&format!("{capture}/files/{file_id}"));
    assert_eq!(file.status, 200);
    assert_eq!(api.get(&format!("{capture}/packets?limit=5")).status, 200);
    let share = api
        .post(&format!("{capture}/shares"), &json!({"expiresIn": "1h"}))
        .created();
    let url = share["url"].as_str().unwrap();
    let share_path = &url[url.find("/share/").unwrap()..];
    let secret = share["token"].as_str().unwrap().to_string();
    let shared = api.get_as(share_path, Some(""), &[]);
    assert_eq!(shared.status, 200);
    let share_id = share["id"].as_str().unwrap();
    assert_eq!(
        api.delete(&format!("{capture}/shares/{share_id}")).status,
        204
    );
    let viewer = api.create_token("viewer", &[]);
    let viewed = api.get_as(&format!("{capture}/files/{file_id}"), Some(&viewer), &[]);
    assert_eq!(viewed.status, 200);
    api.get_as(&format!("{capture}/pcap"), Some(""), &[])
        .problem(401);
    // The trail is for admins.
    api.get_as("/api/v1/audit", Some(&viewer), &[]).problem(403);
    api.get("/api/v1/audit?limit=0").problem(422);
    api.get("/api/v1/audit?kind=nonsense").problem(422);
    api.get("/api/v1/audit?continue=abc").problem(422);
    assert_eq!(api.delete(&capture).status, 204);

    let create = &events_of(&api, "capture.create", 1)[0];
    assert_eq!(create["status"], 201);
    assert_eq!(create["name"], "audited");
    assert_eq!(create["namespace"], "default");
    assert_eq!(create["method"], "POST");
    assert!(
        create["from"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{create}"
    );
    let admin = create["who"].as_str().unwrap().to_string();
    assert!(!admin.is_empty() && admin != api.token, "{create}");

    let downloads = events_of(&api, "capture.download", 2);
    assert_eq!(downloads[0]["who"], admin.as_str());
    assert_eq!(downloads[0]["status"], 200);
    assert_eq!(downloads[0]["bytes"], merged.body.len() as u64);
    assert_eq!(downloads[0]["complete"], true);
    assert_eq!(downloads[1]["who"], "anonymous");
    assert_eq!(downloads[1]["status"], 401);

    let files = events_of(&api, "file.download", 2);
    assert_eq!(files[0]["bytes"], file.body.len() as u64);
    // A single file goes out with Content-Length; sent whole, it says so.
    assert_eq!(files[0]["complete"], true, "{}", files[0]);
    assert_eq!(files[0]["who"], admin.as_str());
    let viewer_who = files[1]["who"].as_str().unwrap();
    assert!(
        viewer_who != admin && !viewer_who.is_empty() && viewer_who != viewer,
        "the viewer by its token id, not its secret: {}",
        files[1]
    );
    assert_eq!(events_of(&api, "capture.packets", 1)[0]["status"], 200);
    assert_eq!(events_of(&api, "share.create", 1)[0]["status"], 201);
    let used = &events_of(&api, "share.use", 1)[0];
    assert!(
        used["who"].as_str().unwrap().starts_with("share:"),
        "{used}"
    );
    assert_eq!(used["path"], "/share/{token}");
    assert_eq!(used["bytes"], shared.body.len() as u64);
    assert_eq!(events_of(&api, "share.revoke", 1)[0]["status"], 204);
    assert_eq!(events_of(&api, "capture.delete", 1)[0]["status"], 204);
    // Metadata reads and the audit route itself are not audited.
    let all = all_events(&api, 1000);
    assert!(all.iter().all(|e| e["kind"] != "capture.get"));
    assert_eq!(all.len(), 10, "{all:#?}");
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

    // Filters.
    let only = api.get("/api/v1/audit?kind=share.use").json();
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    let other = api.get("/api/v1/audit?namespace=elsewhere").json();
    assert_eq!(other["items"].as_array().unwrap().len(), 0);
    let future = api.get("/api/v1/audit?since=2999-01-01T00:00:00Z").json();
    assert_eq!(future["items"].as_array().unwrap().len(), 0);

    // The JSON lines on stdout are the same events, and no secret is among them.
    let lines = api.audit_lines();
    assert_eq!(lines, all, "stdout carries every event");
    let printed = std::fs::read_to_string(data.path().join(api_common::AUDIT_LINES)).unwrap();
    for secret in [secret.as_str(), api.token.as_str(), viewer.as_str()] {
        assert!(!printed.contains(secret), "a secret in the audit lines");
    }

    let metrics = String::from_utf8(api.get_as("/metrics", Some(""), &[]).body).unwrap();
    assert!(
        metrics.contains("podcap_audit_events_total{kind=\"share.use\"} 1")
            && metrics.contains("podcap_audit_events_total{kind=\"capture.download\"} 2"),
        "{metrics}"
    );

    // Kept across a restart.
    api.kill();
    let api = Api::start_in(data.path());
    assert_eq!(all_events(&api, 1000), all);
}
