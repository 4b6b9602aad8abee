//! Looking into a capture's files without downloading them: the first packets decoded into
//! rows (the web UI's preview table) and packets and bytes over time (its chart). Both read the
//! files in merged time order, exactly as the merged download would, so what the page shows is
//! what Wireshark will show.

mod decode;
mod dns;

use std::ops::ControlFlow;
use std::path::Path;

use capture_agent::merge::{visit, ChainedInput, MergeError, MergeInput};
use capture_spec::CaptureStatus;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

pub use decode::{decode, Decoded};

/// The merge inputs of a capture: one per pod interface that has files, its rotated files in
/// order, named and described "namespace/pod on node".
pub fn capture_inputs(directory: &Path, status: &CaptureStatus) -> Vec<MergeInput> {
    status
        .targets
        .iter()
        .filter(|target| !target.files.is_empty())
        .map(|target| {
            let label = format!("{}/{} on {}", target.namespace, target.pod, target.node);
            let paths = target
                .files
                .iter()
                .map(|file| directory.join(&file.name))
                .collect();
            MergeInput::chained(label.clone(), ChainedInput::paths(paths)).with_description(label)
        })
        .collect()
}

/// One row of the preview table.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PacketRow {
    /// 1 for the capture's first packet, in merged time order.
    pub number: u64,
    /// When the packet was captured, RFC 3339 with nanoseconds.
    pub time: String,
    /// Seconds since the capture's first packet.
    pub relative_seconds: f64,
    /// The pod interface it was captured on: `namespace/pod on node`.
    pub target: String,
    /// `in` (to the pod's host side) or `out`, when the file records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    pub source: String,
    pub destination: String,
    /// The highest protocol decoded: TCP, UDP, DNS, ICMP, ICMPv6, ARP, ...
    pub protocol: String,
    /// Length on the wire.
    pub length: u32,
    /// Bytes kept in the file (less than `length` when cut by the snap length).
    pub captured_length: u32,
    /// A one-line summary, like Wireshark's Info column.
    pub info: String,
}

/// The first `limit` packets of `inputs`, decoded.
pub fn preview(inputs: Vec<MergeInput>, limit: usize) -> Result<Vec<PacketRow>, MergeError> {
    let labels: Vec<String> = inputs.iter().map(|input| input.name.clone()).collect();
    let mut rows = Vec::with_capacity(limit.min(1024));
    let mut first_ns = None;
    if limit == 0 {
        return Ok(rows);
    }
    visit(inputs, |packet| {
        let first = *first_ns.get_or_insert(packet.timestamp_ns);
        let decoded = decode(packet.link_type, packet.frame);
        rows.push(PacketRow {
            number: rows.len() as u64 + 1,
            time: time_of(packet.timestamp_ns),
            relative_seconds: packet.timestamp_ns.saturating_sub(first) as f64 / 1e9,
            target: labels.get(packet.input).cloned().unwrap_or_default(),
            direction: match packet.flags.map(|flags| flags & 0b11) {
                Some(1) => Some("in"),
                Some(2) => Some("out"),
                _ => None,
            },
            source: decoded.source,
            destination: decoded.destination,
            protocol: decoded.protocol,
            length: packet.original_len,
            captured_length: packet.frame.len() as u32,
            info: decoded.info,
        });
        if rows.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(rows)
}

/// Packets and bytes per time bucket over a capture's life.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Start of the first bucket.
    pub start: DateTime<Utc>,
    /// Width of every bucket, seconds: 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2,
    /// 6, 12 h or 1 day, the smallest that keeps the chart within [`MAX_BUCKETS`].
    pub bucket_seconds: u64,
    /// Packets captured in each bucket.
    pub packets: Vec<u64>,
    /// Bytes on the wire in each bucket.
    pub bytes: Vec<u64>,
}

/// The most buckets a timeline has; a chart's width in points.
pub const MAX_BUCKETS: u64 = 300;

const BUCKET_WIDTHS: [u64; 17] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400,
];

/// The bucket width for a span of `seconds`.
fn bucket_width(seconds: u64) -> u64 {
    BUCKET_WIDTHS
        .iter()
        .copied()
        .find(|width| seconds.div_ceil(*width) <= MAX_BUCKETS)
        .unwrap_or_else(|| seconds.div_ceil(MAX_BUCKETS))
}

/// Counts the packets of `inputs` between `start` and `end` (a packet outside, as a clock
/// step can make, lands in the first or last bucket).
pub fn timeline(
    inputs: Vec<MergeInput>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Timeline, MergeError> {
    // Whole seconds, rounded up: the last part-second gets its own bucket instead of
    // piling onto the one before.
    let span = ((end - start).num_milliseconds().max(1) as u64).div_ceil(1000);
    let width = bucket_width(span);
    let buckets = span.div_ceil(width).max(1) as usize;
    let mut packets = vec![0u64; buckets];
    let mut bytes = vec![0u64; buckets];
    let start_ns = start.timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
    let width_ns = width * 1_000_000_000;
    visit(inputs, |packet| {
        let bucket = (packet.timestamp_ns.saturating_sub(start_ns) / width_ns) as usize;
        let bucket = bucket.min(buckets - 1);
        packets[bucket] += 1;
        bytes[bucket] += u64::from(packet.original_len);
        ControlFlow::Continue(())
    })?;
    Ok(Timeline {
        start,
        bucket_seconds: width,
        packets,
        bytes,
    })
}

fn time_of(timestamp_ns: u64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(timestamp_ns as i64)
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_the_chart_within_its_width() {
        assert_eq!(bucket_width(1), 1);
        assert_eq!(bucket_width(300), 1);
        assert_eq!(bucket_width(301), 2);
        assert_eq!(bucket_width(3600), 15);
        assert_eq!(bucket_width(24 * 3600), 300);
        assert_eq!(bucket_width(400 * 86400), 115_200);
    }
}
