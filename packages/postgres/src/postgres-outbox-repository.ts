import {
  addMs,
  assertEventFits,
  type ClaimOptions,
  type Clock,
  cutoffDays,
  cutoffMinutes,
  type EnqueueParams,
  EventNotFoundError,
  encodeStoredText,
  type FenceOptions,
  LeaseLostError,
  type OutboxCounts,
  type OutboxEvent,
  type OutboxRepository,
  outboxCounts,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  StorageError,
  type WriteOptions,
} from '@txbox/core'
import type { Pool, QueryResult } from 'pg'
import { withPostgresErrors } from './errors.js'
import {
  ADAPTER,
  type PostgresStoreOptions,
  type PostgresTransaction,
  resolveOptions,
  transactionHandle,
  validateOutbox,
} from './postgres-options.js'
import { deleteInBatches, query } from './query.js'
import { type OutboxRow, outboxEventFromRow } from './rows.js'
import { type OutboxSql, outboxSql } from './sql.js'

const encode = encodeStoredText
const encodeOptional = (text: string | undefined): string | null =>
  text === undefined ? null : encodeStoredText(text)

/**
 * How often `findOrCreate` re-reads ids whose insert conflicted with a row it could not see
 * yet. One retry suffices under READ COMMITTED (the conflicting inserter has committed by
 * then); more only happen if that row is deleted in between.
 */
const MAX_ENQUEUE_ATTEMPTS = 5

/**
 * The outbox on PostgreSQL. Every method is a single statement (cleanup: a loop of bounded
 * statements), so none holds a transaction open between calls.
 */
export class PostgresOutboxRepository implements OutboxRepository<PostgresTransaction> {
  readonly #pool: Pool
  readonly #clock: Clock
  readonly #sql: OutboxSql
  readonly #notify: boolean
  /** The `LISTEN/NOTIFY` channel an enqueue notifies on (see `createPostgresWakeup`). */
  readonly channel: string
  /** The largest event accepted, in NATS message bytes (the `maxEventBytes` option). */
  readonly maxEventBytes: number

  constructor(options: PostgresStoreOptions) {
    const resolved = resolveOptions(options)
    this.#pool = resolved.pool
    this.#clock = resolved.clock
    this.#sql = outboxSql(resolved.schema, resolved.tablePrefix)
    this.#notify = resolved.notify
    this.channel = resolved.channel
    this.maxEventBytes = resolved.maxEventBytes
  }

