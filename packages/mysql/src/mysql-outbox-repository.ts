import {
  addMs,
  assertEventFits,
  type ClaimOptions,
  type Clock,
  cutoffDays,
  cutoffMinutes,
  type EnqueueParams,
  EventNotFoundError,
  type FenceOptions,
  LeaseLostError,
  type OutboxCounts,
  type OutboxEvent,
  type OutboxRepository,
  outboxCounts,
  PayloadTooLargeError,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  repeatInBatches,
  resolveMaxEventBytes,
  systemClock,
  ValidationError,
  Validator,
  type WriteOptions,
} from '@txbox/core'
import type { PoolConnection } from 'mysql2/promise'
import { ADAPTER } from './errors.js'
import { DEFAULT_TABLE_PREFIX, type MySqlStoreOptions } from './mysql-options.js'
import { compareSeq, toDateTime, toOutboxEvent } from './rows.js'
import {
  eventBytes,
  limitParam,
  type Param,
  type Queryable,
  type Row,
  Runner,
  runWrite,
  selectRows,
} from './run.js'
import {
  CLEANUP_BATCH,
  chunk,
  MAX_INSERT_BYTES,
  MAX_INSERT_ROWS,
  MAX_LIST,
  type OutboxSql,
  outboxSql,
  padList,
  tableNames,
} from './sql.js'

/** Splits events into multi-row INSERTs bounded in rows and in bytes (max_allowed_packet). */
const insertBatches = (events: readonly EnqueueParams[]): EnqueueParams[][] => {
  const batches: EnqueueParams[][] = []
  let current: EnqueueParams[] = []
  let bytes = 0
  for (const event of events) {
    const size = eventBytes(event)
    if (current.length > 0 && (current.length >= MAX_INSERT_ROWS || bytes + size > MAX_INSERT_BYTES)) {
      batches.push(current)
      current = []
      bytes = 0
    }
    current.push(event)
    bytes += size
  }
  if (current.length > 0) batches.push(current)
  return batches
}

/**
 * The outbox on MySQL 8.0+ / MariaDB 10.6+ (InnoDB). `{ tx }` is a mysql2 `PoolConnection`
 * inside `beginTransaction()`; the write then commits or rolls back with the caller's work.
 */
export class MySqlOutboxRepository implements OutboxRepository<PoolConnection> {
  protected readonly validate = new Validator(ADAPTER, 'outbox')
  protected readonly clock: Clock
  protected readonly sql: OutboxSql
  protected readonly run: Runner
  /** The outbox table's name. */
  readonly table: string
  /** The largest event accepted, in NATS message bytes (the `maxEventBytes` option). */
  readonly maxEventBytes: number
  // The default (1 MiB) is kept even on a server whose packet is smaller: there the packet
  // check refuses the few events in between, with PayloadTooLargeError.
  readonly #explicitMaxEventBytes: boolean

  constructor(options: MySqlStoreOptions) {
    const prefix = this.validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
    this.table = this.validate.identifier(tableNames(prefix).outbox, 'outbox table name')
    this.clock = options.clock ?? systemClock
    this.sql = outboxSql(this.table)
    this.run = new Runner(options.pool, options.onRetry)
    this.maxEventBytes = resolveMaxEventBytes(ADAPTER, options.maxEventBytes)
    this.#explicitMaxEventBytes = options.maxEventBytes !== undefined
  }

  /** The largest event this server accepts, in UTF-8 bytes (see `MySqlStore.serverMaxEventBytes`). */
  serverMaxEventBytes(): Promise<number> {
    return this.run.maxEventBytes()
  }

  /**
   * The server's limit, after checking that an explicit `maxEventBytes` is within it: an
   * option the server could never honour is a configuration error, said once, not an
   * event-by-event `PayloadTooLargeError`.
   */
  async checkMaxEventBytes(): Promise<number> {
    const serverLimit = await this.run.maxEventBytes()
    if (this.maxEventBytes > serverLimit && this.#explicitMaxEventBytes) {
      throw new ValidationError(
        ADAPTER,
        `maxEventBytes must be at most ${serverLimit}, what this server accepts in one statement ` +
          `(max_allowed_packet less 16 KiB); got ${this.maxEventBytes}. Lower maxEventBytes or raise max_allowed_packet`,
      )
    }
    return serverLimit
  }

  async findOrCreate(params: EnqueueParams, options?: WriteOptions<PoolConnection>): Promise<OutboxEvent> {
    const valid = this.validate.enqueueParams(params)
    assertEventFits(ADAPTER, valid, this.maxEventBytes)
    const [event] = await this.#enqueue('outbox.findOrCreate', [valid], options?.tx)
    if (!event) throw new TypeError('findOrCreate stored no event')
    return event
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<PoolConnection>,
  ): Promise<OutboxEvent[]> {
    const valid = this.validate.enqueueParamsList(params)
    for (const event of valid) assertEventFits(ADAPTER, event, this.maxEventBytes)
    if (valid.length === 0) return []
    return this.#enqueue('outbox.findOrCreateMany', valid, options?.tx)
  }

