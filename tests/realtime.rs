//! docs/websocket.md: the WebSocket protocol and its delivery guarantees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use blackbox_tests::TestApp;
use blackbox_tests::ws::WsClient;
use serde_json::{Value, json};

async fn channel(app: &TestApp, owner: &str, name: &str, members: &[&str]) -> String {
    let reply = app.client.post("/api/channels", Some(owner), &json!({"name": name})).await;
    let id = reply.assert_status(201)["id"].as_str().unwrap().to_owned();
    for token in members {
        app.client.post_empty(&format!("/api/channels/{id}/join"), Some(token)).await.assert_status(200);
    }
    id
}

/// Collects `n` message frames of `channel`, skipping other types.
async fn messages(ws: &mut WsClient, channel: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = ws.next_json().await;
        if frame["type"] == "message" && frame["data"]["channel_id"] == channel {
            out.push(frame["data"].clone());
        }
    }
    out
}

fn handshake_status(error: chat_client::Error) -> u16 {
    match error {
        chat_client::Error::Refused(status) => status,
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn seed_websocket_example_receives_messages_as_shown() {
    let app = TestApp::spawn().await;
    let token = app.client.register("johndoe").await;
    app.client.patch("/api/users/me", Some(&token), &json!({"display_name": "John Doe"})).await.assert_status(200);
    let general = channel(&app, &token, "general", &[]).await;
    let mut ws = WsClient::connect(&app.ws_url(&format!("/api/ws/johndoe?token={token}"))).await.unwrap();
    let ready = ws.next_json().await;
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["data"]["user"]["username"], "johndoe");
    let listed = &ready["data"]["channels"][0];
    assert_eq!(listed["id"], general.as_str());
    let last_seq = listed["last_seq"].as_i64().unwrap();

    let sent = app.post_message(&token, &general, "Hello, world!").await;
    let frame = ws.next_of("message").await;
    assert_eq!(frame["type"], "message");
    let data = &frame["data"];
    assert_eq!(data["id"], sent["id"]);
    assert_eq!(data["content"], "Hello, world!");
    assert_eq!(data["user"]["username"], "johndoe");
    assert_eq!(data["user"]["display_name"], "John Doe");
    assert_eq!(data["user"]["id"], sent["user_id"]);
    assert_eq!(data["channel_id"], general.as_str());
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(data["seq"], last_seq + 1);
    assert_eq!(data["parent_id"], Value::Null);
    assert_eq!(data["attachments"], json!([]));
}

#[tokio::test]
async fn the_handshake_checks_the_token_before_upgrading() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    app.user("bob").await;
    let status = |path: String| async move { handshake_status(WsClient::connect(&path).await.err().unwrap()) };
    assert_eq!(status(app.ws_url("/api/ws?token=garbage")).await, 401);
    assert_eq!(status(app.ws_url("/api/ws")).await, 401);
    assert_eq!(status(app.ws_url(&format!("/api/ws/bob?token={token}"))).await, 403);
    assert!(WsClient::connect(&app.ws_url(&format!("/api/ws/ALICE?token={token}"))).await.is_ok());
    app.client.post_empty("/api/auth/logout", Some(&token)).await.assert_status(204);
    assert_eq!(status(app.ws_url(&format!("/api/ws?token={token}"))).await, 401);
}

/// Writes `request` on a new connection to `app` and reads until `until` appears in what
/// comes back, or the server closes (`until` empty: until it closes). Within 5 s.
async fn raw_exchange(app: &TestApp, request: &[u8], until: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tcp.write_all(request).await.unwrap();
    String::from_utf8_lossy(&read_until(&mut tcp, until, Duration::from_secs(5)).await).into_owned()
}

/// Reads until `until` appears in what has come, or the server closes (`until` empty:
/// until it closes); panics if neither happens within `within`.
async fn read_until(tcp: &mut tokio::net::TcpStream, until: &str, within: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
            if n == 0 || (!until.is_empty() && String::from_utf8_lossy(&got).contains(until)) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "neither {until:?} nor a close within {within:?}; got {}", String::from_utf8_lossy(&got));
    got
}

fn handshake(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// A client text frame, masked with a zero key (so the payload reads as written).
fn masked_text(payload: &str) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload.as_bytes());
    frame
}

