import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  addMs,
  cutoffDays,
  cutoffMinutes,
  EventNotFoundError,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxParams,
  type InboxRepository,
  inboxCounts,
  PayloadTooLargeError,
  PROCESSING_TIMEOUT_MESSAGE,
  StorageError,
  utf8Bytes,
  withStorageErrors,
} from '@txbox/core'
import type { ClientSession, Collection, Filter } from 'mongodb'
import {
  ADAPTER,
  encode,
  type InboxDocument,
  MAX_EVENT_BYTES,
  SequenceClock,
  toInboxEvent,
} from './collections.js'
import { BATCH, type GuardedWrite, MongoContext } from './context.js'
import { isDuplicateKey } from './errors.js'
import type { MongoStoreOptions } from './mongodb-options.js'

const LEASE_FIELDS = ['claimedBy', 'leaseUntil'] as const
/** Rounds of a receive (findOrCreate / claim) under contention before giving up. */
const MAX_ROUNDS = 200

/**
 * The txbox inbox on a MongoDB collection (`<prefix>inbox`, `_id` = event id). The event id
 * alone is the identity: `(stream, streamSeq)` is recorded, never used to merge two ids (a
 * JetStream stream re-created under its name restarts at sequence 1), and a redelivery of a
 * stored id at a new position keeps the position recorded first.
 */
export class MongoInboxRepository implements InboxRepository<ClientSession> {
  readonly #ctx: MongoContext
  readonly #seq = new SequenceClock()

  /** @param context internal: the store passes the context its repositories share */
  constructor(options: MongoStoreOptions, context?: MongoContext) {
    this.#ctx = context ?? new MongoContext(options)
  }

