//! Loss and duplicate accounting: what was sent successfully against what each receiver saw.
//!
//! A receiver is expected to get every message sent to its channel with a `seq` above the
//! channel's `last_seq` in the receiver's first `ready` frame (its baseline): messages before
//! it were sent before the receiver existed. Servers that do not number events (no `seq`)
//! have every message of the channel expected.

use std::collections::HashMap;

use serde::Serialize;

/// A message the server accepted (201 or 200 to the POST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub msg_no: u64,
    /// Index of the channel in the run's channel list.
    pub channel: u32,
    /// The `seq` the server gave the message, when it gives one.
    pub seq: Option<u64>,
}

/// What one receiver saw over the whole run, reconnects included.
#[derive(Clone, Debug, Default)]
pub struct ReceiverLog {
    pub channel: u32,
    /// The channel's `last_seq` in the receiver's first `ready` frame.
    pub baseline_seq: u64,
    /// Message numbers in arrival order (duplicates kept).
    pub received: Vec<u64>,
}

/// Totals over all receivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Accounting {
    /// Deliveries that should have happened: sum over receivers of the messages sent to them.
    pub expected: u64,
    /// Deliveries that happened, duplicates included.
    pub delivered: u64,
    /// Expected deliveries that never happened. Must be 0.
    pub lost: u64,
    /// Deliveries of a message the receiver had already seen. Must be 0.
    pub duplicated: u64,
    /// Deliveries of messages that were never acknowledged to a sender (a POST that timed out
    /// after the server stored it, for example): not a failure, but reported.
    pub unexpected: u64,
    /// Receivers that missed at least one message.
    pub receivers_with_loss: u64,
}

/// Compares what was sent with what every receiver saw.
pub fn account(sent: &[Sent], logs: &[ReceiverLog]) -> Accounting {
    let mut by_channel: HashMap<u32, Vec<&Sent>> = HashMap::new();
    for message in sent {
        by_channel.entry(message.channel).or_default().push(message);
    }
    let mut totals = Accounting::default();
    let mut expected = Vec::new();
    let mut received = Vec::new();
    for log in logs {
        expected.clear();
        if let Some(messages) = by_channel.get(&log.channel) {
            expected
                .extend(messages.iter().filter(|m| m.seq.is_none_or(|seq| seq > log.baseline_seq)).map(|m| m.msg_no));
        }
        expected.sort_unstable();
        expected.dedup();

        received.clear();
        received.extend_from_slice(&log.received);
        received.sort_unstable();
        let delivered = received.len() as u64;
        received.dedup();
        let duplicated = delivered - received.len() as u64;

        let (lost, unexpected) = sorted_difference_counts(&expected, &received);
        totals.expected += expected.len() as u64;
        totals.delivered += delivered;
        totals.duplicated += duplicated;
        totals.lost += lost;
        totals.unexpected += unexpected;
        totals.receivers_with_loss += u64::from(lost > 0);
    }
    totals
}

/// `(|a \ b|, |b \ a|)` for two sorted, deduplicated slices.
fn sorted_difference_counts(a: &[u64], b: &[u64]) -> (u64, u64) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                only_a += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                only_b += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    only_a += (a.len() - i) as u64;
    only_b += (b.len() - j) as u64;
    (only_a, only_b)
}

/// How many deliveries the receivers should get for `sent`, knowing how many receivers each
/// channel has (used to stop waiting as soon as everything has arrived).
pub fn expected_deliveries(sent: &[Sent], receivers_per_channel: &[u64]) -> u64 {
    sent.iter().map(|m| receivers_per_channel.get(m.channel as usize).copied().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(channel: u32, messages: &[(u64, u64)]) -> Vec<Sent> {
        messages.iter().map(|&(msg_no, seq)| Sent { msg_no, channel, seq: Some(seq) }).collect()
    }

    fn log(channel: u32, baseline_seq: u64, received: &[u64]) -> ReceiverLog {
        ReceiverLog { channel, baseline_seq, received: received.to_vec() }
    }

    #[test]
    fn everything_delivered_once_is_clean() {
        let sent = sent(0, &[(1, 11), (2, 12), (3, 13)]);
        let logs = [log(0, 10, &[1, 2, 3]), log(0, 10, &[3, 1, 2])];
        assert_eq!(account(&sent, &logs), Accounting { expected: 6, delivered: 6, ..Accounting::default() });
    }

    #[test]
    fn a_missing_message_is_lost_for_that_receiver_only() {
        let sent = sent(0, &[(1, 11), (2, 12), (3, 13)]);
        let logs = [log(0, 10, &[1, 3]), log(0, 10, &[1, 2, 3])];
        let totals = account(&sent, &logs);
        assert_eq!(totals.lost, 1);
        assert_eq!(totals.receivers_with_loss, 1);
        assert_eq!(totals.delivered, 5);
    }

    #[test]
    fn a_message_seen_twice_is_duplicated() {
        let sent = sent(0, &[(1, 11), (2, 12)]);
        let totals = account(&sent, &[log(0, 10, &[1, 2, 2, 2])]);
        assert_eq!(totals.duplicated, 2);
        assert_eq!(totals.lost, 0);
        assert_eq!(totals.delivered, 4);
    }

    #[test]
    fn messages_before_the_baseline_are_not_expected() {
        let sent = sent(0, &[(1, 5), (2, 6), (3, 7)]);
        let totals = account(&sent, &[log(0, 6, &[3])]);
        assert_eq!(totals.expected, 1);
        assert_eq!(totals.lost, 0);
    }

    #[test]
    fn messages_of_other_channels_are_not_expected() {
        let mut all = sent(0, &[(1, 1)]);
        all.extend(sent(1, &[(2, 1)]));
        let totals = account(&all, &[log(1, 0, &[2]), log(0, 0, &[1])]);
        assert_eq!(totals.expected, 2);
        assert_eq!(totals.lost, 0);
        assert_eq!(totals.unexpected, 0);
    }

    #[test]
    fn deliveries_of_unacknowledged_messages_are_unexpected_not_lost() {
        let sent = sent(0, &[(1, 1)]);
        let totals = account(&sent, &[log(0, 0, &[1, 99])]);
        assert_eq!(totals.unexpected, 1);
        assert_eq!(totals.lost, 0);
    }

    #[test]
    fn without_seq_every_message_of_the_channel_is_expected() {
        let sent = [Sent { msg_no: 7, channel: 0, seq: None }];
        let totals = account(&sent, &[log(0, 1000, &[])]);
        assert_eq!(totals.expected, 1);
        assert_eq!(totals.lost, 1);
    }

    #[test]
    fn expected_deliveries_multiply_by_receivers_per_channel() {
        let mut all = sent(0, &[(1, 1), (2, 2)]);
        all.extend(sent(1, &[(3, 1)]));
        assert_eq!(expected_deliveries(&all, &[10, 3]), 23);
        assert_eq!(expected_deliveries(&all, &[10]), 20);
    }

    #[test]
    fn sorted_difference_counts_both_sides() {
        assert_eq!(sorted_difference_counts(&[1, 2, 3, 5], &[2, 4, 5, 6]), (2, 2));
        assert_eq!(sorted_difference_counts(&[], &[1]), (0, 1));
        assert_eq!(sorted_difference_counts(&[1], &[]), (1, 0));
    }
}
