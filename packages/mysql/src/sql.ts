import type { OutboxStatus } from '@txbox/core'

/**
 * Every statement of the adapter, built once per table prefix from validated identifiers.
 * Values always travel as prepared-statement parameters.
 *
 * Lists of ids (`IN (...)`) are padded up to a few fixed sizes by repeating the last value
 * (harmless in `IN`, and a no-op duplicate in `INSERT ... ON DUPLICATE KEY UPDATE`), so each
 * connection prepares a bounded number of distinct statements instead of one per list length.
 */

/** The largest list one statement takes; longer lists are split. */
export const MAX_LIST = 1000
const LIST_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, MAX_LIST]

/** The padded size of a list of `n` values (1 <= n <= MAX_LIST). */
export const listSize = (n: number): number => LIST_SIZES.find((size) => size >= n) ?? MAX_LIST

/** `values` padded to its list size (or `sizeOf`'s) by repeating the last value. */
export const padList = <T>(values: readonly T[], sizeOf: (n: number) => number = listSize): T[] => {
  const padded = [...values]
  const last = values[values.length - 1]
  if (last === undefined) throw new TypeError('padList needs at least one value')
  while (padded.length < sizeOf(values.length)) padded.push(last)
  return padded
}

/** Splits `values` into consecutive chunks of at most `size`. */
export const chunk = <T>(values: readonly T[], size: number): T[][] => {
  const chunks: T[][] = []
  for (let i = 0; i < values.length; i += size) chunks.push(values.slice(i, i + size))
  return chunks
}

const marks = (n: number): string => Array.from({ length: n }, () => '?').join(', ')

/** Memoizes a statement builder per list size (or `sizeOf`'s). */
const bySize = (
  build: (n: number) => string,
  sizeOf: (n: number) => number = listSize,
): ((n: number) => string) => {
  const cache = new Map<number, string>()
  return (n) => {
    const size = sizeOf(n)
    let sql = cache.get(size)
    if (sql === undefined) {
      sql = build(size)
      cache.set(size, sql)
    }
    return sql
  }
}

/** The names of a store's tables. */
interface TableNames {
  readonly outbox: string
  /** The outbox's per-key counters (ordering keys). */
  readonly outboxKeys: string
  readonly inbox: string
  readonly schemaVersion: string
}

export const tableNames = (prefix: string): TableNames => ({
  outbox: `${prefix}outbox`,
  outboxKeys: `${prefix}outbox_keys`,
  inbox: `${prefix}inbox`,
  schemaVersion: `${prefix}schema_version`,
})

const OUTBOX_COLUMNS =
  'seq, event_id, subject, payload, headers, status, enqueued_at, available_at, sent_at, error_message, retry_count, claimed_at, claimed_by, lease_until, ordering_key, key_seq'

const INBOX_COLUMNS =
  'seq, event_id, subject, payload, headers, stream, stream_seq, status, received_at, processed_at, deliveries, error_message, claimed_at, claimed_by, lease_until'

/** Rows per multi-row INSERT; also bounded by `MAX_INSERT_BYTES` of text. */
export const MAX_INSERT_ROWS = 512

/**
 * Row counts of the multi-row INSERT: every count up to 8, then four steps per doubling (8,
 * 10, 12, 14, 16, 20, ...) up to {@link MAX_INSERT_ROWS}: 32 statement shapes. A padding row
 * is not free as a repeated `IN` value is: the server checks it as a duplicate and skips it.
 * A 100-event INSERT padded to 128 rows ran ~25% slower than unpadded, padded to 112 ~8%
 * (docs/BENCHMARKS.md), so inserts pad by at most a quarter.
 */
const INSERT_SIZES: readonly number[] = [
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  ...[8, 16, 32, 64, 128, 256].flatMap((size) => [size, size * 1.25, size * 1.5, size * 1.75]),
  MAX_INSERT_ROWS,
]

