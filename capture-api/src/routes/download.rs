//! `GET .../captures/{name}/pcap`: every file of a capture merged into one time-ordered capture
//! (`?format=pcapng`, the default, or `?format=pcap`), streamed as it is merged. One pcapng
//! interface per pod interface, described as "namespace/pod on node". The merge runs on a
//! blocking thread with constant memory whatever the capture's size; a slow client slows it,
//! a client that leaves stops it. Share links serve the same download.
//!
//! Resuming (`Range`): only a finished capture (Completed, Stopped, Failed) has merged bytes
//! that stay the same from one request to the next, so only its answers carry a strong `ETag`
//! (a hash of the capture's uid, the format, and the (file id, size) of every file merged: any
//! change gives another tag) and `Accept-Ranges: bytes`, and only they honour `Range` and
//! `If-Range`. A running capture's files still grow and rotate, so an offset would not name the
//! same byte twice: it is always answered 200 with the whole stream, no `ETag`, no
//! `Accept-Ranges`, whatever `Range` says. One range is served (`bytes=N-`, `bytes=N-M`,
//! `bytes=-N`, parsed by [`crate::files::parse_range`]); several ranges are ignored and answered
//! 200 with everything (RFC 9110 lets a server ignore `Range`), as is a `Range` whose `If-Range`
//! is not the current `ETag`. The merged length is not known without merging (the merge
//! rewrites headers and interface blocks), so a range request first merges into a byte counter
//! (constant memory, files read twice; the length is then remembered per `ETag`), then streams
//! the merge again, dropping the first N bytes and stopping after the last one. So a 206
//! carries `Content-Range: bytes N-M/LEN` and `Content-Length`, and an unsatisfiable range a 416
//! problem with `Content-Range: bytes */LEN`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use capture_agent::merge::merge;
use capture_spec::OutputFormat;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::captures::find;
use crate::files::{attachment, content_type, files_of, parse_range};
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

/// The strong validator of a finished capture's merged download: its uid, the format and the
/// (id, size) of every file it merges, hashed.
pub fn merged_etag(record: &CaptureRecord, format: OutputFormat) -> String {
    let mut hash = Sha256::new();
    hash.update(record.uid.as_bytes());
    hash.update([0]);
    hash.update(format.extension().as_bytes());
    for file in files_of(record) {
        hash.update([0]);
        hash.update(file.file.id.as_bytes());
        hash.update([0]);
        hash.update(file.file.size.to_be_bytes());
    }
    format!("\"{}\"", hex::encode(&hash.finalize()[..16]))
}

/// True when `headers` ask for one range that may be served against `etag`: a `Range` of a
/// single range, and no `If-Range` or one naming exactly `etag` (strong comparison; a date or
/// a weak tag never matches, so the answer is the whole download).
fn wants_range(headers: &HeaderMap, etag: &str) -> bool {
    let Some(range) = headers.get(header::RANGE) else {
        return false;
    };
    if range.to_str().map_or(true, |text| text.contains(',')) {
        return false;
    }
    headers
        .get(header::IF_RANGE)
        .is_none_or(|tag| tag.as_bytes() == etag.as_bytes())
}

/// Merged lengths by `ETag`, so that resuming the same download merges once to count.
fn known_lengths() -> &'static Mutex<HashMap<String, u64>> {
    static LENGTHS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    LENGTHS.get_or_init(Mutex::default)
}

/// The table of merged lengths. A panic while it was held cannot have left a wrong length in
/// it (an insert is one step), so a poisoned lock is used as it is.
fn remembered_lengths() -> std::sync::MutexGuard<'static, HashMap<String, u64>> {
    known_lengths()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lengths remembered at most; the table is emptied when full.
const KNOWN_LENGTHS: usize = 1024;

/// Counts what it is given and keeps nothing.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The length of `record`'s merged download in `format`, tagged `etag`: merged into a counter
/// unless known.
async fn merged_length(
    state: &AppState,
    record: &CaptureRecord,
    format: OutputFormat,
    etag: &str,
) -> Result<u64, Problem> {
    if let Some(length) = remembered_lengths().get(etag) {
        return Ok(*length);
    }
    let inputs = state.backend.inputs(record).await?;
    let length = tokio::task::spawn_blocking(move || {
        let mut counter = Counter(0);
        merge(inputs, format, &mut counter).map(|_| counter.0)
    })
    .await
    .map_err(Problem::internal)?
    .map_err(|e| Problem::internal(format!("counting the merged download: {e}")))?;
    let mut lengths = remembered_lengths();
    if lengths.len() >= KNOWN_LENGTHS {
        lengths.clear();
    }
    lengths.insert(etag.to_string(), length);
    Ok(length)
}

/// Passes on the bytes from `skip` on, `remaining` of them, then fails the writes after, so
/// the merge stops once the range is out.
struct Slice<W> {
    inner: W,
    skip: u64,
    remaining: u64,
}

