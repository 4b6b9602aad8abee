//! Views across namespaces, for a console that starts without knowing where things are:
//! `GET /namespaces` (those the caller may use that have pods, captures or schedules) and
//! `GET /captures` (every capture the caller may read, newest first).

use std::collections::BTreeSet;

use axum::extract::State;

use super::extract::Query;
use axum::Json;
use capture_spec::Phase;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::captures::{phase_filter, resource};
use super::openapi::PacketCaptureList;
use crate::access::{Access, Caller, Verb};
use crate::problem::Problem;
use crate::state::AppState;

/// A namespace the caller may use.
#[derive(Serialize, ToSchema)]
pub struct NamespaceItem {
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct NamespaceList {
    /// Sorted by name.
    items: Vec<NamespaceItem>,
}

#[utoipa::path(
    get,
    path = "/namespaces",
    tag = "captures",
    operation_id = "listNamespaces",
    summary = "The namespaces the caller may use",
    description = "Namespaces with pods, captures or schedules that the token may read; a token \
        limited to namespaces lists exactly those.",
    responses((status = 200, description = "The namespaces.", body = NamespaceList))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<NamespaceList>, Problem> {
    let names = state.backend.namespaces(&caller).await?;
    Ok(Json(NamespaceList {
        items: names
            .into_iter()
            .map(|name| NamespaceItem { name })
            .collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllCapturesQuery {
    /// Only captures in this phase.
    #[param(value_type = Option<Phase>)]
    phase: Option<String>,
}

#[utoipa::path(
    get,
    path = "/captures",
    tag = "captures",
    operation_id = "listCapturesInAllNamespaces",
    summary = "The captures of every namespace the caller may read",
    description = "Newest first; not paged (use the namespaced list to page).",
    params(AllCapturesQuery),
    responses(
        (status = 200, description = "The captures.", body = PacketCaptureList),
        (status = 400, description = "A malformed query string (a parameter given twice); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `phase`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn all_captures(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AllCapturesQuery>,
) -> Result<Json<Value>, Problem> {
    let phase = phase_filter(query.phase.as_deref())?;
    let store = state.store.clone();
    let mut records = tokio::task::spawn_blocking(move || store.captures(None, phase))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::store)?;
    let list = Access::Captures(Verb::List);
    // One question settles it for callers who may read every namespace; the others are asked
    // namespace by namespace (the backend caches its answers).
    if !state.backend.allowed(&caller, list, "").await? {
        let namespaces: BTreeSet<String> = records.iter().map(|r| r.namespace.clone()).collect();
        let mut readable = BTreeSet::new();
        for namespace in namespaces {
            if state.backend.allowed(&caller, list, &namespace).await? {
                readable.insert(namespace);
            }
        }
        records.retain(|record| readable.contains(&record.namespace));
    }
    records.reverse();
    let items: Vec<Value> = records.iter().map(resource).collect();
    Ok(Json(json!({ "items": items, "metadata": {} })))
}
