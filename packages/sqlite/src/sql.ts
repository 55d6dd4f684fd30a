/**
 * Every SQL statement of the adapter, built from a table prefix that the options already
 * validated as an identifier, so nothing unvalidated is ever interpolated into SQL.
 */

/** The table names of one store. */
export interface Tables {
  readonly outbox: string
  /** The last `keySeq` given per ordering key. */
  readonly outboxKeys: string
  readonly inbox: string
  readonly schemaVersion: string
  /** The prefix the names were built from; index names start with it too. */
  readonly prefix: string
}

/** The tables for a validated prefix. */
export const tablesFor = (prefix: string): Tables => ({
  outbox: `${prefix}outbox`,
  outboxKeys: `${prefix}outbox_keys`,
  inbox: `${prefix}inbox`,
  schemaVersion: `${prefix}schema_version`,
  prefix,
})

/**
 * The migration history, as every release since the first keeps it: one row per applied
 * version of `migrations/`.
 */
export const historySql = (t: Tables) =>
  ({
    createVersionTable: `CREATE TABLE IF NOT EXISTS ${t.schemaVersion} (
  version INTEGER PRIMARY KEY,
  applied_at INTEGER NOT NULL
) STRICT`,
    appliedVersions: `SELECT version FROM ${t.schemaVersion}`,
    recordVersion: `INSERT INTO ${t.schemaVersion} (version, applied_at) VALUES (?, ?) ON CONFLICT (version) DO NOTHING`,
  }) as const

const OUTBOX_COLUMNS = `seq, event_id, subject, payload, headers, status, enqueued_at, sent_at, error_message,
  retry_count, available_at, claimed_at, claimed_by, lease_until, ordering_key, key_seq`

const INBOX_COLUMNS = `seq, event_id, subject, payload, headers, stream, stream_seq, status, received_at,
  processed_at, deliveries, error_message, claimed_at, claimed_by, lease_until`

/** The lease is cleared: `claimed_by` and `lease_until` go, `claimed_at` stays as history. */
const CLEAR_LEASE = 'claimed_by = NULL, lease_until = NULL'

/**
 * A list of ids bound to one `?` as a JSON array: one statement takes any number of ids
 * (core caps a list at 10,000) without SQLite's limit on bound parameters, and each id is
 * looked up through the event_id index.
 */
const ID_LIST = '(SELECT value FROM json_each(?))'

/**
 * The ids of a list that `workerId` (the last `?`) still holds. The unary `+` keeps `status`
 * out of the planner's choice of index: without statistics it prefers the status index for
 * `status = 'publishing'`, and the statement then walks every publishing row of every claimer
 * (each relay's events in flight, any stale claims) and filters them by the list, where
 * looking each id up in the event_id index touches only the listed rows.
 */
const HELD_IDS = `event_id IN ${ID_LIST} AND +status = 'publishing' AND claimed_by = ?`

/**
 * The columns a claim returns, in this order (it reads them as arrays: see toClaimedEvent).
 * status, claimed_by, claimed_at and lease_until are left out: the claim itself sets them,
 * so the caller knows them already, and returning fewer columns is what makes the claim
 * cheaper (building each returned value costs the driver more than the UPDATE's own work).
 */
export const CLAIMED_COLUMNS = [
  'seq',
  'event_id',
  'subject',
  'payload',
  'headers',
  'enqueued_at',
  'sent_at',
  'error_message',
  'retry_count',
  'available_at',
  'ordering_key',
  'key_seq',
] as const

/**
 * The most rows one multi-row INSERT carries: 128 x 6 = 768 bound parameters, under the
 * 999 that even a SQLite built with the old default SQLITE_MAX_VARIABLE_NUMBER accepts.
 */
export const MAX_INSERT_ROWS = 128

/**
 * Inserts `rows` events in one statement, first write wins: a row whose event_id is stored
 * already is skipped (ON CONFLICT DO NOTHING) and not counted in the statement's changes.
 * The rows are inserted in the order of VALUES, so their seqs follow the input order (FIFO).
 * No RETURNING: reading 14 columns of every new row back doubled the CPU time of a batch,
 * and the caller knows what it wrote.
 */
export const insertOutboxRows = (t: Tables, rows: number): string =>
  `INSERT INTO ${t.outbox} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
VALUES ${Array.from({ length: rows }, () => "(?, ?, ?, ?, 'pending', ?, 0, ?)").join(', ')}
ON CONFLICT (event_id) DO NOTHING`

