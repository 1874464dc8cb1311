//! Registration, login, logout (docs/api.md section 2).

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use domain::{DisplayName, Email, Password, User, Username};
use persistence::users::{self, NewUser};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::dto::UserDto;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{AuthUser, JSON_LIMIT, JsonBody, body_timeout, is_json, parse_json, read_limited};
use crate::state::AppState;
use crate::throttle;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(register).service(login).service(logout).service(me);
}

pub use wire::{LoginRequest, RegisterRequest, TokenResponse};

/// Collects every field error of a request at once, so the client can fix them together.
#[derive(Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn check<T>(&mut self, result: Result<T, domain::DomainError>) -> Option<T> {
        result
            .map_err(|e| {
                self.0.push(FieldError { field: e.field.into(), message: e.message });
            })
            .ok()
    }

    pub fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.0)) }
    }
}

pub fn issue(state: &AppState, user: &User) -> ApiResult<TokenResponse> {
    let issued = state.tokens.issue(user)?;
    Ok(TokenResponse {
        access_token: issued.access_token,
        token_type: "bearer".to_owned(),
        expires_in: issued.expires_in,
    })
}

/// Create an account and get an access token.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = TokenResponse),
        (status = 409, description = "Username or email taken (`username_taken`, `email_taken`)", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
#[post("/auth/register")]
#[tracing::instrument(skip_all)]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<RegisterRequest>,
) -> ApiResult<web::Json<TokenResponse>> {
    state.limits.check_auth(&req)?;
    let body = body.0;
    let mut problems = Problems::default();
    let username = problems.check(Username::parse(&body.username));
    let email = problems.check(Email::parse(&body.email));
    let password = problems.check(Password::parse(&body.password));
    let display_name = match (&body.display_name, &username) {
        (Some(raw), _) => problems.check(DisplayName::parse(raw)),
        (None, Some(username)) => Some(DisplayName::from_username(username)),
        (None, None) => None,
    };
    problems.finish()?;
    let (Some(username), Some(email), Some(password), Some(display_name)) = (username, email, password, display_name)
    else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let password_hash = state.hasher.hash(&password).await?;
    let mut conn = state.conn().await?;
    let user = users::create(
        &mut conn,
        NewUser { username: &username, email: &email, display_name: &display_name, password_hash: &password_hash },
    )
    .await?;
    tracing::info!(user_id = %user.id, "registered");
    Ok(web::Json(issue(&state, &user)?))
}

/// Log in with a username and password: JSON, or form-encoded (the OAuth2 password flow,
/// so Swagger UI's "Authorize" works).
#[utoipa::path(
    tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 429, description = "Too many logins from this address, or too many failed ones for this account (`LOGIN_FAILURES_PER_ACCOUNT` per 15 minutes); see `Retry-After`", body = ErrorBody),
    )
)]
#[post("/auth/login")]
#[tracing::instrument(skip_all)]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> ApiResult<web::Json<TokenResponse>> {
    state.limits.check_auth(&req)?;
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form && !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "Send the body as application/json or application/x-www-form-urlencoded.".into(),
        ));
    }
    let body = read_limited(&mut payload, JSON_LIMIT, body_timeout(&req)).await?;
    let credentials: LoginRequest = if is_form {
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::validation("body", e.to_string()))?
    } else {
        parse_json(&body)?
    };
    // Text that is not a valid username (a NUL byte, say, which PostgreSQL would refuse)
    // names no account: it is checked against the dummy hash like an unknown user, so it
    // gets the same 401 in the same time, and it never reaches a query.
    let username = Username::parse(&credentials.username).ok();
    let account = username.as_ref().map(|username| throttle::account_key(username.as_str()));
    // Guesses at one account wait for each other (one bcrypt per account at a time), so a
    // flood against one account cannot starve everybody else's logins. The failure count is
    // read inside the turn, so once the account is throttled the queued guesses are refused
    // without hashing; the turn ends after the outcome is recorded (end of this function).
    let turn = match &account {
        Some(account) => {
            let turn = state.hasher.turn(account).await;
            throttle::check(&state, account).await?;
            Some(turn)
        }
        None => None,
    };
    // A bot has no password: it is checked against the dummy hash like an unknown user.
    let found = match &username {
        Some(username) => {
            let mut conn = state.conn().await?;
            users::credentials(&mut conn, username).await?.filter(|(user, _)| !user.is_bot)
        }
        None => None,
    };
    // Unknown users are checked against a dummy hash so both failures take the same time.
    let hash = found.as_ref().map(|(_, hash)| hash.as_str());
    let verified = match &turn {
        Some(turn) => turn.verify(&credentials.password, hash).await?,
        None => state.hasher.verify(&credentials.password, hash).await?,
    };
    match found {
        Some((user, _)) if verified => {
            if let Some(account) = &account {
                throttle::succeeded(&state, account).await?;
            }
            Ok(web::Json(issue(&state, &user)?))
        }
        _ => {
            if let Some(account) = &account {
                throttle::failed(&state, account).await?;
            }
            Err(ApiError::Unauthorized {
                code: "invalid_credentials",
                detail: "Incorrect username or password.".into(),
            })
        }
    }
}

/// Revoke the token used for this request, on every node, at once (a personal API token
/// is deleted, as `DELETE /api/users/me/tokens/{id}` would).
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses((status = 204, description = "Logged out"), (status = 401, body = ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, caller: AuthUser) -> ApiResult<HttpResponse> {
    match caller.api_token {
        Some(id) => super::tokens::delete_token(&state, caller.id(), id).await?,
        None => state.revocations.revoke(&state.db, &caller.claims).await?,
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's own account, with email.
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses((status = 200, body = UserDto), (status = 401, body = ErrorBody)))]
#[get("/auth/me")]
pub async fn me(state: web::Data<AppState>, caller: AuthUser) -> ApiResult<web::Json<UserDto>> {
    super::users::own_account(&state, &caller).await.map(web::Json)
}
