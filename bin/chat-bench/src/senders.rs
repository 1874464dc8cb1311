//! Senders posting messages over REST at a fixed total rate.
//!
//! `workers` tasks each tick at `workers / rate` seconds and post one message per tick, so
//! the offered rate is `rate` while the server keeps up; a worker whose request takes longer
//! than its period catches up with back-to-back requests (tokio's burst behaviour), and the
//! achieved rate is reported. A 429 pauses the worker for `Retry-After`.
//!
//! With `open_loop`, a tick does not wait for the previous request: each message is posted
//! at its scheduled time (up to [`MAX_IN_FLIGHT`] per worker), and its send time, from
//! which the receivers measure latency, is the scheduled one. A slow server then shows as
//! latency instead of slowing the senders down.

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
    pub open_loop: bool,
}

/// Requests one open-loop worker keeps in flight at most; past it, ticks wait (and their
/// latency, counted from the schedule, shows it).
pub const MAX_IN_FLIGHT: usize = 256;

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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let scheduled = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            scheduled = ticker.tick() => scheduled,
        };
        let poster = match plan.pick {
            Pick::PerWorker => plan.posters[id % plan.posters.len()].clone(),
            Pick::Random => plan.posters[rand::random_range(0..plan.posters.len())].clone(),
        };
        let msg_no = next_msg_no.fetch_add(1, Ordering::Relaxed);
        if !plan.open_loop {
            let result = post(&api, &poster, msg_no, Instant::now(), plan.message_bytes, &live).await;
            if let Some(wait) = out.add(result) {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            continue;
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        let (api, live, bytes) = (api.clone(), Arc::clone(&live), plan.message_bytes);
        in_flight.spawn(async move {
            let result = post(&api, &poster, msg_no, scheduled, bytes, &live).await;
            drop(slot);
            result
        });
        while let Some(done) = in_flight.try_join_next() {
            if let Ok(posted) = done {
                out.add(posted);
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        if let Ok(posted) = done {
            out.add(posted);
        }
    }
    out
}

/// One post's result, with its latency from `scheduled`.
struct Posted {
    reply: Reply,
    msg_no: u64,
    channel: u32,
    latency: Duration,
}

impl WorkerOutcome {
    /// Counts a post; a 429 gives how long to pause.
    fn add(&mut self, posted: Posted) -> Option<Duration> {
        match posted.reply {
            Reply::Ok(body) => {
                self.latency.record(posted.latency);
                self.sent.push(Sent { msg_no: posted.msg_no, channel: posted.channel, seq: api::posted_seq(&body) });
                None
            }
            Reply::Throttled(wait) => {
                self.throttled += 1;
                Some(wait)
            }
            Reply::Failed(_) => {
                self.errors += 1;
                None
            }
        }
    }
}

/// Posts message `msg_no`, stamped with the wall-clock time of `scheduled`.
async fn post(api: &Api, poster: &Poster, msg_no: u64, scheduled: Instant, bytes: usize, live: &Live) -> Posted {
    let behind = u64::try_from(scheduled.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let stamp = Stamp { sent_at_nanos: content::now_unix_nanos().saturating_sub(behind), msg_no };
    let text = content::encode(stamp, bytes);
    let reply = api.post_message(&poster.token, &poster.channel_id, &text).await;
    match &reply {
        Reply::Ok(_) => Live::bump(&live.sent),
        Reply::Throttled(_) => Live::bump(&live.throttled),
        Reply::Failed(error) => {
            Live::bump(&live.send_errors);
            live.record_error(|| format!("POST /api/chat/messages: {error}"));
        }
    }
    Posted { reply, msg_no, channel: poster.channel, latency: scheduled.elapsed() }
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
