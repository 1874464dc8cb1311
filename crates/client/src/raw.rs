//! A WebSocket at the level of JSON frames, for tools and tests that look at the wire format
//! itself.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Url;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::Error;
use crate::connect::{ConnectOptions, Ws, connect};

/// One connection that sends what it is given and hands back each text frame as JSON. It
/// does not reconnect, resume or interpret anything; [`Socket`](crate::Socket) is the one
/// that does.
///
/// ```no_run
/// # async fn demo() -> Result<(), chat_client::Error> {
/// use std::time::Duration;
/// let mut socket = chat_client::RawSocket::connect("ws://127.0.0.1:8000/api/ws?token=...").await?;
/// let ready = socket.next_json_within(Duration::from_secs(5)).await;
/// socket.send_json(&serde_json::json!({"type": "ping"})).await?;
/// # Ok(()) }
/// ```
pub struct RawSocket {
    ws: Ws,
}

impl RawSocket {
    /// Opens `url` (`ws://host:port/api/ws?token=...`). A handshake the server refuses is
    /// [`Error::Refused`] with its HTTP status.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let parsed = Url::parse(url).map_err(|e| Error::connect(format!("{url} is not a URL: {e}"), None))?;
        Ok(Self { ws: connect(&parsed, ConnectOptions::default()).await? })
    }

    /// Sends `value` as one JSON text frame.
    pub async fn send_json(&mut self, value: &impl Serialize) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(|e| Error::Decode(e.to_string()))?;
        self.send_text(&text).await
    }

    /// Sends `text` as it is, JSON or not.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.ws.send(Message::text(text)).await.map_err(|e| Error::WebSocket(Box::new(e)))
    }

    /// Sends one text message split into one frame per part (a text frame, then
    /// continuations, the last one final), with the bytes as they are, UTF-8 or not: for
    /// tests of how the server joins fragments and checks text.
    pub async fn send_fragments(&mut self, parts: &[&[u8]]) -> Result<(), Error> {
        for (index, part) in parts.iter().enumerate() {
            let opcode = if index == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            let frame = Frame::message(part.to_vec(), opcode, index + 1 == parts.len());
            self.ws.send(Message::Frame(frame)).await.map_err(|e| Error::WebSocket(Box::new(e)))?;
        }
        Ok(())
    }

    /// The next text frame as JSON, skipping pings, pongs and binary frames; `None` when the
    /// connection closed or failed, the frame is not JSON, or `wait` passed without a frame.
    pub async fn next_json_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).ok(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_)))) => {}
                _ => return None,
            }
        }
    }

    /// The code of the close frame, skipping whatever comes before it; `None` when the
    /// connection ended without one or `wait` passed without a frame.
    pub async fn close_code_within(&mut self, wait: Duration) -> Option<u16> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }

    /// Closes the connection politely (a close frame, then waiting for the server's).
    pub async fn close(&mut self) -> Result<(), Error> {
        self.ws.close(None).await.map_err(|e| Error::WebSocket(Box::new(e)))
    }
}
