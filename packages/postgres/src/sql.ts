/**
 * Every statement of the adapter, built once per store from the validated schema and table
 * prefix. Identifiers are always double-quoted (they passed `^[A-Za-z_][A-Za-z0-9_]{0,62}$`,
 * so they contain no quote), and every value is a bind parameter.
 */

/**
 * The rows one cleanup DELETE takes at most (the kernel's `sweepBatch`): each batch is its
 * own short transaction, and 1,000 rows keep its row locks and its burst of WAL small next
 * to the claims running beside it; core's 10,000 suits stores that pay per round trip.
 */
export const POSTGRES_SWEEP_BATCH = 1000

const OUTBOX_NAMES = [
  'seq',
  'event_id',
  'subject',
  'payload',
  'headers',
  'status',
  'enqueued_at',
  'sent_at',
  'error_message',
  'retry_count',
  'available_at',
  'claimed_at',
  'claimed_by',
  'lease_until',
  'ordering_key',
  'key_seq',
]
const INBOX_NAMES = [
  'seq',
  'event_id',
  'subject',
  'payload',
  'headers',
  'stream',
  'stream_seq',
  'status',
  'received_at',
  'processed_at',
  'deliveries',
  'error_message',
  'claimed_at',
  'claimed_by',
  'lease_until',
]
const TIMESTAMPS = new Set([
  'enqueued_at',
  'sent_at',
  'available_at',
  'claimed_at',
  'lease_until',
  'received_at',
  'processed_at',
])
const BIGINTS = new Set(['seq', 'stream_seq', 'key_seq'])

/**
 * The select list of a row. Timestamps come back as epoch milliseconds and bigints as text,
 * so the result does not depend on the type parsers the application may have installed
 * globally on `pg.types` (a common `setTypeParser(1184, v => v)` would otherwise turn every
 * Date into a string), nor on the session's DateStyle or TimeZone.
 */
// ORDER BY must name the table's columns (t.seq), not these converted output columns.
const readList = (names: readonly string[], alias?: string): string =>
  names
    .map((name) => {
      const column = alias === undefined ? name : `${alias}.${name}`
      if (TIMESTAMPS.has(name)) return `(extract(epoch FROM ${column}) * 1000)::float8 AS ${name}`
      if (BIGINTS.has(name)) return `${column}::text AS ${name}`
      return column
    })
    .join(', ')

const OUTBOX_COLUMNS = readList(OUTBOX_NAMES)
const INBOX_COLUMNS = readList(INBOX_NAMES)

/** When an enqueue calls `pg_notify` (the store's `notify` option). */
export type PostgresNotifyMode = 'waiting' | 'always' | 'off'

/**
 * The wake-up of an enqueue, folded into its result row: one `pg_notify` on the channel
 * (bind parameter number `channel`, after the statement's own)
 * when the statement inserted at least one row and, in mode `waiting`, a wakeup of the
 * channel is asleep (its flag in `<prefix>wakeup` is live). CASE, so `pg_notify` is not
 * evaluated otherwise; the notification is delivered only if the transaction commits.
 * Reading the flag is a lookup in a table of a few rows that nobody writes while the relays
 * are busy; the NOTIFY it avoids takes a database-wide lock at commit.
 */
const notifyColumn = (mode: PostgresNotifyMode, wakeupTable: string, channel = 7): string => {
  if (mode === 'off') return ''
  const asleep =
    mode === 'always'
      ? ''
      : ` AND EXISTS (SELECT 1 FROM ${wakeupTable} w WHERE w.channel = $${channel}::text AND w.sleeping_until > statement_timestamp())`
  return `, CASE WHEN count(*) > 0${asleep} THEN pg_notify($${channel}::text, '')::text END AS notified`
}

/**
 * How an insert yields to a stored event id. Plain tables: ON CONFLICT on their unique key.
 * Time-partitioned tables have no unique key on event_id (a partitioned table's unique keys
 * must hold the partition key); the id's key lives in the unpartitioned `<prefix><table>_ids`
 * (see partition-sql.ts): the statement first claims its ids there (`claimed`, ON CONFLICT
 * DO NOTHING, in event_id order, so it waits for and then yields to a concurrent inserter
 * of the same id exactly as the table's own key would), and inserts only the rows whose id
 * it claimed. Set-based in the statement: a per-row trigger cost 2-3x on every insert.
 */
interface DuplicateIds {
  /** A CTE claiming the ids of `source` (with its trailing comma), or nothing. */
  readonly claim: (source: string) => string
  /** Restricts the insert's SELECT to the claimed ids, or nothing. */
  readonly onlyClaimed: string
  /** The insert's ON CONFLICT clause, or nothing. */
  readonly onConflict: string
}

/** The one input row of a single-row insert, as a relation `claimed` can be taken from. */
const ONE_ID = '(SELECT $1::text AS event_id) AS one'

const duplicateIds = (idTable: string, partitioned: boolean): DuplicateIds =>
  partitioned
    ? {
        claim: (source) => `claimed AS (
        INSERT INTO ${idTable} (event_id)
        SELECT event_id FROM ${source} ORDER BY event_id COLLATE "C"
        ON CONFLICT DO NOTHING
        RETURNING event_id
      ), `,
        onlyClaimed: 'WHERE event_id IN (SELECT event_id FROM claimed)',
        onConflict: '',
      }
    : { claim: () => '', onlyClaimed: '', onConflict: 'ON CONFLICT (event_id) DO NOTHING' }

