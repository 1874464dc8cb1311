//! The WebSocket side: one connection at a time, replaced with back-off when it drops, and
//! resumed from the last seq delivered per channel, so nothing is lost or doubled.

use std::collections::HashMap;
use std::time::Duration;

use domain::ChannelId;
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Frame;
use wire::MessageDto;

use crate::Error;
use crate::connect::{ConnectOptions, Ws, connect};
use crate::frame;

/// The first wait before reconnecting; it doubles per failed attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The close code of a revoked or expired token (docs/websocket.md).
const TOKEN_REVOKED: u16 = 4001;

/// What the server sent, as far as a client needs to tell it apart.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new message in a channel the user belongs to.
    Message(Box<MessageDto>),
    /// Any other frame (`ready`, `typing`, `member_joined`, `resync_required`, ...) with its
    /// `data`.
    Other { kind: String, data: Value },
}

/// A WebSocket that reconnects and resumes by itself. Channel events come out once each, in
/// seq order per channel, across reconnects: after a reconnect it asks the server to
/// `resume` every channel from the last seq it delivered, and drops anything it has already
/// delivered.
pub struct Socket {
    url: String,
    token: String,
    stream: Option<Ws>,
    last_seq: HashMap<ChannelId, i64>,
    failures: u32,
}

impl Socket {
    pub(crate) fn new(url: String, token: String) -> Self {
        Self { url, token, stream: None, last_seq: HashMap::new(), failures: 0 }
    }

    /// Starts `channel` after `seq` (the newest message read over REST, say), so the first
    /// connection replays what came after it.
    pub fn resume_from(&mut self, channel: ChannelId, seq: i64) {
        self.last_seq.insert(channel, seq);
    }

    /// The last seq delivered per channel.
    pub fn positions(&self) -> &HashMap<ChannelId, i64> {
        &self.last_seq
    }

    /// The next event, connecting or reconnecting as needed. Fails only when the token is
    /// refused (`Error::Unauthorized`): any other trouble is a reconnect.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.connect().await?;
                continue;
            };
            match stream.next().await {
                Some(Ok(Frame::Text(text))) => {
                    if let Some(event) = self.accept(&text) {
                        return Ok(event);
                    }
                }
                Some(Ok(Frame::Close(frame))) => {
                    self.stream = None;
                    if frame.is_some_and(|f| u16::from(f.code) == TOKEN_REVOKED) {
                        return Err(Error::Unauthorized);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => self.stream = None,
            }
        }
    }

    /// Connects, waiting first if earlier attempts failed, and resumes what it has seen.
    async fn connect(&mut self) -> Result<(), Error> {
        if self.failures > 0 {
            let exponent = self.failures.min(16) - 1;
            tokio::time::sleep(FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF)).await;
        }
        let opened = match Url::parse_with_params(&self.url, [("token", &self.token)]) {
            Ok(url) => connect(&url, ConnectOptions::default()).await,
            Err(error) => Err(Error::connect(format!("{} is not a URL: {error}", self.url), None)),
        };
        match opened {
            Ok(mut stream) => {
                self.failures = 0;
                // Also with nothing to resume (an empty `resume`): the server holds live
                // events after `ready` until the client's first frame or 250 ms, and a
                // silent first connection would get its first events that much later.
                let resume = frame::resume(&wire::Resume { channels: self.last_seq.clone() });
                // A failed send shows up as a dropped stream on the next read.
                let _ = stream.send(Frame::text(resume)).await;
                self.stream = Some(stream);
                Ok(())
            }
            Err(Error::Refused(401)) => Err(Error::Unauthorized),
            Err(_) => {
                self.failures = self.failures.saturating_add(1);
                Ok(())
            }
        }
    }

    /// Reads one frame: channel events the socket already delivered are dropped, and the
    /// channels of `ready` start from their newest seq the first time they are seen.
    fn accept(&mut self, text: &str) -> Option<Event> {
        let header = frame::Frame::parse(text).ok()?;
        let data = header.data.unwrap_or_default();
        if header.kind == "ready" {
            for channel in data.channels.unwrap_or_default() {
                if let (Ok(id), Some(seq)) = (channel.id.parse::<ChannelId>(), channel.last_seq) {
                    self.last_seq.entry(id).or_insert(seq as i64);
                }
            }
        } else if let (Ok(channel), Some(seq)) = (data.channel_id.parse::<ChannelId>(), data.seq) {
            let seq = seq as i64;
            let last = self.last_seq.entry(channel).or_insert(seq - 1);
            if seq <= *last {
                return None;
            }
            *last = seq;
        }
        if header.kind == "message"
            && let Ok(message) = serde_json::from_str::<Typed<MessageDto>>(text)
        {
            return Some(Event::Message(Box::new(message.data)));
        }
        let data = serde_json::from_str::<Typed<Option<Value>>>(text).ok().and_then(|frame| frame.data);
        let data = data.unwrap_or(Value::Null);
        Some(Event::Other { kind: header.kind.into_owned(), data })
    }
}

/// A frame's `data` read as `T`.
#[derive(Deserialize)]
struct Typed<T> {
    data: T,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures_util::StreamExt as _;
    use tokio::net::TcpListener;

    use super::*;

    /// The server holds live events after `ready` until the client's first frame or 250 ms,
    /// so a socket speaks first on every connection: an empty `resume` when it has nothing
    /// to resume.
    #[tokio::test]
    async fn a_first_connection_resumes_at_once_with_nothing_to_resume() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/api/ws", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let first = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await;
            first.expect("the client spoke first").unwrap().unwrap().into_text().unwrap().to_string()
        });
        let mut socket = Socket::new(url, "token".into());
        socket.connect().await.unwrap();
        let first: serde_json::Value = serde_json::from_str(&server.await.unwrap()).unwrap();
        assert_eq!(first["type"], "resume");
        assert_eq!(first["data"]["channels"], serde_json::json!({}));
    }
}
