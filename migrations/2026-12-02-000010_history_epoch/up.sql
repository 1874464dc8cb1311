-- The version of everything a history page shows that is not a message of its channel
-- (issue 15). A node keeps rendered pages and serves one again only while its channel's
-- `last_seq` and this number are what they were when it was read. Every change to a
-- channel's messages appends a channel event (so moves `last_seq`); the few changes that
-- do not, an author's display name and an attachment's image facts, move this number, by
-- trigger, in the transaction that makes them, so a page read in one snapshot carries the
-- version of exactly what it shows.
CREATE TABLE history_epoch (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    n  bigint  NOT NULL
);
INSERT INTO history_epoch (id, n) VALUES (true, 0);

CREATE FUNCTION bump_history_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE history_epoch SET n = n + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_history_epoch
    AFTER UPDATE OF username, display_name ON users
    FOR EACH ROW
    WHEN (OLD.username IS DISTINCT FROM NEW.username OR OLD.display_name IS DISTINCT FROM NEW.display_name)
    EXECUTE FUNCTION bump_history_epoch();

CREATE TRIGGER files_history_epoch
    AFTER UPDATE OF filename, content_type, size, width, height, has_thumbnail ON files
    FOR EACH ROW
    WHEN (OLD.filename IS DISTINCT FROM NEW.filename
          OR OLD.content_type IS DISTINCT FROM NEW.content_type
          OR OLD.size IS DISTINCT FROM NEW.size
          OR OLD.width IS DISTINCT FROM NEW.width
          OR OLD.height IS DISTINCT FROM NEW.height
          OR OLD.has_thumbnail IS DISTINCT FROM NEW.has_thumbnail)
    EXECUTE FUNCTION bump_history_epoch();

CREATE TRIGGER webhooks_history_epoch
    AFTER UPDATE OF name ON webhooks
    FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION bump_history_epoch();
