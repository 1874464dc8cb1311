//! The web client (docs/api.md section 14): `GET /` serves the chat app and `GET /app/{file}`
//! its scripts, styles and icons, all embedded in the binary from `crates/http-api/web/`.
//!
//! In debug builds `rust-embed` (with `debug-embed` off) reads the files from disk at each
//! request, so editing the app needs no rebuild; release builds carry them in the binary.
//! Every response carries a strict Content-Security-Policy (no inline scripts or styles, no
//! third-party origins) and an `ETag` made from the file's SHA-256, so browsers revalidate
//! cheaply (`304 Not Modified`) and never run a stale script after an upgrade.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// The policy every page of the app is served with; the app is written to work under it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' blob: data:; media-src 'self' blob:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The web client's pages, for the table that answers a wrong method with 405.
pub const ROUTES: [&str; 2] = ["/", "/app/{file:.+}"];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/", web::head().to(index))
        .route("/app/{file:.+}", web::get().to(asset))
        .route("/app/{file:.+}", web::head().to(asset));
}

async fn index(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&request, "index.html")
}

async fn asset(request: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    // index.html has one address, `/`, so the app's relative links resolve the same way.
    if file.as_str() == "index.html" {
        return Err(ApiError::not_found("file"));
    }
    serve(&request, &file)
}

fn serve(request: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    // Only plain names below web/: never a way out of the folder in debug builds, which read
    // from disk.
    if name.split('/').any(|part| part.is_empty() || part.starts_with('.')) {
        return Err(ApiError::not_found("file"));
    }
    let Some(content_type) = content_type(name) else {
        return Err(ApiError::not_found("file"));
    };
    let Some(file) = Assets::get(name) else {
        return Err(ApiError::not_found("file"));
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag))
        // Revalidate every time: the ETag makes that a 304 with no body, and a new binary's
        // files are picked up at once without hashed file names.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type(content_type).body(file.data.into_owned()))
}

/// The content type of each kind of file the app ships; anything else is not served.
fn content_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext)?;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/manifest+json",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shipped_file_has_a_content_type() {
        for name in Assets::iter() {
            assert!(content_type(&name).is_some(), "{name} would not be served");
        }
    }

    #[test]
    fn types_follow_the_extension_and_unknown_files_are_refused() {
        assert_eq!(content_type("app.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("style.css"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type("secret.rs"), None);
        assert_eq!(content_type("Makefile"), None);
    }
}
