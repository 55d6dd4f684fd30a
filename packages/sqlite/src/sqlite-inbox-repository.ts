import {
  type FencedOutcome,
  type InboxClaimRequest,
  type InboxClaimResult,
  type InboxEvent,
  type InboxParams,
  InboxRepositoryKernel,
  type InboxStatus,
  type StatusCountRows,
} from '@txbox/core'
import { repositorySettings, SqliteClient, type SqliteStoreShared } from './client.js'
import { assertStorable } from './row-limit.js'
import { type InboxRow, type StatusCountRow, statusCounts, toInboxEvent } from './rows.js'
import { inboxSql } from './sql.js'
import { resolveSqliteOptions, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'

type Statements = keyof ReturnType<typeof inboxSql>

/** The lease a new or re-taken delivery gets, or none (the reference `findOrCreate` flow). */
interface Lease {
  workerId: string
  claimedAtMs: number
  leaseUntilMs: number
}

/**
 * The inbox on SQLite (better-sqlite3). `findOrCreate` and `claim` first try to insert the
 * delivery as a new event (one statement: the unique event_id lets exactly one of N
 * concurrent first deliveries, on any connection or process, insert it). A redelivery is
 * read and written under `BEGIN IMMEDIATE` (or a SAVEPOINT inside the caller's transaction):
 * the write lock is held from the lookup to the update, so exactly one takes it.
 */
export class SqliteInboxRepository extends InboxRepositoryKernel<SqliteDatabase> {
  readonly #client: SqliteClient<Statements>

  /** `shared` is internal: what `createSqliteStore` gives both of its repositories. */
  constructor(options: SqliteOptions, shared?: SqliteStoreShared) {
    const { db, tables, clock } = resolveSqliteOptions(options)
    const client = new SqliteClient(db, inboxSql(tables), shared?.turns)
    super(repositorySettings(client, clock, shared))
    this.#client = client
  }

  /** Every primitive runs in the store's turn on the connection (see ConnectionTurns). */
  protected override storage<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return super.storage(operation, () => this.#client.exclusive(run))
  }

  /**
   * The stored row of this delivery, by its id alone: `(stream, streamSeq)` is recorded,
   * never an identity (a re-created stream restarts at sequence 1). A redelivery of a stored
   * id keeps the position recorded first.
   */
  #lookup(eventId: string): InboxRow | undefined {
    return this.#client.statement<InboxRow>('selectById').get(eventId)
  }

  /** Inserts the delivery as a new event; undefined when its id is stored already (nothing written). */
  #insertNew(params: InboxParams, receivedAtMs: number, lease: Lease | undefined): InboxRow | undefined {
    return this.#client
      .statement<InboxRow>('insert')
      .get(
        params.eventId,
        params.subject,
        params.payload,
        params.headers ?? null,
        params.stream ?? null,
        params.streamSeq ?? null,
        receivedAtMs,
        lease?.claimedAtMs ?? null,
        lease?.workerId ?? null,
        lease?.leaseUntilMs ?? null,
      )
  }

  /** The row of an INSERT or UPDATE ... RETURNING on a row this atomic step holds. */
  #returned(row: InboxRow | undefined): InboxRow {
    if (row === undefined)
      throw new Error('a write ... RETURNING returned no row for a row held by the write lock')
    return row
  }

  /**
   * A first delivery is one `INSERT ... ON CONFLICT DO NOTHING RETURNING`, atomic on its own.
   * A redelivery (the INSERT returned nothing) is looked up and counted in one atomic step;
   * an event that cleanup deleted after the INSERT skipped it is inserted there.
   */
  protected async recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    assertStorable(params)
    const receivedAtMs = now.getTime()
    const fresh = this.#insertNew(params, receivedAtMs, undefined)
    if (fresh !== undefined) return toInboxEvent(fresh)
    return this.#client.atomic(() => {
      const stored = this.#lookup(params.eventId)
      const row =
        stored === undefined
          ? this.#insertNew(params, receivedAtMs, undefined)
          : this.#client.statement<InboxRow>('countDelivery').get(stored.seq)
      return toInboxEvent(this.#returned(row))
    })
  }

  protected async claimDelivery({
    params,
    now,
    workerId,
    leaseUntil,
  }: InboxClaimRequest): Promise<InboxClaimResult> {
    assertStorable(params)
    const lease: Lease = { workerId, claimedAtMs: now.getTime(), leaseUntilMs: leaseUntil.getTime() }
    // A first delivery: inserted already claimed, in one statement (see recordDelivery).
    const fresh = this.#insertNew(params, lease.claimedAtMs, lease)
    if (fresh !== undefined) return { event: toInboxEvent(fresh), shouldProcess: true }
    return this.#client.atomic((): InboxClaimResult => {
      const stored = this.#lookup(params.eventId)
      if (stored === undefined)
        return {
          event: toInboxEvent(this.#returned(this.#insertNew(params, lease.claimedAtMs, lease))),
          shouldProcess: true,
        }
      // A `processing` row without a lease came from the reference `findOrCreate` flow: its
      // handler may be running, so it stays taken until `resetStale` times it out.
      const leaseExpired =
        stored.status === 'processing' &&
        stored.lease_until !== null &&
        stored.lease_until <= lease.claimedAtMs
      const take = stored.status === 'failed' || leaseExpired
      const row = take
        ? this.#client
            .statement<InboxRow>('take')
            .get(lease.workerId, lease.claimedAtMs, lease.leaseUntilMs, stored.seq)
        : this.#client.statement<InboxRow>('countDelivery').get(stored.seq)
      return { event: toInboxEvent(this.#returned(row)), shouldProcess: take }
    })
  }

  /**
   * One statement on the connection: inside the caller's open transaction (`tx` is that
   * connection, checked by the kernel) it commits or rolls back with the handler's writes.
   */
  // The caller's transaction, when there is one, is open on this same connection: the
  // statement joins it, and one writer at a time means no concurrent mark can interleave.
  protected async setProcessed(
    eventId: string,
    now: Date,
    _tx: SqliteDatabase | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const at = now.getTime()
    return this.#mark(eventId, () =>
      workerId === undefined
        ? this.#client.statement('markAsProcessed').run(at, eventId).changes
        : this.#client.statement('markAsProcessedFenced').run(at, eventId, workerId).changes,
    )
  }

  protected async setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return this.#mark(eventId, () =>
      workerId === undefined
        ? this.#client.statement('markAsFailed').run(errorMessage, eventId).changes
        : this.#client.statement('markAsFailedFenced').run(errorMessage, eventId, workerId).changes,
    )
  }

  /**
   * One UPDATE with its condition. Not applied: tell "not stored" from "refused" in one atomic
   * step, trying the write again there, so the answer holds at one instant (as the outbox's).
   */
  #mark(eventId: string, write: () => number): FencedOutcome {
    if (write() > 0) return 'applied'
    return this.#client.atomic(() => {
      if (write() > 0) return 'applied'
      return this.#client.statement('status').get(eventId) === undefined ? 'missing' : 'lost'
    })
  }

  protected async deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    return this.#client.statement('cleanupBatch').run(cutoff.getTime(), limit).changes
  }

  /** One statement for every stale delivery: it only rewrites claimed rows, never a backlog. */
  protected async failStale(cutoff: Date, errorMessage: string): Promise<number> {
    return this.#client.statement('resetStale').run(errorMessage, cutoff.getTime()).changes
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    return statusCounts(this.#client.statement<StatusCountRow>('counts').all())
  }

  protected async selectFailed(limit: number): Promise<InboxEvent[]> {
    return this.#client.statement<InboxRow>('failed').all(limit).map(toInboxEvent)
  }

  protected async read(eventId: string): Promise<InboxEvent | null> {
    const row = this.#lookup(eventId)
    return row === undefined ? null : toInboxEvent(row)
  }

  /** Reads the status column alone, not the payload. */
  protected override async readStatus(eventId: string): Promise<InboxStatus | undefined> {
    return this.#client.statement<{ status: InboxStatus }>('status').get(eventId)?.status
  }
}
