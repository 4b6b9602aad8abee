//! Cluster mode: `capture-agent run --node NODE`, the node agent of a Kubernetes install (one
//! per node, a DaemonSet). It watches PacketCaptures and this node's pods (`watch`), captures
//! every matching Running pod while a capture's window (`window`) is open (`agent`, `pods`,
//! with the target rule both modes share, [`crate::reconcile`]), reports this node's
//! targets in PacketCaptureSlices of its own with server-side apply (`slices`), guards its files with a
//! per-node finalizer (`finalizer`), and serves the files and live streams to the API only,
//! over HTTPS with a certificate from the podcap agent CA (`endpoint`, `auth`, `tls`).
//!
//! The Kubernetes client comes from `kube::Config::infer()`: `KUBECONFIG` (or `~/.kube/config`)
//! when set, else the pod's service account. The agent needs only the permissions of
//! `deploy/base/agent-rbac.yaml`.

pub mod agent;
pub mod auth;
pub mod endpoint;
pub mod finalizer;
pub mod pods;
pub mod slices;
pub mod tls;
pub mod watch;
pub mod window;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use capture_spec::{PacketCapture, PacketCaptureSlice};
use chrono::Utc;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::hub::Hub;
use crate::reconcile::RingOpener;
use crate::rings::RingBudget;
use agent::{Action, Agent};

/// How often the reconciler runs without being woken by a watch event (live counters, window
/// ends, pods whose interface appears late).
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// How often this node's labels are read again (for `spec.nodeSelector`).
const NODE_LABELS_INTERVAL: Duration = Duration::from_secs(30);

