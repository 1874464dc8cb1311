//! Failed logins per account, for the per-account limit every node shares.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::{Duration, OffsetDateTime};

use crate::error::StoreResult;
use crate::schema::login_failures;

/// How many logins failed for `account` within `window`, and when the oldest of them did.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    account: &str,
    window: Duration,
) -> StoreResult<(i64, Option<OffsetDateTime>)> {
    let since = OffsetDateTime::now_utc() - window;
    Ok(login_failures::table
        .filter(login_failures::account.eq(account))
        .filter(login_failures::failed_at.gt(since))
        .select((diesel::dsl::count_star(), diesel::dsl::min(login_failures::failed_at)))
        .first(conn)
        .await?)
}

/// Records a failure, and forgets this account's failures older than `window`.
pub async fn record(conn: &mut AsyncPgConnection, account: &str, window: Duration) -> StoreResult<()> {
    let cutoff = OffsetDateTime::now_utc() - window;
    diesel::delete(
        login_failures::table.filter(login_failures::account.eq(account)).filter(login_failures::failed_at.le(cutoff)),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(login_failures::table).values(login_failures::account.eq(account)).execute(conn).await?;
    Ok(())
}

/// A successful login starts the account's count again.
pub async fn clear(conn: &mut AsyncPgConnection, account: &str) -> StoreResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::account.eq(account))).execute(conn).await?;
    Ok(())
}

/// Drops failures older than `window` for every account (the janitor's part).
pub async fn purge(conn: &mut AsyncPgConnection, window: Duration) -> StoreResult<usize> {
    let cutoff = OffsetDateTime::now_utc() - window;
    Ok(diesel::delete(login_failures::table.filter(login_failures::failed_at.le(cutoff))).execute(conn).await?)
}
