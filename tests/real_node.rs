//! podcap on a real node, the way a user runs it: a real single-node Kubernetes v1.20 cluster
//! (`scripts/real-node/`: kubelet, containerd, kube-proxy, the bridge or the ptp CNI plugin),
//! podcap's own images (`deploy/images/build.sh`, from `PODCAP_IMAGES_DIR`) imported into its
//! containerd, and `kubectl apply -k tests/real_node/overlay`, which is `deploy/` as shipped with
//! only the image references and `imagePullPolicy: Never` changed. The API finds its agent
//! through the Node object (InternalIP and the agent port); no test-only flag is involved.
//!
//! Users reach the API as any in-cluster client would: through its Service's ClusterIP (kube-proxy
//! DNAT), with ServiceAccount tokens: `capturer` in namespace `shop`, bound to
//! deploy/examples' Role, and `outsider`, bound to the same Role in namespace `elsewhere` only.
//! A Deployment `web` (3 replicas of the test-pod image, listening on UDP 7777/7778 and TCP 8080)
//! is the workload; traffic is `pnet` run in its pods with `kubectl exec`, bounded in count.
//!
//! Cases, in order (one cluster per CNI; both CNIs run at once, as two tests):
//! - `kubectl_capture_of_quiet_pods`: the web pods have never sent a packet (the node's neighbour
//!   and bridge tables are flushed of them too); a PacketCapture applied with kubectl (UDP 7777)
//!   has every pod Capturing before any traffic, then each pod sends once: the capture ends
//!   Completed holding exactly those datagrams, one interface per pod ("shop/POD on NODE"),
//!   nothing of UDP 7778 or TCP 8080, and tshark reads the merged download cleanly.
//! - `selections_that_match_nothing`: nodeSelector matching and not matching the Node's real
//!   labels; a podSelector matching no pod says so in the status message.
//! - `host_network_pod_fails_alone`: a hostNetwork pod selected with the web pods is a Failed
//!   target with the reason; the web pods capture.
//! - `schedule_runs_capture`: a PacketCaptureSchedule fires; its run captures the pods.
//! - `rest_with_service_accounts_and_live_stream`: the same through REST; `outsider` gets 403 in
//!   `shop`; the live stream through the API carries the pods; stop ends it Stopped.
//! - `rollout_mid_capture`: `kubectl rollout restart` replaces the pods mid-capture: the old end
//!   Gone with their packets, the new join, nothing is counted twice.
//! - `agent_pod_deleted_mid_capture`: the DaemonSet brings the agent back; the capture resumes
//!   in a new segment and the first segment's file is intact.
//!
//! On a failure the suite prints what diagnosis needs: the pods, the captures' status, the
//! agent's and the API's logs and the tails of every cluster component's log. Needs root,
//! `scripts/real-node/build.sh`'s cached builds and the images; skipped without them unless
//! `PODCAP_REQUIRE_KUBE=1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod kube_common;

use capture_spec::{CaptureStatus, Phase, TargetState, TargetStatus};
use kube_common::Answer;
use podcap_testkit::cluster::eventually;
use podcap_testkit::kube::repo_root;
use podcap_testkit::realnode::{images_dir, Cni, RealNode, RealNodeError};
use podcap_testkit::subtests::{run_subtests, Subtest};
use podcap_testkit::tshark::{assert_tshark_reads_cleanly, fields, LiveTshark};
use serde_json::{json, Value};

const NS: &str = "shop";
const ELSEWHERE: &str = "elsewhere";
/// What the captures keep: UDP to this port.
const PORT: u16 = 7777;
/// UDP and TCP ports the pods also listen on, which the filter must leave out.
const OTHER_UDP: u16 = 7778;
const TCP_PORT: u16 = 8080;
/// The names tests/real_node/overlay gives the images (it retargets deploy/'s references).
const AGENT_IMAGE: &str = "podcap.local/capture-agent:0.1.0";
const API_IMAGE: &str = "podcap.local/capture-api:0.1.0";

#[test]
fn bridge_cni() {
    suite("bridge_cni", Cni::Bridge);
}

#[test]
fn ptp_cni() {
    suite("ptp_cni", Cni::Ptp);
}

/// One cluster with podcap installed, the web Deployment and the two users' tokens.
struct Node {
    cluster: RealNode,
    /// The API's Service, `http://CLUSTER_IP`.
    api: String,
    /// ServiceAccount `shop/capturer`, bound to deploy/examples' Role in `shop`.
    capturer: String,
    /// ServiceAccount `elsewhere/outsider`, bound to the same Role in `elsewhere` only.
    outsider: String,
    scratch: tempfile::TempDir,
    calls: AtomicUsize,
}

/// A web pod: name and IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct WebPod {
    name: String,
    ip: String,
}

