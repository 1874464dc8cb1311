//! Channel-scoped events: everything that happens in a channel gets the channel's next `seq`
//! and is written to the event log in the same transaction as the change itself, so a client
//! can replay what it missed (docs/websocket.md).
//!
//! Events are types: [`ChannelEvent`] carries a closed [`EventBody`], and anything that reacts
//! to events (the hub, a socket, a test) matches on the body, so the compiler lists every
//! place a new event must be handled. JSON exists only at the edges: the event log's `data`
//! column, the Redis wire and the WebSocket frame ([`ChannelEvent::to_frame`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::channel::{Channel, MemberRole};
use crate::ids::{ChannelId, MessageId, UserId};
use crate::message::{Emoji, Message};
use crate::user::UserSummary;

/// The `type` of a channel event on the wire and in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Message,
    MessageUpdated,
    MessageDeleted,
    ReactionAdded,
    ReactionRemoved,
    MemberJoined,
    MemberLeft,
    MemberBanned,
    MemberUnbanned,
    ChannelUpdated,
    ChannelDeleted,
    MemberRemoved,
    MemberRoleChanged,
    ChannelOwnerChanged,
    MessagePinned,
    MessageUnpinned,
}

impl EventKind {
    pub const ALL: [Self; 16] = [
        Self::Message,
        Self::MessageUpdated,
        Self::MessageDeleted,
        Self::ReactionAdded,
        Self::ReactionRemoved,
        Self::MemberJoined,
        Self::MemberLeft,
        Self::MemberBanned,
        Self::MemberUnbanned,
        Self::ChannelUpdated,
        Self::ChannelDeleted,
        Self::MemberRemoved,
        Self::MemberRoleChanged,
        Self::ChannelOwnerChanged,
        Self::MessagePinned,
        Self::MessageUnpinned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::MessageUpdated => "message_updated",
            Self::MessageDeleted => "message_deleted",
            Self::ReactionAdded => "reaction_added",
            Self::ReactionRemoved => "reaction_removed",
            Self::MemberJoined => "member_joined",
            Self::MemberLeft => "member_left",
            Self::MemberBanned => "member_banned",
            Self::MemberUnbanned => "member_unbanned",
            Self::ChannelUpdated => "channel_updated",
            Self::ChannelDeleted => "channel_deleted",
            Self::MemberRemoved => "member_removed",
            Self::MemberRoleChanged => "member_role_changed",
            Self::ChannelOwnerChanged => "channel_owner_changed",
            Self::MessagePinned => "message_pinned",
            Self::MessageUnpinned => "message_unpinned",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// What happened, with the changed object. Serialised adjacently tagged, so
/// `{"type": kind, "data": fields}` is both the log's and the wire's shape (the wire's
/// `data` also carries `channel_id` and `seq`, which deserialising ignores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventBody {
    /// `data` is the message itself, exactly as `POST /api/chat/messages` returns it (its `seq` is the event's).
    Message(Box<Message>),
    MessageUpdated {
        message: Box<Message>,
    },
    MessageDeleted {
        message_id: MessageId,
        parent_id: Option<MessageId>,
    },
    ReactionAdded {
        message_id: MessageId,
        emoji: Emoji,
        user: UserSummary,
    },
    ReactionRemoved {
        message_id: MessageId,
        emoji: Emoji,
        user: UserSummary,
    },
    MemberJoined {
        user: UserSummary,
    },
    MemberLeft {
        user: UserSummary,
    },
    MemberBanned {
        user: UserSummary,
    },
    MemberUnbanned {
        user: UserSummary,
    },
    ChannelUpdated {
        channel: Box<Channel>,
    },
    ChannelDeleted {
        deleted_by: UserId,
    },
    /// Kicked by the owner or a moderator (`by`); unlike a ban, they may join again.
    MemberRemoved {
        user: UserSummary,
        by: UserSummary,
    },
    MemberRoleChanged {
        user: UserSummary,
        role: MemberRole,
    },
    /// `owner` owns the channel from here on; `previous_owner` is a moderator now.
    ChannelOwnerChanged {
        owner: UserSummary,
        previous_owner: UserSummary,
    },
    MessagePinned {
        message_id: MessageId,
        by: UserSummary,
    },
    MessageUnpinned {
        message_id: MessageId,
        by: UserSummary,
    },
}

/// What an event does to who receives the channel from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipChange {
    /// The user is a member from this event on (and receives it).
    Joined(UserId),
    /// The user receives this event and nothing of the channel after it.
    Removed(UserId),
    /// Nobody receives anything of the channel after this event.
    ChannelGone,
}

