//! Live connections follow the database across nodes (docs/api.md section 10): revocation
//! and bans reach sockets on the other node, and after a Redis outage every node catches up
//! from the event log by itself. The outage tests run their own Redis and stop only it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_tests::TestApp;
use blackbox_tests::proxy::Proxy;
use blackbox_tests::ws::WsClient;
use serde_json::{Value, json};

/// A Redis server of this test's own, on a free port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "our Redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills our Redis (by its PID, nobody else's).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis(url: String, namespace: &str) -> impl FnOnce(&mut http_api::Settings) {
    let namespace = namespace.to_owned();
    move |s| {
        s.redis_url = Some(http_api::config::Secret(url));
        s.redis_namespace = namespace;
    }
}

/// Alice on node a owns `general`; Bob, on node b, joined it.
async fn alice_and_bob(a: &TestApp, b: &TestApp) -> (String, String, String) {
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let general = a.create_channel(&alice, "general").await;
    b.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    (alice, bob, general)
}

/// The frames of `channel` a socket gets before the `sentinel` message (of another channel,
/// posted last) arrives.
async fn frames_of_until(ws: &mut WsClient, channel: &str, sentinel: &Value) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = ws.next_json().await;
        if frame["data"]["id"] == sentinel["id"] {
            return frames;
        }
        if frame["data"]["channel_id"] == channel {
            frames.push(frame);
        }
    }
}

async fn messages_within(ws: &mut WsClient, n: usize, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_json_within(left).await {
            Some(frame) if frame["type"] == "message" => out.push(frame["data"].clone()),
            Some(_) => {}
            None => break,
        }
    }
    out
}

async fn gauge(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.client.get("/metrics", None).await.text;
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_closes_the_socket_on_the_other_within_a_second() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let token = a.user("alice").await;
    let mut on_b = b.connect(&token).await;
    a.client.post_empty("/api/auth/logout", Some(&token)).await.assert_status(204);
    let started = Instant::now();
    assert_eq!(on_b.close_code().await, Some(4001));
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());
    // And it cannot post any more: it is gone, and the token is refused on b.
    b.client.get("/api/users/me", Some(&token)).await.assert_error(401, "token_revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_node_reaches_the_banned_socket_on_the_other_at_its_seq() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    let side = a.create_channel(&alice, "side").await;
    b.client.post_empty(&format!("/api/channels/{side}/join"), Some(&bob)).await.assert_status(200);
    let mut bob_on_b = b.connect(&bob).await;

    a.client.post_empty(&format!("/api/channels/{general}/ban-by-username/bob"), Some(&alice)).await.assert_status(200);
    let after = a.post_message(&alice, &general, "after the ban").await;
    let sentinel = a.post_message(&alice, &side, "sentinel").await;
    let general_frames = frames_of_until(&mut bob_on_b, &general, &sentinel).await;
    assert_eq!(general_frames.len(), 1, "{general_frames:?}");
    assert_eq!(general_frames[0]["type"], "member_banned");
    assert_eq!(general_frames[0]["data"]["seq"].as_i64().unwrap(), after["seq"].as_i64().unwrap() - 1);
}