fn suite(test: &str, cni: Cni) {
    let images = match images_dir() {
        Ok(dir) => dir,
        Err(RealNodeError::Unavailable(why) | RealNodeError::Failed(why)) => {
            assert!(
                std::env::var("PODCAP_REQUIRE_KUBE").as_deref() != Ok("1"),
                "{test}: {why}"
            );
            eprintln!("SKIPPED {test}: {why}; set PODCAP_REQUIRE_KUBE=1 to fail instead");
            return;
        }
    };
    let started = Instant::now();
    let Some(cluster) = RealNode::start_or_skip(test, cni) else {
        return;
    };
    eprintln!("{test}: node Ready after {:.1?}", started.elapsed());
    let at = Instant::now();
    let node = install(cluster, &images);
    eprintln!(
        "{test}: podcap installed and web running after {:.1?}",
        at.elapsed()
    );

    let cases: &[Subtest<Node>] = &[
        (
            "kubectl_capture_of_quiet_pods",
            kubectl_capture_of_quiet_pods,
        ),
        (
            "selections_that_match_nothing",
            selections_that_match_nothing,
        ),
        ("host_network_pod_fails_alone", host_network_pod_fails_alone),
        ("schedule_runs_capture", schedule_runs_capture),
        (
            "rest_with_service_accounts_and_live_stream",
            rest_with_service_accounts_and_live_stream,
        ),
        ("rollout_mid_capture", rollout_mid_capture),
        (
            "agent_pod_deleted_mid_capture",
            agent_pod_deleted_mid_capture,
        ),
    ];
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_subtests(&node, cases);
        node.assert_no_panic_in_logs();
    }));
    if outcome.is_err() || std::env::var_os("PODCAP_TEST_AGENT_LOGS").is_some() {
        node.diagnose(test);
    }
    eprintln!("{test}: {:.1?} in all", started.elapsed());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Imports the images, applies the overlay and the workload, waits for all of it to be Ready.
fn install(cluster: RealNode, images: &std::path::Path) -> Node {
    cluster.import_image(&images.join("capture-agent.tar"), AGENT_IMAGE);
    cluster.import_image(&images.join("capture-api.tar"), API_IMAGE);
    let overlay = repo_root().join("tests/real_node/overlay");
    let overlay = overlay.to_str().expect("UTF-8 paths");
    let fail = |what: &str, error: String| -> ! {
        eprintln!("{}", cluster.component_logs(60));
        panic!("{what}: {error}")
    };
    let applied = cluster.kubectl_output(&["apply", "-k", overlay], None);
    if !applied.status.success() {
        fail(
            "kubectl apply -k tests/real_node/overlay",
            String::from_utf8_lossy(&applied.stderr).into_owned(),
        );
    }
    // The workload starts while podcap becomes Ready: it must be quiet long before the first
    // capture, so its pods' link-up chatter (IPv6 router solicitations) is over by then.
    let role = std::fs::read_to_string(repo_root().join("deploy/examples/capture-user-role.yaml"))
        .expect("reading deploy/examples/capture-user-role.yaml");
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&workload(&cluster)));
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&role));
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&role.replace("namespace: shop", &format!("namespace: {ELSEWHERE}"))),
    );
    for (namespace, account) in [(NS, "capturer"), (ELSEWHERE, "outsider")] {
        cluster.kubectl(&[
            "-n",
            namespace,
            "create",
            "rolebinding",
            &format!("podcap-capturer-{account}"),
            "--role",
            "podcap-capturer",
            "--serviceaccount",
            &format!("{namespace}:{account}"),
        ]);
    }
    for (what, args) in [
        (
            "the CRDs",
            vec![
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/packetcaptures.podcap.io",
                "crd/packetcaptureschedules.podcap.io",
            ],
        ),
        (
            "the agent DaemonSet",
            vec![
                "-n",
                "podcap-system",
                "rollout",
                "status",
                "daemonset/capture-agent",
                "--timeout=120s",
            ],
        ),
        (
            "the API Deployment",
            vec![
                "-n",
                "podcap-system",
                "rollout",
                "status",
                "deployment/capture-api",
                "--timeout=120s",
            ],
        ),
        (
            "the web Deployment",
            vec![
                "-n",
                NS,
                "rollout",
                "status",
                "deployment/web",
                "--timeout=120s",
            ],
        ),
    ] {
        let output = cluster.kubectl_output(&args, None);
        if !output.status.success() {
            let pods = cluster.kubectl_output(&["get", "pods", "-A", "-o", "wide"], None);
            fail(
                &format!("{what} did not become ready"),
                format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&output.stderr),
                    String::from_utf8_lossy(&pods.stdout)
                ),
            );
        }
    }
    let capturer = service_account_token(&cluster, NS, "capturer");
    let outsider = service_account_token(&cluster, ELSEWHERE, "outsider");
    let ip = cluster.kubectl(&[
        "-n",
        "podcap-system",
        "get",
        "service",
        "capture-api",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let node = Node {
        cluster,
        api: format!("http://{}", ip.trim()),
        capturer,
        outsider,
        scratch: tempfile::Builder::new()
            .prefix("podcap-rn-test-")
            .tempdir_in("/tmp")
            .expect("a scratch directory"),
        calls: AtomicUsize::new(0),
    };
    eventually("the API's Service to answer /readyz", 60, || {
        (node.call("GET", "/readyz", None, None).status == 200).then_some(())
    });
    node
}

/// The namespaces and the web Deployment: 3 pods that listen and otherwise stay silent, and
/// exit at once on SIGTERM.
fn workload(cluster: &RealNode) -> String {
    let image = cluster.env("TEST_IMAGE");
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {ELSEWHERE}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: capturer, namespace: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: outsider, namespace: {ELSEWHERE}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 5
      automountServiceAccountToken: false
      containers:
      - name: web
        image: {image}
        imagePullPolicy: Never
        command:
        - /bin/sh
        - -c
        - pnet listen udp {PORT} -n 0 >/dev/null & pnet listen udp {OTHER_UDP} -n 0 >/dev/null & pnet listen tcp {TCP_PORT} -n 0 >/dev/null & trap 'exit 0' TERM; while :; do sleep 1; done
"#
    )
}

