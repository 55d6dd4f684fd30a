import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
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
import type { ClientSession, Collection } from 'mongodb'
import { type Change, LEASE_FIELDS, MongoDbClient } from './client.js'
import { ContentionError } from './errors.js'
import { isDuplicateKey } from './inserts.js'
import { type MongoDbStoreOptions, resolveMongoDbOptions } from './mongodb-options.js'
import { assertDocumentFits, encode, type InboxDocument, SequenceClock, toInboxEvent } from './rows.js'

/** Rounds of a receive (findOrCreate / claim) under contention before giving up. */
const MAX_ROUNDS = 200

/**
 * The fence of the inbox marks, as the outbox's: `workerId` holds the claim while the event
 * is `processing` and claimed by it (an expired lease nobody took over still counts).
 */
const held = (doc: InboxDocument, workerId: string | undefined): boolean =>
  workerId === undefined || (doc.status === 'processing' && doc.claimedBy === encode(workerId))

/** A claim's lease, when the delivery is a claim. */
type Lease = Pick<InboxClaimRequest, 'workerId' | 'leaseUntil'>

/**
 * The txbox inbox on a MongoDB collection (`<prefix>inbox`, `_id` = event id). The event id
 * alone is the identity: `(stream, streamSeq)` is recorded, never used to merge two ids (a
 * JetStream stream re-created under its name restarts at sequence 1), and a redelivery of a
 * stored id at a new position keeps the position recorded first.
 */
export class MongoDbInboxRepository extends InboxRepositoryKernel<ClientSession> {
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

