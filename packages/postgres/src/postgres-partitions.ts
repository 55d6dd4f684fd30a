import { ValidationError } from '@txbox/core'
import type { ClientBase, Pool, PoolClient } from 'pg'
import { ADAPTER, SQLSTATE, sqlState } from './errors.js'
import {
  CONVERTED_SUFFIX,
  DATED_SUFFIX,
  instant,
  type PartitionedTableSpec,
  type PartitionInterval,
  type PartitionSql,
  partitionSql,
  retiredName,
  type TablePartitionSql,
} from './partition-sql.js'
import { qualified } from './sql.js'

/**
 * The store's `partitioning` option: the outbox and the inbox become tables partitioned by
 * time (`enqueued_at`, `received_at`), one partition per UTC day or month.
 */
export interface PostgresPartitioningOptions {
  /** `'daily'` or `'monthly'`: the span of one partition, in UTC. */
  interval: PartitionInterval
  /**
   * How many partitions exist beyond the current one (default 7 daily, 2 monthly). Created by
   * `migrate()` and kept ahead by every `cleanup` (the relay's maintenance runs it each
   * minute) and `store.maintainPartitions()`.
   */
  ahead?: number | undefined
}

/** The option after validation. */
export interface ResolvedPartitioning {
  readonly interval: PartitionInterval
  readonly ahead: number
}

const DEFAULT_AHEAD: Readonly<Record<PartitionInterval, number>> = { daily: 7, monthly: 2 }
/** A year of partitions ahead is plenty, and keeps one maintenance run's DDL short. */
const MAX_AHEAD: Readonly<Record<PartitionInterval, number>> = { daily: 366, monthly: 12 }

/**
 * How long partition DDL waits for a table lock before it gives up until the next run.
 * DETACH, and CREATE ... PARTITION OF, take an ACCESS EXCLUSIVE lock on the table: queued
 * behind a long transaction, they would make every enqueue and claim queue behind them.
 */
export const PARTITION_LOCK_TIMEOUT_MS = 2_000

/** Ids of a retired partition forgotten per statement (the contract's 10,000-row bound). */
const FORGET_BATCH = 10_000

const lockTimeout = `SET LOCAL lock_timeout = ${PARTITION_LOCK_TIMEOUT_MS}`

/** BEGIN, fn, COMMIT on one client (ROLLBACK and rethrow when fn throws). */
const inTransaction = async <T>(client: ClientBase, fn: () => Promise<T>): Promise<T> => {
  await client.query('BEGIN')
  try {
    const result = await fn()
    await client.query('COMMIT')
    return result
  } catch (error) {
    await client.query('ROLLBACK')
    throw error
  }
}

/** What one attempt to create a partition did. */
type Creation = 'created' | 'busy'

export const resolvePartitioning = (value: unknown): ResolvedPartitioning | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null) {
    throw new ValidationError(
      ADAPTER,
      "options.partitioning must be an object such as { interval: 'daily' } (or leave it out for unpartitioned tables)",
    )
  }
  const { interval, ahead } = value as { interval?: unknown; ahead?: unknown }
  if (interval !== 'daily' && interval !== 'monthly') {
    throw new ValidationError(
      ADAPTER,
      `options.partitioning.interval must be 'daily' or 'monthly'; got ${typeof interval === 'string' ? JSON.stringify(interval.slice(0, 40)) : typeof interval}`,
    )
  }
  const max = MAX_AHEAD[interval]
  if (
    ahead !== undefined &&
    (!Number.isSafeInteger(ahead) || (ahead as number) < 0 || (ahead as number) > max)
  ) {
    throw new ValidationError(
      ADAPTER,
      `options.partitioning.ahead must be an integer from 0 to ${max} (${interval} partitions beyond the current one); got ${String(ahead)}`,
    )
  }
  return { interval, ahead: (ahead as number | undefined) ?? DEFAULT_AHEAD[interval] }
}

/** The start of the UTC day or month holding `date`. */
export const periodStart = (interval: PartitionInterval, date: Date): Date =>
  interval === 'daily'
    ? new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()))
    : new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1))

/** The start of the period after the one starting at `start`. */
export const nextPeriod = (interval: PartitionInterval, start: Date): Date =>
  interval === 'daily'
    ? new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate() + 1))
    : new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1))

const twoDigits = (n: number): string => String(n).padStart(2, '0')

