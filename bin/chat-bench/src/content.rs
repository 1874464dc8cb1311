//! What chat-bench writes in a message's content so that every receiver can measure latency
//! and account for each message without any shared state: `cb:<send time>:<number>:<padding>`.
//!
//! The send time is in Unix nanoseconds, taken just before the request is written; sender and
//! receivers run on the same machine, so they share the clock. The number is unique within a
//! run and identifies the message in the loss and duplicate accounting.

use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &str = "cb:";

/// The time now in nanoseconds since the Unix epoch.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What a receiver reads back out of a message's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sent_at_nanos: u64,
    pub msg_no: u64,
}

impl Stamp {
    /// Microseconds from the send time to `received_at_nanos` (0 if the clock went backwards).
    pub fn latency_us(self, received_at_nanos: u64) -> u64 {
        received_at_nanos.saturating_sub(self.sent_at_nanos) / 1000
    }
}

/// The content for message `msg_no`, padded with `x` to at least `min_len` bytes.
pub fn encode(stamp: Stamp, min_len: usize) -> String {
    let mut content = format!("{PREFIX}{}:{}:", stamp.sent_at_nanos, stamp.msg_no);
    if content.len() < min_len {
        content.extend(std::iter::repeat_n('x', min_len - content.len()));
    }
    content
}

/// Reads a stamp back; `None` for content chat-bench did not write.
pub fn decode(content: &str) -> Option<Stamp> {
    let rest = content.strip_prefix(PREFIX)?;
    let mut fields = rest.splitn(3, ':');
    let sent_at_nanos = fields.next()?.parse().ok()?;
    let msg_no = fields.next()?.parse().ok()?;
    fields.next()?;
    Some(Stamp { sent_at_nanos, msg_no })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_round_trip() {
        let stamp = Stamp { sent_at_nanos: 1_736_424_060_123_456_789, msg_no: 42 };
        let content = encode(stamp, 0);
        assert_eq!(content, "cb:1736424060123456789:42:");
        assert_eq!(decode(&content), Some(stamp));
    }

    #[test]
    fn padding_reaches_the_requested_length_and_is_ignored_on_decode() {
        let stamp = Stamp { sent_at_nanos: 1, msg_no: 2 };
        let content = encode(stamp, 100);
        assert_eq!(content.len(), 100);
        assert_eq!(decode(&content), Some(stamp));
    }

    #[test]
    fn foreign_content_is_not_a_stamp() {
        for content in ["hello", "cb:", "cb:12", "cb:12:34", "cb:x:1:", "cb:1:y:", ""] {
            assert_eq!(decode(content), None, "{content:?}");
        }
    }

    #[test]
    fn latency_is_measured_in_microseconds_and_never_negative() {
        let stamp = Stamp { sent_at_nanos: 10_000_000, msg_no: 0 };
        assert_eq!(stamp.latency_us(12_500_000), 2_500);
        assert_eq!(stamp.latency_us(1), 0);
    }
}
