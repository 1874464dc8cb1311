//! What one connection may see of its channels, decided event by event.
//!
//! A connection's rights are the database's at the position of each event in its channel's
//! seq order — never a copy taken at connect time. The [`Feed`] holds, per channel the
//! connection receives, the last seq it sent. Every event, whether it arrives live from the
//! hub or is read back from the log to fill a gap, passes through the same
//! [`Feed::process`]: it is sent only if it is the next one, and its membership change is
//! applied right there — a joiner starts receiving at their `member_joined`, a removed user
//! receives their removal and nothing after it. Gaps are filled from the log before the
//! event that revealed them, so the order is strict and a change that the hub dropped or
//! delivered late is still applied at its seq.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use domain::{ChannelId, MembershipChange, UserId};
use persistence::StoreError;

use crate::hub::Delivery;
use crate::protocol::ServerFrame;

/// What a replay read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every event in the range, in order; `through` is the last seq the range covered.
    Complete { events: Vec<Delivery>, through: i64 },
    /// More than a replay may send, or events the retention window removed.
    Incomplete { through: i64 },
}

/// What a feed needs from outside: the event log and the hub's subscription for this
/// connection. The session implements it over the database and the hub; tests implement it
/// over a vector.
pub trait Upstream {
    /// The channel's events with seq in `(after, up_to]` (`None`: to the newest).
    fn replay(
        &mut self,
        channel: ChannelId,
        after: i64,
        up_to: Option<i64>,
    ) -> impl Future<Output = Result<Replay, StoreError>>;
    /// Whether the user is a member now (asked only when a replay had a hole).
    fn is_member(&mut self, channel: ChannelId) -> impl Future<Output = Result<bool, StoreError>>;
    /// The user's newest removal from the channel with seq above `after`, if any.
    fn removal(&mut self, channel: ChannelId, after: i64)
    -> impl Future<Output = Result<Option<Delivery>, StoreError>>;
    fn subscribe(&mut self, channel: ChannelId);
    fn unsubscribe(&mut self, channel: ChannelId);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    /// The last seq this connection sent or passed (or the snapshot's).
    sent: i64,
    /// Where live delivery started: the snapshot's seq, or the seq before a join.
    live_from: i64,
    /// False after a removal: the channel is no longer received, and only a join newer
    /// than `sent` starts it again (a late copy of an older join must not).
    member: bool,
}

/// How a `resume` of one channel went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    Replayed,
    /// The connection does not receive the channel and has no removal to tell of.
    NotReceived,
}

/// One connection's channels and its position in each.
#[derive(Debug)]
pub struct Feed {
    me: UserId,
    channels: HashMap<ChannelId, Cursor>,
    /// The channels the hub delivers to this connection (kept in step with `channels`
    /// after each operation).
    subscribed: HashSet<ChannelId>,
}

impl Feed {
    /// Starts from a snapshot of the user's memberships with each channel's newest seq.
    /// The caller subscribes the connection to exactly these channels.
    pub fn new(me: UserId, snapshot: impl IntoIterator<Item = (ChannelId, i64)>) -> Self {
        let channels: HashMap<ChannelId, Cursor> =
            snapshot.into_iter().map(|(id, seq)| (id, Cursor { sent: seq, live_from: seq, member: true })).collect();
        let subscribed = channels.keys().copied().collect();
        Self { me, channels, subscribed }
    }

    /// Whether the connection receives the channel, i.e. its user is a member as of the
    /// last event it was sent.
    pub fn receives(&self, channel: ChannelId) -> bool {
        self.cursor(channel).is_some()
    }

    pub fn channels(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels.iter().filter(|(_, c)| c.member).map(|(id, _)| *id)
    }

    /// The channel's cursor while it is received.
    fn cursor(&self, channel: ChannelId) -> Option<Cursor> {
        self.channels.get(&channel).copied().filter(|c| c.member)
    }

    fn joins(&self, event: &Delivery) -> bool {
        event.membership == Some(MembershipChange::Joined(self.me))
            && self.channels.get(&event.channel_id).is_none_or(|c| event.seq > c.sent)
    }

