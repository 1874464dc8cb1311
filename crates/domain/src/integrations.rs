//! Integrations (docs/api.md section 12): personal API tokens and the names they carry.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::DomainError;
use crate::ids::{ApiTokenId, ChannelId, UserId, WebhookId};

/// What a person calls an API token or a webhook so they can tell them apart: 1–64
/// characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if !(1..=64).contains(&len) {
            return Err(DomainError::invalid("name", "must be 1 to 64 characters long"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid("name", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a new API token lives: 1–3650 days, or for ever when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime(Option<u16>);

impl TokenLifetime {
    /// A token that never expires (a bot's).
    pub const NEVER: Self = Self(None);

    pub fn parse(days: Option<i64>) -> Result<Self, DomainError> {
        match days {
            None => Ok(Self(None)),
            Some(days @ 1..=3650) => Ok(Self(Some(days as u16))),
            Some(_) => Err(DomainError::invalid("expires_in_days", "must be between 1 and 3650")),
        }
    }

    /// When a token made at `now` expires, if ever.
    pub fn expires_at(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.0.map(|days| now + time::Duration::days(i64::from(days)))
    }
}

/// A personal API token as its owner sees it; the secret is never part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub user_id: UserId,
    pub name: TokenName,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

/// An incoming webhook of a channel; its secret is never part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub channel_id: ChannelId,
    /// The webhook's own account, author of its messages.
    pub user_id: UserId,
    pub name: TokenName,
    pub created_at: OffsetDateTime,
}

/// What a message posted through a webhook carries: which webhook, and the name it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTag {
    pub id: WebhookId,
    pub name: String,
    pub username: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names() {
        for (raw, ok) in [("ci", true), ("  deploy bot  ", true), ("", false), ("   ", false), ("a\u{7}b", false)] {
            assert_eq!(TokenName::parse(raw).is_ok(), ok, "{raw:?}");
        }
        assert!(TokenName::parse(&"n".repeat(64)).is_ok());
        assert!(TokenName::parse(&"n".repeat(65)).is_err());
        assert_eq!(TokenName::parse(" x ").unwrap().as_str(), "x");
    }

    #[test]
    fn token_lifetimes() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(TokenLifetime::parse(None).unwrap().expires_at(now), None);
        assert_eq!(TokenLifetime::parse(Some(1)).unwrap().expires_at(now), Some(now + time::Duration::days(1)));
        for days in [0, -1, 3651] {
            assert!(TokenLifetime::parse(Some(days)).is_err(), "{days}");
        }
    }
}
