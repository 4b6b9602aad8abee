//! Per-process and machine facts the benchmark measures: CPU time of reaped
//! children, CPU time and peak RSS of a live process from /proc, and the load
//! average (other work on the machine skews results, so the report shows it).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::{sysconf, SysconfVar};

/// user + system CPU time of all reaped children of this process. A child's
/// time is added when it is reaped, so the delta around reaping one child is
/// that child's CPU time over its whole life, including its final drain.
pub fn reaped_children_cpu() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let to_duration = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
    };
    Ok(to_duration(usage.user_time()) + to_duration(usage.system_time()))
}

/// user + system CPU time of a live process (all its threads) from
/// /proc/PID/stat, in clock-tick resolution (usually 10 ms).
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after it are plain.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 with the name as field 2.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("short /proc/{pid}/stat");
    };
    ticks_to_duration(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

fn ticks_to_duration(ticks: u64) -> Result<Duration> {
    let ticks_per_second = sysconf(SysconfVar::CLK_TCK)
        .context("sysconf(CLK_TCK)")?
        .unwrap_or(100) as u64;
    Ok(Duration::from_nanos(
        ticks * 1_000_000_000 / ticks_per_second,
    ))
}

/// Peak resident set size (VmHWM) of a live process, in KiB; `None` once the
/// process has exited (its /proc entry is gone or has no memory any more).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPUs online on the machine (not just those this process may run on: the
/// driver pins itself to CPU 0, which `nproc` and `available_parallelism` see).
pub fn online_cpus() -> Result<usize> {
    let cpus = sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .context("sysconf(_NPROCESSORS_ONLN)")?
        .context("CPU count unknown")?;
    Ok(cpus as usize)
}

/// The CPU's model name from /proc/cpuinfo ("unknown" when it has none).
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The 1-minute load average.
pub fn load_average() -> Result<f64> {
    let text = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    text.split_whitespace()
        .next()
        .context("empty /proc/loadavg")?
        .parse()
        .context("parsing /proc/loadavg")
}

/// Clock ticks a CPU (or, with `None`, all CPUs together) spent busy and in
/// total, from /proc/stat.
#[derive(Clone, Copy, Debug)]
pub struct CpuTicks {
    pub busy: u64,
    pub total: u64,
}

impl CpuTicks {
    /// Busy share between `earlier` and `self`, in percent.
    pub fn busy_percent_since(&self, earlier: &CpuTicks) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }

    /// Busy time between `earlier` and `self`.
    pub fn busy_time_since(&self, earlier: &CpuTicks) -> Result<Duration> {
        ticks_to_duration(self.busy.saturating_sub(earlier.busy))
    }
}

/// Busy and total ticks of one CPU, or of all of them with `None`.
pub fn cpu_ticks(cpu: Option<usize>) -> Result<CpuTicks> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let label = cpu.map_or("cpu".to_string(), |n| format!("cpu{n}"));
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(label.as_str()))
        .with_context(|| format!("no {label} line in /proc/stat"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already
    // included in user and nice).
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    Ok(CpuTicks {
        busy,
        total: busy + idle,
    })
}

/// Whether a live process has a file under `dir` open with O_DIRECT (from
/// /proc/PID/fdinfo); `None` if it has no file there open (or has exited).
pub fn writes_with_o_direct(pid: u32, dir: &Path) -> Option<bool> {
    let o_direct = nix::fcntl::OFlag::O_DIRECT.bits() as u32;
    let mut found = None;
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        if !target.starts_with(dir) {
            continue;
        }
        let fd = entry.file_name();
        let info =
            fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy())).ok()?;
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .and_then(|octal| u32::from_str_radix(octal.trim(), 8).ok())?;
        found = Some(found.unwrap_or(false) || flags & o_direct != 0);
    }
    found
}

/// Memory, threads and CPU time of a live process at one moment, as the
/// density benchmark reports them.
#[derive(Clone, Debug, Default)]
pub struct ProcessSample {
    /// VmRSS: every page mapped into the process, packet rings included.
    pub rss_kib: u64,
    /// Proportional set size (smaps_rollup): shared pages (libraries) split
    /// among the processes sharing them, so a set of processes is not
    /// charged once per process for the same library.
    pub pss_kib: u64,
    /// Threads of the process.
    pub threads: u64,
    /// user + system CPU time over the process's life so far.
    pub cpu: Duration,
    /// Packet rings mapped into the process: the size of its `socket:[...]`
    /// mappings (a TPACKET ring is the only socket one can mmap).
    pub ring_mapped_kib: u64,
    /// Resident pages of those mappings (the kernel inserts every page of a
    /// ring at mmap time, so this equals `ring_mapped_kib`).
    pub ring_rss_kib: u64,
    /// How many rings are mapped.
    pub rings: u64,
}

impl ProcessSample {
    /// Adds another process's sample (for a set of processes, e.g. one
    /// tcpdump per pod).
    pub fn add(&mut self, other: &ProcessSample) {
        self.rss_kib += other.rss_kib;
        self.pss_kib += other.pss_kib;
        self.threads += other.threads;
        self.cpu += other.cpu;
        self.ring_mapped_kib += other.ring_mapped_kib;
        self.ring_rss_kib += other.ring_rss_kib;
        self.rings += other.rings;
    }
}

/// Samples a live process from /proc/PID/{status,stat,smaps}.
pub fn sample_process(pid: u32) -> Result<ProcessSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    let rings = ring_mappings(&smaps);
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let pss_kib = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no Pss in /proc/{pid}/smaps_rollup"))?;
    Ok(ProcessSample {
        rss_kib: field("VmRSS:")?,
        pss_kib,
        threads: field("Threads:")?,
        cpu: process_cpu(pid)?,
        ring_mapped_kib: rings.mapped_kib,
        ring_rss_kib: rings.rss_kib,
        rings: rings.count,
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
struct RingMappings {
    count: u64,
    mapped_kib: u64,
    rss_kib: u64,
}

/// Sums the `socket:[...]` mappings of an smaps text.
fn ring_mappings(smaps: &str) -> RingMappings {
    let mut found = RingMappings::default();
    let mut in_ring = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            // A mapping's header line: range perms offset dev inode [path].
            in_ring = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|path| path.starts_with("socket:["));
            if in_ring {
                found.count += 1;
            }
            continue;
        }
        if !in_ring {
            continue;
        }
        let mut value = || {
            words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Size:" => found.mapped_kib += value(),
            "Rss:" => found.rss_kib += value(),
            _ => {}
        }
    }
    found
}

/// Names of a process's threads (from /proc/PID/task/*/comm) with how many
/// threads carry each, most frequent first.
pub fn thread_names(pid: u32) -> Vec<(String, u64)> {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            *counts.entry(name.trim().to_string()).or_default() += 1;
        }
    }
    let mut names: Vec<(String, u64)> = counts.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    names
}

#[cfg(test)]
mod tests {
    use super::ring_mappings;

    #[test]
    fn sums_socket_mappings_only() {
        let smaps = "\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  12 kB
7efecd6dc000-7efecd7dc000 rw-s 00000000 00:09 161977                     socket:[161977]
Size:               1024 kB
KernelPageSize:        4 kB
Rss:                1024 kB
7efecd7dc000-7efecd7dd000 r--p 00000000 fd:00 1234                       /usr/lib/x.so
Size:                  4 kB
Rss:                   4 kB
";
        let found = ring_mappings(smaps);
        assert_eq!(
            (found.count, found.mapped_kib, found.rss_kib),
            (1, 1024, 1024)
        );
    }
}
