//! The `/api/v1` routes. None checks permissions or asks which mode it runs in: the access
//! guard ([`crate::access`]) has authenticated and authorized every request by the route's
//! entry in the one access table before the handler runs, and what differs between the modes
//! is behind [`crate::backend::Backend`] and [`crate::store::Store`].
//!
//! Routes are registered only through utoipa-axum's `routes!`, one call per path, from the
//! handlers' `#[utoipa::path]` attributes: the router and the OpenAPI document are built from the
//! same list and cannot drift apart. (`routes!` with handlers of different paths would mount all
//! of them on every path, hence one call per path.)

mod audit;
mod captures;
mod download;
mod extract;
mod files;

mod inspect;
mod live;
mod namespaces;
pub(crate) mod object;
pub mod openapi;
mod pods;
mod schedules;
pub mod shares;
pub mod targets;
pub mod tickets;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The `/api/v1` routes, relative to `/api/v1`, with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::document))
        .routes(routes!(namespaces::list))
        .routes(routes!(namespaces::all_captures))
        .routes(routes!(captures::list, captures::create))
        .routes(routes!(captures::get, captures::delete))
        .routes(routes!(captures::stop))
        .routes(routes!(targets::list))
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
        .routes(routes!(audit::list))
}
