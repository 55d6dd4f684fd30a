import {
  type Clock,
  DEFAULT_MAX_EVENT_BYTES,
  defineCapabilities,
  type TxboxStore,
  ValidationError,
} from '@txbox/core'
import { ADAPTER, runStorage } from './errors.js'
import { MIGRATIONS, schemaSql, type Tables } from './sql.js'
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

/**
 * Creates or upgrades the schema on `db`: WAL for a file database (readers never wait for
 * the writer, and writers on other connections wait for the lock instead of failing),
 * then every migration newer than the stored version, under `BEGIN IMMEDIATE`. The first
 * connection to take the write lock applies the DDL; another one migrating at the same
 * time waits for the lock (busy timeout), then finds the version already recorded. The
 * DDL is `IF NOT EXISTS` too, so re-running a step never fails.
 */
export const migrateSqlite = async (db: SqliteDatabase, tables: Tables, clock: Clock): Promise<void> =>
  runStorage('migrate', () => {
    // journal_mode cannot change inside a transaction, and `:memory:` databases have no WAL.
    if (!db.memory && !db.readonly && !db.inTransaction) db.pragma('journal_mode = WAL')
    const sql = schemaSql(tables)
    db.transaction(() => {
      db.exec(sql.createVersionTable)
      const current =
        db.prepare<[], { version: number }>(sql.currentVersion).safeIntegers(false).get()?.version ?? 0
      for (const migration of MIGRATIONS) {
        if (migration.version <= current) continue
        db.exec(migration.sql(tables))
        db.prepare(sql.recordVersion).run(migration.version, clock().getTime())
      }
    }).immediate()
  })

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
