//! `Application::build(settings)` → `.port()` → `.run_until_stopped()`: shared by `main` and
//! the black-box tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use auth::{PasswordHasher, Revocations, SecretKey, TokenKeys};
use persistence::Database;
use persistence::local_pg::{self, LocalServer};
use persistence::writer::MessageWriter;
use realtime::Hub;
use utoipa::OpenApi as _;
use utoipa_actix_web::AppExt as _;

use crate::banner::{Banner, DatabaseOrigin};
use crate::config::Settings;
use crate::error::ApiError;
use crate::extract;
use crate::methods::{self, RouteTable};
use crate::metrics::Metrics;
use crate::openapi::ApiDoc;
use crate::request_id;
use crate::routes;
use crate::state::AppState;

/// Why the server could not start; one line each, naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    LocalDatabase(#[from] local_pg::LocalPgError),
    #[error("DATABASE_URL: the database is unreachable: {0}")]
    Database(String),
    #[error("could not listen on {address}: {reason} (set HOST/PORT)")]
    Bind { address: String, reason: String },
    #[error("METRICS_ADDR: could not listen on {address}: {reason}")]
    MetricsBind { address: String, reason: String },
    #[error(transparent)]
    Storage(#[from] crate::files::StoreConfigError),
    #[error("{0}")]
    Other(String),
}

pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    state: web::Data<AppState>,
    local_pg: Option<LocalServer>,
    background: Vec<tokio::task::JoinHandle<()>>,
    stopper: Stopper,
}

/// Stops a running server: WebSocket sessions close with 1001 first, then the HTTP server
/// stops accepting and lets in-flight requests finish (or not, when not graceful).
#[derive(Clone)]
pub struct Stopper {
    handle: actix_web::dev::ServerHandle,
    /// The `METRICS_ADDR` listener, stopped after the API so a drain can still be watched.
    metrics: Option<actix_web::dev::ServerHandle>,
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    sockets: realtime::SocketThreads,
    /// How long the sessions get to close after the HTTP server has stopped.
    grace: Duration,
}

impl Stopper {
    pub async fn stop(&self, graceful: bool) {
        let _ = self.shutdown.send(true);
        self.handle.stop(graceful).await;
        if graceful {
            self.close_sockets().await;
        } else {
            self.sockets.close_now();
        }
        if let Some(metrics) = &self.metrics {
            metrics.stop(graceful).await;
        }
    }

    /// The WebSocket sessions close (1001) and the socket threads finish, within the grace.
    /// Also after a stop that the server's own end overtook: the server's future completes
    /// as soon as it has stopped, and the task that stopped it may never run again.
    async fn close_sockets(&self) {
        let _ = self.shutdown.send(true);
        if !self.sockets.close(self.grace).await && self.sockets.sessions() > 0 {
            tracing::warn!(left = self.sockets.sessions(), "WebSocket sessions still open at shutdown");
        }
    }

