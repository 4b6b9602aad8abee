//! One capture as this node (or, standalone, this machine) runs it: the targets recording now,
//! a status entry for every pod interface it has recorded or tried to (including an earlier
//! process's, so a restart loses nothing), and the packet/byte budget its targets share.
//!
//! The entries are what the mode reports: the standalone runner writes them into the stored
//! status, the node agent writes them into this node's PacketCaptureSlices. A budget counts this
//! node's targets only, so a capture on N nodes may record up to N times its limits in total.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use capture_spec::{CaptureSpec, TargetKey, TargetState, TargetStatus};
use chrono::{DateTime, Utc};

use crate::budget::Budget;
use crate::format::InterfaceInfo;
use crate::podnet::HostInterface;
use crate::tap::TapChunk;
use crate::target::TargetRun;
use crate::EndReason;

use super::opener::Target;

/// One capture on this node.
pub struct CaptureRun<T = TargetRun> {
    pub namespace: String,
    pub name: String,
    /// The capture's spec; the node agent sets it again every pass (the API stops a capture by
    /// setting its endTime).
    pub spec: CaptureSpec,
    /// The node every target of this run records on.
    pub node: String,
    /// Where the capture's files go on this node.
    pub directory: PathBuf,
    pub(super) running: BTreeMap<TargetKey, Running<T>>,
    pub(super) entries: BTreeMap<TargetKey, TargetStatus>,
    pub(super) budget: Option<Arc<Budget>>,
    /// When a target was last tried, so a pod that cannot be mapped or opened is not tried
    /// every pass.
    pub(super) attempts: HashMap<TargetKey, DateTime<Utc>>,
}

/// A target recording now: which incarnation of its pod, on which host interface.
pub struct Running<T> {
    pub uid: String,
    pub host: HostInterface,
    pub target: T,
}

/// The budget of `spec` on this node, counting what `entries` (earlier segments) already used.
fn budget_for<'a>(
    spec: &CaptureSpec,
    entries: impl Iterator<Item = &'a TargetStatus>,
) -> Option<Arc<Budget>> {
    if spec.max_packets.is_none() && spec.max_bytes.is_none() {
        return None;
    }
    let (packets, bytes) = entries.fold((0, 0), |(p, b), t| (p + t.packets, b + t.bytes));
    Some(Arc::new(Budget::new(
        spec.max_packets,
        spec.max_bytes,
        packets,
        bytes,
    )))
}

impl<T: Target> CaptureRun<T> {
    /// A run of capture `namespace/name` on `node`, writing into `directory`, that carries on
    /// from `earlier`: the capture's status entries, of which this node's are kept (an earlier
    /// process's). File sizes are read again from `directory`: a process killed outright
    /// reported them a little before it died. (Packet counts of such a file stay as reported.)
    pub fn resume(
        namespace: &str,
        name: &str,
        spec: &CaptureSpec,
        node: &str,
        directory: PathBuf,
        earlier: &[TargetStatus],
    ) -> CaptureRun<T> {
        let mut entries: BTreeMap<TargetKey, TargetStatus> = earlier
            .iter()
            .filter(|t| t.node == node)
            .map(|t| (t.key(), t.clone()))
            .collect();
        for file in entries.values_mut().flat_map(|t| t.files.iter_mut()) {
            if let Ok(meta) = std::fs::metadata(directory.join(&file.name)) {
                file.size = meta.len();
            }
        }
        CaptureRun {
            namespace: namespace.to_string(),
            name: name.to_string(),
            spec: spec.clone(),
            node: node.to_string(),
            directory,
            budget: budget_for(spec, entries.values()),
            running: BTreeMap::new(),
            entries,
            attempts: HashMap::new(),
        }
    }

    /// The targets recording now, in key order.
    pub fn running(&self) -> impl Iterator<Item = &Running<T>> {
        self.running.values()
    }

    /// True while at least one target records.
    pub fn is_recording(&self) -> bool {
        !self.running.is_empty()
    }

