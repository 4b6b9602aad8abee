//! The density benchmark's results and its Markdown report (bench/DENSITY.md):
//! machine facts, one table per scenario from the run's own numbers, a check
//! against issue 11's targets computed from those numbers, capture-api's
//! warnings, and the exact commands.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;

use crate::density::{self, DensityTool, Setup, CAPTURE_CPU};
use crate::netns;
use crate::procfs::{self, ProcessSample};
use crate::report::{first_line, workspace_revision};
use crate::sender::SenderReport;

/// The quiet window of one capturer.
#[derive(Clone, Debug)]
pub struct QuietResult {
    pub sample: ProcessSample,
    pub cpu_percent: f64,
    pub other_load_percent: f64,
}

/// The busy window of one capturer.
#[derive(Clone, Debug)]
pub struct BusyResult {
    pub sender: SenderReport,
    /// Frames that crossed the busy pods' veths (host ends' rx_packets).
    pub offered: u64,
    /// Frames on the other pods' veths meanwhile (should be 0).
    pub offered_on_quiet_pods: u64,
    pub captured: u64,
    pub kernel_drops: u64,
    /// Packets captured on the quiet pods (should be 0).
    pub captured_on_quiet_pods: u64,
    /// The capturer's CPU time from the sender's start to 1 s after its end.
    pub cpu: Duration,
    pub window_seconds: f64,
    pub other_load_percent: f64,
    /// Right after the window.
    pub sample: ProcessSample,
}

impl BusyResult {
    fn captured_percent(&self) -> f64 {
        percent(self.captured, self.offered)
    }
    fn unaccounted(&self) -> i64 {
        self.offered as i64 - self.captured as i64 - self.kernel_drops as i64
    }
}

/// One capturer over N pods.
#[derive(Clone, Debug)]
pub struct ToolRun {
    pub tool: DensityTool,
    pub pods: usize,
    pub machine_busy_before: Option<f64>,
    /// From starting the capturer to every pod being captured.
    pub ready_seconds: Option<f64>,
    pub quiet: Option<QuietResult>,
    pub busy: Option<BusyResult>,
    pub thread_names: Vec<(String, u64)>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// One capturer at the sender's maximum rate.
#[derive(Clone, Debug, Default)]
pub struct MaxResult {
    pub tool: String,
    pub sender: SenderReport,
    pub offered: u64,
    pub captured: u64,
    pub kernel_drops: u64,
    pub cpu: Duration,
    pub seconds: f64,
    pub sample: ProcessSample,
    pub machine_busy_before: f64,
    pub other_load_percent: f64,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// Everything the report shows.
pub struct Report {
    command: String,
    started: String,
    finished: String,
    cpu_model: String,
    nproc: usize,
    kernel: String,
    tcpdump: String,
    revision: String,
    capture_api: String,
    capture_agent: Option<String>,
    load_at_start: f64,
    load_at_end: f64,
    other_namespaces: usize,
    pub runs: Vec<ToolRun>,
    pub max: Vec<MaxResult>,
    /// Extra commands to show: (what, command line).
    pub commands: Vec<(String, String)>,
}

impl Report {
    pub fn start(context: &Setup) -> Result<Report> {
        let built = |path: &std::path::Path| {
            let when = netns::output(
                "date",
                &[
                    "-u",
                    "-r",
                    &path.display().to_string(),
                    "+%Y-%m-%d %H:%M UTC",
                ],
            )
            .map(first_line)
            .unwrap_or_default();
            format!("{} (built {when})", path.display())
        };
        let other_namespaces = std::fs::read_dir("/var/run/netns")
            .map(|entries| entries.count())
            .unwrap_or(0);
        Ok(Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started: now(),
            finished: String::new(),
            cpu_model: procfs::cpu_model(),
            nproc: procfs::online_cpus()?,
            kernel: first_line(std::fs::read_to_string("/proc/sys/kernel/osrelease")?),
            tcpdump: first_line(netns::output("tcpdump", &["--version"])?),
            revision: workspace_revision(),
            capture_api: built(&context.capture_api),
            capture_agent: context.capture_agent.as_deref().map(built),
            load_at_start: procfs::load_average()?,
            load_at_end: 0.0,
            other_namespaces,
            runs: Vec::new(),
            max: Vec::new(),
            commands: Vec::new(),
        })
    }

