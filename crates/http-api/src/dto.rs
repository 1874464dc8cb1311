//! Response shapes shared by several resources. They are defined in `wire`, which the
//! client crate shares, so the server's DTOs and the client's are one set of types; what
//! needs the server's own state (presence) is added here. Request bodies live next to their
//! handlers (or in `wire`, when the client sends them).

use domain::User;
pub use wire::{
    ChannelDto, FileDto, MentionDto, MessageDto, Page, PageQuery, ReactionSummaryDto, UserDto, UserSummaryDto,
    WebhookTagDto,
};

/// A page of users as others see them, each `online` as `presence` says.
pub fn page_of_users(
    rows: Vec<User>,
    limit: i64,
    presence: &realtime::Presence,
    cursor_of: impl Fn(&User) -> String,
) -> Page<UserDto> {
    Page::from_rows(rows, limit, cursor_of, |u| UserDto::public(&u, presence.is_online(u.id)))
}
