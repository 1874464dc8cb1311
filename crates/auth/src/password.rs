use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use domain::Password;
use tokio::sync::{OwnedMutexGuard, Semaphore};
use tracing::Instrument as _;

use crate::error::AuthError;

/// Hashes and verifies passwords with bcrypt.
///
/// bcrypt at cost 12 takes a few hundred milliseconds of CPU, so every call runs on the
/// blocking pool, and a semaphore bounds how many run at once: a burst of logins then
/// queues instead of starving the rest of the server of CPU and blocking threads.
///
/// Checks of one account's password queue per account ([`PasswordHasher::turn`]): an
/// account has at most one check waiting for or holding a permit, so a flood of guesses
/// against one account (a stolen token trying `current_password`s, a botnet trying one
/// username) takes one place in the semaphore's FIFO at a time, and every other account's
/// login waits behind at most one of them instead of behind all of them.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    accounts: AccountQueues,
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
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            accounts: AccountQueues::default(),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Waits until `account` has no other password check running or waiting ahead of this
    /// one (first come, first served within the account). Hold the turn over everything
    /// that decides the guess — the failure-count check, [`AccountTurn::verify`], recording
    /// the outcome — so the next guess of the account sees this one's result.
    pub async fn turn(&self, account: &str) -> AccountTurn {
        let queue = self.accounts.queue(account);
        let guard = Arc::clone(&queue).lock_owned().await;
        AccountTurn { hasher: self.clone(), account: account.to_owned(), guard: Some(guard), queue: Some(queue) }
    }

    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let password = password.expose().to_owned();
        let cost = self.cost;
        self.blocking(move || bcrypt::hash(password, cost).map_err(|e| AuthError::Hashing(e.to_string()))).await
    }

    /// Checks `password` against `hash`, or against a dummy hash when there is no account,
    /// so both failures cost the same time. Outside any account's queue: for text that names
    /// no account at all; guesses at an account go through [`PasswordHasher::turn`].
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

/// One mutex per account with a check running or waiting; entries are removed when the
/// last of them is done, so the map holds only accounts being guessed at right now.
#[derive(Clone, Default)]
struct AccountQueues(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl AccountQueues {
    fn queue(&self, account: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(account.to_owned()).or_default())
    }

    /// Called when a turn ends: the entry goes once nobody else holds or waits on it. Every
    /// clone is made under the map's lock, so the count read under it is exact.
    fn release(&self, account: &str, queue: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        drop(queue);
        if map.get(account).is_some_and(|q| Arc::strong_count(q) == 1) {
            map.remove(account);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// An account's turn at password checks (see [`PasswordHasher::turn`]); the next check of
/// the account starts when this is dropped.
pub struct AccountTurn {
    hasher: PasswordHasher,
    account: String,
    guard: Option<OwnedMutexGuard<()>>,
    queue: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl AccountTurn {
    /// [`PasswordHasher::verify`] within this account's turn.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        self.hasher.verify(password, hash).await
    }
}

impl Drop for AccountTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(queue) = self.queue.take() {
            self.hasher.accounts.release(&self.account, queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A flood of checks for one account takes one place at a time in the shared queue:
    /// another account's check, started after the flood, finishes after at most one of
    /// them, not after all.
    #[tokio::test]
    async fn a_flood_for_one_account_does_not_starve_another() {
        let hasher = PasswordHasher::new(8, 1).await.unwrap();
        let hash: Arc<str> = hasher.hash(&Password::parse("secretpass").unwrap()).await.unwrap().into();
        let flood: Vec<_> = (0..20)
            .map(|_| {
                let (hasher, hash) = (hasher.clone(), Arc::clone(&hash));
                tokio::spawn(async move {
                    let turn = hasher.turn("alice").await;
                    turn.verify("wrongpass", Some(&hash)).await.unwrap()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut finished_before_bob = 0;
        let bob = hasher.turn("bob").await;
        assert!(bob.verify("secretpass", Some(&hash)).await.unwrap());
        for task in &flood {
            finished_before_bob += usize::from(task.is_finished());
        }
        drop(bob);
        // Alice's first check may have been running and a second one waiting for the
        // permit; never more.
        assert!(finished_before_bob <= 2, "{finished_before_bob} of alice's checks went first");
        for task in flood {
            assert!(!task.await.unwrap());
        }
        assert_eq!(hasher.accounts.len(), 0, "finished queues are forgotten");
    }

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
