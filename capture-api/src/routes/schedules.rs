//! Schedule routes: list, create, get, replace and delete `PacketCaptureSchedule`s. Bodies and
//! answers use the Kubernetes object shape of the CRD. PUT replaces the spec — this is how a
//! schedule is suspended and resumed — and keeps the status, which the controller owns; a
//! client may PUT back the whole object it got from GET, status included. As when a CronJob is
//! resumed, the most recent run missed while suspended starts at once (within
//! `startingDeadlineSeconds` when that is set). DELETE deletes the schedule with all its
//! captures and their files, as deleting a CronJob deletes its Jobs.

use axum::body::Bytes;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::StatusCode;
use axum::{Extension, Json};
use capture_spec::{ScheduleSpec, ScheduleStatus, ValidationErrors};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::audit::Named;
use crate::auth::new_id;
use crate::captures::expression_errors;
use crate::problem::Problem;
use crate::schedules::{lock_schedule_writes, status, MAX_SCHEDULE_NAME_LENGTH};
use crate::state::AppState;
use crate::store::{ScheduleRecord, StoreError};

use super::captures::API_VERSION;
use super::object::{
    check_name, field_problem, invalid_spec, parse_object, requested_name, selector_from_text,
    DryRunQuery, ObjectMetadata,
};
use super::openapi::{
    self, NamespacePath, PacketCaptureSchedule, PacketCaptureScheduleList, SchedulePath,
};

const KIND: &str = "PacketCaptureSchedule";

/// A schedule as the API returns it.
pub fn resource(record: &ScheduleRecord) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": record.name,
            "namespace": record.namespace,
            "uid": record.uid,
            "creationTimestamp": record.created_at.to_rfc3339(),
        },
        "spec": record.spec,
        "status": record.status,
    })
}

/// A schedule name, short enough for its captures' names (`{name}-{unix seconds}`) to be valid.
fn check_schedule_name(name: &str) -> Result<(), Problem> {
    check_name(name)?;
    if name.len() > MAX_SCHEDULE_NAME_LENGTH {
        return Err(field_problem(
            "bad name",
            "metadata.name",
            format!(
                "schedule name {name:?} is {} characters; the maximum is {MAX_SCHEDULE_NAME_LENGTH}, so that its captures' names (the name, '-' and the run time in seconds) fit in 63: shorten it",
                name.len()
            ),
        ));
    }
    Ok(())
}

fn not_found(namespace: &str, name: &str) -> Problem {
    Problem::not_found(format!(
        "no schedule {name:?} in namespace {namespace:?}: list them with GET /api/v1/namespaces/{namespace}/schedules"
    ))
}

/// The `metadata` of a schedule sent to the API; every field is optional.
// Describes the request for the OpenAPI document; bodies are read by `object::parse_object`.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = ScheduleRequestMetadata)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BodyMetadata {
    /// The schedule's name; on create, generated (`schedule-xxxxx`) when left out; on PUT, the
    /// name of the path.
    name: Option<String>,
    /// When given, the namespace of the path.
    namespace: Option<String>,
    /// When sent (a PUT of what GET returned), it must be this schedule's: a schedule deleted
    /// and created again under the same name is another schedule.
    uid: Option<String>,
    /// Set by the server; accepted so a GET answer can be sent back unchanged.
    #[allow(dead_code)]
    #[schema(value_type = Option<Value>)]
    creation_timestamp: Option<Value>,
}

/// A schedule to create or replace, in the shape of the `PacketCaptureSchedule` CRD object;
/// `apiVersion`, `kind`, `metadata` and `status` may be left out.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = PacketCaptureScheduleRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScheduleBody {
    #[schema(schema_with = openapi::api_version_field)]
    api_version: Option<String>,
    #[schema(schema_with = openapi::schedule_kind_field)]
    kind: Option<String>,
    metadata: Option<BodyMetadata>,
    #[schema(value_type = ScheduleSpec)]
    spec: Value,
    /// Owned by the controller; accepted and ignored so a GET answer can be sent back.
    #[allow(dead_code)]
    #[schema(value_type = Option<Value>)]
    status: Option<Value>,
}

