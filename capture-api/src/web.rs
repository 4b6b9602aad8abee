//! The web UI: the static files of `web/`, compiled into the binary and served at `/` (the page)
//! and `/ui/...` (its scripts, styles and icons), in both modes. Nothing is loaded from anywhere
//! else; the Content-Security-Policy says so to the browser too, so an injected script or a
//! foreign resource cannot run. The page talks to `/api/v1` with the token the user signs in
//! with, kept in the tab's sessionStorage.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::problem::Problem;

#[derive(RustEmbed)]
#[folder = "../web/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
#[exclude = "*.md"]
struct Assets;

/// Only this server's own scripts, styles, images and API; no frames, no plugins, no forms
/// posted elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The UI's routes; merged into the server's router, outside `/api` and the OpenAPI document.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    // rust-embed only knows the embedded names, so `..` cannot reach outside web/.
    let Some(file) = Assets::get(path) else {
        return Problem::not_found(format!("the web UI has no file {path:?}")).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let mut response = if request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, file.data.into_owned()).into_response()
    };
    let headers = response.headers_mut();
    let static_header = |value: &'static str| HeaderValue::from_static(value);
    headers.insert(header::CONTENT_TYPE, static_header(content_type(path)));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Revalidated on every load (cheap with the ETag): a new server version is picked up at once.
    headers.insert(header::CACHE_CONTROL, static_header("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        static_header(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, static_header("nosniff"));
    // Share and download URLs carry secrets; never send them on as a referrer.
    headers.insert(header::REFERRER_POLICY, static_header("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, static_header("DENY"));
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_modules_are_embedded() {
        let index = Assets::get("index.html").expect("web/index.html is embedded");
        let text = String::from_utf8_lossy(&index.data);
        assert!(
            text.contains("/ui/app/main.js"),
            "the page loads its main module"
        );
        assert!(Assets::get("app/main.js").is_some());
        assert!(
            Assets::iter().all(|name| !name.starts_with("tests/")),
            "tests are not shipped"
        );
    }
}
