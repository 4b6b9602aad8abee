//! The benchmark driver: checks the machine, builds the pod, runs every
//! scenario with each capturer in turn, measures each run from the kernel's
//! and the capturer's own counters, and hands the results to the report.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::{Pid, Uid};

use crate::capturer::{self, CaptureTarget, RunningCapturer, Tool};
use crate::netns::{self, Pod};
use crate::report::{self, MachineFacts, RunRecord, RunResult};
use crate::scenario::{self, Scenario, MATCH_PORT};
use crate::sender::{self, SenderReport};
use crate::{interrupt, procfs, RunArgs};

/// Sender time per run.
const FULL_DURATION: Duration = Duration::from_secs(4);
const QUICK_DURATION: Duration = Duration::from_millis(1500);
/// Pause after the capturer is ready before traffic starts (lets it settle),
/// and after the sender stops before SIGINT (lets the last frames reach the ring).
const SETTLE: Duration = Duration::from_millis(300);
/// Temp directories are `/tmp/podcap-bench-<pid>-<n>`.
const TEMP_DIR_PREFIX: &str = "podcap-bench-";
/// The sender is killed if it has not finished this long after its duration.
const SENDER_GRACE: Duration = Duration::from_secs(10);
/// The CPU the capturers are pinned to (see `capturer::command_line`).
const CAPTURE_CPU: usize = 1;
/// Before each run the machine must be at most this busy (other people's
/// compiles on a 2-core machine would otherwise share the capturer's core)...
pub const QUIET_BUSY_PERCENT: f64 = 10.0;
const QUIET_SAMPLE: Duration = Duration::from_millis(500);
/// ...but the benchmark waits at most this long for that, then runs anyway
/// and the report shows how busy the machine was.
const QUIET_MAX_WAIT: Duration = Duration::from_secs(120);
const QUIET_MAX_WAIT_QUICK: Duration = Duration::from_secs(20);
/// A run during which other work took more than this share of the capturer's
/// core is repeated, up to `MAX_ATTEMPTS` attempts in all.
pub const DISTURBED_PERCENT: f64 = 10.0;
pub const MAX_ATTEMPTS: u32 = 3;

/// Fixed inputs of every run.
struct Bench<'a> {
    pod: &'a Pod,
    own_binary: PathBuf,
    capture_agent: PathBuf,
    duration: Duration,
    quiet_max_wait: Duration,
}

