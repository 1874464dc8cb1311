//! File uploads and downloads (docs/api.md section 6).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use domain::{FileId, FileMeta, sanitize_filename};
use futures_util::{StreamExt as _, TryStreamExt as _};
use persistence::files;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::dto::FileDto;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AuthUser;
use crate::files::ByteStream;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(upload).service(metadata).service(download).service(delete_file);
}

/// How many leading bytes are kept to sniff the content type.
const SNIFF_BYTES: usize = 8192;

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file (multipart, one part named `file`). The bytes stream to storage while they
/// are counted and hashed; over `MAX_UPLOAD_BYTES` → 413 and nothing is kept. The content
/// type is sniffed from the bytes.
#[utoipa::path(
    tag = "files",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileDto), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[post("/files")]
pub async fn upload(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    state.limits.check_writes(caller.id())?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::UnsupportedMediaType(
            "Send the file as multipart/form-data with a part named `file`.".into(),
        ));
    }
    let mut multipart = Multipart::new(req.headers(), payload);
    let limit = state.settings.max_upload_bytes;
    let mut stored: Option<FileMeta> = None;
    let mut too_large = false;

    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| ApiError::validation("file", format!("malformed multipart body: {e}")))?;
        let is_file = field.content_disposition().and_then(|d| d.get_name()) == Some("file");
        if !is_file || stored.is_some() || too_large {
            // Other parts (and anything after the file) are read and discarded, never kept.
            while let Some(chunk) = field.next().await {
                chunk.map_err(|e| ApiError::validation("file", format!("malformed multipart body: {e}")))?;
            }
            continue;
        }
        let filename = sanitize_filename(field.content_disposition().and_then(|d| d.get_filename()).unwrap_or("file"));
        let id = FileId::new();
        let size = Rc::new(Cell::new(0u64));
        let hasher = Rc::new(RefCell::new(Sha256::new()));
        let head = Rc::new(RefCell::new(Vec::with_capacity(SNIFF_BYTES)));
        let over = Rc::new(Cell::new(false));
        let (size_in, hasher_in, head_in, over_in) = (size.clone(), hasher.clone(), head.clone(), over.clone());
        let body: ByteStream<'_> = Box::pin(field.by_ref().map(move |chunk| {
            let chunk = chunk.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let total = size_in.get() + chunk.len() as u64;
            if total > limit {
                over_in.set(true);
                return Err(io::Error::new(io::ErrorKind::FileTooLarge, "upload too large"));
            }
            size_in.set(total);
            hasher_in.borrow_mut().update(&chunk);
            let mut head = head_in.borrow_mut();
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            Ok(chunk)
        }));
        let key = id.to_string();
        let stored_result = state.files.put(&key, body).await;
        match stored_result {
            Ok(_) => {}
            Err(_) if over.get() => {
                too_large = true;
                // Drain the rest of this part so the client gets our answer, not a reset.
                while field.next().await.is_some() {}
                continue;
            }
            Err(error) => {
                return Err(ApiError::internal(format!("storing an upload failed: {error}")));
            }
        }
        let digest = hasher.borrow_mut().finalize_reset();
        let head = head.borrow();
        stored = Some(FileMeta {
            id,
            filename,
            content_type: sniff(&head),
            size: size.get() as i64,
            sha256: hex::encode(digest),
            created_at: time::OffsetDateTime::now_utc(),
            uploader_id: caller.id(),
        });
    }

    if too_large {
        return Err(ApiError::PayloadTooLarge(format!("The file must be at most {limit} bytes.")));
    }
    let Some(meta) = stored else {
        return Err(ApiError::validation("file", "a part named `file` is required"));
    };
    let mut conn = state.conn().await?;
    if let Err(error) = files::create(&mut conn, &meta).await {
        let _ = state.files.delete(&meta.id.to_string()).await;
        return Err(error.into());
    }
    Ok(HttpResponse::Created().json(FileDto::from(&meta)))
}

/// The content type from the bytes themselves: a known signature, else UTF-8 text, else
/// opaque bytes. The client's claim is never trusted.
fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    // A multi-byte character may be cut at the end of the sniffed prefix.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) {
        "text/plain; charset=utf-8".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// Loads a file the caller may read; others get 404, as if it did not exist.
