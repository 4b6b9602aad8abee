//! Turns the measured runs into the Markdown report (bench/RESULTS.md): the
//! machine the numbers come from, a median table per scenario and tool, every
//! single run, and the exact commands. Every figure is computed from a
//! measured counter; nothing is filled in.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::capturer::{CaptureCounts, Tool};
use crate::scenario::Scenario;
use crate::sender::SenderReport;
use crate::{netns, procfs, RunArgs};

/// Facts about the machine and the tools, recorded with the results.
pub struct MachineFacts {
    nproc: usize,
    cpu_model: String,
    kernel: String,
    tcpdump_version: String,
    capinfos_version: String,
    capture_agent: Option<String>,
    started: String,
    load_at_start: f64,
    load_at_end: Option<f64>,
}

impl MachineFacts {
    pub fn collect(tools: &[Tool], capture_agent: &Path) -> Result<MachineFacts> {
        let capture_agent = if tools.contains(&Tool::Podcap) {
            // The binary's build time and the workspace revision it was built from.
            let modified = netns::output(
                "date",
                &[
                    "-u",
                    "-r",
                    &capture_agent.display().to_string(),
                    "+%Y-%m-%d %H:%M:%S UTC",
                ],
            )
            .map(first_line)
            .unwrap_or_default();
            let revision = workspace_revision();
            Some(format!(
                "{} (built {modified}, workspace at {revision})",
                capture_agent.display()
            ))
        } else {
            None
        };
        Ok(MachineFacts {
            nproc: procfs::online_cpus()?,
            cpu_model: procfs::cpu_model(),
            kernel: first_line(
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .context("reading kernel release")?,
            ),
            tcpdump_version: first_line(netns::output("tcpdump", &["--version"])?),
            capinfos_version: first_line(netns::output("capinfos", &["--version"])?),
            capture_agent,
            started: first_line(netns::output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])?),
            load_at_start: procfs::load_average()?,
            load_at_end: None,
        })
    }

    pub fn finish(&mut self) -> Result<()> {
        self.load_at_end = Some(procfs::load_average()?);
        Ok(())
    }
}

/// One scenario × tool × repetition, successful or not.
pub struct RunRecord {
    pub scenario: Scenario,
    pub tool: Tool,
    pub repetition: u32,
    /// How often this run was repeated because other work disturbed it.
    pub repeats: u32,
    /// The capturer's command line, with `FILE` for the per-run output file.
    pub capture_command: String,
    pub outcome: Result<RunResult, String>,
}

/// Raw measurements of one run.
pub struct RunResult {
    pub sender: SenderReport,
    /// Frames that crossed the veth: delta of the host end's rx_packets.
    pub offered: u64,
    /// The host end's rx_dropped delta (frames the veth itself lost).
    pub veth_drops: u64,
    pub counts: CaptureCounts,
    /// Packets in the written file according to capinfos (first repetition).
    pub packets_in_file: Option<u64>,
    pub file_bytes: u64,
    /// The capturer's CPU time over its whole life (getrusage of the reaped child).
    pub capturer_cpu_total: Duration,
    /// The capturer's CPU time while the sender ran (/proc/PID/stat, 10 ms ticks).
    pub capturer_cpu_during: Duration,
    /// The capturer's CPU time before the traffic started (start-up and settling).
    pub capturer_cpu_startup: Duration,
    pub peak_rss_kib: Option<u64>,
    /// How busy all CPUs were (in percent) just before the capturer started.
    pub machine_busy_before: f64,
    /// CPU time on the capturer's core, while the sender ran, not used by the
    /// capturer (other processes, interrupts).
    pub other_load_on_capture_core: Duration,
    /// Whether the capturer had its output file open with O_DIRECT.
    pub o_direct: Option<bool>,
}

