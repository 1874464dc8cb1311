//! chat-bench: a load generator for any server speaking the API of docs/api.md. See `--help`.

mod api;
mod baseline;
mod cli;
mod content;
mod delivery;
mod ledger;
mod live;
mod machine;
#[cfg(test)]
mod mock_server;
mod openloop;
mod plot;
mod progress;
mod receiver;
mod report;
mod scenarios;
mod senders;
mod setup;
mod stats;
mod target;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser as _;

use crate::cli::{Cli, Scenario};
use crate::machine::Machine;
use crate::progress::Progress;
use crate::scenarios::Ctx;
use crate::setup::SetupLimits;
use crate::target::Target;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-bench: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli, &args));
    // Connections still closing must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("chat-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Idle connections need one descriptor each: lift the soft limit to the hard one.
fn raise_open_files_limit() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("chat-bench: could not raise the open files limit: {error}");
    }
}

/// Runs the scenario and prints its report; true when its must-be-zero checks passed.
async fn run(cli: Cli, args: &[String]) -> Result<bool> {
    let common = &cli.common;
    let target = Target::parse(&common.url)?;
    let ctx = Ctx {
        api: api::Api::new(target)?,
        progress: Progress::new(!common.quiet && std::io::stderr().is_terminal()),
        limits: SetupLimits {
            concurrency: common.setup_concurrency.max(1),
            timeout: Duration::from_secs(common.setup_timeout),
        },
        database_url: common.database_url.clone(),
        prefix: setup::run_prefix(),
    };
    let mut report = match &cli.scenario {
        Scenario::Fanout(a) => scenarios::fanout::run(&ctx, a).await?,
        Scenario::Rooms(a) => scenarios::rooms::run(&ctx, a).await?,
        Scenario::Rest(a) => scenarios::rest::run(&ctx, a).await?,
        Scenario::Idle(a) => scenarios::idle::run(&ctx, a).await?,
        Scenario::Reconnect(a) => scenarios::reconnect::run(&ctx, a).await?,
        Scenario::History(a) => scenarios::history::run(&ctx, a).await?,
        Scenario::Abuse(a) => scenarios::abuse::run(&ctx, a).await?,
        Scenario::Baseline(a) => scenarios::baseline::run(&ctx, a).await?,
    };
    let throttled = ctx.api.setup_throttled();
    if throttled > 0 {
        report.note(format!(
            "setup was rate-limited {throttled} times (429); start the server with RATE_LIMIT_AUTH_PER_MINUTE=0 RATE_LIMIT_WRITES_PER_SECOND=0"
        ));
    }
    report.machine = Some(Machine::collect(args));

    if common.json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding the report as JSON")?);
    } else {
        print!("{}", report.render_text());
    }
    if let Some(path) = &common.plot {
        let title = format!("chat-bench {}: latency distribution", cli.scenario.name());
        plot::write_svg(path, &title, &report.distributions).with_context(|| format!("--plot {}", path.display()))?;
        if !common.json {
            println!("plot written to {}", path.display());
        }
    }
    if let Some(path) = &common.markdown_out {
        report::append_markdown(path, &report)?;
        if !common.json {
            println!("section appended to {}", path.display());
        }
    }
    Ok(report.passed())
}
