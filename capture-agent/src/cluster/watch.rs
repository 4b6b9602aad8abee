//! What the agent watches: PacketCaptures in every namespace, the Pods scheduled on this node
//! (field selector `spec.nodeName=NODE`) and this node's own PacketCaptureSlices (label
//! `podcap.io/node`, read back after a restart), each mirrored into an in-memory store by a
//! kube-runtime reflector. The watchers re-list after an expired or broken watch and back off
//! on errors (kube-runtime's default backoff), so a restarted or briefly unreachable API server
//! costs a few seconds, never a stale view for good. Every event wakes the reconciler.

use std::sync::Arc;

use capture_spec::slice::{node_label_value, NODE_LABEL};
use capture_spec::{PacketCapture, PacketCaptureSlice};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
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
    let stream = watcher(api, config).default_backoff().reflect(writer);
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