impl RunResult {
    /// Frames the capturer should have captured: all offered frames, or with
    /// a filter the matching ones. The sender counts what it sent to the
    /// matching port; if the veth lost frames (offered < sent) that count is
    /// scaled down by the same ratio.
    fn expected(&self, scenario: &Scenario) -> f64 {
        match scenario.match_every {
            None => self.offered as f64,
            Some(_) if self.sender.sent == 0 => 0.0,
            Some(_) => {
                let crossed = (self.offered as f64 / self.sender.sent as f64).min(1.0);
                self.sender.matched as f64 * crossed
            }
        }
    }

    fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.sender.seconds.max(1e-9)
    }

    fn captured_percent(&self, scenario: &Scenario) -> f64 {
        let expected = self.expected(scenario);
        if expected == 0.0 {
            0.0
        } else {
            100.0 * self.counts.captured as f64 / expected
        }
    }

    /// Expected frames neither captured nor reported as dropped.
    fn unaccounted(&self, scenario: &Scenario) -> f64 {
        self.expected(scenario) - self.counts.captured as f64 - self.counts.kernel_drops as f64
    }

    fn cpu_ns_per_packet(&self) -> Option<f64> {
        (self.counts.captured > 0)
            .then(|| self.capturer_cpu_total.as_nanos() as f64 / self.counts.captured as f64)
    }

    /// CPU while the sender ran ÷ packets captured: the per-packet cost without start-up.
    fn cpu_ns_per_packet_while_sending(&self) -> Option<f64> {
        (self.counts.captured > 0)
            .then(|| self.capturer_cpu_during.as_nanos() as f64 / self.counts.captured as f64)
    }

    fn cpu_percent_of_core(&self) -> f64 {
        100.0 * self.capturer_cpu_during.as_secs_f64() / self.sender.seconds.max(1e-9)
    }

    /// Share of the capturer's core used by other work while the sender ran.
    pub fn other_load_percent(&self) -> f64 {
        100.0 * self.other_load_on_capture_core.as_secs_f64() / self.sender.seconds.max(1e-9)
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        self.peak_rss_kib.map(|kib| kib as f64 / 1024.0)
    }
}

/// One line per finished run on stderr, so a long benchmark shows progress.
pub fn progress_line(record: &RunRecord, result: &RunResult) -> String {
    format!(
        "{} / {} #{}: offered {:.0} pps, captured {:.2}%, kernel drops {}, {} ns/pkt, {:.0}% CPU, peak RSS {} MiB, other load on CPU 1 {:.0}%",
        record.scenario.name(),
        record.tool.name(),
        record.repetition,
        result.offered_pps(),
        result.captured_percent(&record.scenario),
        result.counts.kernel_drops,
        optional(result.cpu_ns_per_packet(), 0),
        result.cpu_percent_of_core(),
        optional(result.peak_rss_mib(), 1),
        result.other_load_percent(),
    )
}

