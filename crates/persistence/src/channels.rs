//! Channels, DMs, membership, bans and read markers. Every membership change writes its
//! event in the same transaction (see `events`).

use diesel::dsl::{exists, not};
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use domain::{
    AuditAction, AuditReason, AuditRecord, Channel, ChannelDescription, ChannelEvent, ChannelId, ChannelKind,
    ChannelName, ChannelSummary, Committed, EventBody, MemberRole, Role, User, UserId, UserSummary,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::schema::{channel_bans, channel_events, channels, memberships, users};
use crate::users::{SummaryRow, UserRow};
use crate::{audit, events};

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
    let (row, membership, is_banned): (ChannelRow, Option<String>, bool) = channels::table
        .find(channel_id.as_uuid())
        .select((
            ChannelRow::as_select(),
            memberships::table
                .filter(memberships::channel_id.eq(channel_id.as_uuid()))
                .filter(memberships::user_id.eq(user.as_uuid()))
                .select(memberships::role)
                .single_value(),
            exists(
                channel_bans::table
                    .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
                    .filter(channel_bans::user_id.eq(user.as_uuid())),
            ),
        ))
        .first(conn)
        .await?;
    ChannelAccess::from_facts(row, user, membership.as_deref(), is_banned)
}

impl ChannelAccess {
    /// The caller's standing from the facts every access query reads (this module's, and the
    /// one-statement history page's): `membership` is the stored role, `None` for a
    /// non-member.
    pub(crate) fn from_facts(
        row: ChannelRow,
        user: UserId,
        membership: Option<&str>,
        is_banned: bool,
    ) -> StoreResult<Self> {
        let is_owner = row.owner_id == user.as_uuid() && row.kind == ChannelKind::Channel.as_str();
        let last_seq = row.last_seq;
        let membership = membership.map(stored_role).transpose()?;
        Ok(ChannelAccess {
            channel: row.try_into()?,
            role: Role::from_facts(is_owner, membership, is_banned),
            last_seq,
        })
    }
}

fn stored_role(raw: &str) -> StoreResult<MemberRole> {
    MemberRole::parse_stored(raw).ok_or_else(|| StoreError::Corrupt(format!("membership role {raw}")))
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

/// Under the channel lock: `by` may moderate the channel and may act on `target`
/// ([`domain::may_moderate`]: nobody on the owner, a moderator on plain members only).
async fn lock_for_moderation(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    by: UserId,
    target: UserId,
) -> StoreResult<i64> {
    let (last_seq, actor) = events::lock_and_authorize(conn, channel_id, by, domain::Action::Moderate).await?;
    let target = access(conn, channel_id, target).await?.role;
    domain::may_moderate(actor.role, target).map_err(StoreError::Denied)?;
    Ok(last_seq)
}

/// Who did a moderation action to whom, and why.
#[derive(Debug, Clone, Copy)]
pub struct Moderation<'a> {
    pub by: &'a UserSummary,
    pub reason: Option<&'a AuditReason>,
}

impl Moderation<'_> {
    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        channel_id: ChannelId,
        action: AuditAction,
        target: UserId,
    ) -> StoreResult<()> {
        audit::record(
            conn,
            AuditRecord {
                channel_id,
                action,
                actor: self.by.id,
                target_user: Some(target),
                target_message: None,
                reason: self.reason,
            },
        )
        .await
    }
}

/// Bans a user: records the ban, removes their membership and writes `member_banned`, all
/// under the channel lock, so a message of theirs is either committed before the ban or
/// refused after it. Banning twice changes nothing.
pub async fn ban(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    target: &UserSummary,
    moderation: Moderation<'_>,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = lock_for_moderation(conn, channel_id, moderation.by.id, target.id).await?;
        let inserted = diesel::insert_into(channel_bans::table)
            .values((
                channel_bans::channel_id.eq(channel_id.as_uuid()),
                channel_bans::user_id.eq(target.id.as_uuid()),
                channel_bans::banned_by.eq(moderation.by.id.as_uuid()),
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
            moderation.record(conn, channel_id, AuditAction::Ban, target.id).await?;
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
    moderation: Moderation<'_>,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = lock_for_moderation(conn, channel_id, moderation.by.id, target.id).await?;
        let removed = diesel::delete(
            channel_bans::table
                .filter(channel_bans::channel_id.eq(channel_id.as_uuid()))
                .filter(channel_bans::user_id.eq(target.id.as_uuid())),
        )
        .execute(conn)
        .await?;
        let events = if removed > 0 {
            moderation.record(conn, channel_id, AuditAction::Unban, target.id).await?;
            events::append(conn, channel_id, last_seq, vec![EventBody::MemberUnbanned { user: target.clone() }]).await?
        } else {
            Vec::new()
        };
        Ok(Committed::new(find(conn, channel_id).await?, events))
    })
    .await
}

