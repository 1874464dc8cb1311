//! Micro-benchmarks of the hot paths: token verification, event encoding, domain
//! validation, and the hub fanning one event out to 10,000 in-process subscribers.
//!
//! `cargo bench -p realtime` (not part of `cargo test`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use domain::{ChannelEvent, ChannelId, DisplayName, EventBody, MessageContent, UserId, UserSummary, Username};
use realtime::{Credential, Hub};

fn user(name: &str) -> UserSummary {
    UserSummary {
        id: UserId::new(),
        username: Username::parse(name).unwrap(),
        display_name: DisplayName::parse(name).unwrap(),
    }
}

fn message_event(channel: ChannelId, seq: i64) -> ChannelEvent {
    let author = user("alice");
    let message = domain::Message {
        id: domain::MessageId::new(),
        content: "Hello, world! ".repeat(8),
        user_id: author.id,
        channel_id: channel,
        created_at: time::OffsetDateTime::now_utc(),
        seq,
        parent_id: None,
        reply_count: 0,
        edited_at: None,
        deleted: false,
        user: author,
        attachments: Vec::new(),
        reactions: Vec::new(),
        mentions: Vec::new(),
        mentions_everyone: false,
        pinned: false,
        webhook: None,
    };
    ChannelEvent::new(channel, seq, time::OffsetDateTime::now_utc(), EventBody::Message(Box::new(message)))
}

fn tokens(c: &mut Criterion) {
    let keys = auth::TokenKeys::new(&auth::SecretKey::new(vec![7; 32]).unwrap(), time::Duration::minutes(30));
    let account = domain::User {
        id: UserId::new(),
        username: Username::parse("johndoe").unwrap(),
        email: domain::Email::parse("john@example.com").unwrap(),
        display_name: DisplayName::parse("John Doe").unwrap(),
        created_at: time::OffsetDateTime::now_utc(),
        is_bot: false,
    };
    let token = keys.issue(&account).unwrap().access_token;
    c.bench_function("jwt_verify", |b| b.iter(|| keys.verify(black_box(&token)).unwrap()));
}

fn encoding(c: &mut Criterion) {
    let event = message_event(ChannelId::new(), 42);
    c.bench_function("event_build_and_encode", |b| {
        b.iter(|| message_event(black_box(event.channel_id), 42).to_frame());
    });
    c.bench_function("event_encode", |b| b.iter(|| black_box(&event).to_frame()));
}

fn validation(c: &mut Criterion) {
    let content = "Hello, world! ".repeat(40);
    c.bench_function("validate_username", |b| b.iter(|| Username::parse(black_box("john.doe-42")).unwrap()));
    c.bench_function("validate_content_560_chars", |b| {
        b.iter(|| MessageContent::parse(black_box(&content), false).unwrap());
    });
    c.bench_function("validate_emoji", |b| b.iter(|| domain::Emoji::parse(black_box("👍🏽")).unwrap()));
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let hub = Hub::new(4096);
    let channel = ChannelId::new();
    let mut registrations: Vec<_> = (0..10_000)
        .map(|_| {
            let registration =
                hub.register(Credential { user: UserId::new(), token: uuid::Uuid::now_v7(), issued_at: 0 });
            hub.subscribe(registration.conn, channel);
            registration
        })
        .collect();
    let mut seq = 0;
    c.bench_function("hub_fan_out_to_10000", |b| {
        b.iter(|| {
            seq += 1;
            hub.publish(vec![message_event(channel, seq)]);
            // Drain so the queues never fill (that would measure kicking, not delivery).
            for registration in &mut registrations {
                while registration.rx.try_recv().is_ok() {}
            }
        });
    });
}

criterion_group!(benches, tokens, encoding, validation, fan_out);
criterion_main!(benches);
