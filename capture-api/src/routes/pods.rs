//! `GET /api/v1/namespaces/{ns}/pods?selector=app%3Dweb`: which pods a selector matches now, so
//! an operator can check a selector before capturing.

use std::collections::BTreeMap;

use axum::extract::State;

use super::extract::{Path, Query};
use axum::Json;
use capture_spec::LabelSelector;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::pods::Pod;
use crate::problem::{InvalidParam, Problem};
use crate::state::AppState;

use super::openapi::NamespacePath;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PodQuery {
    /// A label selector in kubectl's form, e.g. `app=web,tier in (a,b),!canary`; unset or empty
    /// matches every pod of the namespace.
    #[param(example = "app=web")]
    selector: Option<String>,
}

/// The OpenAPI schema of [`Pod`], which lives with pod discovery; a unit test keeps the two the
/// same shape.
#[derive(Serialize, ToSchema)]
#[schema(as = Pod)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct PodSchema {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    node: String,
    /// The host-side interface podcap captures on.
    interface: String,
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/pods",
    tag = "pods",
    operation_id = "listPods",
    summary = "Which pods a selector matches now",
    description = "Check a selector before capturing with it. In Kubernetes mode: the namespace's Running pods, from the Kubernetes API (`interface` is empty: the node's agent finds it).",
    params(NamespacePath, PodQuery),
    responses(
        (status = 200, description = "The pods of the namespace the selector matches.", body = Vec<PodSchema>),
        (status = 400, description = "A malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad selector; the reason says where.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(query): Query<PodQuery>,
) -> Result<Json<Vec<Pod>>, Problem> {
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
    state.backend.pods(&namespace, &selector).await.map(Json)
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_schema_has_the_fields_a_pod_is_written_with() {
        let pod = Pod {
            namespace: "default".into(),
            name: "web".into(),
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            node: "node-1".into(),
            interface: "veth1".into(),
        };
        let written = serde_json::to_value(&pod).unwrap();
        let mut written: Vec<&String> = written.as_object().unwrap().keys().collect();
        let schema = serde_json::to_value(PodSchema::schema()).unwrap();
        let mut documented: Vec<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        written.sort();
        documented.sort();
        assert_eq!(written, documented);
    }
}
