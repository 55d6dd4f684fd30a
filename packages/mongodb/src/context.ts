import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type Clock,
  resolveMaxEventBytes,
  StorageError,
  systemClock,
  ValidationError,
  Validator,
  withStorageErrors,
} from '@txbox/core'
import type { ClientSession, Collection, Db, Document, Filter } from 'mongodb'
import {
  ADAPTER,
  type CollectionNames,
  collectionNames,
  DEFAULT_COLLECTION_PREFIX,
  INDEXES,
  type LockDocument,
  MAX_EVENT_BYTES,
  type MetaDocument,
  SCHEMA_VERSION,
} from './collections.js'
import { duplicateKeyIndexes, isDuplicateKey } from './errors.js'
import type { MongoStoreOptions, WriteGuard } from './mongodb-options.js'

/** What the adapter learned about the server it talks to. */
export interface ServerRuntime {
  /** e.g. `MongoDB 7.0.14 (replica set rs0)` or `FerretDB v1.24.2 (MongoDB 7.0.77 wire)`. */
  readonly serverVersion: string
  readonly ferretdb: boolean
  /** True on a replica set or sharded cluster of MongoDB: `{ tx }` can be offered. */
  readonly transactions: boolean
  /** Why there are no transactions, when there are none. */
  readonly transactionsNote?: string
  /** The write guard in force (`auto` resolved). */
  readonly writeGuard: Exclude<WriteGuard, 'auto'>
}

/** A write that applies only if the document still has the version `rev` it was read with. */
export interface GuardedWrite {
  /** The stored `_id`. */
  readonly id: string
  /** The version the decision was made on. */
  readonly rev: string
  readonly set: Document
  readonly unset?: readonly string[]
}

/** How a document that was read is to be changed, and what to answer for it. */
export interface Decision<R> {
  readonly write?: Omit<GuardedWrite, 'id' | 'rev'> | undefined
  readonly result: R
}

type Kind = 'outbox' | 'inbox'

/** After this long a lock's holder is presumed dead and the document is freed. */
const LOCK_TTL_MS = 30_000
/** Rounds of a read-decide-write loop before giving up on a document under contention. */
const MAX_ATTEMPTS = 200
/** Documents per resetStale / cleanup batch: no statement touches more. */
export const BATCH = 1000
/** Documents per compare-and-set updateMany (its filter is an `$or` of `{ _id, rev }`). */
const OR_CHUNK = 500

/**
 * What both repositories of one store share: the database, the validated collection names,
 * the clock, the detected server runtime and the compare-and-set write path.
 */
export class MongoContext {
  readonly db: Db
  readonly names: CollectionNames
  readonly clock: Clock
  readonly validate = new Validator(ADAPTER)
  /** The outbox's and the inbox's checks: their messages name the side. */
  readonly validateOutbox = new Validator(ADAPTER, 'outbox')
  readonly validateInbox = new Validator(ADAPTER, 'inbox')
  /** The `maxEventBytes` option: the largest event the outbox accepts, in NATS message bytes. */
  readonly maxEventBytes: number
  readonly #writeGuard: WriteGuard
  #runtime: Promise<ServerRuntime> | undefined
  /** The probe's answer once it arrived. */
  detected: ServerRuntime | undefined

  constructor(options: MongoStoreOptions) {
    if (typeof options !== 'object' || options === null || typeof options.db?.collection !== 'function') {
      throw new ValidationError(ADAPTER, 'options.db must be a mongodb Db (client.db(name))')
    }
    const prefix = this.validate.identifier(
      options.collectionPrefix ?? DEFAULT_COLLECTION_PREFIX,
      'collectionPrefix',
    )
    const writeGuard = options.writeGuard ?? 'auto'
    if (!['auto', 'native', 'lock-collection'].includes(writeGuard)) {
      throw new ValidationError(
        ADAPTER,
        `writeGuard must be 'auto', 'native' or 'lock-collection'; got ${String(writeGuard)}`,
      )
    }
    this.db = options.db
    this.names = collectionNames(prefix)
    this.clock = options.clock ?? systemClock
    this.#writeGuard = writeGuard
    this.maxEventBytes = resolveMaxEventBytes(ADAPTER, options.maxEventBytes, MAX_EVENT_BYTES)
  }

  collection<T extends Document>(kind: keyof CollectionNames): Collection<T> {
    return this.db.collection<T>(this.names[kind])
  }

