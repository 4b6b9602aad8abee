//! Object names: the DNS-1123 labels Kubernetes requires for capture and schedule names and for
//! namespaces, the DNS-1123 subdomains that label-key prefixes use, and generated names (the
//! `generateName` convention, `capture-x7k2p`). The random suffix of a generated name is passed in
//! by the caller, so this crate stays free of randomness and its results are reproducible.

/// The longest capture name, schedule name or namespace: a DNS-1123 label.
pub const MAX_NAME_LENGTH: usize = 63;

/// The longest DNS-1123 subdomain, as used before the `/` of a label key.
pub const MAX_SUBDOMAIN_LENGTH: usize = 253;

/// How many random characters a generated name ends with.
pub const GENERATED_SUFFIX_LENGTH: usize = 5;

/// The characters Kubernetes draws generated-name suffixes from: no vowels, so a suffix never
/// spells a word, and no look-alikes (0/o, 1/l, 3/e). Callers should draw from it too.
pub const GENERATED_SUFFIX_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// A name that Kubernetes would refuse, with a corrected example.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "{what} is empty: give a {what} such as {example:?} (lowercase letters, digits and '-')"
    )]
    Empty {
        what: &'static str,
        example: &'static str,
    },
    #[error(
        "{what} {name:?} is {length} characters; the maximum is 63: shorten it, e.g. {suggestion:?}"
    )]
    TooLong {
        what: &'static str,
        name: String,
        length: usize,
        suggestion: String,
    },
    #[error("{what} {name:?} is not valid: use lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. {suggestion:?}")]
    Invalid {
        what: &'static str,
        name: String,
        suggestion: String,
    },
    #[error("name prefix {prefix:?} is not valid: use lowercase letters, digits and '-', starting with a letter or digit, e.g. {suggestion:?}")]
    InvalidPrefix { prefix: String, suggestion: String },
    #[error("generated-name suffix {0:?} is not 5 lowercase letters or digits: draw 5 characters from GENERATED_SUFFIX_ALPHABET, e.g. \"x7k2p\"")]
    InvalidSuffix(String),
}

/// Checks a capture or schedule name (a DNS-1123 label).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    validate_dns_label("name", "db-debug", name)
}

/// Checks a namespace (a DNS-1123 label).
pub fn validate_namespace(namespace: &str) -> Result<(), NameError> {
    validate_dns_label("namespace", "default", namespace)
}

/// The name Kubernetes' `generateName` would give: the prefix, cut so the whole fits in 63
/// characters, followed by `random_suffix` (5 lowercase letters or digits, drawn by the caller,
/// ideally from [`GENERATED_SUFFIX_ALPHABET`]). Write the prefix with its trailing `-`
/// (`"capture-"`), as Kubernetes does not add one.
pub fn generate_name(prefix: &str, random_suffix: &str) -> Result<String, NameError> {
    let suffix_ok = random_suffix.len() == GENERATED_SUFFIX_LENGTH
        && random_suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !suffix_ok {
        return Err(NameError::InvalidSuffix(random_suffix.to_string()));
    }
    let kept: String = prefix
        .chars()
        .take(MAX_NAME_LENGTH - GENERATED_SUFFIX_LENGTH)
        .collect();
    let name = format!("{kept}{random_suffix}");
    if !is_dns1123_label(&name) {
        let mut suggestion = suggest_dns_label(prefix, "capture");
        suggestion.truncate(MAX_NAME_LENGTH - GENERATED_SUFFIX_LENGTH - 1);
        return Err(NameError::InvalidPrefix {
            prefix: prefix.to_string(),
            suggestion: format!("{}-", suggestion.trim_end_matches('-')),
        });
    }
    Ok(name)
}

/// True for a DNS-1123 label: 1-63 lowercase letters, digits and '-', starting and ending with a
/// letter or digit.
pub fn is_dns1123_label(text: &str) -> bool {
    text.len() <= MAX_NAME_LENGTH && has_label_shape(text)
}

