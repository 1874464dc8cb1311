-- Images get their dimensions and a thumbnail, made after the upload by a worker pool;
-- the per-user upload quotas sum a user's recent and unattached uploads.
ALTER TABLE files
    ADD COLUMN width         integer,
    ADD COLUMN height        integer,
    ADD COLUMN has_thumbnail boolean NOT NULL DEFAULT false;
CREATE INDEX files_uploader_created ON files (uploader_id, created_at);
