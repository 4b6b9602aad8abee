//! The SQLite store of standalone mode: one file in the data directory, WAL journal so a killed
//! process loses no committed row, migrations embedded from `migrations/` and applied in order
//! at open (the schema version is SQLite's `user_version`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use capture_spec::{CaptureStatus, Phase, ScheduleSpec, ScheduleStatus};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    CaptureRecord, Page, RawCaptureRecord, ScheduleRecord, ShareRecord, Store, StoreError,
    TokenRecord,
};

/// Every migration, in order; the index + 1 is the schema version it brings.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_capture_pages.sql"),
];

pub struct SqliteStore {
    /// The one connection that writes (SQLite has a single writer anyway).
    connection: Mutex<Connection>,
    /// Read-only connections: in WAL mode readers never wait for the writer or each other, so
    /// requests and the runner's pass do not queue behind one lock.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Read connections kept open.
const READERS: usize = 4;

fn tune(connection: &Connection) -> Result<(), StoreError> {
    // WAL with synchronous=NORMAL keeps every commit across a killed process; only a power
    // loss can roll back the last transactions.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        tune(&connection)?;
        migrate(&mut connection)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path)?;
                tune(&reader)?;
                reader.pragma_update(None, "query_only", "ON")?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// A read connection: a free one if there is one, else the next in turn.
    fn read(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        if let Some(free) = self
            .readers
            .iter()
            .find_map(|reader| reader.try_lock().ok())
        {
            return Ok(free);
        }
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[index].lock().map_err(|_| StoreError::Poisoned)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.connection.lock().map_err(|_| StoreError::Poisoned)
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let version: usize = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", index + 1)?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "store schema migrated");
    }
    Ok(())
}

fn time(text: String) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

/// A stored JSON column as the model's type; a row that does not decode is reported as
/// corrupt, naming the column, rather than passed on half-read.
fn decode<T: serde::de::DeserializeOwned>(column: usize, text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_string(value)?)
}

// created_at is stored with Utc::to_rfc3339, which is fixed-offset and orders as text.
const CAPTURE_COLUMNS: &str = "namespace, name, uid, spec, status, phase, created_at, schedule";

fn capture_row(row: &Row<'_>) -> rusqlite::Result<CaptureRecord> {
    Ok(CaptureRecord {
        namespace: row.get(0)?,
        name: row.get(1)?,
        uid: row.get(2)?,
        spec: decode(3, row.get(3)?)?,
        status: decode(4, row.get(4)?)?,
        // Column 5 (phase) is the status's own, copied for filtering.
        created_at: time(row.get(6)?)?,
        schedule: row.get(7)?,
    })
}

const SCHEDULE_COLUMNS: &str = "namespace, name, uid, spec, status, created_at";

fn schedule_row(row: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        namespace: row.get(0)?,
        name: row.get(1)?,
        uid: row.get(2)?,
        spec: decode(3, row.get(3)?)?,
        status: decode(4, row.get(4)?)?,
        created_at: time(row.get(5)?)?,
    })
}

const SHARE_COLUMNS: &str =
    "id, token_hash, capture_uid, created_at, expires_at, revoked_at, downloads";

fn share_row(row: &Row<'_>) -> rusqlite::Result<ShareRecord> {
    let revoked: Option<String> = row.get(5)?;
    Ok(ShareRecord {
        id: row.get(0)?,
        token_hash: row.get(1)?,
        capture_uid: row.get(2)?,
        created_at: time(row.get(3)?)?,
        expires_at: time(row.get(4)?)?,
        revoked_at: revoked.map(time).transpose()?,
        downloads: row.get(6)?,
    })
}

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let namespaces: Option<String> = row.get(3)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        token_hash: row.get(1)?,
        role: row.get(2)?,
        namespaces: namespaces.map(|list| list.split(',').map(str::to_string).collect()),
        description: row.get(4)?,
        created_at: time(row.get(5)?)?,
    })
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// The continue token after `record`: where it sorts (creation time, name), hex-encoded.
fn page_token(record: &RawCaptureRecord) -> String {
    hex::encode(format!("{}\n{}", record.created_at, record.name))
}

