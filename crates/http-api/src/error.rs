//! Every error the API returns, turned into the JSON body of docs/api.md section 1 in exactly one place.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::request_id;

pub use wire::{ErrorBody, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A 400 with a code of its own (a webhook payload without text, say).
    #[error("{detail}")]
    BadInput { code: &'static str, detail: String },
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{0}")]
    Forbidden(String),
    /// Refused because the other side of a conversation blocked the caller.
    #[error("{0}")]
    Blocked(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, not with this method; the methods it answers go into `Allow`.
    #[error("That method is not allowed on this resource.")]
    MethodNotAllowed(Vec<actix_web::http::Method>),
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// An upload beyond the caller's byte quotas (`UPLOAD_QUOTA_BYTES*`).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request does not fit the schema")]
    Validation(Vec<FieldError>),
    #[error("Too many requests; retry after {retry_after_secs} s.")]
    RateLimited { retry_after_secs: u64, limit: u32 },
    #[error("the service is not ready")]
    Unavailable,
    /// Anything else. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError { field: field.into(), message: message.into() }])
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "invalid_json",
            Self::Unauthorized { code, .. } | Self::Conflict { code, .. } | Self::BadInput { code, .. } => code,
            Self::Forbidden(_) => "forbidden",
            Self::Blocked(_) => "blocked",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::QuotaExceeded(_) => "upload_quota_exceeded",
            Self::RequestTimeout(_) => "request_timeout",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Validation(_) => "validation_error",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::BadInput { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Blocked(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) | Self::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let request_id = request_id::current();
        let (detail, errors) = match self {
            Self::Internal(cause) => {
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), %cause, "request failed");
                ("An internal error occurred; quote the request_id when reporting it.".to_owned(), None)
            }
            Self::Unavailable => ("The service is temporarily unavailable; try again shortly.".to_owned(), None),
            Self::Validation(errors) => {
                let detail =
                    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
                (detail, Some(errors.clone()))
            }
            other => (other.to_string(), None),
        };
        let body = ErrorBody {
            detail,
            code: self.code().to_owned(),
            errors,
            request_id: status.is_server_error().then_some(request_id).flatten(),
        };
        let mut response = HttpResponse::build(status);
        match self {
            Self::Unauthorized { .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::RateLimited { retry_after_secs, limit } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                response.insert_header(("X-RateLimit-Limit", limit.to_string()));
                response.insert_header(("X-RateLimit-Remaining", "0"));
                response.insert_header(("X-RateLimit-Reset", retry_after_secs.to_string()));
            }
            Self::MethodNotAllowed(allow) => {
                let allow = allow.iter().map(actix_web::http::Method::as_str).collect::<Vec<_>>().join(", ");
                response.insert_header((header::ALLOW, allow));
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<domain::DomainError> for ApiError {
    fn from(error: domain::DomainError) -> Self {
        Self::validation(error.field, error.message)
    }
}

impl From<domain::Denied> for ApiError {
    fn from(denied: domain::Denied) -> Self {
        match denied {
            domain::Denied::NotFound => Self::not_found("channel"),
            domain::Denied::Forbidden(reason) => Self::Forbidden(reason.to_owned()),
            domain::Denied::Conflict(reason) => Self::Conflict { code: "conflict", detail: reason.to_owned() },
            domain::Denied::Blocked => Self::Blocked("This user has blocked you.".into()),
        }
    }
}

impl From<persistence::StoreError> for ApiError {
    fn from(error: persistence::StoreError) -> Self {
        use persistence::StoreError;
        match error {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::Conflict(code) => Self::Conflict { code, detail: conflict_detail(code).to_owned() },
            StoreError::Denied(denied) => denied.into(),
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "database unavailable");
                Self::Unavailable
            }
            other => Self::internal(other),
        }
    }
}

fn conflict_detail(code: &str) -> &'static str {
    match code {
        "username_taken" => "That username is already taken.",
        "email_taken" => "That email address is already registered.",
        "channel_name_taken" => "A channel with that name already exists.",
        "too_many_pins" => "A channel holds at most 100 pins; unpin one first.",
        "owner_role" => "The owner's role changes only by transferring the channel.",
        "not_a_member" => "The channel can be handed only to one of its members.",
        _ => "The request conflicts with the current state.",
    }
}

impl From<auth::AuthError> for ApiError {
    fn from(error: auth::AuthError) -> Self {
        use auth::AuthError;
        match error {
            AuthError::InvalidToken => {
                Self::Unauthorized { code: "invalid_token", detail: "The access token is invalid.".into() }
            }
            AuthError::Expired => {
                Self::Unauthorized { code: "token_expired", detail: "The access token has expired.".into() }
            }
            AuthError::Revoked => {
                Self::Unauthorized { code: "token_revoked", detail: "The access token has been revoked.".into() }
            }
            AuthError::Store(store) => store.into(),
            AuthError::Hashing(cause) => Self::internal(cause),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
