//! `GET /audit`: the audit trail ([`crate::audit`]) for admins, oldest first, paged with
//! `limit` and `continue`, filtered by `kind`, `namespace` and `since`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::Query;
use crate::audit::{AuditEvent, AuditQuery, KINDS};
use crate::problem::{InvalidParam, Problem};
use crate::state::AppState;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    /// At most this many events per page (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Where the previous page ended: its `metadata.continue`.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
    /// Only events of this kind, e.g. `capture.download` or `share.use`.
    #[param(schema_with = kind_schema)]
    kind: Option<String>,
    /// Only events in this namespace.
    #[param(schema_with = super::openapi::dns_label_schema)]
    namespace: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    since: Option<String>,
}

/// `kind`: one of [`KINDS`].
fn kind_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(KINDS.iter().copied()))
        .build()
}

#[derive(Serialize, ToSchema)]
pub struct AuditListMeta {
    /// Pass as `continue` for the next page; absent on the last page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    /// Oldest first.
    items: Vec<AuditEvent>,
    metadata: AuditListMeta,
}

fn invalid(name: &str, reason: String) -> Problem {
    Problem::invalid(
        format!("bad {name}"),
        vec![InvalidParam {
            name: name.into(),
            reason,
        }],
    )
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "operations",
    operation_id = "listAuditEvents",
    summary = "The audit trail (admins only)",
    description = "One event per access to packet data and per change (create, stop, delete, \
        downloads, live streams, packet previews, share links made, used and revoked, \
        schedules), with who, from where, the status and the bytes sent. Standalone mode keeps \
        90 days; Kubernetes mode the last 10000 events of this API process (every event is also \
        a JSON line on the API's stdout).",
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page of events.", body = AuditList),
        (status = 401, description = "No or an unknown token.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `limit`, `continue`, `kind`, `namespace` or `since`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<AuditListQuery>,
) -> Result<Json<AuditList>, Problem> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("{limit} is out of range: use 1-{MAX_PAGE}"),
        ));
    }
    let after = match query.continue_token.as_deref() {
        None => None,
        Some(token) => Some(token.parse::<u64>().map_err(|_| {
            invalid(
                "continue",
                "not a token this API gave out: pass metadata.continue of the previous page unchanged".into(),
            )
        })?),
    };
    if let Some(kind) = query.kind.as_deref() {
        if !KINDS.contains(&kind) {
            return Err(invalid(
                "kind",
                format!(
                    "{kind:?} is not a kind of event: use one of {}",
                    KINDS.join(", ")
                ),
            ));
        }
    }
    if let Some(namespace) = query.namespace.as_deref() {
        capture_spec::names::validate_namespace(namespace)
            .map_err(|e| invalid("namespace", e.to_string()))?;
    }
    let since = match query.since.as_deref() {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    invalid(
                        "since",
                        format!(
                            "{text:?} is not an RFC 3339 time ({e}), e.g. 2026-12-05T02:00:00Z"
                        ),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    let audit_query = AuditQuery {
        after,
        limit,
        kind: query.kind,
        namespace: query.namespace,
        since,
    };
    let trail = state.audit.clone();
    let page = tokio::task::spawn_blocking(move || trail.list(&audit_query))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(Json(AuditList {
        items: page.events,
        metadata: AuditListMeta {
            continue_token: page.next.map(|id| id.to_string()),
        },
    }))
}
