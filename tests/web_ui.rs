//! The web UI in a real browser: each test starts `capture-api --standalone` (tests/common) and runs
//! one script of `web/tests/` with Node.js, where playwright-core drives Debian's chromium
//! (`/usr/bin/chromium`) against it. The script's output streams to the terminal as it runs; its
//! screenshots land in `target/tmp/web-ui-artifacts/<script>/` (or `$PODCAP_ARTIFACTS/<script>/`).
//!
//! Needs `node` (>= 20), `/usr/bin/chromium` (or `$PODCAP_CHROMIUM`) and the scripts' one npm
//! package, installed from the committed lock file with `npm ci --prefix web/tests`. `.ci/run`
//! installs all three; the test never installs anything itself and fails saying what is missing.
//!
//! To add a script: write `web/tests/<name>.mjs` on `web/tests/lib.mjs` and a `#[test]` here that
//! calls `run_script("<name>.mjs", &api, &[...])`. By hand, against any running server:
//! `PODCAP_URL=http://127.0.0.1:8080 PODCAP_TOKEN=... node web/tests/<name>.mjs`.

mod api_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api_common::Api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One browser at a time: the tests of this file run in parallel threads, and several Chromiums
/// on a 2-core machine only slow each other down.
static BROWSER: Mutex<()> = Mutex::new(());

/// The bound of a whole script; each of its waits is bounded far lower (PODCAP_TIMEOUT_MS, 15 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn web_tests_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/tests");
    dir.canonicalize().unwrap_or(dir)
}

/// Fails with the command that fixes it when node, chromium or playwright-core is missing.
fn check_prerequisites(dir: &Path) {
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        }
        _ => panic!("the web UI tests need Node.js >= 20 (`node` on PATH); .ci/run installs it"),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the web UI tests need Node.js >= 20 (playwright-core's minimum), found {version}"
    );

    let chromium = std::env::var("PODCAP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the web UI tests need Debian's chromium at {chromium}: `apt-get install -y chromium` \
         (.ci/run installs it)"
    );

    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "the web UI tests need playwright-core in {}: run `npm ci --prefix web/tests` from the \
         repository's root (.ci/run does)",
        dir.display()
    );
}

/// Runs `node web/tests/<script>` against `api` with PODCAP_URL, PODCAP_TOKEN and PODCAP_ARTIFACTS
/// (plus `extra_env`) set, streaming its output, and asserts that it exits 0 within SCRIPT_LIMIT.
/// Returns the directory of its screenshots.
fn run_script(script: &str, api: &Api, extra_env: &[(&str, &str)]) -> PathBuf {
    let dir = web_tests_dir();
    check_prerequisites(&dir);
    let script_path = dir.join(script);
    assert!(script_path.exists(), "no script {}", script_path.display());

    let stem = script.trim_end_matches(".mjs");
    let artifacts = std::env::var_os("PODCAP_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-ui-artifacts"))
        .join(stem);
    // Only this run's screenshots: a stale failure-*.png would mislead whoever looks.
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("creating the artifacts directory");

    let _browser = BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    eprintln!(
        "web UI: node {script} against {} (screenshots in {})",
        api.base,
        artifacts.display()
    );
    let mut child = Command::new("node")
        .arg(&script_path)
        .current_dir(&dir)
        .env("PODCAP_URL", &api.base)
        .env("PODCAP_TOKEN", &api.token)
        .env("PODCAP_ARTIFACTS", &artifacts)
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting node");

    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(status) = status else {
        // SIGTERM first: playwright closes its browser on it; then SIGKILL if it lingers.
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let grace = Instant::now() + Duration::from_secs(10);
        while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{script} did not finish within {SCRIPT_LIMIT:?}; screenshots in {}",
            artifacts.display()
        );
    };
    assert!(
        status.success(),
        "{script} failed ({status}); its output is above, screenshots in {}",
        artifacts.display()
    );
    artifacts
}

#[test]
fn smoke_the_page_opens_in_chromium() {
    let api = Api::start();
    let artifacts = run_script("smoke.mjs", &api, &[]);
    let shot = artifacts.join("smoke.png");
    assert!(shot.exists(), "smoke.mjs saved no {}", shot.display());
}

/// The form's pcap-filter expression and a rule's peers (web/tests/bpf_filter.mjs): libpcap's
/// refusal and a bad peer at their fields, and valid ones stored as typed and shown on the
/// capture's page.
#[test]
fn the_console_sends_an_expression_and_peers_and_shows_the_servers_errors_at_them() {
    let api = Api::start();
    let artifacts = run_script("bpf_filter.mjs", &api, &[]);
    assert!(artifacts.join("bpf-refused.png").exists());
}

