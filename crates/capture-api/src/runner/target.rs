//! One target of a capture: one pod's interface, captured by its own engine thread into its own
//! file series `{namespace}_{pod}_{interface}_s{segment}.{ext}` in the capture's directory. A
//! restart of the API starts a new segment, so files of earlier segments are never overwritten;
//! their files and counters are carried into the target's status.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use capture_agent::afpacket::RingConfig;
use capture_agent::budget::Budget;
use capture_agent::output::FileSummary;
use capture_agent::{
    Capture, CaptureConfig, CaptureError, CaptureReport, EndReason, InterfaceSpec, LiveView,
    OutputPlan,
};
use capture_agent::{StopHandle, StopSignal};
use capture_spec::{CaptureSpec, FileStatus, TargetState, TargetStatus};
use chrono::{DateTime, Utc};

/// Ring per pod interface: pods are many and mostly quiet, so less than the CLI's 64 MiB.
const TARGET_RING_BYTES: u64 = 16 << 20;

/// Which pod interface a target captures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub namespace: String,
    pub pod: String,
    pub interface: String,
}

/// What earlier segments of this target (before a restart) captured.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub files: Vec<FileStatus>,
    pub segments: u32,
}

impl Earlier {
    pub fn from_status(status: &TargetStatus) -> Earlier {
        Earlier {
            packets: status.packets,
            bytes: status.bytes,
            drops: status.drops,
            files: status.files.clone(),
            segments: status
                .files
                .iter()
                .filter_map(|f| segment_of(&f.name))
                .max()
                .unwrap_or(0),
        }
    }
}

/// The segment number in a file name written by [`TargetRun`].
fn segment_of(name: &str) -> Option<u32> {
    let after = &name[name.rfind("_s")? + 2..];
    after.split(['-', '.']).next()?.parse().ok()
}

/// File names keep only characters that are safe everywhere; pod and interface names are
/// already close to that, but nothing user-controlled reaches a path unchecked.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn time_of(ns: Option<u64>) -> Option<DateTime<Utc>> {
    ns.map(|ns| DateTime::from_timestamp_nanos(ns as i64))
}

pub fn file_status(summary: &FileSummary) -> FileStatus {
    let name = summary
        .path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    FileStatus {
        id: name.clone(),
        name,
        size: summary.bytes,
        packets: summary.packets,
        first_packet_at: time_of(summary.first_packet_ns),
        last_packet_at: time_of(summary.last_packet_ns),
    }
}

pub struct TargetRun {
    key: TargetKey,
    node: String,
    stop: StopHandle,
    live: Arc<LiveView>,
    thread: Option<JoinHandle<Result<CaptureReport, CaptureError>>>,
    outcome: Option<Result<CaptureReport, String>>,
    earlier: Earlier,
}

impl TargetRun {
    /// Opens the capture (sockets bound before this returns) and starts its thread.
    pub fn start(
        directory: &Path,
        key: TargetKey,
        node: &str,
        spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<TargetRun, CaptureError> {
        let segment = earlier.segments + 1;
        let base: PathBuf = directory.join(format!(
            "{}_{}_{}_s{segment}.{}",
            file_safe(&key.namespace),
            file_safe(&key.pod),
            file_safe(&key.interface),
            spec.format.extension()
        ));
        let ring = RingConfig::with_size(
            TARGET_RING_BYTES,
            RingConfig::DEFAULT_BLOCK_SIZE,
            RingConfig::default().block_timeout,
        )?;
        let capture = Capture::open(CaptureConfig {
            budget,
            interfaces: vec![InterfaceSpec {
                name: key.interface.clone(),
                description: format!("{}/{} on {node}", key.namespace, key.pod),
            }],
            filter: spec.filters.clone(),
            limits: spec.limits(),
            duration: None,
            format: spec.format,
            output: OutputPlan::SingleFile(base),
            ring,
        })?;
        let (signal, stop) = StopSignal::new().map_err(CaptureError::Poll)?;
        let live = capture.live_view();
        let thread = std::thread::Builder::new()
            .name(format!("capture-{}", key.pod))
            .spawn(move || capture.run(&signal))
            .map_err(CaptureError::Poll)?;
        tracing::info!(namespace = %key.namespace, pod = %key.pod, interface = %key.interface, segment, "target capturing");
        Ok(TargetRun {
            key,
            node: node.to_string(),
            stop,
            live,
            thread: Some(thread),
            outcome: None,
            earlier,
        })
    }

    pub fn key(&self) -> &TargetKey {
        &self.key
    }

    /// What a live watcher needs: the description of this target's interface, and its tap.
    pub fn description(&self) -> String {
        format!("{}/{} on {}", self.key.namespace, self.key.pod, self.node)
    }

    pub fn live(&self) -> &Arc<LiveView> {
        &self.live
    }

    /// Asks the engine to drain and stop; [`TargetRun::finish`] waits for it.
    pub fn request_stop(&self) {
        self.stop.stop();
    }

    /// True once the engine ended by itself (limit reached, interface deleted, write failure).
    pub fn has_ended(&self) -> bool {
        self.outcome.is_some() || self.thread.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// Waits for the engine thread and keeps its report.
    pub fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.outcome = Some(match thread.join() {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("the capture thread panicked".into()),
            });
        }
    }

    /// The target's status now: earlier segments plus this one, live or final.
    pub fn status(&self, stopping_state: TargetState) -> TargetStatus {
        let mut files = self.earlier.files.clone();
        let (packets, bytes, drops, state, error) = match &self.outcome {
            None => {
                let counters = &self.live.interfaces[0];
                let load =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                if let Ok(current) = self.live.files.lock() {
                    files.extend(current.iter().map(file_status));
                }
                (
                    load(&counters.packets),
                    load(&counters.bytes),
                    load(&counters.drops),
                    TargetState::Capturing,
                    None,
                )
            }
            Some(Ok(report)) => {
                files.extend(report.files.iter().map(file_status));
                let state = match &report.end {
                    EndReason::InterfacesGone => TargetState::Gone,
                    EndReason::Failed(_) => TargetState::Failed,
                    EndReason::PacketLimit | EndReason::ByteLimit | EndReason::Duration => {
                        TargetState::Completed
                    }
                    EndReason::Stopped => stopping_state,
                };
                let error = match &report.end {
                    EndReason::Failed(message) => Some(message.clone()),
                    _ => None,
                };
                (report.packets, report.bytes, report.drops, state, error)
            }
            Some(Err(message)) => (0, 0, 0, TargetState::Failed, Some(message.clone())),
        };
        TargetStatus {
            node: self.node.clone(),
            namespace: self.key.namespace.clone(),
            pod: self.key.pod.clone(),
            interface: self.key.interface.clone(),
            state,
            packets: self.earlier.packets + packets,
            bytes: self.earlier.bytes + bytes,
            drops: self.earlier.drops + drops,
            files,
            error,
        }
    }
}

impl Drop for TargetRun {
    fn drop(&mut self) {
        // Never leave an engine running without an owner.
        self.request_stop();
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_read_back_from_file_names() {
        assert_eq!(segment_of("default_web-1_veth0_s3.pcapng"), Some(3));
        assert_eq!(
            segment_of("default_web-1_veth0_s12-000004.pcapng"),
            Some(12)
        );
        assert_eq!(segment_of("nothing.pcapng"), None);
        assert_eq!(file_safe("we/b..x y"), "we_b..x_y");
    }
}
