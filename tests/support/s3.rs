//! A real S3-compatible server (s3s-fs) on a free loopback port, owned by one test: it
//! speaks SigV4, path-style addressing, ranged GET and multipart uploads, and keeps each
//! object as a plain file under its root, so tests can look at exactly what is stored.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::sync::oneshot;

pub const ACCESS_KEY: &str = "chat-test-access-key";
pub const SECRET_KEY: &str = "chat-test-secret-key";
pub const BUCKET: &str = "chat-files";
pub const REGION: &str = "us-east-1";

/// The server runs on a thread and runtime of its own, so it serves whichever runtime the
/// test and the servers under test use; dropping it stops it and removes its files.
pub struct S3Server {
    pub port: u16,
    root: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    pub fn start() -> Self {
        let root = std::env::temp_dir().join(format!("chat-test-s3-{}", uuid::Uuid::new_v4().simple()));
        // A bucket is a directory.
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let fs = s3s_fs::FileSystem::new(&root).unwrap();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut builder = S3ServiceBuilder::new(fs);
                builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = builder.build();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                            tokio::spawn(async move {
                                let _ = connection.await;
                            });
                        }
                        _ = &mut stopped => break,
                    }
                }
            });
            runtime.shutdown_background();
        });
        Self { port, root, stop: Some(stop), thread: Some(thread) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The settings that point a server at this store (path style, plain HTTP).
    pub fn configure(&self, settings: &mut http_api::Settings) {
        use http_api::config::{FileStoreKind, Secret};
        settings.file_store = FileStoreKind::S3;
        settings.s3_bucket = Some(BUCKET.into());
        settings.s3_endpoint = Some(self.endpoint());
        settings.s3_region = REGION.into();
        settings.s3_access_key_id = Some(Secret(ACCESS_KEY.into()));
        settings.s3_secret_access_key = Some(Secret(SECRET_KEY.into()));
        settings.s3_path_style = true;
    }

    /// The objects in the bucket, as files.
    pub fn objects(&self) -> Vec<PathBuf> {
        files_under(&self.root.join(BUCKET))
    }

    /// Everything the server keeps: objects, their metadata, parts of multipart uploads.
    pub fn everything(&self) -> Vec<PathBuf> {
        files_under(&self.root)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every regular file under `dir`, however deep, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() { files_under(&path) } else { vec![path] }
        })
        .collect();
    files.sort();
    files
}
