//! Conversations (docs/api.md section 11): mentions, group DMs, roles and kicks, the audit
//! log, pins and blocking — over REST and on a live socket of the affected users. The
//! authorization matrix (`authorization.rs`) covers who may call what; two nodes through
//! Redis are in `live_multinode.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use blackbox_tests::TestApp;
use blackbox_tests::ws::WsClient;
use serde_json::{Value, json};

async fn connect_live(app: &TestApp, token: &str) -> WsClient {
    let mut ws = app.connect(token).await;
    ws.send_json(&json!({"type": "ping"})).await;
    ws
}

async fn join(app: &TestApp, token: &str, channel: &str) {
    app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(token)).await.assert_status(200);
}

/// The caller's `/channels/me` entry for `channel`.
async fn my_channel(app: &TestApp, token: &str, channel: &str) -> Value {
    let page = app.client.get("/api/channels/me", Some(token)).await.assert_status(200).clone();
    page["items"].as_array().unwrap().iter().find(|c| c["id"] == channel).cloned().unwrap_or(Value::Null)
}

async fn mention_count(app: &TestApp, token: &str, channel: &str) -> i64 {
    my_channel(app, token, channel).await["mention_count"].as_i64().unwrap()
}

async fn mentions_of(app: &TestApp, token: &str) -> Vec<Value> {
    app.client.get("/api/mentions", Some(token)).await.assert_status(200)["items"].as_array().unwrap().clone()
}

/// Frames until nothing arrives for `quiet`.
async fn drain(ws: &mut WsClient, quiet: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(frame) = ws.next_json_within(quiet).await {
        out.push(frame);
    }
    out
}

#[tokio::test]
async fn mentions_name_readers_count_above_the_read_marker_and_follow_edits_and_deletes() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let general = app.create_channel(&alice, "general").await;
    join(&app, &bob, &general).await;

    // Case-insensitive, at a word start; e-mail addresses and code spans are not mentions.
    let first = app.post_message(&alice, &general, "hi @BOB, see `@carol` and carol@example.com").await;
    assert_eq!(first["mentions"], json!([{"id": first["mentions"][0]["id"], "username": "bob"}]));
    assert_eq!(first["mentions_everyone"], false);
    assert_eq!(first["pinned"], false);
    // Carol is no member, but the channel is public: she can read it, so she is mentioned.
    let second = app.post_message(&alice, &general, "@carol welcome").await;
    assert_eq!(second["mentions"][0]["username"], "carol");
    let page = app.client.get(&format!("/api/chat/channels/{general}/messages"), Some(&bob)).await;
    let page = page.assert_status(200)["items"].clone();
    assert_eq!(page[0]["mentions"], second["mentions"], "history pages carry mentions too");
    assert_eq!(page[1]["mentions"], first["mentions"]);
    assert_eq!(mention_count(&app, &bob, &general).await, 1);
    assert_eq!(mentions_of(&app, &carol).await.len(), 1);

    // Reading up to the message clears the count; /api/mentions keeps the history.
    app.client
        .put(&format!("/api/channels/{general}/read"), Some(&bob), &json!({"seq": first["seq"]}))
        .await
        .assert_status(204);
    assert_eq!(mention_count(&app, &bob, &general).await, 0);
    assert_eq!(mentions_of(&app, &bob).await[0]["id"], first["id"]);

    // An edit that adds a mention counts; one that removes it uncounts.
    let third = app.post_message(&alice, &general, "no one yet").await;
    let path = format!("/api/chat/messages/{}", third["id"].as_str().unwrap());
    let edited =
        app.client.patch(&path, Some(&alice), &json!({"content": "now @bob"})).await.assert_status(200).clone();
    assert_eq!(edited["mentions"][0]["username"], "bob");
    assert_eq!(mention_count(&app, &bob, &general).await, 1);
    app.client.patch(&path, Some(&alice), &json!({"content": "never mind"})).await.assert_status(200);
    assert_eq!(mention_count(&app, &bob, &general).await, 0);

    // @channel reaches every member but the author; a deleted message mentions no one.
    let everyone = app.post_message(&alice, &general, "@channel standup").await;
    assert_eq!(everyone["mentions_everyone"], true);
    assert_eq!(mention_count(&app, &bob, &general).await, 1);
    assert_eq!(mention_count(&app, &alice, &general).await, 0, "the author is not notified");
    let path = format!("/api/chat/messages/{}", everyone["id"].as_str().unwrap());
    app.client.delete(&path, Some(&alice)).await.assert_status(204);
    assert_eq!(mention_count(&app, &bob, &general).await, 0);
    assert!(mentions_of(&app, &bob).await.iter().all(|m| m["id"] != everyone["id"]));
}

