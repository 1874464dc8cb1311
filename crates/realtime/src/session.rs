//! One WebSocket connection's life: ready, then live events through the connection's
//! [`Feed`], client frames, heartbeats, and a close code that says why it ended.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason, ProtocolError};
use actix_web::HttpMessage as _;
use domain::{ChannelId, UserId, UserSummary};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use persistence::writer::{MessageWriter, NewMessage, PostError};
use persistence::{Database, StoreError, channels, events};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::feed::{Feed, Replay, Resumed, Upstream};
use crate::hub::{ConnId, Credential, Delivery, Hub, Kick, Outbound, Signal};
use crate::protocol::{ClientFrame, FrameError, ReadyChannel, SendMessage, ServerFrame};
use crate::socket::{HIGH_WATER, Handover, Incoming, Outgoing, Received};

/// Server pings this often...
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// ...and closes a connection it has heard nothing from for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most events a resume or a gap fill replays; more means `resync_required`.
pub const MAX_REPLAY: i64 = 1000;
/// Bad frames (invalid, refused or over the rate) in a row before the connection is
/// closed as abusive.
const MAX_INVALID_FRAMES: u32 = 20;
/// How long a slow consumer gets to read its queued frames and the 4008 close.
const SLOW_CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Queued items a session takes in one go before it looks at anything else.
const DRAIN_BATCH: usize = 64;

/// How long live events wait after `ready` for the client's first frame...
pub const RESUME_GRACE: Duration = Duration::from_millis(250);
/// ...and how many may wait.
const HOLD_LIMIT: usize = 4096;

/// Close 4008: the client read too slowly and should reconnect and resume.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close 4001: the token no longer counts (logged out, expired, revoked); sign in again.
pub const CLOSE_TOKEN_REVOKED: u16 = 4001;

/// Everything a session needs, shared by all sessions of a server.
#[derive(Clone)]
pub struct SessionEnv {
    pub hub: Hub,
    pub db: Database,
    pub writer: MessageWriter,
    /// Frames per second a client may send (0: unlimited).
    pub frames_per_second: u32,
    /// What `resume`s may replay per user and minute.
    pub replay_budget: crate::budget::ReplayBudget,
    /// Flips to true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// Who is connecting, as the handshake authenticated them.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserSummary,
    pub credential: Credential,
    /// When the token expires; the connection closes with 4001 then.
    pub expires_at: Option<OffsetDateTime>,
}

enum End {
    Client,
    Close(CloseCode, &'static str),
    Kicked(Kick),
}

/// The feed's view of the world: the event log in the database and this connection's
/// subscriptions in the hub.
struct Link<'a> {
    hub: &'a Hub,
    db: &'a Database,
    conn: ConnId,
    user: UserId,
}

impl<'a> Link<'a> {
    fn new(env: &'a SessionEnv, conn: ConnId, user: UserId) -> Self {
        Self { hub: &env.hub, db: &env.db, conn, user }
    }
}