    pub fn finish(&mut self) -> Result<()> {
        self.finished = now();
        self.load_at_end = procfs::load_average()?;
        Ok(())
    }
}

fn now() -> String {
    netns::output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .map(first_line)
        .unwrap_or_default()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ns_per_packet(cpu: Duration, packets: u64) -> String {
    if packets == 0 {
        "–".to_string()
    } else {
        format!("{:.0}", cpu.as_nanos() as f64 / packets as f64)
    }
}

/// A line on stderr after each run.
pub fn progress_line(run: &ToolRun) -> String {
    let mut line = format!("{} pods / {}:", run.pods, run.tool.name());
    if let Some(q) = &run.quiet {
        let _ = write!(
            line,
            " quiet RSS {:.1} MiB (rings {:.1}), {} threads, CPU {:.2} %;",
            mib(q.sample.rss_kib),
            mib(q.sample.ring_mapped_kib),
            q.sample.threads,
            q.cpu_percent
        );
    }
    if let Some(b) = &run.busy {
        let _ = write!(
            line,
            " busy {} of {} captured ({:.2} %), {} drops, {} ns/packet",
            b.captured,
            b.offered,
            b.captured_percent(),
            b.kernel_drops,
            ns_per_packet(b.cpu, b.captured)
        );
    }
    if let Some(error) = &run.error {
        let _ = write!(line, " FAILED: {error}");
    }
    line
}

pub fn max_progress_line(result: &MaxResult) -> String {
    match &result.error {
        Some(error) => format!("max rate / {}: FAILED: {error}", result.tool),
        None => format!(
            "max rate / {}: {} of {} captured ({:.2} %), {} drops",
            result.tool,
            result.captured,
            result.offered,
            percent(result.captured, result.offered),
            result.kernel_drops
        ),
    }
}

/// The whole report.
pub fn markdown(report: &Report, context: &Setup) -> String {
    let args = &context.args;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Density benchmark: one capture over many pods\n");
    let _ = writeln!(
        w,
        "Produced by `{}` (as root), {} to {}, workspace at {}. Every figure below comes from \
         that run; re-run the command to refresh this file.\n",
        report.command, report.started, report.finished, report.revision
    );
    let _ = writeln!(w, "## Machine\n\n| | |\n|---|---|");
    let _ = writeln!(w, "| CPUs online | {} |", report.nproc);
    let _ = writeln!(w, "| CPU model | {} |", report.cpu_model);
    let _ = writeln!(w, "| Kernel | {} |", report.kernel);
    let _ = writeln!(w, "| tcpdump | {} |", report.tcpdump);
    let _ = writeln!(w, "| capture-api | {} |", report.capture_api);
    if let Some(agent) = &report.capture_agent {
        let _ = writeln!(w, "| capture-agent | {agent} |");
    }
    let _ = writeln!(
        w,
        "| Load average (1 min) at start / end | {:.2} / {:.2} |",
        report.load_at_start, report.load_at_end
    );
    let _ = writeln!(
        w,
        "| Network namespaces on the machine before the run (not the benchmark's; capture-api's discovery walks them too) | {} |\n",
        report.other_namespaces
    );

    let _ = writeln!(w, "## How it was measured\n");
    let _ = writeln!(
        w,
        "- **Pods**: network namespaces `podcap-density-<pid>-<i>`, each with `eth0` (10.244.251.2/24) \
         and its veth's host end `pcd<pid>-<i>` in the root namespace (no address, no IPv6, a tc \
         ingress filter dropping every frame after the packet taps saw it) — what \
         `capture-api --standalone` discovers as pod `default/<netns>` labelled `podcap.io/netns=<netns>`. \
         Pods are made once and reused as N grows."
    );
    let _ = writeln!(
        w,
        "- **capture-api**: one process per N, pinned to CPU {CAPTURE_CPU} with `taskset`, its own data dir \
         under /tmp, `--ring-memory {}`, and ONE capture whose `podSelector` is `podcap.io/netns In [the N pods]`; \
         measured from the moment every target reports `Capturing` (+{} s).",
        args.ring_memory, 3
    );
    let _ = writeln!(
        w,
        "- **tcpdump × N**: one `tcpdump -i HOSTVETH -B {} -w FILE` per pod, all pinned to CPU {CAPTURE_CPU}; \
         RSS, threads, CPU and rings are the sums over the N processes.",
        crate::density_tcpdump::BUFFER_KIB
    );
    let _ = writeln!(
        w,
        "- **RSS** is VmRSS from /proc/PID/status (PSS from smaps_rollup: for the tcpdump set, summed RSS counts \
         the shared libraries once per process, PSS once). It **includes the packet rings**: a TPACKET ring is mapped \
         into the process (`socket:[…]` in /proc/PID/smaps) and the kernel inserts every page of it at mmap \
         time, so a ring counts in full (RssFile) from the start — the *rings* columns are the sizes of those \
         mappings, read from smaps (their Rss equals their size). Ring memory is kernel memory the process's \
         memory cgroup does not charge."
    );
    let _ = writeln!(
        w,
        "- **CPU % of a core**: utime+stime delta from /proc/PID/stat (10 ms ticks) over the window ÷ the \
         window. **Other load on CPU {CAPTURE_CPU}**: that CPU's busy time in the window minus the capturer's, \
         i.e. anything else that ran there (other people's work skews a 2-CPU machine). Before each capturer \
         starts, the benchmark waits up to 30 s for the machine to be at most 10 % busy."
    );
    let _ = writeln!(
        w,
        "- **Busy**: one sender process (`podcap-bench send`, pinned to CPU 0) opens a UDP socket in each of the \
         first {} pods and sends {}-byte frames batch by batch in turn at a combined {} pps for {} s. \
         *Offered* is the sum of the busy host ends' `rx_packets` deltas (what really crossed the veths); \
         *captured* and *kernel drops* are the capturer's own account: for capture-api the targets' `packets` \
         and `drops` in the capture's status after `POST …/stop` has drained it, for tcpdump each process's \
         exit summary. *Unaccounted* = offered − captured − drops. *CPU ns/packet*: the capturer's CPU time \
         from the sender's start to 1 s after its end ÷ packets captured. Copying frames into the rings \
         happens in softirq on the sender's CPU 0 and is in neither capturer's figures.",
        args.busy_pods, 1400, args.busy_rate, args.busy_seconds
    );
    let _ = writeln!(
        w,
        "- **Max**: one pod (the set's only pod at that point), the sender at `--rate max` with 1400-byte \
         frames for {} s, against capture-api (one capture of that pod) and `capture-agent capture \
         --ring-size 64MiB`, both pinned to CPU {CAPTURE_CPU}, both writing full packets to /tmp.\n",
        args.max_seconds
    );

    let _ = writeln!(
        w,
        "- **Reading disturbed runs**: on a shared 2-CPU machine other work lands on CPU {CAPTURE_CPU} too. \
         The scheduler shares a CPU per thread, so N tcpdump processes together get N shares against that \
         work while capture-api's one engine thread gets one: compare busy figures where *Other load* is \
         low. The binaries are whatever `target/release` held (built from the working tree; `-dirty` in the \
         revision above means uncommitted changes were present).\n"
    );
    quiet_table(w, report, args.quiet_seconds);
    busy_table(w, report, args);
    max_table(w, report, args.max_seconds);
    targets(w, report, args);
    warnings(w, report);
    commands(w, report, context);
    errors(w, report);
    out
}

fn runs_with<'a, T: 'a>(
    report: &'a Report,
    pick: impl Fn(&'a ToolRun) -> Option<&'a T> + 'a,
) -> impl Iterator<Item = (&'a ToolRun, &'a T)> + 'a {
    report
        .runs
        .iter()
        .filter_map(move |run| pick(run).map(|x| (run, x)))
}

fn quiet_table(w: &mut String, report: &Report, seconds: u64) {
    if !report.runs.iter().any(|r| r.quiet.is_some()) {
        return;
    }
    let _ = writeln!(
        w,
        "## Quiet: N pods in one capture, no traffic ({seconds} s)\n"
    );
    let _ = writeln!(
        w,
        "| Pods | Capturer | RSS MiB | of it packet rings MiB | Rings | RSS without rings MiB | PSS MiB | Threads | CPU % of a core | Ready after s | Other load on CPU {CAPTURE_CPU} % | Machine busy before % |"
    );
    let _ = writeln!(
        w,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (run, q) in runs_with(report, |r| r.quiet.as_ref()) {
        let s = &q.sample;
        let _ = writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} | {:.2} | {:.1} | {:.1} | {:.0} |",
            run.pods,
            run.tool.name(),
            mib(s.rss_kib),
            mib(s.ring_mapped_kib),
            s.rings,
            mib(s.rss_kib.saturating_sub(s.ring_rss_kib)),
            mib(s.pss_kib),
            s.threads,
            q.cpu_percent,
            run.ready_seconds.unwrap_or(0.0),
            q.other_load_percent,
            run.machine_busy_before.unwrap_or(0.0),
        );
    }
    let names: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.tool == DensityTool::Service && !r.thread_names.is_empty())
        .map(|r| {
            let list: Vec<String> = r
                .thread_names
                .iter()
                .map(|(name, n)| format!("`{name}` ×{n}"))
                .collect();
            format!("- {} pods: {}", r.pods, list.join(", "))
        })
        .collect();
    if !names.is_empty() {
        let _ = writeln!(
            w,
            "\ncapture-api's threads by name (/proc/PID/task/*/comm) at the end of the quiet window:\n"
        );
        for line in names {
            let _ = writeln!(w, "{line}");
        }
    }
    let _ = writeln!(w);
}