    /// Sends the stop without waiting for it to complete (for `Drop`).
    pub fn stop_now(&self) {
        let _ = self.shutdown.send(true);
        drop(self.handle.stop(false));
        self.sockets.close_now();
        if let Some(metrics) = &self.metrics {
            drop(metrics.stop(false));
        }
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        settings.validate()?;
        let settings = Arc::new(settings);

        let (database_url, local_pg) = match &settings.database_url {
            Some(url) => (url.0.clone(), None),
            None => {
                let server = local_pg::find_or_start(&settings.data_dir).await?;
                server.ensure_database("chat").await?;
                (server.url_for("chat"), Some(server))
            }
        };
        let database_origin = match &local_pg {
            None => DatabaseOrigin::Configured,
            Some(server) if server.started_here() => DatabaseOrigin::Started,
            Some(_) => DatabaseOrigin::Found,
        };
        persistence::run_migrations(&database_url).await.map_err(|e| StartError::Database(e.to_string()))?;
        let max_lifetime = (settings.database_max_lifetime_seconds > 0)
            .then(|| Duration::from_secs(settings.database_max_lifetime_seconds));
        let db = Database::connect(
            &database_url,
            settings.database_pool_size,
            settings.database_connect_attempts,
            max_lifetime,
        )
        .await
        .map_err(|e| StartError::Database(e.to_string()))?;
        backfill_skeletons(&db).await;

        let secret = match &settings.secret_key {
            Some(key) => {
                SecretKey::new(key.0.as_bytes().to_vec()).map_err(|e| StartError::Other(format!("SECRET_KEY: {e}")))?
            }
            None => {
                tracing::warn!(
                    "SECRET_KEY is not set: using a random key, so tokens will not survive a restart and will \
                     not work on any other node (every node needs the same SECRET_KEY)"
                );
                SecretKey::random()
            }
        };
        let tokens = TokenKeys::new(&secret, time::Duration::minutes(settings.access_token_expire_minutes));
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let hasher =
            PasswordHasher::new(settings.bcrypt_cost, cores).await.map_err(|e| StartError::Other(e.to_string()))?;
        let revocations = Revocations::default();
        let mut background = Vec::new();
        background.push(revocations.spawn_sync(db.clone()).await.map_err(|e| StartError::Database(e.to_string()))?);

        let files = crate::files::from_settings(&settings)?;
        let thumbnails = crate::thumbnails::Thumbnailer::new(settings.thumbnail_workers, files.clone(), db.clone());
        background.push(tokio::spawn(janitor(db.clone(), files.clone())));
        let (shutdown_tx, shutdown) = realtime::shutdown_switch();
        let hub = Hub::new(settings.ws_queue_capacity);
        let api_tokens = Arc::new(auth::ApiTokenCache::default());
        background.push(tokio::spawn(close_revoked_sockets(revocations.clone(), api_tokens.clone(), hub.clone())));
        background.push(tokio::spawn(record_token_use(api_tokens.clone(), db.clone())));
        let mut node = None;
        if let Some(url) = &settings.redis_url {
            let relay = realtime::RedisRelay::start(&url.0, &settings.redis_namespace, hub.clone(), db.clone())
                .await
                .map_err(|e| StartError::Other(format!("REDIS_URL: cannot connect to Redis: {e}")))?;
            node = Some(relay.node());
        }
        let writer = MessageWriter::spawn(db.clone(), Arc::new(hub.clone()), settings.database_pool_size.div_ceil(2));

        let state = web::Data::new(AppState {
            settings: settings.clone(),
            db,
            hasher,
            tokens,
            revocations,
            api_tokens,
            hub,
            replay_budget: realtime::ReplayBudget::new(
                settings.resume_budget_events_per_minute,
                settings.resume_budget_bytes_per_minute,
            ),
            accounts: crate::accounts::AccountCache::default(),
            limits: crate::ratelimit::Limits::new(&settings),
            writer,
            files,
            thumbnails,
            history: crate::history_cache::HistoryCache::new(settings.history_cache_bytes),
            shutdown,
        });
        let limits_state = state.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_mins(1));
            loop {
                tick.tick().await;
                limits_state.limits.housekeeping();
            }
        }));
        let metrics = web::Data::new(Metrics::install());

        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address)
            .map_err(|e| StartError::Bind { address: address.clone(), reason: e.to_string() })?;
        let listen = listener.local_addr().map_err(|e| StartError::Bind { address, reason: e.to_string() })?;
        let port = listen.port();

        let (metrics_server, metrics_port) = match &settings.metrics_addr {
            Some(address) => {
                let (server, port) = serve_metrics_on(address, state.clone(), metrics.clone())?;
                tracing::info!(port, "/metrics is served on METRICS_ADDR only");
                (Some(server), Some(port))
            }
            None => {
                if settings.metrics_token.is_none() {
                    tracing::warn!(
                        "/metrics is public: anyone who reaches the API can read it; set METRICS_TOKEN or METRICS_ADDR"
                    );
                }
                (None, None)
            }
        };

        let server_state = state.clone();
        // As many socket threads as workers: each core can run one of each.
        let socket_threads = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            workers => workers,
        };
        let sockets = realtime::SocketThreads::start(socket_threads)
            .map_err(|e| StartError::Other(format!("could not start the socket threads: {e}")))?;
        let options = crate::listener::Options {
            workers: settings.workers,
            shutdown_timeout_seconds: settings.shutdown_timeout_seconds,
            send_timeout: Duration::from_secs(settings.send_timeout_seconds),
            sockets: sockets.clone(),
        };
        // Signals are handled in `run_until_stopped`, so WebSockets can be closed with 1001
        // before the server stops.
        let server =
            crate::listener::serve(listener, &options, move || build_app(server_state.clone(), metrics.clone()))
                .map_err(|e| StartError::Bind { address: format!("port {port}"), reason: e.to_string() })?;
        let stopper = Stopper {
            handle: server.handle(),
            metrics: metrics_server.as_ref().map(Server::handle),
            shutdown: Arc::new(shutdown_tx),
            sockets,
            grace: Duration::from_secs(settings.shutdown_timeout_seconds),
        };
        if let Some(metrics_server) = metrics_server {
            background.push(tokio::spawn(async move {
                if let Err(error) = metrics_server.await {
                    tracing::error!(%error, "the METRICS_ADDR listener failed");
                }
            }));
        }

        Banner {
            app_name: &settings.app_name,
            listen,
            database_url: &database_url,
            database_origin,
            redis_url: settings.redis_url.as_ref().map(|url| url.0.as_str()),
            redis_namespace: &settings.redis_namespace,
            node,
        }
        .log();
        Ok(Self { port, metrics_port, server, state, local_pg, background, stopper })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `METRICS_ADDR` listener, when there is one (the address may ask for
    /// port 0).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Lets a caller (a test) stop the server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT (or a stop through [`Application::handle`]), then lets
    /// in-flight requests finish and stops a PostgreSQL this process started.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopper = self.stopper.clone();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing WebSockets, finishing in-flight requests");
            stopper.stop(true).await;
        });
        let result = self.server.await;
        signals.abort();
        self.stopper.close_sockets().await;
        for task in self.background {
            task.abort();
        }
        if let Some(local_pg) = self.local_pg {
            local_pg.stop().await;
        }
        result
    }
}

