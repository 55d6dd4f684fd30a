-- Undoes 0002_inbox_id_only.sql ({{prefix}} as in 0001_init.sql): (stream, stream_seq) is a
-- unique key of the inbox again, as version 1 had it. Fails if two stored deliveries share a
-- stream position (a stream re-created under its name since): delete the older one first, or
-- do not go back to version 1.

CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}inbox_stream_seq
  ON {{prefix}}inbox (stream, stream_seq) WHERE stream IS NOT NULL AND stream_seq IS NOT NULL;
