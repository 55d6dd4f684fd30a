import {
  type AmbientTransactions,
  type ClaimRequest,
  cutoffDays,
  decodeStoredText,
  encodeStoredText,
  type FencedOutcome,
  type NewOutboxEventParams,
  newOutboxEvent,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  type RequeueOutcome,
  type StatusCountRows,
} from '@txbox/core'
import type { Pool } from 'pg'
import {
  type PostgresTransaction,
  type Queryable,
  queryStatements,
  type StatementRunner,
  statementRunner,
  transactionHandle,
} from './client.js'
import { ADAPTER, classifyPostgresError } from './errors.js'
import { OUTBOX_PARTITIONS } from './partition-sql.js'
import { type PostgresStoreOptions, resolveOptions } from './postgres-options.js'
import { PostgresPartitions } from './postgres-partitions.js'
import { type OutboxRow, outboxEventFromRow } from './rows.js'
import {
  KEYED_LIVE,
  type OutboxSql,
  outboxSql,
  POSTGRES_SWEEP_BATCH,
  type PostgresNotifyMode,
} from './sql.js'

const encode = encodeStoredText
const encodeOptional = (text: string | undefined): string | null =>
  text === undefined ? null : encodeStoredText(text)

/**
 * How often an enqueue re-reads ids whose insert conflicted with a row it could not see
 * yet. One retry suffices under READ COMMITTED (the conflicting inserter has committed by
 * then); more only happen if that row is deleted in between.
 */
const MAX_ENQUEUE_ATTEMPTS = 5

/** The ids a statement answered (`RETURNING event_id`), decoded. */
const returnedIds = (rows: readonly { event_id: string }[]): string[] =>
  rows.map((row) => decodeStoredText(row.event_id))

/**
 * The outbox on PostgreSQL: the kernel's primitives, each a single statement (so none holds
 * a transaction open between calls, and each is atomic).
 */
export class PostgresOutboxRepository extends OutboxRepositoryKernel<PostgresTransaction> {
  readonly #pool: Pool
  readonly #query: StatementRunner
  readonly #partitions: PostgresPartitions
  readonly #sql: OutboxSql
  readonly #notify: PostgresNotifyMode
  /**
   * Whether the last claim saw a keyed event live: the next claim's shape (sql.ts claimQuery).
   * A first claim walks: an outbox that never holds keyed events never pays for the other.
   */
  #keyedLive = false
  /** The enqueue statements of this store's notify mode, built once (their text names their prepared statement). */
  readonly #insertOne: string
  readonly #insertMany: string
  readonly #insertKeyed: string
  /** The `LISTEN/NOTIFY` channel an enqueue notifies on (see `createPostgresWakeup`). */
  readonly channel: string

