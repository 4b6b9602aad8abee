//! The `capture-agent` binary: the standalone capture command (usable like tcpdump) and `run`,
//! the node agent of a cluster.
//! Errors are reported with anyhow at this edge; logs go to stderr through tracing.

// As in the library: no `unsafe` here (the AF_PACKET module, the one exception, is in the library).
#![deny(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODCAP_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("capture-agent: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