/// The token of a ServiceAccount's token Secret (Kubernetes 1.20 creates one per account).
fn service_account_token(cluster: &RealNode, namespace: &str, account: &str) -> String {
    let secret = eventually(
        &format!("a token Secret for {namespace}/{account}"),
        30,
        || {
            let name = cluster.kubectl(&[
                "-n",
                namespace,
                "get",
                "serviceaccount",
                account,
                "-o",
                "jsonpath={.secrets[0].name}",
            ]);
            (!name.trim().is_empty()).then(|| name.trim().to_string())
        },
    );
    let token = eventually(&format!("the token in {namespace}/{secret}"), 30, || {
        let encoded = cluster.kubectl(&[
            "-n",
            namespace,
            "get",
            "secret",
            &secret,
            "-o",
            "jsonpath={.data.token}",
        ]);
        (!encoded.trim().is_empty()).then(|| encoded.trim().to_string())
    });
    let decoded = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("a piped stdin")
                .write_all(token.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 -d");
    String::from_utf8(decoded.stdout).expect("a token is ASCII")
}

impl Node {
    fn node_name(&self) -> &str {
        self.cluster.env("NODE")
    }

    /// `method path` against the API's Service from inside the cluster (curl in the node's
    /// network namespace), with `token` as the bearer.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let out = self.scratch.path().join(format!("answer-{n}"));
        let out_arg = out.to_str().expect("UTF-8 paths").to_string();
        let url = format!("{}{path}", self.api);
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args = vec![
            "curl",
            "-sS",
            "--max-time",
            "60",
            "-X",
            method,
            "-o",
            &out_arg,
            "-w",
            "%{http_code} %{content_type}",
        ];
        if let Some(auth) = &auth {
            args.extend(["-H", auth]);
        }
        let body_text = body.map(Value::to_string);
        if body_text.is_some() {
            args.extend([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ]);
        }
        args.push(&url);
        let output = self
            .cluster
            .run(&args, body_text.as_deref().map(str::as_bytes));
        assert!(
            output.status.success(),
            "curl {method} {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let written = String::from_utf8_lossy(&output.stdout).into_owned();
        let (status, content_type) = written.split_once(' ').unwrap_or((&written, ""));
        let body = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        Answer {
            status: status.parse().expect("curl printed the status code"),
            content_type: content_type.split(';').next().unwrap_or("").to_string(),
            body,
        }
    }

    fn capture_path(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/captures/{name}")
    }

    /// Creates a capture through REST as `capturer`.
    fn post_capture(&self, name: &str, spec: Value) {
        self.call(
            "POST",
            &format!("/api/v1/namespaces/{NS}/captures"),
            Some(&self.capturer),
            Some(&json!({"metadata": {"name": name}, "spec": spec})),
        )
        .ok(201);
    }

    /// Stops a capture through REST as `capturer`; its status once it is Stopped.
    fn stop_capture(&self, name: &str) -> CaptureStatus {
        self.call(
            "POST",
            &format!("{}/stop", Self::capture_path(name)),
            Some(&self.capturer),
            None,
        )
        .ok(200);
        let status = self.wait_finished(name, 45);
        assert_eq!(status.phase, Phase::Stopped, "{name}: {status:?}");
        status
    }

    /// Deletes a capture through REST as `capturer`.
    fn delete_through_rest(&self, name: &str) {
        self.call(
            "DELETE",
            &Self::capture_path(name),
            Some(&self.capturer),
            None,
        )
        .ok(204);
    }

    /// The capture's status as stored (read with kubectl, as the admin).
    fn status(&self, name: &str) -> CaptureStatus {
        let text = self
            .cluster
            .kubectl(&["-n", NS, "get", "pcap", name, "-o", "json"]);
        let object: Value = serde_json::from_str(&text).expect("kubectl printed JSON");
        serde_json::from_value(object["status"].clone()).unwrap_or_default()
    }

    fn target(status: &CaptureStatus, pod: &str) -> Option<TargetStatus> {
        status.targets.iter().find(|t| t.pod == pod).cloned()
    }

    /// Waits until every one of `pods` has a Capturing target with a file open; the status then.
    fn wait_capturing(&self, name: &str, pods: &[WebPod]) -> CaptureStatus {
        eventually(&format!("{pods:?} Capturing in {name}"), 30, || {
            let status = self.status(name);
            pods.iter()
                .all(|pod| {
                    Self::target(&status, &pod.name)
                        .is_some_and(|t| t.state == TargetState::Capturing && !t.files.is_empty())
                })
                .then_some(status)
        })
    }

    /// Waits for the capture to finish; its status then.
    fn wait_finished(&self, name: &str, seconds: u64) -> CaptureStatus {
        eventually(&format!("{name} to finish"), seconds, || {
            let status = self.status(name);
            status.phase.is_finished().then_some(status)
        })
    }

    /// Waits until the status counts `packets` for each pod.
    fn wait_packets(&self, name: &str, packets: &[(&WebPod, u64)]) {
        eventually(&format!("{name} to count {packets:?}"), 20, || {
            let status = self.status(name);
            packets
                .iter()
                .all(|(pod, n)| Self::target(&status, &pod.name).is_some_and(|t| t.packets == *n))
                .then_some(())
        });
    }

    /// The web pods that run now (not being deleted), by name.
    fn web_pods(&self) -> Vec<WebPod> {
        let text = self
            .cluster
            .kubectl(&["-n", NS, "get", "pods", "-l", "app=web", "-o", "json"]);
        let list: Value = serde_json::from_str(&text).expect("kubectl printed JSON");
        let mut pods: Vec<WebPod> = list["items"]
            .as_array()
            .expect("a pod list")
            .iter()
            .filter(|pod| {
                pod["metadata"]["deletionTimestamp"].is_null()
                    && pod["status"]["phase"] == "Running"
                    && pod["status"]["podIP"].is_string()
            })
            .map(|pod| WebPod {
                name: pod["metadata"]["name"].as_str().unwrap_or_default().into(),
                ip: pod["status"]["podIP"].as_str().unwrap_or_default().into(),
            })
            .collect();
        pods.sort();
        pods
    }

    /// Waits for exactly 3 running web pods, none of them in `not`.
    fn three_web_pods(&self, not: &[WebPod]) -> Vec<WebPod> {
        eventually("3 running web pods", 90, || {
            let pods = self.web_pods();
            (pods.len() == 3 && pods.iter().all(|p| !not.contains(p))).then_some(pods)
        })
    }

    /// `count` datagrams (or, for TCP, writes on one connection) from `from` to `to`'s `port`.
    fn send(&self, protocol: &str, from: &WebPod, to: &WebPod, port: u16, count: u32) {
        let output = self.cluster.kubectl_output(
            &[
                "-n",
                NS,
                "exec",
                &from.name,
                "--",
                "pnet",
                "send",
                protocol,
                &to.ip,
                &port.to_string(),
                "-n",
                &count.to_string(),
                "-i",
                "5",
            ],
            None,
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(&format!("sent {count}")),
            "{protocol} {} -> {}:{port}: {stdout}{}",
            from.name,
            to.ip,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// GET `path` as `capturer` into a scratch file; the file and its media type.
    fn download(&self, path: &str, file: &str) -> (PathBuf, String) {
        let answer = self.call("GET", path, Some(&self.capturer), None).ok(200);
        let out = self.scratch.path().join(file);
        std::fs::write(&out, &answer.body).expect("writing the download");
        (out, answer.content_type)
    }

    /// `kubectl port-forward service/capture-api` on a free port of the node's loopback; the
    /// forward runs until the returned guard is dropped.
    fn port_forward(&self) -> (ChildGuard, u16) {
        let mut child = self
            .cluster
            .command(&[
                "kubectl",
                "-n",
                "podcap-system",
                "port-forward",
                "--address",
                "127.0.0.1",
                "service/capture-api",
                ":80",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting kubectl port-forward");
        let stdout = child.stdout.take().expect("a piped stdout");
        let guard = ChildGuard(child);
        // The reader keeps draining after the first line: kubectl writes a line per connection
        // and would die of a closed pipe.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                // "Forwarding from 127.0.0.1:PORT -> 8080"
                if line.starts_with("Forwarding from 127.0.0.1:") {
                    let _ = sender.send(line);
                }
            }
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("kubectl port-forward said where it listens");
        let port = line["Forwarding from 127.0.0.1:".len()..]
            .split(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        (guard, port)
    }

    /// The interface name podcap gives `pod`'s packets in a merged file.
    fn interface(&self, pod: &WebPod) -> String {
        format!("{NS}/{} on {}", pod.name, self.node_name())
    }

    /// Downloads the capture's merged pcapng and checks that tshark reads it cleanly, that every
    /// frame is UDP to PORT, and that the frames per interface are `expected`.
    fn assert_merged(&self, name: &str, expected: &[(&WebPod, usize)]) {
        let (file, kind) = self.download(
            &format!("{}/pcap", Self::capture_path(name)),
            &format!("{name}.pcapng"),
        );
        assert_eq!(kind, "application/x-pcapng");
        let total: usize = expected.iter().map(|(_, n)| n).sum();
        assert_eq!(assert_tshark_reads_cleanly(&file), total, "{name}: frames");
        let mut counts = BTreeMap::new();
        for row in fields(&file, None, &["frame.interface_description", "udp.dstport"]) {
            assert_eq!(
                row[1],
                PORT.to_string(),
                "{name}: a frame the filter should have left out"
            );
            *counts.entry(row[0].clone()).or_insert(0) += 1;
        }
        let wanted: BTreeMap<String, usize> = expected
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(pod, n)| (self.interface(pod), *n))
            .collect();
        assert_eq!(counts, wanted, "{name}: frames per pod interface");
    }

    /// Deletes a capture (as the admin) and waits until it is gone.
    fn delete_capture(&self, name: &str) {
        self.cluster.kubectl(&[
            "-n",
            NS,
            "delete",
            "pcap",
            name,
            "--wait=true",
            "--timeout=60s",
        ]);
    }

    /// On the node: forgets every neighbour and bridge-table entry of `pods`, as if they had
    /// been silent for longer than those tables keep entries. Retries until nothing comes back
    /// (bounded), so a late link-up packet of a pod cannot leave an entry behind.
    fn forget(&self, pods: &[WebPod]) {
        let macs: Vec<String> = pods
            .iter()
            .map(|pod| {
                self.cluster
                    .kubectl(&[
                        "-n",
                        NS,
                        "exec",
                        &pod.name,
                        "--",
                        "cat",
                        "/sys/class/net/eth0/address",
                    ])
                    .trim()
                    .to_string()
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for pod in pods {
                self.cluster
                    .run(&["ip", "neigh", "flush", "to", &pod.ip], None);
            }
            let fdb =
                String::from_utf8_lossy(&self.cluster.run(&["bridge", "fdb", "show"], None).stdout)
                    .into_owned();
            let mut remembered = false;
            // "MAC dev IFACE master cni0 …", one line per entry.
            for line in fdb.lines().filter(|l| !l.contains("permanent")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (Some(mac), Some(["dev", device, ..])) = (words.first(), words.get(1..)) else {
                    continue;
                };
                if macs.iter().any(|m| m == mac) {
                    remembered = true;
                    self.cluster.run(
                        &["bridge", "fdb", "del", mac, "dev", device, "master"],
                        None,
                    );
                }
            }
            let neighbours =
                String::from_utf8_lossy(&self.cluster.run(&["ip", "neigh", "show"], None).stdout)
                    .into_owned();
            let known = pods.iter().any(|pod| {
                neighbours
                    .lines()
                    .any(|l| l.starts_with(&format!("{} ", pod.ip)) && l.contains("lladdr"))
            });
            if !remembered && !known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node keeps learning the web pods again:\n{fdb}\n{neighbours}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn assert_no_panic_in_logs(&self) {
        for what in ["daemonset/capture-agent", "deployment/capture-api"] {
            let output = self
                .cluster
                .kubectl_output(&["-n", "podcap-system", "logs", what], None);
            let log = String::from_utf8_lossy(&output.stdout);
            assert!(!log.contains("panicked"), "{what}:\n{log}");
        }
    }

    /// Everything a failed run needs for diagnosis, on stderr.
    fn diagnose(&self, test: &str) {
        eprintln!("==== {test}: diagnosis ====");
        for args in [
            vec!["get", "nodes", "-o", "wide", "--show-labels"],
            vec!["get", "pods", "-A", "-o", "wide"],
            vec![
                "get",
                "packetcaptures,packetcaptureschedules",
                "-A",
                "-o",
                "yaml",
            ],
            vec!["get", "events", "-A", "--sort-by=.lastTimestamp"],
            vec![
                "-n",
                "podcap-system",
                "logs",
                "daemonset/capture-agent",
                "--tail=200",
            ],
            vec![
                "-n",
                "podcap-system",
                "logs",
                "daemonset/capture-agent",
                "--previous",
                "--tail=100",
            ],
            vec![
                "-n",
                "podcap-system",
                "logs",
                "deployment/capture-api",
                "--tail=200",
            ],
        ] {
            let output = self.cluster.kubectl_output(&args, None);
            eprintln!(
                "---- kubectl {} ----\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for args in [
            vec!["ip", "-br", "link"],
            vec!["ip", "route"],
            vec!["bridge", "fdb", "show"],
        ] {
            let output = self.cluster.run(&args, None);
            eprintln!(
                "---- {} (node) ----\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout)
            );
        }
        eprintln!("{}", self.cluster.component_logs(40));
    }
}

/// A child process killed (by its own PID) and reaped when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The REST spec of a capture of the web pods, UDP PORT only, for ten minutes.
fn web_capture_spec() -> Value {
    json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "filters": [{"protocol": "UDP", "ports": [PORT]}],
        "duration": "10m",
    })
}

/// A PacketCapture's YAML for the web pods, UDP PORT only.
fn capture_yaml(name: &str, duration: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  podSelector:\n    matchLabels:\n      app: web\n  filters:\n  - protocol: UDP\n    ports: [{PORT}]\n  duration: {duration}\n{extra_spec}"
    )
}

fn kubectl_capture_of_quiet_pods(node: &Node) {
    let name = "quiet";
    let pods = node.three_web_pods(&[]);
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    node.forget(&pods);
    node.cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&capture_yaml(name, "15s", "")));
    // Every pod is mapped before it has sent anything.
    node.wait_capturing(name, &pods);
    node.send("udp", a, b, PORT, 12);
    node.send("udp", b, c, PORT, 7);
    // Left out by the filter.
    node.send("udp", a, b, OTHER_UDP, 4);
    node.send("tcp", c, a, TCP_PORT, 3);
    let status = node.wait_finished(name, 60);
    assert_eq!(status.phase, Phase::Completed, "{status:?}");
    assert_eq!(status.targets.len(), 3, "{:?}", status.targets);
    let packets = |pod: &WebPod| {
        let target = Node::target(&status, &pod.name).expect("a target per pod");
        assert_eq!(target.state, TargetState::Completed, "{target:?}");
        target.packets
    };
    // a sent 12, b received them and sent 7 to c.
    assert_eq!((packets(a), packets(b), packets(c)), (12, 19, 7));
    assert_eq!(status.packets, Some(38));
    node.assert_merged(name, &[(a, 12), (b, 19), (c, 7)]);
    node.delete_capture(name);
}

fn selections_that_match_nothing(node: &Node) {
    let pods = node.three_web_pods(&[]);
    let cni = node.cluster.cni.name();
    // The Node carries podcap.test/cni=<cni> (start.sh's --node-labels).
    node.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&capture_yaml(
            "this-node",
            "5m",
            &format!("  nodeSelector:\n    podcap.test/cni: {cni}\n"),
        )),
    );
    node.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&capture_yaml(
            "other-nodes",
            "5m",
            "  nodeSelector:\n    podcap.test/cni: none\n",
        )),
    );
    let nobody = capture_yaml("nobody", "5m", "").replace("app: web", "app: nobody");
    node.cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&nobody));
    node.wait_capturing("this-node", &pods);
    for (name, says) in [("other-nodes", "nodeSelector"), ("nobody", "selects no")] {
        let status = eventually(&format!("{name}'s status message"), 20, || {
            let status = node.status(name);
            status.message.is_some().then_some(status)
        });
        assert!(status.targets.is_empty(), "{name}: {:?}", status.targets);
        let message = status.message.unwrap_or_default();
        assert!(message.contains(says), "{name}: {message}");
    }
    for name in ["this-node", "other-nodes", "nobody"] {
        node.delete_capture(name);
    }
}

