//! Channels, DMs, membership, bans and read markers. Every membership change writes its
//! event in the same transaction (see `events`).

use diesel::dsl::{exists, not};
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{
    Channel, ChannelDescription, ChannelEvent, ChannelId, ChannelKind, ChannelName, ChannelSummary, Committed,
    EventBody, Role, User, UserId, UserSummary,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::events;
use crate::schema::{channel_bans, channel_events, channels, memberships, messages, users};
use crate::users::{SummaryRow, UserRow};

#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = channels)]
pub(crate) struct ChannelRow {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub owner_id: Uuid,
    pub is_private: bool,
    pub kind: String,
    pub dm_key: Option<String>,
    pub last_seq: i64,
    pub member_count: i64,
    pub created_at: OffsetDateTime,
}

impl TryFrom<ChannelRow> for Channel {
    type Error = StoreError;
    fn try_from(row: ChannelRow) -> StoreResult<Self> {
        Ok(Channel {
            id: ChannelId::from_uuid(row.id),
            name: ChannelName::parse(&row.name)?,
            description: row.description,
            owner_id: UserId::from_uuid(row.owner_id),
            created_at: row.created_at,
            is_private: row.is_private,
            kind: ChannelKind::parse(&row.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("channel kind {}", row.kind)))?,
            member_count: row.member_count,
        })
    }
}

/// A channel together with the caller's standing in it: what every access check needs, in
/// one query.
pub struct ChannelAccess {
    pub channel: Channel,
    pub role: Role,
    pub last_seq: i64,
}

/// Loads a channel and the user's role in it. `NotFound` when there is no such channel.
pub async fn access(conn: &mut AsyncPgConnection, channel_id: ChannelId, user: UserId) -> StoreResult<ChannelAccess> {
    let (row, is_member, is_banned): (ChannelRow, bool, bool) = channels::table
        .find(channel_id.as_uuid())
        .select((
            ChannelRow::as_select(),
            exists(
                memberships::table
                    .filter(memberships::channel_id.eq(channel_id.as_uuid()))
                    .filter(memberships::user_id.eq(user.as_uuid())),
            ),
            exists(
                channel_bans::table
                    .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
                    .filter(channel_bans::user_id.eq(user.as_uuid())),
            ),
        ))
        .first(conn)
        .await?;
    ChannelAccess::from_facts(row, user, is_member, is_banned)
}

impl ChannelAccess {
    /// The caller's standing from the facts every access query reads (this module's, and the
    /// one-statement history page's).
    pub(crate) fn from_facts(row: ChannelRow, user: UserId, is_member: bool, is_banned: bool) -> StoreResult<Self> {
        let is_owner = row.owner_id == user.as_uuid() && row.kind == ChannelKind::Channel.as_str();
        let last_seq = row.last_seq;
        Ok(ChannelAccess { channel: row.try_into()?, role: Role::from_facts(is_owner, is_member, is_banned), last_seq })
    }
}

