//! `GET .../captures/{name}/pcap`: every file of a capture merged into one time-ordered capture
//! (`?format=pcapng`, the default, or `?format=pcap`), streamed as it is merged. One pcapng
//! interface per pod interface, described as "namespace/pod on node". The merge runs on a
//! blocking thread with constant memory whatever the capture's size; a slow client slows it,
//! a client that leaves stops it. Share links serve the same download.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use capture_agent::merge::merge;
use capture_spec::OutputFormat;
use serde::Deserialize;
use utoipa::IntoParams;

use super::captures::find;
use crate::files::{attachment, content_type};
use crate::problem::{InvalidParam, Problem};
use crate::state::AppState;
use crate::store::CaptureRecord;
use crate::stream;

use super::openapi::{CapturePath, PcapBytes, PcapngBytes};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// The file format of the download: `pcapng` (the default) or `pcap`.
    #[param(value_type = Option<capture_spec::OutputFormat>)]
    format: Option<String>,
}

pub fn parse_format(query: &FormatQuery) -> Result<OutputFormat, Problem> {
    format_named(query.format.as_deref())
}

/// The download format `text` names (`pcapng` when `None`), or a 422 naming the `format` field.
pub fn format_named(text: Option<&str>) -> Result<OutputFormat, Problem> {
    match text {
        None => Ok(OutputFormat::Pcapng),
        Some(text) => text.parse().map_err(|e: capture_spec::LimitsError| {
            Problem::invalid(
                "bad format",
                vec![InvalidParam {
                    name: "format".into(),
                    reason: e.to_string(),
                }],
            )
        }),
    }
}

/// The merged capture of `record` as a streamed response.
pub async fn merged_response(
    state: &AppState,
    record: &CaptureRecord,
    format: OutputFormat,
) -> Result<Response, Problem> {
    let inputs = state.backend.inputs(record).await?;
    let (mut writer, body) = stream::channel();
    let name = record.name.clone();
    tokio::task::spawn_blocking(move || match merge(inputs, format, &mut writer) {
        Ok(report) => {
            if !report.truncated_inputs.is_empty() {
                tracing::info!(capture = %name, inputs = ?report.truncated_inputs, "merged files whose last record was cut short");
            }
            if let Err(error) = std::io::Write::flush(&mut writer) {
                tracing::debug!(capture = %name, %error, "merged download ended early");
            }
        }
        Err(error) => {
            tracing::warn!(capture = %name, %error, "merged download failed");
            writer.fail(std::io::Error::other(error.to_string()));
        }
    });
    let filename = format!("{}.{}", record.name, format.extension());
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type(&filename))
        .header(header::CONTENT_DISPOSITION, attachment(&filename)?)
        .body(body)
        .map_err(Problem::internal)
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/pcap",
    tag = "downloads",
    operation_id = "downloadMergedCapture",
    summary = "All files of a capture merged into one, time-ordered",
    description = "Streamed as it is merged, in constant memory. pcapng has one interface per pod \
        interface, described as `namespace/pod on node`.",
    params(CapturePath, FormatQuery),
    responses(
        (status = 200, description = "The merged capture (`pcapng` by default, `pcap` with `?format=pcap`).", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap")),
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"NAME.pcapng\"` (or `.pcap`)"))),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `format`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn merged(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<FormatQuery>,
) -> Result<Response, Problem> {
    let format = parse_format(&query)?;
    let record = find(&state, &namespace, &name)?;
    merged_response(&state, &record, format).await
}