/** A quoted, schema-qualified name. */
export const qualified = (schema: string, name: string): string => `"${schema}"."${name}"`

export interface OutboxSql {
  readonly table: string
  readonly insertOne: (notify: PostgresNotifyMode) => string
  readonly insertMany: (notify: PostgresNotifyMode) => string
  readonly insertKeyed: (notify: PostgresNotifyMode) => string
  readonly getMany: string
  readonly get: string
  readonly exists: string
  readonly findPending: string
  /** Builds the claim as one simple-protocol query string; see {@link claimQuery}. */
  readonly claim: (args: ClaimArgs) => string
  readonly markAsPublishing: string
  readonly markAsSent: string
  readonly markManyAsSent: string
  readonly markAsFailed: string
  readonly retryLater: string
  readonly renewLease: string
  readonly resetStale: string
  readonly cleanupBatch: string
  readonly countByStatus: string
  readonly failed: string
  readonly requeueFailed: string
}

export const outboxSql = (schema: string, prefix: string, partitioned = false): OutboxSql => {
  const table = qualified(schema, `${prefix}outbox`)
  const ids = duplicateIds(qualified(schema, `${prefix}outbox_ids`), partitioned)
  const keysTable = qualified(schema, `${prefix}outbox_keys`)
  const wakeupTable = qualified(schema, `${prefix}wakeup`)
  // "Holds the claim" for fenced writes: $2 is the workerId, or NULL for an unfenced write.
  const fence = `($2::text IS NULL OR (status = 'publishing' AND claimed_by = $2::text))`
  return {
    table,
    // One event: a plain single-row INSERT (seq from the identity). It answers only how many
    // rows it inserted: the caller built the new event from what it sent, so returning and
    // converting the stored columns would only repeat it. A duplicate id inserts nothing and
    // the caller reads the stored row with `getMany`.
    // On partitioned tables the row comes from `one`, restricted to a claimed id.
    insertOne: (notify) => `
      WITH ${ids.claim(ONE_ID)}inserted AS (
        INSERT INTO ${table} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
        ${
          partitioned
            ? `SELECT event_id, $2::text, $3::text, $4::text, 'pending', $5::timestamptz, 0, $6::timestamptz
        FROM ${ONE_ID} ${ids.onlyClaimed}`
            : `VALUES ($1, $2, $3, $4, 'pending', $5, 0, $6)`
        }
        ${ids.onConflict}
        RETURNING 1
      )
      SELECT count(*)::int AS inserted${notifyColumn(notify, wakeupTable)} FROM inserted`,
    // One round trip enqueues a whole batch (ids are deduplicated by the caller, first
    // occurrence kept), answering how many rows it inserted, as insertOne does.
    // - seq is drawn from the identity's sequence in input order (unnest WITH ORDINALITY yields
    //   the rows in array order, and a CTE with nextval is never inlined), so FIFO follows the
    //   batch; but the rows are inserted in event_id order, so that two batches sharing ids
    //   always take their locks in the same order and cannot deadlock each other.
    insertMany: (notify) => `
      WITH input AS (
        SELECT u.*, nextval((SELECT pg_get_serial_sequence('${table}', 'seq'))::regclass) AS seq
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
          WITH ORDINALITY AS u(event_id, subject, payload, headers, available_at, ord)
      ), ${ids.claim('input')}inserted AS (
        INSERT INTO ${table} (seq, event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
        OVERRIDING SYSTEM VALUE
        SELECT seq, event_id, subject, payload, headers, 'pending', $6::timestamptz, 0, available_at
        FROM input ${ids.onlyClaimed} ORDER BY event_id COLLATE "C"
        ${ids.onConflict}
        RETURNING 1
      )
      SELECT count(*)::int AS inserted${notifyColumn(notify, wakeupTable)} FROM inserted`,
    // A batch (or a single event) of which at least one carries an ordering key ($7, NULL for
    // the unkeyed ones); unkeyed batches keep insertMany and its cost. As insertMany, plus:
    // - counters takes one number per keyed event from its key's row in <prefix>outbox_keys
    //   (an upsert: the first event of a key creates the row). The upsert locks each row until
    //   the transaction ends, so a second transaction enqueuing the same key waits here for
    //   this one to commit or roll back, and then reads the row's latest version (ON CONFLICT
    //   DO UPDATE does, even under READ COMMITTED): key_seq grows in commit order, and an
    //   event becomes visible only after every lower key_seq of its key (or never, if rolled
    //   back: the number is then taken again). Rows are locked in key order, and the insert
    //   below sorts its whole input first, so every statement takes all its key locks before
    //   any id lock: two batches sharing keys and ids cannot deadlock each other.
    // - numbered gives a key's events of the batch consecutive numbers in input order, ending
    //   at the counter's new value. An id that is stored already keeps its stored key_seq;
    //   the number it was given stays unused (a gap, allowed by the contract).
    // - key_seqs answers the number of every input event (NULL when unkeyed), in input order,
    //   so the caller builds the new events without reading them back.
    insertKeyed: (notify) => `
      WITH input AS (
        SELECT u.*, nextval((SELECT pg_get_serial_sequence('${table}', 'seq'))::regclass) AS seq
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $7::text[])
          WITH ORDINALITY AS u(event_id, subject, payload, headers, available_at, ordering_key, ord)
      ), wanted AS (
        SELECT ordering_key, count(*) AS taken FROM input
        WHERE ordering_key IS NOT NULL
        GROUP BY ordering_key
      ), counters AS (
        INSERT INTO ${keysTable} AS k (ordering_key, last_seq)
        SELECT ordering_key, taken FROM wanted ORDER BY ordering_key COLLATE "C"
        ON CONFLICT (ordering_key) DO UPDATE SET last_seq = k.last_seq + EXCLUDED.last_seq
        RETURNING k.ordering_key, k.last_seq
      ), numbered AS (
        SELECT i.*,
          c.last_seq - count(*) OVER (PARTITION BY i.ordering_key)
            + row_number() OVER (PARTITION BY i.ordering_key ORDER BY i.ord) AS key_seq
        FROM input i LEFT JOIN counters c ON c.ordering_key = i.ordering_key
      ), ${ids.claim('numbered')}inserted AS (
        INSERT INTO ${table} (seq, event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at, ordering_key, key_seq)
        OVERRIDING SYSTEM VALUE
        SELECT seq, event_id, subject, payload, headers, 'pending', $6::timestamptz, 0, available_at, ordering_key, key_seq
        FROM numbered ${ids.onlyClaimed} ORDER BY event_id COLLATE "C"
        ${ids.onConflict}
        RETURNING 1
      )
      SELECT count(*)::int AS inserted,
        ARRAY(SELECT key_seq::text FROM numbered ORDER BY ord) AS key_seqs${notifyColumn(notify, wakeupTable, 8)}
      FROM inserted`,
    // The stored rows of ids an enqueue did not insert (sent only when it inserted fewer rows
    // than it was given).
    getMany: `SELECT ${OUTBOX_COLUMNS} FROM ${table} WHERE event_id = ANY($1::text[])`,
    get: `SELECT ${OUTBOX_COLUMNS} FROM ${table} WHERE event_id = $1`,
    exists: `SELECT 1 FROM ${table} WHERE event_id = $1`,
    findPending: `
      SELECT ${OUTBOX_COLUMNS} FROM ${table} t
      WHERE status = 'pending' AND available_at <= $1
      ORDER BY t.seq LIMIT $2`,
    // The heart of the adapter. The inner SELECT walks the live-row index in enqueue order and
    // locks up to `limit` claimable rows, skipping rows another claimer has locked, instead of
    // waiting for them; so concurrent relays take disjoint batches without blocking each
    // other. Under READ COMMITTED a row changed by a claimer that committed after our
    // snapshot is re-checked against the WHERE clause before it is locked, so an event just
    // claimed by someone else (lease in the future) is never taken twice. The redundant
    // `status IN (...)` lets the planner match the partial index whatever it makes of the OR.
    // The seqs go through an array (an InitPlan run once), so the UPDATE itself is primary-key
    // lookups of rows already locked: `seq IN (subquery)` let the planner hash-join them
    // against a sequential scan of the table whenever many rows are live. Keyed rows also pass
    // the head-of-key rule (see keyHead); while keyed events are live, the candidates come
    // from the sources claimQuery describes instead of this one walk. One statement: no
    // transaction stays open after it returns.
    claim: (args) => claimQuery(table, args),
    markAsPublishing: `
      UPDATE ${table} SET status = 'publishing', claimed_at = $2
      WHERE event_id = $1`,
    markAsSent: `
      UPDATE ${table} SET status = 'sent', sent_at = $3, claimed_by = NULL, lease_until = NULL
      WHERE event_id = $1 AND ${fence}`,
    markManyAsSent: `
      UPDATE ${table} SET status = 'sent', sent_at = $3, claimed_by = NULL, lease_until = NULL
      WHERE event_id = ANY($1::text[]) AND ${fence}
      RETURNING event_id`,
    markAsFailed: `
      UPDATE ${table}
      SET status = 'failed', error_message = $3, retry_count = retry_count + 1, claimed_by = NULL, lease_until = NULL
      WHERE event_id = $1 AND ${fence}`,
    retryLater: `
      UPDATE ${table}
      SET status = 'pending', error_message = $3, retry_count = retry_count + 1, available_at = $4,
          claimed_by = NULL, lease_until = NULL
      WHERE event_id = $1 AND ${fence}`,
    renewLease: `
      UPDATE ${table} SET lease_until = $3
      WHERE event_id = ANY($1::text[]) AND status = 'publishing' AND claimed_by = $2
      RETURNING event_id`,
    resetStale: `
      UPDATE ${table} SET status = 'pending', claimed_by = NULL, lease_until = NULL
      WHERE status = 'publishing' AND claimed_at < $1`,
    // Bounded: at most $2 rows per statement, found through the sent_at partial
    // index; rows locked by a concurrent writer are skipped rather than waited for. The ids go
    // through an array (an InitPlan evaluated once) so the DELETE itself is a primary-key
    // lookup, where `seq IN (subquery)` lets the planner hash-join against a scan of the table.
    cleanupBatch: `
      DELETE FROM ${table}
      WHERE seq = ANY(ARRAY(
        SELECT seq FROM ${table}
        WHERE status = 'sent' AND sent_at < $1
        LIMIT $2
        FOR UPDATE SKIP LOCKED
      ))`,
    countByStatus: `SELECT status, count(*) AS count FROM ${table} GROUP BY status`,
    failed: `
      SELECT ${OUTBOX_COLUMNS} FROM ${table} t
      WHERE status = 'failed'
      ORDER BY t.seq LIMIT $1`,
    // Moves the failed ones and, in the same statement, lists the ids that are not stored
    // at all (input order), so the caller can raise EventNotFoundError after the others moved.
    requeueFailed: `
      WITH moved AS (
        UPDATE ${table}
        SET status = 'pending', available_at = $2, retry_count = 0, claimed_by = NULL, lease_until = NULL
        WHERE event_id = ANY($1::text[]) AND status = 'failed'
        RETURNING event_id
      )
      SELECT
        (SELECT count(*) FROM moved)::int AS moved,
        ARRAY(
          SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)
          WHERE NOT EXISTS (SELECT 1 FROM ${table} t WHERE t.event_id = u.id)
          ORDER BY u.ord
        ) AS missing`,
  }
}