/// What `capture-agent run` was told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (`spec.nodeName` of its pods).
    pub node: String,
    /// Capture files go to `DATA_DIR/captures/{capture uid}/`.
    pub data_dir: PathBuf,
    /// The file endpoint's address.
    pub listen: SocketAddr,
    /// `(namespace, name)` of the podcap agent CA's Secret.
    pub ca_secret: (String, String),
    /// Names for the endpoint's certificate besides the node's name and addresses.
    pub tls_names: Vec<String>,
    /// `namespace:name` of the service account allowed to use the file endpoint.
    pub api_service_account: String,
    /// Also map pods to interfaces through their network namespace (needs SYS_ADMIN, hostPID).
    pub netns_fallback: bool,
    /// The window of a capture without `endTime` or `duration`.
    pub max_window: Duration,
    /// Bytes of kernel memory the packet rings may take together (see [`crate::rings`]).
    pub ring_memory: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no Kubernetes client configuration (set KUBECONFIG, or run in a pod with a service account): {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot create the data directory {path}: {source}; check --data-dir")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address}: {source}; choose another --listen")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the file endpoint failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the file endpoint has no certificate: {0}")]
    Tls(#[source] tls::TlsError),
    #[error("cannot start the capture engine: {0}")]
    Engine(#[source] std::io::Error),
}

/// Runs the agent until SIGTERM or SIGINT; then closes every file cleanly and reports once more.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let kube_config = kube::Config::infer().await.map_err(AgentError::Config)?;
    let client = Client::try_from(kube_config).map_err(AgentError::Client)?;
    let captures_dir = config.data_dir.join("captures");
    std::fs::create_dir_all(&captures_dir).map_err(|source| AgentError::DataDir {
        path: captures_dir.clone(),
        source,
    })?;
    let listen_failed = |source| AgentError::Listen {
        address: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(listen_failed)?;
    listener.set_nonblocking(true).map_err(listen_failed)?;
    let changed = Arc::new(Notify::new());
    let watches = watch::Watches::start(&client, &config.node, changed.clone());
    let auth = Arc::new(auth::Authenticator::new(
        client.clone(),
        &config.api_service_account,
    ));
    let hub = Hub::new(RingBudget::new(config.ring_memory)).map_err(AgentError::Engine)?;
    let opener = RingOpener::new(Arc::new(hub));
    let agent = Arc::new(Agent::new(config.clone(), watches.clone(), opener));
    let app = endpoint::router(endpoint::EndpointState {
        agent: agent.clone(),
        auth,
    });
    let server = tokio::spawn(serve_endpoint(
        listener,
        app,
        client.clone(),
        config.clone(),
    ));
    tracing::info!(node = %config.node, listen = %config.listen, data_dir = %config.data_dir.display(), "capture agent started");

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tokio::select! {
        ready = watches.ready() => if !ready { tracing::error!("the watchers stopped before their first listing"); },
        () = &mut shutdown => return Ok(()),
    }
    tracing::info!("watches synced; reconciling");
    let mut labels_read: Option<tokio::time::Instant> = None;
    loop {
        if labels_read.is_none_or(|at| at.elapsed() >= NODE_LABELS_INTERVAL) {
            refresh_node_labels(&client, &agent).await;
            labels_read = Some(tokio::time::Instant::now());
        }
        let pass_agent = agent.clone();
        match tokio::task::spawn_blocking(move || pass_agent.pass(Utc::now())).await {
            Ok(actions) => perform(&client, &agent, actions).await,
            Err(error) => tracing::error!(%error, "reconcile pass panicked"),
        }
        if server.is_finished() {
            return match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(error) => Err(AgentError::Serve(std::io::Error::other(error))),
            };
        }
        tokio::select! {
            () = changed.notified() => {
                // Let a burst of watch events settle into one pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            () = tokio::time::sleep(PASS_INTERVAL) => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: closing capture files");
    let stop_agent = agent.clone();
    match tokio::task::spawn_blocking(move || stop_agent.shutdown()).await {
        Ok(actions) => perform(&client, &agent, actions).await,
        Err(error) => tracing::error!(%error, "shutdown panicked"),
    }
    Ok(())
}

/// How long the agent waits between two reads of a CA Secret that is not there yet.
const CA_RETRY: Duration = Duration::from_secs(2);

/// Serves the file endpoint over HTTPS: waits for the podcap agent CA (capture-api makes it),
/// issues this node's certificate, serves, and issues a new one every [`tls::RENEW_EVERY`].
/// Capturing does not wait for any of this; only downloads from this node do.
async fn serve_endpoint(
    listener: std::net::TcpListener,
    app: axum::Router,
    client: Client,
    config: AgentConfig,
) -> Result<(), AgentError> {
    let (namespace, name) = &config.ca_secret;
    let mut waited = 0u32;
    let ca = loop {
        match tls::AgentCa::fetch(&client, namespace, name).await {
            Ok(ca) => break ca,
            Err(error) => {
                // At once, then once a minute: the API may simply not have started yet.
                if waited.is_multiple_of(30) {
                    tracing::warn!(%error, "the file endpoint waits for the podcap agent CA");
                }
                waited += 1;
                tokio::time::sleep(CA_RETRY).await;
            }
        }
    };
    let names = certificate_names(&client, &config).await;
    let issued = ca.issue(&names).map_err(AgentError::Tls)?;
    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(
        issued.cert_pem.into_bytes(),
        issued.key_pem.into_bytes(),
    )
    .await
    .map_err(|e| AgentError::Tls(tls::TlsError::Config(e)))?;
    tracing::info!(?names, listen = %config.listen, "the file endpoint serves HTTPS with a certificate from the podcap agent CA");
    tokio::spawn(renew_certificate(client, config, ca, names, rustls.clone()));
    axum_server::tls_rustls::from_tcp_rustls(listener, rustls)
        .map_err(AgentError::Serve)?
        .serve(app.into_make_service())
        .await
        .map_err(AgentError::Serve)
}

/// Every [`tls::RENEW_EVERY`]: a new certificate from the CA as the Secret holds it then (the
/// last one read when it cannot be read), served from the next connection on.
async fn renew_certificate(
    client: Client,
    config: AgentConfig,
    mut ca: tls::AgentCa,
    names: Vec<String>,
    rustls: axum_server::tls_rustls::RustlsConfig,
) {
    let (namespace, name) = &config.ca_secret;
    loop {
        tokio::time::sleep(tls::RENEW_EVERY).await;
        match tls::AgentCa::fetch(&client, namespace, name).await {
            Ok(current) => ca = current,
            Err(error) => tracing::warn!(%error, "renewing with the CA read before"),
        }
        let renewed = match ca.issue(&names) {
            Ok(issued) => {
                rustls
                    .reload_from_pem(issued.cert_pem.into_bytes(), issued.key_pem.into_bytes())
                    .await
            }
            Err(error) => Err(std::io::Error::other(error)),
        };
        match renewed {
            Ok(()) => tracing::info!("the file endpoint's certificate was renewed"),
            Err(error) => {
                tracing::error!(%error, "cannot renew the file endpoint's certificate; the current one stays until it expires")
            }
        }
    }
}

/// What the endpoint's certificate names: the node's name, its addresses from the Node object
/// (the API dials the InternalIP) and `--tls-san`.
async fn certificate_names(client: &Client, config: &AgentConfig) -> Vec<String> {
    let mut names = vec![config.node.clone()];
    match Api::<Node>::all(client.clone()).get(&config.node).await {
        Ok(node) => names.extend(
            node.status
                .and_then(|status| status.addresses)
                .unwrap_or_default()
                .into_iter()
                .map(|address| address.address),
        ),
        Err(error) => {
            tracing::warn!(node = %config.node, %error, "cannot read this node's addresses for the endpoint's certificate; it names only the node and --tls-san")
        }
    }
    names.extend(config.tls_names.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reads this node's labels; a node that cannot be read has none (a capture with a
/// nodeSelector then does not run here), which is logged.
async fn refresh_node_labels(client: &Client, agent: &Agent) {
    let labels = match Api::<Node>::all(client.clone())
        .get(&agent.config.node)
        .await
    {
        Ok(node) => node.metadata.labels.unwrap_or_default(),
        Err(error) => {
            tracing::warn!(node = %agent.config.node, %error, "cannot read this node's labels; captures with a nodeSelector will not run here");
            BTreeMap::new()
        }
    };
    if let Ok(mut slot) = agent.node_labels.lock() {
        *slot = labels;
    }
}

/// Sends what a pass decided. Failures are logged; the next pass decides again.
async fn perform(client: &Client, agent: &Agent, actions: Vec<Action>) {
    for action in actions {
        match action {
            Action::Apply {
                owner,
                targets,
                stale,
            } => {
                let api = Api::<PacketCaptureSlice>::namespaced(client.clone(), &owner.namespace);
                let node = agent.config.node.as_str();
                let (namespace, name) = (&owner.namespace, &owner.name);
                match slices::apply(&api, &owner, node, &agent.manager, &targets, &stale).await {
                    Ok(_) => agent.applied(&owner.uid, targets, std::time::Instant::now()),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    // The API server answered and refused: a bug or a permission missing.
                    Err(error @ kube::Error::Api(_)) => {
                        tracing::warn!(%namespace, %name, %error, "cannot write this node's capture slices")
                    }
                    // Not reached (down, restarting, the network): the capture goes on, and
                    // the throttle writes the slices again at the next pass.
                    Err(error) => {
                        tracing::warn!(%namespace, %name, %error, "the API server is unreachable; this node's capture slices wait for the next pass")
                    }
                }
            }
            Action::DeleteSlices { namespace, names } => {
                let api = Api::<PacketCaptureSlice>::namespaced(client.clone(), &namespace);
                if let Err(error) = slices::delete(&api, &names).await {
                    tracing::warn!(%namespace, %error, "cannot delete this node's slices of a deleted capture; garbage collection will");
                }
            }
            Action::Finalizer {
                namespace,
                name,
                patch,
            } => {
                let api = Api::<PacketCapture>::namespaced(client.clone(), &namespace);
                match finalizer::patch(&api, &name, patch).await {
                    Ok(()) => {
                        tracing::info!(%namespace, %name, finalizer = %agent.finalizer, "finalizer updated")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    // The patch's test failed: another node changed the list first; the next
                    // pass patches the list the watch shows then.
                    Err(kube::Error::Api(e)) if e.code == 422 => {
                        tracing::debug!(%namespace, %name, "finalizers changed meanwhile; retrying")
                    }
                    Err(error) => {
                        tracing::warn!(%namespace, %name, %error, "cannot update this node's finalizer; retrying")
                    }
                }
            }
        }
    }
}
