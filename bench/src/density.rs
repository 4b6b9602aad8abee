//! `podcap-bench density`: what one capture over many pods costs. For each N
//! (10, 30, 60, 110 pods by default) it measures `capture-api --standalone`
//! with one capture selecting all N pods, and in the same run the reference,
//! one `tcpdump -B 1024` per pod: a quiet phase (no traffic: RSS, threads,
//! CPU, ring memory) and a busy phase (10 pods sending 1400-byte frames at a
//! combined 300k pps: captured %, kernel drops, CPU per packet). A last
//! scenario puts one pod at the sender's maximum rate against the service and
//! against `capture-agent capture --ring-size 64MiB`. The report goes to
//! bench/DENSITY.md (see density_report.rs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::{Pid, Uid};

use crate::capturer::{self, RunningCapturer, Tool};
use crate::density_api::Service;
use crate::density_pods::{self, DensityPod, PodSet};
use crate::density_report::{self, BusyResult, MaxResult, QuietResult, Report, ToolRun};
use crate::density_tcpdump::{self, TcpdumpSet};
use crate::measure::{self, sleep_interruptibly, wait_for_quiet, TempDir};
use crate::procfs::{self, ProcessSample};
use crate::scenario::{Rate, Scenario, MATCH_PORT};
use crate::sender;
use crate::{interrupt, netns};

/// Frame size of the busy and max-rate traffic.
const FRAME_SIZE: usize = 1400;
/// Pause between "every target is capturing" and the quiet window, so
/// start-up work (ring set-up, first discovery passes) is not measured as idle.
const SETTLE_AFTER_START: Duration = Duration::from_secs(3);
/// Pause after the sender stops, for the last frames to reach the rings and
/// the capturer to empty them, before CPU and counters are read.
const SETTLE_AFTER_TRAFFIC: Duration = Duration::from_secs(1);
/// How long to wait for a quiet machine before each capturer starts.
const QUIET_MAX_WAIT: Duration = Duration::from_secs(30);
/// How long every target of a capture may take to reach Capturing.
const CAPTURING_TIMEOUT: Duration = Duration::from_secs(90);
/// CPU the capturers are pinned to (the sender and this driver use CPU 0).
pub const CAPTURE_CPU: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum DensityScenario {
    /// N pods, no traffic.
    Quiet,
    /// N pods, `--busy-pods` of them sending.
    Busy,
    /// One pod at the sender's maximum rate: service against the CLI.
    Max,
}

/// The capturers of the quiet and busy phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DensityTool {
    /// `capture-api --standalone`, one capture over all pods.
    Service,
    /// One tcpdump per pod.
    Tcpdump,
}

impl DensityTool {
    pub fn name(self) -> &'static str {
        match self {
            DensityTool::Service => "capture-api (1 capture)",
            DensityTool::Tcpdump => "tcpdump × N",
        }
    }
}

/// Options of `podcap-bench density`.
#[derive(Args, Debug, Clone)]
pub struct DensityArgs {
    /// Where to write the Markdown report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/DENSITY.md"))]
    pub out: PathBuf,
    /// Pod counts to measure (quiet and busy scenarios).
    #[arg(long, value_delimiter = ',', default_values_t = [10_usize, 30, 60, 110])]
    pub pods: Vec<usize>,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_values = ["quiet", "busy", "max"])]
    pub scenarios: Vec<DensityScenario>,
    /// Seconds of the quiet window.
    #[arg(long, default_value_t = 20)]
    pub quiet_seconds: u64,
    /// Seconds of traffic in the busy phase.
    #[arg(long, default_value_t = 10)]
    pub busy_seconds: u64,
    /// Pods that send in the busy phase.
    #[arg(long, default_value_t = 10)]
    pub busy_pods: usize,
    /// Combined packets per second of the busy pods.
    #[arg(long, default_value_t = 300_000)]
    pub busy_rate: u64,
    /// Seconds of traffic in the max-rate scenario.
    #[arg(long, default_value_t = 10)]
    pub max_seconds: u64,
    /// capture-api's --ring-memory.
    #[arg(long, default_value = "512MiB")]
    pub ring_memory: String,
    /// capture-api binary (default: next to this binary, then target/release).
    #[arg(long)]
    pub capture_api: Option<PathBuf>,
    /// capture-agent binary for the max-rate scenario (same default).
    #[arg(long)]
    pub capture_agent: Option<PathBuf>,
}

