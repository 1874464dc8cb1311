//! docs/api.md section 5 and the "send a message" example of section 0: messages, threads, edits,
//! tombstones, idempotent sends, history paging, reactions, search, and the seq guarantees
//! under concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};

use blackbox_tests::{Reply, TestApp};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl as _;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Helpers: one per boundary, so the tests read like the contract.

async fn create_channel(app: &TestApp, token: &str, name: &str, private: bool) -> String {
    let reply = app.client.post("/api/channels", Some(token), &json!({"name": name, "is_private": private})).await;
    reply.assert_status(201)["id"].as_str().unwrap().to_owned()
}

async fn join(app: &TestApp, token: &str, channel: &str) {
    app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(token)).await.assert_status(200);
}

async fn ban(app: &TestApp, owner: &str, channel: &str, username: &str) {
    app.client
        .post_empty(&format!("/api/channels/{channel}/ban-by-username/{username}"), Some(owner))
        .await
        .assert_status(200);
}

async fn invite(app: &TestApp, owner: &str, channel: &str, username: &str) {
    app.client.post_empty(&format!("/api/channels/{channel}/members/{username}"), Some(owner)).await.assert_status(200);
}

async fn dm(app: &TestApp, token: &str, username: &str) -> String {
    let reply = app.client.post_empty(&format!("/api/channels/dm/{username}"), Some(token)).await;
    assert!(matches!(reply.status.as_u16(), 200 | 201), "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// POST /api/chat/messages with any body.
async fn send(app: &TestApp, token: &str, body: &Value) -> Reply {
    app.client.post("/api/chat/messages", Some(token), body).await
}

/// Posts `content` and insists on 201.
async fn post(app: &TestApp, token: &str, channel: &str, content: &str) -> Value {
    let reply = send(app, token, &json!({"content": content, "channel_id": channel})).await;
    reply.assert_status(201).clone()
}

async fn reply_to(app: &TestApp, token: &str, channel: &str, parent: &str, content: &str) -> Reply {
    send(app, token, &json!({"content": content, "channel_id": channel, "parent_id": parent})).await
}

async fn get_message(app: &TestApp, token: &str, id: &str) -> Reply {
    app.client.get(&format!("/api/chat/messages/{id}"), Some(token)).await
}

async fn history(app: &TestApp, token: &str, channel: &str, query: &str) -> Reply {
    app.client.get(&format!("/api/chat/channels/{channel}/messages{query}"), Some(token)).await
}

async fn search(app: &TestApp, token: &str, query: &str) -> Reply {
    app.client.get(&format!("/api/search/messages?{query}"), Some(token)).await
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

fn items(reply: &Reply) -> &Vec<Value> {
    reply.assert_status(200)["items"].as_array().unwrap()
}

fn contents(reply: &Reply) -> Vec<String> {
    items(reply).iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

fn uuid(raw: &str) -> Uuid {
    raw.parse().unwrap()
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Seq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// `SELECT count(*) AS n ... WHERE ... = $1` against the test database.
async fn count_where(app: &TestApp, sql: &str, param: Uuid) -> i64 {
    let mut conn = app.db().await;
    diesel::sql_query(sql).bind::<SqlUuid, _>(param).get_result::<Count>(&mut conn).await.unwrap().n
}

/// `SELECT seq ... WHERE ... = $1 ORDER BY seq` against the test database.
async fn seqs_where(app: &TestApp, sql: &str, param: Uuid) -> Vec<i64> {
    let mut conn = app.db().await;
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(param)
        .load::<Seq>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.seq)
        .collect()
}

async fn last_seq(app: &TestApp, channel: &str) -> i64 {
    let mut conn = app.db().await;
    diesel::sql_query("SELECT last_seq AS seq FROM channels WHERE id = $1")
        .bind::<SqlUuid, _>(uuid(channel))
        .get_result::<Seq>(&mut conn)
        .await
        .unwrap()
        .seq
}

/// Two users in one public channel: the usual cast.
struct Room {
    app: TestApp,
    owner: String,
    member: String,
    channel: String,
}

async fn room() -> Room {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let member = app.user("member").await;
    let channel = create_channel(&app, &owner, "general", false).await;
    join(&app, &member, &channel).await;
    Room { app, owner, member, channel }
}

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------------------
// Sending.

#[tokio::test]
async fn seed_send_a_message_example_has_the_documented_shape() {
    let app = TestApp::spawn().await;
    let token = app.user("johndoe").await;
    let me = app.client.get("/api/users/me", Some(&token)).await.body;
    let channel = create_channel(&app, &token, "general", false).await;

    let reply = app
        .client
        .send(
            app.client
                .request(Method::POST, "/api/chat/messages", Some(&token))
                .header("content-type", "application/json")
                .body(format!(r#"{{"content": "Hello, world!", "channel_id": "{channel}"}}"#)),
        )
        .await;
    let message = reply.assert_status(201);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"), "{:?}", reply.headers);
    // The fields of docs/api.md section 0, exactly as shown.
    assert_eq!(message["content"], "Hello, world!");
    assert_eq!(message["user_id"], me["id"]);
    assert_eq!(message["channel_id"], channel.as_str());
    let created_at = message["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "{created_at}");
    assert!(
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339).is_ok(),
        "{created_at}"
    );
    let message_id = uuid(id(message));
    assert_eq!(message_id.get_version_num(), 7, "ids are UUIDv7");
    // And the rest of docs/api.md's Message (section 5).
    assert_eq!(
        sorted_keys(message),
        [
            "attachments",
            "channel_id",
            "content",
            "created_at",
            "deleted",
            "edited_at",
            "id",
            "mentions",
            "mentions_everyone",
            "parent_id",
            "pinned",
            "reactions",
            "reply_count",
            "seq",
            "user",
            "user_id",
        ]
    );
    // seq 1 was the owner joining; the message is the channel's next event.
    assert_eq!(message["seq"], 2);
    assert_eq!(message["parent_id"], Value::Null);
    assert_eq!(message["reply_count"], 0);
    assert_eq!(message["edited_at"], Value::Null);
    assert_eq!(message["deleted"], false);
    assert_eq!(message["user"], json!({"id": me["id"], "username": "johndoe", "display_name": "johndoe"}));
    assert_eq!(message["attachments"], json!([]));
    assert_eq!(message["reactions"], json!([]));

    // GET returns the same message.
    let fetched = get_message(&app, &token, id(message)).await;
    assert_eq!(fetched.assert_status(200), message);
}

#[tokio::test]
async fn only_members_who_are_not_banned_may_post() {
    let Room { app, owner, member, channel } = room().await;
    let outsider = app.user("outsider").await;
    // Public channel, not a member: it exists, so 403.
    send(&app, &outsider, &json!({"content": "hi", "channel_id": channel})).await.assert_error(403, "forbidden");
    // Private channel, not a member: never confirmed, 404.
    let private = create_channel(&app, &owner, "secret", true).await;
    send(&app, &outsider, &json!({"content": "hi", "channel_id": private})).await.assert_error(404, "not_found");
    // A channel that does not exist.
    send(&app, &outsider, &json!({"content": "hi", "channel_id": Uuid::now_v7()})).await.assert_error(404, "not_found");
    // Banned from the public channel: 403.
    post(&app, &member, &channel, "before the ban").await;
    ban(&app, &owner, &channel, "member").await;
    send(&app, &member, &json!({"content": "after the ban", "channel_id": channel}))
        .await
        .assert_error(403, "forbidden");
    // Anonymous: 401.
    app.client
        .post("/api/chat/messages", None, &json!({"content": "hi", "channel_id": channel}))
        .await
        .assert_error(401, "not_authenticated");
}

#[tokio::test]
async fn content_is_1_to_4000_characters_after_trimming() {
    let Room { app, owner, channel, .. } = room().await;
    let exactly = "x".repeat(4000);
    let message = post(&app, &owner, &channel, &exactly).await;
    assert_eq!(message["content"].as_str().unwrap().len(), 4000);
    // Characters, not bytes.
    post(&app, &owner, &channel, &"é".repeat(4000)).await;
    // Surrounding white space does not count and is not kept.
    let padded = post(&app, &owner, &channel, &format!("  {exactly}\n")).await;
    assert_eq!(padded["content"], exactly.as_str());

    for content in [json!("x".repeat(4001)), json!(""), json!("   \n\t "), json!(null), json!(5)] {
        let reply = send(&app, &owner, &json!({"content": content, "channel_id": channel})).await;
        reply.assert_error(422, "validation_error");
        assert_eq!(reply.body["errors"][0]["field"], "content", "{content}");
    }
    // Missing fields and malformed ids are schema errors too.
    send(&app, &owner, &json!({"content": "hi"})).await.assert_error(422, "validation_error");
    send(&app, &owner, &json!({"content": "hi", "channel_id": "not-a-uuid"}))
        .await
        .assert_error(422, "validation_error");
    // Nothing refused was stored: two joins and three messages.
    assert_eq!(last_seq(&app, &channel).await, 5);
}

#[tokio::test]
async fn empty_content_is_allowed_only_with_attachments() {
    let Room { app, owner, channel, .. } = room().await;
    let file = app.client.upload(Some(&owner), "notes.txt", b"some notes".to_vec()).await;
    let file = file.assert_status(201).clone();
    let reply =
        send(&app, &owner, &json!({"content": "", "channel_id": channel, "attachment_ids": [file["id"]]})).await;
    let message = reply.assert_status(201);
    assert_eq!(message["content"], "");
    assert_eq!(message["attachments"], json!([file]));
    send(&app, &owner, &json!({"content": "", "channel_id": channel, "attachment_ids": []}))
        .await
        .assert_error(422, "validation_error");
}

// ---------------------------------------------------------------------------------------
// Threads.

#[tokio::test]
async fn threads_are_one_level_deep_and_stay_in_their_channel() {
    let Room { app, owner, member, channel } = room().await;
    let parent = post(&app, &owner, &channel, "parent").await;
    let reply = reply_to(&app, &member, &channel, id(&parent), "a reply").await;
    let reply = reply.assert_status(201).clone();
    assert_eq!(reply["parent_id"], parent["id"]);

    // A reply to a reply.
    let nested = reply_to(&app, &owner, &channel, id(&reply), "nested").await;
    nested.assert_error(422, "validation_error");
    assert_eq!(nested.body["errors"][0]["field"], "parent_id");

    // A reply in one channel to a message of another.
    let other = create_channel(&app, &owner, "other", false).await;
    let elsewhere = reply_to(&app, &owner, &other, id(&parent), "cross-channel").await;
    elsewhere.assert_error(422, "validation_error");
    assert_eq!(elsewhere.body["errors"][0]["field"], "parent_id");

    // A parent that does not exist.
    let orphan = reply_to(&app, &owner, &channel, &Uuid::now_v7().to_string(), "orphan").await;
    orphan.assert_error(422, "validation_error");
    // A parent in a private channel the sender cannot see gets the very same answer: the
    // refusal must not confirm that the message exists (docs/api.md section 1).
    let stranger = app.user("stranger").await;
    let hidden = create_channel(&app, &stranger, "hidden", true).await;
    let secret = post(&app, &stranger, &hidden, "secret").await;
    let probe = reply_to(&app, &owner, &channel, id(&secret), "probe").await;
    probe.assert_error(422, "validation_error");
    assert_eq!(probe.body, orphan.body);

    // None of the refused replies counted.
    let parent = get_message(&app, &owner, id(&parent)).await;
    assert_eq!(parent.assert_status(200)["reply_count"], 1);
}

#[tokio::test]
async fn reply_count_increments_and_replies_list_oldest_first_by_pages() {
    let Room { app, owner, member, channel } = room().await;
    let parent = post(&app, &owner, &channel, "parent").await;
    let parent_id = id(&parent).to_owned();
    for i in 1..=5 {
        let token = if i % 2 == 0 { &owner } else { &member };
        reply_to(&app, token, &channel, &parent_id, &format!("reply {i}")).await.assert_status(201);
        let fetched = get_message(&app, &owner, &parent_id).await;
        assert_eq!(fetched.assert_status(200)["reply_count"], i);
    }
    // Another thread's replies never show up in this one.
    let other = post(&app, &owner, &channel, "other parent").await;
    reply_to(&app, &owner, &channel, id(&other), "elsewhere").await.assert_status(201);

    let mut seen = Vec::new();
    let mut path = format!("/api/chat/messages/{parent_id}/replies?limit=2");
    let mut pages = 0;
    loop {
        let page = app.client.get(&path, Some(&member)).await;
        let body = page.assert_status(200).clone();
        for item in body["items"].as_array().unwrap() {
            assert_eq!(item["parent_id"], parent_id.as_str());
            seen.push(item["content"].as_str().unwrap().to_owned());
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/chat/messages/{parent_id}/replies?limit=2&after={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ["reply 1", "reply 2", "reply 3", "reply 4", "reply 5"]);
    assert_eq!(pages, 3);

    for bad in ["0", "201", "abc"] {
        app.client
            .get(&format!("/api/chat/messages/{parent_id}/replies?limit={bad}"), Some(&member))
            .await
            .assert_error(422, "validation_error");
    }
    app.client
        .get(&format!("/api/chat/messages/{}/replies", Uuid::now_v7()), Some(&member))
        .await
        .assert_error(404, "not_found");
}

// ---------------------------------------------------------------------------------------
// Editing and deleting.

#[tokio::test]
async fn only_the_author_edits_and_an_edit_sets_edited_at() {
    let Room { app, owner, member, channel } = room().await;
    let message = post(&app, &member, &channel, "first draft").await;
    let path = format!("/api/chat/messages/{}", id(&message));

    // Not even the channel owner edits someone else's words.
    app.client.patch(&path, Some(&owner), &json!({"content": "hijacked"})).await.assert_error(403, "forbidden");

    let edited = app.client.patch(&path, Some(&member), &json!({"content": "  final text  "})).await;
    let edited = edited.assert_status(200).clone();
    assert_eq!(edited["content"], "final text");
    assert_eq!(edited["id"], message["id"]);
    assert_eq!(edited["seq"], message["seq"], "an edit keeps the message's seq");
    assert_eq!(edited["created_at"], message["created_at"]);
    let edited_at = edited["edited_at"].as_str().unwrap();
    assert!(edited_at.ends_with('Z'));
    assert!(edited_at >= message["created_at"].as_str().unwrap());

    let fetched = get_message(&app, &owner, id(&message)).await;
    assert_eq!(fetched.assert_status(200)["content"], "final text");
    assert_eq!(fetched.body["edited_at"], edited_at);

    for bad in [json!({"content": ""}), json!({"content": "x".repeat(4001)}), json!({})] {
        app.client.patch(&path, Some(&member), &bad).await.assert_error(422, "validation_error");
    }
    app.client
        .patch(&format!("/api/chat/messages/{}", Uuid::now_v7()), Some(&member), &json!({"content": "x"}))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn deleting_leaves_a_tombstone_that_keeps_its_thread() {
    let Room { app, owner, member, channel } = room().await;
    let bystander = app.user("bystander").await;
    join(&app, &bystander, &channel).await;

    let parent = post(&app, &member, &channel, "a thread starter").await;
    let reply = reply_to(&app, &owner, &channel, id(&parent), "a reply").await;
    let reply = reply.assert_status(201).clone();
    app.client
        .post(&format!("/api/chat/messages/{}/reactions", id(&parent)), Some(&owner), &json!({"emoji": "👍"}))
        .await
        .assert_status(200);

    // A member who is neither the author nor the owner may not delete.
    app.client
        .delete(&format!("/api/chat/messages/{}", id(&parent)), Some(&bystander))
        .await
        .assert_error(403, "forbidden");

    // The author deletes.
    app.client.delete(&format!("/api/chat/messages/{}", id(&parent)), Some(&member)).await.assert_status(204);
    let tombstone = get_message(&app, &bystander, id(&parent)).await;
    let tombstone = tombstone.assert_status(200);
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["content"], "");
    assert_eq!(tombstone["seq"], parent["seq"]);
    assert_eq!(tombstone["reactions"], json!([]));
    // Still in history, in its place.
    let page = history(&app, &bystander, &channel, "").await;
    let listed: Vec<&Value> = items(&page).iter().filter(|m| m["id"] == parent["id"]).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["deleted"], true);
    assert_eq!(listed[0]["content"], "");
    // The thread stays.
    let replies = app.client.get(&format!("/api/chat/messages/{}/replies", id(&parent)), Some(&bystander)).await;
    assert_eq!(contents(&replies), ["a reply"]);
    // A tombstone is not edited back to life.
    app.client
        .patch(&format!("/api/chat/messages/{}", id(&parent)), Some(&member), &json!({"content": "resurrected"}))
        .await
        .assert_error(404, "not_found");

    // The channel owner deletes someone else's message (here, a reply; the thread keeps
    // its shape).
    let other = post(&app, &bystander, &channel, "bystander's words").await;
    app.client.delete(&format!("/api/chat/messages/{}", id(&other)), Some(&owner)).await.assert_status(204);
    assert_eq!(get_message(&app, &bystander, id(&other)).await.body["deleted"], true);
    app.client.delete(&format!("/api/chat/messages/{}", id(&reply)), Some(&owner)).await.assert_status(204);
    let replies = app.client.get(&format!("/api/chat/messages/{}/replies", id(&parent)), Some(&member)).await;
    assert_eq!(items(&replies).len(), 1);
    assert_eq!(items(&replies)[0]["deleted"], true);

    // Deleting twice is harmless; deleting nothing is 404.
    app.client.delete(&format!("/api/chat/messages/{}", id(&parent)), Some(&member)).await.assert_status(204);
    app.client
        .delete(&format!("/api/chat/messages/{}", Uuid::now_v7()), Some(&member))
        .await
        .assert_error(404, "not_found");
    // The rows are still there: no holes in seq.
    assert_eq!(count_where(&app, "SELECT count(*) AS n FROM messages WHERE channel_id = $1", uuid(&channel)).await, 3);
}

// ---------------------------------------------------------------------------------------
// Idempotent send.

async fn count_messages(app: &TestApp, channel: &str) -> i64 {
    count_where(app, "SELECT count(*) AS n FROM messages WHERE channel_id = $1", uuid(channel)).await
}

async fn count_events(app: &TestApp, channel: &str) -> i64 {
    count_where(app, "SELECT count(*) AS n FROM channel_events WHERE channel_id = $1", uuid(channel)).await
}

#[tokio::test]
async fn a_repeated_nonce_returns_the_first_message_and_stores_one_row() {
    let Room { app, owner, member, channel } = room().await;
    let body = json!({"content": "exactly once", "channel_id": channel, "nonce": "n-1"});
    let first = send(&app, &owner, &body).await;
    let first = first.assert_status(201).clone();
    let events_after_first = count_events(&app, &channel).await;

    let again = send(&app, &owner, &body).await;
    assert_eq!(again.assert_status(200)["id"], first["id"]);
    assert_eq!(again.body["seq"], first["seq"]);
    // Even with different content, the nonce names the first message.
    let changed = send(&app, &owner, &json!({"content": "different", "channel_id": channel, "nonce": "n-1"})).await;
    assert_eq!(changed.assert_status(200)["id"], first["id"]);
    assert_eq!(changed.body["content"], "exactly once");

    assert_eq!(count_messages(&app, &channel).await, 1);
    assert_eq!(
        count_where(
            &app,
            "SELECT count(*) AS n FROM messages WHERE channel_id = $1 AND content = 'exactly once'",
            uuid(&channel)
        )
        .await,
        1
    );
    assert_eq!(count_events(&app, &channel).await, events_after_first, "a repeat broadcasts nothing new");

    // The nonce belongs to the sender and the channel.
    send(&app, &member, &json!({"content": "mine", "channel_id": channel, "nonce": "n-1"})).await.assert_status(201);
    let other = create_channel(&app, &owner, "other", false).await;
    send(&app, &owner, &json!({"content": "elsewhere", "channel_id": other, "nonce": "n-1"})).await.assert_status(201);
    assert_eq!(count_messages(&app, &channel).await, 2);

    // Concurrent repeats still make one row.
    let mut calls = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let owner = owner.clone();
        let body = json!({"content": "racing", "channel_id": channel, "nonce": "race"});
        calls.push(tokio::spawn(async move { client.post("/api/chat/messages", Some(&owner), &body).await }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for call in calls {
        let reply = call.await.unwrap();
        assert!(matches!(reply.status.as_u16(), 200 | 201), "{}", reply.text);
        created += usize::from(reply.status.as_u16() == 201);
        ids.insert(reply.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), created), (1, 1));
    assert_eq!(count_messages(&app, &channel).await, 3);
}

#[tokio::test]
async fn the_idempotency_key_header_works_like_a_nonce() {
    let Room { app, owner, channel, .. } = room().await;
    let request = || {
        app.client
            .request(Method::POST, "/api/chat/messages", Some(&owner))
            .header("Idempotency-Key", "key-42")
            .json(&json!({"content": "with a key", "channel_id": channel}))
    };
    let first = app.client.send(request()).await;
    let first = first.assert_status(201).clone();
    let again = app.client.send(request()).await;
    assert_eq!(again.assert_status(200)["id"], first["id"]);
    assert_eq!(count_messages(&app, &channel).await, 1);
    // The same value as a body nonce names the same message.
    let as_nonce =
        send(&app, &owner, &json!({"content": "with a key", "channel_id": channel, "nonce": "key-42"})).await;
    assert_eq!(as_nonce.assert_status(200)["id"], first["id"]);
    assert_eq!(count_messages(&app, &channel).await, 1);
}

// ---------------------------------------------------------------------------------------
// History.

/// Posts `n` messages `m1..mn` and returns them oldest first.
async fn fill(app: &TestApp, token: &str, channel: &str, n: usize) -> Vec<Value> {
    let mut posted = Vec::new();
    for i in 1..=n {
        posted.push(post(app, token, channel, &format!("m{i}")).await);
    }
    posted
}

#[tokio::test]
async fn history_pages_back_in_time_with_no_overlap_and_no_gap() {
    let Room { app, owner, member, channel } = room().await;
    let posted = fill(&app, &owner, &channel, 25).await;

    let mut walked = Vec::new();
    let mut query = "?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let page = history(&app, &member, &channel, &query).await;
        let body = page.assert_status(200).clone();
        let seqs: Vec<i64> = body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
        walked.extend(contents(&page));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=10&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (1..=25).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(walked, expected);

    // The default page is 50, newest first.
    let all = history(&app, &member, &channel, "").await;
    assert_eq!(contents(&all), expected);
    assert_eq!(all.body["next_cursor"], Value::Null);

    // `before=<message id>`: older than that message, newest first, excluding it.
    let tenth = id(&posted[9]);
    let before = history(&app, &member, &channel, &format!("?before={tenth}&limit=3")).await;
    assert_eq!(contents(&before), ["m9", "m8", "m7"]);
    // `after=<message id>`: newer, oldest first, excluding it.
    let after = history(&app, &member, &channel, &format!("?after={tenth}&limit=5")).await;
    assert_eq!(contents(&after), ["m11", "m12", "m13", "m14", "m15"]);
    let cursor = after.body["next_cursor"].as_str().unwrap().to_owned();
    let onward = history(&app, &member, &channel, &format!("?after={cursor}&limit=5")).await;
    assert_eq!(contents(&onward), ["m16", "m17", "m18", "m19", "m20"]);
    let newest = id(&posted[24]);
    let nothing = history(&app, &member, &channel, &format!("?after={newest}")).await;
    assert!(items(&nothing).is_empty());
    assert_eq!(nothing.body["next_cursor"], Value::Null);
    let oldest = id(&posted[0]);
    let nothing = history(&app, &member, &channel, &format!("?before={oldest}")).await;
    assert!(items(&nothing).is_empty());

    // A public channel's history is a preview for non-members too.
    let outsider = app.user("outsider").await;
    let preview = history(&app, &outsider, &channel, "?limit=1").await;
    assert_eq!(contents(&preview), ["m25"]);
}

#[tokio::test]
async fn history_limit_is_1_to_200_and_cursors_are_checked() {
    let Room { app, owner, channel, .. } = room().await;
    fill(&app, &owner, &channel, 3).await;
    for query in ["?limit=0", "?limit=201", "?limit=abc", "?limit=-1"] {
        let reply = history(&app, &owner, &channel, query).await;
        reply.assert_error(422, "validation_error");
    }
    for query in ["?limit=1", "?limit=200"] {
        history(&app, &owner, &channel, query).await.assert_status(200);
    }
    assert_eq!(items(&history(&app, &owner, &channel, "?limit=1").await).len(), 1);
    // Garbage cursors and message ids of other channels are refused, not ignored.
    let other = create_channel(&app, &owner, "other", false).await;
    let foreign = post(&app, &owner, &other, "elsewhere").await;
    for query in ["?before=%%%".to_owned(), "?after=not-a-cursor!".to_owned(), format!("?before={}", id(&foreign))] {
        history(&app, &owner, &channel, &query).await.assert_error(422, "validation_error");
    }
    history(&app, &owner, &Uuid::now_v7().to_string(), "").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn history_shows_top_level_messages_only_replies_live_in_their_thread() {
    // A documented design choice (docs/api.md section 5: "page of thread replies" is its own
    // endpoint); Slack's channel view works the same way.
    let Room { app, owner, member, channel } = room().await;
    let parent = post(&app, &owner, &channel, "top").await;
    reply_to(&app, &member, &channel, id(&parent), "in the thread").await.assert_status(201);
    post(&app, &member, &channel, "also top").await;
    let page = history(&app, &owner, &channel, "").await;
    assert_eq!(contents(&page), ["also top", "top"]);
    assert_eq!(items(&page)[1]["reply_count"], 1);
    let after = history(&app, &owner, &channel, &format!("?after={}", id(&parent))).await;
    assert_eq!(contents(&after), ["also top"]);
}

// ---------------------------------------------------------------------------------------
// Reactions.

#[tokio::test]
async fn reactions_are_idempotent_per_user_and_emoji() {
    let Room { app, owner, member, channel } = room().await;
    let message = post(&app, &owner, &channel, "react to me").await;
    let path = format!("/api/chat/messages/{}/reactions", id(&message));

    let first = app.client.post(&path, Some(&owner), &json!({"emoji": "👍"})).await;
    assert_eq!(first.assert_status(200), &json!([{"emoji": "👍", "count": 1, "users": ["owner"], "me": true}]));
    let again = app.client.post(&path, Some(&owner), &json!({"emoji": "👍"})).await;
    assert_eq!(again.assert_status(200), &first.body, "idempotent");
    let events = count_events(&app, &channel).await;

    let second = app.client.post(&path, Some(&member), &json!({"emoji": "👍"})).await;
    assert_eq!(
        second.assert_status(200),
        &json!([{"emoji": "👍", "count": 2, "users": ["owner", "member"], "me": true}])
    );
    let third = app.client.post(&path, Some(&member), &json!({"emoji": ":tada:"})).await;
    assert_eq!(
        third.assert_status(200),
        &json!([
            {"emoji": "👍", "count": 2, "users": ["owner", "member"], "me": true},
            {"emoji": ":tada:", "count": 1, "users": ["member"], "me": true},
        ])
    );
    assert_eq!(count_events(&app, &channel).await, events + 2);

    // The listing, as the owner sees it.
    let listed = app.client.get(&path, Some(&owner)).await;
    assert_eq!(
        listed.assert_status(200),
        &json!([
            {"emoji": "👍", "count": 2, "users": ["owner", "member"], "me": true},
            {"emoji": ":tada:", "count": 1, "users": ["member"], "me": false},
        ])
    );
    // A public channel's non-member may read them too.
    let outsider = app.user("outsider").await;
    let seen = app.client.get(&path, Some(&outsider)).await;
    assert_eq!(seen.assert_status(200)[0]["me"], false);

    // Removing.
    app.client.delete(&format!("{path}/👍"), Some(&owner)).await.assert_status(204);
    app.client.delete(&format!("{path}/%F0%9F%91%8D"), Some(&owner)).await.assert_status(204);
    let listed = app.client.get(&path, Some(&owner)).await;
    assert_eq!(
        listed.assert_status(200),
        &json!([
            {"emoji": "👍", "count": 1, "users": ["member"], "me": false},
            {"emoji": ":tada:", "count": 1, "users": ["member"], "me": false},
        ])
    );
    // Removing takes only your own reaction.
    app.client.delete(&format!("{path}/:tada:"), Some(&owner)).await.assert_status(204);
    assert_eq!(app.client.get(&path, Some(&owner)).await.body[1]["count"], 1);
    app.client.delete(&format!("{path}/:tada:"), Some(&member)).await.assert_status(204);
    assert_eq!(
        app.client.get(&path, Some(&owner)).await.body,
        json!([{"emoji": "👍", "count": 1, "users": ["member"], "me": false}])
    );
}

#[tokio::test]
async fn an_emoji_is_one_grapheme_or_a_short_code() {
    let Room { app, owner, channel, .. } = room().await;
    let message = post(&app, &owner, &channel, "react to me").await;
    let path = format!("/api/chat/messages/{}/reactions", id(&message));
    for good in [
        "👍🏽",
        "🇫🇷",
        "👨‍👩‍👧",
        "❤️",
        "©️",
        "#️⃣",
        "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ":+1:",
        ":white_check_mark:",
    ] {
        app.client.post(&path, Some(&owner), &json!({"emoji": good})).await.assert_status(200);
    }
    for bad in [
        json!("abc"),
        json!("a"),
        json!(""),
        json!("👍👍"),
        json!(":Thumbs:"),
        json!("::"),
        json!(format!(":{}:", "a".repeat(33))),
        json!("<script>"),
        json!(7),
        // Not ASCII, yet not an emoji either: symbols, punctuation, and characters that
        // would make an invisible or text-reversing "reaction".
        json!("€"),
        json!("→"),
        json!("。"),
        json!("\u{200B}"),
        json!("\u{200D}"),
        json!("\u{202E}"),
        json!("\u{301}"),
        json!("\u{FE0F}"),
        json!("👍\u{301}"),
    ] {
        let reply = app.client.post(&path, Some(&owner), &json!({"emoji": bad})).await;
        reply.assert_error(422, "validation_error");
        assert_eq!(reply.body["errors"][0]["field"], "emoji", "{bad}");
    }
    app.client.delete(&format!("{path}/abc"), Some(&owner)).await.assert_error(422, "validation_error");
    app.client
        .post(&format!("/api/chat/messages/{}/reactions", Uuid::now_v7()), Some(&owner), &json!({"emoji": "👍"}))
        .await
        .assert_error(404, "not_found");
}

/// "No endpoint returns an unbounded list" (docs/api.md section 1): the reactions listing and
/// every message that embeds them. Short codes are endless, so the number of different
/// reactions on one message is capped (as in Discord and Slack).
#[tokio::test]
async fn a_message_holds_a_bounded_number_of_different_reactions() {
    let Room { app, owner, member, channel } = room().await;
    let message = post(&app, &owner, &channel, "react to me").await;
    let path = format!("/api/chat/messages/{}/reactions", id(&message));
    for i in 0..50 {
        app.client.post(&path, Some(&owner), &json!({"emoji": format!(":r{i}:")})).await.assert_status(200);
    }
    let refused = app.client.post(&path, Some(&owner), &json!({"emoji": ":one_too_many:"})).await;
    refused.assert_error(409, "too_many_reactions");
    // Joining an existing reaction is always possible, and so is repeating one's own.
    let joined = app.client.post(&path, Some(&member), &json!({"emoji": ":r7:"})).await;
    let groups = joined.assert_status(200).as_array().unwrap();
    assert_eq!(groups.len(), 50);
    assert_eq!(groups[7]["count"], 2);
    app.client.post(&path, Some(&owner), &json!({"emoji": ":r0:"})).await.assert_status(200);
    assert_eq!(get_message(&app, &member, id(&message)).await.body["reactions"].as_array().unwrap().len(), 50);
    // Freeing a place makes room for a new one.
    app.client.delete(&format!("{path}/:r0:"), Some(&owner)).await.assert_status(204);
    app.client.post(&path, Some(&member), &json!({"emoji": ":new:"})).await.assert_status(200);
    assert_eq!(
        count_where(&app, "SELECT count(DISTINCT emoji) AS n FROM reactions WHERE message_id = $1", uuid(id(&message)))
            .await,
        50
    );
}

#[tokio::test]
async fn messages_embed_reactions_with_me_for_the_viewer() {
    let Room { app, owner, member, channel } = room().await;
    let message = post(&app, &owner, &channel, "react to me").await;
    let path = format!("/api/chat/messages/{}/reactions", id(&message));
    app.client.post(&path, Some(&member), &json!({"emoji": "🎉"})).await.assert_status(200);
    app.client.post(&path, Some(&owner), &json!({"emoji": "🎉"})).await.assert_status(200);
    app.client.post(&path, Some(&owner), &json!({"emoji": ":eyes:"})).await.assert_status(200);

    let as_member = get_message(&app, &member, id(&message)).await;
    assert_eq!(
        as_member.assert_status(200)["reactions"],
        json!([{"emoji": "🎉", "count": 2, "me": true}, {"emoji": ":eyes:", "count": 1, "me": false}])
    );
    let as_owner = get_message(&app, &owner, id(&message)).await;
    assert_eq!(
        as_owner.body["reactions"],
        json!([{"emoji": "🎉", "count": 2, "me": true}, {"emoji": ":eyes:", "count": 1, "me": true}])
    );
    let outsider = app.user("outsider").await;
    let page = history(&app, &outsider, &channel, "").await;
    assert_eq!(
        items(&page)[0]["reactions"],
        json!([{"emoji": "🎉", "count": 2, "me": false}, {"emoji": ":eyes:", "count": 1, "me": false}])
    );
    let page = history(&app, &member, &channel, "").await;
    assert_eq!(items(&page)[0]["reactions"][0]["me"], true);
    assert_eq!(items(&page)[0]["reactions"][1]["me"], false);
}

// ---------------------------------------------------------------------------------------
// Search.

#[tokio::test]
async fn search_finds_by_word_best_match_first() {
    let Room { app, owner, member, channel } = room().await;
    post(
        &app,
        &owner,
        &channel,
        "a long message that mentions the platypus only once among many other words about \
         weather, lunch plans, deployment schedules and the colour of the office walls",
    )
    .await;
    let best = post(&app, &member, &channel, "platypus platypus platypus").await;
    post(&app, &owner, &channel, "nothing to see here").await;
    // Stemming: "deployments" finds "deployment".
    let found = search(&app, &member, "q=deployments").await;
    assert_eq!(items(&found).len(), 1);

    let found = search(&app, &member, "q=platypus").await;
    let hits = items(&found);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["id"], best["id"], "best match first");
    // Full Message objects.
    assert_eq!(hits[0]["user"]["username"], "member");
    assert_eq!(hits[0]["channel_id"], channel.as_str());
    assert!(hits[0]["reactions"].is_array());

    // Restricted to one channel.
    let other = create_channel(&app, &owner, "other", false).await;
    post(&app, &owner, &other, "platypus elsewhere").await;
    assert_eq!(items(&search(&app, &owner, "q=platypus").await).len(), 3);
    let only = search(&app, &owner, &format!("q=platypus&channel_id={other}")).await;
    assert_eq!(contents(&only), ["platypus elsewhere"]);

    // Deleted messages are not found; edits are.
    app.client.delete(&format!("/api/chat/messages/{}", id(&best)), Some(&member)).await.assert_status(204);
    assert_eq!(items(&search(&app, &owner, "q=platypus").await).len(), 2);
    let plain = post(&app, &owner, &channel, "plain words").await;
    app.client
        .patch(&format!("/api/chat/messages/{}", id(&plain)), Some(&owner), &json!({"content": "now with an axolotl"}))
        .await
        .assert_status(200);
    assert_eq!(contents(&search(&app, &owner, "q=axolotl").await), ["now with an axolotl"]);
    assert!(items(&search(&app, &owner, "q=plain").await).is_empty());
}

#[tokio::test]
async fn search_pages_with_before_next_cursor() {
    let Room { app, owner, channel, .. } = room().await;
    let mut planted = BTreeSet::new();
    // Ranks in pairs of equals, so the cursor must break ties as well as order by rank.
    for i in 0..7 {
        let message =
            post(&app, &owner, &channel, &format!("{} number {i}", vec!["wombat"; 1 + i / 2].join(" "))).await;
        planted.insert(id(&message).to_owned());
    }
    let mut seen = Vec::new();
    let mut query = "q=wombat&limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = search(&app, &owner, &query).await;
        let body = page.assert_status(200).clone();
        for item in body["items"].as_array().unwrap() {
            seen.push(id(item).to_owned());
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("q=wombat&limit=3&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7, "no duplicates, nothing missed: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), planted);
    // Best match first across pages: more wombats rank higher.
    let mut wombats = Vec::new();
    for id in &seen {
        let message = get_message(&app, &owner, id).await;
        wombats.push(message.body["content"].as_str().unwrap().matches("wombat").count());
    }
    assert!(wombats.windows(2).all(|w| w[0] >= w[1]), "{wombats:?}");
    assert_eq!(wombats[0], 4);
}

#[tokio::test]
async fn search_requires_q_and_checks_its_parameters() {
    let Room { app, owner, .. } = room().await;
    for query in ["", "q=", "q=%20%20", "q=x&limit=0", "q=x&limit=201", "q=x&limit=abc", "q=x&before=%%%"] {
        search(&app, &owner, query).await.assert_error(422, "validation_error");
    }
    app.client.get("/api/search/messages?q=x", None).await.assert_error(401, "not_authenticated");
    // Operators and punctuation are words, never SQL or syntax errors.
    for query in ["q=%22exact%20phrase%22", "q=a%20or%20b", "q=-x", "q=%27%3B%20DROP", "q=%26%7C%21%3A*"] {
        search(&app, &owner, query).await.assert_status(200);
    }
}

/// The strong one: a unique word planted in every place the caller must not see, and the
/// caller searches for each, for all of them at once, and for a word they share with visible
/// messages, walking every page.
#[tokio::test]
async fn search_never_returns_what_the_caller_may_not_read() {
    let app = TestApp::spawn().await;
    let eve = app.user("eve").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    // Places eve may read: her public channel, her private channel, her DM with bob.
    let open = create_channel(&app, &bob, "open", false).await;
    join(&app, &eve, &open).await;
    let club = create_channel(&app, &bob, "club", true).await;
    invite(&app, &bob, &club, "eve").await;
    let eve_dm = dm(&app, &eve, "bob").await;

    // Places she may not.
    let private = create_channel(&app, &bob, "private", true).await;
    invite(&app, &bob, &private, "carol").await;
    let banned_public = create_channel(&app, &bob, "banned-public", false).await;
    join(&app, &eve, &banned_public).await;
    let banned_private = create_channel(&app, &bob, "banned-private", true).await;
    invite(&app, &bob, &banned_private, "eve").await;
    let others_dm = dm(&app, &bob, "carol").await;
    let unjoined_public = create_channel(&app, &carol, "unjoined", false).await;
    let left = create_channel(&app, &carol, "left", false).await;
    join(&app, &eve, &left).await;

    let visible = [(&open, "visibleopen"), (&club, "visibleclub"), (&eve_dm, "visibledm")];
    for (channel, word) in visible {
        post(&app, &bob, channel, &format!("{word} sharedword")).await;
    }
    // Eve writes in the channels she is then banned from or leaves: her own words there are
    // gone from her search too.
    let hidden = [
        (&private, &bob, "secretprivate"),
        (&private, &carol, "secretprivatecarol"),
        (&banned_public, &bob, "secretbannedpublic"),
        (&banned_public, &eve, "secretbannedpubliceve"),
        (&banned_private, &bob, "secretbannedprivate"),
        (&banned_private, &eve, "secretbannedprivateeve"),
        (&others_dm, &bob, "secretdmbob"),
        (&others_dm, &carol, "secretdmcarol"),
        (&unjoined_public, &carol, "secretunjoined"),
        (&left, &eve, "secretlefteve"),
        (&left, &carol, "secretleftcarol"),
    ];
    for (channel, token, word) in hidden {
        let message = post(&app, token, channel, &format!("{word} sharedword")).await;
        // Threads too.
        reply_to(&app, token, channel, id(&message), &format!("{word} reply sharedword")).await.assert_status(201);
    }
    ban(&app, &bob, &banned_public, "eve").await;
    ban(&app, &bob, &banned_private, "eve").await;
    app.client.post_empty(&format!("/api/channels/{left}/leave"), Some(&eve)).await.assert_status(204);

    let allowed: HashSet<&str> = [open.as_str(), club.as_str(), eve_dm.as_str()].into();
    let check_page = |reply: &Reply| {
        for item in items(reply) {
            let content = item["content"].as_str().unwrap();
            assert!(
                allowed.contains(item["channel_id"].as_str().unwrap()),
                "leaked from a channel eve may not read: {content}"
            );
            assert!(!content.contains("secret"), "leaked: {content}");
        }
    };

    for (_, _, word) in hidden {
        let found = search(&app, &eve, &format!("q={word}")).await;
        check_page(&found);
        assert!(items(&found).is_empty(), "{word}: {}", found.text);
        // Naming the channel does not help.
        for channel in [&private, &banned_public, &banned_private, &others_dm, &unjoined_public, &left] {
            let found = search(&app, &eve, &format!("q={word}&channel_id={channel}")).await;
            assert!(items(&found).is_empty(), "{word}: {}", found.text);
        }
    }
    // Several at once (q is at most 200 characters, so in groups).
    let all_words: Vec<&str> = hidden.iter().map(|(_, _, w)| *w).collect();
    for group in all_words.chunks(4) {
        let found = search(&app, &eve, &format!("q={}", group.join("%20or%20"))).await;
        assert!(items(&found).is_empty(), "{}", found.text);
    }

    // The shared word: exactly the visible messages, on every page.
    let mut seen = Vec::new();
    let mut query = "q=sharedword&limit=1".to_owned();
    loop {
        let page = search(&app, &eve, &query).await;
        check_page(&page);
        seen.extend(contents(&page));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("q=sharedword&limit=1&before={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["visibleclub sharedword", "visibledm sharedword", "visibleopen sharedword",]);
    // The control: the words are findable by those who may read them.
    let found = search(&app, &carol, "q=secretdmbob").await;
    assert_eq!(items(&found).len(), 2);
    let found = search(&app, &bob, "q=secretbannedpubliceve").await;
    assert_eq!(items(&found).len(), 2);
}

// ---------------------------------------------------------------------------------------
// Seq guarantees under concurrency.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_get_gapless_seqs_in_messages_and_the_event_log() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 200;
    let app = TestApp::spawn_with(|s| s.workers = 2).await;
    let owner = app.user("owner").await;
    let channels =
        [create_channel(&app, &owner, "alpha", false).await, create_channel(&app, &owner, "beta", false).await];
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let token = app.user(&format!("writer{w}")).await;
        for channel in &channels {
            join(&app, &token, channel).await;
        }
        writers.push(token);
    }

    let mut tasks = Vec::new();
    for (w, token) in writers.into_iter().enumerate() {
        let client = app.client.clone();
        let channels = channels.clone();
        tasks.push(tokio::spawn(async move {
            let mut posted = Vec::new();
            for i in 0..PER_WRITER {
                let channel = &channels[(w + i) % 2];
                let reply = client
                    .post(
                        "/api/chat/messages",
                        Some(&token),
                        &json!({"content": format!("w{w} #{i}"), "channel_id": channel}),
                    )
                    .await;
                assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
                posted
                    .push((reply.body["channel_id"].as_str().unwrap().to_owned(), reply.body["seq"].as_i64().unwrap()));
            }
            posted
        }));
    }
    let mut answered: Vec<(String, i64)> = Vec::new();
    for task in tasks {
        answered.extend(task.await.unwrap());
    }

    for channel in &channels {
        let id = uuid(channel);
        let last = last_seq(&app, channel).await;
        // Owner + 8 writers joined, then 800 messages.
        let expected_total = (1 + WRITERS + WRITERS * PER_WRITER / 2) as i64;
        assert_eq!(last, expected_total);
        let log = seqs_where(&app, "SELECT seq FROM channel_events WHERE channel_id = $1 ORDER BY seq", id).await;
        assert_eq!(log, (1..=last).collect::<Vec<_>>(), "the event log is gapless");
        let message_seqs = seqs_where(&app, "SELECT seq FROM messages WHERE channel_id = $1 ORDER BY seq", id).await;
        let message_events = seqs_where(
            &app,
            "SELECT seq FROM channel_events WHERE channel_id = $1 AND kind = 'message' ORDER BY seq",
            id,
        )
        .await;
        assert_eq!(message_seqs.len(), WRITERS * PER_WRITER / 2);
        assert_eq!(message_seqs, message_events, "each message has its event");
        // The membership events come first here, so the messages are exactly the rest.
        let first_message = (1 + WRITERS) as i64 + 1;
        assert_eq!(message_seqs, (first_message..=last).collect::<Vec<_>>(), "message seqs are gapless and unique");
        let mut told: Vec<i64> = answered.iter().filter(|(c, _)| c == channel).map(|(_, s)| *s).collect();
        told.sort_unstable();
        assert_eq!(told, message_seqs, "each sender was told its message's seq");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ban_lands_between_posts_never_among_them() {
    const SENDERS: usize = 8;
    let Room { app, owner, member, channel } = room().await;
    let (progress, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let client = app.client.clone();
        let member = member.clone();
        let channel = channel.clone();
        let progress = progress.clone();
        // Each sender posts until it is refused (a server that never refuses ends the loop
        // at its bound and fails below); every outcome is kept.
        tasks.push(tokio::spawn(async move {
            let mut outcomes: Vec<(String, u16, Value)> = Vec::new();
            for i in 0..5_000 {
                let content = format!("s{s} #{i}");
                let reply = client
                    .post("/api/chat/messages", Some(&member), &json!({"content": content, "channel_id": channel}))
                    .await;
                let status = reply.status.as_u16();
                outcomes.push((content, status, reply.body));
                if status != 201 {
                    break;
                }
                let _ = progress.send(());
            }
            outcomes
        }));
    }
    drop(progress);
    // Ban once the senders are well under way, so posts are in flight around it.
    for _ in 0..40 {
        progress_rx.recv().await.unwrap();
    }
    ban(&app, &owner, &channel, "member").await;
    // After the ban answered, every post is refused.
    for _ in 0..5 {
        send(&app, &member, &json!({"content": "too late", "channel_id": channel}))
            .await
            .assert_error(403, "forbidden");
    }

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        let outcomes = task.await.unwrap();
        let (last, before) = outcomes.split_last().unwrap();
        assert_eq!(last.1, 403, "each sender ends refused: {:?}", last.2);
        assert_eq!(last.2["code"], "forbidden");
        for (content, status, body) in before {
            assert_eq!(*status, 201, "{body}");
            accepted.push((content.clone(), body["seq"].as_i64().unwrap(), body.clone()));
        }
        refused.push(last.0.clone());
    }
    refused.push("too late".to_owned());
    assert!(accepted.len() >= 40);

    let ban_seq = seqs_where(
        &app,
        "SELECT seq FROM channel_events WHERE channel_id = $1 AND kind = 'member_banned'",
        uuid(&channel),
    )
    .await;
    assert_eq!(ban_seq.len(), 1);
    let ban_seq = ban_seq[0];
    let mut conn = app.db().await;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        content: String,
        #[diesel(sql_type = BigInt)]
        seq: i64,
    }
    let stored: Vec<Row> = diesel::sql_query("SELECT content, seq FROM messages WHERE channel_id = $1 ORDER BY seq")
        .bind::<SqlUuid, _>(uuid(&channel))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), accepted.len(), "exactly the accepted posts are stored");
    for (content, seq, body) in &accepted {
        assert!(*seq < ban_seq, "{body} committed after the ban (seq {ban_seq})");
        assert!(
            stored.iter().any(|r| &r.content == content && r.seq == *seq),
            "{content} answered 201 but is not stored"
        );
    }
    for content in &refused {
        assert!(stored.iter().all(|r| &r.content != content), "{content} was refused but stored");
    }
    // Nothing after the ban in the log but the ban itself.
    assert_eq!(last_seq(&app, &channel).await, ban_seq);
}

// ---------------------------------------------------------------------------------------
// Kept pages (crates/http-api/src/history_cache.rs): a node shows a page it rendered again
// only while nothing the page shows has changed, and only to whoever may still read it.

/// Every item of `reader`'s newest page is what reading that message alone shows them
/// (which no node keeps); returns the page's items.
async fn page_agrees_with_each_message(app: &TestApp, reader: &str, channel: &str) -> Vec<Value> {
    let page = items(&history(app, reader, channel, "").await).clone();
    for item in &page {
        let alone = get_message(app, reader, id(item)).await;
        assert_eq!(item, alone.assert_status(200), "the page shows a stale message");
    }
    page
}

#[tokio::test]
async fn a_kept_history_page_is_shown_again_only_until_something_it_shows_changes() {
    let Room { app, owner, member, channel } = room().await;
    let first = post(&app, &owner, &channel, "first").await;
    let first_id = id(&first).to_owned();
    let newest = |page: &[Value]| page[0].clone();
    for reader in [&owner, &member] {
        page_agrees_with_each_message(&app, reader, &channel).await;
    }

    // A change made behind the server's back moves neither the channel's last event nor
    // the history epoch: the page the node kept is what it shows. (This is how the test
    // knows pages are kept at all; nothing in the product writes a message this way.)
    let mut conn = app.db().await;
    diesel::sql_query("UPDATE messages SET content = 'changed behind its back' WHERE id = $1")
        .bind::<SqlUuid, _>(uuid(&first_id))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(contents(&history(&app, &member, &channel, "").await), ["first"]);

    // Each change a page shows, made through the API, is there on the next read, for
    // every reader, exactly as the message alone reads.
    let path = format!("/api/chat/messages/{first_id}");
    app.client.patch(&path, Some(&owner), &json!({"content": "edited"})).await.assert_status(200);
    for reader in [&owner, &member] {
        assert_eq!(newest(&page_agrees_with_each_message(&app, reader, &channel).await)["content"], "edited");
    }
    app.client.post(&format!("{path}/reactions"), Some(&member), &json!({"emoji": "👍"})).await.assert_status(200);
    let member_sees = page_agrees_with_each_message(&app, &member, &channel).await;
    assert_eq!(newest(&member_sees)["reactions"], json!([{"emoji": "👍", "count": 1, "me": true}]));
    let owner_sees = page_agrees_with_each_message(&app, &owner, &channel).await;
    assert_eq!(newest(&owner_sees)["reactions"], json!([{"emoji": "👍", "count": 1, "me": false}]));
    reply_to(&app, &member, &channel, &first_id, "a reply").await.assert_status(201);
    for reader in [&owner, &member] {
        assert_eq!(newest(&page_agrees_with_each_message(&app, reader, &channel).await)["reply_count"], 1);
    }
    app.client.put(&format!("{path}/pin"), Some(&owner), &json!({})).await.assert_status(204);
    for reader in [&owner, &member] {
        assert_eq!(newest(&page_agrees_with_each_message(&app, reader, &channel).await)["pinned"], true);
    }
    // The author's new name is no event of the channel: the history epoch moves instead.
    app.client.patch("/api/users/me", Some(&owner), &json!({"display_name": "The Owner"})).await.assert_status(200);
    for reader in [&member, &owner] {
        let page = page_agrees_with_each_message(&app, reader, &channel).await;
        assert_eq!(newest(&page)["user"]["display_name"], "The Owner");
    }
    post(&app, &member, &channel, "second").await;
    assert_eq!(contents(&history(&app, &owner, &channel, "").await), ["second", "edited"]);
    app.client.delete(&path, Some(&owner)).await.assert_status(204);
    for reader in [&owner, &member] {
        assert_eq!(page_agrees_with_each_message(&app, reader, &channel).await[1]["deleted"], true);
    }
}

#[tokio::test]
async fn a_kept_history_page_is_shown_only_to_whoever_may_read_it_now() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let member = app.user("member").await;
    let outsider = app.user("outsider").await;
    let channel = create_channel(&app, &owner, "secret", true).await;
    invite(&app, &owner, &channel, "member").await;
    post(&app, &owner, &channel, "for members only").await;
    assert_eq!(contents(&history(&app, &member, &channel, "").await), ["for members only"]);
    assert_eq!(contents(&history(&app, &owner, &channel, "").await), ["for members only"]);
    // The page is kept for every reader, and nothing has changed: whoever may not read it
    // still gets what the channel's rules say, as if nothing were kept.
    history(&app, &outsider, &channel, "").await.assert_error(404, "not_found");

    app.client.delete(&format!("/api/channels/{channel}/members/member"), Some(&owner)).await.assert_status(204);
    history(&app, &member, &channel, "").await.assert_error(404, "not_found");
    // The owner's kept page is still good: the kick moved the channel on, not the page.
    assert_eq!(contents(&history(&app, &owner, &channel, "").await), ["for members only"]);

    // Public again, and a ban refuses what a kick refused.
    let public = create_channel(&app, &owner, "open", false).await;
    join(&app, &member, &public).await;
    post(&app, &owner, &public, "hello").await;
    assert_eq!(contents(&history(&app, &member, &public, "").await), ["hello"]);
    ban(&app, &owner, &public, "member").await;
    history(&app, &member, &public, "").await.assert_error(403, "forbidden");
    // Banned before the page was kept again: still refused.
    assert_eq!(contents(&history(&app, &owner, &public, "").await), ["hello"]);
    history(&app, &member, &public, "").await.assert_error(403, "forbidden");
}
