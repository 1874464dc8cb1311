//! A short-lived per-node cache of accounts, so the busiest authenticated read
//! (`GET /api/users/me`) and the caller lookups of writes do not cost a query each.
//!
//! Entries live one second: a change made on this node replaces its entry at once, a change
//! made on another node shows here within a second — the same bound as token revocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::{User, UserId};
use persistence::{AsyncPgConnection, StoreError, users};

use crate::error::ApiError;

const TTL: Duration = Duration::from_secs(1);
/// Past this many entries, expired ones are swept before inserting.
const SWEEP_AT: usize = 100_000;

/// The account behind a valid token is gone: the token no longer stands for anyone (401).
pub fn account_gone(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => {
            ApiError::Unauthorized { code: "invalid_token", detail: "The account no longer exists.".into() }
        }
        other => other.into(),
    }
}

#[derive(Default)]
pub struct AccountCache {
    entries: Mutex<HashMap<UserId, (User, Instant)>>,
}

impl AccountCache {
    /// The caller's account; 401 when it no longer exists (its tokens stand for no one).
    pub async fn get(&self, conn: &mut AsyncPgConnection, id: UserId) -> Result<User, ApiError> {
        if let Some(user) = self.cached(id) {
            return Ok(user);
        }
        let user = users::find(conn, id).await.map_err(account_gone)?;
        self.put(user.clone());
        Ok(user)
    }

    fn cached(&self, id: UserId) -> Option<User> {
        let entries = self.entries.lock().ok()?;
        entries.get(&id).filter(|(_, at)| at.elapsed() < TTL).map(|(user, _)| user.clone())
    }

    /// Records a fresh copy (after a read or this node's own update).
    pub fn put(&self, user: User) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= SWEEP_AT {
                entries.retain(|_, (_, at)| at.elapsed() < TTL);
            }
            entries.insert(user.id, (user, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{DisplayName, Email, Username};

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = AccountCache::default();
        let user = User {
            id: UserId::new(),
            username: Username::parse("alice").unwrap(),
            email: Email::parse("a@example.com").unwrap(),
            display_name: DisplayName::parse("Alice").unwrap(),
            created_at: time::OffsetDateTime::now_utc(),
            is_bot: false,
        };
        cache.put(user.clone());
        assert_eq!(cache.cached(user.id), Some(user.clone()));
        cache.entries.lock().unwrap().insert(user.id, (user.clone(), Instant::now().checked_sub(TTL * 2).unwrap()));
        assert_eq!(cache.cached(user.id), None);
    }
}
