export { type ExecResult, execTransaction } from './errors.js'
export {
  DEFAULT_KEY_PREFIX,
  type InboxKeys,
  inboxKeys,
  type OutboxKeys,
  outboxKeys,
  SCHEMA_VERSION,
  schemaKey,
} from './keys.js'
export { RedisInboxRepository } from './redis-inbox-repository.js'
export type { RedisStoreOptions } from './redis-options.js'
export { RedisOutboxRepository } from './redis-outbox-repository.js'
export { createRedisStore, type RedisStore, redisCapabilities } from './redis-store.js'
export type { RedisClient } from './scripts.js'
