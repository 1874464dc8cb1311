//! Where uploaded bytes live. A trait, so an object store can replace the local disk
//! without touching the handlers.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::future::{BoxFuture, LocalBoxFuture};
use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

/// A stream of body chunks. Not `Send`: actix's payloads live on one worker thread.
pub type ByteStream<'a> = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + 'a>>;

pub trait FileStore: Send + Sync {
    /// Stores the stream under `key`. On any error — including one the stream itself
    /// yields, such as "too large" — nothing is left behind.
    fn put<'a>(&'a self, key: &'a str, body: ByteStream<'a>) -> LocalBoxFuture<'a, io::Result<u64>>;
    /// Reads `len` bytes from `offset` (the whole object when `len` is `None`).
    fn get<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
        len: Option<u64>,
    ) -> LocalBoxFuture<'a, io::Result<ByteStream<'static>>>;
    /// `Send`, unlike the others, so background cleanup can run it on any thread.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
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

    /// Keys are our own ids (UUIDs); anything else is refused rather than joined to a path.
    fn path(&self, key: &str) -> io::Result<PathBuf> {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid storage key"));
        }
        Ok(self.root.join(&key[..2.min(key.len())]).join(key))
    }
}

impl FileStore for LocalDisk {
    fn put<'a>(&'a self, key: &'a str, mut body: ByteStream<'a>) -> LocalBoxFuture<'a, io::Result<u64>> {
        Box::pin(async move {
            let target = self.path(key)?;
            let temp_dir = self.root.join("tmp");
            tokio::fs::create_dir_all(&temp_dir).await?;
            let temp = temp_dir.join(format!("{key}.part"));
            let mut file = tokio::fs::File::create(&temp).await?;
            let written = async {
                let mut size = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    size += chunk.len() as u64;
                    file.write_all(&chunk).await?;
                }
                file.flush().await?;
                file.sync_data().await?;
                Ok::<_, io::Error>(size)
            }
            .await;
            drop(file);
            match written {
                Ok(size) => {
                    if let Some(parent) = target.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    tokio::fs::rename(&temp, &target).await?;
                    Ok(size)
                }
                Err(error) => {
                    let _ = tokio::fs::remove_file(&temp).await;
                    Err(error)
                }
            }
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        offset: u64,
        len: Option<u64>,
    ) -> LocalBoxFuture<'a, io::Result<ByteStream<'static>>> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(self.path(key)?).await?;
            file.seek(io::SeekFrom::Start(offset)).await?;
            let reader: Pin<Box<dyn tokio::io::AsyncRead>> = match len {
                Some(len) => Box::pin(file.take(len)),
                None => Box::pin(file),
            };
            let stream: ByteStream<'static> = Box::pin(tokio_util::io::ReaderStream::new(reader));
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
}
