//! `baseline`, and the ceilings other scenarios compare themselves with (`--with-baseline`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};

use super::{Ctx, check_rate, seconds};
use crate::baseline::broadcast::BroadcastServer;
use crate::baseline::insert::{self, InsertOutcome};
use crate::cli::BaselineArgs;
use crate::delivery::{self, DeliveryOutcome, DeliveryPlan};
use crate::progress::Progress;
use crate::receiver::ReceiverSpec;
use crate::report::Report;
use crate::target::check_database_url;

pub async fn run(ctx: &Ctx, args: &BaselineArgs) -> Result<Report> {
    ensure!(args.members > 0, "--members must be at least 1");
    check_rate(args.rate)?;
    let mut report = Report::new("baseline");
    report
        .param("concurrency", args.concurrency)
        .param("members", args.members)
        .param("rate", args.rate)
        .param("duration_s", args.duration)
        .param("message_bytes", args.message_bytes);
    if !args.broadcast_only {
        let outcome = insert_ceiling(ctx, args.concurrency, seconds(args.duration), args.message_bytes).await?;
        add_insert(&mut report, &outcome);
    }
    if !args.insert_only {
        let outcome =
            broadcast_ceiling(ctx.progress, 1, args.members, args.rate, seconds(args.duration), args.message_bytes)
                .await?;
        add_broadcast(&mut report, &outcome);
    }
    Ok(report)
}

pub async fn insert_ceiling(
    ctx: &Ctx,
    concurrency: usize,
    duration: Duration,
    message_bytes: usize,
) -> Result<InsertOutcome> {
    check_database_url(&ctx.database_url)?;
    insert::run(&ctx.database_url, concurrency, duration, message_bytes, ctx.progress).await
}

/// Receivers of the in-process broadcast server, `receivers_per_channel` in each of
/// `channels`, with messages published round-robin over the channels at `rate`.
pub async fn broadcast_ceiling(
    progress: Progress,
    channels: usize,
    receivers_per_channel: usize,
    rate: f64,
    duration: Duration,
    message_bytes: usize,
) -> Result<DeliveryOutcome> {
    let server = Arc::new(BroadcastServer::start(channels).await?);
    let mut receivers = Vec::with_capacity(channels * receivers_per_channel);
    for channel in 0..channels as u32 {
        for _ in 0..receivers_per_channel {
            receivers.push(ReceiverSpec {
                index: receivers.len(),
                url: server.url(channel)?,
                channel,
                channel_id: server.channel_id(channel),
                source: None,
            });
        }
    }
    let plan = DeliveryPlan {
        label: "baseline broadcast",
        receivers,
        channels,
        drop_policy: None,
        cycles_target: None,
        duration,
        target_rate: Some(rate),
        drain: Duration::from_secs(5),
    };
    let source_server = Arc::clone(&server);
    let outcome =
        delivery::run(plan, progress, move |stop, live| source_server.spawn_source(rate, message_bytes, stop, live))
            .await;
    server.shutdown();
    outcome
}

fn add_insert(report: &mut Report, outcome: &InsertOutcome) {
    report
        .figure(format!("bare INSERT/s (concurrency {})", outcome.concurrency), outcome.per_sec, "1/s")
        .figure("bare INSERTs", outcome.inserts as f64, "")
        .latency("bare INSERT", &outcome.latency)
        .check("bare INSERT errors", outcome.errors, false);
}

fn add_broadcast(report: &mut Report, outcome: &DeliveryOutcome) {
    report
        .figure(
            format!("bare broadcast deliveries/s ({} receivers)", outcome.receivers),
            outcome.deliveries_per_sec,
            "1/s",
        )
        .figure("bare broadcast messages/s", outcome.sent_per_sec, "1/s")
        .latency("bare broadcast publish→receive", &outcome.latency)
        .check("bare broadcast lost", outcome.accounting.lost, true)
        .check("bare broadcast duplicated", outcome.accounting.duplicated, true)
        .check("bare broadcast slow-consumer closes", outcome.stats.slow_consumer_closes, false);
}

/// The shape of the load a scenario puts on the server, for its matching baselines.
#[derive(Clone, Copy, Debug)]
pub struct CeilingPlan {
    pub channels: usize,
    pub receivers_per_channel: usize,
    pub rate: f64,
    pub insert_concurrency: usize,
    pub duration: Duration,
    pub message_bytes: usize,
}

/// Both ceilings, measured before the scenario itself.
#[derive(Debug)]
pub struct Ceilings {
    insert: InsertOutcome,
    broadcast: DeliveryOutcome,
}

impl Ceilings {
    pub async fn measure(ctx: &Ctx, plan: &CeilingPlan) -> Result<Self> {
        let insert = insert_ceiling(ctx, plan.insert_concurrency, plan.duration, plan.message_bytes).await?;
        let broadcast = broadcast_ceiling(
            ctx.progress,
            plan.channels,
            plan.receivers_per_channel,
            plan.rate,
            plan.duration,
            plan.message_bytes,
        )
        .await?;
        Ok(Self { insert, broadcast })
    }

    /// States the server's figures as fractions of the ceilings, and adds the baselines'
    /// own figures (prefixed `baseline: `).
    pub fn compare(self, report: &mut Report, server: &DeliveryOutcome) {
        report
            .ceiling(
                "deliveries/s vs bare broadcast at the same rate",
                server.deliveries_per_sec,
                self.broadcast.deliveries_per_sec,
                "1/s",
            )
            .ceiling(
                format!("messages persisted/s vs bare INSERT/s (concurrency {})", self.insert.concurrency),
                server.sent_per_sec,
                self.insert.per_sec,
                "1/s",
            );
        let mut baseline = Report::new("baseline");
        add_insert(&mut baseline, &self.insert);
        add_broadcast(&mut baseline, &self.broadcast);
        report.absorb("baseline: ", baseline);
    }
}

/// Only the INSERT ceiling, for `rest`.
pub fn compare_writes(report: &mut Report, writes_per_sec: f64, insert: &InsertOutcome) {
    report.ceiling(
        format!("POST /api/chat/messages per s vs bare INSERT/s (concurrency {})", insert.concurrency),
        writes_per_sec,
        insert.per_sec,
        "1/s",
    );
    let mut baseline = Report::new("baseline");
    add_insert(&mut baseline, insert);
    report.absorb("baseline: ", baseline);
}
