ALTER TABLE channel_events RENAME TO channel_events_partitioned;
CREATE TABLE channel_events (
    channel_id uuid        NOT NULL,
    seq        bigint      NOT NULL,
    kind       text        NOT NULL,
    data       jsonb       NOT NULL,
    subject_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seq)
);
CREATE INDEX channel_events_created ON channel_events (created_at);
INSERT INTO channel_events SELECT channel_id, seq, kind, data, subject_id, created_at FROM channel_events_partitioned;
DROP TABLE channel_events_partitioned;
