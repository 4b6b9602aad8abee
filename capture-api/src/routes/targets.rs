//! A capture's targets, page by page: `GET .../captures/{name}/targets?limit=&continue=`, and
//! the one rule for how many targets a capture answer carries inline ([`INLINE_TARGETS`]).
//!
//! A capture across a large cluster has tens of thousands of targets: its answer (and every list
//! that holds it) carries the first [`INLINE_TARGETS`] by node, pod and interface and says how
//! many it left out (`status.targetsOmitted`); the totals always cover all of them. Clients
//! that want every target (the web console, `kubectl podcap describe`) page through this route.
//! Pages are ordered by node, pod and interface; a continue token is the key of the page's last
//! target, hex-encoded, so a page never repeats or skips a target that stays while others come
//! and go.

use axum::extract::State;
use axum::Json;
use capture_spec::{TargetKey, TargetStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::captures::{found, API_VERSION};
use super::extract::{Path, Query};
use super::openapi::{CapturePath, TargetList};
use crate::problem::{InvalidParam, Problem};
use crate::state::AppState;

pub use capture_spec::status::INLINE_TARGETS;
/// A status text shorter than this cannot hold more than [`INLINE_TARGETS`] targets (each is
/// well over 100 bytes of JSON), so lists splice it unread.
pub const INLINE_SCAN_BYTES: usize = INLINE_TARGETS * 100;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// [`CaptureStatus::inline_view`] for a status already in JSON (a stored status text): cuts it
/// to its first [`INLINE_TARGETS`] targets by node, pod and
/// interface, and sets `targetsOmitted` to how many it left out.
pub fn limit_inline_targets(status: &mut Value) {
    let Some(targets) = status.get_mut("targets").and_then(Value::as_array_mut) else {
        return;
    };
    if targets.len() <= INLINE_TARGETS {
        return;
    }
    targets.sort_unstable_by(|a, b| key_fields(a).cmp(&key_fields(b)));
    let omitted = targets.len() - INLINE_TARGETS;
    targets.truncate(INLINE_TARGETS);
    status["targetsOmitted"] = json!(omitted);
}

/// A target's key (node, pod, interface) as it stands in its JSON.
fn key_fields(target: &Value) -> [&str; 3] {
    ["node", "pod", "interface"].map(|k| target[k].as_str().unwrap_or_default())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TargetsQuery {
    /// At most this many targets per page (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Where the previous page ended: its `metadata.continue`, unchanged.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
}

fn token_of(key: &TargetKey) -> String {
    hex::encode(format!("{}\n{}\n{}", key.node, key.pod, key.interface))
}

fn key_of_token(token: &str) -> Option<TargetKey> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let mut parts = text.split('\n');
    let key = TargetKey {
        node: parts.next()?.to_string(),
        pod: parts.next()?.to_string(),
        interface: parts.next()?.to_string(),
    };
    parts.next().is_none().then_some(key)
}

/// The token of the page after `items` when `more` targets follow them.
fn next_token(items: &[TargetStatus], more: usize) -> Option<String> {
    (more > 0)
        .then(|| items.last().map(|last| token_of(&last.key())))
        .flatten()
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/targets",
    tag = "captures",
    operation_id = "listCaptureTargets",
    summary = "The targets of a capture, paged",
    description = "Every captured pod interface with its state, counters and files, ordered by \
        node, pod and interface; `metadata.continue` is present when more follow. A capture's own \
        answer carries at most the first 100 (`status.targetsOmitted` says how many it leaves out).",
    params(CapturePath, TargetsQuery),
    responses(
        (status = 200, description = "One page of targets.", body = TargetList),
        (status = 400, description = "A malformed query string or path segment (a parameter given twice or not of its type, a namespace that is not a DNS-1123 label, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `limit` or `continue`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<TargetsQuery>,
) -> Result<Json<Value>, Problem> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let bad = |name: &str, reason: String| {
        Problem::invalid(
            "bad paging of targets",
            vec![InvalidParam {
                name: name.into(),
                reason,
            }],
        )
    };
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(
            "limit",
            format!("{limit} is out of range: use 1-{MAX_PAGE}"),
        ));
    }
    let after = match query.continue_token.as_deref() {
        None => None,
        Some(token) => Some(key_of_token(token).ok_or_else(|| {
            bad(
                "continue",
                "not a token this API gave out: pass a page's metadata.continue unchanged, or leave it out for the first page".into(),
            )
        })?),
    };
    let (items, more) = found(
        state
            .store
            .capture_targets(&namespace, &name, after.as_ref(), limit),
        &namespace,
        &name,
    )?;
    let mut metadata = json!({});
    if let Some(next) = next_token(&items, more) {
        metadata["continue"] = json!(next);
    }
    Ok(Json(json!({
        "apiVersion": API_VERSION,
        "kind": "TargetList",
        "items": items,
        "metadata": metadata,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(node: &str, pod: &str) -> TargetStatus {
        TargetStatus {
            node: node.into(),
            namespace: "shop".into(),
            pod: pod.into(),
            interface: "eth0".into(),
            ..TargetStatus::default()
        }
    }

    /// A page as the route makes it.
    fn page(
        targets: &[TargetStatus],
        after: Option<&TargetKey>,
        limit: usize,
    ) -> (Vec<TargetStatus>, Option<String>) {
        let refs: Vec<&TargetStatus> = targets.iter().collect();
        let (items, more) = capture_spec::status::first_targets(&refs, after, limit);
        let next = next_token(&items, more);
        (items, next)
    }

    #[test]
    fn pages_cover_every_target_once_in_key_order() {
        let targets: Vec<TargetStatus> = (0..25)
            .rev()
            .map(|i| target(&format!("node-{}", i % 3), &format!("web-{i:02}")))
            .collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (items, next) = page(&targets, after.as_ref(), 7);
            assert!(items.len() <= 7);
            seen.extend(items.iter().map(TargetStatus::key));
            match next {
                Some(token) => after = Some(key_of_token(&token).unwrap()),
                None => break,
            }
        }
        let mut expected: Vec<TargetKey> = targets.iter().map(TargetStatus::key).collect();
        expected.sort();
        assert_eq!(seen, expected);
        // A last page that is exactly full says nothing follows.
        assert!(page(&targets, None, 25).1.is_none());
        assert!(key_of_token("zz").is_none());
        assert!(key_of_token(&hex::encode("a\nb")).is_none());
    }

    #[test]
    fn answers_carry_the_first_hundred_and_count_the_rest() {
        let targets: Vec<TargetStatus> = (0..150)
            .rev()
            .map(|i| target("node-a", &format!("web-{i:03}")))
            .collect();
        let mut status = json!({"phase": "Capturing", "targets": targets});
        limit_inline_targets(&mut status);
        assert_eq!(status["targets"].as_array().unwrap().len(), INLINE_TARGETS);
        assert_eq!(status["targets"][0]["pod"], "web-000");
        assert_eq!(status["targetsOmitted"], 50);
        let mut small = json!({"targets": [target("a", "b")]});
        limit_inline_targets(&mut small);
        assert!(small.get("targetsOmitted").is_none());
        let bytes = serde_json::to_vec(&target("n", "p")).unwrap().len();
        assert!(bytes * INLINE_TARGETS > INLINE_SCAN_BYTES, "{bytes}");
    }
}
