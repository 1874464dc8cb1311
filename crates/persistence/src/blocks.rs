//! Blocking (docs/api.md section 11): a blocked user cannot open or write to a DM or group
//! DM with the user who blocked them, and their mentions of that user notify nothing.
//! Shared channels are unaffected.

use diesel::dsl::exists;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{User, UserId};
use uuid::Uuid;

use crate::error::StoreResult;
use crate::schema::{blocks, users};
use crate::users::UserRow;

/// `by` blocks `whom`; blocking twice changes nothing.
pub async fn block(conn: &mut AsyncPgConnection, by: UserId, whom: UserId) -> StoreResult<()> {
    diesel::insert_into(blocks::table)
        .values((blocks::blocker_id.eq(by.as_uuid()), blocks::blocked_id.eq(whom.as_uuid())))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn unblock(conn: &mut AsyncPgConnection, by: UserId, whom: UserId) -> StoreResult<()> {
    diesel::delete(
        blocks::table.filter(blocks::blocker_id.eq(by.as_uuid())).filter(blocks::blocked_id.eq(whom.as_uuid())),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The users `blocker` blocked, in user-id order after `after`.
pub async fn blocked_by(
    conn: &mut AsyncPgConnection,
    blocker: UserId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<User>> {
    let mut query = blocks::table
        .inner_join(users::table.on(users::id.eq(blocks::blocked_id)))
        .filter(blocks::blocker_id.eq(blocker.as_uuid()))
        .select(UserRow::as_select())
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    let rows: Vec<UserRow> = query.load(conn).await?;
    rows.into_iter().map(User::try_from).collect()
}

/// Whether any of `users` blocked `author`.
pub async fn any_blocks(conn: &mut AsyncPgConnection, users: &[UserId], author: UserId) -> StoreResult<bool> {
    let users: Vec<Uuid> = users.iter().map(UserId::as_uuid).collect();
    Ok(diesel::select(exists(
        blocks::table.filter(blocks::blocked_id.eq(author.as_uuid())).filter(blocks::blocker_id.eq_any(users)),
    ))
    .get_result(conn)
    .await?)
}
