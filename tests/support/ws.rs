//! The tests' WebSocket: the client crate's [`RawSocket`] (tests assert on the wire format,
//! so they read raw JSON frames), with waits that fail the test instead of sleeping.

use std::time::Duration;

use chat_client::RawSocket;
use serde_json::Value;

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    socket: RawSocket,
}

impl WsClient {
    /// Opens `url`; a refused handshake is `chat_client::Error::Refused(status)`.
    pub async fn connect(url: &str) -> Result<Self, chat_client::Error> {
        Ok(Self { socket: RawSocket::connect(url).await? })
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.socket.send_json(value).await.unwrap();
    }

    /// Sends `text` as it is (garbage included); fails once the server has closed.
    pub async fn send_text(&mut self, text: &str) -> Result<(), chat_client::Error> {
        self.socket.send_text(text).await
    }

    /// Sends one text message in one frame per part, bytes as they are (UTF-8 or not).
    pub async fn send_fragments(&mut self, parts: &[&[u8]]) -> Result<(), chat_client::Error> {
        self.socket.send_fragments(parts).await
    }

    /// The next JSON frame, skipping pings; `None` when the socket closed or `wait` passed.
    pub async fn next_json_within(&mut self, wait: Duration) -> Option<Value> {
        self.socket.next_json_within(wait).await
    }

    pub async fn next_json(&mut self) -> Value {
        self.next_json_within(WAIT).await.expect("a frame within the wait")
    }

    /// Waits for the next frame of `kind`, skipping others (presence, typing, ...).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The close frame's code, waiting for it.
    pub async fn close_code(&mut self) -> Option<u16> {
        self.socket.close_code_within(WAIT).await
    }
}
