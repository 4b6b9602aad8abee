//! The HTTP server: the router and its layers. The router and the OpenAPI document are built
//! from one list of handlers, [`routes`]; every route goes through [`guard`], which applies the
//! access table ([`crate::access`]) through the mode's backend and lets only health checks,
//! metrics, the OpenAPI document, share links, download tickets and the web UI through without
//! a token. The token comes from `Authorization` or, behind the Kubernetes API server's service
//! proxy (which strips `Authorization`), from `X-Podcap-Authorization` (see [`credentials`]).

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{access_of, Access};
use crate::audit::{self, AuditEvent, Counted};
use crate::metrics;
use crate::problem::Problem;
use crate::routes::{openapi, shares, tickets};
use crate::state::AppState;
use crate::tls::TlsFiles;

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
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| openapi::finish(routes().into_openapi()))
}

/// Every operation the server has a handler for, as (method, matched path), read once from the
/// OpenAPI document (which lists exactly the routes served).
pub fn operations() -> &'static [(Method, String)] {
    static OPERATIONS: OnceLock<Vec<(Method, String)>> = OnceLock::new();
    OPERATIONS.get_or_init(|| {
        let mut found = Vec::new();
        for (path, item) in &openapi().paths.paths {
            let methods = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in methods {
                if operation.is_some() {
                    found.push((method, path.clone()));
                }
            }
        }
        found
    })
}

pub fn router(state: AppState) -> Router {
    Router::from(routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard,
        ))
        .merge(crate::web::router())
        .fallback(|| async {
            Problem::not_found(
                "no such route: GET /api/v1/openapi.json lists them all, e.g. /api/v1/namespaces/{ns}/captures",
            )
        })
        // Inside the limit layer, so that it reads at most MAX_BODY_BYTES.
        .layer(axum::middleware::from_fn(read_body_first))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // Outside the limit layer, which answers oversized requests itself.
        .layer(axum::middleware::map_response(body_limit_as_problem))
        .with_state(state)
}

