//! Every wire type survives a trip through JSON unchanged, and what the server sends from
//! `domain` reads back as the DTO the client expects.

use std::collections::HashMap;
use std::fmt::Debug;

use domain::{ChannelId, FileId, MessageId, UserId, WebhookId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::macros::datetime;

use crate::*;

/// Serializes `value`, reads it back and expects the same value (and the same JSON again;
/// compared as JSON values, since maps have no order).
#[track_caller]
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
    assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::from_str::<serde_json::Value>(&json).unwrap());
}

fn summary(name: &str) -> domain::UserSummary {
    domain::UserSummary {
        id: UserId::new(),
        username: domain::Username::parse(name).unwrap(),
        display_name: domain::DisplayName::parse(&name.to_uppercase()).unwrap(),
    }
}

fn user(name: &str, is_bot: bool) -> domain::User {
    let summary = summary(name);
    domain::User {
        id: summary.id,
        username: summary.username,
        email: domain::Email::parse(&format!("{name}@example.com")).unwrap(),
        display_name: summary.display_name,
        created_at: datetime!(2025-01-09 12:00:00.123 UTC),
        is_bot,
    }
}

fn file(image: Option<domain::ImageInfo>) -> domain::FileMeta {
    domain::FileMeta {
        id: FileId::new(),
        filename: "report.pdf".into(),
        content_type: "application/pdf".into(),
        size: 1234,
        sha256: "ab".repeat(32),
        created_at: datetime!(2025-01-09 12:00:01 UTC),
        uploader_id: UserId::new(),
        image,
    }
}

/// A message with every optional part filled in, and one with none.
fn messages() -> [domain::Message; 2] {
    let full = domain::Message {
        id: MessageId::new(),
        content: "hello @bob".into(),
        user_id: UserId::new(),
        channel_id: ChannelId::new(),
        created_at: datetime!(2025-01-09 12:01:00 UTC),
        seq: 42,
        parent_id: Some(MessageId::new()),
        reply_count: 3,
        edited_at: Some(datetime!(2025-01-09 12:02:00.5 UTC)),
        deleted: false,
        user: summary("alice"),
        attachments: vec![
            file(None),
            file(Some(domain::ImageInfo { width: 640, height: 480, thumbnail: true })),
            file(Some(domain::ImageInfo { width: 99_999, height: 99_999, thumbnail: false })),
        ],
        reactions: vec![domain::ReactionSummary { emoji: domain::Emoji::parse("👍").unwrap(), count: 2, me: true }],
        mentions: vec![domain::MentionedUser { id: UserId::new(), username: domain::Username::parse("bob").unwrap() }],
        mentions_everyone: true,
        pinned: true,
        webhook: Some(domain::WebhookTag { id: WebhookId::new(), name: "CI".into(), username: "ci-runner".into() }),
    };
    let bare = domain::Message {
        parent_id: None,
        edited_at: None,
        deleted: true,
        content: String::new(),
        attachments: vec![],
        reactions: vec![],
        mentions: vec![],
        mentions_everyone: false,
        pinned: false,
        webhook: None,
        ..full.clone()
    };
    [full, bare]
}

fn channel(kind: domain::ChannelKind) -> domain::Channel {
    domain::Channel {
        id: ChannelId::new(),
        name: domain::ChannelName::parse("general").unwrap(),
        description: Some("General discussion".into()),
        owner_id: UserId::new(),
        created_at: datetime!(2025-01-09 12:00:00 UTC),
        is_private: false,
        kind,
        member_count: 7,
    }
}

#[test]
fn users_round_trip() {
    let alice = user("alice", false);
    check(&UserDto::public(&alice, true));
    check(&UserDto::own(&alice, false));
    check(&UserDto::member(&user("robot", true), false, domain::MemberRole::Moderator));
    check(&UserSummaryDto::from(&summary("carol")));
}

#[test]
fn channels_round_trip() {
    for kind in [domain::ChannelKind::Channel, domain::ChannelKind::Dm, domain::ChannelKind::GroupDm] {
        let dto = ChannelDto::from(&channel(kind));
        check(&dto);
        check(&MyChannel { channel: dto, last_seq: 9, last_read_seq: 4, unread_count: 5, mention_count: 1 });
    }
    check(&ChannelDto { description: None, ..ChannelDto::from(&channel(domain::ChannelKind::Channel)) });
}

