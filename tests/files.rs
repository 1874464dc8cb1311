//! docs/api.md section 6: uploads streamed to storage under a size limit, sniffed content types,
//! sanitised names, downloads with ranges, and who may read and delete a file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use blackbox_tests::{Reply, Store, TestApp};
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl as _;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A PNG's signature and the start of its IHDR chunk: enough for any sniffer.
const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8,
    6, 0, 0, 0,
];

async fn upload(app: &TestApp, token: &str, filename: &str, bytes: &[u8]) -> Reply {
    app.client.upload(Some(token), filename, bytes.to_vec()).await
}

async fn uploaded(app: &TestApp, token: &str, filename: &str, bytes: &[u8]) -> Value {
    upload(app, token, filename, bytes).await.assert_status(201).clone()
}

/// A download's status, headers and raw bytes.
struct Download {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Download {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn download(app: &TestApp, token: &str, file: &str, range: Option<&str>) -> Download {
    let mut request = app.client.request(Method::GET, &format!("/api/files/{file}"), Some(token));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request.send().await.unwrap();
    Download {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.unwrap().to_vec(),
    }
}

async fn metadata(app: &TestApp, token: &str, file: &str) -> Reply {
    app.client.get(&format!("/api/files/{file}/metadata"), Some(token)).await
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

async fn file_rows(app: &TestApp) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = app.db().await;
    diesel::sql_query("SELECT count(*) AS n FROM files").get_result::<Count>(&mut conn).await.unwrap().n
}

/// A public channel with its owner, a member, and an outsider.
struct Room {
    app: TestApp,
    owner: String,
    member: String,
    outsider: String,
    channel: String,
}

async fn room(app: TestApp) -> Room {
    let owner = app.user("owner").await;
    let member = app.user("member").await;
    let outsider = app.user("outsider").await;
    let channel = app.client.post("/api/channels", Some(&owner), &json!({"name": "general"})).await.assert_status(201)
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(&member)).await.assert_status(200);
    Room { app, owner, member, outsider, channel }
}

async fn attach(app: &TestApp, token: &str, channel: &str, files: &[&str]) -> Reply {
    app.client
        .post(
            "/api/chat/messages",
            Some(token),
            &json!({"content": "see attached", "channel_id": channel, "attachment_ids": files}),
        )
        .await
}

async fn an_upload_returns_the_file_with_its_hash_and_size(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    let me = app.client.get("/api/users/me", Some(&token)).await.body;
    let bytes = b"hello, file\n".to_vec();
    let reply = upload(&app, &token, "hello.txt", &bytes).await;
    let file = reply.assert_status(201);
    let mut keys: Vec<&String> = file.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["content_type", "created_at", "filename", "id", "sha256", "size", "uploader_id"]);
    assert_eq!(file["filename"], "hello.txt");
    assert_eq!(file["content_type"], "text/plain; charset=utf-8");
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(file["uploader_id"], me["id"]);
    assert!(file["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(file["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap().get_version_num(), 7);

    // The uploader reads it back: the same metadata and the same bytes.
    let meta = metadata(&app, &token, id(file)).await;
    assert_eq!(meta.assert_status(200), file);
    let body = download(&app, &token, id(file), None).await;
    assert_eq!(body.status, 200);
    assert_eq!(body.bytes, bytes);
    assert_eq!(body.header("content-length"), Some("12"));

    // Anonymous uploads are refused.
    app.client.upload(None, "x.txt", b"x".to_vec()).await.assert_error(401, "not_authenticated");
}

async fn the_content_type_is_sniffed_from_the_bytes_not_the_name(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    let png = uploaded(&app, &token, "x.txt", PNG).await;
    assert_eq!(png["content_type"], "image/png");
    assert_eq!(png["filename"], "x.txt");
    let binary = uploaded(&app, &token, "picture.png", &[0, 1, 2, 3, 255, 254]).await;
    assert_eq!(binary["content_type"], "application/octet-stream");
    let html = uploaded(&app, &token, "page.html", b"<html><script>alert(1)</script>").await;
    // HTML is stored as what it is, and served so that no browser renders it in place.
    assert_eq!(html["content_type"], "text/html");
    let served = download(&app, &token, id(&html), None).await;
    assert!(served.header("content-disposition").unwrap().starts_with("attachment"));
    assert_eq!(served.header("x-content-type-options"), Some("nosniff"));
}

async fn filenames_are_sanitised(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    for (raw, clean) in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/absolute/path/report.pdf", "report.pdf"),
        ("tab\there.txt", "tabhere.txt"),
        ("quote\"d.txt", "quoted.txt"),
        ("..", "file"),
        ("ünïcödé 文件.txt", "ünïcödé 文件.txt"),
    ] {
        let file = uploaded(&app, &token, raw, b"content").await;
        assert_eq!(file["filename"], clean, "{raw:?}");
    }
    // Nothing was written outside the store's own layout.
    for path in app.stored_objects() {
        if store == Store::Local {
            assert!(path.starts_with(app.files_dir()), "{} escaped the storage directory", path.display());
        }
        assert!(!path.ends_with("passwd"));
    }
}

