//! What the agent watches: PacketCaptures in every namespace, the Pods scheduled on this node
//! (field selector `spec.nodeName=NODE`) and this node's own PacketCaptureSlices (label
//! `podcap.io/node`, read back after a restart), each mirrored into an in-memory store by a
//! kube-runtime reflector. The watchers re-list after an expired or broken watch and back off
//! on errors ([`RewatchBackoff`]: doubling up to a few seconds, never giving up), so a restarted
//! or briefly unreachable API server costs a few seconds, never a stale view for good. Every
//! event wakes the reconciler.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use capture_spec::slice::{node_label_value, NODE_LABEL};
use capture_spec::{PacketCapture, PacketCaptureSlice};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// The mirrored objects.
#[derive(Clone)]
pub struct Watches {
    pub captures: Store<PacketCapture>,
    pub pods: Store<Pod>,
    pub slices: Store<PacketCaptureSlice>,
}

impl Watches {
    /// Starts the watchers as tasks on the current runtime; `changed` is notified on every event.
    pub fn start(client: &Client, node: &str, changed: Arc<Notify>) -> Watches {
        let captures = mirror(
            "packetcaptures",
            Api::<PacketCapture>::all(client.clone()),
            watcher::Config::default(),
            changed.clone(),
        );
        let pods = mirror(
            "pods",
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields(&format!("spec.nodeName={node}")),
            changed.clone(),
        );
        let slices = mirror(
            "packetcaptureslices",
            Api::<PacketCaptureSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{NODE_LABEL}={}", node_label_value(node))),
            changed,
        );
        Watches {
            captures,
            pods,
            slices,
        }
    }

    /// Waits until every store holds a complete first listing.
    pub async fn ready(&self) -> bool {
        self.captures.wait_until_ready().await.is_ok()
            && self.pods.wait_until_ready().await.is_ok()
            && self.slices.wait_until_ready().await.is_ok()
    }
}

fn mirror<K>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .backoff(RewatchBackoff::default())
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                // The watcher retries by itself (with backoff); say why it had to.
                Err(error) => tracing::warn!(%error, resource = what, "watch failed; retrying"),
            }
        }
        tracing::error!(resource = what, "watch ended");
    });
    reader
}

/// The first wait after a failed list or watch.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two attempts, before jitter.
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// When a watcher tries again after a failed list or watch: doubling from [`FIRST_RETRY`] up to
/// [`LONGEST_RETRY`], each wait plus up to half of it at random (so a fleet of agents does not
/// re-list all at once), for ever; back to the start after a success. kube-runtime's default
/// climbs to 30 s plus jitter, so after a one-minute outage a watcher could stay blind for most
/// of another minute: an agent would not see a capture stopped meanwhile, and capture-api's
/// slice mirror would show counters a minute old. One cheap attempt every few seconds per
/// watcher is nothing to a recovering API server.
pub struct RewatchBackoff {
    next: Duration,
}

impl Default for RewatchBackoff {
    fn default() -> Self {
        RewatchBackoff { next: FIRST_RETRY }
    }
}

impl Iterator for RewatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (wait * 2).min(LONGEST_RETRY);
        // A random fraction from the standard library's randomly seeded hasher.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = (random % 1_000) as f64 / 2_000.0;
        Some(wait + wait.mul_f64(fraction))
    }
}

impl Backoff for RewatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap_with_at_most_half_more_and_restart_after_a_success() {
        let mut backoff = RewatchBackoff::default();
        let waits: Vec<Duration> = backoff.by_ref().take(8).collect();
        let bases = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0];
        for (wait, base) in waits.iter().zip(bases) {
            let base = Duration::from_secs_f64(base);
            assert!(
                *wait >= base && *wait <= base.mul_f64(1.5),
                "{wait:?} for {base:?}"
            );
        }
        backoff.reset();
        let first = backoff.next().unwrap();
        assert!(first >= FIRST_RETRY && first <= FIRST_RETRY.mul_f64(1.5));
    }
}