fn host_network_pod_fails_alone(node: &Node) {
    let pods = node.three_web_pods(&[]);
    let image = node.cluster.env("TEST_IMAGE");
    node.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: on-the-host, namespace: {NS}, labels: {{app: host}}}}\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  automountServiceAccountToken: false\n  containers:\n  - name: host\n    image: {image}\n    imagePullPolicy: Never\n"
        )),
    );
    node.cluster.kubectl(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        "pod/on-the-host",
    ]);
    let name = "with-host";
    let yaml = capture_yaml(name, "5m", "").replace(
        "    matchLabels:\n      app: web\n",
        "    matchExpressions:\n    - {key: app, operator: In, values: [web, host]}\n",
    );
    node.cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    let status = node.wait_capturing(name, &pods);
    let failed = eventually("the hostNetwork pod's target Failed", 20, || {
        Node::target(&node.status(name), "on-the-host").filter(|t| t.state == TargetState::Failed)
    });
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("hostNetwork"), "{error}");
    assert_eq!(status.phase, Phase::Capturing, "{status:?}");
    node.delete_capture(name);
    node.cluster
        .kubectl(&["-n", NS, "delete", "pod", "on-the-host", "--wait=false"]);
}

fn schedule_runs_capture(node: &Node) {
    let pods = node.three_web_pods(&[]);
    let (a, b) = (&pods[0], &pods[1]);
    let schedule = "every-20s";
    node.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: podcap.io/v1alpha1\nkind: PacketCaptureSchedule\nmetadata:\n  name: {schedule}\n  namespace: {NS}\nspec:\n  schedule: \"*/20 * * * * *\"\n  historyLimit: 1\n  template:\n    podSelector:\n      matchLabels:\n        app: web\n    filters:\n    - protocol: UDP\n      ports: [{PORT}]\n    duration: 10s\n"
        )),
    );
    // A run with at least 6 s of its window left, every pod capturing.
    let run = eventually("a run of the schedule capturing with time left", 60, || {
        let text = node.cluster.kubectl(&[
            "-n",
            NS,
            "get",
            "pcap",
            "-l",
            &format!("podcap.io/schedule={schedule}"),
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&text).ok()?;
        list["items"].as_array()?.iter().find_map(|item| {
            let status: CaptureStatus = serde_json::from_value(item["status"].clone()).ok()?;
            let started = status.started_at?;
            let left = started + chrono::Duration::seconds(10) - chrono::Utc::now();
            let all = pods.iter().all(|p| {
                Node::target(&status, &p.name)
                    .is_some_and(|t| t.state == TargetState::Capturing && !t.files.is_empty())
            });
            (status.phase == Phase::Capturing && all && left > chrono::Duration::seconds(6))
                .then(|| item["metadata"]["name"].as_str().map(str::to_string))
                .flatten()
        })
    });
    node.send("udp", a, b, PORT, 3);
    let status = node.wait_finished(&run, 45);
    assert_eq!(status.phase, Phase::Completed, "{run}: {status:?}");
    assert_eq!(status.packets, Some(6), "{run}: {:?}", status.targets);
    node.assert_merged(&run, &[(a, 3), (b, 3)]);
    node.cluster.kubectl(&[
        "-n",
        NS,
        "delete",
        "packetcaptureschedule",
        schedule,
        "--wait=true",
        "--timeout=60s",
    ]);
}

