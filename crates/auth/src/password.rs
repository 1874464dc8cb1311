use std::sync::Arc;

use domain::Password;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::error::AuthError;

/// Hashes and verifies passwords with bcrypt.
///
/// bcrypt at cost 12 takes a few hundred milliseconds of CPU, so every call runs on the
/// blocking pool, and a semaphore bounds how many run at once: a burst of logins then
/// queues instead of starving the rest of the server of CPU and blocking threads.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// A real hash of a random password at the configured cost, checked against when the
    /// user does not exist so that "unknown user" takes as long as "wrong password".
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// `concurrency` is how many hashes may run in parallel (the number of cores is right).
    pub async fn new(cost: u32, concurrency: usize) -> Result<Self, AuthError> {
        let dummy = uuid::Uuid::new_v4().to_string();
        let dummy_hash = tokio::task::spawn_blocking(move || bcrypt::hash(dummy, cost))
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(Self { cost, permits: Arc::new(Semaphore::new(concurrency.max(1))), dummy_hash: dummy_hash.into() })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let password = password.expose().to_owned();
        let cost = self.cost;
        self.blocking(move || bcrypt::hash(password, cost).map_err(|e| AuthError::Hashing(e.to_string()))).await
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is no account,
    /// so both failures cost the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let matches = self.blocking(move || Ok(bcrypt::verify(password, &hash).unwrap_or(false))).await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|e| AuthError::Hashing(e.to_string()))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .instrument(tracing::Span::current())
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = PasswordHasher::new(4, 2).await.unwrap();
        let password = Password::parse("secretpass").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hasher.verify("secretpass", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrongpass", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("secretpass", None).await.unwrap(), "no account never verifies");
    }
}
