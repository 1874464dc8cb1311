//! `rest`: authenticated reads and writes at fixed concurrency, closed loop (each worker
//! sends its next request when the previous one is answered).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use reqwest::Url;
use tokio::time::Instant;

use super::baseline::{compare_writes, insert_ceiling};
use super::{Ctx, baseline_duration, seconds};
use crate::api::{Api, Reply};
use crate::cli::RestArgs;
use crate::content::{self, Stamp};
use crate::live::Live;
use crate::report::Report;
use crate::setup::{self, User};
use crate::stats::{Latency, per_second};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Me,
    Page,
    Post,
}

impl Op {
    const ALL: [Op; 3] = [Op::Me, Op::Page, Op::Post];

    fn name(self) -> &'static str {
        match self {
            Op::Me => "GET /api/users/me",
            Op::Page => "GET /api/chat/channels/{id}/messages",
            Op::Post => "POST /api/chat/messages",
        }
    }

    /// The operation for a uniform random `draw` in `[0, 1)`: writes with probability
    /// `write_ratio`, the rest split evenly between the two reads.
    pub fn pick(draw: f64, write_ratio: f64) -> Op {
        let read_share = (1.0 - write_ratio) / 2.0;
        if draw < write_ratio {
            Op::Post
        } else if draw < write_ratio + read_share {
            Op::Me
        } else {
            Op::Page
        }
    }
}

#[derive(Clone, Debug, Default)]
struct OpStats {
    latency: Latency,
    errors: u64,
    throttled: u64,
}

impl OpStats {
    fn merge(&mut self, other: &OpStats) {
        self.latency.merge(&other.latency);
        self.errors += other.errors;
        self.throttled += other.throttled;
    }
}

/// What one worker needs; shared by all of them.
struct Load {
    api: Api,
    users: Vec<User>,
    channel_id: Arc<str>,
    page_url: Url,
    write_ratio: f64,
    message_bytes: usize,
    deadline: Instant,
    next_msg_no: AtomicU64,
    live: Live,
}