    /// Takes an event from the hub; the frames to send go to `out`, in order.
    pub async fn live(&mut self, up: &mut impl Upstream, event: Delivery, out: &mut Vec<Arc<str>>) {
        let channel = event.channel_id;
        match self.cursor(channel) {
            Some(cursor) if event.seq <= cursor.sent => {}
            Some(cursor) => {
                if event.seq > cursor.sent + 1 {
                    // Boxed, here and below: reading the log is the rare path, and inline its
                    // future would make every idle connection's session as large as it.
                    Box::pin(self.catch_up(up, channel, Some(event.seq - 1), out)).await;
                }
                self.process(event, out);
                self.sync(up, channel);
            }
            None if self.joins(&event) => {
                self.process(event, out);
                // Subscribe first, then read what went out before the subscription took
                // effect: nothing falls between the two.
                self.sync(up, channel);
                Box::pin(self.catch_up(up, channel, None, out)).await;
                self.sync(up, channel);
            }
            // Not ours: a channel we left (this is after our removal, or an old join), or
            // someone else's membership change.
            None => {}
        }
    }

    /// A client's `resume` of one channel from `from` (the last seq it has).
    pub async fn resume(
        &mut self,
        up: &mut impl Upstream,
        channel: ChannelId,
        from: i64,
        out: &mut Vec<Arc<str>>,
    ) -> Resumed {
        let from = from.max(0);
        let Some(cursor) = self.cursor(channel) else {
            // No longer a member: tell the client why (its removal, or the channel's
            // deletion), and nothing else of the channel.
            return match up.removal(channel, from).await {
                Ok(Some(removal)) => {
                    out.push(removal.frame);
                    Resumed::Replayed
                }
                Ok(None) => Resumed::NotReceived,
                Err(error) => {
                    tracing::warn!(%error, "resume: could not read the log");
                    out.push(resync_required(channel));
                    Resumed::Replayed
                }
            };
        };
        if from < cursor.sent {
            if cursor.sent > cursor.live_from {
                // Newer events already went out on this connection; replaying older ones
                // now would break the seq order. The client reloads instead.
                out.push(resync_required(channel));
                return Resumed::Replayed;
            }
            // History before the snapshot: the user is a member as of the snapshot, and
            // members read the whole history, so it goes out as it was.
            match up.replay(channel, from, Some(cursor.sent)).await {
                Ok(Replay::Complete { events, .. }) => out.extend(events.into_iter().map(|e| e.frame)),
                Ok(Replay::Incomplete { .. }) => out.push(resync_required(channel)),
                Err(error) => {
                    tracing::warn!(%error, "resume: could not read the log");
                    out.push(resync_required(channel));
                }
            }
        } else if from > cursor.sent {
            // The client has more than we sent (it saw it on another connection): pass over
            // what it has without sending it, but apply what it did to membership.
            self.catch_up(up, channel, Some(from), &mut Vec::new()).await;
        }
        self.catch_up(up, channel, None, out).await;
        self.sync(up, channel);
        Resumed::Replayed
    }

    /// Brings the channel up to `newest` from the log (after connecting, for what was
    /// committed between the snapshot and the subscription).
    pub async fn fill(&mut self, up: &mut impl Upstream, channel: ChannelId, newest: i64, out: &mut Vec<Arc<str>>) {
        self.catch_up(up, channel, Some(newest), out).await;
        self.sync(up, channel);
    }

    /// Reads the log after what the channel's cursor sent, up to `up_to`, and processes it.
    async fn catch_up(
        &mut self,
        up: &mut impl Upstream,
        channel: ChannelId,
        up_to: Option<i64>,
        out: &mut Vec<Arc<str>>,
    ) {
        let Some(cursor) = self.cursor(channel) else {
            return;
        };
        if up_to.is_some_and(|up_to| up_to <= cursor.sent) {
            return;
        }
        metrics::counter!("websocket_log_reads_total").increment(1);
        let through = match up.replay(channel, cursor.sent, up_to).await {
            Ok(Replay::Complete { events, through }) => {
                for event in events {
                    self.process(event, out);
                }
                through
            }
            Ok(Replay::Incomplete { through }) => {
                out.push(resync_required(channel));
                self.across_hole(up, channel).await;
                through
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the log to fill a gap");
                out.push(resync_required(channel));
                up_to.unwrap_or(cursor.sent)
            }
        };
        if let Some(cursor) = self.channels.get_mut(&channel).filter(|c| c.member) {
            cursor.sent = cursor.sent.max(through);
        }
    }

    /// After a hole in the log the membership changes inside it are unknown: ask the
    /// database whether the user is still a member.
    async fn across_hole(&mut self, up: &mut impl Upstream, channel: ChannelId) {
        if let Ok(false) = up.is_member(channel).await
            && let Some(cursor) = self.channels.get_mut(&channel)
        {
            cursor.member = false;
        }
    }

