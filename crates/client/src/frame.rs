//! Reading and writing frames without the cost of owning them: the envelope
//! `{"type": "...", "data": {...}}` parsed into one flat struct that borrows from the frame's
//! text and names only what a client needs to keep its place in a channel (its id, the
//! `seq`, a message's `content`, `ready`'s channels). Everything else in a frame (the user
//! object, attachments, ...) is skipped by serde without allocating, so a client can follow
//! 100,000+ frames a second; [`Socket`](crate::Socket) reads the rest of a frame only when it
//! hands it out.
//!
//! Channel ids stay text here: a load generator follows channels by the id the server gave
//! it, and its baseline servers need not use UUIDs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::Error;
use crate::connect::Ws;

/// A server frame, as far as following channels needs it.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub data: Option<FrameData<'a>>,
}

/// The fields of a frame's `data` that a reader uses; absent ones are empty.
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
    pub channels: Option<Vec<ReadyEntry<'a>>>,
}

/// One channel of `ready` ([`wire::ReadyChannel`], borrowed).
#[derive(Debug, Deserialize)]
pub struct ReadyEntry<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub last_seq: Option<u64>,
}

impl<'a> Frame<'a> {
    // `#[inline]` here and on `classify`: a reader calls them once per frame from another
    // crate, and they were inlined into chat-bench's read loop before they moved here.
    /// Parses a text frame, borrowing from it.
    #[inline]
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What a frame means to a reader that follows one channel.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelFrame<'a> {
    /// `ready`: the `last_seq` of the channel if the server listed it.
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

/// Classifies a text frame for a reader that follows `channel_id`.
#[inline]
pub fn classify<'a>(text: &'a str, channel_id: &str) -> Result<ChannelFrame<'a>, serde_json::Error> {
    let frame = Frame::parse(text)?;
    let data = frame.data.unwrap_or_default();
    let ours = data.channel_id == channel_id;
    Ok(match frame.kind.as_ref() {
        "ready" => ChannelFrame::Ready {
            last_seq: data
                .channels
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.id == channel_id)
                .and_then(|c| c.last_seq),
        },
        "message" if ours => ChannelFrame::Message { seq: data.seq, content: data.content },
        "resync_required" if ours => ChannelFrame::ResyncRequired,
        _ if ours => data.seq.map_or(ChannelFrame::Other, |seq| ChannelFrame::Sequenced { seq }),
        _ => ChannelFrame::Other,
    })
}

/// A frame to send: `{"type": kind, "data": data}`.
pub fn encode<D: Serialize>(kind: &str, data: &D) -> String {
    #[derive(Serialize)]
    struct Outgoing<'a, D> {
        #[serde(rename = "type")]
        kind: &'a str,
        data: &'a D,
    }
    // Serializing plain structs and maps of strings and numbers cannot fail.
    serde_json::to_string(&Outgoing { kind, data }).unwrap_or_default()
}

/// `{"type":"resume","data":{"channels":{"<id>":<seq>, ...}}}`: replay each channel after
/// its seq.
pub fn resume<K: Serialize + Eq + Hash>(resume: &wire::Resume<K>) -> String {
    encode("resume", resume)
}

/// [`resume`] of one channel.
pub fn resume_frame(channel_id: &str, last_seq: u64) -> String {
    resume(&wire::Resume { channels: HashMap::from([(channel_id, last_seq as i64)]) })
}

/// Reads until the `ready` frame (docs/websocket.md: it comes first) and returns the
/// `last_seq` it gives `channel_id`.
pub async fn wait_for_ready(ws: &mut Ws, channel_id: &str) -> Result<Option<u64>, Error> {
    while let Some(frame) = ws.next().await {
        match frame.map_err(|e| Error::WebSocket(Box::new(e)))? {
            Message::Text(text) => {
                if let Ok(ChannelFrame::Ready { last_seq }) = classify(text.as_str(), channel_id) {
                    return Ok(last_seq);
                }
            }
            Message::Close(frame) => return Err(Error::Closed(frame.map(|f| u16::from(f.code)))),
            _ => {}
        }
    }
    Err(Error::Closed(None))
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
        assert_eq!(classify(&text, CH).unwrap(), ChannelFrame::Ready { last_seq: Some(41) });
        let without = r#"{"type":"ready","data":{"session_id":"s","channels":[]}}"#;
        assert_eq!(classify(without, CH).unwrap(), ChannelFrame::Ready { last_seq: None });
    }

    #[test]
    fn a_message_of_our_channel_gives_seq_and_content() {
        let text = format!(
            r#"{{"type":"message","data":{{"id":"m","content":"cb:1:2:x","seq":42,"channel_id":"{CH}","created_at":"2025-01-09T12:01:00Z","user":{{"id":"u","username":"b","display_name":"B"}},"attachments":[],"reactions":[]}}}}"#
        );
        let ChannelFrame::Message { seq, content } = classify(&text, CH).unwrap() else {
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
            ChannelFrame::Message { seq: None, content: Cow::Borrowed("a \"quoted\" text") }
        );
    }

    #[test]
    fn other_channels_and_ephemeral_frames_are_other() {
        let elsewhere = r#"{"type":"message","data":{"channel_id":"x","seq":1,"content":"c"}}"#;
        assert_eq!(classify(elsewhere, CH).unwrap(), ChannelFrame::Other);
        assert_eq!(classify(r#"{"type":"pong","data":{}}"#, CH).unwrap(), ChannelFrame::Other);
        assert_eq!(classify(r#"{"type":"pong"}"#, CH).unwrap(), ChannelFrame::Other);
        let typing = format!(r#"{{"type":"typing","data":{{"channel_id":"{CH}","user":{{}}}}}}"#);
        assert_eq!(classify(&typing, CH).unwrap(), ChannelFrame::Other);
    }

    #[test]
    fn sequenced_events_and_resync_of_our_channel_are_recognised() {
        let joined = format!(r#"{{"type":"member_joined","data":{{"channel_id":"{CH}","seq":7}}}}"#);
        assert_eq!(classify(&joined, CH).unwrap(), ChannelFrame::Sequenced { seq: 7 });
        let resync = format!(r#"{{"type":"resync_required","data":{{"channel_id":"{CH}"}}}}"#);
        assert_eq!(classify(&resync, CH).unwrap(), ChannelFrame::ResyncRequired);
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
        // What the server reads.
        let resume: wire::Resume = serde_json::from_value(frame["data"].clone()).unwrap();
        assert_eq!(resume.channels[&CH.parse().unwrap()], 12);
    }
}
