//! Where uploaded bytes live. A trait, so the handlers do not care whether the bytes are on
//! this node's disk ([`LocalDisk`]) or in an S3-compatible object store ([`ObjectStoreFiles`])
//! that every node shares.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::{BoxFuture, LocalBoxFuture};
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use crate::config::Settings;

/// A stream of body chunks. Not `Send`: actix's payloads live on one worker thread.
pub type ByteStream<'a> = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + 'a>>;

pub trait FileStore: Send + Sync {
    /// Stores the stream under `key`. On any error — including one the stream itself
    /// yields, such as "too large" — and when the future is dropped half-way (the client went
    /// away), nothing is left behind.
    fn put<'a>(&'a self, key: &'a str, body: ByteStream<'a>) -> LocalBoxFuture<'a, io::Result<u64>>;
    /// Stores a small object already in memory (a thumbnail). `Send`, for background work.
    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, io::Result<()>>;
    /// Reads `len` bytes from `offset` (the whole object when `len` is `None`).
    fn get<'a>(&'a self, key: &'a str, offset: u64, len: Option<u64>) -> BoxFuture<'a, io::Result<SendByteStream>>;
    /// `Send`, unlike `put`, so background cleanup can run it on any thread. Deleting a key
    /// that does not exist is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Keys of objects last written before `cutoff` (and leftovers of interrupted writes,
    /// which are removed on the way), for the janitor's orphan sweep.
    fn list_older_than(&self, cutoff: SystemTime) -> BoxFuture<'_, io::Result<Vec<String>>>;
}

/// A stream of stored bytes that any thread may drive.
pub type SendByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The storage key of a file's bytes.
pub fn file_key(id: domain::FileId) -> String {
    id.to_string()
}

/// The storage key of a file's thumbnail.
pub fn thumbnail_key(id: domain::FileId) -> String {
    format!("{id}.thumbnail")
}

/// The store `FILE_STORE` names.
pub fn from_settings(settings: &Settings) -> Result<Arc<dyn FileStore>, StoreConfigError> {
    match settings.file_store {
        crate::config::FileStoreKind::Local => Ok(Arc::new(
            LocalDisk::new(settings.file_storage_dir.clone())
                .map_err(|e| StoreConfigError { variable: "FILE_STORAGE_DIR", message: e.to_string() })?,
        )),
        crate::config::FileStoreKind::S3 => Ok(Arc::new(ObjectStoreFiles::s3(settings)?)),
    }
}

/// A store that cannot be set up, naming the variable to fix.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct StoreConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// Keys are our own ids (UUIDs, with an optional `.thumbnail`); anything else is refused
/// rather than joined to a path or sent to the object store.
fn check_key(key: &str) -> io::Result<()> {
    let id = key.strip_suffix(".thumbnail").unwrap_or(key);
    if id.len() < 2 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid storage key"));
    }
    Ok(())
}

/// Files on the local disk under `FILE_STORAGE_DIR`, written to a temporary name and renamed
/// into place only when complete.
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    /// Creates nothing yet: the directories appear with the first upload, so a server that
    /// never stores a file (or stores them elsewhere) leaves no `data/files/tmp` behind. A
    /// root that exists but is not a directory is refused at start.
    pub fn new(root: PathBuf) -> io::Result<Self> {
        match std::fs::metadata(&root) {
            Ok(meta) if !meta.is_dir() => {
                Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", root.display())))
            }
            Ok(_) => Ok(Self { root }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Self { root }),
            Err(error) => Err(error),
        }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(&key[..2]).join(key))
    }
}

