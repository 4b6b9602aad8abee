//! The node agents, as the API reaches them: each node's agent serves the capture files it
//! wrote (`GET /v1/captures/{uid}/files/{fileId}`) and a live stream of its targets
//! (`GET /v1/captures/{uid}/live`) to the API's service account only, which proves itself
//! with its own bearer token (the in-cluster token file, re-read on every request because it
//! rotates; or the kubeconfig's token). An agent's address is `--agent NODE=URL` when given,
//! otherwise `https://<the Node's InternalIP>:<--agent-port>`. The connection is TLS, and the
//! only certificates trusted are those of the podcap agent CA
//! (`capture_agent::cluster::tls`) that name the host dialled: packets never cross the node
//! network in clear, and never go to something that merely answers on an agent's address.
//!
//! Downloads are built here: the merge inputs of a capture (one per pod interface, its files
//! fetched one after the other as the merge reaches them, named "namespace/pod on node"), a
//! single file relayed with its Range, and the live streams of all capturing nodes interleaved.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use capture_agent::merge::{interleave, ChainedInput, InputFile, LiveInput, MergeInput};
use capture_spec::TargetState;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::Client;

use crate::problem::Problem;
use crate::store::CaptureRecord;
use crate::stream::{self as body, LiveStream};

/// How the API proves itself to agents.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A token file, re-read for every request (in-cluster service-account tokens rotate).
    TokenFile(PathBuf),
    Token(String),
    None,
}

pub struct Agents {
    client: Client,
    overrides: BTreeMap<String, String>,
    port: u16,
    credentials: Credentials,
    http: ureq::Agent,
}

