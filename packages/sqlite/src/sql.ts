/**
 * Every SQL statement of the adapter, built from a table prefix that the options already
 * validated as an identifier, so nothing unvalidated is ever interpolated into SQL.
 */

/** The table names of one store. */
export interface Tables {
  readonly outbox: string
  readonly inbox: string
  readonly schemaVersion: string
  /** The prefix the names were built from; index names start with it too. */
  readonly prefix: string
}

/** The tables for a validated prefix. */
export const tablesFor = (prefix: string): Tables => ({
  outbox: `${prefix}outbox`,
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
  retry_count, available_at, claimed_at, claimed_by, lease_until`

const INBOX_COLUMNS = `seq, event_id, subject, payload, headers, stream, stream_seq, status, received_at,
  processed_at, deliveries, error_message, claimed_at, claimed_by, lease_until`

/** The lease is cleared: `claimed_by` and `lease_until` go, `claimed_at` stays as history. */
const CLEAR_LEASE = 'claimed_by = NULL, lease_until = NULL'

/** The outbox statements. */
export const outboxSql = (t: Tables) =>
  ({
    // First write wins: a second enqueue of the same id neither fails nor changes the row;
    // the caller then reads the stored row back in the same synchronous step.
    insert: `INSERT INTO ${t.outbox} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
VALUES (?, ?, ?, ?, 'pending', ?, 0, ?) ON CONFLICT (event_id) DO NOTHING`,
    selectById: `SELECT ${OUTBOX_COLUMNS} FROM ${t.outbox} WHERE event_id = ?`,
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
    findPending: `SELECT ${OUTBOX_COLUMNS} FROM ${t.outbox}
WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ?`,
    // The claim. The subquery picks the first claimable rows in enqueue order and the UPDATE
    // takes them in the same statement. The caller runs it under BEGIN IMMEDIATE, which takes
    // SQLite's single write lock before the subquery reads: a second claimer, on this or any
    // other connection or process, waits for the lock and then sees these rows as
    // 'publishing' with a live lease, so two claims never return the same event.
    // INDEXED BY walks the partial claimable index in seq order and stops at LIMIT; left to
    // itself, the planner may pick the status index and sort every due row per claim.
    claim: `UPDATE ${t.outbox} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ?
WHERE seq IN (
  SELECT seq FROM ${t.outbox} INDEXED BY ${t.prefix}outbox_claimable
  WHERE status IN ('pending', 'publishing')
    AND ((status = 'pending' AND available_at <= ?) OR (status = 'publishing' AND lease_until <= ?))
  ORDER BY seq LIMIT ?
)
RETURNING ${OUTBOX_COLUMNS}`,
    renewLease: `UPDATE ${t.outbox} SET lease_until = ? WHERE event_id = ? AND status = 'publishing' AND claimed_by = ?`,
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
RETURNING ${INBOX_COLUMNS}`,
    countDelivery: `UPDATE ${t.inbox} SET deliveries = deliveries + 1 WHERE seq = ? RETURNING ${INBOX_COLUMNS}`,
    take: `UPDATE ${t.inbox} SET deliveries = deliveries + 1, status = 'processing', claimed_by = ?, claimed_at = ?,
  lease_until = ?, error_message = NULL
WHERE seq = ?
RETURNING ${INBOX_COLUMNS}`,
    markAsProcessed: `UPDATE ${t.inbox} SET status = 'processed', processed_at = ?, ${CLEAR_LEASE} WHERE event_id = ?`,
    markAsFailed: `UPDATE ${t.inbox} SET status = 'failed', error_message = ?, ${CLEAR_LEASE} WHERE event_id = ?`,
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
