//! One WebSocket connection's life: ready, then live events in seq order with gaps filled
//! from the event log, client frames, heartbeats, and a close code that says why it ended.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use domain::{ChannelId, UserSummary};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use persistence::writer::{MessageWriter, NewMessage, PostError};
use persistence::{Database, channels, events};
use tokio::sync::{Notify, watch};

use crate::hub::{Hub, Outbound};
use crate::protocol::{ClientFrame, FrameError, ReadyChannel, SendMessage, ServerFrame};

/// Server pings this often...
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// ...and closes a connection it has heard nothing from for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most events a resume or a gap fill replays; more means `resync_required`.
pub const MAX_REPLAY: i64 = 1000;
/// Invalid frames in a row before the connection is closed as abusive.
const MAX_INVALID_FRAMES: u32 = 20;
/// How long a slow consumer gets to read its queued frames and the 4008 close.
const SLOW_CLOSE_WAIT: Duration = Duration::from_secs(30);

/// How long live events wait after `ready` for the client's first frame...
pub const RESUME_GRACE: Duration = Duration::from_millis(250);
/// ...and how many may wait.
const HOLD_LIMIT: usize = 4096;

/// Close 4008: the client read too slowly and should reconnect and resume.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// Everything a session needs, shared by all sessions of a server.
#[derive(Clone)]
pub struct SessionEnv {
    pub hub: Hub,
    pub db: Database,
    pub writer: MessageWriter,
    /// Frames per second a client may send (0: unlimited).
    pub frames_per_second: u32,
    /// Flips to true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

enum End {
    Client,
    Close(CloseCode, &'static str),
    SlowConsumer,
}

struct Connection {
    env: SessionEnv,
    user: UserSummary,
    conn: crate::hub::ConnId,
    session: Session,
    kicked: Arc<Notify>,
    /// Per channel: the last seq this connection has sent.
    last: HashMap<ChannelId, i64>,
    /// Per channel: the `last_seq` the `ready` frame announced.
    ready_seq: HashMap<ChannelId, i64>,
    limiter: Option<DefaultDirectRateLimiter>,
    invalid_in_a_row: u32,
}

/// Runs a connection until it ends. The caller has authenticated the user and upgraded.
pub async fn run(env: SessionEnv, user: UserSummary, session: Session, mut stream: AggregatedMessageStream) {
    let subscriptions = match load_subscriptions(&env.db, &user).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "could not load subscriptions; closing");
            let _ = session
                .close(Some(CloseReason { code: CloseCode::Again, description: Some("try again".into()) }))
                .await;
            return;
        }
    };
    let channel_ids: Vec<ChannelId> = subscriptions.iter().map(|(id, _, _)| *id).collect();
    let mut registration = env.hub.register(user.id, &channel_ids);
    // Read the seqs again now that the hub delivers to us: everything up to these numbers is
    // in the log, everything after reaches us live.
    let subscriptions = load_subscriptions(&env.db, &user).await.unwrap_or(subscriptions);
    let came_online = env.hub.presence().connect(user.id);

    let mut connection = Connection {
        limiter: NonZeroU32::new(env.frames_per_second).map(|rate| {
            RateLimiter::direct(
                Quota::per_second(rate).allow_burst(rate.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
            )
        }),
        env,
        user,
        conn: registration.conn,
        session,
        kicked: registration.kicked.clone(),
        last: subscriptions.iter().map(|(id, last, _)| (*id, *last)).collect(),
        ready_seq: subscriptions.iter().map(|(id, last, _)| (*id, *last)).collect(),
        invalid_in_a_row: 0,
    };
    let ready = ServerFrame::Ready {
        session_id: format!("{}-{}", uuid::Uuid::now_v7(), registration.conn),
        user: &connection.user,
        channels: subscriptions
            .iter()
            .map(|&(id, last_seq, last_read_seq)| ReadyChannel { id, last_seq, last_read_seq })
            .collect(),
    }
    .encode();
    if came_online {
        connection.env.hub.presence_changed(&connection.user, &channel_ids, true, Some(connection.conn));
    }

    let end = match connection.send(&ready).await {
        Ok(()) => connection.serve(&mut registration.rx, &mut stream).await,
        Err(end) => end,
    };

    // False when the hub already dropped a slow consumer; either way it is gone now.
    connection.env.hub.unregister(connection.conn);
    if connection.env.hub.presence().disconnect(connection.user.id) {
        let channels: Vec<ChannelId> = connection.last.keys().copied().collect();
        connection.env.hub.presence_changed(&connection.user, &channels, false, None);
    }
    let (code, description, wait) = match end {
        End::Client => return,
        End::Close(code, why) => (code, why, Duration::from_secs(5)),
        End::SlowConsumer => {
            (CloseCode::Other(CLOSE_SLOW_CONSUMER), "slow consumer: reconnect and resume", SLOW_CLOSE_WAIT)
        }
    };
    let reason = CloseReason { code, description: Some(description.into()) };
    let _ = tokio::time::timeout(wait, connection.session.close(Some(reason))).await;
}