/// Fixed inputs of every run.
pub struct Setup {
    pub args: DensityArgs,
    pub own_binary: PathBuf,
    pub capture_api: PathBuf,
    pub capture_agent: Option<PathBuf>,
    run_number: u32,
}

/// `podcap-bench density`.
pub fn run(args: &DensityArgs) -> Result<()> {
    ensure!(
        Uid::effective().is_root(),
        "podcap-bench density needs root (network namespaces, veth, tc, packet sockets)"
    );
    ensure!(
        procfs::online_cpus()? >= 2,
        "needs at least 2 CPUs: the sender runs on CPU 0, the capturers on CPU 1"
    );
    ensure!(!args.pods.is_empty(), "--pods is empty");
    ensure!(!args.scenarios.is_empty(), "--scenarios is empty");
    ensure!(
        args.pods.iter().all(|&n| (1..=500).contains(&n)),
        "--pods must be between 1 and 500"
    );
    for seconds in [args.quiet_seconds, args.busy_seconds, args.max_seconds] {
        ensure!(
            (1..=60).contains(&seconds),
            "durations must be 1 to 60 seconds"
        );
    }
    ensure!(args.busy_pods >= 1, "--busy-pods must be at least 1");
    for (program, version_flag) in [
        ("ip", "-V"),
        ("tc", "-V"),
        ("taskset", "--version"),
        ("tcpdump", "--version"),
    ] {
        netns::run(program, &[version_flag])
            .with_context(|| format!("{program} is required (see bench/README.md)"))?;
    }

    interrupt::install()?;
    // The driver only waits and polls; it shares CPU 0 with the sender and
    // leaves CPU 1 to the capturers.
    let mut cpu0 = CpuSet::new();
    cpu0.set(0)?;
    sched_setaffinity(Pid::from_raw(0), &cpu0).context("pinning the driver to CPU 0")?;
    density_pods::remove_leftovers()?;
    measure::remove_leftover_temp_dirs();

    let scenarios: BTreeSet<DensityScenario> = args.scenarios.iter().copied().collect();
    let mut context = Setup {
        args: args.clone(),
        own_binary: std::env::current_exe().context("locating own binary")?,
        capture_api: capturer::find_binary("capture-api", args.capture_api.as_deref())?,
        capture_agent: if scenarios.contains(&DensityScenario::Max) {
            Some(capturer::find_capture_agent(args.capture_agent.as_deref())?)
        } else {
            None
        },
        run_number: 0,
    };
    let mut report = Report::start(&context)?;
    let mut pods = PodSet::default();

    // First, while the set has one pod: nothing else is discovered then.
    if scenarios.contains(&DensityScenario::Max) {
        pods.grow_to(1)?;
        eprintln!("max rate: one pod, service and capture-agent capture");
        report.max = run_max(&mut context, &pods.pods()[0], &mut report.commands);
    }

    let mut counts = args.pods.clone();
    counts.sort_unstable();
    counts.dedup();
    let phases = (
        scenarios.contains(&DensityScenario::Quiet),
        scenarios.contains(&DensityScenario::Busy),
    );
    if phases.0 || phases.1 {
        for (index, &count) in counts.iter().enumerate() {
            let started = Instant::now();
            pods.grow_to(count)?;
            eprintln!(
                "{count} pods ready ({:.1} s to create the new ones)",
                started.elapsed().as_secs_f64()
            );
            // Alternate which capturer goes first, so drift does not always
            // favour the same one.
            let mut order = vec![DensityTool::Service, DensityTool::Tcpdump];
            if index % 2 == 1 {
                order.reverse();
            }
            for tool in order {
                interrupt::check()?;
                let run = run_tool(&mut context, &pods.pods()[..count], tool, phases);
                eprintln!("{}", density_report::progress_line(&run));
                report.runs.push(run);
            }
        }
    }
    interrupt::check()?;
    drop(pods);
    report.finish()?;
    let markdown = density_report::markdown(&report, &context);
    if let Some(dir) = args.out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(&args.out, &markdown)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{markdown}");
    eprintln!("report written to {}", args.out.display());
    Ok(())
}

impl Setup {
    fn temp_dir(&mut self) -> Result<TempDir> {
        self.run_number += 1;
        TempDir::create(self.run_number)
    }

    fn sender_command(&self, netns: &[&str], rate: Rate, seconds: u64) -> Vec<String> {
        sender::command(
            &self.own_binary,
            netns,
            density_pods::DST_ADDR,
            MATCH_PORT,
            &Scenario {
                frame_size: FRAME_SIZE,
                rate,
                match_every: None,
            },
            Duration::from_secs(seconds),
        )
    }
}