  /** Detects the server once (hello + buildInfo) and caches the answer; a failed probe is retried next time. */
  runtime(): Promise<ServerRuntime> {
    this.#runtime ??= withStorageErrors(ADAPTER, 'detectCapabilities', () => this.#detect()).then(
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

  async #detect(): Promise<ServerRuntime> {
    let hello: Document
    try {
      hello = await this.db.command({ hello: 1 })
    } catch {
      // Servers older than MongoDB 4.4.2 know only the legacy name of the same command.
      hello = await this.db.command({ isMaster: 1 })
    }
    const build = await this.db.command({ buildInfo: 1 })
    const wireVersion = typeof build.version === 'string' ? build.version : 'unknown'
    const ferretdb = typeof build.ferretdbVersion === 'string'
    const replicaSet = typeof hello.setName === 'string' ? hello.setName : undefined
    const sharded = hello.msg === 'isdbgrid'
    const sessions =
      hello.logicalSessionTimeoutMinutes !== undefined && hello.logicalSessionTimeoutMinutes !== null
    const topology =
      replicaSet !== undefined ? `replica set ${replicaSet}` : sharded ? 'sharded' : 'standalone'
    const serverVersion = ferretdb
      ? `FerretDB ${String(build.ferretdbVersion)} (MongoDB ${wireVersion} wire)`
      : `MongoDB ${wireVersion} (${topology})`
    const writeGuard =
      this.#writeGuard === 'auto' ? (ferretdb ? 'lock-collection' : 'native') : this.#writeGuard
    if (ferretdb) {
      return {
        serverVersion,
        ferretdb,
        transactions: false,
        transactionsNote: 'FerretDB v1 has no multi-document transactions',
        writeGuard,
      }
    }
    if ((replicaSet === undefined && !sharded) || !sessions) {
      return {
        serverVersion,
        ferretdb,
        transactions: false,
        transactionsNote:
          'a standalone mongod has no transactions: run a replica set (a single node is enough) or a sharded cluster',
        writeGuard,
      }
    }
    return { serverVersion, ferretdb, transactions: true, writeGuard }
  }

  /**
   * Checks a caller's `{ tx }`: it must be a ClientSession with an active transaction, on a
   * server that has transactions. Returns undefined when no `tx` was given.
   */
  async session(tx: unknown): Promise<ClientSession | undefined> {
    if (tx === undefined) return undefined
    const session = tx as Partial<ClientSession> | null
    if (typeof session !== 'object' || session === null || typeof session.inTransaction !== 'function') {
      throw new ValidationError(ADAPTER, 'tx must be a mongodb ClientSession (client.startSession())')
    }
    const runtime = await this.runtime()
    if (!runtime.transactions) {
      throw new ValidationError(
        ADAPTER,
        `{ tx } is not supported by this server: ${runtime.transactionsNote ?? 'it has no transactions'}. Write without tx (the event is then not atomic with your business write).`,
      )
    }
    if (!session.inTransaction()) {
      throw new ValidationError(
        ADAPTER,
        'tx must be a ClientSession with an active transaction (startTransaction() or withTransaction())',
      )
    }
    return tx as ClientSession
  }

  /**
   * Creates the indexes, drops what an older version left behind, and records the schema
   * version. Idempotent: createIndexes with an identical spec is a no-op, dropping a
   * collection that is gone is a no-op, and the version document is only moved up.
   */
  async migrate(): Promise<void> {
    await withStorageErrors(ADAPTER, 'migrate', async () => {
      await this.runtime()
      for (const kind of ['outbox', 'inbox'] as const) await this.#ensureIndexes(kind)
      // Created up front so that no write inside a caller's transaction has to create it.
      await this.#retryOnce(() => this.#ensureCollection(this.names.locks))
      // Version 1's (stream, streamSeq) aliases: the inbox keys on the event id alone.
      await this.#dropCollection(this.names.inboxStreams)
      const meta = this.collection<MetaDocument>('meta')
      const record: MetaDocument = {
        _id: 'schema',
        version: SCHEMA_VERSION,
        migratedAt: new Date(this.clock().getTime()),
      }
      try {
        await meta.insertOne(record)
      } catch (error) {
        if (!isDuplicateKey(error)) throw error
        await meta.updateOne(
          { _id: 'schema', version: { $lt: SCHEMA_VERSION } },
          { $set: { version: SCHEMA_VERSION, migratedAt: record.migratedAt } },
        )
      }
    })
  }

