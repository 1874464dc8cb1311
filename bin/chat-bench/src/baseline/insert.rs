//! The persisted-messages ceiling: `INSERT` of one row per statement, from `concurrency`
//! connections at once, into a scratch table, for a fixed time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use futures_util::future::try_join_all;
use tokio::time::Instant;
use uuid::Uuid;

use crate::content::{self, Stamp};
use crate::progress::Progress;
use crate::stats::{Latency, per_second};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_baseline (\
    id uuid PRIMARY KEY, channel_id uuid, body text, created_at timestamptz DEFAULT now())";
const INSERT: &str = "INSERT INTO bench_baseline (id, channel_id, body) VALUES ($1, $2, $3)";
const CLEAN_UP: &str = "DELETE FROM bench_baseline WHERE channel_id = $1";

#[derive(Debug)]
pub struct InsertOutcome {
    pub concurrency: usize,
    pub inserts: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub latency: Latency,
}

pub async fn run(
    database_url: &str,
    concurrency: usize,
    duration: Duration,
    message_bytes: usize,
    progress: Progress,
) -> Result<InsertOutcome> {
    let concurrency = concurrency.max(1);
    let mut admin = connect(database_url).await?;
    diesel::sql_query(CREATE_TABLE).execute(&mut admin).await.context("creating bench_baseline")?;
    // All rows of this run share a channel id, so that they can be removed afterwards.
    let run_channel = Uuid::new_v4();
    let connections = try_join_all((0..concurrency).map(|_| connect(database_url))).await?;

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = connections
        .into_iter()
        .map(|conn| tokio::spawn(worker(conn, run_channel, deadline, message_bytes, Arc::clone(&done))))
        .collect();
    let bar = progress.timer(duration, "INSERT");
    while Instant::now() < deadline {
        let elapsed = started.elapsed();
        bar.set_position(elapsed.as_millis() as u64 / 100);
        let inserts = AtomicU64::load(&done, Ordering::Relaxed);
        bar.set_message(format!("inserts {inserts} ({:.0}/s)", per_second(inserts, elapsed)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latency = Latency::new();
    let mut errors = 0;
    for worker in workers {
        let (worker_latency, worker_errors) = worker.await.context("an INSERT worker failed")?;
        latency.merge(&worker_latency);
        errors += worker_errors;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    diesel::sql_query(CLEAN_UP)
        .bind::<SqlUuid, _>(run_channel)
        .execute(&mut admin)
        .await
        .context("removing this run's rows from bench_baseline")?;
    let inserts = latency.count();
    Ok(InsertOutcome { concurrency, inserts, errors, per_sec: per_second(inserts, elapsed), latency })
}

async fn connect(database_url: &str) -> Result<AsyncPgConnection> {
    AsyncPgConnection::establish(database_url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {database_url} (--database-url)"))
}

async fn worker(
    mut conn: AsyncPgConnection,
    channel: Uuid,
    deadline: Instant,
    message_bytes: usize,
    done: Arc<AtomicU64>,
) -> (Latency, u64) {
    let mut latency = Latency::new();
    let mut errors = 0;
    let mut msg_no = 0;
    while Instant::now() < deadline {
        let body = content::encode(Stamp { sent_at_nanos: content::now_unix_nanos(), msg_no }, message_bytes);
        msg_no += 1;
        let started = Instant::now();
        let inserted = diesel::sql_query(INSERT)
            .bind::<SqlUuid, _>(Uuid::now_v7())
            .bind::<SqlUuid, _>(channel)
            .bind::<Text, _>(&body)
            .execute(&mut conn)
            .await;
        match inserted {
            Ok(_) => {
                latency.record(started.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                errors += 1;
                // A failing database should not turn the loop into a busy spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (latency, errors)
}
