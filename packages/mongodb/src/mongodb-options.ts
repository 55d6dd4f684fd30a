import type { Clock } from '@txbox/core'
import type { Db } from 'mongodb'

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

/** Options of {@link createMongoStore} and of each repository. */
export interface MongoStoreOptions {
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
