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
  type InboxStatus,
  inboxCounts,
  PROCESSING_TIMEOUT_MESSAGE,
  repeatInBatches,
  Validator,
} from '@txbox/core'
import { Connection } from './connection.js'
import { ADAPTER, assertStorable, runStorage } from './errors.js'
import { CLEANUP_BATCH, inboxSql } from './sql.js'
import { resolveSqliteOptions, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'

/** An inbox row as SQLite returns it. */
interface InboxRow {
  seq: number
  event_id: string
  subject: string
  payload: string
  headers: string | null
  stream: string | null
  stream_seq: number | null
  status: InboxStatus
  received_at: number
  processed_at: number | null
  deliveries: number
  error_message: string | null
  claimed_at: number | null
  claimed_by: string | null
  lease_until: number | null
}

const toEvent = (row: InboxRow): InboxEvent => {
  const event: InboxEvent = {
    eventId: row.event_id,
    subject: row.subject,
    payload: row.payload,
    status: row.status,
    receivedAt: new Date(row.received_at),
    deliveries: row.deliveries,
  }
  if (row.headers !== null) event.headers = row.headers
  if (row.stream !== null && row.stream_seq !== null) {
    event.stream = row.stream
    event.streamSeq = row.stream_seq
  }
  if (row.processed_at !== null) event.processedAt = new Date(row.processed_at)
  if (row.error_message !== null) event.errorMessage = row.error_message
  if (row.claimed_at !== null) event.claimedAt = new Date(row.claimed_at)
  if (row.claimed_by !== null) event.claimedBy = row.claimed_by
  if (row.lease_until !== null) event.leaseUntil = new Date(row.lease_until)
  return event
}

type Statements = keyof ReturnType<typeof inboxSql>

/** The lease a new or re-taken delivery gets, or none (the reference `findOrCreate` flow). */
interface Lease {
  workerId: string
  claimedAtMs: number
  leaseUntilMs: number
}

/**
 * The inbox on SQLite (better-sqlite3). `findOrCreate` and `claim` read and write under
 * `BEGIN IMMEDIATE` (or a SAVEPOINT inside the caller's transaction): the write lock is
 * held from the lookup to the insert or update, so of N concurrent deliveries of one
 * event, on any connection or process, exactly one inserts or takes it.
 */
export class SqliteInboxRepository implements InboxRepository<SqliteDatabase> {
  readonly #connection: Connection<Statements>
  readonly #clock: Clock
  readonly #validate = new Validator(ADAPTER, 'inbox')

  constructor(options: SqliteOptions) {
    const { db, tables, clock } = resolveSqliteOptions(options)
    this.#connection = new Connection(db, inboxSql(tables))
    this.#clock = clock
  }

  /**
   * The stored row of this delivery, by its id alone: `(stream, streamSeq)` is recorded,
   * never an identity (a re-created stream restarts at sequence 1). A redelivery of a stored
   * id keeps the position recorded first.
   */
  #lookup(params: InboxParams): InboxRow | undefined {
    return this.#connection.statement<InboxRow>('selectById').get(params.eventId)
  }

  #insert(params: InboxParams, receivedAtMs: number, lease: Lease | undefined): InboxRow {
    const row = this.#connection
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
    if (row === undefined) throw new Error('INSERT ... RETURNING returned no row')
    return row
  }

  #updated(row: InboxRow | undefined): InboxRow {
    if (row === undefined)
      throw new Error('UPDATE ... RETURNING returned no row for a row read in the same transaction')
    return row
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.#validate.inboxParams(params)
    assertStorable(valid)
    const nowMs = this.#clock().getTime()
    return runStorage('inbox.findOrCreate', () =>
      this.#connection.atomic(() => {
        const stored = this.#lookup(valid)
        const row =
          stored === undefined
            ? this.#insert(valid, nowMs, undefined)
            : this.#updated(this.#connection.statement<InboxRow>('countDelivery').get(stored.seq))
        return toEvent(row)
      }),
    )
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.#validate.inboxParams(params)
    const { leaseMs, workerId } = this.#validate.leaseOptions(options)
    assertStorable(valid)
    const now = this.#clock()
    const lease: Lease = { workerId, claimedAtMs: now.getTime(), leaseUntilMs: addMs(now, leaseMs).getTime() }
    return runStorage('inbox.claim', () =>
      this.#connection.atomic((): InboxClaimResult => {
        const stored = this.#lookup(valid)
        if (stored === undefined)
          return { event: toEvent(this.#insert(valid, lease.claimedAtMs, lease)), shouldProcess: true }
        // A `processing` row without a lease came from the reference `findOrCreate` flow: its
        // handler may be running, so it stays taken until `resetStale` times it out.
        const leaseExpired =
          stored.status === 'processing' &&
          stored.lease_until !== null &&
          stored.lease_until <= lease.claimedAtMs
        const take = stored.status === 'failed' || leaseExpired
        const row = take
          ? this.#connection
              .statement<InboxRow>('take')
              .get(lease.workerId, lease.claimedAtMs, lease.leaseUntilMs, stored.seq)
          : this.#connection.statement<InboxRow>('countDelivery').get(stored.seq)
        return { event: toEvent(this.#updated(row)), shouldProcess: take }
      }),
    )
  }

  async markAsProcessed(eventId: string, options?: { tx?: SqliteDatabase | undefined }): Promise<void> {
    const id = this.#validate.eventId(eventId)
    this.#connection.joinable(options?.tx)
    const nowMs = this.#clock().getTime()
    // One statement on the connection: inside the caller's open transaction it commits or
    // rolls back with the handler's writes.
    const { changes } = await runStorage('inbox.markAsProcessed', () =>
      this.#connection.statement('markAsProcessed').run(nowMs, id),
    )
    if (changes === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const message = this.#validate.text(errorMessage, 'errorMessage')
    const { changes } = await runStorage('inbox.markAsFailed', () =>
      this.#connection.statement('markAsFailed').run(message, id),
    )
    if (changes === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = this.#validate.eventId(eventId)
    return runStorage(
      'inbox.isProcessed',
      () => this.#connection.statement<{ status: InboxStatus }>('status').get(id)?.status === 'processed',
    )
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const days = this.#validate.nonNegative(olderThanDays, 'olderThanDays')
    const cutoffMs = cutoffDays(this.#clock(), days).getTime()
    return repeatInBatches(CLEANUP_BATCH, (batchSize) =>
      runStorage(
        'inbox.cleanup',
        () => this.#connection.statement('cleanupBatch').run(cutoffMs, batchSize).changes,
      ),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const minutes = this.#validate.nonNegative(staleMinutes, 'staleMinutes')
    const cutoffMs = cutoffMinutes(this.#clock(), minutes).getTime()
    return runStorage(
      'inbox.resetStale',
      () => this.#connection.statement('resetStale').run(PROCESSING_TIMEOUT_MESSAGE, cutoffMs).changes,
    )
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return runStorage('inbox.getCountByStatus', () =>
      inboxCounts(
        this.#connection
          .statement<{ status: string; n: number }>('counts')
          .all()
          .map((row) => [row.status, row.n] as const),
      ),
    )
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.#validate.limit(limit)
    return runStorage('inbox.getFailedEvents', () =>
      this.#connection.statement<InboxRow>('failed').all(max).map(toEvent),
    )
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = this.#validate.eventId(eventId)
    return runStorage('inbox.get', () => {
      const row = this.#connection.statement<InboxRow>('selectById').get(id)
      return row === undefined ? null : toEvent(row)
    })
  }
}
