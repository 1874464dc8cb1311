use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use domain::UserId;
use persistence::{Database, tokens};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::AuthError;
use crate::token::Claims;

/// Revoked tokens, kept in memory on every node: single tokens by id (logout), and per
/// account a floor below which every token is revoked (a password change).
///
/// Checking a token must not cost a database query, yet a revocation must take effect
/// everywhere within a second: the node that revokes updates its own set at once and writes
/// the revocation to the database; every node polls the database for revocations newer than
/// the last it saw ([`Revocations::spawn_sync`]). Each change is announced on
/// [`Revocations::changes`], so open WebSockets with a revoked token can be closed.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<RwLock<Sets>>,
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Sets {
    tokens: HashMap<Uuid, OffsetDateTime>,
    /// Per account: tokens issued before this (Unix milliseconds) are revoked.
    floors: HashMap<UserId, i64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self { inner: Arc::default(), changed: Arc::new(watch::channel(0).0) }
    }
}

/// How often nodes pick up revocations made elsewhere.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(500);

impl Revocations {
    pub fn is_revoked(&self, jti: Uuid) -> bool {
        self.inner.read().map_or(true, |sets| sets.tokens.contains_key(&jti))
    }

    /// Whether a token no longer counts: revoked by id, or issued (at `issued_at_ms`)
    /// before its account's floor.
    pub fn rejects(&self, jti: Uuid, user: UserId, issued_at_ms: i64) -> bool {
        self.inner.read().map_or(true, |sets| {
            sets.tokens.contains_key(&jti) || sets.floors.get(&user).is_some_and(|floor| issued_at_ms < *floor)
        })
    }

    /// [`Self::rejects`] for a token's claims.
    pub fn rejects_claims(&self, claims: &Claims) -> bool {
        self.rejects(claims.jti, claims.user_id(), claims.issued_at_ms())
    }

    /// Ticks whenever the sets change, here or (after a poll) on another node.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn announce(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Revokes the token everywhere: in the database (for the other nodes and restarts)
    /// and in this node's set.
    pub async fn revoke(&self, db: &Database, claims: &Claims) -> Result<(), AuthError> {
        self.revoke_id(db, claims.jti, claims.expires_at()).await
    }

    /// Revokes the credential `jti` everywhere, remembering it until `keep_until` (when the
    /// token would have expired, or when no node can still hold it otherwise; see
    /// [`crate::api_token::revocation_lifetime`]).
    pub async fn revoke_id(&self, db: &Database, jti: Uuid, keep_until: OffsetDateTime) -> Result<(), AuthError> {
        let mut conn = db.get().await?;
        tokens::revoke(&mut conn, jti, keep_until).await?;
        self.remember(jti, keep_until);
        self.announce();
        Ok(())
    }

    /// Revokes every token of `user` issued before `at`, everywhere.
    pub async fn revoke_all_before(&self, db: &Database, user: UserId, at: OffsetDateTime) -> Result<(), AuthError> {
        let mut conn = db.get().await?;
        tokens::raise_floor(&mut conn, user, at).await?;
        self.raise(user, at);
        self.announce();
        Ok(())
    }

    pub(crate) fn remember(&self, jti: Uuid, expires_at: OffsetDateTime) {
        if let Ok(mut sets) = self.inner.write() {
            sets.tokens.insert(jti, expires_at);
        }
    }

    pub(crate) fn raise(&self, user: UserId, at: OffsetDateTime) {
        let millis = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        if let Ok(mut sets) = self.inner.write() {
            let floor = sets.floors.entry(user).or_insert(millis);
            *floor = (*floor).max(millis);
        }
    }

    fn forget_expired(&self) {
        let now = OffsetDateTime::now_utc();
        if let Ok(mut sets) = self.inner.write() {
            sets.tokens.retain(|_, expires_at| *expires_at > now);
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
        let revoked = tokens::revoked_since(&mut conn, since).await?;
        let floors = tokens::floors_since(&mut conn, since).await?;
        let mut newest = since;
        let mut new = false;
        for (jti, expires_at, revoked_at) in revoked {
            new |= !self.is_revoked(jti);
            self.remember(jti, expires_at);
            newest = newest.max(revoked_at);
        }
        for (user, not_before, updated_at) in floors {
            new |= self.inner.read().map_or(true, |sets| {
                sets.floors
                    .get(&user)
                    .is_none_or(|floor| *floor < (not_before.unix_timestamp_nanos() / 1_000_000) as i64)
            });
            self.raise(user, not_before);
            newest = newest.max(updated_at);
        }
        if new {
            self.announce();
        }
        Ok((newest - time::Duration::seconds(1)).max(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_revokes_what_was_issued_before_it() {
        let revocations = Revocations::default();
        let changes = revocations.changes();
        let user = UserId::new();
        let at = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        revocations.raise(user, at);
        revocations.announce();
        assert!(changes.has_changed().unwrap());
        let token = Uuid::now_v7();
        assert!(revocations.rejects(token, user, 999_999));
        assert!(!revocations.rejects(token, user, 1_000_000));
        assert!(!revocations.rejects(token, UserId::new(), 0), "other accounts keep their tokens");
        revocations.raise(user, OffsetDateTime::from_unix_timestamp(10).unwrap());
        assert!(revocations.rejects(token, user, 999_999), "a floor never goes down");
        revocations.remember(token, OffsetDateTime::now_utc() + time::Duration::minutes(1));
        assert!(revocations.rejects(token, user, 2_000_000));
    }
}
