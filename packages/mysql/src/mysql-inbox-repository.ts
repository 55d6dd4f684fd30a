import {
  type AmbientTransactions,
  type FencedOutcome,
  type InboxClaimRequest,
  type InboxClaimResult,
  type InboxEvent,
  type InboxParams,
  InboxRepositoryKernel,
  type InboxStatus,
  PayloadTooLargeError,
  type StatusCountRows,
  systemClock,
  Validator,
} from '@txbox/core'
import type { PoolConnection } from 'mysql2/promise'
import { eventBytes, limitParam, type Param, type Row, Runner, runWrite, selectRows } from './client.js'
import { ADAPTER, classifyMySqlError, isDuplicateKey } from './errors.js'
import { DEFAULT_TABLE_PREFIX, type MySqlStoreOptions } from './mysql-options.js'
import { type MySqlTransaction, toQueryHandle } from './query-handle.js'
import { fromDateTime, insertedInboxEvent, toDateTime, toInboxEvent } from './rows.js'
import { type InboxSql, inboxSql, SQL_SWEEP_BATCH, tableNames } from './sql.js'

/** How often a delivery is looked up again after losing an insert race (each time to a committed row). */
const MAX_INSERT_RACES = 5

/** The lease a claim writes on a new delivery. */
interface NewClaim {
  readonly workerId: string
  readonly leaseUntil: Date
}

/**
 * The inbox on MySQL 8.0+ / MariaDB 10.6+: the kernel's primitives as statements.
 * `markAsProcessed(id, { tx })` runs on the caller's transaction (or `store.transaction`'s), so the processed mark
 * commits with the handler's writes.
 */
export class MySqlInboxRepository extends InboxRepositoryKernel<MySqlTransaction> {
  protected readonly sql: InboxSql
  protected readonly run: Runner
  /** The inbox table's name. */
  readonly table: string

  /** `ambient`: the store's `store.transaction`, which writes taking `{ tx }` join when called without one. */
  constructor(options: MySqlStoreOptions, ambient?: AmbientTransactions<MySqlTransaction>) {
    const validate = new Validator(ADAPTER, 'inbox')
    const prefix = validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
    super({
      adapter: ADAPTER,
      clock: options.clock ?? systemClock,
      classify: classifyMySqlError,
      transaction: (tx) => (tx === undefined ? undefined : toQueryHandle(tx)),
      ambient,
      sweepBatch: SQL_SWEEP_BATCH,
    })
    this.table = validate.identifier(tableNames(prefix).inbox, 'inbox table name')
    this.sql = inboxSql(this.table)
    this.run = new Runner(options.pool, options.onRetry)
  }

