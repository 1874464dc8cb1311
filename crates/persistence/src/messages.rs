//! Messages, threads, reactions and search. Pages are hydrated with a fixed number of
//! queries (authors, attachments, reactions), never one per message.

use std::collections::HashMap;

use diesel::AggregateExpressionMethods as _;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{
    Action, AuditAction, AuditReason, AuditRecord, ChannelId, Committed, Denied, Emoji, EventBody, FileMeta,
    MentionNotice, MentionedUser, Message, MessageContent, MessageId, ReactionDetail, ReactionSummary, UserId,
    UserSummary,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::events;
use crate::files::FileRow;
use crate::schema::{files, message_attachments, message_nonces, messages, reactions};
use crate::users;
use crate::{audit, mentions};

#[derive(Queryable, QueryableByName, Selectable, Clone)]
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
    pub mention_ids: Vec<Uuid>,
    pub mentions_everyone: bool,
    pub pinned_at: Option<OffsetDateTime>,
    pub pinned_by: Option<Uuid>,
    /// The name a webhook's message shows; `None` for everyone else's.
    pub webhook_username: Option<String>,
}

/// New messages (`$3`) of one channel (`$1`), all created at `$2`: not yet edited, pinned,
/// replied to or deleted.
const INSERT_FRESH: &str = "INSERT INTO messages \
        (id, channel_id, user_id, seq, parent_id, content, reply_count, created_at, deleted, \
         mention_ids, mentions_everyone, webhook_username) \
    SELECT r.id, $1, r.user_id, r.seq, r.parent_id, r.content, 0, $2, false, \
        r.mention_ids, r.mentions_everyone, r.webhook_username \
    FROM jsonb_to_recordset($3) AS r(id uuid, user_id uuid, seq bigint, parent_id uuid, \
        content text, mention_ids uuid[], mentions_everyone boolean, webhook_username text)";

/// Inserts messages just written, in one statement of fixed text (see [`crate::bulk`]).
pub(crate) async fn insert_fresh(
    conn: &mut AsyncPgConnection,
    channel: Uuid,
    created_at: OffsetDateTime,
    rows: &[MessageRow],
) -> StoreResult<()> {
    insert_fresh_statement(channel, created_at, rows).execute(conn).await?;
    Ok(())
}

/// The statement [`insert_fresh`] runs, for a caller that pipelines it with another.
pub(crate) fn insert_fresh_statement(
    channel: Uuid,
    created_at: OffsetDateTime,
    rows: &[MessageRow],
) -> crate::bulk::Rows {
    debug_assert!(rows.iter().all(|r| r.channel_id == channel
        && r.created_at == created_at
        && r.reply_count == 0
        && !r.deleted
        && r.edited_at.is_none()
        && r.pinned_at.is_none()
        && r.pinned_by.is_none()));
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "user_id": r.user_id,
                "seq": r.seq,
                "parent_id": r.parent_id,
                "content": r.content,
                "mention_ids": r.mention_ids,
                "mentions_everyone": r.mentions_everyone,
                "webhook_username": r.webhook_username,
            })
        })
        .collect();
    crate::bulk::Rows { sql: INSERT_FRESH, channel, at: created_at, rows: rows.into(), number: None }
}

/// Turns rows into messages as `viewer` sees them (`me` in reactions).
pub(crate) async fn hydrate(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
    viewer: Option<UserId>,
) -> StoreResult<Vec<Message>> {
    assemble(conn, rows, viewer, true, true, &HashMap::new()).await
}

/// Messages just written (or about to be): they have no reactions yet, and attachments only
/// if `with_attachments`; people in `known` (the authors, read with the batch's facts) are
/// not asked again. So a plain message costs no query at all.
pub(crate) async fn hydrate_fresh(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
    with_attachments: bool,
    known: &HashMap<UserId, UserSummary>,
) -> StoreResult<Vec<Message>> {
    assemble(conn, rows, None, false, with_attachments, known).await
}

