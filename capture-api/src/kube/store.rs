//! The store of Kubernetes mode: PacketCapture and PacketCaptureSchedule objects in the cluster
//! behind the same [`Store`] trait as SQLite, so the routes and the schedule controller work
//! unchanged. Objects travel as `DynamicObject`s: spec and status pass through as the API server
//! holds them. A schedule's captures carry its name as a label (to list them) and an
//! ownerReference to it (so the garbage collector deletes them with it). Statuses are written
//! with server-side apply under `podcap-api`, never `status.targets`. A capture's targets are
//! its nodes' PacketCaptureSlices, mirrored in memory ([`super::slices`]), merged into the
//! record as it is read.
//! Share links are Secrets ([`super::shares`]); API tokens do not exist here (users bring their
//! Kubernetes tokens).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::Client;
use serde_json::{json, Value};

use super::shares::ShareSecrets;
use super::slices::{merged, merged_refs, Slices};
use super::{block_on, chrono_time, is_not_found, store_error, FIELD_MANAGER, SCHEDULE_LABEL};
use crate::store::{
    CaptureRecord, Page, RawCaptureRecord, ScheduleRecord, ShareRecord, Store, StoreError,
    TokenRecord,
};
use capture_spec::crd::{PacketCapture, PacketCaptureSchedule};
use capture_spec::status::first_targets;
use capture_spec::{CaptureStatus, Phase, ScheduleSpec, ScheduleStatus, TargetKey, TargetStatus};

const API_VERSION: &str = "podcap.io/v1alpha1";

pub struct KubeStore {
    client: Client,
    captures: ApiResource,
    schedules: ApiResource,
    pub shares: ShareSecrets,
    /// The agents' PacketCaptureSlices, mirrored (started by capture-api's start-up).
    pub slices: Slices,
    /// uid → (namespace, name) of objects seen, so lookups by uid rarely need a list.
    names: Mutex<HashMap<String, (String, String)>>,
}

/// The status as the API writes it: everything but `targets` (the nodes' slices).
pub fn api_owned_status(status: &Value) -> Value {
    let mut owned = status.clone();
    if let Some(map) = owned.as_object_mut() {
        map.remove("targets");
    }
    owned
}

impl KubeStore {
    pub fn new(client: Client, shares_namespace: &str) -> KubeStore {
        KubeStore {
            shares: ShareSecrets::new(client.clone(), shares_namespace),
            client,
            captures: ApiResource::erase::<PacketCapture>(&()),
            schedules: ApiResource::erase::<PacketCaptureSchedule>(&()),
            slices: Slices::default(),
            names: Mutex::new(HashMap::new()),
        }
    }

