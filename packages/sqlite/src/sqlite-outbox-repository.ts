import {
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  newOutboxEvent,
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
import {
  type ClaimedRow,
  type ClaimWrite,
  type OutboxRow,
  type StatusCountRow,
  statusCounts,
  toClaimedEvent,
  toOutboxEvent,
} from './rows.js'
import { SizedStatements } from './sized-statements.js'
import {
  insertKeyedOutboxRows,
  insertOutboxRows,
  MAX_INSERT_ROWS,
  MAX_KEYED_INSERT_ROWS,
  outboxSql,
} from './sql.js'
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
  readonly #inserts: SizedStatements<OutboxRow>
  readonly #keyedInserts: SizedStatements<OutboxRow>

  /** `shared` is internal: what `createSqliteStore` gives both of its repositories. */
  constructor(options: SqliteOptions, shared?: SqliteStoreShared) {
    const { db, tables, clock, maxEventBytes } = resolveSqliteOptions(options)
    const client = new SqliteClient(db, outboxSql(tables), shared?.turns)
    super({ ...repositorySettings(client, clock, shared), maxEventBytes, orderingKeys: true, keyRuns: true })
    this.#client = client
    this.#inserts = new SizedStatements(db, (rows) => insertOutboxRows(tables, rows))
    this.#keyedInserts = new SizedStatements(db, (rows) => insertKeyedOutboxRows(tables, rows))
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

  /**
   * First write wins. The common case, no id stored yet and at most {@link MAX_INSERT_ROWS}
   * events ({@link MAX_KEYED_INSERT_ROWS} with an ordering key), is one multi-row `INSERT ...
   * ON CONFLICT DO NOTHING`, atomic on its own (in autocommit or inside the caller's
   * transaction): when it inserted every row, the events are what it wrote, with nothing to
   * read back. A keyed batch's statement gives each row its seq as key_seq (see
   * {@link insertKeyedOutboxRows}); the last row inserted has the highest, so lastInsertRowid
   * tells every keySeq. Otherwise some ids were stored already: every id is read back under
   * BEGIN IMMEDIATE (a SAVEPOINT in an open transaction), where nothing can delete a row
   * between the lookup and the answer; an event that cleanup deleted after the INSERT skipped
   * it is inserted there.
   */
  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    for (const event of events) assertStorable(event)
    const keyed = events.some((event) => event.orderingKey !== undefined)
    const statements = keyed ? this.#keyedInserts : this.#inserts
    const maxRows = keyed ? MAX_KEYED_INSERT_ROWS : MAX_INSERT_ROWS
    const nowMs = now.getTime()
    /** The seq of each event of `list`, by position, when every one was inserted; else undefined. */
    const insert = (list: readonly NewOutboxEventParams[]): number[] | undefined => {
      const seqs: number[] = []
      let all = true
      for (let start = 0; start < list.length; start += maxRows) {
        const chunk = list.slice(start, start + maxRows)
        const { changes, lastInsertRowid } = statements
          .for(chunk.length)
          .run(...insertParams(chunk, nowMs, keyed))
        if (changes !== chunk.length) all = false
        const last = Number(lastInsertRowid)
        for (let i = 0; i < chunk.length; i++) seqs.push(last - chunk.length + 1 + i)
      }
      return all ? seqs : undefined
    }
    const written = (seqs: readonly number[]): Map<string, OutboxEvent> =>
      new Map(
        events.map((event, i) => [
          event.eventId,
          newOutboxEvent(event, now, event.orderingKey === undefined ? undefined : seqs[i]),
        ]),
      )
    const readBack = () => this.#readBack(events, (list) => insert(list) !== undefined)
    const once = (): Map<string, OutboxEvent> => {
      const seqs = insert(events)
      return seqs === undefined ? this.#client.atomic(readBack) : written(seqs)
    }
    if (events.length <= maxRows) return once()
    // Several statements: all of them, or none, are applied.
    return this.#client.atomic(() => {
      const seqs = insert(events)
      return seqs === undefined ? readBack() : written(seqs)
    })
  }

  /**
   * Some ids were stored already (run atomically): every event answers as stored, and any
   * that cleanup deleted since the INSERT skipped it is inserted now and read back too.
   */
  #readBack(
    events: readonly NewOutboxEventParams[],
    insert: (list: readonly NewOutboxEventParams[]) => unknown,
  ): Map<string, OutboxEvent> {
    const stored = new Map<string, OutboxEvent>()
    const read = (list: readonly NewOutboxEventParams[]) => {
      const ids = JSON.stringify(list.map((event) => event.eventId))
      for (const row of this.#client.statement<OutboxRow>('selectByIds').all(ids))
        stored.set(row.event_id, toOutboxEvent(row))
    }
    read(events)
    const deleted = events.filter((event) => !stored.has(event.eventId))
    if (deleted.length > 0) {
      insert(deleted)
      read(deleted)
    }
    return stored
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

  /** The fence is in the WHERE clause of one statement, which applies the change or does nothing. */
  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    if (this.#runChange(eventId, change, workerId) > 0) return 'applied'
    // Not applied: tell "not stored" from "lease lost" in one atomic step, trying the write
    // again there, so the answer holds at one instant even if the event changed meanwhile.
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

  protected async claimEvents({
    now,
    leaseUntil,
    workerId,
    limit,
    deadLettersBlockKeys,
    keyRun,
  }: ClaimRequest): Promise<OutboxEvent[]> {
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
    const leaseUntilMs = leaseUntil.getTime()
    // One statement, its own write transaction: see the claim in sql.ts.
    const block = deadLettersBlockKeys ? 1 : 0
    const rows =
      keyRun === 1
        ? this.#client
            .arrays<ClaimedRow>('claim')
            .all(workerId, nowMs, leaseUntilMs, nowMs, nowMs, block, limit)
        : this.#client
            .arrays<ClaimedRow>('claimRuns')
            .all(workerId, nowMs, leaseUntilMs, nowMs, nowMs, block, limit, keyRun, nowMs, nowMs, limit)
    // RETURNING gives rows in no promised order; enqueue order is seq order (each row's first value).
    const claim: ClaimWrite = { workerId, claimedAtMs: nowMs, leaseUntilMs }
    return rows.sort((a, b) => a[0] - b[0]).map((row) => toClaimedEvent(row, claim))
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<string[]> {
    return this.#client
      .firstColumn<string>('renewLeases')
      .all(leaseUntil.getTime(), JSON.stringify(eventIds), workerId)
  }

  /** One fenced statement for the whole list: the ids it returns are the ones released. */
  protected override async releaseHeld(
    eventIds: readonly string[],
    workerId: string,
    _now: Date,
  ): Promise<string[]> {
    return this.#client.firstColumn<string>('release').all(JSON.stringify(eventIds), workerId)
  }

  /** One statement for the whole list: the ids it returns are the ones applied. */
  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    const ids = JSON.stringify(eventIds)
    return workerId === undefined
      ? this.#client.firstColumn<string>('markManyAsSent').all(now.getTime(), ids)
      : this.#client.firstColumn<string>('markManyAsSentFenced').all(now.getTime(), ids, workerId)
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

/**
 * The bound parameters of `events` in the column order of {@link insertOutboxRows}; `keyed`:
 * of {@link insertKeyedOutboxRows}, with each row's ordering key and the 1-based position in
 * `events` of the previous event of its key, if any.
 */
const insertParams = (events: readonly NewOutboxEventParams[], nowMs: number, keyed: boolean): unknown[] => {
  const params: unknown[] = []
  const lastOfKey = new Map<string, number>()
  events.forEach((event, i) => {
    params.push(
      event.eventId,
      event.subject,
      event.payload,
      event.headers ?? null,
      nowMs,
      event.availableAt.getTime(),
    )
    if (!keyed) return
    const key = event.orderingKey
    params.push(key ?? null, key === undefined ? null : (lastOfKey.get(key) ?? null))
    if (key !== undefined) lastOfKey.set(key, i + 1)
  })
  return params
}