async fn the_size_limit_is_exact_and_an_oversized_upload_leaves_nothing_behind(store: Store) {
    const LIMIT: usize = 1024;
    let app = TestApp::spawn_on_with(store, |s| s.max_upload_bytes = LIMIT as u64).await;
    let token = app.user("alice").await;

    for size in [LIMIT + 1, 10 * LIMIT, 1024 * 1024] {
        let reply = upload(&app, &token, "big.bin", &vec![7u8; size]).await;
        reply.assert_error(413, "payload_too_large");
        assert!(reply.header("content-type").unwrap().starts_with("application/json"));
        assert_eq!(
            app.store_snapshot(),
            Vec::<PathBuf>::new(),
            "no partial file after a {size}-byte upload (none in tmp/ either)"
        );
        assert_eq!(file_rows(&app).await, 0);
    }

    // Exactly the limit is fine: the limit counts the file's bytes, not the framing.
    let file = uploaded(&app, &token, "exact.bin", &vec![7u8; LIMIT]).await;
    assert_eq!(file["size"], LIMIT);
    let stored = app.stored_objects();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::metadata(&stored[0]).unwrap().len(), LIMIT as u64);
    assert_eq!(file_rows(&app).await, 1);
}

async fn uploads_must_be_multipart_with_a_file_part(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    let json = app.client.post("/api/files", Some(&token), &json!({"file": "aGVsbG8="})).await;
    json.assert_error(415, "unsupported_media_type");
    let raw = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/files", Some(&token))
                .header("content-type", "application/octet-stream")
                .body(vec![1u8, 2, 3]),
        )
        .await;
    raw.assert_error(415, "unsupported_media_type");

    let form = reqwest::multipart::Form::new().text("other", "no file here");
    let missing = app.client.send(app.client.request(Method::POST, "/api/files", Some(&token)).multipart(form)).await;
    missing.assert_error(422, "validation_error");
    assert_eq!(missing.body["errors"][0]["field"], "file");
    assert_eq!(file_rows(&app).await, 0);
    assert_eq!(app.stored_objects(), Vec::<PathBuf>::new());
}

async fn only_the_uploader_and_members_where_it_is_attached_may_read_a_file(store: Store) {
    let Room { app, owner, member, outsider, channel } = room(TestApp::spawn_on(store).await).await;
    let file = uploaded(&app, &owner, "plan.txt", b"the plan").await;
    let file_id = id(&file).to_owned();

    // Unattached: the uploader only. Others are told nothing exists.
    for token in [&member, &outsider] {
        metadata(&app, token, &file_id).await.assert_error(404, "not_found");
        assert_eq!(download(&app, token, &file_id, None).await.status, 404);
    }
    metadata(&app, &owner, &uuid::Uuid::now_v7().to_string()).await.assert_error(404, "not_found");
    metadata(&app, &owner, "not-a-uuid").await.assert_error(404, "not_found");

    // Attached in the channel: its members may read it.
    let message = attach(&app, &owner, &channel, &[&file_id]).await;
    let message = message.assert_status(201).clone();
    assert_eq!(message["attachments"], json!([file]));
    let page = app.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(&member)).await;
    assert_eq!(page.assert_status(200)["items"][0]["attachments"], json!([file]), "history pages carry them too");
    assert_eq!(metadata(&app, &member, &file_id).await.assert_status(200), &file);
    let fetched = download(&app, &member, &file_id, None).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.bytes, b"the plan");
    // Not a member of the channel: still 404.
    metadata(&app, &outsider, &file_id).await.assert_error(404, "not_found");

    // Banned: the member loses access at once.
    app.client
        .post_empty(&format!("/api/channels/{channel}/ban-by-username/member"), Some(&owner))
        .await
        .assert_status(200);
    metadata(&app, &member, &file_id).await.assert_error(404, "not_found");
    assert_eq!(download(&app, &member, &file_id, None).await.status, 404);

    // Deleting the message takes the file out of reach of members, not of the uploader.
    let bob = app.user("bob").await;
    app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(&bob)).await.assert_status(200);
    assert_eq!(download(&app, &bob, &file_id, None).await.status, 200);
    app.client.delete(&format!("/api/chat/messages/{}", id(&message)), Some(&owner)).await.assert_status(204);
    assert_eq!(download(&app, &bob, &file_id, None).await.status, 404);
    assert_eq!(download(&app, &owner, &file_id, None).await.status, 200);
}

