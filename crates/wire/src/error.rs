//! The one error body of every failed request (docs/api.md section 1).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One invalid field of a 422 response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable sentence.
    pub detail: String,
    /// A stable snake_case code to branch on.
    pub code: String,
    /// For 422: which fields were wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For 5xx: the id to quote when reporting the problem; it is in the server's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
