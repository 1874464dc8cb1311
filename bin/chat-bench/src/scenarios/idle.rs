//! `idle`: N WebSocket connections that only hold on (answering the server's pings), to
//! measure what an idle connection costs the server: `VmRSS` of `--server-pid` before and
//! after, per connection.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use chat_client::connect::{self, IDLE_READ_BUFFER};
use chat_client::frame::wait_for_ready;
use futures_util::StreamExt as _;
use reqwest::Url;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Ctx, seconds};
use crate::cli::IdleArgs;
use crate::live::Live;
use crate::machine::rss_kib;
use crate::report::Report;
use crate::setup;
use crate::stats::SharedLatency;
use crate::target::ws_options;

/// Connections per local source address: well inside Linux's default ephemeral port range
/// (32768–60999), which a bound source address cannot exceed towards one server port.
const CONNECTIONS_PER_SOURCE: usize = 20_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Source addresses for `connections`: none (let the kernel choose) when one address is
/// enough or the server is on IPv6, else 127.0.0.1, 127.0.0.2, ...
pub fn source_addresses(connections: usize, requested: u8, ipv6: bool) -> Vec<IpAddr> {
    let count = if requested > 0 { usize::from(requested) } else { connections.div_ceil(CONNECTIONS_PER_SOURCE) };
    if ipv6 || count <= 1 {
        return Vec::new();
    }
    (1..=count.min(254)).map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8))).collect()
}

struct Hold {
    live: Live,
    connect_latency: SharedLatency,
    permits: Semaphore,
    stop: CancellationToken,
}