/// True for a DNS-1123 subdomain: at most 253 characters of dot-separated parts shaped like
/// DNS-1123 labels. As in Kubernetes (`IsDNS1123Subdomain`), only the whole is limited, not each
/// part: a 253-character prefix without dots is a valid label-key prefix there, so it is here.
pub fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= MAX_SUBDOMAIN_LENGTH && text.split('.').all(has_label_shape)
}

/// Lowercase letters, digits and '-', starting and ending with a letter or digit; any length
/// above zero.
fn has_label_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn validate_dns_label(
    what: &'static str,
    example: &'static str,
    name: &str,
) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what, example });
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(NameError::TooLong {
            what,
            name: name.to_string(),
            length: name.chars().count(),
            suggestion: suggest_dns_label(name, example),
        });
    }
    if !is_dns1123_label(name) {
        return Err(NameError::Invalid {
            what,
            name: name.to_string(),
            suggestion: suggest_dns_label(name, example),
        });
    }
    Ok(())
}

/// The nearest valid label to what the user wrote, so the error shows their name fixed rather
/// than a generic example: lowercased, other characters turned into '-', cut to 63.
fn suggest_dns_label(text: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let keep = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(keep == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(keep);
        }
        if out.len() == MAX_NAME_LENGTH {
            break;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        fallback.to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_pass() {
        for name in ["db", "db-debug-1", "a", "0abc", &"a".repeat(63)] {
            validate_name(name).unwrap();
        }
        validate_namespace("kube-system").unwrap();
    }

    #[test]
    fn invalid_names_show_a_fixed_example() {
        let err = validate_name("DB_Debug").unwrap_err().to_string();
        assert_eq!(
            err,
            "name \"DB_Debug\" is not valid: use lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. \"db-debug\""
        );
        let err = validate_name("-web-").unwrap_err().to_string();
        assert!(err.ends_with("e.g. \"web\""), "{err}");
        let err = validate_name(&"a".repeat(64)).unwrap_err().to_string();
        assert!(err.contains("is 64 characters; the maximum is 63"), "{err}");
        assert_eq!(
            validate_namespace("").unwrap_err().to_string(),
            "namespace is empty: give a namespace such as \"default\" (lowercase letters, digits and '-')"
        );
        let err = validate_namespace("shop.prod").unwrap_err().to_string();
        assert!(err.starts_with("namespace \"shop.prod\""), "{err}");
        assert!(err.ends_with("e.g. \"shop-prod\""), "{err}");
        let err = validate_name("___").unwrap_err().to_string();
        assert!(err.ends_with("e.g. \"db-debug\""), "{err}");
    }

    #[test]
    fn subdomains() {
        assert!(is_dns1123_subdomain("example.com"));
        assert!(is_dns1123_subdomain("app.kubernetes.io"));
        assert!(!is_dns1123_subdomain("Example.com"));
        assert!(!is_dns1123_subdomain("example..com"));
        assert!(!is_dns1123_subdomain(""));
        assert!(!is_dns1123_subdomain(&"a.".repeat(127)));
        // Only the whole is limited to 253, not each part to 63 (apimachinery's rule).
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }

    #[test]
    fn generated_names_fit_in_63() {
        assert_eq!(generate_name("capture-", "x7k2p").unwrap(), "capture-x7k2p");
        let long = generate_name(&"p".repeat(70), "bcdfg").unwrap();
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("pbcdfg"));
        assert_eq!(generate_name("", "abcde").unwrap(), "abcde");
    }

    #[test]
    fn generated_name_errors() {
        assert_eq!(
            generate_name("capture-", "ABC").unwrap_err().to_string(),
            "generated-name suffix \"ABC\" is not 5 lowercase letters or digits: draw 5 characters from GENERATED_SUFFIX_ALPHABET, e.g. \"x7k2p\""
        );
        let err = generate_name("My Capture-", "x7k2p")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("name prefix \"My Capture-\" is not valid"),
            "{err}"
        );
        assert!(err.ends_with("e.g. \"my-capture-\""), "{err}");
        assert!(generate_name("-capture-", "x7k2p").is_err());
    }
}
