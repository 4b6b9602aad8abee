//! `GET .../captures/{name}/live`: a pcapng stream of a running capture, for
//! `curl -N -H "Authorization: Bearer $TOKEN" .../live | wireshark -k -i -`. One interface per
//! pod that is capturing when the stream starts (reconnect to see pods that join later). The
//! capture never waits for a watcher: a watcher that falls behind misses whole chunks of
//! packets, counted in the `podcap_live_chunks_skipped_total` metric, and the stream stays valid.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use capture_agent::format::InterfaceInfo;
use capture_agent::tap::{pump, QUEUED_CHUNKS};
use capture_spec::CaptureSpec;

use super::body;
use super::captures::find;
use crate::auth::{Action, Caller};
use crate::problem::Problem;
use crate::server::AppState;

use super::openapi::{CapturePath, PcapngBytes};

/// Open live streams, for metrics.
pub static OPEN_STREAMS: AtomicU64 = AtomicU64::new(0);

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/live",
    tag = "downloads",
    operation_id = "streamCaptureLive",
    summary = "A live pcapng stream of a running capture",
    description = "For `curl -N -H \"Authorization: Bearer $TOKEN\" .../live | wireshark -k -i -`. One \
        interface per pod capturing when the stream starts; the stream ends with the capture. A \
        watcher that falls behind misses whole chunks of packets and the stream stays valid.",
    params(CapturePath),
    responses(
        (status = 200, description = "pcapng, streamed until the capture ends or the client leaves.", content((PcapngBytes = "application/x-pcapng")),
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The capture is not `Capturing`, or no pod is capturing right now.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn live(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Response, Problem> {
    caller.authorize(Action::Read, &namespace)?;
    let record = find(&state, &namespace, &name)?;
    if record.phase != "Capturing" {
        return Err(Problem::conflict(format!(
            "capture {namespace}/{name} is {}, not Capturing: download it with GET .../captures/{name}/pcap",
            record.phase
        )));
    }
    if let Some(cluster) = &state.cluster {
        return cluster.agents.clone().live_response(&record).await;
    }
    let spec: CaptureSpec =
        serde_json::from_value(record.spec.clone()).map_err(Problem::internal)?;
    let (sender, receiver) = mpsc::sync_channel(QUEUED_CHUNKS);
    let Some(targets) = state.runner.subscribe(&record.uid, &sender) else {
        return Err(Problem::conflict(format!(
            "capture {namespace}/{name} has no pod capturing right now"
        )));
    };
    // Only the taps hold senders now: when the capture ends they go, and so does the stream.
    drop(sender);
    let interfaces: Vec<InterfaceInfo> = targets
        .into_iter()
        .map(|(name, description)| InterfaceInfo {
            name,
            description,
            filter_expression: spec.filters.to_pcap_expression(),
        })
        .collect();
    let (mut writer, body) = body::channel();
    tokio::task::spawn_blocking(move || {
        OPEN_STREAMS.fetch_add(1, Ordering::Relaxed);
        pump(
            &receiver,
            &interfaces,
            spec.snap_length,
            "podcap live",
            &mut writer,
        );
        OPEN_STREAMS.fetch_sub(1, Ordering::Relaxed);
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-pcapng")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .map_err(Problem::internal)
}
