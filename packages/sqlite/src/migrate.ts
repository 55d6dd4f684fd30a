import { resolve } from 'node:path'
import {
  applyMigrations,
  type Clock,
  loadMigrations,
  type Migration,
  type MigrationHistory,
  renderMigration,
  runStorageOperation,
} from '@txbox/core'
import { ADAPTER, classifySqliteMigrationError } from './errors.js'
import { historySql, type Tables } from './sql.js'
import type { SqliteDatabase } from './sqlite-options.js'

let shipped: readonly Migration[] | undefined

/** The schema steps of `migrations/`, read once: the only copy of the DDL. */
export const sqliteMigrations = (): readonly Migration[] =>
  (shipped ??= loadMigrations(new URL('../migrations/', import.meta.url)))

/**
 * The migration running, by database file (by connection for `:memory:`). `applyMigrations`
 * awaits between its steps while holding the write lock, and a second connection of this
 * process asking for the lock in between would wait for it synchronously, blocking the very
 * event loop the first one needs to commit: so migrations of one file in one process run
 * one after the other (other processes wait for SQLite's lock as usual). On one connection
 * this also keeps a second `migrate()` from beginning a nested transaction.
 */
const running = new Map<unknown, Promise<unknown>>()

const fileOf = (db: SqliteDatabase): unknown => (db.memory || db.name === '' ? db : resolve(db.name))

/**
 * The history of one store: `<prefix>schema_version`, one row per applied version, the table
 * every release has kept, so a database migrated by an earlier release is recognised as is.
 * The lock is SQLite's write lock: `BEGIN IMMEDIATE` (a SAVEPOINT when the caller already has
 * a transaction open on the connection), so every step and its record commit together.
 */
class SqliteMigrationHistory implements MigrationHistory {
  readonly #db: SqliteDatabase
  readonly #tables: Tables
  readonly #sql: ReturnType<typeof historySql>

  constructor(db: SqliteDatabase, tables: Tables) {
    this.#db = db
    this.#tables = tables
    this.#sql = historySql(tables)
  }

  locked<T>(apply: () => Promise<T>): Promise<T> {
    const file = fileOf(this.#db)
    const run = () => this.#inTransaction(apply)
    const next = (running.get(file) ?? Promise.resolve()).then(run, run)
    running.set(file, next)
    const forget = () => {
      if (running.get(file) === next) running.delete(file)
    }
    next.then(forget, forget)
    return next
  }

  async #inTransaction<T>(apply: () => Promise<T>): Promise<T> {
    const db = this.#db
    // journal_mode cannot change inside a transaction, and `:memory:` databases have no WAL.
    // WAL: readers never wait for the writer, and writers on other connections wait for the
    // lock instead of failing.
    if (!db.memory && !db.readonly && !db.inTransaction) db.pragma('journal_mode = WAL')
    const nested = db.inTransaction
    db.exec(nested ? 'SAVEPOINT txbox_migrate' : 'BEGIN IMMEDIATE')
    try {
      db.exec(this.#sql.createVersionTable)
      const result = await apply()
      db.exec(nested ? 'RELEASE txbox_migrate' : 'COMMIT')
      return result
    } catch (error) {
      if (db.inTransaction) db.exec(nested ? 'ROLLBACK TO txbox_migrate; RELEASE txbox_migrate' : 'ROLLBACK')
      throw error
    }
  }

  async appliedVersions(): Promise<number[]> {
    return this.#db.prepare<[], number>(this.#sql.appliedVersions).pluck().safeIntegers(false).all()
  }

  async apply(migration: Migration): Promise<void> {
    this.#db.exec(renderMigration(migration.body, { prefix: this.#tables.prefix }))
  }

  async record(migration: Migration, appliedAt: Date): Promise<void> {
    this.#db.prepare(this.#sql.recordVersion).run(migration.version, appliedAt.getTime())
  }
}

/**
 * Creates or upgrades the schema of one store on `db`: WAL for a file database, then every
 * file of `migrations/` not recorded in `<prefix>schema_version`, under `BEGIN IMMEDIATE`.
 * The first connection to take the write lock applies the DDL; another one migrating at
 * the same time waits for the lock (busy timeout), then finds the versions recorded.
 */
export const migrateSqlite = async (db: SqliteDatabase, tables: Tables, clock: Clock): Promise<void> => {
  await runStorageOperation(ADAPTER, 'migrate', classifySqliteMigrationError, () =>
    applyMigrations(new SqliteMigrationHistory(db, tables), sqliteMigrations(), clock),
  )
}
