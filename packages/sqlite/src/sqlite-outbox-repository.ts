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
  type OutboxStatus,
  outboxCounts,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  repeatInBatches,
  ValidationError,
  Validator,
  type WriteOptions,
} from '@txbox/core'
import { Connection } from './connection.js'
import { ADAPTER, assertStorable, runStorage } from './errors.js'
import { CLEANUP_BATCH, outboxSql } from './sql.js'
import { resolveSqliteOptions, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'

/** An outbox row as SQLite returns it. */
interface OutboxRow {
  seq: number
  event_id: string
  subject: string
  payload: string
  headers: string | null
  status: OutboxStatus
  enqueued_at: number
  sent_at: number | null
  error_message: string | null
  retry_count: number
  available_at: number
  claimed_at: number | null
  claimed_by: string | null
  lease_until: number | null
}

const toEvent = (row: OutboxRow): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: row.event_id,
    subject: row.subject,
    payload: row.payload,
    status: row.status,
    enqueuedAt: new Date(row.enqueued_at),
    retryCount: row.retry_count,
    availableAt: new Date(row.available_at),
  }
  if (row.headers !== null) event.headers = row.headers
  if (row.sent_at !== null) event.sentAt = new Date(row.sent_at)
  if (row.error_message !== null) event.errorMessage = row.error_message
  if (row.claimed_at !== null) event.claimedAt = new Date(row.claimed_at)
  if (row.claimed_by !== null) event.claimedBy = row.claimed_by
  if (row.lease_until !== null) event.leaseUntil = new Date(row.lease_until)
  return event
}

type Statements = keyof ReturnType<typeof outboxSql>

/**
 * The outbox on SQLite (better-sqlite3). Each method is one synchronous step on the
 * connection; multi-statement steps run under `BEGIN IMMEDIATE` (or a SAVEPOINT inside a
 * transaction the caller opened), so they are atomic against other connections and
 * processes too. `{ tx }` is the `Database` itself.
 */
export class SqliteOutboxRepository implements OutboxRepository<SqliteDatabase> {
  readonly #connection: Connection<Statements>
  readonly #clock: Clock
  readonly #validate = new Validator(ADAPTER, 'outbox')
  /** The largest event accepted, in NATS message bytes (the `maxEventBytes` option). */
  readonly maxEventBytes: number

  constructor(options: SqliteOptions) {
    const { db, tables, clock, maxEventBytes } = resolveSqliteOptions(options)
    this.#connection = new Connection(db, outboxSql(tables))
    this.#clock = clock
    this.maxEventBytes = maxEventBytes
  }

