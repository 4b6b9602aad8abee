//! API tokens, standalone mode's answer to who may do what (Kubernetes mode asks the cluster,
//! see `crate::kube::auth`). Every `/api` request carries `Authorization: Bearer <token>`;
//! tokens are 256 random bits shown once and stored only as SHA-256 hashes. A token has a role and an
//! optional namespace scope:
//!
//! - `viewer`: read captures, statuses, files and downloads;
//! - `operator`: also create, stop and delete captures and schedules, and share;
//! - `admin`: everything, in every namespace (admin tokens are never scoped).
//!
//! On first start with an empty store an admin token is generated, printed once and written to
//! `<data-dir>/admin-token` (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::store::{Store, StoreError, TokenRecord};

/// What a token prefix looks like, so a leaked token is recognisable (e.g. by secret scanners).
const TOKEN_PREFIX: &str = "pcp_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Role, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: use viewer, operator or admin"
            )),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// What a request wants to do, checked against the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Share,
    /// Reading the audit trail.
    Audit,
}

impl Action {
    fn minimum_role(self) -> Role {
        match self {
            Action::Read => Role::Viewer,
            Action::Write | Action::Share => Role::Operator,
            Action::Audit => Role::Admin,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "create, stop or delete",
            Action::Share => "share",
            Action::Audit => "read the audit trail of",
        }
    }
}

/// The holder of an API token (standalone mode), as [`authenticate`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCaller {
    pub token_id: String,
    pub role: Role,
    /// None = every namespace.
    pub namespaces: Option<Vec<String>>,
}

impl TokenCaller {
    /// Ok when the caller may do `action` in `namespace`; a 403 problem otherwise.
    pub fn authorize(&self, action: Action, namespace: &str) -> Result<(), Problem> {
        if let Some(allowed) = &self.namespaces {
            if !allowed.iter().any(|n| n == namespace) {
                return Err(Problem::forbidden(format!(
                    "this token may only be used in namespace(s) {}, not {namespace:?}",
                    allowed.join(", ")
                )));
            }
        }
        if self.role < action.minimum_role() {
            return Err(Problem::forbidden(format!(
                "a {} token may not {} captures: ask for an {} token",
                self.role.as_str(),
                action.verb(),
                action.minimum_role().as_str()
            )));
        }
        Ok(())
    }
}

/// SHA-256 of a secret, hex: what the store keeps instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, hex, with a recognisable prefix.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A short random id for tokens, shares and generated names (lowercase alphanumerics).
pub fn new_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Creates a token and returns its secret (shown once; only the hash is stored).
pub fn create_token(
    store: &dyn Store,
    role: Role,
    namespaces: Option<Vec<String>>,
    description: &str,
) -> Result<String, StoreError> {
    let secret = new_secret(TOKEN_PREFIX);
    store.insert_token(&TokenRecord {
        id: new_id(12),
        token_hash: hash_secret(&secret),
        role: role.as_str().to_string(),
        namespaces: if role == Role::Admin {
            None
        } else {
            namespaces
        },
        description: description.to_string(),
        created_at: Utc::now(),
    })?;
    Ok(secret)
}

/// On an empty store: creates the first admin token, writes it to `<data_dir>/admin-token`
/// (0600) and returns it so the caller can print it once.
pub fn bootstrap_admin(store: &dyn Store, data_dir: &Path) -> anyhow::Result<Option<String>> {
    if store.token_count()? > 0 {
        return Ok(None);
    }
    let secret = create_token(
        store,
        Role::Admin,
        None,
        "first admin token, created at first start",
    )?;
    let path = data_dir.join("admin-token");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(file, "{secret}")?;
    Ok(Some(secret))
}

/// The caller behind an `Authorization` header value, or a 401 problem saying what to send.
pub fn authenticate(store: &dyn Store, header: Option<&str>) -> Result<TokenCaller, Problem> {
    let Some(header) = header else {
        return Err(Problem::unauthorized(
            "no Authorization header: send `Authorization: Bearer <token>` (the first admin token is in <data-dir>/admin-token)",
        ));
    };
    let Some(secret) = header.strip_prefix("Bearer ").map(str::trim) else {
        return Err(Problem::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    };
    let record = store
        .token_by_hash(&hash_secret(secret))
        .map_err(Problem::internal)?;
    let Some(record) = record else {
        return Err(Problem::unauthorized(
            "the bearer token is not valid: check it, or ask an admin for a new one",
        ));
    };
    let role = record.role.parse::<Role>().map_err(Problem::internal)?;
    Ok(TokenCaller {
        token_id: record.id,
        role,
        namespaces: record.namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, namespaces: Option<Vec<&str>>) -> TokenCaller {
        TokenCaller {
            token_id: "t".into(),
            role,
            namespaces: namespaces.map(|n| n.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn roles_and_scopes() {
        let viewer = caller(Role::Viewer, None);
        assert!(viewer.authorize(Action::Read, "shop").is_ok());
        let denied = viewer.authorize(Action::Write, "shop").unwrap_err();
        assert_eq!(denied.status, axum::http::StatusCode::FORBIDDEN);
        assert!(
            denied.detail.contains("viewer token may not create"),
            "{}",
            denied.detail
        );
        assert!(viewer.authorize(Action::Share, "shop").is_err());
        let scoped = caller(Role::Operator, Some(vec!["shop"]));
        assert!(scoped.authorize(Action::Write, "shop").is_ok());
        assert!(scoped
            .authorize(Action::Read, "bank")
            .unwrap_err()
            .detail
            .contains("only be used in namespace(s) shop"));
        assert!(caller(Role::Admin, None)
            .authorize(Action::Share, "any")
            .is_ok());
    }

    #[test]
    fn secrets_are_256_bits_and_hashed() {
        let secret = new_secret(TOKEN_PREFIX);
        assert_eq!(secret.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(hash_secret(&secret), secret);
        assert_eq!(hash_secret(&secret).len(), 64);
        assert_ne!(new_secret(TOKEN_PREFIX), secret);
        assert_eq!(new_id(5).len(), 5);
    }
}