fn busy_table(w: &mut String, report: &Report, args: &density::DensityArgs) {
    if !report.runs.iter().any(|r| r.busy.is_some()) {
        return;
    }
    let _ = writeln!(
        w,
        "## Busy: {} of N pods at a combined {} pps, 1400-byte frames, {} s\n",
        args.busy_pods, args.busy_rate, args.busy_seconds
    );
    let _ = writeln!(
        w,
        "| Pods | Capturer | Sender sent | Offered | Offered pps | Captured | Captured % | Kernel drops | Unaccounted | CPU % of a core | CPU ns/packet | RSS after MiB | Rings after MiB | Frames on quiet pods | Other load on CPU {CAPTURE_CPU} % |"
    );
    let _ = writeln!(
        w,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (run, b) in runs_with(report, |r| r.busy.as_ref()) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {:.0} | {} | {:.2} | {} | {} | {:.1} | {} | {:.1} | {:.1} | {} | {:.1} |",
            run.pods,
            run.tool.name(),
            b.sender.sent,
            b.offered,
            b.offered as f64 / b.sender.seconds.max(1e-9),
            b.captured,
            b.captured_percent(),
            b.kernel_drops,
            b.unaccounted(),
            100.0 * b.cpu.as_secs_f64() / b.window_seconds,
            ns_per_packet(b.cpu, b.captured),
            mib(b.sample.rss_kib),
            mib(b.sample.ring_mapped_kib),
            b.offered_on_quiet_pods,
            b.other_load_percent,
        );
    }
    let _ = writeln!(w);
}

