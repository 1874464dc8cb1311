//! Signing in (docs/api.md section 2).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// `POST /api/auth/login` as JSON (the form encoding has the same fields). Not a doc comment:
// it would become the schema's description and change the served OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "johndoe")]
    pub username: String,
    #[schema(example = "secretpass")]
    pub password: String,
}

// What register and login answer (no doc comment, as above).
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