/// Removes a temporary file unless disarmed: an upload whose future is dropped half-way
/// (the client disconnected) leaves nothing in `tmp/`.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl FileStore for LocalDisk {
    fn put<'a>(&'a self, key: &'a str, mut body: ByteStream<'a>) -> LocalBoxFuture<'a, io::Result<u64>> {
        Box::pin(async move {
            let target = self.path(key)?;
            // The temporary directory is made with the first upload, not at start (a node
            // whose files live elsewhere never has one).
            tokio::fs::create_dir_all(self.root.join("tmp")).await?;
            let temp_path = self.root.join("tmp").join(format!("{key}.part"));
            let mut temp = TempFile(Some(temp_path.clone()));
            let mut file = tokio::fs::File::create(&temp_path).await?;
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.sync_data().await?;
            drop(file);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&temp_path, &target).await?;
            temp.0 = None;
            Ok(size)
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let target = self.path(key)?;
            tokio::fs::create_dir_all(self.root.join("tmp")).await?;
            let temp_path = self.root.join("tmp").join(format!("{key}.part"));
            let mut temp = TempFile(Some(temp_path.clone()));
            tokio::fs::write(&temp_path, &bytes).await?;
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&temp_path, &target).await?;
            temp.0 = None;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str, offset: u64, len: Option<u64>) -> BoxFuture<'a, io::Result<SendByteStream>> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(self.path(key)?).await?;
            file.seek(io::SeekFrom::Start(offset)).await?;
            let reader: Pin<Box<dyn tokio::io::AsyncRead + Send>> = match len {
                Some(len) => Box::pin(file.take(len)),
                None => Box::pin(file),
            };
            let stream: SendByteStream = Box::pin(tokio_util::io::ReaderStream::new(reader));
            Ok(stream)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(key)?).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            }
        })
    }

    fn list_older_than(&self, cutoff: SystemTime) -> BoxFuture<'_, io::Result<Vec<String>>> {
        let root = self.root.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let old = |entry: &std::fs::DirEntry| {
                    entry.metadata().and_then(|m| m.modified()).is_ok_and(|modified| modified < cutoff)
                };
                let mut keys = Vec::new();
                for dir in std::fs::read_dir(&root)? {
                    let dir = dir?;
                    if dir.file_name() == "tmp" {
                        // Leftovers of a write this process did not live to clean up.
                        for entry in std::fs::read_dir(dir.path())?.filter_map(Result::ok) {
                            if old(&entry) {
                                let _ = std::fs::remove_file(entry.path());
                            }
                        }
                        continue;
                    }
                    if !dir.file_type()?.is_dir() {
                        continue;
                    }
                    for entry in std::fs::read_dir(dir.path())?.filter_map(Result::ok) {
                        if let Some(name) = entry.file_name().to_str()
                            && check_key(name).is_ok()
                            && old(&entry)
                        {
                            keys.push(name.to_owned());
                        }
                    }
                }
                Ok(keys)
            })
            .await
            .map_err(io::Error::other)?
        })
    }
}

/// An S3-compatible object store (AWS S3, MinIO, s3s-fs, …) shared by every node.
///
/// Uploads up to [`ObjectStoreFiles::PART_SIZE`] are one `PUT`; larger ones become a multipart
/// upload whose parts are sent one at a time as they fill, so a node holds at most one part
/// of each upload in memory whatever the file's size.
pub struct ObjectStoreFiles {
    store: Arc<dyn ObjectStore>,
}

impl ObjectStoreFiles {
    /// S3's smallest allowed part (except the last).
    pub const PART_SIZE: usize = 5 * 1024 * 1024;

    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The store `S3_*` describe. Nothing is contacted yet: a wrong endpoint shows on the
    /// first upload, with the cause in the log.
    pub fn s3(settings: &Settings) -> Result<Self, StoreConfigError> {
        let missing =
            |variable: &'static str| StoreConfigError { variable, message: "required with FILE_STORE=s3".into() };
        let bucket = settings.s3_bucket.as_deref().filter(|b| !b.is_empty()).ok_or_else(|| missing("S3_BUCKET"))?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.s3_region)
            .with_virtual_hosted_style_request(!settings.s3_path_style);
        if let Some(endpoint) = settings.s3_endpoint.as_deref().filter(|e| !e.is_empty()) {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(StoreConfigError {
                    variable: "S3_ENDPOINT",
                    message: "must be an http:// or https:// URL".into(),
                });
            }
            // S3-compatible servers on a private network often speak plain HTTP.
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &settings.s3_access_key_id {
            builder = builder.with_access_key_id(&key.0);
        }
        if let Some(secret) = &settings.s3_secret_access_key {
            builder = builder.with_secret_access_key(&secret.0);
        }
        let store =
            builder.build().map_err(|e| StoreConfigError { variable: "S3_ENDPOINT", message: e.to_string() })?;
        Ok(Self::new(Arc::new(store)))
    }
}