pub async fn run(ctx: &Ctx, args: &IdleArgs) -> Result<Report> {
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(args.users > 0, "--users must be at least 1");
    let mut report = Report::new("idle");
    report
        .param("url", ctx.api.target().as_str())
        .param("connections", args.connections)
        .param("users", args.users)
        .param("duration_s", args.duration);
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    if soft < args.connections as u64 + 64 {
        report.note(format!(
            "this process may open only {soft} files (ulimit -n); raise the hard limit for {} connections",
            args.connections
        ));
    }

    let users = setup::within(
        ctx.limits,
        setup::register_users(&ctx.api, &ctx.prefix, "i", args.users.min(args.connections), ctx.limits, ctx.progress),
    )
    .await?;
    let urls: Vec<Url> = users.iter().map(|user| ctx.api.target().ws(&user.token)).collect::<Result<_>>()?;
    let sources = source_addresses(args.connections, args.source_ips, ctx.api.target().is_ipv6_literal());
    let pid = args.server_pid.map(|pid| pid.to_string());
    let server_before = pid.as_deref().map(rss_kib).transpose()?;
    let client_before = rss_kib("self").ok();

    let hold = Arc::new(Hold {
        live: Live::default(),
        connect_latency: SharedLatency::new(16),
        permits: Semaphore::new(args.connect_concurrency.max(1)),
        stop: CancellationToken::new(),
    });
    let tasks: Vec<_> = (0..args.connections)
        .map(|index| {
            let url = urls[index % urls.len()].clone();
            let source = (!sources.is_empty()).then(|| sources[index % sources.len()]);
            tokio::spawn(hold_one(index, url, source, Arc::clone(&hold)))
        })
        .collect();

    let bar = ctx.progress.counter(args.connections as u64, "idle: connecting");
    let connect_started = Instant::now();
    let connect_limit = seconds(args.connect_timeout);
    loop {
        let connected = Live::get(&hold.live.connected);
        let failed = Live::get(&hold.live.send_errors);
        bar.set_position(connected);
        if connected + failed >= args.connections as u64 || connect_started.elapsed() > connect_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = connect_started.elapsed();
    bar.finish_and_clear();
    let connected = Live::get(&hold.live.connected);
    let failed = Live::get(&hold.live.send_errors);

    // Let the server settle (buffers shrink, allocator returns pages) before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_connected = pid.as_deref().map(rss_kib).transpose()?;
    let client_connected = rss_kib("self").ok();

    let duration = seconds(args.duration);
    let bar = ctx.progress.timer(duration, "idle");
    let hold_started = Instant::now();
    while hold_started.elapsed() < duration {
        bar.set_position(hold_started.elapsed().as_millis() as u64 / 100);
        bar.set_message(format!("open {}", connected.saturating_sub(Live::get(&hold.live.disconnects))));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    let server_after = pid.as_deref().map(rss_kib).transpose()?;
    let dropped = Live::get(&hold.live.disconnects);
    hold.stop.cancel();
    let closing = futures_util::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(30), closing).await.is_err() {
        report.note("some connections did not close within 30 s");
    }

    report
        .figure("connections opened", connected as f64, "")
        .figure("connections failed", failed as f64, "")
        .figure("connections still open after the hold", connected.saturating_sub(dropped) as f64, "")
        .figure("time to open all", connect_time.as_secs_f64(), "s")
        .latency("connect → ready", &hold.connect_latency.merged())
        .check("connections closed by the server while idle", dropped, false);
    if let (Some(before), Some(with)) = (server_before, server_connected) {
        report.figure("server VmRSS before", before as f64, "KiB").figure(
            "server VmRSS with connections open",
            with as f64,
            "KiB",
        );
        if let Some(after) = server_after {
            report.figure("server VmRSS at the end of the hold", after as f64, "KiB");
        }
        if connected > 0 {
            report.figure("server RSS per connection", with.saturating_sub(before) as f64 / connected as f64, "KiB");
        }
    } else {
        report.note("pass --server-pid <pid of the server> to measure its RSS per connection");
    }
    if let (Some(before), Some(with)) = (client_before, client_connected)
        && connected > 0
    {
        report.figure(
            "chat-bench RSS per connection (client side)",
            with.saturating_sub(before) as f64 / connected as f64,
            "KiB",
        );
    }
    if !sources.is_empty() {
        report.param("source_ips", sources.len());
    }
    if failed > 0 {
        if let Some(error) = hold.live.first_error() {
            report.note(format!("first connection error: {error}"));
        }
        report.note("many failures with 'Too many open files' mean the server's or chat-bench's ulimit -n is too low");
    }
    Ok(report)
}

/// Opens one connection, waits for `ready`, then reads (answering pings) until `stop`.
async fn hold_one(index: usize, url: Url, source: Option<IpAddr>, hold: Arc<Hold>) {
    let opened = async {
        let _permit = hold.permits.acquire().await?;
        let started = Instant::now();
        let ws = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut ws = connect::connect(&url, ws_options(source, IDLE_READ_BUFFER)).await?;
            wait_for_ready(&mut ws, "").await?;
            anyhow::Ok(ws)
        })
        .await
        .context("no ready frame within 30 s")??;
        hold.connect_latency.record_us(index, u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        anyhow::Ok(ws)
    };
    let mut ws = match tokio::select! {
        () = hold.stop.cancelled() => return,
        opened = opened => opened,
    } {
        Ok(ws) => ws,
        Err(error) => {
            Live::bump(&hold.live.send_errors);
            hold.live.record_error(|| format!("{error:#}"));
            return;
        }
    };
    Live::bump(&hold.live.connected);
    loop {
        tokio::select! {
            () = hold.stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return;
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    Live::bump(&hold.live.disconnects);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_address_is_enough_for_ten_thousand() {
        assert!(source_addresses(10_000, 0, false).is_empty());
    }

    #[test]
    fn more_connections_are_spread_over_loopback_addresses() {
        let sources = source_addresses(50_000, 0, false);
        assert_eq!(sources, ["127.0.0.1", "127.0.0.2", "127.0.0.3"].map(|s| s.parse::<IpAddr>().unwrap()).to_vec());
        assert_eq!(source_addresses(10, 4, false).len(), 4);
    }

    #[test]
    fn ipv6_servers_get_no_extra_source_addresses() {
        assert!(source_addresses(50_000, 3, true).is_empty());
    }
}
