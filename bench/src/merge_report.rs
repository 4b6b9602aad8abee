//! The merge benchmark's Markdown report (bench/MERGE.md): the machine, the median per
//! scenario and tool, whether memory stays flat as the input grows 4x, every run, and the
//! exact commands. Every figure comes from a measured run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::merge::{MergeArgs, MergeRun, MergeScenario, MergeTool};
use crate::{netns, procfs};

const KIB_PER_MIB: f64 = 1024.0;
/// Peak RSS counts as flat when 4x the input raises it by less than this...
const FLAT_GROWTH_MIB: f64 = 4.0;
/// ...or by less than this share.
const FLAT_GROWTH_SHARE: f64 = 0.10;

/// Facts about the machine and the tools, recorded with the results.
pub struct Facts {
    cpu_model: String,
    nproc: usize,
    kernel: String,
    mergecap_version: String,
    filesystem: String,
    revision: String,
    started: String,
}

use crate::report::first_line;

impl Facts {
    pub fn collect(work_dir: &Path) -> Result<Facts> {
        let dir = work_dir.display().to_string();
        Ok(Facts {
            cpu_model: procfs::cpu_model(),
            nproc: procfs::online_cpus()?,
            kernel: first_line(
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .context("reading kernel release")?,
            ),
            mergecap_version: first_line(netns::output("mergecap", &["-v"])?),
            filesystem: first_line(netns::output(
                "findmnt",
                &["-n", "-o", "FSTYPE", "-T", &dir],
            )?),
            revision: crate::report::workspace_revision(),
            started: first_line(netns::output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])?),
        })
    }
}

