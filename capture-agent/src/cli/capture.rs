//! `capture-agent capture`: turns command-line flags into a capture, runs it until Ctrl-C,
//! SIGTERM, the duration or a limit, and prints what was captured. With `--netns PATH` the
//! interfaces are those of another network namespace (a pod's), captured from inside it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytesize::ByteSize;
use capture_spec::{
    CaptureLimits, Filter, LimitsError, OutputFormat, Rotation, DEFAULT_SNAP_LENGTH,
};
use clap::Args;

use capture_agent::afpacket::RingConfig;
use capture_agent::bpf::{self, ExpressionError};
use capture_agent::{Capture, CaptureConfig, EndReason, InterfaceSpec, OutputPlan, StopSignal};

use super::summary;

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Interface to capture on (repeat for several; all go into one file).
    #[arg(short, long = "interface", value_name = "IF", required = true)]
    interfaces: Vec<String>,
    /// Capture inside the network namespace at PATH (e.g. /run/netns/NAME, /proc/PID/ns/net):
    /// every --interface is one of that namespace's, and directions are as it sees them (on a
    /// pod's eth0, what the pod sends is outbound). Needs CAP_SYS_ADMIN to enter it.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
    /// Keep only matching packets: PROTO[:PORTS][@PEERS], e.g. tcp:80,443,8000-8100, udp:53, icmp,
    /// icmpv6, sctp:9, udplite:5000, 47, any:53. PEERS are IPv4/IPv6 addresses or CIDRs that the
    /// source or destination must be in: udp:53@10.96.0.10, tcp:443,8443@10.0.0.0/8,fd00::/8, or
    /// @192.168.4.0/24 for all traffic with them. Repeat to OR rules. No filter keeps everything.
    #[arg(short, long = "filter", value_name = "RULE")]
    filters: Vec<String>,
    /// Also keep only packets matching this pcap-filter(7) expression, as tcpdump takes it
    /// (e.g. 'tcp[tcpflags] & tcp-syn != 0'), ANDed with --filter. Compiled by libpcap in this
    /// process; at most 1024 characters on one line.
    #[arg(long = "bpf", value_name = "EXPR")]
    bpf_filter: Option<String>,
    /// Stop after this long, e.g. 10s, 5m, 1h30m.
    #[arg(short, long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after exactly N packets.
    #[arg(short = 'c', long, value_name = "N")]
    max_packets: Option<u64>,
    /// Stop before the captured packet bytes would pass N (e.g. 100MB, 1GiB).
    #[arg(long, value_name = "N")]
    max_bytes: Option<ByteSize>,
    /// Bytes kept of each packet (default 262144: whole GRO frames on veths).
    #[arg(short, long, default_value_t = DEFAULT_SNAP_LENGTH)]
    snaplen: u32,
    /// File format.
    #[arg(long, default_value = "pcapng")]
    format: OutputFormat,
    /// Output file; with rotation, files are named FILE-000001.EXT, FILE-000002.EXT, ...
    #[arg(short = 'w', long, value_name = "FILE")]
    output: PathBuf,
    /// Start a new file before one would grow past this size (e.g. 100MB).
    #[arg(long, value_name = "SIZE")]
    rotate_bytes: Option<ByteSize>,
    /// Start a new file after this long (e.g. 1h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    rotate_every: Option<Duration>,
    /// Keep at most N files, deleting the oldest (a ring of files; needs rotation).
    #[arg(long, value_name = "N")]
    max_files: Option<u32>,
    /// Kernel ring size per interface.
    #[arg(long, default_value = "64MiB")]
    ring_size: ByteSize,
    /// Ring block size (power of two; must exceed the snap length to keep the largest frames whole).
    #[arg(long, default_value = "1MiB")]
    block_size: ByteSize,
    /// How long the kernel fills a block before handing it over at low packet rates.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    block_timeout: Duration,
    /// Describe an interface in the pcapng file: IF=TEXT, e.g. "vethab12=shop/web-1 on node-a".
    #[arg(long = "describe", value_name = "IF=TEXT")]
    descriptions: Vec<String>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn interface_specs(args: &CaptureArgs) -> anyhow::Result<Vec<InterfaceSpec>> {
    let mut specs: Vec<InterfaceSpec> = args
        .interfaces
        .iter()
        .map(|name| InterfaceSpec {
            netns: args.netns.clone(),
            ..InterfaceSpec::local(name.clone(), String::new())
        })
        .collect();
    for text in &args.descriptions {
        let Some((name, description)) = text.split_once('=') else {
            bail!("--describe {text:?}: write IF=TEXT, e.g. --describe \"veth1=shop/web-1 on node-a\"");
        };
        let Some(spec) = specs.iter_mut().find(|s| s.name == name) else {
            bail!("--describe names {name:?}, which is not one of the --interface values");
        };
        spec.description = description.to_string();
    }
    Ok(specs)
}