export interface InboxSql {
  readonly table: string
  readonly findOrCreate: string
  readonly claim: string
  readonly get: string
  readonly markAsProcessed: string
  readonly markAsFailed: string
  readonly exists: string
  readonly cleanupBatch: string
  readonly resetStale: string
  readonly countByStatus: string
  readonly failed: string
}

export const inboxSql = (schema: string, prefix: string, partitioned = false): InboxSql => {
  const table = qualified(schema, `${prefix}inbox`)
  const ids = duplicateIds(qualified(schema, `${prefix}inbox_ids`), partitioned)
  // The stored row for this delivery, by event id alone: (stream, stream_seq) is recorded,
  // never an identity, since a JetStream stream re-created under its name restarts at
  // sequence 1. A redelivery of a stored id keeps the position recorded first.
  const lookup = `SELECT seq FROM ${table} WHERE event_id = $1`
  // Both statements try the insert first and yield to the event id only, so any other
  // conflict is an error, not a silent merge. If a visible row conflicts, the second CTE
  // updates it under a row lock. If the conflicting row was committed by a concurrent
  // inserter after this statement's snapshot, neither CTE returns a row, and the caller runs
  // the statement again with a new snapshot.
  const insert = (claim: boolean) => `
    INSERT INTO ${table}
      (event_id, subject, payload, headers, stream, stream_seq, status, received_at, deliveries${claim ? ', claimed_at, claimed_by, lease_until' : ''})
    ${
      partitioned
        ? `SELECT event_id, $2::text, $3::text, $4::text, $5::text, $6::bigint, 'processing', $7::timestamptz, 1${claim ? ', $7::timestamptz, $8::text, $9::timestamptz' : ''}
    FROM ${ONE_ID} ${ids.onlyClaimed}`
        : `VALUES ($1, $2, $3, $4, $5::text, $6::bigint, 'processing', $7, 1${claim ? ', $7, $8, $9' : ''})`
    }
    ${ids.onConflict}
    RETURNING ${INBOX_COLUMNS}, true AS should_process`
  const claimOne = ids.claim(ONE_ID)
  // "Holds the claim" for fenced marks, as the outbox's: $3 is the workerId, or NULL unfenced.
  const inboxFence = `($3::text IS NULL OR (status = 'processing' AND claimed_by = $3::text))`
  return {
    table,
    findOrCreate: `
      WITH ${claimOne}inserted AS (${insert(false)}),
      updated AS (
        UPDATE ${table} SET deliveries = deliveries + 1
        WHERE seq = (${lookup})
        RETURNING ${INBOX_COLUMNS}, false AS should_process
      )
      SELECT * FROM inserted UNION ALL SELECT * FROM updated`,
    // `current` locks the stored row and, under READ COMMITTED, reads its latest committed
    // version (SELECT FOR UPDATE re-fetches a row changed since the snapshot), so `take` is
    // decided on what is really stored while no one else can change it: exactly one of N
    // concurrent claimers sees a new/failed/expired row and takes it; the rest see its lease.
    claim: `
      WITH ${claimOne}inserted AS (${insert(true)}),
      current AS (
        -- A processing row without a lease (findOrCreate flow) is live: NULL <= $7 must read
        -- as false, not NULL, hence COALESCE.
        SELECT seq, COALESCE(status = 'failed' OR (status = 'processing' AND lease_until <= $7), false) AS take
        FROM ${table}
        WHERE seq = (${lookup})
        FOR UPDATE
      ),
      updated AS (
        UPDATE ${table} i
        SET deliveries = i.deliveries + 1,
            status = CASE WHEN c.take THEN 'processing' ELSE i.status END,
            claimed_at = CASE WHEN c.take THEN $7 ELSE i.claimed_at END,
            claimed_by = CASE WHEN c.take THEN $8 ELSE i.claimed_by END,
            lease_until = CASE WHEN c.take THEN $9 ELSE i.lease_until END,
            error_message = CASE WHEN c.take THEN NULL ELSE i.error_message END
        FROM current c
        WHERE i.seq = c.seq
        RETURNING ${readList(INBOX_NAMES, 'i')}, c.take AS should_process
      )
      SELECT * FROM inserted UNION ALL SELECT * FROM updated`,
    get: `SELECT ${INBOX_COLUMNS} FROM ${table} WHERE event_id = $1`,
    // RETURNING: run through a caller's transaction handle, a statement reports what it touched
    // by its rows (Prisma's raw queries answer rows, not a row count).
    // The fence ($3: the workerId, or NULL unfenced) is in the WHERE, never a prior SELECT: a
    // row another transaction is marking stays locked until it commits, and READ COMMITTED
    // then evaluates the WHERE again on the committed version, so a worker whose event was
    // taken over and processed meanwhile updates nothing (and its caller rolls back).
    markAsProcessed: `
      UPDATE ${table} SET status = 'processed', processed_at = $2, claimed_by = NULL, lease_until = NULL
      WHERE event_id = $1 AND ${inboxFence}
      RETURNING event_id`,
    // Unfenced, a processed event is final: marking it failed would make it claimable again.
    markAsFailed: `
      UPDATE ${table} SET status = 'failed', error_message = $2, claimed_by = NULL, lease_until = NULL
      WHERE event_id = $1 AND ${inboxFence} AND ($3::text IS NOT NULL OR status <> 'processed')
      RETURNING event_id`,
    exists: `SELECT 1 FROM ${table} WHERE event_id = $1`,
    cleanupBatch: `
      DELETE FROM ${table}
      WHERE seq = ANY(ARRAY(
        SELECT seq FROM ${table}
        WHERE status = 'processed' AND processed_at < $1
        LIMIT $2
        FOR UPDATE SKIP LOCKED
      ))`,
    resetStale: `
      UPDATE ${table} SET status = 'failed', error_message = $2, claimed_by = NULL, lease_until = NULL
      WHERE status = 'processing' AND COALESCE(claimed_at, received_at) < $1`,
    countByStatus: `SELECT status, count(*) AS count FROM ${table} GROUP BY status`,
    failed: `
      SELECT ${INBOX_COLUMNS} FROM ${table} t
      WHERE status = 'failed'
      ORDER BY t.received_at, t.seq LIMIT $1`,
  }
}