  /** The kernel's wrapper, also telling the runner which operation runs (for `onRetry`). */
  protected override storage<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return super.storage(operation, () => Runner.inOperation(`inbox.${operation}`, run))
  }

  /**
   * The row of this delivery, by its id alone, inserted if new. `(stream, streamSeq)` is
   * recorded, never an identity (a re-created stream restarts at sequence 1); a redelivery
   * of a stored id keeps the position recorded first. A new delivery, the common case, is one
   * autocommit INSERT answered as written; a stored id fails it with a duplicate key (nothing
   * written, no lock kept) and is then handled in a short transaction that locks the row.
   * Concurrent first deliveries race on the unique event id: the loser's INSERT waits for
   * the winner's commit and fails with a duplicate key, and the loser then commits nothing
   * and looks again (in a fresh transaction, so it holds no shared lock that could deadlock
   * with the other losers), finding the winner's row.
   */
  async #findOrInsert<T>(
    params: InboxParams,
    now: Date,
    claim: NewClaim | undefined,
    onStored: (connection: PoolConnection, row: Row) => Promise<T>,
    onInserted: (event: InboxEvent) => T,
  ): Promise<T> {
    const limit = await this.run.maxEventBytes()
    const size = eventBytes(params)
    if (size > limit) throw new PayloadTooLargeError(ADAPTER, params.eventId, size, limit)
    const values: Param[] = [
      params.eventId,
      params.subject,
      params.payload,
      params.headers ?? null,
      params.stream ?? null,
      params.streamSeq ?? null,
      toDateTime(now),
      claim ? toDateTime(now) : null,
      claim ? claim.workerId : null,
      claim ? toDateTime(claim.leaseUntil) : null,
    ]
    const inserted = () => onInserted(insertedInboxEvent(params, now, claim))
    try {
      await this.run.auto((db) => runWrite(db, this.sql.insert, values))
      return inserted()
    } catch (error) {
      if (!isDuplicateKey(error)) throw error
    }
    for (let race = 0; ; race++) {
      const outcome = await this.run.transaction(async (connection) => {
        const [stored] = await selectRows(connection, this.sql.byIdLocking, [params.eventId])
        if (stored) return { done: true as const, value: await onStored(connection, stored) }
        try {
          await runWrite(connection, this.sql.insert, values)
          return { done: true as const, value: inserted() }
        } catch (error) {
          if (isDuplicateKey(error) && race < MAX_INSERT_RACES) return { done: false as const }
          throw error
        }
      })
      if (outcome.done) return outcome.value
    }
  }

  protected recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    return this.#findOrInsert(
      params,
      now,
      undefined,
      async (connection, row) => {
        await runWrite(connection, this.sql.countDelivery, [String(row.seq)])
        return this.#reread(connection, row)
      },
      (event) => event,
    )
  }

  protected claimDelivery({
    params,
    now,
    workerId,
    leaseUntil,
  }: InboxClaimRequest): Promise<InboxClaimResult> {
    return this.#findOrInsert(
      params,
      now,
      { workerId, leaseUntil },
      async (connection, row) => {
        // The row is locked (FOR UPDATE) until commit, so exactly one concurrent claimer
        // sees it claimable and takes it; the others see the new lease.
        const leaseExpired =
          row.status === 'processing' && row.lease_until !== null && fromDateTime(row.lease_until) <= now
        const shouldProcess = row.status === 'failed' || leaseExpired
        if (shouldProcess) {
          await runWrite(connection, this.sql.claimStored, [
            toDateTime(now),
            workerId,
            toDateTime(leaseUntil),
            String(row.seq),
          ])
        } else {
          await runWrite(connection, this.sql.countDelivery, [String(row.seq)])
        }
        return { event: await this.#reread(connection, row), shouldProcess }
      },
      (event) => ({ event, shouldProcess: true }),
    )
  }

  async #reread(connection: PoolConnection, row: Row): Promise<InboxEvent> {
    const [updated] = await selectRows(connection, this.sql.bySeq, [String(row.seq)])
    if (!updated) throw new TypeError('the locked inbox row is not readable')
    return toInboxEvent(updated)
  }

  /** A single-row UPDATE; when it changed nothing, one read tells "not stored" from "already so". */
  /**
   * One UPDATE carrying its condition; when it changed nothing, one read tells why: the id is
   * not stored, the condition refused (a fenced mark always changes the row it matches), or,
   * unfenced, the row already had these values (servers without CLIENT_FOUND_ROWS report 0
   * rows then) or was processed (final: `markAsFailed` leaves it).
   */
  #mark(
    statement: { readonly open: string; readonly fenced: string },
    values: Param[],
    eventId: string,
    workerId: string | undefined,
    refusesProcessed: boolean,
    tx?: MySqlTransaction,
  ): Promise<FencedOutcome> {
    const [sql, params] =
      workerId === undefined ? [statement.open, values] : [statement.fenced, [...values, workerId]]
    return this.run.write(tx, async (db): Promise<FencedOutcome> => {
      if ((await runWrite(db, sql, params)).affectedRows > 0) return 'applied'
      const [row] = await selectRows(db, this.sql.status, [eventId])
      if (!row) return 'missing'
      return workerId !== undefined || (refusesProcessed && row.status === 'processed') ? 'lost' : 'applied'
    })
  }

  protected setProcessed(
    eventId: string,
    now: Date,
    tx: MySqlTransaction | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    // Unfenced, marking a processed event processed again at the same instant changes no
    // value: without CLIENT_FOUND_ROWS the server reports 0 rows, which is still applied.
    return this.#mark(this.sql.markAsProcessed, [toDateTime(now), eventId], eventId, workerId, false, tx)
  }

  protected setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return this.#mark(this.sql.markAsFailed, [errorMessage, eventId], eventId, workerId, true)
  }

  protected deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    return this.run.auto(
      async (db) =>
        (await runWrite(db, this.sql.cleanup, [toDateTime(cutoff), limitParam(limit)])).affectedRows,
    )
  }

  /** All stale deliveries in one atomic statement (few: crashed consumers' messages), so `limit` is not needed. */
  protected failStale(cutoff: Date, errorMessage: string): Promise<number> {
    return this.run.auto(
      async (db) =>
        (await runWrite(db, this.sql.resetStale, [errorMessage, toDateTime(cutoff)])).affectedRows,
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.run.auto(async (db) =>
      (await selectRows(db, this.sql.counts, [])).map((row) => [String(row.status), String(row.n)] as const),
    )
  }

  protected selectFailed(limit: number): Promise<InboxEvent[]> {
    return this.run.auto(async (db) =>
      (await selectRows(db, this.sql.failed, [limitParam(limit)])).map(toInboxEvent),
    )
  }

  protected read(eventId: string): Promise<InboxEvent | null> {
    return this.run.auto(async (db) => {
      const [row] = await selectRows(db, this.sql.get, [eventId])
      return row ? toInboxEvent(row) : null
    })
  }

  /** The status column alone, for `isProcessed`. */
  protected override readStatus(eventId: string): Promise<InboxStatus | undefined> {
    return this.run.auto(async (db) => {
      const [row] = await selectRows(db, this.sql.status, [eventId])
      return row === undefined ? undefined : (String(row.status) as InboxStatus)
    })
  }
}
