//! One WebSocket receiver: a member's connection that records every message of its channel,
//! reconnects and resumes when the connection ends, and — in the reconnect scenario — drops
//! its connection on purpose now and then.
//!
//! Each receiver follows exactly one channel. Its connection's whole life is in [`run`]:
//! connect, wait for `ready`, (re)send `resume`, read until told to stop or to drop.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use chat_client::connect::{self, ACTIVE_READ_BUFFER, Ws};
use chat_client::frame::{self, ChannelFrame};
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Url;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::content;
use crate::ledger::ReceiverLog;
use crate::live::Live;
use crate::stats::SharedLatency;
use crate::target::ws_options;

/// How long a connection may take to open and send `ready`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The close code docs/websocket.md gives slow consumers.
const SLOW_CONSUMER: u16 = 4008;

#[derive(Clone, Debug)]
pub struct ReceiverSpec {
    /// Position among the run's receivers (spreads latency recording over shards).
    pub index: usize,
    /// `ws://.../api/ws?token=...`.
    pub url: Url,
    pub channel: u32,
    pub channel_id: Arc<str>,
    pub source: Option<IpAddr>,
}

/// Deliberate disconnects: stay connected for a random time in `online_ms`, then drop the
/// TCP connection without a close frame and stay away for a random time in `offline_ms`.
#[derive(Clone, Debug)]
pub struct DropPolicy {
    pub online_ms: Range<u64>,
    pub offline_ms: Range<u64>,
}

/// What every receiver of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub live: Arc<Live>,
    pub latency: SharedLatency,
    /// End of the run: close and return.
    pub stop: CancellationToken,
    /// No more deliberate drops: stay connected until `stop`.
    pub stop_dropping: CancellationToken,
    /// Limits how many first connections are opened at once.
    pub first_connect: Semaphore,
}

/// Counters of one receiver, summed over all of them for the report.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ReceiverStats {
    /// Events whose `seq` was not above the previous one's (docs/websocket.md: strictly increasing).
    pub order_violations: u64,
    pub reconnects: u64,
    /// Messages received after a reconnect with a `seq` at or below the `ready`'s `last_seq`:
    /// delivered by `resume`'s replay.
    pub replayed: u64,
    pub resync_required: u64,
    pub slow_consumer_closes: u64,
    pub connect_failures: u64,
    /// Messages in the channel whose content chat-bench did not write.
    pub foreign: u64,
    pub bad_frames: u64,
}

impl std::ops::AddAssign for ReceiverStats {
    fn add_assign(&mut self, other: Self) {
        self.order_violations += other.order_violations;
        self.reconnects += other.reconnects;
        self.replayed += other.replayed;
        self.resync_required += other.resync_required;
        self.slow_consumer_closes += other.slow_consumer_closes;
        self.connect_failures += other.connect_failures;
        self.foreign += other.foreign;
        self.bad_frames += other.bad_frames;
    }
}

#[derive(Debug)]
pub struct ReceiverResult {
    pub log: ReceiverLog,
    pub stats: ReceiverStats,
}

/// Why a connection's read loop ended.
enum End {
    Stop,
    Dropped,
    Closed(Option<u16>),
    Failed(String),
}

/// The state that outlives each connection.
struct Tracker<'s> {
    spec: &'s ReceiverSpec,
    shared: &'s Shared,
    log: ReceiverLog,
    stats: ReceiverStats,
    /// Highest `seq` seen in the channel: what `resume` asks to continue from.
    last_seq: u64,
    /// The `ready`'s `last_seq` on the current connection, when it is a reconnect.
    replay_upto: u64,
}

impl Tracker<'_> {
    fn on_text(&mut self, text: &str, received_at: u64) {
        match frame::classify(text, &self.spec.channel_id) {
            Ok(ChannelFrame::Message { seq, content }) => {
                if let Some(seq) = seq {
                    self.advance(seq);
                    if seq <= self.replay_upto {
                        self.stats.replayed += 1;
                    }
                }
                if let Some(stamp) = content::decode(&content) {
                    self.shared.latency.record_us(self.spec.index, stamp.latency_us(received_at));
                    self.log.received.push(stamp.msg_no);
                    Live::bump(&self.shared.live.delivered);
                } else {
                    self.stats.foreign += 1;
                }
            }
            Ok(ChannelFrame::Sequenced { seq }) => self.advance(seq),
            Ok(ChannelFrame::ResyncRequired) => self.stats.resync_required += 1,
            Ok(ChannelFrame::Ready { .. } | ChannelFrame::Other) => {}
            Err(_) => self.stats.bad_frames += 1,
        }
    }

    fn advance(&mut self, seq: u64) {
        if seq > self.last_seq {
            self.last_seq = seq;
        } else {
            self.stats.order_violations += 1;
        }
    }
}