#[tokio::test]
async fn only_readers_are_mentioned_and_mentions_vanish_with_access() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let private = app
        .client
        .post("/api/channels", Some(&alice), &json!({"name": "secret", "is_private": true}))
        .await
        .assert_status(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = app.post_message(&alice, &private, "@carol @bob can't see this").await;
    assert_eq!(message["mentions"], json!([]), "outsiders of a private channel are not mentioned");
    assert!(mentions_of(&app, &carol).await.is_empty());

    // Bob is added, mentioned, then removed: the mention leaves his list with his access.
    app.client.post_empty(&format!("/api/channels/{private}/members/bob"), Some(&alice)).await.assert_status(200);
    app.post_message(&alice, &private, "@bob hello").await;
    assert_eq!(mentions_of(&app, &bob).await.len(), 1);
    app.client.delete(&format!("/api/channels/{private}/members/bob"), Some(&alice)).await.assert_status(204);
    assert!(mentions_of(&app, &bob).await.is_empty());

    // Paging: newest first, with a cursor.
    let general = app.create_channel(&alice, "general").await;
    join(&app, &bob, &general).await;
    for n in 0..3 {
        app.post_message(&alice, &general, &format!("@bob number {n}")).await;
    }
    let page = app.client.get("/api/mentions?limit=2", Some(&bob)).await.assert_status(200).clone();
    assert_eq!(page["items"][0]["content"], "@bob number 2");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app.client.get(&format!("/api/mentions?limit=2&before={cursor}"), Some(&bob)).await;
    assert_eq!(rest.assert_status(200)["items"][0]["content"], "@bob number 0");
    app.client.get("/api/mentions?before=nonsense", Some(&bob)).await.assert_error(422, "validation_error");
    app.client.get("/api/mentions", None).await.assert_error(401, "not_authenticated");
}

#[tokio::test]
async fn a_mention_frame_reaches_only_the_mentioned_and_never_from_someone_they_blocked() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let general = app.create_channel(&alice, "general").await;
    join(&app, &bob, &general).await;
    join(&app, &carol, &general).await;
    let mut bob_ws = connect_live(&app, &bob).await;
    let mut carol_ws = connect_live(&app, &carol).await;

    let sent = app.post_message(&alice, &general, "ping @bob").await;
    let frames = drain(&mut bob_ws, Duration::from_millis(500)).await;
    let mention = frames.iter().find(|f| f["type"] == "mention").expect("bob gets a mention frame");
    assert_eq!(mention["data"]["channel_id"], general);
    assert_eq!(mention["data"]["message"]["id"], sent["id"]);
    assert!(frames.iter().any(|f| f["type"] == "message" && f["data"]["id"] == sent["id"]));
    let frames = drain(&mut carol_ws, Duration::from_millis(300)).await;
    assert!(frames.iter().any(|f| f["type"] == "message"), "carol reads the channel");
    assert!(frames.iter().all(|f| f["type"] != "mention"), "but is not mentioned: {frames:?}");

    // Bob blocks alice: her mentions of him notify nothing — no frame, no count — while
    // the shared channel is unaffected.
    app.client.put("/api/users/alice/block", Some(&bob), &json!({})).await.assert_status(204);
    let read = my_channel(&app, &bob, &general).await["last_seq"].clone();
    app.client
        .put(&format!("/api/channels/{general}/read"), Some(&bob), &json!({"seq": read}))
        .await
        .assert_status(204);
    let blocked = app.post_message(&alice, &general, "@bob @channel hello?").await;
    assert_eq!(blocked["mentions"][0]["username"], "bob");
    let frames = drain(&mut bob_ws, Duration::from_millis(500)).await;
    assert!(frames.iter().any(|f| f["type"] == "message" && f["data"]["id"] == blocked["id"]));
    assert!(frames.iter().all(|f| f["type"] != "mention"), "{frames:?}");
    assert_eq!(mention_count(&app, &bob, &general).await, 0);
    // Carol did not block her: @channel reaches her.
    let frames = drain(&mut carol_ws, Duration::from_millis(500)).await;
    assert!(frames.iter().any(|f| f["type"] == "mention" && f["data"]["message"]["id"] == blocked["id"]));
}