/// The body as a schedule object of this namespace, or a 400 that shows what to send.
fn parse_body(body: &Bytes, namespace: &str) -> Result<(ObjectMetadata, Value), Problem> {
    let example = r#"{"metadata": {"name": "nightly"}, "spec": {"schedule": "0 2 * * *", "template": {"podSelector": ..., "duration": "10m"}}}"#;
    parse_object(body, namespace, KIND, example)
}

/// Decodes and checks a schedule spec; returns it with the coming run times from now.
fn checked_spec(
    state: &AppState,
    spec: &Value,
    mut status: ScheduleStatus,
) -> Result<(ScheduleSpec, ScheduleStatus), Problem> {
    let mut spec = spec.clone();
    selector_from_text(
        &mut spec,
        "/template/podSelector",
        "spec.template.podSelector",
    )?;
    let spec =
        ScheduleSpec::from_json_value(&spec, "spec").map_err(|e| invalid_spec(e, "schedule"))?;
    let expression = expression_errors(&spec.template, "spec.template");
    match spec.validate(state.settings.max_window) {
        Ok(()) if expression.is_empty() => {}
        Ok(()) => return Err(invalid_spec(ValidationErrors(expression), "schedule")),
        Err(ValidationErrors(mut errors)) => {
            errors.extend(expression);
            return Err(invalid_spec(ValidationErrors(errors), "schedule"));
        }
    }
    status::set_upcoming(&mut status, &spec, Utc::now()).map_err(|e| {
        field_problem(
            "the schedule spec is invalid",
            "spec.schedule",
            e.to_string(),
        )
    })?;
    Ok((spec, status))
}

