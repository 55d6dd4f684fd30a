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
import type { ClientSession, Collection, Filter } from 'mongodb'
import { type Change, type Decision, LEASE_FIELDS, MongoDbClient } from './client.js'
import { ContentionError } from './errors.js'
import { insertUnordered } from './inserts.js'
import { groupByOrderingKey, KeySequences } from './key-sequences.js'
import { type MongoDbStoreOptions, resolveMongoDbOptions } from './mongodb-options.js'
import { KeyedRedrives, type Redriven, waitingSince } from './redrives.js'
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
/**
 * After a first round, a claim reads this many times the events it still wants: a later
 * round runs only when candidates were lost to other claimers or held by their keys, and
 * behind held keys the claimable heads are usually further back.
 */
const LATER_ROUND_READ_FACTOR = 4
/** Insert rounds of an event that a cleanup deleted between our duplicate key and our read. */
const INSERT_ROUNDS = 3
/**
 * A claim numbers a keyed event left without `keySeq` (its enqueuer died between insert
 * and numbering) once it is this old; a younger one is most likely being numbered by its
 * enqueuer right now, and helping would only race it for the same numbering decision.
 */
export const NUMBER_ORPHANS_AFTER_MS = 2_000

/**
 * The txbox outbox on a MongoDB collection (`<prefix>outbox`, `_id` = event id). `{ tx }`
 * is a `ClientSession` with an active transaction (replica set or sharded cluster only).
 * Every state change is a compare-and-set from the version (`rev`) that was read.
 */
export class MongoDbOutboxRepository extends OutboxRepositoryKernel<ClientSession> {
  readonly #client: MongoDbClient
  readonly #seq = new SequenceClock()
  readonly #keys: KeySequences
  readonly #redrives: KeyedRedrives

  /** @param client internal: the store passes the client its repositories share */
  constructor(
    options: MongoDbStoreOptions,
    client: MongoDbClient = new MongoDbClient(resolveMongoDbOptions(options)),
  ) {
    super(client.settings)
    this.#client = client
    this.#keys = new KeySequences(client)
    this.#redrives = new KeyedRedrives(client, this.#keys)
  }