/// The limits' own errors name API fields (`rotation.maxFiles`); on the command line the user
/// needs the flag to change instead.
fn limits_error_for_cli(error: &LimitsError) -> String {
    match error {
        LimitsError::SnapLength(n) => format!("--snaplen {n} is out of range: use 1-262144 (the default keeps whole GRO frames)"),
        LimitsError::Zero(field) => {
            let flag = match *field {
                "maxPackets" => "--max-packets",
                "maxBytes" => "--max-bytes",
                "rotation.maxFileSeconds" => "--rotate-every",
                "rotation.maxFiles" => "--max-files",
                other => other,
            };
            format!("{flag} is 0: leave it out for no limit, or give a positive value")
        }
        LimitsError::FileTooSmall(n) => format!("--rotate-bytes {n} is too small: use at least 4KiB"),
        LimitsError::MaxFilesWithoutRotation => {
            "--max-files needs --rotate-bytes or --rotate-every: without rotation there is only one file".into()
        }
        other => other.to_string(),
    }
}

fn to_u64(size: ByteSize) -> u64 {
    size.as_u64()
}

pub fn run(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    if args
        .rotate_every
        .is_some_and(|d| d < Duration::from_secs(1))
    {
        bail!("--rotate-every must be at least 1s: files are rotated in whole seconds");
    }
    if let Some(netns) = &args.netns {
        // Checked here so that the message names the flag; the ring opens it again.
        std::fs::File::open(netns).with_context(|| {
            format!(
                "--netns {}: cannot open the network namespace (ip netns list shows the names \
                 under /run/netns; a process's is /proc/PID/ns/net)",
                netns.display()
            )
        })?;
    }
    let filter = Filter::parse_cli(&args.filters).context("bad --filter")?;
    let limits = CaptureLimits {
        snap_length: args.snaplen,
        max_bytes: args.max_bytes.map(to_u64),
        max_packets: args.max_packets,
        rotation: Rotation {
            max_file_bytes: args.rotate_bytes.map(to_u64),
            max_file_seconds: args.rotate_every.map(|d| d.as_secs()),
            max_files: args.max_files,
        },
    };
    limits
        .validate()
        .map_err(|e| anyhow::anyhow!(limits_error_for_cli(&e)))?;
    let block_size =
        u32::try_from(args.block_size.as_u64()).context("--block-size is too large")?;
    let ring = RingConfig::with_size(args.ring_size.as_u64(), block_size, args.block_timeout)
        .context("bad --ring-size/--block-size/--block-timeout")?;
    // Checked here so that the message names the flag; the engine compiles it again.
    bpf::compile_with_expression(&filter, args.bpf_filter.as_deref(), limits.snap_length).map_err(
        |e| match e {
            ExpressionError::Rules(e) => anyhow::anyhow!("bad --filter: {e}"),
            e => anyhow::anyhow!("bad --bpf: {e}"),
        },
    )?;
    let config = CaptureConfig {
        budget: None,
        interfaces: interface_specs(&args)?,
        filter,
        bpf_filter: args.bpf_filter.clone(),
        limits,
        duration: args.duration,
        format: args.format,
        output: OutputPlan::SingleFile(args.output.clone()),
        ring,
        rings: None,
    };
    let (stop, handle) = StopSignal::new().context("creating the stop signal")?;
    stop.stop_on_signals(&handle)
        .context("installing SIGINT/SIGTERM handlers")?;
    let capture = Capture::open(config)?;
    // Tests and scripts wait for this line before sending traffic: every socket is bound now.
    eprintln!("capturing on {}", capture.interface_names().join(", "));
    let report = capture.run(&stop)?;
    summary::print(&report, args.json)?;
    Ok(match report.end {
        EndReason::Failed(_) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
