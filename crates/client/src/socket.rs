//! The WebSocket side: one connection at a time, replaced with back-off when it drops, and
//! resumed from the last seq delivered per channel, so nothing is lost or doubled.

use std::collections::HashMap;
use std::time::Duration;

use domain::ChannelId;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wire::MessageDto;

use crate::Error;

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The first wait before reconnecting; it doubles per failed attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
    stream: Option<Stream>,
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
                    if frame.is_some_and(|f| f.code == CloseCode::Library(4001)) {
                        self.stream = None;
                        return Err(Error::Unauthorized);
                    }
                    self.stream = None;
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
        let url = format!("{}?token={}", self.url, self.token);
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut stream, _)) => {
                self.failures = 0;
                if !self.last_seq.is_empty() {
                    let resume = json!({"type": "resume", "data": wire::Resume { channels: self.last_seq.clone() }});
                    // A failed send shows up as a dropped stream on the next read.
                    let _ = stream.send(Frame::Text(resume.to_string().into())).await;
                }
                self.stream = Some(stream);
                Ok(())
            }
            Err(tungstenite::Error::Http(response)) if response.status().as_u16() == 401 => Err(Error::Unauthorized),
            Err(_) => {
                self.failures = self.failures.saturating_add(1);
                Ok(())
            }
        }
    }

    /// Reads one frame: channel events the socket already delivered are dropped, and the
    /// channels of `ready` start from their newest seq the first time they are seen.
    fn accept(&mut self, text: &str) -> Option<Event> {
        let frame: Value = serde_json::from_str(text).ok()?;
        let kind = frame["type"].as_str()?.to_owned();
        let data = frame.get("data").cloned().unwrap_or(Value::Null);
        if kind == "ready" {
            for channel in data["channels"].as_array().into_iter().flatten() {
                if let (Some(id), Some(seq)) =
                    (channel["id"].as_str().and_then(|id| id.parse().ok()), channel["last_seq"].as_i64())
                {
                    self.last_seq.entry(id).or_insert(seq);
                }
            }
            return Some(Event::Other { kind, data });
        }
        let channel = data["channel_id"].as_str().and_then(|id| id.parse::<ChannelId>().ok());
        if let (Some(channel), Some(seq)) = (channel, data["seq"].as_i64()) {
            let last = self.last_seq.entry(channel).or_insert(seq - 1);
            if seq <= *last {
                return None;
            }
            *last = seq;
        }
        if kind == "message" {
            return serde_json::from_value::<MessageDto>(data.clone())
                .ok()
                .map(|message| Event::Message(Box::new(message)))
                .or(Some(Event::Other { kind, data }));
        }
        Some(Event::Other { kind, data })
    }
}
