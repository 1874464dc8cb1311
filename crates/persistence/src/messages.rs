//! Messages, threads, reactions and search. Pages are hydrated with a fixed number of
//! queries (authors, attachments, reactions), never one per message.

use std::collections::HashMap;

use diesel::AggregateExpressionMethods as _;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{
    Action, ChannelId, Committed, Denied, Emoji, EventBody, FileMeta, Message, MessageContent, MessageId,
    ReactionDetail, ReactionSummary, UserId, UserSummary,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::events;
use crate::files::FileRow;
use crate::schema::{files, message_attachments, message_nonces, messages, reactions};
use crate::users;

#[derive(Queryable, QueryableByName, Selectable, Insertable, Clone)]
#[diesel(table_name = messages)]
pub(crate) struct MessageRow {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub user_id: Uuid,
    pub seq: i64,
    pub parent_id: Option<Uuid>,
    pub content: String,
    pub reply_count: i64,
    pub created_at: OffsetDateTime,
    pub edited_at: Option<OffsetDateTime>,
    pub deleted: bool,
}

/// Turns rows into messages as `viewer` sees them (`me` in reactions).
pub(crate) async fn hydrate(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
    viewer: Option<UserId>,
) -> StoreResult<Vec<Message>> {
    assemble(conn, rows, viewer, true, true).await
}

/// Messages just inserted: they have no reactions yet, and attachments only if
/// `with_attachments`, so the writer's hot path skips those queries.
pub(crate) async fn hydrate_fresh(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
    with_attachments: bool,
) -> StoreResult<Vec<Message>> {
    assemble(conn, rows, None, false, with_attachments).await
}

async fn assemble(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
    viewer: Option<UserId>,
    with_reactions: bool,
    with_attachments: bool,
) -> StoreResult<Vec<Message>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut author_ids: Vec<Uuid> = rows.iter().map(|r| r.user_id).collect();
    author_ids.sort_unstable();
    author_ids.dedup();
    let authors: HashMap<UserId, UserSummary> =
        users::summaries(conn, &author_ids).await?.into_iter().map(|u| (u.id, u)).collect();
    let mut attachments = if with_attachments { attachments_of(conn, &ids).await? } else { HashMap::new() };
    let mut reactions = if with_reactions { reaction_summaries(conn, &ids, viewer).await? } else { HashMap::new() };
    rows.into_iter()
        .map(|row| {
            let user = authors
                .get(&UserId::from_uuid(row.user_id))
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("message author missing".into()))?;
            let message_attachments = attachments.remove(&row.id).unwrap_or_default();
            let message_reactions = reactions.remove(&row.id).unwrap_or_default();
            Ok(message_from_parts(row, user, message_attachments, message_reactions))
        })
        .collect()
}

/// The one place a message row and what hangs off it become a [`Message`]; every way of
/// reading messages (hydration here, the one-statement history page in `history`) ends here.
pub(crate) fn message_from_parts(
    row: MessageRow,
    user: UserSummary,
    attachments: Vec<FileMeta>,
    reactions: Vec<ReactionSummary>,
) -> Message {
    Message {
        id: MessageId::from_uuid(row.id),
        content: row.content,
        user_id: user.id,
        channel_id: ChannelId::from_uuid(row.channel_id),
        created_at: row.created_at,
        seq: row.seq,
        parent_id: row.parent_id.map(MessageId::from_uuid),
        reply_count: row.reply_count,
        edited_at: row.edited_at,
        deleted: row.deleted,
        user,
        attachments,
        reactions,
    }
}

async fn attachments_of(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, Vec<FileMeta>>> {
    let rows: Vec<(Uuid, FileRow)> = message_attachments::table
        .inner_join(files::table)
        .filter(message_attachments::message_id.eq_any(ids))
        .order((message_attachments::message_id, message_attachments::position))
        .select((message_attachments::message_id, FileRow::as_select()))
        .load(conn)
        .await?;
    let mut map: HashMap<Uuid, Vec<FileMeta>> = HashMap::new();
    for (message_id, file) in rows {
        map.entry(message_id).or_default().push(file.into());
    }
    Ok(map)
}

#[derive(QueryableByName)]
struct ReactionGroup {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Bool)]
    me: bool,
}

