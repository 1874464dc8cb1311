//! `fanout`: M members connected by WebSocket to one channel, S senders posting over REST at a
//! total rate R. Every receiver measures send→receive latency and accounts for every message.

use std::sync::Arc;

use anyhow::{Result, ensure};

use super::baseline::{CeilingPlan, Ceilings};
use super::{Ctx, baseline_duration, check_rate, seconds};
use crate::cli::FanoutArgs;
use crate::delivery::{self, DeliveryPlan};
use crate::receiver::ReceiverSpec;
use crate::report::Report;
use crate::senders::{self, Pick, Poster, SendPlan};
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
        .param("message_bytes", args.message_bytes);

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

    let (receivers, posters) = setup::within(ctx.limits, prepare(ctx, args)).await?;
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

/// Users, the channel, memberships; returns the receivers and the posters.
async fn prepare(ctx: &Ctx, args: &FanoutArgs) -> Result<(Vec<ReceiverSpec>, Vec<Poster>)> {
    let api = &ctx.api;
    let senders = setup::register_users(api, &ctx.prefix, "s", args.senders, ctx.limits, ctx.progress).await?;
    let members = setup::register_users(api, &ctx.prefix, "m", args.members, ctx.limits, ctx.progress).await?;
    let channel_ids =
        setup::create_channels(api, &ctx.prefix, "fanout", &[&senders[0]], ctx.limits, ctx.progress).await?;
    let channel_id = Arc::clone(&channel_ids[0]);
    let joins: Vec<_> = senders[1..].iter().chain(&members).map(|user| (user, Arc::clone(&channel_id))).collect();
    setup::join_channels(api, &joins, ctx.limits, ctx.progress).await?;

    let receivers = members
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
