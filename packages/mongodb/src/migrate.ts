import {
  applyMigrations,
  loadMigrations,
  type Migration,
  type MigrationHistory,
  noMigrationScripts,
  runStorageOperation,
  versionsThrough,
} from '@txbox/core'
import type { Db, Document, Filter, IndexDescription } from 'mongodb'
import type { MongoDbClient } from './client.js'
import { ADAPTER, classifyMongoDbError } from './errors.js'
import { createMissingIndexes } from './ferretdb.js'
import { isDuplicateKey } from './inserts.js'

/** The schema steps, `migrations/NNNN_<name>.json`: the single source of truth. */
const MIGRATIONS = loadMigrations(new URL('../migrations/', import.meta.url))

/** The schema version `migrate()` records in `<prefix>meta`: the number of the last migration file. */
export const SCHEMA_VERSION: number = MIGRATIONS.length

/**
 * A data step of a migration file: `set` on every document of `collection` that matches
 * `where`, which must stop matching a document once it is set (the step reads until a read
 * finds none). Only the step's last read proves that nothing is left, so a `where` that a
 * running process can make a document match again after the step (a status moving back)
 * needs a later step whose `where` keeps matching it (see migration 0005).
 */
interface Backfill {
  readonly collection: 'outbox' | 'inbox'
  readonly where: Filter<Document>
  readonly set: Document
  /**
   * The index MongoDB reads `where` by (FerretDB v1 ignores hints): one whose entry of a
   * document does not change while a running process writes it, so that one read cannot
   * miss a document that moves within the index during the read.
   */
  readonly hint?: string
}

/**
 * One migration file: collections to create with their indexes, documents to backfill,
 * collections to drop, in that order. Keys are suffixes of the prefix.
 */
interface MongoDbMigrationStep {
  readonly collections?: Readonly<Record<string, IndexDescription[]>>
  readonly backfill?: readonly Backfill[]
  readonly dropCollections?: readonly string[]
}

/** Documents a backfill reads and writes per step. */
const BACKFILL_PAGE = 500

/**
 * The history document `{ _id: 'schema', version, migratedAt }` in `<prefix>meta`, as every
 * release wrote it: `version` n means migrations 1..n are applied.
 */
interface MetaDocument {
  _id: string
  version: number
  migratedAt: Date
}

/**
 * The MongoDB history for core's `applyMigrations`. MongoDB has no advisory lock to hold
 * across steps; instead every step is idempotent (a collection or index that exists is
 * left alone, a collection that is gone is not dropped again) and the version is only
 * moved up, so two processes migrating at once both succeed and agree on the result.
 */
class MongoDbMigrationHistory implements MigrationHistory {
  readonly #client: MongoDbClient
  readonly #db: Db
  readonly #prefix: string
  readonly #ferretdb: boolean

  constructor(client: MongoDbClient, ferretdb: boolean) {
    this.#client = client
    this.#db = client.db
    this.#prefix = client.prefix
    this.#ferretdb = ferretdb
  }

  get #meta() {
    return this.#db.collection<MetaDocument>(`${this.#prefix}meta`)
  }

  locked<T>(apply: () => Promise<T>): Promise<T> {
    return apply()
  }

  async appliedVersions(): Promise<Iterable<number>> {
    const schema = await this.#meta.findOne({ _id: 'schema' })
    const version = typeof schema?.version === 'number' ? schema.version : 0
    return versionsThrough(version)
  }

  async apply(migration: Migration): Promise<void> {
    const step = JSON.parse(migration.body) as MongoDbMigrationStep
    for (const [key, indexes] of Object.entries(step.collections ?? {})) {
      const name = `${this.#prefix}${key}`
      if (indexes.length === 0) await retryOnce(() => this.#ensureCollection(name))
      else if (this.#ferretdb) await createMissingIndexes(this.#db.collection(name), indexes)
      // MongoDB treats an index identical to an existing one as created: a no-op.
      else await this.#db.collection(name).createIndexes(indexes)
    }
    for (const backfill of step.backfill ?? []) await this.#backfill(backfill)
    for (const key of step.dropCollections ?? []) await this.#dropCollection(`${this.#prefix}${key}`)
  }

  /**
   * Writes `set` page by page, each document by compare-and-set on the version it was read
   * with (the store's own write path, version locks on FerretDB), so a process still running
   * beside the migration never has a write of its own overwritten: the backfill's write or
   * the process's wins, and a document the backfill lost is read again by the next page if
   * it still matches. Idempotent: a second migrate() finds nothing left to set.
   */
  async #backfill({ collection, where, set, hint }: Backfill): Promise<void> {
    const documents = this.#client.collection<{ _id: string; rev: string }>(collection)
    const options = { projection: { _id: 1, rev: 1 }, ...(hint === undefined ? {} : { hint }) }
    for (;;) {
      const page = await documents
        .find(where as Filter<{ _id: string; rev: string }>, options)
        .limit(BACKFILL_PAGE)
        .toArray()
      if (page.length === 0) return
      await this.#client.compareAndSet(
        collection,
        page.map((doc) => ({ id: doc._id, rev: doc.rev, set })),
      )
    }
  }

  async record(migration: Migration, appliedAt: Date): Promise<void> {
    const record: MetaDocument = { _id: 'schema', version: migration.version, migratedAt: appliedAt }
    try {
      await this.#meta.insertOne(record)
    } catch (error) {
      if (!isDuplicateKey(error)) throw error
      await this.#meta.updateOne(
        { _id: 'schema', version: { $lt: migration.version } },
        { $set: { version: migration.version, migratedAt: appliedAt } },
      )
    }
  }

  async #ensureCollection(name: string): Promise<void> {
    const existing = await this.#db.listCollections({ name }, { nameOnly: true }).toArray()
    if (existing.length > 0) return
    try {
      await this.#db.createCollection(name)
    } catch (error) {
      // 48 NamespaceExists: another migrate() created it first.
      if ((error as { code?: unknown }).code !== 48) throw error
    }
  }

  async #dropCollection(name: string): Promise<void> {
    try {
      await this.#db.collection(name).drop()
    } catch (error) {
      // 26 NamespaceNotFound: never created, or another migrate() dropped it first.
      if ((error as { code?: unknown }).code !== 26) throw error
    }
  }
}

/** Two migrate() calls racing to create one collection may see a transient conflict; the second try finds it done. */
const retryOnce = async <T>(run: () => Promise<T>): Promise<T> => {
  try {
    return await run()
  } catch {
    return await run()
  }
}

/**
 * Probes the server, then applies the migration files not yet recorded in `<prefix>meta`.
 * Answers the versions applied now (none on an up-to-date database).
 */
export const migrateMongoDb = (client: MongoDbClient): Promise<number[]> =>
  runStorageOperation(ADAPTER, 'migrate', classifyMongoDbError, async () => {
    const { ferretdb } = await client.runtime()
    const history = new MongoDbMigrationHistory(client, ferretdb)
    return applyMigrations(history, MIGRATIONS, client.clock)
  })

/**
 * There is no DDL to print for MongoDB: always throws a `ValidationError` saying what
 * `migrate()` creates. Kept beside the SQL adapters' `migrationScripts` so that
 * `txbox-migrations print --store mongodb` answers with that instead of a missing export.
 */
export const migrationScripts = (_options?: object): never =>
  noMigrationScripts(
    ADAPTER,
    "migrate() creates the collections <prefix>outbox, <prefix>outbox_keys, <prefix>outbox_key_decisions, <prefix>inbox, <prefix>locks and <prefix>meta with the indexes of @txbox/mongodb's migrations/*.json, and records the version in <prefix>meta",
  )
