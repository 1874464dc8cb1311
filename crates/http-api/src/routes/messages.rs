//! Messages, threads, reactions and search (docs/api.md section 5).

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use bytes::Bytes;
use domain::{Action, ChannelId, Cursor, Emoji, FileId, Limit, MessageContent, MessageId, ReactionDetail, SearchText};
use persistence::history::{HistoryPage, Position};
use persistence::messages;
use persistence::writer::{NewMessage, PostError};
use persistence::{AsyncPgConnection, users};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::dto::{MessageDto, Page};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, JsonBody};
use crate::guard::{self, channel_access};
use crate::history_cache::KeptPage;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(post_message)
        .service(history)
        .service(get_message)
        .service(replies)
        .service(edit_message)
        .service(delete_message)
        .service(add_reaction)
        .service(remove_reaction)
        .service(list_reactions)
        .service(pin)
        .service(unpin)
        .service(my_mentions)
        .service(search);
}

pub use wire::PostMessageRequest;

pub fn post_error(error: PostError) -> ApiError {
    match error {
        PostError::Denied(denied) => denied.into(),
        PostError::ChannelGone => ApiError::not_found("channel"),
        PostError::Invalid { field, message } => ApiError::validation(field, message),
        PostError::Store(store) => store.into(),
        PostError::Closed => ApiError::Unavailable,
    }
}