/** The values of one claim. */
export interface ClaimArgs {
  /** The (already text-encoded) worker id. */
  readonly workerId: string
  readonly now: Date
  readonly leaseUntil: Date
  /** A validated integer from 1 to 10,000. */
  readonly limit: number
  /** `keyedDeadLetters: 'block'`: a `failed` event holds the later events of its key. */
  readonly deadLettersBlockKeys: boolean
  /**
   * The previous claim saw a keyed event pending or publishing (see {@link KEYED_LIVE}): claim
   * with {@link keyedClaim}; otherwise with the single walk, {@link walkClaim}.
   */
  readonly keyedLive: boolean
}

/**
 * The planner settings the claim runs under, for its statement only (SET LOCAL in the
 * implicit transaction of one multi-statement query). On a table bulk-loaded since its last
 * ANALYZE (or never analyzed) the planner guesses that a handful of rows are claimable,
 * and then prefers a bitmap scan of every live row plus a sort to the ordered walk of the
 * partial index: measured at ~105 ms per claim over 300,000 pending rows (about 2 ms with
 * the walk) until autovacuum analyzes the table, which throttled a relay to ~500 events/s.
 * Without bitmap scans and sorts the only plan left is the ordered index walk, whatever the
 * statistics say; the claim needs nothing else. The keyed claim still sorts its few merged
 * seqs, and a disabled node's penalty (10^10) lifts the plan's cost over every JIT threshold:
 * compiling it took 0.3-4 s per statement (measured), hence no JIT for a claim.
 */
