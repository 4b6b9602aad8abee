//! The capture runner of standalone mode: the in-process agent. Every second it reconciles the
//! store with reality — a capture whose window has opened gets a target (an engine thread) on
//! every matching pod, including pods that appear later; a pod that vanishes ends its target;
//! when the window closes every target is drained and the capture is Completed. What becomes of
//! each target is the rule the node agent shares ([`capture_agent::reconcile`]); the runner adds
//! the pods of this machine ([`machine`]), the capture's phase, and the store. Statuses are
//! written back to the store each pass, so a restarted API finds every capture where it was.
//!
//! After a restart (or a SIGKILL) a capture still inside its window resumes in a new file
//! segment, and its status message says when and that packets before it may be missing.

mod machine;
mod storage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture_agent::hub::Hub;
use capture_agent::reconcile::{CaptureRun, Ended, RingOpener, WindowState};
use capture_agent::tap::TapChunk;
use capture_agent::EndReason;
use capture_spec::{CaptureStatus, Phase, TargetState};
use chrono::{DateTime, Utc};

use crate::pods;
use crate::store::{CaptureRecord, Store, StoreError};
use machine::MachinePods;
pub use storage::StorageLimits;
use storage::StoreReserve;

/// How often the runner reconciles.
const PASS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Runner {
    store: Arc<dyn Store>,
    data_dir: PathBuf,
    storage: StorageLimits,
    /// Why the data directory takes no more packets, as of the last pass.
    storage_full: Mutex<Option<String>>,
    /// Space kept aside so the store can record that captures ended on a full disk.
    reserve: StoreReserve,
    last_retention: Mutex<Option<DateTime<Utc>>>,
    node: String,
    runs: Mutex<HashMap<String, CaptureRun>>,
    /// Starts targets on the process's one engine thread.
    opener: RingOpener,
}

impl Runner {
    pub fn new(
        store: Arc<dyn Store>,
        data_dir: PathBuf,
        storage: StorageLimits,
        hub: Hub,
    ) -> Arc<Runner> {
        let reserve = StoreReserve::new(&data_dir);
        reserve.ensure();
        Arc::new(Runner {
            store,
            data_dir,
            storage,
            storage_full: Mutex::new(None),
            reserve,
            last_retention: Mutex::new(None),
            node: pods::node_name(),
            runs: Mutex::new(HashMap::new()),
            opener: RingOpener::new(Arc::new(hub)),
        })
    }

    /// Why new captures cannot start now (quota reached, disk nearly full), if that is so.
    /// The last pass's verdict, looked at again when it says full: space freed since (a
    /// capture deleted) counts at once.
    pub fn storage_full(&self) -> Option<String> {
        self.storage_full
            .lock()
            .ok()
            .and_then(|full| full.clone())?;
        self.check_storage()
    }

    /// Looks at the storage limits now and remembers the verdict for [`Runner::storage_full`].
    fn check_storage(&self) -> Option<String> {
        let full = self
            .storage
            .exceeded(&self.data_dir.join("captures"), &self.data_dir);
        if let Ok(mut slot) = self.storage_full.lock() {
            slot.clone_from(&full);
        }
        full
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where a capture's files live: addressed by its uid, never by a name a user chose.
    pub fn capture_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("captures").join(uid)
    }