/** The padded row count of a multi-row INSERT of `n` events (1 <= n <= MAX_INSERT_ROWS). */
export const insertSize = (n: number): number => INSERT_SIZES.find((size) => size >= n) ?? MAX_INSERT_ROWS
/** Text per multi-row INSERT, well under the smallest common `max_allowed_packet` (16 MiB on MariaDB). */
export const MAX_INSERT_BYTES = 4 * 1024 * 1024
/**
 * Rows per `cleanup` statement (the kernel's sweep batch), below core's `SWEEP_BATCH`: with
 * row-based binary logging (what the adapter's READ COMMITTED transactions need) a DELETE writes every deleted row's
 * full image, payload included, into one binlog transaction that replicas apply as a whole.
 */
export const SQL_SWEEP_BATCH = 1000

/** What an enqueue does to its keys' rows besides numbering: an empty key becomes due. */
const ENQUEUED = 'head_at = COALESCE(head_at, VALUES(head_at)), version = version + 1'

/**
 * What a change of a keyed event's status does to its key's row (schema version 5): the key is
 * due from `?` (the change's time), so the next claim reads its new head at once.
 */
const KEY_DUE = 'k.head_at = ?, k.version = k.version + 1'

export const outboxSql = (table: string, keysTable: string) => {
  const t = `\`${table}\``
  const keys = `\`${keysTable}\``
  const clearLease = 'claimed_by = NULL, lease_until = NULL'
  const fenced = (sql: string) => ({
    open: sql,
    fenced: `${sql} AND status = 'publishing' AND claimed_by = ?`,
  })
  // A mark of one event: the outbox row and, for a keyed event, its key's row (due now) in
  // one autocommit statement. The key's row is reached only through a changed outbox row, so
  // the statement changes rows exactly when it changes the event.
  const withKeyDue = (set: string) =>
    `UPDATE ${t} AS o LEFT JOIN ${keys} AS k ON k.ordering_key = o.ordering_key SET ${set}, ${KEY_DUE} WHERE o.event_id = ?`
  // The first event of key k.ordering_key in one status, from ix_key_head: `what` of it.
  const first = (status: OutboxStatus, what: string) =>
    `(SELECT ${what} FROM ${t} AS l FORCE INDEX (ix_key_head) WHERE l.ordering_key = k.ordering_key AND l.status = '${status}' ORDER BY l.ordering_key, l.status, l.key_seq LIMIT 1)`
  // The claim, part 1 (schema version 5): lock up to `limit` due keys, oldest head_at first,
  // skipping keys another transaction holds (an enqueue, a mark, another claimer: none waits),
  // and read their first pending (key_seq, seq), publishing (key_seq, seq, lease_until: none
  // after markAsPublishing) and failed (key_seq) events. These subqueries are plain reads (the
  // locking clause does not reach them, on MySQL 8 and MariaDB alike) of one snapshot, taken
  // when the statement first reads through it, which may be older than the lock of a later
  // key: `seen_version` is the key's row in that snapshot, `version` the row locked, and a key
  // whose two differ is left as it is (every write that adds an event of the key or changes
  // one's status raises the version in its transaction).
  // Its rows come in the same statement as part 2's first rows, under the outbox's column
  // names, with status 'key' (see keyRow).
  const dueKeys = (where: string) =>
    `(SELECT NULL, NULL, ${first('pending', "CONCAT(l.key_seq, ' ', l.seq)")}, ${first('publishing', "CONCAT_WS(' ', l.key_seq, l.seq, l.lease_until)")}, CAST(${first('failed', 'l.key_seq')} AS CHAR), 'key', NULL, k.head_at, NULL, CAST((SELECT s.version FROM ${keys} AS s WHERE s.ordering_key = k.ordering_key) AS CHAR), NULL, NULL, NULL, NULL, k.ordering_key, k.version FROM ${keys} AS k FORCE INDEX (ix_ready) WHERE ${where} AND k.head_at <= ? ORDER BY k.head_at LIMIT ? FOR UPDATE SKIP LOCKED)`
  // Part 2: events without a key, one index range scan per claimable status (an OR across
  // the two would make the server sort every candidate, and a locking read locks every row it
  // examines): expired leases through ix_lease, whose range holds only matching rows (they are
  // rare: a crashed relay's events; keyed ones are part 1's); due pending rows through
  // ix_key_head's NULL prefix, in seq order (the index's entries end with the primary key),
  // stopping after `limit`: the events of keys are never walked. It runs in one statement with
  // part 1 (these first), and the heads part 1 chose are locked by seq in a second one. Rows
  // another claimer holds are skipped, never waited for: claimers never return the same row
  // and never block each other. The whole rows are read here, locked, so the claimed events
  // need no read after the UPDATE.
  const unkeyed = `(SELECT ${OUTBOX_COLUMNS} FROM ${t} AS o FORCE INDEX (ix_lease) WHERE o.status = 'publishing' AND o.lease_until <= ? AND o.ordering_key IS NULL ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED) UNION ALL (SELECT ${OUTBOX_COLUMNS} FROM ${t} AS o FORCE INDEX (ix_key_head) WHERE o.ordering_key IS NULL AND o.status = 'pending' AND o.key_seq IS NULL AND o.available_at <= ? ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED)`
  return {
    // A no-op update on the unique key: a duplicate id is the idempotent case and leaves the
    // stored row untouched (first write wins). INSERT IGNORE would also swallow truncation
    // and other errors, so it is never used.
    insert: bySize(
      (n) =>
        `INSERT INTO ${t} (event_id, subject, payload, headers, status, enqueued_at, available_at, retry_count) VALUES ${Array.from(
          { length: n },
          () => "(?, ?, ?, ?, 'pending', ?, ?, 0)",
        ).join(', ')} ON DUPLICATE KEY UPDATE event_id = event_id`,
      insertSize,
    ),
    // The insert of a batch that holds a keyed event; unkeyed batches keep the statement above.
    insertKeyed: bySize(
      (n) =>
        `INSERT INTO ${t} (event_id, subject, payload, headers, status, enqueued_at, available_at, retry_count, ordering_key, key_seq) VALUES ${Array.from(
          { length: n },
          () => "(?, ?, ?, ?, 'pending', ?, ?, 0, ?, ?)",
        ).join(', ')} ON DUPLICATE KEY UPDATE event_id = event_id`,
      insertSize,
    ),
    // Ordering keys: takes `n` numbers of one key and answers the last one as the statement's
    // insert id (LAST_INSERT_ID(expr), in the OK packet: no read back). The row stays locked
    // until the transaction ends, so enqueues of one key are serialized in commit order.
    // Each also makes an empty key due from the enqueue's time (head_at, schema version 5);
    // a key whose head is in flight or retried keeps its time.
    takeKeySeq: `INSERT INTO ${keys} (ordering_key, last_seq, head_at) VALUES (?, LAST_INSERT_ID(?), ?) ON DUPLICATE KEY UPDATE last_seq = LAST_INSERT_ID(last_seq + ?), ${ENQUEUED}`,
    // The same for several keys, in the given (sorted) order, so two batches with overlapping
    // keys lock them in one order and never deadlock; read back with keySeqs. A padding row
    // repeats the last key with 0: a no-op. VALUES() is deprecated on MySQL 8.0.20+ (a
    // warning), and the only form MariaDB knows.
    takeKeySeqs: bySize(
      (n) =>
        `INSERT INTO ${keys} (ordering_key, last_seq, head_at) VALUES ${Array.from({ length: n }, () => '(?, ?, ?)').join(', ')} ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq), ${ENQUEUED}`,
      insertSize,
    ),
    // MariaDB: the same upsert answering each key's new last number itself (RETURNING), so the
    // read below is not needed.
    takeKeySeqsReturning: bySize(
      (n) =>
        `INSERT INTO ${keys} (ordering_key, last_seq, head_at) VALUES ${Array.from({ length: n }, () => '(?, ?, ?)').join(', ')} ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq), ${ENQUEUED} RETURNING ordering_key, last_seq`,
      insertSize,
    ),
    // Rows this transaction just changed: its own snapshot shows them, at any isolation level.
    keySeqs: bySize((n) => `SELECT ordering_key, last_seq FROM ${keys} WHERE ordering_key IN (${marks(n)})`),
    byIds: bySize((n) => `SELECT ${OUTBOX_COLUMNS} FROM ${t} WHERE event_id IN (${marks(n)})`),
    // Inside the caller's REPEATABLE READ transaction a plain SELECT reads its snapshot and
    // may miss a row another session committed after it; the locking read sees it (and we
    // already hold the row lock from the duplicate-key check).
    byIdsLocking: bySize(
      (n) => `SELECT ${OUTBOX_COLUMNS} FROM ${t} WHERE event_id IN (${marks(n)}) FOR UPDATE`,
    ),
    get: `SELECT ${OUTBOX_COLUMNS} FROM ${t} WHERE event_id = ?`,
    probe: `SELECT status, claimed_by FROM ${t} WHERE event_id = ?`,
    existing: bySize((n) => `SELECT event_id FROM ${t} WHERE event_id IN (${marks(n)})`),
    markAsPublishing: `UPDATE ${t} SET status = 'publishing', claimed_at = ? WHERE event_id = ?`,
    markAsSent: fenced(withKeyDue(`status = 'sent', sent_at = ?, ${clearLease}`)),
    markAsFailed: fenced(
      withKeyDue(`status = 'failed', error_message = ?, retry_count = retry_count + 1, ${clearLease}`),
    ),
    retryLater: fenced(
      withKeyDue(
        `status = 'pending', retry_count = retry_count + 1, error_message = ?, available_at = ?, ${clearLease}`,
      ),
    ),
    findPending: `SELECT ${OUTBOX_COLUMNS} FROM ${t} FORCE INDEX (ix_claim) WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ?`,
    failed: `SELECT ${OUTBOX_COLUMNS} FROM ${t} FORCE INDEX (ix_claim) WHERE status = 'failed' ORDER BY seq LIMIT ?`,
    cleanup: `DELETE FROM ${t} WHERE status = 'sent' AND sent_at < ? ORDER BY seq LIMIT ?`,
    resetStale: `UPDATE ${t} SET status = 'pending', ${clearLease} WHERE status = 'publishing' AND claimed_at < ?`,
    // Before resetStale, in its transaction: the keys of the events it resets are due now.
    resetStaleKeys: `UPDATE ${t} AS o FORCE INDEX (ix_lease) STRAIGHT_JOIN ${keys} AS k ON k.ordering_key = o.ordering_key SET ${KEY_DUE} WHERE o.status = 'publishing' AND o.claimed_at < ?`,
    counts: `SELECT status, COUNT(*) AS n FROM ${t} GROUP BY status`,
    /**
     * Parts 2 and 1 in one statement, with `keyedDeadLetters: 'block'` (keys held by a dead
     * letter passed by) and with `'skip'` (those too: one range scan per value of held, the
     * due keys of each in order). Parameters: now, limit, now, limit, then now, limit per scan.
     */
    claimStart: {
      deadLettersBlock: `${unkeyed} UNION ALL ${dueKeys('k.held = 0')}`,
      deadLettersSkip: `${unkeyed} UNION ALL ${dueKeys('k.held = 0')} UNION ALL ${dueKeys('k.held = 1')}`,
    },
    /** Part 2 for the heads part 1 chose, by seq. */
    claimHeads: bySize(
      (n) => `SELECT ${OUTBOX_COLUMNS} FROM ${t} AS o WHERE o.seq IN (${marks(n)}) FOR UPDATE SKIP LOCKED`,
    ),
    // Part 3, on the rows part 2 locked, in the same short transaction; a claimed keyed event's
    // key (part 1 locked it) is due again when the lease ends, or at once when the event is
    // marked.
    claimUpdate: bySize(
      (n) =>
        `UPDATE ${t} AS o LEFT JOIN ${keys} AS k ON k.ordering_key = o.ordering_key SET o.status = 'publishing', o.claimed_by = ?, o.claimed_at = ?, o.lease_until = ?, k.head_at = ?, k.version = k.version + 1 WHERE o.seq IN (${marks(n)})`,
    ),
    // Part 4, for the keys part 1 locked that gave no event: when each is due next, whether a
    // dead letter holds it. The rows exist and are locked: every row is an update.
    parkKeys: bySize(
      (n) =>
        `INSERT INTO ${keys} (ordering_key, last_seq, head_at, held) VALUES ${Array.from({ length: n }, () => '(?, 0, ?, ?)').join(', ')} ON DUPLICATE KEY UPDATE head_at = VALUES(head_at), held = VALUES(held), version = version + 1`,
    ),
    heldBy: bySize(
      (n) =>
        `SELECT seq, event_id FROM ${t} WHERE event_id IN (${marks(n)}) AND status = 'publishing' AND claimed_by = ? FOR UPDATE`,
    ),
    renew: bySize((n) => `UPDATE ${t} SET lease_until = ? WHERE seq IN (${marks(n)})`),
    lockForSend: bySize(
      (n) =>
        `SELECT seq, event_id, status, claimed_by, ordering_key FROM ${t} WHERE event_id IN (${marks(n)}) FOR UPDATE`,
    ),
    // After a bulk mark, in its transaction: the keys of the marked events are due now; the
    // keys by name (sorted, so two marks lock them in one order), or through the events' ids.
    keysDue: bySize((n) => `UPDATE ${keys} AS k SET ${KEY_DUE} WHERE k.ordering_key IN (${marks(n)})`),
    keysOfIdsDue: bySize(
      (n) =>
        `UPDATE ${t} AS o STRAIGHT_JOIN ${keys} AS k ON k.ordering_key = o.ordering_key SET ${KEY_DUE} WHERE o.event_id IN (${marks(n)})`,
    ),
    // A redrive: the keys of the redriven events are due now and no longer held.
    keysOfIdsRedriven: bySize(
      (n) =>
        `UPDATE ${t} AS o STRAIGHT_JOIN ${keys} AS k ON k.ordering_key = o.ordering_key SET ${KEY_DUE}, k.held = 0 WHERE o.event_id IN (${marks(n)})`,
    ),
    sendHeldKeysDue: bySize(
      (n) =>
        `UPDATE ${t} AS o LEFT JOIN ${keys} AS k ON k.ordering_key = o.ordering_key SET o.status = 'sent', o.sent_at = ?, o.claimed_by = NULL, o.lease_until = NULL, ${KEY_DUE} WHERE o.event_id IN (${marks(n)}) AND o.status = 'publishing' AND o.claimed_by = ?`,
    ),
    sendHeld: bySize(
      (n) =>
        `UPDATE ${t} SET status = 'sent', sent_at = ?, ${clearLease} WHERE event_id IN (${marks(n)}) AND status = 'publishing' AND claimed_by = ?`,
    ),
    sendSeqs: bySize(
      (n) => `UPDATE ${t} SET status = 'sent', sent_at = ?, ${clearLease} WHERE seq IN (${marks(n)})`,
    ),
    requeue: bySize(
      (n) =>
        `UPDATE ${t} SET status = 'pending', available_at = ?, retry_count = 0, ${clearLease} WHERE event_id IN (${marks(n)}) AND status = 'failed'`,
    ),
  }
}

