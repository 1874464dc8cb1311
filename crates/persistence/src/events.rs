//! The channel event log. Every channel-scoped change takes the channel's next `seq` and is
//! written here in the same transaction as the change itself.
//!
//! Architecture Invariant: a writer first takes the channel row's lock with
//! [`lock_channel`], then checks whatever it must (membership, bans), then appends. Because
//! the lock is held until commit, seq N+1 can only be handed out after the transaction that
//! got seq N has committed or rolled back: seqs have no gaps and no duplicates, and a reader
//! who sees N+1 can always find N.

use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{ChannelEvent, ChannelId, EventBody};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::{channel_events, channels};

#[derive(Queryable, Selectable)]
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
    mut conn: &AsyncPgConnection,
    channel_id: ChannelId,
) -> StoreResult<(i64, domain::ChannelKind, bool)> {
    let (last_seq, kind, is_private): (i64, String, bool) = channels::table
        .find(channel_id.as_uuid())
        .select((channels::last_seq, channels::kind, channels::is_private))
        .for_no_key_update()
        .first(&mut conn)
        .await?;
    let kind = domain::ChannelKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("channel kind {kind}")))?;
    Ok((last_seq, kind, is_private))
}

/// The events (`$3`, of `$1`, at `$2`) and the channel's new `last_seq` (`$4`), in one
/// statement of fixed text.
const APPEND: &str = "WITH appended AS (\
        INSERT INTO channel_events (channel_id, seq, kind, data, subject_id, created_at) \
        SELECT $1, r.seq, r.kind, r.data, r.subject_id, $2 \
        FROM jsonb_to_recordset($3) AS r(seq bigint, kind text, data jsonb, subject_id uuid)) \
    UPDATE channels SET last_seq = $4 WHERE id = $1";

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
    let (statement, events) = append_statement(channel_id, last_seq, bodies);
    statement.execute(conn).await?;
    Ok(events)
}

/// The statement [`append`] runs and the events it writes, for a caller that pipelines it
/// with another statement of the same transaction.
pub(crate) fn append_statement(
    channel_id: ChannelId,
    last_seq: i64,
    bodies: Vec<EventBody>,
) -> (crate::bulk::Rows, Vec<ChannelEvent>) {
    let now = OffsetDateTime::now_utc();
    let events: Vec<ChannelEvent> = bodies
        .into_iter()
        .zip(last_seq + 1..)
        .map(|(body, seq)| ChannelEvent::new(channel_id, seq, now, body))
        .collect();
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(EventRow::from)
        .map(|row| serde_json::json!({ "seq": row.seq, "kind": row.kind, "data": row.data, "subject_id": row.subject_id }))
        .collect();
    let statement = crate::bulk::Rows {
        sql: APPEND,
        channel: channel_id.as_uuid(),
        at: now,
        rows: rows.into(),
        number: Some(last_seq + events.len() as i64),
    };
    (statement, events)
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

/// What [`maintain_partitions`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionMaintenance {
    /// Days whose partition was created.
    pub created: Vec<Date>,
    /// Days whose partition was dropped (all its events were past retention).
    pub dropped: Vec<Date>,
    /// Rows past retention deleted from the default partition.
    pub purged_from_default: usize,
}

/// How many days ahead of today partitions exist, so that appends never wait for the janitor.
pub const PARTITION_DAYS_AHEAD: i64 = 3;

const PARTITION_PREFIX: &str = "channel_events_p";