  get #events(): Collection<InboxDocument> {
    return this.#ctx.collection<InboxDocument>('inbox')
  }

  get #validate() {
    return this.#ctx.validateInbox
  }

  #checkSize(params: InboxParams): void {
    const bytes = utf8Bytes(params.payload) + utf8Bytes(params.headers ?? '') + utf8Bytes(params.subject)
    if (bytes > MAX_EVENT_BYTES)
      throw new PayloadTooLargeError(ADAPTER, params.eventId, bytes, MAX_EVENT_BYTES)
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.#validate.inboxParams(params)
    this.#checkSize(valid)
    const now = this.#ctx.clock()
    return (await this.#receive('inbox.findOrCreate', valid, now, undefined)).event
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.#validate.inboxParams(params)
    const lease = this.#validate.leaseOptions(options)
    this.#checkSize(valid)
    const now = this.#ctx.clock()
    return this.#receive('inbox.claim', valid, now, lease)
  }

  /**
   * One delivery, as one atomic step: either the insert of a new event (the unique `_id`
   * lets exactly one concurrent caller create it), or one
   * compare-and-set of the stored event from the version that was read (deliveries + 1
   * and, for a claim, the lease). A caller that loses either race reads again and retries,
   * so each of N concurrent deliveries is counted exactly once and at most one of them
   * gets `shouldProcess: true`.
   */
  async #receive(
    operation: string,
    params: InboxParams,
    now: Date,
    lease: InboxClaimOptions | undefined,
  ): Promise<InboxClaimResult> {
    return withStorageErrors(ADAPTER, operation, async () => {
      for (let round = 1; round <= MAX_ROUNDS; round++) {
        if (round > 2) await sleep(Math.random() * Math.min(20, round))
        const stored = await this.#events.findOne({ _id: encode(params.eventId) })
        if (stored === null) {
          const doc = this.#document(params, now, lease)
          if (await this.#create(doc)) return { event: toInboxEvent(doc), shouldProcess: true }
          continue
        }
        const { write, shouldProcess } = this.#redelivery(stored, now, lease)
        const applied = await this.#ctx.compareAndSet('inbox', [
          { id: stored._id, rev: stored.rev, ...write },
        ])
        if (applied.size === 1) return { event: toInboxEvent(applyWrite(stored, write)), shouldProcess }
      }
      throw new StorageError(ADAPTER, operation, undefined, 'the event kept changing under contention')
    })
  }

  /** What a redelivery of a stored event writes: deliveries + 1 and, when the claim is free, the lease. */
  #redelivery(
    stored: InboxDocument,
    now: Date,
    lease: InboxClaimOptions | undefined,
  ): { write: Omit<GuardedWrite, 'id' | 'rev'>; shouldProcess: boolean } {
    const deliveries = stored.deliveries + 1
    if (lease === undefined) return { write: { set: { deliveries } }, shouldProcess: false }
    // A `processing` event without a lease came from the findOrCreate flow: its handler may
    // be running, so it stays taken until resetStale times it out.
    const leaseExpired =
      stored.status === 'processing' &&
      stored.leaseUntil instanceof Date &&
      stored.leaseUntil.getTime() <= now.getTime()
    if (stored.status === 'processed' || (stored.status === 'processing' && !leaseExpired)) {
      return { write: { set: { deliveries } }, shouldProcess: false }
    }
    return {
      write: {
        set: {
          deliveries,
          status: 'processing',
          claimedAt: now,
          claimedBy: encode(lease.workerId),
          leaseUntil: addMs(now, lease.leaseMs),
        },
        unset: ['errorMessage'],
      },
      shouldProcess: true,
    }
  }

  #document(params: InboxParams, now: Date, lease: InboxClaimOptions | undefined): InboxDocument {
    const doc: InboxDocument = {
      _id: encode(params.eventId),
      subject: encode(params.subject),
      payload: encode(params.payload),
      status: 'processing',
      receivedAt: now,
      deliveries: 1,
      seq: this.#seq.next(now),
      rev: randomUUID(),
    }
    if (params.headers !== undefined) doc.headers = encode(params.headers)
    if (params.stream !== undefined && params.streamSeq !== undefined) {
      doc.stream = encode(params.stream)
      doc.streamSeq = params.streamSeq
    }
    if (lease !== undefined) {
      doc.claimedAt = now
      doc.claimedBy = encode(lease.workerId)
      doc.leaseUntil = addMs(now, lease.leaseMs)
    }
    return doc
  }

  /** Inserts the event; false when another caller stored the same id first. */
  async #create(doc: InboxDocument): Promise<boolean> {
    try {
      await this.#events.insertOne(doc)
      return true
    } catch (error) {
      if (isDuplicateKey(error)) return false
      throw error
    }
  }

  async markAsProcessed(eventId: string, options?: { tx?: ClientSession | undefined }): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const session = await this.#ctx.session(options?.tx)
    const now = this.#ctx.clock()
    const set = { status: 'processed' as const, processedAt: now }
    if (session) {
      // Inside the caller's transaction the server isolates the read and the write; a
      // concurrent writer is a write conflict that the caller's withTransaction retries.
      await withStorageErrors(ADAPTER, 'inbox.markAsProcessed', async () => {
        const stored = await this.#events.findOne({ _id: encode(id) }, { session, projection: { _id: 1 } })
        if (!stored) throw new EventNotFoundError(ADAPTER, id, 'inbox')
        await this.#events.updateOne(
          { _id: stored._id },
          { $set: { ...set, rev: randomUUID() }, $unset: { claimedBy: '', leaseUntil: '' } },
          { session },
        )
      })
      return
    }
    await this.#updateOne('inbox.markAsProcessed', id, () => ({ set, unset: LEASE_FIELDS }))
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const message = this.#validate.text(errorMessage, 'errorMessage')
    await this.#updateOne('inbox.markAsFailed', id, () => ({
      set: { status: 'failed', errorMessage: encode(message) },
      unset: LEASE_FIELDS,
    }))
  }

  async #updateOne(
    operation: string,
    eventId: string,
    change: (doc: InboxDocument) => Omit<GuardedWrite, 'id' | 'rev'>,
  ): Promise<void> {
    await this.#ctx.updateEach<InboxDocument, undefined>('inbox', operation, [encode(eventId)], (_, doc) => {
      if (!doc) throw new EventNotFoundError(ADAPTER, eventId, 'inbox')
      return { write: change(doc), result: undefined }
    })
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = this.#validate.eventId(eventId)
    return withStorageErrors(ADAPTER, 'inbox.isProcessed', async () => {
      const doc = await this.#events.findOne({ _id: encode(id) }, { projection: { status: 1 } })
      return doc?.status === 'processed'
    })
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.#ctx.clock(), this.#validate.nonNegative(olderThanDays, 'olderThanDays'))
    return withStorageErrors(ADAPTER, 'inbox.cleanup', async () => {
      const filter: Filter<InboxDocument> = { status: 'processed', processedAt: { $lt: cutoff } }
      let deleted = 0
      for (;;) {
        const batch = await this.#events
          .find(filter, { projection: { _id: 1 } })
          .limit(BATCH)
          .toArray()
        if (batch.length === 0) break
        const ids = batch.map((doc) => doc._id)
        const result = await this.#events.deleteMany({ ...filter, _id: { $in: ids } })
        deleted += result.deletedCount
        if (batch.length < BATCH) break
      }
      return deleted
    })
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(this.#ctx.clock(), this.#validate.nonNegative(staleMinutes, 'staleMinutes'))
    return this.#ctx.moveAll<InboxDocument>(
      'inbox',
      'inbox.resetStale',
      {
        status: 'processing',
        $or: [{ claimedAt: { $lt: cutoff } }, { claimedAt: { $exists: false }, receivedAt: { $lt: cutoff } }],
      },
      () => ({
        set: { status: 'failed', errorMessage: encode(PROCESSING_TIMEOUT_MESSAGE) },
        unset: LEASE_FIELDS,
      }),
    )
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return withStorageErrors(ADAPTER, 'inbox.getCountByStatus', async () => {
      const rows = await this.#events
        .aggregate<{ _id: string; count: number }>([{ $group: { _id: '$status', count: { $sum: 1 } } }])
        .toArray()
      return inboxCounts(rows.map((row) => [row._id, row.count] as const))
    })
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.#validate.limit(limit)
    return withStorageErrors(ADAPTER, 'inbox.getFailedEvents', async () => {
      const docs = await this.#events
        .find({ status: 'failed' })
        .sort({ receivedAt: 1, seq: 1 })
        .limit(max)
        .toArray()
      return docs.map(toInboxEvent)
    })
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = this.#validate.eventId(eventId)
    return withStorageErrors(ADAPTER, 'inbox.get', async () => {
      const doc = await this.#events.findOne({ _id: encode(id) })
      return doc ? toInboxEvent(doc) : null
    })
  }
}

/** The document as a compare-and-set write leaves it. */
const applyWrite = (doc: InboxDocument, write: Omit<GuardedWrite, 'id' | 'rev'>): InboxDocument => {
  const next = { ...doc, ...write.set } as InboxDocument & Record<string, unknown>
  for (const field of write.unset ?? []) delete next[field]
  return next
}
