//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Load generator for a chat server speaking the API of docs/api.md (HTTP + WebSocket).";

const LONG_ABOUT: &str = "\
Load generator for a chat server speaking the API of docs/api.md (HTTP + WebSocket).

chat-bench creates its own users and channels (names start with a random run prefix) and
drives the server at --url, which must be on this machine (127.0.0.0/8, localhost or ::1).
Every scenario is bounded in time and stops by itself.

Start the server without rate limits and with cheap password hashing, otherwise setup and
sends are throttled (chat-bench waits out 429s after Retry-After, and reports them):

    RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 BCRYPT_COST=4 \\
        ./target/release/chat-server

The human summary goes to stdout (or JSON with --json); progress bars go to stderr.
The exit status is 2 when a must-be-zero check (lost, duplicated, ...) is not zero.";

#[derive(Debug, Parser)]
#[command(name = "chat-bench", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Base URL of the server under test (loopback only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// PostgreSQL for the bare INSERT baseline (loopback or Unix socket only).
    #[arg(long, global = true, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub database_url: String,
    /// Print the report as JSON on stdout instead of the human summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write the latency distributions as an SVG plot.
    #[arg(long, global = true, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Append a Markdown section (command line, machine, date, commit, figures) to this file.
    #[arg(long, global = true, value_name = "FILE.md")]
    pub markdown_out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Longest time setup (users, channels) may take, in seconds.
    #[arg(long, global = true, default_value_t = 600)]
    pub setup_timeout: u64,
    /// Concurrent requests while creating users and channels.
    #[arg(long, global = true, default_value_t = 16)]
    pub setup_concurrency: usize,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// M members on WebSocket in one channel, S senders posting over REST at a total rate R.
    Fanout(FanoutArgs),
    /// Many small channels (e.g. 2,000 users in 200 channels of 10), everyone posting now and then.
    Rooms(RoomsArgs),
    /// Authenticated reads (GET /api/users/me, a message page) and writes (POST
    /// /api/chat/messages) at fixed concurrency.
    Rest(RestArgs),
    /// N idle WebSocket connections; the server's RSS per connection with --server-pid.
    Idle(IdleArgs),
    /// Clients drop and resume (with their last seq) while senders post; events lost must be 0.
    Reconnect(ReconnectArgs),
    /// Readers paging through the history of one channel of --messages messages, closed loop
    /// or open loop (--rate); ceilings: a bare SELECT of the same rows, and GET /healthz.
    History(HistoryArgs),
    /// Normal users browsing (pages and posts, open loop) alone and then while one account
    /// abuses resume and another's password is guessed; their p99 in both phases.
    Abuse(AbuseArgs),
    /// The ceilings of this machine: a bare single-row INSERT loop against PostgreSQL, and a
    /// bare in-process WebSocket broadcast server.
    Baseline(BaselineArgs),
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Members connected by WebSocket to the channel.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Users posting over REST (also members, not connected).
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Messages per second over all senders.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// Longest wait for outstanding deliveries after sending stops, in seconds.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Run the matching baselines first and state the server's figures as fractions of them.
    #[arg(long)]
    pub with_baseline: bool,
    /// Post each message at its scheduled time without waiting for the previous one, and
    /// measure latency from the schedule (otherwise each sender waits for its request).
    #[arg(long)]
    pub open_loop: bool,
}

