//! The channel hub: which connection is subscribed to which channel, and delivery of events
//! to them — in seq order, without ever waiting on a slow client.
//!
//! Architecture Invariant: a channel's lock may be held while taking the registry's lock,
//! never the other way round; no lock is held across `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use domain::{ChannelEvent, ChannelId, EventKind, EventSink, UserId, UserSummary};
use tokio::sync::{Notify, mpsc};

use crate::presence::Presence;
use crate::protocol::{ServerFrame, encode_event};

pub type ConnId = u64;

/// How long the hub holds an event that arrived ahead of its predecessor, waiting for it,
/// before delivering anyway (sessions then fill the gap from the event log).
const REORDER_WAIT: Duration = Duration::from_millis(100);

/// What the hub hands a connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A channel event, encoded once for everyone.
    Event { channel_id: ChannelId, seq: i64, frame: Arc<str> },
    /// Typing and presence: no seq, no replay.
    Ephemeral(Arc<str>),
    /// The connection no longer receives this channel (left, banned, deleted).
    Left { channel_id: ChannelId },
}

/// Where a connection's events go. The queue is bounded: when it is full the connection
/// is a slow consumer and is dropped from the hub, never waited for.
#[derive(Clone)]
struct Subscriber {
    conn: ConnId,
    tx: mpsc::Sender<Outbound>,
}

struct ConnEntry {
    user: UserId,
    tx: mpsc::Sender<Outbound>,
    channels: HashSet<ChannelId>,
    kicked: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<ConnId, ConnEntry>,
    by_user: HashMap<UserId, HashSet<ConnId>>,
}

#[derive(Default)]
struct ChannelState {
    subscribers: Vec<Subscriber>,
    /// The next seq to deliver; `None` until the first event is seen.
    next: Option<i64>,
    /// Events that arrived before their predecessor.
    pending: BTreeMap<i64, ChannelEvent>,
    flush_scheduled: bool,
    /// Removed from the hub's map (no subscribers, nothing pending): whoever still holds it
    /// must fetch the channel's current state instead.
    retired: bool,
}

/// Something that carries events to the other nodes (Redis pub/sub).
pub trait Relay: Send + Sync {
    fn events(&self, events: &[ChannelEvent]);
    fn ephemeral(&self, channels: &[ChannelId], frame: &str);
    fn presence(&self, user: UserId, online: bool);
}

struct Shared {
    registry: Mutex<Registry>,
    channels: Mutex<HashMap<ChannelId, Arc<Mutex<ChannelState>>>>,
    presence: Presence,
    next_conn: AtomicU64,
    queue_capacity: usize,
    relay: Mutex<Option<Arc<dyn Relay>>>,
}

/// A cheap-to-clone handle to the hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(1024)
    }
}