async fn readable(state: &AppState, id: Uuid, caller: &AuthUser) -> ApiResult<FileMeta> {
    let mut conn = state.conn().await?;
    let meta = files::find(&mut conn, FileId::from_uuid(id)).await.map_err(|e| match e {
        persistence::StoreError::NotFound => ApiError::not_found("file"),
        other => other.into(),
    })?;
    if files::can_read(&mut conn, &meta, caller.id()).await? { Ok(meta) } else { Err(ApiError::not_found("file")) }
}

/// A file's metadata (the uploader, or members of a channel where it is attached).
#[utoipa::path(tag = "files", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 200, body = FileDto), (status = 404, body = ErrorBody)))]
#[get("/files/{id}/metadata")]
pub async fn metadata(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<FileDto>> {
    Ok(web::Json(FileDto::from(&readable(&state, *id, &caller).await?)))
}

/// A file's bytes, as an attachment, with single-range support.
#[utoipa::path(
    tag = "files",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Range" = Option<String>, Header, description = "bytes=START-END")),
    responses((status = 200, description = "The bytes"), (status = 206, description = "A range of the bytes"), (status = 404, body = ErrorBody), (status = 416, description = "Unsatisfiable range"))
)]
#[get("/files/{id}")]
pub async fn download(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let meta = readable(&state, *id, &caller).await?;
    let size = meta.size as u64;
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, size));
    let (status, offset, len) = match range {
        None | Some(RangeRequest::Ignored) => (actix_web::http::StatusCode::OK, 0, size),
        Some(RangeRequest::Satisfiable { start, end }) => {
            (actix_web::http::StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(RangeRequest::Unsatisfiable) => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .json(ErrorBody {
                    detail: "The range is outside the file.".into(),
                    code: "range_not_satisfiable".into(),
                    errors: None,
                    request_id: None,
                }));
        }
    };
    let stream = state
        .files
        .get(&meta.id.to_string(), offset, Some(len))
        .await
        .map_err(|e| ApiError::internal(format!("reading a stored file failed: {e}")))?;
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, meta.content_type.clone()))
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&meta.filename)))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, format!("\"{}\"", meta.sha256)))
        .insert_header((header::CACHE_CONTROL, "private, max-age=0"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .no_chunking(len);
    if status == actix_web::http::StatusCode::PARTIAL_CONTENT {
        response.insert_header((header::CONTENT_RANGE, format!("bytes {offset}-{}/{size}", offset + len - 1)));
    }
    Ok(response.streaming(stream.map_err(actix_web::error::ErrorInternalServerError)))
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`.
fn content_disposition(filename: &str) -> HeaderValue {
    let ascii: String = filename.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Satisfiable {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
    /// Multiple ranges or a form we do not serve: send the whole file (allowed by RFC 9110).
    Ignored,
}

fn parse_range(raw: &str, size: u64) -> RangeRequest {
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => match suffix.parse::<u64>() {
            Ok(0) | Err(_) => return RangeRequest::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        },
        (start, "") => match start.parse::<u64>() {
            Ok(s) => (s, size.saturating_sub(1)),
            Err(_) => return RangeRequest::Ignored,
        },
        (start, end) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            _ => return RangeRequest::Ignored,
        },
    };
    if size == 0 || start >= size { RangeRequest::Unsatisfiable } else { RangeRequest::Satisfiable { start, end } }
}

/// Delete your upload; it disappears from the messages it was attached to.
#[utoipa::path(tag = "files", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/files/{id}")]
pub async fn delete_file(state: web::Data<AppState>, caller: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let meta = readable(&state, *id, &caller).await?;
    if meta.uploader_id != caller.id() {
        return Err(ApiError::Forbidden("only the uploader may delete a file".into()));
    }
    let mut conn = state.conn().await?;
    files::delete(&mut conn, meta.id).await?.publish(&state.hub);
    if let Err(error) = state.files.delete(&meta.id.to_string()).await {
        tracing::warn!(%error, file = %meta.id, "could not remove a deleted file's bytes");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Satisfiable { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Satisfiable { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Satisfiable { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=50-500", 100), RangeRequest::Satisfiable { start: 50, end: 99 });
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Ignored);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Ignored);
    }

    #[test]
    fn sniffing_trusts_bytes_only() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0, 1, 2, 3]), "application/octet-stream");
    }
}
