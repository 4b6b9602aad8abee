//! How a capture is stopped in Kubernetes mode (see [`super::backend`]): the API only changes
//! the object, the node agents act on it. Stop sets `spec.endTime` to now (the window rule
//! every agent follows) and marks the capture with the `podcap.io/stopped-at` annotation, so
//! the status controller ends it as Stopped rather than Completed.

use std::time::Duration;

use capture_spec::CaptureWindow;
use chrono::{SecondsFormat, Utc};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{store_error, KubeStore, STOPPED_ANNOTATION};
use crate::store::StoreError;

/// Stops `namespace/name` now unless its window is already over; false if there is no such
/// capture.
pub async fn stop_capture(
    store: &KubeStore,
    namespace: &str,
    name: &str,
    max_window: Duration,
) -> Result<bool, StoreError> {
    let Some(record) = store.get_capture(namespace, name).await? else {
        return Ok(false);
    };
    let now = Utc::now();
    // The window rule every agent follows, so a capture whose duration has run out is not
    // "stopped" after the fact.
    let over = CaptureWindow::of(&record.spec, record.created_at, max_window).is_over(now);
    if record.phase().is_finished() || over {
        return Ok(true);
    }
    let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let patch = json!({
        "metadata": {"annotations": {STOPPED_ANNOTATION: stamp}},
        "spec": {"endTime": stamp},
    });
    store
        .capture_api(Some(namespace))
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| store_error("stopping a PacketCapture", e))?;
    tracing::info!(namespace, name, "capture stopped: endTime set to now");
    Ok(true)
}
