//! Messages, threads and reactions (docs/api.md section 5).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use unicode_segmentation::UnicodeSegmentation;

use crate::error::DomainError;
use crate::file::FileMeta;
use crate::ids::{ChannelId, MessageId, UserId};
use crate::user::UserSummary;

/// The most characters a message may hold, after trimming.
pub const MAX_CONTENT_CHARS: usize = 4000;

/// The most different emoji one message may carry. Short codes are endless, so without a
/// cap one user could grow a message's reactions — embedded in every history page — without
/// bound (docs/api.md section 1: no unbounded lists). Discord caps at 20, Slack at 50.
pub const MAX_DISTINCT_REACTIONS: i64 = 50;

/// Message text: at most 4,000 characters after trimming, no NUL. It may be empty only when
/// the message carries attachments, which [`MessageContent::parse`] is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageContent(String);

impl MessageContent {
    pub fn parse(raw: &str, has_attachments: bool) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() && !has_attachments {
            return Err(DomainError::invalid("content", "must not be empty"));
        }
        if trimmed.chars().count() > MAX_CONTENT_CHARS {
            return Err(DomainError::invalid("content", "must be at most 4000 characters long"));
        }
        if trimmed.contains('\0') {
            return Err(DomainError::invalid("content", "must not contain NUL characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A reaction: one emoji grapheme cluster (`👍`, `👍🏽`, `🇫🇷`) or a `:short_code:` of 1–32
/// characters of `[a-z0-9_+-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::invalid("emoji", "must be one emoji or a :short_code: of 1 to 32 [a-z0-9_+-]");
        if let Some(code) = raw.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
            let len = code.chars().count();
            if (1..=32).contains(&len)
                && code.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '+' | '-'))
            {
                return Ok(Self(raw.to_owned()));
            }
            return Err(invalid());
        }
        let mut graphemes = raw.graphemes(true);
        let (Some(cluster), None) = (graphemes.next(), graphemes.next()) else {
            return Err(invalid());
        };
        // Not merely "something outside ASCII": `€`, a lone combining mark or an invisible
        // zero-width space would otherwise pass for a reaction.
        if crate::emoji::is_emoji(cluster) { Ok(Self(cluster.to_owned())) } else { Err(invalid()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message's reactions grouped by emoji, as embedded in the message for one viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionSummary {
    pub emoji: Emoji,
    pub count: i64,
    pub me: bool,
}

/// The full reaction listing, with who reacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionDetail {
    pub emoji: Emoji,
    pub count: i64,
    pub users: Vec<String>,
    pub me: bool,
}

/// A message as readers see it. A deleted message stays as a tombstone with empty content,
/// so threads and the channel's `seq` keep no holes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub content: String,
    pub user_id: UserId,
    pub channel_id: ChannelId,
    #[serde(with = "crate::timestamp")]
    pub created_at: OffsetDateTime,
    pub seq: i64,
    pub parent_id: Option<MessageId>,
    pub reply_count: i64,
    #[serde(with = "crate::timestamp::option")]
    pub edited_at: Option<OffsetDateTime>,
    pub deleted: bool,
    pub user: UserSummary,
    pub attachments: Vec<FileMeta>,
    pub reactions: Vec<ReactionSummary>,
    /// Readers of the channel the text names with `@username` (events logged before
    /// mentions existed have none).
    #[serde(default)]
    pub mentions: Vec<MentionedUser>,
    /// The text says `@channel` or `@here`.
    #[serde(default)]
    pub mentions_everyone: bool,
    #[serde(default)]
    pub pinned: bool,
    /// Set when an incoming webhook posted the message (`user` is then the webhook's own
    /// account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::integrations::WebhookTag>,
}

/// `{id, username}` of a user a message mentions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionedUser {
    pub id: UserId,
    pub username: crate::user::Username,
}

/// A thread is one level deep: a reply must answer a live top-level message of the same
/// channel.
pub fn check_reply_parent(parent: &Message, channel_id: ChannelId) -> Result<(), DomainError> {
    if parent.channel_id != channel_id {
        return Err(DomainError::invalid("parent_id", "must be a message of the same channel"));
    }
    if parent.parent_id.is_some() {
        return Err(DomainError::invalid("parent_id", "replies cannot be replied to: threads are one level deep"));
    }
    if parent.deleted {
        return Err(DomainError::invalid("parent_id", "the message was deleted"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_rules() {
        assert_eq!(MessageContent::parse("  Hello, world!  ", false).unwrap().as_str(), "Hello, world!");
        assert!(MessageContent::parse("   ", false).is_err());
        assert!(MessageContent::parse("", true).is_ok());
        assert!(MessageContent::parse(&"x".repeat(4000), false).is_ok());
        assert!(MessageContent::parse(&"x".repeat(4001), false).is_err());
        assert!(MessageContent::parse(&"é".repeat(4000), false).is_ok(), "counts characters, not bytes");
        assert!(MessageContent::parse("nul\0byte", false).is_err());
        assert!(MessageContent::parse("'; DROP TABLE messages; --", false).is_ok());
    }

    #[test]
    fn emoji_rules() {
        for (input, ok) in [
            ("👍", true),
            ("👍🏽", true),
            ("🇫🇷", true),
            ("👨‍👩‍👧", true),
            ("❤️", true),
            ("1️⃣", true),
            (":thumbsup:", true),
            (":+1:", true),
            (":a:", true),
            ("::", false),
            (":Thumbs:", false),
            (&format!(":{}:", "a".repeat(33)), false),
            ("👍👍", false),
            ("a", false),
            ("1", false),
            ("é", false),
            ("", false),
            (" ", false),
            ("€", false),
            ("\u{200B}", false),
            ("\u{202E}", false),
            ("\u{301}", false),
        ] {
            assert_eq!(Emoji::parse(input).is_ok(), ok, "input {input:?}");
        }
    }
}