    /// Reconciles forever, one pass per second, on a blocking thread (engines and the store are
    /// synchronous).
    pub async fn run_forever(self: Arc<Self>) {
        loop {
            let runner = self.clone();
            match tokio::task::spawn_blocking(move || runner.pass()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "capture runner pass failed"),
                // The runtime is shutting down: not a failure.
                Err(error) if error.is_cancelled() => return,
                Err(error) => tracing::error!(%error, "capture runner pass panicked"),
            }
            tokio::time::sleep(PASS_INTERVAL).await;
        }
    }

    /// One reconciliation pass over every capture that is not finished.
    pub fn pass(&self) -> Result<(), RunnerError> {
        let found = pods::locate_all()
            .inspect_err(|error| {
                tracing::warn!(%error, "pod discovery failed; keeping running targets");
            })
            .ok();
        let pods = MachinePods::new(&self.node, found);
        let now = Utc::now();
        let full = self.check_storage();
        if full.is_some() {
            self.reserve.release();
        } else {
            self.reserve.ensure();
        }
        // Only unfinished captures need a look every second.
        let mut active = self.store.captures(None, Some(Phase::Scheduled))?;
        active.extend(self.store.captures(None, Some(Phase::Capturing))?);
        for record in active {
            let result = match (record.phase(), &full) {
                (Phase::Capturing, Some(reason)) => self
                    .finish(&record.uid, Phase::Stopped, Some(reason.clone()))
                    .map(drop),
                _ => self.reconcile(&record, &pods, now),
            };
            if let Err(error) = result {
                tracing::error!(namespace = %record.namespace, name = %record.name, %error, "reconciling capture");
            }
        }
        if self.retention_due(now) {
            for record in self.store.captures(None, None)? {
                if record.phase().is_finished() {
                    if let Err(error) = self.expire_files(&record, now) {
                        tracing::error!(namespace = %record.namespace, name = %record.name, %error, "expiring files");
                    }
                }
            }
        }
        Ok(())
    }

    /// Retention is looked at every 30 s (or every retention period, if shorter): files may
    /// outlive it by that much, and the pass stays cheap with many finished captures.
    fn retention_due(&self, now: DateTime<Utc>) -> bool {
        let every = chrono::Duration::from_std(self.storage.retention.min(Duration::from_secs(30)))
            .unwrap_or(chrono::Duration::MAX);
        let Ok(mut last) = self.last_retention.lock() else {
            return false;
        };
        if last.is_some_and(|at| now - at < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Deletes a finished capture's files once its retention has passed; its status says so.
    fn expire_files(&self, record: &CaptureRecord, now: DateTime<Utc>) -> Result<(), RunnerError> {
        let mut status = record.status.clone();
        let retention =
            chrono::Duration::from_std(self.storage.retention).unwrap_or(chrono::Duration::MAX);
        let expired = status
            .finished_at
            .is_some_and(|finished| now - finished >= retention);
        if !expired || status.targets.iter().all(|t| t.files.is_empty()) {
            return Ok(());
        }
        let directory = self.capture_dir(&record.uid);
        if let Err(error) = std::fs::remove_dir_all(&directory) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %directory.display(), %error, "deleting expired capture files");
                return Ok(());
            }
        }
        for target in &mut status.targets {
            target.files.clear();
        }
        status.message = Some(format!(
            "files deleted at {} after the retention of {}",
            now.to_rfc3339(),
            humantime::format_duration(self.storage.retention)
        ));
        self.save(record, &status)
    }

    fn reconcile(
        &self,
        listed: &CaptureRecord,
        pods: &MachinePods,
        now: DateTime<Utc>,
    ) -> Result<(), RunnerError> {
        // Not due yet: nothing to do, and no need to lock or read again.
        if listed.phase() == Phase::Scheduled && stored_window(listed).is_ahead(now) {
            return Ok(());
        }
        // The record is read again under the lock: a stop or delete that happened since the
        // pass listed it must win, or a stopped capture would be restarted from a stale copy.
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(record) = self.store.capture_by_uid(&listed.uid)? else {
            return Ok(());
        };
        if record.phase().is_finished() {
            return Ok(());
        }
        let record = &record;
        let spec = &record.spec;
        let mut status = record.status.clone();
        let stored = stored_window(record);
        if stored.is_ahead(now) {
            return Ok(());
        }
        if !runs.contains_key(&record.uid) && status.phase == Phase::Capturing {
            status.message = Some(format!(
                "resumed at {} after the API restarted: packets between its last status update and then were not captured",
                now.to_rfc3339()
            ));
        }
        let run = runs
            .entry(record.uid.clone())
            .or_insert_with(|| self.resume(record));
        let ended = run.reconcile(WindowState::of(&stored, now), pods, &self.opener, now);
        run.report_into(&mut status.targets);
        match ended {
            Some(ended) => {
                status.phase = Phase::Completed;
                status.finished_at = Some(now);
                match ended {
                    Ended::Limit(EndReason::PacketLimit) => {
                        status.message = Some(format!(
                            "maxPackets ({}) reached",
                            spec.max_packets.unwrap_or_default()
                        ));
                    }
                    Ended::Limit(_) => {
                        status.message = Some(format!(
                            "maxBytes ({}) reached",
                            spec.max_bytes.unwrap_or_default()
                        ));
                    }
                    Ended::Window => {}
                }
                runs.remove(&record.uid);
            }
            None => {
                status.phase = Phase::Capturing;
                status.started_at.get_or_insert(now);
            }
        }
        self.save(record, &status)
    }

    /// The run of `record` on this machine, carrying on from its stored status.
    fn resume(&self, record: &CaptureRecord) -> CaptureRun {
        CaptureRun::resume(
            &record.namespace,
            &record.name,
            &record.spec,
            &self.node,
            self.capture_dir(&record.uid),
            &record.status.targets,
        )
    }

    /// Stops a capture now: drains every target and records the final status with `phase`.
    /// Returns the final status, or None if the capture is gone.
    pub fn stop(&self, uid: &str, phase: Phase) -> Result<Option<CaptureStatus>, RunnerError> {
        self.finish(uid, phase, None)
    }

    /// Stops a capture now with `phase`, and `message` in its status if given.
    fn finish(
        &self,
        uid: &str,
        phase: Phase,
        message: Option<String>,
    ) -> Result<Option<CaptureStatus>, RunnerError> {
        // Lock first, then read: a reconcile pass cannot interleave and save an older status.
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(record) = self.store.capture_by_uid(uid)? else {
            return Ok(None);
        };
        let mut status = record.status.clone();
        let mut run = runs.remove(uid);
        if run.is_none() && !status.phase.is_finished() {
            // Not started here yet, or not since a restart: entries of an earlier run that are
            // still waiting or capturing end with the capture too.
            run = Some(self.resume(&record));
        }
        if let Some(mut run) = run {
            run.end(TargetState::Stopped);
            run.report_into(&mut status.targets);
        }
        if !status.phase.is_finished() {
            status.phase = phase;
            status.finished_at = Some(Utc::now());
            if message.is_some() {
                status.message = message;
            }
        }
        self.save(&record, &status)?;
        Ok(Some(status))
    }

    /// Subscribes `sender` to every target of a running capture, each tagged with its index in
    /// the returned list of (interface, description). None when the capture is not running here.
    pub fn subscribe(
        &self,
        uid: &str,
        sender: &SyncSender<TapChunk>,
    ) -> Option<Vec<(String, String)>> {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let run = runs.get(uid)?;
        Some(
            run.subscribe(sender)
                .into_iter()
                .map(|interface| (interface.name, interface.description))
                .collect(),
        )
    }

    /// Live chunks sent and skipped (slow watchers) over every running target, for metrics.
    pub fn live_chunk_counts(&self) -> (u64, u64) {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        runs.values()
            .map(CaptureRun::live_chunk_counts)
            .fold((0, 0), |(sent, skipped), (s, k)| (sent + s, skipped + k))
    }

    /// Writes a capture's status; on a full disk, gives up the store's reserve and tries again.
    fn save(&self, record: &CaptureRecord, status: &CaptureStatus) -> Result<(), RunnerError> {
        match self.store.update_capture_status(&record.uid, status) {
            Err(error) if is_disk_full(&error) && self.reserve.release() => {
                self.store.update_capture_status(&record.uid, status)?;
            }
            other => {
                other?;
            }
        }
        Ok(())
    }
}

/// Whether the store failed because its disk is full.
fn is_disk_full(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Database(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::DiskFull
    )
}

/// The window of a capture by the rule the whole product shares. A standalone capture stores the
/// start and end resolved (and checked against the maximum) when it was created, so the runner
/// needs no maximum of its own to read them.
fn stored_window(record: &CaptureRecord) -> capture_spec::CaptureWindow {
    capture_spec::CaptureWindow::of(&record.spec, record.created_at, Duration::MAX)
}
