//! `history`: readers paging through a channel of `--messages` messages
//! (`GET /api/chat/channels/{id}/messages?limit=&before=`), closed loop at `--readers`
//! requests in flight, or open loop at `--rate` pages a second (`openloop`).
//!
//! With `--with-baseline` the same run measures two ceilings at the same concurrency: a bare
//! `SELECT` of the same rows (messages joined with their authors, the same keyset) straight
//! from PostgreSQL (`--database-url` must name the server's database), and `GET /healthz`,
//! the server's HTTP path with no work behind it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Ctx, baseline_duration, seconds};
use crate::api::{Api, Reply};
use crate::cli::HistoryArgs;
use crate::openloop::{self, Schedule};
use crate::report::Report;
use crate::setup::{self, User};
use crate::stats::{Latency, per_second};
use crate::target::check_database_url;

/// One page of the channel: its URL and, for the SQL ceiling, the seq it reads below.
#[derive(Clone, Debug)]
struct PageSpec {
    url: Url,
    below_seq: i64,
}

#[derive(Deserialize)]
struct PageBody {
    items: Vec<Item>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    seq: i64,
}

pub async fn run(ctx: &Ctx, args: &HistoryArgs) -> Result<Report> {
    ensure!(args.readers > 0, "--readers must be at least 1");
    ensure!(args.users > 0, "--users must be at least 1");
    ensure!(args.messages > 0, "--messages must be at least 1");
    ensure!((1..=200).contains(&args.page_limit), "--page-limit must be 1..=200 (docs/api.md)");
    if let Some(rate) = args.rate {
        super::check_rate(rate)?;
    }
    let mut report = Report::new("history");
    report
        .param("url", ctx.api.target().as_str())
        .param("readers", args.readers)
        .param("users", args.users)
        .param("messages", args.messages)
        .param("page_limit", args.page_limit)
        .param("duration_s", args.duration)
        .param("mode", args.rate.map_or_else(|| "closed loop".to_owned(), |r| format!("open loop at {r}/s")));

    let (users, channel_id, pages) = setup::within(ctx.limits, prepare(ctx, args)).await?;
    let users: Arc<[User]> = users.into();
    let pages: Arc<[PageSpec]> = pages.into();
    let duration = seconds(args.duration);
    let request = {
        let (api, users, pages) = (ctx.api.clone(), Arc::clone(&users), Arc::clone(&pages));
        move |i: u64| {
            let (api, users, pages) = (api.clone(), Arc::clone(&users), Arc::clone(&pages));
            async move {
                let user = &users[i as usize % users.len()];
                let page = &pages[i as usize % pages.len()];
                api.get(&user.token, &page.url).await
            }
        }
    };
    let pages_per_s = if let Some(rate) = args.rate {
        let schedule = Schedule { rate, duration, max_in_flight: args.readers, drain: Duration::from_secs(args.drain) };
        let outcome = openloop::run(schedule, request).await;
        report
            .figure("offered pages/s", outcome.offered_rate(&schedule), "1/s")
            .figure("achieved pages/s", outcome.achieved_rate(), "1/s")
            .latency("page, from its scheduled time", &outcome.latency)
            .latency("page, from its send (server time)", &outcome.service)
            .latency("send delay behind schedule", &outcome.send_delay)
            .check("errors", outcome.errors, false)
            .check("throttled (429)", outcome.throttled, false)
            .check("unfinished at the end", outcome.unfinished, false);
        if let Some(error) = &outcome.first_error {
            report.note(format!("first error: {error}"));
        }
        outcome.achieved_rate()
    } else {
        let outcome = closed_loop(args.readers, duration, request).await;
        report
            .figure("pages/s", outcome.per_sec, "1/s")
            .latency("page", &outcome.latency)
            .check("errors", outcome.errors, false)
            .check("throttled (429)", outcome.throttled, false);
        if let Some(error) = &outcome.first_error {
            report.note(format!("first error: {error}"));
        }
        outcome.per_sec
    };

    if args.with_baseline {
        let ceiling_time = baseline_duration(duration);
        check_database_url(&ctx.database_url)?;
        let select = select_ceiling(&ctx.database_url, &channel_id, &pages, args, ceiling_time).await?;
        report
            .figure("baseline: bare SELECT of the same pages/s", select.per_sec, "1/s")
            .latency("baseline: bare SELECT of a page", &select.latency)
            .ceiling(
                format!("pages/s vs bare SELECT of the same rows/s (concurrency {})", args.readers),
                pages_per_s,
                select.per_sec,
                "1/s",
            );
        let healthz = ctx.api.target().http("healthz")?;
        let user = Arc::clone(&users[0].token);
        let api = ctx.api.clone();
        let static_endpoint = closed_loop(args.readers, ceiling_time, move |_| {
            let (api, user, url) = (api.clone(), Arc::clone(&user), healthz.clone());
            async move { api.get(&user, &url).await }
        })
        .await;
        report
            .figure("baseline: GET /healthz/s", static_endpoint.per_sec, "1/s")
            .latency("baseline: GET /healthz", &static_endpoint.latency)
            .ceiling(
                format!("pages/s vs GET /healthz/s (concurrency {})", args.readers),
                pages_per_s,
                static_endpoint.per_sec,
                "1/s",
            );
    }
    Ok(report)
}

