//! docs/api.md sections 1 and 8 under abuse: rate limits, hostile input, forged tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_tests::TestApp;
use reqwest::Method;
use serde_json::json;

fn login_body() -> serde_json::Value {
    json!({"username": "alice", "password": "wrongpass"})
}

#[tokio::test]
async fn logins_are_rate_limited_per_ip_with_retry_after() {
    let app = TestApp::spawn_with(|s| s.rate_limit_auth_per_minute = 3).await;
    for _ in 0..3 {
        app.client.post("/api/auth/login", None, &login_body()).await.assert_error(401, "invalid_credentials");
    }
    let limited = app.client.post("/api/auth/login", None, &login_body()).await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(limited.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert!(limited.header("x-ratelimit-reset").is_some());
    // X-Forwarded-For is not believed from an untrusted peer.
    let spoofed = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/login", None)
                .header("x-forwarded-for", "203.0.113.9")
                .json(&login_body()),
        )
        .await;
    spoofed.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_ip_has_its_own_budget() {
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_auth_per_minute = 2;
        s.trusted_proxies = Some("127.0.0.1".into());
    })
    .await;
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..2 {
            let reply = app
                .client
                .send(
                    app.client
                        .request(Method::POST, "/api/auth/login", None)
                        .header("x-forwarded-for", client)
                        .json(&login_body()),
                )
                .await;
            reply.assert_error(401, "invalid_credentials");
        }
    }
    let third = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/login", None)
                .header("x-forwarded-for", "203.0.113.1")
                .json(&login_body()),
        )
        .await;
    third.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn posting_is_rate_limited_per_user_and_nothing_refused_is_stored() {
    let app = TestApp::spawn_with(|s| s.rate_limit_writes_per_second = 1).await;
    let alice = app.user("alice").await;
    let channel = app.client.post("/api/channels", Some(&alice), &json!({"name": "general"})).await.body["id"].clone();
    let mut created = 0;
    let mut limited = 0;
    for i in 0..6 {
        let reply = app
            .client
            .post("/api/chat/messages", Some(&alice), &json!({"content": format!("m{i}"), "channel_id": channel}))
            .await;
        match reply.status.as_u16() {
            201 => created += 1,
            429 => {
                reply.assert_error(429, "rate_limited");
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert!(limited > 0, "six posts at once exceed one per second with a burst of two");
    let history =
        app.client.get(&format!("/api/chat/channels/{}/messages", channel.as_str().unwrap()), Some(&alice)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), created);
}

#[tokio::test]
async fn hostile_text_is_stored_verbatim_or_refused_never_executed() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let channel = app.client.post("/api/channels", Some(&alice), &json!({"name": "general"})).await.body["id"].clone();
    let sql = "'); DROP TABLE messages; --";
    let stored =
        app.client.post("/api/chat/messages", Some(&alice), &json!({"content": sql, "channel_id": channel})).await;
    assert_eq!(stored.assert_status(201)["content"], sql);
    let found = app.client.get(&format!("/api/users?q={}", urlencode("'; DROP TABLE users; --")), Some(&alice)).await;
    assert_eq!(found.assert_status(200)["items"], json!([]));
    app.client
        .post("/api/chat/messages", Some(&alice), &json!({"content": "nul\u{0}byte", "channel_id": channel}))
        .await
        .assert_error(422, "validation_error");
    app.client
        .post(
            "/api/auth/register",
            None,
            &json!({"username": "nul\u{0}user", "email": "n@example.com", "password": "secretpass"}),
        )
        .await
        .assert_error(422, "validation_error");
    let invalid_utf8 = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/chat/messages", Some(&alice))
                .header("content-type", "application/json")
                .body(b"{\"content\": \"\xff\xfe\", \"channel_id\": \"x\"}".to_vec()),
        )
        .await;
    invalid_utf8.assert_error(400, "invalid_json");
    let history =
        app.client.get(&format!("/api/chat/channels/{}/messages", channel.as_str().unwrap()), Some(&alice)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1, "nothing refused was stored");
}

