import {
  type AmbientTransactions,
  boundedChunks,
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  newOutboxEvent,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  PayloadTooLargeError,
  type RequeueOutcome,
  resolveMaxEventBytes,
  type StatusCountRows,
  systemClock,
  ValidationError,
  Validator,
} from '@txbox/core'
import {
  eventBytes,
  insertedRows,
  limitParam,
  type Param,
  type Queryable,
  type Row,
  Runner,
  runWrite,
  selectRows,
} from './client.js'
import { ADAPTER, classifyMySqlError, ER_DATA_OUT_OF_RANGE, errnoOf } from './errors.js'
import { DEFAULT_TABLE_PREFIX, type MySqlStoreOptions } from './mysql-options.js'
import { type MySqlTransaction, toQueryHandle } from './query-handle.js'
import { compareSeq, toDateTime, toOutboxEvent } from './rows.js'
import {
  chunk,
  insertSize,
  MAX_INSERT_BYTES,
  MAX_INSERT_ROWS,
  MAX_LIST,
  type OutboxSql,
  outboxSql,
  padList,
  SQL_SWEEP_BATCH,
  tableNames,
} from './sql.js'

/** Splits events into multi-row INSERTs bounded in rows and in bytes (max_allowed_packet). */
const insertBatches = <E extends NewOutboxEventParams>(events: readonly E[]): E[][] =>
  boundedChunks(events, { maxItems: MAX_INSERT_ROWS, maxBytes: MAX_INSERT_BYTES, sizeOf: eventBytes })

/**
 * The outbox on MySQL 8.0+ / MariaDB 10.6+ (InnoDB): the kernel's primitives as statements.
 * `{ tx }` is a mysql2 connection inside `beginTransaction()` or an integration's handle
 * (see `MySqlQueryHandle`), or the ambient `store.transaction`; the write then commits
 * or rolls back with the caller's work.
 */
export class MySqlOutboxRepository extends OutboxRepositoryKernel<MySqlTransaction> {
  protected readonly sql: OutboxSql
  protected readonly run: Runner
  /** The outbox table's name. */
  readonly table: string
  // The default (1 MiB) is kept even on a server whose packet is smaller: there the packet
  // check refuses the few events in between, with PayloadTooLargeError.
  readonly #explicitMaxEventBytes: boolean