impl Upstream for Link<'_> {
    async fn replay(&mut self, channel: ChannelId, after: i64, up_to: Option<i64>) -> Result<Replay, StoreError> {
        let mut conn = self.db.get().await?;
        let through = match up_to {
            Some(up_to) => up_to,
            // A deleted channel has no row, but its log keeps the `channel_deleted`.
            None => match channels::last_seq(&mut conn, channel).await {
                Ok(seq) => seq,
                Err(StoreError::NotFound) => events::newest_seq(&mut conn, channel).await?.unwrap_or(after),
                Err(error) => return Err(error),
            },
        };
        let need = through - after;
        if need <= 0 {
            return Ok(Replay::Complete { events: Vec::new(), through: after.max(through) });
        }
        if need > MAX_REPLAY {
            return Ok(Replay::Incomplete { through });
        }
        let events = events::range(&mut conn, channel, after, Some(through), need).await?;
        // Complete only if retention has not taken any of them.
        if events.len() as i64 != need {
            return Ok(Replay::Incomplete { through });
        }
        Ok(Replay::Complete { events: events.iter().map(Delivery::of).collect(), through })
    }

    async fn is_member(&mut self, channel: ChannelId) -> Result<bool, StoreError> {
        let mut conn = self.db.get().await?;
        match channels::access(&mut conn, channel, self.user).await {
            Ok(access) => Ok(access.role.is_member()),
            Err(StoreError::NotFound) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn removal(&mut self, channel: ChannelId, after: i64) -> Result<Option<Delivery>, StoreError> {
        let mut conn = self.db.get().await?;
        let change = events::latest_membership_change(&mut conn, channel, self.user, after).await?;
        Ok(change.filter(|e| e.membership().is_some_and(|m| m.removes(self.user))).map(|e| Delivery::of(&e)))
    }

    fn subscribe(&mut self, channel: ChannelId) {
        self.hub.subscribe(self.conn, channel);
    }

    fn unsubscribe(&mut self, channel: ChannelId) {
        self.hub.unsubscribe(self.conn, channel);
    }
}

struct Connection {
    env: SessionEnv,
    user: UserSummary,
    conn: ConnId,
    out: Outgoing,
    signal: Arc<Signal>,
    feed: Feed,
    /// Channels whose newest seq had moved between the snapshot and the subscription.
    stale: Vec<(ChannelId, i64)>,
    limiter: Option<DefaultDirectRateLimiter>,
    invalid_in_a_row: u32,
}

/// Runs a connection until it ends. The caller has authenticated the user and upgraded.
pub async fn run(env: SessionEnv, caller: Caller, out: Outgoing, mut stream: Incoming) {
    // Registered before the snapshot: from here on, every change of this user's membership
    // reaches the connection, whichever channels it subscribes to.
    let mut registration = env.hub.register(caller.credential);
    // The session's future lives as long as the connection, and is as large as the largest
    // future it awaits inline: the database reads (here, and in `on_text` and `release`)
    // are boxed so that an idle connection does not carry their space.
    let snapshot = match Box::pin(snapshot(&env.db, caller.user.id)).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "could not load subscriptions; closing");
            env.hub.unregister(registration.conn);
            let _ = out.close(CloseReason { code: CloseCode::Again, description: Some("try again".into()) });
            return;
        }
    };
    // `ready` and the subscriptions come from this one snapshot.
    for &(channel, _, _) in &snapshot {
        env.hub.subscribe(registration.conn, channel);
    }
    let feed = Feed::new(caller.user.id, snapshot.iter().map(|&(id, last, _)| (id, last)));
    // What was committed after the snapshot but published before the subscription reached
    // no one: the newest seqs, read now that the hub delivers to us, say what to fill.
    let channel_ids: Vec<ChannelId> = snapshot.iter().map(|(id, _, _)| *id).collect();
    let stale = Box::pin(newest_seqs(&env.db, &channel_ids))
        .await
        .into_iter()
        .filter(|(id, newest)| snapshot.iter().any(|(c, last, _)| c == id && newest > last))
        .collect();
    let came_online = env.hub.presence().connect(caller.user.id);

    let mut connection = Connection {
        limiter: NonZeroU32::new(env.frames_per_second).map(|rate| {
            RateLimiter::direct(
                Quota::per_second(rate).allow_burst(rate.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
            )
        }),
        env,
        user: caller.user,
        conn: registration.conn,
        out,
        signal: registration.signal.clone(),
        feed,
        stale,
        invalid_in_a_row: 0,
    };
    let ready = ServerFrame::Ready {
        session_id: format!("{}-{}", uuid::Uuid::now_v7(), registration.conn),
        user: &connection.user,
        channels: snapshot
            .iter()
            .map(|&(id, last_seq, last_read_seq)| ReadyChannel { id, last_seq, last_read_seq })
            .collect(),
    }
    .encode();
    if came_online {
        connection.env.hub.presence_changed(&connection.user, &channel_ids, true, Some(connection.conn));
    }

    let end = match connection.send(&ready).await {
        Ok(()) => connection.serve(&mut registration.rx, &mut stream, caller.expires_at).await,
        Err(end) => end,
    };

    connection.env.hub.unregister(connection.conn);
    if connection.env.hub.presence().disconnect(connection.user.id) {
        let channels: Vec<ChannelId> = connection.feed.channels().collect();
        connection.env.hub.presence_changed(&connection.user, &channels, false, None);
    }
    let (code, description, wait) = match end {
        End::Client => return,
        End::Close(code, why) => (code, why, Duration::from_secs(5)),
        End::Kicked(Kick::SlowConsumer) => {
            (CloseCode::Other(CLOSE_SLOW_CONSUMER), "slow consumer: reconnect and resume", SLOW_CLOSE_WAIT)
        }
        End::Kicked(Kick::Revoked(why)) => (CloseCode::Other(CLOSE_TOKEN_REVOKED), why, Duration::from_secs(5)),
    };
    let reason = CloseReason { code, description: Some(description.into()) };
    if connection.out.close(reason).is_ok() {
        // The client gets `wait` to read what is queued and the close; the connection is
        // then closed when the session drops its half.
        let _ = tokio::time::timeout(wait, connection.out.drained_to(0)).await;
    }
}

