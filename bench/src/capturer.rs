//! The capturers under test — tcpdump and podcap's `capture-agent` — behind
//! one small enum: how to start each one (pinned to CPU 1 with `taskset`,
//! which execs, so the child's PID is the capturer's own), how to tell it is
//! ready, how to stop it (SIGINT, then it drains and exits) and how to read
//! its own account of packets captured and dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;

use crate::{interrupt, procfs};

/// Kernel buffer for both tools: tcpdump's `-B` is in KiB, so 65536 = 64 MiB,
/// the same as podcap's `--ring-size 64MiB`.
const TCPDUMP_BUFFER_KIB: &str = "65536";
pub const PODCAP_RING_SIZE: &str = "64MiB";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Writing out what is still buffered can take a while for big files.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    Tcpdump,
    Podcap,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Tcpdump => "tcpdump",
            Tool::Podcap => "podcap",
        }
    }

    /// A line on stderr that says the capturer's sockets are bound.
    fn ready_marker(self) -> &'static str {
        match self {
            Tool::Tcpdump => "listening on",
            Tool::Podcap => "capturing on ",
        }
    }
}

/// Everything needed to start one capture.
pub struct CaptureTarget<'a> {
    pub interface: &'a str,
    pub output_file: &'a Path,
    /// Capture only UDP datagrams to or from this port.
    pub filter_port: Option<u16>,
    pub capture_agent: &'a Path,
}

/// The command line of a capture, pinned to CPU 1.
pub fn command_line(tool: Tool, target: &CaptureTarget<'_>) -> Vec<String> {
    let mut args: Vec<String> = ["taskset", "-c", "1"].map(String::from).to_vec();
    let file = target.output_file.display().to_string();
    match tool {
        Tool::Tcpdump => {
            args.extend(
                [
                    "tcpdump",
                    "-i",
                    target.interface,
                    "-B",
                    TCPDUMP_BUFFER_KIB,
                    "-s",
                    "262144",
                    "-n",
                    "-w",
                    &file,
                ]
                .map(String::from),
            );
            if let Some(port) = target.filter_port {
                args.extend(["udp".to_string(), "port".to_string(), port.to_string()]);
            }
        }
        Tool::Podcap => {
            args.push(target.capture_agent.display().to_string());
            args.extend(
                [
                    "capture",
                    "--interface",
                    target.interface,
                    "--output",
                    &file,
                    "--ring-size",
                    PODCAP_RING_SIZE,
                    "--json",
                ]
                .map(String::from),
            );
            if let Some(port) = target.filter_port {
                args.extend(["--filter".to_string(), format!("udp:{port}")]);
            }
        }
    }
    args
}

/// The capturer's own account of a capture.
#[derive(Debug, Clone)]
pub struct CaptureCounts {
    /// Packets the capturer says it captured (and wrote).
    pub captured: u64,
    /// Packets the kernel dropped because the capturer's buffer was full.
    pub kernel_drops: u64,
    /// tcpdump only: "packets received by filter", i.e. what the kernel
    /// handed to the socket (captured + dropped + whatever was still in flight).
    pub received: Option<u64>,
    /// podcap only: packets written to files according to its JSON.
    pub written: Option<u64>,
    /// podcap only: ring freezes (from its JSON).
    pub freezes: Option<u64>,
}

/// A capturer that was started and is (or was) running.
pub struct RunningCapturer {
    tool: Tool,
    child: Child,
    stderr_lines: Receiver<String>,
    stderr_reader: Option<JoinHandle<()>>,
    stdout_reader: Option<JoinHandle<String>>,
    /// stderr lines seen so far, for parsing and for error messages.
    stderr_seen: Vec<String>,
    peak_rss_kib: Option<u64>,
}

/// What a stopped capturer left behind.
pub struct StoppedCapturer {
    pub counts: CaptureCounts,
    pub peak_rss_kib: Option<u64>,
}

