//! The seam between the two modes: everything that differs between podcap on one machine and
//! podcap in a cluster, behind one trait chosen once in `main`.
//!
//! - standalone ([`crate::standalone::Standalone`]): API tokens from the SQLite store, the
//!   in-process runner captures on network-namespace pods, files are in the data directory;
//! - Kubernetes ([`crate::kube::Cluster`]): TokenReview and SubjectAccessReview, captures are
//!   objects the node agents act on, files and live streams come from the agents.
//!
//! The store (captures, schedules, shares) is the other half of the seam, [`crate::store::Store`].
//! Routes and controllers only ever see these two traits, never which mode they run in.
//! Capture life cycle (start, stop, delete) is [`Runs`], shared with the schedule controller.

use async_trait::async_trait;
use axum::http::HeaderMap;
use axum::response::Response;
use capture_agent::merge::MergeInput;
use capture_spec::LabelSelector;

use crate::access::{Access, Caller};
use crate::pods::Pod;
use crate::problem::Problem;
use crate::runs::Runs;
use crate::store::CaptureRecord;

#[async_trait]
pub trait Backend: Runs {
    /// The caller behind an `Authorization` header, or a 401 saying what to send.
    async fn authenticate(&self, header: Option<&str>) -> Result<Caller, Problem>;

    /// Whether `caller` may have `access` in `namespace` (empty: in every namespace).
    async fn allowed(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<bool, Problem>;

    /// Ok when allowed; otherwise a 403 that names what was denied and how to get it.
    async fn authorize(
        &self,
        caller: &Caller,
        access: Access,
        namespace: &str,
    ) -> Result<(), Problem>;

    /// The namespaces `caller` may read captures in, sorted: those with pods, captures or
    /// schedules, or exactly a scoped token's namespaces.
    async fn namespaces(&self, caller: &Caller) -> Result<Vec<String>, Problem>;

    /// The pods of `namespace` that `selector` matches now.
    async fn pods(&self, namespace: &str, selector: &LabelSelector) -> Result<Vec<Pod>, Problem>;

    /// A capture's files as merge inputs, one per pod interface, each labelled
    /// "namespace/pod on node".
    async fn inputs(&self, record: &CaptureRecord) -> Result<Vec<MergeInput>, Problem>;

    /// One file of a capture by its listed id, honouring a `Range` header.
    async fn file(
        &self,
        record: &CaptureRecord,
        id: &str,
        headers: &HeaderMap,
    ) -> Result<Response, Problem>;

    /// A live pcapng stream of a capturing capture, until it ends or the client leaves.
    async fn live(&self, record: &CaptureRecord) -> Result<Response, Problem>;

    /// Live chunks that slow watchers missed, since start (for `/metrics`).
    fn live_chunks_skipped(&self) -> u64;
}
