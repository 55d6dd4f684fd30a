import type { TransactionDriver } from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { execTransaction, type RedisClient } from './client.js'

/**
 * How `store.transaction` runs on Redis: begin is `redis.multi()`, which ioredis buffers
 * in the process until `exec()`; the writes inside `fn` (yours and txbox's) queue into it,
 * and commit is EXEC, which applies them all at once, isolated from every other client.
 * Rollback sends nothing, so nothing was applied. Redis cannot undo a command that failed
 * inside EXEC while the others succeeded: `execTransaction` reports that as a StorageError.
 */
export const redisTransactionDriver = (redis: RedisClient): TransactionDriver<ChainableCommander> => ({
  // A new MULTI per transaction: core refuses it once ended, or in another store's writes.
  singleUse: true,
  begin: async () => redis.multi(),
  commit: async (multi) => {
    await execTransaction(multi)
  },
  // The buffered MULTI is dropped unsent; ioredis never opened it on the server.
  rollback: async () => {},
  release: () => {},
})