/// `podcap-bench run`.
pub fn run_benchmark(args: &RunArgs) -> Result<()> {
    ensure!(
        Uid::effective().is_root(),
        "podcap-bench needs root (network namespaces, veth, tc, packet sockets)"
    );
    let cpus = procfs::online_cpus()?;
    ensure!(
        cpus >= 2,
        "needs at least 2 CPUs: the sender runs on CPU 0, the capturer on CPU 1"
    );
    for (program, version_flag) in [
        ("ip", "-V"),
        ("tc", "-V"),
        ("taskset", "--version"),
        ("tcpdump", "--version"),
        ("capinfos", "--version"),
    ] {
        netns::run(program, &[version_flag])
            .with_context(|| format!("{program} is required (see bench/README.md)"))?;
    }
    ensure!(!args.tools.is_empty(), "--tools is empty");

    interrupt::install()?;
    // The driver only waits and polls; keeping it on the sender's core leaves
    // CPU 1 to the capturer alone.
    let mut cpu0 = CpuSet::new();
    cpu0.set(0)?;
    sched_setaffinity(Pid::from_raw(0), &cpu0).context("pinning the driver to CPU 0")?;

    netns::remove_leftovers()?;
    remove_leftover_temp_dirs();

    let capture_agent = if args.tools.contains(&Tool::Podcap) {
        let path = capturer::find_capture_agent(args.capture_agent.as_deref())?;
        netns::run(&path.display().to_string(), &["capture", "--help"])
            .context("capture-agent has no working `capture` subcommand yet")?;
        path
    } else {
        PathBuf::from("capture-agent")
    };

    let quick = args.quick;
    let duration = if quick { QUICK_DURATION } else { FULL_DURATION };
    let repetitions = args.repetitions.unwrap_or(if quick { 1 } else { 2 });
    let scenarios: Vec<Scenario> = scenario::all()
        .into_iter()
        .filter(|s| {
            args.scenario_filters.is_empty()
                || args
                    .scenario_filters
                    .iter()
                    .any(|f| s.name().contains(f.as_str()))
        })
        .collect();
    ensure!(!scenarios.is_empty(), "no scenario matches --scenario");

    let mut machine = MachineFacts::collect(&args.tools, &capture_agent)?;
    let pod = Pod::create()?;
    let context = Bench {
        pod: &pod,
        own_binary: std::env::current_exe().context("locating own binary")?,
        capture_agent,
        duration,
        quiet_max_wait: if quick {
            QUIET_MAX_WAIT_QUICK
        } else {
            QUIET_MAX_WAIT
        },
    };
    eprintln!(
        "pod: netns {} with {}, host end {}; {} scenario(s) x {} tool(s) x {repetitions}, {:?} of traffic each",
        pod.netns, netns::POD_LINK, pod.host_link, scenarios.len(), args.tools.len(), duration
    );

    let mut records = Vec::new();
    let mut run_number = 0;
    for scenario in &scenarios {
        for repetition in 1..=repetitions {
            // Alternate which tool goes first, so slow drift (page cache,
            // thermal, other load) does not always favour the same one.
            let mut order = args.tools.clone();
            if repetition % 2 == 0 {
                order.reverse();
            }
            for tool in order {
                interrupt::check()?;
                run_number += 1;
                // The written file is counted independently once per scenario and tool.
                let verify_file = repetition == 1;
                let capture_cmd = capturer::command_line(
                    tool,
                    &CaptureTarget {
                        interface: &pod.host_link,
                        output_file: Path::new("FILE"),
                        filter_port: scenario.match_every.map(|_| MATCH_PORT),
                        capture_agent: &context.capture_agent,
                    },
                );
                let mut repeats = 0;
                let outcome = loop {
                    run_number += 1;
                    let outcome = run_once(&context, scenario, tool, run_number, verify_file);
                    interrupt::check()?;
                    match &outcome {
                        Ok(result)
                            if result.other_load_percent() > DISTURBED_PERCENT
                                && repeats + 1 < MAX_ATTEMPTS =>
                        {
                            eprintln!(
                                "{} / {} #{repetition}: disturbed ({:.0}% of CPU {CAPTURE_CPU} used by other work), repeating",
                                scenario.name(),
                                tool.name(),
                                result.other_load_percent()
                            );
                            repeats += 1;
                        }
                        _ => break outcome,
                    }
                };
                if let Err(error) = &outcome {
                    eprintln!(
                        "{} / {} #{repetition}: FAILED: {error:#}",
                        scenario.name(),
                        tool.name()
                    );
                }
                let record = RunRecord {
                    scenario: scenario.clone(),
                    tool,
                    repetition,
                    repeats,
                    capture_command: capture_cmd.join(" "),
                    outcome: outcome.map_err(|error| format!("{error:#}")),
                };
                if let Ok(result) = &record.outcome {
                    eprintln!("{}", report::progress_line(&record, result));
                }
                records.push(record);
            }
        }
    }
    machine.finish()?;

    let sender_example = sender::command(
        &context.own_binary,
        &[pod.netns.as_str()],
        netns::HOST_ADDR.parse()?,
        MATCH_PORT,
        &Scenario {
            frame_size: 64,
            rate: scenario::Rate::Max,
            match_every: None,
        },
        duration,
    );
    let markdown = report::markdown(
        &machine,
        args,
        duration,
        repetitions,
        &records,
        &sender_example.join(" "),
    );
    drop(pod);
    if let Some(dir) = args.output.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    fs::write(&args.output, &markdown)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("{markdown}");
    eprintln!("report written to {}", args.output.display());
    Ok(())
}

/// One capture of one scenario by one tool.
fn run_once(
    context: &Bench<'_>,
    scenario: &Scenario,
    tool: Tool,
    run_number: u32,
    verify_file: bool,
) -> Result<RunResult> {
    let temp_dir = TempDir::create(run_number)?;
    // capture-agent writes pcapng by default, tcpdump pcap.
    let extension = match tool {
        Tool::Tcpdump => "pcap",
        Tool::Podcap => "pcapng",
    };
    let file = temp_dir.path.join(format!("{}.{extension}", tool.name()));
    let capture_cmd = capturer::command_line(
        tool,
        &CaptureTarget {
            interface: &context.pod.host_link,
            output_file: &file,
            filter_port: scenario.match_every.map(|_| MATCH_PORT),
            capture_agent: &context.capture_agent,
        },
    );
    let sender_cmd = sender::command(
        &context.own_binary,
        &[context.pod.netns.as_str()],
        netns::HOST_ADDR.parse()?,
        MATCH_PORT,
        scenario,
        context.duration,
    );

    let machine_busy_before = wait_for_quiet(context.quiet_max_wait)?;
    let mut capture = RunningCapturer::spawn(tool, &capture_cmd)?;
    capture.wait_until_ready()?;
    sleep_interruptibly(SETTLE)?;

    let rx_before = context.pod.host_counter("rx_packets")?;
    let rx_dropped_before = context.pod.host_counter("rx_dropped")?;
    let capturer_cpu_before = procfs::process_cpu(capture.pid())?;
    let capture_core_before = procfs::cpu_ticks(Some(CAPTURE_CPU))?;
    let sender = run_sender(&sender_cmd, context.duration)?;
    let capturer_cpu_during =
        procfs::process_cpu(capture.pid())?.saturating_sub(capturer_cpu_before);
    // Whatever else ran on the capturer's core meanwhile took CPU from it.
    let capture_core_busy =
        procfs::cpu_ticks(Some(CAPTURE_CPU))?.busy_time_since(&capture_core_before)?;
    let other_load_on_capture_core = capture_core_busy.saturating_sub(capturer_cpu_during);
    sleep_interruptibly(SETTLE)?;
    let offered = context.pod.host_counter("rx_packets")? - rx_before;
    let veth_drops = context.pod.host_counter("rx_dropped")? - rx_dropped_before;

    let o_direct = procfs::writes_with_o_direct(capture.pid(), &temp_dir.path);

    // Every earlier child (sender, set-up commands) is reaped by now, so the
    // delta across reaping the capturer is the capturer's whole CPU time.
    let reaped_before = procfs::reaped_children_cpu()?;
    let stopped = capture.stop()?;
    let capturer_cpu_total = procfs::reaped_children_cpu()?.saturating_sub(reaped_before);

    let packets_in_file = if verify_file {
        Some(capturer::packets_in_file(&file)?)
    } else {
        None
    };
    let file_bytes = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);

    Ok(RunResult {
        sender,
        offered,
        veth_drops,
        counts: stopped.counts,
        packets_in_file,
        file_bytes,
        capturer_cpu_total,
        capturer_cpu_during,
        capturer_cpu_startup: capturer_cpu_before,
        peak_rss_kib: stopped.peak_rss_kib,
        machine_busy_before,
        other_load_on_capture_core,
        o_direct,
    })
}

