//! docs/api.md section 12: personal API tokens and bot accounts, over HTTP and WebSocket, on
//! one node and across two nodes through Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use blackbox_tests::TestApp;
use serde_json::{Value, json};

/// Creates an API token as the access token's user, expecting 201; returns the whole body.
async fn create_token(app: &TestApp, token: &str, body: &Value) -> Value {
    app.client.post("/api/users/me/tokens", Some(token), body).await.assert_status(201).clone()
}

/// Creates a bot as the token's user, expecting 201; returns `(bot username, bot token)`.
async fn create_bot(app: &TestApp, owner: &str, username: &str) -> (Value, String) {
    let body =
        app.client.post("/api/bots", Some(owner), &json!({"username": username})).await.assert_status(201).clone();
    let token = body["token"].as_str().unwrap().to_owned();
    (body["user"].clone(), token)
}

fn redis(namespace: &str) -> impl FnOnce(&mut http_api::Settings) {
    let namespace = namespace.to_owned();
    move |s| {
        s.redis_url = Some(http_api::config::Secret("redis://127.0.0.1:6379".into()));
        s.redis_namespace = namespace;
    }
}

/// Two nodes sharing a database and a Redis namespace.
async fn two_nodes() -> (TestApp, TestApp) {
    let namespace = format!("integrations-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis(&namespace)).await;
    let b = a.spawn_sibling(redis(&namespace)).await;
    (a, b)
}

/// Waits for the socket's close code and says how long it took.
async fn closed_within(socket: &mut blackbox_tests::ws::WsClient) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let code = socket.close_code().await;
    (code, started.elapsed())
}

#[tokio::test]
async fn an_api_token_is_shown_once_and_acts_as_its_user_over_rest_and_websocket() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let created = create_token(&app, &alice, &json!({"name": "  deploy script ", "expires_in_days": 30})).await;
    let secret = created["token"].as_str().unwrap();
    assert!(secret.starts_with("chat_pat_"), "{created}");
    assert_eq!(created["name"], "deploy script");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(created["last_used_at"].is_null());

    let me = app.client.get("/api/users/me", Some(secret)).await.assert_status(200).clone();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["is_bot"], false);

    // The listing never shows a secret again.
    let listed = app.client.get("/api/users/me/tokens", Some(&alice)).await.assert_status(200).clone();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], created["id"]);
    assert!(listed["items"][0].get("token").is_none(), "{listed}");
    assert!(!listed.to_string().contains(secret));

    // It posts like its user, and opens a WebSocket with ?token= like an access token.
    let general = app.create_channel(&alice, "general").await;
    let mut socket = app.connect(secret).await;
    let message = app.post_message(secret, &general, "from a script").await;
    assert_eq!(message["user"]["username"], "alice");
    let frame = socket.next_of("message").await;
    assert_eq!(frame["data"]["id"], message["id"]);
    assert_eq!(frame["data"]["seq"], message["seq"]);
    let as_alice = blackbox_tests::ws::WsClient::connect(&app.ws_url(&format!("/api/ws/alice?token={secret}"))).await;
    assert!(as_alice.is_ok());
}

