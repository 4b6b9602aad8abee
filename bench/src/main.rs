//! podcap-bench: measures podcap's `capture-agent` against tcpdump on the same
//! veth, with the same traffic, in the same run, and writes the results as a
//! Markdown table. `run` (the default) builds a throw-away pod network, drives
//! every scenario and writes the report; `send` is the traffic generator that
//! `run` starts as a separate, CPU-pinned process inside the pod's namespace.
//! `merge` benchmarks merging capture files against mergecap (no root), with
//! `merge-worker` and `merge-measure` as its child processes. `density`
//! measures `capture-api --standalone` with one capture over 10 to 110 pods
//! against one tcpdump per pod, quiet and busy, and writes bench/DENSITY.md.

#![forbid(unsafe_code)]

mod capturer;
mod cluster;
mod density;
mod density_api;
mod density_pods;
mod density_report;
mod density_tcpdump;
mod interrupt;
mod measure;
mod merge;
mod merge_input;
mod merge_report;
mod merge_worker;
mod netns;
mod procfs;
mod report;
mod scenario;
mod sender;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "podcap-bench",
    about = "Benchmark podcap's capture-agent against tcpdump on a veth (needs root)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Options for `run` when no subcommand is given.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run all scenarios and write the report (the default).
    Run(RunArgs),
    /// Send UDP traffic from inside a network namespace (started by `run`).
    Send(sender::SendArgs),
    /// One capture over N pods (capture-api --standalone) against one tcpdump
    /// per pod, quiet and busy, and one pod at max rate; writes bench/DENSITY.md.
    Density(density::DensityArgs),
    /// One capture across N simulated nodes against the real test kube-apiserver: object
    /// size, writes, failed writes and the API's GET latency (see bench/CLUSTER.md).
    Cluster(cluster::ClusterArgs),
    /// Benchmark merging capture files against mergecap and write bench/MERGE.md.
    Merge(merge::MergeArgs),
    /// Merge files with podcap's library (started by `merge`).
    #[command(hide = true)]
    MergeWorker(merge_worker::WorkerArgs),
    /// Run a command and print its wall time, CPU time and peak RSS (started by `merge`).
    #[command(hide = true)]
    MergeMeasure(merge_worker::MeasureArgs),
}

/// Options of the benchmark run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Short runs (1.5 s of traffic, one repetition per tool) for a smoke test.
    #[arg(long)]
    pub quick: bool,

    /// Where to write the Markdown report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md"))]
    pub output: PathBuf,

    /// Capturers to compare, in the order of the first repetition.
    #[arg(long, value_delimiter = ',', default_values = ["tcpdump", "podcap"])]
    pub tools: Vec<capturer::Tool>,

    /// Path of podcap's capture-agent binary; by default it is looked up next to
    /// this binary and then in the workspace's target/release.
    #[arg(long)]
    pub capture_agent: Option<PathBuf>,

    /// Only run scenarios whose name contains one of these strings.
    #[arg(long = "scenario")]
    pub scenario_filters: Vec<String>,

    /// Repetitions per scenario and tool (default: 2, or 1 with --quick).
    #[arg(long)]
    pub repetitions: Option<u32>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // The sender must enter its namespace before anything else happens in
        // the process, so it is dispatched before any set-up of `run`.
        Some(Command::Send(args)) => sender::run(&args),
        Some(Command::Run(args)) => measure::run_benchmark(&args),
        Some(Command::Density(args)) => density::run(&args),
        Some(Command::Cluster(args)) => cluster::run(&args),
        Some(Command::Merge(args)) => merge::run_merge_benchmark(&args),
        Some(Command::MergeWorker(args)) => merge_worker::run_worker(&args),
        Some(Command::MergeMeasure(args)) => merge_worker::run_measure(&args),
        None => measure::run_benchmark(&cli.run),
    }
}
