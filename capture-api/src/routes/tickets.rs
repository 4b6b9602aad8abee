//! Download tickets (see [`crate::tickets`]): `POST .../captures/{name}/downloads` issues one for
//! the merged capture or one file, and `GET /download/{ticket}` serves it once, without a token,
//! so a browser can save a capture of any size straight to disk.

use axum::body::Bytes;
use axum::extract::State;

use super::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::captures::find;
use super::download::{format_named, merged_response};
use super::object::{field_problem, optional_body};
use super::openapi::{CapturePath, PcapBytes, PcapngBytes};
use crate::files::{find_file, missing_file};
use crate::problem::Problem;
use crate::state::AppState;
use crate::tickets::Download;

/// What to download: one file by `file` id, or else the merged capture in `format`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TicketRequest {
    /// A file id from `.../files`; leave out for the merged capture.
    #[serde(default)]
    file: Option<String>,
    /// The merged capture's format: `pcapng` (default) or `pcap`.
    #[serde(default)]
    #[schema(value_type = Option<capture_spec::OutputFormat>)]
    format: Option<String>,
}

/// A ticket: navigate to `url` within a minute; it works once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketAnswer {
    /// Relative to this server, e.g. `/download/pcd_...`.
    url: String,
    /// The secret that ends `url`: the `{ticket}` of `GET /download/{ticket}`.
    ticket: String,
    expires_at: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/namespaces/{namespace}/captures/{name}/downloads",
    tag = "downloads",
    operation_id = "createDownloadTicket",
    summary = "A one-time download URL for a browser",
    description = "For pages that hold their token in memory: the URL serves the download once, \
        within a minute, without a token.",
    params(CapturePath),
    request_body(content = Option<TicketRequest>, content_type = "application/json", description = "Optional; an empty body means the merged pcapng."),
    responses(
        (status = 201, description = "The ticket.", body = TicketAnswer),
        (status = 400, description = "The body is not a ticket request; or a malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `format`, or a `file` the capture does not have.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<TicketAnswer>), Problem> {
    let request: TicketRequest = optional_body(
        &body,
        r#"{"format": "pcapng"}, {"file": "<id>"} or nothing"#,
    )?;
    let record = find(&state, &namespace, &name)?;
    let download = match (request.file, request.format) {
        (Some(id), _) => {
            // The capture at the URL exists, so a file it lacks is a bad field of the body
            // (422), not a missing resource (404).
            find_file(&record, &id).map_err(|_| {
                field_problem(
                    "bad file",
                    "file",
                    format!(
                        "{}, or leave file out for the merged capture",
                        missing_file(&record, &id)
                    ),
                )
            })?;
            Download::File(id)
        }
        (None, format) => Download::Merged(format_named(format.as_deref())?),
    };
    let (secret, expires_at) = state.tickets.issue(&record.uid, download, Utc::now());
    Ok((
        StatusCode::CREATED,
        Json(TicketAnswer {
            url: format!("/download/{secret}"),
            ticket: secret,
            expires_at,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/download/{ticket}",
    tag = "downloads",
    operation_id = "downloadWithTicket",
    summary = "Download with a one-time ticket (no token)",
    params(("ticket" = String, Path, description = "The secret from `.../downloads`.")),
    responses(
        (status = 200, description = "The download.", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap"))),
        (status = 400, description = "A malformed path segment (not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, used or expired ticket; the capture or file is gone.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn redeem(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let ticket = state.tickets.redeem(&secret, Utc::now()).ok_or_else(|| {
        Problem::not_found(
            "this download link is unknown, used or older than a minute: click download again",
        )
    })?;
    let record = state
        .store
        .capture_by_uid(&ticket.capture_uid)
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::not_found("the capture was deleted"))?;
    match ticket.download {
        Download::Merged(format) => merged_response(&state, &record, format, None).await,
        Download::File(id) => state.backend.file(&record, &id, &headers).await,
    }
}
