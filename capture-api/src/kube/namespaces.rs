//! The namespace list in Kubernetes mode (`GET /api/v1/namespaces`): only those where the
//! caller may list captures. One SubjectAccessReview for "list
//! packetcaptures in all namespaces" settles it for cluster-wide readers; otherwise each
//! namespace is asked on its own (answers cached like every review).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use super::auth::{Attributes, User};
use super::Cluster;
use crate::problem::Problem;

/// Of `namespaces`, those where `user` may list captures.
async fn allowed_of(
    cluster: &Cluster,
    user: &User,
    namespaces: BTreeSet<String>,
) -> Result<Vec<String>, Problem> {
    let (everywhere, _) = cluster
        .auth
        .allowed(user, &Attributes::captures("list", ""))
        .await?;
    if everywhere {
        return Ok(namespaces.into_iter().collect());
    }
    let mut allowed = Vec::new();
    for namespace in namespaces {
        if cluster
            .auth
            .allowed(user, &Attributes::captures("list", &namespace))
            .await?
            .0
        {
            allowed.push(namespace);
        }
    }
    Ok(allowed)
}

/// The namespaces where `user` may list captures, sorted.
pub async fn readable(cluster: &Cluster, user: &User) -> Result<Vec<String>, Problem> {
    let mut names: BTreeSet<String> = match Api::<Namespace>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "listing namespaces failed; showing those with captures or schedules");
            BTreeSet::new()
        }
    };
    let store = cluster.store.clone();
    names.extend(
        tokio::task::spawn_blocking(move || crate::store::Store::namespaces(store.as_ref()))
            .await
            .map_err(Problem::internal)?
            .map_err(Problem::store)?,
    );
    allowed_of(cluster, user, names).await
}
