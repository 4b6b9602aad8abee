//! The routes the web console stands on, without a browser: the page and its files with their
//! security headers, namespaces and the all-namespace list, dry runs, selectors in kubectl's
//! string form, the decoded packet preview and the timeline of a real capture, and one-time
//! download tickets.

mod api_common;

use std::net::SocketAddr;
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};
use serde_json::json;

const CAPTURES: &str = "/api/v1/namespaces/default/captures";
/// A selector no pod on this machine has, for tests that need no traffic.
const NO_PODS: &str = "podcap.io/test=console-none";

#[test]
fn the_page_is_served_with_a_strict_policy_and_cached_by_etag() {
    let api = Api::start();
    let page = api.get_as("/", Some(""), &[]);
    assert_eq!(page.status, 200, "the page needs no token");
    assert!(page.content_type.starts_with("text/html"));
    let policy = page.header("content-security-policy").unwrap().to_string();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(String::from_utf8_lossy(&page.body).contains("/ui/app/main.js"));

    let script = api.get_as("/ui/app/main.js", Some(""), &[]);
    assert_eq!(script.status, 200);
    assert!(script.content_type.starts_with("text/javascript"));
    let etag = script.header("etag").unwrap().to_string();
    let again = api.get_as("/ui/app/main.js", Some(""), &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304, "unchanged files are not sent again");

    for path in [
        "/ui/../Cargo.toml",
        "/ui/tests/capture_flow.mjs",
        "/ui/nope.js",
    ] {
        assert_eq!(api.get_as(path, Some(""), &[]).status, 404, "{path}");
    }
}

