//! Standalone mode (`capture-api --standalone`): podcap on one machine. API tokens from the
//! SQLite store decide who may do what (roles and namespace scopes, see [`crate::auth`]); the
//! in-process [`Runner`] captures on network-namespace pods ([`crate::pods`]) and keeps the
//! files in the data directory, which is also where downloads and live streams come from.
//! This is one side of the mode seam, [`Backend`]; the other is [`crate::kube::Cluster`].

mod live;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use axum::response::Response;
use capture_agent::merge::MergeInput;
use capture_spec::{LabelSelector, Phase};

use crate::access::{Access, Caller};
use crate::auth::{self, Action, TokenCaller};
use crate::backend::Backend;
use crate::files::{find_file, serve_from_disk};
use crate::inspect::capture_inputs;
use crate::pods::{self, Pod};
use crate::problem::Problem;
use crate::runner::Runner;
use crate::runs::{Runs, RunsError};
use crate::schedules::is_active;
use crate::store::{CaptureRecord, Store};

pub struct Standalone {
    store: Arc<dyn Store>,
    runner: Arc<Runner>,
}

impl Standalone {
    /// The backend over `store` whose captures `runner` runs (start the runner separately).
    pub fn new(store: Arc<dyn Store>, runner: Arc<Runner>) -> Arc<Standalone> {
        Arc::new(Standalone { store, runner })
    }

    fn token_caller(caller: &Caller) -> Result<&TokenCaller, Problem> {
        match caller {
            Caller::Token(token) => Ok(token),
            Caller::Kubernetes(user) => Err(Problem::internal(format!(
                "a Kubernetes user ({}) reached the standalone API",
                user.name
            ))),
        }
    }
}

impl Runs for Standalone {
    fn refuses_new(&self) -> Option<String> {
        self.runner.storage_full()
    }

    fn start_now(&self) -> Result<(), RunsError> {
        Ok(self.runner.pass()?)
    }

    fn stop(&self, _store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        self.runner.stop(&capture.uid, Phase::Stopped)?;
        Ok(())
    }

    /// Stops `capture` if it still records (drained, so its files are whole), deletes it and
    /// removes its files.
    fn delete(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        if is_active(capture) {
            self.runner.stop(&capture.uid, Phase::Stopped)?;
        }
        store.delete_capture(&capture.namespace, &capture.name)?;
        let path = self.runner.capture_dir(&capture.uid);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RunsError::Files { path, source }),
        }
    }

    fn delete_schedule(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
    ) -> Result<bool, RunsError> {
        if store.schedule(namespace, name)?.is_none() {
            return Ok(false);
        }
        // Captures first: if one cannot be deleted, the schedule stays, and a retry finishes.
        let captures = store.captures_of_schedule(namespace, name)?;
        for capture in &captures {
            self.delete(store, capture)?;
        }
        store.delete_schedule(namespace, name)?;
        tracing::info!(
            namespace,
            schedule = name,
            captures = captures.len(),
            "schedule deleted with its captures"
        );
        Ok(true)
    }
}

#[async_trait]
impl Backend for Standalone {
    async fn authenticate(&self, header: Option<&str>) -> Result<Caller, Problem> {
        let store = self.store.clone();
        let header = header.map(str::to_string);
        tokio::task::spawn_blocking(move || auth::authenticate(store.as_ref(), header.as_deref()))
            .await
            .map_err(Problem::internal)?
            .map(Caller::Token)
    }

    async fn allowed(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<bool, Problem> {
        Ok(Self::token_caller(caller)?
            .authorize(access.token_action(), namespace)
            .is_ok())
    }

    async fn authorize(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<(), Problem> {
        Self::token_caller(caller)?.authorize(access.token_action(), namespace)
    }

    async fn namespaces(&self, caller: &Caller) -> Result<Vec<String>, Problem> {
        let token = Self::token_caller(caller)?;
        let mut names: BTreeSet<String> = match &token.namespaces {
            // A scoped token lists exactly its namespaces, used yet or not.
            Some(allowed) => allowed.iter().cloned().collect(),
            None => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || -> Result<BTreeSet<String>, Problem> {
                    // A host whose pods cannot be listed still has its captures.
                    let pods = pods::discover().unwrap_or_default();
                    let mut names: BTreeSet<String> =
                        pods.into_iter().map(|pod| pod.namespace).collect();
                    names.extend(store.namespaces().map_err(Problem::store)?);
                    Ok(names)
                })
                .await
                .map_err(Problem::internal)??
            }
        };
        names.retain(|name| token.authorize(Action::Read, name).is_ok());
        Ok(names.into_iter().collect())
    }

    async fn pods(&self, namespace: &str, selector: &LabelSelector) -> Result<Vec<Pod>, Problem> {
        let all = tokio::task::spawn_blocking(pods::discover)
            .await
            .map_err(Problem::internal)?
            .map_err(Problem::internal)?;
        Ok(all
            .into_iter()
            .filter(|p| p.namespace == namespace && selector.matches(&p.labels))
            .collect())
    }

    async fn inputs(&self, record: &CaptureRecord) -> Result<Vec<MergeInput>, Problem> {
        Ok(capture_inputs(
            &self.runner.capture_dir(&record.uid),
            &record.status,
        ))
    }

    async fn file(
        &self,
        record: &CaptureRecord,
        id: &str,
        headers: &HeaderMap,
    ) -> Result<Response, Problem> {
        let found = find_file(record, id)?;
        let path = self.runner.capture_dir(&record.uid).join(&found.file.name);
        serve_from_disk(&path, &found.file, headers).await
    }

    async fn live(&self, record: &CaptureRecord) -> Result<Response, Problem> {
        live::stream(&self.runner, record)
    }

    fn live_chunks_skipped(&self) -> u64 {
        self.runner.live_chunk_counts().1
    }
}
