//! The audit trail: one event for every access to packet data and every change, with who,
//! what, when, from where, the answer's status and how many bytes left the server.
//!
//! The route layer ([`crate::server::guard`]) decides, for each request, whether it is audited
//! ([`kind_of`], the one table of audited routes) and records the event when the answer's body
//! has been sent or broken off ([`Counted`]): a download counts the bytes that really went out,
//! and a transfer cut short says so (`complete: false`). Refusals (401, 403, 404) are recorded
//! too: a denied attempt on packet data is what an audit is for. Share links record the share
//! (a hash prefix of its secret, never the secret) as who.
//!
//! Events go to a writer thread, so a request never waits for them: it prints each as one JSON
//! line on stdout (collect stdout to keep them: `capture-api ... > audit.jsonl`, or the
//! container log in a cluster) and keeps it queryable for `GET /api/v1/audit` — in standalone
//! mode in `DATA_DIR/audit.sqlite` (events older than [`RETENTION`] are pruned at start and
//! hourly), in Kubernetes mode in memory, the last [`MEMORY_EVENTS`] (the JSON lines are the
//! durable record there).
//! `/metrics` counts them per kind (`podcap_audit_events_total`).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Method;
use chrono::{DateTime, Utc};
use http_body::{Frame, SizeHint};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Standalone mode keeps events this long.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Kubernetes mode keeps this many events in memory.
pub const MEMORY_EVENTS: usize = 10_000;

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Increasing; `continue` pages by it.
    pub id: u64,
    pub at: DateTime<Utc>,
    /// What was done, e.g. `capture.create`, `capture.download`, `share.use` (see [`kind_of`]).
    pub kind: String,
    /// The token id (standalone), the Kubernetes user, `share:<first 12 hex of the secret's
    /// SHA-256>` for a share link, `ticket` for a download ticket, `anonymous` without
    /// credentials.
    pub who: String,
    /// The peer address the request came from.
    pub from: String,
    pub method: String,
    /// The request's path; share links and tickets show the route, not their secret.
    pub path: String,
    pub namespace: String,
    /// The capture or schedule, when the path names one.
    pub name: String,
    /// The answer's status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// False when the body was not sent to its end (the client went away, the transfer broke).
    pub complete: bool,
}

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("the audit store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("an audit event is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the audit store's lock was poisoned")]
    Poisoned,
}

/// The audited routes: method and matched path → kind. Everything else is not audited.
pub fn kind_of(method: &Method, path: &str) -> Option<&'static str> {
    let api = path.strip_prefix("/api/v1");
    let kind = match (method.as_str(), api.unwrap_or(path)) {
        ("GET", "/share/{token}") => "share.use",
        ("GET", "/download/{ticket}") => "ticket.use",
        (method, rest) => {
            let rest = rest.strip_prefix("/namespaces/{namespace}")?;
            match (method, rest) {
                ("POST", "/captures") => "capture.create",
                ("POST", "/captures/{name}/stop") => "capture.stop",
                ("DELETE", "/captures/{name}") => "capture.delete",
                ("GET", "/captures/{name}/pcap") => "capture.download",
                ("GET", "/captures/{name}/files/{id}") => "file.download",
                ("GET", "/captures/{name}/live") => "capture.live",
                ("GET", "/captures/{name}/packets") => "capture.packets",
                ("GET", "/captures/{name}/timeline") => "capture.timeline",
                ("POST", "/captures/{name}/downloads") => "ticket.create",
                ("POST", "/captures/{name}/shares") => "share.create",
                ("DELETE", "/captures/{name}/shares/{id}") => "share.revoke",
                ("POST", "/schedules") => "schedule.create",
                ("PUT", "/schedules/{name}") => "schedule.update",
                ("DELETE", "/schedules/{name}") => "schedule.delete",
                _ => return None,
            }
        }
    };
    Some(kind)
}

