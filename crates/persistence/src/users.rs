//! Accounts.

use std::collections::HashSet;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{DisplayName, Email, SearchText, User, UserId, UserSummary, Username};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::users;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    /// `Username::confusable_key`, unique, so a lookalike of a taken name is taken. NULL
    /// only for accounts stored before the column existed, until [`backfill_skeletons`].
    pub username_skeleton: Option<String>,
    pub is_bot: bool,
    /// The person a bot belongs to; NULL for people, and for a bot that was deleted (its
    /// account stays as the author of what it posted, like a deactivated account).
    pub bot_owner_id: Option<Uuid>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> StoreResult<Self> {
        let username = Username::parse(&row.username)?;
        Ok(User {
            id: UserId::from_uuid(row.id),
            email: Email::parse(&row.email)?,
            display_name: stored_display_name(&row.display_name, &username),
            username,
            created_at: row.created_at,
            is_bot: row.is_bot,
        })
    }
}

/// A display name as stored. Names saved before invisible characters were dropped are
/// cleaned on the way out by `DisplayName::parse`; one that was nothing but invisible
/// characters has nothing left, and shows as the username (the default display name) rather
/// than failing every read of its account.
fn stored_display_name(raw: &str, username: &Username) -> DisplayName {
    DisplayName::parse(raw).unwrap_or_else(|_| DisplayName::from_username(username))
}

/// `{id, username, display_name}` selected straight from the users table.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct SummaryRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
}

impl TryFrom<SummaryRow> for UserSummary {
    type Error = StoreError;
    fn try_from(row: SummaryRow) -> StoreResult<Self> {
        let username = Username::parse(&row.username)?;
        Ok(UserSummary {
            id: UserId::from_uuid(row.id),
            display_name: stored_display_name(&row.display_name, &username),
            username,
        })
    }
}

/// What registration stores.
pub struct NewUser<'a> {
    pub username: &'a Username,
    pub email: &'a Email,
    pub display_name: &'a DisplayName,
    pub password_hash: &'a str,
}

#[tracing::instrument(skip_all, fields(username = %new.username))]
pub async fn create(conn: &mut AsyncPgConnection, new: NewUser<'_>) -> StoreResult<User> {
    let row = UserRow {
        id: Uuid::now_v7(),
        username: new.username.as_str().to_owned(),
        email: new.email.as_str().to_owned(),
        display_name: new.display_name.as_str().to_owned(),
        password_hash: new.password_hash.to_owned(),
        created_at: OffsetDateTime::now_utc(),
        username_skeleton: Some(new.username.confusable_key()),
        is_bot: false,
        bot_owner_id: None,
    };
    let row: UserRow =
        diesel::insert_into(users::table).values(&row).returning(UserRow::as_returning()).get_result(conn).await?;
    row.try_into()
}

/// What creating a bot stores: a password hash nothing can match (`!`, which is no bcrypt
/// hash) and an address under `.invalid` (RFC 2606), which no mail reaches and no person
/// registers, so the unique email index never refuses a bot.
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn create_bot(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    username: &Username,
    display_name: &DisplayName,
) -> StoreResult<User> {
    let id = Uuid::now_v7();
    let row = UserRow {
        id,
        username: username.as_str().to_owned(),
        email: format!("{}@bots.invalid", id.simple()),
        display_name: display_name.as_str().to_owned(),
        password_hash: BOT_PASSWORD_HASH.to_owned(),
        created_at: OffsetDateTime::now_utc(),
        username_skeleton: Some(username.confusable_key()),
        is_bot: true,
        bot_owner_id: Some(owner.as_uuid()),
    };
    let row: UserRow =
        diesel::insert_into(users::table).values(&row).returning(UserRow::as_returning()).get_result(conn).await?;
    row.try_into()
}

/// The stored password hash of a bot: not a bcrypt hash, so no password verifies against it.
pub const BOT_PASSWORD_HASH: &str = "!";

