-- Undoes 0002_inbox_id_only.sql (placeholders as in 0001_initial.sql): (stream, stream_seq)
-- is a unique key of the inbox again, as version 1 had it. Fails if two stored deliveries
-- share a stream position (a stream re-created under its name since): delete the older one
-- first, or do not go back to version 1.

ALTER TABLE "{{schema}}"."{{prefix}}inbox"
  ADD CONSTRAINT "{{prefix}}inbox_stream_key" UNIQUE (stream, stream_seq);