/// Every kind [`kind_of`] can give, for the metric (each is shown, also at 0).
pub const KINDS: [&str; 16] = [
    "capture.create",
    "capture.stop",
    "capture.delete",
    "capture.download",
    "file.download",
    "capture.live",
    "capture.packets",
    "capture.timeline",
    "ticket.create",
    "ticket.use",
    "share.create",
    "share.use",
    "share.revoke",
    "schedule.create",
    "schedule.update",
    "schedule.delete",
];

/// What a handler that creates an object tells the audit trail it created (a response
/// extension): a create's path does not name it.
#[derive(Debug, Clone)]
pub struct Named(pub String);

/// `share:` and a prefix of the secret's hash: which share was used, without the secret.
pub fn share_caller(secret: &str) -> String {
    let hash = crate::auth::hash_secret(secret);
    format!("share:{}", &hash[..12])
}

/// The capture or schedule a path names: the segment after `captures/` or `schedules/`.
pub fn named(path: &str) -> String {
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        if segment == "captures" || segment == "schedules" {
            return segments.next().unwrap_or_default().to_string();
        }
    }
    String::new()
}

/// Where events are kept for `GET /api/v1/audit`.
enum Keep {
    Sqlite(Mutex<Connection>),
    Memory(Mutex<VecDeque<AuditEvent>>),
}

/// The audit trail of this process.
pub struct AuditTrail {
    keep: Arc<Keep>,
    sender: Mutex<mpsc::Sender<AuditEvent>>,
    next_id: Mutex<u64>,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// A page of events, oldest first, and where the next one starts.
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<u64>,
}

/// What a listing asks for.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub after: Option<u64>,
    pub limit: usize,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at);";

/// How often the writer deletes events older than [`RETENTION`] (and once at start).
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the kept events older than [`RETENTION`].
fn prune(connection: &Connection) -> rusqlite::Result<usize> {
    let oldest = Utc::now() - chrono::Duration::from_std(RETENTION).unwrap_or_default();
    connection.execute(
        "DELETE FROM audit_events WHERE at < ?1",
        params![oldest.to_rfc3339()],
    )
}

impl AuditTrail {
    /// Standalone mode: events kept in `DATA_DIR/audit.sqlite`.
    pub fn in_dir(data_dir: &Path) -> Result<AuditTrail, AuditError> {
        let connection = Connection::open(data_dir.join("audit.sqlite"))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.execute_batch(SCHEMA)?;
        prune(&connection)?;
        let last: Option<u64> = connection
            .query_row("SELECT MAX(id) FROM audit_events", [], |row| row.get(0))
            .optional()?
            .flatten();
        Ok(AuditTrail::start(
            Keep::Sqlite(Mutex::new(connection)),
            last.unwrap_or(0),
        ))
    }

    /// Kubernetes mode (and tests): the last [`MEMORY_EVENTS`] in memory.
    pub fn in_memory() -> AuditTrail {
        AuditTrail::start(Keep::Memory(Mutex::new(VecDeque::new())), 0)
    }

