DROP TABLE channel_events;
DROP TABLE message_attachments;
DROP TABLE files;
DROP TABLE reactions;
DROP TABLE message_nonces;
DROP TABLE messages;
