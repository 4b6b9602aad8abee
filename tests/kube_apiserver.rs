//! podcap's Kubernetes contract against a real kube-apiserver v1.20.2: the generated CRDs install
//! and become Established, the examples apply and read back into podcap's own types with the
//! server's defaults equal to serde's, `kubectl get` shows the printer columns, two nodes' agents
//! each own their own `status.targets` entries under server-side apply, the schema refuses bad
//! objects, and `deploy/` passes a server-side dry run with least-privilege RBAC.
//!
//! One apiserver serves every case (see `run_subtests`); each case works in its own namespace
//! where it creates objects. `deploy_renders` needs only kubectl.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use capture_spec::{
    CaptureSpec, CaptureStatus, PacketCapture, Phase, ScheduleSpec, TargetState, TargetStatus,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use podcap_testkit::cluster::{deploy, install_crds};
use podcap_testkit::kube::{kubectl_path, KubeApiServer, KubeError};
use podcap_testkit::subtests::{admin_client, run_subtests};
use serde_json::{json, Value};

/// What every case gets: the server, a kube client and a runtime to drive it.
struct Cluster {
    server: KubeApiServer,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap()
}

#[test]
fn podcap_against_a_real_kube_apiserver() {
    let Some(server) = KubeApiServer::start_or_skip("podcap_against_a_real_kube_apiserver") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(admin_client(&server));
    let cluster = Cluster {
        server,
        runtime,
        client,
    };
    // In order: the CRDs first, everything after needs them.
    run_subtests(
        &cluster,
        &[
            ("crds_become_established", crds_become_established),
            ("example_capture_round_trips", example_capture_round_trips),
            (
                "status_targets_merge_per_node",
                status_targets_merge_per_node,
            ),
            (
                "schema_rejects_invalid_objects",
                schema_rejects_invalid_objects,
            ),
            ("schedule_example_applies", schedule_example_applies),
            ("deploy_passes_server_dry_run", deploy_passes_server_dry_run),
            ("rbac_is_least_privilege", rbac_is_least_privilege),
        ],
    );
}

/// The first `Some` of `attempt`, polled for up to 60 s: for what the API server does
/// asynchronously (publishing a CRD's OpenAPI). Panics when it never comes.
fn eventually<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after 60 s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn create_namespace(c: &Cluster, name: &str) {
    c.server.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
        )),
    );
}

fn crds_become_established(c: &Cluster) {
    install_crds(&c.server);
    for crd in [
        "packetcaptures.podcap.io",
        "packetcaptureschedules.podcap.io",
        "packetcaptureslices.podcap.io",
    ] {
        let json: Value =
            serde_json::from_str(&c.server.kubectl(&["get", "crd", crd, "-o", "json"])).unwrap();
        let conditions = json["status"]["conditions"].as_array().unwrap();
        let status = |kind: &str| {
            conditions
                .iter()
                .find(|condition| condition["type"] == kind)
                .map(|condition| condition["status"].as_str().unwrap().to_string())
        };
        assert_eq!(
            status("NamesAccepted").as_deref(),
            Some("True"),
            "{crd}: {conditions:?}"
        );
        // The apiserver flags a schema that is not structural with this condition.
        assert_eq!(status("NonStructuralSchema"), None, "{crd}: {conditions:?}");
    }
}

