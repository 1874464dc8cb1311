//! Extractors: the authenticated caller, and JSON bodies that fail the way docs/api.md section 1 says.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest, web};
use auth::Claims;
use domain::{ApiTokenId, UserId};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// The largest JSON body accepted.
pub const JSON_LIMIT: usize = 64 * 1024;

/// The caller, authenticated by `Authorization: Bearer <token>`: an access token or a
/// personal API token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub claims: Claims,
    /// Set when the caller used a personal API token (a bot always does).
    pub api_token: Option<ApiTokenId>,
}

impl AuthUser {
    pub fn id(&self) -> UserId {
        self.claims.user_id()
    }
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized { code: "not_authenticated", detail: detail.to_owned() }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate_request(&req).await })
    }
}

async fn authenticate_request(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal("state missing"))?;
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("Authentication required: send Authorization: Bearer <token>."))?;
    let token = bearer_of(header).ok_or_else(|| unauthorized("The Authorization header must be: Bearer <token>."))?;
    let authenticated = state.authenticate(token).await?;
    Ok(AuthUser { claims: authenticated.claims, api_token: authenticated.api_token })
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers().get(AUTHORIZATION).and_then(bearer_of)
}

fn bearer_of(header: &actix_web::http::header::HeaderValue) -> Option<&str> {
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A JSON body: at most 64 KiB (413), `application/json` (415), syntactically JSON (400),
/// and of the expected shape (422, naming the field).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = is_json(req);
        let timeout = body_timeout(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType("Send the body as application/json.".into()));
            }
            let body = read_limited(&mut payload, JSON_LIMIT, timeout).await?;
            parse_json(&body).map(JsonBody)
        })
    }
}

pub fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        })
}

/// How long a client may take to send a JSON body (`BODY_TIMEOUT_SECONDS`): a body trickled
/// in a byte at a time (slowloris) is cut off with 408.
pub fn body_timeout(req: &HttpRequest) -> std::time::Duration {
    let seconds = req.app_data::<web::Data<AppState>>().map_or(30, |state| state.settings.body_timeout_seconds);
    std::time::Duration::from_secs(seconds)
}

/// Reads the whole body within `timeout`, refusing it as soon as it passes `limit` bytes.
pub async fn read_limited<S, E>(
    payload: &mut S,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::BytesMut, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    tokio::time::timeout(timeout, read_all(payload, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout("The body took too long to arrive.".into()))?
}

async fn read_all<S, E>(payload: &mut S, limit: usize) -> Result<web::BytesMut, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("The body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!("The body must be at most {limit} bytes.")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            let message = inner.to_string();
            // serde names a missing field in its message rather than in the path.
            let field = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .map_or_else(|| if path == "." { "body".to_owned() } else { path }, str::to_owned);
            let message = message.split(" at line ").next().unwrap_or_default().to_owned();
            ApiError::Validation(vec![FieldError { field, message }])
        } else {
            ApiError::BadRequest(format!("The body is not valid JSON: {inner}"))
        }
    })
}

/// Query-string errors (a `limit` that is not a number, say) are schema errors: 422.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| ApiError::validation("query", error.to_string()).into())
}

/// A path segment that does not parse (a malformed id) names nothing that exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into())
}

/// The `X-Audit-Reason` header a moderation request may carry (docs/api.md section 11): at
/// at most 512 characters of UTF-8 text (a header that is not UTF-8 is a 422).
pub fn audit_reason(req: &HttpRequest) -> Result<Option<domain::AuditReason>, ApiError> {
    let Some(value) = req.headers().get("x-audit-reason") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::validation("X-Audit-Reason", "must be UTF-8 text"))?;
    Ok(domain::AuditReason::parse(text)?)
}
