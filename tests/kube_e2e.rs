//! podcap end to end in a (small) cluster: one real kube-apiserver v1.20.2, two real node agents
//! (`capture-agent run --node node-a` / `node-b`, agent token, deploy/'s agent RBAC), and the
//! real API (`capture-api --kubernetes --agent node-a=URL --agent node-b=URL`, API token,
//! deploy/'s API RBAC), all as processes. Each node has its own testkit netns pod, bound to it as
//! a Pod in namespace `shop` (`app: web`) by a fake kubelet. Users call the API as they would in
//! a cluster: alice with deploy/examples' Role (namespace `shop` only), the admin
//! (system:masters) elsewhere. Cases, in order:
//!
//! - `kubectl_apply_captures_on_both_nodes`: a PacketCapture YAML applied with kubectl (UDP port
//!   filter, 8 s) → both agents capture → the API shows per-node targets with packets and the
//!   status controller's phase Capturing → Completed; the merged download (pcapng and pcap)
//!   holds exactly the filtered traffic of both nodes' pods, one interface per pod named
//!   "shop/web-a on node-a" / "shop/web-b on node-b"; the packet preview has rows of both.
//! - `rest_capture_runs_on_both_nodes_and_stops`: a capture POSTed to the API runs on both agents;
//!   its live stream through the API carries both nodes' pods as they send; `POST .../stop` →
//!   phase Stopped, files kept on both nodes and downloadable.
//! - `delete_removes_the_files_on_both_nodes`: `DELETE` through the API → the objects go once
//!   both agents removed their files, and the agents' data directories no longer have them.
//! - `alice_is_403_in_another_namespace`: a capture the admin created in `bank` cannot be read or
//!   downloaded by alice.
//! - `apiserver_outage_loses_nothing`: the kube-apiserver stopped for 60 s mid-capture (etcd
//!   keeps running): the agents keep capturing, the API answers 503 problem+json meanwhile, and
//!   after the restart the status catches up and the merged download has every packet.
//!
//! Needs root (netns pods, routes, packet sockets) and the apiserver build (skips without it
//! unless PODCAP_REQUIRE_KUBE=1). The agent binary is built (or found up to date) with cargo.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

mod kube_common;

use capture_spec::{CaptureStatus, Phase, TargetState, TargetStatus};
use kube_common::ApiProcess;
use podcap_testkit::cluster::{
    deploy, eventually, install_crds, provision_agent_ca, write_kubeconfig, Agent, Kubelet,
};
use podcap_testkit::kube::KubeApiServer;
use podcap_testkit::traffic::{burst_from_pod, UdpSink};
use podcap_testkit::tshark::{assert_tshark_reads_cleanly, fields, LiveTshark};
use podcap_testkit::Pod;
use serde_json::{json, Value};

const NAMESPACE: &str = "shop";
/// The captures' filter: UDP to or from this port only.
const PORT: u16 = 7777;
const WEB_A: &str = "shop/web-a on node-a";
const WEB_B: &str = "shop/web-b on node-b";

/// Fields drop in order: the API and the agents are killed first, then the host routes go, the
/// netns pods, the apiserver, and the scratch directory.
struct Cluster {
    api: ApiProcess,
    agents: Vec<Agent>,
    /// Holds the pods' host routes until the agents are gone.
    _kubelet: Kubelet,
    /// Testkit pods: [0] is web-a on node-a, [1] web-b on node-b.
    pods: Vec<Pod>,
    server: KubeApiServer,
    scratch: tempfile::TempDir,
}

impl Cluster {
    fn alice(&self) -> &str {
        &self.server.alice_token
    }

    fn agent(&self, node: &str) -> &Agent {
        self.agents.iter().find(|a| a.node == node).unwrap()
    }

