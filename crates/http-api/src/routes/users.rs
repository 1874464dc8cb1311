//! Users (docs/api.md section 3).

use actix_web::{HttpResponse, delete, get, patch, put, web};
use domain::{Cursor, DisplayName, Email, Limit, Password, SearchText, User, Username};
use persistence::AsyncPgConnection;
use persistence::users::{self, UserChanges};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Problems;
use crate::dto::{Page, PageQuery, UserDto};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, JsonBody};
use crate::state::AppState;
use crate::throttle;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(get_me)
        .service(update_me)
        .service(list_blocks)
        .service(list_users)
        .service(get_user)
        .service(block)
        .service(unblock);
}

pub async fn own_account(state: &AppState, caller: &AuthUser) -> ApiResult<UserDto> {
    let mut conn = state.conn().await?;
    let user = state.accounts.get(&mut conn, caller.id()).await?;
    Ok(UserDto::own(&user, state.hub.presence().is_online(user.id)))
}

/// The caller's own account, with email.
#[utoipa::path(tag = "users", security(("bearer" = [])), responses((status = 200, body = UserDto), (status = 401, body = ErrorBody)))]
#[get("/users/me")]
pub async fn get_me(state: web::Data<AppState>, caller: AuthUser) -> ApiResult<web::Json<UserDto>> {
    own_account(&state, &caller).await.map(web::Json)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMeRequest {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    /// Required to change `email` or `password`.
    pub current_password: Option<String>,
}

/// The account after an update; a password change adds a fresh token, because it revoked
/// every other token of the account (the one used for the request included).
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatedAccount {
    #[serde(flatten)]
    pub user: UserDto,
    /// After a password change only: a fresh access token (every older one is revoked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// `bearer`, with `access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Seconds until `access_token` expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

/// Change display name, email or password (the last two need `current_password`). A
/// password change revokes every token of the account issued before it, on every node
/// (open WebSockets close with 4001), and the response carries a fresh `access_token`.
/// Wrong `current_password`s count towards the account's failed logins.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, body = UpdatedAccount),
        (status = 403, description = "current_password is wrong", body = ErrorBody),
        (status = 409, description = "email taken", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "Too many failed logins or `current_password`s for this account", body = ErrorBody),
    )
)]
#[patch("/users/me")]
pub async fn update_me(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<UpdateMeRequest>,
) -> ApiResult<web::Json<UpdatedAccount>> {
    let body = body.0;
    let mut problems = Problems::default();
    let display_name = body.display_name.as_deref().and_then(|raw| problems.check(DisplayName::parse(raw)));
    let email = body.email.as_deref().and_then(|raw| problems.check(Email::parse(raw)));
    let password = body.password.as_deref().and_then(|raw| problems.check(Password::parse(raw)));
    problems.finish()?;

    let mut changes =
        UserChanges { display_name: display_name.map(|d| d.as_str().to_owned()), ..UserChanges::default() };
    let password_changes = password.is_some();
    if email.is_some() || password.is_some() {
        let current = body
            .current_password
            .ok_or_else(|| ApiError::validation("current_password", "is required to change email or password"))?;
        // A stolen token must not give unlimited password guesses: they count as failed
        // logins of the account.
        // They also queue per account like logins (see `routes::auth::login`), so 200
        // parallel guesses run one bcrypt at a time and stop at the limit.
        let account = throttle::account_key(&caller.claims.username);
        let turn = state.hasher.turn(&account).await;
        throttle::check(&state, &account).await?;
        let hash = {
            let mut conn = state.conn().await?;
            users::password_hash(&mut conn, caller.id()).await?
        };
        if !turn.verify(&current, Some(&hash)).await? {
            throttle::failed(&state, &account).await?;
            return Err(ApiError::Forbidden("current_password is incorrect".into()));
        }
        drop(turn);
        changes.email = email.map(|e| e.as_str().to_owned());
        if let Some(password) = password {
            changes.password_hash = Some(state.hasher.hash(&password).await?);
        }
    }
    let mut conn = state.conn().await?;
    let user = users::update(&mut conn, caller.id(), changes).await?;
    drop(conn);
    state.accounts.put(user.clone());
    let token = if password_changes {
        state.revocations.revoke_all_before(&state.db, user.id, OffsetDateTime::now_utc()).await?;
        Some(super::auth::issue(&state, &user)?)
    } else {
        None
    };
    Ok(web::Json(UpdatedAccount {
        user: UserDto::own(&user, state.hub.presence().is_online(user.id)),
        token_type: token.as_ref().map(|t| t.token_type.clone()),
        expires_in: token.as_ref().map(|t| t.expires_in),
        access_token: token.map(|t| t.access_token),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListUsersQuery {
    /// Prefix of a username or display name (case-insensitive); at most 200 characters,
    /// no NUL (422 otherwise).
    pub q: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// Search users by username or display-name prefix, in username order.
#[utoipa::path(tag = "users", security(("bearer" = [])), params(ListUsersQuery), responses((status = 200, body = Page<UserDto>), (status = 422, body = ErrorBody)))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    _caller: AuthUser,
    query: web::Query<ListUsersQuery>,
) -> ApiResult<web::Json<Page<UserDto>>> {
    let limit = Limit::parse(query.limit)?;
    let prefix = query.q.as_deref().map(|q| SearchText::parse(q, "q")).transpose()?;
    let after = query.after.as_deref().map(|c| Cursor::decode(c, "after")).transpose()?;
    let mut conn = state.conn().await?;
    let rows = users::list(&mut conn, prefix.as_ref(), after.as_deref(), limit.get() + 1).await?;
    Ok(web::Json(crate::dto::page_of_users(rows, limit.get(), state.hub.presence(), |u| u.username.key())))
}

/// One user by username (case-insensitive).
#[utoipa::path(tag = "users", security(("bearer" = [])), params(("username" = String, Path)), responses((status = 200, body = UserDto), (status = 404, body = ErrorBody)))]
#[get("/users/{username}")]
pub async fn get_user(
    state: web::Data<AppState>,
    caller: AuthUser,
    username: web::Path<String>,
) -> ApiResult<web::Json<UserDto>> {
    let mut conn = state.conn().await?;
    let user = user_named(&mut conn, &username).await?;
    let online = state.hub.presence().is_online(user.id);
    Ok(web::Json(if user.id == caller.id() { UserDto::own(&user, online) } else { UserDto::public(&user, online) }))
}

/// The user a path segment names (`/users/{username}`, `/channels/dm/{username}`, the member
/// and ban endpoints). Text that is not a valid username — a NUL byte, a space, 200
/// characters — names nobody: 404 like an unknown name, and it never reaches a query.
pub async fn user_named(conn: &mut AsyncPgConnection, raw: &str) -> ApiResult<User> {
    let username = Username::parse(raw).map_err(|_| ApiError::not_found("user"))?;
    users::find_by_username(conn, &username).await.map_err(|e| match e {
        persistence::StoreError::NotFound => ApiError::not_found("user"),
        other => other.into(),
    })
}

/// Block a user (idempotent): they cannot open or write to a DM or group DM with you, and
/// their mentions of you notify nothing. Shared channels are unaffected.
#[utoipa::path(tag = "users", security(("bearer" = [])), params(("username" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 422, description = "Blocking yourself", body = ErrorBody)))]
#[put("/users/{username}/block")]
pub async fn block(
    state: web::Data<AppState>,
    caller: AuthUser,
    username: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let target = user_named(&mut conn, &username).await?;
    if target.id == caller.id() {
        return Err(ApiError::validation("username", "you cannot block yourself"));
    }
    persistence::blocks::block(&mut conn, caller.id(), target.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Unblock a user (idempotent).
#[utoipa::path(tag = "users", security(("bearer" = [])), params(("username" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/users/{username}/block")]
pub async fn unblock(
    state: web::Data<AppState>,
    caller: AuthUser,
    username: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let target = user_named(&mut conn, &username).await?;
    persistence::blocks::unblock(&mut conn, caller.id(), target.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The users the caller blocked, in user-id order.
#[utoipa::path(tag = "users", security(("bearer" = [])), params(PageQuery), responses((status = 200, body = Page<UserDto>), (status = 422, body = ErrorBody)))]
#[get("/users/me/blocks")]
pub async fn list_blocks(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<UserDto>>> {
    let (limit, after) = query.parse()?;
    let mut conn = state.conn().await?;
    let rows = persistence::blocks::blocked_by(&mut conn, caller.id(), after, limit.get() + 1).await?;
    Ok(web::Json(crate::dto::page_of_users(rows, limit.get(), state.hub.presence(), |u| u.id.to_string())))
}
