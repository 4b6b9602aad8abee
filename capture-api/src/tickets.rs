//! Download tickets: how a browser downloads a capture it may read. A page holds its token in
//! memory and cannot put it on a plain link, and fetching a large capture into page memory
//! would not scale; so the page asks for a ticket (authenticated, authorized) and navigates to
//! `/download/{ticket}`, letting the browser stream the file to disk itself. A ticket is a
//! random secret kept only as its hash, for one capture and one download (the merged capture in
//! a format, or one file), redeemable once within [`TICKET_LIFETIME`]. Tickets live in memory:
//! one lost to a restart is asked for again by the next click.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use capture_spec::OutputFormat;
use chrono::{DateTime, Utc};

use crate::auth::{hash_secret, new_secret};

/// How long a ticket stays redeemable: long enough for a click, short enough that a leaked
/// URL (history, a log) is useless.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);

/// What a ticket downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download {
    Merged(OutputFormat),
    File(String),
}

#[derive(Debug, Clone)]
pub struct Ticket {
    pub capture_uid: String,
    pub download: Download,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct DownloadTickets {
    by_hash: Mutex<HashMap<String, Ticket>>,
}

impl DownloadTickets {
    /// A new ticket's secret and when it expires.
    pub fn issue(
        &self,
        capture_uid: &str,
        download: Download,
        now: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let secret = new_secret("pcd_");
        let expires_at = now + TICKET_LIFETIME;
        let mut tickets = self
            .by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tickets.retain(|_, ticket| ticket.expires_at > now);
        tickets.insert(
            hash_secret(&secret),
            Ticket {
                capture_uid: capture_uid.to_string(),
                download,
                expires_at,
            },
        );
        (secret, expires_at)
    }

    /// The ticket of `secret`, used up; `None` if unknown, used or expired.
    pub fn redeem(&self, secret: &str, now: DateTime<Utc>) -> Option<Ticket> {
        let mut tickets = self
            .by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tickets
            .remove(&hash_secret(secret))
            .filter(|ticket| ticket.expires_at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_good_once_and_only_in_time() {
        let tickets = DownloadTickets::default();
        let now = Utc::now();
        let (secret, expires) = tickets.issue("uid-1", Download::File("f1".into()), now);
        assert_eq!(expires, now + TICKET_LIFETIME);
        let ticket = tickets.redeem(&secret, now).unwrap();
        assert_eq!(
            (ticket.capture_uid.as_str(), ticket.download),
            ("uid-1", Download::File("f1".into()))
        );
        assert!(tickets.redeem(&secret, now).is_none(), "used up");

        let (late, _) = tickets.issue("uid-1", Download::Merged(OutputFormat::Pcap), now);
        assert!(
            tickets.redeem(&late, now + TICKET_LIFETIME).is_none(),
            "expired"
        );
        assert!(tickets.redeem("pcd_guess", now).is_none());
    }
}
