//! `capture-api --kubernetes` against a real kube-apiserver v1.20.2 (podcap-testkit): the deploy
//! CRDs, namespace and API RBAC applied, the example Role letting alice capture in namespace
//! `shop` (and nowhere else), and the real binary running with the API's service-account token
//! (`api_token`, a kubeconfig like the in-cluster one). Cases share one apiserver and one API:
//!
//! - REST create/list/get/stop/delete are PacketCapture objects (`kubectl get pcap`);
//! - cluster auth: no token 401, alice 403 in namespace `bank` for list, get and download, and the
//!   cross-namespace lists show her only `shop`;
//! - a 6-field cron schedule fires, its captures have ownerReferences to it and its status a
//!   history, and deleting it lets the garbage collector delete them;
//! - the status controller moves a capture Scheduled → Capturing → Completed when a fake agent
//!   (agent_token, field manager `podcap-agent/node-a`) applies a target with a file;
//! - a PacketCapture applied with kubectl with `duration: "1000000years"` gets the maximum window
//!   and a status message naming `duration`, and the status controller keeps serving the
//!   capture beside it (the REST create of the same spec is refused);
//! - a capture whose podSelector matches no pod (this apiserver runs none) stays Capturing with
//!   a status message saying so, found by the API listing the namespace's pods;
//! - downloads relay that file from a FAKE agent (a test HTTP server implementing the agent's file
//!   endpoint contract, which also checks it is called with the API's token), merged with the pod
//!   named; share links are Secrets holding no token, download works, revoke → 410.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use capture_agent::cluster::slices::{self, Owner};
use capture_agent::cluster::tls::{AgentCa, DEFAULT_CA_SECRET};
use capture_spec::PacketCaptureSlice;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use podcap_testkit::cluster::{
    client_for, deploy, eventually, install_crds, tls_server_config, write_kubeconfig,
};
use podcap_testkit::kube::KubeApiServer;
use serde_json::{json, Value};

mod kube_common;
use kube_common::ApiProcess;
use sha2::{Digest, Sha256};

/// The fake agent's one file.
const FILE_ID: &str = "f1";
const POD_DESCRIPTION: &str = "shop/web-1 on node-a";

/// A named subtest.
type Case = (&'static str, fn(&Cluster));

/// Fields drop in order: the API stops before the apiserver it talks to.
struct Cluster {
    api: ApiProcess,
    server: KubeApiServer,
    runtime: tokio::runtime::Runtime,
    /// Authorization headers the fake agent saw.
    agent_calls: Arc<Mutex<Vec<String>>>,
    /// Authorization headers node-b's impostor agent saw (none, if the API checks its
    /// certificate before it sends its token).
    impostor_calls: Arc<Mutex<Vec<String>>>,
    _scratch: tempfile::TempDir,
}

/// A small valid pcapng: one Ethernet interface, `packets` frames one millisecond apart.
fn pcapng(packets: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let length = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&length.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    block(&mut out, 1, &idb);
    let start = 1_700_000_000_000_000u64;
    for i in 0..packets {
        let ts = start + u64::from(i) * 1000;
        let mut frame = vec![0u8; 60];
        frame[12] = 0x08;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&60u32.to_le_bytes());
        epb.extend_from_slice(&60u32.to_le_bytes());
        epb.extend_from_slice(&frame);
        block(&mut out, 6, &epb);
    }
    out
}

/// FAKE agent: the file endpoint of the agent contract for one file (`f1` of any capture),
/// answering 401 without the expected token and 404 problem+json for anything else.
/// The TLS configuration of a fake agent, set once the test knows it (node-a's comes from the
/// CA capture-api makes at its start, after the fake agent is listening).
type FakeAgentTls = Arc<OnceLock<Arc<rustls::ServerConfig>>>;