    fn start(keep: Keep, last_id: u64) -> AuditTrail {
        let keep = Arc::new(keep);
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let (sender, events) = mpsc::channel::<AuditEvent>();
        let (writer_keep, writer_counts) = (keep.clone(), counts.clone());
        let spawned = std::thread::Builder::new()
            .name("podcap-audit".into())
            .spawn(move || {
                let mut pruned = std::time::Instant::now();
                loop {
                    match events.recv_timeout(PRUNE_EVERY) {
                        Ok(event) => write(&writer_keep, &writer_counts, &event),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    if pruned.elapsed() >= PRUNE_EVERY {
                        if let Keep::Sqlite(connection) = writer_keep.as_ref() {
                            let result = connection
                                .lock()
                                .map_err(|_| AuditError::Poisoned)
                                .and_then(|c| prune(&c).map_err(AuditError::from));
                            if let Err(error) = result {
                                tracing::error!(%error, "old audit events could not be pruned");
                            }
                        }
                        pruned = std::time::Instant::now();
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the audit writer: audit events will be lost");
        }
        AuditTrail {
            keep,
            sender: Mutex::new(sender),
            next_id: Mutex::new(last_id + 1),
            counts,
        }
    }

    /// Records `event` (its `id` is assigned here).
    pub fn record(&self, mut event: AuditEvent) {
        if let Ok(mut next) = self.next_id.lock() {
            event.id = *next;
            *next += 1;
        }
        let sent = self
            .sender
            .lock()
            .map(|sender| sender.send(event).is_ok())
            .unwrap_or(false);
        if !sent {
            tracing::error!("the audit writer is gone: an audit event was lost");
        }
    }

    /// Events recorded since this process started, by kind.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// A page of kept events, oldest first.
    pub fn list(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        let limit = query.limit.max(1);
        let mut events = match self.keep.as_ref() {
            Keep::Sqlite(connection) => {
                let connection = connection.lock().map_err(|_| AuditError::Poisoned)?;
                let mut statement = connection.prepare(
                    "SELECT event FROM audit_events
                     WHERE id > ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR namespace = ?3)
                       AND (?4 IS NULL OR at >= ?4)
                     ORDER BY id LIMIT ?5",
                )?;
                let rows = statement.query_map(
                    params![
                        query.after.unwrap_or(0),
                        query.kind,
                        query.namespace,
                        query.since.map(|t| t.to_rfc3339()),
                        (limit + 1) as i64
                    ],
                    |row| row.get::<_, String>(0),
                )?;
                let mut events = Vec::new();
                for row in rows {
                    events.push(serde_json::from_str(&row?)?);
                }
                events
            }
            Keep::Memory(kept) => {
                let kept = kept.lock().map_err(|_| AuditError::Poisoned)?;
                kept.iter()
                    .filter(|e| e.id > query.after.unwrap_or(0))
                    .filter(|e| query.kind.as_ref().is_none_or(|k| *k == e.kind))
                    .filter(|e| query.namespace.as_ref().is_none_or(|n| *n == e.namespace))
                    .filter(|e| query.since.is_none_or(|since| e.at >= since))
                    .take(limit + 1)
                    .cloned()
                    .collect()
            }
        };
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(AuditPage { events, next })
    }
}

/// The writer thread's work for one event: the JSON line, the kept copy, the count.
fn write(keep: &Keep, counts: &Mutex<BTreeMap<String, u64>>, event: &AuditEvent) {
    let line = match serde_json::to_string(event) {
        Ok(line) => line,
        Err(error) => {
            tracing::error!(%error, "an audit event could not be written");
            return;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!(%error, "an audit event could not be written to stdout");
        }
    }
    let kept = match keep {
        Keep::Sqlite(connection) => connection
            .lock()
            .map_err(|_| AuditError::Poisoned)
            .and_then(|connection| {
                connection
                    .execute(
                        "INSERT INTO audit_events (id, at, kind, namespace, event) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![event.id, event.at.to_rfc3339(), event.kind, event.namespace, line],
                    )
                    .map(drop)
                    .map_err(AuditError::from)
            }),
        Keep::Memory(kept) => kept
            .lock()
            .map(|mut kept| {
                if kept.len() == MEMORY_EVENTS {
                    kept.pop_front();
                }
                kept.push_back(event.clone());
            })
            .map_err(|_| AuditError::Poisoned),
    };
    if let Err(error) = kept {
        tracing::error!(%error, "an audit event could not be kept (it is in the JSON lines)");
    }
    if let Ok(mut counts) = counts.lock() {
        *counts.entry(event.kind.clone()).or_default() += 1;
    }
}

/// A response body that counts the bytes it sends and records `event` (with that count) once it
/// has ended or is dropped.
pub struct Counted {
    inner: Body,
    pending: Option<(Arc<AuditTrail>, AuditEvent)>,
    bytes: u64,
    /// The answer's `Content-Length`, when it has one: hyper stops polling a body once that
    /// many bytes are out, so the body's own end is never seen and this is what says it was
    /// sent whole.
    length: Option<u64>,
}

impl Counted {
    pub fn wrap(
        inner: Body,
        trail: Arc<AuditTrail>,
        event: AuditEvent,
        length: Option<u64>,
    ) -> Body {
        Body::new(Counted {
            inner,
            pending: Some((trail, event)),
            bytes: 0,
            length,
        })
    }

    fn finish(&mut self, complete: bool) {
        if let Some((trail, mut event)) = self.pending.take() {
            event.bytes = self.bytes;
            event.complete = complete;
            trail.record(event);
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.length == Some(this.bytes) {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // An empty body may never be polled; one dropped before its end was cut off.
        let complete =
            http_body::Body::is_end_stream(&self.inner) || self.length == Some(self.bytes);
        self.finish(complete);
    }
}

/// The peer address of a request, when the server recorded it.
pub fn peer(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, namespace: &str) -> AuditEvent {
        AuditEvent {
            id: 0,
            at: Utc::now(),
            kind: kind.into(),
            who: "admin".into(),
            from: "127.0.0.1:1".into(),
            method: "GET".into(),
            path: "/x".into(),
            namespace: namespace.into(),
            name: "cap".into(),
            status: 200,
            bytes: 10,
            complete: true,
        }
    }

    fn wait_for(trail: &AuditTrail, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while trail.counts().values().sum::<u64>() < count as u64 {
            assert!(std::time::Instant::now() < deadline, "events not written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_table_names_packet_access_and_changes_only() {
        let get = Method::GET;
        assert_eq!(
            kind_of(&get, "/api/v1/namespaces/{namespace}/captures/{name}/pcap"),
            Some("capture.download")
        );
        assert_eq!(kind_of(&get, "/share/{token}"), Some("share.use"));
        assert_eq!(
            kind_of(&Method::POST, "/api/v1/namespaces/{namespace}/captures"),
            Some("capture.create")
        );
        assert_eq!(
            kind_of(&get, "/api/v1/namespaces/{namespace}/captures/{name}"),
            None
        );
        assert_eq!(kind_of(&get, "/api/v1/audit"), None);
        assert_eq!(named("/api/v1/namespaces/a/captures/web/pcap"), "web");
        assert_eq!(named("/api/v1/namespaces/a/schedules/nightly"), "nightly");
        assert!(share_caller("secret").starts_with("share:"));
        assert!(!share_caller("secret").contains("secret"));
    }

    #[test]
    fn events_are_kept_paged_and_filtered_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let trail = AuditTrail::in_dir(dir.path()).unwrap();
        for i in 0..5 {
            let namespace = if i % 2 == 0 { "a" } else { "b" };
            trail.record(event("capture.download", namespace));
        }
        trail.record(event("share.use", "a"));
        wait_for(&trail, 6);
        let first = trail
            .list(&AuditQuery {
                limit: 4,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(
            first.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(first.next, Some(4));
        let rest = trail
            .list(&AuditQuery {
                after: first.next,
                limit: 4,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(rest.events.len(), 2);
        assert_eq!(rest.next, None);
        let shares = trail
            .list(&AuditQuery {
                limit: 10,
                kind: Some("share.use".into()),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(shares.events.len(), 1);
        let in_b = trail
            .list(&AuditQuery {
                limit: 10,
                namespace: Some("b".into()),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(in_b.events.len(), 2);
        drop(trail);
        let again = AuditTrail::in_dir(dir.path()).unwrap();
        again.record(event("capture.delete", "a"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let all = again
                .list(&AuditQuery {
                    limit: 100,
                    ..AuditQuery::default()
                })
                .unwrap();
            if all.events.len() == 7 {
                assert_eq!(all.events[6].id, 7, "ids go on after a restart");
                break;
            }
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn memory_keeps_the_last_events() {
        let trail = AuditTrail::in_memory();
        for _ in 0..3 {
            trail.record(event("capture.live", "a"));
        }
        wait_for(&trail, 3);
        let page = trail
            .list(&AuditQuery {
                limit: 2,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.next, Some(2));
        assert_eq!(trail.counts()["capture.live"], 3);
    }
}
