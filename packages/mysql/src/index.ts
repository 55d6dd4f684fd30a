import { mySqlCapabilities } from './mysql-store.js'

export { connectMySql, type MySqlConnection, type MySqlConnectOptions } from './connect.js'
export { type Dialect, type DialectName, detectDialect, parseDialect } from './dialect.js'
export { classifyMySqlError } from './errors.js'
export { type MySqlMigrationScriptOptions, migrationScripts } from './migrate.js'
export { MySqlInboxRepository } from './mysql-inbox-repository.js'
export { DEFAULT_TABLE_PREFIX, type MySqlStoreOptions, type RetryEvent } from './mysql-options.js'
export { MySqlOutboxRepository } from './mysql-outbox-repository.js'
export { createMySqlStore, type MySqlStore, mySqlCapabilities } from './mysql-store.js'
export {
  type HandleConnection,
  isMySqlQueryHandle,
  type MySqlQueryHandle,
  type MySqlTransaction,
  mySqlQueryHandle,
} from './query-handle.js'
export { MySqlTransactionDriver } from './transaction-driver.js'

/** @deprecated use `mySqlCapabilities` (one spelling of the database name across the exports). */
export const mysqlCapabilities = mySqlCapabilities
