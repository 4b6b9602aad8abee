//! Views across namespaces, for a console that starts without knowing where things are:
//! `GET /namespaces` (those the caller may use that have pods, captures or schedules) and
//! `GET /captures` (every capture the caller may read, newest first).

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::Extension;

use crate::kube::auth::User;
use axum::Json;
use capture_spec::Phase;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::captures::{check_phase, resource};
use super::openapi::PacketCaptureList;
use crate::auth::{Action, Caller};
use crate::pods;
use crate::problem::Problem;
use crate::server::AppState;

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
    user: Option<Extension<User>>,
) -> Result<Json<NamespaceList>, Problem> {
    if let (Some(cluster), Some(Extension(user))) = (&state.cluster, user) {
        let names = crate::kube::namespaces::readable(cluster, &user).await?;
        return Ok(Json(NamespaceList {
            items: names
                .into_iter()
                .map(|name| NamespaceItem { name })
                .collect(),
        }));
    }
    let mut names: BTreeSet<String> = match &caller.namespaces {
        Some(allowed) => allowed.iter().cloned().collect(),
        None => {
            let found = tokio::task::spawn_blocking(pods::discover)
                .await
                .map_err(Problem::internal)?
                // A host whose pods cannot be listed still has its captures.
                .unwrap_or_default();
            let mut names: BTreeSet<String> = found.into_iter().map(|pod| pod.namespace).collect();
            names.extend(state.store.namespaces().map_err(Problem::internal)?);
            names
        }
    };
    names.retain(|name| caller.authorize(Action::Read, name).is_ok());
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
        (status = 422, description = "A bad `phase`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn all_captures(
    State(state): State<AppState>,
    caller: Caller,
    user: Option<Extension<User>>,
    Query(query): Query<AllCapturesQuery>,
) -> Result<Json<Value>, Problem> {
    if let Some(phase) = &query.phase {
        check_phase(phase)?;
    }
    if let (Some(cluster), Some(Extension(user))) = (&state.cluster, user) {
        let mut records =
            crate::kube::namespaces::readable_captures(cluster, &user, query.phase.as_deref())
                .await?;
        records.reverse();
        let items: Vec<Value> = records.iter().map(resource).collect();
        return Ok(Json(json!({ "items": items, "metadata": {} })));
    }
    let store = state.store.clone();
    let phase = query.phase.clone();
    let mut records = tokio::task::spawn_blocking(move || store.captures(None, phase.as_deref()))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    records.retain(|record| caller.authorize(Action::Read, &record.namespace).is_ok());
    records.reverse();
    let items: Vec<Value> = records.iter().map(resource).collect();
    Ok(Json(json!({ "items": items, "metadata": {} })))
}