fn start_fake_agent(
    expected_token: String,
    calls: Arc<Mutex<Vec<String>>>,
    tls: FakeAgentTls,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let file = pcapng(3);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = eventually("the fake agent's certificate", 30, || tls.get().cloned());
            let Ok(connection) = rustls::ServerConnection::new(config) else {
                continue;
            };
            let mut stream = rustls::StreamOwned::new(connection, tcp);
            let mut reader = BufReader::new(&mut stream);
            let mut first = String::new();
            // A client that refuses the certificate ends here: no request, nothing recorded.
            if reader.read_line(&mut first).unwrap_or(0) == 0 {
                continue;
            }
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("authorization:") {
                    auth = line[line.len() - value.len()..].trim().to_string();
                }
            }
            calls.lock().unwrap().push(auth.clone());
            let path = first
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let (status, kind, body) = if auth != format!("Bearer {expected_token}") {
                (
                    401,
                    "application/problem+json",
                    br#"{"status":401}"#.to_vec(),
                )
            } else if path.starts_with("/v1/captures/")
                && path.ends_with(&format!("/files/{FILE_ID}"))
            {
                (200, "application/x-pcapng", file.clone())
            } else {
                (
                    404,
                    "application/problem+json",
                    br#"{"status":404}"#.to_vec(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    });
    port
}

/// The podcap agent CA capture-api made at its start (read from its Secret).
fn agent_ca_of(server: &KubeApiServer) -> AgentCa {
    let json = server.kubectl(&[
        "get",
        "secret",
        "-n",
        "podcap-system",
        DEFAULT_CA_SECRET,
        "-o",
        "json",
    ]);
    let secret: Secret = serde_json::from_str(&json).expect("the CA Secret");
    AgentCa::from_secret(&secret, DEFAULT_CA_SECRET).expect("a whole CA Secret")
}

#[test]
fn capture_api_in_kubernetes_mode() {
    let Some(server) = KubeApiServer::start_or_skip("capture_api_in_kubernetes_mode") else {
        return;
    };
    let started = Instant::now();
    install_crds(&server);
    // kubectl knows the short names once discovery has them.
    eventually("kubectl to know pcap", 60, || {
        server
            .kubectl_output(&["get", "pcap,pcs", "--all-namespaces"], None)
            .status
            .success()
            .then_some(())
    });
    server.kubectl(&["apply", "-f", &deploy("base/namespace.yaml")]);
    server.kubectl(&["apply", "-f", &deploy("base/api-rbac.yaml")]);
    server.kubectl(&["apply", "-f", &deploy("base/agent-rbac.yaml")]);
    for namespace in ["shop", "bank"] {
        server.kubectl(&["create", "namespace", namespace]);
    }
    server.kubectl(&["apply", "-f", &deploy("examples/capture-user-role.yaml")]);

    let scratch = tempfile::Builder::new()
        .prefix("podcap-kube-api-")
        .tempdir()
        .unwrap();
    let kubeconfig = scratch.path().join("api.kubeconfig");
    write_kubeconfig(&server, &server.api_token, &kubeconfig);
    let agent_calls = Arc::new(Mutex::new(Vec::new()));
    let agent_tls = FakeAgentTls::default();
    let agent_port = start_fake_agent(
        server.api_token.clone(),
        agent_calls.clone(),
        agent_tls.clone(),
    );
    // node-b's agent is an impostor: its certificate comes from another CA.
    let impostor_calls = Arc::new(Mutex::new(Vec::new()));
    let impostor_tls = FakeAgentTls::default();
    let impostor_port = start_fake_agent(
        server.api_token.clone(),
        impostor_calls.clone(),
        impostor_tls.clone(),
    );
    let foreign = AgentCa::generate().unwrap();
    let _ = impostor_tls.set(tls_server_config(
        &foreign.issue(&["127.0.0.1".to_string()]).unwrap(),
    ));
    let api = ApiProcess::start(
        scratch.path(),
        &kubeconfig,
        &[
            "--agent".into(),
            format!("node-a=https://127.0.0.1:{agent_port}"),
            "--agent".into(),
            format!("node-b=https://127.0.0.1:{impostor_port}"),
            // The status controller is tested with a fake agent that reports when told.
            "--report-timeout".into(),
            "1h".into(),
            "--finish-grace".into(),
            "1h".into(),
        ],
    );
    // capture-api made the podcap agent CA at its start; node-a's agent issues from it.
    let ca = agent_ca_of(&server);
    let _ = agent_tls.set(tls_server_config(
        &ca.issue(&["127.0.0.1".to_string()]).unwrap(),
    ));
    let cluster = Cluster {
        api,
        server,
        runtime: tokio::runtime::Runtime::new().unwrap(),
        agent_calls,
        impostor_calls,
        _scratch: scratch,
    };
    eprintln!("setup ... {:.1?}", started.elapsed());
    let cases: &[Case] = &[
        ("no_token_is_401", no_token_is_401),
        (
            "rest_captures_are_packetcapture_objects",
            rest_captures_are_packetcapture_objects,
        ),
        (
            "alice_is_403_in_another_namespace",
            alice_is_403_in_another_namespace,
        ),
        (
            "status_follows_the_window_and_the_agent",
            status_follows_the_window_and_the_agent,
        ),
        (
            "schedule_fires_and_garbage_collection_cleans_up",
            schedule_fires_and_garbage_collection_cleans_up,
        ),
        (
            "a_huge_duration_does_not_stop_the_status_controller",
            a_huge_duration_does_not_stop_the_status_controller,
        ),
        (
            "a_capture_selecting_no_pod_says_so",
            a_capture_selecting_no_pod_says_so,
        ),
        (
            "an_agent_with_another_ca_gets_no_token_and_no_download",
            an_agent_with_another_ca_gets_no_token_and_no_download,
        ),
        (
            "lists_page_through_the_apiserver",
            lists_page_through_the_apiserver,
        ),
        (
            "a_capture_from_before_slices_reads_and_downloads",
            a_capture_from_before_slices_reads_and_downloads,
        ),
    ];
    let mut failed = Vec::new();
    for (name, case) in cases {
        let at = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| case(&cluster))) {
            Ok(()) => eprintln!("subtest {name} ... ok ({:.1?})", at.elapsed()),
            Err(_) => {
                eprintln!("subtest {name} ... FAILED ({:.1?})", at.elapsed());
                failed.push(*name);
            }
        }
    }
    assert!(failed.is_empty(), "failed subtests: {}", failed.join(", "));
}