  /**
   * Creates the indexes that are missing. Only the missing ones: FerretDB v1.24 drops the
   * connection on a createIndexes whose index already exists, so an identical spec is not
   * sent twice. A concurrent migrate() may create one in between: the next pass sees it.
   */
  async #ensureIndexes(kind: 'outbox' | 'inbox'): Promise<void> {
    const collection = this.collection(kind)
    for (let attempt = 1; ; attempt++) {
      const existing = await collection
        .listIndexes()
        .toArray()
        .catch((error: unknown) => {
          // 26 NamespaceNotFound: the collection does not exist yet.
          if ((error as { code?: unknown }).code === 26) return []
          throw error
        })
      const names = new Set(existing.map((index) => index.name as unknown))
      const missing = INDEXES[kind].filter((index) => !names.has(index.name))
      if (missing.length === 0) return
      try {
        await collection.createIndexes(missing)
        return
      } catch (error) {
        if (attempt >= 3) throw error
      }
    }
  }

  async #ensureCollection(name: string): Promise<void> {
    const existing = await this.db.listCollections({ name }, { nameOnly: true }).toArray()
    if (existing.length > 0) return
    try {
      await this.db.createCollection(name)
    } catch (error) {
      // 48 NamespaceExists: another migrate() created it first.
      if ((error as { code?: unknown }).code !== 48) throw error
    }
  }

  async #dropCollection(name: string): Promise<void> {
    try {
      await this.db.collection(name).drop()
    } catch (error) {
      // 26 NamespaceNotFound: never created, or another migrate() dropped it first.
      if ((error as { code?: unknown }).code !== 26) throw error
    }
  }

  /** Two migrate() calls racing to create one collection may see a transient conflict; the second try finds it done. */
  async #retryOnce<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch {
      return await run()
    }
  }

  /**
   * Applies each write only if its document still has the version it was read with, and
   * gives each applied document a new version. Returns the ids applied.
   *
   * `native`: the filter `{ _id, rev }` and the update are one atomic step per document, so
   * of two writers that read the same version exactly one matches.
   *
   * `lock-collection` (FerretDB v1 reads, modifies and writes back a document in separate
   * statements, so a filter alone does not exclude a concurrent writer): each write first
   * inserts the lock `<rev>|<kind>|<_id>`. A version is written at most once because only
   * one insert of its lock succeeds, and the winner's update still filters on `rev`, so a
   * writer holding the lock of an old version matches nothing. The lock is deleted after
   * the update returned, when the version it names is already gone; if the holder died
   * in between, the next writer frees the document after {@link LOCK_TTL_MS}.
   */
  async compareAndSet(kind: Kind, writes: readonly GuardedWrite[]): Promise<Set<string>> {
    if (writes.length === 0) return new Set()
    const { writeGuard } = await this.runtime()
    const collection = this.collection<{ _id: string; rev: string }>(kind)
    const rev = randomUUID()
    let granted = writes
    let lockIds: string[] = []
    if (writeGuard === 'lock-collection') {
      const locks: LockDocument[] = writes.map((write) => ({ _id: lockId(kind, write), at: new Date() }))
      const taken = await this.#insertAll(this.collection<LockDocument>('locks'), locks)
      if (taken.size > 0)
        await this.#freeAbandoned(
          kind,
          writes.filter((_, index) => taken.has(index)),
        )
      granted = writes.filter((_, index) => !taken.has(index))
      lockIds = locks.filter((_, index) => !taken.has(index)).map((lock) => lock._id)
      if (granted.length === 0) return new Set()
    }
    const update = (write: GuardedWrite): Document => {
      const change: Document = { $set: { ...write.set, rev } }
      if (write.unset && write.unset.length > 0)
        change.$unset = Object.fromEntries(write.unset.map((field) => [field, '']))
      return change
    }
    // Writes that make the same change go out as one filtered updateMany, never as a
    // multi-statement bulkWrite: FerretDB v1.24 keeps a read cursor (and a SQLite
    // connection) open per statement until the whole command ends, and a command of ~100
    // statements exhausts its pool and hangs the server.
    const groups = new Map<string, GuardedWrite[]>()
    for (const write of granted) {
      const key = JSON.stringify([write.set, write.unset ?? []])
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
        await collection.updateMany(
          { $or: chunk.map((write) => ({ _id: write.id, rev: write.rev })) },
          update(first),
        )
        // The new version is unique to this call: it names exactly the documents it changed.
        const changed = await collection
          .find({ _id: { $in: chunk.map((write) => write.id) }, rev }, { projection: { _id: 1 } })
          .toArray()
        for (const doc of changed) applied.add(doc._id)
      }
    }
    if (lockIds.length > 0) await this.collection<LockDocument>('locks').deleteMany({ _id: { $in: lockIds } })
    return applied
  }

  /**
   * A lock older than the TTL belongs to a writer that died between its lock and its
   * update. One recoverer (the unique `<lock>|free` insert decides which) moves the document
   * to a new version, which makes the dead lock meaningless, then removes both locks.
   */
  async #freeAbandoned(kind: Kind, writes: readonly GuardedWrite[]): Promise<void> {
    const locks = this.collection<LockDocument>('locks')
    const ids = writes.map((write) => lockId(kind, write))
    const stale = await locks
      .find({ _id: { $in: ids }, at: { $lt: new Date(Date.now() - LOCK_TTL_MS) } })
      .toArray()
    for (const lock of stale) {
      const write = writes.find((candidate) => lockId(kind, candidate) === lock._id)
      if (!write) continue
      const freeId = `${lock._id}|free`
      try {
        await locks.insertOne({ _id: freeId, at: new Date() })
      } catch (error) {
        if (isDuplicateKey(error)) continue
        throw error
      }
      await this.collection<{ _id: string; rev: string }>(kind).updateOne(
        { _id: write.id, rev: write.rev },
        { $set: { rev: randomUUID() } },
      )
      await locks.deleteMany({ _id: { $in: [lock._id, freeId] } })
    }
  }

  /** Inserts documents unordered; returns the positions that already existed (duplicate `_id`). */
  async #insertAll<T extends { _id: string }>(
    collection: Collection<T>,
    docs: readonly T[],
  ): Promise<Set<number>> {
    try {
      // biome-ignore lint/suspicious/noExplicitAny: the driver's OptionalUnlessRequiredId cannot be satisfied generically
      await collection.insertMany(docs as any[], { ordered: false })
      return new Set()
    } catch (error) {
      const duplicates = duplicateKeyIndexes(error)
      if (duplicates === undefined) throw error
      return duplicates
    }
  }

  /** Unordered insert of new documents; returns the positions whose `_id` was already stored. */
  insertNew<T extends { _id: string }>(collection: Collection<T>, docs: readonly T[]): Promise<Set<number>> {
    return this.#insertAll(collection, docs)
  }

  /**
   * Read, decide, compare-and-set, repeat: reads the documents, asks `decide` what to write
   * for each (it may throw, e.g. `LeaseLostError`), writes with {@link compareAndSet} and
   * decides again for the documents that another writer changed in between. The answer
   * kept for each id is the one whose write was applied (or that wrote nothing).
   */
  async updateEach<D extends { _id: string; rev: string }, R>(
    kind: Kind,
    operation: string,
    ids: readonly string[],
    decide: (id: string, doc: D | null) => Decision<R>,
  ): Promise<Map<string, R>> {
    return withStorageErrors(ADAPTER, operation, async () => {
      const collection = this.collection<D>(kind)
      const results = new Map<string, R>()
      let pending = [...new Set(ids)]
      for (let attempt = 1; pending.length > 0; attempt++) {
        if (attempt > MAX_ATTEMPTS) {
          throw new StorageError(
            ADAPTER,
            operation,
            undefined,
            `${pending.length} document(s) kept changing under contention`,
          )
        }
        if (attempt > 2) await sleep(Math.random() * Math.min(20, attempt))
        const [only] = pending
        const docs =
          pending.length === 1 && only !== undefined
            ? [await collection.findOne({ _id: only } as Filter<D>)].filter((doc) => doc !== null)
            : await collection.find({ _id: { $in: pending } } as Filter<D>).toArray()
        const byId = new Map<string, D>(docs.map((doc) => [doc._id as string, doc as D]))
        const writes: GuardedWrite[] = []
        for (const id of pending) {
          const doc = byId.get(id) ?? null
          const decision = decide(id, doc)
          results.set(id, decision.result)
          if (decision.write && doc) writes.push({ id, rev: doc.rev, ...decision.write })
        }
        const applied = await this.compareAndSet(kind, writes)
        pending = writes.filter((write) => !applied.has(write.id)).map((write) => write.id)
      }
      return results
    })
  }

  /**
   * Moves every document matching `filter` (resetStale), in batches of {@link BATCH}, and
   * returns how many moved. A document another writer changed in between is read again by
   * the next round and moved only if it still matches.
   */
  async moveAll<D extends { _id: string; rev: string }>(
    kind: Kind,
    operation: string,
    filter: Filter<D>,
    change: () => Omit<GuardedWrite, 'id' | 'rev'>,
  ): Promise<number> {
    return withStorageErrors(ADAPTER, operation, async () => {
      const collection = this.collection<D>(kind)
      let moved = 0
      for (let round = 1; round <= MAX_ATTEMPTS; round++) {
        const batch = (await collection
          .find(filter, { projection: { _id: 1, rev: 1 } })
          .limit(BATCH)
          .toArray()) as D[]
        if (batch.length === 0) break
        const applied = await this.compareAndSet(
          kind,
          batch.map((doc) => ({ id: doc._id, rev: doc.rev, ...change() })),
        )
        moved += applied.size
        if (batch.length < BATCH && applied.size === batch.length) break
      }
      return moved
    })
  }
}

const lockId = (kind: Kind, write: GuardedWrite): string => `${write.rev}|${kind}|${write.id}`
