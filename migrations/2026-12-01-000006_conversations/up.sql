-- Conversations (docs/api.md section 11): roles, group DMs, mentions, pins, blocking and
-- the moderation audit log.

-- Group DMs share the DM machinery: `dm_key` is the sorted member ids, unique, so
-- concurrent "open this conversation" calls make one channel.
ALTER TABLE channels DROP CONSTRAINT channels_kind_check;
ALTER TABLE channels ADD CONSTRAINT channels_kind_check CHECK (kind IN ('channel', 'dm', 'group_dm'));
ALTER TABLE channels DROP CONSTRAINT channels_check;
ALTER TABLE channels ADD CONSTRAINT channels_dm_key_check CHECK ((kind IN ('dm', 'group_dm')) = (dm_key IS NOT NULL));

-- A member's role below the owner. The owner is `channels.owner_id` (one source of truth);
-- an owner who hands the channel over becomes a moderator.
ALTER TABLE memberships ADD COLUMN role text NOT NULL DEFAULT 'member'
    CHECK (role IN ('member', 'moderator'));

-- Who a message mentions by name (readers of the channel only), and whether it mentions
-- everyone; `pinned_at` is set while the message is pinned.
ALTER TABLE messages ADD COLUMN mention_ids uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE messages ADD COLUMN mentions_everyone boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN pinned_at timestamptz;
ALTER TABLE messages ADD COLUMN pinned_by uuid REFERENCES users (id) ON DELETE SET NULL;
-- "Pins of a channel, newest first", and the 100-pin cap, read only pinned rows.
CREATE INDEX messages_pins ON messages (channel_id, pinned_at DESC) WHERE pinned_at IS NOT NULL;

-- One row per user a message notifies: named readers and, for @channel/@here, every
-- member — never the author, never someone who blocked the author. Written and removed
-- in the same transaction as the message, its edit or its deletion, so counts are exact.
CREATE TABLE mentions (
    user_id    uuid   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    message_id uuid   NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    channel_id uuid   NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
-- `mention_count` of one channel: the caller's mentions above the read marker.
CREATE INDEX mentions_unread ON mentions (user_id, channel_id, seq);
CREATE INDEX mentions_message ON mentions (message_id);

CREATE TABLE blocks (
    blocker_id uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
-- "Who blocked this author?" when a message is posted.
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

-- Every moderation action, written in the same transaction as the action.
CREATE TABLE audit_log (
    id                uuid        PRIMARY KEY,
    channel_id        uuid        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    action            text        NOT NULL CHECK (action IN
                          ('ban', 'unban', 'kick', 'role_change', 'transfer', 'message_deleted')),
    actor_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target_user_id    uuid        REFERENCES users (id) ON DELETE SET NULL,
    target_message_id uuid,
    reason            text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_channel ON audit_log (channel_id, id DESC);
