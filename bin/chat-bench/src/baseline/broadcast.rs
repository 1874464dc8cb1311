//! The fan-out ceiling: a bare WebSocket broadcast server inside chat-bench.
//!
//! It does the least a chat server must do to fan a message out: encode the event once,
//! share the bytes with every connection of the channel through a bounded broadcast queue,
//! and write them to each socket. No auth, no database. Its frames have the shape of the
//! real server's `ready` and `message` events, so the same receivers parse the same amount
//! of JSON, and the same loss/duplicate accounting applies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Url;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::content::{self, Stamp};
use crate::ledger::Sent;
use crate::live::Live;
use crate::senders::{SendOutcome, worker_period};

/// Events a connection may fall behind by before it is closed as a slow consumer.
const QUEUE: usize = 1024;

struct Topic {
    channel_id: String,
    tx: broadcast::Sender<Utf8Bytes>,
    seq: AtomicU64,
}

/// A running broadcast server on 127.0.0.1 and a random port.
pub struct BroadcastServer {
    address: SocketAddr,
    topics: Arc<[Topic]>,
    user_id: String,
    stop: CancellationToken,
    accept: JoinHandle<()>,
}

impl BroadcastServer {
    /// Starts a server with `channels` independent channels.
    pub async fn start(channels: usize) -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1 for the broadcast baseline")?;
        let address = listener.local_addr()?;
        let topics: Arc<[Topic]> = (0..channels.max(1))
            .map(|_| Topic {
                channel_id: Uuid::now_v7().to_string(),
                tx: broadcast::channel(QUEUE).0,
                seq: AtomicU64::new(0),
            })
            .collect();
        let stop = CancellationToken::new();
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&topics), stop.clone()));
        Ok(Self { address, topics, user_id: Uuid::now_v7().to_string(), stop, accept })
    }

    /// The URL a receiver of `channel` connects to.
    pub fn url(&self, channel: u32) -> Result<Url> {
        Url::parse(&format!("ws://{}/ws?ch={channel}", self.address)).context("building the broadcast baseline URL")
    }

    pub fn channel_id(&self, channel: u32) -> Arc<str> {
        self.topics.get(channel as usize).map_or_else(|| Arc::from(""), |t| Arc::from(t.channel_id.as_str()))
    }

    /// Encodes message `msg_no` once and hands it to every connection of `channel`.
    pub fn publish(&self, channel: u32, msg_no: u64, message_bytes: usize) -> Option<Sent> {
        let topic = self.topics.get(channel as usize)?;
        let seq = topic.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let content = content::encode(Stamp { sent_at_nanos: content::now_unix_nanos(), msg_no }, message_bytes);
        let frame = message_frame(&topic.channel_id, &self.user_id, seq, &content);
        // No receivers is not an error for a broadcast; the accounting will show the loss.
        let _ = topic.tx.send(Utf8Bytes::from(frame));
        Some(Sent { msg_no, channel, seq: Some(seq) })
    }

    /// Publishes at `rate` messages/s to the channels in turn until `stop`.
    pub fn spawn_source(
        self: &Arc<Self>,
        rate: f64,
        message_bytes: usize,
        stop: CancellationToken,
        live: Arc<Live>,
    ) -> JoinHandle<SendOutcome> {
        let server = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut ticker = tokio::time::interval(worker_period(1, rate));
            let mut outcome = SendOutcome::default();
            let channels = server.topics.len() as u64;
            let mut msg_no = 0_u64;
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let channel = (msg_no % channels) as u32;
                if let Some(sent) = server.publish(channel, msg_no, message_bytes) {
                    outcome.sent.push(sent);
                    Live::bump(&live.sent);
                }
                msg_no += 1;
            }
            outcome.elapsed = started.elapsed();
            outcome
        })
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
        self.accept.abort();
    }
}

impl Drop for BroadcastServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A `message` event shaped like the chat server's (docs/api.md section 5).
pub fn message_frame(channel_id: &str, user_id: &str, seq: u64, content: &str) -> String {
    let created_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    let message = serde_json::json!({
        "type": "message",
        "data": {
            "id": Uuid::now_v7().to_string(),
            "content": content,
            "user_id": user_id,
            "channel_id": channel_id,
            "created_at": created_at,
            "seq": seq,
            "parent_id": null,
            "reply_count": 0,
            "edited_at": null,
            "deleted": false,
            "user": {"id": user_id, "username": "baseline", "display_name": "baseline"},
            "attachments": [],
            "reactions": [],
        }
    });
    message.to_string()
}

fn ready_frame(channel_id: &str, user_id: &str, last_seq: u64) -> String {
    serde_json::json!({
        "type": "ready",
        "data": {
            "session_id": Uuid::now_v7().to_string(),
            "user": {"id": user_id, "username": "baseline", "display_name": "baseline"},
            "channels": [{"id": channel_id, "last_seq": last_seq, "last_read_seq": 0}],
        }
    })
    .to_string()
}

async fn accept_loop(listener: TcpListener, topics: Arc<[Topic]>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, Arc::clone(&topics), stop.clone()));
            }
            // Out of file descriptors, for example: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The channel index in a `?ch=N` query.
pub fn channel_from_query(query: Option<&str>) -> usize {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ch="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn serve(stream: TcpStream, topics: Arc<[Topic]>, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let mut channel = 0;
    // The callback's signature is tungstenite's; its large error type is not ours to change.
    #[allow(clippy::result_large_err)]
    let pick_channel = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        channel = channel_from_query(request.uri().query());
        Ok(response)
    };
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0);
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, pick_channel, Some(config)).await else {
        return;
    };
    let Some(topic) = topics.get(channel) else {
        return;
    };
    // Subscribe before reading `last_seq`, so nothing published after `ready` is missed.
    let mut rx = topic.tx.subscribe();
    let ready = ready_frame(&topic.channel_id, "baseline", topic.seq.load(Ordering::Relaxed));
    if ws.send(Message::text(ready)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            event = rx.recv() => match event {
                Ok(frame) => {
                    if ws.send(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let close = CloseFrame {
                        code: CloseCode::from(4008),
                        reason: Utf8Bytes::from("slow consumer"),
                    };
                    let _ = ws.close(Some(close)).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                // `resume`, pings: the baseline has no history to replay.
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_client::frame::{ChannelFrame, classify};

    #[test]
    fn frames_parse_like_the_servers() {
        let channel = "c1";
        let frame = message_frame(channel, "u1", 7, "cb:1:2:xx");
        assert_eq!(
            classify(&frame, channel).unwrap(),
            ChannelFrame::Message { seq: Some(7), content: "cb:1:2:xx".into() }
        );
        assert_eq!(
            classify(&ready_frame(channel, "u1", 3), channel).unwrap(),
            ChannelFrame::Ready { last_seq: Some(3) }
        );
    }

    #[test]
    fn the_channel_comes_from_the_query() {
        assert_eq!(channel_from_query(Some("ch=12")), 12);
        assert_eq!(channel_from_query(Some("x=1&ch=3")), 3);
        assert_eq!(channel_from_query(Some("ch=x")), 0);
        assert_eq!(channel_from_query(None), 0);
    }
}