/// The whole report.
pub fn markdown(
    machine: &MachineFacts,
    args: &RunArgs,
    duration: Duration,
    repetitions: u32,
    records: &[RunRecord],
    sender_example: &str,
) -> String {
    let mut out = String::new();
    let invocation: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(out, "# podcap capture benchmark\n");
    let _ = writeln!(
        out,
        "Produced by `cargo run --release -p podcap-bench --{}{}` (as root), started {}. \
         {} of traffic per run, {repetitions} repetition(s) per scenario and tool{}.\n",
        if invocation.is_empty() { "" } else { " " },
        invocation.join(" "),
        machine.started,
        format_duration(duration),
        if args.quick {
            " (`--quick`: a smoke test, not a measurement to quote)"
        } else {
            ""
        },
    );

    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| CPUs online (nproc) | {} |", machine.nproc);
    let _ = writeln!(out, "| CPU model | {} |", machine.cpu_model);
    let _ = writeln!(out, "| Kernel (uname -r) | {} |", machine.kernel);
    let _ = writeln!(out, "| tcpdump | {} |", machine.tcpdump_version);
    let _ = writeln!(out, "| capinfos | {} |", machine.capinfos_version);
    if let Some(agent) = &machine.capture_agent {
        let _ = writeln!(out, "| capture-agent | {agent} |");
    }
    let _ = writeln!(out, "| Date | {} |", machine.started);
    let _ = writeln!(
        out,
        "| Load average (1 min) at start / end | {:.2} / {} |\n",
        machine.load_at_start,
        machine
            .load_at_end
            .map_or("?".to_string(), |l| format!("{l:.2}"))
    );

    let _ = writeln!(out, "## How to read this\n");
    let _ = writeln!(
        out,
        "A sender pinned to CPU 0 sends UDP datagrams from a network namespace (the \"pod\") through \
         a veth pair; the capturer under test, pinned to CPU 1, captures on the veth's host end and \
         writes a file under /tmp; a tc ingress filter drops every frame right after the packet taps \
         have seen it. Each line of the summary is the median of that tool's runs (with two runs, \
         their mean); the per-run table below has the raw counters. Capture tools are compared on \
         the same traffic, but only runs on a quiet machine are comparable: check the last column.\n"
    );
    let definitions = [
        "**Offered pps**: frames that crossed the veth (the host end's `rx_packets` delta) per \
         second of sending — not what the sender claims."
            .to_string(),
        "**Captured %**: packets the capturer reports written ÷ frames offered (filter scenario: ÷ \
         offered frames sent to the matching port). Below 100 % is loss."
            .to_string(),
        "**Kernel drops**: the capturer's own count of frames the kernel could not put into its \
         full buffer. **Unaccounted** (per-run table) frames were neither captured nor reported \
         dropped; for tcpdump they are \"received by filter\" but not \"captured\", which fits \
         frames still in the last, not yet handed-over block of its ring when SIGINT arrives (libpcap \
         hands a block over when it is full or after tcpdump's 1 s buffer timeout)."
            .to_string(),
        format!(
            "**CPU ns/packet**: the capturer's whole-life user+system CPU time (start-up, capture, \
             drain) ÷ packets captured. Its start-up part (per-run table: \"of it before traffic\", \
             mostly the kernel allocating the {ring} ring) varies from run to run and dominates \
             when few packets are captured (low rates, the filter scenario).",
            ring = crate::capturer::PODCAP_RING_SIZE
        ),
        "**CPU ns/packet while sending**: the capturer's CPU time while the sender ran ÷ packets \
         captured — the per-packet cost without start-up and drain. **CPU % of a core**: the \
         capturer's CPU time while the sender ran ÷ the sender's run time."
            .to_string(),
        "**Peak RSS**: the capturer's VmHWM, which includes the packet ring mapped into it.".to_string(),
        format!(
            "**Other load on CPU 1 %**: CPU time on the capturer's core used by anything else while \
             the sender ran. Before each run the benchmark waits (up to a limit) until the machine \
             is at most {quiet:.0} % busy; a run where other load exceeds {disturbed:.0} % is \
             repeated, up to {attempts} attempts (the per-run table says which attempt was kept), \
             so a figure above {disturbed:.0} % means every attempt was disturbed.",
            quiet = crate::measure::QUIET_BUSY_PERCENT,
            disturbed = crate::measure::DISTURBED_PERCENT,
            attempts = crate::measure::MAX_ATTEMPTS,
        ),
        "Not in the capturer's CPU figures: copying each frame into the capture buffer and running \
         an in-kernel filter happen in softirq on the sender's CPU 0. At `max` rate that work slows \
         the sender, which is why the offered rate at `max` differs between tools."
            .to_string(),
        "File formats: tcpdump writes pcap, capture-agent its default pcapng (a 32-byte instead of \
         a 16-byte header per packet). **O_DIRECT** (per-run table) says whether the capturer had \
         its output file open with O_DIRECT (read from /proc/PID/fdinfo just before SIGINT): \
         writing through the page cache costs the writer a copy of every byte, O_DIRECT does not."
            .to_string(),
    ];
    for definition in definitions {
        let _ = writeln!(out, "- {definition}");
    }
    let _ = writeln!(out);

    write_summary(&mut out, records);
    write_all_runs(&mut out, records);
    write_commands(&mut out, records, sender_example);
    out
}