/// Runs blocking store and runner work with schedule changes serialised (see
/// [`lock_schedule_writes`]).
async fn with_schedules_locked<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(move || {
        let _writes = lock_schedule_writes();
        work()
    })
    .await
    .map_err(Problem::internal)?
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/schedules",
    tag = "schedules",
    operation_id = "listSchedules",
    summary = "List the schedules of a namespace",
    params(NamespacePath),
    responses(
        (status = 200, description = "The schedules.", body = PacketCaptureScheduleList),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
) -> Result<Json<Value>, Problem> {
    let records = state
        .store
        .schedules(Some(&namespace))
        .map_err(Problem::internal)?;
    Ok(Json(
        json!({ "items": records.iter().map(resource).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(
    post,
    path = "/namespaces/{namespace}/schedules",
    tag = "schedules",
    operation_id = "createSchedule",
    summary = "Create a schedule",
    params(NamespacePath, DryRunQuery),
    request_body(content = ScheduleBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, with its coming run times in the status.", body = PacketCaptureSchedule),
        (status = 200, description = "`dryRun=All`: valid; the schedule that would be created, with its next run times (nothing is stored).", body = PacketCaptureSchedule),
        (status = 400, description = "The body is not a schedule object, or its `kind` or `apiVersion` do not fit this route; or a malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A schedule of that name exists in the namespace.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The spec or name is invalid, or `metadata.namespace` is not the path's; `invalidParams` lists every field to fix.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(dry_run): Query<DryRunQuery>,
    body: Bytes,
) -> Result<(StatusCode, Extension<Named>, Json<Value>), Problem> {
    let dry_run = dry_run.is_dry_run()?;
    let (metadata, spec) = parse_body(&body, &namespace)?;
    let (name, bad_name) = requested_name(metadata.name, "schedule", check_schedule_name);
    let (spec, status) = checked_spec(&state, &spec, ScheduleStatus::default())
        .map_err(|problem| problem.after(bad_name.clone()))?;
    if let Some(problem) = bad_name {
        return Err(problem);
    }
    let record = ScheduleRecord {
        namespace,
        name,
        uid: new_id(20),
        spec,
        status,
        created_at: Utc::now(),
    };
    if dry_run {
        return Ok((
            StatusCode::OK,
            Extension(Named(record.name.clone())),
            Json(resource(&record)),
        ));
    }
    state
        .store
        .insert_schedule(&record)
        .map_err(|error| match error {
            e @ StoreError::AlreadyExists { .. } => Problem::conflict(e.to_string()),
            other => Problem::internal(other),
        })?;
    tracing::info!(namespace = %record.namespace, schedule = %record.name, cron = %record.spec.schedule, "schedule created");
    Ok((
        StatusCode::CREATED,
        Extension(Named(record.name.clone())),
        Json(resource(&record)),
    ))
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/schedules/{name}",
    tag = "schedules",
    operation_id = "getSchedule",
    summary = "A schedule's spec and status",
    params(SchedulePath),
    responses(
        (status = 200, description = "The schedule.", body = PacketCaptureSchedule),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let record = state
        .store
        .schedule(&namespace, &name)
        .map_err(Problem::internal)?
        .ok_or_else(|| not_found(&namespace, &name))?;
    Ok(Json(resource(&record)))
}

/// Replaces the spec; keeps the status and history, with the coming run times recomputed.
#[utoipa::path(
    put,
    path = "/namespaces/{namespace}/schedules/{name}",
    tag = "schedules",
    operation_id = "replaceSchedule",
    summary = "Replace a schedule's spec (suspend, resume, edit)",
    description = "Replaces the spec and keeps the status, which the controller owns; the whole \
        object from GET may be sent back, status included. Resuming starts the most recent run \
        missed while suspended at once, as a CronJob does.",
    params(SchedulePath),
    request_body(content = ScheduleBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The schedule with its new spec.", body = PacketCaptureSchedule),
        (status = 400, description = "The body is not a schedule object; or a malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`metadata.uid` is not this schedule's: it was deleted and created again since it was read.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The spec is invalid, or `metadata` names another schedule or namespace; `invalidParams` lists every field to fix.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    let (metadata, spec) = parse_body(&body, &namespace)?;
    if metadata.name.as_deref().is_some_and(|n| n != name) {
        return Err(field_problem(
            "metadata.name differs from the name in the path",
            "metadata.name",
            format!("the path says {name:?}, and a schedule cannot be renamed: leave metadata.name out or make it {name:?}; to rename, create a new schedule and delete this one"),
        ));
    }
    let updated = with_schedules_locked(move || {
        let mut record = state
            .store
            .schedule(&namespace, &name)
            .map_err(Problem::store)?
            .ok_or_else(|| not_found(&namespace, &name))?;
        if metadata.uid.as_deref().is_some_and(|uid| uid != record.uid) {
            return Err(Problem::conflict(format!(
                "schedule {name:?} was deleted and created again since you read it (its uid changed): GET it again and apply your change to that"
            )));
        }
        let (spec, status) = checked_spec(&state, &spec, record.status.clone())?;
        record.spec = spec;
        record.status = status;
        let found = state
            .store
            .update_schedule(&record.uid, &record.spec, &record.status)
            .map_err(Problem::store)?;
        if !found {
            return Err(not_found(&namespace, &name));
        }
        tracing::info!(namespace, schedule = name, suspend = record.spec.suspend, cron = %record.spec.schedule, "schedule replaced");
        Ok(record)
    })
    .await?;
    Ok(Json(resource(&updated)))
}

/// Deletes the schedule and every capture it created, stopping those still capturing.
#[utoipa::path(
    delete,
    path = "/namespaces/{namespace}/schedules/{name}",
    tag = "schedules",
    operation_id = "deleteSchedule",
    summary = "Delete a schedule with all its captures",
    params(SchedulePath),
    responses(
        (status = 204, description = "Deleted, with every capture it created and their files."),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    with_schedules_locked(move || {
        let deleted = state
            .backend
            .delete_schedule(state.store.as_ref(), &namespace, &name)?;
        if !deleted {
            return Err(not_found(&namespace, &name));
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