#[tokio::test]
async fn a_refused_handshake_is_answered_in_json_and_the_connection_closed() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    let answer = raw_exchange(&app, handshake("/api/ws?token=garbage", "").as_bytes(), "").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "invalid_token", "{answer}");

    // A handshake with a body is not handed over, so it cannot upgrade.
    let chunked = handshake(&format!("/api/ws?token={token}"), "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n";
    let answer = raw_exchange(&app, chunked.as_bytes(), "}").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("a WebSocket handshake has no body"), "{answer}");

    // Upgrading any other path is answered as that path is, and closed.
    let answer = raw_exchange(&app, handshake("/api/users/me", "").as_bytes(), "").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let answer = raw_exchange(&app, handshake("/healthz", "").as_bytes(), "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_frame_sent_with_the_handshake_is_read() {
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    let mut request = handshake(&format!("/api/ws?token={token}"), "").into_bytes();
    request.extend(masked_text(r#"{"type":"ping"}"#));
    let answer = raw_exchange(&app, &request, r#""type":"pong""#).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains(r#""type":"ready""#), "{answer}");
}

#[tokio::test]
async fn the_server_closes_the_connection_right_behind_its_close_frame() {
    use tokio::io::AsyncWriteExt as _;
    let app = TestApp::spawn().await;
    let token = app.user("alice").await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tcp.write_all(handshake(&format!("/api/ws?token={token}"), "").as_bytes()).await.unwrap();
    let ready = r#""type":"ready""#;
    let got = read_until(&mut tcp, ready, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&got).contains(ready), "closed before ready: {}", String::from_utf8_lossy(&got));
    app.client.post_empty("/api/auth/logout", Some(&token)).await.assert_status(204);
    // The client does not answer the close: the server's FIN follows its close frame
    // anyway, so a browser learns of the 4001 at once instead of after its own timeout.
    let rest = read_until(&mut tcp, "", Duration::from_millis(500)).await;
    // A close frame (0x88, a short length) whose code is 4001 (0x0fa1).
    let close = rest.windows(4).any(|w| w[0] == 0x88 && w[2..] == [0x0f, 0xa1]);
    assert!(close, "a 4001 close came first: {rest:?}");
}

#[tokio::test]
async fn delivery_reaches_every_member_connection_and_no_one_else() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let eve = app.user("eve").await;
    let general = channel(&app, &alice, "general", &[&bob]).await;
    let mut alice_tab1 = app.connect(&alice).await;
    let mut alice_tab2 = app.connect(&alice).await;
    let mut bob_ws = app.connect(&bob).await;
    let mut eve_ws = app.connect(&eve).await;

    let sent = app.post_message(&alice, &general, "to the members").await;
    for ws in [&mut alice_tab1, &mut alice_tab2, &mut bob_ws] {
        assert_eq!(messages(ws, &general, 1).await[0]["id"], sent["id"]);
    }
    // Eve reads the public channel's history but is not a member: no live events.
    let frame = eve_ws.next_json_within(Duration::from_millis(500)).await;
    assert!(frame.as_ref().is_none_or(|f| f["type"] != "message"), "eve got {frame:?}");
}

#[tokio::test]
async fn concurrent_posts_arrive_everywhere_in_seq_order_without_gaps() {
    let app = TestApp::spawn().await;
    let tokens = [app.user("user0").await, app.user("user1").await, app.user("user2").await, app.user("user3").await];
    let general = channel(&app, &tokens[0], "general", &[&tokens[1], &tokens[2], &tokens[3]]).await;
    let mut sockets = Vec::new();
    for token in &tokens {
        sockets.push(app.connect(token).await);
    }
    let mut senders = Vec::new();
    for token in tokens.clone() {
        let client = app.client.clone();
        let general = general.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..50 {
                let reply = client
                    .post(
                        "/api/chat/messages",
                        Some(&token),
                        &json!({"content": format!("m{i}"), "channel_id": general}),
                    )
                    .await;
                assert_eq!(reply.status.as_u16(), 201);
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    for ws in &mut sockets {
        let received = messages(ws, &general, 200).await;
        let seqs: Vec<i64> = received.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap or disorder: {seqs:?}");
    }
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_then_continues_live() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = channel(&app, &alice, "general", &[&bob]).await;
    let mut ws = app.connect(&bob).await;
    let first = app.post_message(&alice, &general, "before").await;
    let seen = messages(&mut ws, &general, 1).await;
    let last_seq = seen[0]["seq"].as_i64().unwrap();
    assert_eq!(seen[0]["id"], first["id"]);
    drop(ws);

    let mut missed = Vec::new();
    for i in 0..20 {
        missed.push(app.post_message(&alice, &general, &format!("missed {i}")).await["id"].clone());
    }
    let mut ws = app.connect(&bob).await;
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): last_seq}}})).await;
    let replayed = messages(&mut ws, &general, 20).await;
    assert_eq!(replayed.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(), missed);
    let live = app.post_message(&alice, &general, "live").await;
    let next = messages(&mut ws, &general, 1).await;
    assert_eq!(next[0]["id"], live["id"], "nothing doubled, nothing lost");
    assert_eq!(next[0]["seq"], replayed[19]["seq"].as_i64().unwrap() + 1);
}