  /**
   * @param ambient the store's `store.transaction` (see `createPostgresStore`): `{ tx }`-taking
   *   writes made inside it join it without `{ tx }`.
   */
  constructor(options: PostgresStoreOptions, ambient?: AmbientTransactions<PostgresTransaction>) {
    const resolved = resolveOptions(options)
    super({
      adapter: ADAPTER,
      clock: resolved.clock,
      maxEventBytes: resolved.maxEventBytes,
      classify: classifyPostgresError,
      transaction: transactionHandle,
      sweepBatch: POSTGRES_SWEEP_BATCH,
      ambient,
      orderingKeys: true,
    })
    this.#pool = resolved.pool
    this.#query = statementRunner(resolved.pool, resolved.preparedStatements)
    this.#sql = outboxSql(resolved.schema, resolved.tablePrefix, resolved.partitioning !== undefined)
    this.#partitions = new PostgresPartitions(
      resolved.pool,
      resolved.schema,
      resolved.tablePrefix,
      OUTBOX_PARTITIONS,
    )
    this.#notify = resolved.notify
    this.#insertOne = this.#sql.insertOne(resolved.notify)
    this.#insertMany = this.#sql.insertMany(resolved.notify)
    this.#insertKeyed = this.#sql.insertKeyed(resolved.notify)
    this.channel = resolved.channel
  }

  /**
   * The common case, every id new, is one statement that answers only how many rows it
   * inserted: the events are built from what was sent. When it inserted fewer, a second
   * statement reads the stored rows of all of them (the duplicates' rows unchanged, first
   * write wins, and the ones just inserted, visible to it in autocommit and in the caller's
   * transaction alike).
   *
   * Race: when another transaction inserts the same id concurrently, our ON CONFLICT waits
   * for it to commit and then skips the row; the read is a new statement, whose snapshot
   * (READ COMMITTED) includes the winner's row, so all concurrent callers return the single
   * stored row. An id that is still missing (its row deleted in between) is inserted again.
   * ON CONFLICT DO UPDATE would return it at once, but it rewrites (and locks) an existing
   * row on every duplicate enqueue. Under REPEATABLE READ the server raises a serialization
   * failure instead (StorageError).
   *
   * Keyed events take their keySeq from their key's counter row, which stays locked until the
   * enqueuing transaction ends (see `insertKeyed`): a concurrent enqueue of the same key, in
   * autocommit or in another transaction, waits for it. Under REPEATABLE READ or SERIALIZABLE,
   * the second one fails with a serialization failure instead (StorageError, retryable).
   */
  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: PostgresTransaction | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    const db = tx === undefined ? this.#pool : transactionHandle(tx)
    const stored = new Map<string, OutboxEvent>()
    let missing = events
    for (let attempt = 0; attempt < MAX_ENQUEUE_ATTEMPTS && missing.length > 0; attempt++) {
      const { inserted, keySeqs } = await this.#insert(db, missing, now)
      if (inserted === missing.length) {
        missing.forEach((event, index) => {
          stored.set(event.eventId, newOutboxEvent(event, now, keySeqs?.[index]))
        })
        return stored
      }
      const result = await this.#query<OutboxRow>(db, this.#sql.getMany, [
        missing.map((event) => encode(event.eventId)),
      ])
      for (const row of result.rows) {
        const event = outboxEventFromRow(row)
        stored.set(event.eventId, event)
      }
      missing = missing.filter((event) => !stored.has(event.eventId))
    }
    if (missing.length > 0) {
      throw new Error(
        `could not read back ${missing.length} event(s) after ${MAX_ENQUEUE_ATTEMPTS} attempts (deleted concurrently?)`,
      )
    }
    return stored
  }

  /**
   * Inserts the events whose id is not stored yet; answers how many it inserted and, when
   * any event is keyed, the keySeq each input event was given (in input order).
   */
  async #insert(db: Queryable, events: readonly NewOutboxEventParams[], now: Date): Promise<InsertOutcome> {
    const [single] = events
    let text: string
    let values: unknown[]
    if (events.some((event) => event.orderingKey !== undefined)) {
      text = this.#insertKeyed
      values = [...batchColumns(events, now), now, events.map((event) => event.orderingKey ?? null)]
    } else if (events.length === 1 && single !== undefined) {
      text = this.#insertOne
      values = [
        encode(single.eventId),
        encode(single.subject),
        encode(single.payload),
        encodeOptional(single.headers),
        now,
        single.availableAt,
      ]
    } else {
      text = this.#insertMany
      values = [...batchColumns(events, now), now]
    }
    if (this.#notify !== 'off') values.push(this.channel)
    const result = await this.#query<{ inserted: number; key_seqs?: (string | null)[] }>(db, text, values)
    const row = result.rows[0]
    return {
      inserted: row?.inserted ?? 0,
      keySeqs: row?.key_seqs?.map((keySeq) => (keySeq === null ? undefined : Number(keySeq))),
    }
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    const result = await this.#query(this.#pool, this.#sql.markAsPublishing, [encode(eventId), now])
    return result.rowCount !== 0
  }

  /**
   * One UPDATE whose WHERE clause carries the fence, so "check the claim, then write" cannot
   * interleave with a concurrent claim. Only when nothing was updated does a second read
   * tell a lost lease from an unknown id.
   */
  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const [text, extra] =
      change.status === 'sent'
        ? [this.#sql.markAsSent, [change.sentAt]]
        : change.status === 'failed'
          ? [this.#sql.markAsFailed, [encode(change.errorMessage)]]
          : [this.#sql.retryLater, [encode(change.errorMessage), change.availableAt]]
    const id = encode(eventId)
    const result = await this.#query(this.#pool, text, [id, encodeOptional(workerId), ...extra])
    if (result.rowCount !== 0) return 'applied'
    if (workerId === undefined) return 'missing'
    const exists = await this.#query(this.#pool, this.#sql.exists, [id])
    return exists.rowCount === 0 ? 'missing' : 'lost'
  }

  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    const result = await this.#query<OutboxRow>(this.#pool, this.#sql.findPending, [now, limit])
    return result.rows.map(outboxEventFromRow)
  }

  /**
   * On time-partitioned tables, first retires the partitions whose every row is `sent`
   * before the cutoff (a DROP instead of a DELETE per row) and creates the partitions ahead;
   * then deletes the sent rows left in the partitions that stay, as on plain tables. The
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

  protected async deleteSent(cutoff: Date, limit: number): Promise<number> {
    return (await this.#query(this.#pool, this.#sql.cleanupBatch, [cutoff, limit])).rowCount ?? 0
  }

  /** One statement for every stale claim: the UPDATE is atomic, whatever `limit` says. */
  protected async resetPublishing(cutoff: Date): Promise<number> {
    return (await this.#query(this.#pool, this.#sql.resetStale, [cutoff])).rowCount ?? 0
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    const result = await this.#query<{ status: string; count: string }>(
      this.#pool,
      this.#sql.countByStatus,
      [],
    )
    return result.rows.map((row) => [row.status, row.count] as const)
  }

  protected async claimEvents(request: ClaimRequest): Promise<OutboxEvent[]> {
    const results = await queryStatements(
      this.#pool,
      this.#sql.claim({ ...request, workerId: encode(request.workerId), keyedLive: this.#keyedLive }),
    )
    this.#keyedLive = results.at(-1)?.rows[0]?.[KEYED_LIVE] === true
    const rows = (results.find((result) => result.command === 'UPDATE')?.rows ?? []) as OutboxRow[]
    // RETURNING has no defined order; enqueue order is the seq order.
    return rows.sort(bySeq).map(outboxEventFromRow)
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<Iterable<string>> {
    const result = await this.#query<{ event_id: string }>(this.#pool, this.#sql.renewLease, [
      eventIds.map(encode),
      encode(workerId),
      leaseUntil,
    ])
    return returnedIds(result.rows)
  }

  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<Iterable<string>> {
    const result = await this.#query<{ event_id: string }>(this.#pool, this.#sql.markManyAsSent, [
      eventIds.map(encode),
      encodeOptional(workerId),
      now,
    ])
    return returnedIds(result.rows)
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const result = await this.#query<{ moved: number; missing: string[] }>(
      this.#pool,
      this.#sql.requeueFailed,
      [eventIds.map(encode), now],
    )
    const row = result.rows[0]
    return { requeued: row?.moved ?? 0, missing: (row?.missing ?? []).map(decodeStoredText) }
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    const result = await this.#query<OutboxRow>(this.#pool, this.#sql.failed, [limit])
    return result.rows.map(outboxEventFromRow)
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const result = await this.#query<OutboxRow>(this.#pool, this.#sql.get, [encode(eventId)])
    const row = result.rows[0]
    return row ? outboxEventFromRow(row) : null
  }
}

