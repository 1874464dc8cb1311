//! Personal API tokens (`chat_pat_…`): 256 random bits shown once, stored only as their
//! SHA-256, checked against an in-memory cache so the hot path makes no query.
//!
//! A fast hash is right here, unlike for passwords: a secret of 256 random bits cannot be
//! guessed however fast guesses are, so a slow hash would only slow down every request. The
//! cache is keyed by the digest of what the client sent; looking a digest up leaks, through
//! timing, at most something about digests, never about a secret, and the digest found is
//! still compared with the computed one in constant time.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use domain::{ApiToken, ApiTokenId, UserId, Username};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::AuthError;
use crate::revocation::Revocations;
use crate::token::Claims;

/// Every API token starts with this, so a server (and a secret scanner) tells it from a JWT.
pub const PREFIX: &str = "chat_pat_";

/// A cached token is checked against the database again after this long, so a revocation
/// only has to stay in the revocation set for a while (see [`revocation_lifetime`]).
pub const CACHE_TTL: Duration = Duration::from_mins(10);

/// How often, at most, a token's `last_used_at` is written.
pub const TOUCH_EVERY_SECONDS: i64 = 60;

/// How far in the future a token that never expires says it expires, where a time is needed
/// (its claims; its revocation entry is kept for [`revocation_lifetime`]).
const NEVER_YEARS: i64 = 100;

