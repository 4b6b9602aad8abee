//! The `capture-api` binary. `capture-api --standalone` is podcap on one machine: the API, the
//! SQLite store in the data directory, and the agent in-process capturing on network-namespace
//! pods. `capture-api --kubernetes` is the API in a cluster: the CRDs are the store, the node
//! agents capture (see `capture_api::kube`), and the kube client comes from KUBECONFIG or the
//! in-cluster service account. Errors at this edge are reported with anyhow; logs go to stderr
//! through tracing.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use capture_api::runner::Runner;
use capture_api::server;
use capture_api::standalone::Standalone;
use capture_api::state::{AppState, Settings};
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
    /// Run in a Kubernetes cluster: PacketCapture objects are the store, node agents capture,
    /// TokenReview and SubjectAccessReview decide who may do what. The client comes from
    /// KUBECONFIG or the in-cluster service account.
    #[arg(long, conflicts_with = "standalone")]
    kubernetes: bool,
    /// Kubernetes mode: the capture agent of NODE is at URL (repeat), e.g.
    /// `--agent node-a=https://10.0.0.5:9090`; other nodes' agents are found at their
    /// InternalIP and --agent-port. Agents serve HTTPS only, with a certificate from the podcap
    /// agent CA (--agent-ca-secret) that names the URL's host.
    #[arg(long = "agent", value_name = "NODE=URL", value_parser = parse_agent)]
    agents: Vec<(String, String)>,
    /// Kubernetes mode: the port of the agents' file endpoint on each node.
    #[arg(long, default_value_t = 9090)]
    agent_port: u16,
    /// Kubernetes mode: the Secret (NAMESPACE/NAME) of the podcap agent CA, made at the first
    /// start. The agents' endpoint certificates are issued from it, and the API trusts no
    /// other certificate when it fetches from an agent.
    #[arg(long, default_value = "podcap-system/podcap-agent-ca", value_parser = capture_agent::cluster::tls::parse_secret_ref)]
    agent_ca_secret: (String, String),
    /// Kubernetes mode: where share links are kept (as Secrets): the API's own namespace.
    #[arg(long, default_value = "podcap-system")]
    shares_namespace: String,
    /// Kubernetes mode: a capture that no node reported on this long after its start fails.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    report_timeout: Duration,
    /// Kubernetes mode: how long after its window a capture waits for every node to report
    /// its end before it is finished anyway.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    finish_grace: Duration,
    /// Address to listen on. Packet data is sensitive: the default is loopback only, and any
    /// other address wants --tls-cert. Port 0 lets the kernel pick one; the address bound is
    /// printed on stderr ("listening on http://ADDR", or https://).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the store, the capture files and the first admin token live (standalone); scratch
    /// space only in Kubernetes mode.
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
    /// Standalone: kernel memory the packet rings of all captures may take together. Each pod
    /// interface starts with a 1 MiB ring; busy ones grow within this budget.
    #[arg(long, default_value = "512MiB")]
    ring_memory: bytesize::ByteSize,
    /// Pods' namespaces, names and labels (YAML; see the pods module), re-read at every discovery.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key). The files are read again
    /// when they change, so a renewed certificate is served without a restart.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, unencrypted).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
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

fn parse_agent(text: &str) -> Result<(String, String), String> {
    let (node, url) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NODE=URL, e.g. node-a=https://10.0.0.5:9090"))?;
    if node.is_empty() || !url.starts_with("https://") {
        return Err(format!(
            "{text:?} is not NODE=URL with an https:// URL: agents serve packets over HTTPS only"
        ));
    }
    Ok((node.to_string(), url.to_string()))
}

