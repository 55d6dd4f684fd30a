export { type ExecResult, execTransaction, type RedisClient } from './client.js'
export { connectRedis, type RedisConnectOptions } from './connect.js'
export { classifyRedisError } from './errors.js'
export {
  DEFAULT_KEY_PREFIX,
  type InboxKeys,
  inboxKeys,
  type OutboxKeys,
  outboxKeys,
  schemaKey,
} from './keys.js'
export { migrateRedis, migrationScripts, SCHEMA_VERSION } from './migrate.js'
export { RedisInboxRepository } from './redis-inbox-repository.js'
export type { RedisStoreOptions } from './redis-options.js'
export { RedisOutboxRepository } from './redis-outbox-repository.js'
export { createRedisStore, type RedisStore, redisCapabilities } from './redis-store.js'
