import { randomUUID } from 'node:crypto'
import {
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  type RequeueOutcome,
  type StatusCountRows,
} from '@txbox/core'
import type { ClientSession, Collection } from 'mongodb'
import { type Change, type Decision, LEASE_FIELDS, MongoDbClient } from './client.js'
import { ContentionError } from './errors.js'
import { insertUnordered } from './inserts.js'
import { type MongoDbStoreOptions, resolveMongoDbOptions } from './mongodb-options.js'
import {
  assertDocumentFits,
  decode,
  encode,
  type OutboxDocument,
  SequenceClock,
  toOutboxEvent,
} from './rows.js'

/** Claim rounds when other claimers took some of the candidates. */
const CLAIM_ROUNDS = 8
/** Insert rounds of an event that a cleanup deleted between our duplicate key and our read. */
const INSERT_ROUNDS = 3

/**
 * The txbox outbox on a MongoDB collection (`<prefix>outbox`, `_id` = event id). `{ tx }`
 * is a `ClientSession` with an active transaction (replica set or sharded cluster only).
 * Every state change is a compare-and-set from the version (`rev`) that was read.
 */
export class MongoDbOutboxRepository extends OutboxRepositoryKernel<ClientSession> {
  readonly #client: MongoDbClient
  readonly #seq = new SequenceClock()

  /** @param client internal: the store passes the client its repositories share */
  constructor(
    options: MongoDbStoreOptions,
    client: MongoDbClient = new MongoDbClient(resolveMongoDbOptions(options)),
  ) {
    super(client.settings)
    this.#client = client
  }