/// Removes a member (a kick): `member_removed`, under the channel lock, so a post of theirs
/// lands before the kick's seq or is refused. Unlike a ban, they may join a public channel
/// again. `NotFound` when the user is not a member.
pub async fn kick(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    target: &UserSummary,
    moderation: Moderation<'_>,
) -> StoreResult<Committed<()>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let last_seq = lock_for_moderation(conn, channel_id, moderation.by.id, target.id).await?;
        let removal = EventBody::MemberRemoved { user: target.clone(), by: moderation.by.clone() };
        let (removed, events) = remove_member(conn, channel_id, last_seq, removal).await?;
        if !removed {
            return Err(StoreError::NotFound);
        }
        moderation.record(conn, channel_id, AuditAction::Kick, target.id).await?;
        Ok(Committed::new((), events))
    })
    .await
}

/// Sets a member's role below the owner (the owner alone may). Writes `member_role_changed`
/// when it changes. `NotFound` for a non-member; `Conflict("owner_role")` for the owner,
/// whose role changes only by a transfer.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    target: &UserSummary,
    role: MemberRole,
    moderation: Moderation<'_>,
) -> StoreResult<Committed<MemberRole>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let (last_seq, _) =
            events::lock_and_authorize(conn, channel_id, moderation.by.id, domain::Action::Administer).await?;
        match access(conn, channel_id, target.id).await?.role {
            Role::Owner => return Err(StoreError::Conflict("owner_role")),
            current if !current.is_member() => return Err(StoreError::NotFound),
            _ => {}
        }
        let changed = diesel::update(
            memberships::table
                .filter(memberships::channel_id.eq(channel_id.as_uuid()))
                .filter(memberships::user_id.eq(target.id.as_uuid()))
                .filter(memberships::role.ne(role.as_str())),
        )
        .set(memberships::role.eq(role.as_str()))
        .execute(conn)
        .await?;
        let events = if changed > 0 {
            moderation.record(conn, channel_id, AuditAction::RoleChange, target.id).await?;
            events::append(
                conn,
                channel_id,
                last_seq,
                vec![EventBody::MemberRoleChanged { user: target.clone(), role }],
            )
            .await?
        } else {
            Vec::new()
        };
        Ok(Committed::new(role, events))
    })
    .await
}

/// Hands the channel to another member (the owner alone may); the old owner becomes a
/// moderator. Writes `channel_owner_changed`. `Conflict("not_a_member")` when the new owner
/// is not a member; handing it to oneself changes nothing.
pub async fn transfer(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    new_owner: &UserSummary,
    moderation: Moderation<'_>,
) -> StoreResult<Committed<Channel>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let (last_seq, _) =
            events::lock_and_authorize(conn, channel_id, moderation.by.id, domain::Action::Administer).await?;
        if new_owner.id == moderation.by.id {
            return Ok(Committed::new(find(conn, channel_id).await?, Vec::new()));
        }
        if !access(conn, channel_id, new_owner.id).await?.role.is_member() {
            return Err(StoreError::Conflict("not_a_member"));
        }
        diesel::update(channels::table.find(channel_id.as_uuid()))
            .set(channels::owner_id.eq(new_owner.id.as_uuid()))
            .execute(conn)
            .await?;
        diesel::update(
            memberships::table
                .filter(memberships::channel_id.eq(channel_id.as_uuid()))
                .filter(memberships::user_id.eq(moderation.by.id.as_uuid())),
        )
        .set(memberships::role.eq(MemberRole::Moderator.as_str()))
        .execute(conn)
        .await?;
        moderation.record(conn, channel_id, AuditAction::Transfer, new_owner.id).await?;
        let changed =
            EventBody::ChannelOwnerChanged { owner: new_owner.clone(), previous_owner: moderation.by.clone() };
        let events = events::append(conn, channel_id, last_seq, vec![changed]).await?;
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

