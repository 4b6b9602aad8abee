//! The `/api/v1` routes. Every handler takes a [`crate::auth::Caller`], so no route under
//! `/api` can be reached without a valid token; each then authorizes its action in the
//! namespace of the path.

mod body;
mod captures;
mod download;
mod files;
pub mod live;
mod pods;
mod schedules;
pub mod shares;

use axum::routing::{get, post};
use axum::Router;

use crate::server::AppState;

pub fn api() -> Router<AppState> {
    Router::new()
        .route(
            "/namespaces/{namespace}/captures",
            get(captures::list).post(captures::create),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}",
            get(captures::get).delete(captures::delete),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/stop",
            post(captures::stop),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/files",
            get(files::list),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/pcap",
            get(download::merged),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/live",
            get(live::live),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/shares",
            get(shares::list).post(shares::create),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/shares/{id}",
            axum::routing::delete(shares::revoke),
        )
        .route(
            "/namespaces/{namespace}/captures/{name}/files/{id}",
            get(files::download),
        )
        .route(
            "/namespaces/{namespace}/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/namespaces/{namespace}/schedules/{name}",
            get(schedules::get)
                .put(schedules::replace)
                .delete(schedules::delete),
        )
        .route("/namespaces/{namespace}/pods", get(pods::list))
}
