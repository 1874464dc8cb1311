//! The channel hub: which connection receives which channel, and delivery of events to
//! them — in seq order, without ever waiting on a slow client.
//!
//! The hub routes; it does not decide rights. Each connection's [`crate::feed::Feed`] applies
//! membership changes from the channel's ordered stream and tells the hub what to
//! (un)subscribe. So the hub never has to get membership right on its own: it delivers an
//! event to the channel's subscribers and, when the event changes someone's membership, to
//! that user's other connections too, so a joiner learns of the join even when it arrives
//! late.
//!
//! Architecture Invariant: a channel's lock may be held while taking the registry's lock,
//! never the other way round; no lock is held across `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use domain::{ChannelEvent, ChannelId, EventSink, MembershipChange, MentionNotice, UserId, UserSummary};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::presence::Presence;
use crate::protocol::ServerFrame;

pub type ConnId = u64;

/// How long the hub holds an event that arrived ahead of its predecessor, waiting for it,
/// before delivering anyway (connections then fill the gap from the event log).
const REORDER_WAIT: Duration = Duration::from_millis(100);

/// One channel event as connections receive it: its place in the channel's order, what it
/// does to membership, and the frame, encoded once for every receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel_id: ChannelId,
    pub seq: i64,
    pub membership: Option<MembershipChange>,
    pub frame: Arc<str>,
}

impl Delivery {
    pub fn of(event: &ChannelEvent) -> Self {
        Self {
            channel_id: event.channel_id,
            seq: event.seq,
            membership: event.membership(),
            frame: Arc::from(event.to_frame()),
        }
    }
}

/// What the hub hands a connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Shared by every connection it is queued for: a queue slot is a pointer, so an idle
    /// connection's queue (its first block of slots) stays small.
    Event(Arc<Delivery>),
    /// Typing and presence: no seq, no replay.
    Ephemeral(Arc<str>),
}

/// Why the hub ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Its queue overflowed: it should reconnect and resume (4008).
    SlowConsumer,
    /// Its token no longer counts (4001), with the reason sent in the close frame.
    Revoked(&'static str),
}

/// Tells a session that the hub ended it, and why. The first reason wins.
#[derive(Debug, Default)]
pub struct Signal {
    notify: Notify,
    reason: OnceLock<Kick>,
}

impl Signal {
    fn kick(&self, why: Kick) {
        let _ = self.reason.set(why);
        self.notify.notify_one();
    }

    /// Why the hub ended the connection, if it has. It always drops the connection's queue
    /// after setting this, so a session waiting on its queue wakes to read it.
    pub fn reason(&self) -> Option<Kick> {
        self.reason.get().copied()
    }

    /// Waits until the hub ends the connection.
    pub async fn kicked(&self) -> Kick {
        loop {
            if let Some(why) = self.reason.get() {
                return *why;
            }
            self.notify.notified().await;
        }
    }
}

/// The credential a connection was opened with, so revocations can find its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    pub user: UserId,
    /// The token's id (`jti`).
    pub token: Uuid,
    /// When the token was issued (Unix seconds), for "every token issued before".
    pub issued_at: i64,
}

/// Where a connection's events go. The queue is bounded: when it is full the connection
/// is a slow consumer and is dropped from the hub, never waited for.
#[derive(Clone)]
struct Subscriber {
    conn: ConnId,
    tx: mpsc::Sender<Outbound>,
}

struct ConnEntry {
    credential: Credential,
    tx: mpsc::Sender<Outbound>,
    channels: HashSet<ChannelId>,
    signal: Arc<Signal>,
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
    /// A frame for every connection of these users (a `mention`).
    fn to_users(&self, users: &[UserId], frame: &str);
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
    /// Says when the hub drops the connection (slow consumer, revoked token), so a session
    /// blocked on a stalled socket stops waiting.
    pub signal: Arc<Signal>,
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

