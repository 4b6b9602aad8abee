//! `capture-agent run` against a real kube-apiserver v1.20.2: two agent processes play two nodes
//! (`node-a`, `node-b`), each with its own data directory, file endpoint and testkit netns pod,
//! running with the agent's service-account token under deploy/'s agent RBAC only. Pods are
//! created through the API with `spec.nodeName` set, and the test plays the kubelet: it patches
//! their status (Running, pod IP) and adds the /32 host route a routed CNI would add.
//!
//! Cases, in order, against one apiserver:
//! - `both_nodes_capture_and_serve_files`: a PacketCapture applied with kubectl (app=web, UDP
//!   port filter, short duration) → both agents capture their pod's traffic → each node's
//!   PacketCaptureSlice holds its target with packets and files, and both finalizers are on; the file endpoint streams a
//!   file tshark reads (API token), serves a Range, refuses alice (403), no token (401), an
//!   unknown file (404) and a live stream of a finished capture (409); deleting the capture
//!   removes the files, the slices and the finalizers of both nodes, so the object disappears.
//! - `pod_netns_without_the_fallback_fails_naming_the_overlay`: a capture with `capturePoint:
//!   podNetns` on agents without `--netns-fallback` fails on both nodes at once, naming the
//!   netns-fallback overlay and its privileges.
//! - `restart_resumes_in_a_new_segment_and_late_pods_join`: SIGKILL one agent mid-capture and
//!   start it again → its target continues in segment s2 and status keeps s1's file (still
//!   downloadable); a pod started after the capture began is captured too; a live stream of
//!   the running capture carries packets; SIGTERM closes the files and reports their final
//!   sizes before the agent exits 0.
//!
//! Needs root (netns pods, routes, packet sockets) and the apiserver build (skips without it
//! unless PODCAP_REQUIRE_KUBE=1).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capture_spec::{PacketCapture, TargetState, TargetStatus};
use podcap_testkit::cluster::{
    agent_connection, capture_slices, deploy, eventually, http_get, install_crds,
    provision_agent_ca, slice_targets, write_kubeconfig, Agent, Kubelet,
};
use podcap_testkit::kube::KubeApiServer;
use podcap_testkit::traffic::{burst_from_pod, UdpSink};
use podcap_testkit::tshark::assert_tshark_reads_cleanly;
use podcap_testkit::Pod;

const NAMESPACE: &str = "agents";
const PORT: u16 = 7777;

/// Fields drop in order: agents first (killed), then the host routes, the netns pods, and the
/// apiserver.
struct Cluster {
    agents: Vec<Agent>,
    kubelet: Kubelet,
    /// Testkit pods: [0] on node-a, [1] on node-b, [2] (late) on node-b.
    pods: Vec<Pod>,
    server: KubeApiServer,
    scratch: tempfile::TempDir,
}

impl Cluster {
    fn agent(&self, node: &str) -> &Agent {
        self.agents.iter().find(|a| a.node == node).unwrap()
    }

    fn capture(&self, name: &str) -> Option<PacketCapture> {
        let output = self.server.kubectl_output(
            &["get", "packetcaptures", name, "-n", NAMESPACE, "-o", "json"],
            None,
        );
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
    }

    /// Every node's PacketCaptureSlices of the capture with this uid.
    fn slices(&self, uid: &str) -> Vec<serde_json::Value> {
        capture_slices(|args| self.server.kubectl(args), NAMESPACE, uid)
    }

    /// The capture's targets: those of every node's slices of it.
    fn targets(&self, name: &str) -> Vec<TargetStatus> {
        let Some(uid) = self.capture(name).and_then(|c| c.metadata.uid) else {
            return Vec::new();
        };
        slice_targets(|args| self.server.kubectl(args), NAMESPACE, &uid)
    }

    fn target(&self, capture: &str, node: &str, pod: &str) -> Option<TargetStatus> {
        self.targets(capture)
            .into_iter()
            .find(|t| t.node == node && t.pod == pod)
    }

    /// A Pod through the API, bound to `node`, then "started" as its kubelet would: Running
    /// with the testkit pod's IP, and the /32 host route a routed CNI installs.
    fn start_pod(&mut self, name: &str, node: &str, testkit: usize) {
        self.kubelet.start_pod(
            &self.server,
            NAMESPACE,
            name,
            "web",
            node,
            &self.pods[testkit],
        );
    }