  get #events(): Collection<OutboxDocument> {
    return this.#client.collection<OutboxDocument>('outbox')
  }

  #document(params: NewOutboxEventParams, now: Date): OutboxDocument {
    const doc: OutboxDocument = {
      _id: encode(params.eventId),
      subject: encode(params.subject),
      payload: encode(params.payload),
      status: 'pending',
      enqueuedAt: now,
      retryCount: 0,
      availableAt: params.availableAt,
      seq: this.#seq.next(now),
      rev: randomUUID(),
    }
    if (params.headers !== undefined) doc.headers = encode(params.headers)
    return doc
  }

  /** One event, read-decide-write. */
  async #updateOne<R>(eventId: string, decide: (doc: OutboxDocument | null) => Decision<R>): Promise<R> {
    const id = encode(eventId)
    const results = await this.#client.updateEach<OutboxDocument, R>('outbox', [id], decide)
    return results.get(id) as R
  }

  /** Each id, read-decide-write; answers the (decoded) ids whose decision was `true`. */
  async #updateEach(
    eventIds: readonly string[],
    decide: (doc: OutboxDocument | null) => Decision<boolean>,
  ): Promise<string[]> {
    const results = await this.#client.updateEach<OutboxDocument, boolean>(
      'outbox',
      eventIds.map(encode),
      decide,
    )
    return [...results].filter(([, yes]) => yes).map(([id]) => decode(id))
  }

  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: ClientSession | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    for (const event of events) assertDocumentFits(event)
    const session = await this.#client.session(tx)
    const docs = events.map((event) => this.#document(event, now))
    const stored = session ? await this.#upsertInTransaction(docs, session) : await this.#insertNew(docs)
    return new Map(stored.map((doc) => [decode(doc._id), toOutboxEvent(doc)]))
  }

  /** The unique `_id` decides: one insert wins, every other caller reads what it stored. */
  async #insertNew(docs: readonly OutboxDocument[]): Promise<OutboxDocument[]> {
    const stored = new Map<string, OutboxDocument>()
    let pending = docs
    for (let round = 1; pending.length > 0; round++) {
      if (round > INSERT_ROUNDS)
        throw new ContentionError('the event kept disappearing after a duplicate key')
      const existing = await insertUnordered(this.#events, pending)
      for (const [index, doc] of pending.entries()) if (!existing.has(index)) stored.set(doc._id, doc)
      const lookup = pending.filter((_, index) => existing.has(index))
      if (lookup.length > 0) {
        for (const doc of await this.#events.find({ _id: { $in: lookup.map((doc) => doc._id) } }).toArray())
          stored.set(doc._id, doc)
      }
      // Deleted between our insert and our read (cleanup): insert again.
      pending = lookup.filter((doc) => !stored.has(doc._id))
    }
    return [...stored.values()]
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
    return this.#events.find({ _id: { $in: docs.map((doc) => doc._id) } }, { session }).toArray()
  }

  protected setPublishing(eventId: string, now: Date): Promise<boolean> {
    return this.#updateOne(eventId, (doc) =>
      doc ? { write: { set: { status: 'publishing', claimedAt: now } }, result: true } : { result: false },
    )
  }

  protected applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return this.#updateOne<FencedOutcome>(eventId, (doc) => {
      if (!doc) return { result: 'missing' }
      if (workerId !== undefined && !holds(doc, workerId)) return { result: 'lost' }
      return { write: fencedWrite(doc, change), result: 'applied' }
    })
  }

  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    const docs = await this.#events
      .find({ status: 'pending', availableAt: { $lte: now } })
      .sort({ seq: 1 })
      .limit(limit)
      .toArray()
    return docs.map(toOutboxEvent)
  }

  protected deleteSent(cutoff: Date, limit: number): Promise<number> {
    return this.#client.deleteBatch<OutboxDocument>(
      'outbox',
      { status: 'sent', sentAt: { $lt: cutoff } },
      limit,
    )
  }

  protected resetPublishing(cutoff: Date, _now: Date, limit: number): Promise<number> {
    return this.#client.moveMatching<OutboxDocument>(
      'outbox',
      { status: 'publishing', claimedAt: { $lt: cutoff } },
      { set: { status: 'pending' }, unset: LEASE_FIELDS },
      limit,
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.#client.countByStatus('outbox')
  }

  protected async claimEvents({ now, leaseUntil, workerId, limit }: ClaimRequest): Promise<OutboxEvent[]> {
    const claimedBy = encode(workerId)
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
      const applied = await this.#client.compareAndSet(
        'outbox',
        candidates.map((doc) => ({ id: doc._id, rev: doc.rev, set })),
      )
      for (const doc of candidates) if (applied.has(doc._id)) claimed.push({ ...doc, ...set })
      if (applied.size === candidates.length) break
    }
    return claimed.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)).map(toOutboxEvent)
  }

  protected renewLeases(eventIds: readonly string[], workerId: string, leaseUntil: Date): Promise<string[]> {
    return this.#updateEach(eventIds, (doc) =>
      doc && holds(doc, workerId) ? { write: { set: { leaseUntil } }, result: true } : { result: false },
    )
  }

  protected markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    return this.#updateEach(eventIds, (doc) =>
      !doc || (workerId !== undefined && !holds(doc, workerId))
        ? { result: false }
        : { write: fencedWrite(doc, { status: 'sent', sentAt: now }), result: true },
    )
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const outcome = await this.#client.updateEach<OutboxDocument, 'missing' | 'moved' | 'ignored'>(
      'outbox',
      eventIds.map(encode),
      (doc) => {
        if (!doc) return { result: 'missing' }
        if (doc.status !== 'failed') return { result: 'ignored' }
        return {
          write: { set: { status: 'pending', availableAt: now, retryCount: 0 }, unset: LEASE_FIELDS },
          result: 'moved',
        }
      },
    )
    const results = [...outcome]
    return {
      requeued: results.filter(([, result]) => result === 'moved').length,
      missing: results.filter(([, result]) => result === 'missing').map(([id]) => decode(id)),
    }
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    const docs = await this.#events.find({ status: 'failed' }).sort({ seq: 1 }).limit(limit).toArray()
    return docs.map(toOutboxEvent)
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const doc = await this.#events.findOne({ _id: encode(eventId) })
    return doc ? toOutboxEvent(doc) : null
  }
}

/** The worker holds the claim iff the event is publishing and claimed by it. */
const holds = (doc: OutboxDocument, workerId: string): boolean =>
  doc.status === 'publishing' && doc.claimedBy === encode(workerId)

/** What a fenced change writes to the document as it was read; the lease is cleared. */
const fencedWrite = (doc: OutboxDocument, change: OutboxChange): Change => {
  if (change.status === 'sent') return { set: { status: 'sent', sentAt: change.sentAt }, unset: LEASE_FIELDS }
  const failure = { errorMessage: encode(change.errorMessage), retryCount: doc.retryCount + 1 }
  if (change.status === 'failed') return { set: { status: 'failed', ...failure }, unset: LEASE_FIELDS }
  return { set: { status: 'pending', ...failure, availableAt: change.availableAt }, unset: LEASE_FIELDS }
}