  async findOrCreate(
    params: EnqueueParams,
    options?: WriteOptions<PostgresTransaction>,
  ): Promise<OutboxEvent> {
    const valid = validateOutbox.enqueueParams(params)
    assertEventFits(ADAPTER, valid, this.maxEventBytes)
    const tx = transactionHandle(options?.tx)
    const stored = await withPostgresErrors('outbox.findOrCreate', () => this.#enqueue([valid], tx))
    return outboxEventFromRow(stored.get(encode(valid.eventId)) as OutboxRow)
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<PostgresTransaction>,
  ): Promise<OutboxEvent[]> {
    const valid = validateOutbox.enqueueParamsList(params)
    for (const event of valid) assertEventFits(ADAPTER, event, this.maxEventBytes)
    const tx = transactionHandle(options?.tx)
    if (valid.length === 0) return []
    // First occurrence wins inside a batch: later duplicates are dropped before the insert,
    // and every position gets the stored event.
    const unique = new Map<string, EnqueueParams>()
    for (const event of valid) {
      const key = encode(event.eventId)
      if (!unique.has(key)) unique.set(key, event)
    }
    const stored = await withPostgresErrors('outbox.findOrCreateMany', () =>
      this.#enqueue([...unique.values()], tx),
    )
    return valid.map((event) => outboxEventFromRow(stored.get(encode(event.eventId)) as OutboxRow))
  }

  /**
   * Inserts the events that are new and returns the stored row of every id.
   *
   * Race: when another transaction inserts the same id concurrently, our ON CONFLICT waits
   * for it to commit and then skips the row, but the read-back half of the statement uses the
   * snapshot taken before that commit and cannot see it. Those ids come back missing and are
   * run again in a new statement, whose snapshot (READ COMMITTED) includes the winner's row.
   * So all concurrent callers return the single stored row. ON CONFLICT DO UPDATE would see
   * it at once, but it rewrites (and locks) an existing row on every duplicate enqueue.
   * Under REPEATABLE READ the server raises a serialization failure instead (StorageError).
   */
  async #enqueue(
    events: readonly EnqueueParams[],
    tx: PostgresTransaction | undefined,
  ): Promise<Map<string, OutboxRow>> {
    const db = tx ?? this.#pool
    const now = this.#clock()
    const stored = new Map<string, OutboxRow>()
    let missing = events
    for (let attempt = 0; attempt < MAX_ENQUEUE_ATTEMPTS && missing.length > 0; attempt++) {
      const values: unknown[] = [
        missing.map((event) => encode(event.eventId)),
        missing.map((event) => encode(event.subject)),
        missing.map((event) => encode(event.payload)),
        missing.map((event) => encodeOptional(event.headers)),
        missing.map((event) => event.availableAt ?? now),
        now,
      ]
      if (this.#notify) values.push(this.channel)
      const result = await query<OutboxRow>(db, this.#sql.insertMany(this.#notify), values)
      for (const row of result.rows) stored.set(row.event_id, row)
      missing = missing.filter((event) => !stored.has(encode(event.eventId)))
    }
    if (missing.length > 0) {
      throw new StorageError(
        ADAPTER,
        'outbox.findOrCreate',
        undefined,
        `could not read back ${missing.length} event(s) after ${MAX_ENQUEUE_ATTEMPTS} attempts (deleted concurrently?)`,
      )
    }
    return stored
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = validateOutbox.eventId(eventId)
    await withPostgresErrors('outbox.markAsPublishing', async () => {
      const result = await query(this.#pool, this.#sql.markAsPublishing, [encode(id), this.#clock()])
      if (result.rowCount === 0) throw new EventNotFoundError(ADAPTER, id)
    })
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = validateOutbox.eventId(eventId)
    const workerId = validateOutbox.fence(options)
    await this.#fencedUpdate('outbox.markAsSent', id, workerId, this.#sql.markAsSent, [this.#clock()])
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = validateOutbox.eventId(eventId)
    const message = validateOutbox.text(errorMessage, 'errorMessage')
    const workerId = validateOutbox.fence(options)
    await this.#fencedUpdate('outbox.markAsFailed', id, workerId, this.#sql.markAsFailed, [encode(message)])
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = validateOutbox.eventId(eventId)
    const { errorMessage, delayMs, workerId } = validateOutbox.retryLaterOptions(options)
    const availableAt = addMs(this.#clock(), delayMs)
    await this.#fencedUpdate('outbox.retryLater', id, workerId, this.#sql.retryLater, [
      encode(errorMessage),
      availableAt,
    ])
  }

  /**
   * One UPDATE whose WHERE clause carries the fence, so "check the claim, then write" cannot
   * interleave with a concurrent claim. Only when nothing was updated does a second read
   * tell a lost lease from an unknown id.
   */
  async #fencedUpdate(
    operation: string,
    id: string,
    workerId: string | undefined,
    text: string,
    extra: unknown[],
  ): Promise<void> {
    await withPostgresErrors(operation, async () => {
      const result = await query(this.#pool, text, [
        encode(id),
        workerId === undefined ? null : encode(workerId),
        ...extra,
      ])
      if (result.rowCount !== 0) return
      if (workerId === undefined) throw new EventNotFoundError(ADAPTER, id)
      const exists = await query(this.#pool, this.#sql.exists, [encode(id)])
      if (exists.rowCount === 0) throw new EventNotFoundError(ADAPTER, id)
      throw new LeaseLostError(ADAPTER, id, workerId)
    })
  }

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = validateOutbox.limitOption(options)
    return withPostgresErrors('outbox.findPending', async () => {
      const result = await query<OutboxRow>(this.#pool, this.#sql.findPending, [this.#clock(), limit])
      return result.rows.map(outboxEventFromRow)
    })
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const days = validateOutbox.nonNegative(olderThanDays, 'olderThanDays')
    const cutoff = cutoffDays(this.#clock(), days)
    return withPostgresErrors('outbox.cleanup', () =>
      deleteInBatches(this.#pool, this.#sql.cleanupBatch, cutoff),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const minutes = validateOutbox.nonNegative(staleMinutes, 'staleMinutes')
    const cutoff = cutoffMinutes(this.#clock(), minutes)
    return withPostgresErrors('outbox.resetStale', async () => {
      const result = await query(this.#pool, this.#sql.resetStale, [cutoff])
      return result.rowCount ?? 0
    })
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    return withPostgresErrors('outbox.getCountByStatus', async () => {
      const result = await query<{ status: string; count: string }>(this.#pool, this.#sql.countByStatus, [])
      return outboxCounts(result.rows.map((row) => [row.status, row.count] as const))
    })
  }

  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = validateOutbox.claimOptions(options)
    const now = this.#clock()
    return withPostgresErrors('outbox.claim', async () => {
      const text = this.#sql.claim({
        workerId: encode(workerId),
        now,
        leaseUntil: addMs(now, leaseMs),
        limit,
      })
      // A multi-statement query answers one result per statement; the UPDATE's is the last.
      const results = (await this.#pool.query<OutboxRow>(text)) as unknown as QueryResult<OutboxRow>[]
      const rows = results.at(-1)?.rows ?? []
      // RETURNING has no defined order; enqueue order is the seq order.
      return rows.sort(bySeq).map(outboxEventFromRow)
    })
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = validateOutbox.eventIds(eventIds)
    const { leaseMs, workerId } = validateOutbox.leaseOptions(options)
    if (ids.length === 0) return []
    const leaseUntil = addMs(this.#clock(), leaseMs)
    return withPostgresErrors('outbox.renewLease', async () => {
      const result = await query<{ event_id: string }>(this.#pool, this.#sql.renewLease, [
        ids.map(encode),
        encode(workerId),
        leaseUntil,
      ])
      const renewed = new Set(result.rows.map((row) => row.event_id))
      return ids.filter((id) => renewed.has(encode(id)))
    })
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = validateOutbox.eventIds(eventIds)
    const workerId = validateOutbox.fence(options)
    if (ids.length === 0) return []
    const now = this.#clock()
    return withPostgresErrors('outbox.markManyAsSent', async () => {
      const result = await query<{ event_id: string }>(this.#pool, this.#sql.markManyAsSent, [
        ids.map(encode),
        workerId === undefined ? null : encode(workerId),
        now,
      ])
      const applied = new Set(result.rows.map((row) => row.event_id))
      // Same answer as applying the ids one by one: a repeated id is applied again without a
      // fence, but with a fence its second mark finds the event already sent (lease gone).
      const seen = new Set<string>()
      return ids.filter((id) => {
        const key = encode(id)
        const repeated = seen.has(key)
        seen.add(key)
        if (!applied.has(key)) return true
        return repeated && workerId !== undefined
      })
    })
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = validateOutbox.limit(limit)
    return withPostgresErrors('outbox.getFailedEvents', async () => {
      const result = await query<OutboxRow>(this.#pool, this.#sql.failed, [max])
      return result.rows.map(outboxEventFromRow)
    })
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = validateOutbox.eventIds(eventIds)
    if (ids.length === 0) return 0
    const now = this.#clock()
    return withPostgresErrors('outbox.requeueFailed', async () => {
      const result = await query<{ moved: number; missing: string[] }>(this.#pool, this.#sql.requeueFailed, [
        ids.map(encode),
        now,
      ])
      const row = result.rows[0]
      const missing = row?.missing[0]
      if (missing !== undefined) {
        const id = ids.find((candidate) => encode(candidate) === missing) ?? missing
        throw new EventNotFoundError(ADAPTER, id)
      }
      return row?.moved ?? 0
    })
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const id = validateOutbox.eventId(eventId)
    return withPostgresErrors('outbox.get', async () => {
      const result = await query<OutboxRow>(this.#pool, this.#sql.get, [encode(id)])
      const row = result.rows[0]
      return row ? outboxEventFromRow(row) : null
    })
  }
}

const bySeq = (a: Pick<OutboxRow, 'seq'>, b: Pick<OutboxRow, 'seq'>): number => {
  const x = BigInt(a.seq)
  const y = BigInt(b.seq)
  return x < y ? -1 : x > y ? 1 : 0
}
