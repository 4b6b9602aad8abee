//! The `/api/v1` routes. Every handler takes a [`crate::auth::Caller`], so no route under
//! `/api` can be reached without a valid token; each then authorizes its action in the
//! namespace of the path. The one exception is the OpenAPI document, which describes the API
//! and holds no data.
//!
//! Routes are registered only through utoipa-axum's `routes!`, one call per path, from the
//! handlers' `#[utoipa::path]` attributes: the router and the OpenAPI document are built from the
//! same list and cannot drift apart. (`routes!` with handlers of different paths would mount all
//! of them on every path, hence one call per path.)

pub(crate) mod body;
mod captures;
mod download;
mod files;

pub use files::content_type as files_content_type;
pub use files::no_such_file;
mod inspect;
pub mod live;
mod namespaces;
mod object;
pub mod openapi;
mod pods;
mod schedules;
pub mod shares;
pub mod tickets;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::server::AppState;

/// The `/api/v1` routes, relative to `/api/v1`, with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::document))
        .routes(routes!(namespaces::list))
        .routes(routes!(namespaces::all_captures))
        .routes(routes!(captures::list, captures::create))
        .routes(routes!(captures::get, captures::delete))
        .routes(routes!(captures::stop))
        .routes(routes!(files::list))
        .routes(routes!(download::merged))
        .routes(routes!(live::live))
        .routes(routes!(inspect::packets))
        .routes(routes!(inspect::timeline_of))
        .routes(routes!(shares::list, shares::create))
        .routes(routes!(shares::revoke))
        .routes(routes!(files::download))
        .routes(routes!(tickets::create))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(
            schedules::get,
            schedules::replace,
            schedules::delete
        ))
        .routes(routes!(pods::list))
}
