//! What replays a user may make the server send: a resume costs the events and bytes it
//! replays, charged to the user (all their connections on this node) against a budget that
//! refills continuously over a minute. A client that resumes in a loop is refused once the
//! budget is spent, instead of turning a few small frames into gigabytes of replay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::UserId;

/// The refill period: the limits are per minute.
const PERIOD: Duration = Duration::from_mins(1);

/// Per-user budgets of replayed events and bytes; cheap to clone.
#[derive(Clone)]
pub struct ReplayBudget {
    events_per_minute: u64,
    bytes_per_minute: u64,
    users: Arc<Mutex<HashMap<UserId, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    events: f64,
    bytes: f64,
    at: Instant,
}

impl ReplayBudget {
    /// 0 for either limit turns the budget off.
    pub fn new(events_per_minute: u64, bytes_per_minute: u64) -> Self {
        Self { events_per_minute, bytes_per_minute, users: Arc::default() }
    }

    fn off(&self) -> bool {
        self.events_per_minute == 0 || self.bytes_per_minute == 0
    }

    /// The user's bucket, refilled up to now.
    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let share = now.duration_since(bucket.at).as_secs_f64() / PERIOD.as_secs_f64();
        bucket.events = (bucket.events + share * self.events_per_minute as f64).min(self.events_per_minute as f64);
        bucket.bytes = (bucket.bytes + share * self.bytes_per_minute as f64).min(self.bytes_per_minute as f64);
        bucket.at = now;
    }

    /// `None` when the user may replay now; otherwise how long until they may.
    pub fn wait(&self, user: UserId) -> Option<Duration> {
        self.wait_at(user, Instant::now())
    }

    fn wait_at(&self, user: UserId, now: Instant) -> Option<Duration> {
        if self.off() {
            return None;
        }
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = users.get_mut(&user)?;
        self.refill(bucket, now);
        let missing =
            (-bucket.events / self.events_per_minute as f64).max(-bucket.bytes / self.bytes_per_minute as f64);
        (missing > 0.0).then(|| PERIOD.mul_f64(missing))
    }

    /// Charges a replay that was sent. The budget may go below zero: the next replay then
    /// waits until it has refilled.
    pub fn charge(&self, user: UserId, events: usize, bytes: usize) {
        self.charge_at(user, events, bytes, Instant::now());
    }

    fn charge_at(&self, user: UserId, events: usize, bytes: usize, now: Instant) {
        if self.off() || events == 0 {
            return;
        }
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let full = Bucket { events: self.events_per_minute as f64, bytes: self.bytes_per_minute as f64, at: now };
        let bucket = users.entry(user).or_insert(full);
        self.refill(bucket, now);
        bucket.events -= events as f64;
        bucket.bytes -= bytes as f64;
        // Users with a full bucket again need no entry.
        let (max_events, max_bytes) = (self.events_per_minute as f64, self.bytes_per_minute as f64);
        users.retain(|_, b| b.events < max_events || b.bytes < max_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_refuses_until_it_refills() {
        let budget = ReplayBudget::new(100, 1000);
        let (alice, bob) = (UserId::new(), UserId::new());
        let start = Instant::now();
        assert_eq!(budget.wait_at(alice, start), None, "a fresh user may replay");
        budget.charge_at(alice, 50, 1500, start);
        let wait = budget.wait_at(alice, start).expect("1,500 bytes spent of 1,000 a minute");
        assert!((Duration::from_secs(29)..=Duration::from_secs(31)).contains(&wait), "{wait:?}");
        assert_eq!(budget.wait_at(bob, start), None, "the budget is per user");
        assert_eq!(budget.wait_at(alice, start + Duration::from_secs(31)), None, "refilled by then");
        budget.charge_at(alice, 150, 10, start + Duration::from_secs(31));
        assert!(budget.wait_at(alice, start + Duration::from_secs(32)).is_some(), "events count too");
    }

    #[test]
    fn zero_turns_it_off() {
        let budget = ReplayBudget::new(0, 1000);
        let alice = UserId::new();
        budget.charge(alice, 1_000_000, 1_000_000_000);
        assert_eq!(budget.wait(alice), None);
    }
}
