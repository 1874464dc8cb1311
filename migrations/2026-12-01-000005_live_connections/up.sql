-- A password change revokes every token of the account issued before it: tokens whose id
-- (a UUID v7, so it carries its issue time in milliseconds) is older than `not_before` are
-- refused, and their sockets closed. Nodes poll `updated_at`.
CREATE TABLE token_floors (
    user_id    uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    not_before timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX token_floors_updated_at ON token_floors (updated_at);

-- Failed logins per account (the lowercased username, known or not), whatever the client's
-- address: the per-account limit is shared by every node through this table.
CREATE TABLE login_failures (
    account   text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX login_failures_account ON login_failures (account, failed_at);
CREATE INDEX login_failures_failed_at ON login_failures (failed_at);
