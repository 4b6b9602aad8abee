//! Share links: an expiring URL a colleague can download a capture from without a token.
//! The link's token is 256 random bits, shown once and stored only as its SHA-256 hash; links
//! default to 24 hours and live at most 7 days; they can be revoked; every download is counted.
//! An expired or revoked link answers 410 with when it stopped working.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::captures::find;
use super::download::{merged_response, parse_format, FormatQuery};
use super::object::optional_body;
use crate::auth::{hash_secret, new_id, new_secret};
use crate::problem::{InvalidParam, Problem};
use crate::state::AppState;
use crate::store::ShareRecord;

use super::openapi::{
    CapturePath, NewShare, PcapBytes, PcapngBytes, ShareList, SharePath, ShareTokenPath,
};

const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Share tokens look different from API tokens, so neither can be mistaken for the other.
const SHARE_PREFIX: &str = "pcs_";

/// A share link to create; an empty body takes the defaults.
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = ShareRequest)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateShare {
    /// How long the link works, from 1s to 7d; 24h when left out.
    #[schema(example = "1h")]
    expires_in: Option<String>,
}

fn expiry(body: &Bytes) -> Result<Duration, Problem> {
    let request: CreateShare = optional_body(body, r#"{"expiresIn": "1h"} or nothing"#)?;
    let Some(text) = request.expires_in else {
        return Ok(DEFAULT_EXPIRY);
    };
    let invalid = |reason: String| {
        Problem::invalid(
            "bad expiry",
            vec![InvalidParam {
                name: "expiresIn".into(),
                reason,
            }],
        )
    };
    let duration = humantime::parse_duration(&text).map_err(|e| {
        invalid(format!(
            "{text:?} is not a duration ({e}): write e.g. \"1h\", \"30m\" or \"2d\""
        ))
    })?;
    if duration.is_zero() || duration > MAX_EXPIRY {
        return Err(invalid(format!(
            "{text:?} is out of range: a share link lives from 1s to 7d"
        )));
    }
    Ok(duration)
}

fn share_json(share: &ShareRecord, now: DateTime<Utc>) -> Value {
    let state = if share.revoked_at.is_some() {
        "Revoked"
    } else if share.expires_at <= now {
        "Expired"
    } else {
        "Active"
    };
    json!({
        "id": share.id,
        "createdAt": share.created_at.to_rfc3339(),
        "expiresAt": share.expires_at.to_rfc3339(),
        "revokedAt": share.revoked_at.map(|t| t.to_rfc3339()),
        "downloads": share.downloads,
        "state": state,
    })
}

#[utoipa::path(
    post,
    path = "/namespaces/{namespace}/captures/{name}/shares",
    tag = "shares",
    operation_id = "createShare",
    summary = "Create a share link",
    description = "A link anyone can download the merged capture from, without a token, until it \
        expires or is revoked. The token is in the answer only: podcap keeps its hash.",
    params(CapturePath),
    request_body(content = Option<CreateShare>, content_type = "application/json", description = "Optional; an empty body means `{\"expiresIn\": \"24h\"}`."),
    responses(
        (status = 201, description = "The new link, with its URL and token.", body = NewShare),
        (status = 400, description = "The body is not `{\"expiresIn\": \"1h\"}`; or a malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad or out-of-range `expiresIn`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let lifetime = expiry(&body)?;
    let record = find(&state, &namespace, &name)?;
    let token = new_secret(SHARE_PREFIX);
    let now = Utc::now();
    let lifetime = chrono::Duration::from_std(lifetime).map_err(Problem::internal)?;
    let share = ShareRecord {
        id: new_id(10),
        token_hash: hash_secret(&token),
        capture_uid: record.uid,
        created_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
        downloads: 0,
    };
    state
        .store
        .insert_share(&share)
        .map_err(Problem::internal)?;
    // HTTP/1.1 names the server in Host; HTTP/2 (what HTTPS clients negotiate) in the
    // request's authority.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let mut answer = share_json(&share, now);
    // Behind a proxy that terminates TLS the scheme is the proxy's; without one, ours.
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        Some("http") => "http",
        _ if state.settings.tls => "https",
        _ => "http",
    };
    answer["url"] = json!(format!("{scheme}://{host}/share/{token}"));
    answer["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(answer)))
}

#[utoipa::path(
    get,
    path = "/namespaces/{namespace}/captures/{name}/shares",
    tag = "shares",
    operation_id = "listShares",
    summary = "The share links of a capture",
    params(CapturePath),
    responses(
        (status = 200, description = "Every link of the capture, with its state and download count; never the tokens.", body = ShareList),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let record = find(&state, &namespace, &name)?;
    let now = Utc::now();
    let shares = state
        .store
        .shares_of(&record.uid)
        .map_err(Problem::internal)?;
    Ok(Json(
        json!({ "items": shares.iter().map(|s| share_json(s, now)).collect::<Vec<_>>() }),
    ))
}

#[utoipa::path(
    delete,
    path = "/namespaces/{namespace}/captures/{name}/shares/{id}",
    tag = "shares",
    operation_id = "revokeShare",
    summary = "Revoke a share link",
    params(SharePath),
    responses(
        (status = 204, description = "Revoked: the link answers 410 from now on."),
        (status = 400, description = "A malformed path segment (a namespace that is not a DNS-1123 label, or not UTF-8 once percent-decoded); the detail names it and what to write instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such capture, or no such link of it.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    Path((namespace, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, Problem> {
    let record = find(&state, &namespace, &name)?;
    if !state
        .store
        .revoke_share(&record.uid, &id, Utc::now())
        .map_err(Problem::internal)?
    {
        return Err(Problem::not_found(format!(
            "capture {namespace}/{name} has no share link {id:?}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /share/{token}`: the merged capture, no login.
#[utoipa::path(
    get,
    path = "/share/{token}",
    tag = "shares",
    operation_id = "downloadShared",
    summary = "Download a capture through a share link",
    description = "No token needed: the link's token is the secret. Each download is counted.",
    params(ShareTokenPath, super::download::FormatQuery),
    responses(
        (status = 200, description = "The merged capture, as `GET .../captures/{name}/pcap`.", content((PcapngBytes = "application/x-pcapng"), (PcapBytes = "application/vnd.tcpdump.pcap")),
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"NAME.pcapng\"` (or `.pcap`)"))),
        (status = 400, description = "A malformed query string or path segment (a parameter given twice or not of its type, a segment not UTF-8 once percent-decoded); the detail names the parameter and what to give instead.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such link, or its capture was deleted.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The link expired or was revoked; the detail says when.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad `format`.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed; its log says why.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(query): Query<FormatQuery>,
) -> Result<Response, Problem> {
    let format = parse_format(&query)?;
    let share = state
        .store
        .share_by_hash(&hash_secret(&token))
        .map_err(Problem::internal)?;
    let Some(share) = share else {
        return Err(Problem::not_found(
            "no such share link: check the URL, or ask for a new link",
        ));
    };
    if let Some(revoked) = share.revoked_at {
        return Err(Problem::gone(format!(
            "this share link was revoked at {}: ask for a new link",
            revoked.to_rfc3339()
        )));
    }
    if share.expires_at <= Utc::now() {
        return Err(Problem::gone(format!(
            "this share link expired at {}: ask for a new link",
            share.expires_at.to_rfc3339()
        )));
    }
    let record = state
        .store
        .capture_by_uid(&share.capture_uid)
        .map_err(Problem::internal)?;
    let Some(record) = record else {
        return Err(Problem::not_found(
            "the capture behind this share link was deleted",
        ));
    };
    state
        .store
        .count_share_download(&share.id)
        .map_err(Problem::internal)?;
    merged_response(&state, &record, format, None).await
}