/// Members in user-id order, after `after`, with their role.
pub async fn members(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<(User, MemberRole)>> {
    let owner: Option<Uuid> = channels::table
        .find(channel_id.as_uuid())
        .filter(channels::kind.eq(ChannelKind::Channel.as_str()))
        .select(channels::owner_id)
        .first(conn)
        .await
        .optional()?;
    let mut query = memberships::table
        .inner_join(users::table)
        .filter(memberships::channel_id.eq(channel_id.as_uuid()))
        .select((UserRow::as_select(), memberships::role))
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    let rows: Vec<(UserRow, String)> = query.load(conn).await?;
    rows.into_iter()
        .map(|(row, role)| {
            let role = if Some(row.id) == owner { MemberRole::Owner } else { stored_role(&role)? };
            Ok((User::try_from(row)?, role))
        })
        .collect()
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

/// The user's channels and DMs with read state, in id order after `after`: unread messages
/// by others and mentions of the user above the read marker, both counted off indexes
/// (`messages_channel_seq`, `mentions_unread`) from the marker on, in the same query.
pub async fn list_mine(
    conn: &mut AsyncPgConnection,
    user: UserId,
    after: Option<Uuid>,
    limit: i64,
) -> StoreResult<Vec<ChannelSummary>> {
    let me = user.as_uuid();
    let unread = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM messages x WHERE x.channel_id = channels.id \
         AND x.seq > memberships.last_read_seq AND NOT x.deleted AND x.user_id <> ",
    )
    .bind::<diesel::sql_types::Uuid, _>(me)
    .sql(")");
    let mentioned = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM mentions n WHERE n.channel_id = channels.id \
         AND n.seq > memberships.last_read_seq AND n.user_id = ",
    )
    .bind::<diesel::sql_types::Uuid, _>(me)
    .sql(")");
    let mut query = memberships::table
        .inner_join(channels::table)
        .filter(memberships::user_id.eq(me))
        .select((ChannelRow::as_select(), memberships::last_read_seq, unread, mentioned))
        .order(channels::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(channels::id.gt(after));
    }
    let rows: Vec<(ChannelRow, i64, i64, i64)> = query.load(conn).await?;
    rows.into_iter()
        .map(|(row, last_read_seq, unread_count, mention_count)| {
            let last_seq = row.last_seq;
            Ok(ChannelSummary { channel: row.try_into()?, last_seq, last_read_seq, unread_count, mention_count })
        })
        .collect()
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
    let conversation = Conversation {
        kind: ChannelKind::Dm,
        key: format!("{}:{}", first.id, second.id),
        name: ChannelName::for_dm(first.username.as_str(), second.username.as_str()),
        members: if first.id == second.id { vec![first.clone()] } else { vec![first.clone(), second.clone()] },
    };
    open_conversation(conn, conversation, a, &[]).await
}

/// The group DM of `me` and `others` (2–8 other users, checked by the caller), created on
/// first call. The sorted member ids are a unique key, so concurrent calls make exactly one
/// channel. Calling again re-adds the caller if they left. Returns whether this call
/// created it.
pub async fn open_group_dm(
    conn: &mut AsyncPgConnection,
    me: &UserSummary,
    others: &[UserSummary],
) -> StoreResult<Committed<(Channel, bool)>> {
    let mut members: Vec<UserSummary> = others.to_vec();
    members.push(me.clone());
    members.sort_by_key(|u| u.id);
    members.dedup_by_key(|u| u.id);
    let mut by_name: Vec<&UserSummary> = members.iter().collect();
    by_name.sort_by_key(|u| u.username.key());
    let conversation = Conversation {
        kind: ChannelKind::GroupDm,
        key: format!("g:{}", members.iter().map(|u| u.id.to_string()).collect::<Vec<_>>().join(":")),
        name: ChannelName::for_group(by_name.iter().map(|u| u.display_name.as_str())),
        members,
    };
    open_conversation(conn, conversation, me, std::slice::from_ref(me)).await
}

/// A DM or group DM as it is created: fixed members, found again by `key` (`dm_key`).
struct Conversation {
    kind: ChannelKind,
    key: String,
    name: ChannelName,
    members: Vec<UserSummary>,
}

/// Finds the conversation by its key or creates it with its members; when it existed,
/// `rejoin` are added back if they had left.
async fn open_conversation(
    conn: &mut AsyncPgConnection,
    conversation: Conversation,
    opener: &UserSummary,
    rejoin: &[UserSummary],
) -> StoreResult<Committed<(Channel, bool)>> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let row = ChannelRow {
            id: Uuid::now_v7(),
            name: conversation.name.as_str().to_owned(),
            description: None,
            owner_id: opener.id.as_uuid(),
            is_private: true,
            kind: conversation.kind.as_str().to_owned(),
            dm_key: Some(conversation.key.clone()),
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
        let id: Uuid =
            channels::table.filter(channels::dm_key.eq(&conversation.key)).select(channels::id).first(conn).await?;
        let channel_id = ChannelId::from_uuid(id);
        let joining = if inserted == 1 { conversation.members.as_slice() } else { rejoin };
        let events = if joining.is_empty() { Vec::new() } else { add_members(conn, channel_id, joining).await? };
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
