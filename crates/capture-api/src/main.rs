//! The `capture-api` binary. `capture-api --standalone` is podcap on one machine: the API, the
//! SQLite store in the data directory, and the agent in-process capturing on network-namespace
//! pods. Errors at this edge are reported with anyhow; logs go to stderr through tracing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use capture_api::runner::Runner;
use capture_api::server::{self, AppState, Settings};
use capture_api::store::{SqliteStore, Store};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "capture-api", version, about = "podcap's API server")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run on this machine alone: network namespaces are the pods, SQLite is the store.
    #[arg(long)]
    standalone: bool,
    /// Address to listen on. Packet data is sensitive: the default is loopback only.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the store, the capture files and the first admin token live.
    #[arg(long, default_value = "./podcap-data", global = true)]
    data_dir: PathBuf,
    /// Longest capture window accepted (and the window of a capture with no end).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    max_window: Duration,
    /// Most space all capture files may use together; captures stop when it is reached.
    #[arg(long, default_value = "10GiB")]
    quota: bytesize::ByteSize,
    /// Captures also stop when the data directory's disk has less free space than this.
    #[arg(long, default_value = "512MiB")]
    min_free: bytesize::ByteSize,
    /// Pods' namespaces, names and labels (YAML; see the pods module), re-read at every discovery.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Finished captures' files are deleted this long after they finished.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    retention: Duration,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage API tokens in the standalone store.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// viewer (read and download), operator (also create, stop, delete, share) or admin.
        #[arg(long)]
        role: capture_api::auth::Role,
        /// Limit the token to these namespaces (repeat); not allowed for admin tokens.
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        #[arg(long, default_value = "created with capture-api token create")]
        description: String,
    },
}

fn open_store(data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    Ok(Arc::new(
        SqliteStore::open(&data_dir.join("podcap.db"))
            .with_context(|| format!("opening the store in {}", data_dir.display()))?,
    ))
}

fn run_token_command(command: TokenCommand, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let TokenCommand::Create {
        role,
        namespaces,
        description,
    } = command;
    if role == capture_api::auth::Role::Admin && !namespaces.is_empty() {
        bail!("admin tokens cover every namespace: drop --namespace, or use --role operator");
    }
    for namespace in &namespaces {
        capture_spec::names::validate_namespace(namespace)
            .with_context(|| format!("--namespace {namespace}"))?;
    }
    let store = open_store(data_dir)?;
    let scope = (!namespaces.is_empty()).then_some(namespaces);
    let secret = capture_api::auth::create_token(store.as_ref(), role, scope, &description)?;
    println!("{secret}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODCAP_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Some(Command::Token(command)) = args.command {
        return run_token_command(command, &args.data_dir);
    }
    if !args.standalone {
        bail!("only --standalone is available so far: run `capture-api --standalone`");
    }
    if let Some(path) = &args.inventory {
        capture_api::pods::read_inventory(path)?;
        capture_api::pods::use_inventory(path.clone());
    }
    let store = open_store(&args.data_dir)?;
    if let Some(token) = capture_api::auth::bootstrap_admin(store.as_ref(), &args.data_dir)? {
        println!(
            "podcap: first start; admin token (also in {}/admin-token):",
            args.data_dir.display()
        );
        println!("{token}");
    }
    let storage = capture_api::runner::StorageLimits {
        quota_bytes: args.quota.as_u64(),
        min_free_bytes: args.min_free.as_u64(),
        retention: args.retention,
    };
    let runner = Runner::new(store.clone(), args.data_dir.clone(), storage);
    tokio::spawn(runner.clone().run_forever());
    tokio::spawn(
        capture_api::schedules::Controller::new(store.clone(), runner.clone(), args.max_window)
            .run_forever(),
    );
    let settings = Arc::new(Settings {
        data_dir: args.data_dir.clone(),
        max_window: args.max_window,
    });
    let state = AppState {
        store,
        runner,
        settings,
        tickets: Arc::default(),
    };
    eprintln!("podcap API listening on http://{}", args.listen);
    server::serve(state, args.listen, shutdown_signal()).await
}
