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
import { type OutboxRow, type StatusCountRow, statusCounts, toOutboxEvent } from './rows.js'
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
    super({ ...repositorySettings(client, clock, shared), maxEventBytes, orderingKeys: true })
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
   * events, is one multi-row `INSERT ... ON CONFLICT DO NOTHING`, atomic on its own (in
   * autocommit or inside the caller's transaction): when it inserted every row, the events
   * are what it wrote, with nothing to read back. Otherwise some ids were stored already:
   * every id is read back under BEGIN IMMEDIATE (a SAVEPOINT in an open transaction), where
   * nothing can delete a row between the lookup and the answer; an event that cleanup deleted
   * after the INSERT skipped it is inserted there. A batch with an ordering key takes its
   * key_seqs and inserts in one atomic step (see {@link #insertKeyed}).
   */
  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    for (const event of events) assertStorable(event)
    if (events.some((event) => event.orderingKey !== undefined))
      return this.#client.atomic(() => this.#insertKeyed(events, now))
    const nowMs = now.getTime()
    /** Inserts the events whose id is not stored; answers how many rows it inserted. */
    const insert = (list: readonly NewOutboxEventParams[]): number => {
      let inserted = 0
      for (let start = 0; start < list.length; start += MAX_INSERT_ROWS) {
        const chunk = list.slice(start, start + MAX_INSERT_ROWS)
        inserted += this.#inserts.for(chunk.length).run(...insertParams(chunk, nowMs)).changes
      }
      return inserted
    }
    const written = (): Map<string, OutboxEvent> =>
      new Map(events.map((event) => [event.eventId, newOutboxEvent(event, now)]))
    const readBack = () => this.#readBack(events, now, insert, undefined)
    if (events.length <= MAX_INSERT_ROWS)
      return insert(events) === events.length ? written() : this.#client.atomic(readBack)
    // Several statements: all of them, or none, are applied.
    return this.#client.atomic(() => (insert(events) === events.length ? written() : readBack()))
  }

  /**
   * A batch with at least one ordering key, inside one transaction: reserve the key_seqs,
   * then insert. Reserving before knowing which ids are stored already means a duplicate id
   * leaves a gap in its key's sequence, which the contract allows; the stored event keeps its
   * own key_seq. Several events of one key get increasing key_seqs in input order.
   */
  #insertKeyed(events: readonly NewOutboxEventParams[], now: Date): Map<string, OutboxEvent> {
    const keySeqs = this.#reserveKeySeqs(events)
    const nowMs = now.getTime()
    const insert = (list: readonly NewOutboxEventParams[]): number => {
      let inserted = 0
      for (let start = 0; start < list.length; start += MAX_KEYED_INSERT_ROWS) {
        const chunk = list.slice(start, start + MAX_KEYED_INSERT_ROWS)
        inserted += this.#keyedInserts
          .for(chunk.length)
          .run(...keyedInsertParams(chunk, nowMs, keySeqs)).changes
      }
      return inserted
    }
    if (insert(events) !== events.length) return this.#readBack(events, now, insert, keySeqs)
    return new Map(
      events.map((event) => [event.eventId, newOutboxEvent(event, now, keySeqs.get(event.eventId))]),
    )
  }

  /** The key_seq of each keyed event of the batch, by event id: its key's counter moved past them. */
  #reserveKeySeqs(events: readonly NewOutboxEventParams[]): Map<string, number> {
    const perKey = new Map<string, number>()
    for (const { orderingKey } of events)
      if (orderingKey !== undefined) perKey.set(orderingKey, (perKey.get(orderingKey) ?? 0) + 1)
    const next = new Map<string, number>()
    const reserved = this.#client
      .statement<{ ordering_key: string; last_key_seq: number }>('reserveKeySeqs')
      .all(JSON.stringify(Object.fromEntries(perKey)))
    for (const row of reserved)
      next.set(row.ordering_key, row.last_key_seq - (perKey.get(row.ordering_key) ?? 0) + 1)
    const keySeqs = new Map<string, number>()
    for (const { eventId, orderingKey } of events) {
      if (orderingKey === undefined) continue
      const keySeq = next.get(orderingKey)
      if (keySeq === undefined)
        throw new Error(`no key_seq reserved for ordering key ${JSON.stringify(orderingKey)}`)
      keySeqs.set(eventId, keySeq)
      next.set(orderingKey, keySeq + 1)
    }
    return keySeqs
  }

  /**
   * Some ids were stored already (run atomically): the stored ones answer as stored, and any
   * that cleanup deleted since the INSERT skipped it is inserted now.
   */
  #readBack(
    events: readonly NewOutboxEventParams[],
    now: Date,
    insert: (list: readonly NewOutboxEventParams[]) => number,
    keySeqs: ReadonlyMap<string, number> | undefined,
  ): Map<string, OutboxEvent> {
    const stored = new Map<string, OutboxEvent>()
    const ids = JSON.stringify(events.map((event) => event.eventId))
    for (const row of this.#client.statement<OutboxRow>('selectByIds').all(ids))
      stored.set(row.event_id, toOutboxEvent(row))
    const deleted = events.filter((event) => !stored.has(event.eventId))
    insert(deleted)
    for (const event of deleted)
      stored.set(event.eventId, newOutboxEvent(event, now, keySeqs?.get(event.eventId)))
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
    // One statement, its own write transaction: see the claim in sql.ts.
    const rows = this.#client
      .statement<OutboxRow>('claim')
      .all(workerId, nowMs, leaseUntil.getTime(), nowMs, nowMs, deadLettersBlockKeys ? 1 : 0, limit)
    // RETURNING gives rows in no promised order; enqueue order is seq order.
    return rows.sort((a, b) => a.seq - b.seq).map(toOutboxEvent)
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<string[]> {
    return this.#client
      .statement<{ event_id: string }>('renewLeases')
      .all(leaseUntil.getTime(), JSON.stringify(eventIds), workerId)
      .map((row) => row.event_id)
  }

  /** One statement for the whole list: the ids it returns are the ones applied. */
  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    const ids = JSON.stringify(eventIds)
    const rows =
      workerId === undefined
        ? this.#client.statement<{ event_id: string }>('markManyAsSent').all(now.getTime(), ids)
        : this.#client
            .statement<{ event_id: string }>('markManyAsSentFenced')
            .all(now.getTime(), ids, workerId)
    return rows.map((row) => row.event_id)
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

/** The bound parameters of `events` in the column order of {@link insertOutboxRows}. */
const insertParams = (events: readonly NewOutboxEventParams[], nowMs: number): unknown[] => {
  const params: unknown[] = []
  for (const event of events)
    params.push(
      event.eventId,
      event.subject,
      event.payload,
      event.headers ?? null,
      nowMs,
      event.availableAt.getTime(),
    )
  return params
}

/** The bound parameters of `events` in the column order of {@link insertKeyedOutboxRows}. */
const keyedInsertParams = (
  events: readonly NewOutboxEventParams[],
  nowMs: number,
  keySeqs: ReadonlyMap<string, number>,
): unknown[] => {
  const params: unknown[] = []
  for (const event of events)
    params.push(
      event.eventId,
      event.subject,
      event.payload,
      event.headers ?? null,
      nowMs,
      event.availableAt.getTime(),
      event.orderingKey ?? null,
      keySeqs.get(event.eventId) ?? null,
    )
  return params
}