export const CLAIM_PLANNER_SETTINGS =
  'SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL jit = off;'

/**
 * The head-of-key rule of a claim, on the candidate row `t` (docs/CONTRACT.md §2 "Claim: one
 * event of a key at a time"): an unkeyed row passes at once (OR short-circuits: no probe, no
 * join on the unkeyed path). A keyed row `publishing` (its lease expired, or it would not be a
 * candidate) is the one event of its key in flight: it is claimed again whatever lies below
 * it. A keyed `pending` row only when no row of its key with a lower key_seq still holds the
 * key (pending, due or not; publishing; failed when dead letters block), and no row of its key
 * is publishing at all. That second probe matters only for a dead letter redriven with
 * keyedDeadLetters 'skip' while a later event of its key was in flight, so it runs only on
 * rows that were retried or redriven (error_message is set by markAsFailed and retryLater and
 * kept by requeueFailed): a row that never failed became visible before every later row of
 * its key (the enqueue's counter lock) and held the key ever since, so none of them can have
 * been claimed. Each probe is one range scan of the partial index on (ordering_key, key_seq),
 * whose predicate the redundant `IS NOT NULL` and status list let the planner match; kept
 * OR'ed correlated subqueries on purpose, so they are never planned as anti-joins over every
 * keyed row.
 *
 * Races (READ COMMITTED): the rule is read in the statement's snapshot, where the key's
 * earlier rows can only look *more* unsent than they are (a row leaves the set only by being
 * marked sent or failed; rows of a key become visible in key_seq order, as the enqueue's
 * counter lock makes them commit in that order), so a concurrent mark at worst makes this
 * claim skip a head that the next claim takes. A candidate another claimer changed after the
 * snapshot is re-read by FOR UPDATE (EvalPlanQual) and must still be claimable as it now is
 * (a live lease, or sent, fails the recheck); one it still holds locked is skipped. So no
 * two rows of a key are ever publishing at once. One window is left to the user's 'skip': a
 * requeueFailed that commits while a claim statement taken before it runs can let that claim
 * take the dead letter's successor while a later claim takes the redriven dead letter (whose
 * order 'skip' gave up); redrive with the relays' claims quiet to rule it out.
 */
