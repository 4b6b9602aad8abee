//! `GET /api/v1/namespaces/{ns}/pods?selector=app%3Dweb`: which pods a selector matches now, so
//! an operator can check a selector before capturing.

use axum::extract::{Path, Query, State};
use axum::Json;
use capture_spec::LabelSelector;
use serde::Deserialize;

use crate::auth::{Action, Caller};
use crate::pods::{self, Pod};
use crate::problem::{InvalidParam, Problem};
use crate::server::AppState;

#[derive(Deserialize)]
pub struct PodQuery {
    selector: Option<String>,
}

pub async fn list(
    State(_state): State<AppState>,
    caller: Caller,
    Path(namespace): Path<String>,
    Query(query): Query<PodQuery>,
) -> Result<Json<Vec<Pod>>, Problem> {
    caller.authorize(Action::Read, &namespace)?;
    let selector = match query
        .selector
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(text) => text.parse::<LabelSelector>().map_err(|e| {
            Problem::invalid(
                "bad selector",
                vec![InvalidParam {
                    name: "selector".into(),
                    reason: e.to_string(),
                }],
            )
        })?,
        None => LabelSelector::default(),
    };
    let all = tokio::task::spawn_blocking(pods::discover)
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(Json(
        all.into_iter()
            .filter(|p| p.namespace == namespace && selector.matches(&p.labels))
            .collect(),
    ))
}