#[tokio::test]
async fn resume_beyond_the_log_asks_for_a_resync() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = channel(&app, &alice, "general", &[]).await;
    app.post_message(&alice, &general, "one").await;
    {
        use diesel_async::RunQueryDsl as _;
        let mut conn = app.db().await;
        diesel::sql_query("DELETE FROM channel_events").execute(&mut conn).await.unwrap();
    }
    let mut ws = app.connect(&alice).await;
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): 0}}})).await;
    let frame = ws.next_json().await;
    assert_eq!(frame, json!({"type": "resync_required", "data": {"channel_id": general}}));
}

/// Issue 15: retention drops a whole day of the event log (its partition) instead of
/// deleting rows; a resume into the dropped range asks for a resync, history stays, and
/// seqs go on from the channel's counter with no gap in what the log still holds.
#[tokio::test]
async fn retention_drops_a_day_of_the_log_as_a_partition_and_seqs_go_on() {
    use diesel_async::RunQueryDsl as _;
    use persistence::events::maintain_partitions;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = channel(&app, &alice, "general", &[]).await;
    let first = app.post_message(&alice, &general, "one").await;
    let mut conn = app.db().await;
    let now = time::OffsetDateTime::now_utc();
    let today = now.date();
    let partition = format!("channel_events_p{}", today.to_string().replace('-', ""));
    let partitions = async |conn: &mut diesel_async::AsyncPgConnection| {
        let counted: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_class WHERE relname = $1")
            .bind::<diesel::sql_types::Text, _>(&partition)
            .get_result(conn)
            .await
            .unwrap();
        counted.n
    };
    assert_eq!(partitions(&mut conn).await, 1, "today's events have their own partition");

    // Ten days on, with seven days of retention, today's partition goes whole.
    let later = now + time::Duration::days(10);
    let done = maintain_partitions(&mut conn, later, later - time::Duration::days(7)).await.unwrap();
    assert!(done.dropped.contains(&today), "{done:?}");
    assert!(done.created.contains(&later.date()), "{done:?}");
    assert_eq!(partitions(&mut conn).await, 0);

    let mut ws = app.connect(&alice).await;
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): 0}}})).await;
    assert_eq!(ws.next_json().await, json!({"type": "resync_required", "data": {"channel_id": general}}));
    let history = app.client.get(&format!("/api/chat/channels/{general}/messages"), Some(&alice)).await;
    assert_eq!(history.assert_status(200)["items"][0]["id"], first["id"], "messages outlive the log");

    // Appends go on (into the default partition, as today has none now) with the next seq;
    // the next maintenance run gives today its partition back, moving them into it.
    let second = app.post_message(&alice, &general, "two").await;
    assert_eq!(second["seq"], first["seq"].as_i64().unwrap() + 1);
    let done = maintain_partitions(&mut conn, now, now - time::Duration::days(7)).await.unwrap();
    assert!(done.created.contains(&today), "{done:?}");
    assert_eq!(partitions(&mut conn).await, 1);
    let mut ws = app.connect(&alice).await;
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): first["seq"]}}})).await;
    assert_eq!(messages(&mut ws, &general, 1).await[0]["id"], second["id"]);

    // Two nodes maintaining at the same moment both succeed, and each partition is made once.
    let (mut one, mut other) = (app.db().await, app.db().await);
    let far = now + time::Duration::days(30);
    let cutoff = now - time::Duration::days(7);
    let (a, b) = tokio::join!(maintain_partitions(&mut one, far, cutoff), maintain_partitions(&mut other, far, cutoff));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.created.len() + b.created.len(), 4, "{a:?} {b:?}");
}

