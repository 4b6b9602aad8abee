//! `podcap-bench merge`: podcap's streaming merge against Wireshark's `mergecap` on the same
//! files, alternating between the two. For each scenario (8 files of 64 MiB or 256 MiB, of
//! 1400-byte or 100-byte frames, interleaved in time) it generates the inputs, runs each tool
//! five times into a file on the same filesystem, checks the merged files hold every packet,
//! and writes the figures to `bench/MERGE.md`. Needs mergecap and capinfos; no root.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;

use crate::merge_input::{self, InputSet};
use crate::merge_report;
use crate::merge_worker::{self, Measurement, WorkerReport};
use crate::{interrupt, netns, procfs};

const MIB: u64 = 1 << 20;
/// Working directories are `DIR/podcap-bench-<pid>-merge`, so the capture benchmark's clean-up
/// of dead runs' directories covers them too.
const WORK_DIR_PREFIX: &str = "podcap-bench-";
/// A run starts once the whole machine was at most this busy over a sample (on 2 CPUs, other
/// work would share the merging core)...
const QUIET_BUSY_PERCENT: f64 = 10.0;
const QUIET_SAMPLE: Duration = Duration::from_millis(500);
/// ...or after this long, and the report shows how busy it was.
const QUIET_MAX_WAIT: Duration = Duration::from_secs(60);

/// Options of `podcap-bench merge`.
#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// Small inputs (8 x 8 MiB and 8 x 32 MiB) and one repetition, for a smoke test.
    #[arg(long)]
    pub quick: bool,

    /// Where to write the Markdown report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/MERGE.md"))]
    pub output: PathBuf,

    /// Directory for the inputs and the merged files (one filesystem for both).
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,

    /// Runs per scenario and tool (default: 5, or 1 with --quick).
    #[arg(long)]
    pub repetitions: Option<u32>,

    /// Input files per scenario.
    #[arg(long, default_value_t = 8)]
    pub files: usize,
}

/// The two mergers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTool {
    Mergecap,
    Podcap,
}

impl MergeTool {
    pub fn name(self) -> &'static str {
        match self {
            MergeTool::Mergecap => "mergecap",
            MergeTool::Podcap => "podcap",
        }
    }
}

/// One set of inputs.
#[derive(Debug, Clone, Copy)]
pub struct MergeScenario {
    pub files: usize,
    pub bytes_per_file: u64,
    pub frame_len: usize,
}

impl MergeScenario {
    pub fn input_label(&self) -> String {
        format!("{} x {} MiB", self.files, self.bytes_per_file / MIB)
    }
}

/// One run of one tool on one scenario.
pub struct MergeRun {
    pub scenario: MergeScenario,
    pub input_bytes: u64,
    pub tool: MergeTool,
    pub repetition: u32,
    /// How busy the machine was just before the run, in percent.
    pub busy_before_percent: f64,
    pub measurement: Measurement,
    pub output_bytes: u64,
}

impl MergeRun {
    /// Input bytes merged per second, in MB (10^6 bytes).
    pub fn megabytes_per_second(&self) -> f64 {
        self.input_bytes as f64 / 1e6 / self.measurement.wall_seconds
    }
}

/// The working directory, deleted when the benchmark ends or fails.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(parent: &Path) -> Result<WorkDir> {
        remove_leftovers(parent);
        let path = parent.join(format!("{WORK_DIR_PREFIX}{}-merge", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {error}", self.path.display());
        }
    }
}

