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

/// Registers `count` users, in order.
pub async fn register_users(
    api: &Api,
    prefix: &str,
    role: &str,
    count: usize,
    limits: SetupLimits,
    progress: Progress,
) -> Result<Vec<User>> {
    let bar = progress.counter(count as u64, &format!("registering {role}"));
    let users = stream::iter(0..count)
        .map(|index| {
            let bar = bar.clone();
            async move {
                let username = username(prefix, role, index);
                let token = api.register(&username, PASSWORD).await?;
                bar.inc(1);
                anyhow::Ok(User { username, token: token.into() })
            }
        })
        .buffered(limits.concurrency.max(1))
        .try_collect()
        .await;
    bar.finish_and_clear();
    users
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
    let bar = progress.counter(owners.len() as u64, "creating channels");
    let ids = stream::iter(owners.iter().enumerate())
        .map(|(index, owner)| {
            let bar = bar.clone();
            async move {
                let name = format!("{prefix}-{label}-{index}");
                let id = api.create_channel(&owner.token, &name).await?;
                bar.inc(1);
                anyhow::Ok(Arc::<str>::from(id))
            }
        })
        .buffered(limits.concurrency.max(1))
        .try_collect()
        .await;
    bar.finish_and_clear();
    ids
}

/// Joins each `(user, channel id)` pair.
pub async fn join_channels(
    api: &Api,
    joins: &[(&User, Arc<str>)],
    limits: SetupLimits,
    progress: Progress,
) -> Result<()> {
    let bar = progress.counter(joins.len() as u64, "joining channels");
    let result = stream::iter(joins)
        .map(|(user, channel_id)| {
            let bar = bar.clone();
            async move {
                api.join(&user.token, channel_id)
                    .await
                    .with_context(|| format!("{} joining {channel_id}", user.username))?;
                bar.inc(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(limits.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await;
    bar.finish_and_clear();
    result.map(drop)
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
    let bar = progress.counter(count as u64, "seeding history");
    let result = stream::iter(0..count)
        .map(|n| {
            let bar = bar.clone();
            async move {
                let text = format!("history message {n}: {}", "x".repeat(80));
                api.post_for_setup(&poster.token, channel_id, &text).await?;
                bar.inc(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(limits.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await;
    bar.finish_and_clear();
    result.map(drop)
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
