//! A delivery run: receivers connected over WebSocket, a message source posting to their
//! channels, then a drain and the loss/duplicate accounting. Shared by `fanout`, `rooms`,
//! `reconnect` and the in-process broadcast baseline, which differ only in how receivers are
//! spread over channels, what sends, and whether receivers drop on purpose.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ledger::{self, Accounting, ReceiverLog};
use crate::live::Live;
use crate::progress::Progress;
use crate::receiver::{self, DropPolicy, ReceiverSpec, ReceiverStats, Shared};
use crate::report::Report;
use crate::senders::SendOutcome;
use crate::stats::{Latency, SharedLatency, per_second};

/// Receivers that may be opening their first connection at the same time.
const CONNECT_CONCURRENCY: usize = 64;
/// How often the orchestrator looks at the counters.
const TICK: Duration = Duration::from_millis(20);
/// Time left after everything expected arrived, for late duplicates to show up.
const SETTLE: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct DeliveryPlan {
    pub label: &'static str,
    pub receivers: Vec<ReceiverSpec>,
    pub channels: usize,
    pub drop_policy: Option<DropPolicy>,
    /// Stop sending once this many deliberate drop/resume cycles happened.
    pub cycles_target: Option<u64>,
    pub duration: Duration,
    /// The source's target rate, to say when it was not reached.
    pub target_rate: Option<f64>,
    /// Longest wait, after sending stopped, for deliveries still on their way.
    pub drain: Duration,
}

#[derive(Debug)]
pub struct DeliveryOutcome {
    pub receivers: usize,
    pub accounting: Accounting,
    pub latency: Latency,
    pub stats: ReceiverStats,
    pub send: SendOutcome,
    /// From the first send to the last delivery.
    pub window: Duration,
    pub deliveries_per_sec: f64,
    pub sent_per_sec: f64,
    /// The rate the source aimed at (`--rate`).
    pub target_rate: Option<f64>,
    pub cycles: u64,
    /// False when the drain timed out with deliveries still missing.
    pub drained: bool,
    pub first_error: Option<String>,
}