    /// Datagrams from testkit pod `index` to its host end, UDP port PORT (the capture's filter).
    fn send(&self, index: usize, count: u32) {
        let pod = &self.pods[index];
        let _sink = UdpSink::bind(pod.host_v4.into(), PORT);
        burst_from_pod(pod, SocketAddr::new(pod.host_v4.into(), PORT), count, 200);
        // Also some that the filter must leave out.
        burst_from_pod(pod, SocketAddr::new(pod.host_v4.into(), PORT + 1), 10, 200);
    }

    /// Downloads a file from an agent's endpoint with the API's token, into the scratch dir.
    fn download(&self, node: &str, uid: &str, id: &str) -> PathBuf {
        let answer = http_get(
            self.agent(node).listen,
            &format!("/v1/captures/{uid}/files/{id}"),
            Some(&self.server.api_token),
            None,
        )
        .unwrap();
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let path = self.scratch.path().join(format!("{node}-{id}"));
        std::fs::write(&path, &answer.body).unwrap();
        path
    }

    fn dump_logs(&self) {
        for agent in &self.agents {
            eprintln!("---- {} log ----\n{}", agent.node, agent.log());
        }
    }
}

#[test]
fn capture_agents_in_a_cluster() {
    let Some(server) = KubeApiServer::start_or_skip("capture_agents_in_a_cluster") else {
        return;
    };
    install_crds(&server);
    server.kubectl(&[
        "apply",
        "-f",
        &deploy("base/namespace.yaml"),
        "-f",
        &deploy("base/agent-rbac.yaml"),
    ]);
    server.kubectl(&["create", "namespace", NAMESPACE]);
    provision_agent_ca(&server);
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("agent.kubeconfig");
    write_kubeconfig(&server, &server.agent_token, &kubeconfig);
    let pods = vec![Pod::new(), Pod::new(), Pod::new()];
    let binary = podcap_testkit::agent_binary();
    let agents = vec![
        Agent::new(binary, "node-a", scratch.path(), &kubeconfig),
        Agent::new(binary, "node-b", scratch.path(), &kubeconfig),
    ];
    let kubelet = Kubelet::new(&server);
    let mut cluster = Cluster {
        server,
        kubelet,
        agents,
        pods,
        scratch,
    };
    cluster.start_pod("web-a", "node-a", 0);
    cluster.start_pod("web-b", "node-b", 1);
    let mut failed = Vec::new();
    type Case = fn(&mut Cluster);
    let cases: [(&str, Case); 3] = [
        (
            "both_nodes_capture_and_serve_files",
            both_nodes_capture_and_serve_files,
        ),
        (
            "pod_netns_without_the_fallback_fails_naming_the_overlay",
            pod_netns_without_the_fallback_fails_naming_the_overlay,
        ),
        (
            "restart_resumes_in_a_new_segment_and_late_pods_join",
            restart_resumes_in_a_new_segment_and_late_pods_join,
        ),
    ];
    for (name, case) in cases {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut cluster)));
        eprintln!(
            "subtest {name} ... {} ({:.1?})",
            if outcome.is_ok() { "ok" } else { "FAILED" },
            started.elapsed()
        );
        if outcome.is_err() {
            failed.push(name);
        }
    }
    if !failed.is_empty() || std::env::var_os("PODCAP_TEST_AGENT_LOGS").is_some() {
        cluster.dump_logs();
    }
    for agent in &cluster.agents {
        agent.assert_clean_log();
    }
    assert!(failed.is_empty(), "failed subtests: {}", failed.join(", "));
}

fn capture_yaml(name: &str, duration: &str) -> String {
    format!(
        "apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: {name}\nspec:\n  podSelector:\n    matchLabels:\n      app: web\n  filters:\n  - protocol: UDP\n    ports: [{PORT}]\n  duration: {duration}\n"
    )
}

fn uid_of(c: &Cluster, name: &str) -> String {
    c.capture(name).unwrap().metadata.uid.unwrap()
}

fn capturing(t: &TargetStatus) -> bool {
    t.state == TargetState::Capturing && !t.files.is_empty()
}

