//! Uploaded files (docs/api.md section 6).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{FileId, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: FileId,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    #[serde(with = "crate::timestamp")]
    pub created_at: OffsetDateTime,
    pub uploader_id: UserId,
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