const keyHead = (table: string, deadLettersBlockKeys: boolean): string =>
  `(t.ordering_key IS NULL OR (t.status = 'publishing' OR (
            NOT EXISTS (
              SELECT 1 FROM ${table} h
              WHERE h.ordering_key = t.ordering_key AND h.key_seq < t.key_seq AND h.ordering_key IS NOT NULL
                AND h.status IN (${deadLettersBlockKeys ? "'pending', 'publishing', 'failed'" : "'pending', 'publishing'"})
            )
            AND (t.error_message IS NULL OR NOT EXISTS (
              SELECT 1 FROM ${table} p
              WHERE p.ordering_key = t.ordering_key AND p.key_seq > t.key_seq AND p.ordering_key IS NOT NULL
                AND p.status IN ('publishing')
            ))
          )))`

/** A PostgreSQL string literal in the E'' form, correct whatever `standard_conforming_strings` is. */
const literal = (text: string): string => `E'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`
const timestamp = (date: Date): string => `'${date.toISOString()}'::timestamptz`

/**
 * The claim of an outbox with keyed events live. It takes the first `limit` claimable events in enqueue order, as one walk of the claimable
 * index would, but never walks the blocked events of keys in flight: with every key's head
 * publishing, that walk probed each pending row of the backlog and found nothing (issue 18:
 * O(backlog) per claim). Two sources, each locking as it goes and skipping rows another
 * claimer holds, merged by seq:
 * - `unkeyed`: the unkeyed events, walked on their own partial index (migration 0005), so a
 *   keyed backlog never stands in front of them.
 * - `keyed`: candidates tried one by one until `limit` are locked, each re-checked against the
 *   claimable condition and keyHead on its row (a primary-key probe). First `near`: the first
 *   {@link KEYED_WINDOW} x limit claimable rows of any kind in seq order (read only while a
 *   keyed event is live), where many shallow keys find their heads. Only when those run out
 *   before `limit` locks (the LIMIT stops the nested loop first otherwise) and the window
 *   was full: `far`, every active key's one possible head past the window (see
 *   {@link keyHeads}), O(active keys), never O(backlog). Skipped too when the unkeyed events
 *   below the window's end fill the claim.
 * A row is locked only once it passed the rule, so a claim locks at most `limit` keyed and
 * `limit` unkeyed rows, and frees those it does not take (only when both kinds are due) when
 * the statement ends. The races are keyHead's: a candidate changed by a claimer that committed
 * after this statement's snapshot is re-read by FOR UPDATE and re-checked as it now is.
 */
const keyedClaim = (table: string, args: ClaimArgs): string => {
  const now = timestamp(args.now)
  const limit = args.limit
  const window = KEYED_WINDOW * limit
  // Each source names its row differently (u, w, t), so each copy of the rule reads as its own.
  const claimable = (row: string) => `${row}.status IN ('pending', 'publishing')
          AND ((${row}.status = 'pending' AND ${row}.available_at <= ${now})
            OR (${row}.status = 'publishing' AND ${row}.lease_until <= ${now}))`
  return `
      WITH RECURSIVE unkeyed AS MATERIALIZED (
        SELECT u.seq FROM ${table} u
        WHERE u.ordering_key IS NULL AND ${claimable('u')}
        ORDER BY u.seq
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ), near AS MATERIALIZED (
        SELECT w.seq FROM ${table} w
        WHERE (SELECT k.seq FROM ${table} k
               WHERE k.ordering_key IS NOT NULL AND k.status IN ('pending', 'publishing')
               ORDER BY k.ordering_key LIMIT 1) IS NOT NULL
          AND ${claimable('w')}
        ORDER BY w.seq
        LIMIT ${window}
      ), ${keyHeads(table, args.deadLettersBlockKeys)},
      keyed AS MATERIALIZED (
        SELECT locked.seq FROM (
          SELECT seq FROM near
          UNION ALL
          (SELECT f.seq FROM ${table} f
           WHERE (SELECT count(*) FROM near) = ${window}
             AND (SELECT count(*) FROM unkeyed WHERE seq <= (SELECT max(seq) FROM near)) < ${limit}
             AND f.seq = ANY(ARRAY(SELECT seq FROM far)) AND f.seq > (SELECT max(seq) FROM near)
             AND f.status IN ('pending', 'publishing')
           ORDER BY f.seq)
        ) candidate CROSS JOIN LATERAL (
          SELECT t.seq FROM ${table} t
          WHERE t.seq = candidate.seq AND t.ordering_key IS NOT NULL
            AND ${claimable('t')}
            AND ${keyHead(table, args.deadLettersBlockKeys)}
          FOR UPDATE SKIP LOCKED
        ) locked
        LIMIT ${limit}
      )
      UPDATE ${table}
      SET status = 'publishing', claimed_by = ${literal(args.workerId)}, claimed_at = ${now},
          lease_until = ${timestamp(args.leaseUntil)}
      WHERE seq = ANY(ARRAY(
        SELECT c.seq FROM (SELECT seq FROM unkeyed UNION ALL SELECT seq FROM keyed) c
        ORDER BY c.seq
        LIMIT ${limit}
      ))
      RETURNING ${OUTBOX_COLUMNS}`
}

