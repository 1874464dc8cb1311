//! The black-box test harness: each test gets its own database, cloned from a migrated
//! template, and its own server on a random port, and talks to it over HTTP and WebSocket
//! like any client would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod browser;
pub mod client;
pub mod proxy;
pub mod s3;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use http_api::{Application, Settings};
use persistence::local_pg;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

pub use client::{Client, Reply};
pub use s3::S3Server;

/// Where a test server keeps uploads: `FILE_STORE=local` or `FILE_STORE=s3` against a real
/// S3-compatible server started for the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Local,
    S3,
}

/// The workspace root, where `data/` and `migrations/` live.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The PostgreSQL the tests use, found or started the same way the server does.
async fn base_url() -> &'static str {
    static BASE: OnceCell<String> = OnceCell::const_new();
    BASE.get_or_init(|| async {
        let server = local_pg::find_or_start(&workspace_root().join("data")).await.expect("a PostgreSQL for the tests");
        // Left running on purpose: other test binaries use it at the same time.
        let url = server.url_for("");
        std::mem::forget(server);
        url.trim_end_matches('/').to_owned()
    })
    .await
}

/// A name that changes whenever a migration file does, so a stale template is never used.
/// The names of the migrations compiled into this binary count too: a template must be
/// built by the migrations the servers under test will run, even when the files on disk
/// were renamed after the build.
fn template_name() -> String {
    let mut files: Vec<PathBuf> = walk(&workspace_root().join("migrations"));
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update(std::fs::read(&file).unwrap());
    }
    let embedded = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&persistence::db::MIGRATIONS);
    for migration in embedded.unwrap() {
        hash.update(migration.name().to_string().as_bytes());
    }
    format!("chat_tpl_{}", &hex::encode(hash.finalize())[..16])
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] })
        .collect()
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&format!("{}/postgres", base_url().await)).await.expect("connect to postgres")
}

/// Creates the migrated template once per machine (per migration set): built under a
/// temporary name and renamed when complete, under an advisory lock shared by all test
/// processes.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let mut conn = admin().await;
            diesel::sql_query("SELECT pg_advisory_lock(727272)").execute(&mut conn).await.unwrap();
            if !database_exists(&mut conn, &name).await {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                diesel::sql_query(format!("CREATE DATABASE \"{building}\"")).execute(&mut conn).await.unwrap();
                persistence::run_migrations(&format!("{}/{building}", base_url().await)).await.unwrap();
                diesel::sql_query(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            diesel::sql_query("SELECT pg_advisory_unlock(727272)").execute(&mut conn).await.unwrap();
            name
        })
        .await
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .await
        .unwrap();
    count.n > 0
}

/// A fresh database cloned from the template; dropped when the value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let template = template().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin().await;
        // Cloning fails while another session is connected to the template (another test
        // cloning it at the same instant); that passes quickly, so retry.
        let mut attempt = 0;
        loop {
            match diesel::sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(error) if attempt < 100 && error.to_string().contains("being accessed by other users") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("could not create the test database: {error}"),
            }
        }
        let url = format!("{}/{name}", base_url().await);
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime we may block on, so use a small one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut conn = admin().await;
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub port: u16,
    /// The `METRICS_ADDR` listener's port, when the settings asked for one.
    pub metrics_port: Option<u16>,
    pub base: String,
    pub client: Client,
    pub settings: Settings,
    stopper: http_api::app::Stopper,
    files_dir: PathBuf,
    /// The S3 server this app (and its siblings) store files in, with `Store::S3`.
    pub s3: Option<Arc<S3Server>>,
    // Declared last: dropped after the server has been told to stop. `None` for a second
    // node sharing another app's database.
    pub database: Option<TestDatabase>,
    database_url: String,
}

