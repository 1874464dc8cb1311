//! Creating a run's users and channels on the server under test.
//!
//! Names carry a random per-run prefix so that runs against the same database never collide.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};

use crate::api::Api;
use crate::progress::Progress;

const PASSWORD: &str = "chat-bench-password";

#[derive(Clone, Debug)]
pub struct User {
    pub username: String,
    pub token: Arc<str>,
}

/// How setup may load the server, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct SetupLimits {
    pub concurrency: usize,
    pub timeout: Duration,
}

/// `cb` and six random lowercase letters or digits.
pub fn run_prefix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut prefix = String::from("cb");
    for _ in 0..6 {
        prefix.push(char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]));
    }
    prefix
}

/// A username within docs/api.md's rules (3–32 of `[A-Za-z0-9_.-]`).
pub fn username(prefix: &str, role: &str, index: usize) -> String {
    format!("{prefix}_{role}{index}")
}

/// Runs `step` on each item, `limits.concurrency` at a time, counting on a progress bar;
/// the results come back in the items' order.
async fn each<I, T, F, Fut>(items: I, label: &str, limits: SetupLimits, progress: Progress, step: F) -> Result<Vec<T>>
where
    I: IntoIterator<IntoIter: ExactSizeIterator>,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let items = items.into_iter();
    let bar = progress.counter(items.len() as u64, label);
    let results = stream::iter(items)
        .map(|item| {
            let (bar, done) = (bar.clone(), step(item));
            async move {
                let result = done.await?;
                bar.inc(1);
                anyhow::Ok(result)
            }
        })
        .buffered(limits.concurrency.max(1))
        .try_collect()
        .await;
    bar.finish_and_clear();
    results
}

/// Registers `count` users, in order.
pub async fn register_users(
    api: &Api,
    prefix: &str,
    role: &str,
    count: usize,
    limits: SetupLimits,
    progress: Progress,
) -> Result<Vec<User>> {
    each(0..count, &format!("registering {role}"), limits, progress, |index| async move {
        let username = username(prefix, role, index);
        let token = api.register(&username, PASSWORD).await?;
        Ok(User { username, token: token.into() })
    })
    .await
}

/// Creates one channel per owner, named `{prefix}-{label}-{index}`; returns their ids in order.
pub async fn create_channels(
    api: &Api,
    prefix: &str,
    label: &str,
    owners: &[&User],
    limits: SetupLimits,
    progress: Progress,
) -> Result<Vec<Arc<str>>> {
    each(owners.iter().enumerate(), "creating channels", limits, progress, |(index, owner)| async move {
        let name = format!("{prefix}-{label}-{index}");
        Ok(Arc::<str>::from(api.create_channel(&owner.token, &name).await?))
    })
    .await
}

/// Joins each `(user, channel id)` pair.
pub async fn join_channels(
    api: &Api,
    joins: &[(&User, Arc<str>)],
    limits: SetupLimits,
    progress: Progress,
) -> Result<()> {
    each(joins, "joining channels", limits, progress, |(user, channel_id)| async move {
        api.join(&user.token, channel_id).await.with_context(|| format!("{} joining {channel_id}", user.username))
    })
    .await
    .map(drop)
}

/// Posts `count` messages of about 100 bytes into the channel as `poster`, `limits.concurrency`
/// at a time (their order does not matter to the scenarios that read them).
pub async fn seed_messages(
    api: &Api,
    poster: &User,
    channel_id: &str,
    count: usize,
    limits: SetupLimits,
    progress: Progress,
) -> Result<()> {
    each(0..count, "seeding history", limits, progress, |n| async move {
        let text = format!("history message {n}: {}", "x".repeat(80));
        api.post_for_setup(&poster.token, channel_id, &text).await
    })
    .await
    .map(drop)
}

/// Runs a setup step within the time limit, with advice when it is too slow.
pub async fn within<T>(limits: SetupLimits, step: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limits.timeout, step).await.with_context(|| {
        format!(
            "setup did not finish within {}s (--setup-timeout). Registering users runs bcrypt on \
                 the server: start it with BCRYPT_COST=4, and with RATE_LIMIT_AUTH_PER_MINUTE=0 \
                 RATE_LIMIT_WRITES_PER_SECOND=0 so that setup is not rate limited",
            limits.timeout.as_secs()
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_username(name: &str) -> bool {
        (3..=32).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    }

    #[test]
    fn usernames_follow_the_api_rules_even_for_big_runs() {
        let prefix = run_prefix();
        assert_eq!(prefix.len(), 8);
        for name in [username(&prefix, "m", 0), username(&prefix, "member", 999_999), username(&prefix, "sender", 3)] {
            assert!(valid_username(&name), "{name}");
        }
    }

    #[test]
    fn run_prefixes_differ_between_runs() {
        assert_ne!(run_prefix(), run_prefix());
    }
}
