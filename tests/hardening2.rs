//! Issue 18, round two: text PostgreSQL cannot store (docs/api.md section 1: bad input is a 4xx,
//! never a 500), lookalike and invisible names (section 2), and who may read `/metrics`
//! (section 8).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_tests::{Reply, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

/// A private channel owned by `owner`, with `member` in it.
async fn private_channel(app: &TestApp, owner: &str) -> String {
    let reply = app.client.post("/api/channels", Some(owner), &json!({"name": "secret", "is_private": true})).await;
    reply.assert_status(201)["id"].as_str().unwrap().to_owned()
}

async fn login_form(app: &TestApp, form: &str) -> Reply {
    app.client
        .send(
            app.client
                .request(Method::POST, "/api/auth/login", None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_owned()),
        )
        .await
}

// ---- Item 5: a NUL byte is the client's error, not the server's ----

#[tokio::test]
async fn a_nul_in_a_path_username_names_nobody_404() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    app.user("bob").await;
    let channel = private_channel(&app, &alice).await;
    for (method, path) in [
        (Method::GET, "/api/users/al%00ice".to_owned()),
        (Method::GET, "/api/users/%00".to_owned()),
        (Method::POST, "/api/channels/dm/b%00b".to_owned()),
        (Method::POST, format!("/api/channels/{channel}/members/b%00b")),
        (Method::POST, format!("/api/channels/{channel}/ban-by-username/b%00b")),
        (Method::POST, format!("/api/channels/{channel}/unban-by-username/b%00b")),
    ] {
        let reply = app.client.send(app.client.request(method.clone(), &path, Some(&alice))).await;
        assert_eq!(reply.status.as_u16(), 404, "{method} {path}: {}", reply.text);
        reply.assert_error(404, "not_found");
    }
    // The same endpoints still find real users.
    app.client.get("/api/users/bob", Some(&alice)).await.assert_status(200);
    app.client.post_empty(&format!("/api/channels/{channel}/members/bob"), Some(&alice)).await.assert_status(200);
}

#[tokio::test]
async fn a_nul_in_a_query_parameter_is_422() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    // A cursor that decodes to text with a NUL in it is not one the server made.
    let nul_cursor = domain::Cursor::encode("a\0").into_string();
    for path in [
        "/api/users?q=al%00".to_owned(),
        "/api/users?q=%00".to_owned(),
        format!("/api/users?after={nul_cursor}"),
        format!("/api/channels?after={nul_cursor}"),
        format!("/api/channels/{channel}/members?after={nul_cursor}"),
        "/api/search/messages?q=hello%00".to_owned(),
        format!("/api/search/messages?q=hello&before={nul_cursor}"),
        format!("/api/chat/channels/{channel}/messages?after={nul_cursor}"),
    ] {
        let reply = app.client.get(&path, Some(&alice)).await;
        assert_eq!(reply.status.as_u16(), 422, "{path}: {}", reply.text);
        reply.assert_error(422, "validation_error");
    }
    app.client.get("/api/users?q=al", Some(&alice)).await.assert_status(200);
}

#[tokio::test]
async fn a_nul_in_the_login_username_is_401_like_an_unknown_user() {
    let app = TestApp::spawn().await;
    app.user("alice").await;
    for body in [
        json!({"username": "al\u{0}ice", "password": "secretpass"}),
        json!({"username": "alice\u{0}", "password": "secretpass"}),
        json!({"username": "alice", "password": "secret\u{0}pass"}),
    ] {
        app.client.post("/api/auth/login", None, &body).await.assert_error(401, "invalid_credentials");
    }
    for form in ["username=al%00ice&password=secretpass", "username=alice&password=secret%00pass"] {
        login_form(&app, form).await.assert_error(401, "invalid_credentials");
    }
    login_form(&app, "username=alice&password=secretpass").await.assert_status(200);
}

