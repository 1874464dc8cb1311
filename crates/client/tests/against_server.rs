//! The client against the real server: the example bot answers `!ping`, and the socket
//! reconnects after a server restart and resumes without losing or doubling a message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/ping_bot.rs"]
mod ping_bot;

use std::time::Duration;

use blackbox_tests::TestApp;
use chat_client::wire::MessageDto;
use chat_client::{Client, Error, Event};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The next message event of the socket, within the wait.
async fn next_message(socket: &mut chat_client::Socket) -> MessageDto {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Message(message) = socket.next_event().await.unwrap() {
                return *message;
            }
        }
    })
    .await
    .expect("a message within the wait")
}

/// Alice, her channel `general` (made over REST), and her client, which finds the channel
/// by name.
async fn alice_in_general(app: &TestApp) -> (Client, domain::ChannelId) {
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let client = Client::new(&app.base).with_token(&alice);
    let channel = client.find_channel("general").await.unwrap();
    assert_eq!(channel.to_string(), general);
    (client, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bot_answers_ping_and_keeps_answering_after_a_restart() {
    let mut app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = app.create_channel(&alice, "general").await;
    let bot = app.client.post("/api/bots", Some(&alice), &json!({"username": "pingbot"})).await;
    let bot_token = bot.assert_status(201)["token"].as_str().unwrap().to_owned();
    let bot_client = Client::new(&app.base).with_token(&bot_token);
    bot_client.join(bot_client.find_channel("general").await.unwrap()).await.unwrap();
    let running = tokio::spawn(ping_bot::run(bot_client));
    // The bot's socket misses what was posted before it connected (it has nothing to resume
    // from yet): wait until the server says it is online, which it does once subscribed.
    tokio::time::timeout(WAIT, async {
        while app.client.get("/api/users/pingbot", Some(&alice)).await.assert_status(200)["online"] != true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the bot comes online");

    let alice_client = Client::new(&app.base).with_token(&alice);
    let channel = alice_client.find_channel(&general).await.unwrap();
    let mut socket = alice_client.socket();
    // The first event is `ready`; from then on the socket is live.
    assert!(matches!(socket.next_event().await.unwrap(), Event::Other { ref kind, .. } if kind == "ready"));
    for round in 0..2 {
        let asked = alice_client.send(channel, "!ping").await.unwrap();
        assert_eq!(next_message(&mut socket).await.id, asked.id);
        let answer = next_message(&mut socket).await;
        assert_eq!(answer.content, "pong", "round {round}");
        assert_eq!(answer.user.username.as_str(), "pingbot");
        assert_eq!(answer.seq, asked.seq + 1);
        if round == 0 {
            // Both sockets drop with the server and must come back by themselves.
            app.restart().await;
        }
    }
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_resumes_after_a_disconnect_without_losing_or_doubling() {
    let mut app = TestApp::spawn().await;
    let (client, channel) = alice_in_general(&app).await;
    let mut socket = client.socket();
    socket.next_event().await.unwrap();
    let first = client.send(channel, "before").await.unwrap();
    assert_eq!(next_message(&mut socket).await.id, first.id);

    app.restart().await;
    // Posted while the socket is still reconnecting: the resume must bring it.
    let missed = client.send(channel, "while away").await.unwrap();
    let after = client.send(channel, "after").await.unwrap();
    assert_eq!(next_message(&mut socket).await.id, missed.id);
    assert_eq!(next_message(&mut socket).await.id, after.id);
    assert_eq!(socket.positions()[&channel], after.seq);
}

#[tokio::test]
async fn a_revoked_token_ends_the_socket_and_errors_are_typed() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let client = Client::new(&app.base).with_token(&alice);
    let me = client.me().await.unwrap();
    assert_eq!((me.username.as_str(), me.is_bot, me.email.as_deref()), ("alice", false, Some("alice@example.com")));
    let mut socket = client.socket();
    socket.next_event().await.unwrap();
    app.client.post_empty("/api/auth/logout", Some(&alice)).await.assert_status(204);
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(error) = socket.next_event().await {
                return error;
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(ended, Error::Unauthorized), "{ended}");
    assert!(matches!(client.me().await, Err(Error::Unauthorized)));
    let anonymous = Client::new(&app.base);
    assert!(matches!(anonymous.login("alice", "wrong-password").await, Err(Error::Unauthorized)));
    let token = anonymous.login("alice", "secretpass").await.unwrap();
    assert_eq!(token.token_type, "bearer");
    let fresh = anonymous.with_token(&token.access_token);
    match fresh.find_channel("nowhere").await {
        Err(Error::Api { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_gives_the_backlog_oldest_first_then_everything_after_it_once() {
    let app = TestApp::spawn().await;
    let (client, channel) = alice_in_general(&app).await;
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(client.send(channel, &format!("old {n}")).await.unwrap());
    }
    let (backlog, mut socket) = client.follow(channel, 2).await.unwrap();
    let ids: Vec<_> = backlog.iter().map(|m| m.id).collect();
    assert_eq!(ids, [sent[1].id, sent[2].id]);
    // Posted before the socket has even connected (it connects on first use): the resume
    // from the backlog's newest seq brings it, and nothing of the backlog comes again.
    let between = client.send(channel, "between").await.unwrap();
    let next = client.send(channel, "new").await.unwrap();
    assert_eq!(next_message(&mut socket).await.id, between.id);
    assert_eq!(next_message(&mut socket).await.id, next.id);
}

#[tokio::test]
async fn a_refused_request_carries_the_servers_error_body() {
    let app = TestApp::spawn().await;
    let (client, channel) = alice_in_general(&app).await;
    match client.send(channel, "   ").await {
        Err(Error::Api { status: 422, body }) => {
            assert_eq!(body.code, "validation_error");
            assert_eq!(body.errors.unwrap()[0].field, "content");
        }
        other => panic!("{other:?}"),
    }
    let mine = client.my_channels().await.unwrap();
    assert_eq!(mine[0].channel.id, channel.as_uuid());
    assert_eq!(mine[0].channel.kind, "channel");
}
