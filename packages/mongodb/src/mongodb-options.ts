import { type Clock, resolveMaxEventBytes, systemClock, ValidationError, Validator } from '@txbox/core'
import type { Db } from 'mongodb'
import { ADAPTER } from './errors.js'
import { MAX_EVENT_BYTES } from './rows.js'

/**
 * How writes that depend on a document's current state (claim, fencing, delivery counts)
 * are made atomic.
 * - `native`: the server applies a filtered update atomically per document (MongoDB).
 * - `lock-collection`: the server reads and writes a document in two steps (FerretDB v1),
 *   so each such write first inserts a lock keyed by the document's current version into
 *   `<prefix>locks`; the unique `_id` lets exactly one writer through per version.
 * - `auto` (default): `lock-collection` when the server is FerretDB (buildInfo has
 *   `ferretdbVersion`), else `native`.
 */
export type WriteGuard = 'auto' | 'native' | 'lock-collection'

/** Options of {@link createMongoDbStore} and of each repository. */
export interface MongoDbStoreOptions {
  /** The database to store into (`client.db(name)`); the caller owns the client. */
  db: Db
  /** Prefix of every collection name (validated identifier). Default `txbox_`. */
  collectionPrefix?: string | undefined
  /** Source of every timestamp. Default: the system clock. */
  clock?: Clock | undefined
  /** See {@link WriteGuard}. Default `auto`. */
  writeGuard?: WriteGuard | undefined
  /**
   * The largest event `findOrCreate` accepts, in bytes of its NATS message (payload +
   * headers, see `natsMessageBytes`). Default 1,048,576, NATS's default `max_payload`; set
   * it to your server's `max_payload`. Bigger events raise `PayloadTooLargeError`. At most
   * 16,000,000 (a BSON document holds 16 MiB with the other fields).
   */
  maxEventBytes?: number | undefined
}

/** The default `collectionPrefix`. */
export const DEFAULT_COLLECTION_PREFIX = 'txbox_'

/** The collections of one store, all named from one validated prefix. */
export interface CollectionNames {
  /** Outbox events, `_id` = the encoded event id. */
  readonly outbox: string
  /** The per-ordering-key counters of the outbox, `_id` = the encoded key. */
  readonly outboxKeys: string
  /** The numbering decisions of ordering keys without a transaction (see key-sequences.ts). */
  readonly outboxKeyDecisions: string
  /** Inbox events, `_id` = the encoded event id. */
  readonly inbox: string
  /** Short-lived write locks, used only where the server's updates are not atomic (FerretDB v1). */
  readonly locks: string
  /** The schema version document. */
  readonly meta: string
}

export const collectionNames = (prefix: string): CollectionNames => ({
  outbox: `${prefix}outbox`,
  outboxKeys: `${prefix}outbox_keys`,
  outboxKeyDecisions: `${prefix}outbox_key_decisions`,
  inbox: `${prefix}inbox`,
  locks: `${prefix}locks`,
  meta: `${prefix}meta`,
})

/** The options checked, defaults applied. */
export interface ResolvedMongoDbOptions {
  readonly db: Db
  readonly prefix: string
  readonly names: CollectionNames
  readonly clock: Clock
  readonly writeGuard: WriteGuard
  readonly maxEventBytes: number
}

/** Checks the options before any I/O; each mistake is a ValidationError saying what to pass. */
export const resolveMongoDbOptions = (options: MongoDbStoreOptions): ResolvedMongoDbOptions => {
  if (typeof options !== 'object' || options === null || typeof options.db?.collection !== 'function') {
    throw new ValidationError(ADAPTER, 'options.db must be a mongodb Db (client.db(name))')
  }
  const prefix = new Validator(ADAPTER).identifier(
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
  return {
    db: options.db,
    prefix,
    names: collectionNames(prefix),
    clock: options.clock ?? systemClock,
    writeGuard,
    maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes, MAX_EVENT_BYTES),
  }
}
