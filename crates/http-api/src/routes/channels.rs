//! Channels, membership, DMs and moderation (docs/api.md section 4).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use domain::{Action, ChannelDescription, ChannelId, ChannelName, Limit, MemberRole, UserSummary};
use persistence::channels::{self, ChannelChanges, Moderation};
use persistence::{AsyncPgConnection, audit, blocks, users};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::auth::Problems;
use crate::dto::{ChannelDto, MessageDto, Page, PageQuery, UserDto, UserSummaryDto};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, JsonBody, audit_reason};
use crate::guard::channel_access;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    // Fixed segments first: `/channels/me` and `/channels/dm/..` must not be taken for ids.
    cfg.service(create_channel)
        .service(list_channels)
        .service(my_channels)
        .service(open_dm)
        .service(open_group_dm)
        .service(get_channel)
        .service(update_channel)
        .service(delete_channel)
        .service(join)
        .service(leave)
        .service(list_members)
        .service(add_member)
        .service(ban)
        .service(unban)
        .service(banned_users)
        .service(kick)
        .service(set_role)
        .service(transfer)
        .service(audit_log)
        .service(pins)
        .service(mark_read);
}

pub use wire::CreateChannelRequest;

/// A channel with its bans, as the ban endpoints return it (docs/api.md section 4).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelWithBans {
    #[serde(flatten)]
    pub channel: ChannelDto,
    pub member_exceptions: Vec<MemberException>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberException {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: Uuid,
    #[schema(example = "2025-01-09T12:01:00.000Z")]
    pub created_at: String,
}

pub use wire::MyChannel;

/// `{id, username, display_name}` of a banned user.
#[derive(Debug, Serialize, ToSchema)]
pub struct BannedUser {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReadMarker {
    /// The seq read up to; the marker never moves backwards.
    pub seq: i64,
}

async fn caller_summary(conn: &mut AsyncPgConnection, caller: &AuthUser) -> ApiResult<UserSummary> {
    users::summary(conn, caller.id()).await.map_err(crate::accounts::account_gone)
}

async fn user_by_name(conn: &mut AsyncPgConnection, username: &str) -> ApiResult<UserSummary> {
    Ok(super::users::user_named(conn, username).await?.summary())
}

/// For the endpoints that act on a user of a channel (`/channels/{id}/…/{username}`): checks
/// the caller may do `action` there, then finds the user.
async fn channel_and_target(
    state: &AppState,
    caller: &AuthUser,
    (id, username): (Uuid, String),
    action: Action,
) -> ApiResult<(persistence::PooledConnection, persistence::channels::ChannelAccess, UserSummary)> {
    let mut conn = state.conn().await?;
    let access = channel_access(&mut conn, ChannelId::from_uuid(id), caller.id(), action).await?;
    let target = user_by_name(&mut conn, &username).await?;
    Ok((conn, access, target))
}

/// A moderation request on a user of a channel: who is acting, on whom, and why.
struct Moderating {
    channel_id: ChannelId,
    target: UserSummary,
    me: UserSummary,
    reason: Option<domain::AuditReason>,
}

impl Moderating {
    fn moderation(&self) -> Moderation<'_> {
        Moderation { by: &self.me, reason: self.reason.as_ref() }
    }
}

/// [`channel_and_target`] for the moderation endpoints, with the caller and the
/// `X-Audit-Reason` their action is recorded with. Who may act on whom is decided again
/// under the channel lock by the repository function.
async fn moderating(
    state: &AppState,
    caller: &AuthUser,
    req: &HttpRequest,
    path: (Uuid, String),
    action: Action,
) -> ApiResult<(persistence::PooledConnection, Moderating)> {
    let reason = audit_reason(req)?;
    let (mut conn, access, target) = channel_and_target(state, caller, path, action).await?;
    let me = caller_summary(&mut conn, caller).await?;
    Ok((conn, Moderating { channel_id: access.channel.id, target, me, reason }))
}

async fn with_bans(conn: &mut AsyncPgConnection, channel: &domain::Channel) -> ApiResult<ChannelWithBans> {
    let bans = channels::bans(conn, channel.id).await?;
    Ok(ChannelWithBans {
        channel: channel.into(),
        member_exceptions: bans
            .into_iter()
            .map(|b| MemberException {
                user_id: b.user_id.as_uuid(),
                created_at: domain::timestamp::format(b.created_at),
            })
            .collect(),
    })
}

