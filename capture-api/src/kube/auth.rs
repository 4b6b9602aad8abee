//! Cluster auth in Kubernetes mode: who the caller is and what they may do are the cluster's
//! own answers. The bearer token goes to a TokenReview (401 if the API server does not
//! authenticate it); each request is then checked with a SubjectAccessReview in the namespace
//! of its path, with the verb and resource of [`rule`]: `list/get/create/delete/patch
//! packetcaptures`, `get packetcaptures/files` for anything that hands out packets (downloads,
//! live, the packet preview and timeline, tickets, share links), `…packetcaptureschedules`, and
//! `list pods`. A denial is a 403 naming the verb, resource and namespace. Both answers are
//! cached for [`CACHE_FOR`], keyed by the token's hash (never the token), so a page that makes
//! ten requests costs one review.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

use crate::auth::hash_secret;
use crate::problem::Problem;
use crate::server::AppState;

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

    fn describe(&self) -> String {
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

/// How a route is guarded in Kubernetes mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No token: health, metrics, share links, download tickets, the web UI.
    Public,
    /// A valid token; the handler decides per namespace (the cross-namespace lists) or the
    /// route holds no data (the OpenAPI document).
    Authenticated,
    /// A valid token allowed `verb` on `resource[/subresource]` in the path's namespace.
    Check {
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        subresource: Option<&'static str>,
    },
}

const fn captures(verb: &'static str) -> Rule {
    Rule::Check {
        verb,
        group: "podcap.io",
        resource: "packetcaptures",
        subresource: None,
    }
}

/// `get packetcaptures/files`: handing out packets is its own permission.
const FILES: Rule = Rule::Check {
    verb: "get",
    group: "podcap.io",
    resource: "packetcaptures",
    subresource: Some("files"),
};

const fn schedules(verb: &'static str) -> Rule {
    Rule::Check {
        verb,
        group: "podcap.io",
        resource: "packetcaptureschedules",
        subresource: None,
    }
}

/// The rule of a route (its method and matched path, e.g.
/// `/api/v1/namespaces/{namespace}/captures/{name}`); `None` for a route without one, which is
/// refused — a new route must be added here (a unit test checks every route has a rule).
pub fn rule(method: &Method, path: &str) -> Option<Rule> {
    let Some(api) = path.strip_prefix("/api/v1") else {
        return Some(Rule::Public);
    };
    let rest = match api {
        "/openapi.json" | "/namespaces" | "/captures" => return Some(Rule::Authenticated),
        _ => api.strip_prefix("/namespaces/{namespace}")?,
    };
    let m = method.as_str();
    Some(match (m, rest) {
        ("GET", "/captures") => captures("list"),
        ("POST", "/captures") => captures("create"),
        ("GET", "/captures/{name}") => captures("get"),
        ("DELETE", "/captures/{name}") => captures("delete"),
        ("POST", "/captures/{name}/stop") => captures("patch"),
        ("GET", "/captures/{name}/files") => captures("get"),
        ("GET", "/captures/{name}/files/{id}")
        | ("GET", "/captures/{name}/pcap")
        | ("GET", "/captures/{name}/live")
        | ("GET", "/captures/{name}/packets")
        | ("GET", "/captures/{name}/timeline")
        | ("POST", "/captures/{name}/downloads")
        | ("GET" | "POST", "/captures/{name}/shares")
        | ("DELETE", "/captures/{name}/shares/{id}") => FILES,
        ("GET", "/schedules") => schedules("list"),
        ("POST", "/schedules") => schedules("create"),
        ("GET", "/schedules/{name}") => schedules("get"),
        ("PUT", "/schedules/{name}") => schedules("update"),
        ("DELETE", "/schedules/{name}") => schedules("delete"),
        ("GET", "/pods") => Rule::Check {
            verb: "list",
            group: "",
            resource: "pods",
            subresource: None,
        },
        _ => return None,
    })
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

/// The namespace segment of `/api/v1/namespaces/{namespace}/...`.
fn path_namespace(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/namespaces/")?
        .split('/')
        .next()
        .filter(|ns| !ns.is_empty())
}

/// The route layer of Kubernetes mode: authenticates and authorizes each request by
/// [`rule`] before its handler runs, and hands the [`User`] on in the request's extensions.
pub async fn guard(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(request).await;
    };
    let path = matched.as_ref().map_or("", |m| m.as_str());
    let Some(rule) = rule(request.method(), path) else {
        tracing::error!(method = %request.method(), path, "route without an authorization rule");
        return Problem::forbidden(format!(
            "{} {path} has no authorization rule in Kubernetes mode, so it is refused",
            request.method()
        ))
        .into_response();
    };
    if rule == Rule::Public {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match cluster.auth.authenticate(header).await {
        Ok(user) => user,
        Err(problem) => return problem.into_response(),
    };
    if let Rule::Check {
        verb,
        group,
        resource,
        subresource,
    } = rule
    {
        let namespace = path_namespace(request.uri().path())
            .unwrap_or_default()
            .to_string();
        let attributes = Attributes {
            verb,
            group,
            resource,
            subresource,
            namespace,
        };
        if let Err(problem) = cluster.auth.authorize(&user, &attributes).await {
            return problem.into_response();
        }
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_rule() {
        let document = crate::server::openapi();
        for (path, item) in document.paths.paths {
            let methods = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::DELETE, item.delete.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    assert!(
                        rule(&method, &path).is_some(),
                        "{method} {path} has no rule"
                    );
                }
            }
        }
        assert_eq!(
            rule(
                &Method::GET,
                "/api/v1/namespaces/{namespace}/captures/{name}/pcap"
            ),
            Some(FILES)
        );
        assert_eq!(rule(&Method::GET, "/share/{token}"), Some(Rule::Public));
        assert_eq!(
            path_namespace("/api/v1/namespaces/shop/captures"),
            Some("shop")
        );
    }
}
