//! The per-account limit on failed logins (and wrong `current_password`s): whatever address
//! the guesses come from, an account takes [`Settings::login_failures_per_account`] failures
//! per [`LOGIN_FAILURE_WINDOW`], then answers 429 until the oldest leaves the window. The
//! count lives in the database, so every node shares it, and it is read before bcrypt runs,
//! so a throttled guess costs no hashing.

use persistence::login_failures;
use time::OffsetDateTime;

use crate::config::LOGIN_FAILURE_WINDOW;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The key an account is counted under: its username, lowercased (unknown names too, so
/// the answer does not tell which exist).
pub fn account_key(username: &str) -> String {
    username.to_lowercase()
}

/// 429 with `Retry-After` when the account has used up its failures.
pub async fn check(state: &AppState, account: &str) -> ApiResult<()> {
    let limit = state.settings.login_failures_per_account;
    if limit == 0 {
        return Ok(());
    }
    let mut conn = state.conn().await?;
    let (failures, oldest) = login_failures::recent(&mut conn, account, LOGIN_FAILURE_WINDOW).await?;
    if failures < i64::from(limit) {
        return Ok(());
    }
    let free_at = oldest.unwrap_or_else(OffsetDateTime::now_utc) + LOGIN_FAILURE_WINDOW;
    let retry_after = (free_at - OffsetDateTime::now_utc()).whole_seconds().max(1);
    metrics::counter!("login_throttled_total").increment(1);
    Err(ApiError::RateLimited { retry_after_secs: retry_after as u64, limit })
}

pub async fn failed(state: &AppState, account: &str) -> ApiResult<()> {
    if state.settings.login_failures_per_account == 0 {
        return Ok(());
    }
    let mut conn = state.conn().await?;
    login_failures::record(&mut conn, account, LOGIN_FAILURE_WINDOW).await?;
    Ok(())
}

pub async fn succeeded(state: &AppState, account: &str) -> ApiResult<()> {
    if state.settings.login_failures_per_account == 0 {
        return Ok(());
    }
    let mut conn = state.conn().await?;
    login_failures::clear(&mut conn, account).await?;
    Ok(())
}