  get #events(): Collection<OutboxDocument> {
    return this.#client.collection<OutboxDocument>('outbox')
  }

  /** `rev`: one first version for a whole batch, so that its first writes group into one update. */
  #document(params: NewOutboxEventParams, now: Date, rev: string): OutboxDocument {
    const doc: OutboxDocument = {
      _id: encode(params.eventId),
      subject: encode(params.subject),
      payload: encode(params.payload),
      status: 'pending',
      enqueuedAt: now,
      retryCount: 0,
      availableAt: params.availableAt,
      seq: this.#seq.next(now),
      rev,
    }
    if (params.headers !== undefined) doc.headers = encode(params.headers)
    if (params.orderingKey !== undefined) {
      doc.orderingKey = encode(params.orderingKey)
      doc.holding = true
    }
    return doc
  }

  /** One event, read-decide-write. */
  async #updateOne<R>(eventId: string, decide: (doc: OutboxDocument | null) => Decision<R>): Promise<R> {
    const id = encode(eventId)
    const results = await this.#client.updateEach<OutboxDocument, R>('outbox', [id], decide)
    return results.get(id) as R
  }

  /**
   * Each id, read-decide-write; answers the (decoded) ids whose decision was `true`. `status`:
   * the one most of the events are expected in, a hint for the read on FerretDB.
   */
  async #updateEach(
    eventIds: readonly string[],
    decide: (doc: OutboxDocument | null) => Decision<boolean>,
    status?: OutboxDocument['status'],
  ): Promise<string[]> {
    const results = await this.#client.updateEach<OutboxDocument, boolean>(
      'outbox',
      eventIds.map(encode),
      decide,
      status === undefined ? undefined : { status },
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
    const rev = randomUUID()
    const docs = events.map((event) => this.#document(event, now, rev))
    const stored = session
      ? await this.#upsertInTransaction(docs, session)
      : await this.#numbered(await this.#insertNew(docs))
    return new Map(stored.map((doc) => [decode(doc._id), toOutboxEvent(doc)]))
  }

  /**
   * Numbers the keyed events among `docs` that are stored without `keySeq` (ours just
   * inserted, or a duplicate whose enqueuer is still at it or died), and answers the docs
   * with their numbers. Unkeyed docs cost nothing here.
   */
  async #numbered(docs: OutboxDocument[]): Promise<OutboxDocument[]> {
    const unnumbered = docs.filter((doc) => doc.orderingKey !== undefined && doc.keySeq === undefined)
    if (unnumbered.length === 0) return docs
    const keys = [...new Set(unnumbered.map((doc) => doc.orderingKey as string))].sort()
    const numbered = await this.#keys.numberWaiting(keys)
    // Events another numberer set (a claimer, a concurrent enqueue of the same key) are read back.
    const others = unnumbered.filter((doc) => !numbered.has(doc._id)).map((doc) => doc._id)
    const reread = new Map<string, OutboxDocument>()
    if (others.length > 0)
      for (const doc of await this.#events.find({ _id: { $in: others } }).toArray()) reread.set(doc._id, doc)
    return docs.map((doc) => {
      const keySeq = numbered.get(doc._id)
      if (keySeq !== undefined) return { ...doc, keySeq }
      return reread.get(doc._id) ?? doc
    })
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
    await this.#numberInSession(docs, session)
    await this.#events.bulkWrite(
      docs.map(({ _id, ...fields }) => ({
        updateOne: { filter: { _id }, update: { $setOnInsert: fields }, upsert: true },
      })),
      { session, ordered: true },
    )
    return this.#events.find({ _id: { $in: docs.map((doc) => doc._id) } }, { session }).toArray()
  }

  /**
   * Gives the keyed docs their numbers from the key counters, in the session: the counter
   * stays write-locked until the transaction ends, so numbers follow commit order. Keys in
   * sorted order, the batch's events of a key in input order. A doc whose id turns out to
   * be stored already leaves its number unused (a gap).
   */
  async #numberInSession(docs: readonly OutboxDocument[], session: ClientSession): Promise<void> {
    const byKey = groupByOrderingKey(docs)
    for (const key of [...byKey.keys()].sort()) {
      const group = byKey.get(key) ?? []
      const first = await this.#keys.reserveInSession(
        key,
        group.map((doc) => doc._id),
        session,
      )
      for (const [index, doc] of group.entries()) doc.keySeq = first + index
    }
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

  protected async claimEvents({
    now,
    leaseUntil,
    workerId,
    limit,
    deadLettersBlockKeys,
  }: ClaimRequest): Promise<OutboxEvent[]> {
    const claimedBy = encode(workerId)
    const claimed: OutboxDocument[] = []
    // Keys already decided in this claim (their head taken, or held): later rounds skip them.
    const decidedKeys = new Set<string>()
    for (let round = 0; round < CLAIM_ROUNDS && claimed.length < limit; round++) {
      const wanted = limit - claimed.length
      const branches: Filter<OutboxDocument>[] = [
        { status: 'pending', availableAt: { $lte: now } },
        { status: 'publishing', leaseUntil: { $lte: now } },
      ]
      if (decidedKeys.size > 0) for (const branch of branches) branch.orderingKey = { $nin: [...decidedKeys] }
      const read = round === 0 ? wanted : wanted * LATER_ROUND_READ_FACTOR
      const candidates = await this.#readEach(branches, read)
      if (candidates.length === 0) break
      const heads = await this.#headsOnly(candidates, now, deadLettersBlockKeys, decidedKeys)
      const { numberedOrphans } = heads
      const claimable = heads.claimable.sort(bySeq)
      // A wider read may find more than is wanted: the keys of heads left for later stay open.
      for (const doc of claimable.splice(wanted))
        if (doc.orderingKey !== undefined) decidedKeys.delete(doc.orderingKey)
      const set = { status: 'publishing' as const, claimedBy, claimedAt: now, leaseUntil }
      const applied = await this.#client.compareAndSet(
        'outbox',
        claimable.map((doc) => ({ id: doc._id, rev: doc.rev, set })),
      )
      for (const doc of claimable) if (applied.has(doc._id)) claimed.push({ ...doc, ...set })
      // Fewer candidates than asked for: there are no more to read, unless a write lost
      // (re-read: the event may be claimable still) or orphans were just numbered.
      const readAll = candidates.length < read
      if (readAll && applied.size === claimable.length && !numberedOrphans) break
    }
    return claimed.sort(bySeq).map(toOutboxEvent)
  }

  /**
   * The documents matching any of `branches` (each one status, by equality), the first
   * `limit` in enqueue order. On FerretDB v1 one query per branch, in parallel: it hands a
   * top-level status equality to its backend (an index on a table of mostly sent events) and
   * scans the whole collection for an `$or` or a `$in` (100 pending of 3,000: 60 ms vs 1.3 s,
   * load 17). MongoDB serves the `$or` from its indexes in one query.
   */
  async #readEach(branches: readonly Filter<OutboxDocument>[], limit: number): Promise<OutboxDocument[]> {
    const query = (filter: Filter<OutboxDocument>) =>
      this.#events.find(filter).sort({ seq: 1 }).limit(limit).toArray()
    if (!(await this.#client.runtime()).ferretdb) return query({ $or: [...branches] })
    return (await Promise.all(branches.map(query))).flat().sort(bySeq).slice(0, limit)
  }

  /**
   * The events of `keys` in `statuses` (the head fields only), read for the head check: ONE
   * query for every event of the keys that is not `sent` (`holding: true`), statuses
   * filtered here. One query is one snapshot on FerretDB, and on MongoDB one scan of the
   * `{ orderingKey, holding }` index, whose entry of an event does not change while it moves
   * between `pending`, `publishing` and `failed`: an event moving either way while the claim
   * reads (a claim, a failure, a retry, resetStale) is seen once, in one of its statuses.
   * FerretDB v1 hands the boolean equality to its backend as it did the status one. Reads of
   * one status each (the previous release on FerretDB) missed an event that moved between two
   * of them, and the key's next event was claimed beside it. The `holding` field is set at
   * insert and removed only by {@link fencedWrite}'s `sent`.
   */
  async #holders(
    keys: readonly string[],
    statuses: readonly OutboxDocument['status'][],
  ): Promise<OutboxDocument[]> {
    const holders = await this.#events
      .find({ holding: true, orderingKey: { $in: [...keys] } }, { projection: HEAD_FIELDS })
      .toArray()
    return holders.filter((holder) => statuses.includes(holder.status))
  }

  /**
   * The events a claim may take from `candidates`: every unkeyed one, and per key only its
   * head — its `publishing` event (live or expired lease) if it has one, else the
   * lowest-`keySeq` event that is `pending` (due or not) or, if dead letters block, `failed`
   * — when that head is itself claimable now. The head may be a candidate or an event further back in enqueue order (events of
   * several instances, or a transaction that committed late, need not be in `keySeq` order
   * by `seq`), so it is read with the candidates' lower holders. A key with an unnumbered
   * holder is held (its number may still come out lower). Adds each key it looked at to
   * `decidedKeys`, except keys whose orphans it just numbered.
   *
   * Between this read and the claim's compare-and-set no event of the key can get a lower
   * number (numbers below the head's were taken for events already inserted, hence seen
   * here) nor start holding the key again below the head: `sent` is final, and a `failed`
   * one returns to `pending` only by a redrive, unnumbered (so it holds the key for every
   * claim that reads after it) until it is placed again; it gets its old number back only
   * after the key's pending events a claim like this one may take got new versions (this
   * claim's compare-and-set then fails), and only if no later event of its key is
   * `publishing`, else a number at the end of its key (redrives.ts).
   */
  async #headsOnly(
    candidates: readonly OutboxDocument[],
    now: Date,
    deadLettersBlockKeys: boolean,
    decidedKeys: Set<string>,
  ): Promise<{ claimable: OutboxDocument[]; numberedOrphans: boolean }> {
    const heads = new Map<string, OutboxDocument>()
    const held = new Set<string>()
    const orphanKeys = new Set<string>()
    const orphanBefore = now.getTime() - NUMBER_ORPHANS_AFTER_MS
    const noteUnnumbered = (key: string, doc: OutboxDocument) => {
      held.add(key)
      if (waitingSince(doc).getTime() <= orphanBefore) orphanKeys.add(key)
    }
    for (const doc of candidates) {
      if (doc.orderingKey === undefined) continue
      decidedKeys.add(doc.orderingKey)
      if (doc.keySeq === undefined) {
        noteUnnumbered(doc.orderingKey, doc)
        continue
      }
      const head = heads.get(doc.orderingKey)
      if (head?.keySeq === undefined || doc.keySeq < head.keySeq) heads.set(doc.orderingKey, doc)
    }
    for (const key of held) heads.delete(key)
    if (heads.size > 0) {
      const holding: OutboxDocument['status'][] = deadLettersBlockKeys
        ? ['pending', 'publishing', 'failed']
        : ['pending', 'publishing']
      // Every holder of the keys, filtered below: FerretDB v1 tests an `$or` of one branch per
      // key against every document (seconds for 100 keys), a flat `$in` in milliseconds.
      const holders = await this.#holders([...heads.keys()], holding)
      // A `publishing` event of the key (any keySeq; the lowest when several are) is its only
      // claimable event: once a redrive has placed its dead letter, none sits below it, so
      // this costs nothing more (the read above returns every holder of the keys); it keeps
      // the rule if a claim whose read was not a snapshot ran past a redrive's fence (see
      // redrives.ts).
      const lower = holders.filter((holder) => {
        const head = holder.orderingKey === undefined ? undefined : heads.get(holder.orderingKey)
        return (
          head?.keySeq !== undefined &&
          holder._id !== head._id &&
          (holder.keySeq === undefined ||
            holder.keySeq < head.keySeq ||
            // A publishing holder above a publishing head is not its head: the lowest is.
            (holder.status === 'publishing' && head.status !== 'publishing'))
        )
      })
      const lowest = new Map<string, OutboxDocument>()
      for (const holder of lower) {
        if (holder.orderingKey === undefined) continue
        if (holder.keySeq === undefined) {
          noteUnnumbered(holder.orderingKey, holder)
          continue
        }
        const current = lowest.get(holder.orderingKey)
        if (current?.keySeq === undefined || before(holder, current)) lowest.set(holder.orderingKey, holder)
      }
      // The lowest holder below a candidate is its key's head: claim it if it is claimable.
      const behind: string[] = []
      for (const [key, holder] of lowest) {
        if (!held.has(key) && claimableNow(holder, now)) {
          heads.set(key, holder)
          behind.push(holder._id)
        } else heads.delete(key)
      }
      for (const key of held) heads.delete(key)
      // A head found behind its candidate was read with the head fields only: read it whole.
      if (behind.length > 0) {
        const whole = new Map(
          (await this.#events.find({ _id: { $in: behind } }).toArray()).map((doc) => [doc._id, doc]),
        )
        for (const [key, head] of heads) {
          if (!behind.includes(head._id)) continue
          // Only the version that was checked: a changed head is left for a later round.
          const doc = whole.get(head._id)
          if (doc?.rev === head.rev) heads.set(key, doc)
          else heads.delete(key)
        }
      }
    }
    let numberedOrphans = false
    if (orphanKeys.size > 0) {
      for (const key of await this.#keys.numberOnce([...orphanKeys])) {
        decidedKeys.delete(key)
        numberedOrphans = true
      }
    }
    const claimable = [...candidates.filter((doc) => doc.orderingKey === undefined), ...heads.values()]
    return { claimable, numberedOrphans }
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
    return this.#updateEach(
      eventIds,
      (doc) =>
        !doc || (workerId !== undefined && !holds(doc, workerId))
          ? { result: false }
          : { write: fencedWrite(doc, { status: 'sent', sentAt: now }), result: true },
      'publishing',
    )
  }

  /**
   * A keyed dead letter leaves `failed` without its `keySeq` (holding its key in every claim
   * from this write on) and is then placed in its key again: see redrives.ts.
   */
  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const keyed = new Map<string, Redriven>()
    const outcome = await this.#client.updateEach<OutboxDocument, 'missing' | 'moved' | 'ignored'>(
      'outbox',
      eventIds.map(encode),
      (doc) => {
        if (!doc) return { result: 'missing' }
        if (doc.status !== 'failed') return { result: 'ignored' }
        const set = { status: 'pending', availableAt: now, retryCount: 0 }
        if (doc.orderingKey === undefined || doc.keySeq === undefined)
          return { write: { set, unset: LEASE_FIELDS }, result: 'moved' }
        keyed.set(doc._id, { id: doc._id, key: doc.orderingKey, keySeq: doc.keySeq })
        return {
          write: { set: { ...set, redrivenFrom: doc.keySeq }, unset: [...LEASE_FIELDS, 'keySeq'] },
          result: 'moved',
        }
      },
    )
    await this.#redrives.place([...keyed.values()].filter((event) => outcome.get(event.id) === 'moved'))
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