/** `p20261201` for a day, `p202612` for a month. */
export const periodSuffix = (interval: PartitionInterval, start: Date): string => {
  const month = `p${start.getUTCFullYear()}${twoDigits(start.getUTCMonth() + 1)}`
  return interval === 'daily' ? `${month}${twoDigits(start.getUTCDate())}` : month
}

/** The range of a dated partition from its name's suffix; undefined for any other name. */
export const periodOfSuffix = (suffix: string): { start: Date; end: Date } | undefined => {
  const match = DATED_SUFFIX.exec(suffix)
  if (match === null) return undefined
  const [, year, month, day] = match
  const start = new Date(Date.UTC(Number(year), Number(month) - 1, day === undefined ? 1 : Number(day)))
  return { start, end: nextPeriod(day === undefined ? 'monthly' : 'daily', start) }
}

/** The layout row of a partitioned table. */
interface Layout {
  readonly interval: PartitionInterval
  readonly ahead: number
  readonly legacyUntil: Date
}

const readLayout = async (
  db: Pool | ClientBase,
  sql: PartitionSql,
  prefix: string,
  spec: PartitionedTableSpec,
): Promise<Layout | undefined> => {
  const exists = await db.query<{ relkind: string }>(sql.relationKind, [`${prefix}partitioning`])
  if (exists.rows.length === 0) return undefined
  const result = await db.query<{ interval: PartitionInterval; ahead: number; legacy_until: number }>(
    sql.layout,
    [spec.name],
  )
  const row = result.rows[0]
  return row === undefined
    ? undefined
    : { interval: row.interval, ahead: row.ahead, legacyUntil: new Date(row.legacy_until) }
}

/**
 * The maintenance of one partitioned table (a no-op on an unpartitioned one): partitions
 * created ahead, and partitions whose every row is done before the retention cutoff
 * detached, their ids forgotten, and dropped. The layout is read from the database on each
 * run, so a relay started without the `partitioning` option maintains it too.
 */
export class PostgresPartitions {
  readonly #pool: Pool
  readonly #prefix: string
  readonly #spec: PartitionedTableSpec
  readonly #sql: PartitionSql
  readonly #table: TablePartitionSql
  readonly #schema: string
  /** One maintenance run at a time per table, across processes (every relay runs cleanup). */
  readonly #lockKey: string

  constructor(pool: Pool, schema: string, prefix: string, spec: PartitionedTableSpec) {
    this.#pool = pool
    this.#schema = schema
    this.#lockKey = `txbox:partitions:${schema}.${prefix}${spec.name}`
    this.#prefix = prefix
    this.#spec = spec
    this.#sql = partitionSql(schema, prefix)
    this.#table = this.#sql.table(spec)
  }

  /** The layout, or undefined when the table is not partitioned. */
  layout(): Promise<Layout | undefined> {
    return readLayout(this.#pool, this.#sql, this.#prefix, this.#spec)
  }

  /**
   * Creates the partition of `now` and the `ahead` ones after it, those missing. Answers
   * how many it created. A partition whose lock is not granted within
   * {@link PARTITION_LOCK_TIMEOUT_MS} is left for the next run (its rows go to the default
   * partition meanwhile, and move into it when it is created).
   */
  async createAhead(now: Date): Promise<number> {
    const layout = await this.layout()
    if (layout === undefined) return 0
    return this.#exclusive(0, (client) => this.#createAhead(client, layout, now))
  }

  async #createAhead(client: ClientBase, layout: Layout, now: Date): Promise<number> {
    const existing = await this.#partitionNames(client)
    let created = 0
    let start = periodStart(layout.interval, now)
    for (let i = 0; i <= layout.ahead; i++, start = nextPeriod(layout.interval, start)) {
      const end = nextPeriod(layout.interval, start)
      // The converted table holds everything before legacy_until.
      if (end.getTime() <= layout.legacyUntil.getTime()) continue
      const from = start.getTime() < layout.legacyUntil.getTime() ? layout.legacyUntil : start
      const name = `${this.#table.parentName}_${periodSuffix(layout.interval, start)}`
      if (existing.has(name)) continue
      const creation = await this.#createPartition(client, name, from, end)
      // Not granted in time: the table is busy; the next run tries again.
      if (creation === 'busy') break
      if (creation === 'created') created++
    }
    return created
  }

