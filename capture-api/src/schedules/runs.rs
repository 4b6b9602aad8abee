//! What the schedule controller needs from whatever runs captures, so one controller serves
//! both modes: in standalone mode the in-process [`Runner`] (start due captures at once, stop
//! them by draining their engines, delete them with their files); in Kubernetes mode the
//! cluster (captures are objects the node agents act on; see `crate::kube`).

use capture_spec::Phase;

use super::cleanup::{self, CleanupError};
use crate::runner::{Runner, RunnerError};
use crate::store::{CaptureRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Cleanup(#[from] CleanupError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub trait Runs: Send + Sync + 'static {
    /// Starts the captures that are due now rather than at the next pass of whatever runs them.
    fn start_now(&self) -> Result<(), RunsError>;
    /// Stops a capture that is still recording, keeping its files.
    fn stop(&self, capture: &CaptureRecord) -> Result<(), RunsError>;
    /// Deletes a capture and its files (stopping it first if it still records).
    fn delete(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError>;
}

impl Runs for Runner {
    fn start_now(&self) -> Result<(), RunsError> {
        Ok(self.pass()?)
    }

    fn stop(&self, capture: &CaptureRecord) -> Result<(), RunsError> {
        Runner::stop(self, &capture.uid, Phase::Stopped)?;
        Ok(())
    }

    fn delete(&self, store: &dyn Store, capture: &CaptureRecord) -> Result<(), RunsError> {
        Ok(cleanup::delete_capture(store, self, capture)?)
    }
}
