//! `GET /metrics`: Prometheus text for the numbers a person would graph — captures by phase,
//! packets, bytes and kernel drops of the stored captures, open live streams and the live
//! chunks slow watchers missed, and share-link downloads. Computed from the store and the
//! backend at scrape time, so they survive restarts and never drift from what the API shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use capture_spec::Phase;

use crate::problem::Problem;
use crate::state::AppState;
use crate::stream::LiveStream;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Captures by phase, packets, bytes and kernel drops of the stored captures, live \
        streams, skipped live chunks, share-link downloads and schedule runs. No token needed.",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "The store does not answer; the log says why.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, Problem> {
    let store = state.store.clone();
    let backend = state.backend.clone();
    let audit = state.audit.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<String, Problem> {
        let captures = store.captures(None, None).map_err(Problem::internal)?;
        let mut by_phase: BTreeMap<&str, u64> = Phase::ALL.iter().map(|p| (p.as_str(), 0)).collect();
        let (mut packets, mut bytes, mut drops) = (0u64, 0u64, 0u64);
        for record in &captures {
            *by_phase.entry(record.phase().as_str()).or_default() += 1;
            for target in &record.status.targets {
                packets += target.packets;
                bytes += target.bytes;
                drops += target.drops;
            }
        }
        let skipped = backend.live_chunks_skipped();
        let audited = audit.counts();
        let downloads = store.share_downloads_total().map_err(Problem::internal)?;
        let mut out = String::new();
        let phases: Vec<(String, u64)> = by_phase
            .iter()
            .map(|(p, n)| (format!("{{phase=\"{p}\"}}"), *n))
            .collect();
        metric(
            &mut out,
            "podcap_captures",
            "gauge",
            "Stored captures by phase.",
            &phases,
        );
        let one = |v| vec![(String::new(), v)];
        metric(
            &mut out,
            "podcap_capture_packets",
            "gauge",
            "Packets written by the stored captures.",
            &one(packets),
        );
        metric(
            &mut out,
            "podcap_capture_bytes",
            "gauge",
            "Packet bytes written by the stored captures.",
            &one(bytes),
        );
        metric(
            &mut out,
            "podcap_capture_kernel_drops",
            "gauge",
            "Packets the kernel dropped for the stored captures because a ring was full.",
            &one(drops),
        );
        let audit_kinds: Vec<(String, u64)> = crate::audit::KINDS
            .iter()
            .map(|kind| {
                let count = audited.get(*kind).copied().unwrap_or(0);
                (format!("{{kind=\"{kind}\"}}"), count)
            })
            .collect();
        metric(
            &mut out,
            "podcap_audit_events_total",
            "counter",
            "Audit events recorded by this process, by kind.",
            &audit_kinds,
        );
        metric(
            &mut out,
            "podcap_live_streams",
            "gauge",
            "Open live streams.",
            &one(LiveStream::open_now()),
        );
        metric(
            &mut out,
            "podcap_live_chunks_skipped",
            "gauge",
            "Chunks of packets live watchers of running captures missed because they were slow.",
            &one(skipped),
        );
        metric(
            &mut out,
            "podcap_share_downloads",
            "gauge",
            "Downloads through existing share links.",
            &one(downloads),
        );
        let runs = &crate::schedules::RUN_COUNTS;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let outcomes = vec![
            ("{outcome=\"started\"}".to_string(), load(&runs.started)),
            ("{outcome=\"held_back\"}".to_string(), load(&runs.held_back)),
            ("{outcome=\"missed\"}".to_string(), load(&runs.missed)),
        ];
        metric(
            &mut out,
            "podcap_schedule_runs_total",
            "counter",
            "Scheduled runs since this process started: started, held back by concurrencyPolicy Forbid, or missed.",
            &outcomes,
        );
        Ok(out)
    })
    .await
    .map_err(Problem::internal)??;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
