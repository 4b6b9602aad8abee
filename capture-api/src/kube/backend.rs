//! Kubernetes mode's side of the mode seam ([`Backend`], [`Runs`]): the cluster decides who
//! may do what (TokenReview, SubjectAccessReview), captures are PacketCapture objects the node
//! agents act on, and files and live streams come from those agents. The API only changes
//! objects: start needs no nudge (the agents watch), stop sets the end of the window, delete
//! deletes the object and each agent's finalizer holds it until that node's files are gone,
//! and a deleted schedule's captures go with it by garbage collection (ownerReferences).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use axum::response::Response;
use capture_agent::merge::MergeInput;
use capture_spec::LabelSelector;

use super::auth::Attributes;
use super::runs::stop_capture;
use super::{block_on, namespaces, pods, Cluster};
use crate::access::{Access, Caller};
use crate::backend::Backend;
use crate::pods::Pod;
use crate::problem::Problem;
use crate::runs::{Runs, RunsError};
use crate::store::{CaptureRecord, Store};

/// What a SubjectAccessReview asks for `access` in `namespace`; `None` when a valid token is
/// enough.
fn attributes_of(access: Access, namespace: &str) -> Option<Attributes> {
    let (verb, resource, subresource, group) = match access {
        Access::Public | Access::Authenticated => return None,
        Access::Captures(verb) => (verb.as_str(), "packetcaptures", None, "podcap.io"),
        // Handing out packets is its own permission, whatever the route does with them.
        Access::Packets(_) => ("get", "packetcaptures", Some("files"), "podcap.io"),
        Access::Schedules(verb) => (verb.as_str(), "packetcaptureschedules", None, "podcap.io"),
        Access::Pods => ("list", "pods", None, ""),
        // Cluster-wide: whoever may get the `audit` subresource of every capture.
        Access::Audit => ("get", "packetcaptures", Some("audit"), "podcap.io"),
    };
    Some(Attributes {
        verb,
        group,
        resource,
        subresource,
        namespace: namespace.to_string(),
    })
}

impl Cluster {
    fn user(caller: &Caller) -> Result<&super::auth::User, Problem> {
        match caller {
            Caller::Kubernetes(user) => Ok(user),
            Caller::Token(token) => Err(Problem::internal(format!(
                "a standalone token ({}) reached the Kubernetes-mode API",
                token.token_id
            ))),
        }
    }
}

impl Runs for Cluster {
    /// Agents watch the objects: a created capture needs no nudge.
    fn start_now(&self) -> Result<(), RunsError> {
        Ok(())
    }

    fn stop(&self, _store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        block_on(stop_capture(
            &self.store,
            &capture.namespace,
            &capture.name,
            self.settings.max_window,
        ))??;
        Ok(())
    }

    /// Deleting the object is enough: the agents' finalizers remove the files first.
    fn delete(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        store.delete_capture(&capture.namespace, &capture.name)?;
        Ok(())
    }

    /// The garbage collector deletes the schedule's captures (their ownerReferences), and the
    /// agents' finalizers their files.
    fn delete_schedule(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
    ) -> Result<bool, RunsError> {
        let deleted = store.delete_schedule(namespace, name)?;
        if deleted {
            tracing::info!(
                namespace,
                schedule = name,
                "schedule deleted; its captures follow"
            );
        }
        Ok(deleted)
    }
}

#[async_trait]
impl Backend for Cluster {
    async fn authenticate(&self, header: Option<&str>) -> Result<Caller, Problem> {
        self.auth.authenticate(header).await.map(Caller::Kubernetes)
    }

    async fn allowed(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<bool, Problem> {
        let user = Self::user(caller)?;
        match attributes_of(access, namespace) {
            Some(attributes) => Ok(self.auth.allowed(user, &attributes).await?.0),
            None => Ok(true),
        }
    }

    async fn authorize(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<(), Problem> {
        let user = Self::user(caller)?;
        match attributes_of(access, namespace) {
            Some(attributes) => self.auth.authorize(user, &attributes).await,
            None => Ok(()),
        }
    }

    async fn namespaces(&self, caller: &Caller) -> Result<Vec<String>, Problem> {
        namespaces::readable(self, Self::user(caller)?).await
    }

    async fn pods(&self, namespace: &str, selector: &LabelSelector) -> Result<Vec<Pod>, Problem> {
        pods::matching(self, namespace, selector).await
    }

    async fn inputs(&self, record: &CaptureRecord) -> Result<Vec<MergeInput>, Problem> {
        self.agents.inputs(record).await
    }

    async fn file(
        &self,
        record: &CaptureRecord,
        id: &str,
        headers: &HeaderMap,
    ) -> Result<Response, Problem> {
        Arc::clone(&self.agents)
            .file_response(record, id, headers)
            .await
    }

    async fn live(&self, record: &CaptureRecord) -> Result<Response, Problem> {
        Arc::clone(&self.agents).live_response(record).await
    }

    /// The agents count what their watchers missed; the API relays whole streams.
    fn live_chunks_skipped(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Verb;

    #[test]
    fn packets_need_get_on_the_files_subresource() {
        let files = attributes_of(Access::Packets(Verb::Create), "shop").unwrap();
        assert_eq!(
            (files.verb, files.resource, files.subresource),
            ("get", "packetcaptures", Some("files"))
        );
        assert_eq!(
            attributes_of(Access::Captures(Verb::Patch), "shop")
                .unwrap()
                .describe(),
            "patch packetcaptures.podcap.io in namespace \"shop\""
        );
        let pods = attributes_of(Access::Pods, "shop").unwrap();
        assert_eq!((pods.verb, pods.group, pods.resource), ("list", "", "pods"));
        assert_eq!(attributes_of(Access::Authenticated, "shop"), None);
    }
}