fn max_table(w: &mut String, report: &Report, seconds: u64) {
    if report.max.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "## Max: one pod at the sender's maximum rate, 1400-byte frames, {seconds} s\n"
    );
    let _ = writeln!(
        w,
        "| Capturer | Sender sent | Offered | Offered pps | Captured | Captured % | Kernel drops | Unaccounted | CPU % of a core | CPU ns/packet | RSS MiB | Rings MiB | Machine busy before % | Other load on CPU {CAPTURE_CPU} % |"
    );
    let _ = writeln!(
        w,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in &report.max {
        if let Some(error) = &m.error {
            let _ = writeln!(
                w,
                "| {} | failed: {} ||||||||||||| ",
                m.tool,
                error.replace('|', "/").replace('\n', " ")
            );
            continue;
        }
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.0} | {} | {:.2} | {} | {} | {:.1} | {} | {:.1} | {:.1} | {:.0} | {:.1} |",
            m.tool,
            m.sender.sent,
            m.offered,
            m.offered as f64 / m.sender.seconds.max(1e-9),
            m.captured,
            percent(m.captured, m.offered),
            m.kernel_drops,
            m.offered as i64 - m.captured as i64 - m.kernel_drops as i64,
            100.0 * m.cpu.as_secs_f64() / m.seconds.max(1e-9),
            ns_per_packet(m.cpu, m.captured),
            mib(m.sample.rss_kib),
            mib(m.sample.ring_mapped_kib),
            m.machine_busy_before,
            m.other_load_percent,
        );
    }
    let _ = writeln!(w);
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