/// Whether a bearer token is an API token (rather than a JWT).
pub fn is_api_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The SHA-256 the store keeps of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 256 random bits as 43 characters of base64url: a webhook's secret (an API token is this
/// behind [`PREFIX`]).
pub fn random_secret() -> String {
    // The thread generator is a CSPRNG (ChaCha) seeded from the operating system.
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A freshly made token's secret: shown to its owner once, then only its digest remains.
/// It never prints.
pub struct ApiTokenSecret(String);

impl ApiTokenSecret {
    /// 32 random bytes, base64url without padding.
    pub fn generate() -> Self {
        Self(format!("{PREFIX}{}", random_secret()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiTokenSecret([redacted])")
    }
}

/// How long a revoked API token stays in the revocation set: until it expires, but no longer
/// than a day — by then every node's cache has re-read it from the database (where it is
/// gone) at least once.
pub fn revocation_lifetime(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
    let day = now + time::Duration::days(1);
    expires_at.map_or(day, |at| at.min(day))
}

/// A token that authenticated: its claims as if it were an access token (`jti` is the
/// token's id, its issue time its creation), and when it really expires.
#[derive(Debug, Clone)]
pub struct Verified {
    pub id: ApiTokenId,
    pub claims: Claims,
    pub expires_at: Option<OffsetDateTime>,
}

struct Entry {
    digest: [u8; 32],
    id: ApiTokenId,
    user: UserId,
    username: String,
    created_ms: i64,
    expires_at: Option<OffsetDateTime>,
    cached_at: Instant,
    /// Unix seconds of the last `last_used_at` queued for writing.
    touched: AtomicI64,
}

impl Entry {
    fn verified(&self) -> Verified {
        let created = self.created_ms.div_euclid(1000);
        let exp = self.expires_at.map_or(created + NEVER_YEARS * 365 * 86_400, OffsetDateTime::unix_timestamp);
        Verified {
            id: self.id,
            claims: Claims {
                sub: self.user.as_uuid(),
                username: self.username.clone(),
                iat: created,
                exp,
                jti: self.id.as_uuid(),
            },
            expires_at: self.expires_at,
        }
    }
}

/// Verified API tokens by digest, on this node. Revocation clears entries: a check consults
/// [`Revocations`] (kept current on every node within its sync interval) before trusting an
/// entry, and [`ApiTokenCache::forget_revoked`] drops what it rejects.
#[derive(Default)]
pub struct ApiTokenCache {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
    touches: Mutex<Vec<Uuid>>,
}

/// The cache's answer for a token.
#[derive(Debug)]
pub enum Cached {
    Valid(Verified),
    /// Not cached (or cached too long ago): ask the database, then [`ApiTokenCache::admit`].
    Unknown,
}

impl ApiTokenCache {
    /// Checks `token` (which has [`PREFIX`]) without a query.
    pub fn check(&self, token: &str, revocations: &Revocations) -> Result<Cached, AuthError> {
        self.check_digest(&digest(token), revocations, OffsetDateTime::now_utc())
    }

    fn check_digest(
        &self,
        digest: &[u8; 32],
        revocations: &Revocations,
        now: OffsetDateTime,
    ) -> Result<Cached, AuthError> {
        let outcome = {
            let entries = self.entries.read().map_err(|_| AuthError::InvalidToken)?;
            let Some(entry) = entries.get(digest) else { return Ok(Cached::Unknown) };
            if !bool::from(entry.digest[..].ct_eq(&digest[..])) {
                return Err(AuthError::InvalidToken);
            }
            if entry.cached_at.elapsed() >= CACHE_TTL {
                Ok(None)
            } else if revocations.rejects(entry.id.as_uuid(), entry.user, entry.created_ms) {
                Err(AuthError::Revoked)
            } else if entry.expires_at.is_some_and(|at| at <= now) {
                Err(AuthError::Expired)
            } else {
                let seconds = now.unix_timestamp();
                let last = entry.touched.load(Ordering::Relaxed);
                if seconds - last >= TOUCH_EVERY_SECONDS
                    && entry.touched.compare_exchange(last, seconds, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                    && let Ok(mut touches) = self.touches.lock()
                {
                    touches.push(entry.id.as_uuid());
                }
                Ok(Some(entry.verified()))
            }
        };
        match outcome {
            Ok(Some(verified)) => Ok(Cached::Valid(verified)),
            Ok(None) => {
                self.forget(digest);
                Ok(Cached::Unknown)
            }
            Err(error) => {
                self.forget(digest);
                Err(error)
            }
        }
    }

    /// Takes a token read from the database (by the digest of what the client sent), checks
    /// it like a cached one and caches it.
    pub fn admit(
        &self,
        token: &str,
        stored: &ApiToken,
        username: &Username,
        revocations: &Revocations,
    ) -> Result<Verified, AuthError> {
        let digest = digest(token);
        let created_ms = created_ms(stored.created_at);
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(
                digest,
                Entry {
                    digest,
                    id: stored.id,
                    user: stored.user_id,
                    username: username.as_str().to_owned(),
                    created_ms,
                    expires_at: stored.expires_at,
                    cached_at: Instant::now(),
                    touched: AtomicI64::new(0),
                },
            );
        }
        match self.check_digest(&digest, revocations, OffsetDateTime::now_utc())? {
            Cached::Valid(verified) => Ok(verified),
            Cached::Unknown => Err(AuthError::InvalidToken),
        }
    }

    fn forget(&self, digest: &[u8; 32]) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(digest);
        }
    }

    /// Drops every entry the revocation set rejects, or that has expired or been cached too
    /// long; called whenever the revocation set changes and periodically.
    pub fn forget_revoked(&self, revocations: &Revocations) -> usize {
        let now = OffsetDateTime::now_utc();
        let Ok(mut entries) = self.entries.write() else { return 0 };
        let before = entries.len();
        entries.retain(|_, e| {
            e.cached_at.elapsed() < CACHE_TTL
                && e.expires_at.is_none_or(|at| at > now)
                && !revocations.rejects(e.id.as_uuid(), e.user, e.created_ms)
        });
        before - entries.len()
    }

    /// The tokens used since the last call whose `last_used_at` is due to be written.
    pub fn take_touches(&self) -> Vec<Uuid> {
        self.touches.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default()
    }
}

/// The issue time of an API token for the revocation floors, in Unix milliseconds.
fn created_ms(created_at: OffsetDateTime) -> i64 {
    (created_at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::TokenName;

    fn stored(expires_at: Option<OffsetDateTime>) -> ApiToken {
        ApiToken {
            id: ApiTokenId::new(),
            user_id: UserId::new(),
            name: TokenName::parse("ci").unwrap(),
            created_at: OffsetDateTime::now_utc() - time::Duration::seconds(5),
            expires_at,
            last_used_at: None,
        }
    }

    #[test]
    fn secrets_are_prefixed_random_and_never_print() {
        let a = ApiTokenSecret::generate();
        let b = ApiTokenSecret::generate();
        assert!(a.expose().starts_with(PREFIX) && is_api_token(a.expose()));
        assert_eq!(a.expose().len(), PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(format!("{a:?}"), "ApiTokenSecret([redacted])");
    }

    #[test]
    fn a_cached_token_is_valid_until_revoked() {
        let cache = ApiTokenCache::default();
        let revocations = Revocations::default();
        let secret = ApiTokenSecret::generate();
        let token = stored(None);
        let username = Username::parse("alice").unwrap();
        assert!(matches!(cache.check(secret.expose(), &revocations).unwrap(), Cached::Unknown));
        let verified = cache.admit(secret.expose(), &token, &username, &revocations).unwrap();
        assert_eq!(verified.claims.jti, token.id.as_uuid());
        assert_eq!(verified.claims.user_id(), token.user_id);
        assert!(verified.claims.expires_at() > OffsetDateTime::now_utc() + time::Duration::days(365));
        assert!(matches!(cache.check(secret.expose(), &revocations).unwrap(), Cached::Valid(_)));
        assert_eq!(cache.take_touches(), vec![token.id.as_uuid()], "the first use is recorded");
        assert!(matches!(cache.check(secret.expose(), &revocations).unwrap(), Cached::Valid(_)));
        assert!(cache.take_touches().is_empty(), "and the next within a minute is not");
        assert!(matches!(cache.check("chat_pat_other", &revocations).unwrap(), Cached::Unknown));

        revocations.remember(token.id.as_uuid(), OffsetDateTime::now_utc() + time::Duration::minutes(1));
        assert!(matches!(cache.check(secret.expose(), &revocations), Err(AuthError::Revoked)));
        assert!(matches!(cache.check(secret.expose(), &revocations).unwrap(), Cached::Unknown), "and forgotten");
    }

    #[test]
    fn expired_tokens_and_floors_are_refused() {
        let cache = ApiTokenCache::default();
        let revocations = Revocations::default();
        let username = Username::parse("alice").unwrap();
        let secret = ApiTokenSecret::generate();
        let old = stored(Some(OffsetDateTime::now_utc() - time::Duration::seconds(1)));
        assert!(matches!(cache.admit(secret.expose(), &old, &username, &revocations), Err(AuthError::Expired)));

        let secret = ApiTokenSecret::generate();
        let token = stored(Some(OffsetDateTime::now_utc() + time::Duration::days(1)));
        cache.admit(secret.expose(), &token, &username, &revocations).unwrap();
        revocations.raise(token.user_id, OffsetDateTime::now_utc());
        assert_eq!(cache.forget_revoked(&revocations), 1);
        assert!(matches!(cache.check(secret.expose(), &revocations).unwrap(), Cached::Unknown));
    }

    #[test]
    fn revocations_of_tokens_that_never_expire_are_kept_a_day() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(revocation_lifetime(None, now), now + time::Duration::days(1));
        let soon = now + time::Duration::hours(1);
        assert_eq!(revocation_lifetime(Some(soon), now), soon);
    }
}
