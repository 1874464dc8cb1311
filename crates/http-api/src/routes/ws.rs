//! The WebSocket handshake (docs/websocket.md). The token is checked before the upgrade, so
//! a bad one is an HTTP 401 and a username that is not the token's an HTTP 403.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(connect).service(connect_as);
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WsQuery {
    /// An access token or a personal API token (browsers cannot set headers on a WebSocket).
    pub token: Option<String>,
}

/// Open the real-time connection.
///
/// Frames are JSON text `{"type": ..., "data": {...}}`. The server sends `ready`
/// `{session_id, user, channels: [{id, last_seq, last_read_seq}]}` first, then channel events
/// (`message`, `message_updated`, `message_deleted`, `reaction_added`, `reaction_removed`,
/// `message_pinned {message_id, by}`, `message_unpinned {message_id, by}`, `member_joined`,
/// `member_left`, `member_banned`, `member_unbanned`, `member_removed {user, by}` (a kick),
/// `member_role_changed {user, role}`, `channel_owner_changed {owner, previous_owner}`,
/// `channel_updated`, `channel_deleted` — each `data` has `channel_id` and `seq`, strictly
/// increasing per channel with no gaps; messages carry `mentions`, `mentions_everyone` and
/// `pinned`), ephemeral `typing`, `presence` and `mention {channel_id, message}` (to each
/// user a message notifies), `ack {nonce, id, seq}` for
/// messages sent over the socket, `error {code, detail}`, `pong`, and `resync_required
/// {channel_id}` when a resume reaches past the kept log. Clients send `ping`, `typing
/// {channel_id}`, `message {channel_id, content, parent_id?, nonce}` and `resume {channels:
/// {channel_id: last_seq}}`. Close codes: 1001 server shutting down, 1008 abuse, 1009 frame
/// over 64 KiB, 4001 token revoked or expired (logout, password change; sign in again),
/// 4008 slow consumer (reconnect and resume).
///
/// A connection's rights follow the database at each event's seq: it receives its user's
/// `member_joined` and everything after; a `member_left`, `member_banned`, `member_removed`
/// or `channel_deleted` is the last event of that channel it receives. A `resume` of a channel
/// the user no longer belongs to gives only that last event (if it is newer than the seq
/// given), or an `error` `not_found`.
#[utoipa::path(
    tag = "realtime",
    params(WsQuery),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorBody),
    )
)]
#[get("/ws")]
pub async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<WsQuery>,
) -> ApiResult<HttpResponse> {
    upgrade(&state, &req, query.token.as_deref(), None).await
}

/// Open the real-time connection as `username`; it must be the token's user (403
/// otherwise). Same protocol as `/api/ws`.
#[utoipa::path(
    tag = "realtime",
    params(("username" = String, Path), WsQuery),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 401, description = "Missing, invalid, expired or revoked token", body = ErrorBody),
        (status = 403, description = "The username is not the token's", body = ErrorBody),
    )
)]
#[get("/ws/{username}")]
pub async fn connect_as(
    state: web::Data<AppState>,
    req: HttpRequest,
    username: web::Path<String>,
    query: web::Query<WsQuery>,
) -> ApiResult<HttpResponse> {
    upgrade(&state, &req, query.token.as_deref(), Some(&username)).await
}

async fn upgrade(
    state: &AppState,
    req: &HttpRequest,
    token: Option<&str>,
    username: Option<&str>,
) -> ApiResult<HttpResponse> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::Unauthorized {
        code: "not_authenticated",
        detail: "Pass the access token as ?token=.".into(),
    })?;
    let authenticated = state.authenticate(token).await?;
    let claims = authenticated.claims;
    if let Some(username) = username
        && !username.eq_ignore_ascii_case(&claims.username)
    {
        return Err(ApiError::Forbidden("the username is not the token's".into()));
    }
    let user = {
        let mut conn = state.conn().await?;
        persistence::users::summary(&mut conn, claims.user_id()).await.map_err(crate::accounts::account_gone)?
    };
    let caller = realtime::Caller {
        credential: realtime::Credential { user: user.id, token: claims.jti, issued_at: claims.issued_at_ms() },
        expires_at: authenticated.expires_at,
        user,
    };
    realtime::start(req, state.session_env(), caller).map_err(|e| ApiError::BadRequest(e.to_string()))
}
