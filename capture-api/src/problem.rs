//! Errors as RFC 7807 `application/problem+json`: every error a client sees says what is wrong
//! and, where it is the client's input, which field and how to fix it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid input field (RFC 7807 extension member `invalidParams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvalidParam {
    /// The field's path in the request, e.g. `spec.duration`, or a query parameter's name.
    pub name: String,
    /// What is wrong with it and how to write it instead.
    pub reason: String,
}

/// An error (RFC 7807 `application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "about:blank")]
    pub kind: &'static str,
    /// The status's short name, e.g. `Invalid input`.
    #[schema(value_type = String, example = "Invalid input")]
    pub title: &'static str,
    /// The HTTP status code.
    #[serde(serialize_with = "serialize_status")]
    #[schema(value_type = u16, minimum = 400, maximum = 599, example = 422)]
    pub status: StatusCode,
    /// What is wrong, in a sentence that says what to do about it.
    pub detail: String,
    /// With 422: every field to fix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub invalid_params: Vec<InvalidParam>,
}

fn serialize_status<S: serde::Serializer>(
    status: &StatusCode,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title,
            status,
            detail: detail.into(),
            invalid_params: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }

    /// 422 with the fields to fix.
    /// `self` with the fields of `earlier` (another 422 of the same request) listed first, so
    /// one answer names every field to fix; other problems are returned as they are.
    pub fn after(mut self, earlier: Option<Problem>) -> Problem {
        if let Some(earlier) = earlier {
            if self.status != StatusCode::UNPROCESSABLE_ENTITY
                || earlier.status != StatusCode::UNPROCESSABLE_ENTITY
            {
                return self;
            }
            let mut params = earlier.invalid_params;
            params.append(&mut self.invalid_params);
            self.invalid_params = params;
            self.detail = format!("{}; {}", earlier.detail, self.detail);
        }
        self
    }

    pub fn invalid(detail: impl Into<String>, params: Vec<InvalidParam>) -> Problem {
        Problem {
            invalid_params: params,
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid input", detail)
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    pub fn gone(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::GONE, "Gone", detail)
    }

    /// 413: the request body is over the limit.
    pub fn too_large(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large", detail)
    }

    /// 507: the data directory takes no more captures.
    pub fn insufficient_storage(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "Insufficient storage",
            detail,
        )
    }

    /// 503: a service podcap depends on (the Kubernetes API server, a node agent) failed.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            detail,
        )
    }

    /// 502: a node agent answered, but not with what podcap expected.
    pub fn bad_gateway(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_GATEWAY, "Bad gateway", detail)
    }

    /// A store error as a client sees it: the Kubernetes API server failing is a 503 saying so,
    /// a conflict a 409, anything else an internal error.
    pub fn store(error: crate::store::StoreError) -> Problem {
        use crate::store::StoreError;
        match error {
            e @ StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::unavailable(e.to_string())
            }
            e @ (StoreError::Conflict(_) | StoreError::AlreadyExists { .. }) => {
                Problem::conflict(e.to_string())
            }
            StoreError::BadContinue(reason) => Problem::invalid(
                "bad continue token",
                vec![InvalidParam {
                    name: "continue".into(),
                    reason,
                }],
            ),
            e @ StoreError::Undecodable { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unreadable object",
                e.to_string(),
            ),
            other => Problem::internal(other),
        }
    }

    /// A failure on our side; the detail is logged, the client gets a generic message.
    pub fn internal(error: impl std::fmt::Display) -> Problem {
        tracing::error!(%error, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the server failed to handle the request; see its log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}