/// A connection's registration: its id and the receiving end of its queue. Dropping it
/// does not unregister; call [`Hub::unregister`].
pub struct Registration {
    pub conn: ConnId,
    pub rx: mpsc::Receiver<Outbound>,
    /// Notified when the hub drops the connection as a slow consumer, so a session blocked
    /// on a stalled socket stops waiting.
    pub kicked: Arc<Notify>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a hub lock leaves consistent-enough maps (every update is a
    // single insert or remove); keep serving rather than poisoning every connection.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// `queue_capacity` bounds each connection's queue of undelivered frames.
    pub fn new(queue_capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: Mutex::default(),
                channels: Mutex::default(),
                presence: Presence::default(),
                next_conn: AtomicU64::new(1),
                queue_capacity,
                relay: Mutex::new(None),
            }),
        }
    }

    /// Connects the hub to other nodes.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        *lock(&self.shared.relay) = Some(relay);
    }

    fn relay(&self) -> Option<Arc<dyn Relay>> {
        lock(&self.shared.relay).clone()
    }

    pub fn presence(&self) -> &Presence {
        &self.shared.presence
    }

    pub fn connection_count(&self) -> usize {
        lock(&self.shared.registry).conns.len()
    }

    fn channel(&self, channel_id: ChannelId) -> Arc<Mutex<ChannelState>> {
        lock(&self.shared.channels).entry(channel_id).or_default().clone()
    }

    /// Runs `f` on the channel's live state, then retires the state when nobody on this node
    /// receives the channel any more, so the map holds only channels in use. The channel's
    /// lock is held while the map's is taken, never the reverse (`channel` holds the map's
    /// lock only to clone the entry).
    fn with_channel<R>(&self, channel_id: ChannelId, f: impl FnOnce(&mut ChannelState) -> R) -> R {
        loop {
            let channel = self.channel(channel_id);
            let mut state = lock(&channel);
            if state.retired {
                continue;
            }
            let result = f(&mut state);
            if state.subscribers.is_empty() && state.pending.is_empty() && !state.flush_scheduled {
                let mut map = lock(&self.shared.channels);
                if map.get(&channel_id).is_some_and(|current| Arc::ptr_eq(current, &channel)) {
                    map.remove(&channel_id);
                }
                state.retired = true;
            }
            return result;
        }
    }

    /// Channels this node keeps state for (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        lock(&self.shared.channels).len()
    }

    /// Registers a connection of `user` subscribed to `channels`.
    pub fn register(&self, user: UserId, channels: &[ChannelId]) -> Registration {
        let conn = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.shared.queue_capacity);
        let kicked = Arc::new(Notify::new());
        {
            let mut registry = lock(&self.shared.registry);
            registry
                .conns
                .insert(conn, ConnEntry { user, tx: tx.clone(), channels: HashSet::new(), kicked: kicked.clone() });
            registry.by_user.entry(user).or_default().insert(conn);
        }
        for &channel_id in channels {
            self.with_channel(channel_id, |state| {
                state.subscribers.push(Subscriber { conn, tx: tx.clone() });
                if let Some(entry) = lock(&self.shared.registry).conns.get_mut(&conn) {
                    entry.channels.insert(channel_id);
                }
            });
        }
        Registration { conn, rx, kicked }
    }

    /// Removes a connection from the hub. Returns false if it was already gone (kicked).
    pub fn unregister(&self, conn: ConnId) -> bool {
        self.remove(conn).is_some()
    }

    fn remove(&self, conn: ConnId) -> Option<ConnEntry> {
        let entry = {
            let mut registry = lock(&self.shared.registry);
            let entry = registry.conns.remove(&conn)?;
            if let Some(conns) = registry.by_user.get_mut(&entry.user) {
                conns.remove(&conn);
                if conns.is_empty() {
                    registry.by_user.remove(&entry.user);
                }
            }
            entry
        };
        for &channel_id in &entry.channels {
            self.with_channel(channel_id, |state| state.subscribers.retain(|s| s.conn != conn));
        }
        Some(entry)
    }

    /// Whether `conn` currently receives `channel_id` (so is a member, not banned).
    pub fn is_subscribed(&self, conn: ConnId, channel_id: ChannelId) -> bool {
        lock(&self.shared.registry).conns.get(&conn).is_some_and(|e| e.channels.contains(&channel_id))
    }

    /// Publishes committed events: to this node's connections and, through the relay, to
    /// every other node's.
    pub fn publish(&self, events: Vec<ChannelEvent>) {
        if events.is_empty() {
            return;
        }
        if let Some(relay) = self.relay() {
            relay.events(&events);
        }
        self.deliver(events);
    }

    /// Delivers events to this node's connections (also the entry point for events that
    /// arrive from other nodes).
    pub fn deliver(&self, events: Vec<ChannelEvent>) {
        let mut by_channel: HashMap<ChannelId, Vec<ChannelEvent>> = HashMap::new();
        for event in events {
            by_channel.entry(event.channel_id).or_default().push(event);
        }
        for (channel_id, events) in by_channel {
            let mut slow = Vec::new();
            let flush = self.with_channel(channel_id, |state| {
                for event in events {
                    for ready in sequence(state, event) {
                        self.fan_out(channel_id, state, &ready, &mut slow);
                    }
                }
                let flush = !state.pending.is_empty() && !state.flush_scheduled;
                state.flush_scheduled |= flush;
                flush
            });
            if flush {
                self.schedule_flush(channel_id);
            }
            self.kick(slow);
        }
    }

    fn schedule_flush(&self, channel_id: ChannelId) {
        let hub = self.clone();
        let spawned = tokio::runtime::Handle::try_current().map(|handle| {
            handle.spawn(async move {
                tokio::time::sleep(REORDER_WAIT).await;
                hub.flush(channel_id);
            })
        });
        if spawned.is_err() {
            self.flush(channel_id);
        }
    }

    /// Gives up waiting for missing seqs: delivers what is pending, in order.
    fn flush(&self, channel_id: ChannelId) {
        let mut slow = Vec::new();
        self.with_channel(channel_id, |state| {
            state.flush_scheduled = false;
            let pending = std::mem::take(&mut state.pending);
            for (seq, event) in pending {
                state.next = Some(seq + 1);
                self.fan_out(channel_id, state, &event, &mut slow);
            }
        });
        self.kick(slow);
    }

    /// Sends one in-order event to the channel's subscribers, applying the membership change
    /// it describes at the right point: a newcomer receives their own `member_joined`, a
    /// banned user receives their `member_banned` and nothing after.
    fn fan_out(&self, channel_id: ChannelId, state: &mut ChannelState, event: &ChannelEvent, slow: &mut Vec<ConnId>) {
        if event.kind == EventKind::MemberJoined
            && let Some(user) = event.subject
        {
            let mut registry = lock(&self.shared.registry);
            let conns: Vec<ConnId> =
                registry.by_user.get(&user).map(|c| c.iter().copied().collect()).unwrap_or_default();
            for conn in conns {
                if let Some(entry) = registry.conns.get_mut(&conn)
                    && entry.channels.insert(channel_id)
                {
                    state.subscribers.push(Subscriber { conn, tx: entry.tx.clone() });
                }
            }
        }

        let frame = encode_event(event);
        for subscriber in &state.subscribers {
            let item = Outbound::Event { channel_id, seq: event.seq, frame: frame.clone() };
            if subscriber.tx.try_send(item).is_err() {
                slow.push(subscriber.conn);
            }
        }
        metrics::counter!("events_fanned_out_total").increment(state.subscribers.len() as u64);

        let leaving: Option<Box<dyn Fn(UserId) -> bool>> = match (event.kind, event.subject) {
            (EventKind::MemberLeft | EventKind::MemberBanned, Some(user)) => Some(Box::new(move |u| u == user)),
            (EventKind::ChannelDeleted, _) => Some(Box::new(|_| true)),
            _ => None,
        };
        if let Some(leaves) = leaving {
            let mut registry = lock(&self.shared.registry);
            state.subscribers.retain(|s| {
                let Some(entry) = registry.conns.get_mut(&s.conn) else {
                    return false;
                };
                if leaves(entry.user) {
                    entry.channels.remove(&channel_id);
                    let _ = s.tx.try_send(Outbound::Left { channel_id });
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Drops slow consumers from the hub; their sessions see the queue close and end the
    /// connection with 4008.
    fn kick(&self, conns: Vec<ConnId>) {
        for conn in conns {
            if let Some(entry) = self.remove(conn) {
                entry.kicked.notify_one();
                metrics::counter!("websocket_slow_consumer_disconnects_total").increment(1);
                tracing::info!(conn, "closing a slow consumer");
            }
        }
    }

    /// Sends an ephemeral frame (typing, presence) to every connection subscribed to any of
    /// `channels`, once each, except `except`, here and on the other nodes.
    pub fn broadcast(&self, channels: &[ChannelId], frame: &Arc<str>, except: Option<ConnId>) {
        if let Some(relay) = self.relay() {
            relay.ephemeral(channels, frame);
        }
        self.deliver_ephemeral(channels, frame, except);
    }

    pub fn deliver_ephemeral(&self, channels: &[ChannelId], frame: &Arc<str>, except: Option<ConnId>) {
        let mut seen = HashSet::new();
        for &channel_id in channels {
            let Some(channel) = lock(&self.shared.channels).get(&channel_id).cloned() else {
                continue;
            };
            let state = lock(&channel);
            for subscriber in &state.subscribers {
                if Some(subscriber.conn) != except && seen.insert(subscriber.conn) {
                    // Ephemeral frames may be dropped under pressure; they are not worth a kick.
                    let _ = subscriber.tx.try_send(Outbound::Ephemeral(frame.clone()));
                }
            }
        }
    }

    /// Records that `user` got their first (or closed their last) connection on this node:
    /// other nodes are told, and everyone sharing a channel sees a `presence` frame unless
    /// the user is still online through another node.
    pub fn presence_changed(&self, user: &UserSummary, channels: &[ChannelId], online: bool, except: Option<ConnId>) {
        if let Some(relay) = self.relay() {
            relay.presence(user.id, online);
        }
        if !self.presence().online_elsewhere(user.id) {
            let frame = ServerFrame::Presence { user_id: user.id, username: user.username.as_str(), online }.encode();
            self.broadcast(channels, &frame, except);
        }
    }
}

impl EventSink for Hub {
    fn publish(&self, events: Vec<ChannelEvent>) {
        Hub::publish(self, events);
    }
}

/// Puts one event into the channel's order: returns the events now deliverable.
fn sequence(state: &mut ChannelState, event: ChannelEvent) -> Vec<ChannelEvent> {
    let Some(next) = state.next else {
        state.next = Some(event.seq + 1);
        return vec![event];
    };
    if event.seq < next {
        // Already delivered (or given up on and filled from the log by the sessions).
        return Vec::new();
    }
    if event.seq > next {
        state.pending.insert(event.seq, event);
        return Vec::new();
    }
    let mut ready = vec![event];
    let mut expected = next + 1;
    while let Some(event) = state.pending.remove(&expected) {
        ready.push(event);
        expected += 1;
    }
    state.next = Some(expected);
    ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{DisplayName, EventBody, Username};

    fn user(name: &str) -> UserSummary {
        UserSummary {
            id: UserId::new(),
            username: Username::parse(name).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
        }
    }

    fn event(channel: ChannelId, seq: i64, body: &EventBody) -> ChannelEvent {
        ChannelEvent::new(channel, seq, body)
    }

    fn seqs(rx: &mut mpsc::Receiver<Outbound>) -> Vec<i64> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let Outbound::Event { seq, .. } = item {
                out.push(seq);
            }
        }
        out
    }

    #[tokio::test]
    async fn delivers_in_seq_order_even_when_published_out_of_order() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let alice = user("alice");
        let mut reg = hub.register(alice.id, &[channel]);
        let body = EventBody::MemberJoined { user: user("bob") };
        hub.publish(vec![event(channel, 1, &body)]);
        hub.publish(vec![event(channel, 3, &body)]);
        hub.publish(vec![event(channel, 4, &body)]);
        assert_eq!(seqs(&mut reg.rx), vec![1], "3 and 4 wait for 2");
        hub.publish(vec![event(channel, 2, &body)]);
        assert_eq!(seqs(&mut reg.rx), vec![2, 3, 4]);
        hub.publish(vec![event(channel, 3, &body)]);
        assert_eq!(seqs(&mut reg.rx), Vec::<i64>::new(), "duplicates are dropped");
    }

    #[tokio::test]
    async fn a_missing_seq_is_given_up_on_after_the_wait() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let mut reg = hub.register(UserId::new(), &[channel]);
        let body = EventBody::MemberJoined { user: user("bob") };
        hub.publish(vec![event(channel, 1, &body), event(channel, 3, &body)]);
        assert_eq!(seqs(&mut reg.rx), vec![1]);
        tokio::time::sleep(REORDER_WAIT * 2).await;
        assert_eq!(seqs(&mut reg.rx), vec![3]);
    }

    #[tokio::test]
    async fn joins_subscribe_and_bans_unsubscribe_at_the_right_event() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let owner = user("owner");
        let carol = user("carol");
        let mut owner_conn = hub.register(owner.id, &[channel]);
        let mut carol_conn = hub.register(carol.id, &[]);
        hub.publish(vec![event(channel, 1, &EventBody::MemberJoined { user: carol.clone() })]);
        hub.publish(vec![event(channel, 2, &EventBody::MemberBanned { user: carol.clone() })]);
        hub.publish(vec![event(channel, 3, &EventBody::MemberJoined { user: user("dave") })]);
        assert_eq!(seqs(&mut owner_conn.rx), vec![1, 2, 3]);
        assert_eq!(seqs(&mut carol_conn.rx), vec![1, 2], "carol sees her ban and nothing after");
        assert!(!hub.is_subscribed(carol_conn.conn, channel));
    }

    #[tokio::test]
    async fn channels_nobody_receives_are_forgotten() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let reg = hub.register(UserId::new(), &[channel]);
        assert_eq!(hub.channel_count(), 1);
        hub.publish(vec![event(ChannelId::new(), 1, &EventBody::MemberJoined { user: user("bob") })]);
        assert_eq!(hub.channel_count(), 1, "a channel without subscribers here keeps no state");
        hub.unregister(reg.conn);
        assert_eq!(hub.channel_count(), 0);
        let again = hub.register(UserId::new(), &[channel]);
        assert!(hub.is_subscribed(again.conn, channel));
        assert_eq!(hub.channel_count(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_kicks_only_that_connection() {
        let hub = Hub::new(2);
        let channel = ChannelId::new();
        let mut fast = hub.register(UserId::new(), &[channel]);
        let slow = hub.register(UserId::new(), &[channel]);
        let body = EventBody::MemberJoined { user: user("bob") };
        for seq in 1..=3 {
            hub.publish(vec![event(channel, seq, &body)]);
            assert_eq!(seqs(&mut fast.rx).len(), 1);
        }
        assert_eq!(hub.connection_count(), 1, "the slow connection was dropped");
        assert!(!hub.unregister(slow.conn));
    }
}
