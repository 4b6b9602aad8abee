//! What the capture and schedule routes share about Kubernetes-shaped objects: the namespace
//! and name checks, reading a create or replace body (`{apiVersion?, kind?, metadata?, spec,
//! status?}`, the CRD object as JSON) with the checks every kind needs, and turning field
//! errors into one 422 that lists them all.

use capture_spec::{names, ValidationErrors};
use serde::Deserialize;
use serde_json::Value;

use super::captures::API_VERSION;
use crate::problem::{InvalidParam, Problem};

/// 422 about one field.
pub fn field_problem(detail: &str, field: &str, reason: String) -> Problem {
    Problem::invalid(
        detail,
        vec![InvalidParam {
            name: field.into(),
            reason,
        }],
    )
}

/// 422 listing every field error of a spec.
pub fn invalid_spec(errors: ValidationErrors, what: &str) -> Problem {
    let params = errors
        .into_iter()
        .map(|e| InvalidParam {
            name: e.field,
            reason: e.message,
        })
        .collect();
    Problem::invalid(format!("the {what} spec is invalid"), params)
}

/// The `{namespace}` path segment, checked once for every route under it (by the route
/// guard): one Kubernetes would refuse is a malformed path segment, the 400 the OpenAPI
/// document shares, naming the parameter.
pub fn check_namespace(namespace: &str) -> Result<(), Problem> {
    names::validate_namespace(namespace).map_err(|e| Problem {
        status: axum::http::StatusCode::BAD_REQUEST,
        title: "Bad request",
        ..field_problem("bad namespace in the path", "namespace", e.to_string())
    })
}

pub fn check_name(name: &str) -> Result<(), Problem> {
    names::validate_name(name)
        .map_err(|e| field_problem("bad name", "metadata.name", e.to_string()))
}

/// The `metadata` of a body; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMetadata {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    /// Set by the server; accepted so a GET answer can be sent back unchanged.
    #[allow(dead_code)]
    creation_timestamp: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObjectBody {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<ObjectMetadata>,
    spec: Value,
    /// Owned by the server; accepted and ignored so a GET answer can be sent back.
    #[allow(dead_code)]
    status: Option<Value>,
}

/// The body as an object of `kind` in `namespace`, or a 400 that shows what to send (`example`).
pub fn parse_object(
    body: &[u8],
    namespace: &str,
    kind: &str,
    example: &str,
) -> Result<(ObjectMetadata, Value), Problem> {
    let not_a = |reason: String| {
        Problem::bad_request(format!(
            "the body is not a {kind}: {reason}. Send {example}"
        ))
    };
    let object = json_object(body)
        .and_then(|object| object.ok_or_else(|| "it is null".to_string()))
        .map_err(not_a)?;
    let body: ObjectBody =
        serde_json::from_value(Value::Object(object)).map_err(|e| not_a(e.to_string()))?;
    if !body.spec.is_object() {
        return Err(not_a(format!(
            "its spec is a JSON {}, not an object",
            json_type(&body.spec)
        )));
    }
    if body.kind.as_deref().is_some_and(|k| k != kind)
        || body
            .api_version
            .as_deref()
            .is_some_and(|v| v != API_VERSION)
    {
        return Err(Problem::bad_request(format!(
            "this route takes kind {kind}, apiVersion {API_VERSION}"
        )));
    }
    let metadata = body.metadata.unwrap_or_default();
    if metadata
        .namespace
        .as_deref()
        .is_some_and(|n| n != namespace)
    {
        return Err(field_problem(
            "metadata.namespace differs from the namespace in the path",
            "metadata.namespace",
            format!("the path says {namespace:?}: leave metadata.namespace out or make it {namespace:?}"),
        ));
    }
    Ok((metadata, body.spec))
}

/// A body that may be left out: empty or JSON `null` mean `T::default()`, anything else must be
/// a `T` (a 400 that shows what to send, `example`, when it is not). The OpenAPI document
/// describes such bodies as optional and nullable, so this is the one reading of them.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    example: &str,
) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let bad =
        |reason: String| Problem::bad_request(format!("the body must be {example}: {reason}"));
    match json_object(body).map_err(bad)? {
        None => Ok(T::default()),
        Some(object) => {
            serde_json::from_value(Value::Object(object)).map_err(|e| bad(e.to_string()))
        }
    }
}

/// A body that must be a JSON object (or `null`, which is `None`). serde's derived structs also
/// take an array of their fields in order (`[null, "1h"]`), which no client means and the
/// OpenAPI document does not allow; this is where such bodies are refused.
fn json_object(body: &[u8]) -> Result<Option<serde_json::Map<String, Value>>, String> {
    match serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())? {
        Value::Null => Ok(None),
        Value::Object(object) => Ok(Some(object)),
        other => Err(format!("it is a JSON {}, not an object", json_type(&other))),
    }
}

/// The JSON type of `value`, as a client would name it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `?dryRun=All`, as in Kubernetes: validate and answer with the object that would be
/// created, without creating it. The web UI uses it to check a form and show a schedule's next
/// run times before saving.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DryRunQuery {
    /// `All`: check the request and answer with the object it would create, storing nothing.
    #[serde(rename = "dryRun")]
    #[param(rename = "dryRun", schema_with = dry_run_mode, example = "All")]
    dry_run: Option<String>,
}

/// `dryRun`'s one accepted value, documented as the enum it is: any other value is a 422.
fn dry_run_mode() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["All"]))
        .into()
}

impl DryRunQuery {
    /// Whether this is a dry run; a 422 for any value but `All`.
    pub fn is_dry_run(&self) -> Result<bool, Problem> {
        match self.dry_run.as_deref() {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(field_problem(
                "bad dryRun",
                "dryRun",
                format!(
                    "{other:?} is not a dry-run mode: use dryRun=All, or leave it out to create"
                ),
            )),
        }
    }
}

/// Accepts a pod selector in kubectl's string form (`"app=web,tier in (a,b)"`) where the CRD
/// has a `LabelSelector` object, and replaces it with that object: curl users and the web
/// UI's selector field write selectors as they would for `kubectl get pods -l`. Stored specs
/// always hold the object. `pointer` is the selector's JSON pointer in `spec`, `field` its
/// name in errors.
pub fn selector_from_text(spec: &mut Value, pointer: &str, field: &str) -> Result<(), Problem> {
    let Some(slot) = spec.pointer_mut(pointer) else {
        return Ok(());
    };
    let Value::String(text) = slot else {
        return Ok(());
    };
    let selector: capture_spec::LabelSelector =
        text.trim()
            .parse()
            .map_err(|e: capture_spec::SelectorError| {
                field_problem("bad pod selector", field, e.to_string())
            })?;
    *slot = serde_json::to_value(selector).map_err(Problem::internal)?;
    Ok(())
}

/// The name of an object to create: `requested`, or `{prefix}-xxxxx` generated when left out;
/// with the 422 of `check` when the requested name is bad, kept to be reported together with
/// the spec's errors so that one answer lists every field to fix.
pub fn requested_name(
    requested: Option<String>,
    prefix: &str,
    check: impl Fn(&str) -> Result<(), Problem>,
) -> (String, Option<Problem>) {
    match requested {
        Some(name) => {
            let bad = check(&name).err();
            (name, bad)
        }
        None => (format!("{prefix}-{}", crate::auth::new_id(5)), None),
    }
}
