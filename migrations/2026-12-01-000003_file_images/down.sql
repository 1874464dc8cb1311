DROP INDEX files_uploader_created;
ALTER TABLE files DROP COLUMN width, DROP COLUMN height, DROP COLUMN has_thumbnail;