/// The live bots `owner` made, by lowercase username, after the username key `after`.
pub async fn bots_of(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<User>> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text};
    let mut query = users::table
        .filter(users::bot_owner_id.eq(owner.as_uuid()))
        .filter(users::is_bot.eq(true))
        .select(UserRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(sql::<Bool>("lower(username) > ").bind::<Text, _>(after.to_owned()));
    }
    let rows: Vec<UserRow> = query.order(sql::<Text>("lower(username)")).limit(limit).load(conn).await?;
    rows.into_iter().map(User::try_from).collect()
}

/// `owner`'s live bot named `username`; NotFound for anyone else's, a person, or a deleted bot.
pub async fn bot_of(conn: &mut AsyncPgConnection, owner: UserId, username: &Username) -> StoreResult<User> {
    users::table
        .filter(users::bot_owner_id.eq(owner.as_uuid()))
        .filter(users::is_bot.eq(true))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(username) = ")
                .bind::<diesel::sql_types::Text, _>(username.key()),
        )
        .select(UserRow::as_select())
        .first(conn)
        .await?
        .try_into()
}

/// Marks a bot deleted: it no longer belongs to anyone, so it can be neither listed, given a
/// token nor deleted again. The row stays as the author of its messages.
pub async fn retire_bot(conn: &mut AsyncPgConnection, bot: UserId) -> StoreResult<()> {
    diesel::update(users::table.find(bot.as_uuid()).filter(users::is_bot.eq(true)))
        .set(users::bot_owner_id.eq(None::<Uuid>))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> StoreResult<User> {
    users::table.find(id.as_uuid()).select(UserRow::as_select()).first(conn).await?.try_into()
}

/// Case-insensitive lookup, as usernames are unique case-insensitively. It takes a parsed
/// [`Username`], never raw text: a client's string that is no username (a NUL, which
/// PostgreSQL refuses in text, or anything else) names nobody and never reaches a query.
pub async fn find_by_username(conn: &mut AsyncPgConnection, username: &Username) -> StoreResult<User> {
    users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(username) = ")
                .bind::<diesel::sql_types::Text, _>(username.key()),
        )
        .select(UserRow::as_select())
        .first(conn)
        .await?
        .try_into()
}

/// The account and its password hash, for login (a parsed [`Username`], as for
/// [`find_by_username`]).
pub async fn credentials(conn: &mut AsyncPgConnection, username: &Username) -> StoreResult<Option<(User, String)>> {
    let row: Option<UserRow> = users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(username) = ")
                .bind::<diesel::sql_types::Text, _>(username.key()),
        )
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(|row| {
        let hash = row.password_hash.clone();
        User::try_from(row).map(|user| (user, hash))
    })
    .transpose()
}

pub async fn password_hash(conn: &mut AsyncPgConnection, id: UserId) -> StoreResult<String> {
    Ok(users::table.find(id.as_uuid()).select(users::password_hash).first(conn).await?)
}

/// Lists users ordered by lowercase username, optionally only those whose username or
/// display name starts with `prefix`, after the username key `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    prefix: Option<&SearchText>,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<User>> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text};

    let mut query = users::table.select(UserRow::as_select()).into_boxed();
    if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
        let pattern = format!("{}%", escape_like(&prefix.as_str().to_lowercase()));
        query = query.filter(
            sql::<Bool>("(lower(username) LIKE ")
                .bind::<Text, _>(pattern.clone())
                .sql(" OR lower(display_name) LIKE ")
                .bind::<Text, _>(pattern)
                .sql(")"),
        );
    }
    if let Some(after) = after {
        query = query.filter(sql::<Bool>("lower(username) > ").bind::<Text, _>(after.to_owned()));
    }
    let rows: Vec<UserRow> = query.order(sql::<Text>("lower(username)")).limit(limit).load(conn).await?;
    rows.into_iter().map(User::try_from).collect()
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
}

