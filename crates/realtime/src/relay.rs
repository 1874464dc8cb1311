//! Multi-node fan-out over Redis pub/sub. Every node publishes the events it commits and
//! delivers what the others publish to its own connections. Ordering and completeness do
//! not depend on Redis: connections order by seq and fill gaps from the shared event log,
//! and whenever a node may have missed something — its subscription came back after an
//! outage, or another node could not publish — it catches up from the log by itself
//! ([`catch_up`]), without waiting for a later event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{ChannelEvent, ChannelId, EventBody, UserId};
use futures_util::StreamExt as _;
use persistence::{Database, StoreError, channels, events};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::hub::{Hub, Relay};

/// How often a node announces the users it holds.
const PRESENCE_EVERY: Duration = Duration::from_secs(5);
/// Every Redis call gives up after this long: a hung Redis must not hang delivery.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connect, publishes are dropped (and their channels remembered) for this
/// long instead of each waiting for its own connect attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// How often the publisher retries telling the others which channels it could not publish.
const STALE_RETRY: Duration = Duration::from_millis(250);
/// The outbox holds at most this many bytes of unpublished payloads.
pub const MAX_OUTBOX_BYTES: usize = 64 * 1024 * 1024;
/// Catch-up reads at most this many events per channel; a longer hole is left to the
/// connections, which fill it (or ask for a resync) themselves.
const CATCH_UP_LIMIT: i64 = 1000;

#[derive(Serialize, Deserialize)]
struct WireEvent {
    channel_id: ChannelId,
    seq: i64,
    #[serde(with = "domain::timestamp")]
    at: OffsetDateTime,
    kind: String,
    data: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Wire {
    Events {
        node: Uuid,
        events: Vec<WireEvent>,
    },
    Ephemeral {
        node: Uuid,
        channels: Vec<ChannelId>,
        frame: String,
    },
    Presence {
        node: Uuid,
        users: Vec<UserId>,
    },
    /// A frame for these users' connections (a `mention`).
    ToUsers {
        node: Uuid,
        users: Vec<UserId>,
        frame: String,
    },
    PresenceChange {
        node: Uuid,
        user: UserId,
        online: bool,
    },
    /// The sender could not publish some events of these channels: read them from the log.
    Stale {
        node: Uuid,
        channels: Vec<ChannelId>,
    },
}

struct Outgoing {
    payload: String,
    /// The channels whose events the payload carries (empty for presence and typing).
    channels: Vec<ChannelId>,
}

/// The Redis side of a hub.
pub struct RedisRelay {
    node: Uuid,
    outbox: mpsc::UnboundedSender<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    /// Channels with events that never reached Redis; the others are told to catch up.
    stale: Arc<Mutex<HashSet<ChannelId>>>,
}

fn connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_connection_timeout(CALL_TIMEOUT).set_response_timeout(CALL_TIMEOUT)
}

fn set_connected(up: bool) {
    metrics::gauge!("redis_connected").set(if up { 1.0 } else { 0.0 });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisRelay {
    /// Connects (failing if Redis does not answer now), then keeps publishing and
    /// subscribing in the background, reconnecting whenever the link drops.
    pub async fn start(url: &str, namespace: &str, hub: Hub, db: Database) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let mut probe = client.get_multiplexed_async_connection_with_config(&connection_config()).await?;
        redis::cmd("PING").query_async::<()>(&mut probe).await?;
        let topic = format!("{namespace}:events");
        let node = Uuid::now_v7();
        let (outbox, rx) = mpsc::unbounded_channel();
        let relay = Arc::new(Self {
            node,
            outbox,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            stale: Arc::new(Mutex::new(HashSet::new())),
        });
        tokio::spawn(publish_loop(client.clone(), topic.clone(), rx, relay.clone()));
        tokio::spawn(subscribe_loop(client, topic, node, hub.clone(), db));
        tokio::spawn(announce_presence(relay.clone(), hub.clone()));
        hub.set_relay(relay.clone());
        set_connected(true);
        Ok(relay)
    }

    /// This node's id on the Redis topic, as the other nodes see it.
    pub fn node(&self) -> Uuid {
        self.node
    }

    fn send(&self, wire: &Wire, channels: Vec<ChannelId>) {
        let Ok(payload) = serde_json::to_string(wire) else { return };
        let size = payload.len();
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > MAX_OUTBOX_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.dropped(channels);
            return;
        }
        if let Err(error) = self.outbox.send(Outgoing { payload, channels }) {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.dropped(error.0.channels);
        }
    }

    fn dropped(&self, channels: Vec<ChannelId>) {
        metrics::counter!("redis_publishes_dropped_total").increment(1);
        lock(&self.stale).extend(channels);
    }

    /// Tells other nodes at once that a user came or went here.
    pub fn presence_change(&self, user: UserId, online: bool) {
        self.send(&Wire::PresenceChange { node: self.node, user, online }, Vec::new());
    }
}

