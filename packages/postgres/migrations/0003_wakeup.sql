-- txbox PostgreSQL schema, version 3 (placeholders as in 0001_initial.sql).
--
-- The wake-up flags. A relay's wakeup (createWakeup) writes a row here just before it sleeps
-- on LISTEN and deletes it when it wakes; an enqueue calls pg_notify only while a row of its
-- channel is live (notify: 'waiting', the default). So an outbox under load, whose relays
-- never sleep, notifies nobody: NOTIFY takes a database-wide lock at commit that serializes
-- concurrent committers. sleeping_until is in the database's clock (statement_timestamp()),
-- the one clock every enqueuer and relay share; a relay that dies asleep stops costing
-- anything when its row expires, and the next wakeup to sleep deletes it.
CREATE TABLE IF NOT EXISTS "{{schema}}"."{{prefix}}wakeup" (
  channel        text NOT NULL,
  -- One row per wakeup object (a random id): several relays may sleep on one channel.
  listener       text NOT NULL,
  sleeping_until timestamptz NOT NULL,
  CONSTRAINT "{{prefix}}wakeup_pkey" PRIMARY KEY (channel, listener)
);