export type OutboxSql = ReturnType<typeof outboxSql>

/** Part 1's row of a key in the claim's first statement, under the outbox's column names. */
export interface KeyRow {
  readonly orderingKey: string
  /** The key's row as locked, and as the subqueries' snapshot saw it (null: not there yet). */
  readonly version: string
  readonly seenVersion: string | null
  readonly headAt: string
  /** `key_seq seq` of its first pending event; `key_seq seq lease_until` of its first publishing one. */
  readonly pendingHead: string | null
  readonly publishingHead: string | null
  /** key_seq of its first failed event. */
  readonly failedHead: string | null
}

const text = (value: unknown): string | null => (value === null || value === undefined ? null : String(value))

/** The key row of a row of `claimStart` whose status is 'key', by the column each value travels in. */
export const keyRow = (row: Record<string, unknown>): KeyRow => ({
  orderingKey: String(row.ordering_key),
  version: String(row.key_seq),
  seenVersion: text(row.error_message),
  headAt: String(row.available_at),
  pendingHead: text(row.subject),
  publishingHead: text(row.payload),
  failedHead: text(row.headers),
})

export const inboxSql = (table: string) => {
  const t = `\`${table}\``
  const clearLease = 'claimed_by = NULL, lease_until = NULL'
  return {
    byIdLocking: `SELECT ${INBOX_COLUMNS} FROM ${t} WHERE event_id = ? FOR UPDATE`,
    bySeq: `SELECT ${INBOX_COLUMNS} FROM ${t} WHERE seq = ?`,
    get: `SELECT ${INBOX_COLUMNS} FROM ${t} WHERE event_id = ?`,
    exists: `SELECT 1 AS found FROM ${t} WHERE event_id = ?`,
    insert: `INSERT INTO ${t} (event_id, subject, payload, headers, stream, stream_seq, status, received_at, deliveries, claimed_at, claimed_by, lease_until) VALUES (?, ?, ?, ?, ?, ?, 'processing', ?, 1, ?, ?, ?)`,
    countDelivery: `UPDATE ${t} SET deliveries = deliveries + 1 WHERE seq = ?`,
    claimStored: `UPDATE ${t} SET deliveries = deliveries + 1, status = 'processing', claimed_at = ?, claimed_by = ?, lease_until = ?, error_message = NULL WHERE seq = ?`,
    // The fenced marks: only while the worker holds the claim, checked by the UPDATE itself
    // (a current read: it waits for a concurrent marker's commit and sees its row).
    markAsProcessed: {
      open: `UPDATE ${t} SET status = 'processed', processed_at = ?, ${clearLease} WHERE event_id = ?`,
      fenced: `UPDATE ${t} SET status = 'processed', processed_at = ?, ${clearLease} WHERE event_id = ? AND status = 'processing' AND claimed_by = ?`,
    },
    // Unfenced, a processed event is final: failing it would make it claimable again.
    markAsFailed: {
      open: `UPDATE ${t} SET status = 'failed', error_message = ?, ${clearLease} WHERE event_id = ? AND status <> 'processed'`,
      fenced: `UPDATE ${t} SET status = 'failed', error_message = ?, ${clearLease} WHERE event_id = ? AND status = 'processing' AND claimed_by = ?`,
    },
    status: `SELECT status FROM ${t} WHERE event_id = ?`,
    cleanup: `DELETE FROM ${t} WHERE status = 'processed' AND processed_at < ? ORDER BY received_at, seq LIMIT ?`,
    resetStale: `UPDATE ${t} SET status = 'failed', error_message = ?, ${clearLease} WHERE status = 'processing' AND COALESCE(claimed_at, received_at) < ?`,
    counts: `SELECT status, COUNT(*) AS n FROM ${t} GROUP BY status`,
    failed: `SELECT ${INBOX_COLUMNS} FROM ${t} FORCE INDEX (ix_status_received) WHERE status = 'failed' ORDER BY received_at, seq LIMIT ?`,
  }
}

export type InboxSql = ReturnType<typeof inboxSql>

/** The schema version table: which migration files have run on this prefix. */
export const schemaVersionSql = (table: string) => {
  const t = `\`${table}\``
  return {
    create: `CREATE TABLE IF NOT EXISTS ${t} (\`version\` INT UNSIGNED NOT NULL, \`name\` VARCHAR(255) NOT NULL, \`applied_at\` DATETIME(3) NOT NULL, PRIMARY KEY (\`version\`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
    applied: `SELECT version FROM ${t}`,
    record: `INSERT INTO ${t} (version, name, applied_at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE version = version`,
  }
}
