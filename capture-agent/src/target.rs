//! One target of a capture: one pod's interface, captured on its host-side veth (or inside the
//! pod's network namespace) by the process's engine thread ([`crate::hub`]) into its own file
//! series `{namespace}_{pod}_{interface}_s{segment}.{ext}` in the
//! capture's directory. A restart (of the standalone API or of a node agent), or a pod that comes
//! back, starts a new segment, so earlier files are never overwritten; their files and counters
//! are carried into the target's status. Shared by the standalone runner (capture-api) and the
//! node agent's cluster mode ([`crate::cluster`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use capture_spec::{CaptureSpec, FileStatus, TargetState, TargetStatus};
use chrono::{DateTime, Utc};

use crate::afpacket::{RingConfig, Viewpoint};
use crate::budget::Budget;
use crate::hub::{Hub, Running};
use crate::output::FileSummary;
use crate::{Capture, CaptureConfig, CaptureError, EndReason, InterfaceSpec, LiveView, OutputPlan};

/// What earlier segments of a target captured.
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

    /// `current` (a target's status with only its current segment's counters and files) with
    /// these earlier segments' counters added and files before its own.
    pub fn carry_into(&self, current: TargetStatus) -> TargetStatus {
        let mut files = self.files.clone();
        files.extend(current.files);
        TargetStatus {
            packets: self.packets + current.packets,
            bytes: self.bytes + current.bytes,
            drops: self.drops + current.drops,
            files,
            ..current
        }
    }
}

/// The segment number in a file name written by [`TargetRun`].
pub fn segment_of(name: &str) -> Option<u32> {
    let after = &name[name.rfind("_s")? + 2..];
    after.split(['-', '.']).next()?.parse().ok()
}

/// File names keep only characters that are safe everywhere: nothing a user controls reaches a
/// path unchecked.
pub fn file_safe(text: &str) -> String {
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
    ns.and_then(|ns| i64::try_from(ns).ok())
        .map(DateTime::from_timestamp_nanos)
}

/// A written file as it appears in status; its id is its file name (unique in the capture's
/// directory on this node), which the file endpoint maps back to the file.
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

/// Who a target is: names for its files and status, and the host interface it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetIdentity {
    pub namespace: String,
    pub pod: String,
    /// The interface as the target's status names it (the pod's `eth0` in a cluster; the host
    /// interface itself in standalone mode).
    pub interface: String,
    pub node: String,
    /// The host-side interface the capture ring binds (capturePoint hostVeth).
    pub host_interface: String,
    /// The pod's network namespace, when the ring binds `interface` inside it (capturePoint
    /// podNetns) instead of `host_interface` on the host.
    pub pod_netns: Option<PathBuf>,
}

impl TargetIdentity {
    /// The interface the target's ring binds. Either way the file's directions are the pod's:
    /// a packet the pod sends is outbound, on its own eth0 and, seen from the peer, on its host
    /// veth.
    pub fn capture_interface(&self) -> InterfaceSpec {
        match &self.pod_netns {
            Some(netns) => InterfaceSpec {
                name: self.interface.clone(),
                description: self.description(),
                netns: Some(netns.clone()),
                viewpoint: Viewpoint::Interface,
            },
            None => InterfaceSpec {
                name: self.host_interface.clone(),
                description: self.description(),
                netns: None,
                viewpoint: Viewpoint::Peer,
            },
        }
    }

    /// pcapng `if_description`: "namespace/pod on NODE".
    pub fn description(&self) -> String {
        format!("{}/{} on {}", self.namespace, self.pod, self.node)
    }

    /// A status entry that names this target, in `state`, with nothing recorded.
    pub fn entry(&self, state: TargetState) -> TargetStatus {
        TargetStatus {
            node: self.node.clone(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            interface: self.interface.clone(),
            state,
            ..TargetStatus::default()
        }
    }
}

pub struct TargetRun {
    identity: TargetIdentity,
    running: Running,
    earlier: Earlier,
}

impl TargetRun {
    /// Opens the capture on the target's interface (its ring is bound before this returns) and
    /// runs it on `hub`, in segment `earlier.segments + 1`.
    pub fn start(
        hub: &Hub,
        directory: &Path,
        identity: TargetIdentity,
        spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<TargetRun, CaptureError> {
        let segment = earlier.segments + 1;
        let base = directory.join(format!(
            "{}_{}_{}_s{segment}.{}",
            file_safe(&identity.namespace),
            file_safe(&identity.pod),
            file_safe(&identity.interface),
            spec.format.extension()
        ));
        let capture = Capture::open(CaptureConfig {
            budget,
            interfaces: vec![identity.capture_interface()],
            filter: spec.filters.clone(),
            bpf_filter: spec.bpf_filter.clone(),
            limits: spec.limits(),
            duration: None,
            format: spec.format,
            output: OutputPlan::SingleFile(base),
            ring: RingConfig::default(),
            rings: Some(hub.rings().clone()),
        })?;
        let running = hub.start(capture)?;
        tracing::info!(namespace = %identity.namespace, pod = %identity.pod,
            host_interface = %identity.host_interface, segment, "target capturing");
        Ok(TargetRun {
            identity,
            running,
            earlier,
        })
    }

    pub fn identity(&self) -> &TargetIdentity {
        &self.identity
    }

    pub fn live(&self) -> &Arc<LiveView> {
        self.running.live()
    }

    /// Asks the engine to drain and stop; [`TargetRun::finish`] waits for it.
    pub fn request_stop(&self) {
        self.running.request_stop();
    }

    /// True once the capture ended by itself (limit reached, interface deleted, write failure).
    pub fn has_ended(&self) -> bool {
        self.running.has_ended()
    }

    /// Waits for the capture to end and keeps its report.
    pub fn finish(&mut self) {
        self.running.finish();
    }

    /// The target's status now: earlier segments plus this one, live or final. A target that
    /// was asked to stop reports `stopping_state`.
    pub fn status(&self, stopping_state: TargetState) -> TargetStatus {
        let mut files = Vec::new();
        let (packets, bytes, drops, state, error) = match self.running.report() {
            None => {
                let live = self.running.live();
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                let (packets, bytes, drops) = live.interfaces.first().map_or((0, 0, 0), |c| {
                    (load(&c.packets), load(&c.bytes), load(&c.drops))
                });
                if let Ok(current) = live.files.lock() {
                    files.extend(current.iter().map(file_status));
                }
                (packets, bytes, drops, TargetState::Capturing, None)
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
                    EndReason::InterfacesGone => Some(format!(
                        "host interface {} went away (the pod was deleted or restarted)",
                        self.identity.host_interface
                    )),
                    _ => None,
                };
                (report.packets, report.bytes, report.drops, state, error)
            }
            Some(Err(message)) => (0, 0, 0, TargetState::Failed, Some(message.clone())),
        };
        self.earlier.carry_into(TargetStatus {
            packets,
            bytes,
            drops,
            files,
            error,
            ..self.identity.entry(state)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_read_back_from_file_names() {
        assert_eq!(segment_of("shop_web-1_eth0_s3.pcapng"), Some(3));
        assert_eq!(segment_of("shop_web-1_eth0_s12-000004.pcapng"), Some(12));
        assert_eq!(segment_of("nothing.pcapng"), None);
        assert_eq!(file_safe("we/b..x y"), "we_b..x_y");
    }
}