fn no_token_is_401(c: &Cluster) {
    let problem = c
        .api
        .call("GET", "/api/v1/namespaces/shop/captures", None, None)
        .problem(401);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization"),
        "{problem}"
    );
    let bad = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures",
            Some("not-a-token"),
            None,
        )
        .problem(401);
    assert!(
        bad["detail"].as_str().unwrap().contains("TokenReview"),
        "{bad}"
    );
    assert_eq!(c.api.call("GET", "/healthz", None, None).status, 200);
}

fn rest_captures_are_packetcapture_objects(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    let body = json!({"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "duration": "1h"}});
    let created = c.api.call(
        "POST",
        "/api/v1/namespaces/shop/captures",
        alice,
        Some(&body),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let object: Value = serde_json::from_str(
        &c.server
            .kubectl(&["get", "pcap", "-n", "shop", "web", "-o", "json"]),
    )
    .unwrap();
    assert!(
        object["spec"]["startTime"].is_string() && object["spec"]["endTime"].is_string(),
        "the window is resolved: {object}"
    );
    assert!(c
        .server
        .kubectl(&["get", "pcap", "-n", "shop"])
        .contains("web"));
    let listed = c
        .api
        .call("GET", "/api/v1/namespaces/shop/captures", alice, None)
        .json();
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["metadata"]["name"] == "web"));
    let got = c
        .api
        .call("GET", "/api/v1/namespaces/shop/captures/web", alice, None)
        .json();
    assert_eq!(got["metadata"]["uid"], object["metadata"]["uid"]);
    eventually("phase Capturing", 20, || {
        (c.api
            .call("GET", "/api/v1/namespaces/shop/captures/web", alice, None)
            .json()["status"]["phase"]
            == "Capturing")
            .then_some(())
    });
    let stopped = c.api.call(
        "POST",
        "/api/v1/namespaces/shop/captures/web/stop",
        alice,
        None,
    );
    assert_eq!(
        stopped.status,
        200,
        "{}",
        String::from_utf8_lossy(&stopped.body)
    );
    let object: Value = serde_json::from_str(
        &c.server
            .kubectl(&["get", "pcap", "-n", "shop", "web", "-o", "json"]),
    )
    .unwrap();
    let end =
        chrono::DateTime::parse_from_rfc3339(object["spec"]["endTime"].as_str().unwrap()).unwrap();
    assert!(
        end <= chrono::Utc::now() + chrono::Duration::seconds(1),
        "stop set endTime to now: {end}"
    );
    assert!(object["metadata"]["annotations"]["podcap.io/stopped-at"].is_string());
    assert_eq!(
        c.api
            .call(
                "DELETE",
                "/api/v1/namespaces/shop/captures/web",
                alice,
                None
            )
            .status,
        204
    );
    eventually("the object to go", 20, || {
        let out = c
            .server
            .kubectl_output(&["get", "pcap", "-n", "shop", "web"], None);
        (!out.status.success()).then_some(())
    });
    c.api
        .call("GET", "/api/v1/namespaces/shop/captures/web", alice, None)
        .problem(404);
}

fn alice_is_403_in_another_namespace(c: &Cluster) {
    c.server.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion": "podcap.io/v1alpha1", "kind": "PacketCapture", "metadata": {"name": "vault", "namespace": "bank"}, "spec": {"duration": "1h"}}"#),
    );
    let alice = Some(c.server.alice_token.as_str());
    for (path, denied) in [
        ("/api/v1/namespaces/bank/captures", "list packetcaptures"),
        (
            "/api/v1/namespaces/bank/captures/vault",
            "get packetcaptures",
        ),
        (
            "/api/v1/namespaces/bank/captures/vault/pcap",
            "get packetcaptures/files",
        ),
        (
            "/api/v1/namespaces/bank/captures/vault/files/f1",
            "get packetcaptures/files",
        ),
    ] {
        let problem = c.api.call("GET", path, alice, None).problem(403);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(denied) && detail.contains("\"bank\""),
            "{path}: {detail}"
        );
    }
    let bob = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures",
            Some(&c.server.bob_token),
            None,
        )
        .problem(403);
    assert!(bob["detail"].as_str().unwrap().contains("\"bob\""));
    let all = c.api.call("GET", "/api/v1/captures", alice, None).json();
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["metadata"]["namespace"] == "shop"),
        "{all}"
    );
    let admin = c
        .api
        .call("GET", "/api/v1/captures", Some(&c.server.admin_token), None)
        .json();
    assert!(admin["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["metadata"]["name"] == "vault"));
    let namespaces = c.api.call("GET", "/api/v1/namespaces", alice, None).json();
    assert_eq!(namespaces["items"], json!([{"name": "shop"}]));
}

/// Applies `targets` to a capture's status as node-a's agent would.
/// Alice creates capture `name` in namespace shop, capturing for an hour.
fn create_for_an_hour(c: &Cluster, name: &str) {
    let body = json!({"metadata": {"name": name}, "spec": {"duration": "1h"}});
    let created = c.api.call(
        "POST",
        "/api/v1/namespaces/shop/captures",
        Some(c.server.alice_token.as_str()),
        Some(&body),
    );
    assert_eq!(created.status, 201, "creating {name}");
}

/// What a node's agent writes for capture `name` in namespace shop: its slices (the node is
/// the first target's), with the agents' own writer, as the agent's service account.
fn apply_as_agent(c: &Cluster, name: &str, targets: Value) {
    let targets: Vec<capture_spec::TargetStatus> = serde_json::from_value(targets).unwrap();
    let node = targets[0].node.clone();
    let owner = Owner {
        namespace: "shop".into(),
        name: name.into(),
        uid: c.server.kubectl(&[
            "get",
            "pcap",
            "-n",
            "shop",
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ]),
    };
    let kubeconfig = c._scratch.path().join("agent.kubeconfig");
    write_kubeconfig(&c.server, &c.server.agent_token, &kubeconfig);
    c.runtime.block_on(async {
        let client = client_for(&kubeconfig).await;
        let api: Api<PacketCaptureSlice> = Api::namespaced(client, "shop");
        let manager = format!("podcap-agent/{node}");
        slices::apply(&api, &owner, &node, &manager, &targets, &[])
            .await
            .expect("the agent writes its slice");
    });
}

/// What an agent of the version before slices wrote: its entries in the capture's own
/// `status.targets` (written here as admin, since agents may no longer write there).
fn apply_as_old_agent(c: &Cluster, name: &str, targets: Value) {
    let kubeconfig = c._scratch.path().join("admin.kubeconfig");
    write_kubeconfig(&c.server, &c.server.admin_token, &kubeconfig);
    c.runtime.block_on(async {
        let client = client_for(&kubeconfig).await;
        let resource = kube::api::ApiResource::erase::<capture_spec::PacketCapture>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(client, "shop", &resource);
        let patch = json!({"apiVersion": "podcap.io/v1alpha1", "kind": "PacketCapture", "status": {"targets": targets}});
        api.patch_status(name, &PatchParams::apply("podcap-agent/node-a"), &Patch::Apply(&patch))
            .await
            .expect("the old agent applies its targets");
    });
}

/// Upgrade: a capture whose targets an agent of the previous version wrote into its status
/// still shows them, sums them and downloads them; a node's slice written after the upgrade
/// replaces that node's old entry, and the others stay.
fn a_capture_from_before_slices_reads_and_downloads(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    create_for_an_hour(c, "old");
    let file = pcapng(3);
    let entry = |pod: &str, packets: u64| {
        json!({
            "node": "node-a", "namespace": "shop", "pod": pod, "interface": "eth0",
            "state": "Capturing", "packets": packets, "bytes": 180, "drops": 0,
            "files": [{"id": FILE_ID, "name": format!("{pod}-eth0-000001.pcapng"), "size": file.len(), "packets": 3}],
        })
    };
    apply_as_old_agent(c, "old", json!([entry("web-1", 3), entry("web-2", 3)]));
    let got = eventually("the old entries totalled", 30, || {
        let got = c
            .api
            .call("GET", "/api/v1/namespaces/shop/captures/old", alice, None)
            .json();
        (got["status"]["packets"] == 6).then_some(got)
    });
    assert_eq!(
        got["status"]["targets"].as_array().unwrap().len(),
        2,
        "{got}"
    );
    let single = c.api.call(
        "GET",
        &format!("/api/v1/namespaces/shop/captures/old/files/{FILE_ID}"),
        alice,
        None,
    );
    assert_eq!(single.status, 200);
    assert_eq!(single.body, file);
    let merged = c.api.call(
        "GET",
        "/api/v1/namespaces/shop/captures/old/pcap",
        alice,
        None,
    );
    assert_eq!(merged.status, 200);
    // The upgraded agent of node-a writes web-1 again, now with 10 packets, in a slice.
    apply_as_agent(c, "old", json!([entry("web-1", 10)]));
    eventually("the slice's entry to replace the old one", 30, || {
        let got = c
            .api
            .call("GET", "/api/v1/namespaces/shop/captures/old", alice, None)
            .json();
        let pods: Vec<(String, u64)> = got["status"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["pod"].as_str().unwrap().to_string(),
                    t["packets"].as_u64().unwrap(),
                )
            })
            .collect();
        (pods == [("web-1".to_string(), 10), ("web-2".to_string(), 3)]).then_some(())
    });
    // The targets route pages through both, one at a time.
    let first = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures/old/targets?limit=1",
            alice,
            None,
        )
        .json();
    assert_eq!(first["kind"], "TargetList");
    assert_eq!(first["items"][0]["pod"], "web-1", "{first}");
    let token = first["metadata"]["continue"].as_str().expect("a next page");
    let second = c
        .api
        .call(
            "GET",
            &format!("/api/v1/namespaces/shop/captures/old/targets?limit=1&continue={token}"),
            alice,
            None,
        )
        .json();
    assert_eq!(second["items"][0]["pod"], "web-2", "{second}");
    assert!(second["metadata"].get("continue").is_none(), "{second}");
    let deleted = c.api.call(
        "DELETE",
        "/api/v1/namespaces/shop/captures/old",
        alice,
        None,
    );
    assert!(deleted.status < 300, "{}", deleted.status);
}

