//! A test double of the chat server's WebSocket side: one channel, an in-memory event log,
//! `ready` with the channel's `last_seq`, and `resume` replay (when enabled). It lets the
//! receiver, delivery and accounting code be tested without the real server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Url;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::baseline::broadcast::message_frame;
use crate::content::{self, Stamp};
use crate::ledger::Sent;

pub const CHANNEL_ID: &str = "0191a0b0-0000-7000-8000-00000000c0de";

struct Log {
    frames: Vec<Utf8Bytes>,
    tx: broadcast::Sender<(u64, Utf8Bytes)>,
}

#[derive(Clone)]
pub struct MockServer {
    address: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl MockServer {
    /// Starts the server; with `replay` false it ignores `resume` (a server that loses
    /// events across reconnects).
    pub async fn start(replay: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log { frames: Vec::new(), tx: broadcast::channel(4096).0 }));
        let accept_log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&accept_log), replay));
            }
        });
        Self { address, log }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("ws://{}/api/ws?token=t", self.address)).unwrap()
    }

    /// Appends message `msg_no` to the log and sends it to every live connection.
    pub fn publish(&self, msg_no: u64) -> Sent {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = log.frames.len() as u64 + 1;
        let stamp = Stamp { sent_at_nanos: content::now_unix_nanos(), msg_no };
        let frame = Utf8Bytes::from(message_frame(CHANNEL_ID, "u", seq, &content::encode(stamp, 0)));
        log.frames.push(frame.clone());
        // Sent under the lock, so live order is log order.
        let _ = log.tx.send((seq, frame));
        Sent { msg_no, channel: 0, seq: Some(seq) }
    }
}

fn ready(last_seq: u64) -> String {
    serde_json::json!({
        "type": "ready",
        "data": {"session_id": "s", "user": {"id": "u"},
                 "channels": [{"id": CHANNEL_ID, "last_seq": last_seq, "last_read_seq": 0}]}
    })
    .to_string()
}

async fn serve(stream: TcpStream, log: Arc<Mutex<Log>>, replay: bool) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut rx, last_seq) = {
        let log = log.lock().unwrap_or_else(PoisonError::into_inner);
        (log.tx.subscribe(), log.frames.len() as u64)
    };
    if ws.send(Message::text(ready(last_seq))).await.is_err() {
        return;
    }
    // Live events wait until the client had a moment to ask for a replay, so that replayed
    // events never come after newer live ones.
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
        let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        if replay && frame["type"] == "resume" {
            let from = frame["data"]["channels"][CHANNEL_ID].as_u64().unwrap_or(0).min(last_seq);
            let missed: Vec<Utf8Bytes> = {
                let log = log.lock().unwrap_or_else(PoisonError::into_inner);
                log.frames[from as usize..last_seq as usize].to_vec()
            };
            for frame in missed {
                if ws.send(Message::Text(frame)).await.is_err() {
                    return;
                }
            }
        }
    }
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Ok((seq, frame)) if seq > last_seq => {
                    if ws.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