#[derive(Debug, Args)]
pub struct RoomsArgs {
    /// Users, each connected by WebSocket and member of one channel.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Channels the users are spread over.
    #[arg(long, default_value_t = 200)]
    pub channels: usize,
    /// Messages per second over all users (each post is by a random user in their channel).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Concurrent sending tasks.
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// Longest wait for outstanding deliveries after sending stops, in seconds.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Run the matching baselines first and state the server's figures as fractions of them.
    #[arg(long)]
    pub with_baseline: bool,
    /// Another node of the same deployment (same database, same Redis); repeat for more.
    /// Users' WebSockets are dealt round-robin over --url and these, so most deliveries
    /// cross nodes through Redis; posts go to --url.
    #[arg(long = "node-url", value_name = "URL")]
    pub node_urls: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestArgs {
    /// Requests in flight at any time.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Users the requests are spread over.
    #[arg(long, default_value_t = 16)]
    pub users: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Share of requests that are writes (POST /api/chat/messages); the rest are split evenly
    /// between GET /api/users/me and GET /api/chat/channels/{id}/messages.
    #[arg(long, default_value_t = 0.2)]
    pub write_ratio: f64,
    /// Page size of the message page read.
    #[arg(long, default_value_t = 50)]
    pub page_limit: u32,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Run the INSERT baseline first at the same concurrency.
    #[arg(long)]
    pub with_baseline: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Requests in flight at most (closed loop: workers; open loop: the client's slots).
    #[arg(long, default_value_t = 64)]
    pub readers: usize,
    /// Users the reads are spread over (all members of the channel).
    #[arg(long, default_value_t = 16)]
    pub users: usize,
    /// Messages seeded into the channel.
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Page size (`?limit=`).
    #[arg(long, default_value_t = 50)]
    pub page_limit: u32,
    /// Open loop: pages per second on a fixed schedule, latency from each page's scheduled
    /// time. Without it, a closed loop of --readers workers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Open loop: longest wait for pages still in flight at the end, in seconds.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Measure the ceilings in the same run: a bare SELECT of the same rows (--database-url
    /// must name the server's database) and GET /healthz, at the same concurrency.
    #[arg(long)]
    pub with_baseline: bool,
}

#[derive(Debug, Args)]
pub struct AbuseArgs {
    /// Normal users, spread over --channels channels.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Channels of the normal users (each seeded with 50 messages).
    #[arg(long, default_value_t = 50)]
    pub channels: usize,
    /// Normal users' requests per second (open loop), in each phase.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Share of the normal users' requests that are posts; the rest read a page of history.
    #[arg(long, default_value_t = 0.2)]
    pub write_ratio: f64,
    /// Normal users' requests in flight at most (later ones queue, and that counts).
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Events in the attacker's own channel, which it resumes 1,000 events back in a loop.
    #[arg(long, default_value_t = 2000)]
    pub attacker_messages: usize,
    /// Concurrent wrong-password logins for one account.
    #[arg(long, default_value_t = 8)]
    pub guessers: usize,
    /// Seconds of each phase (alone, then under attack).
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// WebSocket connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Users the connections are spread over (a user may hold many connections).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The server's process id: its VmRSS is read before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Local source addresses 127.0.0.1..127.0.0.N to spread connections over (0: enough
    /// for about 20,000 connections each).
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Longest time for opening all connections, in seconds.
    #[arg(long, default_value_t = 120)]
    pub connect_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ReconnectArgs {
    /// Clients that drop and resume, all in one channel.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Users posting over REST meanwhile.
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// Messages per second over all senders.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Drop/resume cycles over all clients; sending stops when they are done.
    #[arg(long, default_value_t = 1000)]
    pub cycles: u64,
    /// Upper bound on the sending time, in seconds, even if cycles remain.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Shortest time a client stays connected, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub online_min_ms: u64,
    /// Longest time a client stays connected, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub online_max_ms: u64,
    /// Longest time a client stays away before reconnecting, in milliseconds (random from 0).
    #[arg(long, default_value_t = 300)]
    pub offline_max_ms: u64,
    /// Longest wait for outstanding deliveries after sending stops, in seconds.
    #[arg(long, default_value_t = 15)]
    pub drain: u64,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Concurrent connections of the INSERT loop.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// WebSocket clients of the broadcast server.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Broadcast messages per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds for each of the two measurements.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Only the INSERT loop.
    #[arg(long, conflicts_with = "broadcast_only")]
    pub insert_only: bool,
    /// Only the broadcast server.
    #[arg(long)]
    pub broadcast_only: bool,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Rooms(_) => "rooms",
            Scenario::Rest(_) => "rest",
            Scenario::Idle(_) => "idle",
            Scenario::Reconnect(_) => "reconnect",
            Scenario::History(_) => "history",
            Scenario::Abuse(_) => "abuse",
            Scenario::Baseline(_) => "baseline",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_issue() {
        let cli = Cli::try_parse_from(["chat-bench", "fanout"]).unwrap();
        assert_eq!(cli.common.url, "http://127.0.0.1:8000");
        let Scenario::Fanout(args) = cli.scenario else {
            panic!("not fanout");
        };
        assert_eq!((args.members, args.senders), (1000, 4));

        let cli = Cli::try_parse_from(["chat-bench", "rooms", "--json"]).unwrap();
        assert!(cli.common.json);
        let Scenario::Rooms(args) = cli.scenario else {
            panic!("not rooms");
        };
        assert_eq!((args.users, args.channels), (2000, 200));

        let cli = Cli::try_parse_from(["chat-bench", "idle", "--server-pid", "42"]).unwrap();
        let Scenario::Idle(args) = cli.scenario else {
            panic!("not idle");
        };
        assert_eq!((args.connections, args.server_pid), (10_000, Some(42)));
    }

    #[test]
    fn global_options_go_before_or_after_the_scenario() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "--url",
            "http://localhost:9000",
            "rest",
            "--plot",
            "out.svg",
            "--markdown-out",
            "BENCHMARKS.md",
        ])
        .unwrap();
        assert_eq!(cli.common.url, "http://localhost:9000");
        assert_eq!(cli.common.plot, Some(PathBuf::from("out.svg")));
        assert_eq!(cli.common.markdown_out, Some(PathBuf::from("BENCHMARKS.md")));
    }
}
