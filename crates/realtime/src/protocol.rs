//! The WebSocket wire protocol: what clients send ([`ClientFrame`]) and what the server
//! sends ([`ServerFrame`] and the pre-encoded channel events). Every frame is JSON text in
//! the envelope of docs/websocket.md, `{"type": "...", "data": {...}}`.

use std::collections::HashMap;
use std::sync::Arc;

use domain::{ChannelId, FileId, MessageId, UserId, UserSummary};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wire::Resume;

/// The largest frame a client may send; bigger ones close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Ping,
    Typing { channel_id: ChannelId },
    Message(SendMessage),
    Resume { channels: HashMap<ChannelId, i64> },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub channel_id: ChannelId,
    pub content: String,
    pub parent_id: Option<MessageId>,
    pub nonce: Option<String>,
    #[serde(default)]
    pub attachment_ids: Vec<FileId>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct TypingData {
    channel_id: ChannelId,
}

/// Why a client frame was refused; sent back as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub detail: String,
}

impl ClientFrame {
    /// Parses a text frame. Unknown types and malformed data are errors the connection
    /// survives.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let envelope: Envelope = serde_json::from_str(text)
            .map_err(|e| FrameError { code: "invalid_frame", detail: format!("not a JSON frame: {e}") })?;
        let bad_data =
            |e: serde_json::Error| FrameError { code: "invalid_frame", detail: format!("{}: {e}", envelope.kind) };
        match envelope.kind.as_str() {
            "ping" => Ok(Self::Ping),
            "typing" => serde_json::from_value::<TypingData>(envelope.data.clone())
                .map(|d| Self::Typing { channel_id: d.channel_id })
                .map_err(bad_data),
            "message" => {
                serde_json::from_value::<SendMessage>(envelope.data.clone()).map(Self::Message).map_err(bad_data)
            }
            "resume" => serde_json::from_value::<Resume>(envelope.data.clone())
                .map(|d| Self::Resume { channels: d.channels })
                .map_err(bad_data),
            other => Err(FrameError { code: "unknown_frame", detail: format!("unknown frame type {other:?}") }),
        }
    }
}

/// Frames the server makes per connection (the channel events are encoded once and shared,
/// see [`encode_event`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Ready { session_id: String, user: &'a UserSummary, channels: Vec<ReadyChannel> },
    Ack { nonce: Option<String>, id: MessageId, seq: i64 },
    Error { code: &'a str, detail: &'a str },
    Pong {},
    ResyncRequired { channel_id: ChannelId },
    Typing { channel_id: ChannelId, user: &'a UserSummary },
    Presence { user_id: UserId, username: &'a str, online: bool },
}

impl ServerFrame<'_> {
    pub fn encode(&self) -> Arc<str> {
        serde_json::to_string(self).map_or_else(|_| Arc::from("{}"), Arc::from)
    }
}

/// `ready`'s channels (like the client's `resume`) are a shape the client crate reads too,
/// so it is defined once, in `wire`.
pub use wire::ReadyChannel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_frame() {
        let channel = ChannelId::new();
        assert_eq!(ClientFrame::parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(ClientFrame::parse(r#"{"type":"ping","data":{}}"#), Ok(ClientFrame::Ping));
        assert_eq!(
            ClientFrame::parse(&format!(r#"{{"type":"typing","data":{{"channel_id":"{channel}"}}}}"#)),
            Ok(ClientFrame::Typing { channel_id: channel })
        );
        let message = ClientFrame::parse(&format!(
            r#"{{"type":"message","data":{{"channel_id":"{channel}","content":"hi","nonce":"n1"}}}}"#
        ))
        .unwrap();
        assert!(
            matches!(message, ClientFrame::Message(SendMessage { ref content, ref nonce, .. }) if content == "hi" && nonce.as_deref() == Some("n1"))
        );
        let resume =
            ClientFrame::parse(&format!(r#"{{"type":"resume","data":{{"channels":{{"{channel}":7}}}}}}"#)).unwrap();
        assert_eq!(resume, ClientFrame::Resume { channels: HashMap::from([(channel, 7)]) });
    }

    #[test]
    fn refuses_garbage_with_a_code() {
        assert_eq!(ClientFrame::parse("not json").unwrap_err().code, "invalid_frame");
        assert_eq!(ClientFrame::parse(r#"{"type":"dance"}"#).unwrap_err().code, "unknown_frame");
        assert_eq!(ClientFrame::parse(r#"{"type":"typing","data":{}}"#).unwrap_err().code, "invalid_frame");
        assert_eq!(
            ClientFrame::parse(r#"{"type":"message","data":{"channel_id":"x"}}"#).unwrap_err().code,
            "invalid_frame"
        );
    }

    #[test]
    fn server_frames_use_the_envelope() {
        let frame = ServerFrame::Pong {}.encode();
        assert_eq!(&*frame, r#"{"type":"pong","data":{}}"#);
        let channel = ChannelId::new();
        let frame = ServerFrame::ResyncRequired { channel_id: channel }.encode();
        assert_eq!(&*frame, format!(r#"{{"type":"resync_required","data":{{"channel_id":"{channel}"}}}}"#));
    }
}
