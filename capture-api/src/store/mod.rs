//! The store: where captures, schedules, shares and API tokens live. One trait, so the API does
//! not care whether it is SQLite (standalone) or the Kubernetes API (cluster mode). Records are
//! typed with the model's own spec, status and phase types: decoded once, where they are read.

mod sqlite;

use capture_spec::status::first_targets;
use capture_spec::{
    CaptureSpec, CaptureStatus, Phase, ScheduleSpec, ScheduleStatus, TargetKey, TargetStatus,
};
use chrono::{DateTime, Utc};

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {namespace}/{name} already exists: choose another name or delete it first")]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("store: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("store: a stored value is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("store: the store lock was poisoned by a panic")]
    Poisoned,
    /// Kubernetes mode: the API server failed or could not be reached.
    #[error("the Kubernetes API server failed: {0}; try again, and if it persists check the API server and capture-api's log")]
    Unavailable(String),
    /// Kubernetes mode: the object changed since it was read (optimistic concurrency).
    #[error("{0} changed while it was being updated: read it again and retry")]
    Conflict(String),
    /// Kubernetes mode: an object someone wrote (e.g. with kubectl) that podcap's model cannot
    /// read. Lists leave it out with a warning; reading it by name says what is wrong.
    #[error("{kind} {namespace}/{name} cannot be read: {reason}; correct it with kubectl edit, or delete it")]
    Undecodable {
        kind: &'static str,
        namespace: String,
        name: String,
        reason: String,
    },
    /// A list's continue token that this store did not give out, or that is too old to use
    /// (the reason says which and what to do).
    #[error("{0}")]
    BadContinue(String),
    /// An operation this store does not have (e.g. API tokens in Kubernetes mode).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A capture as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub spec: CaptureSpec,
    pub status: CaptureStatus,
    pub created_at: DateTime<Utc>,
    /// The schedule that created it, if any.
    pub schedule: Option<String>,
}

impl CaptureRecord {
    pub fn phase(&self) -> Phase {
        self.status.phase
    }

    /// A record for unit tests: `name` in namespace `default`, in `phase`, created at
    /// `created_at` by schedule `schedule`, with an empty spec.
    #[cfg(test)]
    pub(crate) fn for_test(
        name: &str,
        phase: Phase,
        schedule: &str,
        created_at: DateTime<Utc>,
    ) -> CaptureRecord {
        CaptureRecord {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            spec: CaptureSpec::default(),
            status: CaptureStatus {
                phase,
                ..CaptureStatus::default()
            },
            created_at,
            schedule: Some(schedule.into()),
        }
    }
}

/// One page of a list and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A capture as stored, with spec and status left as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCaptureRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub spec: String,
    pub status: String,
    /// As stored: RFC 3339 in UTC.
    pub created_at: String,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub spec: ScheduleSpec,
    pub status: ScheduleStatus,
    pub created_at: DateTime<Utc>,
}

/// A share link as stored (only the hash of its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub id: String,
    pub token_hash: String,
    pub capture_uid: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub downloads: u64,
}

/// An API token as stored (only the hash of the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub token_hash: String,
    pub role: String,
    /// None = every namespace.
    pub namespaces: Option<Vec<String>>,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

pub trait Store: Send + Sync + 'static {
    fn insert_capture(&self, capture: &CaptureRecord) -> Result<(), StoreError>;
    fn capture(&self, namespace: &str, name: &str) -> Result<Option<CaptureRecord>, StoreError>;
    /// The capture as an answer shows it ([`CaptureStatus::inline_view`]): totals over every
    /// target, and only the first targets. A store that can build it without copying every
    /// target (Kubernetes mode, where a capture may have tens of thousands) overrides this.
    fn capture_view(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<CaptureRecord>, StoreError> {
        Ok(self.capture(namespace, name)?.map(|mut record| {
            record.status = record.status.inline_view();
            record
        }))
    }
    /// One page of a capture's targets ([`first_targets`]: the first `limit` by node, pod and
    /// interface after `after`) and how many more follow; None when there is no such capture.
    fn capture_targets(
        &self,
        namespace: &str,
        name: &str,
        after: Option<&TargetKey>,
        limit: usize,
    ) -> Result<Option<(Vec<TargetStatus>, usize)>, StoreError> {
        Ok(self.capture(namespace, name)?.map(|record| {
            let targets: Vec<&TargetStatus> = record.status.targets.iter().collect();
            first_targets(&targets, after, limit)
        }))
    }
    fn capture_by_uid(&self, uid: &str) -> Result<Option<CaptureRecord>, StoreError>;
    /// Captures of one namespace (or all when `None`), optionally of one phase, oldest first.
    fn captures(
        &self,
        namespace: Option<&str>,
        phase: Option<Phase>,
    ) -> Result<Vec<CaptureRecord>, StoreError>;
    /// One page of at most `limit` of a namespace's captures, in the store's own order
    /// (SQLite: creation time, then name; Kubernetes: name, as the API server lists them),
    /// starting where `continue_token` (the previous page's [`Page::next`]) says, and the token
    /// of the page after it. Spec and status stay the stored JSON text, so a list answer passes
    /// them through unchanged (the one place records are not decoded: a page of large statuses
    /// is copied, not parsed). A token this store did not give out, or one too old to use, is
    /// [`StoreError::BadContinue`].
    fn captures_page_raw(
        &self,
        namespace: &str,
        phase: Option<Phase>,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Page<RawCaptureRecord>, StoreError>;
    /// Replaces a capture's status; false if the capture no longer exists.
    fn update_capture_status(&self, uid: &str, status: &CaptureStatus) -> Result<bool, StoreError>;
    fn delete_capture(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;

    /// Captures a schedule created, oldest first.
    fn captures_of_schedule(
        &self,
        namespace: &str,
        schedule: &str,
    ) -> Result<Vec<CaptureRecord>, StoreError>;

    fn insert_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError>;
    fn schedule(&self, namespace: &str, name: &str) -> Result<Option<ScheduleRecord>, StoreError>;
    fn schedules(&self, namespace: Option<&str>) -> Result<Vec<ScheduleRecord>, StoreError>;
    /// Replaces spec and status; false if the schedule no longer exists.
    fn update_schedule(
        &self,
        uid: &str,
        spec: &ScheduleSpec,
        status: &ScheduleStatus,
    ) -> Result<bool, StoreError>;
    fn delete_schedule(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;

    fn insert_share(&self, share: &ShareRecord) -> Result<(), StoreError>;
    fn share_by_hash(&self, token_hash: &str) -> Result<Option<ShareRecord>, StoreError>;
    fn shares_of(&self, capture_uid: &str) -> Result<Vec<ShareRecord>, StoreError>;
    /// Marks a share revoked; false if there is no such share of that capture.
    fn revoke_share(
        &self,
        capture_uid: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    fn count_share_download(&self, id: &str) -> Result<(), StoreError>;
    /// Downloads through every share link that still exists.
    fn share_downloads_total(&self) -> Result<u64, StoreError>;

    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    fn token_count(&self) -> Result<u64, StoreError>;
    /// Every namespace that has a capture or a schedule, sorted.
    fn namespaces(&self) -> Result<Vec<String>, StoreError>;
}
