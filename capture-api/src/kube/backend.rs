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
        block_on(stop_capture(&self.store, &capture.namespace, &capture.name))??;
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
        match Attributes::of(access, namespace) {
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
        match Attributes::of(access, namespace) {
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
