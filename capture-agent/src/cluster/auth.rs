//! Who may use the file endpoint: the API's service account and no one else. The caller's
//! `Authorization: Bearer` token is checked with a TokenReview (authentication.k8s.io/v1) against
//! the cluster's API server; it is accepted only when authenticated as
//! `system:serviceaccount:<--api-service-account>`. Positive answers are cached for
//! [`CACHE_FOR`], keyed by the token's SHA-256 (the token itself is never kept), so a merged
//! download that fetches many files costs one review.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use kube::Client;
use sha2::{Digest, Sha256};

/// How long an accepted token is trusted without asking again.
pub const CACHE_FOR: Duration = Duration::from_secs(60);

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send Authorization: Bearer <the API's service account token>")]
    Missing,
    #[error("the bearer token is not valid{}", .0.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Invalid(Option<String>),
    #[error("{user} may not read capture files from agents: only {allowed} may")]
    Forbidden { user: String, allowed: String },
    #[error("cannot check the token with the API server (TokenReview): {0}")]
    Review(#[source] kube::Error),
}

pub struct Authenticator {
    client: Client,
    /// The one username allowed, e.g. `system:serviceaccount:podcap-system:capture-api`.
    allowed: String,
    accepted: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Authenticator {
    /// `service_account` is `namespace:name`.
    pub fn new(client: Client, service_account: &str) -> Authenticator {
        Authenticator {
            client,
            allowed: format!("system:serviceaccount:{service_account}"),
            accepted: Mutex::new(HashMap::new()),
        }
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Missing)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(mut accepted) = self.accepted.lock() {
            accepted.retain(|_, at| at.elapsed() < CACHE_FOR);
            if accepted.contains_key(&key) {
                return Ok(());
            }
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(AuthError::Review)?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(AuthError::Invalid(status.error));
        }
        let user = status.user.and_then(|u| u.username).unwrap_or_default();
        if user != self.allowed {
            return Err(AuthError::Forbidden {
                user,
                allowed: self.allowed.clone(),
            });
        }
        if let Ok(mut accepted) = self.accepted.lock() {
            accepted.insert(key, Instant::now());
        }
        Ok(())
    }
}
