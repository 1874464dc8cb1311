//! Decodes arbitrary bytes as a WebSocket client frame (docs/websocket.md: `ping`, `typing`,
//! `message`, `resume` in the `{"type", "data"}` envelope), through the same
//! `realtime::protocol::ClientFrame::parse` the connection loop calls on each text frame.
//!
//! Whatever a client sends, decoding must return a frame or a refusal with one of the two
//! error codes, never panic, loop or blow the stack, because a malformed frame gets an
//! `error` frame and the connection stays open. A frame that decodes must also decode the
//! same way from its canonical spelling, so no input means two different things.

#![no_main]

use libfuzzer_sys::fuzz_target;
use realtime::protocol::{ClientFrame, MAX_FRAME_BYTES};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    // Bigger frames close the connection before they are decoded, and WebSocket text frames
    // are UTF-8 by the protocol (the server never hands other bytes to the parser).
    if data.len() > MAX_FRAME_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let canonical = canonical_json(&frame).to_string();
            let again =
                ClientFrame::parse(&canonical).unwrap_or_else(|e| panic!("{canonical} does not decode again: {e:?}"));
            assert_eq!(again, frame, "{text:?} and {canonical:?} decode differently");
        }
        Err(error) => {
            assert!(matches!(error.code, "invalid_frame" | "unknown_frame"), "unexpected error code {:?}", error.code)
        }
    }
});

/// The frame as a well-behaved client would write it.
fn canonical_json(frame: &ClientFrame) -> serde_json::Value {
    match frame {
        ClientFrame::Ping => json!({"type": "ping"}),
        ClientFrame::Typing { channel_id } => {
            json!({"type": "typing", "data": {"channel_id": channel_id}})
        }
        ClientFrame::Message(message) => json!({
            "type": "message",
            "data": {
                "channel_id": message.channel_id,
                "content": message.content,
                "parent_id": message.parent_id,
                "nonce": message.nonce,
                "attachment_ids": message.attachment_ids,
            }
        }),
        ClientFrame::Resume { channels } => {
            json!({"type": "resume", "data": {"channels": channels}})
        }
    }
}
