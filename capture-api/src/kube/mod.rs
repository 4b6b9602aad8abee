//! Kubernetes mode (`capture-api --kubernetes`): the API inside a cluster. The PacketCapture and
//! PacketCaptureSchedule objects are the store ([`store`]), share links are Secrets in the
//! API's namespace ([`shares`]), every request is authenticated with a TokenReview and
//! authorized with a SubjectAccessReview in its namespace ([`auth`]), packets come from the node
//! agents' file endpoints ([`agents`]), each node's targets come from its PacketCaptureSlices
//! ([`slices`]), and a controller owns each capture's phase and totals ([`status`]). The REST routes and the web UI are the same as in standalone mode: [`Cluster`]
//! is this mode's side of the seam, [`crate::backend::Backend`] ([`backend`]).

pub mod agents;
pub mod auth;
pub mod backend;
pub mod namespaces;
pub mod pods;
pub mod runs;
pub mod shares;
pub mod slices;
pub mod status;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;

pub use agents::Agents;
pub use auth::ClusterAuth;
pub use store::KubeStore;

use crate::store::StoreError;

/// The label a schedule's captures carry (its name), to list them.
pub const SCHEDULE_LABEL: &str = "podcap.io/schedule";
/// The annotation `POST .../stop` sets, so the status controller says Stopped, not Completed.
pub const STOPPED_ANNOTATION: &str = "podcap.io/stopped-at";
/// The field manager of everything the API writes with server-side apply.
pub const FIELD_MANAGER: &str = "podcap-api";

/// What an operator chooses for Kubernetes mode.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Where share links (Secrets) live: the API's own namespace.
    pub shares_namespace: String,
    /// Longest capture window; also the window of a capture with neither end nor duration.
    pub max_window: Duration,
    /// A capture no node has reported anything for this long after its start is Failed.
    pub report_timeout: Duration,
    /// After its window closes, how long a capture waits for every node to report its targets
    /// finished before it is finished anyway.
    pub finish_grace: Duration,
}

/// Everything Kubernetes mode needs, shared by the routes and the controllers.
pub struct Cluster {
    pub client: Client,
    pub store: Arc<KubeStore>,
    pub agents: Arc<Agents>,
    pub auth: ClusterAuth,
    pub settings: ClusterSettings,
}

impl Cluster {
    pub fn new(client: Client, agents: Agents, settings: ClusterSettings) -> Arc<Cluster> {
        Arc::new(Cluster {
            store: Arc::new(KubeStore::new(client.clone(), &settings.shares_namespace)),
            auth: ClusterAuth::new(client.clone()),
            client,
            agents: Arc::new(agents),
            settings,
        })
    }
}

/// Runs an API call from synchronous code (the [`crate::store::Store`] trait, the schedule
/// controller's blocking pass). Needs a multi-threaded runtime: on one of its workers the
/// worker is handed over to blocking work first; on a blocking thread it simply waits.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, StoreError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Unavailable("no async runtime to talk to the API server from".into())
    })?;
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Err(StoreError::Unavailable(
            "Kubernetes mode needs a multi-threaded async runtime".into(),
        )),
        _ => Ok(tokio::task::block_in_place(|| handle.block_on(future))),
    }
}

/// A Kubernetes time as chrono's.
pub fn chrono_time(time: &Time) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(
        time.0.as_second(),
        u32::try_from(time.0.subsec_nanosecond()).unwrap_or(0),
    )
    .unwrap_or_default()
}

/// A kube error as a store error: 409 conflicts and everything else (unreachable, 5xx, refused)
/// with the API server's own words.
pub fn store_error(what: &str, error: kube::Error) -> StoreError {
    match &error {
        kube::Error::Api(status) if status.is_conflict() => StoreError::Conflict(what.to_string()),
        kube::Error::Api(status) => StoreError::Unavailable(format!(
            "{what}: {} ({} {})",
            status.message, status.code, status.reason
        )),
        other => StoreError::Unavailable(format!("{what}: {other}")),
    }
}

/// True when `error` is the API server's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}
