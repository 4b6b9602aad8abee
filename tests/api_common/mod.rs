//! Harness of the API's end-to-end tests: the real `capture-api --standalone` binary on a free
//! loopback port with its own data directory, an HTTP client that returns every status (errors
//! included) for the test to judge, and the shared netns pods of `podcap-testkit`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub use podcap_testkit::*;

/// Where a test server's stdout (the audit trail's JSON lines) goes, in its data directory.
pub const AUDIT_LINES: &str = "api-stdout.jsonl";

/// A running API server; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Api {
    child: Option<Child>,
    pub base: String,
    pub token: String,
    pub data_dir: PathBuf,
    agent: ureq::Agent,
    _scratch: Option<tempfile::TempDir>,
}

/// An answer: status, content type and body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a 201 Created and returns the created object.
    pub fn created(&self) -> Value {
        assert_eq!(self.status, 201, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }

    /// Asserts an RFC 7807 problem with this status and returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.content_type, "application/problem+json",
            "errors are problem+json"
        );
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "a problem says what is wrong: {problem}"
        );
        problem
    }
}

/// Forwards the server's stderr to ours line by line and returns the address it bound, from its
/// "listening on http://ADDR" line (`None` if it exited first). The server listens on port 0, so
/// no two servers of parallel tests can race for one port.
fn bound_address(stderr: ChildStderr) -> Option<SocketAddr> {
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(address) = cluster::listening_address(&line) {
                if let Some(found) = found.take() {
                    let _ = found.send(address);
                }
            }
        }
    });
    address.recv_timeout(Duration::from_secs(20)).ok()
}

impl Api {
    /// Starts a server with a fresh data directory.
    pub fn start() -> Api {
        Api::start_with(&[])
    }

    /// Starts a server with a fresh data directory and extra flags.
    pub fn start_with(flags: &[&str]) -> Api {
        let scratch = tempfile::Builder::new()
            .prefix("podcap-api-")
            .tempdir()
            .unwrap();
        let data_dir = scratch.path().to_path_buf();
        let mut api = Api::launch(&data_dir, flags);
        api._scratch = Some(scratch);
        api
    }

    /// Starts a server on an existing data directory (e.g. after a restart).
    pub fn start_in(data_dir: &Path) -> Api {
        Api::launch(data_dir, &[])
    }

    /// Starts a server with extra flags on a data directory the test made (e.g. a small disk).
    pub fn start_on_disk(data_dir: &Path, flags: &[&str]) -> Api {
        Api::launch(data_dir, flags)
    }

    fn launch(data_dir: &Path, flags: &[&str]) -> Api {
        let mut child = Command::new(podcap_testkit::api_binary())
            .args(["--standalone", "--listen", "127.0.0.1:0"])
            .args(flags)
            .arg("--data-dir")
            .arg(data_dir)
            // stdout carries the audit trail's JSON lines (see `Api::audit_lines`).
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data_dir.join(AUDIT_LINES))
                    .expect("the API's stdout file"),
            )
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting capture-api");
        let stderr = child.stderr.take().expect("piped stderr");
        let Some(address) = bound_address(stderr) else {
            let _ = child.kill();
            panic!("capture-api did not print the address it listens on");
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut api = Api {
            child: Some(child),
            base: format!("http://{address}"),
            token: String::new(),
            data_dir: data_dir.to_path_buf(),
            agent,
            _scratch: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = api.agent.get(format!("{}/readyz", api.base)).call() {
                if response.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "capture-api did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api.token = std::fs::read_to_string(data_dir.join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_string();
        api
    }

    fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = response.expect("the request reached the server");
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>();
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("reading the body");
        Answer {
            status: response.status().as_u16(),
            content_type,
            headers,
            body,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the admin token (`token: None`) or another one (`Some("")` = no header).
    pub fn get_as(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Answer {
        let mut request = self.agent.get(self.url(path));
        let token = token.unwrap_or(&self.token);
        if !token.is_empty() {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        Api::answer(request.call())
    }

    pub fn get(&self, path: &str) -> Answer {
        self.get_as(path, None, &[])
    }

    /// A streamed GET (status, body reader), for live streams.
    pub fn get_stream(&self, path: &str) -> (u16, impl std::io::Read) {
        let response = self
            .agent
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .expect("the request reached the server");
        (
            response.status().as_u16(),
            response.into_body().into_reader(),
        )
    }

    pub fn post_as(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let mut request = self.agent.post(self.url(path));
        let token = token.unwrap_or(&self.token);
        if !token.is_empty() {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Api::answer(request.send_json(body))
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_as(path, None, body)
    }

    pub fn delete(&self, path: &str) -> Answer {
        Api::answer(
            self.agent
                .delete(self.url(path))
                .header("Authorization", format!("Bearer {}", self.token))
                .call(),
        )
    }

    /// Polls a capture until its phase is one of `phases`; panics after `within`.
    pub fn wait_for_phase(
        &self,
        namespace: &str,
        name: &str,
        phases: &[&str],
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let capture = self
                .get(&format!("/api/v1/namespaces/{namespace}/captures/{name}"))
                .json();
            if phases.iter().any(|p| capture["status"]["phase"] == *p) {
                return capture;
            }
            assert!(
                Instant::now() < deadline,
                "capture {name} never reached {phases:?}: {capture}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits up to `within` for a capture to end and asserts that it completed (not failed);
    /// returns the capture.
    pub fn wait_until_completed(&self, namespace: &str, name: &str, within: Duration) -> Value {
        let done = self.wait_for_phase(namespace, name, &["Completed", "Failed"], within);
        assert_eq!(done["status"]["phase"], "Completed", "{done}");
        done
    }

    /// A new token made with `capture-api token create` (the server keeps running: the store is
    /// shared through SQLite's WAL).
    pub fn create_token(&self, role: &str, namespaces: &[&str]) -> String {
        let mut command = Command::new(podcap_testkit::api_binary());
        command
            .args(["token", "create", "--role", role, "--data-dir"])
            .arg(&self.data_dir);
        for namespace in namespaces {
            command.args(["--namespace", namespace]);
        }
        let output = command.output().expect("running capture-api token create");
        assert!(
            output.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// Stops the server the hard way (as an OOM kill would), keeping the data directory.
    /// The audit events the server printed on stdout so far, one JSON object per line.
    pub fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.data_dir.join(AUDIT_LINES))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
            })
            .collect()
    }

    /// The server's PID while it runs (for /proc measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