    /// Registers a connection. It receives nothing of any channel until it subscribes,
    /// except events that change its user's membership.
    pub fn register(&self, credential: Credential) -> Registration {
        let conn = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.shared.queue_capacity);
        let signal = Arc::new(Signal::default());
        let mut registry = lock(&self.shared.registry);
        registry.conns.insert(conn, ConnEntry { credential, tx, channels: HashSet::new(), signal: signal.clone() });
        registry.by_user.entry(credential.user).or_default().insert(conn);
        Registration { conn, rx, signal }
    }

    /// Delivers the channel's events to `conn` from now on.
    pub fn subscribe(&self, conn: ConnId, channel_id: ChannelId) {
        self.with_channel(channel_id, |state| {
            let mut registry = lock(&self.shared.registry);
            if let Some(entry) = registry.conns.get_mut(&conn)
                && entry.channels.insert(channel_id)
            {
                state.subscribers.push(Subscriber { conn, tx: entry.tx.clone() });
            }
        });
    }

    /// Stops delivering the channel's events to `conn`.
    pub fn unsubscribe(&self, conn: ConnId, channel_id: ChannelId) {
        self.with_channel(channel_id, |state| {
            state.subscribers.retain(|s| s.conn != conn);
            if let Some(entry) = lock(&self.shared.registry).conns.get_mut(&conn) {
                entry.channels.remove(&channel_id);
            }
        });
    }

    /// Removes a connection from the hub. Returns false if it was already gone (kicked).
    pub fn unregister(&self, conn: ConnId) -> bool {
        self.remove(conn).is_some()
    }

    fn remove(&self, conn: ConnId) -> Option<ConnEntry> {
        let entry = {
            let mut registry = lock(&self.shared.registry);
            let entry = registry.conns.remove(&conn)?;
            if let Some(conns) = registry.by_user.get_mut(&entry.credential.user) {
                conns.remove(&conn);
                if conns.is_empty() {
                    registry.by_user.remove(&entry.credential.user);
                }
            }
            entry
        };
        for &channel_id in &entry.channels {
            self.with_channel(channel_id, |state| state.subscribers.retain(|s| s.conn != conn));
        }
        Some(entry)
    }

    /// Whether `conn` currently receives `channel_id`.
    pub fn is_subscribed(&self, conn: ConnId, channel_id: ChannelId) -> bool {
        lock(&self.shared.registry).conns.get(&conn).is_some_and(|e| e.channels.contains(&channel_id))
    }

    /// Ends every connection whose credential `revoked` rejects, with 4001 and `why`.
    /// Returns how many it ended.
    pub fn close_revoked(&self, revoked: impl Fn(&Credential) -> bool, why: &'static str) -> usize {
        let doomed: Vec<ConnId> = lock(&self.shared.registry)
            .conns
            .iter()
            .filter(|(_, entry)| revoked(&entry.credential))
            .map(|(conn, _)| *conn)
            .collect();
        for &conn in &doomed {
            if let Some(entry) = self.remove(conn) {
                entry.signal.kick(Kick::Revoked(why));
                metrics::counter!("websocket_revoked_disconnects_total").increment(1);
            }
        }
        doomed.len()
    }

    /// The channels this node delivers, with the next seq it expects of each (`None`: no
    /// event seen yet), for catching up after a Redis outage.
    pub fn delivered(&self) -> Vec<(ChannelId, Option<i64>)> {
        let channels: Vec<(ChannelId, Arc<Mutex<ChannelState>>)> =
            lock(&self.shared.channels).iter().map(|(id, state)| (*id, state.clone())).collect();
        channels
            .into_iter()
            .filter_map(|(id, state)| {
                let state = lock(&state);
                (!state.retired && !state.subscribers.is_empty()).then_some((id, state.next))
            })
            .collect()
    }

    /// Per user with a connection here: the channels at least one of their connections
    /// receives, for finding joins this node never heard of.
    pub fn local_subscriptions(&self) -> HashMap<UserId, HashSet<ChannelId>> {
        let registry = lock(&self.shared.registry);
        let mut out: HashMap<UserId, HashSet<ChannelId>> = HashMap::new();
        for entry in registry.conns.values() {
            out.entry(entry.credential.user).or_default().extend(entry.channels.iter().copied());
        }
        out
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
    /// arrive from other nodes and from catch-up reads of the log).
    pub fn deliver(&self, events: Vec<ChannelEvent>) {
        let mut by_channel: HashMap<ChannelId, Vec<ChannelEvent>> = HashMap::new();
        for event in events {
            by_channel.entry(event.channel_id).or_default().push(event);
        }
        for (channel_id, events) in by_channel {
            let mut slow = Vec::new();
            let flush = self.with_channel(channel_id, |state| {
                for event in events {
                    match sequence(state, event) {
                        Sequenced::Ready(ready) => {
                            for event in ready {
                                self.fan_out(state, &event, &mut slow);
                            }
                        }
                        // Its subscribers had it (or filled it from the log); a membership
                        // change still goes to its subject, whose connections may not
                        // subscribe yet.
                        Sequenced::Late(event) => {
                            if event.membership().and_then(MembershipChange::subject).is_some() {
                                self.to_subject(state, &Arc::new(Delivery::of(&event)), &mut slow);
                            }
                        }
                        Sequenced::Held => {}
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
                self.fan_out(state, &event, &mut slow);
            }
        });
        self.kick(slow);
    }

    /// Sends one in-order event to the channel's subscribers, and a membership change also
    /// to its subject's connections that do not subscribe (a joiner, typically).
    fn fan_out(&self, state: &ChannelState, event: &ChannelEvent, slow: &mut Vec<ConnId>) {
        let delivery = Arc::new(Delivery::of(event));
        for subscriber in &state.subscribers {
            if subscriber.tx.try_send(Outbound::Event(delivery.clone())).is_err() {
                slow.push(subscriber.conn);
            }
        }
        metrics::counter!("events_fanned_out_total").increment(state.subscribers.len() as u64);
        self.to_subject(state, &delivery, slow);
    }

    fn to_subject(&self, state: &ChannelState, delivery: &Arc<Delivery>, slow: &mut Vec<ConnId>) {
        let Some(user) = delivery.membership.and_then(MembershipChange::subject) else {
            return;
        };
        let registry = lock(&self.shared.registry);
        for conn in registry.by_user.get(&user).into_iter().flatten() {
            if state.subscribers.iter().any(|s| s.conn == *conn) {
                continue;
            }
            if let Some(entry) = registry.conns.get(conn)
                && entry.tx.try_send(Outbound::Event(delivery.clone())).is_err()
            {
                slow.push(*conn);
            }
        }
    }

    /// Drops slow consumers from the hub; their sessions see the signal and end the
    /// connection with 4008.
    fn kick(&self, conns: Vec<ConnId>) {
        for conn in conns {
            if let Some(entry) = self.remove(conn) {
                entry.signal.kick(Kick::SlowConsumer);
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

    /// Sends a frame to every connection of `users` on this node. Like typing, it is live
    /// only and may be dropped for a connection whose queue is full; what it announces can
    /// be read back (`mention_count`, `GET /api/mentions`).
    pub fn deliver_to_users(&self, users: &[UserId], frame: &Arc<str>) {
        let registry = lock(&self.shared.registry);
        for user in users {
            for conn in registry.by_user.get(user).into_iter().flatten() {
                if let Some(entry) = registry.conns.get(conn) {
                    let _ = entry.tx.try_send(Outbound::Ephemeral(frame.clone()));
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

    fn notify(&self, notices: Vec<MentionNotice>) {
        for notice in notices {
            let frame: Arc<str> = Arc::from(notice.to_frame());
            if let Some(relay) = self.relay() {
                relay.to_users(&notice.users, &frame);
            }
            self.deliver_to_users(&notice.users, &frame);
        }
    }
}

enum Sequenced {
    /// These are next, in order.
    Ready(Vec<ChannelEvent>),
    /// Waits for its predecessor.
    Held,
    /// Older than what was delivered.
    Late(ChannelEvent),
}

/// Puts one event into the channel's order.
fn sequence(state: &mut ChannelState, event: ChannelEvent) -> Sequenced {
    let Some(next) = state.next else {
        state.next = Some(event.seq + 1);
        return Sequenced::Ready(vec![event]);
    };
    if event.seq < next {
        return Sequenced::Late(event);
    }
    if event.seq > next {
        state.pending.insert(event.seq, event);
        return Sequenced::Held;
    }
    let mut ready = vec![event];
    let mut expected = next + 1;
    while let Some(event) = state.pending.remove(&expected) {
        ready.push(event);
        expected += 1;
    }
    state.next = Some(expected);
    Sequenced::Ready(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{DisplayName, EventBody, Username};
    use time::OffsetDateTime;

    fn user(name: &str) -> UserSummary {
        UserSummary {
            id: UserId::new(),
            username: Username::parse(name).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
        }
    }

    fn event(channel: ChannelId, seq: i64, body: &EventBody) -> ChannelEvent {
        ChannelEvent::new(channel, seq, OffsetDateTime::UNIX_EPOCH, body.clone())
    }

    fn credential(user: UserId) -> Credential {
        Credential { user, token: Uuid::now_v7(), issued_at: 0 }
    }

    fn connect(hub: &Hub, user: UserId, channels: &[ChannelId]) -> Registration {
        let registration = hub.register(credential(user));
        for channel in channels {
            hub.subscribe(registration.conn, *channel);
        }
        registration
    }

    fn seqs(rx: &mut mpsc::Receiver<Outbound>) -> Vec<i64> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let Outbound::Event(delivery) = item {
                out.push(delivery.seq);
            }
        }
        out
    }

    #[tokio::test]
    async fn delivers_in_seq_order_even_when_published_out_of_order() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let mut reg = connect(&hub, UserId::new(), &[channel]);
        let body = EventBody::MemberUnbanned { user: user("bob") };
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
        let mut reg = connect(&hub, UserId::new(), &[channel]);
        let body = EventBody::MemberUnbanned { user: user("bob") };
        hub.publish(vec![event(channel, 1, &body), event(channel, 3, &body)]);
        assert_eq!(seqs(&mut reg.rx), vec![1]);
        tokio::time::sleep(REORDER_WAIT * 2).await;
        assert_eq!(seqs(&mut reg.rx), vec![3]);
    }

    #[tokio::test]
    async fn a_membership_change_reaches_its_subject_even_when_late() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let carol = user("carol");
        let mut owner = connect(&hub, UserId::new(), &[channel]);
        let mut carol_conn = connect(&hub, carol.id, &[]);
        let message = EventBody::MemberUnbanned { user: user("dave") };
        hub.publish(vec![event(channel, 1, &message)]);
        hub.publish(vec![event(channel, 2, &EventBody::MemberJoined { user: carol.clone() })]);
        assert_eq!(seqs(&mut owner.rx), vec![1, 2]);
        assert_eq!(seqs(&mut carol_conn.rx), vec![2], "the joiner hears of the join, not what came before");
        hub.publish(vec![event(channel, 3, &message)]);
        assert_eq!(seqs(&mut carol_conn.rx), Vec::<i64>::new(), "the hub routes; carol's feed subscribes");
        // A join the hub already gave up on still reaches its subject.
        hub.publish(vec![event(channel, 2, &EventBody::MemberJoined { user: carol.clone() })]);
        assert_eq!(seqs(&mut carol_conn.rx), vec![2]);
        assert_eq!(seqs(&mut owner.rx), vec![3]);
    }

    #[tokio::test]
    async fn channels_nobody_receives_are_forgotten() {
        let hub = Hub::default();
        let channel = ChannelId::new();
        let reg = connect(&hub, UserId::new(), &[channel]);
        assert_eq!(hub.channel_count(), 1);
        hub.publish(vec![event(ChannelId::new(), 1, &EventBody::MemberUnbanned { user: user("bob") })]);
        assert_eq!(hub.channel_count(), 1, "a channel without subscribers here keeps no state");
        hub.unregister(reg.conn);
        assert_eq!(hub.channel_count(), 0);
        let again = connect(&hub, UserId::new(), &[channel]);
        assert!(hub.is_subscribed(again.conn, channel));
        assert_eq!(hub.delivered(), vec![(channel, None)]);
        hub.unsubscribe(again.conn, channel);
        assert_eq!(hub.channel_count(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_kicks_only_that_connection() {
        let hub = Hub::new(2);
        let channel = ChannelId::new();
        let mut fast = connect(&hub, UserId::new(), &[channel]);
        let slow = connect(&hub, UserId::new(), &[channel]);
        let body = EventBody::MemberUnbanned { user: user("bob") };
        for seq in 1..=3 {
            hub.publish(vec![event(channel, seq, &body)]);
            assert_eq!(seqs(&mut fast.rx).len(), 1);
        }
        assert_eq!(hub.connection_count(), 1, "the slow connection was dropped");
        assert_eq!(slow.signal.kicked().await, Kick::SlowConsumer);
        assert!(!hub.unregister(slow.conn));
    }

    #[tokio::test]
    async fn revocation_ends_exactly_the_matching_connections() {
        let hub = Hub::default();
        let alice = UserId::new();
        let first = hub.register(credential(alice));
        let second = hub.register(Credential { issued_at: 100, ..credential(alice) });
        let bob = hub.register(credential(UserId::new()));
        let token = lock(&hub.shared.registry).conns[&first.conn].credential.token;
        assert_eq!(hub.close_revoked(|c| c.token == token, "logged out"), 1);
        assert_eq!(first.signal.kicked().await, Kick::Revoked("logged out"));
        assert_eq!(hub.close_revoked(|c| c.user == alice && c.issued_at < 50, "password changed"), 0);
        assert_eq!(hub.close_revoked(|c| c.user == alice && c.issued_at < 150, "password changed"), 1);
        assert_eq!(second.signal.kicked().await, Kick::Revoked("password changed"));
        assert!(hub.unregister(bob.conn));
    }
}