/// The channel's newest event seq.
pub async fn last_seq(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<i64> {
    Ok(channels::table.find(channel_id.as_uuid()).select(channels::last_seq).first(conn).await?)
}

pub async fn find(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<Channel> {
    channels::table.find(channel_id.as_uuid()).select(ChannelRow::as_select()).first(conn).await?.try_into()
}

/// Creates a channel with its creator as owner and first member.
pub async fn create(
    conn: &mut AsyncPgConnection,
    owner: &UserSummary,
    name: &ChannelName,
    description: Option<&ChannelDescription>,
    is_private: bool,
) -> StoreResult<Committed<Channel>> {
    let row = ChannelRow {
        id: Uuid::now_v7(),
        name: name.as_str().to_owned(),
        description: description.map(|d| d.as_str().to_owned()).filter(|d| !d.is_empty()),
        owner_id: owner.id.as_uuid(),
        is_private,
        kind: ChannelKind::Channel.as_str().to_owned(),
        dm_key: None,
        last_seq: 0,
        member_count: 0,
        created_at: OffsetDateTime::now_utc(),
    };
    conn.transaction::<_, StoreError, _>(async |conn| {
        diesel::insert_into(channels::table).values(&row).execute(conn).await?;
        let channel_id = ChannelId::from_uuid(row.id);
        let events = add_members(conn, channel_id, std::slice::from_ref(owner)).await?;
        Ok(Committed::new(find(conn, channel_id).await?, events))
    })
    .await
}

/// Adds users who are not members yet, counting them and writing `member_joined` for each
/// newcomer. The caller checks bans; this only skips existing members.
async fn add_members(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    users: &[UserSummary],
) -> StoreResult<Vec<ChannelEvent>> {
    let last_seq = events::lock_channel(conn, channel_id).await?;
    let mut joined = Vec::new();
    for user in users {
        let inserted = diesel::insert_into(memberships::table)
            .values((
                memberships::channel_id.eq(channel_id.as_uuid()),
                memberships::user_id.eq(user.id.as_uuid()),
                // A newcomer has read nothing; starting the marker at the current seq
                // keeps the history from counting as unread.
                memberships::last_read_seq.eq(last_seq),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 1 {
            joined.push(EventBody::MemberJoined { user: user.clone() });
        }
    }
    if joined.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(channels::table.find(channel_id.as_uuid()))
        .set(channels::member_count.eq(channels::member_count + joined.len() as i64))
        .execute(conn)
        .await?;
    events::append(conn, channel_id, last_seq, joined).await
}

/// Joins (or is added to) a channel; idempotent. Refuses banned users with `Conflict` —
/// callers check bans before, this re-checks under the channel lock.
pub async fn join(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    user: &UserSummary,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        events::lock_channel(conn, channel_id).await?;
        if is_banned(conn, channel_id, user.id).await? {
            return Err(StoreError::Conflict("user_banned"));
        }
        let events = add_members(conn, channel_id, std::slice::from_ref(user)).await?;
        Ok(Committed::new(find(conn, channel_id).await?, events))
    })
    .await
}

async fn is_banned(conn: &mut AsyncPgConnection, channel_id: ChannelId, user: UserId) -> StoreResult<bool> {
    Ok(diesel::select(exists(
        channel_bans::table
            .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
            .filter(channel_bans::user_id.eq(user.as_uuid())),
    ))
    .get_result(conn)
    .await?)
}

/// Removes a member, writing `kind` (member_left or member_banned) when they were one.
async fn remove_member(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    last_seq: i64,
    event: EventBody,
) -> StoreResult<(bool, Vec<ChannelEvent>)> {
    let Some(user) = event.membership().and_then(domain::MembershipChange::subject) else {
        return Ok((false, Vec::new()));
    };
    let removed = diesel::delete(
        memberships::table
            .filter(memberships::channel_id.eq(channel_id.as_uuid()))
            .filter(memberships::user_id.eq(user.as_uuid())),
    )
    .execute(conn)
    .await?;
    if removed == 0 {
        return Ok((false, Vec::new()));
    }
    diesel::update(channels::table.find(channel_id.as_uuid()))
        .set(channels::member_count.eq(channels::member_count - 1))
        .execute(conn)
        .await?;
    Ok((true, events::append(conn, channel_id, last_seq, vec![event]).await?))
}

pub async fn leave(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    user: &UserSummary,
) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = events::lock_channel(conn, channel_id).await?;
        let (_, events) =
            remove_member(conn, channel_id, last_seq, EventBody::MemberLeft { user: user.clone() }).await?;
        Ok(Committed::new((), events))
    })
    .await
}

/// A ban as the ban endpoints show it in `member_exceptions`.
pub struct Ban {
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
}

/// The most recent bans shown inline with a channel.
pub const INLINE_BANS: i64 = 200;