impl Relay for RedisRelay {
    fn events(&self, events: &[ChannelEvent]) {
        let wire: Vec<WireEvent> = events
            .iter()
            .map(|e| WireEvent {
                channel_id: e.channel_id,
                seq: e.seq,
                at: e.at,
                kind: e.kind().as_str().to_owned(),
                data: e.body.to_data(),
            })
            .collect();
        let mut channels: Vec<ChannelId> = events.iter().map(|e| e.channel_id).collect();
        channels.dedup();
        self.send(&Wire::Events { node: self.node, events: wire }, channels);
    }

    fn ephemeral(&self, channels: &[ChannelId], frame: &str) {
        self.send(
            &Wire::Ephemeral { node: self.node, channels: channels.to_vec(), frame: frame.to_owned() },
            Vec::new(),
        );
    }

    fn to_users(&self, users: &[UserId], frame: &str) {
        self.send(&Wire::ToUsers { node: self.node, users: users.to_vec(), frame: frame.to_owned() }, Vec::new());
    }

    fn presence(&self, user: UserId, online: bool) {
        self.presence_change(user, online);
    }
}

/// A publishing link that reconnects at most every [`RECONNECT_PAUSE`].
struct Publisher {
    client: redis::Client,
    topic: String,
    link: Option<redis::aio::MultiplexedConnection>,
    retry_at: tokio::time::Instant,
}

impl Publisher {
    /// Publishes, reconnecting once if the link was broken (a stale connection after a
    /// blip must not lose the first publish after it).
    async fn publish(&mut self, payload: &str) -> bool {
        for _ in 0..2 {
            if self.link.is_none() {
                if tokio::time::Instant::now() < self.retry_at {
                    return false;
                }
                match self.client.get_multiplexed_async_connection_with_config(&connection_config()).await {
                    Ok(link) => self.link = Some(link),
                    Err(error) => {
                        tracing::warn!(%error, "Redis unreachable for publishing");
                        self.retry_at = tokio::time::Instant::now() + RECONNECT_PAUSE;
                        return false;
                    }
                }
            }
            let Some(link) = self.link.as_mut() else { return false };
            match redis::cmd("PUBLISH").arg(&self.topic).arg(payload).query_async::<()>(link).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, "publishing to Redis failed; reconnecting");
                    self.link = None;
                }
            }
        }
        false
    }
}

async fn publish_loop(
    client: redis::Client,
    topic: String,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    relay: Arc<RedisRelay>,
) {
    let mut publisher = Publisher { client, topic, link: None, retry_at: tokio::time::Instant::now() };
    let mut retry = tokio::time::interval(STALE_RETRY);
    loop {
        let outgoing = tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(outgoing) => Some(outgoing),
                None => return,
            },
            _ = retry.tick() => None,
        };
        // First tell the others what they missed, so they read it from the log.
        let stale: Vec<ChannelId> = lock(&relay.stale).iter().copied().collect();
        if !stale.is_empty() {
            let Ok(payload) = serde_json::to_string(&Wire::Stale { node: relay.node, channels: stale.clone() }) else {
                continue;
            };
            if publisher.publish(&payload).await {
                let mut pending = lock(&relay.stale);
                for channel in &stale {
                    pending.remove(channel);
                }
            }
        }
        let Some(outgoing) = outgoing else { continue };
        relay.queued_bytes.fetch_sub(outgoing.payload.len(), Ordering::AcqRel);
        if !publisher.publish(&outgoing.payload).await {
            // This event reaches other nodes' clients through the log: they catch up when
            // their subscription returns or when our `stale` notice gets through.
            relay.dropped(outgoing.channels);
        }
    }
}