#[tokio::test]
async fn a_ban_stops_delivery_at_once_with_member_banned() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let eve = app.user("eve").await;
    let general = channel(&app, &owner, "general", &[&eve]).await;
    let mut eve_ws = app.connect(&eve).await;
    let mut owner_ws = app.connect(&owner).await;
    app.client
        .post_empty(&format!("/api/channels/{general}/ban-by-username/eve"), Some(&owner))
        .await
        .assert_status(200);
    let banned = eve_ws.next_of("member_banned").await;
    assert_eq!(banned["data"]["user"]["username"], "eve");
    assert_eq!(banned["data"]["channel_id"], general.as_str());
    assert_eq!(owner_ws.next_of("member_banned").await["data"]["seq"], banned["data"]["seq"]);
    app.post_message(&owner, &general, "after the ban").await;
    messages(&mut owner_ws, &general, 1).await;
    let leaked = eve_ws.next_json_within(Duration::from_millis(500)).await;
    assert!(leaked.is_none(), "eve still received {leaked:?}");
    // And over the socket she cannot post there either: the same answer as REST gives a
    // banned user of a public channel (403).
    eve_ws.send_json(&json!({"type": "message", "data": {"channel_id": general, "content": "hi", "nonce": "x"}})).await;
    assert_eq!(eve_ws.next_of("error").await["data"]["code"], "forbidden");
}

#[tokio::test]
async fn messages_sent_over_the_socket_are_acked_and_idempotent() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = channel(&app, &alice, "general", &[]).await;
    let mut ws = app.connect(&alice).await;
    let frame =
        json!({"type": "message", "data": {"channel_id": general, "content": "over the socket", "nonce": "n-1"}});
    ws.send_json(&frame).await;
    // The ack and the message event may come in either order.
    let (mut ack, mut echoed) = (None, None);
    while ack.is_none() || echoed.is_none() {
        let next = ws.next_json().await;
        match next["type"].as_str() {
            Some("ack") => ack = Some(next),
            Some("message") => echoed = Some(next),
            _ => {}
        }
    }
    let (ack, echoed) = (ack.unwrap(), echoed.unwrap());
    assert_eq!(ack["data"]["nonce"], "n-1");
    assert_eq!(ack["data"]["id"], echoed["data"]["id"]);
    assert_eq!(ack["data"]["seq"], echoed["data"]["seq"]);
    ws.send_json(&frame).await;
    let again = ws.next_of("ack").await;
    assert_eq!(again["data"]["id"], ack["data"]["id"], "a repeated nonce returns the first message");
    let history = app.client.get(&format!("/api/chat/channels/{general}/messages"), Some(&alice)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);
    ws.send_json(
        &json!({"type": "message", "data": {"channel_id": general, "content": "x".repeat(4001), "nonce": "n-2"}}),
    )
    .await;
    assert_eq!(ws.next_of("error").await["data"]["code"], "validation_error");
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_stays() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut ws = app.connect(&alice).await;
    for garbage in ["not json", r#"{"type":"dance"}"#, r#"{"type":"typing","data":{}}"#, "{}"] {
        ws.send_text(garbage).await.unwrap();
        let frame = ws.next_json().await;
        assert_eq!(frame["type"], "error", "{garbage}");
        assert!(frame["data"]["code"].is_string());
    }
    ws.send_json(&json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong", "data": {}}));
}

#[tokio::test]
async fn oversized_frames_close_with_1009_and_garbage_floods_with_1008() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut ws = app.connect(&alice).await;
    ws.send_text(&"x".repeat(70 * 1024)).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1009));

    let mut ws = app.connect(&alice).await;
    for _ in 0..50 {
        if ws.send_text("garbage").await.is_err() {
            break;
        }
    }
    assert_eq!(ws.close_code().await, Some(1008));
}

/// A client may fragment a message: the parts are joined (up to the same 64 KiB), and a
/// text frame that is not UTF-8 closes with 1007.
#[tokio::test]
async fn fragmented_messages_are_joined_and_bad_utf8_closes_with_1007() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut ws = app.connect(&alice).await;
    let ping = br#"{"type": "ping"}"#;
    ws.send_fragments(&[&ping[..5], &ping[5..9], &ping[9..]]).await.unwrap();
    assert_eq!(ws.next_json().await, json!({"type": "pong", "data": {}}));

    // 40 + 40 KiB in two frames, each under the limit, together over it.
    let half = vec![b' '; 40 * 1024];
    // The server may close before the second part is written.
    let _ = ws.send_fragments(&[&half, &half]).await;
    assert_eq!(ws.close_code().await, Some(1009));

    let mut ws = app.connect(&alice).await;
    let not_utf8 = vec![b'"', 0xff, 0xfe, b'"'];
    ws.send_fragments(&[&not_utf8]).await.unwrap();
    assert_eq!(ws.close_code().await, Some(1007));
}

