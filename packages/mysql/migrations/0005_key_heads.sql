-- txbox outbox, schema version 5: where a claim finds the heads of ordering keys.
-- Placeholders as in 0001_outbox.sql.
-- Up to version 4 a claim found a keyed event's turn by walking the pending events in seq
-- order and checking each against its key: with few keys, every claim walked the backlog of
-- keys whose head was in flight. Now each key's counter row also says when its head may next
-- be claimable, and a claim reads only the keys due, in that order:
-- head_at: NULL while the key has no unsent event a claim could take (an enqueue sets it);
--   the lease end while its head is in flight (the head's mark sets it to the mark's time, so
--   the next event goes at once; the lease end is when an expired lease makes it claimable
--   anyway); a retried head's available_at; the time of the last enqueue or mark otherwise.
-- held: 1 while a dead letter comes before the key's first pending event: claims with
--   keyedDeadLetters 'block' pass the key by until a redrive clears it.
-- version: raised by every write to the row; a claim trusts what it read of the key's events
--   only when the row it locked has the version its read saw.
-- The default makes every existing key due (examined once by the next claim), and so a key
-- that a process of an earlier release creates while the upgrade rolls out. Such a process
-- does not set head_at when it enqueues to a key a claim found empty, nor when it marks a head
-- (the next event then waits for the lease end): upgrade every process that writes to the outbox.
ALTER TABLE `{{prefix}}outbox_keys`
  ADD COLUMN `head_at` DATETIME(3) NULL DEFAULT '1000-01-01 00:00:00.000',
  ADD COLUMN `held` TINYINT NOT NULL DEFAULT 0,
  ADD COLUMN `version` BIGINT NOT NULL DEFAULT 0;
-- ix_ready: the due keys in head_at order, first those no dead letter holds (all a claim with
-- keyedDeadLetters 'block' reads), then the held ones ('skip' reads both ranges).
ALTER TABLE `{{prefix}}outbox_keys` ADD KEY `ix_ready` (`held`, `head_at`)
