//! Live connections follow the database (docs/api.md section 10): a socket's rights are the
//! database's at each event's seq, revoked tokens lose their sockets, and resume, typing and
//! socket posts obey the same rules as REST. One node here; `live_multinode.rs` covers the
//! same on two nodes through Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use blackbox_tests::TestApp;
use blackbox_tests::ws::WsClient;
use serde_json::{Value, json};

/// Connects and sends a first frame at once, as a resuming client does, so live events are
/// not held back for the resume grace period.
async fn connect_live(app: &TestApp, token: &str) -> WsClient {
    let mut ws = app.connect(token).await;
    ws.send_json(&json!({"type": "ping"})).await;
    ws
}

/// Waits for the close frame and says how long it took.
async fn closed_within(ws: &mut WsClient) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let code = ws.close_code().await;
    (code, started.elapsed())
}

/// Frames until `stop` matches one (included), within the usual wait.
async fn frames_until(ws: &mut WsClient, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let frame = ws.next_json().await;
        let done = stop(&frame);
        out.push(frame);
        if done {
            return out;
        }
    }
}

fn of_channel<'a>(frames: &'a [Value], channel: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["data"]["channel_id"] == channel).collect()
}

#[tokio::test]
async fn logout_closes_that_tokens_sockets_with_4001_and_only_those() {
    let app = TestApp::spawn().await;
    let first = app.user("alice").await;
    let second = app
        .client
        .post("/api/auth/login", None, &json!({"username": "alice", "password": "secretpass"}))
        .await
        .assert_status(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let general = app.create_channel(&first, "general").await;
    let mut revoked = app.connect(&first).await;
    let mut other = app.connect(&second).await;

    app.client.post_empty("/api/auth/logout", Some(&first)).await.assert_status(204);
    let (code, took) = closed_within(&mut revoked).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");

    // The other token's socket lives on and still gets the channel.
    let sent = app.post_message(&second, &general, "still here").await;
    assert_eq!(other.next_of("message").await["data"]["id"], sent["id"]);
    app.client.get("/api/users/me", Some(&first)).await.assert_error(401, "token_revoked");
    assert!(WsClient::connect(&app.ws_url(&format!("/api/ws?token={first}"))).await.is_err());
}

#[tokio::test]
async fn a_socket_closes_with_4001_when_its_token_expires() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    let me = app.client.get("/api/auth/me", Some(&token)).await.assert_status(200).clone();
    let keys = auth::TokenKeys::new(
        &auth::SecretKey::new(app.settings.secret_key.clone().unwrap().0.into_bytes()).unwrap(),
        time::Duration::minutes(30),
    );
    let user = domain::User {
        id: domain::UserId::from_uuid(me["id"].as_str().unwrap().parse().unwrap()),
        username: domain::Username::parse("alice").unwrap(),
        email: domain::Email::parse("alice@example.com").unwrap(),
        display_name: domain::DisplayName::parse("alice").unwrap(),
        created_at: time::OffsetDateTime::now_utc(),
        is_bot: false,
    };
    // Issued as if 29 min 58 s ago: two seconds left.
    let short = keys
        .issue_at(&user, time::OffsetDateTime::now_utc() - time::Duration::minutes(30) + time::Duration::seconds(2))
        .unwrap()
        .access_token;
    let mut ws = app.connect(&short).await;
    let (code, took) = closed_within(&mut ws).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

#[tokio::test]
async fn a_password_change_revokes_every_older_token_and_hands_back_a_fresh_one() {
    let app = TestApp::spawn().await;
    let old = app.user("alice").await;
    let mut old_socket = app.connect(&old).await;
    let reply = app
        .client
        .patch("/api/users/me", Some(&old), &json!({"password": "brand-new-pass", "current_password": "secretpass"}))
        .await;
    let fresh = reply.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["username"], "alice", "the account itself is still the body");

    let (code, took) = closed_within(&mut old_socket).await;
    assert_eq!(code, Some(4001));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    app.client.get("/api/users/me", Some(&old)).await.assert_error(401, "token_revoked");
    app.client.get("/api/users/me", Some(&fresh)).await.assert_status(200);
    let mut fresh_socket = app.connect(&fresh).await;
    fresh_socket.send_json(&json!({"type": "ping"})).await;
    assert_eq!(fresh_socket.next_of("pong").await["type"], "pong");
}

