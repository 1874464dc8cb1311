//! Configuration: one typed struct read once from the environment (and `.env` if present),
//! then passed down. docs/api.md section 9 lists the variables.

use std::fmt;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

/// Where uploaded bytes live (`FILE_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStoreKind {
    /// `FILE_STORAGE_DIR` on this node's disk.
    Local,
    /// An S3-compatible object store (`S3_*`), shared by every node.
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A string that never prints, for secrets read from the environment.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// PostgreSQL URL; unset → find or start a local PostgreSQL.
    pub database_url: Option<Secret>,
    /// JWT signing key, at least 32 bytes; unset → random per start.
    pub secret_key: Option<Secret>,
    pub app_name: String,
    pub access_token_expire_minutes: i64,
    pub host: String,
    pub port: u16,
    pub redis_url: Option<Secret>,
    pub bcrypt_cost: u32,
    pub max_upload_bytes: u64,
    pub file_storage_dir: PathBuf,
    pub database_pool_size: usize,
    /// Seconds a pooled database connection is used before it is replaced (at its next
    /// checkout); 0 keeps it for the life of the process.
    pub database_max_lifetime_seconds: u64,
    /// Comma-separated allowed origins.
    pub cors_origins: Option<String>,
    pub log_format: LogFormat,
    /// Where a self-started PostgreSQL keeps its cluster.
    pub data_dir: PathBuf,
    /// Requests per minute per client IP on register and login; 0 turns the limit off.
    pub rate_limit_auth_per_minute: u32,
    /// Requests per second per user on writes (posts, reactions, uploads, WebSocket frames);
    /// 0 turns the limit off.
    pub rate_limit_writes_per_second: u32,
    /// Posts per minute through one incoming webhook; 0 turns the limit off.
    pub rate_limit_webhook_per_minute: u32,
    /// Comma-separated proxy IPs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<String>,
    /// How many times to try the database at start before giving up.
    pub database_connect_attempts: u32,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_seconds: u64,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Frames queued per WebSocket connection before it is closed as a slow consumer (4008).
    pub ws_queue_capacity: usize,
    /// Prefix of the Redis pub/sub channel, so several deployments can share one Redis.
    pub redis_namespace: String,
    /// Seconds a client may take to send a JSON body.
    pub body_timeout_seconds: u64,
    /// Failed logins (and wrong `current_password`s) one account may have in
    /// [`LOGIN_FAILURE_WINDOW`], from any address, before it answers 429; 0 turns it off.
    pub login_failures_per_account: u32,
    /// Events `resume`s may replay per user and minute on one node; 0 turns the budget off.
    pub resume_budget_events_per_minute: u64,
    /// Bytes `resume`s may replay per user and minute on one node; 0 turns the budget off.
    pub resume_budget_bytes_per_minute: u64,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>` (401 otherwise).
    pub metrics_token: Option<Secret>,
    /// When set (`host:port`), `/metrics` is served on this separate listener only, not on
    /// the API's address.
    pub metrics_addr: Option<String>,
    /// `local` (`FILE_STORAGE_DIR`) or `s3` (the `S3_*` variables).
    pub file_store: FileStoreKind,
    pub s3_bucket: Option<String>,
    /// `http(s)://host:port` of an S3-compatible server; unset → AWS for `S3_REGION`.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<Secret>,
    pub s3_secret_access_key: Option<Secret>,
    /// `true` → `endpoint/bucket/key` (most S3-compatible servers); `false` → virtual hosts.
    pub s3_path_style: bool,
    /// Seconds an upload's body may send nothing before the request ends with 408.
    pub upload_idle_timeout_seconds: u64,
    /// Bytes of uploads no message refers to yet that one user may hold.
    pub upload_quota_bytes: u64,
    /// Bytes one user may upload per rolling hour.
    pub upload_quota_bytes_per_hour: u64,
    /// Seconds a response (a download above all) may sit unaccepted by the client before
    /// the connection is cut (`TCP_USER_TIMEOUT`, so the kernel counts, not a timer per
    /// request).
    pub send_timeout_seconds: u64,
    /// Images decoded at once for thumbnails (each in a blocking thread).
    pub thumbnail_workers: usize,
    /// Bytes of rendered history pages a node keeps to show again while they are current;
    /// 0 keeps none.
    pub history_cache_bytes: u64,
}