impl RunningCapturer {
    /// Starts the capture in its own process group, so a Ctrl-C in the
    /// terminal reaches only the benchmark, which then stops it properly.
    pub fn spawn(tool: Tool, command_line: &[String]) -> Result<RunningCapturer> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(&command_line[0])
            .args(&command_line[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", command_line.join(" ")))?;
        let stderr = child.stderr.take().context("capturer stderr")?;
        let stdout = child.stdout.take().context("capturer stdout")?;
        let (sender, stderr_lines) = mpsc::channel();
        let stderr_reader = std::thread::spawn(move || forward_lines(stderr, sender));
        let stdout_reader = std::thread::spawn(move || read_all(stdout));
        Ok(RunningCapturer {
            tool,
            child,
            stderr_lines,
            stderr_reader: Some(stderr_reader),
            stdout_reader: Some(stdout_reader),
            stderr_seen: Vec::new(),
            peak_rss_kib: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the capturer says its sockets are bound.
    pub fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            interrupt::check()?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                bail!(
                    "{} not ready after {STARTUP_TIMEOUT:?}{}",
                    self.tool.name(),
                    self.stderr_tail()
                );
            }
            match self
                .stderr_lines
                .recv_timeout(remaining.min(Duration::from_millis(100)))
            {
                Ok(line) => {
                    let ready = line.contains(self.tool.ready_marker());
                    self.stderr_seen.push(line);
                    if ready {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!(
                        "{} exited during start-up ({status}){}",
                        self.tool.name(),
                        self.stderr_tail()
                    );
                }
            }
        }
    }

    /// Records the current peak RSS while the process is alive.
    pub fn sample_peak_rss(&mut self) {
        if let Some(kib) = procfs::peak_rss_kib(self.pid()) {
            self.peak_rss_kib = Some(self.peak_rss_kib.map_or(kib, |seen| seen.max(kib)));
        }
    }

    /// Sends SIGINT, waits for the drain and the exit (sampling peak RSS while
    /// it lasts), reaps the process and parses its report.
    pub fn stop(mut self) -> Result<StoppedCapturer> {
        self.sample_peak_rss();
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGINT).context("sending SIGINT")?;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            self.sample_peak_rss();
            if Instant::now() > deadline {
                bail!(
                    "{} did not exit within {DRAIN_TIMEOUT:?} of SIGINT",
                    self.tool.name()
                );
            }
            // A second Ctrl-C means "stop now": the drop below kills it.
            interrupt::check()?;
            std::thread::sleep(POLL_INTERVAL);
        };
        let stdout = self
            .stdout_reader
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr_seen.extend(self.stderr_lines.try_iter());
        if !status.success() {
            bail!(
                "{} exited with {status}{}",
                self.tool.name(),
                self.stderr_tail()
            );
        }
        let counts = match self.tool {
            Tool::Tcpdump => parse_tcpdump_summary(&self.stderr_seen),
            Tool::Podcap => parse_podcap_json(&stdout),
        }
        .with_context(|| {
            format!(
                "reading {}'s report{}",
                self.tool.name(),
                self.stderr_tail()
            )
        })?;
        Ok(StoppedCapturer {
            counts,
            peak_rss_kib: self.peak_rss_kib,
        })
    }

    fn stderr_tail(&self) -> String {
        let tail: Vec<&str> = self
            .stderr_seen
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(String::as_str)
            .collect();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr:\n{}", tail.join("\n"))
        }
    }
}

impl Drop for RunningCapturer {
    /// A capturer that was not stopped (error or interrupt) is killed by PID,
    /// so no capture outlives the benchmark.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn forward_lines(stderr: ChildStderr, lines: mpsc::Sender<String>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if lines.send(line).is_err() {
            break;
        }
    }
}

fn read_all(mut stdout: ChildStdout) -> String {
    let mut text = String::new();
    let _ = stdout.read_to_string(&mut text);
    text
}