async fn assemble(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
    viewer: Option<UserId>,
    with_reactions: bool,
    with_attachments: bool,
    known: &HashMap<UserId, UserSummary>,
) -> StoreResult<Vec<Message>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    // Authors and mentioned users in one lookup.
    let mut people: Vec<Uuid> =
        rows.iter().flat_map(|r| std::iter::once(r.user_id).chain(r.mention_ids.iter().copied())).collect();
    people.retain(|person| !known.contains_key(&UserId::from_uuid(*person)));
    people.sort_unstable();
    people.dedup();
    let fetched: HashMap<UserId, UserSummary> = if people.is_empty() {
        HashMap::new()
    } else {
        users::summaries(conn, &people).await?.into_iter().map(|u| (u.id, u)).collect()
    };
    let person = |id: Uuid| {
        let id = UserId::from_uuid(id);
        known.get(&id).or_else(|| fetched.get(&id))
    };
    let mut attachments = if with_attachments { attachments_of(conn, &ids).await? } else { HashMap::new() };
    let mut reactions = if with_reactions { reaction_summaries(conn, &ids, viewer).await? } else { HashMap::new() };
    // Only messages a webhook posted cost this query.
    let hook_accounts: Vec<Uuid> = rows.iter().filter(|r| r.webhook_username.is_some()).map(|r| r.user_id).collect();
    let hooks = if hook_accounts.is_empty() {
        HashMap::new()
    } else {
        crate::webhooks::of_accounts(conn, &hook_accounts).await?
    };
    rows.into_iter()
        .map(|row| {
            let user =
                person(row.user_id).cloned().ok_or_else(|| StoreError::Corrupt("message author missing".into()))?;
            let mentions = row
                .mention_ids
                .iter()
                .filter_map(|id| person(*id))
                .map(|u| MentionedUser { id: u.id, username: u.username.clone() })
                .collect();
            let webhook = row.webhook_username.clone().and_then(|username| {
                hooks.get(&row.user_id).map(|(id, name)| domain::WebhookTag { id: *id, name: name.clone(), username })
            });
            let parts = Parts {
                user,
                attachments: attachments.remove(&row.id).unwrap_or_default(),
                reactions: reactions.remove(&row.id).unwrap_or_default(),
                mentions,
                webhook,
            };
            Ok(message_from_parts(row, parts))
        })
        .collect()
}

/// The one place a message row and what hangs off it become a [`Message`]; every way of
/// reading messages (hydration here, the one-statement history page in `history`) ends here.
pub(crate) fn message_from_parts(row: MessageRow, parts: Parts) -> Message {
    Message {
        id: MessageId::from_uuid(row.id),
        content: row.content,
        user_id: parts.user.id,
        channel_id: ChannelId::from_uuid(row.channel_id),
        created_at: row.created_at,
        seq: row.seq,
        parent_id: row.parent_id.map(MessageId::from_uuid),
        reply_count: row.reply_count,
        edited_at: row.edited_at,
        deleted: row.deleted,
        user: parts.user,
        attachments: parts.attachments,
        reactions: parts.reactions,
        mentions: parts.mentions,
        mentions_everyone: row.mentions_everyone,
        pinned: row.pinned_at.is_some(),
        webhook: parts.webhook,
    }
}

/// What a message row needs from other tables to become a [`Message`].
pub(crate) struct Parts {
    pub user: UserSummary,
    pub attachments: Vec<FileMeta>,
    pub reactions: Vec<ReactionSummary>,
    /// The row's `mention_ids` with their usernames, in the row's order.
    pub mentions: Vec<MentionedUser>,
    /// For a webhook's message: which webhook, with the row's `webhook_username`.
    pub webhook: Option<domain::WebhookTag>,
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

/// Replaces a message's content, re-resolves its mentions and writes `message_updated`;
/// users the new text mentions who were not notified before get a `mention` frame. Only its
/// author may, and only while they may post in the channel, decided under the channel lock.
pub async fn edit(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    by: UserId,
    content: &MessageContent,
) -> StoreResult<Committed<Message>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, access) = events::lock_and_authorize(conn, channel_id, by, Action::Post).await?;
        let (author, _) = author(conn, id).await?;
        if author != by {
            return Err(StoreError::Denied(Denied::Forbidden("only the author may edit a message")));
        }
        let channel = &access.channel;
        let resolved =
            mentions::resolve(conn, channel_id, channel.kind, channel.is_private, &[(by, content.as_str())]).await?;
        let resolved = resolved.into_iter().next().unwrap_or_default();
        let mention_ids: Vec<Uuid> = resolved.named.iter().map(|u| u.id.as_uuid()).collect();
        let updated = diesel::update(messages::table.find(id.as_uuid()).filter(messages::deleted.eq(false)))
            .set((
                messages::content.eq(content.as_str()),
                messages::edited_at.eq(OffsetDateTime::now_utc()),
                messages::mention_ids.eq(&mention_ids),
                messages::mentions_everyone.eq(resolved.everyone),
            ))
            .returning(MessageRow::as_returning())
            .get_result(conn)
            .await?;
        let before = mentions::remove(conn, id).await?;
        mentions::insert(conn, channel_id, [(id, updated.seq, resolved.notified.as_slice())]).await?;
        let message = hydrate(conn, vec![updated], None).await?.pop().ok_or(StoreError::NotFound)?;
        let events = events::append(
            conn,
            channel_id,
            last_seq,
            vec![EventBody::MessageUpdated { message: Box::new(message.clone()) }],
        )
        .await?;
        let newly: Vec<UserId> = resolved.notified.into_iter().filter(|u| !before.contains(u)).collect();
        let notice = MentionNotice { users: newly, message: Box::new(message.clone()) };
        Ok(Committed::new(message, events).with_notices(vec![notice]))
    })
    .await
}

