//! docs/api.md section 4 and the channel examples of section 0: channels, membership, DMs, moderation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use blackbox_tests::TestApp;
use serde_json::{Value, json};

async fn create(app: &TestApp, token: &str, name: &str, private: bool) -> Value {
    let reply = app
        .client
        .post(
            "/api/channels",
            Some(token),
            &json!({"name": name, "description": "General discussion", "is_private": private}),
        )
        .await;
    reply.assert_status(201).clone()
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

#[tokio::test]
async fn seed_channel_and_ban_examples_have_the_documented_shapes() {
    let app = TestApp::spawn().await;
    let owner = app.user("johndoe").await;
    let banned = app.user("banneduser").await;
    let me = app.client.get("/api/users/me", Some(&owner)).await.body;

    let channel = create(&app, &owner, "general", false).await;
    for field in ["id", "name", "description", "owner_id", "created_at"] {
        assert!(channel.get(field).is_some(), "missing {field}");
    }
    assert_eq!(channel["name"], "general");
    assert_eq!(channel["description"], "General discussion");
    assert_eq!(channel["owner_id"], me["id"]);
    assert_eq!(channel["kind"], "channel");
    assert_eq!(channel["is_private"], false);
    assert_eq!(channel["member_count"], 1);
    assert!(channel["created_at"].as_str().unwrap().ends_with('Z'));

    let channel_id = id(&channel);
    app.client.post_empty(&format!("/api/channels/{channel_id}/join"), Some(&banned)).await.assert_status(200);
    let banned_id = app.client.get("/api/users/me", Some(&banned)).await.body["id"].clone();

    let reply =
        app.client.post_empty(&format!("/api/channels/{channel_id}/ban-by-username/banneduser"), Some(&owner)).await;
    let body = reply.assert_status(200);
    assert_eq!(body["id"], channel["id"]);
    assert_eq!(body["name"], "general");
    assert_eq!(body["owner_id"], me["id"]);
    let exceptions = body["member_exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 1);
    assert_eq!(exceptions[0]["user_id"], banned_id);
    assert!(exceptions[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["member_count"], 1, "the banned user was removed");

    let list = app.client.get(&format!("/api/channels/{channel_id}/banned-users"), Some(&owner)).await;
    let list = list.assert_status(200);
    assert_eq!(list, &json!([{"id": banned_id, "username": "banneduser", "display_name": "banneduser"}]));

    let reply =
        app.client.post_empty(&format!("/api/channels/{channel_id}/unban-by-username/banneduser"), Some(&owner)).await;
    let body = reply.assert_status(200);
    assert_eq!(body["member_exceptions"], json!([]));
    assert_eq!(body["id"], channel["id"]);
}

#[tokio::test]
async fn bans_shut_the_user_out_until_unbanned() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let eve = app.user("eve").await;
    let public = create(&app, &owner, "public", false).await;
    let private = create(&app, &owner, "private", true).await;
    let (public, private) = (id(&public).to_owned(), id(&private).to_owned());
    app.client.post_empty(&format!("/api/channels/{public}/join"), Some(&eve)).await.assert_status(200);
    app.client.post_empty(&format!("/api/channels/{private}/members/eve"), Some(&owner)).await.assert_status(200);

    for channel in [&public, &private] {
        app.client
            .post_empty(&format!("/api/channels/{channel}/ban-by-username/eve"), Some(&owner))
            .await
            .assert_status(200);
        // Banning twice is harmless.
        let again = app.client.post_empty(&format!("/api/channels/{channel}/ban-by-username/eve"), Some(&owner)).await;
        assert_eq!(again.assert_status(200)["member_exceptions"].as_array().unwrap().len(), 1);
    }
    // Public: 403 on everything. Private: 404, as if it did not exist.
    app.client.get(&format!("/api/channels/{public}"), Some(&eve)).await.assert_error(403, "forbidden");
    app.client.post_empty(&format!("/api/channels/{public}/join"), Some(&eve)).await.assert_error(403, "forbidden");
    app.client.get(&format!("/api/channels/{public}/members"), Some(&eve)).await.assert_error(403, "forbidden");
    app.client.get(&format!("/api/channels/{private}"), Some(&eve)).await.assert_error(404, "not_found");
    app.client
        .post_empty(&format!("/api/channels/{private}/members/eve"), Some(&owner))
        .await
        .assert_error(409, "user_banned");
    let visible = app.client.get("/api/channels", Some(&eve)).await;
    assert!(visible.assert_status(200)["items"].as_array().unwrap().is_empty(), "{}", visible.text);

    // The owner cannot be banned.
    app.client
        .post_empty(&format!("/api/channels/{public}/ban-by-username/owner"), Some(&owner))
        .await
        .assert_error(409, "conflict");
    // Only the owner bans.
    app.client
        .post_empty(&format!("/api/channels/{public}/ban-by-username/owner"), Some(&eve))
        .await
        .assert_error(403, "forbidden");

    app.client
        .post_empty(&format!("/api/channels/{public}/unban-by-username/eve"), Some(&owner))
        .await
        .assert_status(200);
    app.client
        .post_empty(&format!("/api/channels/{public}/unban-by-username/eve"), Some(&owner))
        .await
        .assert_status(200);
    app.client.post_empty(&format!("/api/channels/{public}/join"), Some(&eve)).await.assert_status(200);
    app.client
        .post_empty(&format!("/api/channels/{public}/ban-by-username/nobody"), Some(&owner))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn private_channels_are_invisible_to_outsiders() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let outsider = app.user("outsider").await;
    let private = create(&app, &owner, "secret", true).await;
    let private = id(&private);
    for path in [format!("/api/channels/{private}"), format!("/api/channels/{private}/members")] {
        app.client.get(&path, Some(&outsider)).await.assert_error(404, "not_found");
    }
    app.client
        .post_empty(&format!("/api/channels/{private}/join"), Some(&outsider))
        .await
        .assert_error(404, "not_found");
    app.client
        .get(&format!("/api/channels/{}", uuid::Uuid::now_v7()), Some(&outsider))
        .await
        .assert_error(404, "not_found");
    app.client.get("/api/channels/not-a-uuid", Some(&outsider)).await.assert_error(404, "not_found");
    let list = app.client.get("/api/channels", Some(&outsider)).await;
    assert!(list.body["items"].as_array().unwrap().is_empty());
    let mine = app.client.get("/api/channels", Some(&owner)).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn membership_join_leave_and_owner_rules() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let channel = create(&app, &owner, "general", false).await;
    let channel = id(&channel);
    let joined = app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(&bob)).await;
    assert_eq!(joined.assert_status(200)["member_count"], 2);
    let again = app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(&bob)).await;
    assert_eq!(again.assert_status(200)["member_count"], 2, "join is idempotent");
    let members = app.client.get(&format!("/api/channels/{channel}/members"), Some(&bob)).await;
    assert_eq!(members.assert_status(200)["items"].as_array().unwrap().len(), 2);

    app.client.post_empty(&format!("/api/channels/{channel}/leave"), Some(&owner)).await.assert_error(409, "conflict");
    app.client.post_empty(&format!("/api/channels/{channel}/leave"), Some(&bob)).await.assert_status(204);
    app.client.post_empty(&format!("/api/channels/{channel}/leave"), Some(&bob)).await.assert_error(403, "forbidden");

    // Owner powers.
    app.client
        .patch(&format!("/api/channels/{channel}"), Some(&bob), &json!({"name": "mine"}))
        .await
        .assert_error(403, "forbidden");
    let renamed = app
        .client
        .patch(&format!("/api/channels/{channel}"), Some(&owner), &json!({"name": "random", "description": "x"}))
        .await;
    assert_eq!(renamed.assert_status(200)["name"], "random");
    app.client
        .patch(&format!("/api/channels/{channel}"), Some(&owner), &json!({"name": ""}))
        .await
        .assert_error(422, "validation_error");
    app.client.delete(&format!("/api/channels/{channel}"), Some(&bob)).await.assert_error(403, "forbidden");
    app.client.delete(&format!("/api/channels/{channel}"), Some(&owner)).await.assert_status(204);
    app.client.get(&format!("/api/channels/{channel}"), Some(&owner)).await.assert_error(404, "not_found");
    // Inviting into a public channel is not a thing; joining is.
    let public = create(&app, &owner, "public", false).await;
    app.client
        .post_empty(&format!("/api/channels/{}/members/bob", id(&public)), Some(&owner))
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn channel_names_are_unique_case_insensitively_even_under_a_race() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let (upper, lower) = (json!({"name": "General"}), json!({"name": "general"}));
    let (a, b) = tokio::join!(
        app.client.post("/api/channels", Some(&owner), &upper),
        app.client.post("/api/channels", Some(&owner), &lower),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let conflict = if a.status.as_u16() == 409 { a } else { b };
    conflict.assert_error(409, "channel_name_taken");
    for bad in [json!({"name": ""}), json!({"name": "x".repeat(81)}), json!({}), json!({"name": 5})] {
        app.client.post("/api/channels", Some(&owner), &bad).await.assert_error(422, "validation_error");
    }
}

#[tokio::test]
async fn ten_concurrent_dm_creations_make_one_channel() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut calls = Vec::new();
    for i in 0..10 {
        let client = app.client.clone();
        let (token, target) = if i % 2 == 0 { (alice.clone(), "bob") } else { (bob.clone(), "alice") };
        calls.push(tokio::spawn(async move {
            client.post_empty(&format!("/api/channels/dm/{target}"), Some(&token)).await
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for call in calls {
        let reply = call.await.unwrap();
        assert!(matches!(reply.status.as_u16(), 200 | 201), "{}", reply.text);
        created += usize::from(reply.status.as_u16() == 201);
        assert_eq!(reply.body["kind"], "dm");
        assert_eq!(reply.body["member_count"], 2);
        ids.insert(reply.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    let dm = ids.into_iter().next().unwrap();
    // DMs: not joinable, not listed, no owner powers.
    let carol = app.user("carol").await;
    app.client.post_empty(&format!("/api/channels/{dm}/join"), Some(&carol)).await.assert_error(404, "not_found");
    app.client.post_empty(&format!("/api/channels/{dm}/join"), Some(&alice)).await.assert_error(403, "forbidden");
    app.client
        .post_empty(&format!("/api/channels/{dm}/ban-by-username/bob"), Some(&alice))
        .await
        .assert_error(403, "forbidden");
    assert!(app.client.get("/api/channels", Some(&alice)).await.body["items"].as_array().unwrap().is_empty());
    let mine = app.client.get("/api/channels/me", Some(&alice)).await;
    assert_eq!(mine.body["items"][0]["id"], dm.as_str());
    // Notes to self: a DM with one member.
    let notes = app.client.post_empty("/api/channels/dm/alice", Some(&alice)).await;
    assert_eq!(notes.assert_status(201)["member_count"], 1);
    app.client.post_empty("/api/channels/dm/nobody", Some(&alice)).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn walking_a_thousand_channels_by_cursor_visits_each_once() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    {
        // Seeding through the API would take minutes; the walk is what is under test.
        use diesel_async::RunQueryDsl as _;
        let mut conn = app.db().await;
        let me = app.client.get("/api/users/me", Some(&owner)).await.body["id"].as_str().unwrap().to_owned();
        diesel::sql_query(format!(
            "INSERT INTO channels (id, name, owner_id, kind) \
             SELECT uuidv7_like, 'chan-' || n, '{me}', 'channel' FROM \
             (SELECT n, (lpad(to_hex(n), 8, '0') || '-0000-7000-8000-000000000000')::uuid AS uuidv7_like FROM generate_series(1, 1000) n) s"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut path = "/api/channels?limit=200".to_owned();
    loop {
        let page = app.client.get(&path, Some(&owner)).await;
        let body = page.assert_status(200).clone();
        for item in body["items"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_str().unwrap().to_owned()), "visited twice");
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/channels?limit=200&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(pages, 5);
}

#[tokio::test]
async fn read_markers_move_forward_only() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let channel = create(&app, &owner, "general", false).await;
    let channel = id(&channel).to_owned();
    app.client.post_empty(&format!("/api/channels/{channel}/join"), Some(&bob)).await;
    // seq 1: owner joined; seq 2: bob joined.
    app.client.put(&format!("/api/channels/{channel}/read"), Some(&bob), &json!({"seq": 2})).await.assert_status(204);
    app.client.put(&format!("/api/channels/{channel}/read"), Some(&bob), &json!({"seq": 1})).await.assert_status(204);
    let mine = app.client.get("/api/channels/me", Some(&bob)).await;
    assert_eq!(mine.body["items"][0]["last_read_seq"], 2);
    assert_eq!(mine.body["items"][0]["unread_count"], 0);
    app.client
        .put(&format!("/api/channels/{channel}/read"), Some(&bob), &json!({"seq": 99}))
        .await
        .assert_error(422, "validation_error");
    app.client
        .put(&format!("/api/channels/{channel}/read"), Some(&bob), &json!({}))
        .await
        .assert_error(422, "validation_error");
    let outsider = app.user("outsider").await;
    app.client
        .put(&format!("/api/channels/{channel}/read"), Some(&outsider), &json!({"seq": 1}))
        .await
        .assert_error(403, "forbidden");
}