/// Users who may read the channel, the channel with `--messages` messages, and every page
/// of it (read once here, so the load reads pages with real cursors).
async fn prepare(ctx: &Ctx, args: &HistoryArgs) -> Result<(Vec<User>, Arc<str>, Vec<PageSpec>)> {
    let api = &ctx.api;
    let users = setup::register_users(api, &ctx.prefix, "h", args.users, ctx.limits, ctx.progress).await?;
    let channel_ids =
        setup::create_channels(api, &ctx.prefix, "history", &[&users[0]], ctx.limits, ctx.progress).await?;
    let channel_id = Arc::clone(&channel_ids[0]);
    let joins: Vec<_> = users[1..].iter().map(|user| (user, Arc::clone(&channel_id))).collect();
    setup::join_channels(api, &joins, ctx.limits, ctx.progress).await?;
    let poster = &users[0];
    setup::seed_messages(api, poster, &channel_id, args.messages, ctx.limits, ctx.progress).await?;
    let pages = walk_pages(api, &poster.token, &channel_id, args.page_limit).await?;
    Ok((users, channel_id, pages))
}

async fn walk_pages(api: &Api, token: &str, channel_id: &str, limit: u32) -> Result<Vec<PageSpec>> {
    let first = api.page_url(channel_id, limit)?;
    let mut pages = vec![PageSpec { url: first.clone(), below_seq: i64::MAX }];
    loop {
        let page = pages.last().map(|p| p.url.clone()).unwrap_or(first.clone());
        let body = match api.get(token, &page).await {
            Reply::Ok(body) => body,
            Reply::Throttled(_) => bail!("reading history during setup was rate limited"),
            Reply::Failed(error) => bail!("reading history during setup: {error}"),
        };
        let body: PageBody = serde_json::from_slice(&body).context("a history page that is not a page")?;
        let (Some(cursor), Some(last)) = (body.next_cursor, body.items.last()) else { break };
        let mut url = first.clone();
        url.query_pairs_mut().append_pair("before", &cursor);
        pages.push(PageSpec { url, below_seq: last.seq });
    }
    Ok(pages)
}

#[derive(Debug, Default)]
struct ClosedOutcome {
    per_sec: f64,
    latency: Latency,
    errors: u64,
    throttled: u64,
    first_error: Option<String>,
}

/// `concurrency` workers, each sending its next request when the last is answered.
async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, request: F) -> ClosedOutcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let request = Arc::clone(&request);
            tokio::spawn(async move {
                let mut out = ClosedOutcome::default();
                let mut i = worker as u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match request(i).await {
                        Reply::Ok(_) => out.latency.record(sent.elapsed()),
                        Reply::Throttled(wait) => {
                            out.throttled += 1;
                            tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
                        }
                        Reply::Failed(error) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(error);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    i += concurrency as u64;
                }
                out
            })
        })
        .collect();
    let mut total = ClosedOutcome::default();
    for worker in workers {
        if let Ok(out) = worker.await {
            total.latency.merge(&out.latency);
            total.errors += out.errors;
            total.throttled += out.throttled;
            total.first_error = total.first_error.or(out.first_error);
        }
    }
    total.per_sec = per_second(total.latency.count(), started.elapsed());
    total
}

/// The same pages read straight from PostgreSQL: messages with their authors, the same
/// keyset and limit, from `--readers` connections at once.
const SELECT_PAGE: &str = "SELECT m.id, m.content, m.seq, m.created_at, u.username, u.display_name \
     FROM messages m JOIN users u ON u.id = m.user_id \
     WHERE m.channel_id = $1 AND m.parent_id IS NULL AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3";

#[derive(diesel::QueryableByName)]
struct Seq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

async fn select_ceiling(
    database_url: &str,
    channel_id: &str,
    pages: &Arc<[PageSpec]>,
    args: &HistoryArgs,
    duration: Duration,
) -> Result<ClosedOutcome> {
    let channel = Uuid::parse_str(channel_id).context("the channel id is not a UUID")?;
    let mut probe = connect(database_url).await?;
    let found: Vec<Seq> = diesel::sql_query(SELECT_PAGE.replace("m.id, m.content, m.seq", "m.seq"))
        .bind::<SqlUuid, _>(channel)
        .bind::<BigInt, _>(i64::MAX)
        .bind::<BigInt, _>(1)
        .load(&mut probe)
        .await
        .context("the SELECT ceiling")?;
    ensure!(
        found.iter().any(|s| s.seq > 0),
        "the SELECT ceiling found no messages of the channel: --database-url must name the server's database"
    );
    let limit = i64::from(args.page_limit) + 1;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..args.readers {
        let mut conn = connect(database_url).await?;
        let pages = Arc::clone(pages);
        workers.push(tokio::spawn(async move {
            let mut out = ClosedOutcome::default();
            let mut i = worker;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let rows = diesel::sql_query(SELECT_PAGE)
                    .bind::<SqlUuid, _>(channel)
                    .bind::<BigInt, _>(pages[i % pages.len()].below_seq)
                    .bind::<BigInt, _>(limit)
                    .load::<Row>(&mut conn)
                    .await;
                match rows {
                    Ok(_) => out.latency.record(sent.elapsed()),
                    Err(error) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(error.to_string());
                    }
                }
                i += 1;
            }
            out
        }));
    }
    let mut total = ClosedOutcome::default();
    for worker in workers {
        let out = worker.await.context("a SELECT worker failed")?;
        total.latency.merge(&out.latency);
        total.errors += out.errors;
    }
    total.per_sec = per_second(total.latency.count(), started.elapsed());
    Ok(total)
}

/// A row as the server would decode it; the ceiling decodes every row and drops it.
#[derive(diesel::QueryableByName)]
#[allow(dead_code)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    content: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: time::OffsetDateTime,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    display_name: String,
}

async fn connect(database_url: &str) -> Result<AsyncPgConnection> {
    AsyncPgConnection::establish(database_url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {database_url} (--database-url)"))
}
