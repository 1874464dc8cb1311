//! Open-loop load: requests are due on a fixed schedule (request `i` at `start + i / rate`),
//! whatever the server does, and each latency is measured from the time the request was
//! *due*, not from when it could be sent.
//!
//! A closed loop (each worker sends its next request when the previous one is answered)
//! lets a slow server slow the load down with it, so a stall shows up as a few slow
//! requests instead of the many that would have waited behind it in real life
//! ("coordinated omission"). Here a request that cannot start on time — every one of
//! `max_in_flight` slots is busy — starts as soon as a slot frees, and the wait is charged to
//! its latency. Offered and achieved rates are both reported, so a server that cannot keep
//! up shows it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::Reply;
use crate::stats::{Latency, per_second};

/// The fixed schedule: `rate` requests a second for `duration`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub rate: f64,
    pub duration: Duration,
    /// Requests allowed in flight at once (a client's connection pool); later ones queue and
    /// the queueing counts in their latency.
    pub max_in_flight: usize,
    /// How long requests still in flight at the end may take to finish.
    pub drain: Duration,
}

impl Schedule {
    /// When request `i` is due, counted from the start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests the schedule offers.
    pub fn offered(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).floor() as u64
    }
}

/// What an open-loop run measured.
#[derive(Debug, Default)]
pub struct OpenLoopOutcome {
    /// Requests the schedule offered.
    pub offered: u64,
    /// Requests answered with a success.
    pub completed: u64,
    pub errors: u64,
    pub throttled: u64,
    /// Requests that had not finished when the drain time ran out.
    pub unfinished: u64,
    /// From the time each request was due to its answer.
    pub latency: Latency,
    /// From the time each request was actually sent to its answer (the server's part).
    pub service: Latency,
    /// How late requests were sent, behind their due time (the client's queue).
    pub send_delay: Latency,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl OpenLoopOutcome {
    pub fn offered_rate(&self, schedule: &Schedule) -> f64 {
        per_second(self.offered, schedule.duration)
    }

    /// Successful answers per second over the whole run (drain included).
    pub fn achieved_rate(&self) -> f64 {
        per_second(self.completed, self.elapsed)
    }
}

enum Done {
    Ok { due_to_answer: Duration, sent_to_answer: Duration, late: Duration },
    Throttled,
    Failed(String),
}

/// Runs `request(i)` for every `i` of the schedule.
pub async fn run<F, Fut>(schedule: Schedule, request: F) -> OpenLoopOutcome
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(schedule.max_in_flight.max(1)));
    let started = Instant::now();
    let offered = schedule.offered();
    let mut tasks = JoinSet::new();
    let mut outcome = OpenLoopOutcome { offered, ..OpenLoopOutcome::default() };
    for i in 0..offered {
        let due = started + schedule.due(i);
        tokio::time::sleep_until(due).await;
        // Waiting for a slot delays the send, never the due time.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        let call = request(i);
        tasks.spawn(async move {
            let sent = Instant::now();
            let reply = call.await;
            drop(slot);
            let answered = Instant::now();
            match reply {
                Reply::Ok(_) => Done::Ok {
                    due_to_answer: answered - due,
                    sent_to_answer: answered - sent,
                    late: sent.saturating_duration_since(due),
                },
                Reply::Throttled(_) => Done::Throttled,
                Reply::Failed(error) => Done::Failed(error),
            }
        });
        // Collect what finished so far, so memory stays flat on long runs.
        while let Some(done) = tasks.try_join_next() {
            outcome.absorb(done.ok());
        }
    }
    let drain_until = Instant::now() + schedule.drain;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(drain_until, tasks.join_next()).await {
            Ok(Some(done)) => outcome.absorb(done.ok()),
            Ok(None) => break,
            Err(_) => {
                outcome.unfinished = tasks.len() as u64;
                tasks.abort_all();
                break;
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

impl OpenLoopOutcome {
    fn absorb(&mut self, done: Option<Done>) {
        match done {
            Some(Done::Ok { due_to_answer, sent_to_answer, late }) => {
                self.completed += 1;
                self.latency.record(due_to_answer);
                self.service.record(sent_to_answer);
                self.send_delay.record(late);
            }
            Some(Done::Throttled) => self.throttled += 1,
            Some(Done::Failed(error)) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
            None => self.errors += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spaces_requests_evenly() {
        let schedule =
            Schedule { rate: 200.0, duration: Duration::from_secs(2), max_in_flight: 1, drain: Duration::ZERO };
        assert_eq!(schedule.offered(), 400);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(100), Duration::from_millis(500));
    }

    /// A server that answers one request at a time, 20 ms each, offered 100 requests/s:
    /// the open loop charges the queue to the latency (it grows to hundreds of ms), where a
    /// closed loop would have reported 20 ms and quietly halved the load.
    #[tokio::test(start_paused = true)]
    async fn a_slow_server_cannot_hide_behind_the_schedule() {
        let schedule =
            Schedule { rate: 100.0, duration: Duration::from_secs(1), max_in_flight: 1, drain: Duration::from_secs(5) };
        let outcome = run(schedule, |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Reply::Ok(bytes::Bytes::new())
        })
        .await;
        assert_eq!((outcome.offered, outcome.completed, outcome.errors), (100, 100, 0));
        let service = outcome.service.summary();
        let latency = outcome.latency.summary();
        assert!(service.p99_ms < 25.0, "service {service:?}");
        assert!(latency.max_ms > 900.0, "latency {latency:?}");
        assert!(outcome.achieved_rate() < 60.0, "achieved {}", outcome.achieved_rate());
    }
}
