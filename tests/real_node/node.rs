//! The real-node suite's fixture (tests/real_node.rs): podcap installed on a started
//! [`RealNode`] from its own images and tests/real_node/overlay, the web workload, the two users'
//! ServiceAccount tokens, and what the cases do with them — REST calls through the API's Service,
//! kubectl, traffic between pods with `kubectl exec … pnet`, merged-download checks, and the
//! diagnosis printed when a case fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use capture_spec::{CaptureStatus, Phase, TargetState, TargetStatus};
use podcap_testkit::cluster::{eventually, slice_targets};
use podcap_testkit::kube::repo_root;
use podcap_testkit::realnode::RealNode;
use podcap_testkit::tshark::{assert_tshark_reads_cleanly, fields};
use serde_json::{json, Value};

use crate::kube_common::Answer;

pub const NS: &str = "shop";
pub const ELSEWHERE: &str = "elsewhere";
/// What the captures keep: UDP to this port.
pub const PORT: u16 = 7777;
/// UDP and TCP ports the pods also listen on, which the filter must leave out.
pub const OTHER_UDP: u16 = 7778;
pub const TCP_PORT: u16 = 8080;
/// The names tests/real_node/overlay gives the images (it retargets deploy/'s references).
const AGENT_IMAGE: &str = "podcap.local/capture-agent:0.1.0";
const API_IMAGE: &str = "podcap.local/capture-api:0.1.0";

/// One cluster with podcap installed, the web Deployment and the two users' tokens.
pub struct Node {
    pub cluster: RealNode,
    /// The API's Service, `http://CLUSTER_IP`.
    pub api: String,
    /// ServiceAccount `shop/capturer`, bound to deploy/examples' Role in `shop`.
    pub capturer: String,
    /// ServiceAccount `elsewhere/outsider`, bound to the same Role in `elsewhere` only.
    pub outsider: String,
    scratch: tempfile::TempDir,
    calls: AtomicUsize,
}

/// A web pod: name and IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WebPod {
    pub name: String,
    pub ip: String,
}

