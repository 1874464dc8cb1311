//! docs/api.md section 6: uploads streamed to storage under a size limit, sniffed content types,
//! sanitised names, downloads with ranges, and who may read and delete a file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use blackbox_tests::{Reply, TestApp};
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

/// Every regular file under `dir`, however deep.
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() { stored_files(&path) } else { vec![path] }
        })
        .collect()
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

#[tokio::test]
async fn an_upload_returns_the_file_with_its_hash_and_size() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn the_content_type_is_sniffed_from_the_bytes_not_the_name() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn filenames_are_sanitised() {
    let app = TestApp::spawn().await;
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
    // Nothing was written outside the storage directory's own layout.
    for path in stored_files(app.files_dir()) {
        assert!(path.starts_with(app.files_dir()), "{} escaped the storage directory", path.display());
        assert!(!path.ends_with("passwd"));
    }
}

#[tokio::test]
async fn the_size_limit_is_exact_and_an_oversized_upload_leaves_nothing_behind() {
    const LIMIT: usize = 1024;
    let app = TestApp::spawn_with(|s| s.max_upload_bytes = LIMIT as u64).await;
    let token = app.user("alice").await;

    for size in [LIMIT + 1, 10 * LIMIT, 1024 * 1024] {
        let reply = upload(&app, &token, "big.bin", &vec![7u8; size]).await;
        reply.assert_error(413, "payload_too_large");
        assert!(reply.header("content-type").unwrap().starts_with("application/json"));
        assert_eq!(
            stored_files(app.files_dir()),
            Vec::<PathBuf>::new(),
            "no partial file after a {size}-byte upload (none in tmp/ either)"
        );
        assert_eq!(file_rows(&app).await, 0);
    }

    // Exactly the limit is fine: the limit counts the file's bytes, not the framing.
    let file = uploaded(&app, &token, "exact.bin", &vec![7u8; LIMIT]).await;
    assert_eq!(file["size"], LIMIT);
    let stored = stored_files(app.files_dir());
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::metadata(&stored[0]).unwrap().len(), LIMIT as u64);
    assert_eq!(file_rows(&app).await, 1);
}

#[tokio::test]
async fn uploads_must_be_multipart_with_a_file_part() {
    let app = TestApp::spawn().await;
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
    assert_eq!(stored_files(app.files_dir()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn only_the_uploader_and_members_where_it_is_attached_may_read_a_file() {
    let Room { app, owner, member, outsider, channel } = room(TestApp::spawn().await).await;
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

#[tokio::test]
async fn attachments_must_be_files_the_sender_uploaded() {
    let Room { app, owner, member, channel, .. } = room(TestApp::spawn().await).await;
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

#[tokio::test]
async fn downloads_are_attachments_with_nosniff_and_ranges() {
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn only_the_uploader_deletes_a_file() {
    let Room { app, owner, member, outsider, channel } = room(TestApp::spawn().await).await;
    let file = uploaded(&app, &owner, "doomed.txt", b"doomed").await;
    let file_id = id(&file).to_owned();
    let message = attach(&app, &owner, &channel, &[&file_id]).await;
    let message = message.assert_status(201).clone();

    // A member can see it but not delete it; an outsider is told nothing exists.
    app.client.delete(&format!("/api/files/{file_id}"), Some(&member)).await.assert_error(403, "forbidden");
    app.client.delete(&format!("/api/files/{file_id}"), Some(&outsider)).await.assert_error(404, "not_found");
    assert_eq!(stored_files(app.files_dir()).len(), 1);

    app.client.delete(&format!("/api/files/{file_id}"), Some(&owner)).await.assert_status(204);
    metadata(&app, &owner, &file_id).await.assert_error(404, "not_found");
    assert_eq!(download(&app, &owner, &file_id, None).await.status, 404);
    app.client.delete(&format!("/api/files/{file_id}"), Some(&owner)).await.assert_error(404, "not_found");
    assert_eq!(file_rows(&app).await, 0);
    assert_eq!(stored_files(app.files_dir()), Vec::<PathBuf>::new());
    // It is gone from the message it was attached to.
    let fetched = app.client.get(&format!("/api/chat/messages/{}", id(&message)), Some(&member)).await;
    assert_eq!(fetched.assert_status(200)["attachments"], json!([]));
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
