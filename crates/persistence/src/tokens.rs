//! Revoked access tokens. A token's `jti` stays here until the token would have expired;
//! a password change sets the account's floor, below which every token is revoked.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreResult;
use domain::UserId;

use crate::schema::{revoked_tokens, token_floors};

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

/// Revokes every token of `user` issued before `not_before` (a password change). A later
/// floor replaces an earlier one; an earlier one never lowers it.
pub async fn raise_floor(conn: &mut AsyncPgConnection, user: UserId, not_before: OffsetDateTime) -> StoreResult<()> {
    diesel::insert_into(token_floors::table)
        .values((token_floors::user_id.eq(user.as_uuid()), token_floors::not_before.eq(not_before)))
        .on_conflict(token_floors::user_id)
        .do_update()
        .set((
            token_floors::not_before.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                "GREATEST(token_floors.not_before, excluded.not_before)",
            )),
            token_floors::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Floors changed at or after `since`: `(user, not_before, updated_at)`.
pub async fn floors_since(
    conn: &mut AsyncPgConnection,
    since: OffsetDateTime,
) -> StoreResult<Vec<(UserId, OffsetDateTime, OffsetDateTime)>> {
    let rows: Vec<(Uuid, OffsetDateTime, OffsetDateTime)> = token_floors::table
        .filter(token_floors::updated_at.ge(since))
        .select((token_floors::user_id, token_floors::not_before, token_floors::updated_at))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(user, floor, at)| (UserId::from_uuid(user), floor, at)).collect())
}