fn rest_with_service_accounts_and_live_stream(node: &Node) {
    let name = "rest";
    let spec = web_capture_spec();
    // The outsider may capture in its own namespace only.
    node.call(
        "GET",
        &format!("/api/v1/namespaces/{ELSEWHERE}/captures"),
        Some(&node.outsider),
        None,
    )
    .ok(200);
    let denied = node
        .call(
            "POST",
            &format!("/api/v1/namespaces/{NS}/captures"),
            Some(&node.outsider),
            Some(&json!({"metadata": {"name": "intruder"}, "spec": spec})),
        )
        .problem(403);
    assert!(
        denied["detail"].as_str().unwrap_or_default().contains(NS),
        "{denied}"
    );
    node.post_capture(name, spec);
    node.call("GET", &Node::capture_path(name), Some(&node.outsider), None)
        .problem(403);
    let pods = node.three_web_pods(&[]);
    let (a, b) = (&pods[0], &pods[1]);
    node.wait_capturing(name, &pods);
    eventually("phase Capturing", 15, || {
        (node.status(name).phase == Phase::Capturing).then_some(())
    });

    // The live stream through the API, read by tshark as it comes: 20 frames (10 datagrams,
    // each seen on a's and b's interface).
    let auth = format!("Authorization: Bearer {}", node.capturer);
    let url = format!("{}{}/live", node.api, Node::capture_path(name));
    let mut curl = node
        .cluster
        .command(&["curl", "-sS", "-N", "--max-time", "60", "-H", &auth, &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("starting curl for the live stream");
    let stream = curl.stdout.take().expect("a piped stdout");
    let live = LiveTshark::start(stream, 20, &["frame.interface_description"]);
    // The stream's header reaches the agents' taps before the traffic does.
    std::thread::sleep(Duration::from_secs(1));
    node.send("udp", a, b, PORT, 10);
    let (rows, relay) = live.rows();
    let _ = curl.kill();
    let _ = curl.wait();
    let _ = relay.join();
    let mut live = BTreeMap::new();
    for row in rows {
        *live.entry(row[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(
        live,
        BTreeMap::from([(node.interface(a), 10), (node.interface(b), 10)]),
        "the live stream carries the pods"
    );
    node.wait_packets(name, &[(a, 10), (b, 10)]);
    let status = node.stop_capture(name);
    assert_eq!(status.packets, Some(20));
    node.assert_merged(name, &[(a, 10), (b, 10)]);
    // The way deploy/README.md tells a user to reach the API from outside: `kubectl
    // port-forward` (apiserver → kubelet → containerd into the API pod). The same bytes.
    let (forwarded, port) = node.port_forward();
    let through = node.cluster.run(
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "-H",
            &auth,
            &format!("http://127.0.0.1:{port}{}/pcap", Node::capture_path(name)),
        ],
        None,
    );
    drop(forwarded);
    assert!(
        through.status.success(),
        "download through kubectl port-forward: {}",
        String::from_utf8_lossy(&through.stderr)
    );
    let (direct, _) = node.download(
        &format!("{}/pcap", Node::capture_path(name)),
        "rest-again.pcapng",
    );
    assert_eq!(
        through.stdout,
        std::fs::read(&direct).expect("reading the download"),
        "the merged file through port-forward and through the Service"
    );
    node.call(
        "GET",
        &format!("{}/pcap", Node::capture_path(name)),
        Some(&node.outsider),
        None,
    )
    .problem(403);
    node.delete_through_rest(name);
}

fn rollout_mid_capture(node: &Node) {
    let name = "rollout";
    node.post_capture(name, web_capture_spec());
    let old = node.three_web_pods(&[]);
    node.wait_capturing(name, &old);
    node.send("udp", &old[0], &old[1], PORT, 5);
    node.wait_packets(name, &[(&old[0], 5), (&old[1], 5)]);
    node.cluster
        .kubectl(&["-n", NS, "rollout", "restart", "deployment/web"]);
    node.cluster.kubectl(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=120s",
    ]);
    let new = node.three_web_pods(&old);
    node.wait_capturing(name, &new);
    eventually("the old pods' targets Gone", 60, || {
        let status = node.status(name);
        old.iter()
            .all(|p| Node::target(&status, &p.name).is_some_and(|t| t.state == TargetState::Gone))
            .then_some(())
    });
    node.send("udp", &new[0], &new[1], PORT, 6);
    node.wait_packets(name, &[(&new[0], 6), (&new[1], 6)]);
    let status = node.stop_capture(name);
    assert_eq!(status.targets.len(), 6, "{:?}", status.targets);
    for (pod, packets) in [(&old[0], 5), (&old[1], 5), (&old[2], 0)] {
        let target = Node::target(&status, &pod.name).expect("the old pod's target");
        assert_eq!(
            (target.state, target.packets),
            (TargetState::Gone, packets),
            "{target:?}"
        );
    }
    assert_eq!(status.packets, Some(22), "no packet counted twice");
    node.assert_merged(
        name,
        &[(&old[0], 5), (&old[1], 5), (&new[0], 6), (&new[1], 6)],
    );
    node.delete_through_rest(name);
}

fn agent_pod_deleted_mid_capture(node: &Node) {
    let name = "restart";
    node.post_capture(name, web_capture_spec());
    let pods = node.three_web_pods(&[]);
    let (a, b) = (&pods[0], &pods[1]);
    node.wait_capturing(name, &pods);
    node.send("udp", a, b, PORT, 4);
    node.wait_packets(name, &[(a, 4), (b, 4)]);
    let agent = node.cluster.kubectl(&[
        "-n",
        "podcap-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=capture-agent",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    node.cluster.kubectl(&[
        "-n",
        "podcap-system",
        "delete",
        "pod",
        agent.trim(),
        "--timeout=60s",
    ]);
    node.cluster.kubectl(&[
        "-n",
        "podcap-system",
        "rollout",
        "status",
        "daemonset/capture-agent",
        "--timeout=120s",
    ]);
    // The new agent resumes every target in a second segment.
    let resumed = eventually("the capture resumed in segment s2", 60, || {
        let status = node.status(name);
        pods.iter()
            .all(|p| {
                Node::target(&status, &p.name).is_some_and(|t| {
                    t.state == TargetState::Capturing
                        && t.files.iter().any(|f| f.name.contains("_s2."))
                })
            })
            .then_some(status)
    });
    let first = Node::target(&resumed, &a.name).expect("a's target");
    assert!(
        first.files.iter().any(|f| f.name.contains("_s1.")),
        "{first:?}"
    );
    node.send("udp", a, b, PORT, 3);
    node.wait_packets(name, &[(a, 7), (b, 7)]);
    let status = node.stop_capture(name);
    assert_eq!(status.packets, Some(14));
    node.assert_merged(name, &[(a, 7), (b, 7)]);
    // The first segment, written by the agent that was deleted, on its own: intact.
    let target = Node::target(&status, &a.name).expect("a's target");
    let s1 = target
        .files
        .iter()
        .find(|f| f.name.contains("_s1."))
        .expect("a's first segment");
    let (file, _) = node.download(
        &format!("{}/files/{}", Node::capture_path(name), s1.id),
        "restart-s1.pcapng",
    );
    assert_eq!(assert_tshark_reads_cleanly(&file), 4);
    node.delete_through_rest(name);
}
