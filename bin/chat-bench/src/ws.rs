//! WebSocket client side: connecting (from a chosen local address, to loopback only) and
//! reading the server's frames.
//!
//! Frames are parsed into one flat struct that borrows from the frame text and names only the
//! fields chat-bench uses; everything else (the user object, attachments, ...) is skipped by
//! serde without allocating.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result, bail};
use reqwest::Url;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::target::is_loopback;

pub type Ws = WebSocketStream<TcpStream>;

/// Read buffer for connections that receive a steady stream of small frames. tungstenite
/// zero-fills this much before every read, so bigger costs CPU on every frame; frames larger
/// than the buffer still arrive whole (it grows to the frame's length).
pub const ACTIVE_READ_BUFFER: usize = 4 * 1024;
/// Read buffer for idle connections: tungstenite allocates it eagerly (128 KiB by default),
/// which would dominate the client's memory with 10,000 connections.
pub const IDLE_READ_BUFFER: usize = 4 * 1024;

/// Opens a WebSocket to `url` (a `ws://` URL on a loopback host), binding the local end to
/// `source` when given so that many connections can use more than one address's ports.
pub async fn connect(url: &Url, source: Option<IpAddr>, read_buffer: usize) -> Result<Ws> {
    let host = url.host_str().context("WebSocket URL without host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.with_context(|| format!("cannot resolve {host}"))?.collect();
    // Prefer an address of the source's family; never anything off this machine.
    let address = addresses
        .iter()
        .copied()
        .filter(|a| is_loopback(a.ip()))
        .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .or_else(|| addresses.iter().copied().find(|a| is_loopback(a.ip())));
    let Some(address) = address else {
        bail!("{host} does not resolve to a loopback address; refusing to connect");
    };
    let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .context("cannot create a socket (too many open files? raise ulimit -n)")?;
    if let Some(source) = source.filter(|s| s.is_ipv4() == address.is_ipv4()) {
        socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("cannot bind a local port on {source}"))?;
    }
    socket.set_nodelay(true)?;
    let stream = socket.connect(address).await.with_context(|| format!("cannot connect to {address}"))?;
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        // Clients send little; write each frame at once.
        .write_buffer_size(0);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
        .await
        .context("WebSocket handshake failed")?;
    Ok(ws)
}

/// The fields of a server frame that chat-bench reads.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub data: Option<FrameData<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FrameData<'a> {
    // Plain `Cow` fields (not `Option<Cow>`): serde borrows only those from the input.
    #[serde(default, borrow)]
    pub channel_id: Cow<'a, str>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default, borrow)]
    pub content: Cow<'a, str>,
    /// `ready` only.
    #[serde(default, borrow)]
    pub channels: Option<Vec<ReadyChannel<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct ReadyChannel<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub last_seq: Option<u64>,
}

/// What a receiver does with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// `ready`: the `last_seq` of `channel_id` if the server listed it.
    Ready {
        last_seq: Option<u64>,
    },
    Message {
        seq: Option<u64>,
        content: Cow<'a, str>,
    },
    /// Any other event of the channel that carries a `seq` (joins, edits, ...).
    Sequenced {
        seq: u64,
    },
    ResyncRequired,
    /// Frames of other channels, ephemeral events, pongs, errors.
    Other,
}

/// Classifies a text frame for a receiver that follows `channel_id`.
pub fn classify<'a>(text: &'a str, channel_id: &str) -> Result<Event<'a>, serde_json::Error> {
    let frame: Frame<'a> = serde_json::from_str(text)?;
    let data = frame.data.unwrap_or_default();
    let ours = data.channel_id == channel_id;
    Ok(match frame.kind.as_ref() {
        "ready" => Event::Ready {
            last_seq: data
                .channels
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.id == channel_id)
                .and_then(|c| c.last_seq),
        },
        "message" if ours => Event::Message { seq: data.seq, content: data.content },
        "resync_required" if ours => Event::ResyncRequired,
        _ if ours => data.seq.map_or(Event::Other, |seq| Event::Sequenced { seq }),
        _ => Event::Other,
    })
}

