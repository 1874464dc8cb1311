//! Response shapes shared by several resources. Request bodies live next to their handlers.

use domain::{Cursor, Limit, User, UserSummary};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?limit=&after=` of every listing paged by a cursor (`after` is the previous page's
/// `next_cursor`).
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
}

impl PageQuery {
    /// The limit and the cursor, for listings keyed by an id.
    pub fn parse(&self) -> Result<(Limit, Option<uuid::Uuid>), crate::error::ApiError> {
        let (limit, after) = self.parse_text()?;
        let after = after
            .map(|key| {
                key.parse::<uuid::Uuid>().map_err(|_| domain::DomainError::invalid("after", "is not a valid cursor"))
            })
            .transpose()?;
        Ok((limit, after))
    }

    /// The limit and the cursor's key as text, for listings keyed otherwise (by username).
    pub fn parse_text(&self) -> Result<(Limit, Option<String>), crate::error::ApiError> {
        let limit = Limit::parse(self.limit)?;
        let after = self.after.as_deref().map(|raw| Cursor::decode(raw, "after")).transpose()?;
        Ok((limit, after))
    }
}

/// A page of a listing. Pass `next_cursor` back as `after` (or `before` for message
/// history) to get the next page; `null` means there is none.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says whether there is
    /// more, and the cursor is made from the last row kept.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: i64,
        cursor_of: impl Fn(&R) -> String,
        into: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor =
            if more { rows.last().map(|r| domain::Cursor::encode(&cursor_of(r)).into_string()) } else { None };
        Self { items: rows.into_iter().map(into).collect(), next_cursor }
    }
}

impl Page<UserDto> {
    /// A page of users as others see them, each `online` as `presence` says.
    pub fn of_users(
        rows: Vec<User>,
        limit: i64,
        presence: &realtime::Presence,
        cursor_of: impl Fn(&User) -> String,
    ) -> Self {
        Self::from_rows(rows, limit, cursor_of, |u| UserDto::public(&u, presence.is_online(u.id)))
    }
}

/// A user as others see them; `email` only on your own account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(example = "johndoe")]
    pub username: String,
    #[schema(example = "John Doe")]
    pub display_name: String,
    #[schema(example = "2025-01-09T12:00:00.000Z")]
    pub created_at: String,
    /// True while the user has a live WebSocket connection on any node.
    pub online: bool,
    /// A bot account (it signs in with API tokens only).
    pub is_bot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "john@example.com")]
    pub email: Option<String>,
    /// In a channel's members list: `owner`, `moderator` or `member`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "member")]
    pub role: Option<&'static str>,
}

impl UserDto {
    pub fn public(user: &User, online: bool) -> Self {
        Self {
            id: user.id.as_uuid(),
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            created_at: domain::timestamp::format(user.created_at),
            online,
            is_bot: user.is_bot,
            email: None,
            role: None,
        }
    }

    /// A member as a channel's members list shows them.
    pub fn member(user: &User, online: bool, role: domain::MemberRole) -> Self {
        Self { role: Some(role.as_str()), ..Self::public(user, online) }
    }

    pub fn own(user: &User, online: bool) -> Self {
        Self { email: Some(user.email.as_str().to_owned()), ..Self::public(user, online) }
    }
}

/// `{id, username, display_name}` as embedded in messages and events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserSummaryDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    pub username: String,
    pub display_name: String,
}

impl From<&UserSummary> for UserSummaryDto {
    fn from(user: &UserSummary) -> Self {
        Self {
            id: user.id.as_uuid(),
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
        }
    }
}

/// A channel or DM.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
    pub kind: &'static str,
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
            kind: channel.kind.as_str(),
            member_count: channel.member_count,
        }
    }
}

/// An uploaded file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(example = "report.pdf")]
    pub filename: String,
    /// Sniffed from the bytes, not taken from the client.
    #[schema(example = "application/pdf")]
    pub content_type: String,
    pub size: i64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub created_at: String,
    #[schema(value_type = String, format = Uuid)]
    pub uploader_id: uuid::Uuid,
    /// Images only, once looked at (shortly after the upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Images only, once their thumbnail (fits 400×400) is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/api/files/123e4567-e89b-12d3-a456-426614174000/thumbnail")]
    pub thumbnail_url: Option<String>,
}

impl From<&domain::FileMeta> for FileDto {
    fn from(file: &domain::FileMeta) -> Self {
        Self {
            id: file.id.as_uuid(),
            filename: file.filename.clone(),
            content_type: file.content_type.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            created_at: domain::timestamp::format(file.created_at),
            uploader_id: file.uploader_id.as_uuid(),
            width: file.image.map(|i| i.width),
            height: file.image.map(|i| i.height),
            thumbnail_url: file.thumbnail_url(),
        }
    }
}

/// A reaction as embedded in a message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionSummaryDto {
    #[schema(example = "👍")]
    pub emoji: String,
    pub count: i64,
    /// Whether the caller is among those who reacted.
    pub me: bool,
}

/// A message. Deleted messages stay as tombstones: `deleted: true`, empty content.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MentionDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(example = "alice")]
    pub username: String,
}

/// Which webhook posted a message and the name it shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
