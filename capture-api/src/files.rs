//! A capture's files as the API hands them out, in both modes: found by the id podcap gave
//! them in the capture's own status (never by a path the user sent, so `../` and friends find
//! nothing), named for the browser, cut to one HTTP `Range`, and served from disk (standalone
//! mode; in Kubernetes mode the node agents serve them and `crate::kube::agents` relays them).

use std::io::SeekFrom;
use std::path::Path;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use capture_spec::FileStatus;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::problem::Problem;
use crate::store::CaptureRecord;

/// One file of a capture and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureFile {
    /// `namespace/pod` of the target that wrote it.
    pub pod: String,
    /// The node whose agent holds it.
    pub node: String,
    pub file: FileStatus,
}

/// Every file of a capture, target by target.
pub fn files_of(record: &CaptureRecord) -> Vec<CaptureFile> {
    record
        .status
        .targets
        .iter()
        .flat_map(|t| {
            let pod = format!("{}/{}", t.namespace, t.pod);
            t.files.iter().map(move |file| CaptureFile {
                pod: pod.clone(),
                node: t.node.clone(),
                file: file.clone(),
            })
        })
        .collect()
}

/// The file of `record` with this id, or a 404 saying how to list them.
pub fn find_file(record: &CaptureRecord, id: &str) -> Result<CaptureFile, Problem> {
    files_of(record)
        .into_iter()
        .find(|f| f.file.id == id)
        .ok_or_else(|| no_such_file(record, id))
}

/// The 404 for a file id that `record` does not list.
pub fn no_such_file(record: &CaptureRecord, id: &str) -> Problem {
    Problem::not_found(missing_file(record, id))
}

/// What to say of a file id that `record` does not list, and where the ids are.
pub fn missing_file(record: &CaptureRecord, id: &str) -> String {
    format!(
        "capture {}/{} has no file {id:?}: list its files with GET .../captures/{}/files",
        record.namespace, record.name, record.name
    )
}

/// The content type of a capture file, from the name podcap gave it.
pub fn content_type(name: &str) -> &'static str {
    if name.ends_with(".pcap") {
        "application/vnd.tcpdump.pcap"
    } else {
        "application/x-pcapng"
    }
}

/// `Content-Disposition` for a download saved as `name` (a name podcap made).
pub fn attachment(name: &str) -> Result<HeaderValue, Problem> {
    HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).map_err(Problem::internal)
}

/// A single `bytes=` range against a file of `size` bytes: Ok(None) = whole file.
pub fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, Problem> {
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

/// `file`, which lives at `path`, as a response honouring a `Range` header.
pub async fn serve_from_disk(
    path: &Path,
    file: &FileStatus,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let mut handle = tokio::fs::File::open(path).await.map_err(|e| {
        Problem::not_found(format!(
            "file {:?} is listed but not on disk ({e}); it may have been rotated out",
            file.id
        ))
    })?;
    let size = handle.metadata().await.map_err(Problem::internal)?.len();
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type(&file.name))
        .header(header::CONTENT_DISPOSITION, attachment(&file.name)?)
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