/// A capturer under measurement, whichever it is.
trait Measured {
    fn sample(&self) -> Result<ProcessSample>;
    fn cpu(&self) -> Result<Duration>;
}

impl Measured for Service {
    fn sample(&self) -> Result<ProcessSample> {
        procfs::sample_process(self.pid())
    }
    fn cpu(&self) -> Result<Duration> {
        procfs::process_cpu(self.pid())
    }
}

impl Measured for TcpdumpSet {
    fn sample(&self) -> Result<ProcessSample> {
        TcpdumpSet::sample(self)
    }
    fn cpu(&self) -> Result<Duration> {
        TcpdumpSet::cpu(self)
    }
}

/// One capturer over `pods`: start, quiet window, busy window, stop.
fn run_tool(
    context: &mut Setup,
    pods: &[DensityPod],
    tool: DensityTool,
    (quiet, busy): (bool, bool),
) -> ToolRun {
    let mut run = ToolRun {
        tool,
        pods: pods.len(),
        machine_busy_before: None,
        ready_seconds: None,
        quiet: None,
        busy: None,
        thread_names: Vec::new(),
        warnings: Vec::new(),
        error: None,
    };
    let outcome = match tool {
        DensityTool::Service => run_service(context, pods, (quiet, busy), &mut run),
        DensityTool::Tcpdump => run_tcpdumps(context, pods, (quiet, busy), &mut run),
    };
    if let Err(error) = outcome {
        eprintln!("{} pods / {}: FAILED: {error:#}", pods.len(), tool.name());
        run.error = Some(format!("{error:#}"));
    }
    run
}

fn run_service(
    context: &mut Setup,
    pods: &[DensityPod],
    (quiet, busy): (bool, bool),
    run: &mut ToolRun,
) -> Result<()> {
    let dir = context.temp_dir()?;
    run.machine_busy_before = Some(wait_for_quiet(QUIET_MAX_WAIT)?);
    let started = Instant::now();
    let service = Service::start(&context.capture_api, &dir.path, &context.args.ring_memory)?;
    let name = format!("density-{}", pods.len());
    let names: Vec<&str> = pods.iter().map(|p| p.netns.as_str()).collect();
    service.create_capture(&name, &names)?;
    service.wait_capturing(&name, pods.len(), CAPTURING_TIMEOUT)?;
    run.ready_seconds = Some(started.elapsed().as_secs_f64());
    sleep_interruptibly(SETTLE_AFTER_START)?;

    if quiet {
        run.quiet = Some(quiet_window(&service, context.args.quiet_seconds)?);
        run.thread_names = procfs::thread_names(service.pid());
    }
    let result = if busy {
        let busy_pods = &pods[..context.args.busy_pods.min(pods.len())];
        let before = service.status(&name)?;
        let mut window = busy_window(context, &service, pods, busy_pods)?;
        let after = service.stop_capture(&name)?;
        let busy_names: BTreeSet<&str> = busy_pods.iter().map(|p| p.netns.as_str()).collect();
        let sum = |status: &capture_spec::status::CaptureStatus, busy: bool| {
            status
                .targets
                .iter()
                .filter(|t| busy_names.contains(t.pod.as_str()) == busy)
                .fold((0_u64, 0_u64), |(p, d), t| (p + t.packets, d + t.drops))
        };
        let (p0, d0) = sum(&before, true);
        let (p1, d1) = sum(&after, true);
        window.captured = p1.saturating_sub(p0);
        window.kernel_drops = d1.saturating_sub(d0);
        window.captured_on_quiet_pods = sum(&after, false).0;
        Some(window)
    } else {
        service.stop_capture(&name)?;
        None
    };
    run.busy = result;
    run.warnings = service.warnings();
    service.shut_down()?;
    drop(dir);
    Ok(())
}

fn run_tcpdumps(
    context: &mut Setup,
    pods: &[DensityPod],
    (quiet, busy): (bool, bool),
    run: &mut ToolRun,
) -> Result<()> {
    let dir = context.temp_dir()?;
    run.machine_busy_before = Some(wait_for_quiet(QUIET_MAX_WAIT)?);
    let started = Instant::now();
    let interfaces: Vec<&str> = pods.iter().map(|p| p.host_link.as_str()).collect();
    let set = TcpdumpSet::start(&interfaces, &dir.path)?;
    run.ready_seconds = Some(started.elapsed().as_secs_f64());
    sleep_interruptibly(SETTLE_AFTER_START)?;

    if quiet {
        run.quiet = Some(quiet_window(&set, context.args.quiet_seconds)?);
    }
    let busy_count = context.args.busy_pods.min(pods.len());
    let mut window = if busy {
        Some(busy_window(context, &set, pods, &pods[..busy_count])?)
    } else {
        None
    };
    let counts = set.stop()?;
    if let Some(window) = &mut window {
        for (i, count) in counts.iter().enumerate() {
            if i < busy_count {
                window.captured += count.captured;
                window.kernel_drops += count.dropped;
            } else {
                window.captured_on_quiet_pods += count.captured;
            }
        }
    }
    run.busy = window;
    drop(dir);
    Ok(())
}