/// Runs one receiver until `shared.stop`.
pub async fn run(spec: ReceiverSpec, policy: Option<DropPolicy>, shared: Arc<Shared>) -> ReceiverResult {
    let mut tracker = Tracker {
        spec: &spec,
        shared: &shared,
        log: ReceiverLog { channel: spec.channel, ..ReceiverLog::default() },
        stats: ReceiverStats::default(),
        last_seq: 0,
        replay_upto: 0,
    };
    let mut first = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            () = shared.stop.cancelled() => break,
            connected = connect_and_ready(&spec, &shared, first) => connected,
        };
        let (mut ws, ready_last_seq) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                tracker.stats.connect_failures += 1;
                shared.live.record_error(|| format!("WebSocket receiver: {error:#}"));
                if sleep_or_stop(backoff, &shared.stop).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        if first {
            first = false;
            tracker.log.baseline_seq = ready_last_seq.unwrap_or(0);
            tracker.last_seq = tracker.log.baseline_seq;
            Live::bump(&shared.live.connected);
        } else {
            tracker.stats.reconnects += 1;
            tracker.replay_upto = ready_last_seq.unwrap_or(0);
        }
        // Answer `ready` with `resume`, as the web client does, also on the first connection
        // (from the `ready`'s seq: nothing to replay). The server holds live events after
        // `ready` until the client's first frame or 250 ms, and a receiver that stayed
        // silent measured that grace: the first messages of every run arrived about 250 ms
        // late at the receivers that had connected last.
        let resume = frame::resume_frame(&spec.channel_id, tracker.last_seq);
        if let Err(error) = ws.send(Message::text(resume)).await {
            shared.live.record_error(|| format!("sending resume: {error}"));
            continue;
        }

        let online = policy
            .as_ref()
            .filter(|_| !shared.stop_dropping.is_cancelled())
            .map(|p| Duration::from_millis(random_in(&p.online_ms)));
        match read_until(&mut ws, online, &mut tracker).await {
            End::Stop => {
                // A polite close at the end; the server may be busy, so do not wait long.
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                break;
            }
            End::Dropped => {
                drop(ws);
                Live::bump(&shared.live.cycles);
                let offline = policy.as_ref().map_or(0, |p| random_in(&p.offline_ms));
                if sleep_or_stop(Duration::from_millis(offline), &shared.stop).await {
                    break;
                }
            }
            End::Closed(code) => {
                if code == Some(SLOW_CONSUMER) {
                    tracker.stats.slow_consumer_closes += 1;
                }
                Live::bump(&shared.live.disconnects);
            }
            End::Failed(error) => {
                Live::bump(&shared.live.disconnects);
                shared.live.record_error(|| format!("WebSocket connection ended: {error}"));
            }
        }
    }
    ReceiverResult { log: tracker.log, stats: tracker.stats }
}

/// Connects and waits for `ready`; returns the socket and the channel's `last_seq` in it.
async fn connect_and_ready(spec: &ReceiverSpec, shared: &Shared, first: bool) -> Result<(Ws, Option<u64>)> {
    // Only first connections queue for a permit; reconnects must not wait behind them.
    let _permit = if first { Some(shared.first_connect.acquire().await?) } else { None };
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut ws = connect::connect(&spec.url, ws_options(spec.source, ACTIVE_READ_BUFFER)).await?;
        let last_seq = frame::wait_for_ready(&mut ws, &spec.channel_id).await?;
        Ok((ws, last_seq))
    })
    .await
    .context("no ready frame within 15 s")?
}

async fn read_until(ws: &mut Ws, online: Option<Duration>, tracker: &mut Tracker<'_>) -> End {
    let shared = tracker.shared;
    let stop = shared.stop.cancelled();
    let drop_due = drop_due(online, &shared.stop_dropping);
    tokio::pin!(stop, drop_due);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return End::Stop,
            () = &mut drop_due => return End::Dropped,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let received_at = content::now_unix_nanos();
                    tracker.on_text(text.as_str(), received_at);
                }
                Some(Ok(Message::Close(frame))) => {
                    return End::Closed(frame.map(|f| u16::from(f.code)));
                }
                // Pings are answered by tungstenite on the next read.
                Some(Ok(_)) => {}
                Some(Err(error)) => return End::Failed(error.to_string()),
                None => return End::Closed(None),
            },
        }
    }
}

/// Completes when it is time to drop the connection; never if there is no drop planned or
/// drops were called off.
async fn drop_due(online: Option<Duration>, stop_dropping: &CancellationToken) {
    let Some(online) = online else {
        return std::future::pending().await;
    };
    tokio::select! {
        () = tokio::time::sleep_until(Instant::now() + online) => {}
        () = stop_dropping.cancelled() => std::future::pending().await,
    }
}

/// Sleeps; true if `stop` came first.
async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}

fn random_in(range: &Range<u64>) -> u64 {
    if range.is_empty() { range.start } else { rand::random_range(range.clone()) }
}