#[tokio::test]
async fn a_nul_in_any_text_field_of_a_body_is_422() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let channel = app.create_channel(&alice, "general").await;
    let message = app
        .client
        .post("/api/chat/messages", Some(&alice), &json!({"content": "hello", "channel_id": channel}))
        .await
        .assert_status(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let nul = "x\u{0}y";
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/api/auth/register".into(),
            json!({"username": "carol", "email": "carol@example.com", "password": "secretpass", "display_name": nul}),
        ),
        (
            Method::POST,
            "/api/auth/register".into(),
            json!({"username": "carol", "email": "car\u{0}ol@example.com", "password": "secretpass"}),
        ),
        (Method::PATCH, "/api/users/me".into(), json!({"display_name": nul})),
        (Method::POST, "/api/channels".into(), json!({"name": nul})),
        (Method::POST, "/api/channels".into(), json!({"name": "other", "description": nul})),
        (Method::PATCH, format!("/api/channels/{channel}"), json!({"name": nul})),
        (Method::POST, "/api/chat/messages".into(), json!({"content": "hi", "channel_id": channel, "nonce": nul})),
        (Method::PATCH, format!("/api/chat/messages/{message}"), json!({"content": nul})),
        (Method::POST, format!("/api/chat/messages/{message}/reactions"), json!({"emoji": "\u{0}"})),
    ];
    for (method, path, body) in cases {
        let reply = app.client.send(app.client.request(method.clone(), &path, Some(&alice)).json(&body)).await;
        assert_eq!(reply.status.as_u16(), 422, "{method} {path} {body}: {}", reply.text);
        reply.assert_error(422, "validation_error");
    }
    let reply = app
        .client
        .send(app.client.request(Method::DELETE, &format!("/api/chat/messages/{message}/reactions/%00"), Some(&alice)))
        .await;
    reply.assert_error(422, "validation_error");
    // A file name with a NUL is either refused with the malformed part (multipart headers
    // may not hold one) or stored without it; never a 500.
    let uploaded = app.client.upload(Some(&alice), "re\u{0}port.txt", b"hello".to_vec()).await;
    match uploaded.status.as_u16() {
        201 => assert_eq!(uploaded.body["filename"], "report.txt"),
        _ => uploaded.assert_error(422, "validation_error"),
    }
}

// ---- Item 6: lookalike usernames, invisible characters in names ----

async fn register(app: &TestApp, username: &str, display_name: Option<&str>) -> Reply {
    let mut body = json!({"username": username, "email": format!("{}@example.com", username.to_lowercase()), "password": "secretpass"});
    if let Some(display_name) = display_name {
        body["display_name"] = json!(display_name);
    }
    app.client.post("/api/auth/register", None, &body).await
}

#[tokio::test]
async fn a_username_that_looks_like_a_taken_one_is_taken() {
    let app = TestApp::spawn().await;
    register(&app, "alice", None).await.assert_status(200);
    register(&app, "bob", None).await.assert_status(200);
    // Capital i for l, one for l, zero for o, "rn" for m: each looks like a taken name.
    for lookalike in ["aIice", "a1ice", "AIice", "ALICE", "b0b", "B0B"] {
        register(&app, lookalike, None).await.assert_error(409, "username_taken");
    }
    register(&app, "mary", None).await.assert_status(200);
    register(&app, "rnary", None).await.assert_error(409, "username_taken");
    // Names that merely share letters are fine.
    for distinct in ["alina", "aiice", "bobby"] {
        register(&app, distinct, None).await.assert_status(200);
    }
}