async fn reaction_summaries(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    viewer: Option<UserId>,
) -> StoreResult<HashMap<Uuid, Vec<ReactionSummary>>> {
    let groups: Vec<ReactionGroup> = diesel::sql_query(
        "SELECT message_id, emoji, count(*) AS count, coalesce(bool_or(user_id = $2), false) AS me \
         FROM reactions WHERE message_id = ANY($1) \
         GROUP BY message_id, emoji ORDER BY message_id, min(created_at), emoji",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<SqlUuid, _>(viewer.map_or(Uuid::nil(), |v| v.as_uuid()))
    .load(conn)
    .await?;
    let mut map: HashMap<Uuid, Vec<ReactionSummary>> = HashMap::new();
    for group in groups {
        map.entry(group.message_id).or_default().push(ReactionSummary {
            emoji: Emoji::parse(&group.emoji)?,
            count: group.count,
            me: group.me,
        });
    }
    Ok(map)
}

pub(crate) async fn row(conn: &mut AsyncPgConnection, id: MessageId) -> StoreResult<MessageRow> {
    Ok(messages::table.find(id.as_uuid()).select(MessageRow::as_select()).first(conn).await?)
}

/// The channel a message belongs to, for the access check.
pub async fn channel_of(conn: &mut AsyncPgConnection, id: MessageId) -> StoreResult<ChannelId> {
    Ok(ChannelId::from_uuid(messages::table.find(id.as_uuid()).select(messages::channel_id).first(conn).await?))
}

pub async fn get(conn: &mut AsyncPgConnection, id: MessageId, viewer: UserId) -> StoreResult<Message> {
    let row = row(conn, id).await?;
    hydrate(conn, vec![row], Some(viewer)).await?.pop().ok_or(StoreError::NotFound)
}

/// A thread's replies, oldest first, after `after_seq`.
pub async fn replies(
    conn: &mut AsyncPgConnection,
    parent: MessageId,
    after_seq: i64,
    limit: i64,
    viewer: UserId,
) -> StoreResult<Vec<Message>> {
    let rows = messages::table
        .filter(messages::parent_id.eq(parent.as_uuid()))
        .filter(messages::seq.gt(after_seq))
        .order(messages::seq.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    hydrate(conn, rows, Some(viewer)).await
}

/// Replaces a message's content and writes `message_updated`. Only its author may, and
/// only while they may post in the channel, decided under the channel lock.
pub async fn edit(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    by: UserId,
    content: &MessageContent,
) -> StoreResult<Committed<Message>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, _) = events::lock_and_authorize(conn, channel_id, by, Action::Post).await?;
        let (author, _) = author(conn, id).await?;
        if author != by {
            return Err(StoreError::Denied(Denied::Forbidden("only the author may edit a message")));
        }
        let updated = diesel::update(messages::table.find(id.as_uuid()).filter(messages::deleted.eq(false)))
            .set((messages::content.eq(content.as_str()), messages::edited_at.eq(OffsetDateTime::now_utc())))
            .returning(MessageRow::as_returning())
            .get_result(conn)
            .await?;
        let message = hydrate(conn, vec![updated], None).await?.pop().ok_or(StoreError::NotFound)?;
        let events = events::append(
            conn,
            channel_id,
            last_seq,
            vec![EventBody::MessageUpdated { message: Box::new(message.clone()) }],
        )
        .await?;
        Ok(Committed::new(message, events))
    })
    .await
}