  /**
   * Retires every partition (the converted one included, never the default) whose range
   * ends at or before `cutoff` and whose every row is done before it, oldest first; then
   * finishes retired partitions a previous run left. Answers how many rows went with them.
   */
  /**
   * What `cleanup` does first on time-partitioned tables, for the outbox and the inbox alike:
   * creates the partitions of `now` and ahead, then retires those whose every row is done
   * before `cutoff`; answers the rows the dropped partitions held.
   */
  async maintain(now: Date, cutoff: Date): Promise<number> {
    await this.createAhead(now)
    return this.retire(cutoff)
  }

  async retire(cutoff: Date): Promise<number> {
    const layout = await this.layout()
    if (layout === undefined) return 0
    return this.#exclusive(0, (client) => this.#retire(client, layout, cutoff))
  }

  async #retire(client: ClientBase, layout: Layout, cutoff: Date): Promise<number> {
    const candidates: { name: string; end: Date }[] = []
    for (const name of await this.#partitionNames(client)) {
      const suffix = name.slice(this.#table.parentName.length + 1)
      const end = suffix === CONVERTED_SUFFIX ? layout.legacyUntil : periodOfSuffix(suffix)?.end
      if (end !== undefined && end.getTime() <= cutoff.getTime()) candidates.push({ name, end })
    }
    candidates.sort((a, b) => a.end.getTime() - b.end.getTime())
    for (const { name } of candidates) {
      if (await this.#holdsLiveRows(client, name, cutoff)) continue
      await this.#detach(client, name, cutoff)
    }
    let rows = 0
    const retired = await client.query<{ name: string }>(this.#table.retired)
    for (const { name } of retired.rows) rows += await this.#finish(client, name)
    return rows
  }

  /**
   * Runs `fn` on a client holding this table's maintenance lock (a session advisory lock),
   * or answers `none` at once when another process holds it: two relays never create,
   * detach or drop the same partition at once. Every statement of a run goes through that
   * one client, so a pool of one connection is enough. A client that fails is destroyed,
   * which also frees the lock.
   */
  async #exclusive<T>(none: T, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect()
    let failed = false
    try {
      const lock = await client.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked',
        [this.#lockKey],
      )
      if (lock.rows[0]?.locked !== true) return none
      const result = await fn(client)
      await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [this.#lockKey])
      return result
    } catch (error) {
      failed = true
      throw error
    } finally {
      client.release(failed)
    }
  }

  async #partitionNames(client: ClientBase): Promise<Set<string>> {
    const result = await client.query<{ name: string }>(this.#table.partitions)
    return new Set(result.rows.map((row) => row.name))
  }

  async #holdsLiveRows(db: ClientBase, partition: string, cutoff: Date): Promise<boolean> {
    const result = await db.query<{ live: boolean }>(this.#table.holdsLiveRows(partition), [cutoff])
    return result.rows[0]?.live !== false
  }

  /**
   * Detaches the partition and renames it `_r...`, in one short transaction that checks
   * again, under DETACH's lock, that nothing live arrived since the first check (an enqueuer
   * whose clock lags could still insert into an old range). The table's lock is not waited
   * for beyond the lock timeout: the partition is then retried on the next run.
   */
  async #detach(client: ClientBase, partition: string, cutoff: Date): Promise<boolean> {
    try {
      return await inTransaction(client, async () => {
        await client.query(lockTimeout)
        await client.query(
          `ALTER TABLE ${this.#table.parent} DETACH PARTITION ${qualified(this.#schema, partition)}`,
        )
        if (await this.#holdsLiveRows(client, partition, cutoff)) {
          // Nothing happened: the DETACH rolls back with the transaction.
          throw new KeptPartition()
        }
        await client.query(
          `ALTER TABLE ${qualified(this.#schema, partition)} RENAME TO "${retiredName(partition, this.#table.parentName)}"`,
        )
        return true
      })
    } catch (error) {
      if (error instanceof KeptPartition || sqlState(error) === SQLSTATE.lockNotAvailable) return false
      throw error
    }
  }

  /**
   * Forgets the ids of a retired partition (in batches, each its own statement, so no lock
   * is held long) and drops it. Until its ids are forgotten, an id of it enqueued again is
   * neither stored nor readable: the enqueue fails and may be retried a moment later.
   */
  async #finish(client: ClientBase, retired: string): Promise<number> {
    const table = qualified(this.#schema, retired)
    const counted = await client.query<{ count: number }>(`SELECT count(*)::int AS count FROM ${table}`)
    let last = ''
    for (;;) {
      const batch = await client.query<{ last: string | null; count: number }>(
        this.#table.forgetRetiredIds(retired),
        [last, FORGET_BATCH],
      )
      const row = batch.rows[0]
      if (row === undefined || row.last === null) break
      last = row.last
      if (row.count < FORGET_BATCH) break
    }
    await client.query(`DROP TABLE ${table}`)
    return counted.rows[0]?.count ?? 0
  }

  /**
   * CREATE ... PARTITION OF checks that the default partition holds no row of the new
   * range; when it does (maintenance did not run for longer than `ahead` periods), those
   * rows are moved into the new partition in the same transaction, through the table (its
   * delete trigger forgets their ids, which are claimed again before they go back).
   */
  async #createPartition(client: ClientBase, name: string, from: Date, to: Date): Promise<Creation> {
    const partition = qualified(this.#schema, name)
    const bounds = `FOR VALUES FROM (${instant(from)}) TO (${instant(to)})`
    const create = `CREATE TABLE ${partition} PARTITION OF ${this.#table.parent} ${bounds}`
    const { key } = this.#spec
    try {
      return await inTransaction(client, async (): Promise<Creation> => {
        await client.query(lockTimeout)
        // CREATE ... PARTITION OF takes this lock anyway; taken first, no insert can reach
        // the default partition between the check below and the CREATE.
        await client.query(`LOCK TABLE ONLY ${this.#table.parent} IN ACCESS EXCLUSIVE MODE`)
        const stray = await client.query(
          `SELECT 1 FROM ${qualified(this.#schema, this.#table.defaultPartition)} WHERE ${key} >= $1 AND ${key} < $2 LIMIT 1`,
          [from, to],
        )
        if (stray.rows.length === 0) {
          await client.query(create)
          return 'created'
        }
        const moving = `"${this.#prefix}moving_${this.#spec.name}"`
        await client.query(`CREATE TEMPORARY TABLE ${moving} (LIKE ${this.#table.parent}) ON COMMIT DROP`)
        await client.query(
          `WITH moved AS (DELETE FROM ${this.#table.parent} WHERE ${key} >= $1 AND ${key} < $2 RETURNING *)
           INSERT INTO ${moving} SELECT * FROM moved`,
          [from, to],
        )
        await client.query(create)
        // The DELETE forgot their ids (its trigger); the rows come back with the same ids.
        await client.query(`INSERT INTO ${this.#table.ids} (event_id) SELECT event_id FROM ${moving}`)
        await client.query(
          `INSERT INTO ${this.#table.parent} OVERRIDING SYSTEM VALUE SELECT * FROM ${moving} ORDER BY seq`,
        )
        return 'created'
      })
    } catch (error) {
      if (sqlState(error) === SQLSTATE.lockNotAvailable) return 'busy'
      throw error
    }
  }
}

/** Thrown inside the detach transaction to roll it back when the partition must stay. */
class KeptPartition extends Error {}

/**
 * Converts one unpartitioned table into the partitioned layout, inside the caller's
 * transaction (migrate's, behind its advisory lock). The table is not copied: it becomes
 * the partition `<table>_pold` of a new partitioned table of the same columns, holding
 * (MINVALUE, legacy_until), legacy_until the end of the period of its latest row or of
 * `now`, whichever is later; new partitions follow from there. Its rows, their seq (enqueue
 * order), their statuses and their indexes stay as they were; the one full pass is the copy
 * of the event ids into the id table, plus the two index builds the partitioned table needs
 * (primary key with the partition key, event_id). The table is locked meanwhile: see
 * docs/MIGRATIONS.md for converting a large table.
 */
export const partitionTable = async (
  client: ClientBase,
  schema: string,
  prefix: string,
  spec: PartitionedTableSpec,
  partitioning: ResolvedPartitioning,
  now: Date,
): Promise<void> => {
  const sql = partitionSql(schema, prefix)
  const table = sql.table(spec)
  await client.query(sql.createLayoutTable)
  const layout = await readLayout(client, sql, prefix, spec)
  if (layout !== undefined) {
    if (layout.interval !== partitioning.interval) {
      throw new ValidationError(
        ADAPTER,
        `the ${spec.name} table is partitioned ${layout.interval}, but options.partitioning.interval is '${partitioning.interval}': ` +
          `set it to '${layout.interval}' (changing the interval of a partitioned table is not supported)`,
      )
    }
    await client.query(sql.updateAhead, [spec.name, partitioning.ahead])
    return
  }
  const kind = await client.query<{ relkind: string }>(sql.relationKind, [table.parentName])
  if (kind.rows[0]?.relkind !== 'r') {
    throw new ValidationError(
      ADAPTER,
      `cannot partition ${table.parent}: it is not a plain table (found ${kind.rows[0]?.relkind ?? 'nothing'}); run migrate() without partitioning first`,
    )
  }
  const legacy = qualified(schema, table.convertedName)
  await client.query(`LOCK TABLE ${table.parent} IN ACCESS EXCLUSIVE MODE`)
  const bounds = await client.query<{ latest: number | null; next_seq: string }>(
    `SELECT (extract(epoch FROM max(${spec.key})) * 1000)::float8 AS latest,
            (GREATEST(COALESCE(max(seq), 0), (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
               FROM ${await serialSequence(client, table.parent)})) + 1)::text AS next_seq
     FROM ${table.parent}`,
  )
  const latest = bounds.rows[0]?.latest
  const from = latest === null || latest === undefined || latest < now.getTime() ? now : new Date(latest)
  const legacyUntil = nextPeriod(partitioning.interval, periodStart(partitioning.interval, from))
  const indexes = await client.query<{
    name: string
    definition: string
    is_unique: boolean
    constraint_name: string | null
  }>(table.indexes)

  await client.query(`ALTER TABLE ${table.parent} RENAME TO "${table.convertedName}"`)
  // Unique keys cannot stay: a partition's unique index would be a second, partial,
  // uniqueness next to the id table's. The table's other indexes keep their definitions
  // under temporary names; ATTACH adopts them as the partition's indexes, unrebuilt.
  const recreate: { name: string; using: string }[] = []
  let n = 0
  for (const index of indexes.rows) {
    if (index.is_unique) {
      await client.query(
        index.constraint_name === null
          ? `DROP INDEX ${qualified(schema, index.name)}`
          : `ALTER TABLE ${legacy} DROP CONSTRAINT "${index.constraint_name}"`,
      )
      continue
    }
    const using = index.definition.slice(index.definition.indexOf(' USING ') + 1)
    recreate.push({ name: index.name, using })
    await client.query(
      `ALTER INDEX ${qualified(schema, index.name)} RENAME TO "${table.convertedName}_${++n}"`,
    )
  }
  await client.query(
    `CREATE TABLE ${table.parent} (LIKE ${legacy} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)
     PARTITION BY RANGE (${spec.key})`,
  )
  await client.query(
    `ALTER TABLE ${table.parent} ADD CONSTRAINT "${table.parentName}_pkey" PRIMARY KEY (seq, ${spec.key})`,
  )
  await client.query(`CREATE INDEX "${table.parentName}_event_id_idx" ON ${table.parent} (event_id)`)
  for (const index of recreate)
    await client.query(`CREATE INDEX "${index.name}" ON ${table.parent} ${index.using}`)
  // seq goes on from where the old table's identity was, so enqueue order continues.
  await client.query(`ALTER TABLE ${legacy} ALTER COLUMN seq DROP IDENTITY`)
  await client.query(
    `ALTER TABLE ${table.parent} ALTER COLUMN seq RESTART WITH ${bounds.rows[0]?.next_seq ?? '1'}`,
  )
  await client.query(
    `ALTER SEQUENCE ${await serialSequence(client, table.parent)} RENAME TO "${table.parentName}_seq_seq"`,
  )
  await client.query(table.createIds)
  await client.query(`INSERT INTO ${table.ids} (event_id) SELECT event_id FROM ${legacy}`)
  await client.query(
    `ALTER TABLE ${table.parent} ATTACH PARTITION ${legacy} FOR VALUES FROM (MINVALUE) TO (${instant(legacyUntil)})`,
  )
  await client.query(
    `CREATE TABLE ${qualified(schema, table.defaultPartition)} PARTITION OF ${table.parent} DEFAULT`,
  )
  for (const statement of table.idTriggers) await client.query(statement)
  await client.query(sql.recordLayout, [
    spec.name,
    partitioning.interval,
    partitioning.ahead,
    legacyUntil,
    now,
  ])
}

/** The identity sequence of `seq`, schema-qualified and quoted where needed (as `pg_get_serial_sequence` spells it). */
const serialSequence = async (client: ClientBase, table: string): Promise<string> => {
  const result = await client.query<{ sequence: string | null }>(
    `SELECT pg_get_serial_sequence($1, 'seq') AS sequence`,
    [table],
  )
  const sequence = result.rows[0]?.sequence
  if (sequence == null) throw new Error(`${table}.seq has no identity sequence`)
  return sequence
}