/// Accounts made before the skeleton column existed get their skeleton when a node starts,
/// so they are protected too.
#[tokio::test]
async fn accounts_from_before_the_rule_are_protected_after_a_restart() {
    use diesel_async::RunQueryDsl as _;
    let app = TestApp::spawn().await;
    {
        let mut conn = app.db().await;
        // As an older version of the server stored an account: no skeleton column set.
        diesel::sql_query(
            "INSERT INTO users (id, username, email, display_name, password_hash) \
             VALUES (gen_random_uuid(), 'olduser', 'olduser@example.com', 'Old', 'x')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let restarted = app.spawn_sibling(|_| {}).await;
    register(&restarted, "oIduser", None).await.assert_error(409, "username_taken");
    register(&restarted, "o1duser", None).await.assert_error(409, "username_taken");
    register(&restarted, "newuser", None).await.assert_status(200);
}

#[tokio::test]
async fn display_names_lose_bidi_controls_and_zero_width_characters() {
    let app = TestApp::spawn().await;
    let token =
        register(&app, "alice", Some("\u{202E}Al\u{200B}ice\u{2066}\u{FEFF}")).await.assert_status(200)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(app.client.get("/api/users/me", Some(&token)).await.assert_status(200)["display_name"], "Alice");
    let renamed =
        app.client.patch("/api/users/me", Some(&token), &json!({"display_name": "Bo\u{200D}b\u{200F}"})).await;
    assert_eq!(renamed.assert_status(200)["display_name"], "Bob");
    // Emoji keep the joiners that make them one picture.
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} family";
    let renamed = app.client.patch("/api/users/me", Some(&token), &json!({"display_name": family})).await;
    assert_eq!(renamed.assert_status(200)["display_name"], family);
    // Nothing visible left: as empty as an empty name.
    app.client
        .patch("/api/users/me", Some(&token), &json!({"display_name": "\u{200B}\u{202E}"}))
        .await
        .assert_error(422, "validation_error");
}

#[tokio::test]
async fn uploaded_file_names_lose_bidi_overrides() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    for (raw, stored) in [("\u{202E}exe.txt", "exe.txt"), ("invoice\u{202E}fdp.exe", "invoicefdp.exe")] {
        // Sent raw in `filename="..."` (reqwest would otherwise use `filename*`).
        let part = reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name(raw.to_owned());
        let form = reqwest::multipart::Form::new().percent_encode_noop().part("file", part);
        let reply = app.client.send(app.client.request(Method::POST, "/api/files", Some(&token)).multipart(form)).await;
        assert_eq!(reply.assert_status(201)["filename"], stored, "raw {raw:?}");
    }
}

// ---- Item 9: /metrics is not for everyone ----

const METRICS_TOKEN: &str = "metrics-token-for-the-tests";

#[tokio::test]
async fn with_a_metrics_token_metrics_need_it_as_a_bearer_token() {
    let app = TestApp::spawn_with(|s| s.metrics_token = Some(http_api::config::Secret(METRICS_TOKEN.into()))).await;
    app.client.get("/metrics", None).await.assert_error(401, "not_authenticated");
    app.client.get("/metrics", Some("wrong-token")).await.assert_error(401, "not_authenticated");
    app.client.get("/metrics", Some(&format!("{METRICS_TOKEN}x"))).await.assert_error(401, "not_authenticated");
    // A user's access token is no metrics token.
    let user = app.user("alice").await;
    let refused = app.client.get("/metrics", Some(&user)).await;
    refused.assert_error(401, "not_authenticated");
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let metrics = app.client.get("/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(metrics.status.as_u16(), 200, "{}", metrics.text);
    assert!(metrics.text.contains("http_requests_total"), "{}", metrics.text);
}

#[tokio::test]
async fn with_a_metrics_address_metrics_are_served_there_and_not_on_the_api_port() {
    let app = TestApp::spawn_with(|s| s.metrics_addr = Some("127.0.0.1:0".into())).await;
    let port = app.metrics_port.expect("a metrics listener");
    assert_ne!(port, app.port);
    app.client.get("/metrics", None).await.assert_error(404, "not_found");
    let metrics = app.client.http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.text().await.unwrap().contains("http_requests_total"));
    // Only metrics live there.
    let api = app.client.http.get(format!("http://127.0.0.1:{port}/api/users/me")).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 404);
}

#[tokio::test]
async fn a_metrics_address_and_token_together_need_both() {
    let app = TestApp::spawn_with(|s| {
        s.metrics_addr = Some("127.0.0.1:0".into());
        s.metrics_token = Some(http_api::config::Secret(METRICS_TOKEN.into()));
    })
    .await;
    let url = format!("http://127.0.0.1:{}/metrics", app.metrics_port.unwrap());
    let refused = app.client.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let allowed = app.client.http.get(&url).bearer_auth(METRICS_TOKEN).send().await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
}
