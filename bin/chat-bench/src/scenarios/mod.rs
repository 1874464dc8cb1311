//! The scenarios, one module each. Every scenario returns a [`Report`](crate::report::Report)
//! and leaves rendering to `main`.

pub mod baseline;
pub mod fanout;
pub mod idle;
pub mod reconnect;
pub mod rest;
pub mod rooms;

use std::time::Duration;

use anyhow::{Result, ensure};

use crate::api::Api;
use crate::progress::Progress;
use crate::setup::SetupLimits;

/// What every scenario gets from `main`.
#[derive(Debug)]
pub struct Ctx {
    pub api: Api,
    pub progress: Progress,
    pub limits: SetupLimits,
    pub database_url: String,
    /// The run's random prefix for user and channel names.
    pub prefix: String,
}

/// Checks a rate argument: positive and finite.
pub fn check_rate(rate: f64) -> Result<()> {
    ensure!(rate.is_finite() && rate > 0.0, "--rate must be a positive number of messages per second");
    Ok(())
}

pub fn seconds(value: u64) -> Duration {
    Duration::from_secs(value)
}

/// Baselines run for at most this long inside another scenario.
pub fn baseline_duration(scenario: Duration) -> Duration {
    scenario.min(Duration::from_secs(10))
}
