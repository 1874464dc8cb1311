//! The channel event log. Every channel-scoped change takes the channel's next `seq` and is
//! written here in the same transaction as the change itself.
//!
//! Architecture Invariant: a writer first takes the channel row's lock with
//! [`lock_channel`], then checks whatever it must (membership, bans), then appends. Because
//! the lock is held until commit, seq N+1 can only be handed out after the transaction that
//! got seq N has committed or rolled back: seqs have no gaps and no duplicates, and a reader
//! who sees N+1 can always find N.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{ChannelEvent, ChannelId, EventBody};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::{channel_events, channels};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = channel_events)]
pub(crate) struct EventRow {
    pub channel_id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub data: serde_json::Value,
    pub subject_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

impl TryFrom<EventRow> for ChannelEvent {
    type Error = StoreError;
    fn try_from(row: EventRow) -> StoreResult<Self> {
        let body = EventBody::from_data(&row.kind, row.data)
            .map_err(|e| StoreError::Corrupt(format!("event {} of {}: {e}", row.seq, row.channel_id)))?;
        Ok(ChannelEvent::new(ChannelId::from_uuid(row.channel_id), row.seq, row.created_at, body))
    }
}

impl From<&ChannelEvent> for EventRow {
    fn from(event: &ChannelEvent) -> Self {
        Self {
            channel_id: event.channel_id.as_uuid(),
            seq: event.seq,
            kind: event.kind().as_str().to_owned(),
            data: event.body.to_data(),
            // Kept for finding a user's membership events without reading `data`.
            subject_id: event.membership().and_then(domain::MembershipChange::subject).map(|u| u.as_uuid()),
            created_at: event.at,
        }
    }
}

/// Locks the channel row until the transaction ends and returns its last seq.
/// `NotFound` when the channel does not exist (or was deleted meanwhile).
pub async fn lock_channel(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<i64> {
    Ok(channels::table.find(channel_id.as_uuid()).select(channels::last_seq).for_no_key_update().first(conn).await?)
}

/// [`lock_channel`], then decides `action` for `user` with [`domain::authorize`] under the
/// lock, so a ban or a removal that committed first wins over the change that follows.
pub async fn lock_and_authorize(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    user: domain::UserId,
    action: domain::Action,
) -> StoreResult<(i64, crate::channels::ChannelAccess)> {
    let last_seq = lock_channel(conn, channel_id).await?;
    let access = crate::channels::access(conn, channel_id, user).await?;
    domain::authorize(access.channel.kind, access.channel.is_private, access.role, action)
        .map_err(StoreError::Denied)?;
    Ok((last_seq, access))
}

/// [`lock_channel`], also returning what access decisions need: `(last_seq, kind, is_private)`.
pub async fn lock_channel_facts(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
) -> StoreResult<(i64, domain::ChannelKind, bool)> {
    let (last_seq, kind, is_private): (i64, String, bool) = channels::table
        .find(channel_id.as_uuid())
        .select((channels::last_seq, channels::kind, channels::is_private))
        .for_no_key_update()
        .first(conn)
        .await?;
    let kind = domain::ChannelKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("channel kind {kind}")))?;
    Ok((last_seq, kind, is_private))
}

/// Appends `bodies` with seqs `last_seq + 1 ..` (the caller holds the channel lock and built
/// any message body with the seq it will get) and advances the channel's counter.
pub async fn append(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    last_seq: i64,
    bodies: Vec<EventBody>,
) -> StoreResult<Vec<ChannelEvent>> {
    if bodies.is_empty() {
        return Ok(Vec::new());
    }
    let now = OffsetDateTime::now_utc();
    let events: Vec<ChannelEvent> = bodies
        .into_iter()
        .zip(last_seq + 1..)
        .map(|(body, seq)| ChannelEvent::new(channel_id, seq, now, body))
        .collect();
    let rows: Vec<EventRow> = events.iter().map(EventRow::from).collect();
    diesel::insert_into(channel_events::table).values(&rows).execute(conn).await?;
    let new_last = last_seq + events.len() as i64;
    diesel::update(channels::table.find(channel_id.as_uuid()))
        .set(channels::last_seq.eq(new_last))
        .execute(conn)
        .await?;
    Ok(events)
}

/// Appends one event, or none when the change changed nothing (`body` is `None`), as the
/// result of a change that returns no value.
pub async fn append_one(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    last_seq: i64,
    body: Option<EventBody>,
) -> StoreResult<domain::Committed<()>> {
    let events = match body {
        Some(body) => append(conn, channel_id, last_seq, vec![body]).await?,
        None => Vec::new(),
    };
    Ok(domain::Committed::new((), events))
}

/// Events of `channel_id` with seq in `(after_seq, up_to]`, in order, at most `limit`.
pub async fn range(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    after_seq: i64,
    up_to: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<ChannelEvent>> {
    let mut query = channel_events::table
        .filter(channel_events::channel_id.eq(channel_id.as_uuid()))
        .filter(channel_events::seq.gt(after_seq))
        .select(EventRow::as_select())
        .order(channel_events::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(up_to) = up_to {
        query = query.filter(channel_events::seq.le(up_to));
    }
    let rows: Vec<EventRow> = query.load(conn).await?;
    rows.into_iter().map(ChannelEvent::try_from).collect()
}

/// The newest seq in the log of a channel (which outlives a deleted channel's row).
pub async fn newest_seq(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<Option<i64>> {
    Ok(channel_events::table
        .filter(channel_events::channel_id.eq(channel_id.as_uuid()))
        .select(diesel::dsl::max(channel_events::seq))
        .first(conn)
        .await?)
}

/// The newest event after `after` that changed `user`'s membership of the channel, or
/// deleted it: what a client reconnecting to a channel it no longer receives is told.
pub async fn latest_membership_change(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    user: domain::UserId,
    after: i64,
) -> StoreResult<Option<ChannelEvent>> {
    let row: Option<EventRow> = channel_events::table
        .filter(channel_events::channel_id.eq(channel_id.as_uuid()))
        .filter(channel_events::seq.gt(after))
        .filter(
            channel_events::subject_id
                .eq(user.as_uuid())
                .or(channel_events::kind.eq(domain::EventKind::ChannelDeleted.as_str())),
        )
        .order(channel_events::seq.desc())
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(ChannelEvent::try_from).transpose()
}

/// The newest `member_joined` of `user` in the channel, for a node that missed it.
pub async fn latest_join(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    user: domain::UserId,
) -> StoreResult<Option<ChannelEvent>> {
    let row: Option<EventRow> = channel_events::table
        .filter(channel_events::channel_id.eq(channel_id.as_uuid()))
        .filter(channel_events::subject_id.eq(user.as_uuid()))
        .filter(channel_events::kind.eq(domain::EventKind::MemberJoined.as_str()))
        .order(channel_events::seq.desc())
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(ChannelEvent::try_from).transpose()
}

/// The oldest seq still kept for a channel, if any.
pub async fn oldest_seq(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<Option<i64>> {
    Ok(channel_events::table
        .filter(channel_events::channel_id.eq(channel_id.as_uuid()))
        .select(diesel::dsl::min(channel_events::seq))
        .first(conn)
        .await?)
}

/// Deletes events older than `cutoff` (the retention window).
pub async fn purge_older_than(conn: &mut AsyncPgConnection, cutoff: OffsetDateTime) -> StoreResult<usize> {
    Ok(diesel::delete(channel_events::table.filter(channel_events::created_at.lt(cutoff))).execute(conn).await?)
}