#[tokio::test]
async fn api_token_use_is_recorded_in_last_used_at() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let created = create_token(&app, &alice, &json!({"name": "ci"})).await;
    assert!(created["expires_at"].is_null(), "no expires_in_days: never expires");
    app.client.get("/api/users/me", Some(created["token"].as_str().unwrap())).await.assert_status(200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = app.client.get("/api/users/me/tokens", Some(&alice)).await;
        if listed.body["items"][0]["last_used_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at was never set: {}", listed.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn api_token_requests_that_break_the_rules_get_documented_errors() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(65)}), "name"),
        (json!({"name": "ok", "expires_in_days": 0}), "expires_in_days"),
        (json!({"name": "ok", "expires_in_days": 3651}), "expires_in_days"),
        (json!({"name": "ok", "expires_in_days": "soon"}), "expires_in_days"),
    ] {
        let reply = app.client.post("/api/users/me/tokens", Some(&alice), &body).await;
        reply.assert_error(422, "validation_error");
        assert_eq!(reply.body["errors"][0]["field"], field, "{body}: {}", reply.text);
    }
    app.client.get("/api/users/me/tokens?limit=0", Some(&alice)).await.assert_error(422, "validation_error");
    app.client.get("/api/users/me/tokens?after=nonsense", Some(&alice)).await.assert_error(422, "validation_error");
    app.client.get("/api/users/me/tokens", None).await.assert_error(401, "not_authenticated");

    // Someone else's token, an unknown id and a malformed one are all "not yours": 404.
    let bobs = create_token(&app, &bob, &json!({"name": "bob's"})).await;
    let id = bobs["id"].as_str().unwrap();
    app.client.delete(&format!("/api/users/me/tokens/{id}"), Some(&alice)).await.assert_error(404, "not_found");
    let unknown = uuid::Uuid::now_v7();
    app.client.delete(&format!("/api/users/me/tokens/{unknown}"), Some(&alice)).await.assert_error(404, "not_found");
    app.client.delete("/api/users/me/tokens/not-a-uuid", Some(&alice)).await.assert_error(404, "not_found");
    app.client.get("/api/users/me", Some(bobs["token"].as_str().unwrap())).await.assert_status(200);

    // A made-up token of the right shape is no token.
    app.client.get("/api/users/me", Some("chat_pat_madeup")).await.assert_error(401, "invalid_token");
    let ws = blackbox_tests::ws::WsClient::connect(&app.ws_url("/api/ws?token=chat_pat_madeup")).await;
    assert!(ws.is_err(), "the handshake refuses an unknown API token");
}

#[tokio::test]
async fn tokens_are_paged_oldest_first() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    for n in 0..3 {
        create_token(&app, &alice, &json!({"name": format!("t{n}")})).await;
    }
    let first = app.client.get("/api/users/me/tokens?limit=2", Some(&alice)).await.assert_status(200).clone();
    assert_eq!(first["items"][0]["name"], "t0");
    assert_eq!(first["items"][1]["name"], "t1");
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest =
        app.client.get(&format!("/api/users/me/tokens?after={cursor}"), Some(&alice)).await.assert_status(200).clone();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["name"], "t2");
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn an_expired_api_token_is_refused() {
    use diesel_async::RunQueryDsl as _;
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let created = create_token(&app, &alice, &json!({"name": "short", "expires_in_days": 1})).await;
    let mut db = app.db().await;
    diesel::sql_query("UPDATE api_tokens SET expires_at = now() - interval '1 second'").execute(&mut db).await.unwrap();
    app.client.get("/api/users/me", Some(created["token"].as_str().unwrap())).await.assert_error(401, "token_expired");
}

#[tokio::test]
async fn logging_out_with_an_api_token_revokes_it() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let created = create_token(&app, &alice, &json!({"name": "ci"})).await;
    let secret = created["token"].as_str().unwrap();
    app.client.post_empty("/api/auth/logout", Some(secret)).await.assert_status(204);
    assert_eq!(app.client.get("/api/users/me", Some(secret)).await.status, 401);
    let listed = app.client.get("/api/users/me/tokens", Some(&alice)).await.assert_status(200).clone();
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_api_token_closes_its_sockets_on_every_node_within_a_second() {
    let (a, b) = two_nodes().await;
    let alice = a.user("alice").await;
    let created = create_token(&a, &alice, &json!({"name": "ci"})).await;
    let secret = created["token"].as_str().unwrap();
    let mut on_a = a.connect(secret).await;
    let mut on_b = b.connect(secret).await;
    // Alice's own session is untouched by revoking one of her API tokens.
    let mut session = b.connect(&alice).await;
    let id = created["id"].as_str().unwrap();
    a.client.delete(&format!("/api/users/me/tokens/{id}"), Some(&alice)).await.assert_status(204);
    let (code, took) = closed_within(&mut on_a).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(1), "node a closed after {took:?}");
    let (code, took) = closed_within(&mut on_b).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(1), "node b closed after {took:?}");
    // b had the token in its cache (the socket's handshake put it there): the revocation
    // swept it out, and the database no longer has it.
    for node in [&a, &b] {
        let reply = node.client.get("/api/users/me", Some(secret)).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert!(["token_revoked", "invalid_token"].contains(&reply.body["code"].as_str().unwrap()), "{}", reply.text);
    }
    session.send_json(&json!({"type": "ping"})).await;
    assert_eq!(session.next_of("pong").await["type"], "pong");
    app_sees_token_gone(&a, &alice).await;
}

