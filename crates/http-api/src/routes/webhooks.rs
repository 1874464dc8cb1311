//! Incoming webhooks (docs/api.md section 12), Slack and Mattermost compatible: a channel's
//! owner or a moderator makes a secret URL; `POST /hooks/{secret}` with `{text, username?,
//! icon_url?}` (JSON, or a form field `payload` holding that JSON) posts a message through the
//! ordinary message writer, so it gets the channel's next seq and reaches every member's
//! socket.

use std::collections::HashMap;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use auth::api_token::{digest, random_secret};
use domain::{Action, ChannelId, DisplayName, NewMessage, TokenName, UserId, Webhook, WebhookId};
use persistence::channels::ChannelAccess;
use persistence::{AsyncPgConnection, StoreError, webhooks};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::dto::Page;
use crate::dto::PageQuery;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, JSON_LIMIT, JsonBody, body_timeout, is_json, read_limited};
use crate::guard::channel_access;
use crate::state::AppState;

/// The management endpoints, under `/api`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_webhook).service(list_webhooks).service(delete_webhook).service(regenerate_webhook);
}

/// `POST /hooks/{secret}`, outside `/api` as in Slack and Mattermost.
pub fn configure_hooks(cfg: &mut ServiceConfig) {
    cfg.service(post_hook);
}

/// Who may manage a channel's webhooks: its owner and moderators (`Action::Moderate`),
/// decided here and nowhere else.
async fn webhook_manager(conn: &mut AsyncPgConnection, channel: ChannelId, caller: UserId) -> ApiResult<ChannelAccess> {
    channel_access(conn, channel, caller, Action::Moderate).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateWebhookRequest {
    /// Shown as the author of its messages: 1–64 characters.
    #[schema(example = "CI")]
    pub name: String,
}

/// A webhook. `url` (a path on this server) holds its secret and is shown only when the
/// webhook is created or its secret regenerated.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[schema(example = "CI")]
    pub name: String,
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/hooks/3q2-7wX9Yb0cKd1LmN4oPq5RsT6uVw7XyZ8aBcDeFgH")]
    pub url: Option<String>,
    #[schema(example = "2025-01-09T12:00:00.000Z")]
    pub created_at: String,
}

impl WebhookDto {
    fn of(webhook: &Webhook, secret: Option<&str>) -> Self {
        Self {
            id: webhook.id.as_uuid(),
            name: webhook.name.as_str().to_owned(),
            channel_id: webhook.channel_id.as_uuid(),
            url: secret.map(|s| format!("/hooks/{s}")),
            created_at: domain::timestamp::format(webhook.created_at),
        }
    }
}

/// Add an incoming webhook to a channel (its owner or a moderator). Its account joins the channel.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created; `url` is shown only now", body = WebhookDto),
        (status = 403, description = "Not the channel's owner or a moderator, or a DM", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
#[post("/channels/{id}/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<CreateWebhookRequest>,
) -> ApiResult<HttpResponse> {
    let name = TokenName::parse(&body.0.name)?;
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    webhook_manager(&mut conn, channel_id, caller.id()).await?;
    let secret = random_secret();
    let webhook =
        webhooks::create(&mut conn, channel_id, &name, digest(&secret), caller.id()).await?.publish(&state.hub);
    tracing::info!(webhook_id = %webhook.id, channel_id = %channel_id, "webhook created");
    Ok(HttpResponse::Created().json(WebhookDto::of(&webhook, Some(&secret))))
}

/// A channel's webhooks, oldest first, without their URLs (the channel's owner and moderators).
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<WebhookDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[get("/channels/{id}/webhooks")]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<WebhookDto>>> {
    let (limit, after) = query.parse()?;
    let channel_id = ChannelId::from_uuid(*id);
    let mut conn = state.conn().await?;
    webhook_manager(&mut conn, channel_id, caller.id()).await?;
    let rows = webhooks::list(&mut conn, channel_id, after, limit.get() + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit.get(), |w| w.id.to_string(), |w| WebhookDto::of(&w, None))))
}

/// The webhook a path names, if the caller manages its channel.
async fn managed(conn: &mut AsyncPgConnection, caller: &AuthUser, id: Uuid) -> ApiResult<Webhook> {
    let webhook = webhooks::find(conn, WebhookId::from_uuid(id)).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("webhook"),
        other => other.into(),
    })?;
    webhook_manager(conn, webhook.channel_id, caller.id()).await?;
    Ok(webhook)
}

