import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type AmbientTransactions,
  type Clock,
  describeHandle,
  type RepositorySettings,
  runStorageOperation,
  ValidationError,
} from '@txbox/core'
import type { ClientSession, Collection, Db, Document, Filter } from 'mongodb'
import { ADAPTER, ContentionError, classifyMongoDbError } from './errors.js'
import { type LockDocument, VersionLocks } from './ferretdb.js'
import type { CollectionNames, ResolvedMongoDbOptions } from './mongodb-options.js'
import { detectServer, type ServerRuntime } from './server.js'

/** A write that applies only if the document still has the version `rev` it was read with. */
interface GuardedWrite {
  /** The stored `_id`. */
  readonly id: string
  /** The version the decision was made on. */
  readonly rev: string
  readonly set: Document
  readonly unset?: readonly string[] | undefined
}

/** A change to a document, without the document it applies to. */
export type Change = Omit<GuardedWrite, 'id' | 'rev'>

/** How a document that was read is to be changed, and what to answer for it. */
export interface Decision<R> {
  readonly write?: Change | undefined
  readonly result: R
}

type Kind = 'outbox' | 'inbox'

/** Rounds of a read-decide-write loop before giving up on a document under contention. */
const MAX_ATTEMPTS = 200
/** Documents per compare-and-set updateMany. */
const OR_CHUNK = 500

/**
 * Documents per cleanup / resetStale step, below core's SWEEP_BATCH: on FerretDB v1 every
 * moved document is its own write (about 5 ms), and a step holds the version locks of all
 * its documents until its last update; 10,000 would outlive the locks' 30 s TTL, after
 * which another writer takes a lock as abandoned while it is still in use.
 */
const SWEEP_BATCH = 1_000

/** The fields of a claim: cleared whenever an event leaves `publishing` / `processing`. */
export const LEASE_FIELDS = ['claimedBy', 'leaseUntil'] as const

/**
 * How the repositories of one store talk to the server: the collections, the server
 * probe, the `{ tx }` checks and the compare-and-set write path every state change takes.
 */
export class MongoDbClient {
  readonly db: Db
  readonly names: CollectionNames
  readonly prefix: string
  readonly clock: Clock
  readonly maxEventBytes: number
  readonly #options: ResolvedMongoDbOptions
  readonly #locks: VersionLocks
  #runtime: Promise<ServerRuntime> | undefined
  /** The probe's answer once it arrived. */
  detected: ServerRuntime | undefined
  /** The store's `store.transaction`, whose open session `{ tx }`-less writes join (set by `createMongoDbStore`). */
  ambient: AmbientTransactions<ClientSession> | undefined