/// `{"type":"resume","data":{"channels":{"<id>":<seq>}}}`.
pub fn resume_frame(channel_id: &str, last_seq: u64) -> String {
    serde_json::json!({"type": "resume", "data": {"channels": {channel_id: last_seq}}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CH: &str = "0191a0b0-0000-7000-8000-000000000001";

    #[test]
    fn ready_gives_the_last_seq_of_our_channel() {
        let text = format!(
            r#"{{"type":"ready","data":{{"session_id":"s","user":{{"id":"u","username":"a"}},"channels":[{{"id":"other","last_seq":3,"last_read_seq":0}},{{"id":"{CH}","last_seq":41,"last_read_seq":2}}]}}}}"#
        );
        assert_eq!(classify(&text, CH).unwrap(), Event::Ready { last_seq: Some(41) });
        let without = r#"{"type":"ready","data":{"session_id":"s","channels":[]}}"#;
        assert_eq!(classify(without, CH).unwrap(), Event::Ready { last_seq: None });
    }

    #[test]
    fn a_message_of_our_channel_gives_seq_and_content() {
        let text = format!(
            r#"{{"type":"message","data":{{"id":"m","content":"cb:1:2:x","seq":42,"channel_id":"{CH}","created_at":"2025-01-09T12:01:00Z","user":{{"id":"u","username":"b","display_name":"B"}},"attachments":[],"reactions":[]}}}}"#
        );
        let Event::Message { seq, content } = classify(&text, CH).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(seq, Some(42));
        assert_eq!(content, "cb:1:2:x");
        assert!(matches!(content, Cow::Borrowed(_)), "content should not be copied");
    }

    #[test]
    fn field_order_and_escapes_do_not_matter() {
        let text = format!(r#"{{"data":{{"channel_id":"{CH}","content":"a \"quoted\" text"}},"type":"message"}}"#);
        assert_eq!(
            classify(&text, CH).unwrap(),
            Event::Message { seq: None, content: Cow::Borrowed("a \"quoted\" text") }
        );
    }

    #[test]
    fn other_channels_and_ephemeral_frames_are_other() {
        let elsewhere = r#"{"type":"message","data":{"channel_id":"x","seq":1,"content":"c"}}"#;
        assert_eq!(classify(elsewhere, CH).unwrap(), Event::Other);
        assert_eq!(classify(r#"{"type":"pong","data":{}}"#, CH).unwrap(), Event::Other);
        assert_eq!(classify(r#"{"type":"pong"}"#, CH).unwrap(), Event::Other);
        let typing = format!(r#"{{"type":"typing","data":{{"channel_id":"{CH}","user":{{}}}}}}"#);
        assert_eq!(classify(&typing, CH).unwrap(), Event::Other);
    }

    #[test]
    fn sequenced_events_and_resync_of_our_channel_are_recognised() {
        let joined = format!(r#"{{"type":"member_joined","data":{{"channel_id":"{CH}","seq":7}}}}"#);
        assert_eq!(classify(&joined, CH).unwrap(), Event::Sequenced { seq: 7 });
        let resync = format!(r#"{{"type":"resync_required","data":{{"channel_id":"{CH}"}}}}"#);
        assert_eq!(classify(&resync, CH).unwrap(), Event::ResyncRequired);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(classify("not json", CH).is_err());
        assert!(classify(r#"{"data":{}}"#, CH).is_err());
    }

    #[test]
    fn resume_names_the_channel_and_its_last_seq() {
        let frame: serde_json::Value = serde_json::from_str(&resume_frame(CH, 12)).unwrap();
        assert_eq!(frame["type"], "resume");
        assert_eq!(frame["data"]["channels"][CH], 12);
    }
}
