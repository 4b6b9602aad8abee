//! Share links in Kubernetes mode: one Secret per link in the API's own namespace
//! (`--shares-namespace`, `podcap-system` by default), named after the SHA-256 of the link's
//! token (`share-<hash>`, so a download finds its link with one GET) and labelled
//! `podcap.io/share` with the link's id and its capture's uid. The Secret holds the link's
//! record — the capture's namespace, name and uid, creation and expiry times, when it was
//! revoked and how often it was downloaded — and never the token itself. Secrets, because only
//! the API may read them (its Role in `podcap-system`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;

use super::{is_not_found, store_error};
use crate::store::{ShareRecord, StoreError};

/// Every share Secret carries this label (value `true`).
pub const SHARE_LABEL: &str = "podcap.io/share";
const SHARE_ID_LABEL: &str = "podcap.io/share-id";
const CAPTURE_UID_LABEL: &str = "podcap.io/capture-uid";
/// Attempts at a counter update that keeps meeting concurrent updates.
const CONFLICT_RETRIES: usize = 5;
/// A share link is pruned with its capture only once it is this old (see [`ShareSecrets::prune`]).
const PRUNE_MIN_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub struct ShareSecrets {
    api: Api<Secret>,
}

fn secret_name(token_hash: &str) -> String {
    format!("share-{token_hash}")
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|s| !s.is_empty())
}

fn time(secret: &Secret, key: &str) -> Option<DateTime<Utc>> {
    text(secret, key)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn record_of(secret: &Secret) -> Option<ShareRecord> {
    Some(ShareRecord {
        id: text(secret, "id")?,
        token_hash: text(secret, "tokenHash")?,
        capture_uid: text(secret, "captureUid")?,
        created_at: time(secret, "createdAt")?,
        expires_at: time(secret, "expiresAt")?,
        revoked_at: time(secret, "revokedAt"),
        downloads: text(secret, "downloads")
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
    })
}

fn set(secret: &mut Secret, key: &str, value: String) {
    secret
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), ByteString(value.into_bytes()));
}

impl ShareSecrets {
    pub fn new(client: Client, namespace: &str) -> ShareSecrets {
        ShareSecrets {
            api: Api::namespaced(client, namespace),
        }
    }

    pub async fn insert(
        &self,
        share: &ShareRecord,
        capture_namespace: &str,
        capture_name: &str,
    ) -> Result<(), StoreError> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {
                "name": secret_name(&share.token_hash),
                "labels": {
                    SHARE_LABEL: "true",
                    SHARE_ID_LABEL: share.id,
                    CAPTURE_UID_LABEL: share.capture_uid,
                    "app.kubernetes.io/part-of": "podcap",
                },
                "annotations": {"podcap.io/capture": format!("{capture_namespace}/{capture_name}")},
            },
            "type": "Opaque",
        }))?;
        let mut secret = secret;
        set(&mut secret, "id", share.id.clone());
        set(&mut secret, "tokenHash", share.token_hash.clone());
        set(&mut secret, "captureUid", share.capture_uid.clone());
        set(
            &mut secret,
            "captureNamespace",
            capture_namespace.to_string(),
        );
        set(&mut secret, "captureName", capture_name.to_string());
        set(&mut secret, "createdAt", share.created_at.to_rfc3339());
        set(&mut secret, "expiresAt", share.expires_at.to_rfc3339());
        set(&mut secret, "downloads", share.downloads.to_string());
        self.api
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|e| store_error("storing a share link", e))?;
        Ok(())
    }

    /// The share link of `token_hash`, and the (namespace, name) of its capture when the
    /// Secret says (links made before that was kept do not).
    pub async fn by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(ShareRecord, Option<(String, String)>)>, StoreError> {
        // Only a hash that looks like one becomes a name: a path segment is not an object name.
        if token_hash.len() != 64 || !token_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self.api.get(&secret_name(token_hash)).await {
            Ok(secret) => Ok(record_of(&secret).map(|record| {
                let capture = text(&secret, "captureNamespace").zip(text(&secret, "captureName"));
                (record, capture)
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(store_error("reading a share link", e)),
        }
    }

    async fn list(&self, selector: &str) -> Result<Vec<Secret>, StoreError> {
        Ok(self
            .api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| store_error("listing share links", e))?
            .items)
    }

    /// Deletes the share links of captures that no longer exist (deleted through the API, by
    /// kubectl or by the garbage collector): such a Secret only holds a dead link. `live` are
    /// the uids of every capture, listed before this call; links younger than
    /// [`PRUNE_MIN_AGE`] are kept, as their capture may be newer than that list. The number of
    /// links deleted.
    pub async fn prune(
        &self,
        live: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for secret in self.list(&format!("{SHARE_LABEL}=true")).await? {
            let uid = secret
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(CAPTURE_UID_LABEL));
            let old_enough = secret
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|created| now - super::chrono_time(created) > PRUNE_MIN_AGE);
            let (Some(uid), Some(name)) = (uid, secret.metadata.name.as_deref()) else {
                continue;
            };
            if live.contains(uid) || !old_enough {
                continue;
            }
            match self.api.delete(name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(store_error("deleting a dead share link", e)),
            }
        }
        Ok(deleted)
    }

    pub async fn of_capture(&self, capture_uid: &str) -> Result<Vec<ShareRecord>, StoreError> {
        let mut records: Vec<ShareRecord> = self
            .list(&format!(
                "{SHARE_LABEL}=true,{CAPTURE_UID_LABEL}={capture_uid}"
            ))
            .await?
            .iter()
            .filter_map(record_of)
            .collect();
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }

    /// Changes the Secret of share `id` with `change`, retrying when another writer got there
    /// first; false when there is no such share (of `capture_uid`, when given).
    async fn update(
        &self,
        id: &str,
        capture_uid: Option<&str>,
        change: impl Fn(&mut Secret),
    ) -> Result<bool, StoreError> {
        let mut selector = format!("{SHARE_LABEL}=true,{SHARE_ID_LABEL}={id}");
        if let Some(uid) = capture_uid {
            selector.push_str(&format!(",{CAPTURE_UID_LABEL}={uid}"));
        }
        for _ in 0..CONFLICT_RETRIES {
            let Some(mut secret) = self.list(&selector).await?.into_iter().next() else {
                return Ok(false);
            };
            let name = secret.metadata.name.clone().unwrap_or_default();
            change(&mut secret);
            match self
                .api
                .replace(&name, &PostParams::default(), &secret)
                .await
            {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(store_error("updating a share link", e)),
            }
        }
        Err(StoreError::Conflict(format!("share link {id}")))
    }

    pub async fn revoke(
        &self,
        capture_uid: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update(id, Some(capture_uid), |secret| {
            if text(secret, "revokedAt").is_none() {
                set(secret, "revokedAt", at.to_rfc3339());
            }
        })
        .await
    }

    pub async fn count_download(&self, id: &str) -> Result<(), StoreError> {
        self.update(id, None, |secret| {
            let downloads: u64 = text(secret, "downloads")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            set(secret, "downloads", (downloads + 1).to_string());
        })
        .await
        .map(drop)
    }

    pub async fn downloads_total(&self) -> Result<u64, StoreError> {
        Ok(self
            .list(&format!("{SHARE_LABEL}=true"))
            .await?
            .iter()
            .filter_map(record_of)
            .map(|r| r.downloads)
            .sum())
    }
}
