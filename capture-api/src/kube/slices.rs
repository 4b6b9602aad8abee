//! The API's view of the agents' PacketCaptureSlices (see `capture_spec::slice`): one
//! kube-runtime reflector mirroring every slice in the cluster, so that reading a capture adds
//! its nodes' targets without a request to the API server, and the status controller aggregates
//! every capture's totals from memory once a pass.
//!
//! A capture's targets are those of its slices (selected by capture uid, never by name) merged
//! with what its own `status.targets` still holds: captures made before slices existed keep
//! their targets there, and after an upgrade a node's slice replaces its old entries key by key
//! ([`merged`]).
//!
//! The mirror is started by [`Slices::start`] (capture-api's start-up); until its first listing
//! is complete, reads wait for it up to [`READY_WAIT`] and then answer 503, since a capture read
//! without its targets would look as if it had captured nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture_agent::cluster::watch::RewatchBackoff;
use capture_spec::{PacketCaptureSlice, TargetStatus};
use futures::StreamExt;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::store::StoreError;

/// How long a read waits for the first listing of slices.
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// The mirrored slices.
pub struct Slices {
    reader: Store<PacketCaptureSlice>,
    /// Taken by [`Slices::start`].
    writer: Mutex<Option<Writer<PacketCaptureSlice>>>,
}

impl Default for Slices {
    fn default() -> Self {
        let (reader, writer) = reflector::store();
        Slices {
            reader,
            writer: Mutex::new(Some(writer)),
        }
    }
}

impl Slices {
    /// Starts mirroring on the current runtime (once; later calls do nothing).
    pub fn start(&self, client: &Client) {
        let Some(writer) = self.writer.lock().ok().and_then(|mut slot| slot.take()) else {
            return;
        };
        let api = Api::<PacketCaptureSlice>::all(client.clone());
        // Retried within seconds after an outage: reads show counters as fresh as the mirror.
        let stream = watcher(api, watcher::Config::default())
            .backoff(RewatchBackoff::default())
            .reflect(writer);
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "watching PacketCaptureSlices failed (is the packetcaptureslices.podcap.io CRD installed?); retrying");
                }
            }
            tracing::error!("the PacketCaptureSlice watch ended");
        });
    }

    /// Waits until the first listing is complete, at most [`READY_WAIT`].
    pub async fn ready(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(READY_WAIT, self.reader.wait_until_ready()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "the nodes' capture slices (PacketCaptureSlices) have not been listed yet: check that the packetcaptureslices.podcap.io CRD is installed (kubectl get crd packetcaptureslices.podcap.io) and capture-api's log".into(),
            )),
        }
    }

    /// The slices of capture `uid`.
    pub fn of(&self, uid: &str) -> Vec<Arc<PacketCaptureSlice>> {
        self.reader
            .state()
            .into_iter()
            .filter(|slice| slice.spec.capture_uid == uid)
            .collect()
    }

    /// Every capture's slices, by capture uid: one walk over the mirror.
    pub fn by_capture(&self) -> HashMap<String, Vec<Arc<PacketCaptureSlice>>> {
        let mut by_capture: HashMap<String, Vec<Arc<PacketCaptureSlice>>> = HashMap::new();
        for slice in self.reader.state() {
            by_capture
                .entry(slice.spec.capture_uid.clone())
                .or_default()
                .push(slice);
        }
        by_capture
    }

    /// Where capture `uid` lives, if any slice of it is mirrored: (namespace, name).
    pub fn capture_named(&self, uid: &str) -> Option<(String, String)> {
        self.reader
            .state()
            .into_iter()
            .find(|slice| slice.spec.capture_uid == uid)
            .and_then(|slice| {
                Some((
                    slice.metadata.namespace.clone()?,
                    slice.spec.capture.clone(),
                ))
            })
    }
}

/// A capture's targets, by reference: those of `status.targets` (written there by agents
/// before slices existed) with each replaced by the slice entry of the same key, plus the
/// slices' others. In no particular order.
pub fn merged_refs<'a>(
    legacy: &'a [TargetStatus],
    slices: &'a [Arc<PacketCaptureSlice>],
) -> Vec<&'a TargetStatus> {
    let from_slices = slices.iter().flat_map(|slice| slice.spec.targets.iter());
    if legacy.is_empty() {
        return from_slices.collect();
    }
    let key = |t: &'a TargetStatus| (t.node.as_str(), t.pod.as_str(), t.interface.as_str());
    let mut by_key: BTreeMap<(&str, &str, &str), &TargetStatus> =
        legacy.iter().map(|t| (key(t), t)).collect();
    by_key.extend(from_slices.map(|t| (key(t), t)));
    by_key.into_values().collect()
}

/// [`merged_refs`], cloned and sorted by node, pod and interface.
pub fn merged(legacy: &[TargetStatus], slices: &[Arc<PacketCaptureSlice>]) -> Vec<TargetStatus> {
    let mut targets: Vec<TargetStatus> = merged_refs(legacy, slices).into_iter().cloned().collect();
    targets.sort_unstable_by(TargetStatus::cmp_by_key);
    targets
}

#[cfg(test)]
mod tests {
    use capture_spec::TargetState;

    use super::*;

    fn target(node: &str, pod: &str, packets: u64) -> TargetStatus {
        TargetStatus {
            node: node.into(),
            namespace: "shop".into(),
            pod: pod.into(),
            interface: "eth0".into(),
            state: TargetState::Capturing,
            packets,
            ..TargetStatus::default()
        }
    }

    fn slice(node: &str, targets: Vec<TargetStatus>) -> Arc<PacketCaptureSlice> {
        Arc::new(PacketCaptureSlice::new(
            &format!("cap-{node}-0"),
            capture_spec::SliceSpec {
                capture: "cap".into(),
                capture_uid: "uid-1".into(),
                node: node.into(),
                targets,
                ..Default::default()
            },
        ))
    }

    #[test]
    fn slices_replace_old_entries_key_by_key_and_keep_the_rest() {
        let legacy = vec![target("node-a", "web-0", 1), target("node-b", "web-1", 2)];
        let slices = vec![
            slice("node-a", vec![target("node-a", "web-0", 10)]),
            slice("node-c", vec![target("node-c", "web-2", 3)]),
        ];
        let targets = merged(&legacy, &slices);
        let seen: Vec<(&str, u64)> = targets
            .iter()
            .map(|t| (t.node.as_str(), t.packets))
            .collect();
        assert_eq!(seen, [("node-a", 10), ("node-b", 2), ("node-c", 3)]);
        let only_slices = merged(
            &[],
            &[
                slice("b", vec![target("b", "x", 1)]),
                slice("a", vec![target("a", "y", 1)]),
            ],
        );
        assert_eq!(only_slices[0].node, "a");
    }
}