/// Why an agent's answer was not read, in words: an agent whose certificate the API does not
/// trust is told apart from one that did not answer, since the fix differs (the agent's CA or
/// address, not its health).
fn unreached(error: &ureq::Error) -> String {
    // ureq reports a refused certificate as its own Rustls error or as an I/O error around
    // rustls's (from inside the handshake).
    let tls = match error {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match tls {
        Some(tls) => format!(
            "is not trusted ({tls}): its certificate must come from the podcap agent CA and name the address dialled; restart that agent, or fix --agent"
        ),
        None => format!("did not answer ({error})"),
    }
}

/// One file of a target as the merge fetches it.
struct Fetch {
    url: String,
    label: String,
}

impl Agents {
    pub fn new(
        client: Client,
        overrides: BTreeMap<String, String>,
        port: u16,
        credentials: Credentials,
        agent_ca_pem: &str,
    ) -> Result<Agents, ureq::Error> {
        let ca = ureq::tls::Certificate::from_pem(agent_ca_pem.as_bytes())?;
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                ca,
            ])))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .tls_config(tls)
            .https_only(true)
            .build();
        Ok(Agents {
            client,
            overrides,
            port,
            credentials,
            http: ureq::Agent::new_with_config(config),
        })
    }

    fn bearer(&self) -> Option<String> {
        match &self.credentials {
            Credentials::TokenFile(path) => std::fs::read_to_string(path)
                .ok()
                .map(|t| format!("Bearer {}", t.trim())),
            Credentials::Token(token) => Some(format!("Bearer {token}")),
            Credentials::None => None,
        }
    }

    /// The base URL of `node`'s agent.
    pub async fn url_of(&self, node: &str) -> Result<String, Problem> {
        if let Some(url) = self.overrides.get(node) {
            return Ok(url.trim_end_matches('/').to_string());
        }
        let found = Api::<Node>::all(self.client.clone())
            .get(node)
            .await
            .map_err(|e| {
                Problem::unavailable(format!(
                    "cannot find node {node:?} to reach its capture agent ({e}): pass --agent {node}=https://ADDRESS:PORT to capture-api if the node is gone or unreachable by name"
                ))
            })?;
        let address = found
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address)
            .ok_or_else(|| {
                Problem::unavailable(format!(
                    "node {node:?} has no InternalIP address: pass --agent {node}=https://ADDRESS:PORT to capture-api"
                ))
            })?;
        let host = if address.contains(':') {
            format!("[{address}]")
        } else {
            address
        };
        Ok(format!("https://{host}:{}", self.port))
    }

    async fn urls_of<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, String>, Problem> {
        let mut urls = BTreeMap::new();
        for node in nodes.into_iter().collect::<BTreeSet<_>>() {
            urls.insert(node.to_string(), self.url_of(node).await?);
        }
        Ok(urls)
    }

    /// GET `url` with the API's token (and `range`); blocking.
    fn get(
        &self,
        url: &str,
        range: Option<&HeaderValue>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.http.get(url);
        if let Some(bearer) = self.bearer() {
            request = request.header("Authorization", bearer);
        }
        if let Some(range) = range {
            request = request.header("Range", range.as_bytes());
        }
        request.call()
    }

    /// The merge inputs of a capture: one per pod interface with files, its files fetched from
    /// its node's agent in order as the merge reaches them.
    pub async fn inputs(&self, record: &CaptureRecord) -> Result<Vec<MergeInput>, Problem> {
        let targets: Vec<_> = record
            .status
            .targets
            .iter()
            .filter(|t| !t.files.is_empty())
            .cloned()
            .collect();
        let urls = self
            .urls_of(targets.iter().map(|t| t.node.as_str()))
            .await?;
        let mut inputs = Vec::with_capacity(targets.len());
        for target in targets {
            let label = format!("{}/{} on {}", target.namespace, target.pod, target.node);
            let base = urls.get(&target.node).cloned().unwrap_or_default();
            let fetches: Vec<Fetch> = target
                .files
                .iter()
                .map(|file| Fetch {
                    url: format!("{base}/v1/captures/{}/files/{}", record.uid, file.id),
                    label: format!("{} on {}", file.name, target.node),
                })
                .collect();
            let http = self.http.clone();
            let bearer = self.bearer();
            let files = fetches.into_iter().map(move |fetch| {
                let mut request = http.get(&fetch.url);
                if let Some(bearer) = &bearer {
                    request = request.header("Authorization", bearer);
                }
                let response = request.call().map_err(|e| {
                    io::Error::other(format!("fetching {}: {}", fetch.label, unreached(&e)))
                })?;
                if response.status() != StatusCode::OK {
                    return Err(io::Error::other(format!(
                        "fetching {}: the agent answered {}",
                        fetch.label,
                        response.status()
                    )));
                }
                Ok(InputFile {
                    label: fetch.label,
                    reader: Box::new(response.into_body().into_reader()),
                })
            });
            inputs.push(
                MergeInput::chained(label.clone(), ChainedInput::files(files))
                    .with_description(label),
            );
        }
        Ok(inputs)
    }

    /// One file of a capture relayed from its node's agent, honouring a `Range` header.
    pub async fn file_response(
        self: std::sync::Arc<Self>,
        record: &CaptureRecord,
        id: &str,
        headers: &HeaderMap,
    ) -> Result<Response, Problem> {
        let crate::files::CaptureFile { node, file, .. } = crate::files::find_file(record, id)?;
        let url = format!(
            "{}/v1/captures/{}/files/{}",
            self.url_of(&node).await?,
            record.uid,
            file.id
        );
        let range = headers.get(header::RANGE).cloned();
        let agents = self.clone();
        let fetched = tokio::task::spawn_blocking(move || agents.get(&url, range.as_ref()))
            .await
            .map_err(Problem::internal)?
            .map_err(|e| {
                Problem::unavailable(format!(
                    "the capture agent on node {node:?} {}: check `kubectl -n podcap-system get pods -o wide` for the agent on that node",
                    unreached(&e)
                ))
            })?;
        let code = fetched.status();
        if code == StatusCode::NOT_FOUND {
            return Err(Problem::not_found(format!(
                "the agent on node {node:?} no longer has file {id:?} (rotated out or deleted)"
            )));
        }
        if code == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(Problem {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                ..Problem::bad_request(format!(
                    "the range does not fit file {id:?}: use bytes=FIRST-LAST within its size"
                ))
            });
        }
        if !(code == StatusCode::OK || code == StatusCode::PARTIAL_CONTENT) {
            return Err(Problem::bad_gateway(format!(
                "the capture agent on node {node:?} answered {code} for file {id:?}: see its log"
            )));
        }
        let mut response = Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, crate::files::content_type(&file.name))
            .header(
                header::CONTENT_DISPOSITION,
                crate::files::attachment(&file.name)?,
            )
            .header(header::ACCEPT_RANGES, "bytes");
        for name in [header::CONTENT_LENGTH, header::CONTENT_RANGE] {
            if let Some(value) = fetched.headers().get(name.as_str()) {
                response = response.header(name, value.as_bytes());
            }
        }
        response
            .body(relay(fetched.into_body()))
            .map_err(Problem::internal)
    }

    /// A running capture's live pcapng stream: the live streams of the agents of every node
    /// that captures it, interleaved as their blocks arrive (see
    /// [`capture_agent::merge::interleave`]), each pod one interface.
    pub async fn live_response(
        self: std::sync::Arc<Self>,
        record: &CaptureRecord,
    ) -> Result<Response, Problem> {
        let status = &record.status;
        let nodes: BTreeSet<String> = status
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Capturing)
            .map(|t| t.node.clone())
            .collect();
        if nodes.is_empty() {
            return Err(Problem::conflict(format!(
                "capture {}/{} has no pod capturing right now",
                record.namespace, record.name
            )));
        }
        let urls = self.urls_of(nodes.iter().map(String::as_str)).await?;
        let uid = record.uid.clone();
        let agents = self.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut inputs = Vec::new();
            let mut refusals = Vec::new();
            for (node, base) in urls {
                let url = format!("{base}/v1/captures/{uid}/live");
                match agents.get(&url, None) {
                    Ok(response) if response.status() == StatusCode::OK => {
                        inputs.push(LiveInput {
                            name: node,
                            reader: Box::new(response.into_body().into_reader()),
                        });
                    }
                    // It finished between the status and this request: nothing to stream.
                    Ok(response) if response.status() == StatusCode::CONFLICT => {}
                    Ok(response) => refusals.push(format!("{node} answered {}", response.status())),
                    Err(e) => refusals.push(format!("{node} {}", unreached(&e))),
                }
            }
            (inputs, refusals)
        })
        .await
        .map_err(Problem::internal)?;
        let (inputs, refusals) = opened;
        if inputs.is_empty() {
            return Err(if refusals.is_empty() {
                Problem::conflict(format!(
                    "capture {}/{} has no pod capturing right now",
                    record.namespace, record.name
                ))
            } else {
                Problem::bad_gateway(format!(
                    "no capture agent streamed {}/{}: {}; check the agents on those nodes",
                    record.namespace,
                    record.name,
                    refusals.join("; ")
                ))
            });
        }
        if !refusals.is_empty() {
            tracing::warn!(capture = %record.name, refusals = ?refusals, "live stream without some nodes");
        }
        let (mut writer, relayed) = body::channel();
        let name = record.name.clone();
        tokio::task::spawn_blocking(move || {
            let _open = LiveStream::opened();
            match interleave(inputs, &mut writer) {
                Ok(report) => {
                    if !report.failed_inputs.is_empty() {
                        tracing::warn!(capture = %name, inputs = ?report.failed_inputs, "live inputs ended early");
                    }
                    let _ = io::Write::flush(&mut writer);
                }
                Err(error) => {
                    tracing::debug!(capture = %name, %error, "live stream ended (client left)")
                }
            }
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/x-pcapng")
            .header(header::CACHE_CONTROL, "no-store")
            .body(relayed)
            .map_err(Problem::internal)
    }
}

/// An agent's response body as ours, copied on a blocking thread.
fn relay(body: ureq::Body) -> axum::body::Body {
    let (mut writer, relayed) = body::channel();
    tokio::task::spawn_blocking(move || {
        let mut reader = body.into_reader();
        match io::copy(&mut reader, &mut writer) {
            Ok(_) => {
                let _ = io::Write::flush(&mut writer);
            }
            Err(error) => writer.fail(error),
        }
    });
    relayed
}
