import type { OutboxStatus } from '@txbox/core'

/**
 * Every statement of the adapter, built once per table prefix from validated identifiers.
 * Values always travel as prepared-statement parameters.
 *
 * Lists of ids (`IN (...)`) are padded up to a few fixed sizes by repeating the last value
 * (harmless in `IN`, and a no-op duplicate in `INSERT ... ON DUPLICATE KEY UPDATE`), so each
 * connection prepares a bounded number of distinct statements instead of one per list length.
 */

/**
 * A value 0 that only a statement inside a transaction can compute, for the first row of a
 * guarded INSERT: on MariaDB `@@in_transaction` is 1 inside BEGIN, and `@@autocommit` 0 makes
 * every statement part of one (the two flags `DO 0` reads from the OK packet otherwise).
 * Outside a transaction the second branch runs, 1 + the largest BIGINT UNSIGNED, and fails
 * with error 1690 in every sql_mode: the autocommit statement is undone, nothing is written.
 * Both branches read session variables, so nothing is folded when the statement is prepared.
 */
export const IN_TRANSACTION_GUARD =
  'IF(@@in_transaction = 1 OR @@autocommit = 0, 0, @@autocommit + 18446744073709551615)'

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

/**
 * The claim's head check on the candidate row `o`, whose status is `own` (docs/CONTRACT.md
 * §2 "Claim: one event of a key at a time"): an unkeyed row passes. A keyed `publishing` row
 * (its lease expired) is the one event of its key in flight and is claimed again whatever lies
 * below it (with keyedDeadLetters 'skip', a dead letter redriven while it was in flight). A
 * keyed `pending` row only when it is the first pending row of its key, no row of its key is
 * publishing at all (not even a later one: that redriven dead letter waits for it), and no
 * failed row comes before it when dead letters block. One lookup per status, each the first
 * entry of ix_key_head (ordering_key, status, key_seq): a NOT EXISTS over "key_seq <
 * o.key_seq" would instead walk every entry of the key and status past the candidate itself.
 * The ORDER BY names the whole index prefix: with only key_seq, MySQL 8 sorts the key's rows
 * instead of reading the first one.
 *
 * These subqueries are plain reads (the locking clause of the outer SELECT does not reach
 * them, on MySQL 8 and MariaDB alike, so a lower row held by another claimer is seen, not
 * skipped) from one snapshot taken when the statement first reads through it, while the
 * outer locking scan sees rows committed later. A row of the key enqueued and committed
 * after that snapshot, and its lower row with it, would then be invisible to the check; so
 * the candidate must itself be in the snapshot, which the equality on its own status proves:
 * its lower rows committed before it did (the key's counter lock), so the snapshot holds
 * them too. Without that, a claim that skipped a lower row locked by another claimer
 * claimed the next row as well. (An EXISTS on the candidate's own primary key would prove it
 * too, but MariaDB materializes that semi-join: a scan of the whole table per claim.) One
 * window is left to the user's 'skip': a requeueFailed that commits while a claim statement
 * that read before it runs can let that claim take the dead letter's successor while a later
 * claim takes the redriven dead letter (whose order 'skip' gave up).
 */
const headCheck = (t: string, own: OutboxStatus, blocking: readonly OutboxStatus[]): string => {
  const first = (status: OutboxStatus) =>
    `(SELECT l.key_seq FROM ${t} AS l FORCE INDEX (ix_key_head) WHERE l.ordering_key = o.ordering_key AND l.status = '${status}' ORDER BY l.ordering_key, l.status, l.key_seq LIMIT 1)`
  if (own === 'publishing') return `(o.ordering_key IS NULL OR o.key_seq = ${first('publishing')})`
  const before = blocking
    .filter((status) => status !== own)
    .map((status) =>
      status === 'publishing'
        ? ` AND ${first(status)} IS NULL`
        : ` AND COALESCE(o.key_seq < ${first(status)}, TRUE)`,
    )
  return `(o.ordering_key IS NULL OR (o.key_seq = ${first(own)}${before.join('')}))`
}

/** A key counter's count parameter, plus {@link IN_TRANSACTION_GUARD} when `guarded`. */
const countParam = (guarded: boolean): string => (guarded ? `? + ${IN_TRANSACTION_GUARD}` : '?')

