//! `GET .../captures/{name}/packets` and `.../timeline`: a capture's first packets decoded
//! and its packets over time, read from its files on a blocking thread (see
//! [`crate::inspect`]). What the web UI's capture page shows; handy from curl too.

use axum::extract::State;

use super::extract::{Path, Query};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::captures::find;
use super::openapi::CapturePath;
use crate::inspect::{preview, timeline, PacketRow, Timeline};
use crate::problem::{InvalidParam, Problem};
use crate::state::AppState;

const DEFAULT_PREVIEW: usize = 100;
const MAX_PREVIEW: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PacketsQuery {
    /// How many packets from the start (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The first packets of a capture.
#[derive(Serialize, ToSchema)]
pub struct PacketPreview {
    /// In merged time order, as in the merged download.
    items: Vec<PacketRow>,
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/packets",
    tag = "inspect",
    operation_id = "previewCapturePackets",
    summary = "A capture's first packets, decoded",
    description = "Time, pod, source, destination, protocol, lengths and a one-line summary of \
        the first packets in merged time order. Works while the capture runs.",
    params(CapturePath, PacketsQuery),
    responses(
        (status = 200, description = "The first packets.", body = PacketPreview),
        (status = 400, description = "A malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `limit`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn packets(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<PacketsQuery>,
) -> Result<Json<PacketPreview>, Problem> {
    let limit = query.limit.unwrap_or(DEFAULT_PREVIEW);
    if !(1..=MAX_PREVIEW).contains(&limit) {
        return Err(Problem::invalid(
            "bad preview size",
            vec![InvalidParam {
                name: "limit".into(),
                reason: format!("{limit} is out of range: use 1-{MAX_PREVIEW}"),
            }],
        ));
    }
    let record = find(&state, &namespace, &name)?;
    let inputs = state.backend.inputs(&record).await?;
    let items = tokio::task::spawn_blocking(move || preview(inputs, limit))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(Json(PacketPreview { items }))
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/timeline",
    tag = "inspect",
    operation_id = "captureTimeline",
    summary = "A capture's packets and bytes over time",
    description = "Counts per time bucket from the capture's start to its end (or now, while it \
        runs), read from its files; at most 300 buckets.",
    params(CapturePath),
    responses(
        (status = 200, description = "The counts; empty before the capture starts.", body = Timeline),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn timeline_of(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Timeline>, Problem> {
    let record = find(&state, &namespace, &name)?;
    let status = &record.status;
    let now = Utc::now();
    let start = status.started_at.unwrap_or(now);
    let end = status.finished_at.unwrap_or(now).max(start);
    let inputs = state.backend.inputs(&record).await?;
    let counted = tokio::task::spawn_blocking(move || timeline(inputs, start, end))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(Json(counted))
}
