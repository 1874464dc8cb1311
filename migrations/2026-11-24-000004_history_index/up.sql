-- Channel history shows top-level messages (replies live in their thread); this partial
-- index serves "newest N top-level messages of channel C" and both keyset directions
-- without touching replies.
CREATE INDEX messages_channel_top_level ON messages (channel_id, seq) WHERE parent_id IS NULL;
