import type { Clock } from '@txbox/core'
import type { RedisClient } from './client.js'

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
  /**
   * The largest event `findOrCreate` accepts, in bytes of its NATS message (payload +
   * headers, see `natsMessageBytes`). Default 1,048,576, NATS's default `max_payload`; set
   * it to your server's `max_payload`. Bigger events raise `PayloadTooLargeError`. At most
   * 512 MiB, Redis's largest string.
   */
  maxEventBytes?: number | undefined
}

/** Redis's largest string value (`proto-max-bulk-len`'s default): no event can be bigger. */
export const REDIS_MAX_STRING_BYTES = 512 * 1024 * 1024

/**
 * The kernel's `sweepBatch` here: how many events one cleanup / resetStale script handles
 * before the next call. Smaller than core's SWEEP_BATCH because a Lua script blocks every
 * other client of the server while it runs: 1,000 events keep one step to a few ms.
 */
export const REDIS_SWEEP_BATCH = 1000

/**
 * The most due-but-delayed events one claim promotes (and findPending considers), and the
 * most expired leases one claim considers: bounds the time one script blocks the server.
 */
export const SCAN_CAP = 10_000
