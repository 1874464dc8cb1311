//! Bot accounts (docs/api.md section 12): users with `is_bot`, owned by the person who made
//! them, signing in with an API token only. A bot joins channels and posts like anyone.

use actix_web::{HttpResponse, delete, get, post, web};
use domain::{Action, DisplayName, TokenLifetime, TokenName, User, UserId, Username};
use persistence::StoreError;
use persistence::api_tokens::{self, NewBotToken};
use persistence::{channels, users};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::Problems;
use super::tokens::{new_token, revoke};
use crate::dto::PageQuery;
use crate::dto::{Page, UserDto};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, JsonBody};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_bot).service(list_bots).service(new_bot_token).service(delete_bot);
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateBotRequest {
    /// The bot's username: the rules of any username, unique among all accounts.
    #[schema(example = "deploybot")]
    pub username: String,
    /// Defaults to the username.
    #[schema(example = "Deploy Bot")]
    pub display_name: Option<String>,
}

/// A bot and its API token; the token is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotWithToken {
    pub user: UserDto,
    #[schema(example = "chat_pat_3q2-7wX9Yb0cKd1LmN4oPq5RsT6uVw7XyZ8aBcDeFgH")]
    pub token: String,
}

/// The name a bot's token carries in the store.
fn bot_token_name() -> ApiResult<TokenName> {
    Ok(TokenName::parse("bot")?)
}

fn bot_token(name: &TokenName, bot: UserId) -> (auth::ApiTokenSecret, NewBotToken<'_>) {
    let (secret, row) = new_token(bot, name, TokenLifetime::NEVER);
    (secret, NewBotToken { id: row.id, name, hash: row.hash, created_at: row.created_at })
}

/// People make bots; a bot cannot make another (it would outlive the chain of owners).
fn refuse_bots(caller: &User) -> ApiResult<()> {
    if caller.is_bot {
        return Err(ApiError::Forbidden("bots cannot manage bots".into()));
    }
    Ok(())
}

/// Create a bot you own, with its API token.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    request_body = CreateBotRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = BotWithToken),
        (status = 403, description = "The caller is a bot", body = ErrorBody),
        (status = 409, description = "The username is taken (`username_taken`)", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
#[post("/bots")]
pub async fn create_bot(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateBotRequest>,
) -> ApiResult<HttpResponse> {
    let mut problems = Problems::default();
    let username = problems.check(Username::parse(&body.0.username));
    let display_name = match (&body.0.display_name, &username) {
        (Some(raw), _) => problems.check(DisplayName::parse(raw)),
        (None, Some(username)) => Some(DisplayName::from_username(username)),
        (None, None) => None,
    };
    problems.finish()?;
    let (Some(username), Some(display_name)) = (username, display_name) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let mut conn = state.conn().await?;
    let owner = state.accounts.get(&mut conn, caller.id()).await?;
    refuse_bots(&owner)?;
    let name = bot_token_name()?;
    // The bot's id is not known yet; the token row takes it inside the transaction.
    let (secret, token) = bot_token(&name, caller.id());
    let (bot, token) = api_tokens::create_bot(&mut conn, owner.id, &username, &display_name, token).await?;
    tracing::info!(bot_id = %bot.id, owner_id = %owner.id, token_id = %token.id, "bot created");
    Ok(HttpResponse::Created().json(BotWithToken {
        user: UserDto::public(&bot, state.hub.presence().is_online(bot.id)),
        token: secret.expose().to_owned(),
    }))
}

/// Your bots, by username.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<UserDto>), (status = 422, body = ErrorBody))
)]
#[get("/bots")]
pub async fn list_bots(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<UserDto>>> {
    let (limit, after) = query.parse_text()?;
    let mut conn = state.conn().await?;
    let rows = users::bots_of(&mut conn, caller.id(), after.as_deref(), limit.get() + 1).await?;
    Ok(web::Json(crate::dto::page_of_users(rows, limit.get(), state.hub.presence(), |u| u.username.key())))
}

/// The caller's live bot named by a path segment; 404 for anything else.
async fn own_bot(state: &AppState, caller: &AuthUser, raw: &str) -> ApiResult<User> {
    let username = Username::parse(raw).map_err(|_| ApiError::not_found("bot"))?;
    let mut conn = state.conn().await?;
    users::bot_of(&mut conn, caller.id(), &username).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("bot"),
        other => other.into(),
    })
}

/// Give a bot a new API token. Its old token is revoked at once, everywhere, and the
/// bot's WebSockets opened with it close with 4001.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = BotWithToken), (status = 404, description = "No such bot of yours", body = ErrorBody))
)]
#[post("/bots/{username}/token")]
pub async fn new_bot_token(
    state: web::Data<AppState>,
    caller: AuthUser,
    username: web::Path<String>,
) -> ApiResult<web::Json<BotWithToken>> {
    let bot = own_bot(&state, &caller, &username).await?;
    let name = bot_token_name()?;
    let (secret, token) = bot_token(&name, bot.id);
    let (_, old) = {
        let mut conn = state.conn().await?;
        api_tokens::replace_bot_token(&mut conn, bot.id, token).await?
    };
    revoke(&state, &old).await?;
    Ok(web::Json(BotWithToken {
        user: UserDto::public(&bot, state.hub.presence().is_online(bot.id)),
        token: secret.expose().to_owned(),
    }))
}

/// Delete a bot: every token it held is revoked, its WebSockets close with 4001, and it
/// leaves its channels. Its account stays as the author of what it posted; its name stays
/// taken.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such bot of yours", body = ErrorBody))
)]
#[delete("/bots/{username}")]
pub async fn delete_bot(
    state: web::Data<AppState>,
    caller: AuthUser,
    username: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let bot = own_bot(&state, &caller, &username).await?;
    let old = {
        let mut conn = state.conn().await?;
        api_tokens::retire_bot(&mut conn, bot.id).await?
    };
    revoke(&state, &old).await?;
    // Everything the bot could still hold, whatever it is, is issued before now.
    state.revocations.revoke_all_before(&state.db, bot.id, OffsetDateTime::now_utc()).await?;
    let mut conn = state.conn().await?;
    let summary = bot.summary();
    for (_, channel_id) in channels::memberships_of(&mut conn, &[bot.id]).await? {
        // A channel the bot owns keeps it as owner (an owner cannot leave).
        if crate::guard::channel_access(&mut conn, channel_id, bot.id, Action::Leave).await.is_ok() {
            channels::leave(&mut conn, channel_id, &summary).await?.publish(&state.hub);
        }
    }
    tracing::info!(bot_id = %bot.id, owner_id = %caller.id(), "bot deleted");
    Ok(HttpResponse::NoContent().finish())
}
