//! The connection pool and the embedded migrations.

use std::sync::Arc;
use std::time::Duration;

use diesel::Connection as _;
use diesel::ConnectionError;
use diesel::connection::SimpleConnection as _;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Hook, HookError, Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncPgConnection, RunQueryDsl as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt as _;

use crate::error::{StoreError, StoreResult};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// An arbitrary but fixed key: every server that migrates this database takes the same
/// advisory lock, so two nodes starting together apply each migration exactly once.
const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_6d69_6772; // "chatmigr"

/// A pooled connection, dereferencing to `AsyncPgConnection`.
pub type PooledConnection = Object<AsyncPgConnection>;

/// A cheap-to-clone handle to the connection pool.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
    /// Held, not used: the connections' tasks run until the last handle is dropped.
    _io: Arc<IoRuntime>,
}

/// The thread that drives every pooled connection's socket.
///
/// tokio-postgres reads and writes a connection's socket in a task of its own, which
/// diesel-async spawns on whatever runtime opens the connection. Under actix that is the
/// opening worker's single-threaded runtime, for the life of the connection: every answer
/// PostgreSQL sends then waits until that worker gets round to it, behind whatever it is
/// busy with — writing one event to hundreds of sockets, say — however idle the thread is
/// that asked. Opening connections on a runtime of their own keeps a transaction's round
/// trips clear of the workers' load.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    /// The running thread, and a handle that spawns onto it.
    fn start() -> StoreResult<(Arc<Self>, tokio::runtime::Handle)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("database-io")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start the database thread: {e}")))?;
        let handle = runtime.handle().clone();
        Ok((Arc::new(Self(Some(runtime))), handle))
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // The last `Database` may be dropped inside an async context, where a blocking
        // shutdown panics. The connections' tasks end with it; nothing else runs here.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Database {
    /// Builds the pool and checks that the database answers, retrying for a while so a
    /// database that is still starting (docker compose) does not fail the server.
    ///
    /// `max_lifetime`: a connection older than this is closed at its next checkout and
    /// another one opened. PostgreSQL keeps each prepared statement's plan for the life of
    /// the connection and plans again only after an `ANALYZE`; a plan made while a table was
    /// small can stay in use long after it has grown (autovacuum off, or not yet run), and a
    /// backend's caches only grow. A lifetime bounds both, as sqlx's and HikariCP's do.
    pub async fn connect(url: &str, size: usize, attempts: u32, max_lifetime: Option<Duration>) -> StoreResult<Self> {
        // `Fast`: a connection is handed out again unless its transaction state is broken or
        // its socket has closed (a terminated backend, a restarted server). The default,
        // `Verified`, sends `SELECT 1` before every checkout: a round trip on every request,
        // which was a third of a history page and most of a cached `GET /users/me`.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let (io, handle) = IoRuntime::start()?;
        config.custom_setup = Box::new(move |url| {
            let url = url.to_owned();
            let opened = handle
                .spawn(async move { <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url).await });
            async move { opened.await.map_err(|e| ConnectionError::BadConnection(e.to_string()))? }.boxed()
        });
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let mut pool = Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool::Runtime::Tokio1);
        if let Some(max_lifetime) = max_lifetime {
            pool = pool.pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() < max_lifetime { Ok(()) } else { Err(HookError::message("past its maximum lifetime")) }
            }));
        }
        let pool = pool.build().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let database = Self { pool, _io: io };
        let mut last_error = None;
        for attempt in 1..=attempts.max(1) {
            match database.ping().await {
                Ok(()) => return Ok(database),
                Err(error) => {
                    tracing::warn!(attempt, %error, "database not reachable yet");
                    last_error = Some(error);
                    if attempt < attempts {
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt.min(6)))).await;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| StoreError::Unavailable("no attempt made".into())))
    }

    pub async fn get(&self) -> StoreResult<PooledConnection> {
        Ok(self.pool.get().await?)
    }

    /// True when a connection can be had and answers a trivial query.
    pub async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }

    /// Connections in use and callers waiting for one, for `/metrics`.
    pub fn pool_usage(&self) -> PoolUsage {
        let status = self.pool.status();
        PoolUsage { max_size: status.max_size, size: status.size, available: status.available, waiting: status.waiting }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

/// Applies the embedded migrations that have not run yet.
///
/// Diesel's migration harness is synchronous, so it runs on the blocking pool through
/// `AsyncConnectionWrapper` rather than on the async executor.
pub async fn run_migrations(url: &str) -> StoreResult<()> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> StoreResult<()> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|applied| {
                for version in applied {
                    tracing::info!(%version, "applied migration");
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")));
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
        result
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("migration task failed: {e}")))?
}

/// A pool of `size` connections to the test PostgreSQL's `postgres` database, for unit tests
/// that need a server but no schema; the server handle keeps a started server running.
#[cfg(test)]
pub(crate) async fn postgres_pool(size: usize) -> (Database, crate::local_pg::LocalServer) {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let server = crate::local_pg::find_or_start(&data).await.expect("a PostgreSQL for the tests");
    let db = Database::connect(&server.url_for("postgres"), size, 1, None).await.expect("a pool");
    (db, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An actix worker busy writing to sockets runs none of its other tasks meanwhile. A
    /// connection it happened to open must still answer a query from elsewhere.
    #[test]
    fn a_connection_answers_while_the_runtime_that_opened_it_is_not_running() {
        let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let opener = runtime();
        // One connection, opened (by the readiness check) inside `opener`.
        let (db, _server) = opener.block_on(postgres_pool(1));
        // Nothing drives `opener` from here on.
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(5), db.ping())
                .await
                .expect("the connection answered with its opener idle")
                .unwrap();
        });
    }

    /// diesel names a migration by the part of its folder before the first `_`: two folders
    /// with one version would run only one of them (branches merged on the same day did).
    #[test]
    fn every_migration_has_a_version_of_its_own() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut seen = std::collections::HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let version = name.split('_').next().unwrap().to_owned();
            if let Some(other) = seen.insert(version.clone(), name.clone()) {
                panic!("{name} and {other} share the version {version}");
            }
        }
        assert!(seen.len() >= 5);
    }
}
