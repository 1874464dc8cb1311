//! docs/api.md sections 2 and 3: registration, login, logout, tokens, users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_tests::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn seed_register_and_login_examples_work_as_shown() {
    let app = TestApp::spawn().await;
    let reply = app
        .client
        .post(
            "/api/auth/register",
            None,
            &json!({"username": "johndoe", "email": "john@example.com", "password": "secretpass", "display_name": "John Doe"}),
        )
        .await;
    let body = reply.assert_status(200);
    assert!(body["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);

    let reply =
        app.client.post("/api/auth/login", None, &json!({"username": "johndoe", "password": "secretpass"})).await;
    let body = reply.assert_status(200);
    assert!(body["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert_eq!(body["token_type"], "bearer");
}

#[tokio::test]
async fn login_accepts_the_oauth2_form() {
    let app = TestApp::spawn().await;
    app.user("johndoe").await;
    let reply = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/login", None)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=password&username=johndoe&password=secretpass"),
        )
        .await;
    assert_eq!(reply.assert_status(200)["token_type"], "bearer");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = TestApp::spawn().await;
    app.user("johndoe").await;
    let wrong =
        app.client.post("/api/auth/login", None, &json!({"username": "johndoe", "password": "wrongpass"})).await;
    let unknown =
        app.client.post("/api/auth/login", None, &json!({"username": "nobody", "password": "secretpass"})).await;
    for reply in [&wrong, &unknown] {
        reply.assert_error(401, "invalid_credentials");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn register_validates_every_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"email": "a@example.com", "password": "secretpass"}), "username"),
        (json!({"username": "ab", "email": "a@example.com", "password": "secretpass"}), "username"),
        (json!({"username": "x".repeat(33), "email": "a@example.com", "password": "secretpass"}), "username"),
        (json!({"username": "bad name", "email": "a@example.com", "password": "secretpass"}), "username"),
        (json!({"username": "alice", "email": "not-an-email", "password": "secretpass"}), "email"),
        (json!({"username": "alice", "email": "a@example.com", "password": "short"}), "password"),
        (json!({"username": "alice", "email": "a@example.com", "password": "p".repeat(129)}), "password"),
        (
            json!({"username": "alice", "email": "a@example.com", "password": "secretpass", "display_name": "   "}),
            "display_name",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "password": "secretpass", "display_name": "d".repeat(65)}),
            "display_name",
        ),
        (json!({"username": 42, "email": "a@example.com", "password": "secretpass"}), "username"),
    ];
    for (body, field) in cases {
        let reply = app.client.post("/api/auth/register", None, &body).await;
        reply.assert_error(422, "validation_error");
        assert_eq!(reply.body["errors"][0]["field"], field, "{body}");
    }
    // Nothing was created by any of them.
    let token = app.user("carol").await;
    let users = app.client.get("/api/users", Some(&token)).await;
    assert_eq!(users.assert_status(200)["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn duplicates_conflict_case_insensitively() {
    let app = TestApp::spawn().await;
    app.user("johndoe").await;
    let reply = app
        .client
        .post(
            "/api/auth/register",
            None,
            &json!({"username": "JohnDoe", "email": "other@example.com", "password": "secretpass"}),
        )
        .await;
    reply.assert_error(409, "username_taken");
    let reply = app
        .client
        .post(
            "/api/auth/register",
            None,
            &json!({"username": "janedoe", "email": "JOHNDOE@example.com", "password": "secretpass"}),
        )
        .await;
    reply.assert_error(409, "email_taken");
}

#[tokio::test]
async fn malformed_bodies_get_400_413_415() {
    let app = TestApp::spawn().await;
    let bad_json = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/register", None)
                .header("content-type", "application/json")
                .body("{\"username\":"),
        )
        .await;
    bad_json.assert_error(400, "invalid_json");
    let wrong_type = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/register", None)
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    wrong_type.assert_error(415, "unsupported_media_type");
    let huge = format!("{{\"username\":\"{}\"}}", "x".repeat(70 * 1024));
    let too_large = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/register", None)
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    too_large.assert_error(413, "payload_too_large");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bomb = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/auth/register", None)
                .header("content-type", "application/json")
                .body(nested),
        )
        .await;
    assert!(bomb.status.is_client_error(), "{}", bomb.text);
}

