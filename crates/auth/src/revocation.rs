use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use persistence::{Database, tokens};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::AuthError;
use crate::token::Claims;

/// The set of revoked token ids, kept in memory on every node.
///
/// Checking a token must not cost a database query, yet a logout must take effect
/// everywhere within a second: the node that revokes updates its own set at once and writes
/// the revocation to the database; every node polls the database for revocations newer than
/// the last it saw ([`Revocations::spawn_sync`]).
#[derive(Clone, Default)]
pub struct Revocations {
    inner: Arc<RwLock<HashMap<Uuid, OffsetDateTime>>>,
}

/// How often nodes pick up revocations made elsewhere.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);

impl Revocations {
    pub fn is_revoked(&self, jti: Uuid) -> bool {
        self.inner.read().map_or(true, |set| set.contains_key(&jti))
    }

    /// Revokes the token everywhere: in the database (for the other nodes and restarts)
    /// and in this node's set.
    pub async fn revoke(&self, db: &Database, claims: &Claims) -> Result<(), AuthError> {
        let mut conn = db.get().await?;
        tokens::revoke(&mut conn, claims.jti, claims.expires_at()).await?;
        self.remember(claims.jti, claims.expires_at());
        Ok(())
    }

    fn remember(&self, jti: Uuid, expires_at: OffsetDateTime) {
        if let Ok(mut set) = self.inner.write() {
            set.insert(jti, expires_at);
        }
    }

    fn forget_expired(&self) {
        let now = OffsetDateTime::now_utc();
        if let Ok(mut set) = self.inner.write() {
            set.retain(|_, expires_at| *expires_at > now);
        }
    }

    /// Loads every live revocation, then keeps polling for new ones until the task is
    /// aborted. The first load happens before this returns, so a restarted node never
    /// accepts a token revoked before it started.
    pub async fn spawn_sync(&self, db: Database) -> Result<tokio::task::JoinHandle<()>, AuthError> {
        let mut since = OffsetDateTime::UNIX_EPOCH;
        since = self.poll(&db, since).await?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            let mut ticks = 0u32;
            loop {
                tokio::time::sleep(SYNC_INTERVAL).await;
                match this.poll(&db, since).await {
                    Ok(next) => since = next,
                    Err(error) => tracing::warn!(%error, "could not refresh token revocations"),
                }
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(600) {
                    this.forget_expired();
                    if let Ok(mut conn) = db.get().await {
                        let _ = tokens::purge_expired(&mut conn).await;
                    }
                }
            }
        }))
    }

    /// Reads revocations made at or after `since` and returns where the next poll starts.
    /// It overlaps the previous window by a second, because a transaction that committed
    /// late can carry an earlier `revoked_at` than one already seen.
    async fn poll(&self, db: &Database, since: OffsetDateTime) -> Result<OffsetDateTime, AuthError> {
        let mut conn = db.get().await?;
        let rows = tokens::revoked_since(&mut conn, since).await?;
        let mut newest = since;
        for (jti, expires_at, revoked_at) in rows {
            self.remember(jti, expires_at);
            newest = newest.max(revoked_at);
        }
        Ok((newest - time::Duration::seconds(1)).max(since))
    }
}
