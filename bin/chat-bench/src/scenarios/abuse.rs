//! `abuse`: does one abusive account hurt everybody else (issue 18)?
//!
//! `--users` normal users in `--channels` channels browse: history pages and posts, open
//! loop at `--rate` requests a second (latency from each request's scheduled time, so a
//! stalled server cannot hide). They run twice for `--duration`, in the same run: first
//! alone, then while an attacker works — one WebSocket resuming its own channel of
//! `--attacker-messages` events in a loop (1,000 events back, the most one resume replays), and `--guessers` concurrent logins
//! with wrong passwords for one account. The report gives the normal users' percentiles in
//! both phases and the ratio of their p99s (the target: at most 2×).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use chat_client::connect::{self, ACTIVE_READ_BUFFER};
use chat_client::frame;
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::Url;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{Ctx, check_rate, seconds};
use crate::api::{Api, Reply};
use crate::cli::AbuseArgs;
use crate::content::{self, Stamp};
use crate::openloop::{self, OpenLoopOutcome, Schedule};
use crate::report::Report;
use crate::setup::{self, User};
use crate::target::ws_options;

/// What the normal users need: who they are and where they read and post.
struct Browsers {
    api: Api,
    users: Vec<User>,
    channels: Vec<Arc<str>>,
    pages: Vec<Url>,
    write_ratio: f64,
}

impl Browsers {
    /// Request `i`: user `i mod users` reads a page of their channel or posts into it.
    fn request(self: &Arc<Self>, i: u64) -> impl Future<Output = Reply> + Send + 'static {
        let this = Arc::clone(self);
        async move {
            let user = i as usize % this.users.len();
            let channel = user % this.channels.len();
            let token = &this.users[user].token;
            // A fixed pseudo-random draw per request, so both phases offer the same mix.
            let draw = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            if draw < this.write_ratio {
                let text = content::encode(Stamp { sent_at_nanos: content::now_unix_nanos(), msg_no: i }, 100);
                this.api.post_message(token, &this.channels[channel], &text).await
            } else {
                this.api.get(token, &this.pages[channel]).await
            }
        }
    }
}

/// What the attacker managed.
#[derive(Debug, Default)]
struct Attack {
    resumes: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    refused_resumes: AtomicU64,
    reconnects: AtomicU64,
    guesses: AtomicU64,
    guesses_throttled: AtomicU64,
    stop: AtomicBool,
}

pub async fn run(ctx: &Ctx, args: &AbuseArgs) -> Result<Report> {
    ensure!(args.users > 0 && args.channels > 0, "--users and --channels must be at least 1");
    ensure!(args.channels <= args.users, "--channels must not exceed --users (each channel has an owner)");
    ensure!((0.0..=1.0).contains(&args.write_ratio), "--write-ratio must be between 0 and 1");
    check_rate(args.rate)?;
    let mut report = Report::new("abuse");
    report
        .param("url", ctx.api.target().as_str())
        .param("users", args.users)
        .param("channels", args.channels)
        .param("rate", args.rate)
        .param("write_ratio", args.write_ratio)
        .param("attacker_messages", args.attacker_messages)
        .param("guessers", args.guessers)
        .param("duration_s", args.duration);

    let (browsers, attacker, attacker_channel, victim) = setup::within(ctx.limits, prepare(ctx, args)).await?;
    let browsers = Arc::new(browsers);
    let schedule = Schedule {
        rate: args.rate,
        duration: seconds(args.duration),
        max_in_flight: args.in_flight,
        drain: Duration::from_secs(10),
    };

    let bar = ctx.progress.timer(schedule.duration, "normal users alone");
    let alone = openloop::run(schedule, |i| browsers.request(i)).await;
    bar.finish_and_clear();

    let attack = Arc::new(Attack::default());
    let mut attackers = vec![tokio::spawn(resume_loop(
        ctx.api.target().ws(&attacker.token)?,
        Arc::clone(&attacker_channel),
        Arc::clone(&attack),
    ))];
    for _ in 0..args.guessers {
        attackers.push(tokio::spawn(guess_loop(ctx.api.clone(), victim.username.clone(), Arc::clone(&attack))));
    }
    // Let the attack reach full speed before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bar = ctx.progress.timer(schedule.duration, "normal users under attack");
    let attack_started = Instant::now();
    let under_attack = openloop::run(schedule, |i| browsers.request(i)).await;
    let attack_time = attack_started.elapsed();
    bar.finish_and_clear();
    attack.stop.store(true, Ordering::Relaxed);
    for task in attackers {
        task.abort();
    }

    phase(&mut report, "alone", &alone, &schedule);
    phase(&mut report, "under attack", &under_attack, &schedule);
    let (p99_alone, p99_attacked) = (alone.latency.summary().p99_ms, under_attack.latency.summary().p99_ms);
    let ratio = if p99_alone > 0.0 { p99_attacked / p99_alone } else { 0.0 };
    report.figure("normal users' p99 under attack / alone", ratio, "×");
    let per_s = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64 / attack_time.as_secs_f64();
    report
        .figure("attacker: resumes/s", per_s(&attack.resumes), "1/s")
        .figure("attacker: replayed frames/s", per_s(&attack.frames), "1/s")
        .figure("attacker: replayed MiB/s", per_s(&attack.bytes) / (1024.0 * 1024.0), "MiB/s")
        .figure("attacker: resumes refused (rate_limited)/s", per_s(&attack.refused_resumes), "1/s")
        .figure("attacker: reconnects", attack.reconnects.load(Ordering::Relaxed) as f64, "")
        .figure("attacker: password guesses/s", per_s(&attack.guesses), "1/s")
        .figure("attacker: guesses throttled (429)/s", per_s(&attack.guesses_throttled), "1/s");
    report.note(format!(
        "normal users' p99: {p99_alone:.1} ms alone, {p99_attacked:.1} ms under attack ({ratio:.2}×; target ≤ 2×)"
    ));
    Ok(report)
}

