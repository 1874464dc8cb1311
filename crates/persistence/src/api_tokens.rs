//! Personal API tokens: only the SHA-256 of each secret is stored (the caller hashes it;
//! this crate never sees a secret).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{ApiToken, ApiTokenId, TokenName, UserId, Username};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::{api_tokens, users};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub(crate) struct ApiTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub token_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

impl TryFrom<ApiTokenRow> for ApiToken {
    type Error = StoreError;
    fn try_from(row: ApiTokenRow) -> StoreResult<Self> {
        Ok(ApiToken {
            id: ApiTokenId::from_uuid(row.id),
            user_id: UserId::from_uuid(row.user_id),
            name: TokenName::parse(&row.name)?,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// What creating a token stores.
pub struct NewApiToken<'a> {
    pub id: ApiTokenId,
    pub user: UserId,
    pub name: &'a TokenName,
    pub hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

pub async fn create(conn: &mut AsyncPgConnection, new: NewApiToken<'_>) -> StoreResult<ApiToken> {
    let row = ApiTokenRow {
        id: new.id.as_uuid(),
        user_id: new.user.as_uuid(),
        name: new.name.as_str().to_owned(),
        token_hash: new.hash.to_vec(),
        created_at: new.created_at,
        expires_at: new.expires_at,
        last_used_at: None,
    };
    diesel::insert_into(api_tokens::table)
        .values(&row)
        .returning(ApiTokenRow::as_returning())
        .get_result(conn)
        .await?
        .try_into()
}

/// The tokens of `user` in creation order, after the token `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: UserId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<ApiToken>> {
    let mut query = api_tokens::table
        .filter(api_tokens::user_id.eq(user.as_uuid()))
        .select(ApiTokenRow::as_select())
        .order(api_tokens::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(api_tokens::id.gt(after));
    }
    let rows: Vec<ApiTokenRow> = query.load(conn).await?;
    rows.into_iter().map(ApiToken::try_from).collect()
}

/// Every token of `user` (a bot has one; a person a handful).
pub async fn all_of(conn: &mut AsyncPgConnection, user: UserId) -> StoreResult<Vec<ApiToken>> {
    let rows: Vec<ApiTokenRow> = api_tokens::table
        .filter(api_tokens::user_id.eq(user.as_uuid()))
        .select(ApiTokenRow::as_select())
        .load(conn)
        .await?;
    rows.into_iter().map(ApiToken::try_from).collect()
}

/// Deletes `user`'s token `id` and returns it; NotFound when it is not theirs.
pub async fn delete(conn: &mut AsyncPgConnection, user: UserId, id: ApiTokenId) -> StoreResult<ApiToken> {
    diesel::delete(api_tokens::table.find(id.as_uuid()).filter(api_tokens::user_id.eq(user.as_uuid())))
        .returning(ApiTokenRow::as_returning())
        .get_result(conn)
        .await?
        .try_into()
}

/// What authenticating with a token needs: the token and its account's name.
pub struct TokenOwner {
    pub token: ApiToken,
    pub username: Username,
}

/// The token whose secret hashes to `hash`, with its owner's username; `None` for an unknown
/// (or revoked, hence deleted) token.
pub async fn find_by_hash(conn: &mut AsyncPgConnection, hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>> {
    let found: Option<(ApiTokenRow, String)> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(hash.as_slice()))
        .select((ApiTokenRow::as_select(), users::username))
        .first(conn)
        .await
        .optional()?;
    found
        .map(|(row, username)| Ok(TokenOwner { token: row.try_into()?, username: Username::parse(&username)? }))
        .transpose()
}

/// Records that the tokens were used at `at` (batched by the caller, at most once a minute
/// per token).
pub async fn touch(conn: &mut AsyncPgConnection, ids: &[Uuid], at: OffsetDateTime) -> StoreResult<()> {
    diesel::update(api_tokens::table.filter(api_tokens::id.eq_any(ids)))
        .set(api_tokens::last_used_at.eq(at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates a bot owned by `owner` with its first token, in one transaction: a bot never
/// exists without a way to sign in.
pub async fn create_bot(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    username: &Username,
    display_name: &domain::DisplayName,
    token: NewBotToken<'_>,
) -> StoreResult<(domain::User, ApiToken)> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, StoreError, _>(async |conn| {
        let bot = crate::users::create_bot(conn, owner, username, display_name).await?;
        let token = create(conn, token.for_user(bot.id)).await?;
        Ok((bot, token))
    })
    .await
}

/// A bot's token before the bot's id is known.
pub struct NewBotToken<'a> {
    pub id: ApiTokenId,
    pub name: &'a TokenName,
    pub hash: [u8; 32],
    pub created_at: OffsetDateTime,
}

impl<'a> NewBotToken<'a> {
    fn for_user(self, user: UserId) -> NewApiToken<'a> {
        NewApiToken {
            id: self.id,
            user,
            name: self.name,
            hash: self.hash,
            created_at: self.created_at,
            expires_at: None,
        }
    }
}

/// Replaces every token of `bot` with `token`, in one transaction; returns the old ones,
/// which the caller must revoke (their sockets may be open).
pub async fn replace_bot_token(
    conn: &mut AsyncPgConnection,
    bot: UserId,
    token: NewBotToken<'_>,
) -> StoreResult<(ApiToken, Vec<ApiToken>)> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, StoreError, _>(async |conn| {
        let old = delete_all_of(conn, bot).await?;
        let new = create(conn, token.for_user(bot)).await?;
        Ok((new, old))
    })
    .await
}

/// Deletes a bot: its tokens go and it belongs to no one any more (its account stays as the
/// author of its messages). Returns the deleted tokens, which the caller must revoke.
pub async fn retire_bot(conn: &mut AsyncPgConnection, bot: UserId) -> StoreResult<Vec<ApiToken>> {
    use diesel_async::AsyncConnection as _;
    conn.transaction::<_, StoreError, _>(async |conn| {
        let old = delete_all_of(conn, bot).await?;
        crate::users::retire_bot(conn, bot).await?;
        Ok(old)
    })
    .await
}

async fn delete_all_of(conn: &mut AsyncPgConnection, user: UserId) -> StoreResult<Vec<ApiToken>> {
    let rows: Vec<ApiTokenRow> = diesel::delete(api_tokens::table.filter(api_tokens::user_id.eq(user.as_uuid())))
        .returning(ApiTokenRow::as_returning())
        .load(conn)
        .await?;
    rows.into_iter().map(ApiToken::try_from).collect()
}