  /** `ambient`: the store's `store.transaction`, which writes taking `{ tx }` join when called without one. */
  constructor(options: MySqlStoreOptions, ambient?: AmbientTransactions<MySqlTransaction>) {
    const validate = new Validator(ADAPTER, 'outbox')
    const prefix = validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
    super({
      adapter: ADAPTER,
      clock: options.clock ?? systemClock,
      maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes),
      classify: classifyMySqlError,
      transaction: (tx) => (tx === undefined ? undefined : toQueryHandle(tx)),
      ambient,
      sweepBatch: SQL_SWEEP_BATCH,
      orderingKeys: true,
    })
    const names = tableNames(prefix)
    this.table = validate.identifier(names.outbox, 'outbox table name')
    this.sql = outboxSql(this.table, validate.identifier(names.outboxKeys, 'outbox keys table name'))
    this.run = new Runner(options.pool, options.onRetry)
    this.#explicitMaxEventBytes = options.maxEventBytes !== undefined
  }

  /** The kernel's wrapper, also telling the runner which operation runs (for `onRetry`). */
  protected override storage<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return super.storage(operation, () => Runner.inOperation(`outbox.${operation}`, run))
  }

  /** The largest event this server accepts, in UTF-8 bytes (see `MySqlStore.serverMaxEventBytes`). */
  serverMaxEventBytes(): Promise<number> {
    return this.run.maxEventBytes()
  }

  /**
   * The server's limit, after checking that an explicit `maxEventBytes` is within it: an
   * option the server could never honour is a configuration error, said once, not an
   * event-by-event `PayloadTooLargeError`.
   */
  async checkMaxEventBytes(db?: Queryable): Promise<number> {
    const serverLimit = await this.run.maxEventBytes(db)
    if (this.maxEventBytes > serverLimit && this.#explicitMaxEventBytes) {
      throw new ValidationError(
        ADAPTER,
        `maxEventBytes must be at most ${serverLimit}, what this server accepts in one statement ` +
          `(max_allowed_packet less 16 KiB); got ${this.maxEventBytes}. Lower maxEventBytes or raise max_allowed_packet`,
      )
    }
    return serverLimit
  }

  /**
   * Inserts with a no-op `ON DUPLICATE KEY UPDATE` (the unique key decides, so concurrent
   * callers agree, and an id stored earlier keeps its row: first write wins). A statement
   * that inserted every event of its batch answers them as written; only a batch in which
   * some id was already stored, by an earlier or concurrent caller, is read back.
   *
   * Keyed events first take their keySeqs from the key counters, which stay locked until
   * the transaction ends: the caller's, or without one a short transaction of the store's
   * own (an autocommit counter update would release the lock before the event is stored,
   * and a later enqueue of the key could then commit first). That transaction runs at the
   * session's isolation level, as the same statements do in a caller's transaction: no
   * `SET TRANSACTION` round trip. In a caller's transaction the first statement checks that
   * the transaction is open where it can (see `Runner.writeGuarded`): the counters' upsert
   * of a keyed batch, the INSERT of an unkeyed one.
   */
  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: MySqlTransaction | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    const keyed = events.some((event) => event.orderingKey !== undefined)
    if (!keyed)
      return this.run.writeGuarded(tx, (db, guard) => this.#insert(db, events, now, tx, undefined, guard))
    const insertKeyed = async (db: Queryable, guard: boolean) =>
      this.#insert(db, events, now, tx, await this.#takeKeySeqs(db, events, guard))
    return tx === undefined
      ? this.run.sessionTransaction((db) => insertKeyed(db, false))
      : this.run.writeGuarded(tx, insertKeyed)
  }

  /**
   * The keySeq of each keyed event (by position in `events`): each key's counter is raised
   * by its number of events, which get the new numbers in input order. Keys are taken in
   * sorted order, so two batches with overlapping keys wait for each other, never deadlock.
   * One statement for one key (its number in the OK packet) and on MariaDB (RETURNING); two
   * on MySQL, which reads the counters back. `guard`: the first statement must fail outside
   * a transaction (`IN_TRANSACTION_GUARD`, offered only on MariaDB).
   */
  async #takeKeySeqs(
    db: Queryable,
    events: readonly NewOutboxEventParams[],
    guard: boolean,
  ): Promise<(number | undefined)[]> {
    const counts = new Map<string, number>()
    for (const { orderingKey } of events) {
      if (orderingKey !== undefined) counts.set(orderingKey, (counts.get(orderingKey) ?? 0) + 1)
    }
    const sorted = [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const last = new Map<string, number>()
    const [only] = sorted
    if (sorted.length === 1 && only !== undefined) {
      const [key, n] = only
      const sql = guard ? this.sql.takeKeySeqGuarded : this.sql.takeKeySeq
      const header = await runWrite(db, sql, [key, String(n), String(n)])
      last.set(key, Number(header.insertId))
    } else if (await this.run.insertReturning(db)) {
      let guarded = guard
      for (const part of chunk(sorted, MAX_INSERT_ROWS)) {
        const rows = padList(part, insertSize)
        const values = rows.flatMap(([key, n], index) => [key, index < part.length ? String(n) : '0'])
        const sql = guarded ? this.sql.takeKeySeqsReturningGuarded : this.sql.takeKeySeqsReturning
        guarded = false
        // A padding row (the last key again, + 0) answers that key's number a second time.
        for (const row of await selectRows(db, sql(rows.length), values)) {
          last.set(String(row.ordering_key), Number(row.last_seq))
        }
      }
    } else {
      // Only MariaDB defers the open check to a guarded statement, and it has RETURNING.
      if (guard) throw new TypeError('a guarded counter upsert needs INSERT ... RETURNING (MariaDB)')
      for (const part of chunk(sorted, MAX_INSERT_ROWS)) {
        const rows = padList(part, insertSize)
        const values = rows.flatMap(([key, n], index) => [key, index < part.length ? String(n) : '0'])
        await runWrite(db, this.sql.takeKeySeqs(rows.length), values)
      }
      for (const part of chunk(sorted, MAX_LIST)) {
        const keys = padList(part.map(([key]) => key))
        for (const row of await selectRows(db, this.sql.keySeqs(keys.length), keys)) {
          last.set(String(row.ordering_key), Number(row.last_seq))
        }
      }
    }
    // The first new number of each key; handed out in input order.
    const next = new Map<string, number>()
    for (const [key, n] of sorted) {
      const lastSeq = last.get(key)
      if (lastSeq === undefined)
        throw new Error(`the counter of ordering key ${JSON.stringify(key)} was not read back`)
      next.set(key, lastSeq - n + 1)
    }
    return events.map(({ orderingKey }) => {
      if (orderingKey === undefined) return undefined
      const keySeq = next.get(orderingKey) as number
      next.set(orderingKey, keySeq + 1)
      return keySeq
    })
  }

  /** The inserts and read-back of {@link insertEvents}; `keySeqs` (by position) when some event is keyed. */
  async #insert(
    db: Queryable,
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: MySqlTransaction | undefined,
    keySeqs: readonly (number | undefined)[] | undefined,
    guard = false,
  ): Promise<Map<string, OutboxEvent>> {
    const enqueuedAt = toDateTime(now)
    // Within maxEventBytes, a statement can still be over the packet (the SQL carries the
    // subject and JSON quoting that the NATS message does not). Asked on the connection at
    // hand: in the caller's transaction the pool may have no other connection to give.
    const limit = await this.checkMaxEventBytes(db)
    for (const event of events) {
      const size = eventBytes(event)
      if (size > limit) throw new PayloadTooLargeError(ADAPTER, event.eventId, size, limit)
    }
    const keySeqOf = new Map<string, number>()
    if (keySeqs !== undefined) {
      events.forEach((event, index) => {
        const keySeq = keySeqs[index]
        if (keySeq !== undefined) keySeqOf.set(event.eventId, keySeq)
      })
    }
    const stored = new Map<string, OutboxEvent>()
    const readBack: string[] = []
    // `guard`: the caller's transaction is checked by the first statement itself (see
    // Runner.writeGuarded); the statements after it run in the same transaction.
    let guarded = guard
    for (const batch of insertBatches(events)) {
      const rows = padList(batch, insertSize)
      // Padding rows repeat the last id after it, so each one is a no-op duplicate; their
      // payload is never stored and is sent empty rather than repeated.
      const values = rows.flatMap((event, index) => {
        const row: Param[] = [
          event.eventId,
          event.subject,
          index < batch.length ? event.payload : '',
          index < batch.length ? (event.headers ?? null) : null,
          enqueuedAt,
          toDateTime(event.availableAt),
        ]
        if (keySeqs !== undefined) {
          const keySeq = keySeqOf.get(event.eventId)
          row.push(event.orderingKey ?? null, keySeq === undefined ? null : String(keySeq))
        }
        return row
      })
      const sql =
        keySeqs !== undefined
          ? this.sql.insertKeyed(rows.length)
          : guarded
            ? this.sql.insertGuarded(rows.length)
            : this.sql.insert(rows.length)
      const header = await runWrite(db, sql, values)
      guarded = false
      if (insertedRows(header, rows.length) === batch.length) {
        // Every column is written as given (DATETIME(3) holds a Date's milliseconds, and
        // validation refuses what utf8mb4 text cannot hold): the new row is the event built.
        for (const event of batch) {
          stored.set(event.eventId, newOutboxEvent(event, now, keySeqOf.get(event.eventId)))
        }
      } else {
        for (const event of batch) readBack.push(event.eventId)
      }
    }
    for (const part of chunk(readBack, MAX_LIST)) {
      // Inside a REPEATABLE READ transaction (the caller's, or the store's own for a keyed
      // batch, whose counter read may have taken the snapshot) a plain SELECT reads its
      // snapshot and may miss a row another session committed after it; the locking read sees it.
      const sql =
        tx === undefined && keySeqs === undefined
          ? this.sql.byIds(part.length)
          : this.sql.byIdsLocking(part.length)
      for (const row of await selectRows(db, sql, padList(part))) {
        const event = toOutboxEvent(row)
        stored.set(event.eventId, event)
      }
    }
    return stored
  }

  /**
   * A single-row UPDATE; when it changed nothing, one read tells why: the id is not stored,
   * the worker lost its claim, or the row already had these values (applied: servers without
   * CLIENT_FOUND_ROWS report 0 rows then).
   */
  async #update(sql: string, values: Param[], eventId: string, workerId: string | undefined) {
    return this.run.auto(async (db): Promise<FencedOutcome> => {
      if ((await runWrite(db, sql, values)).affectedRows > 0) return 'applied'
      const [row] = await selectRows(db, this.sql.probe, [eventId])
      if (!row) return 'missing'
      const held = workerId === undefined || (row.status === 'publishing' && row.claimed_by === workerId)
      return held ? 'applied' : 'lost'
    })
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    return (
      (await this.#update(this.sql.markAsPublishing, [toDateTime(now), eventId], eventId, undefined)) !==
      'missing'
    )
  }

  protected applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const [statement, values]: [{ open: string; fenced: string }, Param[]] =
      change.status === 'sent'
        ? [this.sql.markAsSent, [toDateTime(change.sentAt), eventId]]
        : change.status === 'failed'
          ? [this.sql.markAsFailed, [change.errorMessage, eventId]]
          : [this.sql.retryLater, [change.errorMessage, toDateTime(change.availableAt), eventId]]
    const sql = workerId === undefined ? statement.open : statement.fenced
    return this.#update(sql, workerId === undefined ? values : [...values, workerId], eventId, workerId)
  }

  protected selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    return this.run.auto(async (db) =>
      (await selectRows(db, this.sql.findPending, [toDateTime(now), limitParam(limit)])).map(toOutboxEvent),
    )
  }

  /** One bounded DELETE, its own autocommit statement: no long lock, and a retry repeats only this batch. */
  protected deleteSent(cutoff: Date, limit: number): Promise<number> {
    return this.run.auto(
      async (db) =>
        (await runWrite(db, this.sql.cleanup, [toDateTime(cutoff), limitParam(limit)])).affectedRows,
    )
  }

  /** All stale events in one atomic statement (they are few: a crashed relay's claims), so `limit` is not needed. */
  protected resetPublishing(cutoff: Date): Promise<number> {
    return this.run.auto(
      async (db) => (await runWrite(db, this.sql.resetStale, [toDateTime(cutoff)])).affectedRows,
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.run.auto(async (db) =>
      (await selectRows(db, this.sql.counts, [])).map((row) => [String(row.status), String(row.n)] as const),
    )
  }

  /**
   * One short READ COMMITTED transaction: lock up to `limit` claimable rows with
   * `FOR UPDATE SKIP LOCKED` (expired leases and due pending rows, each scan in seq order,
   * read whole; a keyed row only as the head of its key), keep the first `limit` by seq,
   * mark them, commit. A concurrent claimer
   * skips the rows we locked, so no row is returned twice; deadlocks retry as a whole. The
   * rows stay locked from the read to the commit, so the claimed events are the rows read
   * with the claim's four columns set.
   */
  protected claimEvents({
    now,
    leaseUntil,
    workerId,
    limit,
    deadLettersBlockKeys,
  }: ClaimRequest): Promise<OutboxEvent[]> {
    const nowText = toDateTime(now)
    const sql = deadLettersBlockKeys ? this.sql.claim.deadLettersBlock : this.sql.claim.deadLettersSkip
    return this.run.transaction(async (connection) => {
      const rows = (
        await selectRows(connection, sql, [nowText, limitParam(limit), nowText, limitParam(limit)])
      )
        .sort((a, b) => compareSeq(String(a.seq), String(b.seq)))
        .slice(0, limit)
      for (const part of chunk(rows, MAX_LIST)) {
        await runWrite(connection, this.sql.claimUpdate(part.length), [
          workerId,
          nowText,
          toDateTime(leaseUntil),
          ...padList(part.map((row) => String(row.seq))),
        ])
      }
      return rows.map((row) => ({
        ...toOutboxEvent(row),
        status: 'publishing' as const,
        claimedAt: new Date(now.getTime()),
        claimedBy: workerId,
        leaseUntil: new Date(leaseUntil.getTime()),
      }))
    })
  }

  protected renewLeases(eventIds: readonly string[], workerId: string, leaseUntil: Date): Promise<string[]> {
    return this.run.transaction(async (connection) => {
      const held: string[] = []
      for (const part of chunk(eventIds, MAX_LIST)) {
        const rows = await selectRows(connection, this.sql.heldBy(part.length), [...padList(part), workerId])
        if (rows.length === 0) continue
        const seqs = rows.map((row) => String(row.seq))
        await runWrite(connection, this.sql.renew(seqs.length), [toDateTime(leaseUntil), ...padList(seqs)])
        held.push(...rows.map((row) => String(row.event_id)))
      }
      return held
    })
  }

  /**
   * With a worker: one autocommit UPDATE of all the ids that applies only if the worker holds
   * every stored one (the relay's case): for a row it does not hold, the statement fails with
   * an overflow (see `sendAllHeld`, errno 1690) and InnoDB undoes it whole. The fence is
   * evaluated on each row under its exclusive lock, so a take-over that commits first is
   * seen, and one that comes later waits for this statement. When some id was not held, which
   * ones cannot be told after a partial UPDATE (an event sent by the worker that took over a
   * lost lease looks like one sent now), so the ids are then marked one by one under locks, as
   * without a worker. An id not stored matches no row: when the statement changed fewer rows
   * than ids, the rows it sent (status `sent` at this `now`) are read back. Over `MAX_LIST`
   * ids (several statements), one fenced UPDATE per part in a transaction, committed only when
   * every id was changed.
   */
  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    if (workerId !== undefined && eventIds.length <= MAX_LIST) {
      const sent = await this.#sendAllHeld(eventIds, workerId, now)
      if (sent !== undefined) return sent
    } else if (workerId !== undefined) {
      const allHeld = await this.run.atomic(async (connection) => {
        let changed = 0
        for (const part of chunk(eventIds, MAX_LIST)) {
          const values = [toDateTime(now), ...padList(part), workerId]
          changed += (await runWrite(connection, this.sql.sendHeld(part.length), values)).affectedRows
        }
        return changed === eventIds.length
      })
      if (allHeld) return [...eventIds]
    }
    return this.#markSentLocked(eventIds, workerId, now)
  }

  /** The ids sent by one all-or-nothing UPDATE (at most `MAX_LIST`), or undefined when some stored id was not held. */
  #sendAllHeld(eventIds: readonly string[], workerId: string, now: Date): Promise<string[] | undefined> {
    const nowText = toDateTime(now)
    return this.run.auto(async (db) => {
      let changed: number
      try {
        const values = [workerId, nowText, ...padList(eventIds)]
        changed = (await runWrite(db, this.sql.sendAllHeld(eventIds.length), values)).affectedRows
      } catch (error) {
        if (errnoOf(error) === ER_DATA_OUT_OF_RANGE) return undefined
        throw error
      }
      // Every changed row moved from publishing to sent, so it counts once with or without
      // CLIENT_FOUND_ROWS. Fewer: some ids are not stored; the rows sent now are the others.
      if (changed === eventIds.length) return [...eventIds]
      const rows = await selectRows(db, this.sql.sentAt(eventIds.length), [...padList(eventIds), nowText])
      return rows.map((row) => String(row.event_id))
    })
  }

  /** Locks the stored rows, keeps those the worker holds (all, without a worker), marks them sent. */
  #markSentLocked(eventIds: readonly string[], workerId: string | undefined, now: Date): Promise<string[]> {
    return this.run.transaction(async (connection) => {
      const applied: Row[] = []
      for (const part of chunk(eventIds, MAX_LIST)) {
        for (const row of await selectRows(connection, this.sql.lockForSend(part.length), padList(part))) {
          if (workerId === undefined || (row.status === 'publishing' && row.claimed_by === workerId))
            applied.push(row)
        }
      }
      const seqs = applied.map((row) => String(row.seq))
      for (const part of chunk(seqs, MAX_LIST)) {
        await runWrite(connection, this.sql.sendSeqs(part.length), [toDateTime(now), ...padList(part)])
      }
      return applied.map((row) => String(row.event_id))
    })
  }

  protected requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    return this.run.auto(async (db) => {
      let requeued = 0
      const stored = new Set<string>()
      for (const part of chunk(eventIds, MAX_LIST)) {
        requeued += (await runWrite(db, this.sql.requeue(part.length), [toDateTime(now), ...padList(part)]))
          .affectedRows
        for (const row of await selectRows(db, this.sql.existing(part.length), padList(part))) {
          stored.add(String(row.event_id))
        }
      }
      return { requeued, missing: eventIds.filter((id) => !stored.has(id)) }
    })
  }

  protected selectFailed(limit: number): Promise<OutboxEvent[]> {
    return this.run.auto(async (db) =>
      (await selectRows(db, this.sql.failed, [limitParam(limit)])).map(toOutboxEvent),
    )
  }

  protected read(eventId: string): Promise<OutboxEvent | null> {
    return this.run.auto(async (db) => {
      const [row] = await selectRows(db, this.sql.get, [eventId])
      return row ? toOutboxEvent(row) : null
    })
  }
}
