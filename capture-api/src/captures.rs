//! Creating a capture, the one way both the REST route and the schedule controller do it:
//! validate the spec, resolve its window once (stored as startTime/endTime, so a restart or a
//! clock change cannot move it; a capture with no end gets the maximum window), and store it as
//! Scheduled for the runner to pick up.

use std::time::Duration;

use capture_agent::bpf::{self, ExpressionError};
use capture_spec::capture::bpf_filter_problem;
use capture_spec::{CaptureSpec, CaptureStatus, FieldError, Phase, ValidationErrors};
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
    let expression = expression_errors(&spec, "spec");
    let window = match spec.validate(now, max_window) {
        Ok(window) if expression.is_empty() => window,
        Ok(_) => return Err(CreateError::Invalid(ValidationErrors(expression))),
        Err(ValidationErrors(mut errors)) => {
            errors.extend(expression);
            return Err(CreateError::Invalid(ValidationErrors(errors)));
        }
    };
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

/// What libpcap says of `bpfFilter` in the capture spec at `path` (`spec`, `spec.template`),
/// ANDed with the spec's rules as the agent will run it: the same compiler the agent uses, so a
/// capture the API stores is one every agent can start. Empty when there is no expression, or
/// when its text (length, control characters) or the snap length is already wrong: `validate`
/// reports those.
pub fn expression_errors(spec: &CaptureSpec, path: &str) -> Vec<FieldError> {
    let Some(expression) = spec.bpf_filter.as_deref() else {
        return Vec::new();
    };
    if bpf_filter_problem(expression).is_some() || spec.limits().validate().is_err() {
        return Vec::new();
    }
    match bpf::compile_with_expression(&spec.filters, Some(expression), spec.snap_length) {
        Ok(_) => Vec::new(),
        Err(ExpressionError::Rules(error)) => {
            vec![FieldError::new(
                format!("{path}.filters"),
                error.to_string(),
            )]
        }
        Err(error) => vec![FieldError::new(
            format!("{path}.bpfFilter"),
            error.to_string(),
        )],
    }
}
