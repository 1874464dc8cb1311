//! Who a message mentions and whom it notifies (docs/api.md section 11).
//!
//! The text is parsed by [`domain::mention::parse`]; here names become users, and only
//! readers of the channel count (members, or anyone not banned from a public channel). The
//! `mentions` table holds one row per notified user — named readers and, for `@channel` or
//! `@here`, every member — never the author and never someone who blocked the author. Rows
//! are written and removed in the transaction that writes, edits or deletes the message,
//! under the channel lock, so `mention_count` is exact however many post at once.

use std::collections::{HashMap, HashSet};

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{ChannelId, ChannelKind, MentionedUser, Message, MessageId, UserId, Username};
use uuid::Uuid;

use crate::error::StoreResult;
use crate::schema::{blocks, channel_bans, memberships, mentions, messages, users};

/// What one message's text comes to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    /// Readers named in the text, in order of first mention.
    pub named: Vec<MentionedUser>,
    pub everyone: bool,
    /// Who is notified: rows for the `mentions` table and the `mention` frame.
    pub notified: Vec<UserId>,
}

/// Resolves the mentions of messages `(author, text)` about to be written in `channel_id`
/// (whose kind and privacy the caller read under the channel lock).
pub(crate) async fn resolve(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    kind: ChannelKind,
    is_private: bool,
    texts: &[(UserId, &str)],
) -> StoreResult<Vec<Resolved>> {
    let parsed: Vec<domain::mention::Mentions> = texts.iter().map(|(_, text)| domain::mention::parse(text)).collect();
    if parsed.iter().all(domain::mention::Mentions::is_empty) {
        return Ok(vec![Resolved::default(); texts.len()]);
    }
    let channel = channel_id.as_uuid();
    let wanted: Vec<String> =
        parsed.iter().flat_map(|m| m.usernames.iter().cloned()).collect::<HashSet<_>>().into_iter().collect();
    let named_users: Vec<(Uuid, String)> = if wanted.is_empty() {
        Vec::new()
    } else {
        users::table
            .filter(sql::<Text>("lower(username)").eq_any(&wanted))
            .select((users::id, users::username))
            .load(conn)
            .await?
    };
    let ids: Vec<Uuid> = named_users.iter().map(|(id, _)| *id).collect();
    let members: HashSet<Uuid> = if ids.is_empty() {
        HashSet::new()
    } else {
        memberships::table
            .filter(memberships::channel_id.eq(channel))
            .filter(memberships::user_id.eq_any(&ids))
            .select(memberships::user_id)
            .load::<Uuid>(conn)
            .await?
            .into_iter()
            .collect()
    };
    // A public channel is readable by anyone not banned from it.
    let public = kind == ChannelKind::Channel && !is_private;
    let outsiders: Vec<Uuid> = ids.iter().filter(|id| !members.contains(id)).copied().collect();
    let banned: HashSet<Uuid> = if public && !outsiders.is_empty() {
        channel_bans::table
            .filter(channel_bans::channel_id.eq(channel))
            .filter(channel_bans::user_id.eq_any(&outsiders))
            .select(channel_bans::user_id)
            .load::<Uuid>(conn)
            .await?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    let readers: HashMap<String, MentionedUser> = named_users
        .into_iter()
        .filter(|(id, _)| members.contains(id) || (public && !banned.contains(id)))
        .filter_map(|(id, name)| {
            let username = Username::parse(&name).ok()?;
            Some((username.key(), MentionedUser { id: UserId::from_uuid(id), username }))
        })
        .collect();
    let everyone: Vec<Uuid> = if parsed.iter().any(|m| m.everyone) {
        memberships::table.filter(memberships::channel_id.eq(channel)).select(memberships::user_id).load(conn).await?
    } else {
        Vec::new()
    };

    let mut resolved: Vec<Resolved> = parsed
        .iter()
        .zip(texts)
        .map(|(mentions, (author, _))| {
            let named: Vec<MentionedUser> =
                mentions.usernames.iter().filter_map(|name| readers.get(name).cloned()).collect();
            let mut notified: Vec<UserId> = named.iter().map(|u| u.id).collect();
            if mentions.everyone {
                notified.extend(everyone.iter().map(|id| UserId::from_uuid(*id)));
            }
            let mut seen = HashSet::new();
            notified.retain(|id| id != author && seen.insert(*id));
            Resolved { named, everyone: mentions.everyone, notified }
        })
        .collect();

    // Mentions by a blocked user notify nothing.
    let candidates: Vec<Uuid> = resolved
        .iter()
        .flat_map(|r| r.notified.iter().map(UserId::as_uuid))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if !candidates.is_empty() {
        let authors: Vec<Uuid> = texts.iter().map(|(author, _)| author.as_uuid()).collect();
        let blocked: HashSet<(Uuid, Uuid)> = blocks::table
            .filter(blocks::blocked_id.eq_any(&authors))
            .filter(blocks::blocker_id.eq_any(&candidates))
            .select((blocks::blocker_id, blocks::blocked_id))
            .load::<(Uuid, Uuid)>(conn)
            .await?
            .into_iter()
            .collect();
        if !blocked.is_empty() {
            for (resolved, (author, _)) in resolved.iter_mut().zip(texts) {
                resolved.notified.retain(|user| !blocked.contains(&(user.as_uuid(), author.as_uuid())));
            }
        }
    }
    Ok(resolved)
}

/// Records whom each message notifies.
pub(crate) async fn insert(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    rows: impl IntoIterator<Item = (MessageId, i64, &[UserId])>,
) -> StoreResult<()> {
    let values: Vec<_> = rows
        .into_iter()
        .flat_map(|(message, seq, users)| {
            users.iter().map(move |user| {
                (
                    mentions::user_id.eq(user.as_uuid()),
                    mentions::message_id.eq(message.as_uuid()),
                    mentions::channel_id.eq(channel_id.as_uuid()),
                    mentions::seq.eq(seq),
                )
            })
        })
        .collect();
    // A @channel in a large channel is one row per member; stay under the 65,535 bind
    // parameters of one statement.
    for chunk in values.chunks(10_000) {
        diesel::insert_into(mentions::table).values(chunk).on_conflict_do_nothing().execute(conn).await?;
    }
    Ok(())
}

/// Who a message notifies now, and forgets them (before an edit re-resolves it, or when it
/// is deleted).
pub(crate) async fn remove(conn: &mut AsyncPgConnection, message: MessageId) -> StoreResult<Vec<UserId>> {
    let ids: Vec<Uuid> = diesel::delete(mentions::table.filter(mentions::message_id.eq(message.as_uuid())))
        .returning(mentions::user_id)
        .get_results(conn)
        .await?;
    Ok(ids.into_iter().map(UserId::from_uuid).collect())
}

/// Messages that mention `user`, newest first, before the message id `before` — only from
/// channels the user can still read (a member, or not banned from a public channel).
pub async fn page(
    conn: &mut AsyncPgConnection,
    user: UserId,
    before: Option<MessageId>,
    limit: i64,
) -> StoreResult<Vec<Message>> {
    let me = user.as_uuid();
    let readable = sql::<Bool>("(EXISTS (SELECT 1 FROM memberships m WHERE m.channel_id = mentions.channel_id AND m.user_id = ")
        .bind::<diesel::sql_types::Uuid, _>(me)
        .sql(") OR EXISTS (SELECT 1 FROM channels c WHERE c.id = mentions.channel_id AND c.kind = 'channel' AND NOT c.is_private AND NOT EXISTS (SELECT 1 FROM channel_bans b WHERE b.channel_id = c.id AND b.user_id = ")
        .bind::<diesel::sql_types::Uuid, _>(me)
        .sql(")))");
    let mut query = mentions::table
        .inner_join(messages::table.on(messages::id.eq(mentions::message_id)))
        .filter(mentions::user_id.eq(me))
        .filter(readable)
        .select(crate::messages::MessageRow::as_select())
        .order(mentions::message_id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(mentions::message_id.lt(before.as_uuid()));
    }
    let rows = query.load(conn).await?;
    crate::messages::hydrate(conn, rows, Some(user)).await
}
