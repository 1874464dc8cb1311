//! What every handler shares.

use std::sync::Arc;

use auth::api_token::{self, Cached};
use auth::{ApiTokenCache, Claims, PasswordHasher, Revocations, TokenKeys};
use domain::ApiTokenId;
use persistence::Database;
use realtime::Hub;
use time::OffsetDateTime;

use crate::config::Settings;
use crate::error::ApiError;
use crate::files::FileStore;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub hasher: PasswordHasher,
    pub tokens: TokenKeys,
    pub revocations: Revocations,
    /// Personal API tokens this node has verified, so checking one makes no query.
    pub api_tokens: Arc<ApiTokenCache>,
    pub hub: Hub,
    /// What `resume`s may replay per user and minute, shared by all sessions of this node.
    pub replay_budget: realtime::ReplayBudget,
    pub accounts: crate::accounts::AccountCache,
    pub limits: crate::ratelimit::Limits,
    pub writer: persistence::writer::MessageWriter,
    pub files: Arc<dyn FileStore>,
    pub thumbnails: crate::thumbnails::Thumbnailer,
    /// History pages this node rendered, shown again while their version holds.
    pub history: crate::history_cache::HistoryCache,
    /// Flips to true when the server shuts down; WebSocket sessions then close with 1001.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Who a bearer token stands for, and what kind of token it is.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// An access token's claims, or an API token's as if it were one (`jti` is its id).
    pub claims: Claims,
    /// Set when the token is a personal API token.
    pub api_token: Option<ApiTokenId>,
    /// When the token expires, if ever; its WebSockets close with 4001 then.
    pub expires_at: Option<OffsetDateTime>,
}

impl AppState {
    /// Checks a bearer token. An access token: signature, expiry, then revocation (in
    /// memory, no query). An API token (`chat_pat_…`): the node's cache and the revocation
    /// set, no query; only a token this node has not seen (or not for ten minutes) is read
    /// from the database.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, ApiError> {
        if !api_token::is_api_token(token) {
            let claims = self.tokens.verify(token)?;
            if self.revocations.rejects_claims(&claims) {
                return Err(auth::AuthError::Revoked.into());
            }
            let expires_at = Some(claims.expires_at());
            return Ok(Authenticated { claims, api_token: None, expires_at });
        }
        let verified = match self.api_tokens.check(token, &self.revocations)? {
            Cached::Valid(verified) => verified,
            Cached::Unknown => {
                let found = {
                    let mut conn = self.conn().await?;
                    persistence::api_tokens::find_by_hash(&mut conn, &api_token::digest(token)).await?
                };
                let found = found.ok_or(auth::AuthError::InvalidToken)?;
                self.api_tokens.admit(token, &found.token, &found.username, &self.revocations)?
            }
        };
        Ok(Authenticated { claims: verified.claims, api_token: Some(verified.id), expires_at: verified.expires_at })
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
