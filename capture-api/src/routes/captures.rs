//! Capture routes: list, create, get, stop and delete. Bodies and answers use the Kubernetes
//! object shape (`metadata`, `spec`, `status`), the same as the PacketCapture CRD, so a capture
//! written for `kubectl apply` can be POSTed as JSON unchanged.

use axum::body::Bytes;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use capture_spec::{CaptureSpec, Phase};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use utoipa::{IntoParams, ToSchema};

use crate::audit::Named;
use crate::backend::Backend;
use crate::captures::{prepare_capture, CreateError};
use crate::problem::{InvalidParam, Problem};
use crate::runs::RunsError;
use crate::state::AppState;
use crate::store::{CaptureRecord, RawCaptureRecord, Store, StoreError};

use super::object::{
    check_name, invalid_spec, parse_object, requested_name, selector_from_text, DryRunQuery,
};
use super::openapi::{self, CapturePath, NamespacePath, PacketCapture, PacketCaptureList};
use super::targets::{limit_inline_targets, INLINE_SCAN_BYTES, INLINE_TARGETS};

pub const API_VERSION: &str = "podcap.io/v1alpha1";

/// A capture as the API returns it, with at most [`INLINE_TARGETS`] targets inline: a record
/// with more is cut to its [`inline_view`](capture_spec::CaptureStatus::inline_view) (a view
/// from [`Store::capture_view`] already is one).
pub fn resource(record: &CaptureRecord) -> Value {
    let cut;
    let status = if record.status.targets.len() > INLINE_TARGETS {
        cut = record.status.inline_view();
        &cut
    } else {
        &record.status
    };
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
        "status": status,
    })
}

/// The capture `namespace/name`, or a 404 that says how to find the right one.
pub fn find(state: &AppState, namespace: &str, name: &str) -> Result<CaptureRecord, Problem> {
    found(state.store.capture(namespace, name), namespace, name)
}

/// [`find`] as an answer shows it ([`Store::capture_view`]): cheap however many targets.
pub fn find_view(state: &AppState, namespace: &str, name: &str) -> Result<CaptureRecord, Problem> {
    found(state.store.capture_view(namespace, name), namespace, name)
}