    /// Every entry this node reports for the capture, in key order.
    pub fn entries(&self) -> impl Iterator<Item = &TargetStatus> {
        self.entries.values()
    }

    /// The entries, to report.
    pub fn report(&self) -> Vec<TargetStatus> {
        self.entries.values().cloned().collect()
    }

    /// Puts every entry into `targets` (a capture's status list), replacing the one with the
    /// same key and appending new ones, so the list keeps its order.
    pub fn report_into(&self, targets: &mut Vec<TargetStatus>) {
        for entry in self.entries.values() {
            match targets.iter_mut().find(|t| t.key() == entry.key()) {
                Some(slot) => slot.clone_from(entry),
                None => targets.push(entry.clone()),
            }
        }
    }

    /// True when this node holds (or is writing) files of the capture.
    pub fn holds_files(&self) -> bool {
        self.is_recording() || self.entries.values().any(|t| !t.files.is_empty())
    }

    /// Which of the capture's limits (`maxPackets`, `maxBytes`) its targets have reached here.
    pub fn limit_reached(&self) -> Option<EndReason> {
        self.budget
            .as_ref()
            .filter(|budget| budget.is_spent())
            .map(|budget| budget.reason())
    }

    /// Drains every target and ends it, and every entry still waiting or capturing, in
    /// `state` (`Completed` at the end of the window, `Stopped` when a user stops it).
    pub fn end(&mut self, state: TargetState) {
        self.stop_all(state);
        for entry in self.entries.values_mut() {
            if !entry.state.is_finished() {
                entry.state = state;
            }
        }
    }

    /// Drains every target, closing its files, but leaves the entries `Capturing`: the process
    /// is going away, and the next one resumes them in new segments.
    pub fn suspend(&mut self) {
        self.stop_all(TargetState::Capturing);
    }

    /// Stops the targets of `keys`, recording their final status with `state` and `error`
    /// (unless the target reports an error of its own).
    pub(super) fn stop(&mut self, keys: &[TargetKey], state: TargetState, error: Option<&str>) {
        // All are asked first, so they drain in parallel.
        for key in keys {
            if let Some(running) = self.running.get(key) {
                running.target.request_stop();
            }
        }
        for key in keys {
            if let Some(mut running) = self.running.remove(key) {
                running.target.finish();
                let mut status = running.target.status(state);
                if status.error.is_none() {
                    status.error = error.map(str::to_string);
                }
                self.entries.insert(key.clone(), status);
            }
        }
    }

    pub(super) fn stop_all(&mut self, state: TargetState) {
        let keys: Vec<TargetKey> = self.running.keys().cloned().collect();
        self.stop(&keys, state, None);
    }

    /// Running targets' entries take their live counters and files.
    pub(super) fn refresh(&mut self) {
        for (key, running) in &self.running {
            self.entries
                .insert(key.clone(), running.target.status(TargetState::Capturing));
        }
    }
}

impl CaptureRun<TargetRun> {
    /// Subscribes `sender` to every recording target, each tagged with its index in the
    /// returned list of pcapng interfaces (its host interface, "namespace/pod on NODE", and the
    /// capture's filter).
    pub fn subscribe(&self, sender: &SyncSender<TapChunk>) -> Vec<InterfaceInfo> {
        let filter = self.spec.filters.to_pcap_expression();
        self.running
            .values()
            .enumerate()
            .map(|(index, running)| {
                let target = &running.target;
                target
                    .live()
                    .tap
                    .subscribe(sender.clone(), u32::try_from(index).unwrap_or(u32::MAX));
                InterfaceInfo {
                    name: target.identity().host_interface.clone(),
                    description: target.identity().description(),
                    filter_expression: filter.clone(),
                }
            })
            .collect()
    }

    /// Live chunks sent to and skipped for (slow) watchers, over every recording target.
    pub fn live_chunk_counts(&self) -> (u64, u64) {
        self.running
            .values()
            .fold((0, 0), |(sent, skipped), running| {
                let tap = &running.target.live().tap;
                (sent + tap.sent_chunks(), skipped + tap.skipped_chunks())
            })
    }
}
