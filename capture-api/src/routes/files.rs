//! A capture's files: the list, and one file by id with HTTP Range support. A file id is a name
//! podcap gave the file; it is looked up in the capture's own status, never joined to a path as
//! the user sent it, so `../` and friends find nothing.

use std::io::SeekFrom;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use capture_spec::FileStatus;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::captures::find;
use crate::auth::{Action, Caller};
use crate::problem::Problem;
use crate::server::AppState;
use crate::store::CaptureRecord;

use super::openapi::{CaptureFileList, CaptureFilePath, CapturePath, PcapBytes, PcapngBytes};

/// Every file of a capture, each with the pod it belongs to.
fn files_of(record: &CaptureRecord) -> Result<Vec<(String, FileStatus)>, Problem> {
    let status = record.capture_status().map_err(Problem::internal)?;
    Ok(status
        .targets
        .into_iter()
        .flat_map(|t| {
            let pod = format!("{}/{}", t.namespace, t.pod);
            t.files.into_iter().map(move |f| (pod.clone(), f))
        })
        .collect())
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/files",
    tag = "downloads",
    operation_id = "listCaptureFiles",
    summary = "The files of a capture",
    params(CapturePath),
    responses(
        (status = 200, description = "Every file of every target, with the pod it came from.", body = CaptureFileList),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.authorize(Action::Read, &namespace)?;
    let record = find(&state, &namespace, &name)?;
    let items: Vec<Value> = files_of(&record)?
        .into_iter()
        .map(|(pod, file)| {
            let mut value = serde_json::to_value(&file).unwrap_or(Value::Null);
            value["pod"] = json!(pod);
            value
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// The 404 for a file id that `record` does not list.
pub fn no_such_file(record: &CaptureRecord, id: &str) -> Problem {
    Problem::not_found(format!(
        "capture {}/{} has no file {id:?}: list its files with GET .../captures/{}/files",
        record.namespace, record.name, record.name
    ))
}

/// The content type of a capture file, from the name podcap gave it.
pub fn content_type(name: &str) -> &'static str {
    if name.ends_with(".pcap") {
        "application/vnd.tcpdump.pcap"
    } else {
        "application/x-pcapng"
    }
}

/// A single `bytes=` range against a file of `size` bytes: Ok(None) = whole file.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, Problem> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    let unsatisfiable = || Problem {
        status: StatusCode::RANGE_NOT_SATISFIABLE,
        ..Problem::bad_request(format!(
            "range {text:?} does not fit a file of {size} bytes: use bytes=FIRST-LAST"
        ))
    };
    let spec = text.strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
    if spec.contains(',') {
        return Err(Problem::bad_request(
            "only one range per request is supported",
        ));
    }
    let (first, last) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| unsatisfiable())?;
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (first, "") => (
            first.parse().map_err(|_| unsatisfiable())?,
            size.saturating_sub(1),
        ),
        (first, last) => (
            first.parse().map_err(|_| unsatisfiable())?,
            last.parse::<u64>()
                .map_err(|_| unsatisfiable())?
                .min(size.saturating_sub(1)),
        ),
    };
    if size == 0 || first > last || first >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((first, last)))
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
        (status = 400, description = "More than one range.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture, or no such file in it (or it was rotated out).", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range does not fit the file.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller.authorize(Action::Read, &namespace)?;
    let record = find(&state, &namespace, &name)?;
    file_response(&state, &record, &id, &headers).await
}

/// One file of `record` as a response, honouring a `Range` header; also what a download
/// ticket for a file serves.
pub async fn file_response(
    state: &AppState,
    record: &CaptureRecord,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    if let Some(cluster) = &state.cluster {
        return cluster
            .agents
            .clone()
            .file_response(record, id, headers)
            .await;
    }
    let Some((_, file)) = files_of(record)?.into_iter().find(|(_, f)| f.id == id) else {
        return Err(no_such_file(record, id));
    };
    let path = state.runner.capture_dir(&record.uid).join(&file.name);
    let mut handle = tokio::fs::File::open(&path).await.map_err(|e| {
        Problem::not_found(format!(
            "file {id:?} is listed but not on disk ({e}); it may have been rotated out"
        ))
    })?;
    let size = handle.metadata().await.map_err(Problem::internal)?.len();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.name))
        .map_err(Problem::internal)?;
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type(&file.name))
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::ACCEPT_RANGES, "bytes");
    let (status, length) = match parse_range(headers, size)? {
        Some((first, last)) => {
            handle
                .seek(SeekFrom::Start(first))
                .await
                .map_err(Problem::internal)?;
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            );
            (StatusCode::PARTIAL_CONTENT, last - first + 1)
        }
        None => (StatusCode::OK, size),
    };
    let body = Body::from_stream(ReaderStream::new(handle.take(length)));
    response
        .status(status)
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .map_err(Problem::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> Result<Option<(u64, u64)>, u16> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, text.parse().unwrap());
        parse_range(&headers, size).map_err(|p| p.status.as_u16())
    }

    #[test]
    fn ranges_fit_the_file_or_are_refused() {
        assert_eq!(range("bytes=0-3", 100), Ok(Some((0, 3))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(
            range("bytes=50-500", 100),
            Ok(Some((50, 99))),
            "the end is clamped"
        );
        assert_eq!(range("bytes=100-", 100), Err(416));
        assert_eq!(range("bytes=5-3", 100), Err(416));
        assert_eq!(
            range("bytes=0-3", 0),
            Err(416),
            "an empty file has no range, and no panic"
        );
        assert_eq!(range("bytes=-0", 100), Err(416));
        assert_eq!(range("items=0-3", 100), Err(416));
        assert_eq!(range("bytes=0-1,5-6", 100), Err(400));
        assert_eq!(
            parse_range(&HeaderMap::new(), 100).map_err(|_| ()),
            Ok(None)
        );
    }
}