    /// One event in the channel's order: sent if it is the next one, its membership change
    /// applied at its seq.
    fn process(&mut self, event: Delivery, out: &mut Vec<Arc<str>>) {
        let channel = event.channel_id;
        let joins = self.joins(&event);
        match self.channels.get_mut(&channel) {
            Some(cursor) if cursor.member && event.seq == cursor.sent + 1 => {
                cursor.sent = event.seq;
                out.push(event.frame);
                if event.membership.is_some_and(|change| change.removes(self.me)) {
                    cursor.member = false;
                }
            }
            // Already sent, or (in a replay) not contiguous: never send out of order.
            Some(cursor) if cursor.member => {}
            _ if joins => {
                self.channels.insert(channel, Cursor { sent: event.seq, live_from: event.seq - 1, member: true });
                out.push(event.frame);
            }
            // Not received: only remember how far the log has been seen.
            Some(cursor) => cursor.sent = cursor.sent.max(event.seq),
            None => {}
        }
    }

    /// Brings the hub's subscription in line with whether the channel is received.
    fn sync(&mut self, up: &mut impl Upstream, channel: ChannelId) {
        let wanted = self.receives(channel);
        if wanted && self.subscribed.insert(channel) {
            up.subscribe(channel);
        } else if !wanted && self.subscribed.remove(&channel) {
            up.unsubscribe(channel);
        }
    }
}