pub async fn update(conn: &mut AsyncPgConnection, id: UserId, changes: UserChanges) -> StoreResult<User> {
    if changes.display_name.is_none() && changes.email.is_none() && changes.password_hash.is_none() {
        return find(conn, id).await;
    }
    diesel::update(users::table.find(id.as_uuid()))
        .set(&changes)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await?
        .try_into()
}

pub async fn summaries(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> StoreResult<Vec<UserSummary>> {
    let rows: Vec<SummaryRow> =
        users::table.filter(users::id.eq_any(ids)).select(SummaryRow::as_select()).load(conn).await?;
    rows.into_iter().map(UserSummary::try_from).collect()
}

pub async fn summary(conn: &mut AsyncPgConnection, id: UserId) -> StoreResult<UserSummary> {
    users::table.find(id.as_uuid()).select(SummaryRow::as_select()).first(conn).await?.try_into()
}

/// What [`backfill_skeletons`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SkeletonBackfill {
    /// Accounts that got their skeleton.
    pub filled: usize,
    /// Accounts left without one because an older account already looks like them. They
    /// keep their name; a new lookalike of either is still refused, since the older account
    /// holds the skeleton they share.
    pub lookalikes: usize,
}

/// Gives accounts stored before the `username_skeleton` column their skeleton, in creation
/// order (ids are UUIDv7), so where two old accounts look alike the older one holds it.
/// Runs at start, before the node takes requests; several nodes starting at once are safe
/// (each row is only written while still NULL, and the unique index arbitrates).
pub async fn backfill_skeletons(conn: &mut AsyncPgConnection) -> StoreResult<SkeletonBackfill> {
    const BATCH: i64 = 1000;
    let mut report = SkeletonBackfill::default();
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, String)> = users::table
            .filter(users::username_skeleton.is_null())
            .filter(users::id.gt(after))
            .order(users::id)
            .select((users::id, users::username))
            .limit(BATCH)
            .load(conn)
            .await?;
        let Some((last, _)) = rows.last() else { break };
        after = *last;
        // The first of a batch's lookalikes keeps the skeleton; the database refuses the
        // rest, and keys already held by other rows, in the one statement below.
        let mut seen = HashSet::new();
        let (ids, keys): (Vec<Uuid>, Vec<String>) = rows
            .iter()
            .filter_map(|(id, name)| {
                let key = Username::parse(name).ok()?.confusable_key();
                seen.insert(key.clone()).then_some((*id, key))
            })
            .unzip();
        let filled = match fill_skeletons(conn, &ids, &keys).await {
            Ok(filled) => filled,
            // An account registered on another node at the same moment took a key: go row
            // by row, so only the rows that really collide are left out.
            Err(StoreError::Conflict(_)) => {
                let mut filled = 0;
                for (id, key) in ids.iter().zip(&keys) {
                    match fill_skeletons(conn, std::slice::from_ref(id), std::slice::from_ref(key)).await {
                        Ok(n) => filled += n,
                        Err(StoreError::Conflict(_)) => {}
                        Err(other) => return Err(other),
                    }
                }
                filled
            }
            Err(other) => return Err(other),
        };
        report.filled += filled;
        report.lookalikes += rows.len() - filled;
    }
    Ok(report)
}

async fn fill_skeletons(conn: &mut AsyncPgConnection, ids: &[Uuid], keys: &[String]) -> StoreResult<usize> {
    use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
    Ok(diesel::sql_query(
        "UPDATE users SET username_skeleton = v.key \
         FROM unnest($1::uuid[], $2::text[]) AS v(id, key) \
         WHERE users.id = v.id AND users.username_skeleton IS NULL \
           AND NOT EXISTS (SELECT 1 FROM users o WHERE o.username_skeleton = v.key)",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(keys)
    .execute(conn)
    .await?)
}

/// LIKE treats `%` and `_` as wildcards; a search for them must match them literally.
pub(crate) fn escape_like(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
