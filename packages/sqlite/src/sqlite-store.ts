import { DEFAULT_MAX_EVENT_BYTES, defineCapabilities, type TxboxStore, ValidationError } from '@txbox/core'
import { ADAPTER } from './errors.js'
import { migrateSqlite } from './migrate.js'
import { SqliteInboxRepository } from './sqlite-inbox-repository.js'
import { resolveSqliteOptions, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'
import { SqliteOutboxRepository } from './sqlite-outbox-repository.js'

/**
 * What the SQLite store can promise: `{ tx }` is the connection's own transaction, and
 * claims are disjoint because SQLite admits one writer at a time (`BEGIN IMMEDIATE`).
 */
export const sqliteCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'single-writer',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The store `createSqliteStore` returns. */
export interface SqliteStore extends TxboxStore<SqliteDatabase> {
  readonly outbox: SqliteOutboxRepository
  readonly inbox: SqliteInboxRepository
  /** The validated table prefix in use. */
  readonly tablePrefix: string
}

/** Options of `createSqliteStore`. */
export interface SqliteStoreOptions extends SqliteOptions {
  /**
   * When given, sets the connection's `busy_timeout`: how long a write waits for another
   * connection's write lock before failing with SQLITE_BUSY. Default: keep the
   * connection's own (better-sqlite3 opens with `timeout: 5000`).
   */
  busyTimeoutMs?: number | undefined
}

/**
 * Creates the SQLite outbox and inbox on a better-sqlite3 `Database` you opened. Pass the
 * same `Database` as `{ tx }` to enqueue inside your own transaction.
 */
export const createSqliteStore = (options: SqliteStoreOptions): SqliteStore => {
  const { db, tables, clock, maxEventBytes } = resolveSqliteOptions(options)
  const { busyTimeoutMs } = options
  if (busyTimeoutMs !== undefined) {
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new ValidationError(
        ADAPTER,
        `busyTimeoutMs must be an integer >= 0; got ${String(busyTimeoutMs)}`,
      )
    }
    db.pragma(`busy_timeout = ${busyTimeoutMs}`)
  }
  const resolved = { db, tablePrefix: tables.prefix, clock, maxEventBytes }
  return {
    outbox: new SqliteOutboxRepository(resolved),
    inbox: new SqliteInboxRepository(resolved),
    migrate: () => migrateSqlite(db, tables, clock),
    capabilities: defineCapabilities({ ...sqliteCapabilities, maxEventBytes }),
    tablePrefix: tables.prefix,
  }
}