fn write_summary(out: &mut String, records: &[RunRecord]) {
    let _ = writeln!(out, "## Results (median per scenario and tool)\n");
    let _ = writeln!(out, "| Scenario | Tool | Runs | Offered pps | Captured % | Kernel drops | CPU ns/packet | CPU ns/packet while sending | CPU % of a core | Peak RSS MiB | Other load on CPU 1 % |");
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (scenario, tool) in groups(records) {
        let runs: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario.name() == scenario.name() && r.tool == tool)
            .collect();
        let ok: Vec<&RunResult> = runs
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .collect();
        let failed = runs.len() - ok.len();
        let runs_cell = if failed > 0 {
            format!("{} ({failed} failed)", ok.len())
        } else {
            ok.len().to_string()
        };
        let median_of = |f: &dyn Fn(&RunResult) -> Option<f64>| {
            median(ok.iter().filter_map(|r| f(r)).collect())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            scenario.name(),
            tool.name(),
            runs_cell,
            optional(median_of(&|r| Some(r.offered_pps())), 0),
            optional(median_of(&|r| Some(r.captured_percent(&scenario))), 2),
            optional(median_of(&|r| Some(r.counts.kernel_drops as f64)), 0),
            optional(median_of(&|r| r.cpu_ns_per_packet()), 0),
            optional(median_of(&|r| r.cpu_ns_per_packet_while_sending()), 0),
            optional(median_of(&|r| Some(r.cpu_percent_of_core())), 1),
            optional(median_of(&|r| r.peak_rss_mib()), 1),
            optional(median_of(&|r| Some(r.other_load_percent())), 1),
        );
    }
    let _ = writeln!(out);
}

fn write_all_runs(out: &mut String, records: &[RunRecord]) {
    let _ = writeln!(out, "## Every run\n");
    let _ = writeln!(
        out,
        "Sender sent = datagrams the sender's kernel accepted; offered = frames counted on the host \
         end of the veth; expected = frames the capturer should capture; unaccounted = expected − captured − kernel \
         drops (frames lost without being reported, e.g. still in a kernel buffer at stop; with \
         the filter the expected count can be off by a few frames); in file = packets counted \
         in the written file by `capinfos -c -M` (first repetition of each tool and scenario); \
         veth drops = the host end's `rx_dropped` delta; machine busy before = share of all CPUs busy \
         in the half second before the capturer started.\n"
    );
    let _ = writeln!(out, "| Scenario | Tool | # | Sender sent | Sender s | Offered | Offered pps | Expected | Captured | Captured % | Kernel drops | Unaccounted | tcpdump received by filter | In file | File MiB | CPU total ms | of it before traffic ms | CPU ns/packet | CPU % of a core | Peak RSS MiB | veth drops | Machine busy before % | Other load on CPU 1 % | O_DIRECT |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for record in records {
        let attempt = match record.repeats {
            0 => String::new(),
            n => format!(" ({} attempt)", ordinal(n + 1)),
        };
        let prefix = format!(
            "| {} | {} | {}{attempt} ",
            record.scenario.name(),
            record.tool.name(),
            record.repetition
        );
        match &record.outcome {
            Ok(r) => {
                let mut captured = r.counts.captured.to_string();
                if let Some(written) = r.counts.written.filter(|&w| w != r.counts.captured) {
                    let _ = write!(captured, " (files: {written})");
                }
                if let Some(freezes) = r.counts.freezes.filter(|&f| f > 0) {
                    let _ = write!(captured, " ({freezes} freezes)");
                }
                let _ = writeln!(
                    out,
                    "{prefix}| {} | {:.2} | {} | {:.0} | {:.0} | {} | {:.2} | {} | {:.0} | {} | {} | {:.0} | {:.1} | {:.0} | {} | {:.1} | {} | {} | {:.0} | {:.1} | {} |",
                    r.sender.sent,
                    r.sender.seconds,
                    r.offered,
                    r.offered_pps(),
                    r.expected(&record.scenario),
                    captured,
                    r.captured_percent(&record.scenario),
                    r.counts.kernel_drops,
                    r.unaccounted(&record.scenario),
                    r.counts.received.map_or("–".to_string(), |n| n.to_string()),
                    r.packets_in_file.map_or("–".to_string(), |n| {
                        if n == r.counts.captured { n.to_string() } else { format!("{n} (≠ captured!)") }
                    }),
                    r.file_bytes as f64 / (1024.0 * 1024.0),
                    r.capturer_cpu_total.as_secs_f64() * 1000.0,
                    r.capturer_cpu_startup.as_secs_f64() * 1000.0,
                    optional(r.cpu_ns_per_packet(), 0),
                    r.cpu_percent_of_core(),
                    optional(r.peak_rss_mib(), 1),
                    r.veth_drops,
                    r.machine_busy_before,
                    r.other_load_percent(),
                    match r.o_direct {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "?",
                    },
                );
            }
            Err(error) => {
                let _ = writeln!(
                    out,
                    "{prefix}| FAILED: {} |",
                    error.replace('|', "\\|").replace('\n', " ")
                );
            }
        }
    }
    let _ = writeln!(out);
}

