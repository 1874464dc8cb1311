//! Incoming webhooks: a channel's secret URLs that post messages. Each webhook has an
//! account of its own (a bot with no owner and no token) that is a member of its channel
//! and the author of what it posts, so a webhook message is an ordinary message to every
//! query, rule and event; `messages.webhook_username` marks it and holds the name it shows.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{ChannelId, Committed, DisplayName, TokenName, UserId, UserSummary, Username, Webhook, WebhookId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::{users, webhooks};
use crate::users::{SummaryRow, UserRow};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = webhooks)]
pub(crate) struct WebhookRow {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;
    fn try_from(row: WebhookRow) -> StoreResult<Self> {
        Ok(Webhook {
            id: WebhookId::from_uuid(row.id),
            channel_id: ChannelId::from_uuid(row.channel_id),
            user_id: UserId::from_uuid(row.user_id),
            name: TokenName::parse(&row.name)?,
            created_at: row.created_at,
        })
    }
}

/// Creates a webhook of `channel_id` and its account, and adds the account to the channel
/// (a `member_joined` to publish), in one transaction.
pub async fn create(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    name: &TokenName,
    secret_hash: [u8; 32],
    by: UserId,
) -> StoreResult<Committed<Webhook>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let id = Uuid::now_v7();
        let simple = id.simple().to_string();
        let username = Username::parse(&format!("hook-{}", &simple[simple.len() - 12..]))?;
        let display_name = DisplayName::parse(name.as_str())?;
        let now = OffsetDateTime::now_utc();
        let account = UserRow {
            id: Uuid::now_v7(),
            username: username.as_str().to_owned(),
            email: format!("{simple}@webhooks.invalid"),
            display_name: display_name.as_str().to_owned(),
            password_hash: crate::users::BOT_PASSWORD_HASH.to_owned(),
            created_at: now,
            username_skeleton: Some(username.confusable_key()),
            is_bot: true,
            bot_owner_id: None,
        };
        diesel::insert_into(users::table).values(&account).execute(conn).await?;
        let row = WebhookRow {
            id,
            channel_id: channel_id.as_uuid(),
            user_id: account.id,
            name: name.as_str().to_owned(),
            secret_hash: secret_hash.to_vec(),
            created_by: by.as_uuid(),
            created_at: now,
            deleted_at: None,
        };
        let webhook: Webhook = diesel::insert_into(webhooks::table)
            .values(&row)
            .returning(WebhookRow::as_returning())
            .get_result(conn)
            .await?
            .try_into()?;
        let member = UserSummary { id: webhook.user_id, username, display_name };
        let joined = crate::channels::join(conn, channel_id, &member).await?;
        Ok(joined.map(|_| webhook))
    })
    .await
}

/// The live webhooks of a channel in creation order, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<Webhook>> {
    let mut query = webhooks::table
        .filter(webhooks::channel_id.eq(channel_id.as_uuid()))
        .filter(webhooks::deleted_at.is_null())
        .select(WebhookRow::as_select())
        .order(webhooks::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(webhooks::id.gt(after));
    }
    let rows: Vec<WebhookRow> = query.load(conn).await?;
    rows.into_iter().map(Webhook::try_from).collect()
}

/// A live webhook by id.
pub async fn find(conn: &mut AsyncPgConnection, id: WebhookId) -> StoreResult<Webhook> {
    webhooks::table
        .find(id.as_uuid())
        .filter(webhooks::deleted_at.is_null())
        .select(WebhookRow::as_select())
        .first(conn)
        .await?
        .try_into()
}

/// The live webhook whose secret hashes to `hash`, with its account.
pub async fn by_secret(conn: &mut AsyncPgConnection, hash: &[u8; 32]) -> StoreResult<Option<(Webhook, UserSummary)>> {
    let found: Option<(WebhookRow, SummaryRow)> = webhooks::table
        .inner_join(users::table.on(users::id.eq(webhooks::user_id)))
        .filter(webhooks::secret_hash.eq(hash.as_slice()))
        .filter(webhooks::deleted_at.is_null())
        .select((WebhookRow::as_select(), SummaryRow::as_select()))
        .first(conn)
        .await
        .optional()?;
    found.map(|(row, user)| Ok((row.try_into()?, user.try_into()?))).transpose()
}

/// Gives a live webhook a new secret; the old one stops working at once.
pub async fn regenerate(conn: &mut AsyncPgConnection, id: WebhookId, hash: [u8; 32]) -> StoreResult<Webhook> {
    diesel::update(webhooks::table.find(id.as_uuid()).filter(webhooks::deleted_at.is_null()))
        .set(webhooks::secret_hash.eq(hash.to_vec()))
        .returning(WebhookRow::as_returning())
        .get_result(conn)
        .await?
        .try_into()
}

/// Deletes a webhook: it stops taking posts and its account leaves the channel (a
/// `member_left` to publish). The row stays so its messages still name it.
pub async fn delete(conn: &mut AsyncPgConnection, id: WebhookId) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let row: WebhookRow = diesel::update(webhooks::table.find(id.as_uuid()).filter(webhooks::deleted_at.is_null()))
            .set(webhooks::deleted_at.eq(OffsetDateTime::now_utc()))
            .returning(WebhookRow::as_returning())
            .get_result(conn)
            .await?;
        let account = crate::users::summary(conn, UserId::from_uuid(row.user_id)).await?;
        crate::channels::leave(conn, ChannelId::from_uuid(row.channel_id), &account).await
    })
    .await
}

/// The webhook behind each of these accounts (for messages marked as a webhook's).
pub(crate) async fn of_accounts(
    conn: &mut AsyncPgConnection,
    accounts: &[Uuid],
) -> StoreResult<HashMap<Uuid, (WebhookId, String)>> {
    let rows: Vec<(Uuid, Uuid, String)> = webhooks::table
        .filter(webhooks::user_id.eq_any(accounts))
        .select((webhooks::user_id, webhooks::id, webhooks::name))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(user, id, name)| (user, (WebhookId::from_uuid(id), name))).collect())
}
