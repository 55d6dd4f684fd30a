import { type ConnectOptions, type StoreConnection, storeConnection, ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import { ADAPTER, classifySqliteError } from './errors.js'
import type { SqliteDatabase } from './sqlite-options.js'
import { createSqliteStore, type SqliteStore } from './sqlite-store.js'

/**
 * Options of {@link connectSqlite}. `poolSize` and `connectTimeoutMs` do not apply: one
 * connection to a file, opened without a server to reach. `logger` is unused: a better-sqlite3
 * connection has no background events.
 */
export interface SqliteConnectOptions extends ConnectOptions {
  /** The connection's `busy_timeout`: how long a write waits for another connection's lock. Default 5,000 ms. */
  readonly busyTimeoutMs?: number | undefined
}

/** The store on a connection {@link connectSqlite} opened, and the connection. */
export type SqliteConnection = StoreConnection<SqliteStore, SqliteDatabase>

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * Opens the database file at `path` (created if missing; `':memory:'` for a throw-away
 * database) and the store on it, with `options.prefix` as the table prefix. A path that is
 * a URL, or a file that cannot be opened, is a `ValidationError`: it can never work.
 */
export const connectSqlite = (path: string, options: SqliteConnectOptions = {}): SqliteConnection => {
  if (typeof path !== 'string' || path.trim() === '') {
    throw new ValidationError(ADAPTER, 'the path of the database file must be a non-empty string')
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
    throw new ValidationError(
      ADAPTER,
      `${JSON.stringify(path)} is a URL, but SQLite takes the path of the database file (e.g. ./app.db)`,
    )
  }
  let db: SqliteDatabase
  try {
    db = new Database(path)
  } catch (error) {
    throw new ValidationError(
      ADAPTER,
      `cannot open the database file ${JSON.stringify(path)}: ${messageOf(error)}`,
      {
        cause: error,
      },
    )
  }
  return storeConnection({
    adapter: ADAPTER,
    classify: classifySqliteError,
    client: db,
    createStore: () =>
      createSqliteStore({
        db,
        tablePrefix: options.prefix,
        clock: options.clock,
        maxEventBytes: options.maxEventBytes,
        busyTimeoutMs: options.busyTimeoutMs,
      }),
    serverVersion: async () =>
      `SQLite ${db.prepare<[], string>('SELECT sqlite_version()').pluck().get() ?? 'unknown'}`,
    close: async () => {
      if (db.open) db.close()
    },
  })
}