fn example_capture_round_trips(c: &Cluster) {
    create_namespace(c, "shop");
    c.server.kubectl(&[
        "apply",
        "-n",
        "shop",
        "-f",
        &deploy("examples/packetcapture.yaml"),
    ]);
    // A minimal capture: every default comes from the CRD schema.
    c.server.kubectl_stdin(
        &["apply", "-n", "shop", "-f", "-"],
        Some("apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: minimal\nspec:\n  duration: 1m\n"),
    );

    // Read back into podcap's own type: the server's defaults must be serde's defaults, or the
    // API and the agents would disagree about what a capture asks for.
    let example: Value = serde_norway::from_str(&read("examples/packetcapture.yaml")).unwrap();
    let expected: CaptureSpec = serde_json::from_value(example["spec"].clone()).unwrap();
    let fetched: PacketCapture = serde_json::from_str(&c.server.kubectl(&[
        "get",
        "pcap",
        "db-traffic",
        "-n",
        "shop",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(fetched.spec, expected);
    let minimal: PacketCapture = serde_json::from_str(&c.server.kubectl(&[
        "get",
        "packetcapture",
        "minimal",
        "-n",
        "shop",
        "-o",
        "json",
    ]))
    .unwrap();
    let raw: Value = serde_json::from_str(&c.server.kubectl(&[
        "get",
        "packetcapture",
        "minimal",
        "-n",
        "shop",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        minimal.spec,
        serde_json::from_value::<CaptureSpec>(json!({"duration": "1m"})).unwrap()
    );
    assert_eq!(
        raw["spec"]["snapLength"], 262_144,
        "defaulted by the server: {raw}"
    );
    assert_eq!(raw["spec"]["format"], "pcapng");

    let table = c.server.kubectl(&["get", "pcap", "-n", "shop"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "PODS", "PACKETS", "DROPS", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("db-traffic") && table.contains("minimal"),
        "{table}"
    );
    let wide = c
        .server
        .kubectl(&["get", "pcaps", "-n", "shop", "-o", "wide"]);
    for column in ["NODES", "BYTES", "MESSAGE"] {
        assert!(wide.lines().next().unwrap().contains(column), "{wide}");
    }
    // The category lists every podcap kind at once.
    let all = c
        .server
        .kubectl(&["get", "podcap", "-n", "shop", "-o", "name"]);
    assert!(all.contains("packetcapture.podcap.io/db-traffic"), "{all}");
    // The schema's descriptions are what `kubectl explain` shows, once the API server has
    // published the CRD's OpenAPI (a few seconds after it is Established).
    let explained = eventually(|| {
        let output = c
            .server
            .kubectl_output(&["explain", "pcap.spec.snapLength"], None);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    });
    assert!(
        explained.contains("Bytes kept of each packet"),
        "{explained}"
    );
}

/// What one node's agent applies: only its own targets, under its own field manager.
async fn apply_targets(
    api: &Api<PacketCapture>,
    name: &str,
    manager: &str,
    targets: &[TargetStatus],
) -> Result<PacketCapture, kube::Error> {
    let patch = json!({
        "apiVersion": "podcap.io/v1alpha1",
        "kind": "PacketCapture",
        "status": {"targets": targets},
    });
    api.patch_status(name, &PatchParams::apply(manager), &Patch::Apply(&patch))
        .await
}

fn target(node: &str, pod: &str, packets: u64) -> TargetStatus {
    TargetStatus {
        node: node.into(),
        namespace: "nodes".into(),
        pod: pod.into(),
        interface: "eth0".into(),
        state: TargetState::Capturing,
        packets,
        bytes: packets * 100,
        drops: 1,
        ..TargetStatus::default()
    }
}

fn keys(capture: &PacketCapture) -> BTreeSet<(String, String, u64)> {
    capture
        .status
        .iter()
        .flat_map(|s| &s.targets)
        .map(|t| (t.node.clone(), t.pod.clone(), t.packets))
        .collect()
}

fn status_targets_merge_per_node(c: &Cluster) {
    create_namespace(c, "nodes");
    c.server.kubectl_stdin(
        &["apply", "-n", "nodes", "-f", "-"],
        Some("apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: both-nodes\nspec:\n  duration: 10m\n"),
    );
    let api: Api<PacketCapture> = Api::namespaced(c.client.clone(), "nodes");
    let set = |items: &[(&str, &str, u64)]| -> BTreeSet<(String, String, u64)> {
        items
            .iter()
            .map(|(n, p, k)| (n.to_string(), p.to_string(), *k))
            .collect()
    };
    c.runtime.block_on(async {
        apply_targets(
            &api,
            "both-nodes",
            "node-a",
            &[target("node-a", "db-0", 10)],
        )
        .await
        .unwrap();
        let both = apply_targets(&api, "both-nodes", "node-b", &[target("node-b", "db-1", 5)])
            .await
            .unwrap();
        // A list-map: node-b's apply added its entry next to node-a's instead of replacing the list.
        assert_eq!(
            keys(&both),
            set(&[("node-a", "db-0", 10), ("node-b", "db-1", 5)])
        );

        // node-a updates its entry and adds one; node-b's stays as node-b wrote it.
        let updated = apply_targets(
            &api,
            "both-nodes",
            "node-a",
            &[target("node-a", "db-0", 20), target("node-a", "db-2", 1)],
        )
        .await
        .unwrap();
        assert_eq!(
            keys(&updated),
            set(&[
                ("node-a", "db-0", 20),
                ("node-a", "db-2", 1),
                ("node-b", "db-1", 5)
            ])
        );

        // An entry a node no longer applies is removed; the other node's are not.
        let pruned = apply_targets(&api, "both-nodes", "node-b", &[])
            .await
            .unwrap();
        assert_eq!(
            keys(&pruned),
            set(&[("node-a", "db-0", 20), ("node-a", "db-2", 1)])
        );
        apply_targets(&api, "both-nodes", "node-b", &[target("node-b", "db-1", 7)])
            .await
            .unwrap();

        // The API owns the capture-wide fields and the totals `kubectl get` shows.
        let current = api.get_status("both-nodes").await.unwrap();
        let mut totals = current.status.clone().unwrap_or_default();
        totals.summarize();
        let capture_wide = json!({
            "apiVersion": "podcap.io/v1alpha1",
            "kind": "PacketCapture",
            "status": {
                "phase": Phase::Capturing,
                "pods": totals.pods, "nodes": totals.nodes,
                "packets": totals.packets, "bytes": totals.bytes, "drops": totals.drops,
            },
        });
        let summarized = api
            .patch_status(
                "both-nodes",
                &PatchParams::apply("podcap-api"),
                &Patch::Apply(&capture_wide),
            )
            .await
            .unwrap();
        let status: CaptureStatus = summarized.status.clone().unwrap();
        assert_eq!(status.targets.len(), 3, "{status:?}");
        assert_eq!(
            (status.pods, status.packets, status.drops),
            (Some(3), Some(28), Some(3))
        );

        // Each manager owns exactly its own entries, by key.
        let managed = serde_json::to_string(&summarized.metadata.managed_fields).unwrap();
        for (node, pod) in [("node-a", "db-0"), ("node-a", "db-2"), ("node-b", "db-1")] {
            let key =
                format!(r#"k:{{\"interface\":\"eth0\",\"node\":\"{node}\",\"pod\":\"{pod}\"}}"#);
            assert!(managed.contains(&key), "{key} not in {managed}");
        }
    });
    let table = c
        .server
        .kubectl(&["get", "pcap", "both-nodes", "-n", "nodes", "-o", "wide"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    // NAME PHASE PODS NODES PACKETS BYTES DROPS MESSAGE(empty) AGE
    assert_eq!(
        &row[..7],
        ["both-nodes", "Capturing", "3", "2", "28", "2800", "3"],
        "{table}"
    );
    // The 1.20 apiserver falls back to treating every list as atomic when it cannot build the
    // CRD's server-side-apply schema; the merge above proves it did not, and so does its log.
    let log = c.server.apiserver_log();
    assert!(
        !log.contains("error building openapi models for packetcapture"),
        "{}",
        log.lines()
            .filter(|l| l.contains("error building openapi models"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn schema_rejects_invalid_objects(c: &Cluster) {
    create_namespace(c, "invalid");
    let capture = |spec: &str| {
        format!("apiVersion: podcap.io/v1alpha1\nkind: PacketCapture\nmetadata:\n  name: bad\n  namespace: invalid\nspec:\n  {spec}\n")
    };
    for (spec, expected) in [
        ("snapLength: 0", "should be greater than or equal to 1"),
        (
            "snapLength: 300000",
            "should be less than or equal to 262144",
        ),
        ("format: pcapx", r#"Unsupported value: "pcapx""#),
        ("duration: 600", "must be of type string"),
        ("maxPackets: 0", "spec.maxPackets"),
        (
            "rotation: {maxFileBytes: 100}",
            "spec.rotation.maxFileBytes",
        ),
        ("filters: [{protocol: TPC}]", "spec.filters.protocol"),
        (
            "filters: [{protocol: 256}]",
            "should be less than or equal to 255",
        ),
        (
            "filters: [{protocol: TCP, ports: [70000]}]",
            "should be less than or equal to 65535",
        ),
        (
            r#"filters: [{protocol: TCP, ports: ["80-x"]}]"#,
            "spec.filters.ports",
        ),
        (
            r#"filters: [{protocol: UDP, peers: ["kube-dns"]}]"#,
            "spec.filters.peers",
        ),
        ("filters: [{peers: []}]", "spec.filters.peers"),
        (
            "podSelector: {matchExpressions: [{key: app, operator: Like}]}",
            r#"Unsupported value: "Like""#,
        ),
        (
            "podSelector: {matchExpressions: [{operator: Exists}]}",
            "spec.podSelector.matchExpressions.key",
        ),
    ] {
        // --validate=false: the API server's schema must refuse these, not only kubectl's copy.
        let stderr = c.server.kubectl_fails(
            &["create", "--validate=false", "--dry-run=server", "-f", "-"],
            Some(&capture(spec)),
        );
        assert!(
            stderr.contains(expected),
            "{spec}: expected {expected:?} in {stderr}"
        );
    }
    // An unknown field is pruned by a 1.20 server (it has no strict field validation), but
    // kubectl refuses it from the published schema before sending anything.
    let stderr = eventually(|| {
        let output = c.server.kubectl_output(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&capture("snaplen: 100")),
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        stderr.contains("unknown field").then_some(stderr)
    });
    assert!(stderr.contains(r#"unknown field "snaplen""#), "{stderr}");
    // Every spelling podcap accepts passes the schema too.
    for spec in [
        r#"filters: [{protocol: tcp, ports: [0, 65535, "1:2", " 3 - 4 "]}, {protocol: "udp-lite"}, {protocol: 47}, {protocol: "132"}, {protocol: ICMPv6}]"#,
        r#"filters: [{protocol: UDP, ports: [53], peers: ["10.96.0.10", "10.0.0.0/8", "fd00::/8", "::ffff:10.0.0.0/104"]}, {peers: ["0.0.0.0/0"]}]"#,
        "podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}",
        "startTime: 2025-06-01T02:00:00Z\n  endTime: 2025-06-01T02:10:00+02:00",
    ] {
        c.server.kubectl_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&capture(spec)),
        );
    }

    // A target without its key fields cannot enter the list-map.
    c.server
        .kubectl_stdin(&["apply", "-f", "-"], Some(&capture("duration: 1m")));
    let api: Api<PacketCapture> = Api::namespaced(c.client.clone(), "invalid");
    let keyless = json!({
        "apiVersion": "podcap.io/v1alpha1",
        "kind": "PacketCapture",
        "status": {"targets": [{"pod": "db-0", "interface": "eth0", "packets": 1}]},
    });
    let refused = c.runtime.block_on(api.patch_status(
        "bad",
        &PatchParams::apply("node-a"),
        &Patch::Apply(&keyless),
    ));
    let message = format!(
        "{:?}",
        refused.expect_err("a target without node was accepted")
    );
    assert!(message.contains("node"), "{message}");
}

fn schedule_example_applies(c: &Cluster) {
    create_namespace(c, "shop");
    c.server.kubectl(&[
        "apply",
        "-n",
        "shop",
        "-f",
        &deploy("examples/packetcaptureschedule.yaml"),
    ]);
    let example: Value =
        serde_norway::from_str(&read("examples/packetcaptureschedule.yaml")).unwrap();
    let expected: ScheduleSpec = serde_json::from_value(example["spec"].clone()).unwrap();
    let fetched: capture_spec::PacketCaptureSchedule = serde_json::from_str(&c.server.kubectl(&[
        "get",
        "pcs",
        "nightly-db",
        "-n",
        "shop",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(fetched.spec, expected);
    let table = c
        .server
        .kubectl(&["get", "packetcaptureschedules", "-n", "shop"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "SUSPEND", "LAST", "SCHEDULE", "AGE"],
        "{table}"
    );
    assert!(table.contains("0 2 * * *"), "{table}");
    let all = c
        .server
        .kubectl(&["get", "podcap", "-n", "shop", "-o", "name"]);
    assert!(
        all.contains("packetcaptureschedule.podcap.io/nightly-db"),
        "{all}"
    );
    let stderr = c.server.kubectl_fails(
        &["create", "--validate=false", "--dry-run=server", "-n", "shop", "-f", "-"],
        Some("apiVersion: podcap.io/v1alpha1\nkind: PacketCaptureSchedule\nmetadata:\n  name: no-template\nspec:\n  schedule: '@daily'\n"),
    );
    assert!(stderr.contains("spec.template: Required value"), "{stderr}");
}

fn deploy_passes_server_dry_run(c: &Cluster) {
    // A dry run creates nothing, so objects in podcap-system need the namespace for real; the
    // CRDs are already installed (crds_become_established).
    c.server
        .kubectl(&["apply", "-f", &deploy("base/namespace.yaml")]);
    for kustomization in ["", "overlays/netns-fallback", "overlays/api-tls"] {
        let out = c
            .server
            .kubectl(&["apply", "--dry-run=server", "-k", &deploy(kustomization)]);
        for object in [
            "daemonset.apps/capture-agent",
            "deployment.apps/capture-api",
            "service/capture-api",
            "clusterrole.rbac.authorization.k8s.io/podcap-agent",
        ] {
            assert!(
                out.contains(&format!("{object} created (server dry run)")),
                "{kustomization}: {out}"
            );
        }
    }
}

/// `kubectl auth can-i` as `user`: true for "yes".
fn can(c: &Cluster, user: &str, args: &[&str]) -> bool {
    let mut command = vec!["auth", "can-i", "--as", user];
    command.extend_from_slice(args);
    let output = c.server.kubectl_output(&command, None);
    String::from_utf8_lossy(&output.stdout).trim() == "yes"
}

fn rbac_is_least_privilege(c: &Cluster) {
    c.server
        .kubectl(&["apply", "-f", &deploy("base/namespace.yaml")]);
    c.server.kubectl(&[
        "apply",
        "-f",
        &deploy("base/agent-rbac.yaml"),
        "-f",
        &deploy("base/api-rbac.yaml"),
    ]);
    let agent = "system:serviceaccount:podcap-system:capture-agent";
    for (allowed, args) in [
        (true, &["watch", "packetcaptures", "--all-namespaces"][..]),
        (true, &["watch", "packetcaptureslices", "--all-namespaces"]),
        (true, &["patch", "packetcaptureslices", "-n", "shop"]),
        (true, &["delete", "packetcaptureslices", "-n", "shop"]),
        // The capture's own status is the API's now.
        (
            false,
            &[
                "patch",
                "packetcaptures",
                "--subresource=status",
                "-n",
                "shop",
            ],
        ),
        (
            true,
            &[
                "update",
                "packetcaptures",
                "--subresource=finalizers",
                "-n",
                "shop",
            ],
        ),
        (true, &["list", "pods", "--all-namespaces"]),
        (true, &["create", "tokenreviews.authentication.k8s.io"]),
        (false, &["create", "packetcaptures", "-n", "shop"]),
        (false, &["delete", "packetcaptures", "-n", "shop"]),
        (
            false,
            &[
                "update",
                "packetcaptures",
                "--subresource=status",
                "-n",
                "shop",
            ],
        ),
        (false, &["list", "packetcaptureschedules", "-n", "shop"]),
        (false, &["get", "secrets", "-n", "podcap-system"]),
        // The podcap agent CA, by name, and nothing else.
        (
            true,
            &["get", "secrets/podcap-agent-ca", "-n", "podcap-system"],
        ),
        (
            false,
            &["get", "secrets/podcap-api-tls", "-n", "podcap-system"],
        ),
        (false, &["create", "secrets", "-n", "podcap-system"]),
        (
            false,
            &["create", "subjectaccessreviews.authorization.k8s.io"],
        ),
        (false, &["delete", "pods", "-n", "shop"]),
    ] {
        assert_eq!(can(c, agent, args), allowed, "agent {args:?}");
    }
    let api = "system:serviceaccount:podcap-system:capture-api";
    for (allowed, args) in [
        (true, &["create", "packetcaptures", "-n", "shop"][..]),
        (true, &["delete", "packetcaptureschedules", "-n", "shop"]),
        (
            true,
            &[
                "patch",
                "packetcaptures",
                "--subresource=status",
                "-n",
                "shop",
            ],
        ),
        (true, &["create", "tokenreviews.authentication.k8s.io"]),
        (
            true,
            &["create", "subjectaccessreviews.authorization.k8s.io"],
        ),
        (true, &["list", "pods", "--all-namespaces"]),
        (true, &["get", "nodes"]),
        (true, &["watch", "packetcaptureslices", "--all-namespaces"]),
        (false, &["patch", "packetcaptureslices", "-n", "shop"]),
        (true, &["create", "secrets", "-n", "podcap-system"]),
        (false, &["get", "secrets", "-n", "shop"]),
        (false, &["get", "secrets", "-n", "kube-system"]),
        (false, &["create", "pods", "-n", "shop"]),
        (false, &["delete", "nodes"]),
    ] {
        assert_eq!(can(c, api, args), allowed, "api {args:?}");
    }
    // The example Role lets alice capture and read packets in shop, and nowhere else.
    create_namespace(c, "shop");
    c.server
        .kubectl(&["apply", "-f", &deploy("examples/capture-user-role.yaml")]);
    assert!(can(c, "alice", &["create", "packetcaptures", "-n", "shop"]));
    assert!(can(
        c,
        "alice",
        &["get", "packetcaptures", "--subresource=files", "-n", "shop"]
    ));
    assert!(!can(
        c,
        "alice",
        &[
            "get",
            "packetcaptures",
            "--subresource=files",
            "-n",
            "default"
        ]
    ));
    assert!(!can(c, "bob", &["list", "packetcaptures", "-n", "shop"]));
}

/// One parsed document per object of `kubectl kustomize DIR`.
fn render(kubectl: &std::path::Path, dir: &str) -> Vec<Value> {
    let output = std::process::Command::new(kubectl)
        .args(["kustomize", &deploy(dir)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    text.split("\n---\n")
        .map(|document| serde_norway::from_str(document).unwrap())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn deploy_renders() {
    let kubectl = match kubectl_path() {
        Ok(kubectl) => kubectl,
        Err(KubeError::Unavailable(why))
            if std::env::var("PODCAP_REQUIRE_KUBE").as_deref() != Ok("1") =>
        {
            eprintln!("SKIPPED deploy_renders: no Debian kubectl ({why})");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let objects = render(&kubectl, "");
    let kinds: BTreeSet<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for wanted in [
        "CustomResourceDefinition/packetcaptures.podcap.io",
        "CustomResourceDefinition/packetcaptureschedules.podcap.io",
        "Namespace/podcap-system",
        "ServiceAccount/capture-agent",
        "ServiceAccount/capture-api",
        "ClusterRole/podcap-agent",
        "ClusterRole/podcap-api",
        "Role/podcap-api-shares",
        "DaemonSet/capture-agent",
        "Deployment/capture-api",
        "Service/capture-api",
    ] {
        assert!(kinds.contains(wanted), "{wanted} missing from {kinds:?}");
    }
    // The CRDs deployed are the generated ones.
    for definition in capture_spec::crd::definitions() {
        let name = definition.crd.metadata.name.clone().unwrap();
        let rendered: CustomResourceDefinition =
            serde_json::from_value(find(&objects, "CustomResourceDefinition", &name).clone())
                .unwrap();
        assert_eq!(rendered, definition.crd, "{name}");
    }

    let agent = find(&objects, "DaemonSet", "capture-agent");
    let pod = &agent["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert!(
        pod.get("hostPID").is_none(),
        "hostPID only with the netns fallback"
    );
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "run");
    assert_eq!(container["args"][2], "$(NODE_NAME)");
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        container["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]})
    );
    assert_eq!(container["securityContext"]["privileged"], false);
    // Ready once the endpoint serves HTTPS (after the podcap agent CA exists); alive while it
    // holds its port, so an agent waiting for capture-api is not restarted.
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"scheme": "HTTPS", "path": "/healthz", "port": "files"})
    );
    assert_eq!(
        container["livenessProbe"]["tcpSocket"],
        json!({"port": "files"})
    );
    for bound in ["requests", "limits"] {
        assert!(
            container["resources"][bound]["memory"].is_string(),
            "{bound}"
        );
    }
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/var/lib/podcap");
    let api = find(&objects, "Deployment", "capture-api");
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "--kubernetes"
    );

    let tls = render(&kubectl, "overlays/api-tls");
    let api = &find(&tls, "Deployment", "capture-api")["spec"]["template"]["spec"];
    let args = &api["containers"][0]["args"];
    assert_eq!(args[0], "--kubernetes", "{args}");
    assert!(
        args.as_array()
            .is_some_and(|a| a.iter().any(|v| v == "--tls-cert")),
        "{args}"
    );
    assert_eq!(
        api["containers"][0]["readinessProbe"]["httpGet"]["scheme"],
        "HTTPS"
    );
    let tls_volume = api["volumes"]
        .as_array()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == "api-tls"))
        .unwrap_or_else(|| panic!("an api-tls volume: {api}"));
    assert_eq!(tls_volume["secret"]["secretName"], "podcap-api-tls");
    assert!(
        api["volumes"]
            .as_array()
            .is_some_and(|volumes| volumes.iter().any(|v| v["name"] == "scratch")),
        "the base's volumes are kept: {api}"
    );

    let fallback = render(&kubectl, "overlays/netns-fallback");
    let pod = &find(&fallback, "DaemonSet", "capture-agent")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let added = &pod["containers"][0]["securityContext"]["capabilities"]["add"];
    assert_eq!(
        added,
        &json!(["NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"])
    );
}
