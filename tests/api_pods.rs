//! Pods in standalone mode: an inventory file gives netns pods Kubernetes namespaces, names and
//! labels, so selectors pick them as in a cluster; a pod that appears during a capture's window
//! joins it, and a pod that vanishes ends its part (state Gone) with its packets kept.

mod api_common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{Api, Pod, UdpSink};
use serde_json::{json, Value};

const PORT: u16 = 7950;

fn write_inventory(path: &Path, pods: &[(&Pod, &str, &str)]) {
    let entries: Vec<String> = pods
        .iter()
        .map(|(pod, name, app)| {
            format!(
                "  - {{namespace: shop, name: {name}, labels: {{app: {app}}}, netns: {}}}",
                pod.netns
            )
        })
        .collect();
    // Written whole and renamed, so the server never reads half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, format!("pods:\n{}\n", entries.join("\n"))).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn target<'a>(capture: &'a Value, pod: &str) -> Option<&'a Value> {
    capture["status"]["targets"]
        .as_array()?
        .iter()
        .find(|t| t["pod"] == pod)
}

fn wait_for(api: &Api, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let capture = api.get("/api/v1/namespaces/shop/captures/joined").json();
        if check(&capture) {
            return capture;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened: {capture}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn inventory_labels_select_pods_that_join_and_leave() {
    let (web, db) = (Pod::new(), Pod::new());
    let _sinks = (
        UdpSink::bind(web.host_v4.into(), PORT),
        UdpSink::bind(db.host_v4.into(), PORT),
    );
    let scratch = tempfile::tempdir().unwrap();
    let inventory = scratch.path().join("pods.yaml");
    write_inventory(&inventory, &[(&web, "web-1", "web"), (&db, "db-1", "db")]);
    let api = Api::start_with(&["--inventory", inventory.to_str().unwrap()]);

    let matched = api
        .get("/api/v1/namespaces/shop/pods?selector=app%3Dweb")
        .json();
    assert_eq!(
        matched,
        json!([{"namespace": "shop", "name": "web-1", "node": matched[0]["node"],
        "interface": web.host_if, "labels": {"app": "web", "podcap.io/netns": web.netns}}])
    );
    let bad = api
        .get("/api/v1/namespaces/shop/pods?selector=tier%20in%20(a%2Cb")
        .problem(422);
    assert_eq!(bad["invalidParams"][0]["name"], "selector", "{bad}");

    let created = api.post(
        "/api/v1/namespaces/shop/captures",
        &json!({"metadata": {"name": "joined"}, "spec": {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "late"]}]},
            "filters": [{"protocol": "UDP", "ports": [PORT]}],
            "duration": "8s",
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let created = created.json();
    assert!(
        target(&created, "web-1").is_some() && target(&created, "db-1").is_none(),
        "{created}"
    );
    burst_from_pod(&web, SocketAddr::new(web.host_v4.into(), PORT), 5, 64);

    let late = Pod::new();
    let _late_sink = UdpSink::bind(late.host_v4.into(), PORT);
    write_inventory(
        &inventory,
        &[
            (&web, "web-1", "web"),
            (&db, "db-1", "db"),
            (&late, "late-1", "late"),
        ],
    );
    wait_for(&api, "the late pod joining", |c| {
        target(c, "late-1").is_some_and(|t| t["state"] == "Capturing")
    });
    burst_from_pod(&late, SocketAddr::new(late.host_v4.into(), PORT), 7, 64);

    // Give the web pod's packets time to reach the status, then delete the pod.
    wait_for(&api, "the web pod's packets counted", |c| {
        target(c, "web-1").is_some_and(|t| t["packets"] == 5)
    });
    drop(web);
    wait_for(&api, "the web pod ending as Gone", |c| {
        target(c, "web-1").is_some_and(|t| t["state"] == "Gone")
    });

    let done = api.wait_for_phase(
        "shop",
        "joined",
        &["Completed", "Failed"],
        Duration::from_secs(20),
    );
    assert_eq!(done["status"]["phase"], "Completed", "{done}");
    assert_eq!(
        target(&done, "web-1").unwrap()["packets"],
        5,
        "a vanished pod's packets are kept: {done}"
    );
    assert_eq!(target(&done, "web-1").unwrap()["state"], "Gone");
    assert_eq!(target(&done, "late-1").unwrap()["packets"], 7, "{done}");
    assert!(
        target(&done, "db-1").is_none(),
        "the selector never matched db-1: {done}"
    );
}

#[test]
fn max_packets_holds_across_every_pod_of_a_capture() {
    let (a, b) = (Pod::new(), Pod::new());
    let _sinks = (
        UdpSink::bind(a.host_v4.into(), 7960),
        UdpSink::bind(b.host_v4.into(), 7960),
    );
    let api = Api::start();
    let created = api.post(
        "/api/v1/namespaces/default/captures",
        &json!({"metadata": {"name": "budget"}, "spec": {
            "podSelector": {"matchExpressions": [{"key": "podcap.io/netns", "operator": "In", "values": [a.netns, b.netns]}]},
            "filters": [{"protocol": "UDP", "ports": [7960]}],
            "maxPackets": 50,
            "duration": "1m",
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    burst_from_pod(&a, SocketAddr::new(a.host_v4.into(), 7960), 40, 64);
    burst_from_pod(&b, SocketAddr::new(b.host_v4.into(), 7960), 40, 64);
    let done = api.wait_for_phase(
        "default",
        "budget",
        &["Completed", "Failed"],
        Duration::from_secs(15),
    );
    assert_eq!(
        done["status"]["phase"], "Completed",
        "the limit ends the capture before its window: {done}"
    );
    let total: u64 = done["status"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total, 50,
        "maxPackets counts the capture, not each pod: {done}"
    );
    assert!(
        done["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("maxPackets")),
        "{done}"
    );
}