/**
 * The claim as one query string: the planner settings, the UPDATE, then whether a keyed event
 * is live (column {@link KEYED_LIVE}). Sent without bind parameters (a multi-statement query is
 * only possible in the simple protocol), so each value is written as a literal here: the
 * worker id escaped, the times as ISO-8601, the limit a validated integer. Still one round
 * trip and one implicit transaction.
 *
 * Two shapes of the UPDATE, equally correct in every state: {@link keyedClaim} never walks
 * the blocked events of keys in flight, but its planning costs about 1.5 ms more per claim
 * (eleven references to the table, each matched against six partial indexes; sent in the
 * simple protocol, it is planned every time), which an outbox without keyed events would pay
 * for nothing. So the repository takes the keyed shape only while the previous claim saw a
 * keyed event live, the single walk otherwise. The answer is a hint read in its own
 * snapshot: stale, it costs one claim the other shape's price, never a wrong result.
 */
export const claimQuery = (table: string, args: ClaimArgs): string => {
  if (!Number.isSafeInteger(args.limit) || args.limit < 1) throw new Error(`claim limit ${args.limit}`)
  return `${CLAIM_PLANNER_SETTINGS}${args.keyedLive ? keyedClaim(table, args) : walkClaim(table, args)};
      SELECT (SELECT k.seq FROM ${table} k
              WHERE k.ordering_key IS NOT NULL AND k.status IN ('pending', 'publishing')
              ORDER BY k.ordering_key LIMIT 1) IS NOT NULL AS ${KEYED_LIVE}`
}

/** The column of the claim's last statement: a keyed event is pending or publishing. */
export const KEYED_LIVE = 'keyed_live'

/**
 * The claim of an outbox without keyed events live: one walk of the claimable index in seq
 * order, locking up to `limit` claimable rows and skipping those another claimer holds.
 * Keyed rows met on the way pass keyHead as in the keyed shape (one may have been enqueued
 * since the previous claim), but a walk past many blocked ones costs a probe each: the keyed
 * shape is for that.
 */
const walkClaim = (table: string, args: ClaimArgs): string => {
  const now = timestamp(args.now)
  return `
      UPDATE ${table}
      SET status = 'publishing', claimed_by = ${literal(args.workerId)}, claimed_at = ${now},
          lease_until = ${timestamp(args.leaseUntil)}
      WHERE seq = ANY(ARRAY(
        SELECT seq FROM ${table} t
        WHERE status IN ('pending', 'publishing')
          AND ((status = 'pending' AND available_at <= ${now}) OR (status = 'publishing' AND lease_until <= ${now}))
          AND ${keyHead(table, args.deadLettersBlockKeys)}
        ORDER BY seq
        LIMIT ${args.limit}
        FOR UPDATE SKIP LOCKED
      ))
      RETURNING ${OUTBOX_COLUMNS}`
}

/**
 * How many times the claim's limit the keyed window reads (see {@link claimQuery}): enough
 * for a few relays claiming at once to each find a full batch of heads in it before any of
 * them falls back to the per-key probes.
 */
export const KEYED_WINDOW = 4

/**
 * The CTEs `heads` and `far` of the claim: the only events of each active key that the
 * head-of-key rule could let through, found by a recursive skip scan of the key-head index
 * (one descent per key, in key order) instead of a walk of the key's events. Read only when
 * the claim's keyed candidates reach them (see {@link claimQuery}).
 * - `heads`: each key's lowest event still holding it (pending, publishing, and failed
 *   when dead letters block; a key whose only rows are dead letters under 'skip' is passed
 *   over). No other pending event of the key can be claimable.
 * - A publishing event above that lowest one is claimable again once its lease expires;
 *   that happens only above a dead letter (or one redriven) under 'skip', and such events are
 *   the only ones between the two. So when the lowest event carries an error, one more probe
 *   per key walks up past the failed and redriven events to the first publishing event or the
 *   first never-failed pending one, and offers it if publishing. A retried head costs one
 *   step of it: the event after it has never failed.
 */
