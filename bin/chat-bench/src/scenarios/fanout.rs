//! `fanout`: M members connected by WebSocket to one channel, S senders posting over REST at a
//! total rate R. Every receiver measures send→receive latency and accounts for every message.

use anyhow::{Result, ensure};

use super::baseline::{CeilingPlan, Ceilings};
use super::{Ctx, baseline_duration, check_rate, one_channel, seconds};
use crate::cli::FanoutArgs;
use crate::delivery::{self, DeliveryPlan};
use crate::report::Report;
use crate::senders::{self, Pick, SendPlan};
use crate::setup;

pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> Result<Report> {
    ensure!(args.members > 0, "--members must be at least 1");
    ensure!(args.senders > 0, "--senders must be at least 1");
    check_rate(args.rate)?;
    let mut report = Report::new("fanout");
    report
        .param("url", ctx.api.target().as_str())
        .param("members", args.members)
        .param("senders", args.senders)
        .param("rate", args.rate)
        .param("duration_s", args.duration)
        .param("message_bytes", args.message_bytes)
        .param("open_loop", args.open_loop);

    let ceilings = if args.with_baseline {
        Some(
            Ceilings::measure(
                ctx,
                &CeilingPlan {
                    channels: 1,
                    receivers_per_channel: args.members,
                    rate: args.rate,
                    insert_concurrency: args.senders,
                    duration: baseline_duration(seconds(args.duration)),
                    message_bytes: args.message_bytes,
                },
            )
            .await?,
        )
    } else {
        None
    };

    let (receivers, posters) =
        setup::within(ctx.limits, one_channel(ctx, "fanout", args.senders, "m", args.members)).await?;
    let plan = DeliveryPlan {
        label: "fanout",
        receivers,
        channels: 1,
        drop_policy: None,
        cycles_target: None,
        duration: seconds(args.duration),
        target_rate: Some(args.rate),
        drain: seconds(args.drain),
    };
    let send_plan = SendPlan {
        posters: posters.into(),
        workers: args.senders,
        rate: args.rate,
        message_bytes: args.message_bytes,
        pick: Pick::PerWorker,
        open_loop: args.open_loop,
    };
    let api = ctx.api.clone();
    let outcome =
        delivery::run(plan, ctx.progress, move |stop, live| senders::spawn(api, send_plan, stop, live)).await?;
    outcome.add_to(&mut report, "send→receive", "POST /api/chat/messages");
    if let Some(ceilings) = ceilings {
        ceilings.compare(&mut report, &outcome);
    }
    Ok(report)
}
