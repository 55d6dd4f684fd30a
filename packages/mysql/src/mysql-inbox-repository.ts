import {
  addMs,
  type Clock,
  cutoffDays,
  cutoffMinutes,
  EventNotFoundError,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxParams,
  type InboxRepository,
  inboxCounts,
  PayloadTooLargeError,
  repeatInBatches,
  systemClock,
  Validator,
} from '@txbox/core'
import type { PoolConnection } from 'mysql2/promise'
import { ADAPTER, isDuplicateKey } from './errors.js'
import { DEFAULT_TABLE_PREFIX, type MySqlStoreOptions } from './mysql-options.js'
import { fromDateTime, toDateTime, toInboxEvent } from './rows.js'
import { eventBytes, limitParam, type Param, type Row, Runner, runWrite, selectRows } from './run.js'
import { CLEANUP_BATCH, type InboxSql, inboxSql, tableNames } from './sql.js'

/** How often a delivery is looked up again after losing an insert race (each time to a committed row). */
const MAX_INSERT_RACES = 5

/** What to store when the delivery is new. */
interface NewDelivery {
  readonly params: InboxParams
  readonly claim?: { readonly workerId: string; readonly leaseMs: number }
}

/**
 * The inbox on MySQL 8.0+ / MariaDB 10.6+. `markAsProcessed(id, { tx })` runs on the
 * caller's `PoolConnection`, so the processed mark commits with the handler's writes.
 */
export class MySqlInboxRepository implements InboxRepository<PoolConnection> {
  protected readonly validate = new Validator(ADAPTER, 'inbox')
  protected readonly clock: Clock
  protected readonly sql: InboxSql
  protected readonly run: Runner
  /** The inbox table's name. */
  readonly table: string

  constructor(options: MySqlStoreOptions) {
    const prefix = this.validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
    this.table = this.validate.identifier(tableNames(prefix).inbox, 'inbox table name')
    this.clock = options.clock ?? systemClock
    this.sql = inboxSql(this.table)
    this.run = new Runner(options.pool, options.onRetry)
  }

