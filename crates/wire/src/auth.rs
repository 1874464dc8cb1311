//! Signing in (docs/api.md section 2).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// `POST /api/auth/register`. (A plain comment: see the crate's note on doc comments.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "johndoe")]
    pub username: String,
    #[schema(example = "john@example.com")]
    pub email: String,
    #[schema(example = "secretpass")]
    pub password: String,
    #[schema(example = "John Doe")]
    pub display_name: Option<String>,
}

// `POST /api/auth/login` as JSON (the form encoding has the same fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "johndoe")]
    pub username: String,
    #[schema(example = "secretpass")]
    pub password: String,
}

// What register and login answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    #[schema(example = 1800)]
    pub expires_in: i64,
}