/// Aborts a multipart upload unless disarmed, so an upload that fails or whose future is
/// dropped half-way leaves no parts behind. (Some S3-compatible servers cannot list
/// multipart uploads, so a later sweep could not find them.)
struct PendingUpload(Option<Box<dyn MultipartUpload>>);

impl PendingUpload {
    fn upload(&mut self) -> io::Result<&mut Box<dyn MultipartUpload>> {
        self.0.as_mut().ok_or_else(|| io::Error::other("the multipart upload is already finished"))
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = upload.abort().await {
                    tracing::warn!(%error, "could not abort a multipart upload");
                }
            });
        }
    }
}

impl FileStore for ObjectStoreFiles {
    fn put<'a>(&'a self, key: &'a str, mut body: ByteStream<'a>) -> LocalBoxFuture<'a, io::Result<u64>> {
        Box::pin(async move {
            check_key(key)?;
            let path = ObjectPath::from(key);
            let mut part: Vec<Bytes> = Vec::new();
            let mut part_len = 0usize;
            let mut size = 0u64;
            let mut upload = PendingUpload(None);
            let streamed = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    size += chunk.len() as u64;
                    part_len += chunk.len();
                    part.push(chunk);
                    if part_len >= Self::PART_SIZE {
                        if upload.0.is_none() {
                            upload.0 = Some(self.store.put_multipart(&path).await?);
                        }
                        let payload: PutPayload = std::mem::take(&mut part).into_iter().collect();
                        part_len = 0;
                        upload.upload()?.put_part(payload).await?;
                    }
                }
                Ok::<_, io::Error>(())
            }
            .await;
            if let Err(error) = streamed {
                // Abort before answering, so the caller's "refused" means "nothing stored".
                if let Some(mut pending) = upload.0.take()
                    && let Err(abort) = pending.abort().await
                {
                    tracing::warn!(error = %abort, "could not abort a multipart upload");
                }
                return Err(error);
            }
            let payload: PutPayload = part.into_iter().collect();
            if upload.0.is_none() {
                self.store.put(&path, payload).await?;
            } else {
                if payload.content_length() > 0 {
                    upload.upload()?.put_part(payload).await?;
                }
                upload.upload()?.complete().await?;
                upload.0 = None;
            }
            Ok(size)
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            check_key(key)?;
            self.store.put(&ObjectPath::from(key), bytes.into()).await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str, offset: u64, len: Option<u64>) -> BoxFuture<'a, io::Result<SendByteStream>> {
        Box::pin(async move {
            check_key(key)?;
            if len == Some(0) {
                // S3 refuses an empty range; there is nothing to read anyway.
                let empty: SendByteStream = Box::pin(futures_util::stream::empty());
                return Ok(empty);
            }
            let range = match len {
                Some(len) => Some(GetRange::Bounded(offset..offset + len)),
                None if offset > 0 => Some(GetRange::Offset(offset)),
                None => None,
            };
            let result =
                self.store.get_opts(&ObjectPath::from(key), GetOptions { range, ..GetOptions::default() }).await?;
            let stream: SendByteStream = Box::pin(result.into_stream().map_err(io::Error::from));
            Ok(stream)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            check_key(key)?;
            match self.store.delete(&ObjectPath::from(key)).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn list_older_than(&self, cutoff: SystemTime) -> BoxFuture<'_, io::Result<Vec<String>>> {
        Box::pin(async move {
            let cutoff = cutoff.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let mut keys = Vec::new();
            let mut listing = self.store.list(None);
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                let key = meta.location.to_string();
                if meta.last_modified.timestamp() < cutoff && check_key(&key).is_ok() {
                    keys.push(key);
                }
            }
            Ok(keys)
        })
    }
}