#[tokio::test]
async fn a_banned_member_gets_the_ban_at_its_seq_and_nothing_of_the_channel_after() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    let side = app.create_channel(&alice, "side").await;
    for id in [&general, &side] {
        app.client.post_empty(&format!("/api/channels/{id}/join"), Some(&bob)).await.assert_status(200);
    }
    let mut ws = app.connect(&bob).await;

    app.client
        .post_empty(&format!("/api/channels/{general}/ban-by-username/bob"), Some(&alice))
        .await
        .assert_status(200);
    for i in 0..3 {
        app.post_message(&alice, &general, &format!("after the ban {i}")).await;
    }
    // Posted after the others, on the same node: when it arrives, they would have.
    let sentinel = app.post_message(&alice, &side, "sentinel").await;
    let frames = frames_until(&mut ws, |f| f["data"]["id"] == sentinel["id"]).await;
    let seen = of_channel(&frames, &general);
    assert_eq!(seen.len(), 1, "only the ban: {seen:?}");
    assert_eq!(seen[0]["type"], "member_banned");
    let ban_seq = seen[0]["data"]["seq"].as_i64().unwrap();

    // The socket's rights are REST's: no typing, no posting, and a resume gives only the ban.
    ws.send_json(&json!({"type": "typing", "data": {"channel_id": general}})).await;
    assert_eq!(ws.next_of("error").await["data"]["code"], "not_found");
    ws.send_json(&json!({"type": "message", "data": {"channel_id": general, "content": "let me in", "nonce": "n1"}}))
        .await;
    assert_eq!(ws.next_of("error").await["data"]["code"], "forbidden");
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): 0}}})).await;
    ws.send_json(&json!({"type": "ping"})).await;
    let replayed = frames_until(&mut ws, |f| f["type"] == "pong").await;
    let replayed = of_channel(&replayed, &general);
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["data"]["seq"], ban_seq);
}

#[tokio::test]
async fn a_join_reaches_the_joiners_open_socket_and_the_messages_after_it() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    let mut ws = app.connect(&bob).await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let joined = ws.next_of("member_joined").await;
    assert_eq!(joined["data"]["user"]["username"], "bob");
    let sent = app.post_message(&alice, &general, "welcome").await;
    let got = ws.next_of("message").await;
    assert_eq!(got["data"]["id"], sent["id"]);
    assert_eq!(got["data"]["seq"].as_i64().unwrap(), joined["data"]["seq"].as_i64().unwrap() + 1);
    ws.send_json(&json!({"type": "typing", "data": {"channel_id": general}})).await;
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong", "typing is allowed now: no error before the pong");
}

/// Rounds of a user reconnecting while being banned: whichever wins, the socket receives
/// nothing of the channel after the ban's seq, and a resume from 0 gives nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_while_being_banned_never_leaks_an_event_after_the_ban() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    let side = app.create_channel(&alice, "side").await;
    app.client.post_empty(&format!("/api/channels/{side}/join"), Some(&bob)).await.assert_status(200);
    let ban = format!("/api/channels/{general}/ban-by-username/bob");
    let unban = format!("/api/channels/{general}/unban-by-username/bob");
    for round in 0..1000 {
        app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
        let (ws, banned) = tokio::join!(connect_live(&app, &bob), app.client.post_empty(&ban, Some(&alice)));
        banned.assert_status(200);
        let mut ws = ws;
        let after = app.post_message(&alice, &general, &format!("round {round}")).await;
        let ban_seq = after["seq"].as_i64().unwrap() - 1;
        let sentinel = app.post_message(&alice, &side, &format!("sentinel {round}")).await;
        let frames = frames_until(&mut ws, |f| f["data"]["id"] == sentinel["id"]).await;
        for frame in of_channel(&frames, &general) {
            assert!(frame["data"]["seq"].as_i64().unwrap() <= ban_seq, "round {round}: leaked {frame}");
        }
        ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): 0}}})).await;
        ws.send_json(&json!({"type": "ping"})).await;
        let replayed = frames_until(&mut ws, |f| f["type"] == "pong").await;
        for frame in of_channel(&replayed, &general) {
            assert!(frame["data"]["seq"].as_i64().unwrap() <= ban_seq, "round {round}: resume leaked {frame}");
        }
        app.client.post_empty(&unban, Some(&alice)).await.assert_status(200);
    }
}

