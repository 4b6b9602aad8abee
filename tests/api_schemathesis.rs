//! schemathesis, a fuzzer nobody here wrote, against the real `capture-api --standalone`: it
//! reads the API's own OpenAPI document, generates requests from it (examples, the coverage of
//! every boundary, random fuzzing, and stateful sequences that follow the document's links from
//! a new capture to its files, shares and schedules), sends them with an admin token and runs
//! every check it has on the answers. The run must end with 0 failures: no 5xx, no undocumented
//! status or content type, no answer off its schema, no schema-valid request refused as
//! malformed, no schema-violating request accepted, no route that ignores its token.
//!
//! The server has a real pod (a network namespace) that sends a few datagrams every 200 ms all
//! through the run, so the captures schemathesis creates (its stateful phase follows the links
//! from a new capture to its files, downloads, previews and shares) hold real packets. A capture
//! made before the run must read the same afterwards: nothing captured is lost to the fuzzing.
//!
//! One judgement is written down here rather than in the document: a 422 answer to a
//! schema-valid request counts as accepted input. The document says everything about a request
//! that JSON Schema can say (types, patterns, lengths, bounds, required and unknown fields,
//! constants); 400 is the answer to a request that breaks it. What JSON Schema cannot say (a
//! cron expression, a label selector's grammar, a duration's units, endTime before startTime, a
//! continue token this server issued, a share's lifetime of at most 7 days) the server checks and
//! answers 422 with `invalidParams` naming the field, as every such operation documents.
//!
//! The capture made before the run is spared one request: its DELETE. schemathesis learns names
//! from the server's answers (the capture list holds it) and reuses them in later requests, so a
//! run may delete it as any admin may, and the check that nothing is lost would then depend on
//! the order schemathesis happens to draw in. A `before_call` hook (written next to the config)
//! sends that one DELETE to another name instead; every other request to it goes as drawn.
//!
//! One operation is left out: the live stream (`streamCaptureLive`), whose answer lasts as long
//! as its capture, for hours; schemathesis reads every answer to its end, so one live stream of
//! a capture it made stalls the whole run (its request timeout is per read, and a live stream
//! keeps sending). tests/api_live and tests/web_ui drive that route instead.
//!
//! schemathesis comes from PyPI, pinned, in a virtual environment in the cache
//! (`scripts/schemathesis/install.sh`, which `.ci/run` calls first). Its reports (JUnit, NDJSON,
//! a HAR of every exchange, and its console output) are kept in
//! `${CARGO_TARGET_DIR:-target}/ci-artifacts/schemathesis/`.

mod api_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{Api, Pod, UdpSink};
use serde_json::json;

/// The fixed seed: two runs of one commit send the same requests.
const SEED: u64 = 20261205;
/// schemathesis's time budget; fuzzing and stateful testing repeat until it is spent.
const MAX_TIME_SECONDS: u64 = 120;
/// The capture made before the run and read again after it.
const BEFORE: &str = "made-before-the-fuzzing";
/// The background traffic: a burst of this many datagrams every 200 ms, at most
/// [`MAX_BURSTS`] bursts.
const BURST: u32 = 5;
const MAX_BURSTS: u32 = 1_000;

/// The schemathesis command, installed when missing.
fn schemathesis() -> PathBuf {
    let script = podcap_testkit::kube::repo_root().join("scripts/schemathesis/install.sh");
    let output = Command::new(&script)
        .output()
        .expect("running scripts/schemathesis/install.sh");
    assert!(
        output.status.success(),
        "scripts/schemathesis/install.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("the command's path").trim())
}

/// `${CARGO_TARGET_DIR:-target}/ci-artifacts/schemathesis`, emptied.
fn report_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // TARGET/PROFILE/deps/TEST-HASH
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test runs from TARGET/PROFILE/deps");
    let dir = target.join("ci-artifacts/schemathesis");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the report directory");
    dir
}

/// schemathesis.toml: the token, and the checks' one judgement (see the module's paragraph).
fn config(token: &str) -> String {
    format!(
        r#"headers = {{ Authorization = "Bearer {token}" }}
request-timeout = 30.0

# A valid request may still meet a state: 404/410 (gone, or a revoked or expired share link),
# 409 (a name taken), 416 (a range past the file's end), and 422 (see the module's paragraph).
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "416", "422", "429", "5xx"]

# The stateful phase follows the document's own links only. Inferred ones would also lead from
# a dry run's answer (`?dryRun=All`: 200, the capture that would be made, nothing stored) to
# reads of a capture that was never made, and call the 404 a lost resource.
[phases.stateful.inference]
algorithms = []

[[operations]]
include-operation-id = "streamCaptureLive"
enabled = false
"#
    )
}

