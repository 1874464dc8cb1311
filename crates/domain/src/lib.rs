//! The chat server's domain: identifiers, validated values, records and the rules that
//! decide who may do what.
//!
//! Architecture Invariant: this crate does no I/O, has no async runtime and knows no web
//! framework or database, so any service may depend on it alone. Values enter it through
//! `parse` constructors ("parse, don't validate"): a [`Username`] in hand is a valid username.

pub mod access;
pub mod audit;
pub mod channel;
pub mod emoji;
pub mod error;
pub mod events;
pub mod file;
pub mod ids;
pub mod integrations;
pub mod mention;
pub mod message;
pub mod pagination;
pub mod posting;
pub mod text;
pub mod timestamp;
pub mod user;

pub use access::{Action, Denied, Role, authorize, may_delete_message, may_moderate};
pub use audit::{AuditAction, AuditEntry, AuditReason, AuditRecord};
pub use channel::{Channel, ChannelDescription, ChannelKind, ChannelName, ChannelSummary, MemberRole};
pub use error::DomainError;
pub use events::{ChannelEvent, Committed, EventBody, EventKind, EventSink, MembershipChange, MentionNotice};
pub use file::{FileMeta, ImageInfo, sanitize_filename};
pub use ids::{ApiTokenId, ChannelId, FileId, MessageId, UserId, WebhookId};
pub use integrations::{ApiToken, TokenLifetime, TokenName, Webhook, WebhookTag};
pub use message::{Emoji, MentionedUser, Message, MessageContent, ReactionDetail, ReactionSummary};
pub use pagination::{Cursor, Limit, Page};
pub use posting::NewMessage;
pub use text::{SearchText, strip_invisible};
pub use user::{DisplayName, Email, Password, User, UserSummary, Username};
