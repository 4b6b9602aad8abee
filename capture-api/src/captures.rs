//! Creating a capture, the one way both the REST route and the schedule controller do it:
//! validate the spec, resolve its window once (stored as startTime/endTime, so a restart or a
//! clock change cannot move it; a capture with no end gets the maximum window), and store it as
//! Scheduled for the runner to pick up.

use std::time::Duration;

use capture_spec::{CaptureSpec, CaptureStatus, Phase, ValidationErrors};
use chrono::{DateTime, Utc};

use crate::auth::new_id;
use crate::store::{CaptureRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates `spec`, resolves its window at `now` and stores the capture.
pub fn create_capture(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    spec: CaptureSpec,
    schedule: Option<&str>,
    max_window: Duration,
    now: DateTime<Utc>,
) -> Result<CaptureRecord, CreateError> {
    let record = prepare_capture(namespace, name, spec, schedule, max_window, now)?;
    store.insert_capture(&record)?;
    Ok(record)
}

/// The record [`create_capture`] would store, validated but not stored: what a dry run answers.
pub fn prepare_capture(
    namespace: &str,
    name: &str,
    mut spec: CaptureSpec,
    schedule: Option<&str>,
    max_window: Duration,
    now: DateTime<Utc>,
) -> Result<CaptureRecord, CreateError> {
    let window = spec
        .validate(now, max_window)
        .map_err(CreateError::Invalid)?;
    spec.start_time = Some(window.start);
    spec.end_time = Some(window.end);
    spec.duration = None;
    let status = CaptureStatus {
        phase: Phase::Scheduled,
        ..CaptureStatus::default()
    };
    let record = CaptureRecord {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: new_id(20),
        spec,
        status,
        created_at: now,
        schedule: schedule.map(str::to_string),
    };
    Ok(record)
}
