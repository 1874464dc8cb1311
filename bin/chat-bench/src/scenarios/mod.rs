//! The scenarios, one module each. Every scenario returns a [`Report`](crate::report::Report)
//! and leaves rendering to `main`.

pub mod abuse;
pub mod baseline;
pub mod fanout;
pub mod history;
pub mod idle;
pub mod reconnect;
pub mod rest;
pub mod rooms;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::api::Api;
use crate::progress::Progress;
use crate::receiver::ReceiverSpec;
use crate::senders::Poster;
use crate::setup::{self, SetupLimits};

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

/// One channel named after `name`: `senders` users who post (the first creates it) and
/// `receivers` users (names tagged `receiver_tag`) who listen on WebSocket, all members.
pub async fn one_channel(
    ctx: &Ctx,
    name: &str,
    senders: usize,
    receiver_tag: &str,
    receivers: usize,
) -> Result<(Vec<ReceiverSpec>, Vec<Poster>)> {
    let api = &ctx.api;
    let senders = setup::register_users(api, &ctx.prefix, "s", senders, ctx.limits, ctx.progress).await?;
    let listeners = setup::register_users(api, &ctx.prefix, receiver_tag, receivers, ctx.limits, ctx.progress).await?;
    let channel_ids = setup::create_channels(api, &ctx.prefix, name, &[&senders[0]], ctx.limits, ctx.progress).await?;
    let channel_id = Arc::clone(&channel_ids[0]);
    let joins: Vec<_> = senders[1..].iter().chain(&listeners).map(|user| (user, Arc::clone(&channel_id))).collect();
    setup::join_channels(api, &joins, ctx.limits, ctx.progress).await?;

    let receivers = listeners
        .iter()
        .enumerate()
        .map(|(index, user)| {
            Ok(ReceiverSpec {
                index,
                url: api.target().ws(&user.token)?,
                channel: 0,
                channel_id: Arc::clone(&channel_id),
                source: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let posters = senders
        .iter()
        .map(|user| Poster { token: Arc::clone(&user.token), channel: 0, channel_id: Arc::clone(&channel_id) })
        .collect();
    Ok((receivers, posters))
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