#[tokio::test]
async fn mention_counts_stay_exact_under_concurrent_writers() {
    let app = TestApp::spawn().await;
    let reader = app.user("reader").await;
    let owner = app.user("owner").await;
    let general = app.create_channel(&owner, "general").await;
    join(&app, &reader, &general).await;
    let mut writers = Vec::new();
    for w in 0..8 {
        let token = app.user(&format!("writer{w}")).await;
        join(&app, &token, &general).await;
        writers.push(token);
    }
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, token)| {
            let client = app.client.clone();
            let general = general.clone();
            tokio::spawn(async move {
                for n in 0..100 {
                    // Every other message mentions the reader; every tenth says @here too.
                    let content = match n % 10 {
                        0 => format!("@reader @here {w}/{n}"),
                        n if n % 2 == 0 => format!("hey @reader {w}/{n}"),
                        _ => format!("plain {w}/{n}"),
                    };
                    client
                        .post("/api/chat/messages", Some(&token), &json!({"content": content, "channel_id": general}))
                        .await
                        .assert_status(201);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(mention_count(&app, &reader, &general).await, 8 * 50);
    // The owner is mentioned only by @here: 8 writers × 10.
    assert_eq!(mention_count(&app, &owner, &general).await, 8 * 10);
}

#[tokio::test]
async fn group_dms_are_one_per_set_of_people_and_private_to_them() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let outsider = app.user("dave").await;
    for n in 0..8 {
        app.user(&format!("extra{n}")).await;
    }

    let created =
        app.client.post("/api/channels/group-dm", Some(&alice), &json!({"usernames": ["bob", "carol"]})).await;
    let group = created.assert_status(201).clone();
    assert_eq!(group["kind"], "group_dm");
    assert_eq!(group["member_count"], 3);
    assert_eq!(group["name"], "alice, bob, carol");
    let id = group["id"].as_str().unwrap();
    // The same people, asked by another of them and in another order: the same channel.
    let again = app.client.post("/api/channels/group-dm", Some(&carol), &json!({"usernames": ["BOB", "alice"]})).await;
    assert_eq!(again.assert_status(200)["id"], id);

    // Listed for its members only, never among channels; outsiders get 404.
    assert!(!my_channel(&app, &bob, id).await.is_null());
    let listed = app.client.get("/api/channels?limit=200", Some(&alice)).await.assert_status(200).clone();
    assert!(listed["items"].as_array().unwrap().iter().all(|c| c["id"] != id));
    app.client.get(&format!("/api/channels/{id}"), Some(&outsider)).await.assert_error(404, "not_found");
    app.client.post_empty(&format!("/api/channels/{id}/join"), Some(&outsider)).await.assert_error(404, "not_found");

    // A member leaves; calling again re-adds them. A member's socket sees both, at their seqs,
    // and the one who left gets nothing of the conversation in between.
    let mut carol_ws = connect_live(&app, &carol).await;
    let mut bob_ws = connect_live(&app, &bob).await;
    app.client.post_empty(&format!("/api/channels/{id}/leave"), Some(&bob)).await.assert_status(204);
    app.client.get(&format!("/api/channels/{id}"), Some(&bob)).await.assert_error(404, "not_found");
    let left = carol_ws.next_of("member_left").await;
    assert_eq!(left["data"]["user"]["username"], "bob");
    assert_eq!(bob_ws.next_of("member_left").await["data"]["seq"], left["data"]["seq"]);
    let meanwhile = app.post_message(&alice, id, "while bob is away").await;
    let back = app.client.post("/api/channels/group-dm", Some(&bob), &json!({"usernames": ["alice", "carol"]})).await;
    assert_eq!(back.assert_status(200)["member_count"], 3);
    let rejoined = loop {
        let frame = bob_ws.next_json().await;
        if frame["type"] == "member_joined" {
            break frame;
        }
        assert_ne!(frame["data"]["channel_id"], id, "bob got the conversation while away: {frame}");
    };
    assert_eq!(rejoined["data"]["channel_id"], id);
    assert_eq!(rejoined["data"]["seq"].as_i64().unwrap(), meanwhile["seq"].as_i64().unwrap() + 1);
    assert_eq!(carol_ws.next_of("message").await["data"]["id"], meanwhile["id"]);
    assert_eq!(carol_ws.next_of("member_joined").await["data"]["seq"], rejoined["data"]["seq"]);

    // 2 to 8 others; names must exist.
    for usernames in [json!(["bob"]), json!(["bob", "alice"]), json!([])] {
        let reply = app.client.post("/api/channels/group-dm", Some(&alice), &json!({"usernames": usernames})).await;
        reply.assert_error(422, "validation_error");
    }
    let nine: Vec<String> = (0..8).map(|n| format!("extra{n}")).chain(["bob".to_owned()]).collect();
    app.client
        .post("/api/channels/group-dm", Some(&alice), &json!({"usernames": nine}))
        .await
        .assert_error(422, "validation_error");
    app.client
        .post("/api/channels/group-dm", Some(&alice), &json!({"usernames": ["bob", "nobody"]}))
        .await
        .assert_error(404, "not_found");
    app.client
        .post("/api/channels/group-dm", None, &json!({"usernames": ["bob", "carol"]}))
        .await
        .assert_error(401, "not_authenticated");
}

#[tokio::test]
async fn ten_concurrent_creations_of_one_group_dm_make_one_channel() {
    let app = TestApp::spawn().await;
    let tokens = [app.user("alice").await, app.user("bob").await, app.user("carol").await];
    let names = ["alice", "bob", "carol"];
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let client = app.client.clone();
            let token = tokens[n % 3].clone();
            let others: Vec<&str> = names.iter().copied().filter(|name| *name != names[n % 3]).collect();
            let body = json!({"usernames": others});
            tokio::spawn(async move { client.post("/api/channels/group-dm", Some(&token), &body).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(matches!(reply.status.as_u16(), 200 | 201), "{}", reply.text);
        created += usize::from(reply.status == 201);
        ids.insert(reply.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), created), (1, 1));
}

#[tokio::test]
async fn roles_kicks_and_transfers_reach_sockets_at_their_seq_and_the_audit_log() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let modder = app.user("modder").await;
    let member = app.user("member").await;
    let general = app.create_channel(&owner, "general").await;
    join(&app, &modder, &general).await;
    join(&app, &member, &general).await;
    let mut member_ws = connect_live(&app, &member).await;

    let role_path = format!("/api/channels/{general}/members/modder/role");
    let set = app.client.put(&role_path, Some(&owner), &json!({"role": "moderator"})).await.assert_status(200).clone();
    assert_eq!(set["role"], "moderator");
    assert_eq!(set["user"]["username"], "modder");
    app.client.put(&role_path, Some(&owner), &json!({"role": "owner"})).await.assert_error(422, "validation_error");
    app.client
        .put(&format!("/api/channels/{general}/members/owner/role"), Some(&owner), &json!({"role": "member"}))
        .await
        .assert_error(409, "owner_role");
    let changed = member_ws.next_of("member_role_changed").await;
    assert_eq!(changed["data"]["user"]["username"], "modder");
    assert_eq!(changed["data"]["role"], "moderator");

    // The members list shows roles.
    let members = app.client.get(&format!("/api/channels/{general}/members"), Some(&member)).await;
    let roles: std::collections::HashMap<String, String> = members.assert_status(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].as_str().unwrap().to_owned(), u["role"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(roles["owner"], "owner");
    assert_eq!(roles["modder"], "moderator");
    assert_eq!(roles["member"], "member");

    // A moderator deletes a member's message and kicks them, with reasons; the kicked
    // socket gets `member_removed` and nothing of the channel after it.
    let spam = app.post_message(&member, &general, "buy now").await;
    let reply = app
        .client
        .send(
            app.client
                .request(
                    reqwest::Method::DELETE,
                    &format!("/api/chat/messages/{}", spam["id"].as_str().unwrap()),
                    Some(&modder),
                )
                .header("X-Audit-Reason", "spam"),
        )
        .await;
    reply.assert_status(204);
    let kick_path = format!("/api/channels/{general}/members/member");
    let reply = app
        .client
        .send(
            app.client
                .request(reqwest::Method::DELETE, &kick_path, Some(&modder))
                .header("X-Audit-Reason", "still spamming"),
        )
        .await;
    reply.assert_status(204);
    let removed = member_ws.next_of("member_removed").await;
    assert_eq!(removed["data"]["user"]["username"], "member");
    assert_eq!(removed["data"]["by"]["username"], "modder");
    app.post_message(&owner, &general, "after the kick").await;
    let after = drain(&mut member_ws, Duration::from_millis(400)).await;
    assert!(after.iter().all(|f| f["data"]["channel_id"] != general), "{after:?}");
    // Kicked, not banned: they may come back. Kicking a non-member is 404.
    app.client.delete(&kick_path, Some(&modder)).await.assert_error(404, "not_found");
    join(&app, &member, &general).await;

    // Moderators act on plain members only; nobody on the owner.
    app.client
        .delete(&format!("/api/channels/{general}/members/owner"), Some(&modder))
        .await
        .assert_error(409, "conflict");
    app.client
        .put(&role_path.replace("modder", "member"), Some(&owner), &json!({"role": "moderator"}))
        .await
        .assert_status(200);
    app.client
        .delete(&format!("/api/channels/{general}/members/member"), Some(&modder))
        .await
        .assert_error(403, "forbidden");
    app.client
        .post_empty(&format!("/api/channels/{general}/ban-by-username/member"), Some(&modder))
        .await
        .assert_error(403, "forbidden");

    // Transfer: the old owner becomes a moderator; only members can receive it.
    let transfer = format!("/api/channels/{general}/transfer");
    app.client.post(&transfer, Some(&owner), &json!({"username": "nobody"})).await.assert_error(404, "not_found");
    app.user("stranger").await;
    app.client.post(&transfer, Some(&owner), &json!({"username": "stranger"})).await.assert_error(409, "not_a_member");
    let handed =
        app.client.post(&transfer, Some(&owner), &json!({"username": "modder"})).await.assert_status(200).clone();
    let modder_id = app.client.get("/api/users/modder", Some(&owner)).await.assert_status(200)["id"].clone();
    assert_eq!(handed["owner_id"], modder_id);
    let changed = member_ws.next_of("channel_owner_changed").await;
    assert_eq!(changed["data"]["owner"]["username"], "modder");
    assert_eq!(changed["data"]["previous_owner"]["username"], "owner");
    app.client
        .patch(&format!("/api/channels/{general}"), Some(&owner), &json!({"description": "x"}))
        .await
        .assert_error(403, "forbidden");
    app.client.post_empty(&format!("/api/channels/{general}/leave"), Some(&owner)).await.assert_status(204);

    // The audit log: newest first, with actor, target and reason; moderators may read it.
    let log =
        app.client.get(&format!("/api/channels/{general}/audit-log"), Some(&modder)).await.assert_status(200).clone();
    let actions: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["transfer", "role_change", "kick", "message_deleted", "role_change"]);
    let kick = &log["items"][2];
    assert_eq!(kick["actor"]["username"], "modder");
    assert_eq!(kick["target_user"]["username"], "member");
    assert_eq!(kick["reason"], "still spamming");
    assert_eq!(log["items"][3]["target_message_id"], spam["id"]);
    assert_eq!(log["items"][3]["reason"], "spam");
    let page = app
        .client
        .get(&format!("/api/channels/{general}/audit-log?limit=2"), Some(&modder))
        .await
        .assert_status(200)
        .clone();
    let cursor = page["next_cursor"].as_str().unwrap();
    let next =
        app.client.get(&format!("/api/channels/{general}/audit-log?limit=2&after={cursor}"), Some(&modder)).await;
    assert_eq!(next.assert_status(200)["items"][0]["action"], "kick");
    let too_long = "r".repeat(513);
    let reply = app
        .client
        .send(app.client.request(reqwest::Method::DELETE, &kick_path, Some(&modder)).header("X-Audit-Reason", too_long))
        .await;
    reply.assert_error(422, "validation_error");
}

#[tokio::test]
async fn a_kick_racing_the_users_post_lands_the_post_before_it_or_refuses_it() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let victim = app.user("victim").await;
    for round in 0..15 {
        let channel = app.create_channel(&owner, &format!("race-{round}")).await;
        join(&app, &victim, &channel).await;
        let post = {
            let client = app.client.clone();
            let (victim, channel) = (victim.clone(), channel.clone());
            tokio::spawn(async move {
                client
                    .post("/api/chat/messages", Some(&victim), &json!({"content": "last words", "channel_id": channel}))
                    .await
            })
        };
        let kick = app.client.delete(&format!("/api/channels/{channel}/members/victim"), Some(&owner)).await;
        kick.assert_status(204);
        let post = post.await.unwrap();
        // Where did the kick land? Its event's seq, read back from the log by a resume.
        let mut ws = connect_live(&app, &owner).await;
        ws.send_json(&json!({"type": "resume", "data": {"channels": {channel.as_str(): 0}}})).await;
        let frames = drain(&mut ws, Duration::from_millis(300)).await;
        let kick_seq = frames.iter().find(|f| f["type"] == "member_removed").unwrap()["data"]["seq"].as_i64().unwrap();
        match post.status.as_u16() {
            201 => assert!(post.body["seq"].as_i64().unwrap() < kick_seq, "a post after the kick landed"),
            403 => {}
            other => panic!("unexpected {other}: {}", post.text),
        }
    }
}

