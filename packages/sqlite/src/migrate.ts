import {
  applyMigrationsSync,
  type Clock,
  loadMigrations,
  type Migration,
  renderMigration,
  runStorageOperation,
  type SyncMigrationHistory,
} from '@txbox/core'
import { ADAPTER, classifySqliteMigrationError } from './errors.js'
import { historySql, type Tables } from './sql.js'
import type { SqliteDatabase } from './sqlite-options.js'

let shipped: readonly Migration[] | undefined

/** The schema steps of `migrations/`, read once: the only copy of the DDL. */
export const sqliteMigrations = (): readonly Migration[] =>
  (shipped ??= loadMigrations(new URL('../migrations/', import.meta.url)))

/**
 * The history of one store: `<prefix>schema_version`, one row per applied version, the table
 * every release has kept, so a database migrated by an earlier release is recognised as is.
 * The lock is SQLite's write lock: `BEGIN IMMEDIATE` (a SAVEPOINT when the caller already has
 * a transaction open on the connection), so every step and its record commit together.
 */
class SqliteMigrationHistory implements SyncMigrationHistory {
  readonly #db: SqliteDatabase
  readonly #tables: Tables
  readonly #sql: ReturnType<typeof historySql>

  constructor(db: SqliteDatabase, tables: Tables) {
    this.#db = db
    this.#tables = tables
    this.#sql = historySql(tables)
  }

  /**
   * Synchronous from BEGIN to COMMIT: nothing else of this process runs inside the lock's
   * transaction, and a second connection of this process never waits synchronously for a
   * lock that an awaiting migration holds.
   */
  locked<T>(apply: () => T): T {
    const db = this.#db
    // journal_mode cannot change inside a transaction, and `:memory:` databases have no WAL.
    // WAL: readers never wait for the writer, and writers on other connections wait for the
    // lock instead of failing.
    if (!db.memory && !db.readonly && !db.inTransaction) db.pragma('journal_mode = WAL')
    const nested = db.inTransaction
    db.exec(nested ? 'SAVEPOINT txbox_migrate' : 'BEGIN IMMEDIATE')
    try {
      db.exec(this.#sql.createVersionTable)
      const result = apply()
      db.exec(nested ? 'RELEASE txbox_migrate' : 'COMMIT')
      return result
    } catch (error) {
      if (db.inTransaction) db.exec(nested ? 'ROLLBACK TO txbox_migrate; RELEASE txbox_migrate' : 'ROLLBACK')
      throw error
    }
  }

  appliedVersions(): number[] {
    return this.#db.prepare<[], number>(this.#sql.appliedVersions).pluck().safeIntegers(false).all()
  }

  apply(migration: Migration): void {
    this.#db.exec(renderMigration(migration.body, { prefix: this.#tables.prefix }))
  }

  record(migration: Migration, appliedAt: Date): void {
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
  await runStorageOperation(ADAPTER, 'migrate', classifySqliteMigrationError, async () =>
    applyMigrationsSync(new SqliteMigrationHistory(db, tables), sqliteMigrations(), clock),
  )
}