/// A capture with 150 pod interfaces, more than an answer carries (web/tests/many_targets.mjs):
/// the page shows the totals over all of them and its Pods table pages through the targets
/// route. The capture selects no pod and ends; its stored status is then given 150 targets
/// through the API's own store, since standalone mode cannot make 150 pods quickly.
#[test]
fn the_console_pages_through_a_capture_with_many_pods() {
    use capture_api::store::{SqliteStore, Store};

    let api = Api::start();
    let created = api.post(
        "/api/v1/namespaces/default/captures",
        &serde_json::json!({"metadata": {"name": "many"}, "spec": {"podSelector": "podcap.io/netns=no-such-pod", "duration": "1s"}}),
    );
    assert_eq!(created.status, 201, "{}", created.json());
    let finished = api.wait_for_phase(
        "default",
        "many",
        &["Completed", "Failed"],
        Duration::from_secs(60),
    );
    let store = SqliteStore::open(&api.data_dir.join("podcap.db")).expect("the API's store");
    let record = store
        .capture("default", "many")
        .expect("reading the capture")
        .expect("the capture");
    let targets: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            serde_json::json!({"node": format!("node-{}", i % 3), "namespace": "default",
                "pod": format!("web-{i:03}"), "interface": "eth0", "state": "Completed",
                "packets": 2, "bytes": 120})
        })
        .collect();
    let mut status = finished["status"].clone();
    status["targets"] = serde_json::Value::Array(targets);
    let mut status: capture_spec::CaptureStatus = serde_json::from_value(status).unwrap();
    status.summarize();
    assert!(store.update_capture_status(&record.uid, &status).unwrap());
    let artifacts = run_script("many_targets.mjs", &api, &[]);
    assert!(artifacts.join("many-first-page.png").exists());
}

/// Sends a few UDP datagrams from each pod to its host side every 200 ms until dropped (at most
/// two minutes), so a capture started from the browser has traffic to see.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(pods: Vec<(std::sync::Arc<api_common::Pod>, std::net::SocketAddr)>) -> Traffic {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                for (pod, server) in &pods {
                    api_common::traffic::burst_from_pod(pod, *server, 5, 120);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The whole console in a browser (web/tests/capture_flow.mjs), then the files it downloaded
/// judged by tshark: both pods' traffic, each pod its own named interface, nothing but the
/// filtered port, and the share link's download equal to the button's.
#[test]
fn the_console_captures_downloads_and_shares() {
    const PORT: u16 = 7931;
    let web_1 = std::sync::Arc::new(api_common::Pod::new());
    let web_2 = std::sync::Arc::new(api_common::Pod::new());
    let sinks = [
        api_common::UdpSink::bind(web_1.host_v4.into(), PORT),
        api_common::UdpSink::bind(web_2.host_v4.into(), PORT),
    ];
    let data = tempfile::tempdir().expect("temp dir");
    let inventory = data.path().join("pods.yaml");
    std::fs::write(
        &inventory,
        format!(
            "pods:\n  - {{namespace: shop, name: web-1, labels: {{app: web}}, netns: {}}}\n  - {{namespace: shop, name: web-2, labels: {{app: web}}, netns: {}}}\n",
            web_1.netns, web_2.netns
        ),
    )
    .expect("writing the inventory");
    let api = Api::start_with(&["--inventory", inventory.to_str().expect("utf-8 path")]);
    let other_token = api.create_token("viewer", &["other"]);
    let downloads = data.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");

    let servers = vec![
        (
            web_1.clone(),
            std::net::SocketAddr::new(web_1.host_v4.into(), PORT),
        ),
        (
            web_2.clone(),
            std::net::SocketAddr::new(web_2.host_v4.into(), PORT),
        ),
    ];
    let traffic = Traffic::start(servers);
    run_script(
        "capture_flow.mjs",
        &api,
        &[
            ("PODCAP_NAMESPACE", "shop"),
            ("PODCAP_SELECTOR", "app=web"),
            ("PODCAP_PODS", "web-1,web-2"),
            ("PODCAP_PORT", &PORT.to_string()),
            ("PODCAP_DOWNLOADS", downloads.to_str().expect("utf-8 path")),
            ("PODCAP_OTHER_TOKEN", &other_token),
        ],
    );
    drop(traffic);
    drop(sinks);

    let merged = downloads.join("merged.pcapng");
    let packets = api_common::tshark::assert_tshark_reads_cleanly(&merged);
    assert!(packets > 0, "the merged download is empty");
    let rows = api_common::tshark::fields(
        &merged,
        None,
        &["frame.interface_description", "udp.dstport"],
    );
    for pod in ["web-1", "web-2"] {
        let description = format!("shop/{pod} on ");
        assert!(
            rows.iter().any(|row| row[0].starts_with(&description)),
            "no packet of {pod} in the merged download"
        );
    }
    assert!(
        rows.iter().all(|row| row[1] == PORT.to_string()),
        "only UDP {PORT} was to be captured"
    );
    let pcap = downloads.join("merged.pcap");
    assert_eq!(
        api_common::tshark::assert_tshark_reads_cleanly(&pcap),
        packets
    );
    let shared = std::fs::read(downloads.join("shared.pcapng")).expect("the shared download");
    assert_eq!(
        shared,
        std::fs::read(&merged).expect("the merged download"),
        "the share link serves the merged capture"
    );
    assert!(
        api_common::tshark::assert_tshark_reads_cleanly(&downloads.join("one-file.pcapng")) > 0
    );
}