    pub fn capture_api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.captures),
            None => Api::all_with(self.client.clone(), &self.captures),
        }
    }

    fn schedule_api(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.schedules),
            None => Api::all_with(self.client.clone(), &self.schedules),
        }
    }

    fn remember(&self, uid: &str, namespace: &str, name: &str) {
        if let Ok(mut names) = self.names.lock() {
            names.insert(uid.to_string(), (namespace.to_string(), name.to_string()));
        }
    }

    fn known(&self, uid: &str) -> Option<(String, String)> {
        self.names.lock().ok()?.get(uid).cloned()
    }

    /// A PacketCapture object as a record, with its nodes' targets from their slices and the
    /// totals over them, or why its spec or status cannot be read.
    pub fn capture_record(&self, object: &DynamicObject) -> Result<CaptureRecord, StoreError> {
        let mut record = self.capture_parts(object)?;
        record.status.targets = merged(&record.status.targets, &self.slices.of(&record.uid));
        record.status.summarize();
        Ok(record)
    }

    /// The object as a record, with only the targets its own status holds.
    fn capture_parts(&self, object: &DynamicObject) -> Result<CaptureRecord, StoreError> {
        let meta = &object.metadata;
        let record = CaptureRecord {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            spec: decode_part(object, "spec", "PacketCapture")?,
            status: decode_part(object, "status", "PacketCapture")?,
            created_at: meta
                .creation_timestamp
                .as_ref()
                .map(chrono_time)
                .unwrap_or_else(Utc::now),
            schedule: meta
                .labels
                .as_ref()
                .and_then(|labels| labels.get(SCHEDULE_LABEL))
                .cloned(),
        };
        self.remember(&record.uid, &record.namespace, &record.name);
        Ok(record)
    }

    /// [`KubeStore::capture_record`] as an answer shows it ([`CaptureStatus::showing`]): the
    /// totals over every target and the first few targets, read from the mirrored slices by
    /// reference, so that only what is shown is copied.
    pub fn capture_view_record(&self, object: &DynamicObject) -> Result<CaptureRecord, StoreError> {
        let mut record = self.capture_parts(object)?;
        let slices = self.slices.of(&record.uid);
        let legacy = std::mem::take(&mut record.status.targets);
        let targets = merged_refs(&legacy, &slices);
        record.status.summarize_over(&targets);
        record.status = record.status.showing(&targets);
        Ok(record)
    }

    fn schedule_record(&self, object: &DynamicObject) -> Result<ScheduleRecord, StoreError> {
        let meta = &object.metadata;
        let record = ScheduleRecord {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            spec: decode_part(object, "spec", "PacketCaptureSchedule")?,
            status: decode_part(object, "status", "PacketCaptureSchedule")?,
            created_at: meta
                .creation_timestamp
                .as_ref()
                .map(chrono_time)
                .unwrap_or_else(Utc::now),
        };
        self.remember(&record.uid, &record.namespace, &record.name);
        Ok(record)
    }

    /// Every capture in `namespace` (all when `None`), optionally with a label selector.
    pub async fn list_captures(
        &self,
        namespace: Option<&str>,
        labels: Option<&str>,
    ) -> Result<Vec<CaptureRecord>, StoreError> {
        self.slices.ready().await?;
        let mut params = ListParams::default();
        if let Some(labels) = labels {
            params = params.labels(labels);
        }
        let list = self
            .capture_api(namespace)
            .list(&params)
            .await
            .map_err(|e| store_error("listing PacketCaptures", e))?;
        let mut records: Vec<CaptureRecord> = list
            .items
            .iter()
            .filter_map(|o| readable(self.capture_record(o)))
            .collect();
        records.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(records)
    }

    /// One page of a namespace's captures as the API server pages them (by name), reading at
    /// most `limit` objects per request and never the whole namespace: each request asks for
    /// as many as the page still lacks, so a phase filter that drops some never overfills it,
    /// and the page ends where a request did, at that request's continue token.
    async fn page_captures(
        &self,
        namespace: &str,
        phase: Option<Phase>,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Page<RawCaptureRecord>, StoreError> {
        self.slices.ready().await?;
        let api = self.capture_api(Some(namespace));
        let mut items = Vec::new();
        let mut next = continue_token.map(str::to_string);
        loop {
            let wanted = u32::try_from(limit - items.len()).unwrap_or(u32::MAX);
            let mut params = ListParams::default().limit(wanted);
            if let Some(token) = &next {
                params = params.continue_token(token);
            }
            let list = match api.list(&params).await {
                Ok(list) => list,
                Err(kube::Error::Api(status))
                    if next.is_some() && matches!(status.code, 400 | 410) =>
                {
                    return Err(StoreError::BadContinue(format!(
                        "the Kubernetes API server refused it ({}): it was not given out by this API, or it is too old (a few minutes); list again from the first page",
                        status.message
                    )));
                }
                Err(error) => return Err(store_error("listing PacketCaptures", error)),
            };
            for object in &list.items {
                // As an answer shows it: a list must not copy every target of a large capture.
                let Some(record) = readable(self.capture_view_record(object)) else {
                    continue;
                };
                if phase.is_some_and(|phase| record.phase() != phase) {
                    continue;
                }
                items.push(RawCaptureRecord {
                    spec: serde_json::to_string(&record.spec)?,
                    status: serde_json::to_string(&record.status)?,
                    created_at: page_time(record.created_at),
                    namespace: record.namespace,
                    name: record.name,
                    uid: record.uid,
                });
            }
            next = list.metadata.continue_.filter(|token| !token.is_empty());
            if items.len() >= limit || next.is_none() {
                return Ok(Page { items, next });
            }
        }
    }

    pub async fn get_capture(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<CaptureRecord>, StoreError> {
        match self.get_capture_object(namespace, name).await? {
            Some(object) => self.capture_record(&object).map(Some),
            None => Ok(None),
        }
    }

    /// The PacketCapture object `namespace/name`, once the slice mirror is ready.
    async fn get_capture_object(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, StoreError> {
        self.slices.ready().await?;
        match self.capture_api(Some(namespace)).get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error("reading a PacketCapture", e)),
        }
    }

    /// The capture of `uid`: one GET when its name is known (every capture this process read
    /// or made, a share link's capture, and every capture with a node's slice), else a list of
    /// every capture in the cluster — left for links made by an older version, which did not
    /// keep their capture's name, to captures that captured nothing.
    pub async fn get_capture_by_uid(&self, uid: &str) -> Result<Option<CaptureRecord>, StoreError> {
        let named = self.known(uid).or_else(|| self.slices.capture_named(uid));
        if let Some((namespace, name)) = named {
            if let Some(record) = self.get_capture(&namespace, &name).await? {
                if record.uid == uid {
                    return Ok(Some(record));
                }
            }
        }
        Ok(self
            .list_captures(None, None)
            .await?
            .into_iter()
            .find(|r| r.uid == uid))
    }

    /// Writes the API's part of a capture's status (phase, times, message, totals).
    pub async fn apply_capture_status(
        &self,
        namespace: &str,
        name: &str,
        status: &CaptureStatus,
    ) -> Result<(), StoreError> {
        let patch = json!({
            "apiVersion": API_VERSION,
            "kind": "PacketCapture",
            "status": api_owned_status(&serde_json::to_value(status.without_targets())?),
        });
        self.capture_api(Some(namespace))
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| store_error("writing a PacketCapture's status", e))?;
        Ok(())
    }

    async fn create_capture(&self, record: &CaptureRecord) -> Result<(), StoreError> {
        let mut metadata = json!({"name": record.name, "namespace": record.namespace});
        if let Some(schedule) = &record.schedule {
            let owner = self
                .schedule_api(Some(&record.namespace))
                .get(schedule)
                .await
                .map_err(|e| store_error("reading the capture's schedule", e))?;
            metadata["labels"] = json!({ SCHEDULE_LABEL: schedule });
            // The garbage collector deletes a schedule's captures with it.
            metadata["ownerReferences"] = json!([{
                "apiVersion": API_VERSION,
                "kind": "PacketCaptureSchedule",
                "name": schedule,
                "uid": owner.metadata.uid.unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }]);
        }
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": API_VERSION,
            "kind": "PacketCapture",
            "metadata": metadata,
            "spec": record.spec,
        }))?;
        create_object(
            self.capture_api(Some(&record.namespace)),
            &object,
            "capture",
            &record.namespace,
            &record.name,
        )
        .await?;
        self.apply_capture_status(&record.namespace, &record.name, &record.status)
            .await
    }

    async fn delete_object(
        &self,
        api: Api<DynamicObject>,
        name: &str,
        what: &str,
    ) -> Result<bool, StoreError> {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(store_error(what, e)),
        }
    }

    pub async fn list_schedules(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        let list = self
            .schedule_api(namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| store_error("listing PacketCaptureSchedules", e))?;
        let mut records: Vec<ScheduleRecord> = list
            .items
            .iter()
            .filter_map(|o| readable(self.schedule_record(o)))
            .collect();
        records.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(records)
    }

    async fn get_schedule(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, StoreError> {
        match self.schedule_api(Some(namespace)).get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error("reading a PacketCaptureSchedule", e)),
        }
    }

    async fn apply_schedule_status(
        &self,
        namespace: &str,
        name: &str,
        status: &ScheduleStatus,
    ) -> Result<(), StoreError> {
        let patch = json!({
            "apiVersion": API_VERSION,
            "kind": "PacketCaptureSchedule",
            "status": status,
        });
        self.schedule_api(Some(namespace))
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| store_error("writing a PacketCaptureSchedule's status", e))?;
        Ok(())
    }

    async fn create_schedule(&self, record: &ScheduleRecord) -> Result<(), StoreError> {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": API_VERSION,
            "kind": "PacketCaptureSchedule",
            "metadata": {"name": record.name, "namespace": record.namespace},
            "spec": record.spec,
        }))?;
        create_object(
            self.schedule_api(Some(&record.namespace)),
            &object,
            "schedule",
            &record.namespace,
            &record.name,
        )
        .await?;
        self.apply_schedule_status(&record.namespace, &record.name, &record.status)
            .await
    }

    /// Replaces the spec (only when it changed, with the object's resourceVersion, so a
    /// concurrent edit is a conflict rather than lost) and applies the status.
    async fn replace_schedule(
        &self,
        uid: &str,
        spec: &ScheduleSpec,
        status: &ScheduleStatus,
    ) -> Result<bool, StoreError> {
        let spec = &serde_json::to_value(spec)?;
        let status = &serde_json::to_value(status)?;
        let location = match self.known(uid) {
            Some(location) => Some(location),
            None => self
                .list_schedules(None)
                .await?
                .into_iter()
                .find(|s| s.uid == uid)
                .map(|s| (s.namespace, s.name)),
        };
        let Some((namespace, name)) = location else {
            return Ok(false);
        };
        let Some(mut current) = self.get_schedule(&namespace, &name).await? else {
            return Ok(false);
        };
        if current.metadata.uid.as_deref() != Some(uid) {
            return Ok(false);
        }
        if current.data.get("spec") != Some(spec) {
            current.data["spec"] = spec.clone();
            self.schedule_api(Some(&namespace))
                .replace(&name, &PostParams::default(), &current)
                .await
                .map_err(|e| store_error(&format!("schedule {namespace}/{name}"), e))?;
        }
        let current_status = current.data.get("status").cloned().unwrap_or(Value::Null);
        if &current_status != status {
            self.apply_schedule_status(&namespace, &name, &serde_json::from_value(status.clone())?)
                .await?;
        }
        Ok(true)
    }

    fn unsupported_tokens() -> StoreError {
        StoreError::Unsupported(
            "Kubernetes mode has no API tokens: sign in with a Kubernetes bearer token (kubectl create token, or your kubeconfig's), and grant rights with RBAC",
        )
    }
}