/// tcpdump's exit summary: "N packets captured", "N packets received by
/// filter", "N packets dropped by kernel".
fn parse_tcpdump_summary(stderr: &[String]) -> Result<CaptureCounts> {
    let count_before = |suffix: &str| -> Result<u64> {
        let line = stderr
            .iter()
            .find(|line| line.ends_with(suffix))
            .ok_or_else(|| anyhow!("no \"{suffix}\" line"))?;
        let number = line.trim_end_matches(suffix).trim();
        number.parse().with_context(|| format!("parsing {line:?}"))
    };
    Ok(CaptureCounts {
        captured: count_before("packets captured")?,
        kernel_drops: count_before("packets dropped by kernel")?,
        received: Some(count_before("packets received by filter")?),
        written: None,
        freezes: None,
    })
}

#[derive(Deserialize)]
struct PodcapReport {
    packets: u64,
    drops: u64,
    #[serde(default)]
    freezes: u64,
    #[serde(default)]
    files: Vec<PodcapFile>,
}

#[derive(Deserialize)]
struct PodcapFile {
    packets: u64,
}

/// capture-agent's `--json` report: the last line on stdout that parses.
fn parse_podcap_json(stdout: &str) -> Result<CaptureCounts> {
    let report: PodcapReport = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line.trim()).ok())
        .or_else(|| serde_json::from_str(stdout.trim()).ok())
        .ok_or_else(|| anyhow!("no JSON report on stdout: {stdout:?}"))?;
    Ok(CaptureCounts {
        captured: report.packets,
        kernel_drops: report.drops,
        received: None,
        written: Some(report.files.iter().map(|file| file.packets).sum()),
        freezes: Some(report.freezes),
    })
}

/// Counts the packets in a capture file with `capinfos -c -M`, independently
/// of what the capturer claims.
pub fn packets_in_file(file: &Path) -> Result<u64> {
    let out = crate::netns::output("capinfos", &["-c", "-M", &file.display().to_string()])?;
    let line = out
        .lines()
        .find(|line| line.trim_start().starts_with("Number of packets"))
        .ok_or_else(|| anyhow!("no packet count in capinfos output: {out:?}"))?;
    let number = line.split(':').nth(1).unwrap_or("").trim();
    number
        .parse()
        .with_context(|| format!("parsing capinfos line {line:?}"))
}

/// Finds capture-agent (see [`find_binary`]).
pub fn find_capture_agent(explicit: Option<&Path>) -> Result<PathBuf> {
    find_binary("capture-agent", explicit).context("or pass --tools tcpdump")
}

/// Finds one of the workspace's binaries: the explicit path, else next to this binary (same
/// cargo profile), else in the workspace's target/release.
pub fn find_binary(name: &str, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(name));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release")
            .join(name),
    );
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "{name} not found (looked at {candidates:?}); build it with \
                 `cargo build --release -p {name}`"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcpdump_summary() {
        let stderr: Vec<String> = [
            "tcpdump: listening on pcbh1, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
            "",
            "399871 packets captured",
            "400000 packets received by filter",
            "129 packets dropped by kernel",
        ]
        .map(String::from)
        .to_vec();
        let counts = parse_tcpdump_summary(&stderr).unwrap();
        assert_eq!(counts.captured, 399_871);
        assert_eq!(counts.kernel_drops, 129);
    }

    #[test]
    fn parses_podcap_json() {
        let stdout = r#"{"packets":10,"bytes":640,"drops":2,"freezes":1,"interfaces":[{"name":"x","packets":10,"bytes":640,"drops":2}],"files":[{"path":"/tmp/a","packets":10,"bytes":640}]}"#;
        let counts = parse_podcap_json(stdout).unwrap();
        assert_eq!(
            (
                counts.captured,
                counts.kernel_drops,
                counts.written,
                counts.freezes
            ),
            (10, 2, Some(10), Some(1))
        );
    }
}
