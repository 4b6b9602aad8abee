//! `capture-api --standalone` under the density benchmark: starts it pinned to
//! CPU 1 with its own temp data dir and `--listen 127.0.0.1:0` (stderr goes to
//! a log file, read for "listening on http://ADDR"), talks to its REST API
//! with the admin token from DATA/admin-token (create one capture selecting
//! the bench pods by their `podcap.io/netns` label, read its status, stop it)
//! and stops the process with SIGTERM, killing it if it does not exit.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use capture_spec::status::{CaptureStatus, TargetState};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::interrupt;
use crate::measure::sleep_interruptibly;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The label standalone discovery gives every namespace's pod.
const NETNS_LABEL: &str = "podcap.io/netns";

/// A running capture-api.
pub struct Service {
    child: Child,
    base: String,
    token: String,
    http: ureq::Agent,
    pub log: PathBuf,
}

impl Service {
    /// Starts capture-api with its data dir at `dir/data` and its log at
    /// `dir/capture-api.log`, and waits until it listens.
    pub fn start(binary: &Path, dir: &Path, ring_memory: &str) -> Result<Service> {
        let data = dir.join("data");
        let log = dir.join("capture-api.log");
        let command_line: Vec<String> = vec![
            "taskset".into(),
            "-c".into(),
            "1".into(),
            binary.display().to_string(),
            "--standalone".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--ring-memory".into(),
            ring_memory.into(),
            // The max-rate scenario writes ~14 GB; the default 10 GiB quota
            // would stop it.
            "--quota".into(),
            "48GiB".into(),
        ];
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&command_line[0])
            .args(&command_line[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // Own process group: a terminal Ctrl-C reaches only the benchmark.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", command_line.join(" ")))?;
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut service = Service {
            child,
            base: String::new(),
            token: String::new(),
            http,
            log,
        };
        let address = service.wait_for_address()?;
        service.base = format!("http://{address}");
        let token_path = data.join("admin-token");
        service.token = fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?
            .trim()
            .to_string();
        Ok(service)
    }

    /// The PID of capture-api itself (taskset execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_address(&mut self) -> Result<String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            interrupt::check()?;
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(address) = text.lines().find_map(|line| {
                line.split_once("listening on http://")
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
            }) {
                return Ok(address);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "capture-api exited during start-up ({status}){}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "capture-api did not listen within {STARTUP_TIMEOUT:?}{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; capture-api log:\n{tail}")
        }
    }

    /// Log lines at WARN or ERROR level.
    pub fn warnings(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .map(|line| strip_ansi(line).trim().to_string())
            .collect()
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let url = format!("{}/api/v1/namespaces/default/captures{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.http.get(&url).header("Authorization", &auth).call(),
            ("POST", Some(body)) => self
                .http
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            ("POST", None) => self
                .http
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
            _ => bail!("unsupported request {method}"),
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Creates capture `name` over the pods of `netns` (their label), for 10 minutes.
    pub fn create_capture(&self, name: &str, netns: &[&str]) -> Result<()> {
        let body = json!({
            "metadata": {"name": name},
            "spec": {
                "duration": "10m",
                "podSelector": {"matchExpressions": [
                    {"key": NETNS_LABEL, "operator": "In", "values": netns}
                ]}
            }
        });
        let (status, answer) = self.request("POST", "", Some(&body))?;
        if status != 201 {
            bail!("creating capture {name}: HTTP {status}: {answer}");
        }
        Ok(())
    }

    /// The capture's current status.
    pub fn status(&self, name: &str) -> Result<CaptureStatus> {
        let (status, answer) = self.request("GET", &format!("/{name}"), None)?;
        if status != 200 {
            bail!("reading capture {name}: HTTP {status}: {answer}");
        }
        let status = answer
            .get("status")
            .cloned()
            .ok_or_else(|| anyhow!("capture {name} has no status: {answer}"))?;
        serde_json::from_value(status).with_context(|| format!("parsing the status of {name}"))
    }

    /// Waits until the capture has `targets` targets, all Capturing; fails
    /// early if one failed.
    pub fn wait_capturing(
        &self,
        name: &str,
        targets: usize,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            interrupt::check()?;
            let status = self.status(name)?;
            if let Some(failed) = status.targets.iter().find(|t| t.state.is_finished()) {
                bail!(
                    "target {} of capture {name} is {:?}: {}",
                    failed.pod,
                    failed.state,
                    failed.error.as_deref().unwrap_or("no reason given")
                );
            }
            let capturing = status
                .targets
                .iter()
                .filter(|t| t.state == TargetState::Capturing)
                .count();
            if capturing == targets && status.targets.len() == targets {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "after {timeout:?}, {capturing} of {targets} targets of capture {name} are capturing \
                     ({} targets listed, phase {:?}, message {:?}){}",
                    status.targets.len(),
                    status.phase,
                    status.message,
                    self.log_tail()
                );
            }
            sleep_interruptibly(Duration::from_millis(250))?;
        }
    }

    /// Stops the capture and waits until every target has finished (drained),
    /// returning the final status.
    pub fn stop_capture(&self, name: &str) -> Result<CaptureStatus> {
        let (status, answer) = self.request("POST", &format!("/{name}/stop"), None)?;
        if !(200..300).contains(&status) {
            bail!("stopping capture {name}: HTTP {status}: {answer}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            interrupt::check()?;
            let status = self.status(name)?;
            if status.finished_at.is_some() && status.targets.iter().all(|t| t.state.is_finished())
            {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("capture {name} not finished {STOP_TIMEOUT:?} after stop");
            }
            sleep_interruptibly(Duration::from_millis(200))?;
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a timeout).
    pub fn shut_down(mut self) -> Result<()> {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM).context("sending SIGTERM")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("note: capture-api exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("capture-api did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    /// A service that was not shut down (error, interrupt) is killed by PID.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes terminal colour codes from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn strips_colour_codes() {
        assert_eq!(strip_ansi("\u{1b}[33m WARN\u{1b}[0m x"), " WARN x");
    }
}