/// A ban on node a races the banned user's own posts on node b. The message writer reads
/// membership in the same round trip as it takes the channel's lock (pipelined after it), so
/// every post is decided on one side of the ban. Bob's socket on b gets each accepted post at
/// its seq, in order, then the ban, and nothing of the channel after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ban_racing_the_users_posts_reaches_the_socket_on_the_other_node_after_them() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    let side = a.create_channel(&alice, "side").await;
    b.client.post_empty(&format!("/api/channels/{side}/join"), Some(&bob)).await.assert_status(200);
    let mut bob_on_b = b.connect(&bob).await;

    let (progress, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let posters: Vec<_> = (0..4)
        .map(|p| {
            let (client, bob, general, progress) = (b.client.clone(), bob.clone(), general.clone(), progress.clone());
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0..2_000 {
                    let body = json!({"content": format!("p{p} #{i}"), "channel_id": general});
                    let reply = client.post("/api/chat/messages", Some(&bob), &body).await;
                    if reply.status.as_u16() != 201 {
                        assert_eq!(reply.body["code"], "forbidden", "{}", reply.text);
                        return accepted;
                    }
                    accepted.push(reply.body["seq"].as_i64().unwrap());
                    let _ = progress.send(());
                }
                panic!("never refused");
            })
        })
        .collect();
    drop(progress);
    for _ in 0..20 {
        progress_rx.recv().await.unwrap();
    }
    a.client.post_empty(&format!("/api/channels/{general}/ban-by-username/bob"), Some(&alice)).await.assert_status(200);
    let mut accepted = Vec::new();
    for poster in posters {
        accepted.extend(poster.await.unwrap());
    }
    accepted.sort_unstable();
    a.post_message(&alice, &general, "after the ban").await;
    let sentinel = a.post_message(&alice, &side, "sentinel").await;

    let frames = frames_of_until(&mut bob_on_b, &general, &sentinel).await;
    let (ban, messages) = frames.split_last().unwrap();
    assert_eq!(ban["type"], "member_banned", "the ban is the last of the channel: {ban}");
    let seqs: Vec<i64> = messages
        .iter()
        .map(|frame| {
            assert_eq!(frame["type"], "message", "{frame}");
            frame["data"]["seq"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(seqs, accepted, "every accepted post, once and in seq order, before the ban");
    assert!(ban["data"]["seq"].as_i64().unwrap() > *accepted.last().unwrap());
}

/// A moderator's kick on node a reaches the kicked socket on node b as `member_removed` at
/// its seq, and nothing of the channel after it; a role change reaches b at its seq too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_and_a_role_change_on_one_node_reach_sockets_on_the_other_at_their_seq() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    let carol = a.user("carol").await;
    a.client.post_empty(&format!("/api/channels/{general}/join"), Some(&carol)).await.assert_status(200);
    let side = a.create_channel(&alice, "side").await;
    b.client.post_empty(&format!("/api/channels/{side}/join"), Some(&bob)).await.assert_status(200);
    let mut bob_on_b = b.connect(&bob).await;

    let role = a
        .client
        .put(&format!("/api/channels/{general}/members/carol/role"), Some(&alice), &json!({"role": "moderator"}))
        .await;
    role.assert_status(200);
    let changed = bob_on_b.next_of("member_role_changed").await;
    assert_eq!(changed["data"]["user"]["username"], "carol");
    let role_seq = changed["data"]["seq"].as_i64().unwrap();

    a.client.delete(&format!("/api/channels/{general}/members/bob"), Some(&carol)).await.assert_status(204);
    let after = a.post_message(&alice, &general, "after the kick").await;
    let sentinel = a.post_message(&alice, &side, "sentinel").await;
    let general_frames = frames_of_until(&mut bob_on_b, &general, &sentinel).await;
    assert_eq!(general_frames.len(), 1, "{general_frames:?}");
    assert_eq!(general_frames[0]["type"], "member_removed");
    assert_eq!(general_frames[0]["data"]["by"]["username"], "carol");
    let kick_seq = general_frames[0]["data"]["seq"].as_i64().unwrap();
    assert_eq!(kick_seq, role_seq + 1);
    assert_eq!(kick_seq, after["seq"].as_i64().unwrap() - 1);
}

/// Pins, a transfer, a new group DM and a channel's deletion, made on node a, reach a socket
/// on node b, each at the seq it took, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_transfers_group_dms_and_deletion_on_one_node_reach_the_other_in_seq_order() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    a.user("carol").await;
    let mut bob_on_b = b.connect(&bob).await;

    let message = a.post_message(&alice, &general, "pin me").await;
    let pin = format!("/api/chat/messages/{}/pin", message["id"].as_str().unwrap());
    a.client.put(&pin, Some(&alice), &json!({})).await.assert_status(204);
    a.client.delete(&pin, Some(&alice)).await.assert_status(204);
    a.client
        .post(&format!("/api/channels/{general}/transfer"), Some(&alice), &json!({"username": "bob"}))
        .await
        .assert_status(200);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let frame = bob_on_b.next_json().await;
        if frame["data"]["channel_id"] == general {
            seen.push((frame["type"].as_str().unwrap().to_owned(), frame["data"]["seq"].as_i64().unwrap()));
        }
    }
    let first = message["seq"].as_i64().unwrap();
    let expected: Vec<(String, i64)> = ["message", "message_pinned", "message_unpinned", "channel_owner_changed"]
        .iter()
        .zip(first..)
        .map(|(kind, seq)| ((*kind).to_owned(), seq))
        .collect();
    assert_eq!(seen, expected);

    // A group DM opened on a reaches bob's open socket on b: his join, then its messages.
    let group = a.client.post("/api/channels/group-dm", Some(&alice), &json!({"usernames": ["bob", "carol"]})).await;
    let group = group.assert_status(201)["id"].as_str().unwrap().to_owned();
    let hello = a.post_message(&alice, &group, "hello both").await;
    let joined = bob_on_b.next_of("member_joined").await;
    assert_eq!(joined["data"]["channel_id"], group);
    let got = bob_on_b.next_of("message").await;
    assert_eq!(got["data"]["id"], hello["id"]);

    // Bob now owns general; deleting it on a is the last thing b's socket gets of it.
    a.client.delete(&format!("/api/channels/{general}"), Some(&bob)).await.assert_status(204);
    let deleted = bob_on_b.next_of("channel_deleted").await;
    assert_eq!(deleted["data"]["channel_id"], general);
}

