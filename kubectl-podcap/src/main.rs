//! `kubectl podcap` (also `podcap`): podcap's command line. It speaks only the REST API, so it
//! works against `capture-api --standalone` (`--server`, `--token`) and in a cluster (the
//! kubeconfig's context, namespace and credentials; see `kubeconfig.rs`). Standalone users can
//! keep `server` and `token`/`token_file` in a config file instead (see `config.rs`).

#![forbid(unsafe_code)]

mod api;
mod commands;
mod complete;
mod config;
mod kubeconfig;
mod render;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// On-demand packet capture for Kubernetes pods.
#[derive(Parser, Debug)]
#[command(name = "kubectl-podcap", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The podcap API (e.g. http://127.0.0.1:8080 for `capture-api --standalone`, or a
    /// port-forward to the capture-api Service); without it the kubeconfig decides.
    #[arg(long, global = true, env = "PODCAP_SERVER")]
    pub server: Option<String>,
    /// Bearer token for the API (standalone: `podcap-data/admin-token`); in Kubernetes mode the
    /// kubeconfig user's token is used when left out.
    #[arg(long, global = true, env = "PODCAP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: reach the API through `kubectl port-forward` to the capture-api Service
    /// instead of the API server's service proxy (which needs `get services/proxy` on it).
    #[arg(long, global = true)]
    pub port_forward: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Wide,
    Name,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcapng,
    Pcap,
}

#[derive(Args, Debug, Clone)]
pub struct Selection {
    /// Label selector of the pods, as kubectl takes it: `app=web`, `tier in (a,b)`, `!canary`.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// A filter rule, repeatable: `tcp:443`, `udp:53@10.96.0.10`, `tcp:8000-8080`, `icmp`.
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// A pcap-filter(7) expression ANDed with the filters, e.g. `tcp[tcpflags] & tcp-syn != 0`.
    #[arg(long)]
    pub bpf: Option<String>,
    /// Stop after this many bytes of packet data, e.g. `1GiB`.
    #[arg(long)]
    pub max_size: Option<String>,
    /// Where to capture: `host-veth` (default), the pod's host-side interface, or `pod-netns`,
    /// its own eth0 inside its network namespace, which also sees what eBPF datapaths deliver
    /// straight to the pod (in a cluster the agent needs the netns-fallback overlay).
    #[arg(long, value_enum)]
    pub capture_point: Option<CapturePointArg>,
}

/// `--capture-point`, as `spec.capturePoint`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapturePointArg {
    HostVeth,
    PodNetns,
}

impl From<CapturePointArg> for capture_spec::CapturePoint {
    fn from(arg: CapturePointArg) -> Self {
        match arg {
            CapturePointArg::HostVeth => capture_spec::CapturePoint::HostVeth,
            CapturePointArg::PodNetns => capture_spec::CapturePoint::PodNetns,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a capture on the pods a selector matches.
    Capture {
        /// The capture's name (generated when left out).
        name: Option<String>,
        #[command(flatten)]
        selection: Selection,
        /// How long to capture, e.g. `30s`, `10m`.
        #[arg(long = "for", conflicts_with = "until")]
        duration: Option<String>,
        /// When to stop: RFC 3339 time, or a duration from now (`10m`).
        #[arg(long)]
        until: Option<String>,
        /// When to start: RFC 3339 time, or a duration from now.
        #[arg(long)]
        at: Option<String>,
        /// Wait until the capture ends, showing progress on stderr; fails if it failed.
        #[arg(long)]
        wait: bool,
        /// Print the created capture as json or yaml, or only its name.
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// List captures, or show one.
    #[command(alias = "list", alias = "ls")]
    Get {
        name: Option<String>,
        /// json, yaml, wide or name.
        #[arg(short = 'o', long)]
        output: Option<Output>,
        /// Keep watching; with a NAME, until the capture ends.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// A capture in detail: targets per pod, drops, files, share links, the events of its life.
    Describe { name: String },
    /// Stop a capture early; its files are kept.
    Stop { name: String },
    /// Delete a capture and its files.
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Download a capture: every pod merged into one time-ordered file.
    Download {
        name: String,
        /// Where to write (`-` for stdout); default NAME.pcapng or NAME.pcap.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "pcapng")]
        format: Format,
        /// Only this file (an ID from `describe`), as written; resumes a partial download.
        #[arg(long)]
        file: Option<String>,
    },
    /// Capture and stream pcapng to stdout (`| wireshark -k -i -`) or, with `--wireshark`, into
    /// a Wireshark it starts; the capture is stopped and deleted when the stream ends or on Ctrl-C.
    Live {
        #[command(flatten)]
        selection: Selection,
        /// Start `wireshark -k -i -` (found on PATH) and feed it the stream instead of stdout.
        #[arg(long)]
        wireshark: bool,
        /// How long at most.
        #[arg(long = "for", default_value = "5m")]
        duration: String,
    },
    /// Create a share link that downloads the capture without a token.
    Share {
        name: String,
        /// How long the link works (1s to 7d).
        #[arg(long, default_value = "24h")]
        expires: String,
    },
    /// List a capture's share links.
    Shares { name: String },
    /// Revoke a share link.
    Revoke { name: String, id: String },
    /// Create a schedule: a capture of `--for` every time the cron expression fires.
    Schedule {
        name: String,
        /// CronJob syntax (`0 2 * * *`), 6 fields with seconds first, or `@daily`.
        #[arg(long)]
        cron: String,
        /// IANA time zone of the cron expression, e.g. `Europe/Berlin` (default UTC).
        #[arg(long)]
        tz: Option<String>,
        #[command(flatten)]
        selection: Selection,
        /// How long each run captures.
        #[arg(long = "for")]
        duration: String,
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// List schedules.
    Schedules {
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// Suspend a schedule: no new runs start.
    Suspend { name: String },
    /// Resume a suspended schedule.
    Resume { name: String },
    /// Delete a schedule (its captures are kept).
    Unschedule { name: String },
    /// Shell completion script: `source <(kubectl podcap completion bash)`.
    Completion { shell: clap_complete::Shell },
    /// For the completion scripts: `__complete captures` prints the capture names, one a line.
    #[command(name = "__complete", hide = true)]
    Complete {
        #[arg(value_parser = ["captures"])]
        what: String,
    },
}

/// `kubectl podcap` when run as the kubectl plugin, `podcap` otherwise.
fn bin_name() -> String {
    let arg0 = std::env::args_os().next().map(PathBuf::from);
    let base = arg0
        .as_deref()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("kubectl-podcap");
    if base.starts_with("kubectl-podcap") || base.starts_with("kubectl_podcap") {
        "kubectl podcap".into()
    } else {
        "podcap".into()
    }
}

fn main() -> ExitCode {
    let name = bin_name();
    let command = Cli::command().bin_name(name.clone());
    let matches = match command.try_get_matches() {
        Ok(matches) => matches,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(1);
        }
    };
    if let Command::Completion { shell } = cli.command {
        let mut stdout = std::io::stdout();
        // The executable's own name: a shell completes a command, not `kubectl podcap`.
        let bin = if name == "podcap" {
            "podcap"
        } else {
            "kubectl-podcap"
        };
        let _ = stdout.write_all(complete::script(shell, bin).as_bytes());
        let _ = stdout.flush();
        return ExitCode::SUCCESS;
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
