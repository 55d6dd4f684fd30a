import {
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  type RequeueOutcome,
  type StatusCountRows,
  ValidationError,
} from '@txbox/core'
import { repositorySettings, SqliteClient, type SqliteStoreShared } from './client.js'
import { ADAPTER } from './errors.js'
import { assertStorable } from './row-limit.js'
import { type OutboxRow, type StatusCountRow, statusCounts, toOutboxEvent } from './rows.js'
import { outboxSql } from './sql.js'
import { resolveSqliteOptions, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'

type Statements = keyof ReturnType<typeof outboxSql>

/**
 * The outbox on SQLite (better-sqlite3). Each primitive is one synchronous step on the
 * connection; multi-statement steps run under `BEGIN IMMEDIATE` (or a SAVEPOINT inside a
 * transaction the caller opened), so they are atomic against other connections and
 * processes too. `{ tx }` is the `Database` itself.
 */
export class SqliteOutboxRepository extends OutboxRepositoryKernel<SqliteDatabase> {
  readonly #client: SqliteClient<Statements>

  /** `shared` is internal: what `createSqliteStore` gives both of its repositories. */
  constructor(options: SqliteOptions, shared?: SqliteStoreShared) {
    const { db, tables, clock, maxEventBytes } = resolveSqliteOptions(options)
    const client = new SqliteClient(db, outboxSql(tables), shared?.turns)
    super({ ...repositorySettings(client, clock, shared), maxEventBytes })
    this.#client = client
  }

  /** Every primitive runs in the store's turn on the connection (see ConnectionTurns). */
  protected override storage<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return super.storage(operation, () => this.#client.exclusive(run))
  }

  #row(eventId: string): OutboxRow | undefined {
    return this.#client.statement<OutboxRow>('selectById').get(eventId)
  }

  #exists(eventId: string): boolean {
    return this.#client.statement('exists').get(eventId) !== undefined
  }

  /** Inserts unless the id is stored, then reads the stored row back: first write wins. */
  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    for (const event of events) assertStorable(event)
    const nowMs = now.getTime()
    return this.#client.atomic(() => {
      const stored = new Map<string, OutboxEvent>()
      for (const event of events) {
        this.#client
          .statement('insert')
          .run(
            event.eventId,
            event.subject,
            event.payload,
            event.headers ?? null,
            nowMs,
            event.availableAt.getTime(),
          )
        // Only cleanup deletes rows, and only `sent` ones; inside this atomic step nothing can.
        const row = this.#row(event.eventId)
        if (row !== undefined) stored.set(event.eventId, toOutboxEvent(row))
      }
      return stored
    })
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    return this.#client.statement('markAsPublishing').run(now.getTime(), eventId).changes > 0
  }

  #runChange(eventId: string, change: OutboxChange, workerId: string | undefined): number {
    const fence = workerId === undefined ? [] : [workerId]
    switch (change.status) {
      case 'sent':
        return this.#client
          .statement(workerId === undefined ? 'markAsSent' : 'markAsSentFenced')
          .run(change.sentAt.getTime(), eventId, ...fence).changes
      case 'failed':
        return this.#client
          .statement(workerId === undefined ? 'markAsFailed' : 'markAsFailedFenced')
          .run(change.errorMessage, eventId, ...fence).changes
      case 'pending':
        return this.#client
          .statement(workerId === undefined ? 'retryLater' : 'retryLaterFenced')
          .run(change.errorMessage, change.availableAt.getTime(), eventId, ...fence).changes
    }
  }

  /** The fence is in the WHERE clause; "which failure" is read in the same atomic step. */
  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return this.#client.atomic(() => {
      if (this.#runChange(eventId, change, workerId) > 0) return 'applied'
      return this.#exists(eventId) ? 'lost' : 'missing'
    })
  }

  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    const nowMs = now.getTime()
    return this.#client.statement<OutboxRow>('findPending').all(nowMs, limit).map(toOutboxEvent)
  }

  protected async deleteSent(cutoff: Date, limit: number): Promise<number> {
    return this.#client.statement('cleanupBatch').run(cutoff.getTime(), limit).changes
  }

  /** One statement for every stale claim: it only rewrites leased rows, never a backlog. */
  protected async resetPublishing(cutoff: Date): Promise<number> {
    return this.#client.statement('resetStale').run(cutoff.getTime()).changes
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    return statusCounts(this.#client.statement<StatusCountRow>('counts').all())
  }

  protected async claimEvents({ now, leaseUntil, workerId, limit }: ClaimRequest): Promise<OutboxEvent[]> {
    if (this.#client.db.inTransaction) {
      // Inside an open transaction the claim would see (and the relay would publish) events
      // that this transaction may still roll back, and its lease would only become visible
      // at the caller's commit. Refuse instead of publishing an event that never existed.
      throw new ValidationError(
        ADAPTER,
        'claim cannot run while a transaction is open on this connection: it could claim events that the ' +
          'transaction later rolls back. Claim outside the transaction, or give the relay its own connection.',
      )
    }
    const nowMs = now.getTime()
    const rows = this.#client.atomic(() =>
      this.#client
        .statement<OutboxRow>('claim')
        .all(workerId, nowMs, leaseUntil.getTime(), nowMs, nowMs, limit),
    )
    // RETURNING gives rows in no promised order; enqueue order is seq order.
    return rows.sort((a, b) => a.seq - b.seq).map(toOutboxEvent)
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<string[]> {
    const leaseUntilMs = leaseUntil.getTime()
    return this.#client.atomic(() =>
      eventIds.filter(
        (id) => this.#client.statement('renewLease').run(leaseUntilMs, id, workerId).changes > 0,
      ),
    )
  }

  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    const change: OutboxChange = { status: 'sent', sentAt: now }
    return this.#client.atomic(() => eventIds.filter((id) => this.#runChange(id, change, workerId) > 0))
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const nowMs = now.getTime()
    return this.#client.atomic(() => {
      let requeued = 0
      const missing: string[] = []
      for (const id of eventIds) {
        if (this.#client.statement('requeue').run(nowMs, id).changes > 0) requeued++
        else if (!this.#exists(id)) missing.push(id)
      }
      return { requeued, missing }
    })
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    return this.#client.statement<OutboxRow>('failed').all(limit).map(toOutboxEvent)
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const row = this.#row(eventId)
    return row === undefined ? null : toOutboxEvent(row)
  }
}