const takeKeySeq = (keys: string, guarded: boolean): string =>
  `INSERT INTO ${keys} (ordering_key, last_seq) VALUES (?, LAST_INSERT_ID(${countParam(guarded)})) ON DUPLICATE KEY UPDATE last_seq = LAST_INSERT_ID(last_seq + ?)`

const RETURNING_LAST_SEQ = ' RETURNING ordering_key, last_seq'

/** The counters' upsert of `n` keys; `guarded`: its first row fails outside a transaction. */
const takeKeySeqs = (keys: string, n: number, guarded: boolean, returning: string): string =>
  `INSERT INTO ${keys} (ordering_key, last_seq) VALUES ${Array.from(
    { length: n },
    (_, i) => `(?, ${countParam(guarded && i === 0)})`,
  ).join(', ')} ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq)${returning}`

/** The statuses that hold an ordering key, without and with dead letters. */
const HOLDING: readonly OutboxStatus[] = ['pending', 'publishing']
const HOLDING_WITH_DEAD_LETTERS: readonly OutboxStatus[] = ['pending', 'publishing', 'failed']

export const outboxSql = (table: string, keysTable: string) => {
  const t = `\`${table}\``
  const keys = `\`${keysTable}\``
  // The claim, part 1: one index range scan per claimable status, in one statement (an OR
  // across the two would make the server sort every candidate, and a locking read locks
  // every row it examines). Due pending rows in seq order through ix_claim, stopping after
  // `limit` matches; expired leases through ix_lease, whose range holds only matching rows
  // (they are rare: a crashed relay's events). Rows another claimer holds are skipped, never
  // waited for: claimers never return the same row and never block each other. The whole
  // rows are read here, locked, so the claimed events need no read after the UPDATE. A row
  // failing the head check is unlocked at once (READ COMMITTED releases the rows a locking
  // read examined but did not return).
  const claim = (blocking: readonly OutboxStatus[]) =>
    `(SELECT ${OUTBOX_COLUMNS} FROM ${t} AS o FORCE INDEX (ix_lease) WHERE o.status = 'publishing' AND o.lease_until <= ? AND ${headCheck(t, 'publishing', blocking)} ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED) UNION ALL (SELECT ${OUTBOX_COLUMNS} FROM ${t} AS o FORCE INDEX (ix_claim) WHERE o.status = 'pending' AND o.available_at <= ? AND ${headCheck(t, 'pending', blocking)} ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED)`
  const clearLease = 'claimed_by = NULL, lease_until = NULL'
  const fenced = (sql: string) => ({
    open: sql,
    fenced: `${sql} AND status = 'publishing' AND claimed_by = ?`,
  })
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
    // The same, failing outside a transaction (IN_TRANSACTION_GUARD as the first row's
    // retry_count): the first insert through a caller's connection whose state is unknown.
    insertGuarded: bySize(
      (n) =>
        `INSERT INTO ${t} (event_id, subject, payload, headers, status, enqueued_at, available_at, retry_count) VALUES ${Array.from(
          { length: n },
          (_, i) => `(?, ?, ?, ?, 'pending', ?, ?, ${i === 0 ? IN_TRANSACTION_GUARD : '0'})`,
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
    takeKeySeq: takeKeySeq(keys, false),
    // The same, failing outside a transaction (IN_TRANSACTION_GUARD added to the count, which
    // the VALUES row evaluates before the duplicate key is met): the first statement of a
    // keyed enqueue through a caller's connection whose state is unknown, as insertGuarded.
    takeKeySeqGuarded: takeKeySeq(keys, true),
    // The same for several keys, in the given (sorted) order, so two batches with overlapping
    // keys lock them in one order and never deadlock; read back with keySeqs. A padding row
    // repeats the last key with 0: a no-op. VALUES() is deprecated on MySQL 8.0.20+ (a
    // warning), and the only form MariaDB knows.
    takeKeySeqs: bySize((n) => takeKeySeqs(keys, n, false, ''), insertSize),
    // MariaDB: the same upsert answering each key's new last number itself (RETURNING), so the
    // read below is not needed; guarded (first row) like takeKeySeqGuarded.
    takeKeySeqsReturning: bySize((n) => takeKeySeqs(keys, n, false, RETURNING_LAST_SEQ), insertSize),
    takeKeySeqsReturningGuarded: bySize((n) => takeKeySeqs(keys, n, true, RETURNING_LAST_SEQ), insertSize),
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
    markAsSent: fenced(`UPDATE ${t} SET status = 'sent', sent_at = ?, ${clearLease} WHERE event_id = ?`),
    markAsFailed: fenced(
      `UPDATE ${t} SET status = 'failed', error_message = ?, retry_count = retry_count + 1, ${clearLease} WHERE event_id = ?`,
    ),
    retryLater: fenced(
      `UPDATE ${t} SET status = 'pending', retry_count = retry_count + 1, error_message = ?, available_at = ?, ${clearLease} WHERE event_id = ?`,
    ),
    findPending: `SELECT ${OUTBOX_COLUMNS} FROM ${t} FORCE INDEX (ix_claim) WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ?`,
    failed: `SELECT ${OUTBOX_COLUMNS} FROM ${t} FORCE INDEX (ix_claim) WHERE status = 'failed' ORDER BY seq LIMIT ?`,
    cleanup: `DELETE FROM ${t} WHERE status = 'sent' AND sent_at < ? ORDER BY seq LIMIT ?`,
    resetStale: `UPDATE ${t} SET status = 'pending', ${clearLease} WHERE status = 'publishing' AND claimed_at < ?`,
    counts: `SELECT status, COUNT(*) AS n FROM ${t} GROUP BY status`,
    /** With `keyedDeadLetters: 'block'` (a failed event holds its key) and with `'skip'`. */
    claim: { deadLettersBlock: claim(HOLDING_WITH_DEAD_LETTERS), deadLettersSkip: claim(HOLDING) },
    // Part 2, on the rows part 1 locked, in the same short transaction.
    claimUpdate: bySize(
      (n) =>
        `UPDATE ${t} SET status = 'publishing', claimed_by = ?, claimed_at = ?, lease_until = ? WHERE seq IN (${marks(n)})`,
    ),
    heldBy: bySize(
      (n) =>
        `SELECT seq, event_id FROM ${t} WHERE event_id IN (${marks(n)}) AND status = 'publishing' AND claimed_by = ? FOR UPDATE`,
    ),
    renew: bySize((n) => `UPDATE ${t} SET lease_until = ? WHERE seq IN (${marks(n)})`),
    lockForSend: bySize(
      (n) => `SELECT seq, event_id, status, claimed_by FROM ${t} WHERE event_id IN (${marks(n)}) FOR UPDATE`,
    ),
    sendHeld: bySize(
      (n) =>
        `UPDATE ${t} SET status = 'sent', sent_at = ?, ${clearLease} WHERE event_id IN (${marks(n)}) AND status = 'publishing' AND claimed_by = ?`,
    ),
    // Every id is held, or the statement fails as a whole: the first assignment, evaluated on
    // the locked row, overflows a BIGINT UNSIGNED (error 1690 whatever the sql_mode) for a row
    // the worker does not hold, and InnoDB rolls the statement back (see markSent).
    sendAllHeld: bySize(
      (n) =>
        `UPDATE ${t} SET status = IF(status = 'publishing' AND claimed_by = ?, 'sent', seq + 18446744073709551615 + 1), sent_at = ?, ${clearLease} WHERE event_id IN (${marks(n)})`,
    ),
    sentAt: bySize(
      (n) => `SELECT event_id FROM ${t} WHERE event_id IN (${marks(n)}) AND status = 'sent' AND sent_at = ?`,
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

export const inboxSql = (table: string) => {
  const t = `\`${table}\``
  const clearLease = 'claimed_by = NULL, lease_until = NULL'
  return {
    byIdLocking: `SELECT ${INBOX_COLUMNS} FROM ${t} WHERE event_id = ? FOR UPDATE`,
    bySeq: `SELECT ${INBOX_COLUMNS} FROM ${t} WHERE seq = ?`,
    get: `SELECT ${INBOX_COLUMNS} FROM ${t} WHERE event_id = ?`,
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