/// Removes working directories of merge benchmarks that were killed.
fn remove_leftovers(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_suffix("-merge") else {
            continue;
        };
        if netns::owner_is_gone(owner, WORK_DIR_PREFIX) && entry.path().is_dir() {
            eprintln!("removing leftover directory {}", entry.path().display());
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn scenarios(args: &MergeArgs) -> Vec<MergeScenario> {
    let (small, large) = if args.quick {
        (8 * MIB, 32 * MIB)
    } else {
        (64 * MIB, 256 * MIB)
    };
    let mut all = Vec::new();
    for frame_len in [1400, 100] {
        for bytes_per_file in [small, large] {
            all.push(MergeScenario {
                files: args.files,
                bytes_per_file,
                frame_len,
            });
        }
    }
    all
}

/// The packet count capinfos reads from a merged file.
fn capinfos_packets(file: &Path) -> Result<u64> {
    let text = netns::output("capinfos", &["-c", "-M", &file.display().to_string()])?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Number of packets:"))
        .and_then(|count| count.trim().parse().ok())
        .with_context(|| format!("no packet count in capinfos output: {text}"))
}

fn command_line(
    tool: MergeTool,
    own_binary: &Path,
    inputs: &InputSet,
    output: &Path,
) -> (String, Vec<String>) {
    let files = inputs.files.iter().map(|f| f.display().to_string());
    let output = output.display().to_string();
    match tool {
        MergeTool::Mergecap => {
            let args = ["-w".to_string(), output, "-F".into(), "pcapng".into()];
            ("mergecap".into(), args.into_iter().chain(files).collect())
        }
        MergeTool::Podcap => {
            let args = ["merge-worker".to_string(), "--output".into(), output];
            (
                own_binary.display().to_string(),
                args.into_iter().chain(files).collect(),
            )
        }
    }
}

/// Waits until the machine is quiet (or gives up); returns how busy it was, in percent.
fn wait_for_quiet() -> Result<f64> {
    let started = Instant::now();
    loop {
        interrupt::check()?;
        let before = procfs::cpu_ticks(None)?;
        sleep(QUIET_SAMPLE);
        let busy = procfs::cpu_ticks(None)?.busy_percent_since(&before);
        if busy <= QUIET_BUSY_PERCENT || started.elapsed() >= QUIET_MAX_WAIT {
            return Ok(busy);
        }
    }
}

/// Touches and frees memory a bit larger than the output, just before a run.
///
/// Why: this benchmark's VM hands memory that stays free for a few seconds back to its host
/// (free page reporting), and the page cache then faults every page of a new file back in,
/// which adds a random share of system time to either tool (seen for the same 2 GiB merge:
/// podcap 1.3 to 4.5 s, mergecap 1.5 to 2.4 s of system time). Freed just before the run,
/// these pages are still backed when the run's page cache takes them, as memory is on a
/// long-running node. Anonymous memory, not a scratch file: a file would add gigabytes of
/// dirty pages and set off writeback during the run.
fn warm_memory(bytes: u64) {
    let len = usize::try_from(bytes + bytes / 4).unwrap_or(usize::MAX);
    let touched = vec![1u8; len];
    std::hint::black_box(&touched);
}

/// Runs one tool once: returns what was measured, the output's size and how busy the machine
/// was before. With `verify`, checks the merged file holds every packet.
fn run_once(
    tool: MergeTool,
    own_binary: &Path,
    inputs: &InputSet,
    work: &Path,
    verify: bool,
) -> Result<(Measurement, u64, f64)> {
    let output = work.join(format!("merged-{}.pcapng", tool.name()));
    let _ = fs::remove_file(&output);
    // Earlier runs' dirty pages are written back now, not during this run.
    nix::unistd::sync();
    let busy = wait_for_quiet()?;
    warm_memory(inputs.total_bytes);
    let (program, args) = command_line(tool, own_binary, inputs, &output);
    let measurement = merge_worker::measure(own_binary, &program, &args)?;
    let output_bytes = fs::metadata(&output)
        .with_context(|| format!("{} wrote no file", tool.name()))?
        .len();
    if verify {
        let counted = capinfos_packets(&output)?;
        ensure!(
            counted == inputs.packets,
            "{}'s merge has {counted} packets, the inputs {}",
            tool.name(),
            inputs.packets
        );
        if tool == MergeTool::Podcap {
            let report: WorkerReport = serde_json::from_str(measurement.stdout.trim())
                .context("parsing merge-worker's report")?;
            ensure!(
                report.packets == inputs.packets,
                "merge-worker reports {} packets",
                report.packets
            );
        }
    }
    fs::remove_file(&output).with_context(|| format!("removing {}", output.display()))?;
    Ok((measurement, output_bytes, busy))
}

/// `podcap-bench merge`.
pub fn run_merge_benchmark(args: &MergeArgs) -> Result<()> {
    interrupt::install()?;
    for (program, flag) in [("mergecap", "-v"), ("capinfos", "-v")] {
        netns::run(program, &[flag])
            .with_context(|| format!("{program} is required (Debian package wireshark-common)"))?;
    }
    let own_binary = std::env::current_exe().context("locating own binary")?;
    let repetitions = args.repetitions.unwrap_or(if args.quick { 1 } else { 5 });
    let work = WorkDir::create(&args.dir)?;
    let facts = merge_report::Facts::collect(&work.path)?;
    let mut runs = Vec::new();
    for scenario in scenarios(args) {
        interrupt::check()?;
        eprintln!(
            "generating {} of {} B frames in {}",
            scenario.input_label(),
            scenario.frame_len,
            work.path.display()
        );
        let inputs = merge_input::generate(
            &work.path,
            scenario.files,
            scenario.bytes_per_file,
            scenario.frame_len,
        )?;
        for repetition in 1..=repetitions {
            // Alternate which tool goes first, so drift does not always favour the same one.
            let mut order = [MergeTool::Mergecap, MergeTool::Podcap];
            if repetition % 2 == 0 {
                order.reverse();
            }
            for tool in order {
                let (measurement, output_bytes, busy) =
                    run_once(tool, &own_binary, &inputs, &work.path, repetition == 1)?;
                let run = MergeRun {
                    scenario,
                    input_bytes: inputs.total_bytes,
                    tool,
                    repetition,
                    busy_before_percent: busy,
                    measurement,
                    output_bytes,
                };
                eprintln!("{}", merge_report::progress_line(&run));
                runs.push(run);
            }
        }
        for file in &inputs.files {
            fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    let report = merge_report::render(&facts, args, repetitions, &runs);
    fs::write(&args.output, &report)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("{report}");
    eprintln!("report written to {}", args.output.display());
    Ok(())
}
