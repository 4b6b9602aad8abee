//! A live pcapng stream of a capture the in-process runner is recording: one interface per pod
//! that is capturing when the stream starts (reconnect to see pods that join later). The
//! capture never waits for a watcher: one that falls behind misses whole chunks of packets
//! (counted, see `Backend::live_chunks_skipped`) and the stream stays valid.

use std::sync::mpsc;

use axum::http::header;
use axum::response::Response;
use capture_agent::format::InterfaceInfo;
use capture_agent::tap::{pump, QUEUED_CHUNKS};

use crate::problem::Problem;
use crate::runner::Runner;
use crate::store::CaptureRecord;
use crate::stream::{self, LiveStream};

/// The live stream of `record`, or a 409 when none of its pods is capturing.
pub fn stream(runner: &Runner, record: &CaptureRecord) -> Result<Response, Problem> {
    let snap_length = record.spec.snap_length;
    let filter = record.spec.filters.to_pcap_expression();
    let (sender, receiver) = mpsc::sync_channel(QUEUED_CHUNKS);
    let Some(targets) = runner.subscribe(&record.uid, &sender) else {
        return Err(Problem::conflict(format!(
            "capture {}/{} has no pod capturing right now",
            record.namespace, record.name
        )));
    };
    // Only the taps hold senders now: when the capture ends they go, and so does the stream.
    drop(sender);
    let interfaces: Vec<InterfaceInfo> = targets
        .into_iter()
        .map(|(name, description)| InterfaceInfo {
            name,
            description,
            filter_expression: filter.clone(),
        })
        .collect();
    let (mut writer, body) = stream::channel();
    tokio::task::spawn_blocking(move || {
        let _open = LiveStream::opened();
        pump(
            &receiver,
            &interfaces,
            snap_length,
            "podcap live",
            &mut writer,
        );
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-pcapng")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .map_err(Problem::internal)
}
