import { randomUUID } from 'node:crypto'
import {
  addMs,
  assertEventFits,
  type ClaimOptions,
  cutoffDays,
  cutoffMinutes,
  type EnqueueParams,
  EventNotFoundError,
  type FenceOptions,
  LeaseLostError,
  type OutboxCounts,
  type OutboxEvent,
  type OutboxRepository,
  outboxCounts,
  PayloadTooLargeError,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  StorageError,
  utf8Bytes,
  type WriteOptions,
  withStorageErrors,
} from '@txbox/core'
import type { ClientSession, Collection, Filter } from 'mongodb'
import {
  ADAPTER,
  encode,
  MAX_EVENT_BYTES,
  type OutboxDocument,
  SequenceClock,
  toOutboxEvent,
} from './collections.js'
import { BATCH, type Decision, MongoContext } from './context.js'
import { isDuplicateKey } from './errors.js'
import type { MongoStoreOptions } from './mongodb-options.js'

/** Claim rounds when other claimers took some of the candidates. */
const CLAIM_ROUNDS = 8
const LEASE_FIELDS = ['claimedBy', 'leaseUntil'] as const

/**
 * The txbox outbox on a MongoDB collection (`<prefix>outbox`, `_id` = event id). `{ tx }`
 * is a `ClientSession` with an active transaction (replica set or sharded cluster only).
 */
export class MongoOutboxRepository implements OutboxRepository<ClientSession> {
  readonly #ctx: MongoContext
  readonly #seq = new SequenceClock()

  /** @param context internal: the store passes the context its repositories share */
  constructor(options: MongoStoreOptions, context?: MongoContext) {
    this.#ctx = context ?? new MongoContext(options)
  }