/// The window of [`Settings::login_failures_per_account`].
pub const LOGIN_FAILURE_WINDOW: time::Duration = time::Duration::minutes(15);

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            secret_key: None,
            app_name: "Chat API".into(),
            access_token_expire_minutes: 30,
            host: "127.0.0.1".into(),
            port: 8000,
            redis_url: None,
            bcrypt_cost: 12,
            max_upload_bytes: 10 * 1024 * 1024,
            file_storage_dir: PathBuf::from("./data/files"),
            database_pool_size: 16,
            cors_origins: None,
            log_format: LogFormat::Pretty,
            data_dir: PathBuf::from("./data"),
            rate_limit_auth_per_minute: 60,
            rate_limit_writes_per_second: 50,
            rate_limit_webhook_per_minute: 60,
            trusted_proxies: None,
            database_connect_attempts: 10,
            database_max_lifetime_seconds: 1800,
            shutdown_timeout_seconds: 10,
            workers: 0,
            ws_queue_capacity: 1024,
            redis_namespace: "chat".into(),
            body_timeout_seconds: 30,
            login_failures_per_account: 10,
            resume_budget_events_per_minute: 20_000,
            resume_budget_bytes_per_minute: 32 * 1024 * 1024,
            metrics_token: None,
            metrics_addr: None,
            file_store: FileStoreKind::Local,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_path_style: false,
            upload_idle_timeout_seconds: 30,
            upload_quota_bytes: 200 * 1024 * 1024,
            upload_quota_bytes_per_hour: 1024 * 1024 * 1024,
            send_timeout_seconds: 60,
            thumbnail_workers: 2,
            history_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable}: {message}")]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl Settings {
    /// Reads `.env` (if any) and the environment over the defaults, then checks the values.
    pub fn load() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let settings: Self = Figment::from(Serialized::defaults(Self::default()))
            .merge(Env::raw().only(Self::VARIABLES).map(|key| key.as_str().to_ascii_lowercase().into()))
            .extract()
            .map_err(|error| {
                let variable =
                    error.path.last().map_or_else(|| "environment".to_owned(), |key| key.to_ascii_uppercase());
                ConfigError { variable, message: error.kind.to_string() }
            })?;
        settings.validate()?;
        Ok(settings)
    }

    const VARIABLES: &'static [&'static str] = &[
        "DATABASE_URL",
        "SECRET_KEY",
        "APP_NAME",
        "ACCESS_TOKEN_EXPIRE_MINUTES",
        "HOST",
        "PORT",
        "REDIS_URL",
        "BCRYPT_COST",
        "MAX_UPLOAD_BYTES",
        "FILE_STORAGE_DIR",
        "DATABASE_POOL_SIZE",
        "CORS_ORIGINS",
        "LOG_FORMAT",
        "DATA_DIR",
        "RATE_LIMIT_AUTH_PER_MINUTE",
        "RATE_LIMIT_WRITES_PER_SECOND",
        "RATE_LIMIT_WEBHOOK_PER_MINUTE",
        "TRUSTED_PROXIES",
        "DATABASE_CONNECT_ATTEMPTS",
        "DATABASE_MAX_LIFETIME_SECONDS",
        "SHUTDOWN_TIMEOUT_SECONDS",
        "WORKERS",
        "WS_QUEUE_CAPACITY",
        "REDIS_NAMESPACE",
        "BODY_TIMEOUT_SECONDS",
        "LOGIN_FAILURES_PER_ACCOUNT",
        "RESUME_BUDGET_EVENTS_PER_MINUTE",
        "RESUME_BUDGET_BYTES_PER_MINUTE",
        "METRICS_TOKEN",
        "METRICS_ADDR",
        "FILE_STORE",
        "S3_BUCKET",
        "S3_ENDPOINT",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_PATH_STYLE",
        "UPLOAD_IDLE_TIMEOUT_SECONDS",
        "UPLOAD_QUOTA_BYTES",
        "UPLOAD_QUOTA_BYTES_PER_HOUR",
        "SEND_TIMEOUT_SECONDS",
        "THUMBNAIL_WORKERS",
        "HISTORY_CACHE_BYTES",
    ];

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail =
            |variable: &str, message: &str| Err(ConfigError { variable: variable.into(), message: message.into() });
        if let Some(key) = &self.secret_key
            && key.0.len() < auth::SecretKey::MIN_LEN
        {
            return fail("SECRET_KEY", "must be at least 32 bytes long");
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return fail("BCRYPT_COST", "must be between 4 and 31");
        }
        if self.access_token_expire_minutes < 1 {
            return fail("ACCESS_TOKEN_EXPIRE_MINUTES", "must be at least 1");
        }
        if self.database_pool_size == 0 {
            return fail("DATABASE_POOL_SIZE", "must be at least 1");
        }
        if self.ws_queue_capacity == 0 {
            return fail("WS_QUEUE_CAPACITY", "must be at least 1");
        }
        if self.max_upload_bytes == 0 {
            return fail("MAX_UPLOAD_BYTES", "must be at least 1");
        }
        if self.metrics_token.as_ref().is_some_and(|token| token.0.trim().is_empty()) {
            return fail("METRICS_TOKEN", "must not be empty (unset it to leave /metrics open)");
        }
        if self.metrics_addr.as_ref().is_some_and(|addr| addr.trim().is_empty()) {
            return fail("METRICS_ADDR", "must be host:port (unset it to serve /metrics on the API's address)");
        }
        if self.file_store == FileStoreKind::S3 && self.s3_bucket.as_deref().is_none_or(str::is_empty) {
            return fail("S3_BUCKET", "is required with FILE_STORE=s3");
        }
        if let Some(endpoint) = &self.s3_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return fail("S3_ENDPOINT", "must be an http:// or https:// URL");
        }
        if self.upload_idle_timeout_seconds == 0 {
            return fail("UPLOAD_IDLE_TIMEOUT_SECONDS", "must be at least 1");
        }
        if self.send_timeout_seconds == 0 {
            return fail("SEND_TIMEOUT_SECONDS", "must be at least 1");
        }
        if self.thumbnail_workers == 0 {
            return fail("THUMBNAIL_WORKERS", "must be at least 1");
        }
        if let Some(proxies) = &self.trusted_proxies {
            for proxy in proxies.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if proxy.parse::<std::net::IpAddr>().is_err() {
                    return fail("TRUSTED_PROXIES", "must be a comma-separated list of IP addresses");
                }
            }
        }
        Ok(())
    }

    pub fn cors_origins(&self) -> Vec<String> {
        split_list(self.cors_origins.as_deref())
    }

    pub fn trusted_proxies(&self) -> Vec<std::net::IpAddr> {
        split_list(self.trusted_proxies.as_deref()).iter().filter_map(|p| p.parse().ok()).collect()
    }
}

