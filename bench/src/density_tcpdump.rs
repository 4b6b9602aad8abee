//! The reference of the density benchmark: one `tcpdump -i HOSTVETH -B 1024
//! -w FILE` per pod, all pinned to CPU 1 (like capture-api), each with its
//! stderr in a file (read for "listening on" and, after SIGINT, for its
//! "packets captured / dropped by kernel" summary). Measured as a set: RSS,
//! threads, CPU and rings are summed over the processes.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::interrupt;
use crate::procfs::{self, ProcessSample};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// tcpdump's `-B` is in KiB: 1 MiB, podcap's base ring.
pub const BUFFER_KIB: &str = "1024";

/// One tcpdump of the set.
struct Tcpdump {
    child: Child,
    stderr: PathBuf,
}

/// What one tcpdump said at exit.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpdumpCounts {
    pub captured: u64,
    pub dropped: u64,
}

/// One tcpdump per interface.
pub struct TcpdumpSet {
    members: Vec<Tcpdump>,
}

/// The command line of one member (FILE in the report, a real path here).
pub fn command_line(interface: &str, file: &str) -> Vec<String> {
    [
        "taskset", "-c", "1", "tcpdump", "-i", interface, "-B", BUFFER_KIB, "-w", file,
    ]
    .map(String::from)
    .to_vec()
}

impl TcpdumpSet {
    /// Starts one tcpdump per interface, writing into `dir` (which tcpdump's
    /// own user must be able to write: it drops root before opening the
    /// file), and waits until each says it is listening.
    pub fn start(interfaces: &[&str], dir: &Path) -> Result<TcpdumpSet> {
        let mut set = TcpdumpSet {
            members: Vec::new(),
        };
        for interface in interfaces {
            let file = dir.join(format!("{interface}.pcap"));
            let stderr = dir.join(format!("{interface}.stderr"));
            let args = command_line(interface, &file.display().to_string());
            let child = Command::new(&args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    File::create(&stderr)
                        .with_context(|| format!("creating {}", stderr.display()))?,
                )
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", args.join(" ")))?;
            set.members.push(Tcpdump { child, stderr });
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for member in &mut set.members {
            loop {
                interrupt::check()?;
                let text = fs::read_to_string(&member.stderr).unwrap_or_default();
                if text.contains("listening on") {
                    break;
                }
                if let Some(status) = member.child.try_wait()? {
                    bail!("tcpdump exited during start-up ({status}): {}", text.trim());
                }
                if Instant::now() > deadline {
                    bail!(
                        "tcpdump not listening after {STARTUP_TIMEOUT:?}: {}",
                        text.trim()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(set)
    }

    /// The summed sample of every member.
    pub fn sample(&self) -> Result<ProcessSample> {
        let mut sum = ProcessSample::default();
        for member in &self.members {
            sum.add(&procfs::sample_process(member.child.id())?);
        }
        Ok(sum)
    }

    /// The whole-life CPU time of every member, summed.
    pub fn cpu(&self) -> Result<Duration> {
        self.members
            .iter()
            .map(|member| procfs::process_cpu(member.child.id()))
            .sum()
    }

    /// SIGINT to every member, waits for all to exit and reads each one's
    /// summary, in the order of `start`'s interfaces.
    pub fn stop(mut self) -> Result<Vec<TcpdumpCounts>> {
        for member in &self.members {
            kill(Pid::from_raw(member.child.id() as i32), Signal::SIGINT)
                .context("sending SIGINT to tcpdump")?;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut counts = Vec::with_capacity(self.members.len());
        for member in &mut self.members {
            let status = loop {
                if let Some(status) = member.child.try_wait()? {
                    break status;
                }
                if Instant::now() > deadline {
                    bail!("tcpdump did not exit within {STOP_TIMEOUT:?} of SIGINT");
                }
                interrupt::check()?;
                std::thread::sleep(Duration::from_millis(10));
            };
            let text = fs::read_to_string(&member.stderr).unwrap_or_default();
            if !status.success() {
                bail!("tcpdump exited with {status}: {}", text.trim());
            }
            counts.push(parse_summary(&text)?);
        }
        Ok(counts)
    }
}

impl Drop for TcpdumpSet {
    /// Members not stopped (error, interrupt) are killed by PID.
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Ok(None) = member.child.try_wait() {
                let _ = member.child.kill();
                let _ = member.child.wait();
            }
        }
    }
}

/// tcpdump's exit summary.
fn parse_summary(text: &str) -> Result<TcpdumpCounts> {
    let count = |suffix: &str| -> Result<u64> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| line.ends_with(suffix))
            .ok_or_else(|| anyhow!("no \"{suffix}\" line in tcpdump's output: {text:?}"))?;
        line.trim_end_matches(suffix)
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?}"))
    };
    Ok(TcpdumpCounts {
        captured: count("packets captured")?,
        dropped: count("packets dropped by kernel")?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_summary;

    #[test]
    fn reads_the_exit_summary() {
        let text = "tcpdump: listening on pcd1-0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
                    12 packets captured\n15 packets received by filter\n3 packets dropped by kernel\n";
        let counts = parse_summary(text).unwrap();
        assert_eq!((counts.captured, counts.dropped), (12, 3));
    }
}