/// node-b's agent answers on its address with a certificate from another CA: the API refuses
/// it before sending its token, and says why.
fn an_agent_with_another_ca_gets_no_token_and_no_download(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    create_for_an_hour(c, "impostor");
    let file = pcapng(3);
    apply_as_agent(
        c,
        "impostor",
        json!([{
            "node": "node-b", "namespace": "shop", "pod": "web-2", "interface": "eth0",
            "state": "Capturing", "packets": 3, "bytes": 180, "drops": 0,
            "files": [{"id": FILE_ID, "name": "web-2-eth0-000001.pcapng", "size": file.len(), "packets": 3}],
        }]),
    );
    eventually("node-b's file in the status", 20, || {
        let got = c
            .api
            .call(
                "GET",
                "/api/v1/namespaces/shop/captures/impostor",
                alice,
                None,
            )
            .json();
        (got["status"]["targets"][0]["files"][0]["id"] == FILE_ID).then_some(())
    });
    let single = c.api.call(
        "GET",
        &format!("/api/v1/namespaces/shop/captures/impostor/files/{FILE_ID}"),
        alice,
        None,
    );
    let problem = single.problem(503);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("node-b") && detail.contains("not trusted"),
        "{problem}"
    );
    // The merged download fetches as it goes: it breaks off rather than end as if whole.
    match c.api.try_call(
        "GET",
        "/api/v1/namespaces/shop/captures/impostor/pcap",
        alice,
        None,
    ) {
        Err(_) => {}
        Ok(merged) => assert!(merged.status >= 500, "merged: {}", merged.status),
    }
    assert!(
        c.impostor_calls.lock().unwrap().is_empty(),
        "the impostor saw a request (and the API's token)"
    );
    let _ = c.api.call(
        "DELETE",
        "/api/v1/namespaces/shop/captures/impostor",
        alice,
        None,
    );
}

