//! File uploads and downloads (docs/api.md section 6).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

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
use crate::files::{ByteStream, file_key, thumbnail_key};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(upload).service(metadata).service(thumbnail).service(download).service(delete_file);
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
/// are counted and hashed; over `MAX_UPLOAD_BYTES` → 413 and nothing is kept, beyond the
/// caller's upload quota → 413 `upload_quota_exceeded`, a body that sends nothing for
/// `UPLOAD_IDLE_TIMEOUT_SECONDS` → 408. The content type is sniffed from the bytes.
#[utoipa::path(
    tag = "files",
    security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileDto), (status = 408, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody))
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
    let quota = upload_quota(&state);
    let quota_left = {
        let mut conn = state.conn().await?;
        files::quota_left(&mut conn, caller.id(), quota).await?
    };
    if quota_left == 0 {
        return Err(quota_exceeded());
    }
    let idle = Duration::from_secs(state.settings.upload_idle_timeout_seconds);
    let max_upload = state.settings.max_upload_bytes;
    let limit = max_upload.min(quota_left);
    let mut multipart = Multipart::new(req.headers(), payload);
    let mut stored: Option<FileMeta> = None;
    let mut refused: Option<ApiError> = None;
    let mut other_bytes = 0usize;

    'parts: while let Some(field) = next_or_timeout(idle, multipart.next()).await? {
        let mut field = field.map_err(malformed)?;
        let is_file = field.content_disposition().and_then(|d| d.get_name()) == Some("file");
        if !is_file || stored.is_some() || refused.is_some() {
            // Other parts (and anything after the file) are read and discarded, never kept,
            // and the parts that are not the file are capped all together.
            while let Some(chunk) = next_or_timeout(idle, field.next()).await? {
                let chunk = chunk.map_err(malformed)?;
                if !is_file {
                    other_bytes += chunk.len();
                    if other_bytes > MAX_OTHER_PART_BYTES {
                        discard(&state, stored.as_ref()).await;
                        return Err(ApiError::PayloadTooLarge(format!(
                            "Parts other than `file` may hold at most {MAX_OTHER_PART_BYTES} bytes in all."
                        )));
                    }
                }
            }
            continue;
        }
        let filename = sanitize_filename(field.content_disposition().and_then(|d| d.get_filename()).unwrap_or("file"));
        let id = FileId::new();
        let progress = Rc::new(Progress::default());
        let body = counted(&mut field, idle, limit, progress.clone());
        let stored_result = state.files.put(&file_key(id), body).await;
        match stored_result {
            Ok(_) => {}
            Err(_) if progress.over.get() => {
                refused = Some(if limit < max_upload {
                    quota_exceeded()
                } else {
                    ApiError::PayloadTooLarge(format!("The file must be at most {max_upload} bytes."))
                });
                // Drain the rest of this part so the client gets our answer, not a reset; but
                // not for ever: past a bound the connection is closed after the answer.
                let mut drained = 0usize;
                while let Some(Ok(chunk)) = next_or_timeout(idle, field.next()).await? {
                    drained += chunk.len();
                    if drained > MAX_DRAIN_BYTES {
                        break 'parts;
                    }
                }
                continue;
            }
            Err(_) if progress.timed_out.get() => return Err(timed_out()),
            Err(error) if progress.client_failed.get() => return Err(malformed(error)),
            Err(error) => return Err(ApiError::internal(format!("storing an upload failed: {error}"))),
        }
        let digest = progress.hasher.borrow_mut().finalize_reset();
        let head = progress.head.borrow();
        stored = Some(FileMeta {
            id,
            filename,
            content_type: sniff(&head),
            size: progress.size.get() as i64,
            sha256: hex::encode(digest),
            created_at: time::OffsetDateTime::now_utc(),
            uploader_id: caller.id(),
            image: None,
        });
    }

    if let Some(refused) = refused {
        discard(&state, stored.as_ref()).await;
        return Err(refused);
    }
    let Some(meta) = stored else {
        return Err(ApiError::validation("file", "a part named `file` is required"));
    };
    let created = match state.conn().await {
        Ok(mut conn) => files::create_within_quota(&mut conn, &meta, quota).await.map_err(ApiError::from),
        Err(error) => Err(error),
    };
    match created {
        Ok(true) => {}
        Ok(false) => {
            discard(&state, Some(&meta)).await;
            return Err(quota_exceeded());
        }
        Err(error) => {
            discard(&state, Some(&meta)).await;
            return Err(error);
        }
    }
    state.thumbnails.schedule(&meta);
    Ok(HttpResponse::Created().json(FileDto::from(&meta)))
}

/// How much of a refused file part is read (and discarded) so the client sees the answer.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// All parts other than `file` together (form fields a client adds) may hold this much.
const MAX_OTHER_PART_BYTES: usize = 64 * 1024;

fn upload_quota(state: &AppState) -> files::UploadQuota {
    files::UploadQuota {
        unattached_bytes: state.settings.upload_quota_bytes,
        bytes_per_hour: state.settings.upload_quota_bytes_per_hour,
    }
}

fn quota_exceeded() -> ApiError {
    ApiError::QuotaExceeded(
        "This upload would exceed your upload quota: attach or delete earlier uploads, or wait an hour.".into(),
    )
}

fn timed_out() -> ApiError {
    ApiError::RequestTimeout("The upload stalled: no bytes arrived in time.".into())
}

fn malformed(error: impl std::fmt::Display) -> ApiError {
    ApiError::validation("file", format!("malformed multipart body: {error}"))
}