impl MembershipChange {
    /// Whether `user` stops receiving the channel at this event.
    pub fn removes(self, user: UserId) -> bool {
        match self {
            Self::Removed(who) => who == user,
            Self::ChannelGone => true,
            Self::Joined(_) => false,
        }
    }

    /// The user the change is about (`None` for a deleted channel: it is about everyone).
    pub fn subject(self) -> Option<UserId> {
        match self {
            Self::Joined(user) | Self::Removed(user) => Some(user),
            Self::ChannelGone => None,
        }
    }
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Message(_) => EventKind::Message,
            Self::MessageUpdated { .. } => EventKind::MessageUpdated,
            Self::MessageDeleted { .. } => EventKind::MessageDeleted,
            Self::ReactionAdded { .. } => EventKind::ReactionAdded,
            Self::ReactionRemoved { .. } => EventKind::ReactionRemoved,
            Self::MemberJoined { .. } => EventKind::MemberJoined,
            Self::MemberLeft { .. } => EventKind::MemberLeft,
            Self::MemberBanned { .. } => EventKind::MemberBanned,
            Self::MemberUnbanned { .. } => EventKind::MemberUnbanned,
            Self::ChannelUpdated { .. } => EventKind::ChannelUpdated,
            Self::ChannelDeleted { .. } => EventKind::ChannelDeleted,
            Self::MemberRemoved { .. } => EventKind::MemberRemoved,
            Self::MemberRoleChanged { .. } => EventKind::MemberRoleChanged,
            Self::ChannelOwnerChanged { .. } => EventKind::ChannelOwnerChanged,
            Self::MessagePinned { .. } => EventKind::MessagePinned,
            Self::MessageUnpinned { .. } => EventKind::MessageUnpinned,
        }
    }

    /// The one place that says how an event changes who receives the channel. An unban
    /// changes nothing: it lets the user join again, it does not add them.
    pub fn membership(&self) -> Option<MembershipChange> {
        match self {
            Self::MemberJoined { user } => Some(MembershipChange::Joined(user.id)),
            Self::MemberLeft { user } | Self::MemberBanned { user } | Self::MemberRemoved { user, .. } => {
                Some(MembershipChange::Removed(user.id))
            }
            Self::ChannelDeleted { .. } => Some(MembershipChange::ChannelGone),
            Self::Message(_)
            | Self::MessageUpdated { .. }
            | Self::MessageDeleted { .. }
            | Self::ReactionAdded { .. }
            | Self::ReactionRemoved { .. }
            | Self::MemberUnbanned { .. }
            | Self::ChannelUpdated { .. }
            | Self::MemberRoleChanged { .. }
            | Self::ChannelOwnerChanged { .. }
            | Self::MessagePinned { .. }
            | Self::MessageUnpinned { .. } => None,
        }
    }

    /// The body's fields as a JSON object (the log's `data` column, without `channel_id`
    /// and `seq`, which the row carries).
    pub fn to_data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove("data").unwrap_or_else(|| Value::Object(Map::new())),
            _ => Value::Object(Map::new()),
        }
    }

    /// The body back from the log or the wire: its `type` and `data`.
    pub fn from_data(kind: &str, data: Value) -> Result<Self, serde_json::Error> {
        let mut tagged = Map::with_capacity(2);
        tagged.insert("type".into(), Value::String(kind.to_owned()));
        tagged.insert("data".into(), data);
        serde_json::from_value(Value::Object(tagged))
    }
}