/// The user's channels with their newest seq and the user's read marker, in one query.
async fn snapshot(db: &Database, user: UserId) -> Result<Vec<(ChannelId, i64, i64)>, StoreError> {
    let mut conn = db.get().await?;
    channels::subscriptions(&mut conn, user).await
}

async fn newest_seqs(db: &Database, ids: &[ChannelId]) -> Vec<(ChannelId, i64)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let read = async {
        let mut conn = db.get().await?;
        channels::last_seqs(&mut conn, ids).await
    };
    // Without it, a channel that stays quiet shows a missed event only with its next one;
    // nothing is lost, so a failed read is not worth refusing the connection.
    read.await.unwrap_or_else(|error: StoreError| {
        tracing::warn!(%error, "could not re-read the newest seqs after subscribing");
        Vec::new()
    })
}

impl Connection {
    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Outbound>,
        stream: &mut Incoming,
        expires_at: Option<OffsetDateTime>,
    ) -> End {
        let mut heartbeat = tokio::time::interval(PING_INTERVAL);
        heartbeat.tick().await;
        let mut last_heard = Instant::now();
        // Made once, not on every turn: registering with the watch's `Notify` on each event
        // showed in the fan-out profile.
        let mut shutdown = self.env.shutdown.clone();
        let stopping = async move { while shutdown.changed().await.is_ok() && !*shutdown.borrow() {} };
        tokio::pin!(stopping);
        let signal = self.signal.clone();
        let expiry = tokio::time::sleep_until(until(expires_at));
        tokio::pin!(expiry);
        // Live events wait (here, not in the hub's queue) until the client's first frame,
        // typically `resume`, or a short grace period: a resume must replay what was missed
        // before anything newer is sent, or the connection would see seqs out of order.
        let mut held: Option<Vec<Outbound>> = Some(Vec::new());
        let grace = tokio::time::sleep(RESUME_GRACE);
        tokio::pin!(grace);
        loop {
            // A kick is read here rather than awaited: the hub drops the queue after setting
            // it, which wakes this loop, and a busy connection sees it at its next event.
            if let Some(why) = signal.reason() {
                return End::Kicked(why);
            }
            tokio::select! {
                () = &mut grace, if held.is_some() => {
                    if let Some(end) = self.release(&mut held).await {
                        return end;
                    }
                }
                item = rx.recv() => match item {
                    Some(item) => {
                        if let Some(end) = self.accept(item, &mut held).await {
                            return end;
                        }
                        // What else is queued goes out with it, in the same write, without
                        // a turn of this loop per event.
                        for _ in 0..DRAIN_BATCH {
                            let Ok(item) = rx.try_recv() else { break };
                            if let Some(end) = self.accept(item, &mut held).await {
                                return end;
                            }
                        }
                    }
                    // The hub dropped us; the signal says why.
                    None => return End::Kicked(signal.kicked().await),
                },
                message = stream.recv() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Received::Text(bytes))) => {
                            let Ok(text) = std::str::from_utf8(&bytes) else {
                                return End::Close(CloseCode::Invalid, "text frames are UTF-8");
                            };
                            if let Some(end) = Box::pin(self.on_text(text)).await {
                                return end;
                            }
                            if let Some(end) = self.release(&mut held).await {
                                return end;
                            }
                        }
                        Some(Ok(Received::Binary(_))) => {
                            if let Some(end) = self.refuse(&FrameError { code: "invalid_frame", detail: "frames are JSON text".into() }).await {
                                return end;
                            }
                        }
                        Some(Ok(Received::Ping(bytes))) => {
                            if self.out.pong(&bytes).is_err() {
                                return End::Client;
                            }
                        }
                        Some(Ok(Received::Pong(_))) => {}
                        Some(Ok(Received::Close(_))) | None => return End::Client,
                        Some(Err(ProtocolError::Overflow)) => return End::Close(CloseCode::Size, "frame too large (64 KiB at most)"),
                        Some(Err(_)) => return End::Close(CloseCode::Protocol, "protocol error"),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= IDLE_TIMEOUT {
                        return End::Close(CloseCode::Normal, "idle timeout");
                    }
                    if self.out.ping().is_err() {
                        return End::Client;
                    }
                }
                () = &mut expiry, if expires_at.is_some() => {
                    return End::Kicked(Kick::Revoked("token expired: sign in again"));
                }
                () = &mut stopping => return End::Close(CloseCode::Away, "server shutting down"),
            }
        }
    }

    /// Takes an item from the hub's queue: held while the hold lasts, else delivered.
    async fn accept(&mut self, item: Outbound, held: &mut Option<Vec<Outbound>>) -> Option<End> {
        let Some(buffer) = held.as_mut() else {
            return self.deliver(item).await;
        };
        buffer.push(item);
        if buffer.len() >= HOLD_LIMIT { self.release(held).await } else { None }
    }

    /// Ends the hold: fills what the snapshot missed, then sends what was held back, in
    /// order (the feed drops what it already sent).
    async fn release(&mut self, held: &mut Option<Vec<Outbound>>) -> Option<End> {
        let items = held.take()?;
        let mut out = Vec::new();
        for (channel, newest) in std::mem::take(&mut self.stale) {
            let mut link = Link::new(&self.env, self.conn, self.user.id);
            Box::pin(self.feed.fill(&mut link, channel, newest, &mut out)).await;
        }
        if let Some(end) = self.send_all(out).await {
            return Some(end);
        }
        for item in items {
            if let Some(end) = self.deliver(item).await {
                return Some(end);
            }
        }
        None
    }

    /// Sends a frame: it leaves with everything else written before the session next
    /// waits. Fails when the client is gone, or when the hub gave up on this connection
    /// while the send was waiting on a stalled socket.
    async fn send(&mut self, frame: &str) -> Result<(), End> {
        self.out.text(frame).map_err(|_| End::Client)?;
        if self.out.pending() <= HIGH_WATER {
            return Ok(());
        }
        // A client that has stopped reading holds the session here, so shutdown is watched
        // here as well as in the main loop.
        let mut shutdown = self.env.shutdown.clone();
        tokio::select! {
            drained = self.out.drained_to(HIGH_WATER) => drained.map_err(|_| End::Client),
            why = self.signal.kicked() => Err(End::Kicked(why)),
            _ = shutdown.wait_for(|stopping| *stopping) => Err(End::Close(CloseCode::Away, "server shutting down")),
        }
    }

    async fn send_all(&mut self, frames: Vec<Arc<str>>) -> Option<End> {
        for frame in frames {
            if let Err(end) = self.send(&frame).await {
                return Some(end);
            }
        }
        None
    }

    /// Passes a hub item through the feed and sends what it allows.
    async fn deliver(&mut self, item: Outbound) -> Option<End> {
        match item {
            Outbound::Ephemeral(frame) => self.send(&frame).await.err(),
            Outbound::Event(delivery) => {
                let mut out = Vec::new();
                let mut link = Link::new(&self.env, self.conn, self.user.id);
                self.feed.live(&mut link, Arc::unwrap_or_clone(delivery), &mut out).await;
                self.send_all(out).await
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Option<End> {
        if let Some(limiter) = &self.limiter
            && limiter.check().is_err()
        {
            metrics::counter!("rate_limited_total", "scope" => "websocket").increment(1);
            return self.refuse(&FrameError { code: "rate_limited", detail: "slow down".into() }).await;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(error) => return self.refuse(&error).await,
        };
        // A resume refused by the replay budget is a refusal like any other: the count of
        // refusals in a row starts again only once the resume is let through (below), so a
        // client resuming in a loop is closed after twenty like one sending garbage.
        if !matches!(frame, ClientFrame::Resume { .. }) {
            self.invalid_in_a_row = 0;
        }
        match frame {
            ClientFrame::Ping => self.send(&ServerFrame::Pong {}.encode()).await.err(),
            ClientFrame::Typing { channel_id } => {
                // Typing needs membership, and the feed knows it as of the last event sent.
                if self.feed.receives(channel_id) {
                    let frame = ServerFrame::Typing { channel_id, user: &self.user }.encode();
                    self.env.hub.broadcast(&[channel_id], &frame, Some(self.conn));
                    None
                } else {
                    self.refuse(&not_a_member(channel_id)).await
                }
            }
            ClientFrame::Message(message) => self.post(message).await,
            ClientFrame::Resume { channels } => {
                if let Some(wait) = self.env.replay_budget.wait(self.user.id) {
                    metrics::counter!("rate_limited_total", "scope" => "resume").increment(1);
                    let detail = format!("resume budget spent; retry in {} s", wait.as_secs().max(1));
                    return self.refuse(&FrameError { code: "rate_limited", detail }).await;
                }
                self.invalid_in_a_row = 0;
                let mut out = Vec::new();
                let mut refused = Vec::new();
                for (channel_id, last_seq) in channels {
                    let mut link = Link::new(&self.env, self.conn, self.user.id);
                    if self.feed.resume(&mut link, channel_id, last_seq, &mut out).await == Resumed::NotReceived {
                        refused.push(channel_id);
                    }
                }
                let bytes = out.iter().map(|frame| frame.len()).sum();
                self.env.replay_budget.charge(self.user.id, out.len(), bytes);
                if let Some(end) = self.send_all(out).await {
                    return Some(end);
                }
                for channel_id in refused {
                    if let Some(end) = self.refuse(&not_a_member(channel_id)).await {
                        return Some(end);
                    }
                }
                None
            }
        }
    }

    /// A `message` frame: the same rules as `POST /api/chat/messages`, decided by the
    /// writer under the channel lock.
    async fn post(&mut self, message: SendMessage) -> Option<End> {
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
                    PostError::Denied(domain::Denied::Blocked) => {
                        ("blocked", "someone in this conversation blocked you".to_owned())
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
            let why = if error.code == "rate_limited" { "sending too fast" } else { "too many invalid frames" };
            return Some(End::Close(CloseCode::Policy, why));
        }
        let frame = ServerFrame::Error { code: error.code, detail: &error.detail }.encode();
        self.send(&frame).await.err()
    }
}

/// The instant a token expires (far away when it does not).
fn until(expires_at: Option<OffsetDateTime>) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let Some(at) = expires_at else {
        return now + Duration::from_hours(24 * 365);
    };
    let left = at - OffsetDateTime::now_utc();
    now + Duration::try_from(left).unwrap_or(Duration::ZERO)
}

fn not_a_member(channel_id: ChannelId) -> FrameError {
    FrameError { code: "not_found", detail: format!("channel {channel_id} not found among your channels") }
}

/// Upgrades an authenticated request to a WebSocket session: the 101 to answer with, the
/// session left in the request's [`Handover`] for the listener to run on the connection.
pub fn start(
    req: &actix_web::HttpRequest,
    env: SessionEnv,
    caller: Caller,
) -> Result<actix_web::HttpResponse, StartError> {
    let response = actix_http::ws::handshake(req.head()).map_err(StartError::Handshake)?.finish().map_into_boxed_body();
    let handover = req.extensions().get::<Handover>().cloned().ok_or(StartError::NotUpgradable)?;
    handover.put(Box::new(move |out, incoming| Box::pin(run(env, caller, out, incoming))));
    Ok(response.into())
}

/// Why a request cannot become a WebSocket.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Handshake(actix_http::ws::HandshakeError),
    /// The request has a body (`Transfer-Encoding: chunked`), so the listener did not hand
    /// its connection over.
    #[error("a WebSocket handshake has no body")]
    NotUpgradable,
}

/// A shared "the server is stopping" switch for every session.
pub fn shutdown_switch() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}