fn write_commands(out: &mut String, records: &[RunRecord], sender_example: &str) {
    let _ = writeln!(out, "## Commands\n");
    let _ = writeln!(
        out,
        "Capturers, per scenario (`FILE` is a fresh file in a new directory under /tmp, deleted after the run):\n"
    );
    let mut seen = Vec::new();
    for record in records {
        let key = (record.scenario.name(), record.tool);
        if seen.contains(&key) {
            continue;
        }
        let _ = writeln!(
            out,
            "- {} / {}: `{}`",
            key.0,
            key.1.name(),
            record.capture_command
        );
        seen.push(key);
    }
    let _ = writeln!(
        out,
        "\nSender (here for 64 B at max rate; the other scenarios change `--size`, `--rate` and add \
         `--match-every 100` for the filter scenario):\n\n`{sender_example}`\n"
    );
}

/// (scenario, tool) pairs in the order they first ran.
fn groups(records: &[RunRecord]) -> Vec<(Scenario, Tool)> {
    let mut groups: Vec<(Scenario, Tool)> = Vec::new();
    for record in records {
        if !groups
            .iter()
            .any(|(s, t)| s.name() == record.scenario.name() && *t == record.tool)
        {
            groups.push((record.scenario.clone(), record.tool));
        }
    }
    // Tools of one scenario next to each other, scenarios in run order.
    let scenario_order: Vec<String> = {
        let mut names: Vec<String> = Vec::new();
        for (s, _) in &groups {
            if !names.contains(&s.name()) {
                names.push(s.name());
            }
        }
        names
    };
    groups.sort_by_key(|(s, t)| {
        (
            scenario_order.iter().position(|n| *n == s.name()),
            *t == Tool::Podcap,
        )
    });
    groups
}

fn ordinal(n: u32) -> String {
    match n {
        1 => "1st".to_string(),
        2 => "2nd".to_string(),
        3 => "3rd".to_string(),
        n => format!("{n}th"),
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if middle * 2 == values.len() {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".to_string(), |v| format!("{v:.decimals$}"))
}

fn format_duration(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// The commit the benchmarked code was built from (`-dirty` with local changes), for reports.
pub fn workspace_revision() -> String {
    netns::output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ],
    )
    .map(first_line)
    .unwrap_or_else(|_| "unknown".to_string())
}

/// The first line of a command's output, trimmed: versions and single facts.
pub fn first_line(text: String) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
    }
}