/// The quiet window: samples before and after, nothing sent.
fn quiet_window(capturer: &dyn Measured, seconds: u64) -> Result<QuietResult> {
    let window = Duration::from_secs(seconds);
    let first = capturer.sample()?;
    let core_before = procfs::cpu_ticks(Some(CAPTURE_CPU))?;
    let started = Instant::now();
    sleep_interruptibly(window)?;
    let last = capturer.sample()?;
    let elapsed = started.elapsed();
    let core_busy = procfs::cpu_ticks(Some(CAPTURE_CPU))?.busy_time_since(&core_before)?;
    let cpu = last.cpu.saturating_sub(first.cpu);
    Ok(QuietResult {
        cpu_percent: 100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        other_load_percent: 100.0 * core_busy.saturating_sub(cpu).as_secs_f64()
            / elapsed.as_secs_f64(),
        sample: last,
    })
}

/// The busy window: `senders` send at the combined busy rate; counters of
/// every pod's host end and the capturer's CPU around it. The captured and
/// dropped counts are filled in by the caller once the capturer has stopped.
fn busy_window(
    context: &Setup,
    capturer: &dyn Measured,
    pods: &[DensityPod],
    senders: &[DensityPod],
) -> Result<BusyResult> {
    let netns: Vec<&str> = senders.iter().map(|p| p.netns.as_str()).collect();
    let command = context.sender_command(
        &netns,
        Rate::PacketsPerSecond(context.args.busy_rate),
        context.args.busy_seconds,
    );
    let rx_before = rx_packets(pods)?;
    let cpu_before = capturer.cpu()?;
    let core_before = procfs::cpu_ticks(Some(CAPTURE_CPU))?;
    let started = Instant::now();
    let sender = measure::run_sender(&command, Duration::from_secs(context.args.busy_seconds))?;
    sleep_interruptibly(SETTLE_AFTER_TRAFFIC)?;
    let elapsed = started.elapsed();
    let cpu = capturer.cpu()?.saturating_sub(cpu_before);
    let core_busy = procfs::cpu_ticks(Some(CAPTURE_CPU))?.busy_time_since(&core_before)?;
    let sample = capturer.sample()?;
    let rx_after = rx_packets(pods)?;
    let deltas: Vec<u64> = rx_after
        .iter()
        .zip(&rx_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    Ok(BusyResult {
        offered: deltas[..senders.len()].iter().sum(),
        offered_on_quiet_pods: deltas[senders.len()..].iter().sum(),
        sender,
        cpu,
        window_seconds: elapsed.as_secs_f64(),
        other_load_percent: 100.0 * core_busy.saturating_sub(cpu).as_secs_f64()
            / elapsed.as_secs_f64(),
        sample,
        captured: 0,
        kernel_drops: 0,
        captured_on_quiet_pods: 0,
    })
}

fn rx_packets(pods: &[DensityPod]) -> Result<Vec<u64>> {
    pods.iter().map(|p| p.host_counter("rx_packets")).collect()
}

/// One pod at the sender's maximum: the service, then the CLI.
fn run_max(
    context: &mut Setup,
    pod: &DensityPod,
    commands: &mut Vec<(String, String)>,
) -> Vec<MaxResult> {
    let mut results = Vec::new();
    for cli in [false, true] {
        let tool = if cli {
            "capture-agent capture (CLI)"
        } else {
            "capture-api (service)"
        };
        let outcome = if cli {
            max_cli(context, pod, commands)
        } else {
            max_service(context, pod)
        };
        let result = match outcome {
            Ok(mut result) => {
                result.tool = tool.to_string();
                result
            }
            Err(error) => {
                eprintln!("max rate / {tool}: FAILED: {error:#}");
                MaxResult {
                    tool: tool.to_string(),
                    error: Some(format!("{error:#}")),
                    ..MaxResult::default()
                }
            }
        };
        eprintln!("{}", density_report::max_progress_line(&result));
        results.push(result);
    }
    results
}

/// Sends at max rate from `pod` around a capturer that is already capturing;
/// fills in the traffic, the capturer's CPU and the other load on its CPU.
fn max_traffic(
    context: &Setup,
    pod: &DensityPod,
    cpu_of: &dyn Fn() -> Result<Duration>,
) -> Result<MaxResult> {
    let command =
        context.sender_command(&[pod.netns.as_str()], Rate::Max, context.args.max_seconds);
    let rx_before = pod.host_counter("rx_packets")?;
    let cpu_before = cpu_of()?;
    let core_before = procfs::cpu_ticks(Some(CAPTURE_CPU))?;
    let started = Instant::now();
    let sender = measure::run_sender(&command, Duration::from_secs(context.args.max_seconds))?;
    sleep_interruptibly(SETTLE_AFTER_TRAFFIC)?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_of()?.saturating_sub(cpu_before);
    let core_busy = procfs::cpu_ticks(Some(CAPTURE_CPU))?.busy_time_since(&core_before)?;
    Ok(MaxResult {
        sender,
        offered: pod.host_counter("rx_packets")? - rx_before,
        cpu,
        seconds,
        other_load_percent: 100.0 * core_busy.saturating_sub(cpu).as_secs_f64() / seconds,
        ..MaxResult::default()
    })
}

fn max_service(context: &mut Setup, pod: &DensityPod) -> Result<MaxResult> {
    let dir = context.temp_dir()?;
    let machine_busy_before = wait_for_quiet(QUIET_MAX_WAIT)?;
    let service = Service::start(&context.capture_api, &dir.path, &context.args.ring_memory)?;
    let name = "density-max";
    service.create_capture(name, &[pod.netns.as_str()])?;
    service.wait_capturing(name, 1, CAPTURING_TIMEOUT)?;
    sleep_interruptibly(SETTLE_AFTER_START)?;
    let before = service.status(name)?.totals();
    let pid = service.pid();
    let traffic = max_traffic(context, pod, &|| procfs::process_cpu(pid))?;
    let sample = procfs::sample_process(pid)?;
    let after = service.stop_capture(name)?.totals();
    let warnings = service.warnings();
    service.shut_down()?;
    drop(dir);
    Ok(MaxResult {
        captured: after.packets.saturating_sub(before.packets),
        kernel_drops: after.drops.saturating_sub(before.drops),
        sample,
        machine_busy_before,
        warnings,
        ..traffic
    })
}

fn max_cli(
    context: &mut Setup,
    pod: &DensityPod,
    commands: &mut Vec<(String, String)>,
) -> Result<MaxResult> {
    let agent = context
        .capture_agent
        .clone()
        .context("capture-agent binary not found")?;
    let dir = context.temp_dir()?;
    let file = dir.path.join("cli.pcapng");
    let command_line = cli_command(&agent, &pod.host_link, &file.display().to_string());
    commands.push((
        "max rate, CLI".to_string(),
        cli_command(&agent, "HOSTVETH", "FILE").join(" "),
    ));
    let machine_busy_before = wait_for_quiet(QUIET_MAX_WAIT)?;
    let mut capture = RunningCapturer::spawn(Tool::Podcap, &command_line)?;
    capture.wait_until_ready()?;
    sleep_interruptibly(SETTLE_AFTER_START)?;
    let pid = capture.pid();
    let traffic = max_traffic(context, pod, &|| procfs::process_cpu(pid))?;
    let sample = procfs::sample_process(pid)?;
    let stopped = capture.stop()?;
    drop(dir);
    Ok(MaxResult {
        captured: stopped.counts.captured,
        kernel_drops: stopped.counts.kernel_drops,
        sample,
        machine_busy_before,
        ..traffic
    })
}

/// `capture-agent capture` as the max-rate reference, pinned like the service.
pub fn cli_command(agent: &Path, interface: &str, file: &str) -> Vec<String> {
    vec![
        "taskset".into(),
        "-c".into(),
        CAPTURE_CPU.to_string(),
        agent.display().to_string(),
        "capture".into(),
        "--interface".into(),
        interface.into(),
        "--output".into(),
        file.into(),
        "--ring-size".into(),
        capturer::PODCAP_RING_SIZE.into(),
        "--json".into(),
    ]
}

/// The tcpdump command line as the report shows it.
pub fn tcpdump_command() -> String {
    density_tcpdump::command_line("HOSTVETH", "FILE").join(" ")
}