async fn attachments_must_be_files_the_sender_uploaded(store: Store) {
    let Room { app, owner, member, channel, .. } = room(TestApp::spawn_on(store).await).await;
    let owners = uploaded(&app, &owner, "owners.txt", b"owner's").await;
    let mine = uploaded(&app, &member, "mine.txt", b"mine").await;
    for ids in [vec![id(&owners)], vec![id(&mine), id(&owners)], vec![&*uuid::Uuid::now_v7().to_string()]] {
        let reply = attach(&app, &member, &channel, &ids).await;
        reply.assert_error(422, "validation_error");
        assert_eq!(reply.body["errors"][0]["field"], "attachment_ids");
    }
    // Someone else's file stays out of reach.
    metadata(&app, &member, id(&owners)).await.assert_error(404, "not_found");
    let ok = attach(&app, &member, &channel, &[id(&mine)]).await;
    assert_eq!(ok.assert_status(201)["attachments"][0]["id"], mine["id"]);
}

async fn downloads_are_attachments_with_nosniff_and_ranges(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    let bytes: Vec<u8> = (0..100u8).collect();
    let file = uploaded(&app, &token, "data \"quoted\" ü.bin", &bytes).await;
    let file_id = id(&file);

    let whole = download(&app, &token, file_id, None).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.bytes, bytes);
    let disposition = whole.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains("filename"), "{disposition}");
    assert_eq!(whole.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("content-type"), Some(file["content_type"].as_str().unwrap()));

    let head = download(&app, &token, file_id, Some("bytes=0-9")).await;
    assert_eq!(head.status, 206);
    assert_eq!(head.bytes, &bytes[..10]);
    assert_eq!(head.header("content-range"), Some("bytes 0-9/100"));
    assert_eq!(head.header("content-length"), Some("10"));
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));
    assert!(head.header("content-disposition").unwrap().starts_with("attachment"));

    let tail = download(&app, &token, file_id, Some("bytes=-5")).await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.bytes, &bytes[95..]);
    assert_eq!(tail.header("content-range"), Some("bytes 95-99/100"));
    let open = download(&app, &token, file_id, Some("bytes=90-")).await;
    assert_eq!(open.status, 206);
    assert_eq!(open.bytes, &bytes[90..]);

    for range in ["bytes=100-", "bytes=500-600", "bytes=-0"] {
        let refused = download(&app, &token, file_id, Some(range)).await;
        assert_eq!(refused.status, 416, "{range}");
        assert_eq!(refused.header("content-range"), Some("bytes */100"), "{range}");
        let body: Value = serde_json::from_slice(&refused.bytes).unwrap();
        assert!(body["detail"].is_string());
        assert!(body["code"].is_string());
    }
}

async fn only_the_uploader_deletes_a_file(store: Store) {
    let Room { app, owner, member, outsider, channel } = room(TestApp::spawn_on(store).await).await;
    let file = uploaded(&app, &owner, "doomed.txt", b"doomed").await;
    let file_id = id(&file).to_owned();
    let message = attach(&app, &owner, &channel, &[&file_id]).await;
    let message = message.assert_status(201).clone();

    // A member can see it but not delete it; an outsider is told nothing exists.
    app.client.delete(&format!("/api/files/{file_id}"), Some(&member)).await.assert_error(403, "forbidden");
    app.client.delete(&format!("/api/files/{file_id}"), Some(&outsider)).await.assert_error(404, "not_found");
    assert_eq!(app.stored_objects().len(), 1);

    app.client.delete(&format!("/api/files/{file_id}"), Some(&owner)).await.assert_status(204);
    metadata(&app, &owner, &file_id).await.assert_error(404, "not_found");
    assert_eq!(download(&app, &owner, &file_id, None).await.status, 404);
    app.client.delete(&format!("/api/files/{file_id}"), Some(&owner)).await.assert_error(404, "not_found");
    assert_eq!(file_rows(&app).await, 0);
    assert_eq!(app.stored_objects(), Vec::<PathBuf>::new());
    // It is gone from the message it was attached to.
    let fetched = app.client.get(&format!("/api/chat/messages/{}", id(&message)), Some(&member)).await;
    assert_eq!(fetched.assert_status(200)["attachments"], json!([]));
    let page = app.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(&member)).await;
    assert_eq!(page.assert_status(200)["items"][0]["attachments"], json!([]));
}