/// `part` (`spec` or `status`) of an object as the model's type; a missing or null part is an
/// empty object (a new object has no status yet).
fn decode_part<T: serde::de::DeserializeOwned>(
    object: &DynamicObject,
    part: &str,
    kind: &'static str,
) -> Result<T, StoreError> {
    let value = match object.data.get(part) {
        Some(Value::Null) | None => json!({}),
        Some(value) => value.clone(),
    };
    serde_json::from_value(value).map_err(|e| StoreError::Undecodable {
        kind,
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        reason: format!("its {part} does not fit podcap's model: {e}"),
    })
}

/// A record, or `None` with a warning: one object podcap cannot read must not hide the others
/// from a list.
fn readable<T>(record: Result<T, StoreError>) -> Option<T> {
    record
        .map_err(|error| tracing::warn!(%error, "left out of a list"))
        .ok()
}

/// When a capture was created, as the page tokens of `captures_page_raw` compare it.
fn page_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Store for KubeStore {
    fn insert_capture(&self, capture: &CaptureRecord) -> Result<(), StoreError> {
        block_on(self.create_capture(capture))?
    }

    fn capture(&self, namespace: &str, name: &str) -> Result<Option<CaptureRecord>, StoreError> {
        block_on(self.get_capture(namespace, name))?
    }

    fn capture_view(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<CaptureRecord>, StoreError> {
        block_on(self.get_capture_object(namespace, name))??
            .map(|object| self.capture_view_record(&object))
            .transpose()
    }

    fn capture_targets(
        &self,
        namespace: &str,
        name: &str,
        after: Option<&TargetKey>,
        limit: usize,
    ) -> Result<Option<(Vec<TargetStatus>, usize)>, StoreError> {
        let Some(object) = block_on(self.get_capture_object(namespace, name))?? else {
            return Ok(None);
        };
        let record = self.capture_parts(&object)?;
        let slices = self.slices.of(&record.uid);
        let targets = merged_refs(&record.status.targets, &slices);
        Ok(Some(first_targets(&targets, after, limit)))
    }

    fn capture_by_uid(&self, uid: &str) -> Result<Option<CaptureRecord>, StoreError> {
        block_on(self.get_capture_by_uid(uid))?
    }

    fn captures(
        &self,
        namespace: Option<&str>,
        phase: Option<Phase>,
    ) -> Result<Vec<CaptureRecord>, StoreError> {
        let mut records = block_on(self.list_captures(namespace, None))??;
        if let Some(phase) = phase {
            records.retain(|r| r.phase() == phase);
        }
        Ok(records)
    }

    fn captures_page_raw(
        &self,
        namespace: &str,
        phase: Option<Phase>,
        continue_token: Option<&str>,
        limit: usize,
    ) -> Result<Page<RawCaptureRecord>, StoreError> {
        block_on(self.page_captures(namespace, phase, continue_token, limit))?
    }

    fn update_capture_status(&self, uid: &str, status: &CaptureStatus) -> Result<bool, StoreError> {
        let Some(record) = self.capture_by_uid(uid)? else {
            return Ok(false);
        };
        block_on(self.apply_capture_status(&record.namespace, &record.name, status))??;
        Ok(true)
    }

    fn delete_capture(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        block_on(self.delete_object(
            self.capture_api(Some(namespace)),
            name,
            "deleting a PacketCapture",
        ))?
    }

    fn captures_of_schedule(
        &self,
        namespace: &str,
        schedule: &str,
    ) -> Result<Vec<CaptureRecord>, StoreError> {
        let selector = format!("{SCHEDULE_LABEL}={schedule}");
        block_on(self.list_captures(Some(namespace), Some(&selector)))?
    }

    fn insert_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        block_on(self.create_schedule(schedule))?
    }

    fn schedule(&self, namespace: &str, name: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let object = block_on(self.get_schedule(namespace, name))??;
        object.map(|o| self.schedule_record(&o)).transpose()
    }

    fn schedules(&self, namespace: Option<&str>) -> Result<Vec<ScheduleRecord>, StoreError> {
        block_on(self.list_schedules(namespace))?
    }

    fn update_schedule(
        &self,
        uid: &str,
        spec: &ScheduleSpec,
        status: &ScheduleStatus,
    ) -> Result<bool, StoreError> {
        block_on(self.replace_schedule(uid, spec, status))?
    }

    fn delete_schedule(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        // Background propagation: the garbage collector then deletes the schedule's captures
        // (their ownerReferences), and the agents' finalizers remove their files.
        block_on(self.delete_object(
            self.schedule_api(Some(namespace)),
            name,
            "deleting a PacketCaptureSchedule",
        ))?
    }

    fn insert_share(&self, share: &ShareRecord) -> Result<(), StoreError> {
        let capture = self.capture_by_uid(&share.capture_uid)?.ok_or_else(|| {
            StoreError::Unavailable("the capture was deleted while sharing it".into())
        })?;
        block_on(self.shares.insert(share, &capture.namespace, &capture.name))?
    }

    fn share_by_hash(&self, token_hash: &str) -> Result<Option<ShareRecord>, StoreError> {
        let found = block_on(self.shares.by_hash(token_hash))??;
        Ok(found.map(|(share, capture)| {
            // The capture is read by uid next: with its name known, that is one GET, not a
            // list of every capture in the cluster (the cache is empty after a restart).
            if let Some((namespace, name)) = capture {
                self.remember(&share.capture_uid, &namespace, &name);
            }
            share
        }))
    }

    fn shares_of(&self, capture_uid: &str) -> Result<Vec<ShareRecord>, StoreError> {
        block_on(self.shares.of_capture(capture_uid))?
    }

    fn revoke_share(
        &self,
        capture_uid: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        block_on(self.shares.revoke(capture_uid, id, at))?
    }

    fn count_share_download(&self, id: &str) -> Result<(), StoreError> {
        block_on(self.shares.count_download(id))?
    }

    fn share_downloads_total(&self) -> Result<u64, StoreError> {
        block_on(self.shares.downloads_total())?
    }

    fn insert_token(&self, _token: &TokenRecord) -> Result<(), StoreError> {
        Err(KubeStore::unsupported_tokens())
    }

    fn token_by_hash(&self, _token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(None)
    }

    /// Kubernetes mode has no tokens of its own; this answers 0 once the API server answers,
    /// which is what the readiness probe asks.
    fn token_count(&self) -> Result<u64, StoreError> {
        block_on(async {
            self.capture_api(None)
                .list(&ListParams::default().limit(1))
                .await
                .map_err(|e| store_error("listing PacketCaptures", e))
        })??;
        Ok(0)
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let mut names: BTreeSet<String> = self
            .captures(None, None)?
            .into_iter()
            .map(|c| c.namespace)
            .collect();
        names.extend(self.schedules(None)?.into_iter().map(|s| s.namespace));
        Ok(names.into_iter().collect())
    }
}

/// Creates `object`; a name already taken is [`StoreError::AlreadyExists`] of `kind`.
async fn create_object(
    api: Api<DynamicObject>,
    object: &DynamicObject,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<(), StoreError> {
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            Err(StoreError::AlreadyExists {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        Err(e) => Err(store_error(&format!("creating a {kind}"), e)),
    }
}
