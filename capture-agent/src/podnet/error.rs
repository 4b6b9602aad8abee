//! What went wrong when a pod could not be mapped to its host interface: every strategy tried,
//! why each one came back empty, and what an operator should look at.

use std::fmt;
use std::io;

use super::netlink::NetlinkError;
use super::Method;

/// No strategy found the pod's host interface.
#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error(
        "cannot map pod {uid} ({ips}) to its host interface: {}",
        Attempts(attempts)
    )]
    Unresolved {
        uid: String,
        ips: String,
        attempts: Vec<Attempt>,
    },
    #[error("cannot map pod {uid} to its host interface: every strategy is disabled")]
    NothingEnabled { uid: String },
    #[error("cannot map pod {uid} to its host interface: {source}")]
    Netlink {
        uid: String,
        #[source]
        source: NetlinkError,
    },
}

impl PodNetError {
    /// The strategies tried and their outcomes, in order (empty for the other variants).
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            PodNetError::Unresolved { attempts, .. } => attempts,
            _ => &[],
        }
    }
}

/// One strategy's failure.
#[derive(Debug)]
pub struct Attempt {
    pub method: Method,
    pub error: StrategyError,
}

struct Attempts<'a>(&'a [Attempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "[{}] {}", attempt.method, attempt.error)?;
        }
        Ok(())
    }
}

/// Why one strategy found nothing. Every message ends with what to check.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    #[error("{detail} (check: {hint})")]
    NotFound { detail: String, hint: &'static str },
    #[error("several host interfaces match: {} (check: {hint})", candidates.join(", "))]
    Ambiguous {
        candidates: Vec<String>,
        hint: &'static str,
    },
    #[error("{detail}: permission denied (check: {hint})")]
    Permission { detail: String, hint: &'static str },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}
