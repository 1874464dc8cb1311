-- Messages, threads, reactions, files and the channel event log.
CREATE TABLE messages (
    id          uuid        PRIMARY KEY,
    channel_id  uuid        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id     uuid        NOT NULL REFERENCES users (id),
    seq         bigint      NOT NULL,
    parent_id   uuid        REFERENCES messages (id) ON DELETE CASCADE,
    content     text        NOT NULL,
    reply_count bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    edited_at   timestamptz,
    deleted     boolean     NOT NULL DEFAULT false,
    -- Maintained by the database, so no writer can forget it.
    search      tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED
);
-- History pages walk (channel_id, seq) in either direction.
CREATE UNIQUE INDEX messages_channel_seq ON messages (channel_id, seq);
CREATE INDEX messages_thread ON messages (parent_id, seq) WHERE parent_id IS NOT NULL;
CREATE INDEX messages_search ON messages USING gin (search);

-- Idempotent send: (channel, user, nonce) names one message for 24 hours.
CREATE TABLE message_nonces (
    channel_id uuid        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    nonce      text        NOT NULL,
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id, nonce)
);
CREATE INDEX message_nonces_created ON message_nonces (created_at);

CREATE TABLE reactions (
    message_id uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji      text        NOT NULL,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE files (
    id           uuid        PRIMARY KEY,
    uploader_id  uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename     text        NOT NULL,
    content_type text        NOT NULL,
    size         bigint      NOT NULL,
    sha256       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_created ON files (created_at);

CREATE TABLE message_attachments (
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    file_id    uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    position   int  NOT NULL,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX message_attachments_file ON message_attachments (file_id);

-- The channel event log: every channel-scoped change with its seq, written in the same
-- transaction as the change. Replay reads "channel C after seq S, in order" off the primary
-- key; retention deletes by created_at. No foreign key to channels: a channel's
-- channel_deleted event outlives the channel so reconnecting clients learn of it.
CREATE TABLE channel_events (
    channel_id uuid        NOT NULL,
    seq        bigint      NOT NULL,
    kind       text        NOT NULL,
    data       jsonb       NOT NULL,
    subject_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seq)
);
CREATE INDEX channel_events_created ON channel_events (created_at);