/// Each test below marked for it runs against both stores: the local disk and a real S3-compatible server.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test]
            async fn $test() {
                super::$test(blackbox_tests::Store::Local).await;
            })*
        }
        mod s3 {
            $(#[tokio::test]
            async fn $test() {
                super::$test(blackbox_tests::Store::S3).await;
            })*
        }
    };
}

/// The writer commits many posts in one transaction (group commit). A file deleted while a
/// post attaching it is in flight must fail that post alone, with a 422, never the whole
/// batch: other people's messages in the same channel are not collateral damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_file_while_it_is_attached_fails_only_that_post() {
    let Room { app, owner, member, channel, .. } = room(TestApp::spawn_with(|s| s.workers = 2).await).await;
    for i in 0..100 {
        let file = uploaded(&app, &owner, "racy.txt", b"racy").await;
        let attaching = json!({"content": "with a file", "channel_id": channel, "attachment_ids": [file["id"]]});
        let bystanding = json!({"content": format!("bystander {i}"), "channel_id": channel});
        let delete_path = format!("/api/files/{}", id(&file));
        let (attached, deleted, bystander) = tokio::join!(
            app.client.post("/api/chat/messages", Some(&owner), &attaching),
            app.client.delete(&delete_path, Some(&owner)),
            app.client.post("/api/chat/messages", Some(&member), &bystanding),
        );
        deleted.assert_status(204);
        bystander.assert_status(201);
        match attached.status.as_u16() {
            // Attached first; the delete then took it off the message.
            201 => {
                let message = app.client.get(&format!("/api/chat/messages/{}", id(&attached.body)), Some(&owner)).await;
                assert_eq!(message.assert_status(200)["attachments"], json!([]));
            }
            // Deleted first: the file no longer exists to be attached.
            422 => assert_eq!(attached.body["errors"][0]["field"], "attachment_ids"),
            _ => panic!("attaching a file being deleted: {}", attached.text),
        }
    }
}

// ---- docs/api.md section 13: files at scale -------------------------------------------------

/// `bytes` of length `len`, different at every offset, so a misplaced range shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

/// Polls `check` until it holds, or fails the test after `within`.
async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_nodes_on_one_bucket_serve_each_others_uploads_byte_identically() {
    let big = |s: &mut http_api::Settings| s.max_upload_bytes = 16 * 1024 * 1024;
    let first = TestApp::spawn_on_with(Store::S3, big).await;
    let second = first.spawn_sibling(big).await;
    assert_ne!(first.files_dir(), second.files_dir());
    let token = first.user("alice").await;

    // Larger than one part (5 MiB), so it goes up as a multipart upload.
    let bytes = pattern(11 * 1024 * 1024 + 123);
    let file = uploaded(&first, &token, "big.bin", &bytes).await;
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    let whole = download(&second, &token, id(&file), None).await;
    assert_eq!(whole.status, 200);
    assert!(whole.bytes == bytes, "the other node serves the same bytes");
    for (range, start, end) in [("bytes=0-9", 0, 9), ("bytes=5242870-5242890", 5_242_870, 5_242_890)] {
        let part = download(&second, &token, id(&file), Some(range)).await;
        assert_eq!(part.status, 206, "{range}");
        assert!(part.bytes == bytes[start..=end], "{range}");
    }
    let tail = download(&second, &token, id(&file), Some("bytes=-100")).await;
    assert!(tail.bytes == bytes[bytes.len() - 100..]);

    // And the other way round, for a small (single-request) upload.
    let small = uploaded(&second, &token, "small.txt", b"from the second node").await;
    assert_eq!(download(&first, &token, id(&small), None).await.bytes, b"from the second node");
    assert_eq!(first.stored_objects().len(), 2);

    // Deleting on one node removes the object from the bucket.
    second.client.delete(&format!("/api/files/{}", id(&file)), Some(&token)).await.assert_status(204);
    assert_eq!(download(&first, &token, id(&file), None).await.status, 404);
    assert_eq!(first.stored_objects().len(), 1);
}