/// A mention posted on node a reaches the mentioned user's socket on node b as a `mention`
/// frame, and no one else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_on_one_node_reaches_only_the_mentioned_socket_on_the_other() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    let carol = b.user("carol").await;
    b.client.post_empty(&format!("/api/channels/{general}/join"), Some(&carol)).await.assert_status(200);
    let mut bob_on_b = b.connect(&bob).await;
    let mut carol_on_b = b.connect(&carol).await;

    let sent = a.post_message(&alice, &general, "@bob look").await;
    let mention = bob_on_b.next_of("mention").await;
    assert_eq!(mention["data"]["message"]["id"], sent["id"]);
    assert_eq!(mention["data"]["channel_id"], general);
    let last = a.post_message(&alice, &general, "the end").await;
    loop {
        let frame = carol_on_b.next_json().await;
        assert_ne!(frame["type"], "mention", "carol was not mentioned: {frame}");
        if frame["data"]["id"] == last["id"] {
            break;
        }
    }
}

/// Redis killed, three posts on node b while it is down, Redis back, nobody posts again:
/// node a's client has all three, in order, within 2 s of Redis returning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_in_a_quiet_channel_loses_nothing() {
    let mut own = OwnRedis::start();
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis(own.url(), &namespace)).await;
    let b = a.spawn_sibling(redis(own.url(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    let mut alice_on_a = a.connect(&alice).await;
    let first = b.post_message(&bob, &general, "before").await;
    assert_eq!(messages_within(&mut alice_on_a, 1, Duration::from_secs(5)).await[0]["id"], first["id"]);
    assert_eq!(gauge(&a, "redis_connected").await, Some(1.0));

    own.kill();
    let mut during = Vec::new();
    for i in 0..3 {
        during.push(b.post_message(&bob, &general, &format!("during {i}")).await["id"].clone());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(&a, "redis_connected").await != Some(0.0) {
        assert!(Instant::now() < deadline, "the gauge never showed the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    own.restart();
    let got = messages_within(&mut alice_on_a, 3, Duration::from_secs(4)).await;
    let ids: Vec<Value> = got.iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, during, "all three, in order, without a later post");
    let seqs: Vec<i64> = got.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(gauge(&a, "redis_connected").await, Some(1.0));
}

/// A 300 ms blip on node b's link with no posts: the first post after it is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_blip_loses_nothing() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let b = a.spawn_sibling(redis(proxy.url(), &namespace)).await;
    let (alice, bob, general) = alice_and_bob(&a, &b).await;
    let mut alice_on_a = a.connect(&alice).await;
    let first = b.post_message(&bob, &general, "before").await;
    assert_eq!(messages_within(&mut alice_on_a, 1, Duration::from_secs(5)).await[0]["id"], first["id"]);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    let after = b.post_message(&bob, &general, "the first after the blip").await;
    let got = messages_within(&mut alice_on_a, 1, Duration::from_secs(2)).await;
    assert_eq!(got.first().map(|m| m["id"].clone()), Some(after["id"].clone()), "lost the first post after a blip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_on_one_node_closes_the_older_sockets_on_the_other() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let old = a.user("alice").await;
    let mut on_b = b.connect(&old).await;
    let reply = a
        .client
        .patch("/api/users/me", Some(&old), &json!({"password": "brand-new-pass", "current_password": "secretpass"}))
        .await;
    let fresh = reply.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    let started = Instant::now();
    assert_eq!(on_b.close_code().await, Some(4001));
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());
    b.client.get("/api/users/me", Some(&old)).await.assert_error(401, "token_revoked");
    b.client.get("/api/users/me", Some(&fresh)).await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_on_one_node_reaches_the_joiners_socket_on_the_other_and_the_next_message() {
    let namespace = format!("live-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let b = a.spawn_sibling(redis("redis://127.0.0.1:6379".into(), &namespace)).await;
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let general = a.create_channel(&alice, "general").await;
    let mut bob_on_b = b.connect(&bob).await;
    bob_on_b.send_json(&json!({"type": "ping"})).await;
    a.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let joined = bob_on_b.next_of("member_joined").await;
    assert_eq!(joined["data"]["channel_id"], general);
    let sent = a.post_message(&alice, &general, "welcome").await;
    let got = messages_within(&mut bob_on_b, 1, Duration::from_secs(5)).await;
    assert_eq!(got.first().map(|m| m["id"].clone()), Some(sent["id"].clone()));
    assert_eq!(got[0]["seq"].as_i64().unwrap(), joined["data"]["seq"].as_i64().unwrap() + 1);
}