async fn subscribe_loop(client: redis::Client, topic: String, node: Uuid, hub: Hub, db: Database) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let subscribed = async {
            let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, client.get_async_pubsub()).await.ok()?.ok()?;
            tokio::time::timeout(CALL_TIMEOUT, pubsub.subscribe(&topic)).await.ok()?.ok()?;
            Some(pubsub)
        };
        match subscribed.await {
            Some(pubsub) => {
                backoff = Duration::from_millis(100);
                set_connected(true);
                tracing::info!("subscribed to Redis fan-out");
                if !first {
                    // Whatever other nodes published while we were away is in the log.
                    tokio::spawn(run_catch_up(hub.clone(), db.clone(), None));
                }
                first = false;
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    match serde_json::from_str::<Wire>(&payload) {
                        Ok(wire) => receive(&hub, &db, node, wire),
                        Err(error) => tracing::warn!(%error, "ignoring a malformed Redis message"),
                    }
                }
                set_connected(false);
                tracing::warn!("the Redis subscription ended; reconnecting");
            }
            None => {
                set_connected(false);
                first = false;
                tracing::warn!("Redis unreachable for subscribing; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn receive(hub: &Hub, db: &Database, me: Uuid, wire: Wire) {
    match wire {
        Wire::Events { node, events } if node != me => {
            let events = events
                .into_iter()
                .filter_map(|e| match EventBody::from_data(&e.kind, e.data) {
                    Ok(body) => Some(ChannelEvent::new(e.channel_id, e.seq, e.at, body)),
                    Err(error) => {
                        tracing::warn!(%error, kind = e.kind, "ignoring an event this node does not understand");
                        None
                    }
                })
                .collect();
            hub.deliver(events);
        }
        Wire::Ephemeral { node, channels, frame } if node != me => {
            hub.deliver_ephemeral(&channels, &Arc::from(frame), None);
        }
        Wire::ToUsers { node, users, frame } if node != me => {
            hub.deliver_to_users(&users, &Arc::from(frame));
        }
        Wire::Presence { node, users } if node != me => {
            hub.presence().remote_snapshot(node, users.into_iter().collect::<HashSet<_>>());
        }
        Wire::PresenceChange { node, user, online } if node != me => hub.presence().remote_change(node, user, online),
        Wire::Stale { node, channels } if node != me => {
            tokio::spawn(run_catch_up(hub.clone(), db.clone(), Some(channels.into_iter().collect())));
        }
        _ => {}
    }
}

async fn run_catch_up(hub: Hub, db: Database, only: Option<HashSet<ChannelId>>) {
    metrics::counter!("redis_catch_ups_total").increment(1);
    match catch_up(&hub, &db, only.as_ref()).await {
        Ok(delivered) => tracing::info!(delivered, "caught up from the event log"),
        Err(error) => tracing::warn!(%error, "catching up from the event log failed"),
    }
}

/// Brings this node's connections up to date from the event log: every channel it delivers
/// (or only those in `only`) gets the events it has not seen, and every local user who
/// joined a channel without this node hearing of it gets their `member_joined` (their
/// connections then subscribe and catch up by themselves). Returns how many events it
/// handed to the hub.
pub async fn catch_up(hub: &Hub, db: &Database, only: Option<&HashSet<ChannelId>>) -> Result<usize, StoreError> {
    let wanted = |channel: &ChannelId| only.is_none_or(|only| only.contains(channel));
    let delivered: HashMap<ChannelId, Option<i64>> = hub.delivered().into_iter().filter(|(c, _)| wanted(c)).collect();
    let mut conn = db.get().await?;
    let mut handed = 0;
    let ids: Vec<ChannelId> = delivered.keys().copied().collect();
    for (channel, newest) in channels::last_seqs(&mut conn, &ids).await? {
        let seen = delivered.get(&channel).copied().flatten().map_or(newest - 1, |next| next - 1);
        if newest <= seen {
            continue;
        }
        // Past the limit, the newest event alone lets connections see the gap and fill it.
        let after = seen.max(newest - CATCH_UP_LIMIT);
        let missed = events::range(&mut conn, channel, after, Some(newest), CATCH_UP_LIMIT).await?;
        handed += missed.len();
        hub.deliver(missed);
    }

    let local = hub.local_subscriptions();
    let users: Vec<UserId> = local.keys().copied().collect();
    if !users.is_empty() {
        for (user, channel) in channels::memberships_of(&mut conn, &users).await? {
            if !wanted(&channel) || local.get(&user).is_some_and(|subscribed| subscribed.contains(&channel)) {
                continue;
            }
            if let Some(join) = events::latest_join(&mut conn, channel, user).await? {
                handed += 1;
                hub.deliver(vec![join]);
            }
        }
    }
    Ok(handed)
}

async fn announce_presence(relay: Arc<RedisRelay>, hub: Hub) {
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tick.tick().await;
        relay.send(&Wire::Presence { node: relay.node, users: hub.presence().local_users() }, Vec::new());
    }
}