pub async fn run(ctx: &Ctx, args: &RestArgs) -> Result<Report> {
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(args.users > 0, "--users must be at least 1");
    ensure!((0.0..=1.0).contains(&args.write_ratio), "--write-ratio must be between 0 and 1");
    ensure!((1..=200).contains(&args.page_limit), "--page-limit must be 1..=200 (docs/api.md)");
    let mut report = Report::new("rest");
    report
        .param("url", ctx.api.target().as_str())
        .param("concurrency", args.concurrency)
        .param("users", args.users)
        .param("write_ratio", args.write_ratio)
        .param("page_limit", args.page_limit)
        .param("duration_s", args.duration);

    let insert = if args.with_baseline {
        Some(
            insert_ceiling(ctx, args.concurrency, baseline_duration(seconds(args.duration)), args.message_bytes)
                .await?,
        )
    } else {
        None
    };

    let (users, channel_id) = setup::within(ctx.limits, prepare(ctx, args)).await?;
    let duration = seconds(args.duration);
    let started = Instant::now();
    let load = Arc::new(Load {
        api: ctx.api.clone(),
        page_url: ctx.api.page_url(&channel_id, args.page_limit)?,
        users,
        channel_id,
        write_ratio: args.write_ratio,
        message_bytes: args.message_bytes,
        deadline: started + duration,
        next_msg_no: AtomicU64::new(0),
        live: Live::default(),
    });
    let workers: Vec<_> = (0..args.concurrency).map(|id| tokio::spawn(worker(id, Arc::clone(&load)))).collect();
    let bar = ctx.progress.timer(duration, "rest");
    while Instant::now() < load.deadline {
        let elapsed = started.elapsed();
        let requests = Live::get(&load.live.requests);
        bar.set_position(elapsed.as_millis() as u64 / 100);
        bar.set_message(format!(
            "requests {requests} ({:.0}/s) · errors {} · 429s {}",
            per_second(requests, elapsed),
            Live::get(&load.live.send_errors),
            Live::get(&load.live.throttled)
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut totals: [OpStats; 3] = Default::default();
    for worker in workers {
        if let Ok(stats) = worker.await {
            for (total, op) in totals.iter_mut().zip(&stats) {
                total.merge(op);
            }
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let all: u64 = totals.iter().map(|s| s.latency.count()).sum();
    report.figure("requests/s (all operations)", per_second(all, elapsed), "1/s");
    for (op, stats) in Op::ALL.iter().zip(&totals) {
        report.figure(format!("{} req/s", op.name()), per_second(stats.latency.count(), elapsed), "1/s");
    }
    for (op, stats) in Op::ALL.iter().zip(&totals) {
        report.latency(op.name(), &stats.latency);
    }
    let errors: u64 = totals.iter().map(|s| s.errors).sum();
    let throttled: u64 = totals.iter().map(|s| s.throttled).sum();
    report.check("errors", errors, false).check("throttled (429)", throttled, false);
    if throttled > 0 {
        report.note(
            "the server rate-limited requests (429); run it with RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 to measure it unthrottled",
        );
    }
    if let Some(error) = load.live.first_error() {
        report.note(format!("first error: {error}"));
    }
    if let Some(insert) = insert {
        let writes = per_second(totals[2].latency.count(), elapsed);
        compare_writes(&mut report, writes, &insert);
        if args.write_ratio < 1.0 {
            report.note(
                "writes are only part of the mix; --write-ratio 1 compares a pure write load with the INSERT ceiling",
            );
        }
    }
    Ok(report)
}

/// Users, a channel they all belong to, and a page of history to read.
async fn prepare(ctx: &Ctx, args: &RestArgs) -> Result<(Vec<User>, Arc<str>)> {
    let api = &ctx.api;
    let users = setup::register_users(api, &ctx.prefix, "r", args.users, ctx.limits, ctx.progress).await?;
    let channel_ids = setup::create_channels(api, &ctx.prefix, "rest", &[&users[0]], ctx.limits, ctx.progress).await?;
    let channel_id = Arc::clone(&channel_ids[0]);
    let joins: Vec<_> = users[1..].iter().map(|user| (user, Arc::clone(&channel_id))).collect();
    setup::join_channels(api, &joins, ctx.limits, ctx.progress).await?;
    let bar = ctx.progress.counter(u64::from(args.page_limit), "seeding history");
    for n in 0..args.page_limit {
        let text = format!("history message {n}");
        api.post_for_setup(&users[0].token, &channel_id, &text).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((users, channel_id))
}

async fn worker(id: usize, load: Arc<Load>) -> [OpStats; 3] {
    let mut stats: [OpStats; 3] = Default::default();
    let user = &load.users[id % load.users.len()];
    while Instant::now() < load.deadline {
        let op = Op::pick(rand::random(), load.write_ratio);
        let started = Instant::now();
        let reply = match op {
            Op::Me => load.api.get(&user.token, load.api.me_url()).await,
            Op::Page => load.api.get(&user.token, &load.page_url).await,
            Op::Post => {
                let stamp = Stamp {
                    sent_at_nanos: content::now_unix_nanos(),
                    msg_no: load.next_msg_no.fetch_add(1, Ordering::Relaxed),
                };
                let text = content::encode(stamp, load.message_bytes);
                load.api.post_message(&user.token, &load.channel_id, &text).await
            }
        };
        let slot = &mut stats[op as usize];
        match reply {
            Reply::Ok(_) => {
                slot.latency.record(started.elapsed());
                Live::bump(&load.live.requests);
            }
            Reply::Throttled(wait) => {
                slot.throttled += 1;
                Live::bump(&load.live.throttled);
                let remaining = load.deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(wait.min(remaining)).await;
            }
            Reply::Failed(error) => {
                slot.errors += 1;
                Live::bump(&load.live.send_errors);
                load.live.record_error(|| format!("{}: {error}", op.name()));
                // A failing server should not turn the worker into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_write_ratio() {
        assert_eq!(Op::pick(0.1, 0.2), Op::Post);
        assert_eq!(Op::pick(0.3, 0.2), Op::Me);
        assert_eq!(Op::pick(0.7, 0.2), Op::Page);
        assert_eq!(Op::pick(0.99, 1.0), Op::Post);
        assert_eq!(Op::pick(0.0, 0.0), Op::Me);
        assert_eq!(Op::pick(0.5, 0.0), Op::Page);
    }

    #[test]
    fn op_indices_match_their_slots() {
        for (index, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, index);
        }
    }
}
