import type { Clock } from '@txbox/core'
import type { RedisClient } from './scripts.js'

/** Options of `createRedisStore` and of the repositories. */
export interface RedisStoreOptions {
  /** An ioredis `Redis` or `Cluster` you created; the adapter never closes it. */
  redis: RedisClient
  /**
   * Names this store's keys: `txbox:{<keyPrefix>}:...`. It is also the Cluster hash tag, so
   * one store lives in one slot. A validated identifier. Default `default`.
   */
  keyPrefix?: string | undefined
  /** The source of every timestamp. Default: the system clock. */
  clock?: Clock | undefined
}

/** How many events one cleanup / resetStale script handles before the next call. */
export const BATCH_SIZE = 1000

/**
 * The most due-but-delayed events one claim promotes (and findPending considers), and the
 * most expired leases one claim considers: bounds the time one script blocks the server.
 */
export const SCAN_CAP = 10_000