/// The (creation time, name) a [`page_token`] holds.
fn parse_page_token(token: &str) -> Result<(String, String), StoreError> {
    let bad = || {
        StoreError::BadContinue(
            "not a token this API gave out: pass metadata.continue of the previous page unchanged"
                .into(),
        )
    };
    let text = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let (time, name) = text.split_once('\n').ok_or_else(bad)?;
    Ok((time.to_string(), name.to_string()))
}

impl Store for SqliteStore {
    fn insert_capture(&self, capture: &CaptureRecord) -> Result<(), StoreError> {
        let result = self.lock()?.execute(
            &format!(
                "INSERT INTO captures ({CAPTURE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                capture.namespace,
                capture.name,
                capture.uid,
                encode(&capture.spec)?,
                encode(&capture.status)?,
                capture.phase().as_str(),
                capture.created_at.to_rfc3339(),
                capture.schedule,
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                kind: "capture",
                namespace: capture.namespace.clone(),
                name: capture.name.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn capture(&self, namespace: &str, name: &str) -> Result<Option<CaptureRecord>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                &format!(
                    "SELECT {CAPTURE_COLUMNS} FROM captures WHERE namespace = ?1 AND name = ?2"
                ),
                params![namespace, name],
                capture_row,
            )
            .optional()?)
    }