  get #events(): Collection<InboxDocument> {
    return this.#client.collection<InboxDocument>('inbox')
  }

  protected async recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    return (await this.#receive(params, now, undefined)).event
  }

  protected claimDelivery({
    params,
    now,
    workerId,
    leaseUntil,
  }: InboxClaimRequest): Promise<InboxClaimResult> {
    return this.#receive(params, now, { workerId, leaseUntil })
  }

  /**
   * One delivery, as one atomic step: either the insert of a new event (the unique `_id`
   * lets exactly one concurrent caller create it), or one compare-and-set of the stored
   * event from the version that was read (deliveries + 1 and, for a claim, the lease). A
   * caller that loses either race reads again and retries, so each of N concurrent
   * deliveries is counted exactly once and at most one of them gets `shouldProcess: true`.
   */
  async #receive(params: InboxParams, now: Date, lease: Lease | undefined): Promise<InboxClaimResult> {
    assertDocumentFits(params)
    // Most deliveries are new: the insert comes first, and only a duplicate key reads.
    const doc = this.#document(params, now, lease)
    if (await this.#create(doc)) return { event: toInboxEvent(doc), shouldProcess: true }
    for (let round = 1; round <= MAX_ROUNDS; round++) {
      if (round > 2) await sleep(Math.random() * Math.min(20, round))
      const stored = await this.#events.findOne({ _id: encode(params.eventId) })
      if (stored === null) {
        // Deleted (cleanup) since the duplicate key: insert again.
        if (await this.#create(doc)) return { event: toInboxEvent(doc), shouldProcess: true }
        continue
      }
      const { write, shouldProcess } = redelivery(stored, now, lease)
      const applied = await this.#client.compareAndSet('inbox', [
        { id: stored._id, rev: stored.rev, ...write },
      ])
      if (applied.size === 1) return { event: toInboxEvent(applyWrite(stored, write)), shouldProcess }
    }
    throw new ContentionError('the event kept changing under contention')
  }

  #document(params: InboxParams, now: Date, lease: Lease | undefined): InboxDocument {
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
      doc.leaseUntil = lease.leaseUntil
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

  /**
   * One event, read-decide-write (compare-and-set on its version, behind the write guard
   * where the server's update is not atomic): applied only while `holds` accepts the stored
   * document, decided again if another writer changed it in between.
   */
  async #change(
    eventId: string,
    change: Change,
    holds: (doc: InboxDocument) => boolean,
  ): Promise<FencedOutcome> {
    const id = encode(eventId)
    const results = await this.#client.updateEach<InboxDocument, FencedOutcome>('inbox', [id], (doc) => {
      if (!doc) return { result: 'missing' }
      return holds(doc) ? { write: change, result: 'applied' } : { result: 'lost' }
    })
    return results.get(id) as FencedOutcome
  }

  protected async setProcessed(
    eventId: string,
    now: Date,
    tx: ClientSession | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const session = await this.#client.session(tx)
    const set = { status: 'processed' as const, processedAt: now }
    if (!session) return this.#change(eventId, { set, unset: LEASE_FIELDS }, (doc) => held(doc, workerId))
    // Inside the caller's transaction the fence is the update's filter: the server isolates
    // the read and the write, and a concurrent writer that changed the document since this
    // transaction's snapshot is a write conflict, so a taken-over event never commits twice.
    const id = encode(eventId)
    const fence = workerId === undefined ? {} : { status: 'processing' as const, claimedBy: encode(workerId) }
    const result = await this.#events.updateOne(
      { _id: id, ...fence },
      { $set: { ...set, rev: randomUUID() }, $unset: { claimedBy: '', leaseUntil: '' } },
      { session },
    )
    if (result.matchedCount === 1) return 'applied'
    const stored = await this.#events.findOne({ _id: id }, { session, projection: { _id: 1 } })
    return stored ? 'lost' : 'missing'
  }

  /** Unfenced, a processed event is final: failing it would make it claimable again. */
  protected setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return this.#change(
      eventId,
      { set: { status: 'failed', errorMessage: encode(errorMessage) }, unset: LEASE_FIELDS },
      (doc) => held(doc, workerId) && doc.status !== 'processed',
    )
  }

  protected deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    return this.#client.deleteBatch<InboxDocument>(
      'inbox',
      { status: 'processed', processedAt: { $lt: cutoff } },
      limit,
    )
  }

  protected failStale(cutoff: Date, errorMessage: string, limit: number): Promise<number> {
    return this.#client.moveMatching<InboxDocument>(
      'inbox',
      {
        status: 'processing',
        $or: [{ claimedAt: { $lt: cutoff } }, { claimedAt: { $exists: false }, receivedAt: { $lt: cutoff } }],
      },
      { set: { status: 'failed', errorMessage: encode(errorMessage) }, unset: LEASE_FIELDS },
      limit,
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.#client.countByStatus('inbox')
  }

  protected async selectFailed(limit: number): Promise<InboxEvent[]> {
    const docs = await this.#events
      .find({ status: 'failed' })
      .sort({ receivedAt: 1, seq: 1 })
      .limit(limit)
      .toArray()
    return docs.map(toInboxEvent)
  }

  protected async read(eventId: string): Promise<InboxEvent | null> {
    const doc = await this.#events.findOne({ _id: encode(eventId) })
    return doc ? toInboxEvent(doc) : null
  }

  protected override async readStatus(eventId: string): Promise<InboxStatus | undefined> {
    const doc = await this.#events.findOne({ _id: encode(eventId) }, { projection: { status: 1 } })
    return doc?.status
  }
}

/** What a redelivery of a stored event writes: deliveries + 1 and, when the claim is free, the lease. */
const redelivery = (
  stored: InboxDocument,
  now: Date,
  lease: Lease | undefined,
): { write: Change; shouldProcess: boolean } => {
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
        leaseUntil: lease.leaseUntil,
      },
      unset: ['errorMessage'],
    },
    shouldProcess: true,
  }
}

/** The document as a compare-and-set write leaves it. */
const applyWrite = (doc: InboxDocument, write: Change): InboxDocument => {
  const next = { ...doc, ...write.set } as InboxDocument & Record<string, unknown>
  for (const field of write.unset ?? []) delete next[field]
  return next
}