/// Runs schemathesis against `api` with its reports in `reports`.
/// schemathesis hooks (see the module's paragraph): the DELETE of the capture made before the
/// run goes to a name that does not exist, and so answers 404.
fn hooks() -> String {
    format!(
        r#"import schemathesis

KEPT = "{BEFORE}"


@schemathesis.hook
def before_call(context, case, kwargs):
    if (
        case.method.upper() == "DELETE"
        and case.operation.path.endswith("/captures/{{name}}")
        and (case.path_parameters or {{}}).get("name") == KEPT
    ):
        case.path_parameters["name"] = KEPT + "-spared"
"#
    )
}

fn run_schemathesis(command: &Path, api: &Api, work: &Path, reports: &Path) -> Output {
    let config_file = work.join("schemathesis.toml");
    std::fs::write(&config_file, config(&api.token)).expect("schemathesis.toml");
    let hooks_file = work.join("podcap_hooks.py");
    std::fs::write(&hooks_file, hooks()).expect("podcap_hooks.py");
    Command::new(command)
        .current_dir(work)
        .arg("--config-file")
        .arg(&config_file)
        .args(["run", &format!("{}/api/v1/openapi.json", api.base)])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", &SEED.to_string()])
        .args(["--max-time", &MAX_TIME_SECONDS.to_string()])
        // One worker: with two, hypothesis's lambda descriptions (ast.parse from two threads)
        // fail inside CPython 3.11 ("AST constructor recursion depth mismatch") and schemathesis
        // reports them as errors of the run.
        .args(["--workers", "1"])
        .args(["--report", "junit,ndjson,har"])
        .arg("--report-dir")
        .arg(reports)
        .args(["--output-truncate", "false"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("SCHEMATHESIS_HOOKS", &hooks_file)
        .output()
        .expect("running schemathesis")
}

/// How many test cases schemathesis's summary says it generated (`Test cases:` then
/// `8041 generated, 8041 passed, ...`), if it printed one.
fn generated_count(output: &str) -> Option<u64> {
    let summary = &output[output.rfind("Test cases:")?..];
    let at = summary.find(" generated")?;
    summary[..at].split_whitespace().last()?.parse().ok()
}

#[test]
fn schemathesis_finds_no_failure() {
    let command = schemathesis();
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7720);
    let _background_sink = UdpSink::bind(pod.host_v4.into(), 7721);
    let api = Api::start();

    // A finished capture of the pod, read again after the run.
    let captures = "/api/v1/namespaces/default/captures";
    api.post(
        captures,
        &json!({"metadata": {"name": BEFORE}, "spec": {
            "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
            "filters": [{"protocol": "UDP", "ports": [7720]}],
            "duration": "2s",
        }}),
    )
    .created();
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7720), 60, 200);
    api.wait_until_completed("default", BEFORE, Duration::from_secs(20));
    let before = api.get(&format!("{captures}/{BEFORE}/pcap"));
    assert_eq!(before.status, 200);

    let reports = report_dir();
    let work = tempfile::tempdir().expect("a directory for schemathesis.toml");
    let started = Instant::now();
    // Packets for the captures schemathesis makes, until its run ends (bounded either way).
    let stop = AtomicBool::new(false);
    let output = std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..MAX_BURSTS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7721), BURST, 100);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let output = run_schemathesis(&command, &api, work.path(), &reports);
        stop.store(true, Ordering::Relaxed);
        output
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    std::fs::write(reports.join("output.txt"), stdout.as_bytes()).expect("output.txt");
    eprintln!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    eprintln!(
        "schemathesis ran {:.0} s; reports in {}",
        started.elapsed().as_secs_f64(),
        reports.display()
    );
    let generated = generated_count(&stdout);
    assert!(
        output.status.success(),
        "schemathesis reported failures (exit {:?}); see above and {}",
        output.status.code(),
        reports.display()
    );
    assert!(
        generated.is_some_and(|n| n >= 1_000),
        "schemathesis generated too few requests to count: {generated:?}"
    );

    // Still alive, and what was captured before reads the same.
    assert_eq!(api.get("/readyz").status, 200);
    let after = api.get(&format!("{captures}/{BEFORE}/pcap"));
    assert_eq!(after.status, 200);
    assert!(
        after.body == before.body,
        "the capture made before the run reads the same"
    );
    let merged_file = work.path().join("before.pcapng");
    std::fs::write(&merged_file, &after.body).expect("before.pcapng");
    let packets = podcap_testkit::tshark::assert_tshark_reads_cleanly(&merged_file);
    assert_eq!(packets, 60, "the capture made before the run");
    assert_reports_exist(&reports);
}

fn assert_reports_exist(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("the report directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    for kind in ["junit", "ndjson", "har"] {
        assert!(
            names.iter().any(|name| name.starts_with(kind)),
            "no {kind} report among {names:?}"
        );
    }
}
