import {
  AmbientTransactions,
  DEFAULT_MAX_EVENT_BYTES,
  defineCapabilities,
  type TransactionalStore,
  type TxboxStore,
  ValidationError,
} from '@txbox/core'
import type { SqliteStoreShared } from './client.js'
import { ConnectionTurns } from './connection-turns.js'
import { ADAPTER, classifySqliteError } from './errors.js'
import { migrateSqlite } from './migrate.js'
import { SqliteInboxRepository } from './sqlite-inbox-repository.js'
import { resolveSqliteOptions, type SqliteDatabase, type SqliteOptions } from './sqlite-options.js'
import { SqliteOutboxRepository } from './sqlite-outbox-repository.js'
import { sqliteTransactionDriver } from './transaction-driver.js'

/**
 * What the SQLite store can promise: `{ tx }` is the connection's own transaction, and
 * claims are disjoint because SQLite admits one writer at a time (`BEGIN IMMEDIATE`).
 */
export const sqliteCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'single-writer',
  orderingKeys: true,
  keyRuns: true,
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The store `createSqliteStore` returns. */
export interface SqliteStore extends TxboxStore<SqliteDatabase> {
  readonly outbox: SqliteOutboxRepository
  readonly inbox: SqliteInboxRepository
  /**
   * Runs `fn(db)` inside `BEGIN IMMEDIATE` ... `COMMIT` on the store's connection (ROLLBACK
   * when it throws). Transactions run one at a time, and the store's other calls from other
   * async contexts wait until it ends, so none of them joins it by accident.
   */
  readonly transaction: TransactionalStore<SqliteDatabase>['transaction']
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
 * Creates the SQLite outbox and inbox on a better-sqlite3 `Database` you opened. Enqueue
 * inside `store.transaction(async (db) => ...)`, or pass the same `Database` as `{ tx }`
 * inside a transaction you opened on it.
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
  const turns = new ConnectionTurns(() => ambient.current() !== undefined)
  const ambient: AmbientTransactions<SqliteDatabase> = new AmbientTransactions({
    adapter: ADAPTER,
    driver: sqliteTransactionDriver(db, turns),
    classify: classifySqliteError,
  })
  const shared: SqliteStoreShared = { ambient, turns }
  return {
    outbox: new SqliteOutboxRepository(resolved, shared),
    inbox: new SqliteInboxRepository(resolved, shared),
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
    migrate: () => migrateSqlite(db, tables, clock),
    capabilities: defineCapabilities({ ...sqliteCapabilities, maxEventBytes }),
    tablePrefix: tables.prefix,
  }
}
