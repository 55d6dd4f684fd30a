import { createHash } from 'node:crypto'
import {
  applyMigrations,
  buildMigrationScripts,
  type Clock,
  checkMigrationScriptOptions,
  loadMigrations,
  type Migration,
  type MigrationHistory,
  type MigrationScript,
  type MigrationScriptRange,
  renderMigration,
  runStorageOperation,
  splitStatements,
  ValidationError,
  Validator,
} from '@txbox/core'
import type { Pool, PoolConnection } from 'mysql2/promise'
import { runWrite, selectRows } from './client.js'
import { detectDialect, parseDialect } from './dialect.js'
import {
  ADAPTER,
  classifyMySqlError,
  ER_CANT_DROP_FIELD_OR_KEY,
  ER_DUP_FIELDNAME,
  ER_DUP_KEYNAME,
  errnoOf,
} from './errors.js'
import { DEFAULT_TABLE_PREFIX } from './mysql-options.js'
import { toDateTime } from './rows.js'
import { schemaVersionSql, tableNames } from './sql.js'

/** What a DDL statement fails with when it ran before: the column or key is already added, or gone. */
const ALREADY_DONE: ReadonlySet<number> = new Set([
  ER_CANT_DROP_FIELD_OR_KEY,
  ER_DUP_FIELDNAME,
  ER_DUP_KEYNAME,
])

/** Seconds a migrator waits for another one to finish. */
const LOCK_TIMEOUT_SECONDS = 30

let migrationCache: readonly Migration[] | undefined

/**
 * The DDL files shipped in `migrations/` (next to `src/` and `dist/`), read once, on the
 * first `migrate()`: `migrate()` runs exactly what users who bring their own migration tool run.
 */
export const mySqlMigrations = (): readonly Migration[] => {
  migrationCache ??= loadMigrations(new URL('../migrations/', import.meta.url))
  return migrationCache
}

/**
 * The advisory lock name: server-wide, so it names the database and the prefix, hashed to
 * stay within the 64-character limit of `GET_LOCK`.
 */
const lockName = (database: string, prefix: string): string =>
  `txbox_migrate_${createHash('sha256').update(`${database}\u0000${prefix}`).digest('hex').slice(0, 40)}`

/** What `locked` holds while the steps run: the connection that owns the named lock. */
interface Session {
  readonly connection: PoolConnection
  /** The id collation of this server (see `Dialect.idCollation`), the `{{id_collation}}` placeholder. */
  readonly idCollation: string
}

/**
 * The history of one table prefix: the table `<prefix>schema_version` (version, name,
 * applied_at), guarded by `GET_LOCK` on one connection. MySQL DDL is not transactional (each
 * CREATE commits on its own), so the steps cannot share the lock's transaction: each is
 * idempotent by itself (`CREATE TABLE IF NOT EXISTS`, indexes inside the CREATE).
 */
export class MySqlMigrationHistory implements MigrationHistory {
  readonly #pool: Pool
  readonly #prefix: string
  readonly #sql: ReturnType<typeof schemaVersionSql>
  #session: Session | undefined

  constructor(pool: Pool, prefix: string) {
    this.#pool = pool
    this.#prefix = prefix
    this.#sql = schemaVersionSql(tableNames(prefix).schemaVersion)
  }

