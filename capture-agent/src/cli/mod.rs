//! Command-line interface: argument parsing and the commands. `capture` is the agent used alone,
//! like tcpdump (`capture-agent capture --interface IF --filter tcp:80,443 --duration 10s
//! --format pcapng|pcap --output FILE ...`, the contract the README's "capture command" section
//! documents); `run` is the node agent in a cluster.

mod capture;
mod run;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "capture-agent",
    version,
    about = "podcap's node agent: packet capture into pcapng/pcap files"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture packets on one or more interfaces into a file, like tcpdump -w.
    Capture(capture::CaptureArgs),
    /// Run as the node agent of a Kubernetes cluster: capture this node's pods for the
    /// PacketCaptures that select them, and serve the files to the API.
    Run(run::RunArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Capture(args) => capture::run(args),
        Command::Run(args) => run::run(args),
    }
}
