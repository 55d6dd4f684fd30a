-- txbox SQLite schema, version 5 ({{prefix}} as in 0001_init.sql): an event that comes back
-- to its key's chain (requeueFailed, an unfenced retryLater or markAsPublishing of a failed or
-- sent event) never goes in front of an event of its key that is publishing.
--
-- Version 4 put it back in seq order. Under keyedDeadLetters 'skip' the key goes on past its
-- dead letter, so a dead letter redriven while a later event of its key was publishing became
-- the head in front of it: the next claim took it while the later one was still in flight (two
-- events of one key at once, docs/CONTRACT.md §2), and that later event, no longer a head, could
-- not be claimed again once its lease expired.
--
-- The claim takes only the heads of the chains, and an event is publishing only as its key's
-- head, so the trigger keeps one rule: the event that comes back walks its key's chain back
-- from the tail while the events it passes have a higher seq, as before, and goes after the
-- event where the walk stops; if the walk reaches the head without stopping and that head is
-- publishing, it goes right after the head instead of in front of it. The publishing event
-- stays the only claimable one of its key (again once its lease expires), and when it is sent
-- the key drains one event per claim, the redriven one first. A key whose head is not
-- publishing keeps seq order, so 'block' (which holds a key behind its dead letter, never
-- letting a later event of it be claimed) still sends each key in order. A chain can then be
-- out of seq order, which the walk allows: it links the event after the one it stopped at,
-- whatever their seqs. Cost: only when an event comes back, never on enqueue, claim or mark.
--
-- Races: the trigger runs inside the statement that changes the status, which holds SQLite's
-- single write lock, as the claim (one UPDATE) does. A claim therefore runs wholly before the
-- event comes back (the head it took is publishing when the trigger looks, so the event goes
-- behind it) or wholly after (it sees the chain with the event in place), never between.
--
-- The first statement picks the event it goes after (NULL: it becomes the head); the second
-- links the event that followed that one (the old head, when it becomes the head) behind it,
-- found by walking back from the tail to it; the third makes it the tail if nothing follows it.

DROP TRIGGER IF EXISTS {{prefix}}outbox_key_return;

CREATE TRIGGER IF NOT EXISTS {{prefix}}outbox_key_return AFTER UPDATE OF status ON {{prefix}}outbox
WHEN new.ordering_key IS NOT NULL AND old.status NOT IN ('pending', 'publishing')
  AND new.status IN ('pending', 'publishing')
BEGIN
  UPDATE {{prefix}}outbox SET key_prev = (
    WITH RECURSIVE walk (seq, prev, status) AS (
      SELECT seq, key_prev, status FROM {{prefix}}outbox
      WHERE seq = (SELECT tail_seq FROM {{prefix}}outbox_keys WHERE ordering_key = new.ordering_key)
      UNION ALL
      SELECT live.seq, live.key_prev, live.status FROM {{prefix}}outbox AS live JOIN walk ON live.seq = walk.prev
      WHERE walk.seq > new.seq
    )
    SELECT coalesce(
      (SELECT seq FROM walk WHERE seq < new.seq),
      (SELECT seq FROM walk WHERE prev IS NULL AND status = 'publishing')
    )
  )
  WHERE seq = new.seq; -- the event that followed its previous one (the head, if it has none) follows it now:
  UPDATE {{prefix}}outbox SET key_prev = new.seq WHERE seq = (
    WITH RECURSIVE walk (seq, prev) AS (
      SELECT seq, key_prev FROM {{prefix}}outbox
      WHERE seq = (SELECT tail_seq FROM {{prefix}}outbox_keys WHERE ordering_key = new.ordering_key)
      UNION ALL
      SELECT live.seq, live.key_prev FROM {{prefix}}outbox AS live JOIN walk ON live.seq = walk.prev
      WHERE walk.seq IS NOT (SELECT key_prev FROM {{prefix}}outbox WHERE seq = new.seq)
        AND walk.prev IS NOT (SELECT key_prev FROM {{prefix}}outbox WHERE seq = new.seq)
    )
    SELECT seq FROM walk WHERE prev IS (SELECT key_prev FROM {{prefix}}outbox WHERE seq = new.seq)
  ); -- and if no live event follows it, it is the tail:
  INSERT INTO {{prefix}}outbox_keys (ordering_key, last_key_seq, tail_seq)
  VALUES (new.ordering_key, coalesce(new.key_seq, new.seq), new.seq)
  ON CONFLICT (ordering_key) DO UPDATE
  SET tail_seq = CASE WHEN EXISTS (
    SELECT 1 FROM {{prefix}}outbox
    WHERE key_prev = new.seq AND status IN ('pending', 'publishing')
  ) THEN tail_seq ELSE excluded.tail_seq END; -- (each line of a trigger ends in a comment or END)
END;
