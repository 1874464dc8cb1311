//! Users as others see them (docs/api.md section 3).

use domain::{User, UserSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as others see them; `email` only on your own account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    pub role: Option<String>,
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
        Self { role: Some(role.as_str().to_owned()), ..Self::public(user, online) }
    }

    pub fn own(user: &User, online: bool) -> Self {
        Self { email: Some(user.email.as_str().to_owned()), ..Self::public(user, online) }
    }
}

/// `{id, username, display_name}` as embedded in messages and events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
