//! docs/api.md section 12, incoming webhooks: made and managed by a channel's owner, posted
//! to by anyone holding the URL, through the ordinary message path (a seq, live delivery on
//! every node).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_tests::TestApp;
use serde_json::{Value, json};

/// Creates a webhook in `channel` as its owner, expecting 201; returns the body.
async fn create_webhook(app: &TestApp, owner: &str, channel: &str, name: &str) -> Value {
    app.client
        .post(&format!("/api/channels/{channel}/webhooks"), Some(owner), &json!({"name": name}))
        .await
        .assert_status(201)
        .clone()
}

async fn hook_json(app: &TestApp, url: &str, body: &Value) -> blackbox_tests::Reply {
    app.client.send(app.client.http.post(app.client.url(url)).json(body)).await
}

async fn hook_form(app: &TestApp, url: &str, payload: &str) -> blackbox_tests::Reply {
    app.client.send(app.client.http.post(app.client.url(url)).form(&[("payload", payload)])).await
}

#[tokio::test]
async fn a_webhook_post_is_a_message_with_a_seq_that_reaches_members_live() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let mut socket = app.connect(&bob).await;

    let hook = create_webhook(&app, &alice, &general, "CI").await;
    assert_eq!(hook["name"], "CI");
    assert_eq!(hook["channel_id"], general.as_str());
    assert!(hook["created_at"].as_str().unwrap().ends_with('Z'));
    let url = hook["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/hooks/") && url.len() > "/hooks/".len() + 40, "{url}");
    // Its account joined the channel.
    let joined = socket.next_of("member_joined").await;
    assert_eq!(joined["data"]["user"]["display_name"], "CI");

    let reply = hook_json(&app, &url, &json!({"text": "Build #42 passed"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.text, "ok");
    let frame = socket.next_of("message").await;
    let message = &frame["data"];
    assert_eq!(message["content"], "Build #42 passed");
    assert_eq!(message["channel_id"], general.as_str());
    assert_eq!(message["seq"], joined["data"]["seq"].as_i64().unwrap() + 1);
    assert_eq!(message["webhook"]["id"], hook["id"]);
    assert_eq!(message["webhook"]["name"], "CI");
    assert_eq!(message["webhook"]["username"], "CI");
    assert_eq!(message["user"]["display_name"], "CI");
    assert_ne!(message["user"]["username"], "alice", "no person's identity: {message}");

    // Slack's form encoding, with a name of its own.
    let reply =
        hook_form(&app, &url, r#"{"text": "deployed", "username": "deployer", "icon_url": "https://x/y.png"}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let frame = socket.next_of("message").await;
    assert_eq!(frame["data"]["content"], "deployed");
    assert_eq!(frame["data"]["webhook"]["username"], "deployer");
    assert_eq!(frame["data"]["seq"], message["seq"].as_i64().unwrap() + 1);

    // History shows it the same way; a person's message has no `webhook`.
    app.post_message(&bob, &general, "thanks").await;
    let history = app.client.get(&format!("/api/chat/channels/{general}/messages"), Some(&bob)).await;
    let items = history.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items[0]["content"], "thanks");
    assert!(items[0].get("webhook").is_none());
    assert_eq!(items[1]["webhook"]["username"], "deployer");
    assert_eq!(items[2]["webhook"]["name"], "CI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_post_reaches_a_member_on_another_node() {
    let namespace = format!("webhooks-{}", uuid::Uuid::new_v4().simple());
    let redis = |namespace: String| {
        move |s: &mut http_api::Settings| {
            s.redis_url = Some(http_api::config::Secret("redis://127.0.0.1:6379".into()));
            s.redis_namespace = namespace;
        }
    };
    let a = TestApp::spawn_with(redis(namespace.clone())).await;
    let b = a.spawn_sibling(redis(namespace)).await;
    let alice = a.user("alice").await;
    let general = a.create_channel(&alice, "general").await;
    let hook = create_webhook(&a, &alice, &general, "alerts").await;
    let mut on_b = b.connect(&alice).await;
    let reply = hook_json(&a, hook["url"].as_str().unwrap(), &json!({"text": "disk full"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let frame = on_b.next_of("message").await;
    assert_eq!(frame["data"]["content"], "disk full");
    assert_eq!(frame["data"]["webhook"]["name"], "alerts");
    assert!(frame["data"]["seq"].as_i64().unwrap() > 1);
}

#[tokio::test]
async fn webhook_posts_that_break_the_rules_get_documented_errors() {
    let app = TestApp::spawn_with(|s| s.rate_limit_webhook_per_minute = 3).await;
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let url = create_webhook(&app, &alice, &general, "CI").await["url"].as_str().unwrap().to_owned();

    hook_json(&app, "/hooks/no-such-secret", &json!({"text": "x"})).await.assert_error(404, "not_found");
    hook_json(&app, &url, &json!({"username": "x"})).await.assert_error(400, "no_text");
    hook_json(&app, &url, &json!({"text": "   "})).await.assert_error(400, "no_text");
    hook_form(&app, &url, "not json").await.assert_error(400, "invalid_payload");
    // That is three posts of the three a minute allowed: the next is refused.
    let limited = hook_json(&app, &url, &json!({"text": "one too many"})).await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    let text = app.client.send(app.client.http.post(app.client.url(&url)).body("text=hi")).await;
    text.assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn only_the_channel_owner_manages_its_webhooks() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = app.create_channel(&alice, "general").await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let secret = app
        .client
        .post("/api/channels", Some(&alice), &json!({"name": "secret", "is_private": true}))
        .await
        .assert_status(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = create_webhook(&app, &alice, &general, "CI").await;
    let id = hook["id"].as_str().unwrap();

    let create = |channel: &str| format!("/api/channels/{channel}/webhooks");
    app.client.post(&create(&general), Some(&bob), &json!({"name": "x"})).await.assert_error(403, "forbidden");
    app.client.post(&create(&secret), Some(&bob), &json!({"name": "x"})).await.assert_error(404, "not_found");
    app.client.post(&create(&general), None, &json!({"name": "x"})).await.assert_error(401, "not_authenticated");
    app.client.post(&create(&general), Some(&alice), &json!({"name": ""})).await.assert_error(422, "validation_error");
    app.client.get(&create(&general), Some(&bob)).await.assert_error(403, "forbidden");
    app.client.delete(&format!("/api/webhooks/{id}"), Some(&bob)).await.assert_error(403, "forbidden");
    app.client.post_empty(&format!("/api/webhooks/{id}/regenerate"), Some(&bob)).await.assert_error(403, "forbidden");
    let unknown = uuid::Uuid::now_v7();
    app.client.delete(&format!("/api/webhooks/{unknown}"), Some(&alice)).await.assert_error(404, "not_found");
    let dm = app.client.post_empty("/api/channels/dm/bob", Some(&alice)).await;
    let dm = dm.body["id"].as_str().unwrap().to_owned();
    app.client.post(&create(&dm), Some(&alice), &json!({"name": "x"})).await.assert_error(403, "forbidden");

    // The owner lists them without secrets.
    let listed = app.client.get(&create(&general), Some(&alice)).await.assert_status(200).clone();
    assert_eq!(listed["items"][0]["id"], hook["id"]);
    assert!(listed["items"][0].get("url").is_none(), "{listed}");
}

#[tokio::test]
async fn regenerating_or_deleting_a_webhook_retires_its_url() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let hook = create_webhook(&app, &alice, &general, "CI").await;
    let id = hook["id"].as_str().unwrap();
    let old = hook["url"].as_str().unwrap();

    let renewed = app.client.post_empty(&format!("/api/webhooks/{id}/regenerate"), Some(&alice)).await;
    let new = renewed.assert_status(200)["url"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    hook_json(&app, old, &json!({"text": "x"})).await.assert_error(404, "not_found");
    assert_eq!(hook_json(&app, &new, &json!({"text": "still here"})).await.status, 200);

    let mut socket = app.connect(&alice).await;
    app.client.delete(&format!("/api/webhooks/{id}"), Some(&alice)).await.assert_status(204);
    let left = socket.next_of("member_left").await;
    assert_eq!(left["data"]["user"]["display_name"], "CI");
    hook_json(&app, &new, &json!({"text": "x"})).await.assert_error(404, "not_found");
    app.client.delete(&format!("/api/webhooks/{id}"), Some(&alice)).await.assert_error(404, "not_found");
    let listed = app.client.get(&format!("/api/channels/{general}/webhooks"), Some(&alice)).await;
    assert!(listed.assert_status(200)["items"].as_array().unwrap().is_empty());
    // Its message stays, still naming it.
    let history = app.client.get(&format!("/api/chat/channels/{general}/messages"), Some(&alice)).await;
    let items = history.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items[0]["webhook"]["name"], "CI");
}