/// Removes the bytes of an upload that will not be recorded.
async fn discard(state: &AppState, meta: Option<&FileMeta>) {
    if let Some(meta) = meta
        && let Err(error) = state.files.delete(&file_key(meta.id)).await
    {
        tracing::warn!(%error, file = %meta.id, "could not remove a refused upload's bytes");
    }
}

/// The next item of a body, or 408 when the client sends nothing for `idle`.
async fn next_or_timeout<T>(idle: Duration, next: impl Future<Output = Option<T>>) -> ApiResult<Option<T>> {
    tokio::time::timeout(idle, next).await.map_err(|_| timed_out())
}

/// What the upload stream learned on the way, read after storage has finished with it.
#[derive(Default)]
struct Progress {
    size: Cell<u64>,
    hasher: RefCell<Sha256>,
    head: RefCell<Vec<u8>>,
    over: Cell<bool>,
    timed_out: Cell<bool>,
    client_failed: Cell<bool>,
}

/// The file part as a stream for storage: counted against `limit`, hashed, its head kept for
/// sniffing, and ended with an error when the client sends nothing for `idle`.
fn counted(field: &mut actix_multipart::Field, idle: Duration, limit: u64, progress: Rc<Progress>) -> ByteStream<'_> {
    Box::pin(futures_util::stream::unfold((field, progress), move |(field, progress)| async move {
        let chunk = match tokio::time::timeout(idle, field.next()).await {
            Err(_) => {
                progress.timed_out.set(true);
                Err(io::Error::new(io::ErrorKind::TimedOut, "the upload stalled"))
            }
            Ok(None) => return None,
            Ok(Some(Err(error))) => {
                progress.client_failed.set(true);
                Err(io::Error::new(io::ErrorKind::InvalidData, error.to_string()))
            }
            Ok(Some(Ok(chunk))) => {
                let total = progress.size.get() + chunk.len() as u64;
                if total > limit {
                    progress.over.set(true);
                    Err(io::Error::new(io::ErrorKind::FileTooLarge, "upload too large"))
                } else {
                    progress.size.set(total);
                    progress.hasher.borrow_mut().update(&chunk);
                    let mut head = progress.head.borrow_mut();
                    if head.len() < SNIFF_BYTES {
                        let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                        head.extend_from_slice(&chunk[..take]);
                    }
                    Ok(chunk)
                }
            }
        };
        Some((chunk, (field, progress)))
    }))
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
        .get(&file_key(meta.id), offset, Some(len))
        .await
        .map_err(|e| ApiError::internal(format!("reading a stored file failed: {e}")))?;
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, served_type(&meta.content_type)))
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&meta.filename)))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, format!("\"{}\"", meta.sha256)))
        .insert_header((header::CACHE_CONTROL, "private, max-age=0"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .no_chunking(len);
    if status == actix_web::http::StatusCode::PARTIAL_CONTENT {
        response.insert_header((header::CONTENT_RANGE, format!("bytes {offset}-{}/{size}", offset + len - 1)));
    }
    Ok(response.streaming(stream.map_err(actix_web::error::ErrorInternalServerError)))
}

/// The type a download is served as. Types a browser would run (HTML, SVG, XML, scripts)
/// become opaque bytes, so even a browser that ignores `Content-Disposition` and `nosniff`
/// does not render them in our origin; the metadata still says what the file is.
fn served_type(stored: &str) -> &str {
    let essence = stored.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let active = essence.contains("html")
        || essence.contains("xml")
        || essence.contains("javascript")
        || essence.contains("ecmascript")
        || essence == "image/svg"
        || essence == "text/xsl";
    if active { "application/octet-stream" } else { stored }
}

/// An image's thumbnail (fits 400×400), with the same access rules as the file. 404 until
/// the thumbnail is made (`thumbnail_url` appears in the metadata then), and for files that
/// are not images or could not be decoded.
#[utoipa::path(tag = "files", security(("bearer" = [])), params(("id" = Uuid, Path)), responses((status = 200, description = "The thumbnail (PNG, or JPEG for JPEG photos)"), (status = 404, body = ErrorBody)))]
#[get("/files/{id}/thumbnail")]
pub async fn thumbnail(state: web::Data<AppState>, caller: AuthUser, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let meta = readable(&state, *id, &caller).await?;
    if meta.thumbnail_url().is_none() {
        return Err(ApiError::not_found("thumbnail"));
    }
    let stream = state.files.get(&thumbnail_key(meta.id), 0, None).await.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ApiError::not_found("thumbnail"),
        _ => ApiError::internal(format!("reading a thumbnail failed: {e}")),
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, crate::thumbnails::content_type(&meta)))
        .insert_header((header::CACHE_CONTROL, "private, max-age=0"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .streaming(stream.map_err(actix_web::error::ErrorInternalServerError)))
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
    for key in [file_key(meta.id), thumbnail_key(meta.id)] {
        if let Err(error) = state.files.delete(&key).await {
            tracing::warn!(%error, file = %meta.id, "could not remove a deleted file's bytes");
        }
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

    #[test]
    fn active_types_are_served_as_opaque_bytes() {
        for active in [
            "text/html",
            "text/html; charset=utf-8",
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/javascript",
        ] {
            assert_eq!(served_type(active), "application/octet-stream", "{active}");
        }
        for passive in ["image/png", "text/plain; charset=utf-8", "application/pdf", "application/octet-stream"] {
            assert_eq!(served_type(passive), passive);
        }
    }
}
