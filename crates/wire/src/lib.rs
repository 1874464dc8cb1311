//! The shapes that cross the wire between the chat server and its clients, defined once for
//! both sides: the REST request and response bodies (with their OpenAPI schemas, which the
//! server serves) and the WebSocket frames a client reads and writes.
//!
//! The server serializes these types and documents them (`utoipa::ToSchema`); the client
//! crate (`chat-client`) deserializes the very same types, so the two cannot drift apart: a
//! field the server adds or renames changes for the client in the same commit. Conversions from `domain`'s records live here too (`From<&domain::Message> for
//! MessageDto`, ...), because they decide the wire shape.
//!
//! Doc comments on these types and their fields are the OpenAPI document's descriptions
//! (utoipa reads them), so adding one changes what the server serves; the request and token
//! types that had none in the document carry plain `//` comments instead.
//!
//! This crate depends on `domain`, serde and utoipa's derives only: no web framework, no
//! runtime, no database, so a bot or tool built on the client pulls in none of the server.
//!
//! ```
//! let json = r#"{"access_token":"eyJ...","token_type":"bearer","expires_in":1800}"#;
//! let token: wire::TokenResponse = serde_json::from_str(json).unwrap();
//! assert_eq!(token.expires_in, 1800);
//! ```

mod auth;
mod channels;
mod error;
mod files;
mod messages;
mod page;
mod socket;
mod users;

pub use auth::{LoginRequest, RegisterRequest, TokenResponse};
pub use channels::{ChannelDto, CreateChannelRequest, MyChannel};
pub use error::{ErrorBody, FieldError};
pub use files::FileDto;
pub use messages::{MentionDto, MessageDto, PostMessageRequest, ReactionSummaryDto, WebhookTagDto};
pub use page::{Page, PageQuery};
pub use socket::{ReadyChannel, Resume};
pub use users::{UserDto, UserSummaryDto};

#[cfg(test)]
mod tests;
