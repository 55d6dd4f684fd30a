export type { PostgresTransaction } from './client.js'
export { connectPostgres, type PostgresConnection, type PostgresConnectOptions } from './connect.js'
export { classifyPostgresError, SQLSTATE, sqlState } from './errors.js'
export {
  migratePostgres,
  migrationScripts,
  migrationsDirectory,
  type PostgresMigrationScriptOptions,
} from './migrate.js'
export type { PartitionInterval } from './partition-sql.js'
export { PostgresInboxRepository } from './postgres-inbox-repository.js'
export {
  DEFAULT_SCHEMA,
  DEFAULT_TABLE_PREFIX,
  defaultChannel,
  type PostgresStoreOptions,
} from './postgres-options.js'
export { PostgresOutboxRepository } from './postgres-outbox-repository.js'
export {
  PARTITION_LOCK_TIMEOUT_MS,
  type PostgresPartitioningOptions,
} from './postgres-partitions.js'
export { createPostgresStore, type PostgresStore, postgresCapabilities } from './postgres-store.js'
export {
  createPostgresWakeup,
  PostgresWakeup,
  type PostgresWakeupOptions,
  type WaitOptions,
} from './postgres-wakeup.js'
export {
  type PostgresQueryHandle,
  type PostgresQueryHandleSpec,
  type PostgresRows,
  type PostgresStatement,
  postgresQueryHandle,
} from './query-handle.js'
export type { PostgresNotifyMode } from './sql.js'
