//! Who may call which route: the one authorization table of the API, for both modes.
//!
//! Every route has an [`Access`] in [`access_of`] (a unit test fails when a route has none). The
//! route layer ([`crate::server::guard`]) runs before every handler: it leaves public routes alone, has the
//! [`Backend`](crate::backend::Backend) authenticate the bearer token, asks it whether the
//! caller may have that access in the path's namespace, and hands the [`Caller`] to the handler
//! in the request's extensions. Handlers never check permissions themselves, and never learn
//! which mode they run in: standalone mode answers from token roles and scopes, Kubernetes mode
//! with TokenReview and SubjectAccessReview (see `crate::kube::auth`).

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method;

use crate::auth::{Action, TokenCaller};
use crate::kube::auth::User;
use crate::problem::Problem;

/// A Kubernetes-style verb on one of podcap's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    List,
    Get,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    /// True for the verbs that only read.
    pub fn reads(self) -> bool {
        matches!(self, Verb::List | Verb::Get)
    }
}

/// What a route does, as far as permission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// No token: health, metrics, the OpenAPI document, share links (the token is the
    /// secret), download tickets (each good for one download within a minute), the web UI.
    Public,
    /// A valid token; the handler shows only the namespaces the caller may read (the
    /// cross-namespace lists).
    Authenticated,
    /// Captures themselves: their specs and statuses.
    Captures(Verb),
    /// Packets leaving the server: downloads, live streams, the packet preview and timeline,
    /// download tickets and share links. Its own permission, stricter than reading a status.
    Packets(Verb),
    /// Capture schedules.
    Schedules(Verb),
    /// Which pods a selector matches.
    Pods,
    /// The audit trail: admins only.
    Audit,
}

impl Access {
    /// What an API token (standalone mode) must be allowed to do for this access: reading needs
    /// a viewer, changing captures and schedules an operator, and making or revoking share
    /// links the share right.
    pub fn token_action(self) -> Action {
        match self {
            Access::Public | Access::Authenticated | Access::Pods => Action::Read,
            Access::Packets(verb) if verb.reads() => Action::Read,
            Access::Packets(_) => Action::Share,
            Access::Captures(verb) | Access::Schedules(verb) if verb.reads() => Action::Read,
            Access::Captures(_) | Access::Schedules(_) => Action::Write,
            Access::Audit => Action::Audit,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Public => write!(f, "public"),
            Access::Authenticated => write!(f, "any signed-in caller"),
            Access::Captures(verb) => write!(f, "{} captures", verb.as_str()),
            Access::Packets(verb) => write!(f, "{} capture packets", verb.as_str()),
            Access::Schedules(verb) => write!(f, "{} schedules", verb.as_str()),
            Access::Pods => write!(f, "list pods"),
            Access::Audit => write!(f, "read the audit trail"),
        }
    }
}

/// The access a route needs, by method and matched path (e.g.
/// `/api/v1/namespaces/{namespace}/captures/{name}`); `None` for a route without an entry, which
/// the guard refuses: a new route must be added here.
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    use Verb::*;
    let Some(api) = path.strip_prefix("/api/v1") else {
        return Some(Access::Public);
    };
    let rest = match (method.as_str(), api) {
        // The document describes the API and holds nobody's data.
        ("GET", "/openapi.json") => return Some(Access::Public),
        ("GET", "/namespaces" | "/captures") => return Some(Access::Authenticated),
        ("GET", "/audit") => return Some(Access::Audit),
        _ => api.strip_prefix("/namespaces/{namespace}")?,
    };
    Some(match (method.as_str(), rest) {
        ("GET", "/captures") => Access::Captures(List),
        ("POST", "/captures") => Access::Captures(Create),
        ("GET", "/captures/{name}") => Access::Captures(Get),
        ("DELETE", "/captures/{name}") => Access::Captures(Delete),
        ("POST", "/captures/{name}/stop") => Access::Captures(Patch),
        ("GET", "/captures/{name}/files") | ("GET", "/captures/{name}/targets") => {
            Access::Captures(Get)
        }
        ("GET", "/captures/{name}/files/{id}")
        | ("GET", "/captures/{name}/pcap")
        | ("GET", "/captures/{name}/live")
        | ("GET", "/captures/{name}/packets")
        | ("GET", "/captures/{name}/timeline")
        | ("POST", "/captures/{name}/downloads")
        | ("GET", "/captures/{name}/shares") => Access::Packets(Get),
        ("POST", "/captures/{name}/shares") => Access::Packets(Create),
        ("DELETE", "/captures/{name}/shares/{id}") => Access::Packets(Delete),
        ("GET", "/schedules") => Access::Schedules(List),
        ("POST", "/schedules") => Access::Schedules(Create),
        ("GET", "/schedules/{name}") => Access::Schedules(Get),
        ("PUT", "/schedules/{name}") => Access::Schedules(Update),
        ("DELETE", "/schedules/{name}") => Access::Schedules(Delete),
        ("GET", "/pods") => Access::Pods,
        _ => return None,
    })
}

/// Who a request comes from, as the backend authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Standalone mode: an API token of the store.
    Token(TokenCaller),
    /// Kubernetes mode: the user a TokenReview named.
    Kubernetes(User),
}

impl Caller {
    /// A name for logs: the token id or the Kubernetes user name.
    pub fn name(&self) -> &str {
        match self {
            Caller::Token(token) => &token.token_id,
            Caller::Kubernetes(user) => &user.name,
        }
    }
}

/// Handlers take the caller the route layer authenticated; a route that reaches a handler without
/// one (which the guard never lets happen) is refused as unauthenticated.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Caller, Problem> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("send `Authorization: Bearer <token>`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_an_access_rule() {
        for (method, path) in crate::server::operations() {
            assert!(
                access_of(method, path).is_some(),
                "{method} {path} has no access rule"
            );
        }
    }

    #[test]
    fn token_roles_follow_what_a_route_does() {
        assert_eq!(Access::Captures(Verb::List).token_action(), Action::Read);
        assert_eq!(Access::Captures(Verb::Patch).token_action(), Action::Write);
        assert_eq!(Access::Packets(Verb::Get).token_action(), Action::Read);
        assert_eq!(Access::Packets(Verb::Create).token_action(), Action::Share);
        assert_eq!(Access::Packets(Verb::Delete).token_action(), Action::Share);
        assert_eq!(
            Access::Schedules(Verb::Update).token_action(),
            Action::Write
        );
        assert_eq!(Access::Pods.token_action(), Action::Read);
    }

    #[test]
    fn packets_are_their_own_permission() {
        assert_eq!(
            access_of(
                &Method::GET,
                "/api/v1/namespaces/{namespace}/captures/{name}/pcap"
            ),
            Some(Access::Packets(Verb::Get))
        );
        assert_eq!(
            access_of(
                &Method::GET,
                "/api/v1/namespaces/{namespace}/captures/{name}"
            ),
            Some(Access::Captures(Verb::Get))
        );
        assert_eq!(
            access_of(&Method::GET, "/share/{token}"),
            Some(Access::Public)
        );
        assert_eq!(
            access_of(&Method::PATCH, "/api/v1/namespaces/{namespace}/captures"),
            None
        );
    }
}