  #row(eventId: string): OutboxRow | undefined {
    return this.#connection.statement<OutboxRow>('selectById').get(eventId)
  }

  /** Inserts unless the id is stored, then reads the stored row: both in the caller's synchronous step. */
  #insert(params: EnqueueParams, nowMs: number): OutboxEvent {
    this.#connection
      .statement('insert')
      .run(
        params.eventId,
        params.subject,
        params.payload,
        params.headers ?? null,
        nowMs,
        params.availableAt?.getTime() ?? nowMs,
      )
    const row = this.#row(params.eventId)
    // Only cleanup deletes rows, and only `sent` ones; inside this atomic step nothing can.
    if (row === undefined)
      throw new Error(`the row of ${JSON.stringify(params.eventId)} vanished after its insert`)
    return toEvent(row)
  }

  async findOrCreate(params: EnqueueParams, options?: WriteOptions<SqliteDatabase>): Promise<OutboxEvent> {
    const valid = this.#validate.enqueueParams(params)
    this.#connection.joinable(options?.tx)
    assertEventFits(ADAPTER, valid, this.maxEventBytes)
    assertStorable(valid)
    const nowMs = this.#clock().getTime()
    return runStorage('outbox.findOrCreate', () => this.#connection.atomic(() => this.#insert(valid, nowMs)))
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<SqliteDatabase>,
  ): Promise<OutboxEvent[]> {
    const valid = this.#validate.enqueueParamsList(params)
    this.#connection.joinable(options?.tx)
    for (const event of valid) {
      assertEventFits(ADAPTER, event, this.maxEventBytes)
      assertStorable(event)
    }
    if (valid.length === 0) return []
    const nowMs = this.#clock().getTime()
    return runStorage('outbox.findOrCreateMany', () =>
      this.#connection.atomic(() => {
        const stored = new Map<string, OutboxEvent>()
        return valid.map((event) => {
          const earlier = stored.get(event.eventId)
          if (earlier) return { ...earlier }
          const result = this.#insert(event, nowMs)
          stored.set(event.eventId, result)
          return { ...result }
        })
      }),
    )
  }

  /**
   * Runs a fenced or unfenced single-row update and turns "no row changed" into the right
   * error: the id is not stored (EventNotFoundError) or the worker lost its claim
   * (LeaseLostError). The update and the check share one atomic step.
   */
  #updateOne(
    operation: string,
    eventId: string,
    workerId: string | undefined,
    update: () => number,
  ): Promise<void> {
    return runStorage(operation, () => {
      const outcome = this.#connection.atomic(() => {
        if (update() > 0) return 'applied'
        return this.#connection.statement('exists').get(eventId) === undefined ? 'missing' : 'lease-lost'
      })
      if (outcome === 'missing') throw new EventNotFoundError(ADAPTER, eventId)
      if (outcome === 'lease-lost' && workerId !== undefined)
        throw new LeaseLostError(ADAPTER, eventId, workerId)
    })
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const nowMs = this.#clock().getTime()
    return this.#updateOne(
      'outbox.markAsPublishing',
      id,
      undefined,
      () => this.#connection.statement('markAsPublishing').run(nowMs, id).changes,
    )
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const workerId = this.#validate.fence(options)
    const nowMs = this.#clock().getTime()
    return this.#updateOne('outbox.markAsSent', id, workerId, () =>
      workerId === undefined
        ? this.#connection.statement('markAsSent').run(nowMs, id).changes
        : this.#connection.statement('markAsSentFenced').run(nowMs, id, workerId).changes,
    )
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const message = this.#validate.text(errorMessage, 'errorMessage')
    const workerId = this.#validate.fence(options)
    return this.#updateOne('outbox.markAsFailed', id, workerId, () =>
      workerId === undefined
        ? this.#connection.statement('markAsFailed').run(message, id).changes
        : this.#connection.statement('markAsFailedFenced').run(message, id, workerId).changes,
    )
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.#validate.retryLaterOptions(options)
    const availableAtMs = addMs(this.#clock(), delayMs).getTime()
    return this.#updateOne('outbox.retryLater', id, workerId, () =>
      workerId === undefined
        ? this.#connection.statement('retryLater').run(errorMessage, availableAtMs, id).changes
        : this.#connection.statement('retryLaterFenced').run(errorMessage, availableAtMs, id, workerId)
            .changes,
    )
  }

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.#validate.limitOption(options)
    const nowMs = this.#clock().getTime()
    return runStorage('outbox.findPending', () =>
      this.#connection.statement<OutboxRow>('findPending').all(nowMs, limit).map(toEvent),
    )
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const days = this.#validate.nonNegative(olderThanDays, 'olderThanDays')
    const cutoffMs = cutoffDays(this.#clock(), days).getTime()
    // One short write transaction per batch, so a large backlog never holds the write lock long.
    return repeatInBatches(CLEANUP_BATCH, (batchSize) =>
      runStorage(
        'outbox.cleanup',
        () => this.#connection.statement('cleanupBatch').run(cutoffMs, batchSize).changes,
      ),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const minutes = this.#validate.nonNegative(staleMinutes, 'staleMinutes')
    const cutoffMs = cutoffMinutes(this.#clock(), minutes).getTime()
    return runStorage(
      'outbox.resetStale',
      () => this.#connection.statement('resetStale').run(cutoffMs).changes,
    )
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    return runStorage('outbox.getCountByStatus', () =>
      outboxCounts(
        this.#connection
          .statement<{ status: string; n: number }>('counts')
          .all()
          .map((row) => [row.status, row.n] as const),
      ),
    )
  }

  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = this.#validate.claimOptions(options)
    if (this.#connection.db.inTransaction) {
      // Inside an open transaction the claim would see (and the relay would publish) events
      // that this transaction may still roll back, and its lease would only become visible
      // at the caller's commit. Refuse instead of publishing an event that never existed.
      throw new ValidationError(
        ADAPTER,
        'claim cannot run while a transaction is open on this connection: it could claim events that the ' +
          'transaction later rolls back. Claim outside the transaction, or give the relay its own connection.',
      )
    }
    const now = this.#clock()
    const nowMs = now.getTime()
    const leaseUntilMs = addMs(now, leaseMs).getTime()
    return runStorage('outbox.claim', () => {
      const rows = this.#connection.atomic(() =>
        this.#connection
          .statement<OutboxRow>('claim')
          .all(workerId, nowMs, leaseUntilMs, nowMs, nowMs, limit),
      )
      // RETURNING gives rows in no promised order; enqueue order is seq order.
      return rows.sort((a, b) => a.seq - b.seq).map(toEvent)
    })
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.#validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.#validate.leaseOptions(options)
    if (ids.length === 0) return []
    const leaseUntilMs = addMs(this.#clock(), leaseMs).getTime()
    return runStorage('outbox.renewLease', () =>
      this.#connection.atomic(() =>
        ids.filter(
          (id) => this.#connection.statement('renewLease').run(leaseUntilMs, id, workerId).changes > 0,
        ),
      ),
    )
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.#validate.eventIds(eventIds)
    const workerId = this.#validate.fence(options)
    if (ids.length === 0) return []
    const nowMs = this.#clock().getTime()
    return runStorage('outbox.markManyAsSent', () =>
      this.#connection.atomic(() =>
        ids.filter((id) => {
          const { changes } =
            workerId === undefined
              ? this.#connection.statement('markAsSent').run(nowMs, id)
              : this.#connection.statement('markAsSentFenced').run(nowMs, id, workerId)
          return changes === 0
        }),
      ),
    )
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.#validate.limit(limit)
    return runStorage('outbox.getFailedEvents', () =>
      this.#connection.statement<OutboxRow>('failed').all(max).map(toEvent),
    )
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.#validate.eventIds(eventIds)
    if (ids.length === 0) return 0
    const nowMs = this.#clock().getTime()
    const { requeued, missing } = await runStorage('outbox.requeueFailed', () =>
      this.#connection.atomic(() => {
        let moved = 0
        let firstMissing: string | undefined
        for (const id of ids) {
          const { changes } = this.#connection.statement('requeue').run(nowMs, id)
          if (changes > 0) moved++
          else if (firstMissing === undefined && this.#connection.statement('exists').get(id) === undefined) {
            firstMissing = id
          }
        }
        return { requeued: moved, missing: firstMissing }
      }),
    )
    // Thrown after the commit: the ids that exist stay requeued.
    if (missing !== undefined) throw new EventNotFoundError(ADAPTER, missing)
    return requeued
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const id = this.#validate.eventId(eventId)
    return runStorage('outbox.get', () => {
      const row = this.#row(id)
      return row === undefined ? null : toEvent(row)
    })
  }
}