/// A namespace's captures page a page at a time from the API server (by name): the pages,
/// followed by their continue tokens, hold exactly what one whole list holds, none is larger
/// than asked, and a token the API server did not give out is a 422 at `continue`.
fn lists_page_through_the_apiserver(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    for index in 0..5 {
        create_for_an_hour(c, &format!("paged-{index}"));
    }
    let names = |answer: &Value| -> Vec<String> {
        answer["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let whole = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures?limit=1000",
            alice,
            None,
        )
        .json();
    assert!(whole["metadata"]["continue"].is_null(), "{whole}");
    let whole = names(&whole);
    assert!(whole.len() >= 5, "{whole:?}");
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..whole.len() {
        let path = match &token {
            None => "/api/v1/namespaces/shop/captures?limit=2".to_string(),
            Some(token) => format!("/api/v1/namespaces/shop/captures?limit=2&continue={token}"),
        };
        let page = c.api.call("GET", &path, alice, None).json();
        let items = names(&page);
        assert!(items.len() <= 2, "{page}");
        paged.extend(items);
        token = page["metadata"]["continue"].as_str().map(str::to_string);
        let Some(token) = &token else {
            break;
        };
        // The API server's own continue token (base64 of {"v", "rv", "start"}), handed
        // through: the page came from a limited list request, not from one whole list.
        let decoded = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                let padding = "=".repeat((4 - token.len() % 4) % 4);
                let standard = token.replace('-', "+").replace('_', "/") + &padding;
                child.stdin.take().unwrap().write_all(standard.as_bytes())?;
                child.wait_with_output()
            })
            .expect("base64 -d");
        let decoded: Value = serde_json::from_slice(&decoded.stdout)
            .unwrap_or_else(|e| panic!("{e}: the token {token} is not the API server's"));
        assert!(
            decoded["rv"].is_number() && decoded["start"].is_string(),
            "{decoded}"
        );
    }
    assert!(token.is_none(), "the pages end");
    assert_eq!(
        paged, whole,
        "the pages hold what one list holds, in its order"
    );
    let bad = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures?limit=2&continue=not-a-token",
            alice,
            None,
        )
        .problem(422);
    assert_eq!(bad["invalidParams"][0]["name"], "continue", "{bad}");
    for index in 0..5 {
        let _ = c.api.call(
            "DELETE",
            &format!("/api/v1/namespaces/shop/captures/paged-{index}"),
            alice,
            None,
        );
    }
}