#[test]
fn dry_runs_check_without_creating_and_selectors_may_be_text() {
    let api = Api::start();
    let body = json!({"metadata": {"name": "dry"}, "spec": {"podSelector": format!("{NO_PODS},tier in (a,b)"), "duration": "1m"}});
    let checked = api.post(&format!("{CAPTURES}?dryRun=All"), &body);
    assert_eq!(
        checked.status,
        200,
        "{}",
        String::from_utf8_lossy(&checked.body)
    );
    let spec = &checked.json()["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"]["podcap.io/test"],
        "console-none"
    );
    assert_eq!(spec["podSelector"]["matchExpressions"][0]["operator"], "In");
    assert_eq!(
        api.get(&format!("{CAPTURES}/dry")).status,
        404,
        "a dry run stores nothing"
    );

    let created = api.post(CAPTURES, &body);
    assert_eq!(created.status, 201);
    let stored = api.get(&format!("{CAPTURES}/dry")).json();
    assert_eq!(
        stored["spec"]["podSelector"], spec["podSelector"],
        "stored as the object"
    );

    let bad = api.post(
        CAPTURES,
        &json!({"spec": {"podSelector": "tier in (a", "duration": "1m"}}),
    );
    let problem = bad.problem(422);
    assert_eq!(problem["invalidParams"][0]["name"], "spec.podSelector");
    let bad_mode = api
        .post(&format!("{CAPTURES}?dryRun=yes"), &body)
        .problem(422);
    assert_eq!(bad_mode["invalidParams"][0]["name"], "dryRun");

    let both = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "Bad_Name"}, "spec": {"podSelector": {}, "duration": "forever"}}),
    );
    let names: Vec<String> = both.problem(422)["invalidParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|param| param["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["metadata.name", "spec.duration"],
        "one answer names every field"
    );

    let schedules = "/api/v1/namespaces/default/schedules";
    let preview = api.post(
        &format!("{schedules}?dryRun=All"),
        &json!({"spec": {"schedule": "0 2 * * *", "timeZone": "Europe/Berlin", "template": {"podSelector": NO_PODS, "duration": "10m"}}}),
    );
    assert_eq!(
        preview.status,
        200,
        "{}",
        String::from_utf8_lossy(&preview.body)
    );
    assert_eq!(
        preview.json()["status"]["nextScheduleTimes"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert!(api.get(schedules).json()["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn namespaces_and_the_all_namespace_list_show_only_what_a_token_may_read() {
    let api = Api::start();
    for namespace in ["alpha", "beta"] {
        let created = api.post(
            &format!("/api/v1/namespaces/{namespace}/captures"),
            &json!({"metadata": {"name": "c"}, "spec": {"podSelector": NO_PODS, "duration": "1m"}}),
        );
        assert_eq!(created.status, 201);
    }
    let names = |token: Option<&str>| -> Vec<String> {
        api.get_as("/api/v1/namespaces", token, &[]).json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = names(None);
    assert!(
        all.contains(&"alpha".to_string()) && all.contains(&"beta".to_string()),
        "{all:?}"
    );
    let beta_only = api.create_token("viewer", &["beta"]);
    assert_eq!(names(Some(&beta_only)), ["beta"]);

    let listed = |token: Option<&str>| -> Vec<String> {
        api.get_as("/api/v1/captures", token, &[]).json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["namespace"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(None), ["beta", "alpha"], "newest first");
    assert_eq!(listed(Some(&beta_only)), ["beta"]);
    assert_eq!(
        api.get("/api/v1/captures?phase=Bogus").problem(422)["invalidParams"][0]["name"],
        "phase"
    );
}

#[test]
fn preview_timeline_and_tickets_read_a_real_capture() {
    const PORT: u16 = 7941;
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), PORT);
    let api = Api::start();
    let created = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "seen"}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [PORT]}],
            "duration": "2s",
        }}),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), PORT), 150, 80);
    api.wait_for_phase("default", "seen", &["Completed"], Duration::from_secs(20));
    let capture = api.get(&format!("{CAPTURES}/seen")).json();
    let captured: u64 = capture["status"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|target| target["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(captured, 150);

    let rows = api.get(&format!("{CAPTURES}/seen/packets")).json()["items"].clone();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 100, "the first 100 by default");
    let first = &rows[0];
    assert_eq!(first["number"], 1);
    assert_eq!(first["protocol"], "UDP");
    assert_eq!(first["source"], pod.pod_v4.to_string());
    assert_eq!(first["destination"], pod.host_v4.to_string());
    // The pod's point of view: it sent this datagram.
    assert_eq!(first["direction"], "out");
    assert!(
        first["info"]
            .as_str()
            .unwrap()
            .ends_with(&format!("→ {PORT} Len=80")),
        "{first}"
    );
    assert_eq!(
        first["target"],
        format!(
            "default/{} on {}",
            pod.netns,
            capture["status"]["targets"][0]["node"].as_str().unwrap()
        )
    );
    let times: Vec<f64> = rows
        .iter()
        .map(|row| row["relativeSeconds"].as_f64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "time-ordered"
    );
    assert_eq!(
        api.get(&format!("{CAPTURES}/seen/packets?limit=7")).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert_eq!(
        api.get(&format!("{CAPTURES}/seen/packets?limit=0"))
            .problem(422)["invalidParams"][0]["name"],
        "limit"
    );

    let timeline = api.get(&format!("{CAPTURES}/seen/timeline")).json();
    assert_eq!(timeline["bucketSeconds"], 1);
    let counted: u64 = timeline["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 150, "every packet is in some bucket");
    let bytes: u64 = timeline["bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        bytes,
        capture["status"]["targets"][0]["bytes"].as_u64().unwrap()
    );

    // Tickets: one download each, no token needed to redeem, a token needed to get one.
    let tickets = format!("{CAPTURES}/seen/downloads");
    let ticket = api.post(&tickets, &json!({"format": "pcap"}));
    assert_eq!(
        ticket.status,
        201,
        "{}",
        String::from_utf8_lossy(&ticket.body)
    );
    let path = ticket.json()["url"].as_str().unwrap().to_string();
    assert!(path.starts_with("/download/pcd_"));
    let download = api.get_as(&path, Some(""), &[]);
    assert_eq!(download.status, 200);
    assert_eq!(download.content_type, "application/vnd.tcpdump.pcap");
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("seen.pcap");
    std::fs::write(&file, &download.body).unwrap();
    assert_eq!(tshark::assert_tshark_reads_cleanly(&file), 150);
    assert_eq!(
        api.get_as(&path, Some(""), &[]).problem(404)["status"],
        404,
        "used up"
    );

    let file_id = capture["status"]["targets"][0]["files"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = api.post(&tickets, &json!({"file": file_id}));
    assert_eq!(one.status, 201);
    let one = api.get_as(one.json()["url"].as_str().unwrap(), Some(""), &[]);
    assert_eq!(one.status, 200);
    assert_eq!(one.content_type, "application/x-pcapng");
    // The capture exists, so a file it lacks is a bad field (422), not a missing resource.
    let no_file = api.post(&tickets, &json!({"file": "nope"})).problem(422);
    assert_eq!(no_file["invalidParams"][0]["name"], "file", "{no_file}");
    api.post(&tickets, &json!({"format": "pcapx"})).problem(422);
    assert_eq!(api.post_as(&tickets, Some(""), &json!({})).status, 401);
    let elsewhere = api.create_token("viewer", &["other"]);
    assert_eq!(
        api.post_as(&tickets, Some(&elsewhere), &json!({})).status,
        403
    );
}