  /**
   * The stored row of this delivery, locked, by its id alone: `(stream, streamSeq)` is
   * recorded, never an identity (a re-created stream restarts at sequence 1). A redelivery of
   * a stored id keeps the position recorded first.
   */
  async #lookup(connection: PoolConnection, params: InboxParams): Promise<Row | undefined> {
    const [byId] = await selectRows(connection, this.sql.byIdLocking, [params.eventId])
    return byId
  }

  /**
   * The row of this delivery, inserted if new, in the caller's short transaction.
   * Concurrent first deliveries race on the unique event id: the loser's INSERT waits for the
   * winner's commit and fails with a duplicate key, and the loser then commits nothing and
   * looks again (in a fresh transaction, so it holds no shared lock that could deadlock
   * with the other losers), finding the winner's row.
   */
  async #findOrInsert<T>(
    operation: string,
    fresh: NewDelivery,
    onStored: (connection: PoolConnection, row: Row) => Promise<T>,
    onInserted: (row: Row) => T,
  ): Promise<T> {
    const limit = await this.run.maxEventBytes()
    const size = eventBytes(fresh.params)
    if (size > limit) throw new PayloadTooLargeError(ADAPTER, fresh.params.eventId, size, limit)
    for (let race = 0; ; race++) {
      const outcome = await this.run.transaction(operation, async (connection) => {
        const stored = await this.#lookup(connection, fresh.params)
        if (stored) return { done: true as const, value: await onStored(connection, stored) }
        const now = this.clock()
        const { params, claim } = fresh
        try {
          const result = await runWrite(connection, this.sql.insert, [
            params.eventId,
            params.subject,
            params.payload,
            params.headers ?? null,
            params.stream ?? null,
            params.streamSeq ?? null,
            toDateTime(now),
            claim ? toDateTime(now) : null,
            claim ? claim.workerId : null,
            claim ? toDateTime(addMs(now, claim.leaseMs)) : null,
          ])
          const [row] = await selectRows(connection, this.sql.bySeq, [String(result.insertId)])
          if (!row) throw new TypeError('the inserted inbox row is not readable')
          return { done: true as const, value: onInserted(row) }
        } catch (error) {
          if (isDuplicateKey(error) && race < MAX_INSERT_RACES) return { done: false as const }
          throw error
        }
      })
      if (outcome.done) return outcome.value
    }
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.validate.inboxParams(params)
    return this.#findOrInsert(
      'inbox.findOrCreate',
      { params: valid },
      async (connection, row) => {
        await runWrite(connection, this.sql.countDelivery, [String(row.seq)])
        return this.#reread(connection, row)
      },
      toInboxEvent,
    )
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.validate.inboxParams(params)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    return this.#findOrInsert(
      'inbox.claim',
      { params: valid, claim: { workerId, leaseMs } },
      async (connection, row) => {
        // The row is locked (FOR UPDATE) until commit, so exactly one concurrent claimer
        // sees it claimable and takes it; the others see the new lease.
        const now = this.clock()
        const leaseExpired =
          row.status === 'processing' && row.lease_until !== null && fromDateTime(row.lease_until) <= now
        const shouldProcess = row.status === 'failed' || leaseExpired
        if (shouldProcess) {
          await runWrite(connection, this.sql.claimStored, [
            toDateTime(now),
            workerId,
            toDateTime(addMs(now, leaseMs)),
            String(row.seq),
          ])
        } else {
          await runWrite(connection, this.sql.countDelivery, [String(row.seq)])
        }
        return { event: await this.#reread(connection, row), shouldProcess }
      },
      (row) => ({ event: toInboxEvent(row), shouldProcess: true }),
    )
  }

  async #reread(connection: PoolConnection, row: Row): Promise<InboxEvent> {
    const [updated] = await selectRows(connection, this.sql.bySeq, [String(row.seq)])
    if (!updated) throw new TypeError('the locked inbox row is not readable')
    return toInboxEvent(updated)
  }

  /** A single-row UPDATE; when it changed nothing, one read tells "not stored" from "already so". */
  async #update(
    operation: string,
    sql: string,
    values: Param[],
    eventId: string,
    tx?: PoolConnection,
  ): Promise<void> {
    await this.run.write(operation, tx, async (db) => {
      if ((await runWrite(db, sql, values)).affectedRows > 0) return
      const [row] = await selectRows(db, this.sql.exists, [eventId])
      if (!row) throw new EventNotFoundError(ADAPTER, eventId, 'inbox')
    })
  }

  async markAsProcessed(eventId: string, options?: { tx?: PoolConnection | undefined }): Promise<void> {
    const id = this.validate.eventId(eventId)
    const now = toDateTime(this.clock())
    await this.#update('inbox.markAsProcessed', this.sql.markAsProcessed, [now, id], id, options?.tx)
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    await this.#update('inbox.markAsFailed', this.sql.markAsFailed, [message, id], id)
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = this.validate.eventId(eventId)
    return this.run.auto('inbox.isProcessed', async (db) => {
      const [row] = await selectRows(db, this.sql.status, [id])
      return row?.status === 'processed'
    })
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = toDateTime(
      cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays')),
    )
    return repeatInBatches(CLEANUP_BATCH, () =>
      this.run.auto(
        'inbox.cleanup',
        async (db) => (await runWrite(db, this.sql.cleanup, [cutoff])).affectedRows,
      ),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = toDateTime(
      cutoffMinutes(this.clock(), this.validate.nonNegative(staleMinutes, 'staleMinutes')),
    )
    return this.run.auto(
      'inbox.resetStale',
      async (db) => (await runWrite(db, this.sql.resetStale, [cutoff])).affectedRows,
    )
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return this.run.auto('inbox.getCountByStatus', async (db) => {
      const rows = await selectRows(db, this.sql.counts, [])
      return inboxCounts(rows.map((row) => [String(row.status), String(row.n)] as const))
    })
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.validate.limit(limit)
    return this.run.auto('inbox.getFailedEvents', async (db) =>
      (await selectRows(db, this.sql.failed, [limitParam(max)])).map(toInboxEvent),
    )
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = this.validate.eventId(eventId)
    return this.run.auto('inbox.get', async (db) => {
      const [row] = await selectRows(db, this.sql.get, [id])
      return row ? toInboxEvent(row) : null
    })
  }
}
