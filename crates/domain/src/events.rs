//! Channel-scoped events: everything that happens in a channel gets the channel's next `seq`
//! and is written to the event log in the same transaction as the change itself, so a client
//! can replay what it missed (docs/websocket.md).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::channel::Channel;
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
}

impl EventKind {
    pub const ALL: [Self; 11] = [
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
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }

    /// Membership changes decide who receives the channel afterwards.
    pub fn changes_membership(self) -> bool {
        matches!(
            self,
            Self::MemberJoined | Self::MemberLeft | Self::MemberBanned | Self::MemberUnbanned | Self::ChannelDeleted
        )
    }
}

/// What happened, with the changed object. [`EventBody::to_data`] turns it into the `data`
/// object of the wire frame, which always carries `channel_id` and `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
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
        }
    }

    /// The user a membership event is about, so the hub can subscribe or drop them.
    pub fn member(&self) -> Option<&UserSummary> {
        match self {
            Self::MemberJoined { user }
            | Self::MemberLeft { user }
            | Self::MemberBanned { user }
            | Self::MemberUnbanned { user } => Some(user),
            _ => None,
        }
    }

    /// The wire `data` object: the body's fields plus `channel_id` and `seq`.
    pub fn to_data(&self, channel_id: ChannelId, seq: i64) -> Value {
        let mut data = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        data.insert("channel_id".into(), Value::String(channel_id.to_string()));
        data.insert("seq".into(), Value::from(seq));
        Value::Object(data)
    }
}

/// An event as stored in the log and sent to clients: `{"type": kind, "data": data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelEvent {
    pub channel_id: ChannelId,
    pub seq: i64,
    pub kind: EventKind,
    pub data: Value,
    /// For membership events, the user they are about.
    pub subject: Option<UserId>,
}

impl ChannelEvent {
    pub fn new(channel_id: ChannelId, seq: i64, body: &EventBody) -> Self {
        Self {
            channel_id,
            seq,
            kind: body.kind(),
            data: body.to_data(channel_id, seq),
            subject: body.member().map(|user| user.id),
        }
    }
}

/// Where committed channel events go to be delivered (the realtime hub). Writers call it
/// right after their transaction commits, in commit order.
pub trait EventSink: Send + Sync {
    fn publish(&self, events: Vec<ChannelEvent>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{DisplayName, Username};

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }

    #[test]
    fn data_carries_channel_and_seq() {
        let user = UserSummary {
            id: UserId::new(),
            username: Username::parse("alice").unwrap(),
            display_name: DisplayName::parse("Alice").unwrap(),
        };
        let channel = ChannelId::new();
        let event = ChannelEvent::new(channel, 7, &EventBody::MemberBanned { user: user.clone() });
        assert_eq!(event.kind, EventKind::MemberBanned);
        assert_eq!(event.subject, Some(user.id));
        assert_eq!(event.data["seq"], 7);
        assert_eq!(event.data["channel_id"], channel.to_string());
        assert_eq!(event.data["user"]["username"], "alice");
    }
}
