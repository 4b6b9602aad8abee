//! A capture's files: the list, and one file by id with HTTP Range support. A file id is a name
//! podcap gave the file; it is looked up in the capture's own status, never joined to a path as
//! the user sent it, so `../` and friends find nothing (see [`crate::files`]).

use axum::extract::State;

use super::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::captures::find;
use crate::files::files_of;
use crate::problem::Problem;
use crate::state::AppState;

use super::openapi::{CaptureFileList, CaptureFilePath, CapturePath, PcapBytes, PcapngBytes};

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/files",
    tag = "downloads",
    operation_id = "listCaptureFiles",
    summary = "The files of a capture",
    params(CapturePath),
    responses(
        (status = 200, description = "Every file of every target, with the pod it came from.", body = CaptureFileList),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let record = find(&state, &namespace, &name)?;
    let items: Vec<Value> = files_of(&record)
        .into_iter()
        .map(|found| {
            let mut value = serde_json::to_value(&found.file).unwrap_or(Value::Null);
            value["pod"] = json!(found.pod);
            value
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/files/{id}",
    tag = "downloads",
    operation_id = "downloadCaptureFile",
    summary = "One file of a capture",
    description = "One file as written (pcapng or pcap, by the capture's `format`). A single HTTP range \
        (`Range: bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`) resumes a download.",
    params(
        CaptureFilePath,
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`; several ranges are refused with 400.", example = "bytes=0-1023"),
    ),
    responses(
        (status = 200, description = "The whole file.", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap")),
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"...\"`"),
                ("Content-Length" = u64, description = "The file's size."),
                ("Accept-Ranges" = String, description = "`bytes`"),
            )),
        (status = 206, description = "The requested range.", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap")),
            headers(
                ("Content-Range" = String, description = "`bytes FIRST-LAST/SIZE`"),
                ("Content-Disposition" = String, description = "`attachment; filename=\"...\"`"),
                ("Content-Length" = u64, description = "The range's length."),
            )),
        (status = 400, description = "More than one range; or a malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture, or no such file in it (or it was rotated out).", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range does not fit the file.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Path((namespace, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let record = find(&state, &namespace, &name)?;
    state.backend.file(&record, &id, &headers).await
}
