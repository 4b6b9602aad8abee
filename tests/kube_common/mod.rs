//! What the Kubernetes-mode API tests share: `capture-api --kubernetes` as a process (started
//! with a kubeconfig, killed by its own PID when dropped, its log kept) and its answers.

#![allow(dead_code)] // each test file uses its part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use podcap_testkit::cluster::{eventually, listening_address};
use serde_json::Value;

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// Itself, after asserting its status.
    pub fn ok(self, status: u16) -> Answer {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The problem document, after asserting the status and the media type.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/problem+json");
        self.json()
    }
}

/// `capture-api --kubernetes`; killed (by its own PID) and reaped when dropped.
pub struct ApiProcess {
    child: Child,
    pub base: String,
    log: PathBuf,
    pub http: ureq::Agent,
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiProcess {
    /// Starts the API on a free loopback port with `kubeconfig`'s identity, its data and log in
    /// `scratch`, plus `args`; returns once `/readyz` answers.
    pub fn start(scratch: &Path, kubeconfig: &Path, args: &[String]) -> ApiProcess {
        let log = scratch.join("api.log");
        let mut child = Command::new(podcap_testkit::api_binary())
            .args(["--kubernetes", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(scratch.join("api"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("PODCAP_LOG", "info,kube=warn,hyper=warn,tower=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the API log"))
            .spawn()
            .expect("starting capture-api --kubernetes");
        let listen = eventually("the API to bind its port", 30, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "capture-api exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines().find_map(listening_address)
        });
        let api = ApiProcess {
            child,
            base: format!("http://{listen}"),
            log,
            http: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
        };
        eventually("the API to be ready", 30, || {
            (api.http
                .get(format!("{}/readyz", api.base))
                .call()
                .ok()?
                .status()
                == 200)
                .then_some(())
        });
        api
    }

    /// `method path` with `token` (none: no Authorization header) and a JSON `body`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.try_call(method, path, token, body)
            .unwrap_or_else(|error| panic!("{method} {path}: the body broke off: {error}"))
    }

    /// [`ApiProcess::call`], with a body that breaks off (a download cut short) as an error.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, ureq::Error> {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match method {
            "GET" | "DELETE" => {
                let mut request = if method == "GET" {
                    self.http.get(&url)
                } else {
                    self.http.delete(&url)
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            "POST" | "PUT" => {
                let mut request = if method == "PUT" {
                    self.http.put(&url)
                } else {
                    self.http.post(&url)
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request
                    .header("Content-Type", "application/json")
                    .send(body.map(Value::to_string).unwrap_or_default())
            }
            other => panic!("no {other} here"),
        };
        let mut response = result.expect("the request reached the API");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response.body_mut().read_to_vec()?;
        Ok(Answer {
            status: response.status().as_u16(),
            content_type,
            body,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