fn phase(report: &mut Report, name: &str, outcome: &OpenLoopOutcome, schedule: &Schedule) {
    report
        .figure(format!("{name}: offered requests/s"), outcome.offered_rate(schedule), "1/s")
        .figure(format!("{name}: achieved requests/s"), outcome.achieved_rate(), "1/s")
        .figure(format!("{name}: errors"), outcome.errors as f64, "")
        .figure(format!("{name}: throttled (429)"), outcome.throttled as f64, "")
        .figure(format!("{name}: unfinished"), outcome.unfinished as f64, "")
        .latency(format!("normal users {name} (from schedule)"), &outcome.latency);
    if let Some(error) = &outcome.first_error {
        report.note(format!("{name}: first error: {error}"));
    }
}

/// The normal users with their channels (each seeded with a page of history), the
/// attacker with a big channel of their own, and the account whose password is guessed.
async fn prepare(ctx: &Ctx, args: &AbuseArgs) -> Result<(Browsers, User, Arc<str>, User)> {
    let api = &ctx.api;
    let users = setup::register_users(api, &ctx.prefix, "n", args.users, ctx.limits, ctx.progress).await?;
    let owners: Vec<&User> = users[..args.channels].iter().collect();
    let channels = setup::create_channels(api, &ctx.prefix, "browse", &owners, ctx.limits, ctx.progress).await?;
    let joins: Vec<_> = users
        .iter()
        .enumerate()
        .skip(args.channels)
        .map(|(i, u)| (u, Arc::clone(&channels[i % args.channels])))
        .collect();
    setup::join_channels(api, &joins, ctx.limits, ctx.progress).await?;
    for (owner, channel) in owners.iter().zip(&channels) {
        setup::seed_messages(api, owner, channel, 50, ctx.limits, ctx.progress).await?;
    }
    let pages = channels.iter().map(|c| api.page_url(c, 50)).collect::<Result<Vec<_>>>()?;

    let mut attackers = setup::register_users(api, &ctx.prefix, "a", 2, ctx.limits, ctx.progress).await?;
    let victim = attackers.pop().ok_or_else(|| anyhow::anyhow!("no victim registered"))?;
    let attacker = attackers.pop().ok_or_else(|| anyhow::anyhow!("no attacker registered"))?;
    let big = setup::create_channels(api, &ctx.prefix, "big", &[&attacker], ctx.limits, ctx.progress).await?;
    let big = Arc::clone(&big[0]);
    setup::seed_messages(api, &attacker, &big, args.attacker_messages, ctx.limits, ctx.progress).await?;
    let browsers = Browsers { api: api.clone(), users, channels, pages, write_ratio: args.write_ratio };
    Ok((browsers, attacker, big, victim))
}

/// The most a resume replays before the server answers `resync_required` instead.
const REPLAY_LIMIT: u64 = 1000;

/// Resumes the channel from [`REPLAY_LIMIT`] events before its end (the most one resume
/// replays) and reads the replay, again and again; reconnects when the server closes the
/// socket (as it does after 20 refused resumes in a row).
async fn resume_loop(url: Url, channel: Arc<str>, attack: Arc<Attack>) {
    while !attack.stop.load(Ordering::Relaxed) {
        let Ok(mut socket) = connect::connect(&url, ws_options(None, ACTIVE_READ_BUFFER)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        attack.reconnects.fetch_add(1, Ordering::Relaxed);
        let Ok(Ok(last_seq)) =
            tokio::time::timeout(Duration::from_secs(5), frame::wait_for_ready(&mut socket, &channel)).await
        else {
            continue;
        };
        let resume = frame::resume_frame(&channel, last_seq.unwrap_or(0).saturating_sub(REPLAY_LIMIT));
        'session: loop {
            if socket.send(Message::text(resume.clone())).await.is_err() {
                break;
            }
            attack.resumes.fetch_add(1, Ordering::Relaxed);
            // Read until the replay went quiet (or was refused), then resume again.
            loop {
                match tokio::time::timeout(Duration::from_millis(50), socket.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        attack.frames.fetch_add(1, Ordering::Relaxed);
                        attack.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                        if text.contains("\"rate_limited\"") {
                            attack.refused_resumes.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(_)) | None) => break 'session,
                    Err(_) => break,
                }
            }
        }
    }
}

/// Logs in as `victim` with wrong passwords, one after another.
async fn guess_loop(api: Api, victim: String, attack: Arc<Attack>) {
    let mut n = 0u64;
    while !attack.stop.load(Ordering::Relaxed) {
        n += 1;
        let reply = api.login(&victim, &format!("wrong-guess-{n}")).await;
        attack.guesses.fetch_add(1, Ordering::Relaxed);
        if matches!(reply, Reply::Throttled(_)) {
            attack.guesses_throttled.fetch_add(1, Ordering::Relaxed);
        }
    }
}