/// Create a channel; the caller becomes its owner and first member.
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    request_body = CreateChannelRequest,
    responses(
        (status = 201, body = ChannelDto),
        (status = 409, description = "`channel_name_taken` (case-insensitive)", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
#[post("/channels")]
pub async fn create_channel(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateChannelRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let mut problems = Problems::default();
    let name = problems.check(ChannelName::parse(&body.name));
    let description = body.description.as_deref().and_then(|d| problems.check(ChannelDescription::parse(d)));
    problems.finish()?;
    let name = name.ok_or_else(|| ApiError::internal("validated name missing"))?;
    let mut conn = state.conn().await?;
    let owner = caller_summary(&mut conn, &caller).await?;
    let channel =
        channels::create(&mut conn, &owner, &name, description.as_ref(), body.is_private).await?.publish(&state.hub);
    Ok(HttpResponse::Created().json(ChannelDto::from(&channel)))
}

/// Public channels, plus the private ones the caller belongs to, oldest first.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(PageQuery), responses((status = 200, body = Page<ChannelDto>), (status = 422, body = ErrorBody)))]
#[get("/channels")]
pub async fn list_channels(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<ChannelDto>>> {
    let (limit, after) = query.parse()?;
    let mut conn = state.conn().await?;
    let rows = channels::list_visible(&mut conn, caller.id(), after, limit.get() + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit.get(), |c| c.id.to_string(), |c| ChannelDto::from(&c))))
}

/// The caller's channels and DMs with `unread_count` and `last_read_seq`.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(PageQuery), responses((status = 200, body = Page<MyChannel>)))]
#[get("/channels/me")]
pub async fn my_channels(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<MyChannel>>> {
    let (limit, after) = query.parse()?;
    let mut conn = state.conn().await?;
    let rows = channels::list_mine(&mut conn, caller.id(), after, limit.get() + 1).await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit.get(),
        |s| s.channel.id.to_string(),
        |s| MyChannel {
            channel: ChannelDto::from(&s.channel),
            last_seq: s.last_seq,
            last_read_seq: s.last_read_seq,
            unread_count: s.unread_count,
            mention_count: s.mention_count,
        },
    )))
}

/// The DM with `username` (yourself: notes to self), created on the first call: 201 when
/// created, 200 after. Concurrent calls give one channel.
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 201, body = ChannelDto), (status = 200, body = ChannelDto), (status = 404, body = ErrorBody))
)]
#[post("/channels/dm/{username}")]
pub async fn open_dm(
    state: web::Data<AppState>,
    caller: AuthUser,
    username: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let me = caller_summary(&mut conn, &caller).await?;
    let other = user_by_name(&mut conn, &username).await?;
    refuse_if_blocked(&mut conn, std::slice::from_ref(&other), &me).await?;
    let (channel, created) = channels::open_dm(&mut conn, &me, &other).await?.publish(&state.hub);
    let dto = ChannelDto::from(&channel);
    Ok(if created { HttpResponse::Created().json(dto) } else { HttpResponse::Ok().json(dto) })
}