/// curl against the file endpoint's /healthz: the exit code and the HTTP status it saw
/// ("000" when none).
fn curl_healthz(args: &[&str], url: &str) -> (i32, String) {
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    eprintln!(
        "curl {} {url}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The endpoint speaks TLS only, with a certificate from the podcap agent CA that names the
/// address: curl trusting that CA gets 200; plain HTTP gets no HTTP answer at all; another CA,
/// or another name for the same address, is refused by the client (curl's 60).
fn endpoint_is_https_from_the_agent_ca_only(c: &Cluster, listen: std::net::SocketAddr) {
    let ca_file = c.scratch.path().join("agent-ca.pem");
    std::fs::write(&ca_file, podcap_testkit::cluster::agent_ca().cert_pem()).unwrap();
    let other_file = c.scratch.path().join("other-ca.pem");
    let other = capture_agent::cluster::tls::AgentCa::generate().unwrap();
    std::fs::write(&other_file, other.cert_pem()).unwrap();
    let (ca, other_ca) = (
        ca_file.to_str().unwrap().to_string(),
        other_file.to_str().unwrap().to_string(),
    );
    let https = format!("https://{listen}/healthz");
    assert_eq!(curl_healthz(&["--cacert", &ca], &https), (0, "200".into()));
    let (code, status) = curl_healthz(&[], &format!("http://{listen}/healthz"));
    assert!(
        code != 0 && status == "000",
        "plain HTTP got an HTTP answer: curl {code}, status {status}"
    );
    assert_eq!(
        curl_healthz(&["--cacert", &other_ca], &https),
        (60, "000".into()),
        "a certificate from another CA"
    );
    let resolve = format!("not-this-agent.test:{}:{}", listen.port(), listen.ip());
    assert_eq!(
        curl_healthz(
            &["--cacert", &ca, "--resolve", &resolve],
            &format!("https://not-this-agent.test:{}/healthz", listen.port())
        ),
        (60, "000".into()),
        "a name the certificate does not have"
    );
}

fn both_nodes_capture_and_serve_files(c: &mut Cluster) {
    let name = "both";
    c.server.kubectl_stdin(
        &["apply", "-n", NAMESPACE, "-f", "-"],
        Some(&capture_yaml(name, "8s")),
    );
    let uid = uid_of(c, name);
    eventually("both nodes capturing", 20, || {
        let a = c.target(name, "node-a", "web-a").filter(capturing)?;
        let b = c.target(name, "node-b", "web-b").filter(capturing)?;
        Some((a, b))
    });
    c.send(0, 40);
    c.send(1, 30);
    // The window closes 8 s after creation; each node reports its final entry.
    let (a, b) = eventually("both targets completed", 30, || {
        let a = c.target(name, "node-a", "web-a")?;
        let b = c.target(name, "node-b", "web-b")?;
        (a.state == TargetState::Completed && b.state == TargetState::Completed).then_some((a, b))
    });
    assert_eq!(c.targets(name).len(), 2, "{:?}", c.targets(name));
    // The filter keeps UDP PORT only: exactly the bursts to it (nothing else goes to that port).
    assert_eq!((a.packets, b.packets), (40, 30), "{a:?} {b:?}");
    for (target, node) in [(&a, "node-a"), (&b, "node-b")] {
        assert_eq!(target.namespace, NAMESPACE);
        assert_eq!(target.interface, "eth0");
        assert_eq!(target.files.len(), 1, "{target:?}");
        let file = &target.files[0];
        assert!(file.name.ends_with("_s1.pcapng"), "{file:?}");
        assert_eq!(file.packets, target.packets);
        assert!(file.first_packet_at.is_some() && file.last_packet_at.is_some());
        assert!(c.agent(node).capture_dir(&uid).join(&file.name).exists());
    }
    let finalizers = c
        .capture(name)
        .unwrap()
        .metadata
        .finalizers
        .unwrap_or_default();
    assert!(
        finalizers.contains(&"podcap.io/node-node-a".to_string())
            && finalizers.contains(&"podcap.io/node-node-b".to_string()),
        "{finalizers:?}"
    );

    // The file endpoint: the API's token gets the file, tshark reads it, it names the pod.
    let file = &a.files[0];
    let path = c.download("node-a", &uid, &file.id);
    assert_eq!(assert_tshark_reads_cleanly(&path), 40);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, file.size);
    let description = format!("{NAMESPACE}/web-a on node-a");
    assert!(
        bytes
            .windows(description.len())
            .any(|w| w == description.as_bytes()),
        "no interface description {description:?} in the file"
    );
    let listen = c.agent("node-a").listen;
    let path_of = format!("/v1/captures/{uid}/files/{}", file.id);
    let ranged = http_get(
        listen,
        &path_of,
        Some(&c.server.api_token),
        Some("bytes=0-27"),
    )
    .unwrap();
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, bytes[..28]);
    assert_eq!(
        ranged.header("content-range"),
        Some(format!("bytes 0-27/{}", bytes.len()).as_str())
    );
    let full = http_get(listen, &path_of, Some(&c.server.api_token), None).unwrap();
    assert_eq!(full.header("content-type"), Some("application/x-pcapng"));
    assert_eq!(
        full.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    // Anyone else is refused, with a problem document.
    let alice = http_get(listen, &path_of, Some(&c.server.alice_token), None).unwrap();
    assert_eq!(alice.status, 403);
    assert_eq!(
        alice.header("content-type"),
        Some("application/problem+json")
    );
    let agent_itself = http_get(listen, &path_of, Some(&c.server.agent_token), None).unwrap();
    assert_eq!(agent_itself.status, 403);
    assert_eq!(http_get(listen, &path_of, None, None).unwrap().status, 401);
    assert_eq!(
        http_get(listen, &path_of, Some("not-a-token"), None)
            .unwrap()
            .status,
        401
    );
    endpoint_is_https_from_the_agent_ca_only(c, listen);
    // Files are addressed by capture UID and file id only.
    for missing in [
        format!("/v1/captures/{uid}/files/nothing_s1.pcapng"),
        format!("/v1/captures/{uid}/files/..%2F..%2Fagent.kubeconfig"),
        format!(
            "/v1/captures/00000000-0000-0000-0000-000000000000/files/{}",
            file.id
        ),
        // node-b's file is not on node-a.
        format!("/v1/captures/{uid}/files/{}", b.files[0].id),
    ] {
        let answer = http_get(listen, &missing, Some(&c.server.api_token), None).unwrap();
        assert_eq!(answer.status, 404, "{missing}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
    }
    let b_path = c.download("node-b", &uid, &b.files[0].id);
    assert_eq!(assert_tshark_reads_cleanly(&b_path), 30);
    // Nothing captures any more: no live stream.
    let live = http_get(
        listen,
        &format!("/v1/captures/{uid}/live"),
        Some(&c.server.api_token),
        None,
    )
    .unwrap();
    assert_eq!(live.status, 409);

    // Deleting the capture: both nodes delete their files and drop their finalizers.
    c.server.kubectl(&[
        "delete",
        "packetcaptures",
        name,
        "-n",
        NAMESPACE,
        "--wait=false",
    ]);
    eventually("the capture to be gone", 30, || {
        c.capture(name).is_none().then_some(())
    });
    for node in ["node-a", "node-b"] {
        assert!(
            !c.agent(node).capture_dir(&uid).exists(),
            "{node} kept its files"
        );
    }
    // Each agent deleted its slices before its finalizer (no garbage collector runs here).
    let left = c.slices(&uid);
    assert!(left.is_empty(), "slices left behind: {left:?}");
}

/// The agents run without `--netns-fallback`: a capture inside the pods (capturePoint podNetns)
/// fails on every node at once, saying which overlay grants the privileges, instead of waiting.
fn pod_netns_without_the_fallback_fails_naming_the_overlay(c: &mut Cluster) {
    let name = "inside";
    let yaml = capture_yaml(name, "30s") + "  capturePoint: podNetns\n";
    c.server
        .kubectl_stdin(&["apply", "-n", NAMESPACE, "-f", "-"], Some(&yaml));
    let (a, b) = eventually("both targets failed", 20, || {
        let failed = |t: &TargetStatus| t.state == TargetState::Failed;
        let a = c.target(name, "node-a", "web-a").filter(failed)?;
        let b = c.target(name, "node-b", "web-b").filter(failed)?;
        Some((a, b))
    });
    for target in [&a, &b] {
        let error = target.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("deploy/overlays/netns-fallback") && error.contains("hostPID"),
            "{target:?}"
        );
        assert!(target.files.is_empty(), "{target:?}");
    }
    c.server.kubectl(&[
        "delete",
        "packetcaptures",
        name,
        "-n",
        NAMESPACE,
        "--wait=false",
    ]);
    eventually("the capture to be gone", 30, || {
        c.capture(name).is_none().then_some(())
    });
}

fn restart_resumes_in_a_new_segment_and_late_pods_join(c: &mut Cluster) {
    let name = "restart";
    c.server.kubectl_stdin(
        &["apply", "-n", NAMESPACE, "-f", "-"],
        Some(&capture_yaml(name, "60s")),
    );
    let uid = uid_of(c, name);
    eventually("both nodes capturing", 20, || {
        c.target(name, "node-a", "web-a").filter(capturing)?;
        c.target(name, "node-b", "web-b").filter(capturing)
    });
    c.send(0, 25);
    eventually("node-a's packets in status", 20, || {
        c.target(name, "node-a", "web-a")
            .filter(|t| t.packets == 25)
    });

    // SIGKILL node-a's agent and start it again: the target resumes in segment s2.
    let index = c.agents.iter().position(|a| a.node == "node-a").unwrap();
    c.agents[index].kill();
    c.agents[index].start();
    let resumed = eventually("node-a in segment s2", 30, || {
        c.target(name, "node-a", "web-a")
            .filter(|t| t.state == TargetState::Capturing && t.files.len() == 2)
    });
    assert!(resumed.files[0].name.ends_with("_s1.pcapng"), "{resumed:?}");
    assert!(resumed.files[1].name.ends_with("_s2.pcapng"), "{resumed:?}");
    c.send(0, 15);
    let after = eventually("node-a counting on from s1", 20, || {
        c.target(name, "node-a", "web-a")
            .filter(|t| t.packets == 40)
    });
    // The s1 file written before the kill is still listed and downloadable.
    let s1 = c.download("node-a", &uid, &after.files[0].id);
    // Its size in status is what is on disk (re-read on resume; the kill came unannounced).
    assert_eq!(after.files[0].size, std::fs::metadata(&s1).unwrap().len());
    assert!(assert_tshark_reads_cleanly(&s1) <= 25);

    // A pod started on node-b after the capture began is captured too.
    c.start_pod("web-late", "node-b", 2);
    eventually("the late pod capturing", 20, || {
        c.target(name, "node-b", "web-late").filter(capturing)
    });
    // A live stream of node-b's targets of the capture: one interface per pod, then packets.
    let listen = c.agent("node-b").listen;
    let token = c.server.api_token.clone();
    let live_uid = uid.clone();
    let live = std::thread::spawn(move || {
        let uid = live_uid;
        let mut stream = agent_connection(listen, Duration::from_secs(10)).unwrap();
        write!(
            stream,
            "GET /v1/captures/{uid}/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
            if seen.windows(4).filter(|w| *w == [0x5a; 4]).count() >= 20 {
                break;
            }
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(1500));
    c.send(2, 20);
    let seen = live.join().unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
    assert!(text.contains("application/x-pcapng"));
    for pod in ["web-b", "web-late"] {
        assert!(
            text.contains(&format!("{NAMESPACE}/{pod} on node-b")),
            "{pod}"
        );
    }
    assert!(
        seen.windows(4).filter(|w| *w == [0x5a; 4]).count() >= 20,
        "the live stream carried no packets"
    );
    let late = eventually("the late pod's packets", 20, || {
        c.target(name, "node-b", "web-late")
            .filter(|t| t.packets == 20)
    });
    assert!(late.files[0].name.ends_with("_s1.pcapng"), "{late:?}");

    // SIGTERM: the agent closes its files, reports them once more and exits 0.
    let index = c.agents.iter().position(|a| a.node == "node-b").unwrap();
    c.agents[index].terminate();
    let closed = c.target(name, "node-b", "web-late").unwrap();
    let on_disk = std::fs::metadata(
        c.agent("node-b")
            .capture_dir(&uid)
            .join(&closed.files[0].name),
    )
    .unwrap()
    .len();
    assert_eq!(closed.files[0].size, on_disk, "{closed:?}");
    c.agents[index].start();

    c.server.kubectl(&[
        "delete",
        "packetcaptures",
        name,
        "-n",
        NAMESPACE,
        "--wait=false",
    ]);
    eventually("the capture to be gone", 30, || {
        c.capture(name).is_none().then_some(())
    });
    for node in ["node-a", "node-b"] {
        assert!(
            !c.agent(node).capture_dir(&uid).exists(),
            "{node} kept its files"
        );
    }
}