fn split_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let settings = Settings::default();
        assert_eq!((settings.host.as_str(), settings.port), ("127.0.0.1", 8000));
        assert_eq!(settings.bcrypt_cost, 12);
        assert_eq!(settings.max_upload_bytes, 10_485_760);
        assert_eq!(settings.database_pool_size, 16);
        assert_eq!(settings.database_max_lifetime_seconds, 1800);
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let short_key = Settings { secret_key: Some(Secret("short".into())), ..Settings::default() };
        assert_eq!(short_key.validate().unwrap_err().variable, "SECRET_KEY");
        let cost = Settings { bcrypt_cost: 3, ..Settings::default() };
        assert_eq!(cost.validate().unwrap_err().variable, "BCRYPT_COST");
        let s3 = Settings { file_store: FileStoreKind::S3, ..Settings::default() };
        assert_eq!(s3.validate().unwrap_err().variable, "S3_BUCKET");
        let endpoint = Settings {
            file_store: FileStoreKind::S3,
            s3_bucket: Some("chat".into()),
            s3_endpoint: Some("minio:9000".into()),
            ..Settings::default()
        };
        assert_eq!(endpoint.validate().unwrap_err().variable, "S3_ENDPOINT");
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings {
            secret_key: Some(Secret("x".repeat(40))),
            metrics_token: Some(Secret("y".repeat(40))),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("xxxx"));
        assert!(!format!("{settings:?}").contains("yyyy"));
    }

    #[test]
    fn empty_metrics_settings_are_refused() {
        let token = Settings { metrics_token: Some(Secret(String::new())), ..Settings::default() };
        assert_eq!(token.validate().unwrap_err().variable, "METRICS_TOKEN");
        let addr = Settings { metrics_addr: Some(" ".into()), ..Settings::default() };
        assert_eq!(addr.validate().unwrap_err().variable, "METRICS_ADDR");
    }
}