#[test]
fn messages_and_their_parts_round_trip() {
    for message in messages() {
        let dto = MessageDto::from(&message);
        check(&dto);
        for attachment in &dto.attachments {
            check(attachment);
        }
    }
    check(&ReactionSummaryDto { emoji: ":tada:".into(), count: 1, me: false });
    check(&MentionDto { id: uuid::Uuid::now_v7(), username: "bob".into() });
    check(&WebhookTagDto { id: uuid::Uuid::now_v7(), name: "CI".into(), username: "ci".into() });
}

#[test]
fn pages_round_trip() {
    let [message, _] = messages();
    check(&Page { items: vec![MessageDto::from(&message)], next_cursor: Some("abc".into()) });
    check(&Page::<UserDto> { items: vec![], next_cursor: None });
    check(&PageQuery { limit: Some(10), after: Some("abc".into()) });
    check(&PageQuery::default());
}

#[test]
fn requests_responses_and_errors_round_trip() {
    check(&RegisterRequest {
        username: "alice".into(),
        email: "alice@example.com".into(),
        password: "secretpass".into(),
        display_name: Some("Alice".into()),
    });
    check(&LoginRequest { username: "alice".into(), password: "secretpass".into() });
    check(&CreateChannelRequest { name: "general".into(), description: None, is_private: true });
    check(&TokenResponse { access_token: "eyJ".into(), token_type: "bearer".into(), expires_in: 1800 });
    check(&PostMessageRequest {
        content: "hi".into(),
        channel_id: uuid::Uuid::now_v7(),
        parent_id: Some(uuid::Uuid::now_v7()),
        attachment_ids: vec![uuid::Uuid::now_v7()],
        nonce: Some("n-1".into()),
    });
    check(&ErrorBody { detail: "Not found".into(), code: "not_found".into(), errors: None, request_id: None });
    check(&ErrorBody {
        detail: "Validation failed".into(),
        code: "validation_error".into(),
        errors: Some(vec![FieldError { field: "content".into(), message: "must not be empty".into() }]),
        request_id: Some("r-1".into()),
    });
}

#[test]
fn socket_frames_round_trip() {
    check(&ReadyChannel { id: ChannelId::new(), last_seq: 12, last_read_seq: 3 });
    check(&Resume { channels: HashMap::from([(ChannelId::new(), 7), (ChannelId::new(), 0)]) });
    // A client that holds channel ids as text writes what the server reads.
    let channel = ChannelId::new();
    let text = channel.to_string();
    let written = serde_json::to_string(&Resume { channels: HashMap::from([(text.as_str(), 7)]) }).unwrap();
    let read: Resume = serde_json::from_str(&written).unwrap();
    assert_eq!(read.channels, HashMap::from([(channel, 7)]));
}

/// The WebSocket's `message` frame carries `domain::Message` as the event log stores it;
/// a client reads it as the same `MessageDto` that REST returns.
#[test]
fn a_message_reads_the_same_over_rest_and_the_socket() {
    for message in messages() {
        let socket = serde_json::to_value(&message).unwrap();
        let rest = serde_json::to_value(MessageDto::from(&message)).unwrap();
        assert_eq!(socket, rest);
    }
}

/// A page of a listing: the extra row says there is more, and the cursor names the last
/// row kept.
#[test]
fn pages_are_cut_at_the_limit_with_a_cursor() {
    let page = Page::from_rows(vec![1, 2, 3], 2, ToString::to_string, |n| n * 10);
    assert_eq!(page.items, [10, 20]);
    assert_eq!(domain::Cursor::decode(page.next_cursor.as_deref().unwrap(), "after").unwrap(), "2");
    assert_eq!(Page::from_rows(vec![1, 2], 2, ToString::to_string, |n| n).next_cursor, None);
    let query = PageQuery { limit: Some(5), after: page.next_cursor };
    let (limit, after) = query.parse_text().unwrap();
    assert_eq!((limit.get(), after.as_deref()), (5, Some("2")));
    assert!(PageQuery { limit: Some(0), after: None }.parse().is_err());
}