impl TestApp {
    /// The server with test settings (bcrypt cost 4, one worker, limits as in production).
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_on_with(Store::Local, adjust).await
    }

    /// The server with its uploads in `store`.
    pub async fn spawn_on(store: Store) -> Self {
        Self::spawn_on_with(store, |_| {}).await
    }

    pub async fn spawn_on_with(store: Store, adjust: impl FnOnce(&mut Settings)) -> Self {
        let database = TestDatabase::create().await;
        let url = database.url.clone();
        let s3 = (store == Store::S3).then(|| Arc::new(S3Server::start()));
        Self::start(url, Some(database), s3, adjust).await
    }

    /// A second server (node) on this one's database and, with S3, the same bucket (but
    /// never the same local directory).
    pub async fn spawn_sibling(&self, adjust: impl FnOnce(&mut Settings)) -> Self {
        Self::start(self.database_url.clone(), None, self.s3.clone(), adjust).await
    }

    async fn start(
        database_url: String,
        database: Option<TestDatabase>,
        s3: Option<Arc<S3Server>>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let files_dir = std::env::temp_dir().join(format!("chat-test-files-{}", uuid::Uuid::new_v4().simple()));
        let mut settings = Settings {
            database_url: Some(http_api::config::Secret(database_url.clone())),
            secret_key: Some(http_api::config::Secret("test-secret-key-that-is-long-enough-0123456789".into())),
            port: 0,
            bcrypt_cost: 4,
            workers: 1,
            database_pool_size: 8,
            file_storage_dir: files_dir.clone(),
            rate_limit_auth_per_minute: 0,
            rate_limit_writes_per_second: 0,
            shutdown_timeout_seconds: 2,
            ..Settings::default()
        };
        if let Some(s3) = &s3 {
            s3.configure(&mut settings);
        }
        adjust(&mut settings);
        let app = Application::build(settings.clone()).await.expect("the server starts");
        let port = app.port();
        let metrics_port = app.metrics_port();
        let stopper = app.stopper();
        tokio::spawn(app.run_until_stopped());
        let base = format!("http://127.0.0.1:{port}");
        Self {
            port,
            metrics_port,
            client: Client::new(&base),
            base,
            settings,
            stopper,
            files_dir,
            s3,
            database,
            database_url,
        }
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Opens `/api/ws` with `token` and reads its `ready` frame.
    pub async fn connect(&self, token: &str) -> ws::WsClient {
        let mut socket = ws::WsClient::connect(&self.ws_url(&format!("/api/ws?token={token}"))).await.unwrap();
        let ready = socket.next_json().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        socket
    }

    /// Creates a public channel named `name` as the token's user, expecting 201; returns its id.
    pub async fn create_channel(&self, token: &str, name: &str) -> String {
        self.client
            .post("/api/channels", Some(token), &serde_json::json!({"name": name}))
            .await
            .assert_status(201)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Posts `content` to `channel` as the token's user, expecting 201; returns the message.
    pub async fn post_message(&self, token: &str, channel: &str, content: &str) -> serde_json::Value {
        self.client
            .post("/api/chat/messages", Some(token), &serde_json::json!({"content": content, "channel_id": channel}))
            .await
            .assert_status(201)
            .clone()
    }

    /// Registers `username` (password `secretpass`, email `<username>@example.com`) and
    /// returns its access token.
    pub async fn user(&self, username: &str) -> String {
        self.client.register(username).await
    }

    pub fn files_dir(&self) -> &std::path::Path {
        &self.files_dir
    }

    /// The stored objects: files under `FILE_STORAGE_DIR` (its `tmp/` included), or the
    /// objects in the S3 bucket.
    pub fn stored_objects(&self) -> Vec<PathBuf> {
        match &self.s3 {
            Some(s3) => s3.objects(),
            None => s3::files_under(&self.files_dir),
        }
    }

    /// Everything the store keeps, including what an interrupted write may leave (temporary
    /// files, parts of multipart uploads), to check that a refused upload changed nothing.
    pub fn store_snapshot(&self) -> Vec<PathBuf> {
        match &self.s3 {
            Some(s3) => s3.everything(),
            None => s3::files_under(&self.files_dir),
        }
    }

    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.database_url).await.unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&self) {
        self.stopper.stop(true).await;
    }

    /// Stops the server and starts a new one on the same port, database and files, as an
    /// operator's restart would: clients must reconnect and lose nothing.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.port = self.port;
        // The old listener is closed once the stop completes; retry briefly in case the
        // kernel has not released the port yet.
        let mut attempt = 0;
        let app = loop {
            match Application::build(settings.clone()).await {
                Ok(app) => break app,
                Err(error) if attempt < 50 => {
                    attempt += 1;
                    eprintln!("restart: {error}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("the server did not restart: {error}"),
            }
        };
        assert_eq!(app.port(), self.port);
        self.stopper = app.stopper();
        tokio::spawn(app.run_until_stopped());
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The stop command is sent synchronously; the database drop (in TestDatabase)
        // terminates whatever connections remain.
        self.stopper.stop_now();
        let _ = std::fs::remove_dir_all(&self.files_dir);
    }
}
