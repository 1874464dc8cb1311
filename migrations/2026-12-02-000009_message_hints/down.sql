ALTER TABLE messages DROP COLUMN has_attachments, DROP COLUMN has_reactions;
