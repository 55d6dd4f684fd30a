import {
  applyMigrationsSync,
  buildMigrationScripts,
  type Clock,
  checkMigrationScriptOptions,
  loadMigrations,
  type Migration,
  type MigrationScript,
  type MigrationScriptRange,
  renderMigration,
  runStorageOperation,
  type SyncMigrationHistory,
  Validator,
} from '@txbox/core'
import { ADAPTER, classifySqliteMigrationError } from './errors.js'
import { historySql, type Tables, tablesFor } from './sql.js'
import { DEFAULT_TABLE_PREFIX, type SqliteDatabase } from './sqlite-options.js'

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

/** Options of {@link migrationScripts}: the store's table prefix and which migrations. */
export interface SqliteMigrationScriptOptions extends MigrationScriptRange {
  /** The store's `tablePrefix` (default `txbox_`). */
  readonly tablePrefix?: string | undefined
}

/**
 * The shipped migrations as SQL for your own migration tool (Knex, Drizzle Kit, Flyway...):
 * the up scripts apply a version and record it in `<prefix>schema_version`, so a later
 * `migrate()` applies nothing; the down scripts (newest first) undo them, version 1's down
 * leaving no table, index or history of txbox in the database. `migrate()` also switches a
 * file database to WAL, which a script cannot do inside a transaction: run
 * `PRAGMA journal_mode = WAL` once yourself.
 */
export const migrationScripts = (options: SqliteMigrationScriptOptions = {}): MigrationScript[] => {
  checkMigrationScriptOptions(ADAPTER, options, ['tablePrefix'])
  const tables = tablesFor(
    new Validator(ADAPTER).identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix'),
  )
  const sql = historySql(tables)
  return buildMigrationScripts(
    sqliteMigrations(),
    {
      adapter: ADAPTER,
      namespace: `table prefix "${tables.prefix}"`,
      values: { prefix: tables.prefix },
      createHistory: [sql.createVersionTable],
      // As `record` writes it (epoch milliseconds); julianday works on every SQLite, unlike unixepoch('subsec').
      recordVersion: (migration) =>
        `INSERT INTO ${tables.schemaVersion} (version, applied_at) VALUES (${migration.version}, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)) ON CONFLICT (version) DO NOTHING`,
      forgetVersion: (migration) =>
        `DELETE FROM ${tables.schemaVersion} WHERE version = ${migration.version}`,
      dropHistory: `DROP TABLE IF EXISTS ${tables.schemaVersion}`,
    },
    options,
  )
}