/// A raw HTTP/1.1 upload whose body is cut short: `sent` bytes of the file part out of a
/// declared `declared`, so a test can stall it or hang up.
async fn partial_upload(app: &TestApp, token: &str, declared: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let boundary = "chat-test-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let request = format!(
        "POST /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        head.len() + declared + tail.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    for chunk in pattern(sent).chunks(64 * 1024) {
        stream.write_all(chunk).await.unwrap();
    }
    stream.flush().await.unwrap();
    stream
}

async fn stalled_upload_gets_408_and_leaves_nothing(store: Store) {
    let app = TestApp::spawn_on_with(store, |s| {
        s.upload_idle_timeout_seconds = 1;
        s.max_upload_bytes = 16 * 1024 * 1024;
    })
    .await;
    let token = app.user("alice").await;
    let before = app.store_snapshot();
    // More than a part, so with S3 a multipart upload is under way when the client stalls.
    let mut stream = partial_upload(&app, &token, 8 * 1024 * 1024, 6 * 1024 * 1024).await;
    let mut response = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(15), async {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = [0u8; 4096];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the server hung up without an answer");
            response.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("an answer to a stalled upload");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert_eq!(app.store_snapshot(), before, "a timed-out upload leaves nothing in the store");
    assert_eq!(file_rows(&app).await, 0);
}

async fn an_aborted_upload_leaves_nothing(store: Store) {
    let app = TestApp::spawn_on_with(store, |s| s.max_upload_bytes = 16 * 1024 * 1024).await;
    let token = app.user("alice").await;
    let kept = uploaded(&app, &token, "kept.txt", b"kept").await;
    let before = app.store_snapshot();
    let stream = partial_upload(&app, &token, 8 * 1024 * 1024, 6 * 1024 * 1024).await;
    // Hang up only once the store holds part of the upload (a temporary file, a multipart
    // upload with its first part), so the cleanup is what the test sees.
    eventually(std::time::Duration::from_secs(15), "the upload is under way in the store", || async {
        app.store_snapshot() != before
    })
    .await;
    drop(stream);
    eventually(std::time::Duration::from_secs(15), "the aborted upload is cleaned up", || async {
        app.store_snapshot() == before
    })
    .await;
    assert_eq!(file_rows(&app).await, 1);
    assert_eq!(download(&app, &token, id(&kept), None).await.bytes, b"kept");
}

async fn an_oversized_multipart_upload_leaves_nothing(store: Store) {
    // Past one S3 part before the limit is hit, so a multipart upload must be aborted.
    let limit = 5 * 1024 * 1024 + 512 * 1024;
    let app = TestApp::spawn_on_with(store, |s| s.max_upload_bytes = limit as u64).await;
    let token = app.user("alice").await;
    let before = app.store_snapshot();
    upload(&app, &token, "big.bin", &pattern(limit + 1)).await.assert_error(413, "payload_too_large");
    assert_eq!(app.store_snapshot(), before);
    assert_eq!(file_rows(&app).await, 0);
    let exact = uploaded(&app, &token, "exact.bin", &pattern(limit)).await;
    assert_eq!(exact["size"], limit);
}

async fn uploads_beyond_the_quotas_are_refused(store: Store) {
    let Room { app, owner, channel, .. } = room(
        TestApp::spawn_on_with(store, |s| {
            s.upload_quota_bytes = 3000;
            s.upload_quota_bytes_per_hour = 5000;
        })
        .await,
    )
    .await;
    let first = uploaded(&app, &owner, "one.bin", &[1u8; 2000]).await;
    let before = app.store_snapshot();
    // 4,000 unattached bytes would be over the 3,000 allowed.
    let refused = upload(&app, &owner, "two.bin", &[2u8; 2000]).await;
    refused.assert_error(413, "upload_quota_exceeded");
    assert_eq!(app.store_snapshot(), before, "a refused upload leaves nothing");
    assert_eq!(file_rows(&app).await, 1);

    // Attaching frees the unattached quota ...
    attach(&app, &owner, &channel, &[id(&first)]).await.assert_status(201);
    let second = uploaded(&app, &owner, "two.bin", &[2u8; 2000]).await;
    attach(&app, &owner, &channel, &[id(&second)]).await.assert_status(201);
    // ... but not the hourly one: 6,000 bytes in the hour would be over 5,000.
    upload(&app, &owner, "three.bin", &[3u8; 2000]).await.assert_error(413, "upload_quota_exceeded");
    // Another user has quotas of their own.
    let other = app.user("other").await;
    uploaded(&app, &other, "theirs.bin", &[4u8; 2000]).await;
}

/// The quota is decided when the upload is recorded, under a per-user lock: uploads that
/// all start under it cannot all finish over it.
#[tokio::test]
async fn parallel_uploads_cannot_slip_past_the_quota() {
    let app = TestApp::spawn_with(|s| s.upload_quota_bytes = 3000).await;
    let token = app.user("alice").await;
    let replies =
        futures_util::future::join_all((0..10u8).map(|i| app.client.upload(Some(&token), "part.bin", vec![i; 1000])))
            .await;
    let created = replies.iter().filter(|r| r.status.as_u16() == 201).count();
    for reply in replies.iter().filter(|r| r.status.as_u16() != 201) {
        reply.assert_error(413, "upload_quota_exceeded");
    }
    assert_eq!(created, 3);
    assert_eq!(file_rows(&app).await, 3);
    assert_eq!(app.stored_objects().len(), 3, "refused uploads leave no bytes");
}

async fn downloads_are_sandboxed_and_active_types_served_as_bytes(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    let html = uploaded(&app, &token, "page.html", b"<html><script>alert(1)</script>").await;
    let svg = uploaded(
        &app,
        &token,
        "image.svg",
        b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
    )
    .await;
    let text = uploaded(&app, &token, "notes.txt", b"just text").await;
    for (file, served) in
        [(&html, "application/octet-stream"), (&svg, "application/octet-stream"), (&text, "text/plain; charset=utf-8")]
    {
        let body = download(&app, &token, id(file), None).await;
        assert_eq!(body.status, 200);
        assert_eq!(body.header("content-type"), Some(served), "{}", file["filename"]);
        assert_eq!(body.header("content-security-policy"), Some("sandbox"));
        assert_eq!(body.header("x-content-type-options"), Some("nosniff"));
        assert!(body.header("content-disposition").unwrap().starts_with("attachment"));
    }
    // The metadata still says what the file is.
    assert_eq!(html["content_type"], "text/html");
    assert_ne!(svg["content_type"], "application/octet-stream");
}

async fn form_fields_besides_the_file_are_capped(store: Store) {
    let app = TestApp::spawn_on(store).await;
    let token = app.user("alice").await;
    let form = reqwest::multipart::Form::new()
        .text("note", "x".repeat(1024 * 1024))
        .part("file", reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"));
    let reply = app.client.send(app.client.request(Method::POST, "/api/files", Some(&token)).multipart(form)).await;
    reply.assert_error(413, "payload_too_large");
    // The same with the field after the file: the stored file is discarded again.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"))
        .text("note", "x".repeat(1024 * 1024));
    let reply = app.client.send(app.client.request(Method::POST, "/api/files", Some(&token)).multipart(form)).await;
    reply.assert_error(413, "payload_too_large");
    assert_eq!(file_rows(&app).await, 0);
    assert_eq!(app.stored_objects(), Vec::<PathBuf>::new());
    // Small fields are fine.
    let form = reqwest::multipart::Form::new()
        .text("note", "a small note")
        .part("file", reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"));
    let reply = app.client.send(app.client.request(Method::POST, "/api/files", Some(&token)).multipart(form)).await;
    reply.assert_status(201);
}

fn encoded_image(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image).write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// The metadata once the thumbnail worker has looked at the file (`width` is set then).
async fn looked_at(app: &TestApp, token: &str, file: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let meta = metadata(app, token, file).await.assert_status(200).clone();
        if meta.get("width").is_some() {
            return meta;
        }
        assert!(tokio::time::Instant::now() < deadline, "the image was not looked at in time: {meta}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn images_get_dimensions_and_a_thumbnail(store: Store) {
    let Room { app, owner, member, outsider, channel } = room(TestApp::spawn_on(store).await).await;
    for (name, format, width, height) in [
        ("wide.png", image::ImageFormat::Png, 1200, 600),
        ("photo.jpg", image::ImageFormat::Jpeg, 500, 900),
        ("small.webp", image::ImageFormat::WebP, 320, 200),
        ("anim.gif", image::ImageFormat::Gif, 800, 800),
    ] {
        let file = uploaded(&app, &owner, name, &encoded_image(width, height, format)).await;
        let file_id = id(&file).to_owned();
        let meta = looked_at(&app, &owner, &file_id).await;
        assert_eq!(
            (meta["width"].as_u64(), meta["height"].as_u64()),
            (Some(width.into()), Some(height.into())),
            "{name}"
        );
        let url = meta["thumbnail_url"].as_str().unwrap();
        assert_eq!(url, format!("/api/files/{file_id}/thumbnail"));
        let response = app.client.request(Method::GET, url, Some(&owner)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{name}");
        assert_eq!(response.headers()["content-security-policy"], "sandbox");
        let thumbnail = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
        assert!(thumbnail.width() <= 400 && thumbnail.height() <= 400, "{name}");
        let scale = f64::from(thumbnail.width()) / f64::from(width);
        assert!((f64::from(height) * scale - f64::from(thumbnail.height())).abs() <= 1.0, "{name}: aspect ratio");

        // The same access rules as the file.
        assert_eq!(app.client.get(url, Some(&outsider)).await.status, 404);
        assert_eq!(app.client.get(url, Some(&member)).await.status, 404);
        attach(&app, &owner, &channel, &[&file_id]).await.assert_status(201);
        assert_eq!(app.client.request(Method::GET, url, Some(&member)).send().await.unwrap().status().as_u16(), 200);
    }
    // Not an image: no thumbnail, and the metadata says nothing about one.
    let text = uploaded(&app, &owner, "a.txt", b"text").await;
    assert!(text.get("thumbnail_url").is_none());
    app.client.get(&format!("/api/files/{}/thumbnail", id(&text)), Some(&owner)).await.assert_error(404, "not_found");
}

async fn corrupt_images_and_bombs_get_no_thumbnail(store: Store) {
    let app = TestApp::spawn_on_with(store, |s| s.thumbnail_workers = 1).await;
    let token = app.user("alice").await;
    let mut corrupt = encoded_image(300, 300, image::ImageFormat::Png);
    corrupt.truncate(corrupt.len() / 2);
    let corrupt = uploaded(&app, &token, "broken.png", &corrupt).await;
    assert_eq!(corrupt["content_type"], "image/png");

    // 20,000 × 20,000 pixels (400 megapixels) in a few dozen KiB.
    let mut bomb = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bomb, 20_000, 20_000);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        encoder.set_compression(png::Compression::High);
        let mut header = encoder.write_header().unwrap();
        let mut writer = header.stream_writer().unwrap();
        let row = vec![0u8; 2500];
        for _ in 0..20_000 {
            std::io::Write::write_all(&mut writer, &row).unwrap();
        }
        writer.finish().unwrap();
        header.finish().unwrap();
    }
    assert!(bomb.len() < 128 * 1024, "the bomb is small: {} bytes", bomb.len());
    let peak_before = peak_rss_kib();
    let bomb = uploaded(&app, &token, "bomb.png", &bomb).await;
    let meta = looked_at(&app, &token, id(&bomb)).await;
    assert_eq!((meta["width"].as_u64(), meta["height"].as_u64()), (Some(20_000), Some(20_000)));
    assert!(meta.get("thumbnail_url").is_none(), "{meta}");
    let grown = peak_rss_kib().saturating_sub(peak_before);
    println!("peak memory grew by {grown} KiB while a 400-megapixel PNG was looked at");
    assert!(grown < 200 * 1024, "peak memory grew by {grown} KiB for the bomb");
    app.client.get(&format!("/api/files/{}/thumbnail", id(&bomb)), Some(&token)).await.assert_error(404, "not_found");

    // One worker takes the queue in order, so by the time a later image has its thumbnail
    // the corrupt one has been tried: it got nothing, and the upload itself was fine.
    let fine = uploaded(&app, &token, "fine.png", &encoded_image(10, 10, image::ImageFormat::Png)).await;
    assert!(looked_at(&app, &token, id(&fine)).await["thumbnail_url"].is_string());
    let corrupt = metadata(&app, &token, id(&corrupt)).await;
    let corrupt = corrupt.assert_status(200);
    assert!(corrupt.get("thumbnail_url").is_none(), "{corrupt}");
    assert_eq!(download(&app, &token, id(corrupt), None).await.status, 200);
}

/// This process's peak resident memory (the server under test runs in it).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn the_janitor_removes_orphans_in_the_store_and_the_database(store: Store) {
    let Room { app, owner, channel, .. } = room(TestApp::spawn_on(store).await).await;
    let attached = uploaded(&app, &owner, "attached.txt", b"attached").await;
    attach(&app, &owner, &channel, &[id(&attached)]).await.assert_status(201);
    let unattached = uploaded(&app, &owner, "unattached.txt", b"unattached").await;
    assert_eq!(app.stored_objects().len(), 2);

    // Bytes without a row: a node died between storing and recording them.
    let files = http_api::files::from_settings(&app.settings).unwrap();
    let stray = uuid::Uuid::now_v7().to_string();
    files.put_bytes(&stray, bytes::Bytes::from_static(b"stray")).await.unwrap();
    assert_eq!(app.stored_objects().len(), 3);

    // Everything counts as old with a cutoff in the future.
    let db = persistence::Database::connect(&app.settings.database_url.as_ref().unwrap().0, 2, 1, None).await.unwrap();
    http_api::app::sweep_uploads(&db, files.as_ref(), time::OffsetDateTime::now_utc() + time::Duration::minutes(1))
        .await;
    assert_eq!(app.stored_objects().len(), 1, "only the attached file's bytes remain");
    assert_eq!(file_rows(&app).await, 1);
    assert_eq!(download(&app, &owner, id(&attached), None).await.bytes, b"attached");
    assert_eq!(download(&app, &owner, id(&unattached), None).await.status, 404);
}

on_both_stores!(
    an_upload_returns_the_file_with_its_hash_and_size,
    the_content_type_is_sniffed_from_the_bytes_not_the_name,
    filenames_are_sanitised,
    the_size_limit_is_exact_and_an_oversized_upload_leaves_nothing_behind,
    uploads_must_be_multipart_with_a_file_part,
    only_the_uploader_and_members_where_it_is_attached_may_read_a_file,
    attachments_must_be_files_the_sender_uploaded,
    downloads_are_attachments_with_nosniff_and_ranges,
    only_the_uploader_deletes_a_file,
    stalled_upload_gets_408_and_leaves_nothing,
    an_aborted_upload_leaves_nothing,
    an_oversized_multipart_upload_leaves_nothing,
    uploads_beyond_the_quotas_are_refused,
    downloads_are_sandboxed_and_active_types_served_as_bytes,
    form_fields_besides_the_file_are_capped,
    images_get_dimensions_and_a_thumbnail,
    corrupt_images_and_bombs_get_no_thumbnail,
    the_janitor_removes_orphans_in_the_store_and_the_database,
);

#[tokio::test]
async fn a_stalled_download_is_cut_after_the_send_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const SIZE: usize = 32 * 1024 * 1024;
    let app = TestApp::spawn_with(|s| {
        s.max_upload_bytes = SIZE as u64;
        s.send_timeout_seconds = 1;
    })
    .await;
    let token = app.user("alice").await;
    let file = uploaded(&app, &token, "big.bin", &vec![7u8; SIZE]).await;

    // Far more than the socket buffers hold, so the server soon cannot send more.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let request =
        format!("GET /api/files/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n", id(&file));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..received]).starts_with("HTTP/1.1 200"));
    // The behaviour under test: a client that stops reading for longer than the timeout.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
    }
    assert!(received < SIZE, "the stalled download was cut ({received} of {SIZE} bytes arrived)");
    // The server itself is fine.
    assert_eq!(download(&app, &token, id(&file), Some("bytes=0-3")).await.bytes, [7u8; 4]);
}

/// The thumbnail worker records an image's dimensions after the message that shows it may
/// have been read: no channel event says so, so the history epoch (a trigger on `files`)
/// must, or a kept page would show the image without them. The worker's late write is
/// played here by SQL, after the page is kept.
#[tokio::test]
async fn a_kept_history_page_shows_image_facts_recorded_after_it_was_read() {
    let Room { app, owner, member, channel, .. } = room(TestApp::spawn().await).await;
    let file = uploaded(&app, &owner, "wide.png", &encoded_image(120, 60, image::ImageFormat::Png)).await;
    let file_id = id(&file).to_owned();
    looked_at(&app, &owner, &file_id).await;
    attach(&app, &owner, &channel, &[&file_id]).await.assert_status(201);
    let page = async || {
        let reply = app.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(&member)).await;
        reply.assert_status(200)["items"][0]["attachments"][0].clone()
    };
    assert_eq!(page().await["width"], 120);

    let mut conn = app.db().await;
    diesel::sql_query("UPDATE files SET width = 240, height = 120 WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(file_id.parse::<uuid::Uuid>().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    let shown = page().await;
    assert_eq!((shown["width"].clone(), shown["height"].clone()), (json!(240), json!(120)));
}