  get #events(): Collection<OutboxDocument> {
    return this.#ctx.collection<OutboxDocument>('outbox')
  }

  get #validate() {
    return this.#ctx.validateOutbox
  }

  /** The largest event accepted, in NATS message bytes (the `maxEventBytes` option). */
  get maxEventBytes(): number {
    return this.#ctx.maxEventBytes
  }

  #document(params: EnqueueParams, now: Date): OutboxDocument {
    const doc: OutboxDocument = {
      _id: encode(params.eventId),
      subject: encode(params.subject),
      payload: encode(params.payload),
      status: 'pending',
      enqueuedAt: now,
      retryCount: 0,
      availableAt: params.availableAt ?? now,
      seq: this.#seq.next(now),
      rev: randomUUID(),
    }
    if (params.headers !== undefined) doc.headers = encode(params.headers)
    return doc
  }

  /**
   * Over `maxEventBytes` NATS could not carry it; and BSON documents are at most 16 MiB:
   * say so precisely instead of a driver error.
   */
  #checkSize(params: EnqueueParams): void {
    assertEventFits(ADAPTER, params, this.maxEventBytes)
    const bytes = utf8Bytes(params.payload) + utf8Bytes(params.headers ?? '') + utf8Bytes(params.subject)
    if (bytes > MAX_EVENT_BYTES)
      throw new PayloadTooLargeError(ADAPTER, params.eventId, bytes, MAX_EVENT_BYTES)
  }

  async findOrCreate(params: EnqueueParams, options?: WriteOptions<ClientSession>): Promise<OutboxEvent> {
    const valid = this.#validate.enqueueParams(params)
    this.#checkSize(valid)
    const session = await this.#ctx.session(options?.tx)
    const now = this.#ctx.clock()
    return withStorageErrors(ADAPTER, 'outbox.findOrCreate', async () => {
      const doc = this.#document(valid, now)
      if (session)
        return toOutboxEvent(await this.#upsertInTransaction([doc], session).then((docs) => docs[0]!))
      // The unique _id decides: one insert wins, every other caller reads what it stored.
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await this.#events.insertOne(doc)
          return toOutboxEvent(doc)
        } catch (error) {
          if (!isDuplicateKey(error)) throw error
        }
        const stored = await this.#events.findOne({ _id: doc._id })
        if (stored) return toOutboxEvent(stored)
        // Deleted between our insert and our read (cleanup): insert again.
      }
      throw new StorageError(
        ADAPTER,
        'outbox.findOrCreate',
        undefined,
        'the event kept disappearing after a duplicate key',
      )
    })
  }

  /**
   * Inside a transaction an insert's duplicate-key error would abort the caller's
   * transaction, so an upsert that only sets fields on insert stores the first write and
   * leaves an existing event alone; a concurrent writer surfaces as a transient write
   * conflict that the caller's `withTransaction` retries.
   */
  async #upsertInTransaction(
    docs: readonly OutboxDocument[],
    session: ClientSession,
  ): Promise<OutboxDocument[]> {
    await this.#events.bulkWrite(
      docs.map(({ _id, ...fields }) => ({
        updateOne: { filter: { _id }, update: { $setOnInsert: fields }, upsert: true },
      })),
      { session, ordered: true },
    )
    const stored = await this.#events
      .find({ _id: { $in: docs.map((doc) => doc._id) } }, { session })
      .toArray()
    const byId = new Map(stored.map((doc) => [doc._id, doc]))
    return docs.map((doc) => {
      const found = byId.get(doc._id)
      if (!found)
        throw new StorageError(
          ADAPTER,
          'outbox.findOrCreate',
          undefined,
          'upserted event not found in the transaction',
        )
      return found
    })
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<ClientSession>,
  ): Promise<OutboxEvent[]> {
    const valid = this.#validate.enqueueParamsList(params)
    for (const event of valid) this.#checkSize(event)
    if (valid.length === 0) return []
    const session = await this.#ctx.session(options?.tx)
    const now = this.#ctx.clock()
    return withStorageErrors(ADAPTER, 'outbox.findOrCreateMany', async () => {
      // First occurrence wins inside the batch, as between calls; seq follows input order.
      const firsts = new Map<string, OutboxDocument>()
      for (const event of valid)
        if (!firsts.has(event.eventId)) firsts.set(event.eventId, this.#document(event, now))
      const docs = [...firsts.values()]
      const byId = new Map<string, OutboxDocument>()
      if (session) {
        for (const doc of await this.#upsertInTransaction(docs, session)) byId.set(doc._id, doc)
      } else {
        const existing = await this.#ctx.insertNew(this.#events, docs)
        const inserted = docs.filter((_, index) => !existing.has(index))
        for (const doc of inserted) byId.set(doc._id, doc)
        const lookup = docs.filter((_, index) => existing.has(index)).map((doc) => doc._id)
        if (lookup.length > 0) {
          for (const doc of await this.#events.find({ _id: { $in: lookup } }).toArray())
            byId.set(doc._id, doc)
        }
      }
      return valid.map((event) => {
        const doc = byId.get(encode(event.eventId))
        if (!doc)
          throw new StorageError(
            ADAPTER,
            'outbox.findOrCreateMany',
            undefined,
            `event ${event.eventId} vanished`,
          )
        return toOutboxEvent(doc)
      })
    })
  }

  /** One event, read-decide-write; `decide` throws for an unknown id or a lost lease. */
  async #updateOne(
    operation: string,
    eventId: string,
    decide: (doc: OutboxDocument) => Decision<undefined>,
  ): Promise<void> {
    await this.#ctx.updateEach<OutboxDocument, undefined>(
      'outbox',
      operation,
      [encode(eventId)],
      (_, doc) => {
        if (!doc) throw new EventNotFoundError(ADAPTER, eventId)
        return decide(doc)
      },
    )
  }

  /** Throws unless `workerId` (when given) holds the claim: status publishing and claimedBy = workerId. */
  #fence(doc: OutboxDocument, eventId: string, workerId: string | undefined): void {
    if (workerId !== undefined && !holds(doc, workerId)) throw new LeaseLostError(ADAPTER, eventId, workerId)
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const now = this.#ctx.clock()
    await this.#updateOne('outbox.markAsPublishing', id, () => ({
      write: { set: { status: 'publishing', claimedAt: now } },
      result: undefined,
    }))
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const workerId = this.#validate.fence(options)
    const now = this.#ctx.clock()
    await this.#updateOne('outbox.markAsSent', id, (doc) => {
      this.#fence(doc, id, workerId)
      return { write: { set: { status: 'sent', sentAt: now }, unset: LEASE_FIELDS }, result: undefined }
    })
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const message = this.#validate.text(errorMessage, 'errorMessage')
    const workerId = this.#validate.fence(options)
    await this.#updateOne('outbox.markAsFailed', id, (doc) => {
      this.#fence(doc, id, workerId)
      return {
        write: {
          set: { status: 'failed', errorMessage: encode(message), retryCount: doc.retryCount + 1 },
          unset: LEASE_FIELDS,
        },
        result: undefined,
      }
    })
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.#validate.retryLaterOptions(options)
    const availableAt = addMs(this.#ctx.clock(), delayMs)
    await this.#updateOne('outbox.retryLater', id, (doc) => {
      this.#fence(doc, id, workerId)
      return {
        write: {
          set: {
            status: 'pending',
            retryCount: doc.retryCount + 1,
            errorMessage: encode(errorMessage),
            availableAt,
          },
          unset: LEASE_FIELDS,
        },
        result: undefined,
      }
    })
  }

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.#validate.limitOption(options)
    const now = this.#ctx.clock()
    return withStorageErrors(ADAPTER, 'outbox.findPending', async () => {
      const docs = await this.#events
        .find({ status: 'pending', availableAt: { $lte: now } })
        .sort({ seq: 1 })
        .limit(limit)
        .toArray()
      return docs.map(toOutboxEvent)
    })
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.#ctx.clock(), this.#validate.nonNegative(olderThanDays, 'olderThanDays'))
    return withStorageErrors(ADAPTER, 'outbox.cleanup', async () => {
      const filter: Filter<OutboxDocument> = { status: 'sent', sentAt: { $lt: cutoff } }
      let deleted = 0
      for (;;) {
        const batch = await this.#events
          .find(filter, { projection: { _id: 1 } })
          .limit(BATCH)
          .toArray()
        if (batch.length === 0) break
        const result = await this.#events.deleteMany({ ...filter, _id: { $in: batch.map((doc) => doc._id) } })
        deleted += result.deletedCount
        if (batch.length < BATCH) break
      }
      return deleted
    })
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(this.#ctx.clock(), this.#validate.nonNegative(staleMinutes, 'staleMinutes'))
    return this.#ctx.moveAll<OutboxDocument>(
      'outbox',
      'outbox.resetStale',
      { status: 'publishing', claimedAt: { $lt: cutoff } },
      () => ({ set: { status: 'pending' }, unset: LEASE_FIELDS }),
    )
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    return withStorageErrors(ADAPTER, 'outbox.getCountByStatus', async () => {
      const rows = await this.#events
        .aggregate<{ _id: string; count: number }>([{ $group: { _id: '$status', count: { $sum: 1 } } }])
        .toArray()
      return outboxCounts(rows.map((row) => [row._id, row.count] as const))
    })
  }

  /**
   * Claims in rounds: read the first claimable candidates in enqueue order, then
   * compare-and-set each from the version that was read. Two claimers that read the same
   * candidate cannot both win it: only one write per version applies (see
   * `MongoContext.compareAndSet`), and the loser simply does not return it. When others
   * took some candidates, the next round reads fresh ones, so a claimer is not left short
   * while claimable events remain.
   */
  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = this.#validate.claimOptions(options)
    const now = this.#ctx.clock()
    const leaseUntil = addMs(now, leaseMs)
    const claimedBy = encode(workerId)
    return withStorageErrors(ADAPTER, 'outbox.claim', async () => {
      const claimed: OutboxDocument[] = []
      for (let round = 0; round < CLAIM_ROUNDS && claimed.length < limit; round++) {
        const candidates = await this.#events
          .find({
            $or: [
              { status: 'pending', availableAt: { $lte: now } },
              { status: 'publishing', leaseUntil: { $lte: now } },
            ],
          })
          .sort({ seq: 1 })
          .limit(limit - claimed.length)
          .toArray()
        if (candidates.length === 0) break
        const set = { status: 'publishing' as const, claimedBy, claimedAt: now, leaseUntil }
        const applied = await this.#ctx.compareAndSet(
          'outbox',
          candidates.map((doc) => ({ id: doc._id, rev: doc.rev, set })),
        )
        for (const doc of candidates) if (applied.has(doc._id)) claimed.push({ ...doc, ...set })
        if (applied.size === candidates.length) break
      }
      return claimed.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)).map(toOutboxEvent)
    })
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.#validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.#validate.leaseOptions(options)
    if (ids.length === 0) return []
    const leaseUntil = addMs(this.#ctx.clock(), leaseMs)
    const renewed = await this.#ctx.updateEach<OutboxDocument, boolean>(
      'outbox',
      'outbox.renewLease',
      ids.map(encode),
      (_, doc) =>
        doc && holds(doc, workerId) ? { write: { set: { leaseUntil } }, result: true } : { result: false },
    )
    return ids.filter((id) => renewed.get(encode(id)) === true)
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.#validate.eventIds(eventIds)
    const workerId = this.#validate.fence(options)
    if (ids.length === 0) return []
    const now = this.#ctx.clock()
    const applied = await this.#ctx.updateEach<OutboxDocument, boolean>(
      'outbox',
      'outbox.markManyAsSent',
      ids.map(encode),
      (_, doc) =>
        !doc || (workerId !== undefined && !holds(doc, workerId))
          ? { result: false }
          : { write: { set: { status: 'sent', sentAt: now }, unset: LEASE_FIELDS }, result: true },
    )
    // A repeated id is judged again after the first copy was applied: with a workerId the
    // event is no longer held (it is sent), as a second markAsSent call would find it.
    const seen = new Set<string>()
    return ids.filter((id) => {
      const first = !seen.has(id)
      seen.add(id)
      const done = applied.get(encode(id)) === true
      return first ? !done : !done || workerId !== undefined
    })
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.#validate.limit(limit)
    return withStorageErrors(ADAPTER, 'outbox.getFailedEvents', async () => {
      const docs = await this.#events.find({ status: 'failed' }).sort({ seq: 1 }).limit(max).toArray()
      return docs.map(toOutboxEvent)
    })
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.#validate.eventIds(eventIds)
    if (ids.length === 0) return 0
    const now = this.#ctx.clock()
    const outcome = await this.#ctx.updateEach<OutboxDocument, 'missing' | 'moved' | 'ignored'>(
      'outbox',
      'outbox.requeueFailed',
      ids.map(encode),
      (_, doc) => {
        if (!doc) return { result: 'missing' }
        if (doc.status !== 'failed') return { result: 'ignored' }
        return {
          write: { set: { status: 'pending', availableAt: now, retryCount: 0 }, unset: LEASE_FIELDS },
          result: 'moved',
        }
      },
    )
    const missing = ids.find((id) => outcome.get(encode(id)) === 'missing')
    if (missing !== undefined) throw new EventNotFoundError(ADAPTER, missing)
    return [...outcome.values()].filter((result) => result === 'moved').length
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const id = this.#validate.eventId(eventId)
    return withStorageErrors(ADAPTER, 'outbox.get', async () => {
      const doc = await this.#events.findOne({ _id: encode(id) })
      return doc ? toOutboxEvent(doc) : null
    })
  }
}

/** The worker holds the claim iff the event is publishing and claimed by it. */
const holds = (doc: OutboxDocument, workerId: string): boolean =>
  doc.status === 'publishing' && doc.claimedBy === encode(workerId)
