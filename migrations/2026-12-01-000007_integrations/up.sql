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
