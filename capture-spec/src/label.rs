//! Label keys and values: the syntax Kubernetes accepts in `metadata.labels`, label selectors and
//! node selectors. Checking it here turns a typo in a selector into an error when the capture is
//! created, instead of a capture that silently matches no pod.

use crate::names::is_dns1123_subdomain;

/// The longest label value, and the longest name part of a label key.
pub const MAX_LABEL_LENGTH: usize = 63;

/// What is wrong with a label key or value, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label key is empty: write a key such as app or app.kubernetes.io/name")]
    EmptyKey,
    #[error("label key {0:?} has more than one '/': write at most one, as in example.com/tier")]
    TooManySlashes(String),
    #[error("label key {key:?} has an invalid prefix {prefix:?}: the part before '/' must be a lowercase DNS name of at most 253 characters, as in example.com/tier")]
    InvalidPrefix { key: String, prefix: String },
    #[error(
        "label key {key:?} is {length} characters after its prefix; the maximum is 63: shorten it"
    )]
    KeyTooLong { key: String, length: usize },
    #[error("label key {0:?} is not valid: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, e.g. app or app.kubernetes.io/name")]
    InvalidKey(String),
    #[error("label value {value:?} is {length} characters; the maximum is 63: shorten it")]
    ValueTooLong { value: String, length: usize },
    #[error("label value {0:?} is not valid: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or leave it empty), e.g. web or v1.2")]
    InvalidValue(String),
}

/// Checks a label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn validate_label_key(key: &str) -> Result<(), LabelError> {
    if key.is_empty() {
        return Err(LabelError::EmptyKey);
    }
    let name = match key.split_once('/') {
        None => key,
        Some((_, name)) if name.contains('/') => {
            return Err(LabelError::TooManySlashes(key.to_string()))
        }
        Some((prefix, name)) => {
            if !is_dns1123_subdomain(prefix) {
                return Err(LabelError::InvalidPrefix {
                    key: key.to_string(),
                    prefix: prefix.to_string(),
                });
            }
            name
        }
    };
    if name.len() > MAX_LABEL_LENGTH {
        return Err(LabelError::KeyTooLong {
            key: key.to_string(),
            length: name.chars().count(),
        });
    }
    if !is_label_name(name) {
        return Err(LabelError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
pub fn validate_label_value(value: &str) -> Result<(), LabelError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > MAX_LABEL_LENGTH {
        return Err(LabelError::ValueTooLong {
            value: value.to_string(),
            length: value.chars().count(),
        });
    }
    if !is_label_name(value) {
        return Err(LabelError::InvalidValue(value.to_string()));
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the shape shared by key names and values.
fn is_label_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys_and_values() {
        for key in [
            "app",
            "App_1",
            "a.b-c",
            "app.kubernetes.io/name",
            "example.com/Tier",
            &"k".repeat(63),
        ] {
            validate_label_key(key).unwrap();
        }
        for value in ["", "web", "v1.2", "A-b_c", &"v".repeat(63)] {
            validate_label_value(value).unwrap();
        }
    }

    #[test]
    fn key_errors_say_what_to_write() {
        let err = |k: &str| validate_label_key(k).unwrap_err().to_string();
        assert_eq!(
            err(""),
            "label key is empty: write a key such as app or app.kubernetes.io/name"
        );
        assert!(err("a/b/c").contains("more than one '/'"));
        assert!(err("Example.com/tier").contains("invalid prefix \"Example.com\""));
        assert!(err("/tier").contains("invalid prefix \"\""));
        assert!(err("example.com/").contains("is not valid"));
        assert!(err("-app").contains("starting and ending with a letter or digit"));
        assert!(err("app name").contains("label key \"app name\" is not valid"));
        assert!(
            err(&"k".repeat(64)).contains("is 64 characters after its prefix; the maximum is 63")
        );
    }

    #[test]
    fn value_errors_say_what_to_write() {
        let err = |v: &str| validate_label_value(v).unwrap_err().to_string();
        assert!(err("web_").contains("label value \"web_\" is not valid"));
        assert!(err("a b").contains("or leave it empty"));
        assert!(err(&"v".repeat(64)).contains("is 64 characters; the maximum is 63"));
    }
}
