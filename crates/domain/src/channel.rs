//! Channels and direct-message conversations (docs/api.md section 4).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::DomainError;
use crate::ids::{ChannelId, UserId};

/// 1–80 characters after trimming, no control characters. Unique case-insensitively among
/// non-DM channels; [`ChannelName::key`] is the folded form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if !(1..=80).contains(&len) {
            return Err(DomainError::invalid("name", "must be 1 to 80 characters long after trimming"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid("name", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name a DM gets: both usernames, ordered, so it reads the same to both sides.
    pub fn for_dm(a: &str, b: &str) -> Self {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        Self(format!("dm:{first}:{second}"))
    }

    /// The name a group DM gets: its members' display names, joined, cut to 80 characters.
    pub fn for_group<'a>(display_names: impl IntoIterator<Item = &'a str>) -> Self {
        let joined = display_names.into_iter().collect::<Vec<_>>().join(", ");
        let clean: String = joined.chars().filter(|c| !c.is_control()).collect();
        let name = if clean.chars().count() > 80 {
            let mut cut: String = clean.chars().take(79).collect();
            cut.push('…');
            cut
        } else {
            clean
        };
        Self(name.trim().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Up to 1,000 characters; trimmed; empty means none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelDescription(String);

impl ChannelDescription {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > 1000 {
            return Err(DomainError::invalid("description", "must be at most 1000 characters long"));
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(DomainError::invalid("description", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Channel,
    Dm,
    /// A conversation of 3 to 9 people, fixed by who is in it.
    GroupDm,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Channel => "channel",
            Self::Dm => "dm",
            Self::GroupDm => "group_dm",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "channel" => Some(Self::Channel),
            "dm" => Some(Self::Dm),
            "group_dm" => Some(Self::GroupDm),
            _ => None,
        }
    }
}

/// A member's role in a channel, as members lists show it. Only `Moderator` and `Member`
/// are stored with the membership; the owner is the channel's `owner_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Owner,
    Moderator,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Moderator => "moderator",
            Self::Member => "member",
        }
    }

    /// A stored role (`moderator` or `member`); the owner is never stored.
    pub fn parse_stored(raw: &str) -> Option<Self> {
        match raw {
            "moderator" => Some(Self::Moderator),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// Members a group DM has, the caller included.
pub const GROUP_DM_MEMBERS: std::ops::RangeInclusive<usize> = 3..=9;

/// A channel as every reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    pub name: ChannelName,
    pub description: Option<String>,
    pub owner_id: UserId,
    #[serde(with = "crate::timestamp")]
    pub created_at: OffsetDateTime,
    pub is_private: bool,
    pub kind: ChannelKind,
    pub member_count: i64,
}

impl Channel {
    /// Anyone who is not banned may find and read it.
    pub fn is_public(&self) -> bool {
        self.kind == ChannelKind::Channel && !self.is_private
    }
}

/// A channel in the caller's own list, with where the caller has read up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub channel: Channel,
    pub last_seq: i64,
    pub last_read_seq: i64,
    pub unread_count: i64,
    /// Messages above the read marker that mention the user.
    pub mention_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_name_rules() {
        for (input, ok) in [
            ("general", true),
            ("  general  ", true),
            ("", false),
            ("   ", false),
            (&"n".repeat(80) as &str, true),
            (&"n".repeat(81), false),
            ("tab\there", false),
        ] {
            assert_eq!(ChannelName::parse(input).is_ok(), ok, "input {input:?}");
        }
        assert_eq!(ChannelName::parse(" General ").unwrap().key(), "general");
    }

    #[test]
    fn dm_names_do_not_depend_on_who_asks() {
        assert_eq!(ChannelName::for_dm("bob", "alice"), ChannelName::for_dm("alice", "bob"));
    }

    #[test]
    fn group_names_join_display_names_and_fit() {
        assert_eq!(ChannelName::for_group(["Ann", "Bob", "Cy"]).as_str(), "Ann, Bob, Cy");
        let long = ChannelName::for_group(["x".repeat(50).as_str(), "y".repeat(50).as_str()]);
        assert_eq!(long.as_str().chars().count(), 80);
        assert!(long.as_str().ends_with('…'));
        assert!(ChannelName::parse(long.as_str()).is_ok());
    }

    #[test]
    fn description_rules() {
        assert!(ChannelDescription::parse("General discussion").is_ok());
        assert!(ChannelDescription::parse(&"d".repeat(1001)).is_err());
        assert!(ChannelDescription::parse("line\nbreak").is_ok());
        assert!(ChannelDescription::parse("nul\0").is_err());
    }
}
