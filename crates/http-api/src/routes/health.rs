//! Liveness, readiness and metrics (docs/api.md section 8).

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::metrics::Metrics;
use crate::state::AppState;

/// Health checks, and `/metrics` too unless `METRICS_ADDR` serves it on a listener of its own.
pub fn configure(cfg: &mut ServiceConfig, with_metrics: bool) {
    cfg.service(healthz).service(readyz);
    if with_metrics {
        cfg.service(metrics_text);
    }
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, body = Status)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Status> {
    web::Json(Status { status: "ok" })
}

/// The database answers; 503 otherwise.
#[utoipa::path(tag = "operations", responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<web::Json<Status>> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => Ok(web::Json(Status { status: "ready" })),
        _ => Err(ApiError::Unavailable),
    }
}

/// Prometheus metrics in the text exposition format. With `METRICS_TOKEN` set, only for
/// `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise); with `METRICS_ADDR` set, served
/// on that address only.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, content_type = "text/plain", body = String),
        (status = 401, description = "METRICS_TOKEN is set and was not sent", body = ErrorBody),
    )
)]
#[get("/metrics")]
pub async fn metrics_text(
    req: HttpRequest,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> ApiResult<HttpResponse> {
    if let Some(expected) = &state.settings.metrics_token
        && !crate::metrics::token_matches(crate::extract::bearer_token(&req), &expected.0)
    {
        return Err(ApiError::Unauthorized {
            code: "not_authenticated",
            detail: "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.".into(),
        });
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(metrics.render(&state)))
}
