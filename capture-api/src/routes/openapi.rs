//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of this server, generated from the
//! handlers. Each handler carries its own `#[utoipa::path]` description and the router is built
//! from those same handlers with utoipa-axum's `routes!` (see [`crate::server::routes`]), so the
//! document lists exactly the routes the server serves. This module holds what the handlers
//! share: the document's frame (info, tags, the bearer scheme), the path parameters, the
//! schemas of answers the handlers build as JSON values, and [`finish`], which applies the one
//! rule every `/api` route follows — a bearer token, hence 401 and 403 — in one place.
//! The document is served without a token: it describes the API, not anybody's data.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use capture_spec::{
    CaptureSpec, CaptureStatus, FileStatus, ScheduleSpec, ScheduleStatus, TargetStatus,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::captures::API_VERSION;
use crate::access::{access_of, Access};
use crate::problem::Problem;

/// The name of the bearer-token security scheme in the document.
pub const BEARER: &str = "bearer";
/// The document's own path, the one `/api` route that needs no token.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The document's frame: everything but the paths and their schemas, which come from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "podcap",
        description = "Packet capture for Kubernetes pods: create captures and schedules, download \
            single files, one merged time-ordered capture or a live stream, and share downloads \
            through expiring links.\n\nEvery `/api/v1` route needs `Authorization: Bearer <token>` \
            (tokens are made with `capture-api token create`; the first admin token is in \
            `<data dir>/admin-token`), except this document itself. `/healthz`, `/readyz`, \
            `/metrics` and `/share/{token}` need none. Errors are RFC 7807 \
            `application/problem+json`; `invalidParams` lists the fields to fix.",
    ),
    tags(
        (name = "captures", description = "Packet captures (`PacketCapture`)."),
        (name = "downloads", description = "A capture's files, merged download and live stream."),
        (name = "inspect", description = "A capture's first packets decoded, and its packets over time."),
        (name = "shares", description = "Expiring download links that need no token."),
        (name = "schedules", description = "Captures on a cron schedule (`PacketCaptureSchedule`)."),
        (name = "pods", description = "Which pods a selector matches."),
        (name = "operations", description = "Health checks, metrics and this document."),
    ),
    components(schemas(Problem))
)]
pub struct Frame;

/// `{namespace}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NamespacePath {
    /// The namespace (a Kubernetes name, e.g. `default`).
    namespace: String,
}

/// `{namespace}/captures/{name}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct CapturePath {
    /// The capture's namespace.
    namespace: String,
    /// The capture's name.
    name: String,
}

/// `{namespace}/captures/{name}/files/{id}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct CaptureFilePath {
    /// The capture's namespace.
    namespace: String,
    /// The capture's name.
    name: String,
    /// The file's `id`, as listed by `.../files`.
    id: String,
}

/// `{namespace}/captures/{name}/shares/{id}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SharePath {
    /// The capture's namespace.
    namespace: String,
    /// The capture's name.
    name: String,
    /// The share link's `id` (not its token).
    id: String,
}

/// `{namespace}/schedules/{name}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SchedulePath {
    /// The schedule's namespace.
    namespace: String,
    /// The schedule's name.
    name: String,
}

/// `/share/{token}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ShareTokenPath {
    /// The secret token of the link (`pcs_...`), as in the URL the link was created with.
    token: String,
}

/// The `metadata` of an object the API returns.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct ObjectMeta {
    name: String,
    namespace: String,
    /// Set by the server; a capture or schedule created again under the same name gets a new one.
    uid: String,
    creation_timestamp: DateTime<Utc>,
}

/// A capture as the API returns it: the `PacketCapture` object of the CRD.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct PacketCapture {
    #[schema(example = "podcap.io/v1alpha1")]
    api_version: String,
    #[schema(example = "PacketCapture")]
    kind: String,
    metadata: ObjectMeta,
    spec: CaptureSpec,
    status: CaptureStatus,
}

/// Captures of a namespace.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PacketCaptureList {
    items: Vec<PacketCapture>,
    metadata: ListMetadata,
}

/// One page of a capture's targets, ordered by node, pod and interface.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct TargetList {
    #[schema(example = "podcap.io/v1alpha1")]
    api_version: String,
    #[schema(example = "TargetList")]
    kind: String,
    items: Vec<TargetStatus>,
    metadata: ListMetadata,
}

/// Paging of a list: `continue` is present when more items follow; pass it back as
/// `?continue=` to get them.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ListMetadata {
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<String>,
}

/// A schedule as the API returns it: the `PacketCaptureSchedule` object of the CRD.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct PacketCaptureSchedule {
    #[schema(example = "podcap.io/v1alpha1")]
    api_version: String,
    #[schema(example = "PacketCaptureSchedule")]
    kind: String,
    metadata: ObjectMeta,
    spec: ScheduleSpec,
    status: ScheduleStatus,
}

