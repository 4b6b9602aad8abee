//! Cluster auth in Kubernetes mode: who the caller is and what they may do are the cluster's
//! own answers. The bearer token goes to a TokenReview (401 if the API server does not
//! authenticate it); each request is then checked with a SubjectAccessReview in the namespace
//! of its path, with the verb and resource `super::backend` gives the route's access (see
//! `crate::access`): `list/get/create/delete/patch packetcaptures`, `get packetcaptures/files`
//! for anything that hands out packets (downloads, live, the packet preview and timeline,
//! tickets, share links), `…packetcaptureschedules`, and `list pods`. A denial is a 403 naming the verb, resource and namespace. Both answers are
//! cached for [`CACHE_FOR`], keyed by the token's hash (never the token), so a page that makes
//! ten requests costs one review.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

use crate::auth::hash_secret;
use crate::problem::Problem;

/// How long a TokenReview or SubjectAccessReview answer is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(10);
/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 4096;

/// An authenticated caller, as the TokenReview named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    /// SHA-256 of the token: the cache key.
    pub token_hash: String,
}

/// What a request does, as a SubjectAccessReview asks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    /// `podcap.io`, or `""` for core resources (pods).
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    /// Empty = every namespace.
    pub namespace: String,
}

impl Attributes {
    pub fn captures(verb: &'static str, namespace: &str) -> Attributes {
        Attributes {
            verb,
            group: "podcap.io",
            resource: "packetcaptures",
            subresource: None,
            namespace: namespace.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        if self.namespace.is_empty() {
            format!("{} {resource}{group} in all namespaces", self.verb)
        } else {
            format!(
                "{} {resource}{group} in namespace {:?}",
                self.verb, self.namespace
            )
        }
    }
}

/// A token's hash and what it asks.
type DecisionKey = (String, Attributes);
/// Allowed, and the authorizer's reason.
type Decision = (bool, String);

struct Cached<T> {
    until: Instant,
    value: T,
}

fn cached<K: std::hash::Hash + Eq, T: Clone>(
    cache: &Mutex<HashMap<K, Cached<T>>>,
    key: &K,
) -> Option<T> {
    let cache = cache.lock().ok()?;
    cache
        .get(key)
        .filter(|entry| entry.until > Instant::now())
        .map(|entry| entry.value.clone())
}

fn remember<K: std::hash::Hash + Eq, T>(cache: &Mutex<HashMap<K, Cached<T>>>, key: K, value: T) {
    if let Ok(mut cache) = cache.lock() {
        let now = Instant::now();
        if cache.len() >= SWEEP_AT {
            cache.retain(|_, entry| entry.until > now);
        }
        cache.insert(
            key,
            Cached {
                until: now + CACHE_FOR,
                value,
            },
        );
    }
}

/// TokenReviews and SubjectAccessReviews, cached.
pub struct ClusterAuth {
    client: Client,
    users: Mutex<HashMap<String, Cached<Option<User>>>>,
    decisions: Mutex<HashMap<DecisionKey, Cached<Decision>>>,
}

fn unavailable(what: &str, error: kube::Error) -> Problem {
    tracing::warn!(%error, what, "auth review failed");
    Problem::unavailable(format!(
        "podcap could not ask the Kubernetes API server ({what}): {error}; try again shortly"
    ))
}

impl ClusterAuth {
    pub fn new(client: Client) -> ClusterAuth {
        ClusterAuth {
            client,
            users: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// The caller behind an `Authorization` header, or a 401 saying what to send.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<User, Problem> {
        let Some(header) = header else {
            return Err(Problem::unauthorized(
                "no Authorization header: send `Authorization: Bearer <token>` with your Kubernetes token (from your kubeconfig, or `kubectl create token <serviceaccount>`)",
            ));
        };
        let Some(token) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        let token_hash = hash_secret(token);
        let user = match cached(&self.users, &token_hash) {
            Some(user) => user,
            None => {
                let user = self.review_token(token, &token_hash).await?;
                remember(&self.users, token_hash, user.clone());
                user
            }
        };
        user.ok_or_else(|| {
            Problem::unauthorized(
                "the Kubernetes API server does not accept this bearer token (TokenReview): use a current token from your kubeconfig or `kubectl create token`",
            )
        })
    }

    async fn review_token(&self, token: &str, token_hash: &str) -> Result<Option<User>, Problem> {
        let review: TokenReview = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }))
        .map_err(Problem::internal)?;
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("TokenReview", e))?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let info = status.user.unwrap_or_default();
        Ok(Some(User {
            name: info.username.unwrap_or_default(),
            uid: info.uid,
            groups: info.groups.unwrap_or_default(),
            extra: info.extra.unwrap_or_default(),
            token_hash: token_hash.to_string(),
        }))
    }

    /// Whether `user` may do `attributes`, and the authorizer's reason.
    pub async fn allowed(
        &self,
        user: &User,
        attributes: &Attributes,
    ) -> Result<(bool, String), Problem> {
        let key = (user.token_hash.clone(), attributes.clone());
        if let Some(decision) = cached(&self.decisions, &key) {
            return Ok(decision);
        }
        let mut resource = json!({
            "verb": attributes.verb,
            "group": attributes.group,
            "resource": attributes.resource,
        });
        if let Some(sub) = attributes.subresource {
            resource["subresource"] = json!(sub);
        }
        if !attributes.namespace.is_empty() {
            resource["namespace"] = json!(attributes.namespace);
        }
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.name,
                "uid": user.uid,
                "groups": user.groups,
                "extra": user.extra,
                "resourceAttributes": resource,
            },
        }))
        .map_err(Problem::internal)?;
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("SubjectAccessReview", e))?;
        let decision = answer
            .status
            .map(|s| (s.allowed, s.reason.unwrap_or_default()))
            .unwrap_or((false, String::new()));
        remember(&self.decisions, key, decision.clone());
        Ok(decision)
    }

    /// Ok when allowed; a 403 naming what was denied otherwise.
    pub async fn authorize(&self, user: &User, attributes: &Attributes) -> Result<(), Problem> {
        let (allowed, reason) = self.allowed(user, attributes).await?;
        if allowed {
            return Ok(());
        }
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        Err(Problem::forbidden(format!(
            "user {:?} may not {}{reason}: ask a cluster admin for RBAC that allows it (see deploy/examples/capture-user-role.yaml)",
            user.name,
            attributes.describe()
        )))
    }
}