fn resync_required(channel_id: ChannelId) -> Arc<str> {
    ServerFrame::ResyncRequired { channel_id }.encode()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use domain::{ChannelEvent, DisplayName, EventBody, UserSummary, Username};
    use proptest::prelude::*;
    use time::OffsetDateTime;

    use super::*;

    /// The log of one channel, the hub's view of one connection, and what it was sent.
    struct Sim {
        channel: ChannelId,
        me: UserSummary,
        log: Vec<ChannelEvent>,
        /// Only the first `committed` events exist yet.
        committed: usize,
        subscribed: bool,
        initially_member: bool,
        max_replay: usize,
    }

    impl Sim {
        fn delivery(&self, seq: i64) -> Delivery {
            Delivery::of(&self.log[(seq - 1) as usize])
        }

        fn member_at(&self, seq: i64, initially: bool) -> bool {
            let mut member = initially;
            for event in &self.log[..seq as usize] {
                match event.membership() {
                    Some(MembershipChange::Joined(user)) if user == self.me.id => member = true,
                    Some(change) if change.removes(self.me.id) => member = false,
                    _ => {}
                }
            }
            member
        }
    }

    impl Upstream for Sim {
        async fn replay(&mut self, _: ChannelId, after: i64, up_to: Option<i64>) -> Result<Replay, StoreError> {
            let head = self.committed as i64;
            let through = up_to.unwrap_or(head).min(head);
            if through - after > self.max_replay as i64 {
                return Ok(Replay::Incomplete { through });
            }
            let events = ((after + 1)..=through).map(|seq| self.delivery(seq)).collect();
            Ok(Replay::Complete { events, through })
        }

        async fn is_member(&mut self, _: ChannelId) -> Result<bool, StoreError> {
            Ok(self.member_at(self.committed as i64, self.initially_member))
        }

        async fn removal(&mut self, _: ChannelId, after: i64) -> Result<Option<Delivery>, StoreError> {
            Ok(self.log[..self.committed]
                .iter()
                .rev()
                .take_while(|e| e.seq > after)
                .find(|e| e.membership().is_some_and(|c| c.removes(self.me.id)))
                .map(Delivery::of))
        }

        fn subscribe(&mut self, _: ChannelId) {
            self.subscribed = true;
        }

        fn unsubscribe(&mut self, _: ChannelId) {
            self.subscribed = false;
        }
    }

    fn user(name: &str) -> UserSummary {
        UserSummary {
            id: UserId::new(),
            username: Username::parse(name).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Change {
        Message,
        Join,
        Leave,
        Ban,
        Unban,
        OtherJoins,
        Delete,
    }

    fn body(change: Change, me: &UserSummary, other: &UserSummary) -> EventBody {
        match change {
            // Any body without a membership change stands for a message here.
            Change::Message => EventBody::MemberUnbanned { user: other.clone() },
            Change::Join => EventBody::MemberJoined { user: me.clone() },
            Change::Leave => EventBody::MemberLeft { user: me.clone() },
            Change::Ban => EventBody::MemberBanned { user: me.clone() },
            Change::Unban => EventBody::MemberUnbanned { user: me.clone() },
            Change::OtherJoins => EventBody::MemberJoined { user: other.clone() },
            Change::Delete => EventBody::ChannelDeleted { deleted_by: other.id },
        }
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            6 => Just(Change::Message),
            2 => Just(Change::Join),
            1 => Just(Change::Leave),
            1 => Just(Change::Ban),
            1 => Just(Change::Unban),
            1 => Just(Change::OtherJoins),
        ]
    }

    /// What the hub does next: commit the next event, or hand the connection a committed
    /// one (any of them: late, early, twice), or lose one.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Commit,
        Deliver(usize),
        Resume(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Commit),
            4 => any::<usize>().prop_map(Step::Deliver),
            1 => any::<usize>().prop_map(Step::Resume),
        ]
    }

    /// Runs a scenario and returns the seqs the connection was sent, in order, and whether
    /// it was told to resync.
    fn run(
        changes: &[Change],
        deleted: bool,
        initially_member: bool,
        steps: &[Step],
        max_replay: usize,
    ) -> (Sim, Vec<i64>, bool) {
        let me = user("myself");
        let other = user("other");
        let channel = ChannelId::new();
        // As the database writes them: a join only of a non-member, a leave only of a member
        // (a ban is written either way).
        let mut member = initially_member;
        let mut bodies: Vec<EventBody> = Vec::new();
        for change in changes {
            let change = match (*change, member) {
                (Change::Join, true) | (Change::Leave, false) => Change::Message,
                (change, _) => change,
            };
            match change {
                Change::Join => member = true,
                Change::Leave | Change::Ban => member = false,
                _ => {}
            }
            bodies.push(body(change, &me, &other));
        }
        if deleted {
            bodies.push(body(Change::Delete, &me, &other));
        }
        let log: Vec<ChannelEvent> = bodies
            .into_iter()
            .zip(1..)
            .map(|(body, seq)| ChannelEvent::new(channel, seq, OffsetDateTime::UNIX_EPOCH, body))
            .collect();
        let mut sim = Sim {
            channel,
            me: me.clone(),
            log,
            committed: 0,
            subscribed: initially_member,
            initially_member,
            max_replay,
        };
        let snapshot = if initially_member { vec![(channel, 0)] } else { vec![] };
        let mut feed = Feed::new(me.id, snapshot);
        let mut out = Vec::new();
        let mut resync = false;
        futures_util::FutureExt::now_or_never(async {
            for step in steps {
                match *step {
                    Step::Commit if sim.committed < sim.log.len() => {
                        sim.committed += 1;
                        let seq = sim.committed as i64;
                        // The hub sends a committed event to subscribers, and a membership
                        // change to its subject. Other events may be lost on the way (a
                        // Redis blip); a change of our own membership is not: the hub
                        // routes it to us, and a node's catch-up delivers it again.
                        let ours =
                            sim.log[seq as usize - 1].membership().and_then(MembershipChange::subject) == Some(me.id);
                        if ours || (sim.subscribed && seq % 3 != 0) {
                            let delivery = sim.delivery(seq);
                            feed.live(&mut sim, delivery, &mut out).await;
                        }
                    }
                    Step::Deliver(pick) if sim.committed > 0 => {
                        let delivery = sim.delivery((pick % sim.committed) as i64 + 1);
                        feed.live(&mut sim, delivery, &mut out).await;
                    }
                    Step::Resume(pick) if sim.committed > 0 => {
                        let from = (pick % (sim.committed + 1)) as i64;
                        feed.resume(&mut sim, channel, from, &mut out).await;
                    }
                    Step::Commit | Step::Deliver(_) | Step::Resume(_) => {}
                }
            }
            // Then everything commits and the newest event (and every membership change of
            // ours, as the hub routes them to their subject) reaches the connection.
            sim.committed = sim.log.len();
            let last = sim.committed as i64;
            for seq in 1..=last {
                let event = &sim.log[seq as usize - 1];
                if seq == last || event.membership().and_then(MembershipChange::subject) == Some(me.id) {
                    let delivery = sim.delivery(seq);
                    feed.live(&mut sim, delivery, &mut out).await;
                }
            }
        })
        .expect("the simulated upstream never waits");
        let mut seqs = Vec::new();
        for frame in out {
            let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
            match value["data"]["seq"].as_i64() {
                Some(seq) => seqs.push(seq),
                None => resync = true,
            }
        }
        (sim, seqs, resync)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Strictly increasing seq, nothing after a removal until a join, and — when no
        /// resume reached back and no replay was cut short — nothing missing while a member.
        #[test]
        fn a_connection_sees_exactly_what_membership_allows(
            changes in proptest::collection::vec(change(), 1..40),
            deleted in any::<bool>(),
            initially_member in any::<bool>(),
            steps in proptest::collection::vec(step(), 0..120),
            max_replay in prop_oneof![4 => Just(1000usize), 1 => 1usize..5],
        ) {
            let (sim, seqs, resync) = run(&changes, deleted, initially_member, &steps, max_replay);
            let resumed = steps.iter().any(|s| matches!(s, Step::Resume(_)));
            let mut member = initially_member;
            let mut allowed = BTreeSet::new();
            for event in &sim.log {
                let joins = event.membership() == Some(MembershipChange::Joined(sim.me.id));
                if member || joins {
                    allowed.insert(event.seq);
                }
                match event.membership() {
                    Some(MembershipChange::Joined(user)) if user == sim.me.id => member = true,
                    Some(change) if change.removes(sim.me.id) => member = false,
                    _ => {}
                }
            }
            if resumed {
                // A resume may replay history a member may read, but never anything after
                // the removal that ended the membership.
                if !member {
                    let removal = sim
                        .log
                        .iter()
                        .rev()
                        .find(|e| e.membership().is_some_and(|c| c.removes(sim.me.id)))
                        .map_or(0, |e| e.seq);
                    prop_assert!(seqs.iter().all(|seq| *seq <= removal), "sent after the removal at {removal}: {seqs:?}");
                }
            } else {
                prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "not strictly increasing: {seqs:?}");
                for seq in &seqs {
                    prop_assert!(allowed.contains(seq), "sent {seq} while not a member: {seqs:?} allowed {allowed:?}");
                }
                if !resync {
                    let sent: BTreeSet<i64> = seqs.iter().copied().collect();
                    prop_assert_eq!(sent, allowed, "sent {:?}", seqs);
                }
            }
            prop_assert_eq!(sim.subscribed, sim.member_at(sim.log.len() as i64, initially_member));
        }
    }

    #[test]
    fn a_removed_user_gets_the_removal_and_nothing_after() {
        let (sim, seqs, _) = run(
            &[Change::Message, Change::Ban, Change::Message, Change::Unban, Change::Message],
            false,
            true,
            &[Step::Commit, Step::Commit, Step::Commit, Step::Commit, Step::Commit],
            1000,
        );
        assert_eq!(seqs, vec![1, 2]);
        assert!(!sim.subscribed);
    }

    #[test]
    fn a_late_join_subscribes_and_catches_up() {
        // Seq 3 (the join) reaches the connection only at the end, after 4 and 5 committed.
        let (sim, seqs, _) = run(
            &[Change::Message, Change::Message, Change::Join, Change::Message, Change::Message],
            false,
            false,
            &[Step::Commit, Step::Commit],
            1000,
        );
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(sim.subscribed);
    }

    #[test]
    fn a_gap_is_filled_before_the_event_that_revealed_it_and_a_ban_inside_it_applies() {
        let (_, seqs, _) = run(
            &[Change::Message, Change::Ban, Change::Message, Change::Join, Change::Message],
            false,
            true,
            // Nothing is delivered until everything has committed; then the ban (2) arrives
            // and fills 1 from the log, and the join (4) starts the channel again and
            // catches up with 5.
            &[],
            1000,
        );
        assert_eq!(seqs, vec![1, 2, 4, 5]);
    }

    #[test]
    fn resuming_a_channel_one_was_removed_from_tells_only_the_removal() {
        let (sim, _, _) = run(&[Change::Message, Change::Leave, Change::Message], false, true, &[], 1000);
        let mut sim = sim;
        let mut feed = Feed::new(sim.me.id, []);
        let mut out = Vec::new();
        let resumed =
            futures_util::FutureExt::now_or_never(feed.resume(&mut sim, ChannelId::new(), 0, &mut out)).unwrap();
        assert_eq!(resumed, Resumed::Replayed);
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("member_left"));
        let channel = sim.channel;
        let mut out = Vec::new();
        let resumed = futures_util::FutureExt::now_or_never(feed.resume(&mut sim, channel, 2, &mut out)).unwrap();
        assert_eq!((resumed, out.len()), (Resumed::NotReceived, 0), "nothing after the removal the client has");
    }
}