/** What one insert statement did: rows inserted, and the keySeq given to each input event (keyed batches). */
interface InsertOutcome {
  readonly inserted: number
  readonly keySeqs: readonly (number | undefined)[] | undefined
}

/**
 * The column arrays of a batch insert (ids, subjects, payloads, headers, availableAt), in one
 * pass over the batch: this runs for every enqueue, in the caller's request. node-postgres
 * writes each Date element of an array through the local-time getters (a few µs each, more
 * than the rest of the row); the usual one, `now` (an event without `availableAt`), is
 * written once per batch as {@link timestampText}.
 */
const batchColumns = (
  events: readonly NewOutboxEventParams[],
  now: Date,
): [string[], string[], string[], (string | null)[], (Date | string)[]] => {
  const nowText = timestampText(now)
  const ids: string[] = []
  const subjects: string[] = []
  const payloads: string[] = []
  const headers: (string | null)[] = []
  const availableAt: (Date | string)[] = []
  for (const event of events) {
    ids.push(encode(event.eventId))
    subjects.push(encode(event.subject))
    payloads.push(encode(event.payload))
    headers.push(encodeOptional(event.headers))
    availableAt.push(event.availableAt === now ? nowText : event.availableAt)
  }
  return [ids, subjects, payloads, headers, availableAt]
}

/**
 * A `timestamptz` parameter for `date`: its ISO 8601 text (UTC, milliseconds), which
 * PostgreSQL reads as the same instant, for the years 0001-9999; any other year goes as the
 * Date, which node-postgres writes in its own format (a `BC` suffix, more digits).
 */
export const timestampText = (date: Date): Date | string => {
  const iso = date.toISOString()
  return iso.length === 24 && !iso.startsWith('0000') ? iso : date
}

const bySeq = (a: Pick<OutboxRow, 'seq'>, b: Pick<OutboxRow, 'seq'>): number => {
  const x = BigInt(a.seq)
  const y = BigInt(b.seq)
  return x < y ? -1 : x > y ? 1 : 0
}
