//! Messages, threads, reactions and mentions (docs/api.md sections 5 and 11). A message
//! reads the same over REST and in the WebSocket's `message` frame.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::files::FileDto;
use crate::users::UserSummaryDto;

// `POST /api/chat/messages`. (A plain comment: see the crate's note on doc comments.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostMessageRequest {
    #[schema(example = "Hello, world!")]
    pub content: String,
    #[schema(value_type = String, format = Uuid, example = "123e4567-e89b-12d3-a456-426614174000")]
    pub channel_id: uuid::Uuid,
    /// Reply in the thread of this top-level message.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<uuid::Uuid>,
    /// Files you uploaded (at most 10).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub attachment_ids: Vec<uuid::Uuid>,
    /// Makes the send idempotent: the same nonce from you in this channel within 24 h
    /// returns the first message (200) and broadcasts nothing. `Idempotency-Key` works too.
    pub nonce: Option<String>,
}

/// A reaction as embedded in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReactionSummaryDto {
    #[schema(example = "👍")]
    pub emoji: String,
    pub count: i64,
    /// Whether the caller is among those who reacted.
    pub me: bool,
}

/// A message. Deleted messages stay as tombstones: `deleted: true`, empty content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageDto {
    #[schema(value_type = String, format = Uuid, example = "789e4567-e89b-12d3-a456-426614174000")]
    pub id: uuid::Uuid,
    #[schema(example = "Hello, world!")]
    pub content: String,
    #[schema(value_type = String, format = Uuid)]
    pub user_id: uuid::Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: uuid::Uuid,
    #[schema(example = "2025-01-09T12:01:00.000Z")]
    pub created_at: String,
    /// The channel event seq this message was created at.
    pub seq: i64,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<uuid::Uuid>,
    pub reply_count: i64,
    pub edited_at: Option<String>,
    pub deleted: bool,
    pub user: UserSummaryDto,
    pub attachments: Vec<FileDto>,
    pub reactions: Vec<ReactionSummaryDto>,
    /// Readers of the channel the text names with `@username`.
    pub mentions: Vec<MentionDto>,
    /// The text says `@channel` or `@here`.
    pub mentions_everyone: bool,
    pub pinned: bool,
    /// Set when an incoming webhook posted the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTagDto>,
}

/// `{id, username}` of a mentioned user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MentionDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(example = "alice")]
    pub username: String,
}

/// Which webhook posted a message and the name it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookTagDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(example = "CI")]
    pub name: String,
    #[schema(example = "ci-runner")]
    pub username: String,
}

impl From<&domain::Message> for MessageDto {
    fn from(message: &domain::Message) -> Self {
        Self {
            id: message.id.as_uuid(),
            content: message.content.clone(),
            user_id: message.user_id.as_uuid(),
            channel_id: message.channel_id.as_uuid(),
            created_at: domain::timestamp::format(message.created_at),
            seq: message.seq,
            parent_id: message.parent_id.map(|p| p.as_uuid()),
            reply_count: message.reply_count,
            edited_at: message.edited_at.map(domain::timestamp::format),
            deleted: message.deleted,
            user: (&message.user).into(),
            attachments: message.attachments.iter().map(FileDto::from).collect(),
            reactions: message
                .reactions
                .iter()
                .map(|r| ReactionSummaryDto { emoji: r.emoji.as_str().to_owned(), count: r.count, me: r.me })
                .collect(),
            mentions: message
                .mentions
                .iter()
                .map(|m| MentionDto { id: m.id.as_uuid(), username: m.username.as_str().to_owned() })
                .collect(),
            mentions_everyone: message.mentions_everyone,
            pinned: message.pinned,
            webhook: message.webhook.as_ref().map(|w| WebhookTagDto {
                id: w.id.as_uuid(),
                name: w.name.clone(),
                username: w.username.clone(),
            }),
        }
    }
}