/// An event as stored in the log and sent to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEvent {
    pub channel_id: ChannelId,
    pub seq: i64,
    /// When the change was committed (the log's `created_at`; retention goes by it).
    pub at: OffsetDateTime,
    pub body: EventBody,
}

impl ChannelEvent {
    pub fn new(channel_id: ChannelId, seq: i64, at: OffsetDateTime, body: EventBody) -> Self {
        Self { channel_id, seq, at, body }
    }

    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    pub fn membership(&self) -> Option<MembershipChange> {
        self.body.membership()
    }

    /// The WebSocket frame: `{"type": kind, "data": {...fields, channel_id, seq}}`.
    pub fn to_frame(&self) -> String {
        let mut data = match self.body.to_data() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        data.insert("channel_id".into(), Value::String(self.channel_id.to_string()));
        data.insert("seq".into(), Value::from(self.seq));
        let mut frame = Map::with_capacity(2);
        frame.insert("type".into(), Value::String(self.kind().as_str().to_owned()));
        frame.insert("data".into(), Value::Object(data));
        Value::Object(frame).to_string()
    }
}

/// A message that mentions users, for the `mention` frame each of `users` receives
/// (docs/api.md section 11). Live only, not logged: a client that was away reads
/// `mention_count` and `GET /api/mentions`, which the `mentions` table answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionNotice {
    /// Who the message notifies: never its author, never someone who blocked the author.
    pub users: Vec<UserId>,
    pub message: Box<Message>,
}

impl MentionNotice {
    /// `{"type": "mention", "data": {"channel_id", "message"}}`.
    pub fn to_frame(&self) -> String {
        serde_json::json!({
            "type": "mention",
            "data": { "channel_id": self.message.channel_id, "message": self.message },
        })
        .to_string()
    }
}

/// Where committed channel events go to be delivered (the realtime hub).
pub trait EventSink: Send + Sync {
    fn publish(&self, events: Vec<ChannelEvent>);
    /// Delivers `mention` frames to the users they notify, after the events they came with.
    fn notify(&self, notices: Vec<MentionNotice>);
}

/// The result of a committed change together with the events it wrote. The value can only
/// be reached through [`Committed::publish`], so a caller cannot forget to deliver the
/// events of a change it committed: every repository function that appends to the event
/// log returns one of these.
#[must_use = "a committed change's events must be published: call .publish(sink)"]
#[derive(Debug)]
pub struct Committed<T> {
    value: T,
    events: Vec<ChannelEvent>,
    notices: Vec<MentionNotice>,
}

impl<T> Committed<T> {
    pub fn new(value: T, events: Vec<ChannelEvent>) -> Self {
        Self { value, events, notices: Vec::new() }
    }

    /// The change also notifies users of mentions, once its events are published.
    pub fn with_notices(mut self, notices: Vec<MentionNotice>) -> Self {
        self.notices.extend(notices.into_iter().filter(|n| !n.users.is_empty()));
        self
    }

    /// Hands the events to `sink` (in commit order), then the mention notices, and returns
    /// the value.
    pub fn publish(self, sink: &dyn EventSink) -> T {
        if !self.events.is_empty() {
            sink.publish(self.events);
        }
        if !self.notices.is_empty() {
            sink.notify(self.notices);
        }
        self.value
    }