/// A join racing a connect: whichever wins, the joiner's socket receives the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_racing_a_connect_still_delivers_the_next_message() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    for round in 0..200 {
        let id = app.create_channel(&alice, &format!("room {round}")).await;
        let join = format!("/api/channels/{id}/join");
        let (ws, joined) = tokio::join!(connect_live(&app, &carol), app.client.post_empty(&join, Some(&carol)));
        joined.assert_status(200);
        let mut ws = ws;
        let sent = app.post_message(&alice, &id, "hello").await;
        let frames = frames_until(&mut ws, |f| f["data"]["id"] == sent["id"]).await;
        assert!(frames.iter().all(|f| f["data"]["channel_id"] == id || f["data"]["channel_id"].is_null()));
    }
}

#[tokio::test]
async fn a_reconnecting_client_learns_that_its_channel_was_deleted() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let last = app.post_message(&alice, &general, "before").await["seq"].as_i64().unwrap();
    app.client.delete(&format!("/api/channels/{general}"), Some(&alice)).await.assert_status(204);

    let mut ws = app.connect(&bob).await;
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): last}}})).await;
    let deleted = ws.next_json().await;
    assert_eq!(deleted["type"], "channel_deleted", "{deleted}");
    assert_eq!(deleted["data"]["channel_id"], general);
}

#[tokio::test]
async fn deleting_a_file_updates_the_messages_that_showed_it() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let file = app.client.upload(Some(&alice), "notes.txt", b"hello".to_vec()).await.assert_status(201)["id"].clone();
    let sent = app
        .client
        .post(
            "/api/chat/messages",
            Some(&alice),
            &json!({"content": "see", "channel_id": general, "attachment_ids": [file]}),
        )
        .await
        .assert_status(201)
        .clone();
    let mut ws = app.connect(&alice).await;
    app.client.delete(&format!("/api/files/{}", file.as_str().unwrap()), Some(&alice)).await.assert_status(204);
    let updated = ws.next_of("message_updated").await;
    assert_eq!(updated["data"]["message"]["id"], sent["id"]);
    assert_eq!(updated["data"]["message"]["attachments"], json!([]));
    assert_eq!(updated["data"]["seq"].as_i64().unwrap(), sent["seq"].as_i64().unwrap() + 1);
}

