//! Capturer processes: capture-agent (the program under test) and tcpdump (the reference), each
//! started, awaited until its sockets are bound, stopped with SIGINT and reaped. A capturer that
//! is still running when its guard is dropped (a failing test) is killed and reaped by PID.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long a capturer may take to bind its sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a capturer may take to exit after SIGINT (capture-agent drains its ring first).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub fn agent_binary() -> &'static str {
    podcap_testkit::agent_binary()
        .to_str()
        .expect("the target directory's path is UTF-8")
}

/// A running capturer process.
pub struct Capturer {
    name: String,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
    stdout_thread: Option<JoinHandle<String>>,
}

/// What a capturer left behind when it exited.
#[derive(Debug)]
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Time from the stop request (or from the start of the wait) to the exit.
    pub waited: Duration,
}

impl Finished {
    /// The `--json` summary printed on stdout.
    pub fn summary(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.name, self.stdout, self.stderr
            )
        })
    }

    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{} exited with {}; stderr:\n{}",
            self.name,
            self.status,
            self.stderr
        );
    }
}

/// A field of the JSON summary as u64, failing clearly if it is missing.
pub fn json_u64(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary field {field:?} is not a number: {value}"))
}

impl Capturer {
    /// Starts `capture-agent capture ARGS` and waits for its `capturing on` line.
    pub fn agent(args: &[&str]) -> Capturer {
        let mut command = Command::new(agent_binary());
        command.arg("capture").args(args);
        Capturer::start(
            format!("capture-agent {}", args.join(" ")),
            command,
            |line| line.starts_with("capturing on "),
        )
    }

    /// Starts capture-agent without waiting for it to be ready (for runs expected to fail).
    pub fn agent_unchecked(args: &[&str]) -> Capturer {
        let mut command = Command::new(agent_binary());
        command.arg("capture").args(args);
        Capturer::spawn(format!("capture-agent {}", args.join(" ")), command).0
    }

    /// Starts the reference: `tcpdump -i IF -s 262144 -n --time-stamp-precision=nano -w FILE`.
    /// Immediate mode makes libpcap hand over each packet at once; without it, tcpdump loses the
    /// packets of the ring block still being filled when SIGINT arrives.
    pub fn tcpdump(interface: &str, output: &Path) -> Capturer {
        Capturer::tcpdump_with(interface, output, None)
    }

    /// [`Capturer::tcpdump`] with a pcap-filter expression, given to tcpdump as one argument
    /// (no shell): the reference for `--bpf` and `bpfFilter`.
    pub fn tcpdump_filtered(interface: &str, output: &Path, expression: &str) -> Capturer {
        Capturer::tcpdump_with(interface, output, Some(expression))
    }

    fn tcpdump_with(interface: &str, output: &Path, expression: Option<&str>) -> Capturer {
        let mut command = Command::new("tcpdump");
        command
            .args([
                "-i",
                interface,
                "-s",
                "262144",
                "-n",
                "--time-stamp-precision=nano",
                "--immediate-mode",
                "-w",
            ])
            .arg(output)
            .args(expression);
        let name = match expression {
            Some(expression) => format!("tcpdump -i {interface} {expression:?}"),
            None => format!("tcpdump -i {interface}"),
        };
        Capturer::start(name, command, |line| line.contains("listening on"))
    }

    /// One of several capture-agents side by side on `interface`, each writing its own file:
    /// `capture-agent capture --interface IF --output FILE --json --ring-size 8MiB EXTRA...`.
    /// A small ring each is plenty for the test kit's traffic; the summary goes to stdout.
    pub fn agent_beside_others(interface: &str, output: &str, extra: &[&str]) -> Capturer {
        let mut args = vec![
            "--interface",
            interface,
            "--output",
            output,
            "--json",
            "--ring-size",
            "8MiB",
        ];
        args.extend_from_slice(extra);
        Capturer::agent(&args)
    }

    /// Starts the process with its output captured; the receiver gets each stderr line.
    fn spawn(name: String, mut command: Command) -> (Capturer, Receiver<String>) {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let capturer = Capturer {
            name,
            child: Some(child),
            stderr: stderr_text.clone(),
            stderr_thread: Some(spawn_stderr_reader(stderr, stderr_text, lines_tx)),
            stdout_thread: Some(spawn_stdout_reader(stdout)),
        };
        (capturer, lines_rx)
    }

    /// Starts the process and waits until a stderr line says it is ready.
    fn start(name: String, command: Command, is_ready: impl Fn(&str) -> bool) -> Capturer {
        let (mut capturer, lines) = Capturer::spawn(name, command);
        capturer.wait_until_ready(&lines, is_ready);
        capturer
    }

    fn wait_until_ready(&mut self, lines: &Receiver<String>, is_ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if is_ready(&line) => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is gone.
                    let finished = self.wait(Duration::from_secs(5));
                    panic!(
                        "{} exited ({}) before it was ready; stderr:\n{}",
                        self.name, finished.status, finished.stderr
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    let stderr = self.stderr.lock().unwrap().clone();
                    panic!(
                        "{} was not ready within {READY_TIMEOUT:?}; stderr so far:\n{stderr}",
                        self.name
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("already reaped").id() as i32)
    }

    /// Sends `signal` to this process (and only to it).
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("sending {signal} to {}: {e}", self.name));
    }

    /// SIGINT, then waits for the exit.
    pub fn stop(mut self) -> Finished {
        self.signal(Signal::SIGINT);
        self.wait(STOP_TIMEOUT)
    }

    /// SIGKILL, then reaps it.
    pub fn kill(mut self) -> Finished {
        self.signal(Signal::SIGKILL);
        self.wait(STOP_TIMEOUT)
    }

    /// Waits up to `timeout` for the process to end by itself; on timeout it is killed and the
    /// test fails.
    pub fn wait_for_exit(mut self, timeout: Duration) -> Finished {
        self.wait(timeout)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn wait(&mut self, timeout: Duration) -> Finished {
        let started = Instant::now();
        let mut child = self.child.take().expect("already reaped");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() >= timeout {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = self.stderr.lock().unwrap().clone();
                panic!(
                    "{} did not exit within {timeout:?} (killed it); stderr:\n{stderr}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let waited = started.elapsed();
        // The pipes close with the process, so the readers finish.
        let stdout = self
            .stdout_thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let stderr = self.stderr.lock().unwrap().clone();
        Finished {
            name: self.name.clone(),
            status,
            stdout,
            stderr,
            waited,
        }
    }
}

impl Drop for Capturer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_stderr_reader(
    stderr: ChildStderr,
    text: Arc<Mutex<String>>,
    lines: mpsc::Sender<String>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            {
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
            let _ = lines.send(line);
        }
    })
}

fn spawn_stdout_reader(mut stdout: ChildStdout) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    })
}

/// `--filter RULE` for each rule, in order, as capture-agent's arguments.
pub fn filter_args<S: AsRef<str>>(rules: &[S]) -> Vec<&str> {
    rules
        .iter()
        .flat_map(|rule| ["--filter", rule.as_ref()])
        .collect()
}

/// Runs capture-agent to completion with `args`, for runs that must fail fast. Returns the
/// exit status and output; a run still going after `timeout` is killed and fails the test.
pub fn run_agent_to_end(args: &[&str], timeout: Duration) -> Finished {
    Capturer::agent_unchecked(args).wait_for_exit(timeout)
}