async fn app_sees_token_gone(app: &TestApp, token: &str) {
    let listed = app.client.get("/api/users/me/tokens", Some(token)).await.assert_status(200).clone();
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
}

#[tokio::test]
async fn a_bot_is_a_user_with_is_bot_that_signs_in_only_with_its_token() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let reply = app
        .client
        .post("/api/bots", Some(&alice), &json!({"username": "deploybot", "display_name": "Deploy Bot"}))
        .await;
    let body = reply.assert_status(201);
    assert_eq!(body["user"]["username"], "deploybot");
    assert_eq!(body["user"]["display_name"], "Deploy Bot");
    assert_eq!(body["user"]["is_bot"], true);
    assert!(body["user"].get("email").is_none(), "a bot's address is nobody's business: {body}");
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("chat_pat_"));

    let me = app.client.get("/api/users/me", Some(token)).await.assert_status(200).clone();
    assert_eq!(me["username"], "deploybot");
    assert_eq!(me["is_bot"], true);
    let public = app.client.get("/api/users/deploybot", Some(&alice)).await.assert_status(200).clone();
    assert_eq!(public["is_bot"], true);
    let person = app.client.get("/api/users/alice", Some(token)).await.assert_status(200).clone();
    assert_eq!(person["is_bot"], false);

    // No password opens it, not even the one its stored hash could be mistaken for.
    for password in ["!", "secretpass", ""] {
        let reply =
            app.client.post("/api/auth/login", None, &json!({"username": "deploybot", "password": password})).await;
        reply.assert_error(401, "invalid_credentials");
    }

    // The owner's list has it; another person's has not.
    let listed = app.client.get("/api/bots", Some(&alice)).await.assert_status(200).clone();
    assert_eq!(listed["items"][0]["username"], "deploybot");
    let bob = app.user("bob").await;
    let listed = app.client.get("/api/bots", Some(&bob)).await.assert_status(200).clone();
    assert!(listed["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bot_requests_that_break_the_rules_get_documented_errors() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.client.post("/api/bots", Some(&alice), &json!({"username": "bob"})).await.assert_error(409, "username_taken");
    app.client.post("/api/bots", Some(&alice), &json!({"username": "b0b"})).await.assert_error(409, "username_taken");
    app.client.post("/api/bots", Some(&alice), &json!({"username": "x"})).await.assert_error(422, "validation_error");
    app.client.post("/api/bots", Some(&alice), &json!({})).await.assert_error(422, "validation_error");
    app.client
        .post("/api/bots", Some(&alice), &json!({"username": "fine", "display_name": "   "}))
        .await
        .assert_error(422, "validation_error");
    app.client.post("/api/bots", None, &json!({"username": "anon"})).await.assert_error(401, "not_authenticated");

    let (_, bot) = create_bot(&app, &alice, "helper").await;
    // Only its owner manages it; to anyone else it does not exist.
    app.client.post_empty("/api/bots/helper/token", Some(&bob)).await.assert_error(404, "not_found");
    app.client.delete("/api/bots/helper", Some(&bob)).await.assert_error(404, "not_found");
    // A person is no bot.
    app.client.post_empty("/api/bots/bob/token", Some(&bob)).await.assert_error(404, "not_found");
    app.client.delete("/api/bots/no%00such", Some(&alice)).await.assert_error(404, "not_found");
    // A bot cannot make bots.
    app.client.post("/api/bots", Some(&bot), &json!({"username": "minion"})).await.assert_error(403, "forbidden");
}

#[tokio::test]
async fn a_bot_joins_channels_and_posts_like_a_user_and_members_see_it_live() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let (_, bot) = create_bot(&app, &alice, "echobot").await;
    let mut alice_socket = app.connect(&alice).await;
    let mut bot_socket = app.connect(&bot).await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bot)).await.assert_status(200);
    assert_eq!(alice_socket.next_of("member_joined").await["data"]["user"]["username"], "echobot");
    app.post_message(&alice, &general, "!ping").await;
    let heard = bot_socket.next_of("message").await;
    assert_eq!(heard["data"]["content"], "!ping");
    let answer = app.post_message(&bot, &general, "pong").await;
    let frame = alice_socket.next_of("message").await;
    let frame = if frame["data"]["content"] == "!ping" { alice_socket.next_of("message").await } else { frame };
    assert_eq!(frame["data"]["id"], answer["id"]);
    assert_eq!(frame["data"]["user"]["username"], "echobot");
    assert_eq!(frame["data"]["seq"], answer["seq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_bot_token_revokes_the_old_one_and_closes_its_sockets_on_every_node() {
    let (a, b) = two_nodes().await;
    let alice = a.user("alice").await;
    let (_, old) = create_bot(&a, &alice, "rotor").await;
    let mut on_a = a.connect(&old).await;
    let mut on_b = b.connect(&old).await;
    let body = a.client.post_empty("/api/bots/rotor/token", Some(&alice)).await.assert_status(200).clone();
    let new = body["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(body["user"]["username"], "rotor");
    for (node, socket) in [("a", &mut on_a), ("b", &mut on_b)] {
        let (code, took) = closed_within(socket).await;
        assert_eq!(code, Some(4001), "node {node}");
        assert!(took < Duration::from_secs(1), "node {node} closed after {took:?}");
    }
    assert_eq!(b.client.get("/api/users/me", Some(&old)).await.status, 401);
    b.client.get("/api/users/me", Some(new)).await.assert_status(200);
    b.connect(new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bot_closes_its_sockets_everywhere_and_it_leaves_its_channels() {
    let (a, b) = two_nodes().await;
    let alice = a.user("alice").await;
    let general = a.create_channel(&alice, "general").await;
    let (_, bot) = create_bot(&a, &alice, "doomed").await;
    a.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bot)).await.assert_status(200);
    let posted = a.post_message(&bot, &general, "last words").await;
    let mut bot_on_b = b.connect(&bot).await;
    let mut alice_on_b = b.connect(&alice).await;

    a.client.delete("/api/bots/doomed", Some(&alice)).await.assert_status(204);
    let (code, took) = closed_within(&mut bot_on_b).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    let left = alice_on_b.next_of("member_left").await;
    assert_eq!(left["data"]["user"]["username"], "doomed");
    assert_eq!(left["data"]["channel_id"], general.as_str());

    assert_eq!(b.client.get("/api/users/me", Some(&bot)).await.status, 401);
    assert!(blackbox_tests::ws::WsClient::connect(&b.ws_url(&format!("/api/ws?token={bot}"))).await.is_err());
    let listed = a.client.get("/api/bots", Some(&alice)).await.assert_status(200).clone();
    assert!(listed["items"].as_array().unwrap().is_empty());
    a.client.delete("/api/bots/doomed", Some(&alice)).await.assert_error(404, "not_found");
    // What it said stays, under its name.
    let kept = a.client.get(&format!("/api/chat/messages/{}", posted["id"].as_str().unwrap()), Some(&alice)).await;
    assert_eq!(kept.assert_status(200)["user"]["username"], "doomed");
}

#[tokio::test]
async fn a_password_change_revokes_api_tokens_made_before_it() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let created = create_token(&app, &alice, &json!({"name": "ci"})).await;
    let secret = created["token"].as_str().unwrap();
    let mut socket = app.connect(secret).await;
    let changed = app
        .client
        .patch("/api/users/me", Some(&alice), &json!({"password": "newsecretpass", "current_password": "secretpass"}))
        .await
        .assert_status(200)
        .clone();
    let (code, took) = closed_within(&mut socket).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(app.client.get("/api/users/me", Some(secret)).await.status, 401);
    // A token made after the change works.
    let fresh = changed["access_token"].as_str().unwrap();
    let after = create_token(&app, fresh, &json!({"name": "after"})).await;
    app.client.get("/api/users/me", Some(after["token"].as_str().unwrap())).await.assert_status(200);
}
