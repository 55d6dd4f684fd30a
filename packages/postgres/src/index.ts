export { SQLSTATE, sqlState } from './errors.js'
export { PostgresInboxRepository } from './postgres-inbox-repository.js'
export {
  DEFAULT_SCHEMA,
  DEFAULT_TABLE_PREFIX,
  defaultChannel,
  type PostgresStoreOptions,
  type PostgresTransaction,
} from './postgres-options.js'
export { PostgresOutboxRepository } from './postgres-outbox-repository.js'
export {
  createPostgresStore,
  migratePostgres,
  type PostgresStore,
  postgresCapabilities,
} from './postgres-store.js'
export {
  createPostgresWakeup,
  PostgresWakeup,
  type PostgresWakeupOptions,
  type WaitOptions,
} from './postgres-wakeup.js'
export { migrationsDirectory } from './sql.js'
