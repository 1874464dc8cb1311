-- Personal API tokens (docs/api.md section 12). Only a SHA-256 of the secret is kept: the
-- secret is 256 random bits, so a fast hash is enough (nothing to brute-force), and the
-- digest can be looked up by an index. The id doubles as the credential's token id in the
-- revocation set (`revoked_tokens.jti`), so revoking a token and closing its sockets is the
-- path logout already takes. A revoked token's row is deleted.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    token_hash   bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz
);
CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);
CREATE INDEX api_tokens_user ON api_tokens (user_id, id);

-- Bot accounts: users with `is_bot`, owned by the person who made them (deleting the owner
-- deletes their bots). A bot has no usable password.
ALTER TABLE users ADD COLUMN is_bot boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN bot_owner_id uuid REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX users_bot_owner ON users (bot_owner_id, lower(username)) WHERE bot_owner_id IS NOT NULL;

-- Incoming webhooks. Each has an account of its own (a bot with no owner and no token)
-- that is a member of the webhook's channel and the author of what it posts, so a webhook
-- message is an ordinary message to every query, rule and event. A deleted webhook keeps
-- its row (deleted_at), so its old messages still name it. Only the secret's SHA-256 is kept.
CREATE TABLE webhooks (
    id          uuid PRIMARY KEY,
    channel_id  uuid        NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id     uuid        NOT NULL REFERENCES users (id),
    name        text        NOT NULL,
    secret_hash bytea       NOT NULL,
    created_by  uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX webhooks_secret_hash_key ON webhooks (secret_hash);
CREATE INDEX webhooks_channel ON webhooks (channel_id, id) WHERE deleted_at IS NULL;
CREATE INDEX webhooks_user ON webhooks (user_id);
-- The name a webhook message shows (the payload's `username`, or the webhook's name); NULL
-- for every other message.
ALTER TABLE messages ADD COLUMN webhook_username text;
