//! The agent's file endpoint: the only way capture files leave the node. The API (and no one
//! else, see `auth`) fetches them here by capture UID and file id — never by a path from the
//! request — and relays live streams from here.
//!
//! - `GET /healthz` → 200 `ok` (no auth; the DaemonSet's probes).
//! - `GET /v1/captures/{uid}/files/{fileId}` → the file, streamed, with `Content-Length` and
//!   single-range `Range` support; 404 when this node has no such file. `fileId` is the `id` of
//!   a file of one of this node's targets (in its PacketCaptureSlices).
//! - `GET /v1/captures/{uid}/live` → a pcapng stream of this node's running targets of the
//!   capture (one interface per pod, described "ns/pod on NODE"); 409 when nothing captures here.
//!
//! Errors are `application/problem+json`. The router is served over HTTPS only, with a
//! certificate from the podcap agent CA (see `tls` and `serve_endpoint` in `mod.rs`).

use std::io::SeekFrom;
use std::sync::mpsc;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use capture_spec::PacketCaptureSlice;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::agent::{earlier_targets, Agent};
use super::auth::{AuthError, Authenticator};
use crate::tap::{pump, LiveSink, QUEUED_CHUNKS};

#[derive(Clone)]
pub struct EndpointState {
    pub agent: Arc<Agent>,
    pub auth: Arc<Authenticator>,
}

pub fn router(state: EndpointState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/captures/{uid}/files/{file_id}", get(file))
        .route("/v1/captures/{uid}/live", get(live))
        .with_state(state)
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn authorize(state: &EndpointState, headers: &HeaderMap) -> Result<(), Response> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.auth.check(value).await.map_err(|error| {
        let status = match &error {
            AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AuthError::Review(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::info!(%error, "refused a file endpoint request");
        problem(status, error.to_string())
    })
}

/// A UID as Kubernetes writes them (hex and dashes); anything else cannot name a capture.
fn plausible_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A file name as the targets write them: no separators, no leading dot.
fn plausible_file(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The file name of `file_id` in capture `uid` on this node, from what this node reports: its
/// runs in memory, else what it reported earlier (its slices, or the capture's status entries
/// of this node for a capture made before slices).
fn lookup(agent: &Agent, uid: &str, file_id: &str) -> Option<String> {
    if let Some(tracked) = agent.runs().get(uid) {
        let found = tracked
            .run
            .entries()
            .flat_map(|t| t.files.iter())
            .find(|f| f.id == file_id);
        if let Some(file) = found {
            return Some(file.name.clone());
        }
    }
    let capture = agent
        .watches
        .captures
        .find(|c| c.metadata.uid.as_deref() == Some(uid))?;
    let node = agent.config.node.as_str();
    let slices = agent.watches.slices.state();
    let ours: Vec<&PacketCaptureSlice> = slices
        .iter()
        .filter(|s| s.spec.capture_uid == uid && s.spec.node == node)
        .map(AsRef::as_ref)
        .collect();
    earlier_targets(&capture, &ours, node)
        .iter()
        .flat_map(|t| t.files.iter())
        .find(|f| f.id == file_id)
        .map(|f| f.name.clone())
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes: the inclusive range,
/// `Err` when unsatisfiable; `Ok(None)` for no or an unsupported (multi-range) header.
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().map_err(|_| ())?;
        if suffix == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let start: u64 = first.parse().map_err(|_| ())?;
        let end = if last.is_empty() {
            len.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| ())?
                .min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".pcap") {
        "application/vnd.tcpdump.pcap"
    } else {
        "application/x-pcapng"
    }
}

async fn file(
    State(state): State<EndpointState>,
    Path((uid, file_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers).await {
        return refused;
    }
    let not_found = || {
        problem(
            StatusCode::NOT_FOUND,
            format!(
                "node {} has no file {file_id} of capture {uid}",
                state.agent.config.node
            ),
        )
    };
    if !plausible_uid(&uid) || !plausible_file(&file_id) {
        return not_found();
    }
    let Some(name) = lookup(&state.agent, &uid, &file_id).filter(|n| plausible_file(n)) else {
        return not_found();
    };
    let path = state.agent.capture_dir(&uid).join(&name);
    let Ok(mut opened) = tokio::fs::File::open(&path).await else {
        return not_found();
    };
    let len = match opened.metadata().await {
        Ok(meta) => meta.len(),
        Err(error) => return problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Ok(None), |v| parse_range(v, len));
    let (status, start, count) = match range {
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((first, last))) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Err(()) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{len}")),
                    (header::CONTENT_TYPE, "application/problem+json".to_string()),
                ],
                json!({"title": "Range Not Satisfiable", "status": 416, "detail": format!("the file has {len} bytes")}).to_string(),
            )
                .into_response()
        }
    };
    if start > 0 {
        if let Err(error) = opened.seek(SeekFrom::Start(start)).await {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string());
        }
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(opened.take(count)));
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&name))
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    response
        .body(body)
        .unwrap_or_else(|error| problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

/// A live stream's way into the response body: chunks through a small channel.
struct ChannelSink(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl LiveSink for ChannelSink {
    fn send(&mut self, bytes: Vec<u8>) -> bool {
        self.0.blocking_send(Ok(Bytes::from(bytes))).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

async fn live(
    State(state): State<EndpointState>,
    Path(uid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers).await {
        return refused;
    }
    let (sender, receiver) = mpsc::sync_channel(QUEUED_CHUNKS);
    let subscribed = {
        let runs = state.agent.runs();
        runs.get(&uid)
            .map(|tracked| &tracked.run)
            .filter(|run| run.is_recording())
            .map(|run| (run.subscribe(&sender), run.spec.snap_length))
    };
    // Only the taps hold senders now: when the targets end, so does the stream.
    drop(sender);
    let Some((interfaces, snap_length)) = subscribed else {
        return problem(
            StatusCode::CONFLICT,
            format!(
                "nothing of capture {uid} is capturing on node {} right now",
                state.agent.config.node
            ),
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        pump(
            &receiver,
            &interfaces,
            snap_length,
            "podcap agent live",
            &mut ChannelSink(tx),
        );
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-pcapng")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|error| problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-0", 0), Err(()));
        assert_eq!(parse_range("bytes=0-1,4-5", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }

    #[test]
    fn only_names_the_agent_writes_are_served() {
        assert!(plausible_file("shop_web-0_eth0_s1.pcapng"));
        assert!(plausible_file("shop_web-0_eth0_s2-000003.pcap"));
        for bad in ["", "../etc/passwd", ".hidden", "a/b", "a\\b", "x y"] {
            assert!(!plausible_file(bad), "{bad}");
        }
        assert!(plausible_uid("0b6f1a2c-0000-4000-8000-00000000a001"));
        assert!(!plausible_uid("../x"));
        assert_eq!(content_type("a.pcap"), "application/vnd.tcpdump.pcap");
        assert_eq!(content_type("a_s1.pcapng"), "application/x-pcapng");
    }
}