pub async fn bans(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<Vec<Ban>> {
    let rows: Vec<(Uuid, OffsetDateTime)> = channel_bans::table
        .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
        .select((channel_bans::user_id, channel_bans::created_at))
        .order((channel_bans::created_at.asc(), channel_bans::user_id.asc()))
        .limit(INLINE_BANS)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(user_id, created_at)| Ban { user_id: UserId::from_uuid(user_id), created_at }).collect())
}

/// Bans a user: records the ban, removes their membership and writes `member_banned`, all
/// under the channel lock, so a message of theirs is either committed before the ban or
/// refused after it. Banning twice changes nothing.
pub async fn ban(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    target: &UserSummary,
    by: UserId,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = events::lock_channel(conn, channel_id).await?;
        let inserted = diesel::insert_into(channel_bans::table)
            .values((
                channel_bans::channel_id.eq(channel_id.as_uuid()),
                channel_bans::user_id.eq(target.id.as_uuid()),
                channel_bans::banned_by.eq(by.as_uuid()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let mut events = Vec::new();
        if inserted == 1 {
            let removed = diesel::delete(
                memberships::table
                    .filter(memberships::channel_id.eq(channel_id.as_uuid()))
                    .filter(memberships::user_id.eq(target.id.as_uuid())),
            )
            .execute(conn)
            .await?;
            if removed > 0 {
                diesel::update(channels::table.find(channel_id.as_uuid()))
                    .set(channels::member_count.eq(channels::member_count - removed as i64))
                    .execute(conn)
                    .await?;
            }
            events = events::append(conn, channel_id, last_seq, vec![EventBody::MemberBanned { user: target.clone() }])
                .await?;
        }
        Ok(Committed::new(find(conn, channel_id).await?, events))
    })
    .await
}

/// Lifts a ban; the user is not re-added. Unbanning someone not banned changes nothing.
pub async fn unban(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    target: &UserSummary,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = events::lock_channel(conn, channel_id).await?;
        let removed = diesel::delete(
            channel_bans::table
                .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
                .filter(channel_bans::user_id.eq(target.id.as_uuid())),
        )
        .execute(conn)
        .await?;
        let events = if removed > 0 {
            events::append(conn, channel_id, last_seq, vec![EventBody::MemberUnbanned { user: target.clone() }]).await?
        } else {
            Vec::new()
        };
        Ok(Committed::new(find(conn, channel_id).await?, events))
    })
    .await
}