/**
 * The INSERT for a batch with at least one ordering key: each row gives its seq itself, one
 * above the table's sequence plus its 1-based position in the batch, and a keyed row takes
 * that seq as its key_seq. AUTOINCREMENT hands seqs out in commit order (one writer) and never
 * again, not even after cleanup, so key_seqs are strictly increasing per key in commit order
 * and never reused with no per-key counter to bump: one statement, like an unkeyed batch.
 * Skipped duplicates leave gaps, which the contract allows. Each row also names the previous
 * live event of its key (key_prev, see migrations/0004_key_heads.sql): an earlier row of the
 * batch by its position, else the key's tail; the insert trigger checks it against the tail
 * and corrects it (a skipped duplicate), so the hint only saves that trigger a write. ORDER BY
 * inserts the rows in position order, so the last row inserted has the highest seq.
 * 124 x 8 = 992 bound parameters.
 */
export const MAX_KEYED_INSERT_ROWS = 124

export const insertKeyedOutboxRows = (t: Tables, rows: number): string =>
  `INSERT INTO ${t.outbox} (seq, event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at,
  ordering_key, key_seq, key_prev)
SELECT base.seq + batch.column1, batch.column2, batch.column3, batch.column4, batch.column5, 'pending', batch.column6, 0,
  batch.column7, batch.column8, CASE WHEN batch.column8 IS NOT NULL THEN base.seq + batch.column1 END,
  CASE WHEN batch.column8 IS NULL THEN NULL WHEN batch.column9 IS NOT NULL THEN base.seq + batch.column9
    ELSE (SELECT tail_seq FROM ${t.outboxKeys} WHERE ordering_key = batch.column8) END
FROM (SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '${t.outbox}'), 0),
  coalesce((SELECT max(seq) FROM ${t.outbox}), 0)) AS seq) AS base,
  (VALUES ${Array.from({ length: rows }, (_, i) => `(${i + 1}, ?, ?, ?, ?, ?, ?, ?, ?)`).join(', ')}) AS batch
ORDER BY batch.column1
ON CONFLICT (event_id) DO NOTHING`