async fn load_subscriptions(
    db: &Database,
    user: &UserSummary,
) -> Result<Vec<(ChannelId, i64, i64)>, persistence::StoreError> {
    let mut conn = db.get().await?;
    channels::subscriptions(&mut conn, user.id).await
}

impl Connection {
    async fn serve(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Outbound>,
        stream: &mut AggregatedMessageStream,
    ) -> End {
        let mut heartbeat = tokio::time::interval(PING_INTERVAL);
        heartbeat.tick().await;
        let mut last_heard = Instant::now();
        let mut shutdown = self.env.shutdown.clone();
        // Live events wait (here, not in the hub's queue) until the client's first frame,
        // typically `resume`, or a short grace period: a resume must replay what was missed
        // before anything newer is sent, or the connection would see seqs out of order.
        let mut held: Option<Vec<Outbound>> = Some(Vec::new());
        let grace = tokio::time::sleep(RESUME_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                () = &mut grace, if held.is_some() => {
                    if let Some(end) = self.release(&mut held).await {
                        return end;
                    }
                }
                item = rx.recv() => match item {
                    Some(item) => {
                        if let Some(buffer) = held.as_mut() {
                            buffer.push(item);
                            if buffer.len() >= HOLD_LIMIT
                                && let Some(end) = self.release(&mut held).await
                            {
                                return end;
                            }
                        } else if let Some(end) = self.deliver(item).await {
                            return end;
                        }
                    }
                    // The hub dropped us: our queue overflowed.
                    None => return End::SlowConsumer,
                },
                message = stream.recv() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(AggregatedMessage::Text(text))) => {
                            if let Some(end) = self.on_text(&text).await {
                                return end;
                            }
                            if let Some(end) = self.release(&mut held).await {
                                return end;
                            }
                        }
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            if let Some(end) = self.refuse(&FrameError { code: "invalid_frame", detail: "frames are JSON text".into() }).await {
                                return end;
                            }
                        }
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            if self.session.pong(&bytes).await.is_err() {
                                return End::Client;
                            }
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Close(_))) | None => return End::Client,
                        Some(Err(actix_ws::ProtocolError::Overflow)) => return End::Close(CloseCode::Size, "frame too large (64 KiB at most)"),
                        Some(Err(_)) => return End::Close(CloseCode::Protocol, "protocol error"),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= IDLE_TIMEOUT {
                        return End::Close(CloseCode::Normal, "idle timeout");
                    }
                    if self.session.ping(b"").await.is_err() {
                        return End::Client;
                    }
                }
                () = self.kicked.notified() => return End::SlowConsumer,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return End::Close(CloseCode::Away, "server shutting down");
                    }
                }
            }
        }
    }

    /// Ends the hold: sends what was held back, in order (already-sent seqs are dropped).
    async fn release(&mut self, held: &mut Option<Vec<Outbound>>) -> Option<End> {
        for item in held.take().unwrap_or_default() {
            if let Some(end) = self.deliver(item).await {
                return Some(end);
            }
        }
        None
    }

    /// Sends a frame. Fails when the client is gone, or when the hub gave up on this
    /// connection while the send was waiting on a stalled socket.
    async fn send(&mut self, frame: &str) -> Result<(), End> {
        tokio::select! {
            sent = self.session.text(frame.to_owned()) => sent.map_err(|_| End::Client),
            () = self.kicked.notified() => Err(End::SlowConsumer),
        }
    }

    /// Sends an event from the hub in this connection's seq order.
    async fn deliver(&mut self, item: Outbound) -> Option<End> {
        match item {
            Outbound::Ephemeral(frame) => self.send(&frame).await.err(),
            Outbound::Left { channel_id } => {
                self.last.remove(&channel_id);
                None
            }
            Outbound::Event { channel_id, seq, frame } => {
                let last = *self.last.entry(channel_id).or_insert(seq - 1);
                if seq <= last {
                    return None;
                }
                if seq > last + 1
                    && let Err(end) = self.fill_gap(channel_id, last, seq).await
                {
                    return Some(end);
                }
                self.last.insert(channel_id, seq);
                self.send(&frame).await.err()
            }
        }
    }

    /// Sends events `(after, before)` from the log: they were committed before `before`
    /// was (the channel lock guarantees it), so the log has them unless retention took them.
    async fn fill_gap(&mut self, channel_id: ChannelId, after: i64, before: i64) -> Result<(), End> {
        metrics::counter!("websocket_gap_fills_total").increment(1);
        self.replay(channel_id, after, Some(before - 1)).await
    }

    /// Replays the log after `after` (up to `up_to`), or says `resync_required` when the log
    /// no longer has it all or it is too much.
    async fn replay(&mut self, channel_id: ChannelId, after: i64, up_to: Option<i64>) -> Result<(), End> {
        let loaded = async {
            let mut conn = self.env.db.get().await?;
            let target = match up_to {
                Some(up_to) => up_to,
                None => channels::last_seq(&mut conn, channel_id).await?,
            };
            let need = target - after;
            if need <= 0 {
                return Ok((target, Some(Vec::new())));
            }
            if need > MAX_REPLAY {
                return Ok((target, None));
            }
            let events = events::range(&mut conn, channel_id, after, Some(target), need).await?;
            // Complete only if retention has not taken any of them.
            Ok::<_, persistence::StoreError>((target, (events.len() as i64 == need).then_some(events)))
        }
        .await;
        match loaded {
            Ok((target, Some(events))) => {
                for event in events {
                    self.send(&crate::protocol::encode_event(&event)).await?;
                }
                self.last.insert(channel_id, target);
                Ok(())
            }
            Ok((target, None)) => {
                self.last.insert(channel_id, target);
                self.send(&ServerFrame::ResyncRequired { channel_id }.encode()).await
            }
            Err(error) => {
                tracing::warn!(%error, "replay failed");
                if let Some(up_to) = up_to {
                    self.last.insert(channel_id, up_to);
                }
                self.send(&ServerFrame::ResyncRequired { channel_id }.encode()).await
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Option<End> {
        if let Some(limiter) = &self.limiter
            && limiter.check().is_err()
        {
            metrics::counter!("rate_limited_total", "scope" => "websocket").increment(1);
            self.invalid_in_a_row += 1;
            if self.invalid_in_a_row > MAX_INVALID_FRAMES {
                return Some(End::Close(CloseCode::Policy, "sending too fast"));
            }
            return self.refuse(&FrameError { code: "rate_limited", detail: "slow down".into() }).await;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(error) => return self.refuse(&error).await,
        };
        self.invalid_in_a_row = 0;
        match frame {
            ClientFrame::Ping => self.send(&ServerFrame::Pong {}.encode()).await.err(),
            ClientFrame::Typing { channel_id } => {
                if self.env.hub.is_subscribed(self.conn, channel_id) {
                    let frame = ServerFrame::Typing { channel_id, user: &self.user }.encode();
                    self.env.hub.broadcast(&[channel_id], &frame, Some(self.conn));
                    None
                } else {
                    self.refuse(&not_a_member(channel_id)).await
                }
            }
            ClientFrame::Message(message) => self.post(message).await,
            ClientFrame::Resume { channels } => {
                for (channel_id, last_seq) in channels {
                    if !self.env.hub.is_subscribed(self.conn, channel_id) {
                        if let Some(end) = self.refuse(&not_a_member(channel_id)).await {
                            return Some(end);
                        }
                        continue;
                    }
                    let from = last_seq.max(0);
                    let sent = self.last.get(&channel_id).copied().unwrap_or(0);
                    let sent_live = sent > self.ready_seq.get(&channel_id).copied().unwrap_or(i64::MIN);
                    if from < sent && sent_live {
                        // Newer events already went out on this connection; replaying older
                        // ones now would break the seq order. The client reloads instead.
                        if let Err(end) = self.send(&ServerFrame::ResyncRequired { channel_id }.encode()).await {
                            return Some(end);
                        }
                        continue;
                    }
                    self.last.insert(channel_id, from);
                    if let Err(end) = self.replay(channel_id, from, None).await {
                        return Some(end);
                    }
                }
                None
            }
        }
    }

    async fn post(&mut self, message: SendMessage) -> Option<End> {
        if !self.env.hub.is_subscribed(self.conn, message.channel_id) {
            return self.refuse(&not_a_member(message.channel_id)).await;
        }
        let nonce = message.nonce.clone();
        let parsed = NewMessage::parse(
            message.channel_id,
            self.user.id,
            &message.content,
            message.parent_id,
            message.attachment_ids,
            message.nonce,
        );
        let new = match parsed {
            Ok(new) => new,
            Err(error) => {
                return self.refuse(&FrameError { code: "validation_error", detail: error.to_string() }).await;
            }
        };
        match self.env.writer.post(new).await {
            Ok(posted) => {
                let ack = ServerFrame::Ack { nonce, id: posted.message.id, seq: posted.message.seq }.encode();
                self.send(&ack).await.err()
            }
            Err(error) => {
                let (code, detail) = match &error {
                    PostError::Denied(domain::Denied::NotFound) | PostError::ChannelGone => {
                        ("not_found", "channel not found".to_owned())
                    }
                    PostError::Denied(_) => ("forbidden", "you may not post in this channel".to_owned()),
                    PostError::Invalid { .. } => ("validation_error", error.to_string()),
                    PostError::Store(_) | PostError::Closed => {
                        ("internal_error", "the message could not be stored; retry with the same nonce".to_owned())
                    }
                };
                self.refuse(&FrameError { code, detail }).await
            }
        }
    }

    /// Answers a bad frame with an `error` frame; the connection stays unless the client
    /// keeps it up.
    async fn refuse(&mut self, error: &FrameError) -> Option<End> {
        self.invalid_in_a_row += 1;
        if self.invalid_in_a_row > MAX_INVALID_FRAMES {
            return Some(End::Close(CloseCode::Policy, "too many invalid frames"));
        }
        let frame = ServerFrame::Error { code: error.code, detail: &error.detail }.encode();
        self.send(&frame).await.err()
    }
}

fn not_a_member(channel_id: ChannelId) -> FrameError {
    FrameError { code: "not_found", detail: format!("channel {channel_id} not found among your channels") }
}

/// Upgrades an authenticated request to a WebSocket session.
pub fn start(
    req: &actix_web::HttpRequest,
    body: actix_web::web::Payload,
    env: SessionEnv,
    user: UserSummary,
) -> Result<actix_web::HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(req, body)?;
    let stream = stream
        .max_frame_size(crate::protocol::MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(crate::protocol::MAX_FRAME_BYTES);
    actix_web::rt::spawn(run(env, user, session, stream));
    Ok(response)
}

/// A shared "the server is stopping" switch for every session.
pub fn shutdown_switch() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}
