//! `capture-agent run`: the node agent in a Kubernetes cluster (see `capture_agent::cluster`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use capture_agent::cluster::{self, AgentConfig};
use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long)]
    node: String,
    /// Capture files go to DATA_DIR/captures/{capture uid}/.
    #[arg(long, default_value = "/var/lib/podcap")]
    data_dir: PathBuf,
    /// Address of the file endpoint (for the API only; HTTPS with a certificate from the podcap
    /// agent CA, see --ca-secret).
    #[arg(long, default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// The Secret (NAMESPACE/NAME) holding the podcap agent CA, which capture-api makes at its
    /// first start; the agent issues its endpoint's certificate from it.
    #[arg(long, default_value = "podcap-system/podcap-agent-ca", value_parser = cluster::tls::parse_secret_ref)]
    ca_secret: (String, String),
    /// Another name for this agent's certificate (repeat): an IP address or DNS name the API
    /// may dial. The node's name and its addresses from the Node object are always in it.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_names: Vec<String>,
    /// The service account (namespace:name) whose token may download files.
    #[arg(long, default_value = "podcap-system:capture-api")]
    api_service_account: String,
    /// Also find pod interfaces through the pod's network namespace (needs SYS_ADMIN, hostPID).
    #[arg(long)]
    netns_fallback: bool,
    /// Window of a capture with neither endTime nor duration (e.g. 24h, 90m).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    max_window: Duration,
    /// Kernel memory the packet rings of all captures on this node may take together (e.g.
    /// 512MiB). Rings are not charged to the pod's memory cgroup, so the DaemonSet's memory
    /// request should include it. Each pod interface starts with a 1 MiB ring; busy ones grow
    /// within this budget.
    #[arg(long, default_value = "512MiB")]
    ring_memory: ByteSize,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.api_service_account
            .split_once(':')
            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty()),
        "--api-service-account must be namespace:name, e.g. podcap-system:capture-api"
    );
    let config = AgentConfig {
        node: args.node,
        data_dir: args.data_dir,
        listen: args.listen,
        ca_secret: args.ca_secret,
        tls_names: args.tls_names,
        api_service_account: args.api_service_account,
        netns_fallback: args.netns_fallback,
        max_window: args.max_window,
        ring_memory: args.ring_memory.as_u64(),
    };
    // The agent's async work (watches, status writes, the file endpoint) is light; two workers
    // serve it on any node, where one per core would be dozens of idle threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cluster::run(config))?;
    Ok(ExitCode::SUCCESS)
}
