//! The HTTP server: shared state, the router, and the request authentication every `/api`
//! route goes through (health checks and share links are the only unauthenticated routes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::get;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

use crate::auth::{self, Caller};
use crate::problem::Problem;
use crate::runner::Runner;
use crate::store::Store;

/// Largest request body accepted: specs are small; anything bigger is a mistake or an attack.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Settings an operator chooses at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Longest capture window accepted.
    pub max_window: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub runner: Arc<Runner>,
    pub settings: Arc<Settings>,
}

impl FromRef<AppState> for Arc<dyn Store> {
    fn from_ref(state: &AppState) -> Self {
        state.store.clone()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        auth::authenticate(state.store.as_ref(), header)
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Result<&'static str, Problem> {
    state.store.token_count().map_err(Problem::internal)?;
    Ok("ready")
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::metrics))
        // Share links are the one unauthenticated way to packet data: the token is the secret.
        .route("/share/{token}", get(crate::routes::shares::download))
        .nest("/api/v1", crate::routes::api())
        .fallback(|| async {
            Problem::not_found("no such route: see /api/v1/namespaces/{ns}/captures")
        })
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
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