pub fn progress_line(run: &MergeRun) -> String {
    let m = &run.measurement;
    format!(
        "{} of {} B frames / {} #{}: {:.2} s, {:.0} MB/s, CPU {:.2} s user + {:.2} s system, peak RSS {:.1} MiB",
        run.scenario.input_label(),
        run.scenario.frame_len,
        run.tool.name(),
        run.repetition,
        m.wall_seconds,
        run.megabytes_per_second(),
        m.user_seconds,
        m.system_seconds,
        m.peak_rss_kib as f64 / KIB_PER_MIB
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn same_scenario(a: &MergeScenario, b: &MergeScenario) -> bool {
    a.files == b.files && a.bytes_per_file == b.bytes_per_file && a.frame_len == b.frame_len
}

/// Medians of one scenario and tool.
struct Summary {
    input_bytes: u64,
    megabytes_per_second: f64,
    /// The fastest run: what the tool does when the machine does not get in the way.
    best_megabytes_per_second: f64,
    wall_seconds: f64,
    user_seconds: f64,
    system_seconds: f64,
    /// The largest of the runs: memory is judged by the worst case.
    peak_rss_mib: f64,
}

fn summarize(runs: &[MergeRun], scenario: &MergeScenario, tool: MergeTool) -> Option<Summary> {
    let mine: Vec<&MergeRun> = runs
        .iter()
        .filter(|r| r.tool == tool && same_scenario(&r.scenario, scenario))
        .collect();
    let first = mine.first()?;
    Some(Summary {
        input_bytes: first.input_bytes,
        megabytes_per_second: median(mine.iter().map(|r| r.megabytes_per_second()).collect()),
        wall_seconds: median(mine.iter().map(|r| r.measurement.wall_seconds).collect()),
        best_megabytes_per_second: mine
            .iter()
            .map(|r| r.megabytes_per_second())
            .fold(0.0, f64::max),
        user_seconds: median(mine.iter().map(|r| r.measurement.user_seconds).collect()),
        system_seconds: median(mine.iter().map(|r| r.measurement.system_seconds).collect()),
        peak_rss_mib: mine
            .iter()
            .map(|r| r.measurement.peak_rss_kib as f64 / KIB_PER_MIB)
            .fold(0.0, f64::max),
    })
}

fn distinct_scenarios(runs: &[MergeRun]) -> Vec<MergeScenario> {
    let mut scenarios: Vec<MergeScenario> = Vec::new();
    for run in runs {
        if !scenarios.iter().any(|s| same_scenario(s, &run.scenario)) {
            scenarios.push(run.scenario);
        }
    }
    scenarios
}

const TOOLS: [MergeTool; 2] = [MergeTool::Mergecap, MergeTool::Podcap];

pub fn render(facts: &Facts, args: &MergeArgs, repetitions: u32, runs: &[MergeRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Merging capture files: podcap vs mergecap\n");
    let _ = writeln!(
        out,
        "Written by `podcap-bench merge`{} on {}. Workspace at `{}`.\n",
        if args.quick { " --quick" } else { "" },
        facts.started,
        facts.revision
    );
    let _ = writeln!(
        out,
        "- Machine: {} CPU(s), {}; Linux {}",
        facts.nproc, facts.cpu_model, facts.kernel
    );
    let _ = writeln!(out, "- mergecap: {}", facts.mergecap_version);
    let _ = writeln!(
        out,
        "- Inputs and outputs on one `{}` filesystem, warm in the page cache.",
        facts.filesystem
    );
    let _ = writeln!(
        out,
        "- Inputs: {} pcapng files per scenario as capture-agent writes them (if_tsresol 9, epb_flags, an ISB), \
         timestamps interleaved irregularly across files. {repetitions} run(s) per scenario and tool, alternating which goes first.",
        args.files
    );
    let _ = writeln!(
        out,
        "- MB/s: input bytes (10^6) per second of wall time. User and system: CPU time of the merging process. \
         Peak RSS: its maxrss. All from getrusage in a fresh measuring process that reaps only that one run.\n"
    );

    let _ = writeln!(
        out,
        "## Results (median of the runs; peak RSS: the largest)\n"
    );
    let _ = writeln!(
        out,
        "| Input | Frames | Input MB | Tool | MB/s | Best MB/s | Wall s | User s | System s | Peak RSS MiB | MB/s vs mergecap |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let scenarios = distinct_scenarios(runs);
    for scenario in &scenarios {
        let baseline =
            summarize(runs, scenario, MergeTool::Mergecap).map(|s| s.megabytes_per_second);
        for tool in TOOLS {
            let Some(s) = summarize(runs, scenario, tool) else {
                continue;
            };
            let ratio = baseline.map_or("".to_string(), |b| {
                format!("{:.2}x", s.megabytes_per_second / b)
            });
            let _ = writeln!(
                out,
                "| {} | {} B | {:.0} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {ratio} |",
                scenario.input_label(),
                scenario.frame_len,
                s.input_bytes as f64 / 1e6,
                tool.name(),
                s.megabytes_per_second,
                s.best_megabytes_per_second,
                s.wall_seconds,
                s.user_seconds,
                s.system_seconds,
                s.peak_rss_mib
            );
        }
    }

    let _ = writeln!(out, "\n## Memory as the input grows 4x\n");
    let _ = writeln!(
        out,
        "| Frames | Tool | Peak RSS MiB, smaller input | Peak RSS MiB, 4x input | Flat? |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for frame_len in [1400, 100] {
        let sized: Vec<&MergeScenario> = scenarios
            .iter()
            .filter(|s| s.frame_len == frame_len)
            .collect();
        let (Some(small), Some(large)) = (
            sized.iter().min_by_key(|s| s.bytes_per_file),
            sized.iter().max_by_key(|s| s.bytes_per_file),
        ) else {
            continue;
        };
        for tool in TOOLS {
            let (Some(a), Some(b)) = (summarize(runs, small, tool), summarize(runs, large, tool))
            else {
                continue;
            };
            let growth = b.peak_rss_mib - a.peak_rss_mib;
            let flat = growth < FLAT_GROWTH_MIB || growth < FLAT_GROWTH_SHARE * a.peak_rss_mib;
            let _ = writeln!(
                out,
                "| {frame_len} B | {} | {:.1} ({}) | {:.1} ({}) | {} ({:+.1} MiB) |",
                tool.name(),
                a.peak_rss_mib,
                small.input_label(),
                b.peak_rss_mib,
                large.input_label(),
                if flat { "yes" } else { "no" },
                growth
            );
        }
    }

    let _ = writeln!(out, "\n## Every run\n");
    let _ = writeln!(
        out,
        "| Input | Frames | Tool | Run | Busy before % | Wall s | MB/s | User s | System s | Peak RSS MiB | Output bytes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let m = &run.measurement;
        let _ = writeln!(
            out,
            "| {} | {} B | {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1} | {} |",
            run.scenario.input_label(),
            run.scenario.frame_len,
            run.tool.name(),
            run.repetition,
            run.busy_before_percent,
            m.wall_seconds,
            run.megabytes_per_second(),
            m.user_seconds,
            m.system_seconds,
            m.peak_rss_kib as f64 / KIB_PER_MIB,
            run.output_bytes
        );
    }

    let _ = writeln!(out, "\n## Commands\n");
    let _ = writeln!(out, "```sh");
    let last = args.files.saturating_sub(1);
    let _ = writeln!(
        out,
        "mergecap -w OUT -F pcapng veth0.pcapng ... veth{last}.pcapng"
    );
    let _ = writeln!(
        out,
        "podcap-bench merge-worker --output OUT veth0.pcapng ... veth{last}.pcapng   # capture_agent::merge::merge, pcapng"
    );
    let _ = writeln!(out, "```");
    let _ = writeln!(
        out,
        "\nEach runs under `podcap-bench merge-measure -- COMMAND`. Before every run the previous output is \
         deleted, `sync` is called, the benchmark waits (up to 60 s) for the machine to be at most 10 % busy \
         (\"Busy before\" above), and 1.25x the input size of anonymous memory is touched and freed, so the run's \
         page cache gets memory the VM has backed (this VM hands memory that stays free for a few seconds back \
         to its host, and faulting it in again adds a random share of system time to either tool); none of that \
         is timed. The first run of each tool per scenario is checked with `capinfos -c -M` to hold every input \
         packet."
    );
    out
}
