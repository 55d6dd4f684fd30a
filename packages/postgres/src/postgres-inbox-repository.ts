import {
  type AmbientTransactions,
  cutoffDays,
  encodeStoredText,
  type FencedOutcome,
  type InboxClaimRequest,
  type InboxClaimResult,
  type InboxEvent,
  type InboxParams,
  InboxRepositoryKernel,
  type StatusCountRows,
} from '@txbox/core'
import type { Pool } from 'pg'
import {
  type PostgresTransaction,
  type Queryable,
  type StatementRunner,
  statementRunner,
  transactionHandle,
} from './client.js'
import { ADAPTER, classifyPostgresError } from './errors.js'
import { INBOX_PARTITIONS } from './partition-sql.js'
import { type PostgresStoreOptions, resolveOptions } from './postgres-options.js'
import { PostgresPartitions } from './postgres-partitions.js'
import { type InboxRow, inboxEventFromRow } from './rows.js'
import { type InboxSql, inboxSql, POSTGRES_SWEEP_BATCH } from './sql.js'

const encode = encodeStoredText
const encodeOptional = (text: string | undefined): string | null =>
  text === undefined ? null : encodeStoredText(text)

/** See the outbox: a retry happens only when a concurrent inserter committed mid-statement. */
const MAX_ATTEMPTS = 5

type ClaimedRow = InboxRow & { should_process: boolean }

/** The inbox on PostgreSQL: the kernel's primitives, each one statement, so each is atomic. */
export class PostgresInboxRepository extends InboxRepositoryKernel<PostgresTransaction> {
  readonly #pool: Pool
  readonly #query: StatementRunner
  readonly #partitions: PostgresPartitions
  readonly #sql: InboxSql

  /**
   * @param ambient the store's `store.transaction` (see `createPostgresStore`): `{ tx }`-taking
   *   writes made inside it join it without `{ tx }`.
   */
  constructor(options: PostgresStoreOptions, ambient?: AmbientTransactions<PostgresTransaction>) {
    const resolved = resolveOptions(options)
    super({
      adapter: ADAPTER,
      clock: resolved.clock,
      classify: classifyPostgresError,
      transaction: transactionHandle,
      sweepBatch: POSTGRES_SWEEP_BATCH,
      ambient,
    })
    this.#pool = resolved.pool
    this.#query = statementRunner(resolved.pool, resolved.preparedStatements)
    this.#sql = inboxSql(resolved.schema, resolved.tablePrefix, resolved.partitioning !== undefined)
    this.#partitions = new PostgresPartitions(
      resolved.pool,
      resolved.schema,
      resolved.tablePrefix,
      INBOX_PARTITIONS,
    )
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
  async #upsert(text: string, values: unknown[]): Promise<ClaimedRow> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const result = await this.#query<ClaimedRow>(this.#pool, text, values)
      const row = result.rows[0]
      if (row) return row
    }
    throw new Error(`no row after ${MAX_ATTEMPTS} attempts (deleted concurrently?)`)
  }

  protected async recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    return inboxEventFromRow(await this.#upsert(this.#sql.findOrCreate, this.#params(params, now)))
  }

  protected async claimDelivery(request: InboxClaimRequest): Promise<InboxClaimResult> {
    const row = await this.#upsert(this.#sql.claim, [
      ...this.#params(request.params, request.now),
      encode(request.workerId),
      request.leaseUntil,
    ])
    return { event: inboxEventFromRow(row), shouldProcess: row.should_process }
  }

  protected async setProcessed(
    eventId: string,
    now: Date,
    tx: PostgresTransaction | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    // With tx the mark runs on the caller's connection, inside its BEGIN: it commits or
    // rolls back together with the handler's own writes.
    const handle = tx === undefined ? this.#pool : transactionHandle(tx)
    return this.#fenced(handle, this.#sql.markAsProcessed, [encode(eventId), now, encodeOptional(workerId)])
  }

  protected async setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return this.#fenced(this.#pool, this.#sql.markAsFailed, [
      encode(eventId),
      encode(errorMessage),
      encodeOptional(workerId),
    ])
  }

  /** One UPDATE carrying its condition; only when it touched nothing does a read tell lost from missing. */
  async #fenced(handle: Queryable, text: string, values: unknown[]): Promise<FencedOutcome> {
    if ((await this.#query(handle, text, values)).rows.length > 0) return 'applied'
    const exists = await this.#query(handle, this.#sql.exists, [values[0]])
    return exists.rows.length === 0 ? 'missing' : 'lost'
  }

  /**
   * On time-partitioned tables, first retires the partitions whose every row is `processed`
   * before the cutoff (a DROP instead of a DELETE per row) and creates the partitions ahead;
   * then deletes the processed rows left in the partitions that stay, as on plain tables. The
   * count includes the rows of the dropped partitions.
   */
  override async cleanup(olderThanDays: number): Promise<number> {
    const now = this.clock()
    const cutoff = cutoffDays(now, this.validate.nonNegative(olderThanDays, 'olderThanDays'))
    const retired = await this.storage('cleanup', () => this.#partitions.maintain(now, cutoff))
    return retired + (await super.cleanup(olderThanDays))
  }

  /** Creates the partitions of now and ahead, on time-partitioned tables; answers how many. */
  maintainPartitions(): Promise<number> {
    return this.storage('maintainPartitions', () => this.#partitions.createAhead(this.clock()))
  }

  protected async deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    return (await this.#query(this.#pool, this.#sql.cleanupBatch, [cutoff, limit])).rowCount ?? 0
  }

  /** One statement for every stale delivery: the UPDATE is atomic, whatever `limit` says. */
  protected async failStale(cutoff: Date, errorMessage: string): Promise<number> {
    return (await this.#query(this.#pool, this.#sql.resetStale, [cutoff, encode(errorMessage)])).rowCount ?? 0
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    const result = await this.#query<{ status: string; count: string }>(
      this.#pool,
      this.#sql.countByStatus,
      [],
    )
    return result.rows.map((row) => [row.status, row.count] as const)
  }

  protected async selectFailed(limit: number): Promise<InboxEvent[]> {
    const result = await this.#query<InboxRow>(this.#pool, this.#sql.failed, [limit])
    return result.rows.map(inboxEventFromRow)
  }

  protected async read(eventId: string): Promise<InboxEvent | null> {
    const result = await this.#query<InboxRow>(this.#pool, this.#sql.get, [encode(eventId)])
    const row = result.rows[0]
    return row ? inboxEventFromRow(row) : null
  }
}