#[tokio::test]
async fn tokens_missing_invalid_expired_foreign_or_revoked_get_401() {
    let app = TestApp::spawn().await;
    let token = app.user("johndoe").await;

    let missing = app.client.get("/api/users/me", None).await;
    missing.assert_error(401, "not_authenticated");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    app.client.get("/api/users/me", Some("garbage")).await.assert_error(401, "invalid_token");

    let me = app.client.get("/api/users/me", Some(&token)).await;
    let user = domain::User {
        id: me.body["id"].as_str().unwrap().parse().unwrap(),
        username: domain::Username::parse("johndoe").unwrap(),
        email: domain::Email::parse("johndoe@example.com").unwrap(),
        display_name: domain::DisplayName::parse("johndoe").unwrap(),
        created_at: time::OffsetDateTime::now_utc(),
        is_bot: false,
    };
    let ours = auth::SecretKey::new(app.settings.secret_key.clone().unwrap().0.into_bytes()).unwrap();
    let keys = auth::TokenKeys::new(&ours, time::Duration::minutes(30));
    let expired = keys.issue_at(&user, time::OffsetDateTime::now_utc() - time::Duration::hours(2)).unwrap();
    app.client.get("/api/users/me", Some(&expired.access_token)).await.assert_error(401, "token_expired");

    let foreign = auth::TokenKeys::new(&auth::SecretKey::new(vec![b'z'; 40]).unwrap(), time::Duration::minutes(30));
    let forged = foreign.issue(&user).unwrap();
    app.client.get("/api/users/me", Some(&forged.access_token)).await.assert_error(401, "invalid_token");

    app.client.post_empty("/api/auth/logout", Some(&token)).await.assert_status(204);
    app.client.get("/api/users/me", Some(&token)).await.assert_error(401, "token_revoked");
    app.client.post_empty("/api/auth/logout", Some(&token)).await.assert_error(401, "token_revoked");
}

#[tokio::test]
async fn me_shows_email_only_to_yourself() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    for path in ["/api/auth/me", "/api/users/me"] {
        let me = app.client.get(path, Some(&alice)).await;
        let body = me.assert_status(200);
        assert_eq!(body["username"], "alice");
        assert_eq!(body["email"], "alice@example.com");
        assert_eq!(body["online"], false);
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let seen_by_bob = app.client.get("/api/users/ALICE", Some(&bob)).await;
    let body = seen_by_bob.assert_status(200);
    assert_eq!(body["username"], "alice");
    assert!(body.get("email").is_none());
    app.client.get("/api/users/nobody", Some(&bob)).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn users_search_and_pagination_visit_each_once() {
    let app = TestApp::spawn().await;
    let token = app.user("searcher").await;
    for i in 0..7 {
        app.user(&format!("user{i:02}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/users?q=user&limit=3&after={c}"),
            None => "/api/users?q=user&limit=3".to_owned(),
        };
        let page = app.client.get(&path, Some(&token)).await;
        let body = page.assert_status(200).clone();
        seen.extend(body["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("user{i:02}")).collect::<Vec<_>>());
    app.client.get("/api/users?limit=0", Some(&token)).await.assert_error(422, "validation_error");
    app.client.get("/api/users?limit=201", Some(&token)).await.assert_error(422, "validation_error");
    app.client.get("/api/users?limit=abc", Some(&token)).await.assert_error(422, "validation_error");
    app.client.get("/api/users?after=!!!", Some(&token)).await.assert_error(422, "validation_error");
    // LIKE wildcards are matched literally.
    let wildcard = app.client.get("/api/users?q=%25", Some(&token)).await;
    assert_eq!(wildcard.assert_status(200)["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn patch_me_changes_profile_and_guards_credentials() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    let renamed = app.client.patch("/api/users/me", Some(&token), &json!({"display_name": "  Alice A.  "})).await;
    assert_eq!(renamed.assert_status(200)["display_name"], "Alice A.");

    app.client
        .patch("/api/users/me", Some(&token), &json!({"email": "new@example.com"}))
        .await
        .assert_error(422, "validation_error");
    app.client
        .patch("/api/users/me", Some(&token), &json!({"email": "new@example.com", "current_password": "wrongpass"}))
        .await
        .assert_error(403, "forbidden");
    let changed = app
        .client
        .patch(
            "/api/users/me",
            Some(&token),
            &json!({"email": "new@example.com", "password": "newsecret", "current_password": "secretpass"}),
        )
        .await;
    assert_eq!(changed.assert_status(200)["email"], "new@example.com");
    // The password change revoked the old token and handed back a fresh one.
    app.client.get("/api/users/me", Some(&token)).await.assert_error(401, "token_revoked");
    let token = changed.body["access_token"].as_str().unwrap().to_owned();
    app.client
        .post("/api/auth/login", None, &json!({"username": "alice", "password": "secretpass"}))
        .await
        .assert_error(401, "invalid_credentials");
    app.client
        .post("/api/auth/login", None, &json!({"username": "alice", "password": "newsecret"}))
        .await
        .assert_status(200);

    app.user("bob").await;
    app.client
        .patch("/api/users/me", Some(&token), &json!({"email": "BOB@example.com", "current_password": "newsecret"}))
        .await
        .assert_error(409, "email_taken");
}
