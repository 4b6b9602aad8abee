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
//! - `rest_with_service_accounts_and_live_stream`: the same through REST, with filter peers and a
//!   `bpfFilter` expression (compiled by libpcap inside the agent's image); `outsider` gets 403 in
//!   `shop`; the live stream through the API carries the pods; stop ends it Stopped.
//! - `plugin_through_the_service_proxy`: `kubectl podcap` with a kubeconfig holding a
//!   ServiceAccount token reaches the API through the API server's service proxy (the
//!   ServiceAccounts granted deploy/examples/podcap-proxy-user.yaml's `get services/proxy`):
//!   `get`, `describe` and `download` (read by tshark) as `capturer`; `outsider` gets podcap's 403.
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
use std::process::Stdio;
use std::time::{Duration, Instant};

mod kube_common;
#[path = "real_node/node.rs"]
mod node;

use capture_spec::{Phase, TargetState};
use node::{capture_yaml, install, web_capture_spec, Node, WebPod};
use node::{ELSEWHERE, NS, OTHER_UDP, PORT, TCP_PORT};
use podcap_testkit::cluster::eventually;
use podcap_testkit::realnode::{images_dir, Cni, RealNode, RealNodeError};
use podcap_testkit::subtests::{run_subtests, Subtest};
use podcap_testkit::tshark::{assert_tshark_reads_cleanly, LiveTshark};
use serde_json::{json, Value};

#[test]
fn bridge_cni() {
    suite("bridge_cni", Cni::Bridge);
}

#[test]
fn ptp_cni() {
    suite("ptp_cni", Cni::Ptp);
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
        (
            "plugin_through_the_service_proxy",
            plugin_through_the_service_proxy,
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
    node.wait_capturing(name, &pods);
    let failed = eventually("the hostNetwork pod's target Failed", 20, || {
        Node::target(&node.status(name), "on-the-host").filter(|t| t.state == TargetState::Failed)
    });
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("hostNetwork"), "{error}");
    // One failed target does not fail the capture: the others go on.
    eventually("phase Capturing beside the failed target", 15, || {
        (node.status(name).phase == Phase::Capturing).then_some(())
    });
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
            let name = item["metadata"]["name"].as_str()?;
            let status = node.status(name);
            let started = status.started_at?;
            let left = started + chrono::Duration::seconds(10) - chrono::Utc::now();
            let all = pods.iter().all(|p| {
                Node::target(&status, &p.name)
                    .is_some_and(|t| t.state == TargetState::Capturing && !t.files.is_empty())
            });
            (status.phase == Phase::Capturing && all && left > chrono::Duration::seconds(6))
                .then(|| name.to_string())
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
    // The agent, in its image, also applies peers and a libpcap expression: a and b are the
    // peers, and the expression leaves out what c sends.
    let pods = node.three_web_pods(&[]);
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let mut spec = spec;
    spec["filters"][0]["peers"] = json!([a.ip, b.ip]);
    spec["bpfFilter"] = json!(format!("not src host {}", c.ip));
    node.post_capture(name, spec);
    node.call("GET", &Node::capture_path(name), Some(&node.outsider), None)
        .problem(403);
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
    // To a peer, but from c: the expression drops them (they would come first in the stream).
    node.send("udp", c, a, PORT, 5);
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

/// A kubeconfig for `token` against the cluster's API server, in the scratch directory.
fn kubeconfig_for(node: &Node, user: &str, token: &str) -> String {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "node", "cluster": {
            "server": node.cluster.env("APISERVER"),
            "certificate-authority": node.cluster.env("CA_CERT"),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "node", "user": user, "namespace": NS}}],
        "current-context": user,
    });
    let path = node.scratch_file(&format!("kubeconfig-{user}"));
    std::fs::write(&path, config.to_string()).expect("writing a kubeconfig");
    path.to_str().expect("UTF-8 paths").to_string()
}

fn plugin_through_the_service_proxy(node: &Node) {
    let name = "plugin";
    // deploy/examples/podcap-proxy-user.yaml, bound to both ServiceAccounts instead of alice: the
    // API server lets them through its proxy, podcap's API decides the rest.
    let example = std::fs::read_to_string(
        podcap_testkit::kube::repo_root().join("deploy/examples/podcap-proxy-user.yaml"),
    )
    .expect("reading deploy/examples/podcap-proxy-user.yaml");
    let subjects = format!(
        "- kind: ServiceAccount\n  name: capturer\n  namespace: {NS}\n- kind: ServiceAccount\n  name: outsider\n  namespace: {ELSEWHERE}\n"
    );
    let at = example
        .find("- apiGroup: rbac.authorization.k8s.io\n  kind: User")
        .expect("alice");
    node.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!("{}{subjects}", &example[..at])),
    );
    let pods = node.three_web_pods(&[]);
    let (a, b) = (&pods[0], &pods[1]);
    node.post_capture(name, web_capture_spec());
    node.wait_capturing(name, &pods);
    node.send("udp", a, b, PORT, 5);
    node.wait_packets(name, &[(a, 5), (b, 5)]);
    node.stop_capture(name);

    let plugin = podcap_testkit::binaries::kubectl_podcap_binary()
        .to_str()
        .expect("UTF-8 paths")
        .to_string();
    let capturer = kubeconfig_for(node, "capturer", &node.capturer);
    let outsider = kubeconfig_for(node, "outsider", &node.outsider);
    let podcap = |kubeconfig: &str, args: &[&str]| {
        let mut all = vec![plugin.as_str(), "--kubeconfig", kubeconfig, "-n", NS];
        all.extend_from_slice(args);
        node.cluster.run(&all, None)
    };
    let ok = |args: &[&str]| {
        let out = podcap(&capturer, args);
        assert!(
            out.status.success(),
            "kubectl-podcap {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let table = ok(&["get"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name)),
        "{table}"
    );
    let described = ok(&["describe", name]);
    for pod in [a, b] {
        assert!(described.contains(&pod.name), "{described}");
    }
    let file = node.scratch_file("plugin.pcapng");
    ok(&["download", name, "-o", file.to_str().expect("UTF-8 paths")]);
    assert_eq!(assert_tshark_reads_cleanly(&file), 10, "a's and b's 5 each");

    let denied = podcap(&outsider, &["get", name]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "{stderr}");
    assert!(
        stderr.contains("may not do this (403") && stderr.contains(NS),
        "podcap's 403, through the proxy: {stderr}"
    );
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