/// Send a message (members, not banned). 201 when created; 200 with the first message when
/// the nonce was seen before.
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    request_body = PostMessageRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Alternative to `nonce`")),
    responses(
        (status = 201, body = MessageDto),
        (status = 200, description = "Repeated nonce: the first message", body = MessageDto),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
#[post("/chat/messages")]
pub async fn post_message(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    body: JsonBody<PostMessageRequest>,
) -> ApiResult<HttpResponse> {
    state.limits.check_writes(caller.id())?;
    let body = body.0;
    let nonce =
        body.nonce.or_else(|| req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned));
    let channel_id = ChannelId::from_uuid(body.channel_id);
    let message = NewMessage::parse(
        channel_id,
        caller.id(),
        &body.content,
        body.parent_id.map(MessageId::from_uuid),
        body.attachment_ids.into_iter().map(FileId::from_uuid).collect(),
        nonce,
    )?;
    // The writer decides access under the channel's lock (403 for a public channel, 404 for
    // a private one or a DM), so a post costs no separate access query.
    let posted = state.writer.post(message).await.map_err(post_error)?;
    let dto = MessageDto::from(&posted.message);
    Ok(if posted.created { HttpResponse::Created().json(dto) } else { HttpResponse::Ok().json(dto) })
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Page back in time from a `next_cursor` or a message id (newest first).
    pub before: Option<String>,
    /// Read forward from a cursor or a message id, oldest first, excluding it.
    pub after: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

/// A `before`/`after` value: a message id of this channel (resolved by the page query), or
/// a cursor we made.
fn position(raw: &str, field: &'static str) -> ApiResult<Position> {
    if let Ok(id) = raw.parse::<Uuid>() {
        return Ok(Position::Message(MessageId::from_uuid(id)));
    }
    Cursor::decode(raw, field)?
        .parse::<i64>()
        .map(Position::Seq)
        .map_err(|_| ApiError::validation(field, "is not a valid cursor"))
}

/// Channel history (top-level messages; replies are in their thread). No cursor: the newest
/// page, newest first. `before`: older, newest first. `after`: newer, oldest first.
///
/// One statement reads the access facts, the cursor's message and the page (see
/// `persistence::history`). Errors keep their order: no channel (404), then access
/// (403/404), then a bad cursor (422). A page this node rendered before is shown again
/// when a smaller statement finds the caller's access and the page's version unchanged
/// (`crate::history_cache`).
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("channel_id" = Uuid, Path), HistoryQuery),
    responses((status = 200, body = Page<MessageDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[get("/chat/channels/{channel_id}/messages")]
pub async fn history(
    state: web::Data<AppState>,
    caller: AuthUser,
    channel_id: web::Path<Uuid>,
    query: web::Query<HistoryQuery>,
) -> ApiResult<HttpResponse> {
    let limit = Limit::parse(query.limit)?;
    let channel_id = ChannelId::from_uuid(*channel_id);
    // A bad cursor is reported only after the access check, so it cannot reveal a private
    // channel; such a request still asks the database for the access facts (and no rows).
    let (page, field, refused) = match (&query.before, &query.after) {
        (Some(_), Some(_)) => (
            HistoryPage::Latest,
            "before",
            Some(ApiError::validation("before", "give either before or after, not both")),
        ),
        (Some(raw), None) => match position(raw, "before") {
            Ok(at) => (HistoryPage::Before(at), "before", None),
            Err(error) => (HistoryPage::Latest, "before", Some(error)),
        },
        (None, Some(raw)) => match position(raw, "after") {
            Ok(at) => (HistoryPage::After(at), "after", None),
            Err(error) => (HistoryPage::Latest, "after", Some(error)),
        },
        (None, None) => (HistoryPage::Latest, "before", None),
    };
    let no_channel = |e| match e {
        persistence::StoreError::NotFound => ApiError::not_found("channel"),
        other => other.into(),
    };
    let mut conn = state.conn().await?;
    let kept = if refused.is_none() { state.history.get(channel_id, page, limit, caller.id()) } else { None };
    if let Some(kept) = kept {
        let (access, version) =
            persistence::history::standing(&mut conn, channel_id, caller.id()).await.map_err(no_channel)?;
        guard::authorize(&access, Action::Read)?;
        if version == kept.version {
            metrics::counter!("history_pages_total", "source" => "kept").increment(1);
            return Ok(json(kept.body));
        }
        metrics::counter!("history_pages_total", "source" => "stale").increment(1);
    } else {
        metrics::counter!("history_pages_total", "source" => "read").increment(1);
    }
    let rows = if refused.is_some() { 0 } else { limit.get() + 1 };
    let loaded =
        persistence::history::page(&mut conn, channel_id, caller.id(), page, rows).await.map_err(no_channel)?;
    drop(conn);
    guard::authorize(&loaded.access, Action::Read)?;
    if let Some(error) = refused {
        return Err(error);
    }
    let rows = loaded.messages.ok_or_else(|| ApiError::validation(field, "names no message of this channel"))?;
    // Only a reaction's `me` differs between readers.
    let only_for = rows.iter().any(|m| !m.reactions.is_empty()).then(|| caller.id());
    let rendered = Page::from_rows(rows, limit.get(), |m| m.seq.to_string(), |m| MessageDto::from(&m));
    let body = Bytes::from(serde_json::to_vec(&rendered).map_err(ApiError::internal)?);
    state.history.keep(channel_id, page, limit, only_for, KeptPage { version: loaded.version, body: body.clone() });
    Ok(json(body))
}

fn json(body: Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type(mime::APPLICATION_JSON).body(body)
}

/// Loads a message's channel and checks the caller may do `action` there. A message in a
/// channel the caller may not see is as absent as the channel.
async fn message_access(
    conn: &mut AsyncPgConnection,
    id: MessageId,
    caller: &AuthUser,
    action: Action,
) -> ApiResult<persistence::channels::ChannelAccess> {
    let channel_id = messages::channel_of(conn, id).await.map_err(|e| match e {
        persistence::StoreError::NotFound => ApiError::not_found("message"),
        other => other.into(),
    })?;
    channel_access(conn, channel_id, caller.id(), action).await.map_err(|e| match e {
        ApiError::NotFound(_) => ApiError::not_found("message"),
        other => other,
    })
}

/// One message.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 200, body = MessageDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/chat/messages/{id}")]
pub async fn get_message(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<MessageDto>> {
    let id = MessageId::from_uuid(*id);
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Read).await?;
    let message = messages::get(&mut conn, id, caller.id()).await?;
    Ok(web::Json(MessageDto::from(&message)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RepliesQuery {
    /// `next_cursor` of the previous page.
    pub after: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

/// A thread's replies, oldest first.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path), RepliesQuery), responses((status = 200, body = Page<MessageDto>), (status = 404, body = ErrorBody)))]
#[get("/chat/messages/{id}/replies")]
pub async fn replies(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<RepliesQuery>,
) -> ApiResult<web::Json<Page<MessageDto>>> {
    let limit = Limit::parse(query.limit)?;
    let id = MessageId::from_uuid(*id);
    let after = query
        .after
        .as_deref()
        .map(|raw| {
            Cursor::decode(raw, "after")?
                .parse::<i64>()
                .map_err(|_| domain::DomainError::invalid("after", "is not a valid cursor"))
        })
        .transpose()?
        .unwrap_or(0);
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Read).await?;
    let rows = messages::replies(&mut conn, id, after, limit.get() + 1, caller.id()).await?;
    Ok(web::Json(Page::from_rows(rows, limit.get(), |m| m.seq.to_string(), |m| MessageDto::from(&m))))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EditMessageRequest {
    pub content: String,
}

/// Edit your own message; `edited_at` is set.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = EditMessageRequest, responses((status = 200, body = MessageDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/chat/messages/{id}")]
pub async fn edit_message(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<EditMessageRequest>,
) -> ApiResult<web::Json<MessageDto>> {
    let id = MessageId::from_uuid(*id);
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Post).await?;
    let current = messages::get(&mut conn, id, caller.id()).await?;
    if current.user_id != caller.id() {
        return Err(ApiError::Forbidden("only the author may edit a message".into()));
    }
    if current.deleted {
        return Err(ApiError::not_found("message"));
    }
    let content = MessageContent::parse(&body.0.content, !current.attachments.is_empty())?;
    let message = messages::edit(&mut conn, id, caller.id(), &content).await?.publish(&state.hub);
    let message = messages::get(&mut conn, message.id, caller.id()).await?;
    Ok(web::Json(MessageDto::from(&message)))
}

/// Delete a message (its author; the channel owner; a moderator, others' than the owner's
/// and moderators'). A tombstone stays. A deletion by someone else is recorded in the
/// audit log with `X-Audit-Reason`.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path), crate::routes::channels::AuditReasonHeader), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/chat/messages/{id}")]
pub async fn delete_message(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = MessageId::from_uuid(*id);
    let reason = crate::extract::audit_reason(&req)?;
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Read).await?;
    // Author, owner or moderator, decided under the channel lock.
    messages::delete(&mut conn, id, caller.id(), reason.as_ref()).await?.publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReactionRequest {
    /// One emoji, or a `:short_code:`.
    #[schema(example = "👍")]
    pub emoji: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReactionDto {
    pub emoji: String,
    pub count: i64,
    /// Usernames, earliest first (at most 100; `count` is exact).
    pub users: Vec<String>,
    pub me: bool,
}

impl From<ReactionDetail> for ReactionDto {
    fn from(r: ReactionDetail) -> Self {
        Self { emoji: r.emoji.as_str().to_owned(), count: r.count, users: r.users, me: r.me }
    }
}

async fn reactions_of(conn: &mut AsyncPgConnection, id: MessageId, caller: &AuthUser) -> ApiResult<Vec<ReactionDto>> {
    Ok(messages::reaction_details(conn, id, caller.id()).await?.into_iter().map(ReactionDto::from).collect())
}

/// React to a message (members). Idempotent per user and emoji. Returns the message's
/// reactions. A message carries at most 50 different emoji; a new one beyond that → 409
/// `too_many_reactions` (joining an existing reaction is always possible).
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ReactionRequest, responses((status = 200, body = Vec<ReactionDto>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "`too_many_reactions`", body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/chat/messages/{id}/reactions")]
pub async fn add_reaction(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<ReactionRequest>,
) -> ApiResult<web::Json<Vec<ReactionDto>>> {
    state.limits.check_writes(caller.id())?;
    let emoji = Emoji::parse(&body.0.emoji)?;
    let id = MessageId::from_uuid(*id);
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Post).await?;
    let me = users::summary(&mut conn, caller.id()).await?;
    messages::react(&mut conn, id, &me, &emoji)
        .await
        .map_err(|e| match e {
            persistence::StoreError::NotFound => ApiError::not_found("message"),
            persistence::StoreError::Conflict(code @ "too_many_reactions") => ApiError::Conflict {
                code,
                detail: format!(
                    "A message can carry at most {} different reactions; add one of those already there.",
                    domain::message::MAX_DISTINCT_REACTIONS
                ),
            },
            other => other.into(),
        })?
        .publish(&state.hub);
    Ok(web::Json(reactions_of(&mut conn, id, &caller).await?))
}

/// Remove your reaction.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path), ("emoji" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[delete("/chat/messages/{id}/reactions/{emoji}")]
pub async fn remove_reaction(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let (id, emoji) = path.into_inner();
    let emoji = Emoji::parse(&emoji)?;
    let id = MessageId::from_uuid(id);
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Post).await?;
    let me = users::summary(&mut conn, caller.id()).await?;
    messages::unreact(&mut conn, id, &me, &emoji).await?.publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

/// A message's reactions with who reacted.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 200, body = Vec<ReactionDto>), (status = 404, body = ErrorBody)))]
#[get("/chat/messages/{id}/reactions")]
pub async fn list_reactions(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Vec<ReactionDto>>> {
    let id = MessageId::from_uuid(*id);
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, &caller, Action::Read).await?;
    Ok(web::Json(reactions_of(&mut conn, id, &caller).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Words to find (web-search syntax: `"exact phrase"`, `-excluded`, `or`).
    pub q: Option<String>,
    /// Only this channel.
    pub channel_id: Option<Uuid>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub before: Option<String>,
}

/// Full-text search over the channels and DMs you are a member of, best match first.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(SearchQuery), responses((status = 200, body = Page<MessageDto>), (status = 422, body = ErrorBody)))]
#[get("/search/messages")]
pub async fn search(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<SearchQuery>,
) -> ApiResult<web::Json<Page<MessageDto>>> {
    let limit = Limit::parse(query.limit)?;
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    let q = SearchText::parse(q, "q")
        .ok()
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::validation("q", "must be 1 to 200 characters, without NUL"))?;
    let before = query
        .before
        .as_deref()
        .map(|raw| {
            let decoded = Cursor::decode(raw, "before")?;
            decoded
                .split_once('/')
                .and_then(|(rank, id)| Some((rank.parse::<f32>().ok()?, id.parse::<Uuid>().ok()?)))
                .ok_or_else(|| domain::DomainError::invalid("before", "is not a valid cursor"))
        })
        .transpose()?;
    let mut conn = state.conn().await?;
    let hits = messages::search(
        &mut conn,
        caller.id(),
        &q,
        query.channel_id.map(ChannelId::from_uuid),
        before,
        limit.get() + 1,
    )
    .await?;
    Ok(web::Json(Page::from_rows(
        hits,
        limit.get(),
        |(m, rank)| format!("{rank}/{}", m.id),
        |(m, _)| MessageDto::from(&m),
    )))
}

/// Pin a message for its channel (members; idempotent). A channel holds at most 100 pins
/// (409 `too_many_pins`). Writes `message_pinned`.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "`too_many_pins`", body = ErrorBody)))]
#[put("/chat/messages/{id}/pin")]
pub async fn pin(state: web::Data<AppState>, caller: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    set_pinned(&state, &caller, MessageId::from_uuid(*id), true).await
}

/// Unpin a message (members; idempotent). Writes `message_unpinned`.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/chat/messages/{id}/pin")]
pub async fn unpin(state: web::Data<AppState>, caller: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    set_pinned(&state, &caller, MessageId::from_uuid(*id), false).await
}

async fn set_pinned(state: &AppState, caller: &AuthUser, id: MessageId, pinned: bool) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    message_access(&mut conn, id, caller, Action::Post).await?;
    let me = users::summary(&mut conn, caller.id()).await.map_err(crate::accounts::account_gone)?;
    messages::set_pinned(&mut conn, id, &me, pinned)
        .await
        .map_err(|e| match e {
            persistence::StoreError::NotFound => ApiError::not_found("message"),
            other => other.into(),
        })?
        .publish(&state.hub);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct MentionsQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub before: Option<String>,
}

/// Messages that mention the caller (by name, `@channel` or `@here`), newest first, from
/// channels they can still read.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(MentionsQuery), responses((status = 200, body = Page<MessageDto>), (status = 422, body = ErrorBody)))]
#[get("/mentions")]
pub async fn my_mentions(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<MentionsQuery>,
) -> ApiResult<web::Json<Page<MessageDto>>> {
    let limit = Limit::parse(query.limit)?;
    let before = query
        .before
        .as_deref()
        .map(|raw| {
            Cursor::decode(raw, "before")?
                .parse::<Uuid>()
                .map(MessageId::from_uuid)
                .map_err(|_| domain::DomainError::invalid("before", "is not a valid cursor"))
        })
        .transpose()?;
    let mut conn = state.conn().await?;
    let rows = persistence::mentions::page(&mut conn, caller.id(), before, limit.get() + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit.get(), |m| m.id.to_string(), |m| MessageDto::from(&m))))
}