#[tokio::test]
async fn typing_and_presence_reach_channel_members() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = channel(&app, &alice, "general", &[&bob]).await;
    let mut alice_ws = app.connect(&alice).await;
    let me = app.client.get("/api/users/alice", Some(&bob)).await;
    assert_eq!(me.body["online"], true);
    let bob_ws = app.connect(&bob).await;
    let presence = alice_ws.next_of("presence").await;
    assert_eq!(presence["data"]["username"], "bob");
    assert_eq!(presence["data"]["online"], true);

    let mut bob_ws = bob_ws;
    bob_ws.send_json(&json!({"type": "typing", "data": {"channel_id": general}})).await;
    let typing = alice_ws.next_of("typing").await;
    assert_eq!(typing["data"]["user"]["username"], "bob");
    assert_eq!(typing["data"]["channel_id"], general.as_str());

    drop(bob_ws);
    let gone = alice_ws.next_of("presence").await;
    assert_eq!(gone["data"]["online"], false);
    assert_eq!(app.client.get("/api/users/bob", Some(&alice)).await.body["online"], false);
}

#[tokio::test]
async fn a_stalled_reader_is_closed_with_4008_and_others_keep_receiving() {
    let app = TestApp::spawn_with(|s| s.ws_queue_capacity = 16).await;
    let alice = app.user("alice").await;
    let stalled = app.user("stalled").await;
    let general = channel(&app, &alice, "general", &[&stalled]).await;
    let mut reader = app.connect(&alice).await;
    let mut stalled_ws = app.connect(&stalled).await;

    let big = "x".repeat(3900);
    let total = 1500;
    let mut senders = Vec::new();
    for worker in 0..6 {
        let (client, alice, general, big) = (app.client.clone(), alice.clone(), general.clone(), big.clone());
        senders.push(tokio::spawn(async move {
            for i in (worker..total).step_by(6) {
                let reply = client
                    .post(
                        "/api/chat/messages",
                        Some(&alice),
                        &json!({"content": format!("{i} {big}"), "channel_id": general}),
                    )
                    .await;
                assert_eq!(reply.status.as_u16(), 201);
            }
        }));
    }
    // The active reader keeps up with everything while the other one does not read.
    let received = messages(&mut reader, &general, total).await;
    assert_eq!(received.len(), total);
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(stalled_ws.close_code().await, Some(4008));
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let mut ws = app.connect(&alice).await;
    let stopping = app.stop();
    let (code, ()) = tokio::join!(ws.close_code(), stopping);
    assert_eq!(code, Some(1001));
}

/// A client that resumes right after `ready` while messages keep coming gets the missed ones
/// first and the live ones after, in one gapless, duplicate-free run of seqs.
#[tokio::test]
async fn resume_right_after_ready_keeps_order_while_messages_flow() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = channel(&app, &alice, "general", &[&bob]).await;
    let mut first_seq = 0;
    for i in 0..5 {
        let sent = app.post_message(&alice, &general, &format!("old {i}")).await;
        if i == 0 {
            first_seq = sent["seq"].as_i64().unwrap();
        }
    }
    let (client, token, channel_id) = (app.client.clone(), alice.clone(), general.clone());
    let poster = tokio::spawn(async move {
        for i in 0..30 {
            let reply = client
                .post(
                    "/api/chat/messages",
                    Some(&token),
                    &json!({"content": format!("new {i}"), "channel_id": channel_id}),
                )
                .await;
            assert_eq!(reply.status.as_u16(), 201);
        }
    });
    let mut ws = app.connect(&bob).await;
    ws.send_json(&json!({"type": "resume", "data": {"channels": {general.clone(): first_seq - 1}}})).await;
    poster.await.unwrap();
    let received = messages(&mut ws, &general, 35).await;
    let seqs: Vec<i64> = received.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs[0], first_seq);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}
