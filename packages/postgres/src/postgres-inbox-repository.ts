import {
  addMs,
  type Clock,
  cutoffDays,
  cutoffMinutes,
  EventNotFoundError,
  encodeStoredText,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxParams,
  type InboxRepository,
  inboxCounts,
  PROCESSING_TIMEOUT_MESSAGE,
  StorageError,
} from '@txbox/core'
import type { Pool } from 'pg'
import { withPostgresErrors } from './errors.js'
import {
  ADAPTER,
  type PostgresStoreOptions,
  type PostgresTransaction,
  resolveOptions,
  transactionHandle,
  validateInbox,
} from './postgres-options.js'
import { deleteInBatches, query } from './query.js'
import { type InboxRow, inboxEventFromRow } from './rows.js'
import { type InboxSql, inboxSql } from './sql.js'

const encode = encodeStoredText

/** See the outbox: a retry happens only when a concurrent inserter committed mid-statement. */
const MAX_ATTEMPTS = 5

type ClaimedRow = InboxRow & { should_process: boolean }

/** The inbox on PostgreSQL: each operation is one statement, so each is atomic. */
export class PostgresInboxRepository implements InboxRepository<PostgresTransaction> {
  readonly #pool: Pool
  readonly #clock: Clock
  readonly #sql: InboxSql

  constructor(options: PostgresStoreOptions) {
    const resolved = resolveOptions(options)
    this.#pool = resolved.pool
    this.#clock = resolved.clock
    this.#sql = inboxSql(resolved.schema, resolved.tablePrefix)
  }

  #params(params: InboxParams, now: Date): unknown[] {
    return [
      encode(params.eventId),
      encode(params.subject),
      encode(params.payload),
      params.headers === undefined ? null : encode(params.headers),
      params.stream === undefined ? null : encode(params.stream),
      params.streamSeq ?? null,
      now,
    ]
  }

  /**
   * Runs an insert-or-update statement until it returns the row. It returns nothing only
   * when the conflicting row was committed by a concurrent caller after this statement's
   * snapshot (or deleted meanwhile); the next statement sees it.
   */
  async #upsert(operation: string, text: string, values: unknown[]): Promise<ClaimedRow> {
    return withPostgresErrors(operation, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const result = await query<ClaimedRow>(this.#pool, text, values)
        const row = result.rows[0]
        if (row) return row
      }
      throw new StorageError(
        ADAPTER,
        operation,
        undefined,
        `no row after ${MAX_ATTEMPTS} attempts (deleted concurrently?)`,
      )
    })
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = validateInbox.inboxParams(params)
    const row = await this.#upsert(
      'inbox.findOrCreate',
      this.#sql.findOrCreate,
      this.#params(valid, this.#clock()),
    )
    return inboxEventFromRow(row)
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = validateInbox.inboxParams(params)
    const { leaseMs, workerId } = validateInbox.leaseOptions(options)
    const now = this.#clock()
    const row = await this.#upsert('inbox.claim', this.#sql.claim, [
      ...this.#params(valid, now),
      encode(workerId),
      addMs(now, leaseMs),
    ])
    return { event: inboxEventFromRow(row), shouldProcess: row.should_process }
  }

  async markAsProcessed(eventId: string, options?: { tx?: PostgresTransaction | undefined }): Promise<void> {
    const id = validateInbox.eventId(eventId)
    const tx = transactionHandle(options?.tx)
    await withPostgresErrors('inbox.markAsProcessed', async () => {
      // With tx the mark runs on the caller's connection, inside its BEGIN: it commits or
      // rolls back together with the handler's own writes.
      const result = await query(tx ?? this.#pool, this.#sql.markAsProcessed, [encode(id), this.#clock()])
      if (result.rowCount === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
    })
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = validateInbox.eventId(eventId)
    const message = validateInbox.text(errorMessage, 'errorMessage')
    await withPostgresErrors('inbox.markAsFailed', async () => {
      const result = await query(this.#pool, this.#sql.markAsFailed, [encode(id), encode(message)])
      if (result.rowCount === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
    })
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = validateInbox.eventId(eventId)
    return withPostgresErrors('inbox.isProcessed', async () => {
      const result = await query<InboxRow>(this.#pool, this.#sql.get, [encode(id)])
      return result.rows[0]?.status === 'processed'
    })
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const days = validateInbox.nonNegative(olderThanDays, 'olderThanDays')
    const cutoff = cutoffDays(this.#clock(), days)
    return withPostgresErrors('inbox.cleanup', () =>
      deleteInBatches(this.#pool, this.#sql.cleanupBatch, cutoff),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const minutes = validateInbox.nonNegative(staleMinutes, 'staleMinutes')
    const cutoff = cutoffMinutes(this.#clock(), minutes)
    return withPostgresErrors('inbox.resetStale', async () => {
      const result = await query(this.#pool, this.#sql.resetStale, [
        cutoff,
        encode(PROCESSING_TIMEOUT_MESSAGE),
      ])
      return result.rowCount ?? 0
    })
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return withPostgresErrors('inbox.getCountByStatus', async () => {
      const result = await query<{ status: string; count: string }>(this.#pool, this.#sql.countByStatus, [])
      return inboxCounts(result.rows.map((row) => [row.status, row.count] as const))
    })
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = validateInbox.limit(limit)
    return withPostgresErrors('inbox.getFailedEvents', async () => {
      const result = await query<InboxRow>(this.#pool, this.#sql.failed, [max])
      return result.rows.map(inboxEventFromRow)
    })
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = validateInbox.eventId(eventId)
    return withPostgresErrors('inbox.get', async () => {
      const result = await query<InboxRow>(this.#pool, this.#sql.get, [encode(id)])
      const row = result.rows[0]
      return row ? inboxEventFromRow(row) : null
    })
  }
}
