//! The binary as an operator runs it: configuration errors, graceful shutdown under load,
//! and logs that never contain a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_tests::TestDatabase;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_chat-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the binary with `env` and a clean environment otherwise.
fn server(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // No `.env` from the developer's tree.
    command.current_dir(std::env::temp_dir());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

#[test]
fn bad_configuration_stops_the_start_with_one_line_naming_the_variable() {
    for (env, variable) in [
        (vec![("SECRET_KEY", "too-short")], "SECRET_KEY"),
        (vec![("PORT", "eighty")], "PORT"),
        (vec![("BCRYPT_COST", "99")], "BCRYPT_COST"),
        (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (vec![("FILE_STORE", "ftp")], "FILE_STORE"),
        (vec![("FILE_STORE", "s3")], "S3_BUCKET"),
        (vec![("FILE_STORE", "s3"), ("S3_BUCKET", "b"), ("S3_PATH_STYLE", "maybe")], "S3_PATH_STYLE"),
        (vec![("FILE_STORE", "s3"), ("S3_BUCKET", "b"), ("S3_ENDPOINT", "minio:9000")], "S3_ENDPOINT"),
    ] {
        let output = server(&env).output().unwrap();
        assert!(!output.status.success(), "{variable}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(variable), "names {variable}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn an_unreachable_database_is_named_not_panicked_about() {
    let output = server(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("DATABASE_CONNECT_ATTEMPTS", "1"),
        ("PORT", &free_port().to_string()),
    ])
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Registers an account on the running binary and returns its access token.
async fn register(http: &reqwest::Client, base: &str, username: &str, email: &str, password: &str) -> String {
    let reply: Value = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": username, "email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().unwrap().to_owned()
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(reply) = client.get(format!("{base}/readyz")).send().await
            && reply.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM during a burst of posts: every post that got a 2xx is stored with its event, and
/// nothing is half-written (each message has exactly its `message` event, seqs gapless). An
/// open WebSocket is closed with 1001 before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_burst_loses_no_acknowledged_post() {
    let database = TestDatabase::create().await;
    let port = free_port().to_string();
    let mut child = server(&[
        ("DATABASE_URL", &database.url),
        ("PORT", &port),
        ("BCRYPT_COST", "4"),
        ("RATE_LIMIT_AUTH_PER_MINUTE", "0"),
        ("RATE_LIMIT_WRITES_PER_SECOND", "0"),
        ("LOG_FORMAT", "json"),
        ("SECRET_KEY", "a-secret-key-long-enough-for-hs256-0123456789"),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Read the output while the server runs: a full pipe would block its logging.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let token = register(&http, &base, "burster", "b@example.com", "supersecretpassword").await;
    let channel: Value = http
        .post(format!("{base}/api/channels"))
        .bearer_auth(&token)
        .json(&json!({"name": "burst"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel_id = channel["id"].as_str().unwrap().to_owned();
    let mut socket =
        chat_client::RawSocket::connect(&format!("ws://127.0.0.1:{port}/api/ws?token={token}")).await.unwrap();
    let ready = socket.next_json_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ready["type"], "ready");

    let mut posters = Vec::new();
    for worker in 0..8 {
        let (http, base, token, channel_id) = (http.clone(), base.clone(), token.clone(), channel_id.clone());
        posters.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let sent = http
                    .post(format!("{base}/api/chat/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("w{worker} m{i}"), "channel_id": channel_id}))
                    .send()
                    .await;
                match sent {
                    Ok(reply) if reply.status().is_success() => {
                        if let Ok(body) = reply.json::<Value>().await {
                            acknowledged.push(body["id"].as_str().unwrap().to_owned());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert_eq!(socket.close_code_within(Duration::from_secs(10)).await, Some(1001), "the socket is told");
    let mut acknowledged = Vec::new();
    for poster in posters {
        acknowledged.extend(poster.await.unwrap());
    }
    let (status, logs) = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        (status, stdout.join().unwrap() + &stderr.join().unwrap())
    })
    .await
    .unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}\n{logs}");
    assert!(!acknowledged.is_empty(), "the burst posted something before the signal");

    // Nothing secret in the logs: not the password, not the token, not the signing key.
    assert!(!logs.contains("supersecretpassword"));
    assert!(!logs.contains(&token));
    assert!(!logs.contains("a-secret-key-long-enough"));
    assert!(logs.contains("\"request_id\""), "JSON request logs: {logs}");

    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let stored: Vec<Row> = diesel::sql_query("SELECT id::text AS id FROM messages").load(&mut conn).await.unwrap();
    let stored: std::collections::HashSet<String> = stored.into_iter().map(|r| r.id).collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged message {id} is missing");
    }
    #[derive(diesel::QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        orphans: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last_seq: i64,
    }
    let check: Check = diesel::sql_query(
        "SELECT \
           (SELECT count(*) FROM messages m WHERE NOT EXISTS \
              (SELECT 1 FROM channel_events e WHERE e.channel_id = m.channel_id AND e.seq = m.seq AND e.kind = 'message')) AS orphans, \
           (SELECT count(*) FROM channel_events e JOIN channels c ON c.id = e.channel_id) AS events, \
           (SELECT max(last_seq) FROM channels) AS last_seq",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(check.orphans, 0, "a message without its event");
    assert_eq!(check.events, check.last_seq, "the event log has a gap");
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Uploads stream to disk: a 48 MiB upload must not raise the server's peak memory by
/// anything near its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_keeps_server_memory_flat() {
    a_large_upload_keeps_memory_flat_with(&[]).await;
}

/// The same through a multipart upload to a real S3-compatible server (docs/api.md section 13):
/// at most one part of the upload is in the server's memory at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_to_s3_keeps_server_memory_flat() {
    let s3 = blackbox_tests::S3Server::start();
    let endpoint = s3.endpoint();
    a_large_upload_keeps_memory_flat_with(&[
        ("FILE_STORE", "s3"),
        ("S3_BUCKET", blackbox_tests::s3::BUCKET),
        ("S3_ENDPOINT", &endpoint),
        ("S3_REGION", blackbox_tests::s3::REGION),
        ("S3_ACCESS_KEY_ID", blackbox_tests::s3::ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", blackbox_tests::s3::SECRET_KEY),
        ("S3_PATH_STYLE", "true"),
    ])
    .await;
    assert_eq!(s3.objects().len(), 1);
}

async fn a_large_upload_keeps_memory_flat_with(store: &[(&str, &str)]) {
    let database = TestDatabase::create().await;
    let port = free_port().to_string();
    let files = std::env::temp_dir().join(format!("chat-upload-{port}"));
    let max_upload = (64 * 1024 * 1024).to_string();
    let mut env = vec![
        ("DATABASE_URL", database.url.as_str()),
        ("PORT", &port),
        ("BCRYPT_COST", "4"),
        ("MAX_UPLOAD_BYTES", &max_upload),
        ("FILE_STORAGE_DIR", files.to_str().unwrap()),
        ("RUST_LOG", "warn"),
    ];
    env.extend_from_slice(store);
    let mut child = server(&env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let token = register(&http, &base, "uploader", "u@example.com", "secretpass").await;
    let before = peak_rss_kib(child.id());

    // Streamed from the client too, in 64 KiB chunks, so the test does not hold it either.
    let size: usize = 48 * 1024 * 1024;
    let chunks = futures_util::stream::iter((0..size / 65_536).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 65_536])));
    let file_part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), size as u64)
        .file_name("big.bin");
    let reply = http
        .post(format!("{base}/api/files"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", file_part))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 201);
    let file: Value = reply.json().await.unwrap();
    assert_eq!(file["size"], size);

    let grown = peak_rss_kib(child.id()).saturating_sub(before);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&files);
    println!("peak RSS grew by {grown} KiB for a {} KiB upload", size / 1024);
    assert!(grown < 16 * 1024, "peak RSS grew by {grown} KiB for a {} KiB upload", size / 1024);
}