/** The outbox statements. */
export const outboxSql = (t: Tables) =>
  ({
    selectById: `SELECT ${OUTBOX_COLUMNS} FROM ${t.outbox} WHERE event_id = ?`,
    selectByIds: `SELECT ${OUTBOX_COLUMNS} FROM ${t.outbox} WHERE event_id IN ${ID_LIST}`,
    exists: `SELECT 1 FROM ${t.outbox} WHERE event_id = ?`,
    markAsPublishing: `UPDATE ${t.outbox} SET status = 'publishing', claimed_at = ? WHERE event_id = ?`,
    markAsSent: `UPDATE ${t.outbox} SET status = 'sent', sent_at = ?, ${CLEAR_LEASE} WHERE event_id = ?`,
    // Fencing is in the WHERE clause, so the check and the write are one atomic statement.
    markAsSentFenced: `UPDATE ${t.outbox} SET status = 'sent', sent_at = ?, ${CLEAR_LEASE}
WHERE event_id = ? AND status = 'publishing' AND claimed_by = ?`,
    markAsFailed: `UPDATE ${t.outbox} SET status = 'failed', error_message = ?, retry_count = retry_count + 1, ${CLEAR_LEASE}
WHERE event_id = ?`,
    markAsFailedFenced: `UPDATE ${t.outbox} SET status = 'failed', error_message = ?, retry_count = retry_count + 1, ${CLEAR_LEASE}
WHERE event_id = ? AND status = 'publishing' AND claimed_by = ?`,
    retryLater: `UPDATE ${t.outbox} SET status = 'pending', retry_count = retry_count + 1, error_message = ?, available_at = ?,
  ${CLEAR_LEASE} WHERE event_id = ?`,
    retryLaterFenced: `UPDATE ${t.outbox} SET status = 'pending', retry_count = retry_count + 1, error_message = ?, available_at = ?,
  ${CLEAR_LEASE} WHERE event_id = ? AND status = 'publishing' AND claimed_by = ?`,
    // One statement for the whole list, the fence in its WHERE clause; RETURNING names the
    // ids it applied to, so the others are the ones not applied (not stored, or lease lost).
    markManyAsSent: `UPDATE ${t.outbox} SET status = 'sent', sent_at = ?, ${CLEAR_LEASE}
WHERE event_id IN ${ID_LIST}
RETURNING event_id`,
    markManyAsSentFenced: `UPDATE ${t.outbox} SET status = 'sent', sent_at = ?, ${CLEAR_LEASE}
WHERE ${HELD_IDS}
RETURNING event_id`,
    findPending: `SELECT ${OUTBOX_COLUMNS} FROM ${t.outbox}
WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ?`,
    // The claim. The subquery picks the first claimable rows in enqueue order and the UPDATE
    // takes them in the same statement. SQLite runs a write statement as one write
    // transaction that takes the database's single write lock (waiting up to the busy
    // timeout) before the subquery reads, exactly as BEGIN IMMEDIATE would: a second
    // claimer, on this or any other connection or process, runs after it and sees these rows
    // as 'publishing' with a live lease, so two claims never return the same event.
    // INDEXED BY walks the partial claimable index in seq order and stops at LIMIT; left to
    // itself, the planner may pick the status index and sort every due row per claim.
    //
    // Ordering keys: a keyed row is taken only as the head of its key, its first live
    // (pending or publishing) event, and under keyedDeadLetters 'block' (last parameter 1)
    // only while no failed event of its key has a lower key_seq. The claimable_heads index
    // holds exactly the live rows without a previous live event of their key (key_prev IS
    // NULL: unkeyed rows and heads; migrations/0004_key_heads.sql), so the walk never passes a
    // key's waiting events, only heads in flight; the same write lock and snapshot mean no
    // claimer can take a second event of a key while the first is in flight. A publishing
    // event stays its key's head even when a dead letter of the key is redriven meanwhile (it
    // goes behind it: migrations/0005_redrive_behind_publishing.sql), so it is the one claimed
    // again once its lease expires. The failed check probes an index of failed keyed rows,
    // empty while nothing fails.
    claim: `UPDATE ${t.outbox} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ?
WHERE seq IN (
  SELECT seq FROM ${t.outbox} AS candidate INDEXED BY ${t.prefix}outbox_claimable_heads
  WHERE status IN ('pending', 'publishing') AND key_prev IS NULL
    AND ((status = 'pending' AND available_at <= ?) OR (status = 'publishing' AND lease_until <= ?))
    AND (candidate.ordering_key IS NULL OR ? = 0 OR NOT EXISTS (
      SELECT 1 FROM ${t.outbox} AS failed INDEXED BY ${t.prefix}outbox_key_failed
      WHERE failed.ordering_key = candidate.ordering_key AND failed.key_seq < candidate.key_seq
        AND failed.ordering_key IS NOT NULL AND failed.status = 'failed'
    ))
  ORDER BY seq LIMIT ?
)
RETURNING ${CLAIMED_COLUMNS.join(', ')}`,
    // The claim with keyRun above 1 (docs/CONTRACT.md "Key runs"): the heads as above, then
    // each keyed head's next live events along its chain (outbox_key_next), while each is
    // claimable, at most keyRun per key. The chain skips sent and failed rows, so a follower is
    // taken only while no failed event of its key lies between it and the previous one (a run
    // stops at a dead letter, under either policy) and while key_seq rises (a dead letter
    // redriven behind a publishing event sits in the chain below it: the run stops there). The
    // claim takes the heads in seq order, each with its run, until the limit (so only the first
    // `limit` heads can matter: they are cut there before their runs are walked).
    claimRuns: `UPDATE ${t.outbox} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ?
WHERE seq IN (
  WITH RECURSIVE heads (seq, ordering_key, key_seq) AS (
    SELECT seq, ordering_key, key_seq FROM ${t.outbox} AS candidate INDEXED BY ${t.prefix}outbox_claimable_heads
    WHERE candidate.status IN ('pending', 'publishing') AND candidate.key_prev IS NULL
      AND ((candidate.status = 'pending' AND candidate.available_at <= ?)
        OR (candidate.status = 'publishing' AND candidate.lease_until <= ?))
      AND (candidate.ordering_key IS NULL OR 0 = ? OR NOT EXISTS (
        SELECT 1 FROM ${t.outbox} AS failed INDEXED BY ${t.prefix}outbox_key_failed
        WHERE failed.ordering_key = candidate.ordering_key AND candidate.key_seq > failed.key_seq
          AND failed.ordering_key IS NOT NULL AND failed.status = 'failed'
      ))
    ORDER BY candidate.seq LIMIT ?
  ),
  run (seq, ordering_key, key_seq, head, n) AS (
    SELECT seq, ordering_key, key_seq, seq, 1 FROM heads WHERE ordering_key IS NOT NULL
    UNION ALL
    SELECT next.seq, next.ordering_key, next.key_seq, run.head, run.n + 1
    FROM run JOIN ${t.outbox} AS next INDEXED BY ${t.prefix}outbox_key_next ON next.key_prev = run.seq
    WHERE run.n < ? AND next.key_prev IS NOT NULL AND next.status IN ('pending', 'publishing')
      AND ((next.status = 'pending' AND next.available_at <= ?) OR (next.status = 'publishing' AND next.lease_until <= ?))
      AND next.key_seq > run.key_seq
      AND NOT EXISTS (
        SELECT 1 FROM ${t.outbox} AS failed INDEXED BY ${t.prefix}outbox_key_failed
        WHERE failed.ordering_key = next.ordering_key AND failed.key_seq < next.key_seq
          AND failed.key_seq > run.key_seq AND failed.ordering_key IS NOT NULL AND failed.status = 'failed'
      )
  )
  SELECT seq FROM (
    SELECT seq, seq AS head, 1 AS n FROM heads WHERE ordering_key IS NULL
    UNION ALL
    SELECT seq, head, n FROM run
  )
  ORDER BY head, n LIMIT ?
)
RETURNING ${CLAIMED_COLUMNS.join(', ')}`,
    // Gives back claims never acted on (the rest of a key run): fenced, nothing else changes.
    release: `UPDATE ${t.outbox} SET status = 'pending', ${CLEAR_LEASE}
WHERE ${HELD_IDS}
RETURNING event_id`,
    renewLeases: `UPDATE ${t.outbox} SET lease_until = ?
WHERE ${HELD_IDS}
RETURNING event_id`,
    resetStale: `UPDATE ${t.outbox} SET status = 'pending', ${CLEAR_LEASE} WHERE status = 'publishing' AND claimed_at < ?`,
    // A range scan of the partial sent index (the planner, without statistics, prefers the
    // status index and filters every sent row).
    cleanupBatch: `DELETE FROM ${t.outbox} WHERE seq IN (
  SELECT seq FROM ${t.outbox} INDEXED BY ${t.prefix}outbox_sent WHERE status = 'sent' AND sent_at < ? LIMIT ?
)`,
    counts: `SELECT status, COUNT(*) AS n FROM ${t.outbox} GROUP BY status`,
    failed: `SELECT ${OUTBOX_COLUMNS} FROM ${t.outbox} WHERE status = 'failed' ORDER BY seq LIMIT ?`,
    requeue: `UPDATE ${t.outbox} SET status = 'pending', available_at = ?, retry_count = 0, ${CLEAR_LEASE}
WHERE event_id = ? AND status = 'failed'`,
  }) as const