  constructor(options: ResolvedMongoDbOptions) {
    this.#options = options
    this.db = options.db
    this.names = options.names
    this.prefix = options.prefix
    this.clock = options.clock
    this.maxEventBytes = options.maxEventBytes
    this.#locks = new VersionLocks(this.collection<LockDocument>('locks'), (kind) =>
      this.db.collection(this.names[kind as Kind]),
    )
  }

  /** What both repository kernels need: the adapter's name, clock, classify and `{ tx }` check. */
  get settings(): RepositorySettings<ClientSession> {
    return {
      adapter: ADAPTER,
      clock: this.clock,
      maxEventBytes: this.maxEventBytes,
      classify: classifyMongoDbError,
      transaction: (tx) => this.#checkSession(tx),
      sweepBatch: SWEEP_BATCH,
      ambient: this.ambient,
      orderingKeys: true,
    }
  }

  /**
   * The part of the `{ tx }` check that needs no I/O: the handle must be a live
   * ClientSession of the MongoClient this store's `db` belongs to (a Mongoose session is
   * one: Mongoose hands out the driver's sessions). Whether the server has transactions
   * is checked by {@link session}.
   */
  #checkSession(tx: ClientSession | undefined): ClientSession | undefined {
    if (tx === undefined) return undefined
    const session = tx as Partial<ClientSession> | null
    if (typeof session !== 'object' || session === null || typeof session.inTransaction !== 'function') {
      throw new ValidationError(
        ADAPTER,
        `tx must be a mongodb ClientSession (client.startSession(), or Mongoose's connection.startSession() / connection.transaction()); got ${describeHandle(session)}`,
      )
    }
    if (session.hasEnded === true) {
      throw new ValidationError(
        ADAPTER,
        'tx is a ClientSession that has already ended (endSession() was called)',
      )
    }
    // `clientOptions` is the options object of the MongoClient that started the session.
    if (session.clientOptions !== this.db.client.options) {
      throw new ValidationError(
        ADAPTER,
        "tx is a ClientSession of another MongoClient than the store's: a transaction cannot span two clients. Start the session on the client whose Db the store was created on (with Mongoose: create the store on connection.db, and use that connection's sessions)",
      )
    }
    return tx
  }

  collection<T extends Document>(kind: keyof CollectionNames): Collection<T> {
    return this.db.collection<T>(this.names[kind])
  }

  /** Detects the server once (hello + buildInfo) and caches the answer; a failed probe is retried next time. */
  runtime(): Promise<ServerRuntime> {
    this.#runtime ??= runStorageOperation(ADAPTER, 'detectCapabilities', classifyMongoDbError, () =>
      detectServer(this.db, this.#options.writeGuard),
    ).then(
      (runtime) => {
        this.detected = runtime
        return runtime
      },
      (error: unknown) => {
        this.#runtime = undefined
        throw error
      },
    )
    return this.#runtime
  }

  /**
   * The part of the `{ tx }` check that needs the server: it must have transactions, and
   * the session must be in one. Returns undefined when no `tx` was given.
   */
  async session(tx: ClientSession | undefined): Promise<ClientSession | undefined> {
    if (tx === undefined) return undefined
    const runtime = await this.runtime()
    if (!runtime.transactions) {
      throw new ValidationError(
        ADAPTER,
        `{ tx } is not supported by this server: ${runtime.transactionsNote ?? 'it has no transactions'}. Write without tx (the event is then not atomic with your business write).`,
      )
    }
    if (!tx.inTransaction()) {
      throw new ValidationError(
        ADAPTER,
        'tx must be a ClientSession with an active transaction (startTransaction() or withTransaction())',
      )
    }
    return tx
  }

  /**
   * Applies each write only if its document still has the version it was read with, and
   * gives each applied document a new version. Returns the ids applied.
   *
   * The filter `{ _id, rev }` and the update are one atomic step per document on MongoDB,
   * so of two writers that read the same version exactly one matches. Where the server's
   * update is not atomic (FerretDB v1), the version locks of ferretdb.ts come first.
   */
  async compareAndSet(kind: Kind, writes: readonly GuardedWrite[]): Promise<Set<string>> {
    if (writes.length === 0) return new Set()
    const { writeGuard } = await this.runtime()
    if (writeGuard === 'lock-collection')
      return this.#locks.guard(kind, writes, (granted) => this.#applyVersioned(kind, granted, true))
    return this.#applyVersioned(kind, writes, false)
  }

  /** `byVersion`: one `{ _id: { $in }, rev }` per version instead of one `$or` (see below). */
  async #applyVersioned(
    kind: Kind,
    writes: readonly GuardedWrite[],
    byVersion: boolean,
  ): Promise<Set<string>> {
    const collection = this.collection<{ _id: string; rev: string }>(kind)
    const rev = randomUUID()
    const update = (write: GuardedWrite): Document => {
      const change: Document = { $set: { ...write.set, rev } }
      if (write.unset && write.unset.length > 0)
        change.$unset = Object.fromEntries(write.unset.map((field) => [field, '']))
      return change
    }
    // Writes that make the same change go out as one filtered updateMany, never as a
    // multi-statement bulkWrite: FerretDB v1.24 keeps a read cursor (and a SQLite
    // connection) open per statement until the whole command ends, and a command of ~100
    // statements exhausts its pool and hangs the server. MongoDB serves an `$or` of
    // `{ _id, rev }` from the `_id` index; FerretDB v1 tests each of its branches against
    // every document of the collection (6.5 s for 100 of 3,000 documents, load 23), so
    // there the writes are grouped by version too and filtered `{ _id: { $in }, rev }`
    // (0.1 s): documents written together share their new version, and a batch is inserted
    // with one, so a group is usually a whole batch.
    const groups = new Map<string, GuardedWrite[]>()
    for (const write of writes) {
      const key = JSON.stringify([byVersion ? write.rev : '', write.set, write.unset ?? []])
      const group = groups.get(key)
      if (group) group.push(write)
      else groups.set(key, [write])
    }
    const applied = new Set<string>()
    for (const group of groups.values()) {
      for (let start = 0; start < group.length; start += OR_CHUNK) {
        const chunk = group.slice(start, start + OR_CHUNK)
        const [first] = chunk
        if (!first) continue
        if (chunk.length === 1) {
          const result = await collection.updateOne({ _id: first.id, rev: first.rev }, update(first))
          if (result.matchedCount === 1) applied.add(first.id)
          continue
        }
        const result = await collection.updateMany(
          byVersion
            ? { _id: { $in: chunk.map((write) => write.id) }, rev: first.rev }
            : { $or: chunk.map((write) => ({ _id: write.id, rev: write.rev })) },
          update(first),
        )
        // Ids are distinct, so each id matches at most one document: when all matched, all
        // were written, and no read is needed to tell which.
        if (result.matchedCount === chunk.length) {
          for (const write of chunk) applied.add(write.id)
          continue
        }
        // The new version is unique to this call: it names exactly the documents it changed.
        const changed = await collection
          .find({ _id: { $in: chunk.map((write) => write.id) }, rev }, { projection: { _id: 1 } })
          .toArray()
        for (const doc of changed) applied.add(doc._id)
      }
    }
    return applied
  }

  /**
   * Read, decide, compare-and-set, repeat: reads the documents (by stored `_id`), asks
   * `decide` what to write for each, writes with {@link compareAndSet} and decides again for
   * the documents that another writer changed in between. The answer kept for each id is
   * the one whose write was applied (or that wrote nothing). Ids are distinct.
   */
  async updateEach<D extends { _id: string; rev: string }, R>(
    kind: Kind,
    ids: readonly string[],
    decide: (doc: D | null) => Decision<R>,
    likely?: Readonly<Record<string, string>>,
  ): Promise<Map<string, R>> {
    const collection = this.collection<D>(kind)
    const results = new Map<string, R>()
    let pending = [...ids]
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > MAX_ATTEMPTS)
        throw new ContentionError(`${pending.length} document(s) kept changing under contention`)
      if (attempt > 2) await sleep(Math.random() * Math.min(20, attempt))
      const [only] = pending
      const docs =
        pending.length === 1 && only !== undefined
          ? [await collection.findOne({ _id: only } as Filter<D>)].filter((doc) => doc !== null)
          : await this.#readIds(collection, pending, likely)
      const byId = new Map<string, D>(docs.map((doc) => [doc._id as string, doc as D]))
      const writes: GuardedWrite[] = []
      for (const id of pending) {
        const doc = byId.get(id) ?? null
        const decision = decide(doc)
        results.set(id, decision.result)
        if (decision.write && doc) writes.push({ id, rev: doc.rev, ...decision.write })
      }
      const applied = await this.compareAndSet(kind, writes)
      pending = writes.filter((write) => !applied.has(write.id)).map((write) => write.id)
    }
    return results
  }

  /**
   * The documents of `ids`. `likely` is an equality most of them match (the status a mark
   * expects): FerretDB v1 scans the whole collection for `_id: { $in }` but hands a top-level
   * string equality to its backend, so there they are read with it first and only the rest
   * without (usually none). MongoDB reads `_id: { $in }` from its index in one query.
   */
  async #readIds<D extends { _id: string }>(
    collection: Collection<D>,
    ids: readonly string[],
    likely: Readonly<Record<string, string>> | undefined,
  ): Promise<D[]> {
    const read = (filter: Document) => collection.find(filter as Filter<D>).toArray() as Promise<D[]>
    if (likely === undefined || !(await this.runtime()).ferretdb) return read({ _id: { $in: [...ids] } })
    const first = await read({ ...likely, _id: { $in: [...ids] } })
    if (first.length === ids.length) return first
    const found = new Set(first.map((doc) => doc._id))
    const rest = ids.filter((id) => !found.has(id))
    return [...first, ...(await read({ _id: { $in: rest } }))]
  }

  /** Deletes at most `limit` documents matching `filter` (ids read first: deleteMany has no limit); answers how many. */
  async deleteBatch<D extends { _id: string }>(
    kind: Kind,
    filter: Filter<D>,
    limit: number,
  ): Promise<number> {
    const collection = this.collection<D>(kind)
    const batch = await collection
      .find(filter, { projection: { _id: 1 } })
      .limit(limit)
      .toArray()
    if (batch.length === 0) return 0
    const ids = batch.map((doc) => doc._id)
    const result = await collection.deleteMany({ ...filter, _id: { $in: ids } } as Filter<D>)
    return result.deletedCount
  }

  /** `(status, count)` of the statuses present. */
  async countByStatus(kind: Kind): Promise<[string, number][]> {
    const rows = await this.collection(kind)
      .aggregate<{ _id: string; count: number }>([{ $group: { _id: '$status', count: { $sum: 1 } } }])
      .toArray()
    return rows.map((row) => [row._id, row.count])
  }

  /**
   * Moves up to `limit` documents matching `filter` with `change` and answers how many
   * moved. A document another writer changed in between is read again and moved only if it
   * still matches, so an answer below `limit` means none is left.
   */
  async moveMatching<D extends { _id: string; rev: string }>(
    kind: Kind,
    filter: Filter<D>,
    change: Change,
    limit: number,
  ): Promise<number> {
    const collection = this.collection<D>(kind)
    let moved = 0
    for (let round = 1; round <= MAX_ATTEMPTS && moved < limit; round++) {
      const batch = (await collection
        .find(filter, { projection: { _id: 1, rev: 1 } })
        .limit(limit - moved)
        .toArray()) as D[]
      if (batch.length === 0) break
      const applied = await this.compareAndSet(
        kind,
        batch.map((doc) => ({ id: doc._id, rev: doc.rev, ...change })),
      )
      moved += applied.size
    }
    return moved
  }
}