/// Turns a message into a tombstone: content emptied, attachments and reactions removed,
/// the row (and its seq, its place in a thread) kept. Deleting twice changes nothing. The
/// author or the channel's owner may, decided under the channel lock.
pub async fn delete(conn: &mut AsyncPgConnection, id: MessageId, by: UserId) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, access) = events::lock_and_authorize(conn, channel_id, by, Action::Read).await?;
        let (author, _) = author(conn, id).await?;
        if author != by && access.role != domain::Role::Owner {
            return Err(StoreError::Denied(Denied::Forbidden(
                "only the author or the channel owner may delete a message",
            )));
        }
        let deleted: Option<Option<Uuid>> =
            diesel::update(messages::table.find(id.as_uuid()).filter(messages::deleted.eq(false)))
                .set((messages::content.eq(""), messages::deleted.eq(true)))
                .returning(messages::parent_id)
                .get_result(conn)
                .await
                .optional()?;
        let Some(parent_id) = deleted else {
            return Ok(Committed::new((), Vec::new()));
        };
        diesel::delete(message_attachments::table.filter(message_attachments::message_id.eq(id.as_uuid())))
            .execute(conn)
            .await?;
        diesel::delete(reactions::table.filter(reactions::message_id.eq(id.as_uuid()))).execute(conn).await?;
        let deleted = EventBody::MessageDeleted { message_id: id, parent_id: parent_id.map(MessageId::from_uuid) };
        events::append_one(conn, channel_id, last_seq, Some(deleted)).await
    })
    .await
}

/// The author of a message and whether it is deleted.
pub async fn author(conn: &mut AsyncPgConnection, id: MessageId) -> StoreResult<(UserId, bool)> {
    let (user, deleted): (Uuid, bool) =
        messages::table.find(id.as_uuid()).select((messages::user_id, messages::deleted)).first(conn).await?;
    Ok((UserId::from_uuid(user), deleted))
}

/// Adds a reaction (idempotent per user and emoji); writes `reaction_added` when new.
/// A message carries at most [`domain::message::MAX_DISTINCT_REACTIONS`] different emoji:
/// a new one beyond that is `Conflict("too_many_reactions")`, checked under the channel
/// lock so concurrent reactions cannot overshoot it.
pub async fn react(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    user: &UserSummary,
    emoji: &Emoji,
) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, _) = events::lock_and_authorize(conn, channel_id, user.id, Action::Post).await?;
        let (_, deleted) = author(conn, id).await?;
        if deleted {
            return Err(StoreError::NotFound);
        }
        let on_message = reactions::table.filter(reactions::message_id.eq(id.as_uuid()));
        let emoji_present: bool =
            diesel::select(diesel::dsl::exists(on_message.filter(reactions::emoji.eq(emoji.as_str()))))
                .get_result(conn)
                .await?;
        if !emoji_present {
            let distinct: i64 =
                on_message.select(diesel::dsl::count(reactions::emoji).aggregate_distinct()).first(conn).await?;
            if distinct >= domain::message::MAX_DISTINCT_REACTIONS {
                return Err(StoreError::Conflict("too_many_reactions"));
            }
        }
        let inserted = diesel::insert_into(reactions::table)
            .values((
                reactions::message_id.eq(id.as_uuid()),
                reactions::emoji.eq(emoji.as_str()),
                reactions::user_id.eq(user.id.as_uuid()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let added = EventBody::ReactionAdded { message_id: id, emoji: emoji.clone(), user: user.clone() };
        events::append_one(conn, channel_id, last_seq, (inserted > 0).then_some(added)).await
    })
    .await
}

/// Removes the user's reaction; writes `reaction_removed` when there was one.
pub async fn unreact(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    user: &UserSummary,
    emoji: &Emoji,
) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, _) = events::lock_and_authorize(conn, channel_id, user.id, Action::Post).await?;
        let removed = diesel::delete(
            reactions::table
                .filter(reactions::message_id.eq(id.as_uuid()))
                .filter(reactions::emoji.eq(emoji.as_str()))
                .filter(reactions::user_id.eq(user.id.as_uuid())),
        )
        .execute(conn)
        .await?;
        let removed_event = EventBody::ReactionRemoved { message_id: id, emoji: emoji.clone(), user: user.clone() };
        events::append_one(conn, channel_id, last_seq, (removed > 0).then_some(removed_event)).await
    })
    .await
}

