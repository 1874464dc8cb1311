//! `rooms`: the Slack-shaped load. Many small channels (2,000 users in 200 channels of 10 by
//! default), every user connected by WebSocket to their channel and posting now and then.

use std::sync::Arc;

use anyhow::{Result, ensure};

use super::baseline::{CeilingPlan, Ceilings};
use super::{Ctx, baseline_duration, check_rate, seconds};
use crate::cli::RoomsArgs;
use crate::delivery::{self, DeliveryPlan};
use crate::receiver::ReceiverSpec;
use crate::report::Report;
use crate::senders::{self, Pick, Poster, SendPlan};
use crate::setup::{self, User};
use crate::target::Target;

pub async fn run(ctx: &Ctx, args: &RoomsArgs) -> Result<Report> {
    ensure!(args.channels > 0, "--channels must be at least 1");
    ensure!(args.users >= args.channels, "--users must be at least --channels (each channel needs an owner)");
    ensure!(args.senders > 0, "--senders must be at least 1");
    check_rate(args.rate)?;
    let mut report = Report::new("rooms");
    report
        .param("url", ctx.api.target().as_str())
        .param("nodes", 1 + args.node_urls.len())
        .param("users", args.users)
        .param("channels", args.channels)
        .param("rate", args.rate)
        .param("senders", args.senders)
        .param("duration_s", args.duration)
        .param("message_bytes", args.message_bytes);

    let ceilings = if args.with_baseline {
        Some(
            Ceilings::measure(
                ctx,
                &CeilingPlan {
                    channels: args.channels,
                    receivers_per_channel: args.users / args.channels,
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
        label: "rooms",
        receivers,
        channels: args.channels,
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
        pick: Pick::Random,
        open_loop: false,
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

/// The channel of user `index`: users are dealt round-robin, so channel sizes differ by at
/// most one and user `c` (for `c < channels`) is the first member, and owner, of channel `c`.
pub fn channel_of(index: usize, channels: usize) -> usize {
    index % channels
}

/// The node user `index` connects to: users are dealt round-robin over the nodes, so each
/// channel's members sit on different nodes whenever there are several.
pub fn node_of(index: usize, nodes: usize) -> usize {
    index % nodes.max(1)
}

async fn prepare(ctx: &Ctx, args: &RoomsArgs) -> Result<(Vec<ReceiverSpec>, Vec<Poster>)> {
    let api = &ctx.api;
    let mut nodes = vec![api.target().clone()];
    for raw in &args.node_urls {
        nodes.push(Target::parse(raw)?);
    }
    let users: Vec<User> = setup::register_users(api, &ctx.prefix, "u", args.users, ctx.limits, ctx.progress).await?;
    let owners: Vec<&User> = users[..args.channels].iter().collect();
    let channel_ids = setup::create_channels(api, &ctx.prefix, "room", &owners, ctx.limits, ctx.progress).await?;
    let joins: Vec<_> = users
        .iter()
        .enumerate()
        .skip(args.channels)
        .map(|(index, user)| (user, Arc::clone(&channel_ids[channel_of(index, args.channels)])))
        .collect();
    setup::join_channels(api, &joins, ctx.limits, ctx.progress).await?;

    let mut receivers = Vec::with_capacity(users.len());
    let mut posters = Vec::with_capacity(users.len());
    for (index, user) in users.iter().enumerate() {
        let channel = channel_of(index, args.channels);
        let channel_id = Arc::clone(&channel_ids[channel]);
        receivers.push(ReceiverSpec {
            index,
            url: nodes[node_of(index, nodes.len())].ws(&user.token)?,
            channel: channel as u32,
            channel_id: Arc::clone(&channel_id),
            source: None,
        });
        posters.push(Poster { token: Arc::clone(&user.token), channel: channel as u32, channel_id });
    }
    Ok((receivers, posters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_dealt_evenly_and_the_first_of_each_channel_owns_it() {
        let channels = 200;
        let mut sizes = vec![0; channels];
        for user in 0..2000 {
            sizes[channel_of(user, channels)] += 1;
        }
        assert!(sizes.iter().all(|&size| size == 10));
        for owner in 0..channels {
            assert_eq!(channel_of(owner, channels), owner);
        }
        let mut uneven = vec![0; 3];
        for user in 0..10 {
            uneven[channel_of(user, 3)] += 1;
        }
        assert_eq!(uneven, [4, 3, 3]);
    }

    #[test]
    fn users_are_spread_over_the_nodes_so_channels_cross_them() {
        let table = [(0, 1, 0), (5, 1, 0), (0, 3, 0), (1, 3, 1), (2, 3, 2), (3, 3, 0), (7, 0, 0)];
        for (index, nodes, node) in table {
            assert_eq!(node_of(index, nodes), node, "user {index} of {nodes} nodes");
        }
        // With 200 channels of 10 over 3 nodes, every channel has members on every node.
        for channel in 0..200 {
            let on: std::collections::HashSet<usize> =
                (0..2000).filter(|u| channel_of(*u, 200) == channel).map(|u| node_of(u, 3)).collect();
            assert_eq!(on.len(), 3, "channel {channel}");
        }
    }
}