  /**
   * Inserts with a no-op `ON DUPLICATE KEY UPDATE`, then reads the stored rows back: a
   * duplicate id (from an earlier call, a concurrent one, or earlier in the same batch)
   * returns what was stored first. The unique key decides, so concurrent callers agree.
   */
  async #enqueue(
    operation: string,
    events: EnqueueParams[],
    tx: PoolConnection | undefined,
  ): Promise<OutboxEvent[]> {
    // Within maxEventBytes, a statement can still be over the packet (the SQL carries the
    // subject and JSON quoting that the NATS message does not).
    const limit = await this.checkMaxEventBytes()
    for (const event of events) {
      const size = eventBytes(event)
      if (size > limit) throw new PayloadTooLargeError(ADAPTER, event.eventId, size, limit)
    }
    const now = toDateTime(this.clock())
    return this.run.write(operation, tx, async (db) => {
      for (const batch of insertBatches(events)) {
        const rows = padList(batch)
        // Padding rows repeat the last id after it, so each one is a no-op duplicate; their
        // payload is never stored and is sent empty rather than repeated.
        const pad = rows.length - batch.length
        const values = rows.flatMap((event, index) => [
          event.eventId,
          event.subject,
          index < rows.length - pad ? event.payload : '',
          index < rows.length - pad ? (event.headers ?? null) : null,
          now,
          event.availableAt === undefined ? now : toDateTime(event.availableAt),
        ])
        await runWrite(db, this.sql.insert(rows.length), values)
      }
      const stored = new Map<string, OutboxEvent>()
      const ids = [...new Set(events.map((event) => event.eventId))]
      for (const part of chunk(ids, MAX_LIST)) {
        const sql = tx === undefined ? this.sql.byIds(part.length) : this.sql.byIdsLocking(part.length)
        for (const row of await selectRows(db, sql, padList(part))) {
          const event = toOutboxEvent(row)
          stored.set(event.eventId, event)
        }
      }
      return events.map((event) => {
        const found = stored.get(event.eventId)
        // Only possible if another session deleted the row between our insert and read.
        if (!found) throw new EventNotFoundError(ADAPTER, event.eventId)
        return { ...found }
      })
    })
  }

  /**
   * Runs a single-row UPDATE; when it changed nothing, finds out why with one read: the id is
   * not stored (EventNotFoundError), the worker lost its lease (LeaseLostError), or the row
   * already had these values (success; servers without CLIENT_FOUND_ROWS report 0 then).
   */
  async #update(
    operation: string,
    statement: { open: string; fenced: string } | string,
    values: Param[],
    eventId: string,
    workerId: string | undefined,
  ): Promise<void> {
    await this.run.auto(operation, async (db) => {
      const sql =
        typeof statement === 'string' ? statement : workerId === undefined ? statement.open : statement.fenced
      const result = await runWrite(db, sql, workerId === undefined ? values : [...values, workerId])
      if (result.affectedRows > 0) return
      await this.#explain(db, eventId, workerId)
    })
  }

  async #explain(db: Queryable, eventId: string, workerId: string | undefined): Promise<void> {
    const [row] = await selectRows(db, this.sql.probe, [eventId])
    if (!row) throw new EventNotFoundError(ADAPTER, eventId)
    if (workerId !== undefined && (row.status !== 'publishing' || row.claimed_by !== workerId)) {
      throw new LeaseLostError(ADAPTER, eventId, workerId)
    }
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = this.validate.eventId(eventId)
    const now = toDateTime(this.clock())
    await this.#update('outbox.markAsPublishing', this.sql.markAsPublishing, [now, id], id, undefined)
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const workerId = this.validate.fence(options)
    const now = toDateTime(this.clock())
    await this.#update('outbox.markAsSent', this.sql.markAsSent, [now, id], id, workerId)
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const workerId = this.validate.fence(options)
    await this.#update('outbox.markAsFailed', this.sql.markAsFailed, [message, id], id, workerId)
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.validate.retryLaterOptions(options)
    const availableAt = toDateTime(addMs(this.clock(), delayMs))
    await this.#update(
      'outbox.retryLater',
      this.sql.retryLater,
      [errorMessage, availableAt, id],
      id,
      workerId,
    )
  }

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.validate.limitOption(options)
    const now = toDateTime(this.clock())
    return this.run.auto('outbox.findPending', async (db) =>
      (await selectRows(db, this.sql.findPending, [now, limitParam(limit)])).map(toOutboxEvent),
    )
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = toDateTime(
      cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays')),
    )
    // One bounded DELETE per round trip, each its own autocommit statement: no long lock,
    // no statement over CLEANUP_BATCH rows, and a retry repeats only the failed batch.
    return repeatInBatches(CLEANUP_BATCH, () =>
      this.run.auto(
        'outbox.cleanup',
        async (db) => (await runWrite(db, this.sql.cleanup, [cutoff])).affectedRows,
      ),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = toDateTime(
      cutoffMinutes(this.clock(), this.validate.nonNegative(staleMinutes, 'staleMinutes')),
    )
    return this.run.auto(
      'outbox.resetStale',
      async (db) => (await runWrite(db, this.sql.resetStale, [cutoff])).affectedRows,
    )
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    return this.run.auto('outbox.getCountByStatus', async (db) => {
      const rows = await selectRows(db, this.sql.counts, [])
      return outboxCounts(rows.map((row) => [String(row.status), String(row.n)] as const))
    })
  }

  /**
   * One short READ COMMITTED transaction: lock up to `limit` claimable rows with
   * `FOR UPDATE SKIP LOCKED` (expired leases and due pending rows, each scan in seq order),
   * keep the first `limit` by seq, mark them, read them back, commit. A concurrent claimer
   * skips the rows we locked, so no row is returned twice; deadlocks retry as a whole.
   */
  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = this.validate.claimOptions(options)
    const now = this.clock()
    const nowText = toDateTime(now)
    const leaseUntil = toDateTime(addMs(now, leaseMs))
    return this.run.transaction('outbox.claim', async (connection) => {
      const expired = await selectRows(connection, this.sql.claimExpired, [nowText, limitParam(limit)])
      const due = await selectRows(connection, this.sql.claimDue, [nowText, limitParam(limit)])
      const seqs = [...expired, ...due]
        .map((row) => String(row.seq))
        .sort(compareSeq)
        .slice(0, limit)
      if (seqs.length === 0) return []
      const claimed: Row[] = []
      for (const part of chunk(seqs, MAX_LIST)) {
        await runWrite(connection, this.sql.claimUpdate(part.length), [
          workerId,
          nowText,
          leaseUntil,
          ...padList(part),
        ])
        claimed.push(...(await selectRows(connection, this.sql.bySeqs(part.length), padList(part))))
      }
      return claimed.sort((a, b) => compareSeq(String(a.seq), String(b.seq))).map(toOutboxEvent)
    })
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    if (ids.length === 0) return []
    const leaseUntil = toDateTime(addMs(this.clock(), leaseMs))
    const renewed = await this.run.transaction('outbox.renewLease', async (connection) => {
      const held = new Set<string>()
      for (const part of chunk([...new Set(ids)], MAX_LIST)) {
        const rows = await selectRows(connection, this.sql.heldBy(part.length), [...padList(part), workerId])
        if (rows.length === 0) continue
        const seqs = rows.map((row) => String(row.seq))
        await runWrite(connection, this.sql.renew(seqs.length), [leaseUntil, ...padList(seqs)])
        for (const row of rows) held.add(String(row.event_id))
      }
      return held
    })
    return ids.filter((id) => renewed.has(id))
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const workerId = this.validate.fence(options)
    if (ids.length === 0) return []
    const now = toDateTime(this.clock())
    return this.run.transaction('outbox.markManyAsSent', async (connection) => {
      const stored = new Map<string, Row>()
      for (const part of chunk([...new Set(ids)], MAX_LIST)) {
        for (const row of await selectRows(connection, this.sql.lockForSend(part.length), padList(part))) {
          stored.set(String(row.event_id), row)
        }
      }
      // Decided in input order, as the reference does: with a worker, a repeated id is applied
      // once (after that the row is `sent`, no longer held) and reported as not applied.
      const applied = new Set<string>()
      const notApplied: string[] = []
      for (const id of ids) {
        const row = stored.get(id)
        const held =
          workerId === undefined ||
          (!applied.has(id) && row?.status === 'publishing' && row.claimed_by === workerId)
        if (!row || !held) notApplied.push(id)
        else applied.add(id)
      }
      const seqs = [...applied].map((id) => String(stored.get(id)?.seq))
      for (const part of chunk(seqs, MAX_LIST)) {
        await runWrite(connection, this.sql.sendSeqs(part.length), [now, ...padList(part)])
      }
      return notApplied
    })
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.validate.limit(limit)
    return this.run.auto('outbox.getFailedEvents', async (db) =>
      (await selectRows(db, this.sql.failed, [limitParam(max)])).map(toOutboxEvent),
    )
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.validate.eventIds(eventIds)
    if (ids.length === 0) return 0
    const now = toDateTime(this.clock())
    const unique = [...new Set(ids)]
    const { requeued, stored } = await this.run.auto('outbox.requeueFailed', async (db) => {
      let requeued = 0
      const stored = new Set<string>()
      for (const part of chunk(unique, MAX_LIST)) {
        requeued += (await runWrite(db, this.sql.requeue(part.length), [now, ...padList(part)])).affectedRows
        for (const row of await selectRows(db, this.sql.existing(part.length), padList(part))) {
          stored.add(String(row.event_id))
        }
      }
      return { requeued, stored }
    })
    const missing = ids.find((id) => !stored.has(id))
    if (missing !== undefined) throw new EventNotFoundError(ADAPTER, missing)
    return requeued
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const id = this.validate.eventId(eventId)
    return this.run.auto('outbox.get', async (db) => {
      const [row] = await selectRows(db, this.sql.get, [id])
      return row ? toOutboxEvent(row) : null
    })
  }
}