fn targets(w: &mut String, report: &Report, args: &density::DensityArgs) {
    let _ = writeln!(
        w,
        "## Against issue 11's targets (computed from the tables above)\n"
    );
    let _ = writeln!(w, "| Target | Measured | |\n|---|---|---|");
    let largest_quiet = report
        .runs
        .iter()
        .filter(|r| r.tool == DensityTool::Service && r.quiet.is_some())
        .max_by_key(|r| r.pods);
    match largest_quiet.and_then(|r| r.quiet.as_ref().map(|q| (r, q))) {
        Some((run, q)) => {
            let n = run.pods;
            let note = if n < 110 {
                " (fewer than 110 pods measured)"
            } else {
                ""
            };
            let rss = mib(q.sample.rss_kib);
            let _ = writeln!(
                w,
                "| {n} quiet pods: RSS ≤ 160 MiB, rings included{note} | {rss:.1} MiB ({:.1} MiB of rings) | {} |",
                mib(q.sample.ring_mapped_kib),
                verdict(rss <= 160.0)
            );
            let _ = writeln!(
                w,
                "| {n} quiet pods: ≤ 8 capture threads | {} threads in the whole process (see the names above) | {} |",
                q.sample.threads,
                if q.sample.threads <= 8 { "**met** (whole process)" } else { "see thread names: the target counts capture threads, this is every thread" }
            );
            let _ = writeln!(
                w,
                "| {n} quiet pods: CPU ≤ 1 % of a core | {:.2} % | {} |",
                q.cpu_percent,
                verdict(q.cpu_percent <= 1.0)
            );
        }
        None => {
            let _ = writeln!(w, "| quiet pods | not measured in this run | |");
        }
    }
    let busy: Vec<(&ToolRun, &BusyResult)> = runs_with(report, |r| r.busy.as_ref())
        .filter(|(r, _)| r.tool == DensityTool::Service)
        .collect();
    if busy.is_empty() {
        let _ = writeln!(w, "| busy pods | not measured in this run | |");
    }
    for (run, b) in busy {
        let _ = writeln!(
            w,
            "| {} busy of {} pods at {} pps: 100 % captured, 0 drops | {:.2} %, {} drops | {} |",
            args.busy_pods,
            run.pods,
            args.busy_rate,
            b.captured_percent(),
            b.kernel_drops,
            verdict(b.captured == b.offered && b.kernel_drops == 0)
        );
    }
    let service = report
        .max
        .iter()
        .find(|m| m.tool.contains("service") && m.error.is_none());
    let cli = report
        .max
        .iter()
        .find(|m| m.tool.contains("CLI") && m.error.is_none());
    match (service, cli) {
        (Some(s), Some(c)) => {
            let _ = writeln!(
                w,
                "| One pod at max: service = CLI (100 %, 0 drops) | service {:.2} %, {} drops; CLI {:.2} %, {} drops | {} |",
                percent(s.captured, s.offered),
                s.kernel_drops,
                percent(c.captured, c.offered),
                c.kernel_drops,
                verdict(s.captured == s.offered && s.kernel_drops == 0)
            );
        }
        _ => {
            let _ = writeln!(w, "| One pod at max | not measured in this run | |");
        }
    }
    let _ = writeln!(
        w,
        "\nWhere a busy or max-rate target is missed, bench/DENSITY-NOTES.md says where the drops \
         happen and why (measured apart from this report, with the commands to repeat it).\n"
    );
}