/// Delete a webhook (the channel's owner or a moderator): its URL stops working and its
/// account leaves the channel; its messages stay.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[delete("/webhooks/{id}")]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let webhook = managed(&mut conn, &caller, *id).await?;
    webhooks::delete(&mut conn, webhook.id).await?.publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

/// Give a webhook a new secret URL (the channel's owner or a moderator); the old one stops
/// working at once.
#[utoipa::path(
    tag = "integrations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[post("/webhooks/{id}/regenerate")]
pub async fn regenerate_webhook(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<WebhookDto>> {
    let mut conn = state.conn().await?;
    let webhook = managed(&mut conn, &caller, *id).await?;
    let secret = random_secret();
    let webhook = webhooks::regenerate(&mut conn, webhook.id, digest(&secret)).await?;
    Ok(web::Json(WebhookDto::of(&webhook, Some(&secret))))
}

/// What a webhook post carries (Slack's and Mattermost's incoming-webhook payload).
#[derive(Debug, Deserialize, ToSchema)]
pub struct HookPayload {
    /// The message: 1–4000 characters after trimming.
    #[schema(example = "Build #42 passed")]
    pub text: Option<String>,
    /// The name the message shows instead of the webhook's (1–64 characters; ignored when
    /// it is not a valid display name).
    #[schema(example = "ci-runner")]
    pub username: Option<String>,
    /// Accepted for compatibility; not shown.
    pub icon_url: Option<String>,
}

/// The body of a form post: `payload=<json>`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct HookForm {
    /// `{text, username?, icon_url?}` as JSON.
    pub payload: String,
}

/// Post to a channel through a webhook. No other authentication: the secret in the path is
/// the credential. Answers `ok` as text, like Slack.
#[utoipa::path(
    tag = "integrations",
    params(("secret" = String, Path, description = "The secret of the webhook's URL")),
    request_body(content(
        (HookPayload = "application/json"),
        (HookForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Posted", body = String, content_type = "text/plain", example = "ok"),
        (status = 400, description = "No `text`, or a body that is not the payload (`no_text`, `invalid_payload`)", body = ErrorBody),
        (status = 404, description = "No webhook has this secret", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "`text` longer than 4000 characters", body = ErrorBody),
        (status = 429, description = "Too many posts through this webhook (`RATE_LIMIT_WEBHOOK_PER_MINUTE`)", body = ErrorBody),
    )
)]
#[post("/hooks/{secret}")]
pub async fn post_hook(
    state: web::Data<AppState>,
    req: HttpRequest,
    secret: web::Path<String>,
    mut payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form && !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "Send the payload as application/json, or as the form field `payload`.".into(),
        ));
    }
    let found = {
        let mut conn = state.conn().await?;
        webhooks::by_secret(&mut conn, &digest(&secret)).await?
    };
    let (webhook, account) = found.ok_or_else(|| ApiError::not_found("webhook"))?;
    state.limits.check_webhook(webhook.id)?;
    let body = read_limited(&mut payload, JSON_LIMIT, body_timeout(&req)).await?;
    let invalid = |why: String| ApiError::BadInput { code: "invalid_payload", detail: why };
    let hook: HookPayload = if is_form {
        let form: HashMap<String, String> =
            serde_urlencoded::from_bytes(&body).map_err(|e| invalid(format!("The form could not be read: {e}")))?;
        let json = form.get("payload").ok_or_else(|| invalid("The form has no `payload` field.".into()))?;
        serde_json::from_str(json).map_err(|e| invalid(format!("`payload` is not the JSON payload: {e}")))?
    } else {
        serde_json::from_slice(&body).map_err(|e| invalid(format!("The body is not the JSON payload: {e}")))?
    };
    let text = hook.text.filter(|t| !t.trim().is_empty()).ok_or_else(|| ApiError::BadInput {
        code: "no_text",
        detail: "The payload needs a non-empty `text`.".into(),
    })?;
    let shown = hook
        .username
        .as_deref()
        .and_then(|raw| DisplayName::parse(raw).ok())
        .map_or_else(|| webhook.name.as_str().to_owned(), |name| name.as_str().to_owned());
    let message = NewMessage::parse(webhook.channel_id, account.id, &text, None, Vec::new(), None)?.from_webhook(shown);
    state.writer.post(message).await.map_err(super::messages::post_error)?;
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok"))
}
