//! Senders posting messages over REST at a fixed total rate.
//!
//! `workers` tasks each tick at `workers / rate` seconds and post one message per tick, so
//! the offered rate is `rate` while the server keeps up; a worker whose request takes longer
//! than its period catches up with back-to-back requests (tokio's burst behaviour), and the
//! achieved rate is reported. A 429 pauses the worker for `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Api, Reply};
use crate::content::{self, Stamp};
use crate::ledger::Sent;
use crate::live::Live;
use crate::stats::Latency;

/// A user who posts, and where.
#[derive(Clone, Debug)]
pub struct Poster {
    pub token: Arc<str>,
    pub channel: u32,
    pub channel_id: Arc<str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Worker `i` always posts as poster `i` (fanout's dedicated senders).
    PerWorker,
    /// Each message from a poster picked at random (rooms: everyone posts now and then).
    Random,
}

#[derive(Clone, Debug)]
pub struct SendPlan {
    pub posters: Arc<[Poster]>,
    pub workers: usize,
    /// Messages per second over all workers.
    pub rate: f64,
    pub message_bytes: usize,
    pub pick: Pick,
}

/// What a message source (REST senders, or the in-process broadcaster) produced.
#[derive(Debug, Default)]
pub struct SendOutcome {
    pub sent: Vec<Sent>,
    /// Request latency, for sources that make requests.
    pub request_latency: Option<Latency>,
    pub errors: u64,
    pub throttled: u64,
    pub elapsed: Duration,
}

#[derive(Default)]
struct WorkerOutcome {
    sent: Vec<Sent>,
    latency: Latency,
    errors: u64,
    throttled: u64,
}

/// Starts the workers; they stop at `stop` after finishing the request in flight, so that
/// every message the server accepted is in the outcome.
pub fn spawn(api: Api, plan: SendPlan, stop: CancellationToken, live: Arc<Live>) -> JoinHandle<SendOutcome> {
    tokio::spawn(async move {
        let started = Instant::now();
        let plan = Arc::new(plan);
        let next_msg_no = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..plan.workers.max(1))
            .map(|id| {
                tokio::spawn(worker(
                    id,
                    api.clone(),
                    Arc::clone(&plan),
                    stop.clone(),
                    Arc::clone(&live),
                    Arc::clone(&next_msg_no),
                ))
            })
            .collect();
        let mut outcome = SendOutcome::default();
        let mut latency = Latency::new();
        for worker in workers {
            // A worker that panicked lost its records; the others still count.
            if let Ok(done) = worker.await {
                outcome.sent.extend(done.sent);
                latency.merge(&done.latency);
                outcome.errors += done.errors;
                outcome.throttled += done.throttled;
            }
        }
        outcome.request_latency = Some(latency);
        outcome.elapsed = started.elapsed();
        outcome
    })
}

/// The tick period of each worker; rates are clamped to at least one message a minute.
pub fn worker_period(workers: usize, rate: f64) -> Duration {
    let rate = if rate.is_finite() { rate.max(1.0 / 60.0) } else { 1.0 };
    Duration::from_secs_f64(workers.max(1) as f64 / rate)
}

async fn worker(
    id: usize,
    api: Api,
    plan: Arc<SendPlan>,
    stop: CancellationToken,
    live: Arc<Live>,
    next_msg_no: Arc<AtomicU64>,
) -> WorkerOutcome {
    let mut out = WorkerOutcome::default();
    if plan.posters.is_empty() {
        return out;
    }
    let workers = plan.workers.max(1);
    let period = worker_period(workers, plan.rate);
    // Stagger the workers over one period so their requests do not line up.
    let offset = period.mul_f64(id as f64 / workers as f64);
    let mut ticker = tokio::time::interval_at(Instant::now() + offset, period);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let poster = match plan.pick {
            Pick::PerWorker => &plan.posters[id % plan.posters.len()],
            Pick::Random => &plan.posters[rand::random_range(0..plan.posters.len())],
        };
        let msg_no = next_msg_no.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let stamp = Stamp { sent_at_nanos: content::now_unix_nanos(), msg_no };
        let text = content::encode(stamp, plan.message_bytes);
        match api.post_message(&poster.token, &poster.channel_id, &text).await {
            Reply::Ok(body) => {
                out.latency.record(started.elapsed());
                out.sent.push(Sent { msg_no, channel: poster.channel, seq: api::posted_seq(&body) });
                Live::bump(&live.sent);
            }
            Reply::Throttled(wait) => {
                out.throttled += 1;
                Live::bump(&live.throttled);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Reply::Failed(error) => {
                out.errors += 1;
                Live::bump(&live.send_errors);
                live.record_error(|| format!("POST /api/chat/messages: {error}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_period_spreads_the_rate_over_workers() {
        assert_eq!(worker_period(4, 100.0), Duration::from_millis(40));
        assert_eq!(worker_period(1, 1000.0), Duration::from_millis(1));
        assert_eq!(worker_period(0, 10.0), Duration::from_millis(100));
        assert_eq!(worker_period(1, 0.0).as_secs(), 60);
        assert_eq!(worker_period(1, f64::NAN), Duration::from_secs(1));
    }
}