/** What the head check needs of a key's holders (the rest is read only for a head it claims). */
const HEAD_FIELDS = {
  _id: 1,
  orderingKey: 1,
  keySeq: 1,
  status: 1,
  availableAt: 1,
  leaseUntil: 1,
  enqueuedAt: 1,
  redrivenFrom: 1,
  seq: 1,
  rev: 1,
} as const

/** Which of two holders of a key is its head: a `publishing` one, else the lower `keySeq`. */
const before = (a: OutboxDocument, b: OutboxDocument): boolean =>
  a.status === 'publishing' || b.status === 'publishing'
    ? a.status === 'publishing' && (b.status !== 'publishing' || (a.keySeq ?? 0) < (b.keySeq ?? 0))
    : (a.keySeq ?? 0) < (b.keySeq ?? 0)

/** Enqueue order. */
const bySeq = (a: OutboxDocument, b: OutboxDocument): number => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)

/** `pending` and due, or `publishing` with an expired lease: what a claim may take. */
const claimableNow = (doc: OutboxDocument, now: Date): boolean =>
  doc.status === 'pending'
    ? doc.availableAt.getTime() <= now.getTime()
    : doc.status === 'publishing' &&
      doc.leaseUntil instanceof Date &&
      doc.leaseUntil.getTime() <= now.getTime()

/** The worker holds the claim iff the event is publishing and claimed by it. */
const holds = (doc: OutboxDocument, workerId: string): boolean =>
  doc.status === 'publishing' && doc.claimedBy === encode(workerId)

/** What a fenced change writes to the document as it was read; the lease is cleared. */
const fencedWrite = (doc: OutboxDocument, change: OutboxChange): Change => {
  // The only write that makes an event `sent`: it stops holding its key in the same write.
  if (change.status === 'sent')
    return { set: { status: 'sent', sentAt: change.sentAt }, unset: [...LEASE_FIELDS, 'holding'] }
  const failure = { errorMessage: encode(change.errorMessage), retryCount: doc.retryCount + 1 }
  if (change.status === 'failed') return { set: { status: 'failed', ...failure }, unset: LEASE_FIELDS }
  return { set: { status: 'pending', ...failure, availableAt: change.availableAt }, unset: LEASE_FIELDS }
}