#[tokio::test]
async fn a_client_over_the_frame_rate_is_closed_after_twenty_refusals() {
    let app = TestApp::spawn_with(|s| s.rate_limit_writes_per_second = 1).await;
    let alice = app.user("alice").await;
    let mut ws = app.connect(&alice).await;
    for _ in 0..40 {
        ws.send_json(&json!({"type": "ping"})).await;
    }
    let mut refused = 0;
    loop {
        match ws.next_json_within(Duration::from_secs(5)).await {
            Some(frame) if frame["type"] == "error" => {
                assert_eq!(frame["data"]["code"], "rate_limited");
                refused += 1;
            }
            Some(_) => {}
            None => break,
        }
    }
    // Eleven used to close it (each refusal counted twice); a frame let through by the
    // refilling limiter may start the count again, so at least twenty.
    assert!(refused >= 20, "closed after {refused} refusals");
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_whatever_the_address() {
    let app = TestApp::spawn_with(|s| {
        s.login_failures_per_account = 10;
        s.trusted_proxies = Some("127.0.0.1".into());
    })
    .await;
    app.user("alice").await;
    app.user("bob").await;
    let login = |user: &'static str, password: &'static str, address: String| {
        let client = app.client.clone();
        async move {
            client
                .send(
                    client
                        .request(reqwest::Method::POST, "/api/auth/login", None)
                        .header("X-Forwarded-For", address)
                        .json(&json!({"username": user, "password": password})),
                )
                .await
        }
    };
    for i in 0..10 {
        login("ALICE", "wrong-guess", format!("10.0.0.{i}")).await.assert_error(401, "invalid_credentials");
    }
    let locked = login("alice", "secretpass", "10.0.1.1".into()).await;
    locked.assert_error(429, "rate_limited");
    let retry_after: u64 = locked.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "Retry-After {retry_after}");
    // Another account is not affected.
    login("bob", "secretpass", "10.0.0.1".into()).await.assert_status(200);

    // Wrong current passwords count too.
    let bob = app.client.post("/api/auth/login", None, &json!({"username": "bob", "password": "secretpass"})).await;
    let bob = bob.body["access_token"].as_str().unwrap().to_owned();
    for _ in 0..10 {
        app.client
            .patch("/api/users/me", Some(&bob), &json!({"password": "another-pass", "current_password": "guess"}))
            .await
            .assert_error(403, "forbidden");
    }
    app.client
        .patch("/api/users/me", Some(&bob), &json!({"password": "another-pass", "current_password": "secretpass"}))
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn passwords_over_72_bytes_are_refused_rather_than_truncated() {
    let app = TestApp::spawn().await;
    let register = |password: String| {
        let client = app.client.clone();
        async move {
            client
                .post(
                    "/api/auth/register",
                    None,
                    &json!({"username": "alice", "email": "a@example.com", "password": password}),
                )
                .await
        }
    };
    let reply = register("é".repeat(37)).await;
    reply.assert_error(422, "validation_error");
    assert_eq!(reply.body["errors"][0]["field"], "password");
    register("é".repeat(36)).await.assert_status(200);
}

/// A client that resumes in a loop is refused once its user's replay budget is spent, on
/// every connection of that user; other users are not affected.
#[tokio::test]
async fn resuming_in_a_loop_is_refused_once_the_replay_budget_is_spent() {
    let app = TestApp::spawn_with(|s| s.resume_budget_bytes_per_minute = 64 * 1024).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let long = "x".repeat(3_000);
    for _ in 0..30 {
        app.post_message(&alice, &general, &long).await;
    }
    let resume = json!({"type": "resume", "data": {"channels": {general.clone(): 0}}});
    let mut first = app.connect(&alice).await;
    first.send_json(&resume).await;
    first.send_json(&json!({"type": "ping"})).await;
    let replayed = frames_until(&mut first, |f| f["type"] == "pong").await;
    assert_eq!(replayed.iter().filter(|f| f["type"] == "message").count(), 30, "the first resume is served");

    // About 90 KB replayed of 64 KiB a minute: the next resume waits, on any connection.
    let mut second = app.connect(&alice).await;
    for ws in [&mut first, &mut second] {
        ws.send_json(&resume).await;
        ws.send_json(&json!({"type": "ping"})).await;
        let frames = frames_until(ws, |f| f["type"] == "pong").await;
        assert_eq!(frames.iter().filter(|f| f["type"] == "message").count(), 0, "{frames:?}");
        let refused = frames.iter().find(|f| f["type"] == "error").expect("an error frame");
        assert_eq!(refused["data"]["code"], "rate_limited");
    }
    let mut other = app.connect(&bob).await;
    other.send_json(&resume).await;
    other.send_json(&json!({"type": "ping"})).await;
    let frames = frames_until(&mut other, |f| f["type"] == "pong").await;
    assert_eq!(frames.iter().filter(|f| f["type"] == "message").count(), 30, "bob has a budget of his own");
}

/// Issue 18: refused resumes count towards the twenty refusals in a row that close a
/// connection with 1008, like any other refused frame. (A resume used to reset the count
/// before the budget refused it, so a loop of refused resumes was answered forever: the
/// abuse benchmark saw 18,000 refusals a second on one socket.)
#[tokio::test]
async fn a_client_resuming_past_its_budget_is_closed_after_twenty_refusals() {
    let app = TestApp::spawn_with(|s| s.resume_budget_bytes_per_minute = 16 * 1024).await;
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let long = "x".repeat(3_000);
    for _ in 0..10 {
        app.post_message(&alice, &general, &long).await;
    }
    let resume = json!({"type": "resume", "data": {"channels": {general.clone(): 0}}});
    let mut ws = app.connect(&alice).await;
    for _ in 0..40 {
        ws.send_json(&resume).await;
    }
    let mut refused = 0;
    while refused < 20 {
        let frame = ws.next_json().await;
        if frame["type"] == "error" {
            assert_eq!(frame["data"]["code"], "rate_limited");
            refused += 1;
        }
    }
    assert_eq!(ws.close_code().await, Some(1008), "the twenty-first refusal closes the connection");
}
