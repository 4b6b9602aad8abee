//! The child processes of the merge benchmark. `merge-worker` merges files with podcap's
//! library, as the API's merged download does; `merge-measure` runs one command (mergecap or
//! `merge-worker`) and reports its wall time, CPU time and peak RSS from getrusage. The
//! measuring process is fresh each run and reaps exactly one child, so the figures are that
//! run's alone, taken the same way for both tools.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use capture_agent::merge::{merge, MergeInput};
use capture_spec::OutputFormat;
use clap::Args;
use nix::sys::resource::{getrusage, UsageWho};
use serde::{Deserialize, Serialize};

/// Marks the line of `merge-measure`'s stdout that holds its measurement.
const MEASUREMENT_PREFIX: &str = "podcap-bench-measurement ";

/// Options of `merge-worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The merged pcapng file to write.
    #[arg(long)]
    pub output: PathBuf,
    /// Files to merge, one input each.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// What `merge-worker` prints: the library's report.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    pub packets: u64,
    pub bytes_written: u64,
    pub peak_buffer_bytes: usize,
}

/// `podcap-bench merge-worker`.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    let inputs = args
        .inputs
        .iter()
        .map(|path| {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            Ok(MergeInput::new(path.display().to_string(), file))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let report = merge(inputs, OutputFormat::Pcapng, &mut out)?;
    ensure!(
        report.truncated_inputs.is_empty(),
        "truncated inputs: {:?}",
        report.truncated_inputs
    );
    let report = WorkerReport {
        packets: report.packets,
        bytes_written: report.bytes_written,
        peak_buffer_bytes: report.peak_buffer_bytes,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Options of `merge-measure`.
#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

/// One run of one command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub wall_seconds: f64,
    pub user_seconds: f64,
    pub system_seconds: f64,
    pub peak_rss_kib: u64,
    /// The command's stdout (merge-worker's report).
    #[serde(default)]
    pub stdout: String,
}

fn seconds(tv: nix::sys::time::TimeVal) -> f64 {
    tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6
}

/// `podcap-bench merge-measure -- PROGRAM ARGS...`.
pub fn run_measure(args: &MeasureArgs) -> Result<()> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("merge-measure needs a command");
    };
    let started = Instant::now();
    let output = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {program}"))?;
    let wall = started.elapsed();
    ensure!(
        output.status.success(),
        "{program} failed: {}",
        output.status
    );
    // This process has reaped exactly one child: its totals are that child's.
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let measurement = Measurement {
        wall_seconds: wall.as_secs_f64(),
        user_seconds: seconds(usage.user_time()),
        system_seconds: seconds(usage.system_time()),
        peak_rss_kib: usage.max_rss() as u64,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    };
    println!(
        "{MEASUREMENT_PREFIX}{}",
        serde_json::to_string(&measurement)?
    );
    Ok(())
}

/// Runs `program args` under a fresh `merge-measure` process and returns what it measured.
pub fn measure(own_binary: &Path, program: &str, args: &[String]) -> Result<Measurement> {
    let output = Command::new(own_binary)
        .arg("merge-measure")
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {} merge-measure", own_binary.display()))?;
    ensure!(
        output.status.success(),
        "measuring {program} failed: {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(MEASUREMENT_PREFIX))
        .with_context(|| format!("no measurement in merge-measure's output: {stdout}"))?;
    serde_json::from_str(line).context("parsing merge-measure's measurement")
}
