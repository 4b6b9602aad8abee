//! The HTTP server: the router and its layers. The router and the OpenAPI document are built
//! from one list of handlers, [`routes`]; every route goes through the access guard
//! ([`crate::access`]), which lets only health checks, metrics, share links, download tickets
//! and the web UI through without a token.

use std::net::SocketAddr;

use axum::extract::State;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::metrics;
use crate::problem::Problem;
use crate::routes::{openapi, shares, tickets};
use crate::state::AppState;

/// Largest request body accepted: specs are small; anything bigger is a mistake or an attack.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness probe",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness probe",
    responses(
        (status = 200, description = "`ready`: the store answers.", body = String, content_type = "text/plain"),
        (status = 500, description = "The store does not answer; the log says why.", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, Problem> {
    state.store.token_count().map_err(Problem::internal)?;
    Ok("ready")
}

/// Every route of the server with its OpenAPI description. Register routes here or in
/// [`crate::routes::api`] only with `routes!`, so that each one is in the document.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::Frame::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics::metrics))
        // Share links are the one unauthenticated way to packet data: the token is the secret.
        .routes(routes!(shares::download))
        // As are download tickets, each good for one download within a minute.
        .routes(routes!(tickets::redeem))
        .nest("/api/v1", crate::routes::api())
}

/// The OpenAPI document of [`routes`], served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().into_openapi())
}

pub fn router(state: AppState) -> Router {
    Router::from(routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::access::guard,
        ))
        .merge(crate::web::router())
        .fallback(|| async {
            Problem::not_found(
                "no such route: GET /api/v1/openapi.json lists them all, e.g. /api/v1/namespaces/{ns}/captures",
            )
        })
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // Outside the limit layer, which answers oversized requests itself.
        .layer(axum::middleware::map_response(body_limit_as_problem))
        .with_state(state)
}

/// The body limit answers 413 as plain text; every error a client sees is problem+json.
async fn body_limit_as_problem(response: axum::response::Response) -> axum::response::Response {
    if response.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    axum::response::IntoResponse::into_response(Problem::too_large(format!(
        "the request body is larger than {} KiB: captures, schedules and shares are small JSON documents",
        MAX_BODY_BYTES / 1024
    )))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
