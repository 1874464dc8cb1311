//! A page of channel history in one round trip (issue 15).
//!
//! The page used to cost five sequential queries on one pooled connection (access, the
//! cursor's message, the rows, their authors, attachments, reactions). Here one statement
//! reads the channel with the caller's standing in it, resolves the cursor, and returns the
//! page's rows with their author, attachments and reactions folded in by lateral
//! subqueries (JSON arrays), so a page holds a connection for a single round trip.
//!
//! Each of those subqueries runs only for a row that needs it: one with mentions, a webhook
//! name, or the `has_attachments`/`has_reactions` hints (migration 000009), and each looks
//! rows up by key. Most messages need none, and the statement's plan is made once per pooled
//! connection: a per-row lookup planned while a table was small can be a full scan of it
//! for every row once it has grown (`tests/plans.rs`).
//!
//! Each page comes with its [`Version`], read in the same snapshot, so a node may keep the
//! rendered page and serve it again after [`standing`] (one small statement: the access
//! facts and the version) finds the version unchanged.
//!
//! The access decision itself stays `domain::authorize`'s: the caller gets the
//! [`ChannelAccess`] back and must ask it before showing the page.

use std::sync::LazyLock;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Json, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{
    ChannelId, Emoji, FileId, FileMeta, ImageInfo, MentionedUser, Message, MessageId, ReactionSummary, UserId, Username,
};
use serde::Deserialize as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::channels::{ChannelAccess, ChannelRow};
use crate::error::{StoreError, StoreResult};
use crate::messages::{MessageRow, Parts, message_from_parts};
use crate::users::SummaryRow;

/// Where a page starts: a seq from a cursor, or a message of the channel named by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    Seq(i64),
    Message(MessageId),
}

/// Which way a history page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryPage {
    /// The newest messages, newest first.
    Latest,
    /// Messages before this position, newest first.
    Before(Position),
    /// Messages after this position, oldest first.
    After(Position),
}

/// The version of everything a page of one channel shows: the channel's last event (every
/// change to its messages appends one) and the history epoch (author names and image
/// facts, moved by trigger; migration 000010). Two reads of a page with the same version
/// give the same page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub last_seq: i64,
    pub epoch: i64,
}

/// What one history query found.
pub struct History {
    /// The channel and the caller's standing in it: ask `domain::authorize` before showing
    /// anything below.
    pub access: ChannelAccess,
    /// The version of the page below, read in the same snapshot.
    pub version: Version,
    /// The page, or `None` when the position names no message of this channel.
    pub messages: Option<Vec<Message>>,
}

/// The channel, the viewer's standing in it and the version of what a page shows: the
/// columns both statements read (`$1` channel, `$2` viewer).
const STANDING: &str = "c.id, c.name, c.description, c.owner_id, c.is_private, c.kind, c.dm_key, c.last_seq, \
     c.member_count, c.created_at, \
     (SELECT role FROM memberships WHERE channel_id = c.id AND user_id = $2) AS member_role, \
     EXISTS (SELECT 1 FROM channel_bans WHERE channel_id = c.id AND user_id = $2) AS is_banned, \
     (SELECT n FROM history_epoch) AS epoch";

/// The statement for [`standing`]: the page statement's first part alone. Built once: it
/// runs for every kept page a node shows.
static STANDING_SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {STANDING} FROM channels c WHERE c.id = $1"));

/// The three page statements, built once, in the order of [`sql`]'s match.
static PAGE_SQL: LazyLock<[String; 3]> = LazyLock::new(|| {
    [("", "DESC"), ("AND m.seq < a.anchor", "DESC"), ("AND m.seq > a.anchor", "ASC")]
        .map(|(condition, order)| page_sql(condition, order))
});

/// The statement for `page`. Only the keyset condition and the order differ between the
/// three kinds of page, so each is a fixed text (and each uses the partial index
/// `messages_channel_top_level`, checked in `tests/plans.rs`).
///
/// Binds: `$1` channel, `$2` viewer, `$3` cursor seq (or NULL), `$4` cursor message id (or
/// NULL), `$5` row limit. Public for the query-plan tests.
pub fn sql(page: HistoryPage) -> &'static str {
    let [latest, before, after] = &*PAGE_SQL;
    match page {
        HistoryPage::Latest => latest,
        HistoryPage::Before(_) => before,
        HistoryPage::After(_) => after,
    }
}