    /// The capture as alice sees it through the API (None: 404).
    fn capture(&self, name: &str) -> Option<Value> {
        let answer = self.api.call(
            "GET",
            &format!("/api/v1/namespaces/{NAMESPACE}/captures/{name}"),
            Some(self.alice()),
            None,
        );
        match answer.status {
            404 => None,
            200 => Some(answer.json()),
            other => panic!(
                "GET {name}: {other} {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }

    fn status(&self, name: &str) -> CaptureStatus {
        self.capture(name)
            .map(|c| serde_json::from_value(c["status"].clone()).unwrap())
            .unwrap_or_default()
    }

    fn target(&self, name: &str, node: &str, pod: &str) -> Option<TargetStatus> {
        self.status(name)
            .targets
            .into_iter()
            .find(|t| t.node == node && t.pod == pod)
    }

    fn uid(&self, name: &str) -> String {
        self.capture(name).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `count` datagrams from testkit pod `index` to its host end on PORT (the filter), and 10
    /// to PORT + 1 that the filter must leave out.
    fn send(&self, index: usize, count: u32) {
        let pod = &self.pods[index];
        let _sink = UdpSink::bind(pod.host_v4.into(), PORT);
        burst_from_pod(pod, SocketAddr::new(pod.host_v4.into(), PORT), count, 200);
        burst_from_pod(pod, SocketAddr::new(pod.host_v4.into(), PORT + 1), 10, 200);
    }

    /// Both pods capturing (state Capturing, a file open) in `name`.
    fn wait_both_capturing(&self, name: &str) {
        let capturing = |t: &TargetStatus| t.state == TargetState::Capturing && !t.files.is_empty();
        eventually("both nodes capturing", 20, || {
            self.target(name, "node-a", "web-a").filter(capturing)?;
            self.target(name, "node-b", "web-b").filter(capturing)
        });
    }

    /// GET `path` as alice into a scratch file.
    fn download(&self, path: &str, file: &str) -> (PathBuf, String) {
        let answer = self.api.call("GET", path, Some(self.alice()), None).ok(200);
        let out = self.scratch.path().join(file);
        std::fs::write(&out, &answer.body).unwrap();
        (out, answer.content_type)
    }

    fn dump_logs(&self) {
        eprintln!("---- capture-api log ----\n{}", self.api.log());
        for agent in &self.agents {
            eprintln!("---- {} log ----\n{}", agent.node, agent.log());
        }
    }
}

#[test]
fn podcap_in_a_cluster_end_to_end() {
    // Before the apiserver starts: a first build of the agent may take a while.
    let agent_binary = podcap_testkit::agent_binary();
    let Some(server) = KubeApiServer::start_or_skip("podcap_in_a_cluster_end_to_end") else {
        return;
    };
    let started = Instant::now();
    install_crds(&server);
    eventually("kubectl to know pcap", 60, || {
        server
            .kubectl_output(&["get", "pcap", "--all-namespaces"], None)
            .status
            .success()
            .then_some(())
    });
    server.kubectl(&[
        "apply",
        "-f",
        &deploy("base/namespace.yaml"),
        "-f",
        &deploy("base/agent-rbac.yaml"),
        "-f",
        &deploy("base/api-rbac.yaml"),
    ]);
    for namespace in [NAMESPACE, "bank"] {
        server.kubectl(&["create", "namespace", namespace]);
    }
    server.kubectl(&["apply", "-f", &deploy("examples/capture-user-role.yaml")]);

    let scratch = tempfile::Builder::new()
        .prefix("podcap-kube-e2e-")
        .tempdir()
        .unwrap();
    // The CA capture-api would make at its first start, there before the agents start.
    provision_agent_ca(&server);
    let agent_kubeconfig = scratch.path().join("agent.kubeconfig");
    write_kubeconfig(&server, &server.agent_token, &agent_kubeconfig);
    let api_kubeconfig = scratch.path().join("api.kubeconfig");
    write_kubeconfig(&server, &server.api_token, &api_kubeconfig);
    let pods = vec![Pod::new(), Pod::new()];
    let agents = vec![
        Agent::new(agent_binary, "node-a", scratch.path(), &agent_kubeconfig),
        Agent::new(agent_binary, "node-b", scratch.path(), &agent_kubeconfig),
    ];
    let agent_args: Vec<String> = agents
        .iter()
        .flat_map(|agent| {
            [
                "--agent".to_string(),
                format!("{}=https://{}", agent.node, agent.listen),
            ]
        })
        .collect();
    let api = ApiProcess::start(scratch.path(), &api_kubeconfig, &agent_args);
    let mut kubelet = Kubelet::new(&server);
    kubelet.start_pod(&server, NAMESPACE, "web-a", "web", "node-a", &pods[0]);
    kubelet.start_pod(&server, NAMESPACE, "web-b", "web", "node-b", &pods[1]);
    let cluster = Cluster {
        api,
        agents,
        _kubelet: kubelet,
        pods,
        server,
        scratch,
    };
    eprintln!("setup ... {:.1?}", started.elapsed());

    type Case = fn(&Cluster);
    let cases: [(&str, Case); 5] = [
        (
            "kubectl_apply_captures_on_both_nodes",
            kubectl_apply_captures_on_both_nodes,
        ),
        (
            "rest_capture_runs_on_both_nodes_and_stops",
            rest_capture_runs_on_both_nodes_and_stops,
        ),
        (
            "delete_removes_the_files_on_both_nodes",
            delete_removes_the_files_on_both_nodes,
        ),
        (
            "alice_is_403_in_another_namespace",
            alice_is_403_in_another_namespace,
        ),
        // Last: it stops and restarts the apiserver.
        (
            "apiserver_outage_loses_nothing",
            apiserver_outage_loses_nothing,
        ),
    ];
    let mut failed = Vec::new();
    for (name, case) in cases {
        if name == "apiserver_outage_loses_nothing" {
            // A refused status apply is a bug until the outage; a restarting apiserver refuses
            // (403) until its authorizer has loaded the RBAC objects, which the agents retry.
            for agent in &cluster.agents {
                agent.assert_clean_log();
            }
        }
        let at = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| case(&cluster)));
        eprintln!(
            "subtest {name} ... {} ({:.1?})",
            if outcome.is_ok() { "ok" } else { "FAILED" },
            at.elapsed()
        );
        if outcome.is_err() {
            failed.push(name);
        }
    }
    if !failed.is_empty() || std::env::var_os("PODCAP_TEST_AGENT_LOGS").is_some() {
        cluster.dump_logs();
    }
    for agent in &cluster.agents {
        let log = agent.log();
        assert!(!log.contains("panicked"), "{}:\n{log}", agent.node);
    }
    let api_log = cluster.api.log();
    assert!(!api_log.contains("panicked"), "capture-api:\n{api_log}");
    assert!(failed.is_empty(), "failed subtests: {}", failed.join(", "));
}

fn capture_yaml(name: &str, duration: &str) -> String {
    format!(
        "apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n  podSelector:\n    matchLabels:\n      app: web\n  filters:\n  - protocol: UDP\n    ports: [{PORT}]\n  duration: {duration}\n"
    )
}

/// Frames per `frame.interface_description` of a pcapng file, and their UDP destination ports.
fn per_interface(file: &std::path::Path) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut ports = Vec::new();
    for row in fields(file, None, &["frame.interface_description", "udp.dstport"]) {
        *counts.entry(row[0].clone()).or_insert(0) += 1;
        ports.push(row[1].clone());
    }
    (counts, ports)
}

fn kubectl_apply_captures_on_both_nodes(c: &Cluster) {
    let name = "web";
    c.server
        .kubectl_stdin(&["apply", "-f", "-"], Some(&capture_yaml(name, "8s")));
    // The phases the API shows on the way, in order.
    let mut phases: Vec<Phase> = Vec::new();
    let mut note = |status: &CaptureStatus| {
        if phases.last() != Some(&status.phase) {
            phases.push(status.phase);
        }
    };
    let capturing = |t: &TargetStatus| t.state == TargetState::Capturing && !t.files.is_empty();
    eventually("both nodes capturing", 20, || {
        let status = c.status(name);
        note(&status);
        let found = |node: &str, pod: &str| {
            status
                .targets
                .iter()
                .any(|t| t.node == node && t.pod == pod && capturing(t))
        };
        (found("node-a", "web-a") && found("node-b", "web-b")).then_some(())
    });
    c.send(0, 40);
    c.send(1, 30);
    // The window closes 8 s after creation; the agents report their final entries and the
    // status controller finishes the capture.
    let status = eventually("phase Completed", 45, || {
        let status = c.status(name);
        note(&status);
        status.phase.is_finished().then_some(status)
    });
    assert_eq!(status.phase, Phase::Completed, "{status:?}");
    assert!(
        phases.contains(&Phase::Capturing),
        "the API showed the capture Capturing on the way: {phases:?}"
    );
    assert_eq!(
        phases.iter().filter(|p| **p == Phase::Completed).count(),
        1,
        "{phases:?}"
    );
    assert!(status.started_at.is_some() && status.finished_at.is_some());
    assert_eq!(status.targets.len(), 2, "{:?}", status.targets);
    let packets_of = |node: &str| {
        let target = status.targets.iter().find(|t| t.node == node).unwrap();
        assert_eq!(target.state, TargetState::Completed, "{target:?}");
        assert_eq!(target.namespace, NAMESPACE);
        target.packets
    };
    // The filter keeps UDP PORT only: exactly the bursts to it.
    assert_eq!((packets_of("node-a"), packets_of("node-b")), (40, 30));
    let total: u64 = status.targets.iter().map(|t| t.packets).sum();
    assert_eq!(status.packets, Some(total), "the totals are summarized");

    // The merged download through the API: both nodes' pods, one interface each, named.
    let base = format!("/api/v1/namespaces/{NAMESPACE}/captures/{name}");
    let (pcapng, kind) = c.download(&format!("{base}/pcap"), "web.pcapng");
    assert_eq!(kind, "application/x-pcapng");
    assert_eq!(assert_tshark_reads_cleanly(&pcapng) as u64, total);
    let (counts, ports) = per_interface(&pcapng);
    assert_eq!(
        counts,
        BTreeMap::from([(WEB_A.to_string(), 40), (WEB_B.to_string(), 30)]),
        "frames per pod interface"
    );
    assert!(
        ports.iter().all(|p| p == &PORT.to_string()),
        "only the filtered port: {ports:?}"
    );
    // The same as classic pcap.
    let (pcap, kind) = c.download(&format!("{base}/pcap?format=pcap"), "web.pcap");
    assert_eq!(kind, "application/vnd.tcpdump.pcap");
    let magic = std::fs::read(&pcap).unwrap()[..4].to_vec();
    assert!(
        [0xa1b2_c3d4u32, 0xa1b2_3c4d]
            .iter()
            .any(|m| magic == m.to_le_bytes() || magic == m.to_be_bytes()),
        "not a pcap file: {magic:02x?}"
    );
    assert_eq!(assert_tshark_reads_cleanly(&pcap) as u64, total);
    // The packet preview decodes rows of both pods.
    let preview = c
        .api
        .call(
            "GET",
            &format!("{base}/packets?limit=1000"),
            Some(c.alice()),
            None,
        )
        .ok(200)
        .json();
    let items = preview["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, total);
    for pod in [WEB_A, WEB_B] {
        assert!(
            items
                .iter()
                .any(|i| i["target"] == pod && i["protocol"] == "UDP"),
            "no preview row of {pod}"
        );
    }
}

fn rest_capture_runs_on_both_nodes_and_stops(c: &Cluster) {
    let name = "rest";
    let body = json!({"metadata": {"name": name}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "filters": [{"protocol": "UDP", "ports": [PORT]}],
        "duration": "10m",
    }});
    c.api
        .call(
            "POST",
            &format!("/api/v1/namespaces/{NAMESPACE}/captures"),
            Some(c.alice()),
            Some(&body),
        )
        .ok(201);
    c.wait_both_capturing(name);
    // The status controller's next pass (every second) follows the agents.
    eventually("phase Capturing", 10, || {
        (c.status(name).phase == Phase::Capturing).then_some(())
    });
    // The live stream through the API interleaves both nodes' agents: tshark reads it as it
    // comes and stops after the 45 packets sent below, one interface per pod.
    let response = c
        .api
        .http
        .get(format!(
            "{}/api/v1/namespaces/{NAMESPACE}/captures/{name}/live",
            c.api.base
        ))
        .header("Authorization", format!("Bearer {}", c.alice()))
        .call()
        .expect("the live request reached the API");
    assert_eq!(response.status().as_u16(), 200, "live stream");
    let live = LiveTshark::start(
        response.into_body().into_reader(),
        45,
        &["frame.interface_description"],
    );
    c.send(0, 20);
    c.send(1, 25);
    let (rows, relay) = live.rows();
    let mut live = BTreeMap::new();
    for row in rows {
        *live.entry(row[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(
        live,
        BTreeMap::from([(WEB_A.to_string(), 20), (WEB_B.to_string(), 25)]),
        "the live stream carries both nodes' pods"
    );
    eventually("both nodes' packets in status", 20, || {
        let a = c.target(name, "node-a", "web-a")?;
        let b = c.target(name, "node-b", "web-b")?;
        (a.packets == 20 && b.packets == 25).then_some(())
    });
    let stopped = c
        .api
        .call(
            "POST",
            &format!("/api/v1/namespaces/{NAMESPACE}/captures/{name}/stop"),
            Some(c.alice()),
            None,
        )
        .ok(200)
        .json();
    assert_eq!(stopped["metadata"]["name"], name);
    let status = eventually("phase Stopped", 45, || {
        let status = c.status(name);
        status.phase.is_finished().then_some(status)
    });
    assert_eq!(status.phase, Phase::Stopped, "{status:?}");
    assert!(
        status.targets.iter().all(|t| t.state.is_finished()),
        "{:?}",
        status.targets
    );
    assert_eq!(status.packets, Some(45));
    // The stopped capture's live streams end, and with them the relay.
    relay.join().expect("the live relay");
    // The files stay on both nodes and the merged download still has them all.
    let uid = c.uid(name);
    for node in ["node-a", "node-b"] {
        assert!(c.agent(node).capture_dir(&uid).is_dir(), "{node}");
    }
    let (merged, _) = c.download(
        &format!("/api/v1/namespaces/{NAMESPACE}/captures/{name}/pcap"),
        "rest.pcapng",
    );
    assert_eq!(assert_tshark_reads_cleanly(&merged), 45);
    let (counts, _) = per_interface(&merged);
    assert_eq!(
        counts,
        BTreeMap::from([(WEB_A.to_string(), 20), (WEB_B.to_string(), 25)])
    );
}

fn delete_removes_the_files_on_both_nodes(c: &Cluster) {
    for name in ["web", "rest"] {
        let uid = c.uid(name);
        for node in ["node-a", "node-b"] {
            assert!(c.agent(node).capture_dir(&uid).is_dir(), "{name} on {node}");
        }
        c.api
            .call(
                "DELETE",
                &format!("/api/v1/namespaces/{NAMESPACE}/captures/{name}"),
                Some(c.alice()),
                None,
            )
            .ok(204);
        // The object goes once both agents have removed their files and finalizers.
        eventually(&format!("{name} to be gone"), 30, || {
            c.capture(name).is_none().then_some(())
        });
        assert!(!c
            .server
            .kubectl_output(&["get", "pcap", "-n", NAMESPACE, name], None)
            .status
            .success());
        for node in ["node-a", "node-b"] {
            assert!(
                !c.agent(node).capture_dir(&uid).exists(),
                "{node} kept {name}'s files"
            );
        }
    }
}

fn alice_is_403_in_another_namespace(c: &Cluster) {
    let admin = c.server.admin_token.as_str();
    let body = json!({"metadata": {"name": "vault"}, "spec": {"duration": "10m"}});
    c.api
        .call(
            "POST",
            "/api/v1/namespaces/bank/captures",
            Some(admin),
            Some(&body),
        )
        .ok(201);
    let base = "/api/v1/namespaces/bank/captures/vault";
    c.api.call("GET", base, Some(admin), None).ok(200);
    for (path, denied) in [
        (format!("{base}/pcap"), "get packetcaptures/files"),
        (
            format!("{base}/pcap?format=pcap"),
            "get packetcaptures/files",
        ),
        (format!("{base}/packets"), "get packetcaptures/files"),
        (base.to_string(), "get packetcaptures"),
    ] {
        let answer = c.api.call("GET", &path, Some(c.alice()), None).ok(403);
        assert_eq!(answer.content_type, "application/problem+json");
        let detail = answer.json()["detail"].as_str().unwrap().to_string();
        assert!(
            detail.contains(denied) && detail.contains("\"bank\""),
            "{path}: {detail}"
        );
    }
    c.api.call("DELETE", base, Some(c.alice()), None).ok(403);
    c.api.call("DELETE", base, Some(admin), None).ok(204);
    eventually("vault to be gone", 30, || {
        (c.api.call("GET", base, Some(admin), None).status == 404).then_some(())
    });
}

/// Bytes of capture files `uid` has on `node` (0 before it has any).
fn bytes_on_node(c: &Cluster, node: &str, uid: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(c.agent(node).capture_dir(uid)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

/// The kube-apiserver down for 60 s in the middle of a capture (etcd keeps the objects): the
/// agents keep capturing into their files, the API answers 503 problem+json saying the
/// Kubernetes API is unreachable (promptly, never a hang), and once the apiserver is back the
/// status catches up with every packet sent meanwhile and the merged download holds them all.
fn apiserver_outage_loses_nothing(c: &Cluster) {
    const OUTAGE: std::time::Duration = std::time::Duration::from_secs(60);
    let name = "outage";
    let body = json!({"metadata": {"name": name}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "filters": [{"protocol": "UDP", "ports": [PORT]}],
        "duration": "10m",
    }});
    let captures = format!("/api/v1/namespaces/{NAMESPACE}/captures");
    c.api
        .call("POST", &captures, Some(c.alice()), Some(&body))
        .ok(201);
    c.wait_both_capturing(name);
    c.send(0, 20);
    c.send(1, 25);
    eventually("the packets before the outage in status", 20, || {
        let a = c.target(name, "node-a", "web-a")?;
        let b = c.target(name, "node-b", "web-b")?;
        (a.packets == 20 && b.packets == 25).then_some(())
    });
    let uid = c.uid(name);
    let before: Vec<u64> = ["node-a", "node-b"]
        .iter()
        .map(|node| bytes_on_node(c, node, &uid))
        .collect();

    let stopped = c.server.stop_apiserver();
    let down_since = Instant::now();
    c.send(0, 30);
    c.send(1, 35);
    let mut answers = 0;
    while down_since.elapsed() < OUTAGE {
        for path in [format!("{captures}/{name}"), captures.clone()] {
            let asked = Instant::now();
            let answer = c.api.call("GET", &path, Some(c.alice()), None);
            assert!(
                asked.elapsed() < std::time::Duration::from_secs(15),
                "GET {path} took {:.1?} while the apiserver was down",
                asked.elapsed()
            );
            let problem = answer.problem(503);
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("Kubernetes API") || detail.contains("API server"),
                "the 503 says what is unreachable: {detail}"
            );
            answers += 1;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    // The agents kept capturing while nothing could be written to the apiserver.
    for (node, before) in ["node-a", "node-b"].iter().zip(before) {
        let now = bytes_on_node(c, node, &uid);
        assert!(
            now > before,
            "{node}'s files grew during the outage ({before} -> {now} bytes)"
        );
    }
    c.server.restart_apiserver(stopped);
    eprintln!(
        "apiserver down {:.1?}; the API answered 503 problem+json {answers} times",
        down_since.elapsed()
    );

    eventually("the status to catch up after the outage", 60, || {
        let a = c.target(name, "node-a", "web-a")?;
        let b = c.target(name, "node-b", "web-b")?;
        (a.packets == 50 && b.packets == 60).then_some(())
    });
    c.api
        .call(
            "POST",
            &format!("{captures}/{name}/stop"),
            Some(c.alice()),
            None,
        )
        .ok(200);
    let status = eventually("phase Stopped after the outage", 45, || {
        let status = c.status(name);
        status.phase.is_finished().then_some(status)
    });
    assert_eq!(status.phase, Phase::Stopped, "{status:?}");
    assert_eq!(status.packets, Some(110));
    let (merged, _) = c.download(&format!("{captures}/{name}/pcap"), "outage.pcapng");
    assert_eq!(assert_tshark_reads_cleanly(&merged), 110);
}