fn phase(c: &Cluster, name: &str) -> String {
    c.server.kubectl(&[
        "get",
        "pcap",
        "-n",
        "shop",
        name,
        "-o",
        "jsonpath={.status.phase}",
    ])
}

fn status_follows_the_window_and_the_agent(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    let start = chrono::Utc::now() + chrono::Duration::seconds(4);
    let body = json!({"metadata": {"name": "timed"}, "spec": {"startTime": start.to_rfc3339(), "duration": "4s"}});
    assert_eq!(
        c.api
            .call(
                "POST",
                "/api/v1/namespaces/shop/captures",
                alice,
                Some(&body)
            )
            .status,
        201
    );
    assert_eq!(phase(c, "timed"), "Scheduled");
    eventually("Capturing", 20, || {
        (phase(c, "timed") == "Capturing").then_some(())
    });
    let file = pcapng(3);
    apply_as_agent(
        c,
        "timed",
        json!([{
            "node": "node-a", "namespace": "shop", "pod": "web-1", "interface": "eth0",
            "state": "Completed", "packets": 3, "bytes": 180, "drops": 0,
            "files": [{"id": FILE_ID, "name": "web-1-eth0-000001.pcapng", "size": file.len(), "packets": 3}],
        }]),
    );
    eventually("Completed", 30, || {
        (phase(c, "timed") == "Completed").then_some(())
    });
    let got = c
        .api
        .call("GET", "/api/v1/namespaces/shop/captures/timed", alice, None)
        .json();
    assert_eq!(got["status"]["packets"], 3, "totals are summarized: {got}");
    assert_eq!(
        got["status"]["targets"][0]["node"], "node-a",
        "the agent's entry stays"
    );
    // The capture's status is the API's alone; node-a's targets are in node-a's slice.
    let managers = c.server.kubectl(&[
        "get",
        "pcap",
        "-n",
        "shop",
        "timed",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(
        managers.contains("podcap-api") && !managers.contains("podcap-agent"),
        "{managers}"
    );
    let slice_managers = c.server.kubectl(&[
        "get",
        "pcapslice",
        "-n",
        "shop",
        "-l",
        "podcap.io/capture=timed",
        "-o",
        "jsonpath={.items[*].metadata.managedFields[*].manager}",
    ]);
    assert_eq!(slice_managers, "podcap-agent/node-a");

    // Downloads come from the (fake) agent of node-a, called with the API's own token.
    let merged = c.api.call(
        "GET",
        "/api/v1/namespaces/shop/captures/timed/pcap",
        alice,
        None,
    );
    assert_eq!(merged.status, 200);
    assert_eq!(&merged.body[..4], &0x0A0D_0D0Au32.to_le_bytes());
    assert!(
        merged
            .body
            .windows(POD_DESCRIPTION.len())
            .any(|w| w == POD_DESCRIPTION.as_bytes()),
        "one interface per pod, named"
    );
    let single = c.api.call(
        "GET",
        &format!("/api/v1/namespaces/shop/captures/timed/files/{FILE_ID}"),
        alice,
        None,
    );
    assert_eq!(
        (single.status, single.body.as_slice()),
        (200, file.as_slice()),
        "a single file is relayed unchanged"
    );
    let preview = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures/timed/packets",
            alice,
            None,
        )
        .json();
    assert_eq!(preview["items"].as_array().unwrap().len(), 3);
    assert!(c
        .agent_calls
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == &format!("Bearer {}", c.server.api_token)));

    // Share links: a Secret per link holding the hash, never the token.
    let share = c.api.call(
        "POST",
        "/api/v1/namespaces/shop/captures/timed/shares",
        alice,
        Some(&json!({"expiresIn": "1h"})),
    );
    assert_eq!(
        share.status,
        201,
        "{}",
        String::from_utf8_lossy(&share.body)
    );
    let share = share.json();
    let token = share["token"].as_str().unwrap().to_string();
    let secrets = c.server.kubectl(&[
        "get",
        "secrets,configmaps",
        "--all-namespaces",
        "-o",
        "json",
    ]);
    let decoded: String = serde_json::from_str::<Value>(&secrets).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|item| {
            item["data"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_values()
        })
        .filter_map(|v| v.as_str().and_then(base64_decode))
        .collect::<Vec<String>>()
        .join("\n");
    assert!(
        !secrets.contains(&token) && !decoded.contains(&token),
        "no plaintext token in the cluster"
    );
    let hash = hex(&Sha256::digest(token.as_bytes()));
    assert!(
        secrets.contains(&format!("share-{hash}")),
        "the link is stored under its hash"
    );
    let downloaded = c.api.call("GET", &format!("/share/{token}"), None, None);
    assert_eq!(downloaded.status, 200);
    assert_eq!(
        downloaded.body, merged.body,
        "the share serves the merged capture"
    );
    let listed = c
        .api
        .call(
            "GET",
            "/api/v1/namespaces/shop/captures/timed/shares",
            alice,
            None,
        )
        .json();
    assert_eq!(listed["items"][0]["downloads"], 1);
    let id = share["id"].as_str().unwrap();
    assert_eq!(
        c.api
            .call(
                "DELETE",
                &format!("/api/v1/namespaces/shop/captures/timed/shares/{id}"),
                alice,
                None
            )
            .status,
        204
    );
    c.api
        .call("GET", &format!("/share/{token}"), None, None)
        .problem(410);
}

