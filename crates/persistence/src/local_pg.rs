//! Finding a PostgreSQL when no `DATABASE_URL` is given: one already listening on
//! 127.0.0.1:5432, else a project-local cluster under `./data/postgres` created and started
//! with the PostgreSQL binaries installed on the machine.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::process::Command;

/// The port of the project-local cluster: not 5432, so it never shadows a system server.
pub const LOCAL_PORT: u16 = 54329;

#[derive(Debug, Error)]
pub enum LocalPgError {
    #[error("no PostgreSQL found: install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL")]
    NoBinaries,
    #[error("could not start the local PostgreSQL cluster in {dir}: {reason}")]
    Start { dir: PathBuf, reason: String },
    #[error("PostgreSQL at {url} refused the connection: {reason} (set DATABASE_URL to a database you can use)")]
    Connect { url: String, reason: String },
}

/// A PostgreSQL server this process may use, and whether it started it.
#[derive(Debug)]
pub struct LocalServer {
    /// URL of the server's maintenance database (`postgres`), without a database to use.
    base_url: String,
    /// Set when this process started the cluster and should stop it on exit.
    started: Option<StartedCluster>,
}

#[derive(Debug)]
struct StartedCluster {
    pg_ctl: PathBuf,
    data_dir: PathBuf,
    as_postgres: bool,
}

impl LocalServer {
    /// `postgres://postgres@host:port/{database}`.
    pub fn url_for(&self, database: &str) -> String {
        format!("{}/{database}", self.base_url)
    }

    /// Whether this process started the cluster (and stops it on exit), rather than finding
    /// one already running.
    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }

    /// Stops the cluster if this process started it.
    pub async fn stop(self) {
        if let Some(cluster) = self.started {
            let data_dir = cluster.data_dir.display().to_string();
            let args = ["stop", "-D", data_dir.as_str(), "-m", "fast", "-w"];
            match run_pg(&cluster.pg_ctl, &args, cluster.as_postgres).await {
                Ok(_) => tracing::info!("stopped the local PostgreSQL cluster"),
                Err(error) => tracing::warn!(%error, "could not stop the local PostgreSQL cluster"),
            }
        }
    }

    /// Creates `database` if it does not exist yet.
    pub async fn ensure_database(&self, database: &str) -> Result<(), LocalPgError> {
        let url = self.url_for("postgres");
        let connect_error =
            |e: &dyn std::fmt::Display| LocalPgError::Connect { url: url.clone(), reason: e.to_string() };
        let mut conn = AsyncPgConnection::establish(&url).await.map_err(|e| connect_error(&e))?;
        #[derive(diesel::QueryableByName)]
        struct Exists {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            exists: bool,
        }
        let exists: Exists =
            diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
                .bind::<diesel::sql_types::Text, _>(database)
                .get_result(&mut conn)
                .await
                .map_err(|e| connect_error(&e))?;
        if !exists.exists {
            // CREATE DATABASE takes no bind parameters; the name is ours, quoted anyway.
            let created = diesel::sql_query(format!("CREATE DATABASE \"{}\"", database.replace('"', "")))
                .execute(&mut conn)
                .await;
            // Another process may have created it in the meantime; that is fine.
            if let Err(error) = created
                && !error.to_string().contains("already exists")
            {
                return Err(connect_error(&error));
            }
        }
        Ok(())
    }
}

/// Finds a running PostgreSQL on 127.0.0.1:5432 or starts the project-local cluster.
pub async fn find_or_start(data_dir: &Path) -> Result<LocalServer, LocalPgError> {
    if answers(5432).await {
        return Ok(LocalServer { base_url: "postgres://postgres@127.0.0.1:5432".into(), started: None });
    }
    start_cluster(data_dir, LOCAL_PORT).await
}

/// Uses the cluster under `data_dir/postgres` on `port`: already running, or created (first
/// time) and started with the installed binaries.
pub async fn start_cluster(data_dir: &Path, port: u16) -> Result<LocalServer, LocalPgError> {
    let base_url = format!("postgres://postgres@127.0.0.1:{port}");
    if answers(port).await {
        // Left running by an earlier run of this project (or started by a sibling process).
        return Ok(LocalServer { base_url, started: None });
    }
    let bin = find_binaries().ok_or(LocalPgError::NoBinaries)?;
    let as_postgres = running_as_root();
    let pg_dir = data_dir.join("postgres");
    let start_error = |reason: String| LocalPgError::Start { dir: pg_dir.clone(), reason };
    std::fs::create_dir_all(data_dir).map_err(|e| start_error(e.to_string()))?;
    let absolute = std::fs::canonicalize(data_dir).map_err(|e| start_error(e.to_string()))?.join("postgres");

    if !absolute.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&absolute).map_err(|e| start_error(e.to_string()))?;
        if as_postgres {
            // initdb refuses to run as root, so the cluster belongs to the postgres user.
            let dir = absolute.display().to_string();
            run_cmd("chown", &["-R", "postgres:postgres", dir.as_str()]).await.map_err(start_error)?;
        }
        let dir = absolute.display().to_string();
        run_pg(
            &bin.join("initdb"),
            &["-D", dir.as_str(), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions"],
            as_postgres,
        )
        .await
        .map_err(start_error)?;
    }

    let dir = absolute.display().to_string();
    let log = absolute.join("server.log").display().to_string();
    let options = format!("-p {port} -c listen_addresses=127.0.0.1 -k {dir}");
    run_pg(
        &bin.join("pg_ctl"),
        &["start", "-D", dir.as_str(), "-l", log.as_str(), "-o", options.as_str(), "-w", "-t", "60"],
        as_postgres,
    )
    .await
    .map_err(start_error)?;
    tracing::info!(dir = %absolute.display(), port, "started a local PostgreSQL cluster");
    Ok(LocalServer {
        base_url,
        started: Some(StartedCluster { pg_ctl: bin.join("pg_ctl"), data_dir: absolute, as_postgres }),
    })
}

async fn answers(port: u16) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(("127.0.0.1", port))).await, Ok(Ok(_)))
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`).
fn find_binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_tools(dir))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The owner of `/proc/self` is the effective user: a way to ask "am I root?" without
/// unsafe code.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

async fn run_pg(program: &Path, args: &[&str], as_postgres: bool) -> Result<String, String> {
    let program = program.display().to_string();
    if as_postgres {
        let mut full = vec!["-u", "postgres", "--", program.as_str()];
        full.extend_from_slice(args);
        run_cmd("runuser", &full).await
    } else {
        run_cmd(&program, args).await
    }
}

async fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .current_dir("/")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{program} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}
