import {
  AmbientTransactions,
  DEFAULT_MAX_EVENT_BYTES,
  defineCapabilities,
  systemClock,
  type TransactionalStore,
  type TxboxStore,
  Validator,
} from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { ADAPTER, classifyRedisError } from './errors.js'
import { DEFAULT_KEY_PREFIX } from './keys.js'
import { migrateRedis } from './migrate.js'
import { RedisInboxRepository } from './redis-inbox-repository.js'
import type { RedisStoreOptions } from './redis-options.js'
import { RedisOutboxRepository } from './redis-outbox-repository.js'
import { redisTransactionDriver } from './transaction-driver.js'

/**
 * What Redis can promise: `{ tx }` is a MULTI pipeline (isolated, but no rollback of
 * commands that ran), and claims are disjoint because each is one Lua script.
 */
export const redisCapabilities = defineCapabilities({
  transactions: 'multi',
  claim: 'atomic-script',
  orderingKeys: true,
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The store `createRedisStore` returns. */
export interface RedisStore extends TxboxStore<ChainableCommander> {
  readonly outbox: RedisOutboxRepository
  readonly inbox: RedisInboxRepository
  /**
   * Runs `fn(multi)`: your commands and the writes txbox makes inside `fn` queue into one
   * MULTI, applied together by EXEC when `fn` resolves, never sent when it throws.
   */
  readonly transaction: TransactionalStore<ChainableCommander>['transaction']
}

/**
 * Creates the outbox and inbox on one ioredis client, sharing a key prefix and a clock.
 * `migrate()` creates nothing (Redis has no schema); it records the layout version under
 * `txbox:{<keyPrefix>}:schema` (see migrate.ts) so that a later version can detect and
 * upgrade old data.
 */
export const createRedisStore = (options: RedisStoreOptions): RedisStore => {
  const keyPrefix = new Validator(ADAPTER).identifier(options.keyPrefix ?? DEFAULT_KEY_PREFIX, 'keyPrefix')
  const resolved = { ...options, keyPrefix }
  const ambient = new AmbientTransactions<ChainableCommander>({
    adapter: ADAPTER,
    driver: redisTransactionDriver(options.redis),
    classify: classifyRedisError,
  })
  const outbox = new RedisOutboxRepository(resolved, ambient)
  return {
    outbox,
    inbox: new RedisInboxRepository(resolved, ambient),
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
    capabilities: defineCapabilities({ ...redisCapabilities, maxEventBytes: outbox.maxEventBytes }),
    migrate: () => migrateRedis(options.redis, keyPrefix, options.clock ?? systemClock),
  }
}