/** The inbox statements. */
export const inboxSql = (t: Tables) =>
  ({
    selectById: `SELECT ${INBOX_COLUMNS} FROM ${t.inbox} WHERE event_id = ?`,
    insert: `INSERT INTO ${t.inbox} (event_id, subject, payload, headers, stream, stream_seq, status, received_at, deliveries,
  claimed_at, claimed_by, lease_until)
VALUES (?, ?, ?, ?, ?, ?, 'processing', ?, 1, ?, ?, ?)
ON CONFLICT (event_id) DO NOTHING
RETURNING ${INBOX_COLUMNS}`,
    countDelivery: `UPDATE ${t.inbox} SET deliveries = deliveries + 1 WHERE seq = ? RETURNING ${INBOX_COLUMNS}`,
    take: `UPDATE ${t.inbox} SET deliveries = deliveries + 1, status = 'processing', claimed_by = ?, claimed_at = ?,
  lease_until = ?, error_message = NULL
WHERE seq = ?
RETURNING ${INBOX_COLUMNS}`,
    markAsProcessed: `UPDATE ${t.inbox} SET status = 'processed', processed_at = ?, ${CLEAR_LEASE} WHERE event_id = ?`,
    // The fenced marks: only while the worker holds the claim, checked in the same statement.
    markAsProcessedFenced: `UPDATE ${t.inbox} SET status = 'processed', processed_at = ?, ${CLEAR_LEASE}
WHERE event_id = ? AND status = 'processing' AND claimed_by = ?`,
    // Unfenced, a processed event is final: failing it would make it claimable again.
    markAsFailed: `UPDATE ${t.inbox} SET status = 'failed', error_message = ?, ${CLEAR_LEASE}
WHERE event_id = ? AND status <> 'processed'`,
    markAsFailedFenced: `UPDATE ${t.inbox} SET status = 'failed', error_message = ?, ${CLEAR_LEASE}
WHERE event_id = ? AND status = 'processing' AND claimed_by = ?`,
    status: `SELECT status FROM ${t.inbox} WHERE event_id = ?`,
    cleanupBatch: `DELETE FROM ${t.inbox} WHERE seq IN (
  SELECT seq FROM ${t.inbox} INDEXED BY ${t.prefix}inbox_processed
  WHERE status = 'processed' AND processed_at < ? LIMIT ?
)`,
    resetStale: `UPDATE ${t.inbox} SET status = 'failed', error_message = ?, ${CLEAR_LEASE}
WHERE status = 'processing' AND COALESCE(claimed_at, received_at) < ?`,
    counts: `SELECT status, COUNT(*) AS n FROM ${t.inbox} GROUP BY status`,
    failed: `SELECT ${INBOX_COLUMNS} FROM ${t.inbox} WHERE status = 'failed' ORDER BY received_at, seq LIMIT ?`,
  }) as const
