//! The rules every way of posting a message shares (REST and WebSocket frames alike).

use std::collections::HashSet;

use crate::error::DomainError;
use crate::ids::{ChannelId, FileId, MessageId, UserId};
use crate::message::MessageContent;

/// Attachments per message.
pub const MAX_ATTACHMENTS: usize = 10;
/// Nonces longer than this are refused.
pub const MAX_NONCE_LEN: usize = 128;

/// A message to post, its content and attachments already checked. Whether the author may
/// post in the channel is decided later, under the channel's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub channel_id: ChannelId,
    pub author: UserId,
    pub content: MessageContent,
    pub parent_id: Option<MessageId>,
    pub attachment_ids: Vec<FileId>,
    pub nonce: Option<String>,
    /// For a webhook's post: the name the message shows (see [`NewMessage::from_webhook`]).
    pub webhook_username: Option<String>,
}

impl NewMessage {
    /// Content 1–4000 characters (empty allowed with attachments), at most 10 distinct
    /// attachments, a nonce of 1–128 characters without NUL.
    pub fn parse(
        channel_id: ChannelId,
        author: UserId,
        content: &str,
        parent_id: Option<MessageId>,
        attachment_ids: Vec<FileId>,
        nonce: Option<String>,
    ) -> Result<Self, DomainError> {
        if attachment_ids.len() > MAX_ATTACHMENTS {
            return Err(DomainError::invalid("attachment_ids", format!("at most {MAX_ATTACHMENTS} attachments")));
        }
        let mut seen = HashSet::new();
        if !attachment_ids.iter().all(|id| seen.insert(*id)) {
            return Err(DomainError::invalid("attachment_ids", "must not repeat a file"));
        }
        if let Some(nonce) = &nonce
            && (nonce.is_empty() || nonce.chars().count() > MAX_NONCE_LEN || nonce.contains('\0'))
        {
            return Err(DomainError::invalid("nonce", format!("must be 1 to {MAX_NONCE_LEN} characters")));
        }
        let content = MessageContent::parse(content, !attachment_ids.is_empty())?;
        Ok(Self { channel_id, author, content, parent_id, attachment_ids, nonce, webhook_username: None })
    }

    /// Marks the message as a webhook's, showing `username`. The author must be the
    /// webhook's own account.
    #[must_use]
    pub fn from_webhook(self, username: String) -> Self {
        Self { webhook_username: Some(username), ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content: &str, files: usize, nonce: Option<&str>) -> Result<NewMessage, &'static str> {
        let ids = (0..files).map(|_| FileId::new()).collect();
        NewMessage::parse(ChannelId::new(), UserId::new(), content, None, ids, nonce.map(str::to_owned))
            .map_err(|e| e.field)
    }

    /// Content, number of attachments, nonce, and the field refused (if any).
    type Case<'a> = (&'a str, usize, Option<&'a str>, Result<(), &'a str>);

    #[test]
    fn the_shared_posting_rules() {
        let long_nonce = "n".repeat(MAX_NONCE_LEN + 1);
        let table: &[Case] = &[
            ("hello", 0, None, Ok(())),
            ("", 1, None, Ok(())),
            ("", 0, None, Err("content")),
            ("   ", 0, None, Err("content")),
            ("hi", MAX_ATTACHMENTS, None, Ok(())),
            ("hi", MAX_ATTACHMENTS + 1, None, Err("attachment_ids")),
            ("hi", 0, Some("n-1"), Ok(())),
            ("hi", 0, Some(""), Err("nonce")),
            ("hi", 0, Some("a\0b"), Err("nonce")),
            ("hi", 0, Some(&long_nonce), Err("nonce")),
        ];
        for (content, files, nonce, expected) in table {
            assert_eq!(parse(content, *files, *nonce).map(|_| ()), *expected, "{content:?} {files} {nonce:?}");
        }
    }

    #[test]
    fn a_file_is_attached_once() {
        let file = FileId::new();
        let refused = NewMessage::parse(ChannelId::new(), UserId::new(), "x", None, vec![file, file], None);
        assert_eq!(refused.map_err(|e| e.field), Err("attachment_ids"));
    }
}