/// What a lookup of `namespace/name` found, or a 404 that says how to find the right one.
pub fn found<T>(
    lookup: Result<Option<T>, StoreError>,
    namespace: &str,
    name: &str,
) -> Result<T, Problem> {
    lookup.map_err(Problem::store)?.ok_or_else(|| {
        Problem::not_found(format!(
            "no capture {name:?} in namespace {namespace:?}: list them with GET /api/v1/namespaces/{namespace}/captures"
        ))
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only captures in this phase.
    #[param(value_type = Option<Phase>)]
    phase: Option<String>,
    /// At most this many captures per page (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Where the previous page ended: its `metadata.continue`, unchanged.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
}

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Appends `record` as [`resource`] renders it, splicing the stored spec and status text
/// instead of parsing and re-encoding them (lists are the API's hottest answers), except for a
/// status long enough to hold more targets than an answer carries.
fn push_resource(out: &mut String, record: &RawCaptureRecord) {
    let text = |value: &str| serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into());
    let limited;
    let mut status = record.status.as_str();
    if status.len() > INLINE_SCAN_BYTES {
        if let Ok(mut value) = serde_json::from_str::<Value>(status) {
            limit_inline_targets(&mut value);
            limited = value.to_string();
            status = &limited;
        }
    }
    let _ = write!(
        out,
        "{{\"apiVersion\":\"{API_VERSION}\",\"kind\":\"PacketCapture\",\"metadata\":{{\"name\":{},\"namespace\":{},\"uid\":{},\"creationTimestamp\":{}}},\"spec\":{},\"status\":{}}}",
        text(&record.name),
        text(&record.namespace),
        text(&record.uid),
        text(&record.created_at),
        record.spec,
        status,
    );
}

/// The phase a `?phase=` filter names, or a 422 listing the phases.
pub fn phase_filter(phase: Option<&str>) -> Result<Option<Phase>, Problem> {
    let Some(phase) = phase else {
        return Ok(None);
    };
    Phase::named(phase).map(Some).ok_or_else(|| {
        Problem::invalid(
            "bad phase filter",
            vec![InvalidParam {
                name: "phase".into(),
                reason: format!("{phase:?} is not a phase: use Scheduled, Capturing, Completed, Stopped or Failed"),
            }],
        )
    })
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures",
    tag = "captures",
    operation_id = "listCaptures",
    summary = "List the captures of a namespace",
    description = "Paged: `metadata.continue` is present when more follow. Standalone lists \
        oldest first; Kubernetes mode by name, a page at a time from the Kubernetes API server \
        (its continue tokens expire after a few minutes: then list again from the start).",
    params(NamespacePath, ListQuery),
    responses(
        (status = 200, description = "The captures.", body = PacketCaptureList),
        (status = 400, description = "A malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `phase`, `limit` or `continue`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Response, Problem> {
    let phase = phase_filter(query.phase.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::invalid(
            "bad page size",
            vec![InvalidParam {
                name: "limit".into(),
                reason: format!("{limit} is out of range: use 1-{MAX_PAGE}"),
            }],
        ));
    }
    let page = state
        .store
        .captures_page_raw(&namespace, phase, query.continue_token.as_deref(), limit)
        .map_err(Problem::store)?;
    let records = page.items;
    let mut body = String::with_capacity(
        records
            .iter()
            .map(|r| r.spec.len() + r.status.len() + 256)
            .sum(),
    );
    body.push_str("{\"items\":[");
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        push_resource(&mut body, record);
    }
    body.push_str("],\"metadata\":{");
    if let Some(next) = &page.next {
        let _ = write!(
            body,
            "\"continue\":{}",
            serde_json::to_string(next).map_err(Problem::internal)?
        );
    }
    body.push_str("}}");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The `metadata` of a new capture: every field is optional.
// Describes the request for the OpenAPI document; bodies are read by `object::parse_object`.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = CaptureRequestMetadata)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateMetadata {
    /// The capture's name; generated (`capture-xxxxx`) when left out.
    name: Option<String>,
    /// When given, the namespace of the path.
    #[serde(default)]
    namespace: Option<String>,
    /// Set by the server; accepted and ignored so a capture's manifest can be sent again.
    uid: Option<String>,
    /// Set by the server; accepted and ignored so a capture's manifest can be sent again.
    #[schema(value_type = Option<Value>)]
    creation_timestamp: Option<Value>,
}

/// A capture to create, in the shape of the `PacketCapture` CRD object (`kubectl apply` YAML as
/// JSON); `apiVersion`, `kind`, `metadata` and `status` may be left out.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[schema(as = PacketCaptureRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    #[schema(schema_with = openapi::api_version_field)]
    api_version: Option<String>,
    #[serde(default)]
    #[schema(schema_with = openapi::capture_kind_field)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<CreateMetadata>,
    #[schema(value_type = CaptureSpec)]
    spec: Value,
    /// Owned by the server; accepted and ignored so a GET answer can be sent back.
    #[schema(value_type = Option<Value>)]
    status: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/namespaces/{namespace}/captures",
    tag = "captures",
    operation_id = "createCapture",
    summary = "Create a capture",
    description = "Creates a capture and starts it at once (or at its `startTime`).",
    params(NamespacePath, DryRunQuery),
    request_body(content = CreateBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the answer has the name and the first status.", body = PacketCapture),
        (status = 200, description = "`dryRun=All`: valid; the capture that would be created (nothing is stored).", body = PacketCapture),
        (status = 400, description = "The body is not a capture object, or its `kind` or `apiVersion` do not fit this route; or a malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A capture of that name exists in the namespace.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The spec or name is invalid, or `metadata.namespace` is not the path's; `invalidParams` lists every field to fix.", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The data directory takes no more captures (quota or free-space floor).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(dry_run): Query<DryRunQuery>,
    body: Bytes,
) -> Result<(StatusCode, Extension<Named>, Json<Value>), Problem> {
    let dry_run = dry_run.is_dry_run()?;
    let example =
        r#"{"metadata": {"name": "web"}, "spec": {"podSelector": ..., "duration": "10m"}}"#;
    let (metadata, mut spec) = parse_object(&body, &namespace, "PacketCapture", example)?;
    selector_from_text(&mut spec, "/podSelector", "spec.podSelector")?;
    let (name, bad_name) = requested_name(metadata.name, "capture", check_name);
    let spec = CaptureSpec::from_json_value(&spec, "spec")
        .map_err(|e| invalid_spec(e, "capture").after(bad_name.clone()))?;
    let invalid = |error: CreateError| match error {
        CreateError::Invalid(errors) => invalid_spec(errors, "capture").after(bad_name.clone()),
        CreateError::Store(e @ StoreError::AlreadyExists { .. }) => {
            Problem::conflict(e.to_string())
        }
        CreateError::Store(e) => Problem::store(e),
    };
    // On a blocking thread: libpcap compiles `bpfFilter`, and resolves any host name in it.
    let (ns, requested, max_window) = (namespace.clone(), name.clone(), state.settings.max_window);
    let record = tokio::task::spawn_blocking(move || {
        prepare_capture(&ns, &requested, spec, None, max_window, Utc::now())
    })
    .await
    .map_err(Problem::internal)?
    .map_err(invalid)?;
    if let Some(problem) = bad_name {
        return Err(problem);
    }
    if dry_run {
        return Ok((
            StatusCode::OK,
            Extension(Named(record.name.clone())),
            Json(resource(&record)),
        ));
    }
    if let Some(reason) = state.backend.refuses_new() {
        return Err(Problem::insufficient_storage(format!(
            "no new capture can start: {reason}"
        )));
    }
    state
        .store
        .insert_capture(&record)
        .map_err(|error| invalid(CreateError::Store(error)))?;
    // Start it now rather than at the next pass of whatever runs captures.
    let backend = state.backend.clone();
    if let Ok(Err(error)) = tokio::task::spawn_blocking(move || backend.start_now()).await {
        tracing::warn!(%error, "starting a new capture at once failed; the next pass retries");
    }
    let stored = find(&state, &namespace, &record.name)?;
    Ok((
        StatusCode::CREATED,
        Extension(Named(stored.name.clone())),
        Json(resource(&stored)),
    ))
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}",
    tag = "captures",
    operation_id = "getCapture",
    summary = "A capture's spec and status",
    params(CapturePath),
    responses(
        (status = 200, description = "The capture.", body = PacketCapture),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(resource(&find_view(&state, &namespace, &name)?)))
}

/// Stops a capture now and keeps its files.
#[utoipa::path(
    post,
    path = "/namespaces/{namespace}/captures/{name}/stop",
    tag = "captures",
    operation_id = "stopCapture",
    summary = "Stop a capture now, keeping its files",
    params(CapturePath),
    responses(
        (status = 200, description = "Stopped (or already finished); the capture as it is now.", body = PacketCapture),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stop(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let record = find(&state, &namespace, &name)?;
    blocking(&state, move |backend, store| backend.stop(store, &record)).await?;
    Ok(Json(resource(&find(&state, &namespace, &name)?)))
}

/// Deletes a capture and its files.
#[utoipa::path(
    delete,
    path = "/namespaces/{namespace}/captures/{name}",
    tag = "captures",
    operation_id = "deleteCapture",
    summary = "Delete a capture and its files everywhere",
    params(CapturePath),
    responses(
        (status = 204, description = "Deleted, files included. In Kubernetes mode: the deletion is accepted; the object goes once every node's agent has removed its files (their finalizers)."),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let record = find(&state, &namespace, &name)?;
    blocking(&state, move |backend, store| backend.delete(store, &record)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs `work` with the backend and the store on a blocking thread (the capture life cycle is
/// synchronous, see [`crate::runs`]).
async fn blocking(
    state: &AppState,
    work: impl FnOnce(&dyn Backend, &dyn Store) -> Result<(), RunsError> + Send + 'static,
) -> Result<(), Problem> {
    let backend = state.backend.clone();
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || work(backend.as_ref(), store.as_ref()))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::from)
}