/// Schedules of a namespace.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PacketCaptureScheduleList {
    items: Vec<PacketCaptureSchedule>,
}

/// One file of a capture, with the pod that wrote it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CaptureFile {
    #[serde(flatten)]
    file: FileStatus,
    /// `namespace/pod` of the pod the file was captured from.
    pod: String,
}

/// The files of a capture.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CaptureFileList {
    items: Vec<CaptureFile>,
}

/// Whether a share link still works.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub enum ShareState {
    Active,
    Expired,
    Revoked,
}

/// A share link; its token is shown only once, when it is created.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct Share {
    id: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// When it was revoked; null while it is not.
    #[schema(required = true)]
    revoked_at: Option<DateTime<Utc>>,
    /// How many times the capture was downloaded through it.
    downloads: u64,
    state: ShareState,
}

/// A new share link: the link and the token, shown this once; podcap keeps only its hash.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct NewShare {
    id: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Always null for a new link.
    #[schema(required = true)]
    revoked_at: Option<DateTime<Utc>>,
    downloads: u64,
    state: ShareState,
    /// The download URL to hand out: `GET /share/{token}`, no login needed.
    #[schema(example = "http://podcap.example/share/pcs_0123abcd")]
    url: String,
    /// The link's secret.
    token: String,
}

/// The share links of a capture, revoked and expired ones included.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ShareList {
    items: Vec<Share>,
}

/// A field of a request body that, when given, must be `value`: that one string, or null.
fn constant_or_null(value: &str, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([
            serde_json::Value::from(value),
            serde_json::Value::Null,
        ]))
        .description(Some(description))
        .into()
}

/// `apiVersion` of a create or replace body.
pub fn api_version_field() -> Schema {
    constant_or_null(API_VERSION, "When given, `podcap.io/v1alpha1`.")
}

/// `kind` of a capture's create body.
pub fn capture_kind_field() -> Schema {
    constant_or_null("PacketCapture", "When given, `PacketCapture`.")
}

/// `kind` of a schedule's create or replace body.
pub fn schedule_kind_field() -> Schema {
    constant_or_null(
        "PacketCaptureSchedule",
        "When given, `PacketCaptureSchedule`.",
    )
}

/// A pcapng file (`application/x-pcapng`): one interface per pod interface.
pub struct PcapngBytes;

impl PartialSchema for PcapngBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/x-pcapng")
            .description(Some("pcapng bytes; opens in Wireshark."))
            .into()
    }
}

impl ToSchema for PcapngBytes {}

/// A classic pcap file (`application/vnd.tcpdump.pcap`), nanosecond timestamps.
pub struct PcapBytes;

impl PartialSchema for PcapBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/vnd.tcpdump.pcap")
            .description(Some("Classic pcap bytes with nanosecond timestamps."))
            .into()
    }
}

impl ToSchema for PcapBytes {}

/// The reusable error answers [`finish`] adds to operations, by status.
fn shared_problems() -> BTreeMap<&'static str, (&'static str, &'static str)> {
    BTreeMap::from([
        (
            "400",
            (
                "BadRequest",
                "A malformed query string, path segment or body; `invalidParams` names the field.",
            ),
        ),
        (
            "401",
            (
                "Unauthorized",
                "No `Authorization: Bearer <token>` header, or a token that is unknown or revoked.",
            ),
        ),
        (
            "403",
            (
                "Forbidden",
                "The token's role or namespaces do not allow this action in this namespace.",
            ),
        ),
        (
            "500",
            (
                "InternalError",
                "The server failed to handle the request; its log says why.",
            ),
        ),
    ])
}

/// Completes the document the routes produced: the bearer scheme, applied to every `/api`
/// operation that needs one (by the access table, [`crate::access::access_of`]) with its 401
/// and 403 answers, and the shared problem answers. Done here once rather than on each handler,
/// as the access guard answers them for every handler.
pub fn finish(mut document: OpenApi) -> OpenApi {
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API token (`pcp_...`) made with `capture-api token create`; the first \
                     admin token is in `<data dir>/admin-token`.",
                ))
                .build(),
        ),
    );
    for (name, description) in shared_problems().into_values() {
        components.responses.insert(
            name.to_string(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(Problem::name())))
                            .build(),
                    )
                    .build(),
            ),
        );
    }
    let shared = shared_problems();
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let secured = access_of(&method, path).is_some_and(|access| access != Access::Public);
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str| {
                if let Some((name, _)) = shared.get(status) {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                }
            };
            constrain_name_parameters(operation.parameters.as_deref_mut().unwrap_or_default());
            if !operation.parameters.as_ref().is_none_or(Vec::is_empty)
                || operation.request_body.is_some()
            {
                add("400");
            }
            if secured {
                add("401");
                add("403");
                add("500");
                operation.security =
                    Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            }
        }
    }
    add_links(&mut document);
    document
}

