//! The routes' query-string and path extractors: axum's [`axum::extract::Query`] and
//! [`axum::extract::Path`], but a malformed query string or path segment is a 400
//! `application/problem+json` whose detail names the parameter, what is wrong with it and what to
//! give instead, not axum's default text/plain. Every route uses these, never axum's.
//!
//! (Request bodies are read as bytes and decoded by [`super::object`], which already answers
//! problem+json.)

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// What to give instead, for the query parameters the API knows.
const QUERY_FIXES: &[(&str, &str)] = &[
    ("limit", "give a whole number 1-1000"),
    (
        "phase",
        "give one phase, e.g. Capturing, Completed or Failed",
    ),
    ("format", "give one format, pcapng or pcap"),
    (
        "continue",
        "give the previous page's metadata.continue once",
    ),
    ("dryRun", "give dryRun=All once, or leave it out"),
    ("selector", "give one label selector, e.g. app=web"),
];

/// axum's `Query<T>` with a problem+json rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| query_problem(&rejection))
    }
}

/// axum's `Path<T>` with a problem+json rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| path_problem(&rejection))
    }
}

/// A 400 naming the query parameter, what is wrong and what to give instead.
fn query_problem(rejection: &QueryRejection) -> Problem {
    let text = rejection.body_text();
    let reason = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    // serde_path_to_error puts the parameter first (`limit: invalid digit ...`); a repeated
    // parameter is named in the message (duplicate field `phase`).
    let (param, what) = if let Some(rest) = reason.strip_prefix("duplicate field `") {
        let param = rest.split('`').next().unwrap_or(rest);
        (Some(param.to_string()), "given more than once".to_string())
    } else {
        match reason.split_once(": ") {
            Some((param, what)) if !param.contains(' ') => {
                (Some(param.to_string()), what.to_string())
            }
            _ => (None, reason.to_string()),
        }
    };
    let Some(param) = param else {
        return Problem::bad_request(format!(
            "malformed query string: {reason}: give each parameter once, as name=value pairs \
             joined by &"
        ));
    };
    let fix = QUERY_FIXES
        .iter()
        .find(|(name, _)| *name == param)
        .map(|(_, fix)| fix.to_string())
        .unwrap_or_else(|| format!("give {param} once, with a value as documented"));
    Problem::bad_request(format!("query parameter {param}: {what}: {fix}"))
}

/// A 400 naming the path segment and what to write instead (a 500 where the route itself is
/// wrong, which is ours to fix).
fn path_problem(rejection: &PathRejection) -> Problem {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(failed) => match failed.kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => Problem::bad_request(format!(
                "path segment {key}: not valid UTF-8 once percent-decoded: percent-encode \
                 UTF-8 text only, e.g. a name of lowercase letters, digits and '-'"
            )),
            ErrorKind::ParseErrorAtKey { key, value, .. }
            | ErrorKind::DeserializeError { key, value, .. } => Problem::bad_request(format!(
                "path segment {key}: {value:?} is not valid here: {}: check the URL",
                failed.body_text()
            )),
            _ if failed.status().is_client_error() => Problem::bad_request(format!(
                "malformed path: {}: check the URL",
                failed.body_text()
            )),
            _ => Problem::internal(failed.body_text()),
        },
        other => Problem::internal(other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Q {
        limit: Option<usize>,
        phase: Option<String>,
        other: Option<String>,
    }

    async fn detail(query: &str) -> String {
        let (mut parts, _) = Request::builder()
            .uri(format!("/x?{query}"))
            .body(())
            .unwrap()
            .into_parts();
        let problem = Query::<Q>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(problem.status.as_u16(), 400);
        problem.detail
    }

    #[tokio::test]
    async fn each_malformed_query_says_which_parameter_and_what_to_give() {
        assert_eq!(
            detail("limit=abc").await,
            "query parameter limit: invalid digit found in string: give a whole number 1-1000"
        );
        assert_eq!(
            detail("phase=a&phase=b").await,
            "query parameter phase: given more than once: give one phase, e.g. Capturing, \
             Completed or Failed"
        );
        assert_eq!(
            detail("other=a&other=b").await,
            "query parameter other: given more than once: give other once, with a value as \
             documented"
        );
    }
}
