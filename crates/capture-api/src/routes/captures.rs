//! Capture routes: list, create, get, stop and delete. Bodies and answers use the Kubernetes
//! object shape (`metadata`, `spec`, `status`), the same as the PacketCapture CRD, so a capture
//! written for `kubectl apply` can be POSTed as JSON unchanged.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use capture_spec::{names, CaptureSpec, Phase};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{new_id, Action, Caller};
use crate::captures::{create_capture, CreateError};
use crate::problem::{InvalidParam, Problem};
use crate::server::AppState;
use crate::store::{CaptureRecord, StoreError};

pub const API_VERSION: &str = "podcap.io/v1alpha1";

/// A capture as the API returns it.
pub fn resource(record: &CaptureRecord) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "PacketCapture",
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

fn check_namespace(namespace: &str) -> Result<(), Problem> {
    names::validate_name(namespace).map_err(|e| {
        Problem::invalid(
            "bad namespace in the path",
            vec![InvalidParam {
                name: "namespace".into(),
                reason: e.to_string(),
            }],
        )
    })
}

/// The capture `namespace/name`, or a 404 that says how to find the right one.
pub fn find(state: &AppState, namespace: &str, name: &str) -> Result<CaptureRecord, Problem> {
    state.store.capture(namespace, name).map_err(Problem::internal)?.ok_or_else(|| {
        Problem::not_found(format!(
            "no capture {name:?} in namespace {namespace:?}: list them with GET /api/v1/namespaces/{namespace}/captures"
        ))
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    phase: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, Problem> {
    caller.authorize(Action::Read, &namespace)?;
    check_namespace(&namespace)?;
    if let Some(phase) = &query.phase {
        serde_json::from_value::<Phase>(json!(phase)).map_err(|_| {
            Problem::invalid(
                "bad phase filter",
                vec![InvalidParam {
                    name: "phase".into(),
                    reason: format!("{phase:?} is not a phase: use Scheduled, Capturing, Completed, Stopped or Failed"),
                }],
            )
        })?;
    }
    let records = state
        .store
        .captures(Some(&namespace), query.phase.as_deref())
        .map_err(Problem::internal)?;
    Ok(Json(
        json!({ "items": records.iter().map(resource).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMetadata {
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<CreateMetadata>,
    spec: Value,
}

/// 422 listing every field error.
fn invalid_spec(errors: capture_spec::ValidationErrors) -> Problem {
    let params = errors
        .0
        .into_iter()
        .map(|e| InvalidParam {
            name: e.field,
            reason: e.message,
        })
        .collect();
    Problem::invalid("the capture spec is invalid", params)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(namespace): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.authorize(Action::Write, &namespace)?;
    check_namespace(&namespace)?;
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(format!(
            "the body is not a capture: {e}. Send {{\"metadata\": {{\"name\": \"web\"}}, \"spec\": {{\"podSelector\": ..., \"duration\": \"10m\"}}}}"
        ))
    })?;
    if body.kind.as_deref().is_some_and(|k| k != "PacketCapture")
        || body
            .api_version
            .as_deref()
            .is_some_and(|v| v != API_VERSION)
    {
        return Err(Problem::bad_request(format!(
            "this route takes kind PacketCapture, apiVersion {API_VERSION}"
        )));
    }
    let metadata = body.metadata.unwrap_or(CreateMetadata {
        name: None,
        namespace: None,
    });
    if metadata
        .namespace
        .as_deref()
        .is_some_and(|n| n != namespace)
    {
        return Err(Problem::bad_request(
            "metadata.namespace differs from the namespace in the path: leave it out",
        ));
    }
    let name = match metadata.name {
        Some(name) => {
            names::validate_name(&name).map_err(|e| {
                Problem::invalid(
                    "bad name",
                    vec![InvalidParam {
                        name: "metadata.name".into(),
                        reason: e.to_string(),
                    }],
                )
            })?;
            name
        }
        None => format!("capture-{}", new_id(5)),
    };
    let spec = CaptureSpec::from_json_value(&body.spec, "spec").map_err(invalid_spec)?;
    if let Some(reason) = state.runner.storage_full() {
        return Err(Problem::insufficient_storage(format!(
            "no new capture can start: {reason}"
        )));
    }
    let settings = &state.settings;
    let record = create_capture(
        state.store.as_ref(),
        &namespace,
        &name,
        spec,
        None,
        settings.max_window,
        Utc::now(),
    )
    .map_err(|error| match error {
        CreateError::Invalid(errors) => invalid_spec(errors),
        CreateError::Store(e @ StoreError::AlreadyExists { .. }) => {
            Problem::conflict(e.to_string())
        }
        other => Problem::internal(other),
    })?;
    // Start it now rather than at the next runner pass.
    let runner = state.runner.clone();
    let _ = tokio::task::spawn_blocking(move || runner.pass()).await;
    let stored = find(&state, &namespace, &record.name)?;
    Ok((StatusCode::CREATED, Json(resource(&stored))))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.authorize(Action::Read, &namespace)?;
    Ok(Json(resource(&find(&state, &namespace, &name)?)))
}

/// Stops a capture now and keeps its files.
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.authorize(Action::Write, &namespace)?;
    let record = find(&state, &namespace, &name)?;
    let runner = state.runner.clone();
    let uid = record.uid.clone();
    tokio::task::spawn_blocking(move || runner.stop(&uid, Phase::Stopped))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(Json(resource(&find(&state, &namespace, &name)?)))
}

/// Deletes a capture and its files.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    caller.authorize(Action::Write, &namespace)?;
    let record = find(&state, &namespace, &name)?;
    let runner = state.runner.clone();
    let uid = record.uid.clone();
    let directory = state.runner.capture_dir(&record.uid);
    tokio::task::spawn_blocking(move || runner.stop(&uid, Phase::Stopped))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    state
        .store
        .delete_capture(&namespace, &name)
        .map_err(Problem::internal)?;
    match tokio::fs::remove_dir_all(&directory).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Problem::internal(format!(
                "deleting {}: {e}",
                directory.display()
            )))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
