-- Channels, DMs, membership, bans and read markers.
CREATE TABLE channels (
    id           uuid PRIMARY KEY,
    name         text        NOT NULL,
    description  text,
    owner_id     uuid        NOT NULL REFERENCES users (id),
    is_private   boolean     NOT NULL DEFAULT false,
    kind         text        NOT NULL CHECK (kind IN ('channel', 'dm')),
    -- For DMs: the two user ids, smaller first. Unique, so two concurrent "open a DM"
    -- calls can only ever make one row.
    dm_key       text UNIQUE,
    -- The channel's event sequence: the last seq handed out. Taken under this row's lock,
    -- in the same transaction as the event, so seqs have no gaps and no duplicates.
    last_seq     bigint      NOT NULL DEFAULT 0,
    member_count bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'dm') = (dm_key IS NOT NULL))
);
CREATE UNIQUE INDEX channels_name_key ON channels (lower(name)) WHERE kind = 'channel';

CREATE TABLE memberships (
    channel_id    uuid        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_seq bigint      NOT NULL DEFAULT 0,
    joined_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
-- "My channels" walks a user's memberships in channel-id order.
CREATE INDEX memberships_user ON memberships (user_id, channel_id);

CREATE TABLE channel_bans (
    channel_id uuid        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by  uuid        NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
