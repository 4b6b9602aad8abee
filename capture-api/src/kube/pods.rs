//! Pods in Kubernetes mode, for `GET .../namespaces/{ns}/pods?selector=`: the namespace's
//! Running pods that a selector matches, listed through the Kubernetes API (the route has parsed
//! the selector with podcap's parser, so errors read the same as in standalone mode). The status
//! controller lists a silent capture's pods the same way ([`listed`]), so both ask the API
//! server the same question.

use capture_spec::LabelSelector;
use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::{Api, ListParams};

use super::Cluster;
use crate::pods::Pod;
use crate::problem::Problem;

/// The pods of `namespace` that `selector` matches, filtered by the API server (the selector's
/// kubectl form as `labelSelector`), whatever their phase.
pub async fn listed(
    cluster: &Cluster,
    namespace: &str,
    selector: &LabelSelector,
) -> Result<Vec<KubePod>, kube::Error> {
    let selector = selector.to_string();
    let mut params = ListParams::default();
    if !selector.is_empty() {
        params = params.labels(&selector);
    }
    Ok(
        Api::<KubePod>::namespaced(cluster.client.clone(), namespace)
            .list(&params)
            .await?
            .items,
    )
}

/// Whether the pod's phase is Running.
pub fn is_running(pod: &KubePod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

pub async fn matching(
    cluster: &Cluster,
    namespace: &str,
    selector: &LabelSelector,
) -> Result<Vec<Pod>, Problem> {
    let pods = listed(cluster, namespace, selector).await.map_err(|e| {
        Problem::unavailable(format!(
            "listing the pods of namespace {namespace:?} failed: {e}; try again"
        ))
    })?;
    let mut found: Vec<Pod> = pods
        .into_iter()
        .filter(is_running)
        .map(|pod| Pod {
            namespace: namespace.to_string(),
            name: pod.metadata.name.unwrap_or_default(),
            labels: pod.metadata.labels.unwrap_or_default(),
            node: pod.spec.and_then(|s| s.node_name).unwrap_or_default(),
            interface: String::new(),
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}
