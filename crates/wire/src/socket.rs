//! The WebSocket frames both sides read (docs/websocket.md). Every frame is the envelope
//! `{"type": "...", "data": {...}}`; these are the `data` of the frames a client needs typed
//! to keep its place in each channel. Channel events are `domain`'s (the `message` frame's
//! `data` reads as a [`MessageDto`](crate::MessageDto)).

use std::collections::HashMap;
use std::hash::Hash;

use domain::ChannelId;
use serde::{Deserialize, Serialize};

/// One channel of the `ready` frame: where it stands when the connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyChannel {
    pub id: ChannelId,
    /// The channel's newest event seq.
    pub last_seq: i64,
    /// The user's read marker.
    pub last_read_seq: i64,
}

/// The client's `resume` frame: for each channel, the last seq it has; the server replays
/// what came after. The server reads channel ids; a client may write them as it holds them
/// (`Resume<&str>`: a load generator keeps the id the server gave it as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume<K: Eq + Hash = ChannelId> {
    pub channels: HashMap<K, i64>,
}