    fn capture_by_uid(&self, uid: &str) -> Result<Option<CaptureRecord>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                &format!("SELECT {CAPTURE_COLUMNS} FROM captures WHERE uid = ?1"),
                params![uid],
                capture_row,
            )
            .optional()?)
    }

    fn captures(
        &self,
        namespace: Option<&str>,
        phase: Option<Phase>,
    ) -> Result<Vec<CaptureRecord>, StoreError> {
        let phase = phase.map(Phase::as_str);
        let connection = self.read()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM captures \
             WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR phase = ?2) \
             ORDER BY created_at, namespace, name"
        ))?;
        let rows = statement.query_map(params![namespace, phase], capture_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn captures_page_raw(
        &self,
        namespace: &str,
        phase: Option<Phase>,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Page<RawCaptureRecord>, StoreError> {
        let after = continue_token.map(parse_page_token).transpose()?;
        let phase = phase.map(Phase::as_str);
        let connection = self.read()?;
        let mut statement = connection.prepare_cached(
            "SELECT namespace, name, uid, spec, status, created_at FROM captures \
             WHERE namespace = ?1 AND (?2 IS NULL OR phase = ?2) \
             AND (?3 IS NULL OR (created_at, name) > (?3, ?4)) \
             ORDER BY created_at, name LIMIT ?5",
        )?;
        let (after_time, after_name) = after.unzip();
        // One more than asked, to know whether another page follows.
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = statement.query_map(
            params![namespace, phase, after_time, after_name, fetch],
            |row| {
                Ok(RawCaptureRecord {
                    namespace: row.get(0)?,
                    name: row.get(1)?,
                    uid: row.get(2)?,
                    spec: row.get(3)?,
                    status: row.get(4)?,
                    created_at: row.get(5)?,
                })
            },
        )?;
        let mut items = rows.collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next = match (more, items.last()) {
            (true, Some(last)) => Some(page_token(last)),
            _ => None,
        };
        Ok(Page { items, next })
    }

    fn update_capture_status(&self, uid: &str, status: &CaptureStatus) -> Result<bool, StoreError> {
        let changed = self.lock()?.execute(
            "UPDATE captures SET status = ?2, phase = ?3 WHERE uid = ?1",
            params![uid, encode(status)?, status.phase.as_str()],
        )?;
        Ok(changed > 0)
    }

    fn delete_capture(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let mut connection = self.lock()?;
        // A deleted capture's share links must die with it.
        let transaction = connection.transaction()?;
        transaction.execute(
            "DELETE FROM shares WHERE capture_uid IN (SELECT uid FROM captures WHERE namespace = ?1 AND name = ?2)",
            params![namespace, name],
        )?;
        let deleted = transaction.execute(
            "DELETE FROM captures WHERE namespace = ?1 AND name = ?2",
            params![namespace, name],
        )?;
        transaction.commit()?;
        Ok(deleted > 0)
    }

    fn captures_of_schedule(
        &self,
        namespace: &str,
        schedule: &str,
    ) -> Result<Vec<CaptureRecord>, StoreError> {
        let connection = self.read()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {CAPTURE_COLUMNS} FROM captures WHERE namespace = ?1 AND schedule = ?2 ORDER BY created_at, name"
        ))?;
        let rows = statement.query_map(params![namespace, schedule], capture_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn insert_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        let result = self.lock()?.execute(
            &format!("INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            params![
                schedule.namespace,
                schedule.name,
                schedule.uid,
                encode(&schedule.spec)?,
                encode(&schedule.status)?,
                schedule.created_at.to_rfc3339(),
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                kind: "schedule",
                namespace: schedule.namespace.clone(),
                name: schedule.name.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn schedule(&self, namespace: &str, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                &format!(
                    "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE namespace = ?1 AND name = ?2"
                ),
                params![namespace, name],
                schedule_row,
            )
            .optional()?)
    }

    fn schedules(&self, namespace: Option<&str>) -> Result<Vec<ScheduleRecord>, StoreError> {
        let connection = self.read()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE (?1 IS NULL OR namespace = ?1) ORDER BY created_at, name"
        ))?;
        let rows = statement.query_map(params![namespace], schedule_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn update_schedule(
        &self,
        uid: &str,
        spec: &ScheduleSpec,
        status: &ScheduleStatus,
    ) -> Result<bool, StoreError> {
        let changed = self.lock()?.execute(
            "UPDATE schedules SET spec = ?2, status = ?3 WHERE uid = ?1",
            params![uid, encode(spec)?, encode(status)?],
        )?;
        Ok(changed > 0)
    }

    fn delete_schedule(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self.lock()?.execute(
            "DELETE FROM schedules WHERE namespace = ?1 AND name = ?2",
            params![namespace, name],
        )?;
        Ok(deleted > 0)
    }

    fn insert_share(&self, share: &ShareRecord) -> Result<(), StoreError> {
        self.lock()?.execute(
            &format!("INSERT INTO shares ({SHARE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                share.id,
                share.token_hash,
                share.capture_uid,
                share.created_at.to_rfc3339(),
                share.expires_at.to_rfc3339(),
                share.revoked_at.map(|t| t.to_rfc3339()),
                share.downloads,
            ],
        )?;
        Ok(())
    }

    fn share_by_hash(&self, token_hash: &str) -> Result<Option<ShareRecord>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                &format!("SELECT {SHARE_COLUMNS} FROM shares WHERE token_hash = ?1"),
                params![token_hash],
                share_row,
            )
            .optional()?)
    }

    fn shares_of(&self, capture_uid: &str) -> Result<Vec<ShareRecord>, StoreError> {
        let connection = self.read()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {SHARE_COLUMNS} FROM shares WHERE capture_uid = ?1 ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map(params![capture_uid], share_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn revoke_share(
        &self,
        capture_uid: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let changed = self.lock()?.execute(
            "UPDATE shares SET revoked_at = COALESCE(revoked_at, ?3) WHERE capture_uid = ?1 AND id = ?2",
            params![capture_uid, id, at.to_rfc3339()],
        )?;
        Ok(changed > 0)
    }

    fn count_share_download(&self, id: &str) -> Result<(), StoreError> {
        self.lock()?.execute(
            "UPDATE shares SET downloads = downloads + 1 WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    fn share_downloads_total(&self) -> Result<u64, StoreError> {
        Ok(self.read()?.query_row(
            "SELECT COALESCE(SUM(downloads), 0) FROM shares",
            [],
            |row| row.get(0),
        )?)
    }

    fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.lock()?.execute(
            "INSERT INTO tokens (id, token_hash, role, namespaces, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                token.id,
                token.token_hash,
                token.role,
                token.namespaces.as_ref().map(|list| list.join(",")),
                token.description,
                token.created_at.to_rfc3339(),
            ],
        )?;
        Ok(())
    }

    fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .read()?
            .query_row(
                "SELECT id, token_hash, role, namespaces, description, created_at FROM tokens WHERE token_hash = ?1",
                params![token_hash],
                token_row,
            )
            .optional()?)
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let connection = self.read()?;
        let mut statement = connection.prepare_cached(
            "SELECT namespace FROM captures UNION SELECT namespace FROM schedules ORDER BY 1",
        )?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .read()?
            .query_row("SELECT COUNT(*) FROM tokens", [], |row| row.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(namespace: &str, name: &str, uid: &str, phase: Phase) -> CaptureRecord {
        CaptureRecord {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            spec: serde_json::from_str(r#"{"duration": "10s"}"#).unwrap(),
            status: CaptureStatus {
                phase,
                ..CaptureStatus::default()
            },
            created_at: Utc::now(),
            schedule: None,
        }
    }

    #[test]
    fn captures_survive_reopening_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("podcap.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .insert_capture(&record("shop", "a", "u1", Phase::Capturing))
                .unwrap();
            store
                .insert_capture(&record("shop", "b", "u2", Phase::Completed))
                .unwrap();
            let duplicate = store
                .insert_capture(&record("shop", "a", "u3", Phase::Scheduled))
                .unwrap_err();
            assert!(
                duplicate
                    .to_string()
                    .contains("capture shop/a already exists"),
                "{duplicate}"
            );
            let stopped = CaptureStatus {
                phase: Phase::Stopped,
                ..CaptureStatus::default()
            };
            assert!(store.update_capture_status("u1", &stopped).unwrap());
        }
        let store = SqliteStore::open(&path).unwrap();
        let all = store.captures(Some("shop"), None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            store.captures(None, Some(Phase::Stopped)).unwrap()[0].name,
            "a"
        );
        assert_eq!(
            store.capture_by_uid("u2").unwrap().unwrap().phase(),
            Phase::Completed
        );
        assert!(store.delete_capture("shop", "b").unwrap());
        assert!(store.capture("shop", "b").unwrap().is_none());
    }

    #[test]
    fn shares_revoke_once_and_die_with_their_capture() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("podcap.db")).unwrap();
        store
            .insert_capture(&record("shop", "a", "u1", Phase::Completed))
            .unwrap();
        let share = ShareRecord {
            id: "s1".into(),
            token_hash: "h1".into(),
            capture_uid: "u1".into(),
            created_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            revoked_at: None,
            downloads: 0,
        };
        store.insert_share(&share).unwrap();
        store.count_share_download("s1").unwrap();
        let first = Utc::now();
        assert!(store.revoke_share("u1", "s1", first).unwrap());
        assert!(store
            .revoke_share("u1", "s1", first + chrono::Duration::seconds(5))
            .unwrap());
        let stored = store.share_by_hash("h1").unwrap().unwrap();
        assert_eq!(stored.downloads, 1);
        assert_eq!(
            stored.revoked_at.map(|t| t.timestamp()),
            Some(first.timestamp()),
            "the first revocation time stays"
        );
        assert!(
            !store.revoke_share("other", "s1", first).unwrap(),
            "a share is revoked through its own capture only"
        );
        assert!(store.delete_capture("shop", "a").unwrap());
        assert!(store.share_by_hash("h1").unwrap().is_none());
    }

    #[test]
    fn tokens_are_found_by_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("podcap.db")).unwrap();
        assert_eq!(store.token_count().unwrap(), 0);
        let token = TokenRecord {
            id: "t1".into(),
            token_hash: "abc".into(),
            role: "viewer".into(),
            namespaces: Some(vec!["shop".into(), "web".into()]),
            description: "test".into(),
            created_at: Utc::now(),
        };
        store.insert_token(&token).unwrap();
        assert_eq!(
            store.token_by_hash("abc").unwrap().unwrap().namespaces,
            token.namespaces
        );
        assert!(store.token_by_hash("nope").unwrap().is_none());
    }
}
