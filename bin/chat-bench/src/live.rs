//! Counters shared by the tasks of a run, read by the progress bar and the drain logic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct Live {
    /// Receivers that have had their first `ready`.
    pub connected: AtomicU64,
    /// Messages delivered to receivers (chat-bench's own, duplicates included).
    pub delivered: AtomicU64,
    /// Messages accepted by the server.
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub throttled: AtomicU64,
    /// Deliberate drop/resume cycles (reconnect scenario).
    pub cycles: AtomicU64,
    /// Connections that ended without being asked to.
    pub disconnects: AtomicU64,
    /// Requests completed (rest scenario).
    pub requests: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Live {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the first error message of the run, to show when something went wrong.
    pub fn record_error(&self, error: impl FnOnce() -> String) {
        let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(error());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
