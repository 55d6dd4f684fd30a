import { type Clock, resolveMaxEventBytes, systemClock, ValidationError, Validator } from '@txbox/core'
import type Database from 'better-sqlite3'
import { ADAPTER } from './errors.js'
import { SQLITE_MAX_LENGTH } from './row-limit.js'
import { type Tables, tablesFor } from './sql.js'

/** The better-sqlite3 connection; it is also the `{ tx }` handle of this adapter. */
export type SqliteDatabase = Database.Database

/** The table prefix when none is given: tables `txbox_outbox`, `txbox_inbox`, `txbox_schema_version`. */
export const DEFAULT_TABLE_PREFIX = 'txbox_'

/**
 * Rows per sweep statement (`cleanup`), below core's `SWEEP_BATCH`: SQLite has one write
 * lock for the whole database, so every batch stops every other writer, the application's
 * own transactions included, until it commits. A thousand rows keep that pause short.
 */
export const SQLITE_SWEEP_BATCH = 1000

/** Options of the SQLite repositories and of `createSqliteStore`. */
export interface SqliteOptions {
  /**
   * A better-sqlite3 `Database` you opened (a file, or `':memory:'` for tests). Every
   * statement runs on it, so a write with `{ tx: db }` joins the transaction open on it.
   */
  db: SqliteDatabase
  /** Prefix of every table and index name; a validated identifier. Default `txbox_`. */
  tablePrefix?: string | undefined
  /** The source of every timestamp. Default: the system clock. */
  clock?: Clock | undefined
  /**
   * The largest event `findOrCreate` accepts, in bytes of its NATS message (payload +
   * headers, see `natsMessageBytes`). Default 1,048,576, NATS's default `max_payload`; set
   * it to your server's `max_payload`. Bigger events raise `PayloadTooLargeError`.
   */
  maxEventBytes?: number | undefined
}

/** The options after validation. */
export interface ResolvedSqliteOptions {
  readonly db: SqliteDatabase
  readonly tables: Tables
  readonly clock: Clock
  /** At most SQLite's SQLITE_MAX_LENGTH (1,000,000,000 bytes per row). */
  readonly maxEventBytes: number
}

const looksLikeDatabase = (value: unknown): value is SqliteDatabase =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as Partial<SqliteDatabase>).prepare === 'function' &&
  typeof (value as Partial<SqliteDatabase>).transaction === 'function' &&
  typeof (value as Partial<SqliteDatabase>).inTransaction === 'boolean'

/** Validates the options before anything touches the database. */
export const resolveSqliteOptions = (options: SqliteOptions): ResolvedSqliteOptions => {
  const validate = new Validator(ADAPTER)
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(ADAPTER, 'options must be an object with a better-sqlite3 Database as `db`')
  }
  if (!looksLikeDatabase(options.db)) {
    throw new ValidationError(ADAPTER, 'db must be a better-sqlite3 Database (new Database(file))')
  }
  if (!options.db.open)
    throw new ValidationError(ADAPTER, 'db is closed: pass an open better-sqlite3 Database')
  if (options.clock !== undefined && typeof options.clock !== 'function') {
    throw new ValidationError(ADAPTER, 'clock must be a function returning a Date')
  }
  const prefix = validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
  return {
    db: options.db,
    tables: tablesFor(prefix),
    clock: options.clock ?? systemClock,
    maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes, SQLITE_MAX_LENGTH),
  }
}