#[tokio::test]
async fn pins_are_capped_listed_newest_first_and_announced() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let outsider = app.user("carol").await;
    let general = app.create_channel(&alice, "general").await;
    join(&app, &bob, &general).await;
    let mut bob_ws = connect_live(&app, &bob).await;
    let first = app.post_message(&alice, &general, "first").await;
    let second = app.post_message(&alice, &general, "second").await;
    let pin = |m: &Value| format!("/api/chat/messages/{}/pin", m["id"].as_str().unwrap());

    app.client.put(&pin(&first), Some(&bob), &json!({})).await.assert_status(204);
    app.client.put(&pin(&first), Some(&bob), &json!({})).await.assert_status(204);
    app.client.put(&pin(&second), Some(&alice), &json!({})).await.assert_status(204);
    app.client.put(&pin(&second), Some(&outsider), &json!({})).await.assert_error(403, "forbidden");
    let pins =
        app.client.get(&format!("/api/channels/{general}/pins"), Some(&outsider)).await.assert_status(200).clone();
    let ids: Vec<&Value> = pins["items"].as_array().unwrap().iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, [&second["id"], &first["id"]]);
    assert_eq!(pins["items"][0]["pinned"], true);
    let fetched = app.client.get(&format!("/api/chat/messages/{}", first["id"].as_str().unwrap()), Some(&bob)).await;
    assert_eq!(fetched.assert_status(200)["pinned"], true);
    // History pages (one statement of their own) show the same.
    let page = app.client.get(&format!("/api/chat/channels/{general}/messages"), Some(&bob)).await;
    let pinned: Vec<bool> =
        page.assert_status(200)["items"].as_array().unwrap().iter().map(|m| m["pinned"] == true).collect();
    assert_eq!(pinned, [true, true]);

    let pinned = bob_ws.next_of("message_pinned").await;
    assert_eq!(pinned["data"]["message_id"], first["id"]);
    assert_eq!(pinned["data"]["by"]["username"], "bob");
    let seq = pinned["data"]["seq"].as_i64().unwrap();
    assert_eq!(seq, second["seq"].as_i64().unwrap() + 1, "the pin took the channel's next seq");
    // Pinning twice announced nothing: the next event is the second pin.
    assert_eq!(bob_ws.next_of("message_pinned").await["data"]["seq"], seq + 1);

    app.client.delete(&pin(&first), Some(&bob)).await.assert_status(204);
    app.client.delete(&pin(&first), Some(&bob)).await.assert_status(204);
    assert_eq!(bob_ws.next_of("message_unpinned").await["data"]["message_id"], first["id"]);

    // At most 100 per channel.
    for n in 0..99 {
        let message = app.post_message(&alice, &general, &format!("pin me {n}")).await;
        app.client.put(&pin(&message), Some(&alice), &json!({})).await.assert_status(204);
    }
    let one_more = app.post_message(&alice, &general, "one too many").await;
    app.client.put(&pin(&one_more), Some(&alice), &json!({})).await.assert_error(409, "too_many_pins");
    // Re-pinning a pinned message at the cap is still fine, and a deleted message is unpinned.
    app.client.put(&pin(&second), Some(&alice), &json!({})).await.assert_status(204);
    app.client
        .delete(&format!("/api/chat/messages/{}", second["id"].as_str().unwrap()), Some(&alice))
        .await
        .assert_status(204);
    app.client.put(&pin(&one_more), Some(&alice), &json!({})).await.assert_status(204);
    app.client.put(&pin(&second), Some(&alice), &json!({})).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn blocking_closes_direct_conversations_but_not_shared_channels() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dm = app.client.post_empty("/api/channels/dm/bob", Some(&alice)).await.assert_status(201)["id"].clone();
    let group = app.client.post("/api/channels/group-dm", Some(&alice), &json!({"usernames": ["bob", "carol"]})).await;
    let group = group.assert_status(201)["id"].clone();
    let general = app.create_channel(&bob, "general").await;
    join(&app, &alice, &general).await;
    let mut alice_ws = connect_live(&app, &alice).await;

    app.client.put("/api/users/alice/block", Some(&bob), &json!({})).await.assert_status(204);
    app.client.put("/api/users/alice/block", Some(&bob), &json!({})).await.assert_status(204);
    app.client.put("/api/users/bob/block", Some(&bob), &json!({})).await.assert_error(422, "validation_error");
    app.client.put("/api/users/nobody/block", Some(&bob), &json!({})).await.assert_error(404, "not_found");
    let blocks = app.client.get("/api/users/me/blocks", Some(&bob)).await.assert_status(200).clone();
    assert_eq!(blocks["items"][0]["username"], "alice");

    // Alice cannot reach bob directly: not by a DM, nor in the group DM, over REST or socket.
    app.client.post_empty("/api/channels/dm/bob", Some(&alice)).await.assert_error(403, "blocked");
    let post = |channel: &Value| json!({"content": "hello?", "channel_id": channel});
    app.client.post("/api/chat/messages", Some(&alice), &post(&dm)).await.assert_error(403, "blocked");
    app.client.post("/api/chat/messages", Some(&alice), &post(&group)).await.assert_error(403, "blocked");
    app.client
        .post("/api/channels/group-dm", Some(&alice), &json!({"usernames": ["bob", "carol"]}))
        .await
        .assert_error(403, "blocked");
    alice_ws
        .send_json(&json!({"type": "message", "data": {"channel_id": dm, "content": "socket?", "nonce": "n1"}}))
        .await;
    let refused = alice_ws.next_of("error").await;
    assert_eq!(refused["data"]["code"], "blocked");
    // Bob still writes to her, and the shared channel is unaffected both ways.
    app.client.post("/api/chat/messages", Some(&bob), &post(&dm)).await.assert_status(201);
    app.client.post("/api/chat/messages", Some(&carol), &post(&group)).await.assert_status(201);
    app.post_message(&alice, &general, "still here").await;

    app.client.delete("/api/users/alice/block", Some(&bob)).await.assert_status(204);
    app.client.post("/api/chat/messages", Some(&alice), &post(&dm)).await.assert_status(201);
    let blocks = app.client.get("/api/users/me/blocks", Some(&bob)).await.assert_status(200).clone();
    assert_eq!(blocks["items"], json!([]));
    for reply in [
        app.client.get("/api/users/me/blocks", None).await,
        app.client.put("/api/users/alice/block", None, &json!({})).await,
        app.client.delete("/api/users/alice/block", None).await,
    ] {
        reply.assert_error(401, "not_authenticated");
    }
}