/// Accounts stored before usernames had a confusable skeleton get one now, before this node
/// takes requests, so a lookalike of an old account is refused like one of a new account.
/// A failure only weakens that protection for old accounts, so it is logged, not fatal.
async fn backfill_skeletons(db: &Database) {
    let result = match db.get().await {
        Ok(mut conn) => persistence::users::backfill_skeletons(&mut conn).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(report) if report.filled > 0 || report.lookalikes > 0 => tracing::info!(
            filled = report.filled,
            lookalikes = report.lookalikes,
            "username skeletons filled in for existing accounts"
        ),
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "could not fill in username skeletons; lookalikes of old accounts are not refused yet");
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Closes, with 4001, the WebSockets whose token a revocation made here or on another node
/// no longer accepts (logout, password change, API-token revocation, bot deletion), within
/// the revocation sync's interval, and drops the API tokens it rejects from the cache.
async fn close_revoked_sockets(revocations: Revocations, api_tokens: Arc<auth::ApiTokenCache>, hub: Hub) {
    let mut changes = revocations.changes();
    while changes.changed().await.is_ok() {
        api_tokens.forget_revoked(&revocations);
        let closed = hub.close_revoked(
            |credential| revocations.rejects(credential.token, credential.user, credential.issued_at),
            "token revoked: sign in again",
        );
        if closed > 0 {
            tracing::info!(closed, "closed WebSockets of revoked tokens");
        }
    }
}

/// Writes the API tokens' `last_used_at`, batched: each token is queued at most once a
/// minute by the check itself, so the request that used it never waits for this write.
async fn record_token_use(api_tokens: Arc<auth::ApiTokenCache>, db: Database) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let used = api_tokens.take_touches();
        if used.is_empty() {
            continue;
        }
        let result = match db.get().await {
            Ok(mut conn) => persistence::api_tokens::touch(&mut conn, &used, time::OffsetDateTime::now_utc()).await,
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, tokens = used.len(), "could not record API token use");
        }
    }
}

/// Hourly housekeeping (the first run at start): the event log's daily partitions are
/// created ahead and dropped after 7 days, idempotency nonces are kept 24 hours, and uploads
/// that no message refers to are removed after 24 hours.
async fn janitor(db: Database, files: Arc<dyn crate::files::FileStore>) {
    const EVENT_RETENTION: time::Duration = time::Duration::days(7);
    const DAY: time::Duration = time::Duration::hours(24);
    let mut tick = tokio::time::interval(Duration::from_hours(1));
    loop {
        tick.tick().await;
        let Ok(mut conn) = db.get().await else { continue };
        let now = time::OffsetDateTime::now_utc();
        match persistence::events::maintain_partitions(&mut conn, now, now - EVENT_RETENTION).await {
            Ok(done) if done != persistence::events::PartitionMaintenance::default() => tracing::info!(
                created = ?done.created,
                dropped = ?done.dropped,
                purged_from_default = done.purged_from_default,
                "event log partitions maintained"
            ),
            Err(error) => tracing::warn!(%error, "event log partition maintenance failed"),
            _ => {}
        }
        if let Err(error) = persistence::messages::purge_nonces(&mut conn, now - DAY).await {
            tracing::warn!(%error, "nonce purge failed");
        }
        if let Err(error) = persistence::login_failures::purge(&mut conn, crate::config::LOGIN_FAILURE_WINDOW).await {
            tracing::warn!(%error, "login failure purge failed");
        }
        drop(conn);
        sweep_uploads(&db, files.as_ref(), now - DAY).await;
    }
}