/// A DNS-1123 label, what `capture_spec::names::validate_name` and `validate_namespace` accept
/// (their length limit is [`capture_spec::names::MAX_NAME_LENGTH`]).
const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 label as a schema, for query parameters that name a namespace.
pub fn dns_label_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(DNS_LABEL_PATTERN))
        .min_length(Some(1))
        .max_length(Some(capture_spec::names::MAX_NAME_LENGTH))
        .build()
}

/// Documents the `{namespace}` and `{name}` path segments as the server checks them, so
/// clients and fuzzers do not send names the server can only refuse.
fn constrain_name_parameters(parameters: &mut [RefOr<utoipa::openapi::path::Parameter>]) {
    for parameter in parameters {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        let is_path = matches!(
            parameter.parameter_in,
            utoipa::openapi::path::ParameterIn::Path
        );
        if !is_path || !matches!(parameter.name.as_str(), "namespace" | "name") {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(object))) = parameter.schema.as_mut() {
            object.pattern = Some(DNS_LABEL_PATTERN.to_string());
            object.min_length = Some(1);
            object.max_length = Some(capture_spec::names::MAX_NAME_LENGTH);
        }
    }
}

/// Where a link's parameter value comes from, as an OpenAPI runtime expression.
const REQUEST_NAMESPACE: &str = "$request.path.namespace";
const REQUEST_NAME: &str = "$request.path.name";
const RESPONSE_NAME: &str = "$response.body#/metadata/name";

/// The links between operations: from the answer of one operation (its id and status) to the
/// operations that take what it returned, with each path parameter's runtime expression. They
/// let clients and stateful fuzzers follow a new capture to its files, shares and downloads,
/// a new share to its revocation and its link, a new download ticket to its download, a new
/// schedule to its reads and changes, a file list to a file.
#[allow(clippy::type_complexity)]
fn links() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
)> {
    let capture = vec![("namespace", REQUEST_NAMESPACE), ("name", RESPONSE_NAME)];
    let mut links = Vec::new();
    for target in [
        "getCapture",
        "stopCapture",
        "deleteCapture",
        "listCaptureFiles",
        "previewCapturePackets",
        "captureTimeline",
        "downloadMergedCapture",
        "createShare",
        "listShares",
        "createDownloadTicket",
    ] {
        links.push(("createCapture", "201", target, capture.clone()));
    }
    let share = vec![
        ("namespace", REQUEST_NAMESPACE),
        ("name", REQUEST_NAME),
        ("id", "$response.body#/id"),
    ];
    links.push(("createShare", "201", "revokeShare", share));
    links.push((
        "createShare",
        "201",
        "downloadShared",
        vec![("token", "$response.body#/token")],
    ));
    links.push((
        "createDownloadTicket",
        "201",
        "downloadWithTicket",
        vec![("ticket", "$response.body#/ticket")],
    ));
    for target in ["getSchedule", "replaceSchedule", "deleteSchedule"] {
        links.push(("createSchedule", "201", target, capture.clone()));
    }
    links.push((
        "listCaptureFiles",
        "200",
        "downloadCaptureFile",
        vec![
            ("namespace", REQUEST_NAMESPACE),
            ("name", REQUEST_NAME),
            ("id", "$response.body#/items/0/id"),
        ],
    ));
    links
}

/// Adds [`links`] to the answers they start from; a link whose operation or answer is missing
/// is left out (the table names operations; the routes decide which exist).
fn add_links(document: &mut OpenApi) {
    let mut operation_ids = std::collections::BTreeSet::new();
    for item in document.paths.paths.values() {
        for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
            .into_iter()
            .flatten()
        {
            if let Some(id) = &operation.operation_id {
                operation_ids.insert(id.clone());
            }
        }
    }
    let links = links();
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let Some(from) = operation.operation_id.clone() else {
                continue;
            };
            for (source, status, target, parameters) in &links {
                if *source != from || !operation_ids.contains(*target) {
                    continue;
                }
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status)
                else {
                    continue;
                };
                let link = parameters
                    .iter()
                    .fold(
                        LinkBuilder::new().operation_id(*target),
                        |link, (name, value)| link.parameter(*name, *value),
                    )
                    .build();
                response.links.insert((*target).to_string(), RefOr::T(link));
            }
        }
    }
}

/// The finished document as JSON, built once: the routes never change while the server runs.
fn document_json() -> &'static Result<String, String> {
    static DOCUMENT: OnceLock<Result<String, String>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        crate::server::openapi()
            .to_json()
            .map_err(|e| format!("serializing the OpenAPI document: {e}"))
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "getOpenApiDocument",
    summary = "This OpenAPI document",
    description = "The OpenAPI 3.1 description of every route of this server, generated from its \
        handlers. Served without a token: it describes the API, not anybody's data.",
    responses(
        (status = 200, description = "The OpenAPI document.", body = Object, content_type = "application/json"),
        (status = 500, description = "The document could not be built.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn document() -> Result<Response, Problem> {
    let json = document_json().as_ref().map_err(Problem::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response())
}
