//! What every route and the route layer share: the store, the mode's backend, the operator's
//! settings and the download tickets. Built once in `main`, for one mode; cloned per request
//! (everything inside is an `Arc`).

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditTrail;
use crate::backend::Backend;
use crate::store::Store;
use crate::tickets::DownloadTickets;

/// What an operator chooses at start that the routes need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest capture window accepted (and the window of a capture with no end).
    pub max_window: Duration,
    /// Whether this server serves HTTPS itself (`--tls-cert`): the scheme of the links it hands
    /// out (share links).
    pub tls: bool,
}

#[derive(Clone)]
pub struct AppState {
    /// Captures, schedules and share links: SQLite, or the cluster's objects.
    pub store: Arc<dyn Store>,
    /// Everything else that differs between the modes (see [`crate::backend`]).
    pub backend: Arc<dyn Backend>,
    pub settings: Arc<Settings>,
    pub tickets: Arc<DownloadTickets>,
    /// Who accessed packet data or changed something (see [`crate::audit`]).
    pub audit: Arc<AuditTrail>,
}
