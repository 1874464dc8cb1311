//! `reconnect`: clients in one channel drop their connection (no close frame) and come back
//! with `resume` and their last seen `seq`, over and over, while senders post. Every message
//! sent after a client's first `ready` must reach it exactly once, live or replayed.

use anyhow::{Result, ensure};

use super::{Ctx, check_rate, one_channel, seconds};
use crate::cli::ReconnectArgs;
use crate::delivery::{self, DeliveryPlan};
use crate::receiver::DropPolicy;
use crate::report::Report;
use crate::senders::{self, Pick, SendPlan};
use crate::setup;

pub async fn run(ctx: &Ctx, args: &ReconnectArgs) -> Result<Report> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.senders > 0, "--senders must be at least 1");
    ensure!(args.online_min_ms <= args.online_max_ms, "--online-min-ms must not exceed --online-max-ms");
    check_rate(args.rate)?;
    let mut report = Report::new("reconnect");
    report
        .param("url", ctx.api.target().as_str())
        .param("clients", args.clients)
        .param("senders", args.senders)
        .param("rate", args.rate)
        .param("cycles", args.cycles)
        .param("duration_s", args.duration)
        .param("online_ms", format!("{}..{}", args.online_min_ms, args.online_max_ms))
        .param("offline_ms", format!("0..{}", args.offline_max_ms));

    let (receivers, posters) =
        setup::within(ctx.limits, one_channel(ctx, "reconnect", args.senders, "c", args.clients)).await?;
    let plan = DeliveryPlan {
        label: "reconnect",
        receivers,
        channels: 1,
        drop_policy: Some(DropPolicy {
            online_ms: args.online_min_ms..args.online_max_ms + 1,
            offline_ms: 0..args.offline_max_ms + 1,
        }),
        cycles_target: Some(args.cycles),
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
        open_loop: false,
    };
    let api = ctx.api.clone();
    let outcome =
        delivery::run(plan, ctx.progress, move |stop, live| senders::spawn(api, send_plan, stop, live)).await?;
    report.figure("drop/resume cycles", outcome.cycles as f64, "").figure(
        "messages replayed by resume",
        outcome.stats.replayed as f64,
        "",
    );
    outcome.add_to(&mut report, "send→receive (live and replayed)", "POST /api/chat/messages");
    if outcome.cycles < args.cycles {
        report
            .note(format!("only {} of {} cycles fitted in --duration {}s", outcome.cycles, args.cycles, args.duration));
    }
    if outcome.stats.replayed == 0 && outcome.cycles > 0 {
        report.note(
            "no message was replayed by resume: raise --rate or --offline-max-ms so that messages are sent while clients are away",
        );
    }
    Ok(report)
}