    /// The events, for a caller that merges several commits before publishing.
    pub fn events(&self) -> &[ChannelEvent] {
        &self.events
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed { value: f(self.value), events: self.events, notices: self.notices }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{DisplayName, Username};

    fn user(name: &str) -> UserSummary {
        UserSummary {
            id: UserId::new(),
            username: Username::parse(name).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }

    #[test]
    fn membership_change_of_each_body() {
        let alice = user("alice");
        let id = alice.id;
        let message_id = MessageId::new();
        let emoji = Emoji::parse(":ok:").unwrap();
        let table: Vec<(EventBody, Option<MembershipChange>)> = vec![
            (EventBody::MemberJoined { user: alice.clone() }, Some(MembershipChange::Joined(id))),
            (EventBody::MemberLeft { user: alice.clone() }, Some(MembershipChange::Removed(id))),
            (EventBody::MemberBanned { user: alice.clone() }, Some(MembershipChange::Removed(id))),
            (EventBody::MemberUnbanned { user: alice.clone() }, None),
            (EventBody::MemberRemoved { user: alice.clone(), by: alice.clone() }, Some(MembershipChange::Removed(id))),
            (EventBody::MemberRoleChanged { user: alice.clone(), role: MemberRole::Moderator }, None),
            (EventBody::ChannelOwnerChanged { owner: alice.clone(), previous_owner: alice.clone() }, None),
            (EventBody::MessagePinned { message_id, by: alice.clone() }, None),
            (EventBody::ChannelDeleted { deleted_by: id }, Some(MembershipChange::ChannelGone)),
            (EventBody::MessageDeleted { message_id, parent_id: None }, None),
            (EventBody::ReactionAdded { message_id, emoji: emoji.clone(), user: alice.clone() }, None),
            (EventBody::ReactionRemoved { message_id, emoji, user: alice }, None),
        ];
        for (body, expected) in table {
            assert_eq!(body.membership(), expected, "{:?}", body.kind());
        }
    }

    #[test]
    fn removal_applies_to_its_subject_or_to_everyone() {
        let (a, b) = (UserId::new(), UserId::new());
        assert!(MembershipChange::Removed(a).removes(a));
        assert!(!MembershipChange::Removed(a).removes(b));
        assert!(MembershipChange::ChannelGone.removes(b));
        assert!(!MembershipChange::Joined(a).removes(a));
    }

    #[test]
    fn frame_carries_type_channel_and_seq() {
        let alice = user("alice");
        let channel = ChannelId::new();
        let event =
            ChannelEvent::new(channel, 7, OffsetDateTime::UNIX_EPOCH, EventBody::MemberBanned { user: alice.clone() });
        let frame: Value = serde_json::from_str(&event.to_frame()).unwrap();
        assert_eq!(frame["type"], "member_banned");
        assert_eq!(frame["data"]["seq"], 7);
        assert_eq!(frame["data"]["channel_id"], channel.to_string());
        assert_eq!(frame["data"]["user"]["username"], "alice");
    }

    #[test]
    fn body_survives_the_log_and_the_wire() {
        let alice = user("alice");
        let bodies = vec![
            EventBody::MemberJoined { user: alice.clone() },
            EventBody::MessageDeleted { message_id: MessageId::new(), parent_id: Some(MessageId::new()) },
            EventBody::ChannelDeleted { deleted_by: alice.id },
        ];
        for body in bodies {
            let event = ChannelEvent::new(ChannelId::new(), 3, OffsetDateTime::UNIX_EPOCH, body.clone());
            // The stored `data`, and the wire frame's `data` with its extra fields.
            assert_eq!(EventBody::from_data(body.kind().as_str(), body.to_data()).unwrap(), body);
            let frame: Value = serde_json::from_str(&event.to_frame()).unwrap();
            assert_eq!(EventBody::from_data(body.kind().as_str(), frame["data"].clone()).unwrap(), body);
        }
        assert!(EventBody::from_data("dance", Value::Null).is_err());
    }

    struct Recorder(std::sync::Mutex<Vec<i64>>);
    impl EventSink for Recorder {
        fn publish(&self, events: Vec<ChannelEvent>) {
            self.0.lock().unwrap().extend(events.iter().map(|e| e.seq));
        }
        fn notify(&self, notices: Vec<MentionNotice>) {
            self.0.lock().unwrap().extend(notices.iter().map(|n| -(n.users.len() as i64)));
        }
    }

    #[test]
    fn committed_value_comes_out_only_through_publish() {
        let sink = Recorder(std::sync::Mutex::new(Vec::new()));
        let event = ChannelEvent::new(
            ChannelId::new(),
            1,
            OffsetDateTime::UNIX_EPOCH,
            EventBody::ChannelDeleted { deleted_by: UserId::new() },
        );
        let value = Committed::new("done", vec![event]).map(str::len).publish(&sink);
        assert_eq!(value, 4);
        assert_eq!(*sink.0.lock().unwrap(), vec![1]);
    }
}
