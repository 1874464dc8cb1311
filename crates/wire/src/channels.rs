//! Channels, DMs and group DMs (docs/api.md sections 4 and 11).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// `POST /api/channels`. (A plain comment: see the crate's note on doc comments.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateChannelRequest {
    #[schema(example = "general")]
    pub name: String,
    #[schema(example = "General discussion")]
    pub description: Option<String>,
    #[serde(default)]
    pub is_private: bool,
}

/// A channel or DM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelDto {
    #[schema(value_type = String, format = Uuid, example = "123e4567-e89b-12d3-a456-426614174000")]
    pub id: uuid::Uuid,
    #[schema(example = "general")]
    pub name: String,
    #[schema(example = "General discussion")]
    pub description: Option<String>,
    #[schema(value_type = String, format = Uuid)]
    pub owner_id: uuid::Uuid,
    #[schema(example = "2025-01-09T12:00:00.000Z")]
    pub created_at: String,
    pub is_private: bool,
    /// `channel`, `dm` or `group_dm`.
    #[schema(example = "channel")]
    pub kind: String,
    pub member_count: i64,
}

impl From<&domain::Channel> for ChannelDto {
    fn from(channel: &domain::Channel) -> Self {
        Self {
            id: channel.id.as_uuid(),
            name: channel.name.as_str().to_owned(),
            description: channel.description.clone(),
            owner_id: channel.owner_id.as_uuid(),
            created_at: domain::timestamp::format(channel.created_at),
            is_private: channel.is_private,
            kind: channel.kind.as_str().to_owned(),
            member_count: channel.member_count,
        }
    }
}

/// One of the caller's channels, with read state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MyChannel {
    #[serde(flatten)]
    pub channel: ChannelDto,
    /// The channel's newest event seq.
    pub last_seq: i64,
    pub last_read_seq: i64,
    /// Other users' messages after the read marker.
    pub unread_count: i64,
    /// Messages after the read marker that mention the caller (by name, `@channel` or
    /// `@here`).
    pub mention_count: i64,
}