#[derive(QueryableByName)]
struct ReactionUsers {
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Array<Text>)]
    users: Vec<String>,
    #[diesel(sql_type = Bool)]
    me: bool,
}

/// How many reacting usernames are listed per emoji (the count is always exact).
pub const REACTION_USERS_SHOWN: i64 = 100;

pub async fn reaction_details(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    viewer: UserId,
) -> StoreResult<Vec<ReactionDetail>> {
    let groups: Vec<ReactionUsers> = diesel::sql_query(
        "SELECT r.emoji, count(*) AS count, \
                (array_agg(u.username ORDER BY r.created_at, u.username))[1:$3] AS users, \
                coalesce(bool_or(r.user_id = $2), false) AS me \
         FROM reactions r JOIN users u ON u.id = r.user_id \
         WHERE r.message_id = $1 GROUP BY r.emoji ORDER BY min(r.created_at), r.emoji",
    )
    .bind::<SqlUuid, _>(id.as_uuid())
    .bind::<SqlUuid, _>(viewer.as_uuid())
    .bind::<BigInt, _>(REACTION_USERS_SHOWN)
    .load(conn)
    .await?;
    groups
        .into_iter()
        .map(|g| Ok(ReactionDetail { emoji: Emoji::parse(&g.emoji)?, count: g.count, users: g.users, me: g.me }))
        .collect()
}

#[derive(QueryableByName)]
struct SearchHit {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = diesel::sql_types::Float4)]
    rank: f32,
}

/// Full-text search over the messages of channels the user is a member of (so never a
/// private channel of others, nor one they are banned from), best match first, then newest.
/// `before` continues after the (rank, id) of the previous page's last hit.
pub async fn search(
    conn: &mut AsyncPgConnection,
    user: UserId,
    query: &domain::SearchText,
    channel: Option<ChannelId>,
    before: Option<(f32, Uuid)>,
    limit: i64,
) -> StoreResult<Vec<(Message, f32)>> {
    let hits: Vec<SearchHit> = diesel::sql_query(
        "SELECT m.id, m.channel_id, m.user_id, m.seq, m.parent_id, m.content, m.reply_count, m.created_at, \
                m.edited_at, m.deleted, ts_rank(m.search, q) AS rank \
         FROM messages m \
         JOIN memberships mb ON mb.channel_id = m.channel_id AND mb.user_id = $1, \
              websearch_to_tsquery('english', $2) q \
         WHERE m.search @@ q AND NOT m.deleted \
           AND ($3::uuid IS NULL OR m.channel_id = $3) \
           AND ($4::real IS NULL OR (ts_rank(m.search, q), m.id) < ($4, $5)) \
         ORDER BY rank DESC, m.id DESC LIMIT $6",
    )
    .bind::<SqlUuid, _>(user.as_uuid())
    .bind::<Text, _>(query.as_str())
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(channel.map(|c| c.as_uuid()))
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Float4>, _>(before.map(|b| b.0))
    .bind::<SqlUuid, _>(before.map_or(Uuid::nil(), |b| b.1))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let ranks: Vec<f32> = hits.iter().map(|h| h.rank).collect();
    let messages = hydrate(conn, hits.into_iter().map(|h| h.message).collect(), Some(user)).await?;
    Ok(messages.into_iter().zip(ranks).collect())
}

/// Forgets idempotency nonces older than `cutoff` (24 hours).
pub async fn purge_nonces(conn: &mut AsyncPgConnection, cutoff: OffsetDateTime) -> StoreResult<usize> {
    Ok(diesel::delete(message_nonces::table.filter(message_nonces::created_at.lt(cutoff))).execute(conn).await?)
}