/// The page statement with `condition` on the keyset and rows in `order` of seq.
fn page_sql(condition: &str, order: &str) -> String {
    format!(
        "WITH a AS MATERIALIZED ( \
           SELECT {STANDING}, \
                  coalesce($3::bigint, (SELECT seq FROM messages WHERE id = $4::uuid AND channel_id = c.id)) \
                    AS anchor \
           FROM channels c WHERE c.id = $1 \
         ) \
         SELECT a.*, p.* FROM a LEFT JOIN LATERAL ( \
           SELECT m.id AS m_id, m.user_id AS m_user_id, m.seq AS m_seq, m.parent_id AS m_parent_id, \
                  m.content AS m_content, m.reply_count AS m_reply_count, m.created_at AS m_created_at, \
                  m.edited_at AS m_edited_at, m.deleted AS m_deleted, \
                  m.mentions_everyone AS m_mentions_everyone, m.pinned_at AS m_pinned_at, \
                  m.webhook_username AS m_webhook_username, \
                  CASE WHEN cardinality(m.mention_ids) > 0 THEN ( \
                    SELECT json_agg(json_build_array(x.id, x.username) ORDER BY x.n) \
                    FROM (SELECT e.id, e.n, (SELECT mu.username FROM users mu WHERE mu.id = e.id) AS username \
                          FROM unnest(m.mention_ids) WITH ORDINALITY AS e(id, n)) x \
                    WHERE x.username IS NOT NULL) END AS mentions, \
                  CASE WHEN m.webhook_username IS NOT NULL THEN ( \
                    SELECT json_build_array(w.id, w.name) FROM webhooks w WHERE w.user_id = m.user_id) END AS webhook, \
                  u.username AS author_username, u.display_name AS author_display_name, \
                  CASE WHEN m.has_attachments THEN ( \
                    SELECT json_agg((SELECT json_build_array(f.id, f.uploader_id, f.filename, f.content_type, f.size, \
                                       f.sha256, (extract(epoch FROM f.created_at) * 1000000)::bigint, f.width, \
                                       f.height, f.has_thumbnail) \
                                     FROM files f WHERE f.id = ma.file_id) ORDER BY ma.position) \
                    FROM message_attachments ma WHERE ma.message_id = m.id) END AS attachments, \
                  CASE WHEN m.has_reactions THEN ( \
                    SELECT json_agg(json_build_array(r.emoji, r.count, r.me) ORDER BY r.first, r.emoji) \
                    FROM (SELECT emoji, count(*) AS count, coalesce(bool_or(user_id = $2), false) AS me, \
                                 min(created_at) AS first \
                          FROM reactions WHERE message_id = m.id GROUP BY emoji) r) END AS reactions \
           FROM messages m JOIN users u ON u.id = m.user_id \
           WHERE m.channel_id = a.id AND m.parent_id IS NULL {condition} \
           ORDER BY m.seq {order} LIMIT $5 \
         ) p ON true"
    )
}

/// The page statement with its binds. Unlike `diesel::sql_query`, whose text diesel cannot
/// know to be fixed and so never caches, this is prepared once per connection and text:
/// planning the statement costs several times more than running it.
struct PageQuery {
    sql: &'static str,
    channel: Uuid,
    viewer: Uuid,
    seq: Option<i64>,
    message: Option<Uuid>,
    limit: i64,
}

impl QueryId for PageQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for PageQuery {
    type SqlType = diesel::sql_types::Untyped;
}

impl QueryFragment<Pg> for PageQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        crate::bulk::write_numbered(self.sql, &mut out, |out, parameter| match parameter {
            b'1' => Some(out.push_bind_param::<SqlUuid, _>(&self.channel)),
            b'2' => Some(out.push_bind_param::<SqlUuid, _>(&self.viewer)),
            b'3' => Some(out.push_bind_param::<Nullable<BigInt>, _>(&self.seq)),
            b'4' => Some(out.push_bind_param::<Nullable<SqlUuid>, _>(&self.message)),
            b'5' => Some(out.push_bind_param::<BigInt, _>(&self.limit)),
            _ => None,
        })
    }
}

#[derive(QueryableByName)]
struct PageRow {
    #[diesel(embed)]
    standing: StandingRow,
    #[diesel(sql_type = Nullable<BigInt>)]
    anchor: Option<i64>,
    #[diesel(embed)]
    message: PageMessage,
}