/// One channel. Public: anyone not banned (banned → 403). Private and DMs: members only
/// (others → 404).
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 200, body = ChannelDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/channels/{id}")]
pub async fn get_channel(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<ChannelDto>> {
    let mut conn = state.conn().await?;
    let access = channel_access(&mut conn, ChannelId::from_uuid(*id), caller.id(), Action::Read).await?;
    Ok(web::Json(ChannelDto::from(&access.channel)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateChannelRequest {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Rename or re-describe a channel (owner).
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = UpdateChannelRequest, responses((status = 200, body = ChannelDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/channels/{id}")]
pub async fn update_channel(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<UpdateChannelRequest>,
) -> ApiResult<web::Json<ChannelDto>> {
    let body = body.0;
    let mut problems = Problems::default();
    let name = body.name.as_deref().and_then(|n| problems.check(ChannelName::parse(n)));
    let description = body.description.as_deref().and_then(|d| problems.check(ChannelDescription::parse(d)));
    problems.finish()?;
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Administer).await?;
    let channel =
        channels::update(&mut conn, channel_id, ChannelChanges { name, description }).await?.publish(&state.hub);
    Ok(web::Json(ChannelDto::from(&channel)))
}

/// Delete a channel with its messages, reactions and attachment links (owner).
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/channels/{id}")]
pub async fn delete_channel(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Administer).await?;
    channels::delete(&mut conn, channel_id, caller.id()).await?.publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

/// Join a public channel (idempotent). Banned → 403; DMs → 403.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 200, body = ChannelDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/channels/{id}/join")]
pub async fn join(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<ChannelDto>> {
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Join).await?;
    let me = caller_summary(&mut conn, &caller).await?;
    let channel = channels::join(&mut conn, channel_id, &me).await.map_err(banned_to_forbidden)?.publish(&state.hub);
    Ok(web::Json(ChannelDto::from(&channel)))
}

/// A ban that landed between the access check and the join's own check under the lock.
fn banned_to_forbidden(error: persistence::StoreError) -> ApiError {
    match error {
        persistence::StoreError::Conflict("user_banned") => {
            ApiError::Forbidden("you are banned from this channel".into())
        }
        other => other.into(),
    }
}

/// Leave a channel. The owner cannot leave (409).
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/channels/{id}/leave")]
pub async fn leave(state: web::Data<AppState>, caller: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Leave).await?;
    let me = caller_summary(&mut conn, &caller).await?;
    channels::leave(&mut conn, channel_id, &me).await?.publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

/// Members of a channel, in user-id order.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = Page<UserDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/channels/{id}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<UserDto>>> {
    let (limit, after) = query.parse()?;
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Read).await?;
    let rows = channels::members(&mut conn, channel_id, after, limit.get() + 1).await?;
    let presence = state.hub.presence();
    Ok(web::Json(Page::from_rows(
        rows,
        limit.get(),
        |(u, _)| u.id.to_string(),
        |(u, role)| UserDto::member(&u, presence.is_online(u.id), role),
    )))
}

/// Add a user to a private channel (owner and moderators). A banned user cannot be added (409).
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path), ("username" = String, Path)), responses((status = 200, body = ChannelDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/channels/{id}/members/{username}")]
pub async fn add_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<web::Json<ChannelDto>> {
    let (mut conn, access, target) = channel_and_target(&state, &caller, path.into_inner(), Action::Invite).await?;
    let channel_id = access.channel.id;
    let channel = channels::join(&mut conn, channel_id, &target)
        .await
        .map_err(|e| match e {
            persistence::StoreError::Conflict("user_banned") => ApiError::Conflict {
                code: "user_banned",
                detail: "That user is banned from this channel; unban them first.".into(),
            },
            other => other.into(),
        })?
        .publish(&state.hub);
    Ok(web::Json(ChannelDto::from(&channel)))
}

/// Ban a user (owner; moderators ban plain members): they leave at once and cannot read,
/// post, react, join or be re-added until unbanned. Banning twice is harmless. The owner
/// cannot be banned (409). Recorded in the audit log with `X-Audit-Reason`.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path), ("username" = String, Path), AuditReasonHeader), responses((status = 200, body = ChannelWithBans), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/channels/{id}/ban-by-username/{username}")]
pub async fn ban(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<web::Json<ChannelWithBans>> {
    let (mut conn, m) = moderating(&state, &caller, &req, path.into_inner(), Action::Moderate).await?;
    let channel = channels::ban(&mut conn, m.channel_id, &m.target, m.moderation()).await?.publish(&state.hub);
    Ok(web::Json(with_bans(&mut conn, &channel).await?))
}

/// Lift a ban (owner; moderators for plain members). Unbanning someone who is not banned is
/// harmless. Recorded in the audit log with `X-Audit-Reason`.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path), ("username" = String, Path), AuditReasonHeader), responses((status = 200, body = ChannelWithBans), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/channels/{id}/unban-by-username/{username}")]
pub async fn unban(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<web::Json<ChannelWithBans>> {
    let (mut conn, m) = moderating(&state, &caller, &req, path.into_inner(), Action::Moderate).await?;
    let channel = channels::unban(&mut conn, m.channel_id, &m.target, m.moderation()).await?.publish(&state.hub);
    Ok(web::Json(with_bans(&mut conn, &channel).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct BannedQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// The `id` of the last user of the previous page (the list is a bare array, as docs/api.md
    /// shows, so it carries no cursor).
    pub after: Option<Uuid>,
}

/// Banned users (owner and moderators), as a bare array in user-id order.
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path), BannedQuery), responses((status = 200, body = Vec<BannedUser>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/channels/{id}/banned-users")]
pub async fn banned_users(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<BannedQuery>,
) -> ApiResult<web::Json<Vec<BannedUser>>> {
    let limit = Limit::parse(query.limit)?;
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Moderate).await?;
    let users = channels::banned_users(&mut conn, channel_id, query.after, limit.get()).await?;
    Ok(web::Json(
        users
            .into_iter()
            .map(|u| BannedUser {
                id: u.id.as_uuid(),
                username: u.username.as_str().to_owned(),
                display_name: u.display_name.as_str().to_owned(),
            })
            .collect(),
    ))
}

/// Move the caller's read marker forward (never backwards).
#[utoipa::path(tag = "channels", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ReadMarker, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[put("/channels/{id}/read")]
pub async fn mark_read(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<ReadMarker>,
) -> ApiResult<HttpResponse> {
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    let access = channel_access(&mut conn, channel_id, caller.id(), Action::Post).await?;
    if body.0.seq < 0 || body.0.seq > access.last_seq {
        return Err(ApiError::validation(
            "seq",
            format!("must be between 0 and the channel's last seq ({})", access.last_seq),
        ));
    }
    channels::mark_read(&mut conn, channel_id, caller.id(), body.0.seq).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `403 blocked` when any of `others` blocked `me`.
async fn refuse_if_blocked(conn: &mut AsyncPgConnection, others: &[UserSummary], me: &UserSummary) -> ApiResult<()> {
    let ids: Vec<domain::UserId> = others.iter().map(|u| u.id).collect();
    if blocks::any_blocks(conn, &ids, me.id).await? { Err(domain::Denied::Blocked.into()) } else { Ok(()) }
}

/// The optional `X-Audit-Reason` header of moderation requests.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct AuditReasonHeader {
    /// Why, for the channel's audit log (at most 512 characters).
    #[param(rename = "X-Audit-Reason", example = "spam")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct GroupDmRequest {
    /// The other 2 to 8 people (the caller is added).
    #[schema(example = json!(["alice", "bob"]))]
    pub usernames: Vec<String>,
}

/// The group DM of the caller and 2–8 others: 201 when created, 200 for the existing one of
/// the same people (concurrent calls give one channel; calling again re-adds a caller who
/// left). 403 `blocked` when one of them blocked the caller.
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    request_body = GroupDmRequest,
    responses(
        (status = 201, body = ChannelDto),
        (status = 200, body = ChannelDto),
        (status = 403, description = "`blocked`", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
#[post("/channels/group-dm")]
pub async fn open_group_dm(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<GroupDmRequest>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let me = caller_summary(&mut conn, &caller).await?;
    let mut names: Vec<domain::Username> = Vec::new();
    for raw in &body.0.usernames {
        let name = domain::Username::parse(raw)
            .map_err(|_| ApiError::validation("usernames", format!("{raw:?} is not a username")))?;
        if name.key() != me.username.key() && !names.iter().any(|n| n.key() == name.key()) {
            names.push(name);
        }
    }
    let others_allowed =
        (domain::channel::GROUP_DM_MEMBERS.start() - 1)..=(domain::channel::GROUP_DM_MEMBERS.end() - 1);
    if !others_allowed.contains(&names.len()) {
        return Err(ApiError::validation("usernames", "must name 2 to 8 other people"));
    }
    let mut others = Vec::with_capacity(names.len());
    for name in &names {
        others.push(user_by_name(&mut conn, name.as_str()).await?);
    }
    refuse_if_blocked(&mut conn, &others, &me).await?;
    let (channel, created) = channels::open_group_dm(&mut conn, &me, &others).await?.publish(&state.hub);
    let dto = ChannelDto::from(&channel);
    Ok(if created { HttpResponse::Created().json(dto) } else { HttpResponse::Ok().json(dto) })
}

/// Remove a member (owner; moderators remove plain members). Unlike a ban they may join a
/// public channel again. Their sockets get `member_removed` and nothing of the channel
/// after it. Recorded in the audit log with `X-Audit-Reason`.
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("username" = String, Path), AuditReasonHeader),
    responses(
        (status = 204),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such channel, user or member", body = ErrorBody),
        (status = 409, description = "The owner cannot be removed", body = ErrorBody),
    )
)]
#[delete("/channels/{id}/members/{username}")]
pub async fn kick(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let (mut conn, m) = moderating(&state, &caller, &req, path.into_inner(), Action::Moderate).await?;
    channels::kick(&mut conn, m.channel_id, &m.target, m.moderation()).await.map_err(not_a_member)?.publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

fn not_a_member(error: persistence::StoreError) -> ApiError {
    match error {
        persistence::StoreError::NotFound => ApiError::not_found("member"),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleRequest {
    /// `moderator` or `member` (ownership moves by a transfer).
    #[schema(example = "moderator")]
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleResponse {
    pub user: UserSummaryDto,
    #[schema(example = "moderator")]
    pub role: &'static str,
}

/// Make a member a moderator, or a moderator a plain member (owner). Writes
/// `member_role_changed`; recorded in the audit log with `X-Audit-Reason`.
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("username" = String, Path), AuditReasonHeader),
    request_body = RoleRequest,
    responses(
        (status = 200, body = RoleResponse),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such channel, user or member", body = ErrorBody),
        (status = 409, description = "`owner_role`: the owner's role changes by a transfer", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
#[put("/channels/{id}/members/{username}/role")]
pub async fn set_role(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<(Uuid, String)>,
    body: JsonBody<RoleRequest>,
) -> ApiResult<web::Json<RoleResponse>> {
    let role = match body.0.role.as_str() {
        "moderator" => MemberRole::Moderator,
        "member" => MemberRole::Member,
        _ => return Err(ApiError::validation("role", "must be \"moderator\" or \"member\"")),
    };
    let (mut conn, m) = moderating(&state, &caller, &req, path.into_inner(), Action::Administer).await?;
    let role = channels::set_role(&mut conn, m.channel_id, &m.target, role, m.moderation())
        .await
        .map_err(not_a_member)?
        .publish(&state.hub);
    Ok(web::Json(RoleResponse { user: (&m.target).into(), role: role.as_str() }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferRequest {
    /// A member, who becomes the owner.
    #[schema(example = "alice")]
    pub username: String,
}

/// Hand the channel to another member (owner); the old owner becomes a moderator. Writes
/// `channel_owner_changed`; recorded in the audit log with `X-Audit-Reason`.
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), AuditReasonHeader),
    request_body = TransferRequest,
    responses(
        (status = 200, body = ChannelDto),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such channel or user", body = ErrorBody),
        (status = 409, description = "`not_a_member`", body = ErrorBody),
    )
)]
#[post("/channels/{id}/transfer")]
pub async fn transfer(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: JsonBody<TransferRequest>,
) -> ApiResult<web::Json<ChannelDto>> {
    let (mut conn, m) = moderating(&state, &caller, &req, (*id, body.0.username), Action::Administer).await?;
    let channel = channels::transfer(&mut conn, m.channel_id, &m.target, m.moderation()).await?.publish(&state.hub);
    Ok(web::Json(ChannelDto::from(&channel)))
}

/// One moderation action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// `ban`, `unban`, `kick`, `role_change`, `transfer` or `message_deleted`.
    #[schema(example = "kick")]
    pub action: &'static str,
    pub actor: UserSummaryDto,
    pub target_user: Option<UserSummaryDto>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub target_message_id: Option<Uuid>,
    #[schema(example = "spam")]
    pub reason: Option<String>,
    #[schema(example = "2025-01-09T12:01:00.000Z")]
    pub created_at: String,
}

/// The channel's moderation actions, newest first (owner and moderators).
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<AuditEntryDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[get("/channels/{id}/audit-log")]
pub async fn audit_log(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<AuditEntryDto>>> {
    let (limit, before) = query.parse()?;
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Moderate).await?;
    let rows = audit::page(&mut conn, channel_id, before, limit.get() + 1).await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit.get(),
        |e| e.id.to_string(),
        |e| AuditEntryDto {
            id: e.id,
            action: e.action.as_str(),
            actor: (&e.actor).into(),
            target_user: e.target_user.as_ref().map(Into::into),
            target_message_id: e.target_message_id.map(|m| m.as_uuid()),
            reason: e.reason,
            created_at: domain::timestamp::format(e.created_at),
        },
    )))
}

/// The channel's pinned messages, newest pin first (at most 100, one page).
#[utoipa::path(
    tag = "channels",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Page<MessageDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[get("/channels/{id}/pins")]
pub async fn pins(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Page<MessageDto>>> {
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    channel_access(&mut conn, channel_id, caller.id(), Action::Read).await?;
    let pinned = persistence::messages::pins(&mut conn, channel_id, caller.id()).await?;
    Ok(web::Json(Page { items: pinned.iter().map(MessageDto::from).collect(), next_cursor: None }))
}