impl<W: Write> Write for Slice<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Err(io::Error::other("the range is complete"));
        }
        let skipped = self.skip.min(bytes.len() as u64);
        self.skip -= skipped;
        let rest = &bytes[skipped as usize..];
        let taken = (rest.len() as u64).min(self.remaining) as usize;
        self.inner.write_all(&rest[..taken])?;
        self.remaining -= taken as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The merged capture of `record` as a streamed response. With `headers` (the merged-download
/// route), a finished capture's answer carries `ETag` and `Accept-Ranges` and honours one
/// `Range` (see the module's documentation); without (share links, tickets), it is always
/// the whole download.
pub async fn merged_response(
    state: &AppState,
    record: &CaptureRecord,
    format: OutputFormat,
    headers: Option<&HeaderMap>,
) -> Result<Response, Problem> {
    let filename = format!("{}.{}", record.name, format.extension());
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type(&filename))
        .header(header::CONTENT_DISPOSITION, attachment(&filename)?);
    let mut range = None;
    if let Some(headers) = headers.filter(|_| record.phase().is_finished()) {
        let etag = merged_etag(record, format);
        response = response
            .header(header::ETAG, &etag)
            .header(header::ACCEPT_RANGES, "bytes");
        if wants_range(headers, &etag) {
            let length = merged_length(state, record, format, &etag).await?;
            match parse_range(headers, length) {
                Ok(Some((first, last))) => {
                    response = response
                        .header(
                            header::CONTENT_RANGE,
                            format!("bytes {first}-{last}/{length}"),
                        )
                        .header(header::CONTENT_LENGTH, last - first + 1);
                    range = Some((first, last));
                }
                Ok(None) => {}
                Err(problem) => {
                    let mut refused = problem.into_response();
                    if refused.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                        refused.headers_mut().insert(
                            header::CONTENT_RANGE,
                            HeaderValue::from_str(&format!("bytes */{length}"))
                                .map_err(Problem::internal)?,
                        );
                    }
                    return Ok(refused);
                }
            }
        }
    }
    let inputs = state.backend.inputs(record).await?;
    let (writer, body) = stream::channel();
    let name = record.name.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Slice {
            inner: writer,
            skip: range.map_or(0, |(first, _)| first),
            remaining: range.map_or(u64::MAX, |(first, last)| last - first + 1),
        };
        let result = merge(inputs, format, &mut out);
        match result {
            Ok(report) if !report.truncated_inputs.is_empty() => {
                tracing::info!(capture = %name, inputs = ?report.truncated_inputs, "merged files whose last record was cut short");
            }
            Ok(_) => {}
            // The range is out: the merge was stopped on purpose.
            Err(_) if out.remaining == 0 => {}
            Err(error) => {
                tracing::warn!(capture = %name, %error, "merged download failed");
                out.inner.fail(std::io::Error::other(error.to_string()));
                return;
            }
        }
        if let Err(error) = out.flush() {
            tracing::debug!(capture = %name, %error, "merged download ended early");
        }
    });
    let status = match range {
        Some(_) => StatusCode::PARTIAL_CONTENT,
        None => StatusCode::OK,
    };
    response
        .status(status)
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
        interface, described as `namespace/pod on node`. A finished capture (Completed, Stopped, \
        Failed) can be resumed: its answer carries a strong `ETag` (changes with any file merged) \
        and `Accept-Ranges: bytes`, and one `Range` (`bytes=FIRST-`, `bytes=FIRST-LAST`, \
        `bytes=-SUFFIX`) is answered 206, with `If-Range` honoured. A running capture's merged bytes \
        still change, so it is always answered 200 in full, without `ETag` or `Accept-Ranges`. \
        Several ranges, or an `If-Range` that is not the current `ETag`, get 200 in full.",
    params(
        CapturePath,
        FormatQuery,
        ("Range" = Option<String>, Header, description = "One byte range of a finished capture's merged download, e.g. `bytes=1048576-`; ignored for a running capture, several ranges are ignored (200 in full).", example = "bytes=1048576-"),
        ("If-Range" = Option<String>, Header, description = "The `ETag` of the download being resumed: when it is not the current one, the answer is 200 in full."),
    ),
    responses(
        (status = 200, description = "The merged capture (`pcapng` by default, `pcap` with `?format=pcap`).", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap")),
            headers(
                ("Content-Disposition" = String, description = "`attachment; filename=\"NAME.pcapng\"` (or `.pcap`)"),
                ("ETag" = String, description = "Finished captures only: strong validator of these bytes, for `If-Range`."),
                ("Accept-Ranges" = String, description = "`bytes`, finished captures only."),
            )),
        (status = 206, description = "The requested range of a finished capture's merged download.", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap")),
            headers(
                ("Content-Range" = String, description = "`bytes FIRST-LAST/LENGTH`"),
                ("Content-Length" = u64, description = "The range's length."),
                ("ETag" = String, description = "Strong validator of the whole download."),
                ("Accept-Ranges" = String, description = "`bytes`"),
            )),
        (status = 400, description = "A malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range does not fit the merged download of a finished capture.", body = Problem, content_type = "application/problem+json",
            headers(("Content-Range" = String, description = "`bytes */LENGTH`"))),
        (status = 422, description = "A bad `format`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn merged(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let format = parse_format(&query)?;
    let record = find(&state, &namespace, &name)?;
    merged_response(&state, &record, format, Some(&headers)).await
}
