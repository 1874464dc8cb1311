//! Uploaded files (docs/api.md sections 6 and 13).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    #[schema(example = "report.pdf")]
    pub filename: String,
    /// Sniffed from the bytes, not taken from the client.
    #[schema(example = "application/pdf")]
    pub content_type: String,
    pub size: i64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub created_at: String,
    #[schema(value_type = String, format = Uuid)]
    pub uploader_id: uuid::Uuid,
    /// Images only, once looked at (shortly after the upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Images only, once their thumbnail (fits 400×400) is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/api/files/123e4567-e89b-12d3-a456-426614174000/thumbnail")]
    pub thumbnail_url: Option<String>,
}

impl From<&domain::FileMeta> for FileDto {
    fn from(file: &domain::FileMeta) -> Self {
        Self {
            id: file.id.as_uuid(),
            filename: file.filename.clone(),
            content_type: file.content_type.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            created_at: domain::timestamp::format(file.created_at),
            uploader_id: file.uploader_id.as_uuid(),
            width: file.image.map(|i| i.width),
            height: file.image.map(|i| i.height),
            thumbnail_url: file.thumbnail_url(),
        }
    }
}
