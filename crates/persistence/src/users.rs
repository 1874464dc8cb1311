//! Accounts.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{DisplayName, Email, User, UserId, UserSummary, Username};
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
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(User {
            id: UserId::from_uuid(row.id),
            username: Username::parse(&row.username)?,
            email: Email::parse(&row.email)?,
            display_name: DisplayName::parse(&row.display_name)?,
            created_at: row.created_at,
        })
    }
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
        Ok(UserSummary {
            id: UserId::from_uuid(row.id),
            username: Username::parse(&row.username)?,
            display_name: DisplayName::parse(&row.display_name)?,
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
    };
    let row: UserRow =
        diesel::insert_into(users::table).values(&row).returning(UserRow::as_returning()).get_result(conn).await?;
    row.try_into()
}

pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> StoreResult<User> {
    users::table.find(id.as_uuid()).select(UserRow::as_select()).first(conn).await?.try_into()
}

/// Case-insensitive lookup, as usernames are unique case-insensitively.
pub async fn find_by_username(conn: &mut AsyncPgConnection, username: &str) -> StoreResult<User> {
    users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(username) = ")
                .bind::<diesel::sql_types::Text, _>(username.to_lowercase()),
        )
        .select(UserRow::as_select())
        .first(conn)
        .await?
        .try_into()
}

/// The account and its password hash, for login.
pub async fn credentials(conn: &mut AsyncPgConnection, username: &str) -> StoreResult<Option<(User, String)>> {
    let row: Option<UserRow> = users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(username) = ")
                .bind::<diesel::sql_types::Text, _>(username.to_lowercase()),
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
    prefix: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<User>> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text};

    let mut query = users::table.select(UserRow::as_select()).into_boxed();
    if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
        let pattern = format!("{}%", escape_like(&prefix.to_lowercase()));
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

/// LIKE treats `%` and `_` as wildcards; a search for them must match them literally.
pub(crate) fn escape_like(raw: &str) -> String {
    raw.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
