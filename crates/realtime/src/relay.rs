//! Multi-node fan-out over Redis pub/sub. Every node publishes the events it commits and
//! delivers what the others publish to its own connections. Ordering and completeness do
//! not depend on Redis: sessions order by seq and fill gaps from the shared event log, so
//! a lost Redis message costs a log read, never an event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use domain::{ChannelEvent, ChannelId, EventKind, UserId};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::hub::{Hub, Relay};

/// How often a node announces the users it holds.
const PRESENCE_EVERY: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
struct WireEvent {
    channel_id: ChannelId,
    seq: i64,
    kind: String,
    data: Value,
    subject: Option<UserId>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Wire {
    Events { node: Uuid, events: Vec<WireEvent> },
    Ephemeral { node: Uuid, channels: Vec<ChannelId>, frame: String },
    Presence { node: Uuid, users: Vec<UserId> },
    PresenceChange { node: Uuid, user: UserId, online: bool },
}

/// The Redis side of a hub.
pub struct RedisRelay {
    node: Uuid,
    outbox: mpsc::Sender<String>,
}

impl RedisRelay {
    /// Connects (failing if Redis does not answer now), then keeps publishing and
    /// subscribing in the background, reconnecting whenever the link drops.
    pub async fn start(url: &str, namespace: &str, hub: Hub) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let mut probe = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut probe).await?;
        let topic = format!("{namespace}:events");
        let node = Uuid::now_v7();
        let (outbox, rx) = mpsc::channel(65_536);
        tokio::spawn(publish_loop(client.clone(), topic.clone(), rx));
        tokio::spawn(subscribe_loop(client, topic, node, hub.clone()));
        let relay = Arc::new(Self { node, outbox });
        tokio::spawn(announce_presence(relay.clone(), hub.clone()));
        hub.set_relay(relay.clone());
        Ok(relay)
    }

    /// This node's id on the Redis topic, as the other nodes see it.
    pub fn node(&self) -> Uuid {
        self.node
    }

    fn send(&self, wire: &Wire) {
        if let Ok(payload) = serde_json::to_string(wire)
            && self.outbox.try_send(payload).is_err()
        {
            metrics::counter!("redis_relay_dropped_total").increment(1);
        }
    }

    /// Tells other nodes at once that a user came or went here.
    pub fn presence_change(&self, user: UserId, online: bool) {
        self.send(&Wire::PresenceChange { node: self.node, user, online });
    }
}

impl Relay for RedisRelay {
    fn events(&self, events: &[ChannelEvent]) {
        let events = events
            .iter()
            .map(|e| WireEvent {
                channel_id: e.channel_id,
                seq: e.seq,
                kind: e.kind.as_str().to_owned(),
                data: e.data.clone(),
                subject: e.subject,
            })
            .collect();
        self.send(&Wire::Events { node: self.node, events });
    }

    fn ephemeral(&self, channels: &[ChannelId], frame: &str) {
        self.send(&Wire::Ephemeral { node: self.node, channels: channels.to_vec(), frame: frame.to_owned() });
    }

    fn presence(&self, user: UserId, online: bool) {
        self.presence_change(user, online);
    }
}

async fn publish_loop(client: redis::Client, topic: String, mut rx: mpsc::Receiver<String>) {
    let mut conn = None;
    while let Some(payload) = rx.recv().await {
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        let Some(link) = conn.as_mut() else {
            // Redis is away: this event reaches other nodes' clients through the log
            // (gap fill or resume) instead.
            metrics::counter!("redis_relay_dropped_total").increment(1);
            continue;
        };
        let published = redis::cmd("PUBLISH").arg(&topic).arg(&payload).query_async::<()>(link).await;
        if let Err(error) = published {
            tracing::warn!(%error, "publishing to Redis failed; reconnecting");
            conn = None;
        }
    }
}

async fn subscribe_loop(client: redis::Client, topic: String, node: Uuid, hub: Hub) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&topic).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    tracing::info!("subscribed to Redis fan-out");
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else { continue };
                        match serde_json::from_str::<Wire>(&payload) {
                            Ok(wire) => receive(&hub, node, wire),
                            Err(error) => tracing::warn!(%error, "ignoring a malformed Redis message"),
                        }
                    }
                }
                tracing::warn!("the Redis subscription ended; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "Redis unreachable; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn receive(hub: &Hub, me: Uuid, wire: Wire) {
    match wire {
        Wire::Events { node, events } if node != me => {
            let events = events
                .into_iter()
                .filter_map(|e| {
                    Some(ChannelEvent {
                        channel_id: e.channel_id,
                        seq: e.seq,
                        kind: EventKind::parse(&e.kind)?,
                        data: e.data,
                        subject: e.subject,
                    })
                })
                .collect();
            hub.deliver(events);
        }
        Wire::Ephemeral { node, channels, frame } if node != me => {
            hub.deliver_ephemeral(&channels, &Arc::from(frame), None);
        }
        Wire::Presence { node, users } if node != me => {
            hub.presence().remote_snapshot(node, users.into_iter().collect::<HashSet<_>>());
        }
        Wire::PresenceChange { node, user, online } if node != me => hub.presence().remote_change(node, user, online),
        _ => {}
    }
}

async fn announce_presence(relay: Arc<RedisRelay>, hub: Hub) {
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tick.tick().await;
        relay.send(&Wire::Presence { node: relay.node, users: hub.presence().local_users() });
    }
}