/// Banned users in ban order, after the user id `after`.
pub async fn banned_users(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<UserSummary>> {
    let mut query = channel_bans::table
        .inner_join(users::table.on(users::id.eq(channel_bans::user_id)))
        .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
        .select(SummaryRow::as_select())
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    let rows: Vec<SummaryRow> = query.load(conn).await?;
    rows.into_iter().map(UserSummary::try_from).collect()
}

/// Members in user-id order, after `after`.
pub async fn members(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<User>> {
    let mut query = memberships::table
        .inner_join(users::table)
        .filter(memberships::channel_id.eq(channel_id.as_uuid()))
        .select(UserRow::as_select())
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    let rows: Vec<UserRow> = query.load(conn).await?;
    rows.into_iter().map(User::try_from).collect()
}

/// Ids of every member, for the hub.
pub async fn member_ids(conn: &mut AsyncPgConnection, channel_id: ChannelId) -> StoreResult<Vec<UserId>> {
    let ids: Vec<Uuid> = memberships::table
        .filter(memberships::channel_id.eq(channel_id.as_uuid()))
        .select(memberships::user_id)
        .load(conn)
        .await?;
    Ok(ids.into_iter().map(UserId::from_uuid).collect())
}

/// Public channels the user is not banned from, plus private channels they belong to, in
/// id (creation) order after `after`.
pub async fn list_visible(
    conn: &mut AsyncPgConnection,
    user: UserId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<Channel>> {
    let is_member = exists(
        memberships::table
            .filter(memberships::channel_id.eq(channels::id))
            .filter(memberships::user_id.eq(user.as_uuid())),
    );
    let is_banned = exists(
        channel_bans::table
            .filter(channel_bans::channel_id.eq(channels::id))
            .filter(channel_bans::user_id.eq(user.as_uuid())),
    );
    let mut query = channels::table
        .filter(channels::kind.eq(ChannelKind::Channel.as_str()))
        .filter(not(channels::is_private).and(not(is_banned)).or(is_member))
        .select(ChannelRow::as_select())
        .order(channels::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(channels::id.gt(after));
    }
    let rows: Vec<ChannelRow> = query.load(conn).await?;
    rows.into_iter().map(Channel::try_from).collect()
}

/// The user's channels and DMs with read state, in id order after `after`.
pub async fn list_mine(
    conn: &mut AsyncPgConnection,
    user: UserId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<ChannelSummary>> {
    let mut query = memberships::table
        .inner_join(channels::table)
        .filter(memberships::user_id.eq(user.as_uuid()))
        .select((ChannelRow::as_select(), memberships::last_read_seq))
        .order(channels::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(channels::id.gt(after));
    }
    let rows: Vec<(ChannelRow, i64)> = query.load(conn).await?;
    let mut summaries = Vec::with_capacity(rows.len());
    for (row, last_read_seq) in rows {
        let last_seq = row.last_seq;
        let channel: Channel = row.try_into()?;
        let unread_count: i64 = messages::table
            .filter(messages::channel_id.eq(channel.id.as_uuid()))
            .filter(messages::seq.gt(last_read_seq))
            .filter(messages::user_id.ne(user.as_uuid()))
            .filter(not(messages::deleted))
            .count()
            .get_result(conn)
            .await?;
        summaries.push(ChannelSummary { channel, last_seq, last_read_seq, unread_count });
    }
    Ok(summaries)
}

/// Every channel the user belongs to with its last seq and read marker: the WebSocket
/// `ready` frame. Bounded by the membership count of one user.
pub async fn subscriptions(conn: &mut AsyncPgConnection, user: UserId) -> StoreResult<Vec<(ChannelId, i64, i64)>> {
    let rows: Vec<(Uuid, i64, i64)> = memberships::table
        .inner_join(channels::table)
        .filter(memberships::user_id.eq(user.as_uuid()))
        .select((channels::id, channels::last_seq, memberships::last_read_seq))
        .order(channels::id.asc())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(id, last, read)| (ChannelId::from_uuid(id), last, read)).collect())
}

pub struct ChannelChanges {
    pub name: Option<ChannelName>,
    pub description: Option<ChannelDescription>,
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    changes: ChannelChanges,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = events::lock_channel(conn, channel_id).await?;
        if let Some(name) = &changes.name {
            diesel::update(channels::table.find(channel_id.as_uuid()))
                .set(channels::name.eq(name.as_str()))
                .execute(conn)
                .await?;
        }
        if let Some(description) = &changes.description {
            let value = Some(description.as_str()).filter(|d| !d.is_empty());
            diesel::update(channels::table.find(channel_id.as_uuid()))
                .set(channels::description.eq(value))
                .execute(conn)
                .await?;
        }
        let channel = find(conn, channel_id).await?;
        let events = events::append(
            conn,
            channel_id,
            last_seq,
            vec![EventBody::ChannelUpdated { channel: Box::new(channel.clone()) }],
        )
        .await?;
        Ok(Committed::new(channel, events))
    })
    .await
}

/// Deletes the channel with its messages, reactions and attachment links. The log keeps
/// only the `channel_deleted` event, so reconnecting clients learn of it and nothing of the
/// channel's content outlives it.
pub async fn delete(conn: &mut AsyncPgConnection, channel_id: ChannelId, by: UserId) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = events::lock_channel(conn, channel_id).await?;
        diesel::delete(channel_events::table.filter(channel_events::channel_id.eq(channel_id.as_uuid())))
            .execute(conn)
            .await?;
        let events =
            events::append(conn, channel_id, last_seq, vec![EventBody::ChannelDeleted { deleted_by: by }]).await?;
        diesel::delete(channels::table.find(channel_id.as_uuid())).execute(conn).await?;
        Ok(Committed::new((), events))
    })
    .await
}

