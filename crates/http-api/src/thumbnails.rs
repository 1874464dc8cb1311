//! Dimensions and thumbnails of uploaded images, made off the request path: a bounded pool
//! (a semaphore in front of `spawn_blocking`) decodes at most `THUMBNAIL_WORKERS` images at
//! once, under `image::Limits`, so a decompression bomb costs neither memory nor the executor.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use domain::{FileMeta, ImageInfo};
use futures_util::StreamExt as _;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use persistence::Database;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::files::{FileStore, file_key, thumbnail_key};

/// Thumbnails fit in a square of this many pixels a side.
pub const THUMBNAIL_SIZE: u32 = 400;
/// Images with more pixels than this get their dimensions but no thumbnail.
pub const MAX_PIXELS: u64 = 50_000_000;
/// What one decode may allocate: 50 megapixels of 8-bit RGBA, plus room.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// A cheap handle on the thumbnail pool.
#[derive(Clone)]
pub struct Thumbnailer {
    permits: Arc<Semaphore>,
    files: Arc<dyn FileStore>,
    db: Database,
}

impl Thumbnailer {
    pub fn new(workers: usize, files: Arc<dyn FileStore>, db: Database) -> Self {
        Self { permits: Arc::new(Semaphore::new(workers)), files, db }
    }

    /// Queues `file` for a thumbnail if it is an image. Returns at once; the result shows in
    /// the file's metadata (`width`, `height`, `thumbnail_url`) when done.
    pub fn schedule(&self, file: &FileMeta) {
        if !file.is_image() {
            return;
        }
        let this = self.clone();
        let file = file.clone();
        let span = tracing::info_span!("thumbnail", file = %file.id);
        tokio::spawn(
            async move {
                if let Err(error) = this.make(&file).await {
                    tracing::warn!(%error, "making a thumbnail failed");
                }
            }
            .instrument(span),
        );
    }

    async fn make(&self, file: &FileMeta) -> Result<(), String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let mut stream = self.files.get(&file_key(file.id), 0, None).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        let jpeg = file.content_type == "image/jpeg";
        let span = tracing::Span::current();
        let made = tokio::task::spawn_blocking(move || span.in_scope(|| render(&bytes, jpeg)))
            .await
            .map_err(|e| e.to_string())?;
        // A file that does not decode gets nothing, and that is not an error.
        let Some(made) = made else { return Ok(()) };
        let thumbnail = made.thumbnail.is_some();
        if let Some(encoded) = made.thumbnail {
            self.files.put_bytes(&thumbnail_key(file.id), encoded).await.map_err(|e| e.to_string())?;
        }
        let info = ImageInfo { width: made.width, height: made.height, thumbnail };
        let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
        let recorded = persistence::files::set_image(&mut conn, file.id, info).await.map_err(|e| e.to_string())?;
        if !recorded && thumbnail {
            // Deleted while we worked: do not leave its thumbnail behind.
            self.files.delete(&thumbnail_key(file.id)).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The content type of `file`'s thumbnail: JPEG photos stay JPEG, the rest become PNG.
pub fn content_type(file: &FileMeta) -> &'static str {
    if file.content_type == "image/jpeg" { "image/jpeg" } else { "image/png" }
}

/// What decoding an image gave: its size, and a thumbnail unless it was too big to decode.
#[derive(Debug)]
pub struct Rendered {
    pub width: u32,
    pub height: u32,
    pub thumbnail: Option<Bytes>,
}

/// Reads the dimensions from the header, then (if the image is at most [`MAX_PIXELS`])
/// decodes it under limits and scales it to fit [`THUMBNAIL_SIZE`]. `None` when not even the
/// header can be read.
pub fn render(bytes: &[u8], as_jpeg: bool) -> Option<Rendered> {
    let (width, height) = reader(bytes)?.into_dimensions().ok()?;
    let no_thumbnail = Rendered { width, height, thumbnail: None };
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Some(no_thumbnail);
    }
    let mut decoder = reader(bytes)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    decoder.limits(limits);
    let Ok(image) = decoder.decode() else { return Some(no_thumbnail) };
    let small = if width <= THUMBNAIL_SIZE && height <= THUMBNAIL_SIZE {
        image
    } else {
        image.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    };
    let mut encoded = Cursor::new(Vec::new());
    let written = if as_jpeg {
        DynamicImage::ImageRgb8(small.to_rgb8()).write_to(&mut encoded, ImageFormat::Jpeg)
    } else {
        small.write_to(&mut encoded, ImageFormat::Png)
    };
    match written {
        Ok(()) => Some(Rendered { width, height, thumbnail: Some(Bytes::from(encoded.into_inner())) }),
        Err(_) => Some(no_thumbnail),
    }
}

fn reader(bytes: &[u8]) -> Option<ImageReader<Cursor<&[u8]>>> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    // The header read is bounded too: a few KiB of metadata, never pixels.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    Some(reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgba};

    fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let image = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(width, height, Rgba([200, 30, 30, 255])));
        let image = if format == ImageFormat::Jpeg { DynamicImage::ImageRgb8(image.to_rgb8()) } else { image };
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_fit_the_box_and_keep_the_aspect_ratio() {
        for (format, jpeg) in [
            (ImageFormat::Png, false),
            (ImageFormat::Jpeg, true),
            (ImageFormat::Gif, false),
            (ImageFormat::WebP, false),
        ] {
            let made = render(&encoded(1000, 500, format), jpeg).unwrap();
            assert_eq!((made.width, made.height), (1000, 500), "{format:?}");
            let thumbnail = image::load_from_memory(&made.thumbnail.unwrap()).unwrap();
            assert_eq!((thumbnail.width(), thumbnail.height()), (400, 200), "{format:?}");
        }
        // Small images are not enlarged.
        let made = render(&encoded(40, 30, ImageFormat::Png), false).unwrap();
        let thumbnail = image::load_from_memory(&made.thumbnail.unwrap()).unwrap();
        assert_eq!((thumbnail.width(), thumbnail.height()), (40, 30));
    }

    #[test]
    fn corrupt_images_get_nothing() {
        assert!(render(b"not an image at all", false).is_none());
        let mut png = encoded(100, 100, ImageFormat::Png);
        png.truncate(60);
        assert!(render(&png, false).is_none_or(|made| made.thumbnail.is_none()));
    }
}