  async locked<T>(apply: () => Promise<T>): Promise<T> {
    const connection = await this.#pool.getConnection()
    let healthy = false
    try {
      const [current] = await selectRows(connection, 'SELECT DATABASE() AS db', [])
      if (current?.db === null || current?.db === undefined) {
        throw new Error(
          'the connection has no default database: put one in the pool options (database or the URL path)',
        )
      }
      const lock = lockName(String(current.db), this.#prefix)
      const [acquired] = await selectRows(connection, 'SELECT GET_LOCK(?, ?) AS acquired', [
        lock,
        LOCK_TIMEOUT_SECONDS,
      ])
      if (Number(acquired?.acquired) !== 1) {
        throw new Error(`another migrator held the lock ${lock} for more than ${LOCK_TIMEOUT_SECONDS} s`)
      }
      let result: T
      try {
        const { idCollation } = await detectDialect(connection)
        await connection.query(this.#sql.create)
        this.#session = { connection, idCollation }
        result = await apply()
      } finally {
        this.#session = undefined
        await selectRows(connection, 'SELECT RELEASE_LOCK(?) AS released', [lock])
      }
      healthy = true
      return result
    } finally {
      // A connection that failed mid-way might still hold the named lock: close it instead.
      if (healthy) connection.release()
      else connection.destroy()
    }
  }

  #locked(): Session {
    if (this.#session === undefined) throw new TypeError('the migration history is used outside locked()')
    return this.#session
  }

  async appliedVersions(): Promise<number[]> {
    const rows = await selectRows(this.#locked().connection, this.#sql.applied, [])
    return rows.map((row) => Number(row.version))
  }

  async apply(migration: Migration): Promise<void> {
    const { connection, idCollation } = this.#locked()
    const body = renderMigration(migration.body, { prefix: this.#prefix, id_collation: idCollation })
    // One statement per call (the pool does not allow multiple statements), each committed on
    // its own: a step interrupted halfway is completed by the next migrate().
    for (const statement of splitStatements(body)) {
      try {
        await connection.query(statement)
      } catch (error) {
        // A statement that adds or drops a column or key is idempotent only this way (MySQL
        // has no ADD COLUMN / ADD KEY / DROP INDEX IF [NOT] EXISTS): it already took effect
        // when the step ran before its version was recorded.
        if (!ALREADY_DONE.has(errnoOf(error) ?? 0)) throw error
      }
    }
  }

  async record(migration: Migration, appliedAt: Date): Promise<void> {
    await runWrite(this.#locked().connection, this.#sql.record, [
      migration.version,
      recordedName(migration),
      toDateTime(appliedAt),
    ])
  }
}

/**
 * The name a migration is recorded under: the file's name without its extension, as every
 * release before the shared mechanism recorded it (`0003_inbox_id_only`).
 */
const recordedName = (migration: Migration): string =>
  `${String(migration.version).padStart(4, '0')}_${migration.name}`

/** Options of {@link migrationScripts}: the store's namespace, its server, and which migrations. */
export interface MySqlMigrationScriptOptions extends MigrationScriptRange {
  /** The store's `tablePrefix` (default `txbox_`). */
  readonly tablePrefix?: string | undefined
  /**
   * What `SELECT VERSION()` answers on the server the DDL is for (`10.11.6-MariaDB`,
   * `8.0.36`): MariaDB and MySQL name the binary NO PAD collation of id columns differently,
   * and `migrate()` asks the server the same way.
   */
  readonly serverVersion: string
}

/**
 * The shipped migrations as SQL for your own migration tool (Knex, Prisma Migrate, Flyway...),
 * for the current database of the connection that runs them: the up scripts apply a version
 * and record it in `<prefix>schema_version`, so a later `migrate()` applies nothing; the down
 * scripts (newest first) undo them, version 1's down leaving no table or history of txbox
 * behind. MySQL commits each DDL statement on its own: a script that fails halfway is not
 * rolled back; every statement can simply be run again except those that add or drop a
 * column or key (the `DROP INDEX` of version 3, the `ALTER TABLE`s of version 4), which fail
 * with "already there" / "not there" (errors 1060, 1061, 1091) once they took effect.
 */
export const migrationScripts = (options: MySqlMigrationScriptOptions): MigrationScript[] => {
  checkMigrationScriptOptions(ADAPTER, options, ['tablePrefix', 'serverVersion'])
  const prefix = new Validator(ADAPTER).identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
  if (typeof options.serverVersion !== 'string')
    throw new ValidationError(
      ADAPTER,
      "serverVersion is required: what SELECT VERSION() answers on your server (e.g. '10.11.6-MariaDB' or '8.0.36'); it picks the collation of the id columns",
    )
  let idCollation: string
  try {
    ;({ idCollation } = parseDialect(options.serverVersion))
  } catch (error) {
    throw new ValidationError(ADAPTER, `serverVersion: ${(error as Error).message}`, { cause: error })
  }
  const history = tableNames(prefix).schemaVersion
  const sql = schemaVersionSql(history)
  return buildMigrationScripts(
    mySqlMigrations(),
    {
      adapter: ADAPTER,
      namespace: `table prefix "${prefix}" in the connection's database, ids collated ${idCollation}`,
      values: { prefix, id_collation: idCollation },
      createHistory: [sql.create],
      // As `record` writes it; names are validated snake_case, safe to inline.
      recordVersion: (migration) =>
        `INSERT INTO \`${history}\` (version, name, applied_at) VALUES (${migration.version}, '${recordedName(migration)}', UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE version = version`,
      forgetVersion: (migration) => `DELETE FROM \`${history}\` WHERE version = ${migration.version}`,
      dropHistory: `DROP TABLE IF EXISTS \`${history}\``,
    },
    options,
  )
}

/**
 * Creates or upgrades the schema of one table prefix: core `applyMigrations` over the files
 * of `migrations/` and {@link MySqlMigrationHistory}. Concurrent migrators all succeed (the
 * second waits for the lock, then finds nothing to do).
 */
export const migrateMySql = async (pool: Pool, prefix: string, clock: Clock): Promise<void> => {
  await runStorageOperation(ADAPTER, 'migrate', classifyMySqlError, () =>
    applyMigrations(new MySqlMigrationHistory(pool, prefix), mySqlMigrations(), clock),
  )
}