fn urlencode(raw: &str) -> String {
    raw.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn absurd_query_values_are_422_and_unknown_parameters_are_ignored() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    for query in ["limit=99999999999999999999999", "limit=-1", "limit=1e3", "limit="] {
        app.client.get(&format!("/api/users?{query}"), Some(&alice)).await.assert_error(422, "validation_error");
    }
    app.client.get("/api/users?whatever=1&limit=5", Some(&alice)).await.assert_status(200);
}

#[tokio::test]
async fn forged_tokens_and_deleted_accounts_are_refused() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    let payload = token.split('.').nth(1).unwrap();
    // alg none: header {"alg":"none","typ":"JWT"}, the real payload, no signature.
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    app.client.get("/api/users/me", Some(&none)).await.assert_error(401, "invalid_token");
    // The payload edited, the signature kept.
    let mut tampered: Vec<&str> = token.split('.').collect();
    let other_payload = "eyJzdWIiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAifQ";
    tampered[1] = other_payload;
    app.client.get("/api/users/me", Some(&tampered.join("."))).await.assert_error(401, "invalid_token");

    {
        use diesel_async::RunQueryDsl as _;
        let mut conn = app.db().await;
        diesel::sql_query("DELETE FROM users WHERE username = 'alice'").execute(&mut conn).await.unwrap();
    }
    app.client.get("/api/users/me", Some(&token)).await.assert_error(401, "invalid_token");
    app.client.post("/api/channels", Some(&token), &json!({"name": "ghost"})).await.assert_error(401, "invalid_token");
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/api/nope"] {
        let reply = app.client.get(path, None).await;
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
    }
}

/// Slowloris: a body trickled in (or never finished) is cut off with 408, and headers that
/// never end are dropped by the server's request timeout.
#[tokio::test]
async fn slow_bodies_and_endless_headers_are_cut_off() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let app = TestApp::spawn_with(|s| s.body_timeout_seconds = 1).await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    slow.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut endless = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    endless.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), endless.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept a never-ending request open");
}

/// Issue 18: with one stolen token, a flood of wrong `current_password`s must not starve
/// other people's logins. bcrypt runs on a pool of one permit per core; the guesses at one
/// account queue behind each other (one bcrypt at a time) and stop at the per-account
/// limit, so Bob's login waits behind at most one of them. Before, all 200 were hashed and
/// Bob's login queued behind every one (seconds at this cost).
#[tokio::test]
async fn a_flood_of_guesses_at_one_account_does_not_starve_other_logins() {
    let app = TestApp::spawn_with(|s| s.bcrypt_cost = 10).await;
    let alice = app.user("alice").await;
    app.user("bob").await;
    let bob_login = || async {
        let started = std::time::Instant::now();
        let reply =
            app.client.post("/api/auth/login", None, &json!({"username": "bob", "password": "secretpass"})).await;
        reply.assert_status(200);
        started.elapsed()
    };
    let alone = bob_login().await;

    let flood: Vec<_> = (0..200)
        .map(|n| {
            let (client, token) = (app.client.clone(), alice.clone());
            tokio::spawn(async move {
                let guess = json!({"password": "anewpassword", "current_password": format!("guess{n}")});
                client.patch("/api/users/me", Some(&token), &guess).await.status.as_u16()
            })
        })
        .collect();
    // Give the flood a head start: the point is that it is already queued when Bob comes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let during = bob_login().await;

    let mut statuses = Vec::new();
    for guess in flood {
        statuses.push(guess.await.unwrap());
    }
    assert!(
        during < alone * 4 + std::time::Duration::from_secs(1),
        "Bob's login took {during:?} during the flood, {alone:?} without it"
    );
    let hashed = statuses.iter().filter(|&&s| s == 403).count();
    assert!(statuses.iter().all(|&s| s == 403 || s == 429), "{statuses:?}");
    assert!(hashed <= 10, "{hashed} guesses were hashed; the account allows 10 failures");
}