/// Connects the receivers, runs the source for the plan's duration, drains, accounts.
pub async fn run<F>(plan: DeliveryPlan, progress: Progress, start_source: F) -> Result<DeliveryOutcome>
where
    F: FnOnce(CancellationToken, Arc<Live>) -> JoinHandle<SendOutcome>,
{
    let live = Arc::new(Live::default());
    let shared = Arc::new(Shared {
        live: Arc::clone(&live),
        latency: SharedLatency::new(16),
        stop: CancellationToken::new(),
        stop_dropping: CancellationToken::new(),
        first_connect: Semaphore::new(CONNECT_CONCURRENCY),
    });
    let mut per_channel = vec![0_u64; plan.channels];
    for spec in &plan.receivers {
        if let Some(count) = per_channel.get_mut(spec.channel as usize) {
            *count += 1;
        }
    }
    let total = plan.receivers.len();
    let handles: Vec<JoinHandle<receiver::ReceiverResult>> = plan
        .receivers
        .into_iter()
        .map(|spec| tokio::spawn(receiver::run(spec, plan.drop_policy.clone(), Arc::clone(&shared))))
        .collect();

    // Every receiver must have its first `ready` before anything is sent, so that each
    // message is expected at every receiver of its channel.
    let connect_limit = Duration::from_secs(30) + Duration::from_millis(10 * total as u64);
    let bar = progress.counter(total as u64, &format!("{}: connecting", plan.label));
    let connect_started = Instant::now();
    while Live::get(&live.connected) < total as u64 {
        if connect_started.elapsed() > connect_limit {
            bar.finish_and_clear();
            shared.stop.cancel();
            let connected = Live::get(&live.connected);
            let reason = live.first_error().unwrap_or_else(|| "no error reported".into());
            bail!(
                "only {connected} of {total} WebSocket receivers connected within {}s (first error: {reason})",
                connect_limit.as_secs()
            );
        }
        bar.set_position(Live::get(&live.connected));
        tokio::time::sleep(TICK).await;
    }
    bar.finish_and_clear();

    let started = Instant::now();
    let source_stop = CancellationToken::new();
    let source = start_source(source_stop.clone(), Arc::clone(&live));
    let bar = progress.timer(plan.duration, plan.label);
    let mut last_delivered = 0;
    let mut last_delivery_at = started;
    loop {
        let elapsed = started.elapsed();
        let delivered = Live::get(&live.delivered);
        if delivered != last_delivered {
            last_delivered = delivered;
            last_delivery_at = Instant::now();
        }
        bar.set_position(elapsed.as_millis() as u64 / 100);
        bar.set_message(live_message(&live, elapsed, plan.cycles_target.is_some()));
        let cycles_done = plan.cycles_target.is_some_and(|target| Live::get(&live.cycles) >= target);
        if elapsed >= plan.duration || cycles_done || source.is_finished() {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    source_stop.cancel();
    shared.stop_dropping.cancel();
    let send = source.await.context("the message source failed")?;
    bar.finish_and_clear();

    let expected = ledger::expected_deliveries(&send.sent, &per_channel);
    let drain_started = Instant::now();
    let bar = progress.counter(expected, &format!("{}: draining", plan.label));
    let drained = loop {
        let delivered = Live::get(&live.delivered);
        if delivered != last_delivered {
            last_delivered = delivered;
            last_delivery_at = Instant::now();
        }
        bar.set_position(delivered);
        if delivered >= expected {
            break true;
        }
        if drain_started.elapsed() >= plan.drain {
            break false;
        }
        tokio::time::sleep(TICK).await;
    };
    tokio::time::sleep(SETTLE).await;
    bar.finish_and_clear();
    shared.stop.cancel();

    let mut logs: Vec<ReceiverLog> = Vec::with_capacity(total);
    let mut stats = ReceiverStats::default();
    for handle in handles {
        let result = handle.await.context("a receiver task failed")?;
        stats += result.stats;
        logs.push(result.log);
    }
    let accounting = ledger::account(&send.sent, &logs);
    let window = last_delivery_at.saturating_duration_since(started);
    Ok(DeliveryOutcome {
        receivers: total,
        accounting,
        latency: shared.latency.merged(),
        stats,
        deliveries_per_sec: per_second(accounting.delivered, window),
        sent_per_sec: per_second(send.sent.len() as u64, send.elapsed),
        send,
        window,
        target_rate: plan.target_rate,
        cycles: Live::get(&live.cycles),
        drained,
        first_error: live.first_error(),
    })
}

fn live_message(live: &Live, elapsed: Duration, cycles: bool) -> String {
    let delivered = Live::get(&live.delivered);
    let mut message =
        format!("sent {} · delivered {} ({:.0}/s)", Live::get(&live.sent), delivered, per_second(delivered, elapsed));
    if cycles {
        let _ = write!(message, " · cycles {}", Live::get(&live.cycles));
    }
    let throttled = Live::get(&live.throttled);
    if throttled > 0 {
        let _ = write!(message, " · 429s {throttled}");
    }
    let errors = Live::get(&live.send_errors);
    if errors > 0 {
        let _ = write!(message, " · errors {errors}");
    }
    message
}

impl DeliveryOutcome {
    /// The figures every delivery scenario reports. `latency_name` names the send→receive
    /// distribution; `request_name` the request latency of the source, when it has one.
    pub fn add_to(&self, report: &mut Report, latency_name: &str, request_name: &str) {
        let a = &self.accounting;
        report
            .figure("receivers (WebSocket connections)", self.receivers as f64, "")
            .figure("messages sent (accepted)", self.send.sent.len() as f64, "")
            .figure("messages sent/s", self.sent_per_sec, "1/s")
            .figure("deliveries", a.delivered as f64, "")
            .figure("deliveries expected", a.expected as f64, "")
            .figure("deliveries/s", self.deliveries_per_sec, "1/s")
            .figure("delivery window", self.window.as_secs_f64(), "s");
        report.latency(latency_name, &self.latency);
        if let Some(requests) = &self.send.request_latency {
            report.latency(request_name, requests);
        }
        report
            .check("lost", a.lost, true)
            .check("duplicated", a.duplicated, true)
            .check("order violations (seq not increasing)", self.stats.order_violations, true)
            .check("receivers with loss", a.receivers_with_loss, false)
            .check("unexpected (unacknowledged sends)", a.unexpected, false)
            .check("send errors", self.send.errors, false)
            .check("send throttled (429)", self.send.throttled, false)
            .check("reconnects", self.stats.reconnects, false)
            .check("slow-consumer closes (4008)", self.stats.slow_consumer_closes, false)
            .check("resync_required", self.stats.resync_required, false)
            .check("connect failures", self.stats.connect_failures, false)
            .check("foreign messages", self.stats.foreign, false)
            .check("unparseable frames", self.stats.bad_frames, false);
        if let Some(target) = self.target_rate
            && self.sent_per_sec < target * 0.9
        {
            report.note(format!(
                "messages were accepted at {:.1}/s, below the target {target}/s: the server (or this machine) did not keep up",
                self.sent_per_sec
            ));
        }
        if !self.drained {
            report.note(format!("the drain timed out with {} of {} expected deliveries made", a.delivered, a.expected));
        }
        if self.send.throttled > 0 {
            report.note(
                "the server rate-limited sends (429); run it with RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 to measure it unthrottled",
            );
        }
        if let Some(error) = &self.first_error {
            report.note(format!("first error: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_server::{CHANNEL_ID, MockServer};

    /// Publishes a message every 5 ms until stopped.
    fn publisher(server: MockServer) -> impl FnOnce(CancellationToken, Arc<Live>) -> JoinHandle<SendOutcome> {
        move |stop, live| {
            tokio::spawn(async move {
                let started = Instant::now();
                let mut outcome = SendOutcome::default();
                let mut msg_no = 0;
                while !stop.is_cancelled() {
                    outcome.sent.push(server.publish(msg_no));
                    Live::bump(&live.sent);
                    msg_no += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                outcome.elapsed = started.elapsed();
                outcome
            })
        }
    }

    async fn check(replay: bool, drop_policy: Option<DropPolicy>, drain: Duration) -> DeliveryOutcome {
        let server = MockServer::start(replay).await;
        let receivers = (0..5)
            .map(|index| ReceiverSpec {
                index,
                url: server.url(),
                channel: 0,
                channel_id: CHANNEL_ID.into(),
                source: None,
            })
            .collect();
        let plan = DeliveryPlan {
            label: "test",
            receivers,
            channels: 1,
            drop_policy,
            cycles_target: None,
            duration: Duration::from_millis(1500),
            target_rate: None,
            drain,
        };
        run(plan, Progress::new(false), publisher(server)).await.unwrap()
    }

    fn flapping() -> DropPolicy {
        DropPolicy { online_ms: 30..80, offline_ms: 0..40 }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_reaches_every_receiver_exactly_once() {
        let outcome = check(true, None, Duration::from_secs(10)).await;
        let sent = outcome.send.sent.len() as u64;
        assert!(sent > 10, "{outcome:?}");
        assert!(outcome.drained);
        assert_eq!(outcome.accounting.expected, sent * 5);
        assert_eq!(outcome.accounting.delivered, sent * 5);
        assert_eq!(outcome.accounting.lost, 0);
        assert_eq!(outcome.accounting.duplicated, 0);
        assert_eq!(outcome.stats.order_violations, 0);
        assert_eq!(outcome.latency.count(), sent * 5);
        assert!(outcome.deliveries_per_sec > 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drops_and_resumes_lose_nothing_when_the_server_replays() {
        let outcome = check(true, Some(flapping()), Duration::from_secs(10)).await;
        assert!(outcome.cycles > 0, "{outcome:?}");
        assert!(outcome.stats.reconnects > 0, "{outcome:?}");
        assert!(outcome.stats.replayed > 0, "{outcome:?}");
        assert_eq!(outcome.accounting.lost, 0, "{outcome:?}");
        assert_eq!(outcome.accounting.duplicated, 0, "{outcome:?}");
        assert_eq!(outcome.stats.order_violations, 0, "{outcome:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_ignores_resume_is_caught_losing_events() {
        let outcome = check(false, Some(flapping()), Duration::from_secs(1)).await;
        assert!(outcome.stats.reconnects > 0, "{outcome:?}");
        assert!(outcome.accounting.lost > 0, "{outcome:?}");
        assert!(outcome.accounting.receivers_with_loss > 0, "{outcome:?}");
        assert!(!outcome.drained);
    }
}