/// The message half of a page row: all NULL in the one row of an empty page.
#[derive(QueryableByName)]
struct PageMessage {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    m_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    m_user_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    m_seq: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    m_parent_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    m_content: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    m_reply_count: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    m_created_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    m_edited_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Bool>)]
    m_deleted: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    m_mentions_everyone: Option<bool>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    m_pinned_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    m_webhook_username: Option<String>,
    #[diesel(sql_type = Nullable<Json>)]
    mentions: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Json>)]
    webhook: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    author_username: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    author_display_name: Option<String>,
    #[diesel(sql_type = Nullable<Json>)]
    attachments: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Json>)]
    reactions: Option<serde_json::Value>,
}

/// An attachment as the query encodes it: the `files` columns in order, `created_at` in
/// microseconds since the epoch (exactly what `timestamptz` stores).
type AttachmentJson = (Uuid, Uuid, String, String, i64, String, i64, Option<i32>, Option<i32>, bool);
/// A reaction group: emoji, count, whether the viewer is among them.
type ReactionJson = (String, i64, bool);

/// One page of a channel's top-level messages (thread replies live in their thread) as
/// `viewer` sees them, with the channel and the viewer's standing in it, in one statement.
/// `limit` rows at most. `NotFound` when there is no such channel.
#[tracing::instrument(skip(conn))]
pub async fn page(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    viewer: UserId,
    page: HistoryPage,
    limit: i64,
) -> StoreResult<History> {
    let (seq, cursor_message) = match page {
        HistoryPage::Latest => (None, None),
        HistoryPage::Before(position) | HistoryPage::After(position) => match position {
            Position::Seq(seq) => (Some(seq), None),
            Position::Message(id) => (None, Some(id.as_uuid())),
        },
    };
    let query = PageQuery {
        sql: sql(page),
        channel: channel_id.as_uuid(),
        viewer: viewer.as_uuid(),
        seq,
        message: cursor_message,
        limit,
    };
    let rows: Vec<PageRow> = query.load(conn).await?;
    let mut rows = rows.into_iter().peekable();
    let first = rows.peek().ok_or(StoreError::NotFound)?;
    let anchor_found = matches!(page, HistoryPage::Latest) || first.anchor.is_some();
    let mut standing = None;
    let mut messages = Vec::new();
    for PageRow { standing: row_standing, message: row, .. } in rows {
        if row.m_id.is_some() {
            messages.push(message(channel_id, row)?);
        }
        standing.get_or_insert(row_standing);
    }
    let (access, version) = standing.ok_or(StoreError::NotFound)?.into_access(viewer)?;
    Ok(History { access, version, messages: anchor_found.then_some(messages) })
}

/// The `STANDING` columns: the channel, the viewer's membership and ban, the epoch.
#[derive(QueryableByName)]
struct StandingRow {
    #[diesel(embed)]
    channel: ChannelRow,
    #[diesel(sql_type = Nullable<Text>)]
    member_role: Option<String>,
    #[diesel(sql_type = Bool)]
    is_banned: bool,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
}

impl StandingRow {
    fn into_access(self, viewer: UserId) -> StoreResult<(ChannelAccess, Version)> {
        let version = Version { last_seq: self.channel.last_seq, epoch: self.epoch };
        let access = ChannelAccess::from_facts(self.channel, viewer, self.member_role.as_deref(), self.is_banned)?;
        Ok((access, version))
    }
}

/// The channel, `viewer`'s standing in it and the version its pages have now, without the
/// page: what a node that keeps a rendered page asks before showing it again. `NotFound`
/// when there is no such channel.
#[tracing::instrument(skip(conn))]
pub async fn standing(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    viewer: UserId,
) -> StoreResult<(ChannelAccess, Version)> {
    let query = PageQuery {
        sql: &STANDING_SQL,
        channel: channel_id.as_uuid(),
        viewer: viewer.as_uuid(),
        seq: None,
        message: None,
        limit: 0,
    };
    let row: StandingRow = query.get_result(conn).await?;
    row.into_access(viewer)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("history row without {what}"))
}