/// `capture-api --kubernetes`.
async fn run_kubernetes(args: Args) -> anyhow::Result<()> {
    use capture_api::kube::agents::{Agents, Credentials};
    use capture_api::kube::{Cluster, ClusterSettings};
    use secrecy::ExposeSecret;

    let config = kube::Config::infer()
        .await
        .context("no Kubernetes client configuration: set KUBECONFIG, or run in a pod with a service account")?;
    // The agents accept the API's own service-account token: the same one the client uses.
    let credentials = match (&config.auth_info.token_file, &config.auth_info.token) {
        (Some(file), _) => Credentials::TokenFile(file.into()),
        (None, Some(token)) => Credentials::Token(token.expose_secret().to_string()),
        (None, None) => {
            tracing::warn!(
                "the kube client has no bearer token: the agents will refuse file downloads"
            );
            Credentials::None
        }
    };
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let (ca_namespace, ca_name) = &args.agent_ca_secret;
    let agent_ca = capture_agent::cluster::tls::AgentCa::ensure(&client, ca_namespace, ca_name)
        .await
        .context("the podcap agent CA")?;
    let agents = Agents::new(
        client.clone(),
        args.agents.iter().cloned().collect(),
        args.agent_port,
        credentials,
        agent_ca.cert_pem(),
    )
    .context("trusting the podcap agent CA")?;
    let cluster = Cluster::new(
        client,
        agents,
        ClusterSettings {
            shares_namespace: args.shares_namespace.clone(),
            max_window: args.max_window,
            report_timeout: args.report_timeout,
            finish_grace: args.finish_grace,
        },
    );
    cluster.store.slices.start(&cluster.client);
    let store: Arc<dyn Store> = cluster.store.clone();
    tokio::spawn(capture_api::kube::status::run_forever(cluster.clone()));
    tokio::spawn(
        capture_api::schedules::Controller::new(store.clone(), cluster.clone(), args.max_window)
            .run_forever(),
    );
    let state = AppState {
        store,
        backend: cluster,
        settings: Arc::new(Settings {
            max_window: args.max_window,
            tls: args.tls_cert.is_some(),
        }),
        tickets: Arc::default(),
        // The JSON lines on stdout are this mode's durable record; the API keeps the last ones.
        audit: Arc::new(capture_api::audit::AuditTrail::in_memory()),
    };
    server::serve(
        state,
        args.listen,
        "podcap API (Kubernetes mode)",
        tls_files(&args),
        shutdown_signal(),
    )
    .await
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
    if args.kubernetes {
        return run_kubernetes(args).await;
    }
    if !args.standalone {
        bail!("choose a mode: `capture-api --standalone` (one machine) or `capture-api --kubernetes` (in a cluster)");
    }
    if let Some(path) = &args.inventory {
        capture_api::pods::read_inventory(path)?;
        capture_api::pods::use_inventory(path.clone());
    }
    let store = open_store(&args.data_dir)?;
    if let Some(token) = capture_api::auth::bootstrap_admin(store.as_ref(), &args.data_dir)? {
        // On stderr: stdout carries only the audit trail's JSON lines.
        eprintln!(
            "podcap: first start; admin token (also in {}/admin-token):",
            args.data_dir.display()
        );
        eprintln!("{token}");
    }
    let storage = capture_api::runner::StorageLimits {
        quota_bytes: args.quota.as_u64(),
        min_free_bytes: args.min_free.as_u64(),
        retention: args.retention,
    };
    let hub = capture_agent::hub::Hub::new(capture_agent::rings::RingBudget::new(
        args.ring_memory.as_u64(),
    ))
    .context("starting the capture engine")?;
    let runner = Runner::new(store.clone(), args.data_dir.clone(), storage, hub);
    // One pass before the API listens: captures that were running when it stopped resume first,
    // so its first answer after a restart already tells of the gap.
    let first = runner.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || first.pass()).await? {
        tracing::error!(%error, "the first capture runner pass failed");
    }
    tokio::spawn(runner.clone().run_forever());
    let backend = Standalone::new(store.clone(), runner);
    tokio::spawn(
        capture_api::schedules::Controller::new(store.clone(), backend.clone(), args.max_window)
            .run_forever(),
    );
    let state = AppState {
        store,
        backend,
        settings: Arc::new(Settings {
            max_window: args.max_window,
            tls: args.tls_cert.is_some(),
        }),
        tickets: Arc::default(),
        audit: Arc::new(
            capture_api::audit::AuditTrail::in_dir(&args.data_dir)
                .context("opening the audit trail")?,
        ),
    };
    server::serve(
        state,
        args.listen,
        "podcap API",
        tls_files(&args),
        shutdown_signal(),
    )
    .await
}

/// `--tls-cert` and `--tls-key` (clap makes sure they come together).
fn tls_files(args: &Args) -> Option<capture_api::tls::TlsFiles> {
    Some(capture_api::tls::TlsFiles {
        cert: args.tls_cert.clone()?,
        key: args.tls_key.clone()?,
    })
}