/// The event log is partitioned by UTC day of `created_at` (migration
/// `2026-12-01-000008_event_log_partitions`). This creates the partitions of today and the
/// next [`PARTITION_DAYS_AHEAD`] days that are missing, drops every partition whose day ended
/// before `cutoff` — retention by dropping whole days, not deleting rows — and deletes what
/// the default partition holds from before `cutoff` (events that arrived while their day had
/// no partition). A day is therefore kept until its last event is past `cutoff`: the log
/// keeps between the retention window and one day more.
///
/// Seqs are unaffected: they come from `channels.last_seq`, so dropping a day removes the
/// oldest part of each channel's log and never opens a gap in what remains.
pub async fn maintain_partitions(
    conn: &mut AsyncPgConnection,
    now: OffsetDateTime,
    cutoff: OffsetDateTime,
) -> StoreResult<PartitionMaintenance> {
    #[derive(QueryableByName)]
    struct Partition {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let existing: Vec<Partition> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'channel_events' AND pg_table_is_visible(p.oid)",
    )
    .load(conn)
    .await?;
    let days: Vec<Date> = existing.iter().filter_map(|p| partition_day(&p.name)).collect();
    let mut done = PartitionMaintenance::default();
    let today = now.to_offset(time::UtcOffset::UTC).date();
    for ahead in 0..=PARTITION_DAYS_AHEAD {
        let day = today + time::Duration::days(ahead);
        if !days.contains(&day) && create_partition(conn, day).await? {
            done.created.push(day);
        }
    }
    for day in days {
        if day_start(day + time::Duration::days(1)) <= cutoff {
            // Dropping a partition takes the parent's lock for a moment; never queue behind a
            // long reader (and every append behind us): try again at the next run instead.
            conn.transaction::<_, StoreError, _>(async |conn| {
                diesel::sql_query("SET LOCAL lock_timeout = '2s'").execute(conn).await?;
                diesel::sql_query(format!("DROP TABLE IF EXISTS {}", partition_name(day))).execute(conn).await?;
                Ok(())
            })
            .await?;
            done.dropped.push(day);
        }
    }
    done.purged_from_default = diesel::sql_query("DELETE FROM channel_events_default WHERE created_at < $1")
        .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
        .execute(conn)
        .await?;
    Ok(done)
}

/// Creates `day`'s partition, moving any of its rows out of the default partition first (a
/// default partition holding rows of the new range would refuse the new partition). Nodes
/// starting together take turns on an advisory lock, and a partition another node made
/// meanwhile is left alone: false then.
async fn create_partition(conn: &mut AsyncPgConnection, day: Date) -> StoreResult<bool> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    /// Any constant will do, as long as nothing else locks it: "chat" "pa" "rt".
    const PARTITION_LOCK: i64 = 0x6368_6174_7061_7274;
    let name = partition_name(day);
    let (from, to) = (day_start(day), day_start(day + time::Duration::days(1)));
    conn.transaction::<_, StoreError, _>(async |conn| {
        diesel::sql_query("SET LOCAL lock_timeout = '2s'").execute(conn).await?;
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(PARTITION_LOCK)
            .execute(conn)
            .await?;
        let made: Exists = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(conn)
            .await?;
        if made.exists {
            return Ok(false);
        }
        diesel::sql_query("LOCK TABLE channel_events_default IN SHARE ROW EXCLUSIVE MODE").execute(conn).await?;
        diesel::sql_query(format!("CREATE TABLE {name} (LIKE channel_events INCLUDING DEFAULTS)"))
            .execute(conn)
            .await?;
        diesel::sql_query(format!(
            "WITH moved AS (DELETE FROM channel_events_default WHERE created_at >= $1 AND created_at < $2 \
             RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ))
        .bind::<diesel::sql_types::Timestamptz, _>(from)
        .bind::<diesel::sql_types::Timestamptz, _>(to)
        .execute(conn)
        .await?;
        diesel::sql_query(format!(
            "ALTER TABLE channel_events ATTACH PARTITION {name} FOR VALUES FROM ('{}') TO ('{}')",
            timestamp_literal(from),
            timestamp_literal(to)
        ))
        .execute(conn)
        .await?;
        Ok(true)
    })
    .await
}

fn partition_name(day: Date) -> String {
    format!("{PARTITION_PREFIX}{:04}{:02}{:02}", day.year(), u8::from(day.month()), day.day())
}

/// The day of a partition named by [`partition_name`]; `None` for the default partition.
fn partition_day(name: &str) -> Option<Date> {
    let digits = name.strip_prefix(PARTITION_PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits[..4].parse().ok()?;
    let month = time::Month::try_from(digits[4..6].parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year, month, digits[6..].parse().ok()?).ok()
}

fn day_start(day: Date) -> OffsetDateTime {
    day.midnight().assume_utc()
}

fn timestamp_literal(at: OffsetDateTime) -> String {
    let date = at.date();
    format!("{:04}-{:02}-{:02} 00:00:00+00", date.year(), u8::from(date.month()), date.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_the_default_is_no_day() {
        let day = Date::from_calendar_date(2026, time::Month::December, 1).unwrap();
        assert_eq!(partition_name(day), "channel_events_p20261201");
        assert_eq!(partition_day(&partition_name(day)), Some(day));
        assert_eq!(partition_day("channel_events_default"), None);
        assert_eq!(partition_day("channel_events_p2026120"), None);
        assert_eq!(timestamp_literal(day_start(day)), "2026-12-01 00:00:00+00");
    }
}