/// Imports the images, applies the overlay and the workload, waits for all of it to be Ready.
pub fn install(cluster: RealNode, images: &std::path::Path) -> Node {
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
    pub fn node_name(&self) -> &str {
        self.cluster.env("NODE")
    }

    /// `method path` against the API's Service from inside the cluster (curl in the node's
    /// network namespace), with `token` as the bearer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
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

    pub fn capture_path(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/captures/{name}")
    }

    /// Creates a capture through REST as `capturer`.
    pub fn post_capture(&self, name: &str, spec: Value) {
        self.call(
            "POST",
            &format!("/api/v1/namespaces/{NS}/captures"),
            Some(&self.capturer),
            Some(&json!({"metadata": {"name": name}, "spec": spec})),
        )
        .ok(201);
    }

    /// Stops a capture through REST as `capturer`; its status once it is Stopped.
    pub fn stop_capture(&self, name: &str) -> CaptureStatus {
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
    pub fn delete_through_rest(&self, name: &str) {
        self.call(
            "DELETE",
            &Self::capture_path(name),
            Some(&self.capturer),
            None,
        )
        .ok(204);
    }

    /// The capture's status as stored (read with kubectl, as the admin): the capture's own
    /// status (phase, times, message, totals) with every node's targets from its
    /// PacketCaptureSlices.
    pub fn status(&self, name: &str) -> CaptureStatus {
        let text = self
            .cluster
            .kubectl(&["-n", NS, "get", "pcap", name, "-o", "json"]);
        let object: Value = serde_json::from_str(&text).expect("kubectl printed JSON");
        let mut status: CaptureStatus =
            serde_json::from_value(object["status"].clone()).unwrap_or_default();
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        status
            .targets
            .extend(slice_targets(|args| self.cluster.kubectl(args), NS, uid));
        status
    }

    pub fn target(status: &CaptureStatus, pod: &str) -> Option<TargetStatus> {
        status.targets.iter().find(|t| t.pod == pod).cloned()
    }

    /// Waits until every one of `pods` has a Capturing target with a file open; the status then.
    pub fn wait_capturing(&self, name: &str, pods: &[WebPod]) -> CaptureStatus {
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
    pub fn wait_finished(&self, name: &str, seconds: u64) -> CaptureStatus {
        eventually(&format!("{name} to finish"), seconds, || {
            let status = self.status(name);
            status.phase.is_finished().then_some(status)
        })
    }

    /// Waits until the status counts `packets` for each pod.
    pub fn wait_packets(&self, name: &str, packets: &[(&WebPod, u64)]) {
        eventually(&format!("{name} to count {packets:?}"), 20, || {
            let status = self.status(name);
            packets
                .iter()
                .all(|(pod, n)| Self::target(&status, &pod.name).is_some_and(|t| t.packets == *n))
                .then_some(())
        });
    }

    /// The web pods that run now (not being deleted), by name.
    pub fn web_pods(&self) -> Vec<WebPod> {
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
    pub fn three_web_pods(&self, not: &[WebPod]) -> Vec<WebPod> {
        eventually("3 running web pods", 90, || {
            let pods = self.web_pods();
            (pods.len() == 3 && pods.iter().all(|p| !not.contains(p))).then_some(pods)
        })
    }

    /// `count` datagrams (or, for TCP, writes on one connection) from `from` to `to`'s `port`.
    pub fn send(&self, protocol: &str, from: &WebPod, to: &WebPod, port: u16, count: u32) {
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

    /// A path in the test's scratch directory (visible inside the cluster's namespaces).
    pub fn scratch_file(&self, file: &str) -> PathBuf {
        self.scratch.path().join(file)
    }

    /// GET `path` as `capturer` into a scratch file; the file and its media type.
    pub fn download(&self, path: &str, file: &str) -> (PathBuf, String) {
        let answer = self.call("GET", path, Some(&self.capturer), None).ok(200);
        let out = self.scratch.path().join(file);
        std::fs::write(&out, &answer.body).expect("writing the download");
        (out, answer.content_type)
    }

    /// `kubectl port-forward service/capture-api` on a free port of the node's loopback; the
    /// forward runs until the returned guard is dropped.
    pub fn port_forward(&self) -> (ChildGuard, u16) {
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
    pub fn interface(&self, pod: &WebPod) -> String {
        format!("{NS}/{} on {}", pod.name, self.node_name())
    }

    /// Downloads the capture's merged pcapng and checks that tshark reads it cleanly, that every
    /// frame is UDP to PORT, and that the frames per interface are `expected`.
    pub fn assert_merged(&self, name: &str, expected: &[(&WebPod, usize)]) {
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
    pub fn delete_capture(&self, name: &str) {
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
    pub fn forget(&self, pods: &[WebPod]) {
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

    pub fn assert_no_panic_in_logs(&self) {
        for what in ["daemonset/capture-agent", "deployment/capture-api"] {
            let output = self
                .cluster
                .kubectl_output(&["-n", "podcap-system", "logs", what], None);
            let log = String::from_utf8_lossy(&output.stdout);
            assert!(!log.contains("panicked"), "{what}:\n{log}");
        }
    }

    /// Everything a failed run needs for diagnosis, on stderr.
    pub fn diagnose(&self, test: &str) {
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
pub struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The REST spec of a capture of the web pods, UDP PORT only, for ten minutes.
pub fn web_capture_spec() -> Value {
    json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "filters": [{"protocol": "UDP", "ports": [PORT]}],
        "duration": "10m",
    })
}

/// A PacketCapture's YAML for the web pods, UDP PORT only.
pub fn capture_yaml(name: &str, duration: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  podSelector:\n    matchLabels:\n      app: web\n  filters:\n  - protocol: UDP\n    ports: [{PORT}]\n  duration: {duration}\n{extra_spec}"
    )
}
