//! Personal API tokens (docs/api.md section 12): made, listed and revoked by their owner.
//! The secret is in the creation response only; the store keeps its SHA-256.

use actix_web::{HttpResponse, delete, get, post, web};
use auth::ApiTokenSecret;
use auth::api_token::revocation_lifetime;
use domain::{ApiToken, ApiTokenId, TokenLifetime, TokenName, UserId};
use persistence::StoreError;
use persistence::api_tokens::{self, NewApiToken};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use super::auth::Problems;
use crate::dto::Page;
use crate::dto::PageQuery;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, JsonBody};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_token).service(list_tokens).service(revoke_token);
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTokenRequest {
    /// What the token is for: 1–64 characters.
    #[schema(example = "deploy script")]
    pub name: String,
    /// 1–3650; without it the token never expires.
    #[schema(example = 90)]
    pub expires_in_days: Option<i64>,
}

/// An API token without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiTokenDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(example = "deploy script")]
    pub name: String,
    #[schema(example = "2025-01-09T12:00:00.000Z")]
    pub created_at: String,
    /// `null`: never expires.
    #[schema(example = "2025-04-09T12:00:00.000Z")]
    pub expires_at: Option<String>,
    /// Updated at most once a minute.
    #[schema(example = "2025-01-10T08:30:00.000Z")]
    pub last_used_at: Option<String>,
}

impl From<&ApiToken> for ApiTokenDto {
    fn from(token: &ApiToken) -> Self {
        Self {
            id: token.id.as_uuid(),
            name: token.name.as_str().to_owned(),
            created_at: domain::timestamp::format(token.created_at),
            expires_at: token.expires_at.map(domain::timestamp::format),
            last_used_at: token.last_used_at.map(domain::timestamp::format),
        }
    }
}

/// A new API token with its secret, which is shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTokenDto {
    #[serde(flatten)]
    pub info: ApiTokenDto,
    /// Use as `Authorization: Bearer <token>` or WebSocket `?token=`. Store it now: it
    /// cannot be shown again.
    #[schema(example = "chat_pat_3q2-7wX9Yb0cKd1LmN4oPq5RsT6uVw7XyZ8aBcDeFgH")]
    pub token: String,
}

/// A fresh secret and the row that stands for it, for `user`.
pub fn new_token(user: UserId, name: &TokenName, lifetime: TokenLifetime) -> (ApiTokenSecret, NewApiToken<'_>) {
    let secret = ApiTokenSecret::generate();
    let now = OffsetDateTime::now_utc();
    let row = NewApiToken {
        id: ApiTokenId::new(),
        user,
        name,
        hash: secret.digest(),
        created_at: now,
        expires_at: lifetime.expires_at(now),
    };
    (secret, row)
}

/// Create a personal API token. It acts as you wherever an access token does (REST and
/// WebSocket), until it expires or you revoke it.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = CreatedTokenDto),
        (status = 422, description = "Invalid `name` or `expires_in_days`", body = ErrorBody),
    )
)]
#[post("/users/me/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateTokenRequest>,
) -> ApiResult<HttpResponse> {
    let mut problems = Problems::default();
    let name = problems.check(TokenName::parse(&body.0.name));
    let lifetime = problems.check(TokenLifetime::parse(body.0.expires_in_days));
    problems.finish()?;
    let (Some(name), Some(lifetime)) = (name, lifetime) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let (secret, row) = new_token(caller.id(), &name, lifetime);
    let mut conn = state.conn().await?;
    let token = api_tokens::create(&mut conn, row).await?;
    tracing::info!(token_id = %token.id, user_id = %caller.id(), "API token created");
    Ok(HttpResponse::Created()
        .json(CreatedTokenDto { info: ApiTokenDto::from(&token), token: secret.expose().to_owned() }))
}

/// Your API tokens, oldest first, without their secrets.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<ApiTokenDto>), (status = 422, body = ErrorBody))
)]
#[get("/users/me/tokens")]
pub async fn list_tokens(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<ApiTokenDto>>> {
    let (limit, after) = query.parse()?;
    let mut conn = state.conn().await?;
    let rows = api_tokens::list(&mut conn, caller.id(), after, limit.get() + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit.get(), |t| t.id.to_string(), |t| ApiTokenDto::from(&t))))
}

/// Revoke one of your API tokens: refused everywhere at once, and its WebSockets close with
/// 4001 on every node within a second.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such token of yours", body = ErrorBody))
)]
#[delete("/users/me/tokens/{id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    delete_token(&state, caller.id(), ApiTokenId::from_uuid(*id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes `user`'s token `id` and revokes it on every node (which closes its sockets).
pub async fn delete_token(state: &AppState, user: UserId, id: ApiTokenId) -> ApiResult<()> {
    let token = {
        let mut conn = state.conn().await?;
        api_tokens::delete(&mut conn, user, id).await.map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("token"),
            other => other.into(),
        })?
    };
    revoke(state, &[token]).await
}

/// Puts deleted tokens into the revocation set, so every node refuses them (even from its
/// cache) and closes their sockets.
pub async fn revoke(state: &AppState, tokens: &[ApiToken]) -> ApiResult<()> {
    let now = OffsetDateTime::now_utc();
    for token in tokens {
        state.revocations.revoke_id(&state.db, token.id.as_uuid(), revocation_lifetime(token.expires_at, now)).await?;
        tracing::info!(token_id = %token.id, user_id = %token.user_id, "API token revoked");
    }
    Ok(())
}