/// Regression: the CRD only checks the length of `duration`, so kubectl could store
/// `duration: "1000000years"`, and computing its end panicked the status controller, which then
/// updated no capture until the API restarted. Now that capture records for the maximum window
/// and says why, and the capture applied beside it still moves on. The capture beside starts a
/// few seconds later, so its Capturing phase can only come from a pass after one that met the
/// huge capture.
fn a_huge_duration_does_not_stop_the_status_controller(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    let refused = c
        .api
        .call(
            "POST",
            "/api/v1/namespaces/shop/captures",
            alice,
            Some(&json!({"metadata": {"name": "huge-rest"}, "spec": {"duration": "1000000years"}})),
        )
        .problem(422);
    assert_eq!(
        refused["invalidParams"][0]["name"], "spec.duration",
        "{refused}"
    );
    assert!(
        refused["invalidParams"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("shorten duration"),
        "{refused}"
    );

    let start = chrono::Utc::now() + chrono::Duration::seconds(4);
    let manifests = format!(
        r#"
apiVersion: podcap.io/v1alpha1
kind: PacketCapture
metadata: {{name: huge, namespace: shop}}
spec: {{duration: "1000000years"}}
---
apiVersion: podcap.io/v1alpha1
kind: PacketCapture
metadata: {{name: beside, namespace: shop}}
spec: {{startTime: "{}", duration: "1h"}}
"#,
        start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    c.server
        .kubectl_stdin(&["apply", "-f", "-"], Some(&manifests));
    let message = eventually("a status message on the huge capture", 30, || {
        let message = c.server.kubectl(&[
            "get",
            "pcap",
            "-n",
            "shop",
            "huge",
            "-o",
            "jsonpath={.status.message}",
        ]);
        message.contains("duration").then_some(message)
    });
    assert!(
        message.contains("spec.duration makes the window")
            && message.contains("longer than the maximum")
            && message.contains("set duration so the window is at most"),
        "{message}"
    );
    assert_eq!(
        phase(c, "huge"),
        "Capturing",
        "it records for the maximum window"
    );
    eventually("the capture beside it to be Capturing", 30, || {
        (phase(c, "beside") == "Capturing").then_some(())
    });
    assert!(
        !c.api.log().contains("panicked"),
        "the API log shows a panic:\n{}",
        c.api.log()
    );
    c.server.kubectl(&[
        "delete",
        "pcap",
        "-n",
        "shop",
        "huge",
        "beside",
        "--wait=false",
    ]);
}

/// The agents report nothing for a capture without a target, so the API looks up what a silent
/// capture's podSelector matches and says it matches nothing (not a failure at the report
/// timeout: a pod may still start within the window).
fn a_capture_selecting_no_pod_says_so(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    let body = json!({"metadata": {"name": "nobody"}, "spec": {"podSelector": {"matchLabels": {"app": "nobody"}}, "duration": "1h"}});
    assert_eq!(
        c.api
            .call(
                "POST",
                "/api/v1/namespaces/shop/captures",
                alice,
                Some(&body)
            )
            .status,
        201
    );
    let message = eventually(
        "a status message on the capture selecting nothing",
        10,
        || {
            let got = c
                .api
                .call(
                    "GET",
                    "/api/v1/namespaces/shop/captures/nobody",
                    alice,
                    None,
                )
                .json();
            let message = got["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (!message.is_empty()).then_some(message)
        },
    );
    assert!(
        message.starts_with(
            "podSelector app=nobody selects no Running pod in namespace shop yet; pods that start before "
        ) && message.contains("kubectl -n shop get pods --show-labels"),
        "{message}"
    );
    assert_eq!(phase(c, "nobody"), "Capturing");
    c.server
        .kubectl(&["delete", "pcap", "-n", "shop", "nobody", "--wait=false"]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_decode(text: &str) -> Option<String> {
    let table = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | u32::from(table(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

fn schedule_fires_and_garbage_collection_cleans_up(c: &Cluster) {
    let alice = Some(c.server.alice_token.as_str());
    let body = json!({"metadata": {"name": "every5"}, "spec": {"schedule": "*/5 * * * * *", "historyLimit": 5, "template": {"duration": "2s"}}});
    let created = c.api.call(
        "POST",
        "/api/v1/namespaces/shop/schedules",
        alice,
        Some(&body),
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let schedule_uid: String = c.server.kubectl(&[
        "get",
        "pcs",
        "-n",
        "shop",
        "every5",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let runs: Value = eventually("a run", 30, || {
        let out = c.server.kubectl(&[
            "get",
            "pcap",
            "-n",
            "shop",
            "-l",
            "podcap.io/schedule=every5",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&out).unwrap();
        (!list["items"].as_array().unwrap().is_empty()).then_some(list)
    });
    let owner = &runs["items"][0]["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "PacketCaptureSchedule");
    assert_eq!(owner["uid"].as_str(), Some(schedule_uid.as_str()));
    assert_eq!(
        (
            owner["controller"].as_bool(),
            owner["blockOwnerDeletion"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let history = eventually("history in the status", 30, || {
        let got = c
            .api
            .call(
                "GET",
                "/api/v1/namespaces/shop/schedules/every5",
                alice,
                None,
            )
            .json();
        (!got["status"]["history"]
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true))
        .then_some(got)
    });
    assert!(
        history["status"]["nextScheduleTime"].is_string(),
        "{history}"
    );
    assert_eq!(
        c.api
            .call(
                "DELETE",
                "/api/v1/namespaces/shop/schedules/every5",
                alice,
                None
            )
            .status,
        204
    );
    eventually("the garbage collector to delete the runs", 120, || {
        let out = c.server.kubectl(&[
            "get",
            "pcap",
            "-n",
            "shop",
            "-l",
            "podcap.io/schedule=every5",
            "-o",
            "name",
        ]);
        out.trim().is_empty().then_some(())
    });
}