/// Removes uploads older than `cutoff` that no message refers to (row and bytes), then
/// objects in the store older than `cutoff` that have no row: the bytes of an upload whose
/// node died between storing them and recording them, or whose removal failed before.
pub async fn sweep_uploads(db: &Database, files: &dyn crate::files::FileStore, cutoff: time::OffsetDateTime) {
    let Ok(mut conn) = db.get().await else { return };
    match persistence::files::purge_orphans(&mut conn, cutoff).await {
        Ok(ids) => {
            for id in ids {
                for key in [crate::files::file_key(id), crate::files::thumbnail_key(id)] {
                    if let Err(error) = files.delete(&key).await {
                        tracing::warn!(%error, file = %id, "could not remove an orphaned upload");
                    }
                }
            }
        }
        Err(error) => tracing::warn!(%error, "orphan purge failed"),
    }
    let cutoff = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(cutoff.unix_timestamp().max(0) as u64);
    let keys = match files.list_older_than(cutoff).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(%error, "listing stored files failed");
            return;
        }
    };
    for batch in keys.chunks(500) {
        let ids: Vec<uuid::Uuid> =
            batch.iter().filter_map(|key| key.strip_suffix(".thumbnail").unwrap_or(key).parse().ok()).collect();
        let Ok(existing) = persistence::files::existing(&mut conn, &ids).await else { continue };
        for key in batch {
            let id = key.strip_suffix(".thumbnail").unwrap_or(key).parse::<uuid::Uuid>();
            if id.is_ok_and(|id| !existing.contains(&id)) {
                match files.delete(key).await {
                    Ok(()) => tracing::info!(key, "removed stored bytes that no file refers to"),
                    Err(error) => tracing::warn!(%error, key, "could not remove stored bytes without a file"),
                }
            }
        }
    }
}

/// `METRICS_ADDR`: a listener of its own that serves `/metrics` and nothing else, so the
/// API's address can be public while metrics stay on a private interface. One worker is
/// plenty for a scraper.
fn serve_metrics_on(
    address: &str,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<(Server, u16), StartError> {
    let bind_error = |reason: String| StartError::MetricsBind { address: address.to_owned(), reason };
    let listener = TcpListener::bind(address).map_err(|e| bind_error(e.to_string()))?;
    let port = listener.local_addr().map_err(|e| bind_error(e.to_string()))?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .service(routes::health::metrics_text)
            .default_service(web::to(|| async { Err::<actix_web::HttpResponse, _>(ApiError::not_found("resource")) }))
    })
    .workers(1)
    .listen(listener)
    .map_err(|e| bind_error(e.to_string()))?
    .client_request_timeout(Duration::from_secs(10))
    .disable_signals()
    .run();
    Ok((server, port))
}

fn build_app(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let settings = state.settings.clone();
    let (app, mut openapi) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(state)
        .app_data(metrics)
        .app_data(extract::query_config())
        .app_data(extract::path_config())
        .service(
            // actix tries routes in this order, matching a pattern with `{..}` segments by
            // regular expression: posting and reading messages, most of the traffic, come
            // first (they were a tenth of a post's CPU behind forty patterns). No path below
            // can match a `/chat/..` route, so the order changes no answer.
            utoipa_actix_web::scope("/api")
                .configure(routes::messages::configure)
                .configure(routes::auth::configure)
                .configure(routes::users::configure)
                .configure(routes::tokens::configure)
                .configure(routes::bots::configure)
                .configure(routes::webhooks::configure)
                .configure(routes::channels::configure)
                .configure(routes::files::configure)
                .configure(routes::ws::configure),
        )
        .configure(routes::webhooks::configure_hooks)
        .configure(|cfg| routes::health::configure(cfg, settings.metrics_addr.is_none()))
        .split_for_parts();
    openapi.info.title.clone_from(&settings.app_name);
    utoipa::Modify::modify(&crate::openapi::CommonErrors, &mut openapi);
    let mut route_table = RouteTable::from_openapi(&openapi);
    for template in routes::docs::ROUTES.iter().chain(routes::web::ROUTES.iter()) {
        route_table.add(template, vec![actix_web::http::Method::GET]);
    }
    app.configure(|cfg| routes::docs::configure(cfg, openapi))
        .configure(routes::web::configure)
        .app_data(web::Data::new(route_table))
        .default_service(web::to(methods::no_route))
        .wrap(from_fn(methods::head_as_get))
        .wrap(cors(&settings))
        .wrap(
            DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "no-referrer")),
        )
        .wrap(from_fn(request_id::middleware))
}

fn cors(settings: &Settings) -> Cors {
    let origins = settings.cors_origins();
    let mut cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers([
            "x-request-id",
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ])
        .max_age(3600);
    for origin in &origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