fn warnings(w: &mut String, report: &Report) {
    let mut lines = Vec::new();
    for run in &report.runs {
        if !run.warnings.is_empty() {
            lines.push((format!("{} pods", run.pods), &run.warnings));
        }
    }
    for m in &report.max {
        if !m.warnings.is_empty() {
            lines.push(("max rate".to_string(), &m.warnings));
        }
    }
    if lines.is_empty() {
        let _ = writeln!(w, "capture-api logged no warnings or errors in this run.\n");
        return;
    }
    let _ = writeln!(
        w,
        "## capture-api's warnings and errors (first 3 per run)\n"
    );
    for (what, list) in lines {
        let _ = writeln!(w, "- {what}: {} line(s)", list.len());
        for line in list.iter().take(3) {
            let _ = writeln!(w, "  - `{}`", line.replace('`', "'"));
        }
    }
    let _ = writeln!(w);
}

fn commands(w: &mut String, report: &Report, context: &Setup) {
    let args = &context.args;
    let _ = writeln!(w, "## Commands\n");
    let _ = writeln!(
        w,
        "- capture-api: `taskset -c {CAPTURE_CPU} {} --standalone --listen 127.0.0.1:0 --data-dir DIR \
         --ring-memory {} --quota 48GiB` (the quota only so the max-rate scenario's ~14 GB fit), then \
         `POST /api/v1/namespaces/default/captures` with \
         `{{\"metadata\":{{\"name\":\"density-N\"}},\"spec\":{{\"duration\":\"10m\",\"podSelector\":{{\"matchExpressions\":[{{\"key\":\"podcap.io/netns\",\"operator\":\"In\",\"values\":[…]}}]}}}}}}`, \
         `GET …/captures/density-N` until every target is `Capturing`, `POST …/density-N/stop` at the end",
        context.capture_api.display(),
        args.ring_memory
    );
    let _ = writeln!(w, "- tcpdump, per pod: `{}`", density::tcpdump_command());
    for (what, command) in &report.commands {
        let _ = writeln!(w, "- {what}: `{command}`");
    }
    let _ = writeln!(
        w,
        "- sender (busy): `taskset -c 0 podcap-bench send --netns POD1 … --netns POD{} --dst 10.244.251.1 --port 9000 --size 1400 --rate {} --duration {}`; \
         max: the same with one `--netns` and `--rate max --duration {}`\n",
        args.busy_pods, args.busy_rate, args.busy_seconds, args.max_seconds
    );
}

fn errors(w: &mut String, report: &Report) {
    let failed: Vec<String> = report
        .runs
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("- {} pods / {}: {e}", r.pods, r.tool.name()))
        })
        .chain(report.max.iter().filter_map(|m| {
            m.error
                .as_ref()
                .map(|e| format!("- max rate / {}: {e}", m.tool))
        }))
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(w, "## Failed runs\n");
    for line in failed {
        let _ = writeln!(w, "{line}");
    }
    let _ = writeln!(w);
}
