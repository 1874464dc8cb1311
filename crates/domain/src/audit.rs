//! The moderation audit log (docs/api.md section 11): who did what to whom in a channel,
//! and why, when they said.

use time::OffsetDateTime;

use crate::error::DomainError;
use crate::ids::{ChannelId, MessageId};
use crate::user::UserSummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Ban,
    Unban,
    Kick,
    RoleChange,
    Transfer,
    /// A message deleted by someone other than its author.
    MessageDeleted,
}

impl AuditAction {
    pub const ALL: [Self; 6] =
        [Self::Ban, Self::Unban, Self::Kick, Self::RoleChange, Self::Transfer, Self::MessageDeleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ban => "ban",
            Self::Unban => "unban",
            Self::Kick => "kick",
            Self::RoleChange => "role_change",
            Self::Transfer => "transfer",
            Self::MessageDeleted => "message_deleted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

/// The `X-Audit-Reason` a moderator gave: 1–512 characters after trimming, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReason(String);

impl AuditReason {
    pub const MAX_CHARS: usize = 512;

    /// `None` for a blank reason.
    pub fn parse(raw: &str) -> Result<Option<Self>, DomainError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::invalid("X-Audit-Reason", "must be at most 512 characters long"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid("X-Audit-Reason", "must not contain control characters"));
        }
        Ok(Some(Self(crate::text::strip_invisible(trimmed))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a moderation action records, besides its time and id.
#[derive(Debug, Clone, Copy)]
pub struct AuditRecord<'a> {
    pub channel_id: ChannelId,
    pub action: AuditAction,
    pub actor: crate::ids::UserId,
    pub target_user: Option<crate::ids::UserId>,
    pub target_message: Option<MessageId>,
    pub reason: Option<&'a AuditReason>,
}

/// One entry of a channel's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: uuid::Uuid,
    pub action: AuditAction,
    pub actor: UserSummary,
    pub target_user: Option<UserSummary>,
    pub target_message_id: Option<MessageId>,
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(AuditReason::parse("  spam  ").unwrap().unwrap().as_str(), "spam");
        assert_eq!(AuditReason::parse("   ").unwrap(), None);
        assert!(AuditReason::parse(&"r".repeat(512)).is_ok());
        assert!(AuditReason::parse(&"r".repeat(513)).is_err());
        assert!(AuditReason::parse("a\u{0}b").is_err());
        assert_eq!(AuditReason::parse("ok\u{202e}txt").unwrap().unwrap().as_str(), "oktxt");
    }

    #[test]
    fn actions_round_trip() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
    }
}
