-- Hints that let a history page skip the per-row lookups a message does not need (issue 15).
-- Most messages have no attachments and no reactions; a page asked both tables about every
-- row, which was half of the page statement's time, and each lookup's cached plan could be
-- a sequential scan when it was planned while the table was small. A hint is true once the
-- message has had an attachment or a reaction; it may stay true after they are gone (that
-- costs one lookup), and it is never false while there is one.
ALTER TABLE messages
    ADD COLUMN has_attachments boolean NOT NULL DEFAULT false,
    ADD COLUMN has_reactions   boolean NOT NULL DEFAULT false;

UPDATE messages SET has_attachments = true
WHERE id IN (SELECT message_id FROM message_attachments);
UPDATE messages SET has_reactions = true
WHERE id IN (SELECT message_id FROM reactions);
