-- Issue 15: the event log is partitioned by day on created_at, so retention drops whole
-- partitions (a catalog change) instead of deleting rows one by one (dead tuples, vacuum,
-- WAL). The server's janitor creates the partitions ahead of time and drops the ones past
-- retention (persistence::events::maintain_partitions); this migration creates today's and
-- the next few days' so a fresh database works at once. The default partition catches rows
-- of a day that has no partition yet (a janitor that fell behind), so an append never fails.
--
-- A partitioned table's primary key must contain the partition key, so it is
-- (channel_id, seq, created_at). Uniqueness of (channel_id, seq) does not depend on it: seqs
-- are handed out under the channel row's lock (events::lock_channel). Replay still reads
-- "channel C after seq S, in order" off each partition's primary key index.

ALTER TABLE channel_events RENAME TO channel_events_unpartitioned;
ALTER INDEX channel_events_pkey RENAME TO channel_events_unpartitioned_pkey;
DROP INDEX channel_events_created;

CREATE TABLE channel_events (
    channel_id uuid        NOT NULL,
    seq        bigint      NOT NULL,
    kind       text        NOT NULL,
    data       jsonb       NOT NULL,
    subject_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seq, created_at)
) PARTITION BY RANGE (created_at);

CREATE TABLE channel_events_default PARTITION OF channel_events DEFAULT;

-- One partition per UTC day, from the oldest event kept to three days ahead.
DO $$
DECLARE
    day date := least(
        (SELECT min(created_at) AT TIME ZONE 'UTC' FROM channel_events_unpartitioned)::date,
        (now() AT TIME ZONE 'UTC')::date);
BEGIN
    WHILE day <= (now() AT TIME ZONE 'UTC')::date + 3 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF channel_events FOR VALUES FROM (%L) TO (%L)',
            'channel_events_p' || to_char(day, 'YYYYMMDD'),
            day::timestamp AT TIME ZONE 'UTC',
            (day + 1)::timestamp AT TIME ZONE 'UTC');
        day := day + 1;
    END LOOP;
END
$$;

INSERT INTO channel_events SELECT channel_id, seq, kind, data, subject_id, created_at FROM channel_events_unpartitioned;
DROP TABLE channel_events_unpartitioned;
