//! Revoked access tokens. A token's `jti` stays here until the token would have expired.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreResult;
use crate::schema::revoked_tokens;

pub async fn revoke(conn: &mut AsyncPgConnection, jti: Uuid, expires_at: OffsetDateTime) -> StoreResult<()> {
    diesel::insert_into(revoked_tokens::table)
        .values((revoked_tokens::jti.eq(jti), revoked_tokens::expires_at.eq(expires_at)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Token ids revoked at or after `since` that have not expired, with their revocation time,
/// so each node can keep its in-memory revocation set current by polling.
pub async fn revoked_since(
    conn: &mut AsyncPgConnection,
    since: OffsetDateTime,
) -> StoreResult<Vec<(Uuid, OffsetDateTime, OffsetDateTime)>> {
    Ok(revoked_tokens::table
        .filter(revoked_tokens::revoked_at.ge(since))
        .filter(revoked_tokens::expires_at.gt(OffsetDateTime::now_utc()))
        .select((revoked_tokens::jti, revoked_tokens::expires_at, revoked_tokens::revoked_at))
        .load(conn)
        .await?)
}

/// Drops entries for tokens that have expired anyway.
pub async fn purge_expired(conn: &mut AsyncPgConnection) -> StoreResult<usize> {
    Ok(diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(OffsetDateTime::now_utc())))
        .execute(conn)
        .await?)
}
