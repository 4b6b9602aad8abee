//! What the reconciler starts and drives: a [`Target`] records one pod interface, and an
//! [`Opener`] starts one. The real ones are [`crate::target::TargetRun`] (an AF_PACKET ring and
//! its run on the process's engine thread) and [`RingOpener`]; the reconciler's tests use fakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use capture_spec::{CaptureSpec, TargetState, TargetStatus};

use crate::budget::Budget;
use crate::hub::Hub;
use crate::target::{Earlier, TargetIdentity, TargetRun};
use crate::CaptureError;

/// One pod interface being recorded.
pub trait Target {
    /// Asks the target to drain and stop; [`Target::finish`] waits for it.
    fn request_stop(&self);
    /// True once the target ended by itself (a limit, its interface deleted, a write failure).
    fn has_ended(&self) -> bool;
    /// Waits until the target has stopped.
    fn finish(&mut self);
    /// Its status now, earlier segments included; a target that was asked to stop reports
    /// `stopping_state`.
    fn status(&self, stopping_state: TargetState) -> TargetStatus;
}

/// Why a target could not be started. Its status entry shows this, and the target is not
/// tried again in the capture's window.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the capture directory {}: {source}; check --data-dir", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// Starts targets.
pub trait Opener {
    type Target: Target;

    /// Starts recording `identity` into `directory` with `spec`, in segment
    /// `earlier.segments + 1`, sharing `budget` with the capture's other targets.
    fn open(
        &self,
        directory: &Path,
        identity: TargetIdentity,
        spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<Self::Target, OpenError>;
}

/// The real opener: the capture's directory is made if needed, and the target's ring is bound
/// before [`Opener::open`] returns; every target runs on the process's one [`Hub`].
#[derive(Clone)]
pub struct RingOpener {
    hub: Arc<Hub>,
}

impl RingOpener {
    pub fn new(hub: Arc<Hub>) -> RingOpener {
        RingOpener { hub }
    }
}

impl Opener for RingOpener {
    type Target = TargetRun;

    fn open(
        &self,
        directory: &Path,
        identity: TargetIdentity,
        spec: &CaptureSpec,
        earlier: Earlier,
        budget: Option<Arc<Budget>>,
    ) -> Result<TargetRun, OpenError> {
        std::fs::create_dir_all(directory).map_err(|source| OpenError::Directory {
            path: directory.to_path_buf(),
            source,
        })?;
        Ok(TargetRun::start(
            &self.hub, directory, identity, spec, earlier, budget,
        )?)
    }
}

impl Target for TargetRun {
    fn request_stop(&self) {
        TargetRun::request_stop(self);
    }

    fn has_ended(&self) -> bool {
        TargetRun::has_ended(self)
    }

    fn finish(&mut self) {
        TargetRun::finish(self);
    }

    fn status(&self, stopping_state: TargetState) -> TargetStatus {
        TargetRun::status(self, stopping_state)
    }
}