/// Runs the sender to completion (it stops itself after its duration) and
/// reads its JSON report.
pub(crate) fn run_sender(command_line: &[String], duration: Duration) -> Result<SenderReport> {
    let child = sender::to_command(command_line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a terminal Ctrl-C goes to the driver only.
        .process_group(0)
        .spawn()
        .context("starting the sender")?;
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + duration + SENDER_GRACE;
    let status = loop {
        interrupt::check()?;
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!("sender still running {SENDER_GRACE:?} after its duration");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // The sender has exited, so its pipes hold all it will ever write (a
    // line of JSON, or an error message): small enough not to have blocked it.
    let read_pipe = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    };
    let stdout = read_pipe(child.0.stdout.as_mut().map(|p| p as &mut dyn Read));
    if !status.success() {
        let stderr = read_pipe(child.0.stderr.as_mut().map(|p| p as &mut dyn Read));
        bail!("sender failed ({status}): {}", stderr.trim());
    }
    serde_json::from_str(stdout.trim()).with_context(|| format!("parsing sender output {stdout:?}"))
}

/// A child process that is killed (by its PID) if still running when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits until the whole machine is nearly idle, so the run does not compete
/// with unrelated work; gives up after `max_wait`. Returns the busy percentage
/// of the last sample.
pub(crate) fn wait_for_quiet(max_wait: Duration) -> Result<f64> {
    let give_up = Instant::now() + max_wait;
    let mut announced = false;
    loop {
        let before = procfs::cpu_ticks(None)?;
        sleep_interruptibly(QUIET_SAMPLE)?;
        let busy = procfs::cpu_ticks(None)?.busy_percent_since(&before);
        if busy <= QUIET_BUSY_PERCENT {
            return Ok(busy);
        }
        if Instant::now() >= give_up {
            eprintln!("machine still {busy:.0}% busy after waiting {max_wait:?}; running anyway");
            return Ok(busy);
        }
        if !announced {
            eprintln!("machine is {busy:.0}% busy (other work); waiting up to {max_wait:?} for it to go quiet");
            announced = true;
        }
    }
}

pub(crate) fn sleep_interruptibly(duration: Duration) -> Result<()> {
    let end = Instant::now() + duration;
    while let Some(left) = end
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        interrupt::check()?;
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    interrupt::check()
}

/// A fresh directory under /tmp for one run's capture file, removed on drop so
/// gigabytes of capture never pile up.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    pub(crate) fn create(run_number: u32) -> Result<TempDir> {
        let path = PathBuf::from(format!(
            "/tmp/{TEMP_DIR_PREFIX}{}-{run_number}",
            std::process::id()
        ));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let dir = TempDir { path };
        // tcpdump drops root privileges to its own user before it opens the
        // output file, so that user must be able to create files here.
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(0o777))
            .with_context(|| format!("chmod {}", dir.path.display()))?;
        Ok(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: could not remove {}: {error}", self.path.display());
        }
    }
}

/// Removes `/tmp/podcap-bench-<pid>-<n>` directories of dead benchmark processes.
pub(crate) fn remove_leftover_temp_dirs() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((owner, _run)) = name.rsplit_once('-') else {
            continue;
        };
        if netns::owner_is_gone(owner, TEMP_DIR_PREFIX) && entry.path().is_dir() {
            eprintln!("removing leftover directory {}", entry.path().display());
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