/// Turns a message into a tombstone: content emptied, attachments, reactions, mentions and
/// its pin removed, the row (and its seq, its place in a thread) kept. Deleting twice
/// changes nothing. Its author may, and the channel's owner and moderators
/// ([`domain::may_delete_message`]), decided under the channel lock; a deletion by someone
/// else goes into the audit log with `reason`.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    by: UserId,
    reason: Option<&AuditReason>,
) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, access) = events::lock_and_authorize(conn, channel_id, by, Action::Read).await?;
        let (author, _) = author(conn, id).await?;
        let author_role =
            if author == by { access.role } else { crate::channels::access(conn, channel_id, author).await?.role };
        domain::may_delete_message(access.role, author == by, author_role).map_err(StoreError::Denied)?;
        let deleted: Option<Option<Uuid>> =
            diesel::update(messages::table.find(id.as_uuid()).filter(messages::deleted.eq(false)))
                .set((
                    messages::content.eq(""),
                    messages::deleted.eq(true),
                    messages::mention_ids.eq(Vec::<Uuid>::new()),
                    messages::mentions_everyone.eq(false),
                    messages::pinned_at.eq(None::<OffsetDateTime>),
                    messages::pinned_by.eq(None::<Uuid>),
                ))
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
        mentions::remove(conn, id).await?;
        if author != by {
            audit::record(
                conn,
                AuditRecord {
                    channel_id,
                    action: AuditAction::MessageDeleted,
                    actor: by,
                    target_user: Some(author),
                    target_message: Some(id),
                    reason,
                },
            )
            .await?;
        }
        let deleted = EventBody::MessageDeleted { message_id: id, parent_id: parent_id.map(MessageId::from_uuid) };
        events::append_one(conn, channel_id, last_seq, Some(deleted)).await
    })
    .await
}

/// The most pins a channel holds.
pub const MAX_PINS: i64 = 100;

/// Pins (or, with `pin` false, unpins) a message for the channel; idempotent. Members may,
/// decided under the channel lock, where the cap of [`MAX_PINS`] is checked too
/// (`Conflict("too_many_pins")`). Writes `message_pinned` / `message_unpinned` on a change.
pub async fn set_pinned(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    by: &UserSummary,
    pin: bool,
) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let channel_id = channel_of(conn, id).await?;
        let (last_seq, _) = events::lock_and_authorize(conn, channel_id, by.id, Action::Post).await?;
        let target = messages::table.find(id.as_uuid());
        let (deleted, pinned): (bool, bool) =
            target.select((messages::deleted, messages::pinned_at.is_not_null())).first(conn).await?;
        if deleted {
            return Err(StoreError::NotFound);
        }
        if pinned == pin {
            return Ok(Committed::new((), Vec::new()));
        }
        let body = if pin {
            let pins: i64 = messages::table
                .filter(messages::channel_id.eq(channel_id.as_uuid()))
                .filter(messages::pinned_at.is_not_null())
                .count()
                .get_result(conn)
                .await?;
            if pins >= MAX_PINS {
                return Err(StoreError::Conflict("too_many_pins"));
            }
            diesel::update(target)
                .set((messages::pinned_at.eq(OffsetDateTime::now_utc()), messages::pinned_by.eq(by.id.as_uuid())))
                .execute(conn)
                .await?;
            EventBody::MessagePinned { message_id: id, by: by.clone() }
        } else {
            diesel::update(target)
                .set((messages::pinned_at.eq(None::<OffsetDateTime>), messages::pinned_by.eq(None::<Uuid>)))
                .execute(conn)
                .await?;
            EventBody::MessageUnpinned { message_id: id, by: by.clone() }
        };
        events::append_one(conn, channel_id, last_seq, Some(body)).await
    })
    .await
}

/// A channel's pinned messages, the newest pin first (at most [`MAX_PINS`], so one page).
pub async fn pins(conn: &mut AsyncPgConnection, channel_id: ChannelId, viewer: UserId) -> StoreResult<Vec<Message>> {
    let rows = messages::table
        .filter(messages::channel_id.eq(channel_id.as_uuid()))
        .filter(messages::pinned_at.is_not_null())
        .order((messages::pinned_at.desc(), messages::id.desc()))
        .limit(MAX_PINS)
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    hydrate(conn, rows, Some(viewer)).await
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
        // The hint history pages read (migration 000009); written by the first reaction only.
        diesel::sql_query("UPDATE messages SET has_reactions = true WHERE id = $1 AND NOT has_reactions")
            .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
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
                m.edited_at, m.deleted, m.mention_ids, m.mentions_everyone, m.pinned_at, m.pinned_by, \
                m.webhook_username, ts_rank(m.search, q) AS rank \
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