/// Moves the read marker forward (never back), up to the channel's last seq.
pub async fn mark_read(conn: &mut AsyncPgConnection, channel_id: ChannelId, user: UserId, seq: i64) -> StoreResult<()> {
    diesel::update(
        memberships::table
            .filter(memberships::channel_id.eq(channel_id.as_uuid()))
            .filter(memberships::user_id.eq(user.as_uuid()))
            .filter(memberships::last_read_seq.lt(seq)),
    )
    .set(memberships::last_read_seq.eq(seq))
    .execute(conn)
    .await?;
    Ok(())
}

/// The DM between two users (one user: notes to self), created on first call. The ordered
/// pair is a unique key, so concurrent calls make exactly one channel. Returns whether this
/// call created it.
pub async fn open_dm(
    conn: &mut AsyncPgConnection,
    a: &UserSummary,
    b: &UserSummary,
) -> StoreResult<Committed<(Channel, bool)>> {
    let (first, second) = if a.id <= b.id { (a, b) } else { (b, a) };
    let key = format!("{}:{}", first.id, second.id);
    conn.transaction::<_, StoreError, _>(async |conn| {
        let row = ChannelRow {
            id: Uuid::now_v7(),
            name: ChannelName::for_dm(first.username.as_str(), second.username.as_str()).as_str().to_owned(),
            description: None,
            owner_id: a.id.as_uuid(),
            is_private: true,
            kind: ChannelKind::Dm.as_str().to_owned(),
            dm_key: Some(key.clone()),
            last_seq: 0,
            member_count: 0,
            created_at: OffsetDateTime::now_utc(),
        };
        let inserted = diesel::insert_into(channels::table)
            .values(&row)
            .on_conflict(channels::dm_key)
            .do_nothing()
            .execute(conn)
            .await?;
        let id: Uuid = channels::table.filter(channels::dm_key.eq(&key)).select(channels::id).first(conn).await?;
        let channel_id = ChannelId::from_uuid(id);
        let events = if inserted == 1 {
            let members: Vec<UserSummary> =
                if first.id == second.id { vec![first.clone()] } else { vec![first.clone(), second.clone()] };
            add_members(conn, channel_id, &members).await?
        } else {
            Vec::new()
        };
        Ok(Committed::new((find(conn, channel_id).await?, inserted == 1), events))
    })
    .await
}

/// The newest seq of each of `ids` that still exists.
pub async fn last_seqs(conn: &mut AsyncPgConnection, ids: &[ChannelId]) -> StoreResult<Vec<(ChannelId, i64)>> {
    let ids: Vec<Uuid> = ids.iter().map(ChannelId::as_uuid).collect();
    let rows: Vec<(Uuid, i64)> =
        channels::table.filter(channels::id.eq_any(&ids)).select((channels::id, channels::last_seq)).load(conn).await?;
    Ok(rows.into_iter().map(|(id, seq)| (ChannelId::from_uuid(id), seq)).collect())
}

/// The channels each of `users` is a member of.
pub async fn memberships_of(conn: &mut AsyncPgConnection, users: &[UserId]) -> StoreResult<Vec<(UserId, ChannelId)>> {
    let users: Vec<Uuid> = users.iter().map(UserId::as_uuid).collect();
    let rows: Vec<(Uuid, Uuid)> = memberships::table
        .filter(memberships::user_id.eq_any(&users))
        .select((memberships::user_id, memberships::channel_id))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(user, channel)| (UserId::from_uuid(user), ChannelId::from_uuid(channel))).collect())
}