const keyHeads = (table: string, deadLettersBlockKeys: boolean): string => {
  const holding = deadLettersBlockKeys ? "'pending', 'publishing', 'failed'" : "'pending', 'publishing'"
  const lowest = (after: string) => `
          SELECT t.ordering_key, t.key_seq, t.seq, t.status, t.error_message FROM ${table} t
          WHERE ${after}t.ordering_key IS NOT NULL AND t.status IN (${holding})
          ORDER BY t.ordering_key, t.key_seq
          LIMIT 1`
  return `heads AS (
        (${lowest('')})
        UNION ALL
        SELECT n.* FROM heads h CROSS JOIN LATERAL (${lowest('t.ordering_key > h.ordering_key AND ')}) n
      ), far AS (
        SELECT seq FROM heads
        UNION ALL
        SELECT above.seq FROM heads h CROSS JOIN LATERAL (
          SELECT a.seq, a.status FROM ${table} a
          WHERE a.ordering_key = h.ordering_key AND a.key_seq > h.key_seq AND a.ordering_key IS NOT NULL
            AND a.status IN ('pending', 'publishing', 'failed')
            AND (a.status = 'publishing' OR (a.status = 'pending' AND a.error_message IS NULL))
          ORDER BY a.key_seq
          LIMIT 1
        ) above
        WHERE (h.error_message IS NOT NULL OR h.status = 'failed') AND above.status = 'publishing'
      )`
}

/** The statements of a relay's wakeup (see `PostgresWakeup`) on the `<prefix>wakeup` flags. */
export interface WakeupSql {
  /**
   * Raises (or extends) this wakeup's flag: $1 channel, $2 listener, $3 lifetime in ms. First
   * deletes the expired flags of others on the channel (wakeups that died asleep), skipping
   * rows another session holds, so two wakeups never wait on each other.
   */
  readonly raise: string
  /** Lowers this wakeup's flag: $1 channel, $2 listener. */
  readonly lower: string
  /** The check after raising the flag; see {@link wakeupCheckQuery}. */
  readonly check: (args: WakeupCheckArgs) => string
}

/** The values of one wakeup check. */
export interface WakeupCheckArgs {
  /** The store's clock: what is due. */
  readonly now: Date
  /** Only these writers (virtual transaction ids of a previous check); all when undefined. */
  readonly among?: readonly string[] | undefined
}

export const wakeupSql = (schema: string, prefix: string): WakeupSql => {
  const flags = qualified(schema, `${prefix}wakeup`)
  const outbox = qualified(schema, `${prefix}outbox`)
  return {
    raise: `
      WITH expired AS (
        DELETE FROM ${flags}
        WHERE (channel, listener) IN (
          SELECT channel, listener FROM ${flags}
          WHERE channel = $1::text AND listener <> $2::text AND sleeping_until < statement_timestamp()
          FOR UPDATE SKIP LOCKED
        )
      )
      INSERT INTO ${flags} (channel, listener, sleeping_until)
      VALUES ($1::text, $2::text, statement_timestamp() + $3::int * interval '1 millisecond')
      ON CONFLICT (channel, listener) DO UPDATE SET sleeping_until = EXCLUDED.sleeping_until`,
    lower: `DELETE FROM ${flags} WHERE channel = $1::text AND listener = $2::text`,
    check: (args) => wakeupCheckQuery(outbox, args),
  }
}

/**
 * Run once the flag has committed: which enqueues could have missed it, then whether
 * anything is claimable, as two statements of one simple-protocol query (each its own
 * snapshot under READ COMMITTED, in this order). An enqueue that read the flag before it
 * committed holds ROW EXCLUSIVE on the outbox from before that read (locks are taken before
 * a statement's snapshot) until it commits; so it is either listed by the first statement,
 * or it has committed before the second one's snapshot and its event is counted there.
 * Listed writers are re-checked (`among`) until they end: each has then committed (its
 * event visible to the next check) or rolled back. Other relays' claims and marks hold the
 * same lock briefly and are listed too; that costs a re-check, never a missed event.
 * "Claimable" includes the head-of-key rule, so a key whose head is in flight does not keep
 * a relay from sleeping: a relay would claim nothing and check again at once. Dead letters
 * count as holding their key here (the default, 'block'): with 'skip', an event that only a
 * dead letter held back is not seen as due and is claimed at the next enqueue's notification
 * or poll, never spun on.
 */
export const wakeupCheckQuery = (outbox: string, args: WakeupCheckArgs): string => {
  const now = timestamp(args.now)
  const among =
    args.among === undefined
      ? ''
      : ` AND virtualtransaction = ANY(ARRAY[${args.among.map(literal).join(', ')}]::text[])`
  return `
      SELECT ARRAY(
        SELECT DISTINCT virtualtransaction FROM pg_locks
        WHERE locktype = 'relation' AND relation = ${literal(outbox)}::regclass
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()${among}
      ) AS writers;
      SELECT EXISTS (
        SELECT 1 FROM ${outbox} t
        WHERE status IN ('pending', 'publishing')
          AND ((status = 'pending' AND available_at <= ${now}) OR (status = 'publishing' AND lease_until <= ${now}))
          AND ${keyHead(outbox, true)}
      ) AS due`
}