/// The namespace segment of `/api/v1/namespaces/{namespace}/...`; empty for the routes above
/// namespaces.
fn path_namespace(path: &str) -> &str {
    path.strip_prefix("/api/v1/namespaces/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// Whether the server has a handler for `method` on the matched `path`.
fn is_served(method: &Method, path: &str) -> bool {
    operations()
        .iter()
        .any(|(served, template)| served == method && template == path)
}

/// The route layer of every route: authenticates and authorizes each request by
/// [`access_of`] before its handler runs, and records the audited ones ([`crate::audit`]) once
/// their answer has been sent.
pub async fn guard(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let template = matched.as_ref().map_or("", |m| m.as_str()).to_string();
    let Some(kind) = audit::kind_of(request.method(), &template) else {
        return admit(&state, &template, request, next).await.1;
    };
    let uri_path = request.uri().path().to_string();
    let public = access_of(request.method(), &template) == Some(Access::Public);
    let event = AuditEvent {
        id: 0,
        at: chrono::Utc::now(),
        kind: kind.to_string(),
        who: String::new(),
        from: audit::peer(request.extensions()),
        method: request.method().to_string(),
        // A share link's or ticket's path is its secret.
        path: if public {
            template.clone()
        } else {
            uri_path.clone()
        },
        namespace: path_namespace(&uri_path).to_string(),
        name: audit::named(&uri_path),
        status: 0,
        bytes: 0,
        complete: false,
    };
    let (who, response) = admit(&state, &template, request, next).await;
    let who = match kind {
        "share.use" => audit::share_caller(uri_path.rsplit('/').next().unwrap_or_default()),
        "ticket.use" => "ticket".to_string(),
        _ => who.unwrap_or_else(|| "anonymous".to_string()),
    };
    let (parts, body) = response.into_parts();
    let name = match parts.extensions.get::<audit::Named>() {
        Some(created) => created.0.clone(),
        None => event.name.clone(),
    };
    let event = AuditEvent {
        who,
        name,
        status: parts.status.as_u16(),
        ..event
    };
    let length = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok());
    Response::from_parts(
        parts,
        Counted::wrap(body, state.audit.clone(), event, length),
    )
}

/// [`guard`]'s decision: the handler's answer or the refusal, and who the caller was (when
/// known).
async fn admit(
    state: &AppState,
    path: &str,
    mut request: Request,
    next: Next,
) -> (Option<String>, Response) {
    let Some(access) = access_of(request.method(), path) else {
        if !is_served(request.method(), path) {
            // No handler for this method here: the router answers 405 with what is allowed.
            return (None, next.run(request).await);
        }
        tracing::error!(method = %request.method(), path, "route without an access rule");
        let refused = Problem::forbidden(format!(
            "{} {path} has no access rule, so it is refused",
            request.method()
        ));
        return (None, refused.into_response());
    };
    if access == Access::Public {
        return (None, next.run(request).await);
    }
    let header = match credentials(request.headers()) {
        Ok(header) => header,
        Err(problem) => return (None, problem.into_response()),
    };
    let caller = match state.backend.authenticate(header).await {
        Ok(caller) => caller,
        Err(problem) => return (None, problem.into_response()),
    };
    let who = Some(caller.name().to_string());
    let namespace = path_namespace(request.uri().path()).to_string();
    // One check of the `{namespace}` segment for every route under it, before any handler or
    // store sees it (the OpenAPI document gives its pattern): a name Kubernetes would refuse
    // is refused here too, never answered as an empty namespace.
    if !namespace.is_empty() {
        if let Err(problem) = crate::routes::object::check_namespace(&namespace) {
            return (who, problem.into_response());
        }
    }
    if access != Access::Authenticated {
        if let Err(problem) = state.backend.authorize(&caller, access, &namespace).await {
            return (who, problem.into_response());
        }
    }
    request.extensions_mut().insert(caller);
    (who, next.run(request).await)
}

/// The second header a caller may put its bearer token in: `X-Podcap-Authorization: Bearer
/// TOKEN`.
pub const PROXY_AUTHORIZATION: &str = "x-podcap-authorization";

/// The credentials of a request: `Authorization`, or, when it is absent, `X-Podcap-Authorization`.
///
/// Why two headers: `kubectl podcap` reaches the API through the Kubernetes API server's service
/// proxy (`/api/v1/namespaces/podcap-system/services/capture-api:http/proxy/...`). The API server
/// authenticates the user for the proxy itself (they need `get services/proxy` on the Service) and
/// then deletes the `Authorization` header before forwarding, so the API would see no identity.
/// It forwards other headers untouched, so the plugin sends the same token in both; whichever
/// arrives goes through the same authentication (TokenReview or podcap token) and the same
/// authorization as before. Two different tokens are ambiguous and refused with a 400.
fn credentials(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let read = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    match (read(AUTHORIZATION.as_str()), read(PROXY_AUTHORIZATION)) {
        (Some(plain), Some(proxied)) if plain.trim() != proxied.trim() => Err(Problem::bad_request(
            "the Authorization and X-Podcap-Authorization headers carry different credentials: send one token, in either or both",
        )),
        (Some(plain), _) => Ok(Some(plain)),
        (None, proxied) => Ok(proxied),
    }
}

/// Reads the whole request body before the guard, the router or a handler sees the request.
/// hyper keeps a connection open after an answer only if the request's body was read to its end
/// by then; otherwise it closes the connection right after the answer, without a `Connection:
/// close` header. So a request refused before its body is read (401, 403, 404, 405, ...) whose
/// body had not fully arrived yet (clients write the headers and the body separately) got its
/// connection closed silently, and a client that reused it failed on its next request with "Peer
/// disconnected" (the flaky OpenAPI test). Reading first makes the answer never depend on how the
/// body was split; every body this API takes is a small JSON document, bounded by the limit layer.
async fn read_body_first(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match Bytes::from_request(Request::new(body), &()).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        // Over the limit: a chunked body, which the limit layer cannot judge from its headers.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            StatusCode::PAYLOAD_TOO_LARGE.into_response()
        }
        Err(rejection) => Problem::bad_request(format!(
            "the request body could not be read ({}): send the request again with its whole body",
            rejection.body_text()
        ))
        .into_response(),
    }
}

/// The body limit answers 413 as plain text; every error a client sees is problem+json. The rest
/// of an oversized body is never read, so the connection cannot carry another request: the answer
/// says `Connection: close` (hyper then closes it) instead of leaving the client to find out.
async fn body_limit_as_problem(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let mut response = Problem::too_large(format!(
        "the request body is larger than {} KiB: captures, schedules and shares are small JSON documents",
        MAX_BODY_BYTES / 1024
    ))
    .into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// How long connections still open at shutdown (a download, a live stream) may go on.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves: HTTPS with `tls` (see [`crate::tls`]), else plain HTTP.
pub async fn serve(
    state: AppState,
    listen: SocketAddr,
    banner: &str,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The certificate is loaded before the port is bound: a bad one fails the start.
    let tls = match tls {
        Some(files) => Some(files.load_and_watch().await?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    // The address actually bound: with port 0 the kernel picks one, and this line is how a
    // supervisor (or a test) learns it without racing for a "free" port.
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("{banner} listening on {scheme}://{bound}");
    tracing::info!(%bound, scheme, "listening");
    let app = router(state);
    match tls {
        None => {
            axum::serve(
                tokio::net::TcpListener::from_std(listener)?,
                // The peer address, for the audit trail.
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await?
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            axum_server::tls_rustls::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_comes_from_the_path() {
        assert_eq!(path_namespace("/api/v1/namespaces/shop/captures"), "shop");
        assert_eq!(path_namespace("/api/v1/captures"), "");
        assert!(is_served(
            &Method::GET,
            "/api/v1/namespaces/{namespace}/captures"
        ));
        assert!(!is_served(
            &Method::PATCH,
            "/api/v1/namespaces/{namespace}/captures"
        ));
    }
}
