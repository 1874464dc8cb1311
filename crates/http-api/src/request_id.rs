//! Request ids, the one log line per request, HTTP metrics, and JSON bodies for errors that
//! actix produces itself (unknown routes, wrong methods).

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

use crate::error::ErrorBody;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    // Request-scoped, not global: it lets `ApiError::error_response`, which has no access to
    // the request, put the request id into 5xx bodies.
    static REQUEST_ID: String;
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Takes the caller's `X-Request-Id` when it is sane, or makes one.
fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let id = request_id_of(&req);
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| String::from("unmatched"));
    let result = REQUEST_ID.scope(id.clone(), next.call(req)).await;
    let mut response = match result {
        Ok(response) => jsonify_framework_errors(response.map_into_boxed_body(), &id),
        Err(error) => return Err(error),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

/// actix answers unknown routes, wrong methods and some malformed requests with an empty or
/// plain-text body; docs/api.md section 1 says every error is JSON.
fn jsonify_framework_errors(response: ServiceResponse<BoxBody>, id: &str) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, detail) = match status.as_u16() {
        404 => ("not_found", "No such resource."),
        405 => ("method_not_allowed", "That method is not allowed on this resource."),
        413 => ("payload_too_large", "The request body is too large."),
        415 => ("unsupported_media_type", "The content type is not supported."),
        400 => ("bad_request", "The request is malformed."),
        _ if status.is_server_error() => ("internal_error", "An internal error occurred."),
        _ => ("error", "The request failed."),
    };
    let body = ErrorBody {
        detail: detail.to_owned(),
        code: code.to_owned(),
        errors: None,
        request_id: status.is_server_error().then(|| id.to_owned()),
    };
    let (request, old) = response.into_parts();
    let mut new = HttpResponse::build(status).json(body);
    for (name, value) in old.headers() {
        if name != CONTENT_TYPE && name != actix_web::http::header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(request, new)
}
