//! Deleting a schedule's captures, as Kubernetes' garbage collector deletes a CronJob's Jobs:
//! a capture still recording is stopped first (drained, so its files are whole), then the
//! capture and its files go. Used when a run falls beyond `historyLimit` and when the schedule
//! itself is deleted.

use std::path::PathBuf;

use capture_spec::Phase;

use super::is_active;
use crate::runner::{Runner, RunnerError};
use crate::store::{CaptureRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("stopping the capture: {0}")]
    Stop(#[from] RunnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "deleting the capture files in {path}: {source}: check the data directory's permissions"
    )]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Stops `capture` if it is running, deletes it and removes its files. Blocking.
pub fn delete_capture(
    store: &dyn Store,
    runner: &Runner,
    capture: &CaptureRecord,
) -> Result<(), CleanupError> {
    if is_active(capture) {
        runner.stop(&capture.uid, Phase::Stopped)?;
    }
    store.delete_capture(&capture.namespace, &capture.name)?;
    let path = runner.capture_dir(&capture.uid);
    match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CleanupError::Files { path, source }),
    }
}
