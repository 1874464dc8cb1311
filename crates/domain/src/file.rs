//! Uploaded files (docs/api.md section 6).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{FileId, UserId};

/// An uploaded file. On the wire (REST and WebSocket alike) `width`, `height` and
/// `thumbnail_url` appear only for images whose thumbnail has been made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FileWire", from = "FileWire")]
pub struct FileMeta {
    pub id: FileId,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: OffsetDateTime,
    pub uploader_id: UserId,
    /// Pixel dimensions, once an image has been looked at.
    pub image: Option<ImageInfo>,
}

/// What the thumbnail worker learned about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// Whether a thumbnail is stored (not for images that failed to decode or were too big).
    pub thumbnail: bool,
}

impl FileMeta {
    /// The path a client fetches the thumbnail from, if there is one.
    pub fn thumbnail_url(&self) -> Option<String> {
        self.image.filter(|i| i.thumbnail).map(|_| format!("/api/files/{}/thumbnail", self.id))
    }

    /// Whether the thumbnail worker should look at this file.
    pub fn is_image(&self) -> bool {
        matches!(self.content_type.as_str(), "image/png" | "image/jpeg" | "image/gif" | "image/webp")
    }
}

#[derive(Serialize, Deserialize)]
struct FileWire {
    id: FileId,
    filename: String,
    content_type: String,
    size: i64,
    sha256: String,
    #[serde(with = "crate::timestamp")]
    created_at: OffsetDateTime,
    uploader_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thumbnail_url: Option<String>,
}

impl From<FileMeta> for FileWire {
    fn from(file: FileMeta) -> Self {
        let thumbnail_url = file.thumbnail_url();
        Self {
            id: file.id,
            filename: file.filename,
            content_type: file.content_type,
            size: file.size,
            sha256: file.sha256,
            created_at: file.created_at,
            uploader_id: file.uploader_id,
            width: file.image.map(|i| i.width),
            height: file.image.map(|i| i.height),
            thumbnail_url,
        }
    }
}

impl From<FileWire> for FileMeta {
    fn from(wire: FileWire) -> Self {
        let image = match (wire.width, wire.height) {
            (Some(width), Some(height)) => Some(ImageInfo { width, height, thumbnail: wire.thumbnail_url.is_some() }),
            _ => None,
        };
        Self {
            id: wire.id,
            filename: wire.filename,
            content_type: wire.content_type,
            size: wire.size,
            sha256: wire.sha256,
            created_at: wire.created_at,
            uploader_id: wire.uploader_id,
            image,
        }
    }
}

/// Makes a client-supplied file name safe to store and to send back in
/// `Content-Disposition`: the last path component only, no control characters, no invisible
/// ones (a right-to-left override makes `invoice\u{202E}fdp.exe` show as `invoiceexe.pdf`),
/// no quotes or backslashes, at most 255 bytes, never empty, never `.` or `..`.
pub fn sanitize_filename(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let filtered: String = crate::text::strip_invisible(last)
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | '/' | ':' | '*' | '?' | '<' | '>' | '|'))
        .collect();
    let mut cleaned = filtered.trim().trim_start_matches('.').to_owned();
    while cleaned.len() > 255 {
        cleaned.pop();
    }
    if cleaned.is_empty() { String::from("file") } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::sanitize_filename;

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        for (raw, clean) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\system32", "system32"),
            ("a\u{0}b\nc.txt", "abc.txt"),
            ("..", "file"),
            ("", "file"),
            (".hidden", "hidden"),
            ("quote\"d.txt", "quoted.txt"),
            ("\u{202E}exe.txt", "exe.txt"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("re\u{200B}port\u{FEFF}.pdf", "report.pdf"),
            ("\u{200B}", "file"),
        ] {
            assert_eq!(sanitize_filename(raw), clean, "raw {raw:?}");
        }
        assert!(sanitize_filename(&"é".repeat(300)).len() <= 255);
    }
}
