//! docs/websocket.md, multi-node: two servers on one database, fanned out through the
//! Redis on 127.0.0.1:6379.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use blackbox_tests::TestApp;
use blackbox_tests::proxy::Proxy;
use blackbox_tests::ws::WsClient;
use serde_json::{Value, json};

async fn two_nodes() -> (TestApp, TestApp, Proxy) {
    let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
    let (ns_a, ns_b) = (namespace.clone(), namespace);
    let a = TestApp::spawn_with(|s| {
        s.redis_url = Some(http_api::config::Secret("redis://127.0.0.1:6379".into()));
        s.redis_namespace = ns_a;
    })
    .await;
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let url = proxy.url();
    let b = a
        .spawn_sibling(|s| {
            s.redis_url = Some(http_api::config::Secret(url));
            s.redis_namespace = ns_b;
        })
        .await;
    (a, b, proxy)
}

/// Alice registers on node a and creates `general`; Bob registers on node b and joins it.
/// Returns their tokens and the channel id.
async fn alice_on_a_and_bob_on_b(a: &TestApp, b: &TestApp) -> (String, String, String) {
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let channel = a.client.post("/api/channels", Some(&alice), &json!({"name": "general"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.client.post_empty(&format!("/api/channels/{channel}/join"), Some(&bob)).await.assert_status(200);
    (alice, bob, channel)
}

async fn messages(ws: &mut WsClient, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = ws.next_json().await;
        if frame["type"] == "message" {
            out.push(frame["data"].clone());
        }
    }
    out
}

/// Polls until `check` holds, for at most ten seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_posted_on_one_node_reaches_clients_of_the_other_in_order() {
    let (a, b, _proxy) = two_nodes().await;
    let (alice, bob, channel) = alice_on_a_and_bob_on_b(&a, &b).await;

    let mut alice_on_a = a.connect(&alice).await;
    let mut bob_on_b = b.connect(&bob).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        sent.push(b.post_message(&bob, &channel, &format!("from b {i}")).await["id"].clone());
    }
    for ws in [&mut alice_on_a, &mut bob_on_b] {
        let got = messages(ws, 50).await;
        assert_eq!(got.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(), sent);
        assert!(got.windows(2).all(|w| w[1]["seq"].as_i64().unwrap() == w[0]["seq"].as_i64().unwrap() + 1));
    }

    // Presence counts both nodes.
    eventually("bob is online as seen from node a", async || {
        a.client.get("/api/users/bob", Some(&alice)).await.body["online"] == true
    })
    .await;
    eventually("alice is online as seen from node b", async || {
        b.client.get("/api/users/alice", Some(&bob)).await.body["online"] == true
    })
    .await;
    drop(bob_on_b);
    eventually("bob is offline as seen from node a", async || {
        a.client.get("/api/users/bob", Some(&alice)).await.body["online"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_and_restoring_a_nodes_redis_link_loses_nothing() {
    let (a, b, proxy) = two_nodes().await;
    let (alice, bob, channel) = alice_on_a_and_bob_on_b(&a, &b).await;

    let mut live = a.connect(&alice).await;
    let before = b.post_message(&bob, &channel, "before the cut").await;
    let first = messages(&mut live, 1).await;
    assert_eq!(first[0]["id"], before["id"]);
    let mut resumer = a.connect(&alice).await;
    let last_seq = first[0]["seq"].as_i64().unwrap();
    drop(resumer);

    proxy.cut();
    let mut during = Vec::new();
    for i in 0..20 {
        during.push(b.post_message(&bob, &channel, &format!("during {i}")).await["id"].clone());
    }
    proxy.restore();
    // Node b reconnects on its next publish; keep posting until one gets through.
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all: Vec<Value> = during.clone();
    loop {
        let id = b.post_message(&bob, &channel, "after").await["id"].clone();
        after.push(id.clone());
        all.push(id);
        if let Some(frame) = live.next_json_within(Duration::from_millis(300)).await {
            // The first frame to arrive proves the link is back; the gap before it is
            // filled from the event log, in order.
            let mut got = vec![frame];
            while got.iter().filter(|f| f["type"] == "message").count() < all.len() {
                got.push(live.next_json().await);
            }
            let ids: Vec<Value> =
                got.iter().filter(|f| f["type"] == "message").map(|f| f["data"]["id"].clone()).collect();
            assert_eq!(ids, all, "live client: nothing lost, nothing doubled, in order");
            break;
        }
        assert!(Instant::now() < deadline, "node b never reconnected to Redis");
    }

    // A client that was away resumes from the log and gets exactly what it missed.
    resumer = a.connect(&alice).await;
    resumer.send_json(&json!({"type": "resume", "data": {"channels": {channel.clone(): last_seq}}})).await;
    let replayed = messages(&mut resumer, all.len()).await;
    assert_eq!(replayed.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(), all);
}

/// A page node b rendered and kept is checked against the database, not against what b has
/// heard through Redis: changes made on node a show on b's next read, with the Redis link
/// cut as well as with it up, and a kick on a refuses Bob on b at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_kept_on_one_node_follows_changes_made_on_the_other() {
    let (a, b, proxy) = two_nodes().await;
    let (alice, bob, channel) = alice_on_a_and_bob_on_b(&a, &b).await;
    let page = async |node: &TestApp, token: &str| {
        let reply = node.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(token)).await;
        reply.assert_status(200)["items"].as_array().unwrap().iter().map(|m| m["content"].clone()).collect::<Vec<_>>()
    };
    let first = a.post_message(&alice, &channel, "first").await;
    assert_eq!(page(&b, &bob).await, [json!("first")]);

    a.client
        .patch(
            &format!("/api/chat/messages/{}", first["id"].as_str().unwrap()),
            Some(&alice),
            &json!({"content": "edited"}),
        )
        .await
        .assert_status(200);
    assert_eq!(page(&b, &bob).await, [json!("edited")]);

    proxy.cut();
    a.post_message(&alice, &channel, "while b hears nothing").await;
    assert_eq!(page(&b, &bob).await, [json!("while b hears nothing"), json!("edited")]);
    proxy.restore();

    a.client.post_empty(&format!("/api/channels/{channel}/ban-by-username/bob"), Some(&alice)).await.assert_status(200);
    b.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(&bob)).await.assert_error(403, "forbidden");
}

/// Read-your-writes through kept pages while others write: each of eight writers posts on
/// one node and at once reads the newest page on the other, many times over. Every read
/// must show the writer's own message, though each node keeps pages that every other
/// writer's post makes stale a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_reads_its_own_post_on_the_other_node_while_others_post() {
    let (a, b, _proxy) = two_nodes().await;
    let (alice, bob, channel) = alice_on_a_and_bob_on_b(&a, &b).await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (a, b, channel) = (a.clone(), b.clone(), channel.clone());
            let token = if writer % 2 == 0 { alice.clone() } else { bob.clone() };
            tokio::spawn(async move {
                for round in 0..12 {
                    let (post_on, read_on) = if (writer + round) % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    let posted = post_on.post_message(&token, &channel, &format!("w{writer} r{round}")).await;
                    let page =
                        read_on.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(&token)).await;
                    let ids: Vec<&str> = page.assert_status(200)["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["id"].as_str().unwrap())
                        .collect();
                    assert!(
                        ids.contains(&posted["id"].as_str().unwrap()),
                        "w{writer} r{round}: own post missing from {ids:?}"
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}
