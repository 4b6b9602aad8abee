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

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One browser at a time: the tests of this file run in parallel threads, and several Chromiums
/// on a 2-core machine only slow each other down.
static BROWSER: Mutex<()> = Mutex::new(());

/// The bound of a whole script; each of its waits is bounded far lower (PODCAP_TIMEOUT_MS, 15 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn web_tests_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/tests");
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
