//! What every handler shares.

use std::sync::Arc;

use auth::{Claims, PasswordHasher, Revocations, TokenKeys};
use persistence::Database;
use realtime::Hub;

use crate::config::Settings;
use crate::error::ApiError;
use crate::files::FileStore;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub hasher: PasswordHasher,
    pub tokens: TokenKeys,
    pub revocations: Revocations,
    pub hub: Hub,
    /// What `resume`s may replay per user and minute, shared by all sessions of this node.
    pub replay_budget: realtime::ReplayBudget,
    pub accounts: crate::accounts::AccountCache,
    pub limits: crate::ratelimit::Limits,
    pub writer: persistence::writer::MessageWriter,
    pub files: Arc<dyn FileStore>,
    pub thumbnails: crate::thumbnails::Thumbnailer,
    /// Flips to true when the server shuts down; WebSocket sessions then close with 1001.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// Checks a bearer token: signature, expiry, then revocation (in memory, no query).
    pub fn authenticate(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = self.tokens.verify(token)?;
        if self.revocations.rejects_claims(&claims) {
            return Err(auth::AuthError::Revoked.into());
        }
        Ok(claims)
    }

    pub fn session_env(&self) -> realtime::SessionEnv {
        realtime::SessionEnv {
            hub: self.hub.clone(),
            db: self.db.clone(),
            writer: self.writer.clone(),
            frames_per_second: self.settings.rate_limit_writes_per_second,
            replay_budget: self.replay_budget.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    pub async fn conn(&self) -> Result<persistence::PooledConnection, ApiError> {
        Ok(self.db.get().await?)
    }
}
