export { connectSqlite, type SqliteConnection, type SqliteConnectOptions } from './connect.js'
export { classifySqliteError, sqliteErrorCode } from './errors.js'
export { migrationScripts, type SqliteMigrationScriptOptions } from './migrate.js'
export { SqliteInboxRepository } from './sqlite-inbox-repository.js'
export { DEFAULT_TABLE_PREFIX, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'
export { SqliteOutboxRepository } from './sqlite-outbox-repository.js'
export {
  createSqliteStore,
  type SqliteStore,
  type SqliteStoreOptions,
  sqliteCapabilities,
} from './sqlite-store.js'
