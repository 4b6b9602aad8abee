//! `capture-agent run`: the node agent in a Kubernetes cluster (see `capture_agent::cluster`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
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
    /// Address of the file endpoint (for the API only; plain HTTP).
    #[arg(long, default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// The service account (namespace:name) whose token may download files.
    #[arg(long, default_value = "podcap-system:capture-api")]
    api_service_account: String,
    /// Also find pod interfaces through the pod's network namespace (needs SYS_ADMIN, hostPID).
    #[arg(long)]
    netns_fallback: bool,
    /// Window of a capture with neither endTime nor duration (e.g. 24h, 90m).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    max_window: Duration,
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
        api_service_account: args.api_service_account,
        netns_fallback: args.netns_fallback,
        max_window: args.max_window,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cluster::run(config))?;
    Ok(ExitCode::SUCCESS)
}
