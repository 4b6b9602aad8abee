//! Starting, stopping and deleting captures: what the REST routes and the schedule controller
//! both need from whatever runs captures, so one piece of code serves both and both modes.
//! Standalone mode's in-process runner captures and keeps files in the data directory
//! ([`crate::standalone`]); in Kubernetes mode captures are objects the node agents act on
//! ([`crate::kube`]). The methods block (the store and the runner are synchronous): call them
//! from a blocking thread.

use crate::problem::Problem;
use crate::runner::RunnerError;
use crate::store::{CaptureRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "deleting the capture files in {path}: {source}: check the data directory's permissions"
    )]
    Files {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub trait Runs: Send + Sync + 'static {
    /// Why no new capture can start now (e.g. the disk is full), or `None` when one can.
    fn refuses_new(&self) -> Option<String> {
        None
    }
    /// Starts the captures that are due now rather than at the next pass of whatever runs them.
    fn start_now(&self) -> Result<(), RunsError>;
    /// Stops a capture that is still recording, keeping its files.
    fn stop(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError>;
    /// Deletes a capture and its files (stopping it first if it still records).
    fn delete(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError>;
    /// Deletes a schedule and every capture it created, with their files; false if there is no
    /// such schedule. If a capture cannot be deleted the schedule stays, so a retry finishes.
    fn delete_schedule(
        &self,
        store: &dyn Store,
        namespace: &str,
        name: &str,
    ) -> Result<bool, RunsError>;
}

/// A store failure keeps its own answer (409 on a conflict, 503 when the API server is away);
/// anything else is the server's fault.
impl From<RunsError> for Problem {
    fn from(error: RunsError) -> Problem {
        match error {
            RunsError::Store(error) => Problem::store(error),
            other => Problem::internal(other),
        }
    }
}