/// The one place a page row becomes a [`Message`] (through `message_from_parts`, shared
/// with every other way messages are read).
fn message(channel_id: ChannelId, row: PageMessage) -> StoreResult<Message> {
    let user_id = row.m_user_id.ok_or_else(|| corrupt("author"))?;
    let author = SummaryRow {
        id: user_id,
        username: row.author_username.ok_or_else(|| corrupt("username"))?,
        display_name: row.author_display_name.ok_or_else(|| corrupt("display name"))?,
    };
    let message_row = MessageRow {
        id: row.m_id.ok_or_else(|| corrupt("id"))?,
        channel_id: channel_id.as_uuid(),
        user_id,
        seq: row.m_seq.ok_or_else(|| corrupt("seq"))?,
        parent_id: row.m_parent_id,
        content: row.m_content.ok_or_else(|| corrupt("content"))?,
        reply_count: row.m_reply_count.ok_or_else(|| corrupt("reply count"))?,
        created_at: row.m_created_at.ok_or_else(|| corrupt("created_at"))?,
        edited_at: row.m_edited_at,
        deleted: row.m_deleted.ok_or_else(|| corrupt("deleted"))?,
        // Carried by `Parts::mentions` below, with their usernames.
        mention_ids: Vec::new(),
        mentions_everyone: row.m_mentions_everyone.ok_or_else(|| corrupt("mentions_everyone"))?,
        pinned_at: row.m_pinned_at,
        pinned_by: None,
        webhook_username: row.m_webhook_username.clone(),
    };
    let webhook = match (row.m_webhook_username, row.webhook.as_ref()) {
        (Some(username), Some(json)) => {
            let (id, name) =
                <(Uuid, String)>::deserialize(json).map_err(|e| StoreError::Corrupt(format!("webhook: {e}")))?;
            Some(domain::WebhookTag { id: domain::WebhookId::from_uuid(id), name, username })
        }
        _ => None,
    };
    let parts = Parts {
        user: author.try_into()?,
        attachments: attachments(row.attachments.as_ref())?,
        reactions: reactions(row.reactions.as_ref())?,
        mentions: mentions(row.mentions.as_ref())?,
        webhook,
    };
    Ok(message_from_parts(message_row, parts))
}

fn mentions(json: Option<&serde_json::Value>) -> StoreResult<Vec<MentionedUser>> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let users = Vec::<(Uuid, String)>::deserialize(json).map_err(|e| StoreError::Corrupt(format!("mentions: {e}")))?;
    users
        .into_iter()
        .map(|(id, username)| Ok(MentionedUser { id: UserId::from_uuid(id), username: Username::parse(&username)? }))
        .collect()
}

fn attachments(json: Option<&serde_json::Value>) -> StoreResult<Vec<FileMeta>> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let files =
        Vec::<AttachmentJson>::deserialize(json).map_err(|e| StoreError::Corrupt(format!("attachments: {e}")))?;
    files
        .into_iter()
        .map(|(id, uploader_id, filename, content_type, size, sha256, created_us, width, height, has_thumbnail)| {
            let created_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_us) * 1000)
                .map_err(|e| StoreError::Corrupt(format!("attachment created_at: {e}")))?;
            Ok(FileMeta {
                id: FileId::from_uuid(id),
                filename,
                content_type,
                size,
                sha256,
                created_at,
                uploader_id: UserId::from_uuid(uploader_id),
                image: match (width, height) {
                    (Some(width), Some(height)) => {
                        Some(ImageInfo { width: width as u32, height: height as u32, thumbnail: has_thumbnail })
                    }
                    _ => None,
                },
            })
        })
        .collect()
}

fn reactions(json: Option<&serde_json::Value>) -> StoreResult<Vec<ReactionSummary>> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let groups = Vec::<ReactionJson>::deserialize(json).map_err(|e| StoreError::Corrupt(format!("reactions: {e}")))?;
    groups
        .into_iter()
        .map(|(emoji, count, me)| Ok(ReactionSummary { emoji: Emoji::parse(&emoji)?, count, me }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_keep_microseconds_and_image_facts() {
        let json = serde_json::json!([[
            "018f0000-0000-7000-8000-000000000001",
            "018f0000-0000-7000-8000-000000000002",
            "a.png",
            "image/png",
            12,
            "ab",
            1_764_614_439_123_456_i64,
            40,
            30,
            true
        ]]);
        let files = attachments(Some(&json)).unwrap();
        assert_eq!(files[0].created_at.unix_timestamp_nanos(), 1_764_614_439_123_456_000);
        assert_eq!(files[0].image, Some(ImageInfo { width: 40, height: 30, thumbnail: true }));
        assert!(attachments(None).unwrap().is_empty());
    }

    #[test]
    fn reactions_keep_their_order() {
        let json = serde_json::json!([["👍", 2, true], [":tada:", 1, false]]);
        let groups = reactions(Some(&json)).unwrap();
        assert_eq!(groups.iter().map(|g| g.emoji.as_str()).collect::<Vec<_>>(), ["👍", ":tada:"]);
        assert_eq!((groups[0].count, groups[0].me), (2, true));
    }
}
