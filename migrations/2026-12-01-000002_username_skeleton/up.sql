-- Lookalike usernames (`aIice` beside `alice`): each account stores its username's
-- confusable skeleton (Unicode UTS #39, lowercased; `domain::Username::confusable_key`), and
-- no two accounts may share one. SQL cannot compute the skeleton, so existing rows start
-- NULL (NULLs never conflict) and the server fills them in when it starts, oldest account
-- first (`persistence::users::backfill_skeletons`). The index name is what the store maps to
-- `username_taken`.
ALTER TABLE users ADD COLUMN username_skeleton text;
CREATE UNIQUE INDEX users_username_skeleton_key ON users (username_skeleton);
