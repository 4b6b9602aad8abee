//! One capture across 200 simulated nodes against the real test kube-apiserver: `podcap-bench
//! cluster --nodes 200 --pods 10 --files 3` (the cluster-scale benchmark, bench/src/cluster.rs),
//! run as it is run by hand, with capture-api from this build.
//!
//! What must hold (limits, not timings: speed belongs to the benchmark's report): no write
//! failed; every object (each node's PacketCaptureSlice, and the capture) stays within 256 KiB;
//! every target written is stored; capture-api's totals reach the sum of every node's packets;
//! and its GET of the capture, a page of targets and the capture list all answered. Before
//! PacketCaptureSlices, the same run lost the targets of every node past the ~130th to etcd's
//! request limit.
//!
//! Needs the apiserver build (skips without it unless PODCAP_REQUIRE_KUBE=1).

use std::process::Command;

use podcap_testkit::binaries::workspace_binary;
use podcap_testkit::kube::KubeApiServer;

const NODES: usize = 200;
const PODS: usize = 10;
const FILES: usize = 3;

/// `key=value` of the report's last line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The value column of the report's table row named `name`.
fn row<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|line| line.strip_prefix(&format!("| {name} | ")))
        .and_then(|rest| rest.strip_suffix(" |"))
        .unwrap_or_else(|| panic!("no row {name:?} in\n{report}"))
}

#[test]
fn a_capture_across_200_nodes_fits_the_apiserver() {
    // The benchmark starts its own apiserver; this only asks whether one can run here.
    let Some(probe) = KubeApiServer::start_or_skip("a_capture_across_200_nodes_fits_the_apiserver")
    else {
        return;
    };
    drop(probe);
    let bench = workspace_binary("podcap-bench", "podcap-bench");
    let api = workspace_binary("capture-api", "capture-api");
    let output = Command::new(&bench)
        .args(["cluster", "--rounds", "1"])
        .args(["--nodes", &NODES.to_string()])
        .args(["--pods", &PODS.to_string()])
        .args(["--files", &FILES.to_string()])
        .arg("--api")
        .arg(&api)
        .output()
        .expect("running podcap-bench cluster");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "podcap-bench cluster failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = report.lines().last().expect("a report");
    assert_eq!(field(last, "nodes"), NODES.to_string());
    assert_eq!(field(last, "failed_writes"), "0", "{report}");
    let largest: f64 = field(last, "max_object_kib").parse().unwrap();
    assert!(largest <= 256.0, "an object of {largest} KiB");
    let targets = NODES * PODS;
    assert_eq!(
        row(&report, "targets expected / stored"),
        format!("{targets} / {targets}")
    );
    // A capture answer carries the first 100 targets and counts the rest.
    assert_eq!(
        row(&report, "the API's GET: targets inline / omitted"),
        format!("100 / {}", targets - 100)
    );
    let totals = row(&report, "the API's totals: packets");
    let (got, expected) = totals.split_once(" of ").unwrap();
    assert_eq!(got, expected, "capture-api's totals: {totals}");
    for read in [
        "GET of the capture",
        "GET of a page of 100 targets",
        "list of the namespace's captures",
    ] {
        assert!(
            row(&report, &format!("API {read} p50 / p99 / max")).ends_with("(0 failed)"),
            "{read}: {report}"
        );
    }
}
